/**
 * Buffer pool with size buckets. Freed buffers are kept per bucket and reused, so a job's
 * steady state allocates nothing; `bytesInUse`/`bytesPooled` are observable for the UI and tests.
 */
/** Bucket sizes: powers of two split into 4 steps (≤ 19% waste), minimum 256 bytes. */
export function bucketSize(bytes: number): number {
  const b = Math.max(256, Math.ceil(bytes / 256) * 256);
  const p = 2 ** Math.floor(Math.log2(b));
  if (p === b) return b;
  const step = p / 4;
  return Math.max(256, Math.ceil(b / step) * step);
}

export class BufferPool {
  private free = new Map<number, GPUBuffer[]>();
  bytesInUse = 0;
  bytesPooled = 0;
  peakBytesInUse = 0;
  private readonly usage: number;

  // GPUBufferUsage is read here, not at module load: in Node the global appears only once Dawn is loaded.
  constructor(private readonly device: GPUDevice) {
    this.usage = GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_SRC | GPUBufferUsage.COPY_DST;
  }

  acquire(bytes: number): GPUBuffer {
    const size = bucketSize(bytes);
    const list = this.free.get(size);
    let buf = list?.pop();
    if (buf) this.bytesPooled -= size;
    else buf = this.device.createBuffer({ size, usage: this.usage });
    this.bytesInUse += size;
    this.peakBytesInUse = Math.max(this.peakBytesInUse, this.bytesInUse);
    return buf;
  }

  release(buf: GPUBuffer): void {
    const size = buf.size;
    this.bytesInUse -= size;
    this.bytesPooled += size;
    let list = this.free.get(size);
    if (!list) this.free.set(size, (list = []));
    list.push(buf);
  }

  /** Destroy every pooled (free) buffer; buffers in use are untouched. */
  trim(): void {
    for (const list of this.free.values()) for (const b of list) b.destroy();
    this.free.clear();
    this.bytesPooled = 0;
  }
}
