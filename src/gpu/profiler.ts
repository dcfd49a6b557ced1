/**
 * Per-kernel GPU time from timestamp queries (feature 'timestamp-query'). When enabled, every dispatch
 * runs in its own compute pass whose beginning/end timestamps are written to a query set; at each
 * submit the queries are resolved and read back asynchronously, and time is summed per kernel name.
 * Profiling changes batching (one pass per dispatch), so use it to find where time goes, not for totals.
 */
const QUERIES = 1024; // 512 dispatches per submit (MAX_DISPATCHES_PER_SUBMIT) × 2 timestamps

export interface KernelTime { kernel: string; calls: number; ms: number }

export class Profiler {
  private querySet: GPUQuerySet;
  private names: string[] = [];
  private pending: Promise<void>[] = [];
  private unsubmitted: Array<() => Promise<void>> = [];
  private totals = new Map<string, { calls: number; ns: number }>();

  constructor(private readonly device: GPUDevice) {
    this.querySet = device.createQuerySet({ type: 'timestamp', count: QUERIES });
  }

  /** Timestamp writes for the next dispatch, or null when the set is full (the caller flushes first). */
  next(kernel: string): GPUComputePassTimestampWrites | null {
    const i = this.names.length * 2;
    if (i + 2 > QUERIES) return null;
    this.names.push(kernel);
    return { querySet: this.querySet, beginningOfPassWriteIndex: i, endOfPassWriteIndex: i + 1 };
  }

  /** Resolve this submit's queries into a readback (called on the encoder before finish()). */
  resolve(encoder: GPUCommandEncoder): void {
    const n = this.names.length * 2;
    if (!n) return;
    const resolveBuf = this.device.createBuffer({ size: n * 8, usage: GPUBufferUsage.QUERY_RESOLVE | GPUBufferUsage.COPY_SRC });
    const read = this.device.createBuffer({ size: n * 8, usage: GPUBufferUsage.MAP_READ | GPUBufferUsage.COPY_DST });
    encoder.resolveQuerySet(this.querySet, 0, n, resolveBuf, 0);
    encoder.copyBufferToBuffer(resolveBuf, 0, read, 0, n * 8);
    const names = this.names;
    this.names = [];
    this.unsubmitted.push(async () => {
        await read.mapAsync(GPUMapMode.READ);
        const t = new BigInt64Array(read.getMappedRange());
        names.forEach((k, j) => {
          const e = this.totals.get(k) ?? { calls: 0, ns: 0 };
          e.calls++;
          e.ns += Math.max(0, Number(t[2 * j + 1] - t[2 * j]));
          this.totals.set(k, e);
        });
        read.unmap();
        read.destroy();
        resolveBuf.destroy();
      });
  }

  /** Start the readbacks of what resolve() queued (called right after the submit: a buffer may not be mapped before). */
  submitted(): void {
    for (const f of this.unsubmitted.splice(0)) this.pending.push(f());
  }

  /** Kernel times so far, slowest first (await after ctx.sync()). */
  async report(): Promise<KernelTime[]> {
    await Promise.all(this.pending.splice(0));
    return [...this.totals].map(([kernel, v]) => ({ kernel, calls: v.calls, ms: v.ns / 1e6 })).sort((a, b) => b.ms - a.ms);
  }

  reset(): void {
    this.totals.clear();
  }
}
