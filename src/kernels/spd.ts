/**
 * SPD inverse and solve on the GPU with a precision strategy (WGSL has no f64).
 *
 * 1. Factor: M_λ = M + λ·mean(diag M)·I (on a copy), blocked f32 Cholesky M_λ = L·Lᵀ. The pivot
 *    flags are read back once, after all the work below is queued (NotPositiveDefiniteError).
 * 2. First approximation in f32: X₀ = L⁻ᵀ·L⁻¹ (W = L⁻¹ by a blocked forward solve of L·W = I that
 *    skips W's zero upper part, then X₀ = Wᵀ·W on lower tiles with a triangular K range), or
 *    x₀ = L⁻ᵀ·(L⁻¹·b). Its relative error is ~ κ·u (u = 2⁻²⁴ ≈ 6e-8): 6e-2 at κ = 1e6.
 * 3. Refinement with double-float residuals (df64.wgsl): R = I − M_λ·X (or r = b − M_λ·x) is
 *    computed with exact split products and TwoSum accumulation (error ~ n·u²·|M||X| instead of
 *    n·u·|M||X|), rounded to f32 — R itself is small, so f32 keeps it to relative u.
 *    - inverse: Newton–Schulz X ← X + X·R (X·R in f32, lower tiles, symmetrised). Exactly
 *      R_next = R², so the error squares per step: κ = 1e6 needs ~3 steps to go from 6e-2 to
 *      < 1e-5. Applied only while ‖R‖_F < 1 (which guarantees contraction); after ‖R‖_F < 1e-4 one
 *      last step is applied and the matrix is frozen (later residual kernels exit at once).
 *    - solve: classical refinement x ← x + d, d = L⁻ᵀL⁻¹·r, linear rate ~ κ·u per step. ‖d‖
 *      estimates the error of x: once a correction is not smaller than the previous one (divergence
 *      at κ·u ≳ 1, or the rounding floor) x is reverted to the iterate before the previous
 *      correction and frozen; one extra d checks the last step. (The residual norm is no guide:
 *      rounding x to f32 raises ‖r‖ while the error falls.)
 *    X and x stay f32: the target is ≤ 1e-5 relative, far above f32 rounding.
 *    All gating happens on the GPU (no readback per iteration).
 * Measured (bench/precision.ts, n = 64…512, SwiftShader and H200 alike): refined diag(M⁻¹) and
 * M⁻¹b errors ≤ 6e-8 up to κ = 1e6 and on K-FAC-shaped matrices (f32 alone: up to 4e-3 at 1e6).
 * Where it breaks down: at κ = 1e7, κ·u ≈ 0.6 makes ‖R₀‖_F ≥ 1, the Newton–Schulz gate stays closed
 * and the inverse keeps its f32 error (~2e-2) while solves still refine to ~1e-7; at κ = 1e8 both
 * stay at f32 error (~0.1–0.5), and the f32 matrix itself barely determines its inverse.
 * The df64 residual relies on twoSum's optimiser guard (df64.wgsl); df64SelfTest checks it on the
 * device (2.6e-14 on SwiftShader and on the H200's NVIDIA driver; 1e-8 would mean plain f32).
 * Cost on the H200: a refinement step is one df64 GEMM, ~10× an f32 GEMM (48 ms at n = 3072).
 */

import dfSource from '../../shaders/df64.wgsl?raw';
import { grid1d, packUniforms, type GpuContext, type KernelSpec } from '../gpu/context';
import type { Tensor } from '../gpu/tensor';
import { ShapeError } from '../gpu/errors';
import { dampInPlace } from './diag';
import { checkCholesky, cholesky, dummy, eye, gemmWindow, squareDims, symmetrizeInPlace, trsm } from './cholesky';

export interface SpdOptions {
  /** λ: invert M + λ·mean(diag M)·I; default 0. */
  damping?: number;
  /** Refinement iterations (default: 3 for the inverse, 4 for solves). 0 returns the f32 result. */
  refine?: number;
}

// κ = 1e6: error ≈ ‖R‖ goes 6e-2 → 4e-3 → 1e-5 → f32 floor in 3 steps (R_next = R²); measured ≤ 6e-8.
const DEFAULT_REFINE_INVERSE = 3;
// Linear rate κ·u ≈ 0.06 at κ = 1e6: 4 steps reach 1e-5; a step costs O(n²·k) only.
const DEFAULT_REFINE_SOLVE = 4;
// ‖R‖_F below which one more Newton–Schulz step (error → ‖R‖²) reaches f32 resolution.
const CONVERGED = 1e-4;

const RESIDUAL: KernelSpec = { name: 'df64.residual', source: dfSource, entry: 'residual', bindings: ['read', 'read', 'read', 'write', 'read'], uniform: true };
const GATE_BINDINGS: KernelSpec['bindings'] = ['write', 'write', 'write'];
const SUMSQ: KernelSpec = { name: 'df64.sumsq', source: dfSource, entry: 'sumsq', bindings: GATE_BINDINGS, uniform: true };
const GATE: KernelSpec = { name: 'df64.gate', source: dfSource, entry: 'gate', bindings: GATE_BINDINGS, uniform: true };
const APPLY: KernelSpec = { name: 'df64.apply', source: dfSource, entry: 'apply', bindings: GATE_BINDINGS, uniform: true };
const ADD: KernelSpec = { name: 'df64.addGated', source: dfSource, entry: 'addGated', bindings: GATE_BINDINGS, uniform: true };

interface Gate { gs: Tensor; batch: number }

function gateUniforms(g: Gate, size: number, n: number, o: { kind?: number; sym?: boolean; first?: boolean } = {}): ArrayBuffer {
  return packUniforms([['u32', size], ['u32', n], ['u32', o.kind ?? 0], ['u32', o.sym ? 1 : 0], ['f32', CONVERGED * CONVERGED], ['u32', g.batch], ['u32', o.first ? 1 : 0], ['u32', 0]]);
}

/** R = B − M·X (identity: I − M·X) in double-float, rounded to f32; M [batch,n,n], X/B [batch,n,k]. */
function residual(ctx: GpuContext, m: Tensor, x: Tensor, b: Tensor | null, n: number, k: number, g: Gate): Tensor {
  const r = ctx.empty(x.shape);
  const u = packUniforms([['u32', n], ['u32', k], ['u32', b ? 0 : 1], ['f32', 1], ['u32', n * n], ['u32', n * k], ['u32', n * k], ['u32', n * k]]);
  ctx.dispatch(RESIDUAL, { defines: { RESIDUAL: true } }, [m, x, b ?? x, r, g.gs], [Math.ceil(k / 64), Math.ceil(n / 64), g.batch], u);
  return r;
}

/** gs[b·4+1] = ‖t_b‖² (skipped for matrices whose gate is not active). */
function sumsq(ctx: GpuContext, t: Tensor, size: number, n: number, g: Gate): void {
  ctx.dispatch(SUMSQ, {}, [t, dummy(ctx), g.gs], [g.batch], gateUniforms(g, size, n));
}

function elementwise(ctx: GpuContext, spec: KernelSpec, x: Tensor, y: Tensor, g: Gate, u: ArrayBuffer): void {
  ctx.dispatch(spec, {}, [x, y, g.gs], grid1d(Math.ceil(x.size / 256)), u);
}

/** Copy, damp, symmetrise and factor (no readback: the pivot flags are checked by `finish`). */
function factorDamped(ctx: GpuContext, m: Tensor, name: string, opts: SpdOptions) {
  const { n, batch } = squareDims(name, m);
  const damping = opts.damping ?? 0;
  if (!(damping >= 0) || !Number.isFinite(damping)) throw new ShapeError(`${name}: damping must be a finite number ≥ 0, got ${damping}`);
  const refine = opts.refine;
  if (refine !== undefined && !(Number.isInteger(refine) && refine >= 0)) throw new ShapeError(`${name}: refine must be an integer ≥ 0, got ${refine}`);
  const md = ctx.empty(m.shape);
  ctx.copy(m, md);
  if (damping > 0) dampInPlace(ctx, md, damping).dispose();
  // the Cholesky reads the lower triangle only; the residual reads all of M: make it symmetric
  symmetrizeInPlace(ctx, md);
  const { L, info } = cholesky(ctx, md);
  const gs = ctx.zeros([batch * 4]);
  return { n, batch, md, L, info, g: { gs, batch } as Gate };
}

/**
 * The one readback: all work is already queued, so the pivot check does not stall the pipeline.
 * On a failed pivot the (garbage) result is disposed and NotPositiveDefiniteError is thrown.
 */
async function finish(ctx: GpuContext, info: Tensor, result: Tensor): Promise<Tensor> {
  try {
    await checkCholesky(ctx, info);
  } catch (e) {
    result.dispose();
    throw e;
  } finally {
    info.dispose();
  }
  return result;
}

/**
 * Full symmetric inverse (M + λ·mean(diag M)·I)⁻¹ of an SPD matrix ([n,n] or [batch,n,n]; the
 * lower triangle of m is used). Accuracy per the strategy above. Throws NotPositiveDefiniteError.
 */
export async function spdInverse(ctx: GpuContext, m: Tensor, opts: SpdOptions = {}): Promise<Tensor> {
  const { n, batch, md, L, info, g } = factorDamped(ctx, m, 'spdInverse', opts);
  const nn = n * n;
  const I = eye(ctx, m.shape);
  const W = trsm(ctx, L, I, { lowerRhs: true });
  I.dispose();
  L.dispose();
  const X = ctx.empty(m.shape);
  const win = (t: Tensor, trans = false) => ({ t, off: 0, ld: n, stride: nn, trans });
  gemmWindow(ctx, win(W, true), win(W), win(X), { M: n, N: n, K: n, batch }, { lower: true, triK: true });
  W.dispose();
  symmetrizeInPlace(ctx, X);
  const T = ctx.empty(m.shape);
  const refine = opts.refine ?? DEFAULT_REFINE_INVERSE;
  for (let it = 0; it < refine; it++) {
    const R = residual(ctx, md, X, null, n, n, g);
    sumsq(ctx, R, nn, n, g);
    ctx.dispatch(GATE, {}, [dummy(ctx), dummy(ctx, 1), g.gs], [Math.ceil(batch / 64)], gateUniforms(g, nn, n, { kind: 0 }));
    gemmWindow(ctx, win(X), win(R), win(T), { M: n, N: n, K: n, batch }, { lower: true });
    elementwise(ctx, ADD, X, T, g, gateUniforms(g, nn, n, { sym: true }));
    R.dispose();
  }
  T.dispose();
  md.dispose();
  g.gs.dispose();
  return finish(ctx, info, X);
}

/** x = (M + λ·mean(diag M)·I)⁻¹·b for b: [n], [n,k] or [batch,n,k]. Throws NotPositiveDefiniteError. */
export async function spdSolve(ctx: GpuContext, m: Tensor, b: Tensor, opts: SpdOptions = {}): Promise<Tensor> {
  const { n: nm, batch: bm } = squareDims('spdSolve', m);
  const s = b.shape;
  const okShape = (s.length === 1 && s[0] === nm) || (s.length === 2 && s[0] === nm && m.shape.length === 2)
    || (s.length === 3 && s[1] === nm && s[0] === bm && m.shape.length === 3);
  if (!okShape || b.dtype !== 'f32' || b.size === 0) throw new ShapeError(`spdSolve: b must be f32 [${nm}] or [${nm},k] (or [${bm},${nm},k] for a batch), got [${s}] ${b.dtype}`);
  if (s.length === 1 && m.shape.length === 3) throw new ShapeError('spdSolve: a batch of matrices needs b of shape [batch,n,k]');
  const { n, batch, md, L, info, g } = factorDamped(ctx, m, 'spdSolve', opts);
  const k = s.length === 1 ? 1 : s[s.length - 1];
  const solve = (r: Tensor) => {
    const y = trsm(ctx, L, r);
    const x = trsm(ctx, L, y, { transpose: true });
    y.dispose();
    return x;
  };
  const x = solve(b);
  const refine = opts.refine ?? DEFAULT_REFINE_SOLVE;
  if (refine > 0) {
    const prev = ctx.empty(s);
    const size = n * k;
    // one step: d = L⁻ᵀL⁻¹(b − M·x); gate on ‖d‖ (≈ the error of x): a correction that is not
    // smaller than the previous one means divergence or the rounding floor → revert x to the iterate
    // before the previous correction and freeze. The last d is computed only for this check.
    for (let it = 0; it <= refine; it++) {
      const r = residual(ctx, md, x, b, n, k, g);
      const d = solve(r);
      sumsq(ctx, d, size, n, g);
      ctx.dispatch(GATE, {}, [dummy(ctx), dummy(ctx, 1), g.gs], [Math.ceil(batch / 64)], gateUniforms(g, size, n, { kind: 1, first: it === 0 }));
      elementwise(ctx, APPLY, x, prev, g, gateUniforms(g, size, n));
      if (it < refine) elementwise(ctx, ADD, x, d, g, gateUniforms(g, size, n));
      r.dispose();
      d.dispose();
    }
    prev.dispose();
  }
  L.dispose();
  md.dispose();
  g.gs.dispose();
  return finish(ctx, info, x);
}

/**
 * On-device check of the double-float residual (compilers may reassociate float adds, which would
 * silently reduce it to f32): R = I − M·X for a random 24×24 M and X ≈ M⁻¹ (heavy cancellation),
 * compared with the exact float64 value. Returns the max error relative to max_ij (|M||X|)_ij:
 * ~1e-13 when the arithmetic is double-float, ~1e-8 when it degraded to f32.
 */
export async function df64SelfTest(ctx: GpuContext): Promise<number> {
  const n = 24;
  let seed = 12345;
  const rnd = () => ((seed = (seed * 1103515245 + 12345) >>> 0) / 2 ** 32) * 2 - 1;
  const m = Float32Array.from({ length: n * n }, (_, e) => rnd() + (e % (n + 1) === 0 ? 4 : 0));
  // X = f32(M⁻¹) by Gauss–Jordan in float64
  const a = Float64Array.from(m);
  const inv = Float64Array.from({ length: n * n }, (_, e) => (e % (n + 1) === 0 ? 1 : 0));
  for (let c = 0; c < n; c++) {
    const d = a[c * n + c];
    for (let j = 0; j < n; j++) { a[c * n + j] /= d; inv[c * n + j] /= d; }
    for (let i = 0; i < n; i++) {
      if (i === c) continue;
      const f = a[i * n + c];
      for (let j = 0; j < n; j++) { a[i * n + j] -= f * a[c * n + j]; inv[i * n + j] -= f * inv[c * n + j]; }
    }
  }
  const x = Float32Array.from(inv);
  const M = ctx.upload(m, [n, n]);
  const X = ctx.upload(x, [n, n]);
  const gs = ctx.zeros([4]);
  const R = residual(ctx, M, X, null, n, n, { gs, batch: 1 });
  const r = await R.read();
  for (const t of [M, X, gs, R]) t.dispose();
  let worst = 0;
  let scale = 0;
  for (let i = 0; i < n; i++) {
    for (let j = 0; j < n; j++) {
      // exact in float64 up to ~1e-16·Σ|m x| (products of f32 are exact in f64)
      let s = i === j ? 1 : 0;
      let abs = 0;
      for (let k = 0; k < n; k++) { s -= m[i * n + k] * x[k * n + j]; abs += Math.abs(m[i * n + k] * x[k * n + j]); }
      worst = Math.max(worst, Math.abs(r[i * n + j] - s));
      scale = Math.max(scale, abs);
    }
  }
  return worst / scale;
}
