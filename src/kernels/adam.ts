import source from '../../shaders/adam.wgsl?raw';
import { packUniforms, type GpuContext, type KernelSpec } from '../gpu/context';
import type { Tensor } from '../gpu/tensor';
import { ShapeError } from '../gpu/errors';
import { foldedGrid, requireF32 } from './elementwise';

const ADAM: KernelSpec = { name: 'adam.adam', source, entry: 'adam', bindings: ['write', 'read', 'write', 'write'], uniform: true };
const MERGE: KernelSpec = { name: 'adam.merge', source, entry: 'merge', bindings: ['write', 'read', 'read'], uniform: true };
const MASK: KernelSpec = { name: 'adam.mask_grad', source, entry: 'mask_grad', bindings: ['write', 'read'], uniform: true };

const WG = 256; // threads per workgroup in adam.wgsl

export interface AdamHyper {
  lr: number;
  /** Default 0.9. */
  beta1?: number;
  /** Default 0.999. */
  beta2?: number;
  /** Default 1e-8. */
  eps?: number;
}

function same(op: string, ts: Tensor[]): void {
  requireF32(op, ...ts);
  for (const t of ts) if (t.size !== ts[0].size) throw new ShapeError(`${op}: sizes differ ([${ts[0].shape}] vs [${t.shape}])`);
  const bufs = new Set(ts.map((t) => t.buffer));
  if (bufs.size !== ts.length) throw new ShapeError(`${op}: every tensor must have its own buffer`);
}

function uniforms(n: number, h: { lr: number; b1: number; b2: number; eps: number; t: number } = { lr: 0, b1: 0, b2: 0, eps: 0, t: 1 }): ArrayBuffer {
  // 1 − β and the bias corrections in float64: in f32, 1 − fround(0.999) is off by 1.3e-5 relative.
  return packUniforms([
    ['u32', n], ['f32', h.lr], ['f32', h.b1], ['f32', h.b2], ['f32', 1 - h.b1], ['f32', 1 - h.b2],
    ['f32', 1 - h.b1 ** h.t], ['f32', 1 - h.b2 ** h.t], ['f32', h.eps],
  ]);
}

/**
 * One bias-corrected Adam step in place: p, m, v ← Adam(p, g, m, v) at step t (1-based). m and v start
 * at 0 (ctx.zeros). Hyper-parameters are validated here: lr ≥ 0, betas in [0, 1), eps > 0.
 */
export function adamStep(ctx: GpuContext, p: Tensor, g: Tensor, m: Tensor, v: Tensor, t: number, h: AdamHyper): void {
  same('adamStep', [p, g, m, v]);
  const b1 = h.beta1 ?? 0.9, b2 = h.beta2 ?? 0.999, eps = h.eps ?? 1e-8;
  if (!Number.isInteger(t) || t < 1) throw new ShapeError(`adamStep: step must be an integer ≥ 1, got ${t}`);
  if (!(Number.isFinite(h.lr) && h.lr >= 0)) throw new ShapeError(`adamStep: lr must be finite and ≥ 0, got ${h.lr}`);
  if (!(b1 >= 0 && b1 < 1 && b2 >= 0 && b2 < 1)) throw new ShapeError(`adamStep: betas must be in [0, 1), got ${b1}, ${b2}`);
  if (!(Number.isFinite(eps) && eps > 0)) throw new ShapeError(`adamStep: eps must be finite and > 0, got ${eps}`);
  const u = uniforms(p.size, { lr: h.lr, b1, b2, eps, t });
  ctx.dispatch(ADAM, {}, [p, g, m, v], foldedGrid(Math.ceil(p.size / WG)), u);
}

/** w ← w0 + d where w0 ≠ 0, w0 elsewhere (in place on w; see adam.wgsl: the zero pattern of w0 is kept exactly). */
export function maskedMerge(ctx: GpuContext, w: Tensor, w0: Tensor, d: Tensor): void {
  same('maskedMerge', [w, w0, d]);
  ctx.dispatch(MERGE, {}, [w, w0, d], foldedGrid(Math.ceil(w.size / WG)), uniforms(w.size));
}

/** x ← 0 where ref is zero (in place). */
export function maskLike(ctx: GpuContext, x: Tensor, ref: Tensor): void {
  same('maskLike', [x, ref]);
  ctx.dispatch(MASK, {}, [x, ref], foldedGrid(Math.ceil(x.size / WG)), uniforms(x.size));
}
