import source from '../../shaders/elementwise.wgsl?raw';
import { grid1d, packUniforms, type GpuContext, type KernelSpec } from '../gpu/context';
import type { Tensor } from '../gpu/tensor';
import { ShapeError } from '../gpu/errors';

/**
 * Per-dimension workgroup limit used when folding 1-D grids into (x, y) by the elementwise, reduce and
 * select wrappers. WebGPU guarantees 65535; tests lower it to exercise the folded path on small inputs.
 */
export const dispatchLimits = { maxWorkgroupsPerDim: 65535 };

/** 1-D grid of `groups` workgroups folded into y beyond the per-dimension limit. */
export function foldedGrid(groups: number): [number, number] {
  return grid1d(Math.max(1, groups), dispatchLimits.maxWorkgroupsPerDim);
}

const spec = (entry: string, bindings: KernelSpec['bindings']): KernelSpec => ({
  name: `elementwise.${entry}`,
  source,
  entry,
  bindings,
  uniform: true,
});
const SCALE = spec('scale', ['read', 'write']);
const ADD = spec('add', ['read', 'read', 'write']);
const MUL = spec('mul', ['read', 'read', 'write']);
const AXPY = spec('axpy', ['write', 'read']);
const FILL = spec('fill', ['write']);
const APPLY_MASK = spec('apply_mask', ['write', 'read']);
const CAST_F16 = spec('cast_f16', ['read', 'write']);
const CAST_BF16 = spec('cast_bf16', ['read', 'write']);

const WG = 256; // threads per workgroup in elementwise.wgsl

export function requireF32(op: string, ...ts: Tensor[]): void {
  for (const t of ts) {
    if (t.dtype !== 'f32') throw new ShapeError(`${op}: f32 tensor expected, got ${t.dtype} [${t.shape}]`);
    if (t.isDisposed) throw new ShapeError(`${op}: tensor [${t.shape}] was disposed`);
  }
}

function sameSize(op: string, a: Tensor, b: Tensor): void {
  if (a.size !== b.size) throw new ShapeError(`${op}: sizes differ ([${a.shape}] vs [${b.shape}]); no broadcasting`);
}

function run(ctx: GpuContext, s: KernelSpec, tensors: Tensor[], n: number, alpha = 0, bits = 0): void {
  const u = packUniforms([['u32', n], ['f32', alpha], ['u32', bits >>> 0], ['u32', 0]]);
  ctx.dispatch(s, {}, tensors, foldedGrid(Math.ceil(n / WG)), u);
}

/** alpha · x (new tensor, same shape). */
export function scale(ctx: GpuContext, x: Tensor, alpha: number): Tensor {
  requireF32('scale', x);
  const out = ctx.empty(x.shape);
  run(ctx, SCALE, [x, out], x.size, alpha);
  return out;
}

/** y += alpha · x, in place (x may be y itself). */
export function axpy(ctx: GpuContext, y: Tensor, x: Tensor, alpha: number): void {
  requireF32('axpy', y, x);
  sameSize('axpy', y, x);
  if (x.buffer === y.buffer) {
    // A buffer cannot be bound read-only and writable in one dispatch: y + a·y = (1 + a)·y.
    const t = scale(ctx, y, 1 + alpha);
    ctx.copy(t, y, 0, 0, y.bytes);
    t.dispose();
    return;
  }
  run(ctx, AXPY, [y, x], y.size, alpha);
}

/** a + b (same size, shape of a). */
export function add(ctx: GpuContext, a: Tensor, b: Tensor): Tensor {
  requireF32('add', a, b);
  sameSize('add', a, b);
  const out = ctx.empty(a.shape);
  run(ctx, ADD, [a, b, out], a.size);
  return out;
}

/** a ∘ b elementwise (same size, shape of a). */
export function mul(ctx: GpuContext, a: Tensor, b: Tensor): Tensor {
  requireF32('mul', a, b);
  sameSize('mul', a, b);
  const out = ctx.empty(a.shape);
  run(ctx, MUL, [a, b, out], a.size);
  return out;
}

/** Every entry of x ← value (f32 tensors get Math.fround(value); u32/i32 tensors the integer value). */
export function fill(ctx: GpuContext, x: Tensor, value: number): void {
  if (x.isDisposed) throw new ShapeError(`fill: tensor [${x.shape}] was disposed`);
  let bits: number;
  if (x.dtype === 'f32') bits = new Uint32Array(Float32Array.of(value).buffer)[0];
  else {
    if (!Number.isInteger(value)) throw new ShapeError(`fill: ${x.dtype} tensor needs an integer value, got ${value}`);
    bits = x.dtype === 'u32' ? value >>> 0 : value | 0;
  }
  run(ctx, FILL, [x], x.size, 0, bits);
}

/**
 * w ← w ∘ mask in place, mask of 0/1 floats (same size). Entries with mask 0 become exactly +0
 * (also when w was -0, inf or NaN); entries with mask 1 keep their bits.
 */
export function applyMask(ctx: GpuContext, w: Tensor, mask: Tensor): void {
  requireF32('applyMask', w, mask);
  sameSize('applyMask', w, mask);
  if (w.buffer === mask.buffer) throw new ShapeError('applyMask: w and mask must be different buffers');
  run(ctx, APPLY_MASK, [w, mask], w.size);
}

function cast(ctx: GpuContext, s: KernelSpec, op: string, packed: Tensor, n: number): Tensor {
  if (!Number.isInteger(n) || n < 0) throw new ShapeError(`${op}: n must be a non-negative integer, got ${n}`);
  if (packed.isDisposed) throw new ShapeError(`${op}: tensor was disposed`);
  if (packed.size * 2 < n) throw new ShapeError(`${op}: ${n} halves need ${Math.ceil(n / 2)} u32 words, got ${packed.size}`);
  const out = ctx.empty([n]);
  run(ctx, s, [packed, out], n);
  return out;
}

/** fp16 → f32 on the GPU, exact for every bit pattern. `packed` holds 2 halves per 32-bit word (low half first). */
export function castF16ToF32(ctx: GpuContext, packed: Tensor, n: number): Tensor {
  return cast(ctx, CAST_F16, 'castF16ToF32', packed, n);
}

/** bf16 → f32 on the GPU, exact for every bit pattern. `packed` holds 2 halves per 32-bit word (low half first). */
export function castBf16ToF32(ctx: GpuContext, packed: Tensor, n: number): Tensor {
  return cast(ctx, CAST_BF16, 'castBf16ToF32', packed, n);
}
