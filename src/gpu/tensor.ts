import type { GpuContext } from './context';

export type DType = 'f32' | 'u32' | 'i32';

/** A view on a pooled GPU buffer: shape + dtype, row-major, contiguous. No autograd. */
export class Tensor {
  private disposed = false;

  constructor(
    readonly ctx: GpuContext,
    readonly buffer: GPUBuffer,
    readonly shape: readonly number[],
    readonly dtype: DType = 'f32',
    /** Whether dispose() returns the buffer to the pool (false for views on another tensor's buffer). */
    private readonly owned = true,
  ) {}

  get size(): number {
    return this.shape.reduce((a, b) => a * b, 1);
  }

  get bytes(): number {
    return this.size * 4;
  }

  get isDisposed(): boolean {
    return this.disposed;
  }

  /** Same buffer, another shape of equal size (no copy). The view must not outlive this tensor. */
  reshape(shape: readonly number[]): Tensor {
    const n = shape.reduce((a, b) => a * b, 1);
    if (n !== this.size) throw new Error(`reshape: ${this.shape} → ${shape} changes the size`);
    return new Tensor(this.ctx, this.buffer, shape, this.dtype, false);
  }

  async read(): Promise<Float32Array> {
    return this.ctx.readF32(this);
  }

  dispose(): void {
    if (this.disposed) return;
    this.disposed = true;
    if (this.owned) this.ctx.pool.release(this.buffer);
  }
}
