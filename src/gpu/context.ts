import { acquireDevice, type AcquiredDevice, type DeviceOptions } from './device';
import { DeviceLostError, GpuValidationError } from './errors';
import { BufferPool } from './pool';
import { Tensor, type DType } from './tensor';
import { preprocess } from './wgsl';
import { Profiler } from './profiler';

export type BindingKind = 'read' | 'write';

/** Compile-time description of a kernel (ORT's ProgramInfo): never contains shapes. */
export interface KernelSpec {
  name: string;
  source: string;
  entry?: string;
  /** Storage bindings 0..n-1 in order; a uniform block, if any, is binding n. */
  bindings: BindingKind[];
  uniform?: boolean;
}

export interface KernelVariant {
  /** `#if NAME` switches for the tiny WGSL preprocessor. */
  defines?: Record<string, boolean>;
  /** WGSL `override` constants (tile sizes, flags). */
  overrides?: Record<string, number>;
}

const UNIFORM_SLOT = 256; // minUniformBufferOffsetAlignment is 256 on every adapter seen
const UNIFORM_RING_SLOTS = 1024; // 256 KiB; a full ring forces a submit
const MAX_DISPATCHES_PER_SUBMIT = 512; // keeps command buffers moderate (TOOLCHAIN.md: a 50-dispatch 2048³ submit once hung)

/**
 * The GPU runtime: device + pipeline cache + buffer pool + batched dispatches + explicit readback.
 * Dispatches are recorded into one compute pass and submitted on flush()/read(), never per call.
 */
export class GpuContext {
  readonly pool: BufferPool;
  private pipelines = new Map<string, { pipeline: GPUComputePipeline; layout: GPUBindGroupLayout }>();
  private encoder: GPUCommandEncoder | null = null;
  private pass: GPUComputePassEncoder | null = null;
  private dispatches = 0;
  private uniformRing: GPUBuffer;
  private uniformStage = new ArrayBuffer(UNIFORM_SLOT * UNIFORM_RING_SLOTS);
  private uniformUsed = 0;
  private lostError: DeviceLostError | null = null;
  private errors: string[] = [];
  private lastKernel = '';
  // Bind groups cached by layout + buffers + sizes: creating one per dispatch cost ~40 µs of CPU in Dawn on the H200.
  private bindGroups = new Map<string, GPUBindGroup>();
  private layouts = new Map<string, GPUBindGroupLayout>();
  private bufferIds = new WeakMap<GPUBuffer, number>();
  private nextBufferId = 1;
  /** Set by enableProfiling(): per-kernel GPU times from timestamp queries. */
  profiler: Profiler | null = null;
  /** Number of queue submits so far (for tests of batching). */
  submits = 0;

  private constructor(readonly gpu: AcquiredDevice) {
    const { device } = gpu;
    this.pool = new BufferPool(device);
    this.uniformRing = device.createBuffer({
      size: UNIFORM_SLOT * UNIFORM_RING_SLOTS,
      usage: GPUBufferUsage.UNIFORM | GPUBufferUsage.COPY_DST,
    });
    void gpu.lost.then((e) => (this.lostError = e));
    device.addEventListener('uncapturederror', (ev) => {
      const err = (ev as GPUUncapturedErrorEvent).error;
      this.errors.push(`${err.constructor?.name ?? 'GPUError'} near kernel '${this.lastKernel}': ${err.message}`);
    });
  }

  static async create(opts: DeviceOptions = {}): Promise<GpuContext> {
    return new GpuContext(await acquireDevice(opts));
  }

  get device(): GPUDevice {
    return this.gpu.device;
  }

  get limits(): GPUSupportedLimits {
    return this.gpu.device.limits;
  }

  private check(): void {
    if (this.lostError) throw this.lostError;
    if (this.errors.length) {
      const msg = this.errors.splice(0).join('\n');
      throw new GpuValidationError(msg);
    }
  }

  // ---- tensors -------------------------------------------------------------------------------

  empty(shape: readonly number[], dtype: DType = 'f32'): Tensor {
    this.check();
    const n = shape.reduce((a, b) => a * b, 1);
    return new Tensor(this, this.pool.acquire(Math.max(4, n * 4)), shape, dtype);
  }

  /** Upload host data. Pending dispatches are submitted first: a pooled buffer may still be read by them. */
  upload(data: Float32Array | Uint32Array | Int32Array, shape: readonly number[] = [data.length]): Tensor {
    const dtype: DType = data instanceof Float32Array ? 'f32' : data instanceof Uint32Array ? 'u32' : 'i32';
    const t = this.empty(shape, dtype);
    this.write(t, data);
    return t;
  }

  write(t: Tensor, data: Float32Array | Uint32Array | Int32Array, byteOffset = 0): void {
    this.flush();
    this.device.queue.writeBuffer(t.buffer, byteOffset, data.buffer, data.byteOffset, data.byteLength);
  }

  zeros(shape: readonly number[], dtype: DType = 'f32'): Tensor {
    const t = this.empty(shape, dtype);
    this.endPass();
    this.enc().clearBuffer(t.buffer, 0, Math.ceil((t.size * 4) / 4) * 4);
    return t;
  }

  copy(src: Tensor, dst: Tensor, srcOffsetBytes = 0, dstOffsetBytes = 0, bytes = src.bytes): void {
    this.endPass();
    this.enc().copyBufferToBuffer(src.buffer, srcOffsetBytes, dst.buffer, dstOffsetBytes, bytes);
  }

  async readF32(t: Tensor): Promise<Float32Array> {
    return new Float32Array(await this.readBytes(t.buffer, 0, t.bytes));
  }

  async readU32(t: Tensor): Promise<Uint32Array> {
    return new Uint32Array(await this.readBytes(t.buffer, 0, t.bytes));
  }

  async readBytes(buffer: GPUBuffer, offset: number, bytes: number): Promise<ArrayBuffer> {
    this.check();
    const staging = this.device.createBuffer({ size: bytes, usage: GPUBufferUsage.MAP_READ | GPUBufferUsage.COPY_DST });
    this.endPass();
    this.enc().copyBufferToBuffer(buffer, offset, staging, 0, bytes);
    this.flush();
    try {
      await Promise.race([staging.mapAsync(GPUMapMode.READ), this.gpu.lost.then((e) => Promise.reject(e))]);
    } catch (e) {
      staging.destroy();
      this.check();
      throw e;
    }
    const out = staging.getMappedRange().slice(0);
    staging.unmap();
    staging.destroy();
    this.check();
    return out;
  }

  // ---- kernels -------------------------------------------------------------------------------

  private pipelineFor(spec: KernelSpec, v: KernelVariant) {
    const key = `${layoutKey(spec)}|${JSON.stringify(v.defines ?? {})}|${JSON.stringify(v.overrides ?? {})}`;
    let p = this.pipelines.get(key);
    if (!p) {
      const layout = this.layoutFor(spec);
      const module = this.device.createShaderModule({ label: spec.name, code: preprocess(spec.source, v.defines ?? {}) });
      const pipeline = this.device.createComputePipeline({
        label: key,
        layout: this.device.createPipelineLayout({ bindGroupLayouts: [layout] }),
        compute: { module, entryPoint: spec.entry ?? 'main', constants: v.overrides },
      });
      p = { pipeline, layout };
      this.pipelines.set(key, p);
    }
    return p;
  }

  /** One bind group layout per kernel entry point, shared by all its variants (so cached bind groups fit every variant). */
  private layoutFor(spec: KernelSpec): GPUBindGroupLayout {
    const key = layoutKey(spec);
    let layout = this.layouts.get(key);
    if (!layout) {
      const entries: GPUBindGroupLayoutEntry[] = spec.bindings.map((k, i) => ({
        binding: i,
        visibility: GPUShaderStage.COMPUTE,
        buffer: { type: k === 'read' ? 'read-only-storage' : 'storage' },
      }));
      if (spec.uniform) {
        // Dynamic offset: the uniform slot changes per dispatch, so bind groups can be cached by buffers alone.
        entries.push({ binding: spec.bindings.length, visibility: GPUShaderStage.COMPUTE, buffer: { type: 'uniform', hasDynamicOffset: true } });
      }
      layout = this.device.createBindGroupLayout({ label: spec.name, entries });
      this.layouts.set(key, layout);
    }
    return layout;
  }

  get pipelineCount(): number {
    return this.pipelines.size;
  }

  /**
   * Record one dispatch. `uniforms` is raw bytes (see packUniforms) of at most 256 bytes;
   * `workgroups` beyond maxComputeWorkgroupsPerDimension must be folded into y by the wrapper.
   */
  dispatch(
    spec: KernelSpec,
    variant: KernelVariant,
    tensors: Tensor[],
    workgroups: [number, number?, number?],
    uniforms?: ArrayBuffer,
  ): void {
    this.check();
    if (tensors.length !== spec.bindings.length) {
      throw new Error(`${spec.name}: ${spec.bindings.length} bindings expected, ${tensors.length} given`);
    }
    const [x, y = 1, z = 1] = workgroups;
    if (x === 0 || y === 0 || z === 0) return;
    this.lastKernel = spec.name;
    const { pipeline, layout } = this.pipelineFor(spec, variant);
    let dynOffset: number[] = [];
    if (spec.uniform) {
      if (!uniforms || uniforms.byteLength > UNIFORM_SLOT) throw new Error(`${spec.name}: uniforms missing or > ${UNIFORM_SLOT} bytes`);
      if (this.uniformUsed === UNIFORM_RING_SLOTS) this.flush();
      const off = this.uniformUsed++ * UNIFORM_SLOT;
      new Uint8Array(this.uniformStage, off, uniforms.byteLength).set(new Uint8Array(uniforms));
      dynOffset = [off];
    }
    const bindGroup = this.bindGroupFor(spec, layout, tensors);
    if (this.profiler) {
      this.endPass();
      let tw = this.profiler.next(spec.name);
      if (!tw) {
        this.flush();
        tw = this.profiler.next(spec.name)!;
      }
      this.pass = this.enc().beginComputePass({ timestampWrites: tw });
    } else if (!this.pass) this.pass = this.enc().beginComputePass();
    this.pass.setPipeline(pipeline);
    this.pass.setBindGroup(0, bindGroup, dynOffset);
    this.pass.dispatchWorkgroups(x, y, z);
    if (++this.dispatches >= MAX_DISPATCHES_PER_SUBMIT) this.flush();
  }

  private bindGroupFor(spec: KernelSpec, layout: GPUBindGroupLayout, tensors: Tensor[]): GPUBindGroup {
    let key = layoutKey(spec);
    for (const t of tensors) {
      let id = this.bufferIds.get(t.buffer);
      if (id === undefined) this.bufferIds.set(t.buffer, (id = this.nextBufferId++));
      key += `|${id}:${t.bytes}`;
    }
    let bg = this.bindGroups.get(key);
    if (!bg) {
      // Bind exactly the tensor's bytes: a pooled buffer may be up to 19% larger than the tensor and
      // binding the whole buffer could exceed maxStorageBufferBindingSize for a tensor just under it.
      const entries: GPUBindGroupEntry[] = tensors.map((t, i) => ({ binding: i, resource: { buffer: t.buffer, size: Math.max(4, t.bytes) } }));
      if (spec.uniform) entries.push({ binding: spec.bindings.length, resource: { buffer: this.uniformRing, offset: 0, size: UNIFORM_SLOT } });
      bg = this.device.createBindGroup({ layout, entries });
      if (this.bindGroups.size >= 8192) this.bindGroups.clear(); // bound the cache; entries are cheap to rebuild
      this.bindGroups.set(key, bg);
    }
    return bg;
  }

  private enc(): GPUCommandEncoder {
    return (this.encoder ??= this.device.createCommandEncoder());
  }

  private endPass(): void {
    this.pass?.end();
    this.pass = null;
  }

  /** Submit everything recorded so far (uniforms first, then the command buffer). */
  flush(): void {
    if (!this.encoder) return;
    this.endPass();
    if (this.uniformUsed) {
      this.device.queue.writeBuffer(this.uniformRing, 0, this.uniformStage, 0, this.uniformUsed * UNIFORM_SLOT);
    }
    this.profiler?.resolve(this.encoder);
    this.device.queue.submit([this.encoder.finish()]);
    this.profiler?.submitted();
    this.submits++;
    this.encoder = null;
    this.dispatches = 0;
    this.uniformUsed = 0;
  }

  /** Flush and wait until the GPU has finished all submitted work. */
  async sync(): Promise<void> {
    this.flush();
    await Promise.race([this.device.queue.onSubmittedWorkDone(), this.gpu.lost.then((e) => Promise.reject(e))]);
    this.check();
  }

  /** Time every dispatch with timestamp queries (needs the 'timestamp-query' feature; returns false without it). */
  enableProfiling(): boolean {
    if (!this.gpu.features.has('timestamp-query')) return false;
    this.flush();
    this.profiler ??= new Profiler(this.device);
    return true;
  }

  /** Free pooled (unused) GPU memory and the bind groups that may reference it. */
  trim(): void {
    this.bindGroups.clear();
    this.pool.trim();
  }

  destroy(): void {
    this.encoder = null;
    this.pass = null;
    this.bindGroups.clear();
    this.pool.trim();
    this.uniformRing.destroy();
    this.device.destroy();
  }
}

/** Kernels that share name and entry point may differ in bindings (e.g. in-place variants). */
function layoutKey(spec: KernelSpec): string {
  return `${spec.name}|${spec.entry ?? 'main'}|${spec.bindings.join(',')}|${spec.uniform ? 'u' : ''}`;
}

/** Pack a uniform block: each entry is [type, value]; every field is 4 bytes, std140-like scalar layout. */
export function packUniforms(fields: Array<['u32' | 'i32' | 'f32', number]>): ArrayBuffer {
  const buf = new ArrayBuffer(Math.max(16, Math.ceil((fields.length * 4) / 16) * 16));
  const dv = new DataView(buf);
  fields.forEach(([t, v], i) => {
    if (t === 'u32') dv.setUint32(i * 4, v, true);
    else if (t === 'i32') dv.setInt32(i * 4, v, true);
    else dv.setFloat32(i * 4, v, true);
  });
  return buf;
}

/** Split a 1-D workgroup count into (x, y) within the per-dimension limit; shaders use wid.x + wid.y * nwg.x. */
export function grid1d(n: number, max = 65535): [number, number] {
  if (n <= max) return [n, 1];
  const y = Math.ceil(n / max);
  return [Math.ceil(n / y), y];
}
