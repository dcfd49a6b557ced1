/**
 * SPD inverse and solve on the GPU with a precision strategy (WGSL has no f64).
 *
 * 1. Factor: M_λ = M + λ·mean(diag M)·I (on a copy), blocked f32 Cholesky M_λ = L·Lᵀ. The pivot
 *    flags are read back once, after all the work below is queued (NotPositiveDefiniteError).
 * 2. W = L⁻¹ in f32 (trinv.ts: batched recursive doubling, ~4·log2(n/32) dispatches). The f32
 *    inverse Wᵀ·W (refine 0) has relative error ~κ·u (u = 2⁻²⁴ ≈ 6e-8): 4e-3 on diag at κ = 1e6.
 * 3. Inverse, corrected with one double-float product on n³/6 multiply-adds:
 *      E = M_λ − L·Lᵀ   (df64.wgsl CHOLRES, ~1e-11 of |L||Lᵀ|; the only step that needs it:
 *                        the f32 product's u·|L||Lᵀ| is as large as E itself),
 *      H = I − W·L      (plain f32 suffices: ‖H‖ ~ κ(L)·u = √κ·u, its own error is u-relative),
 *      S = I − W·M_λ·Wᵀ = H + Hᵀ − W·E·Wᵀ (− H·Hᵀ ≤ 2e-7 at κ = 1e7, left out), symmetric,
 *      M_λ⁻¹ = Wᵀ·(I − S)⁻¹·W = Wᵀ·P·W,  P = I + S + S² + … (‖S‖₂ ≈ κ·u/10: 7e-3 at κ = 1e6).
 *    Every step past E is an f32 GEMM on small or triangular operands (trsm.wgsl: triangular K
 *    ranges, lower tiles), ≈ (11/6 + (terms−1)/2)·n³ multiply-adds with the factorisation. The series is gated on
 *    the GPU (no readback): term j is computed only while the bound ‖S^j‖_F·‖S‖_F on the next term
 *    is ≥ 1e-6 (emulated: κ ≤ 1e4: S alone, κ = 1e6: 3–4 terms, κ = 1e7: 5), and a term that does not shrink
 *    sets P back to I (no convergence: the f32 inverse is returned). The last product Wᵀ·(P·W)
 *    sums K slices apart (its diagonal is a sum of n positive terms). X stays f32.
 *    Why not Newton–Schulz on R = I − M·X (the previous strategy, 3 df64 GEMMs of n³ each, ~35
 *    f32 operations per multiply-add): here the double-float work is ~1/50 of that, and E needs
 *    precision relative to |L||Lᵀ| ≈ |M| only, not to |M||X| ≈ κ.
 * 4. Solve: x₀ = L⁻ᵀ·(L⁻¹·b), then classical refinement x ← x + d, d = L⁻ᵀL⁻¹·r, with the
 *    double-float residual r = b − M_λ·x (df64.wgsl RESIDUAL: exact split products, TwoSum; error
 *    ~ n·u²·|M||x|), linear rate ~ κ·u per step. ‖d‖ estimates the error of x: once a correction is
 *    not smaller than the previous one (divergence at κ·u ≳ 1, or the rounding floor) x is reverted
 *    to the iterate before the previous correction and frozen; one extra d checks the last step.
 *    (The residual norm is no guide: rounding x to f32 raises ‖r‖ while the error falls.)
 * Measured (bench/precision.ts, SwiftShader, n = 32…512): diag(M⁻¹) within 3e-7–9e-7 up to κ = 1e6
 * and on K-FAC-shaped matrices, 3e-6–1e-5 at κ = 1e7 (9.8e-6 at n = 32; more terms do not help:
 * E's and H's precision are the limit there) (f32 alone: 4e-3 at 1e6, 3e-2 at 1e7); solves
 * ≤ 1e-7 up to 1e6. The f32 floor of the final products (~√n·u on a diagonal) is what is left:
 * the previous Newton–Schulz inverse reached 6e-8 with three n³ double-float products. Where it breaks down: at
 * κ = 1e8 ‖S‖₂ ≈ 1, the series does not converge and the f32 inverse (error 0.1–1) is returned;
 * solves too stay at f32 error there; the f32 matrix itself barely determines its inverse.
 * The df64 kernels rely on twoSum's optimiser guard (df64.wgsl); df64SelfTest checks RESIDUAL on
 * the device (2.6e-14 on SwiftShader and on the H200's NVIDIA driver; 1e-8 would mean plain f32),
 * test/spd-kernels.test.ts checks CHOLRES.
 */

import dfSource from '../../shaders/df64.wgsl?raw';
import { grid1d, packUniforms, type GpuContext, type KernelSpec } from '../gpu/context';
import type { Tensor } from '../gpu/tensor';
import { ShapeError } from '../gpu/errors';
import { dampInPlace } from './diag';
import { checkCholesky, cholesky, dummy, eye, gemmWindow, squareDims, symmetrizeInPlace, trsm, type Window } from './cholesky';
import { triangularInverse } from './trinv';

export interface SpdOptions {
  /** λ: invert M + λ·mean(diag M)·I; default 0. */
  damping?: number;
  /**
   * Inverse: most terms of the correction series (default 5; each term past the first is one f32
   * product, taken only while it matters). Solve: refinement iterations (default 4).
   * 0 returns the f32 result.
   */
  refine?: number;
}

// κ = 1e7: ‖S‖₂ ≈ 5e-2, S⁵ ≈ 3e-7; the gate stops earlier for smaller κ (1e6: 3 terms, 1e4: 1).
const DEFAULT_TERMS = 5;
// Linear rate κ·u ≈ 0.06 at κ = 1e6: 4 steps reach 1e-5; a step costs O(n²·k) only.
const DEFAULT_REFINE_SOLVE = 4;
// The series stops once the bound ‖S^{j+1}‖_F ≤ ‖S^j‖_F·‖S‖_F on the next term is below this
// (2-norm ≤ Frobenius, and the diagonal's relative error is ≤ the 2-norm of what is left out).
const SERIES_TOL = 1e-6;

const RESIDUAL: KernelSpec = { name: 'df64.residual', source: dfSource, entry: 'residual', bindings: ['read', 'read', 'read', 'write', 'read'], uniform: true };
const CHOLRES: KernelSpec = { name: 'df64.cholResidual', source: dfSource, entry: 'cholResidual', bindings: ['read', 'read', 'write'], uniform: true };
const GATE_BINDINGS: KernelSpec['bindings'] = ['write', 'write', 'write'];
const SUMSQ: KernelSpec = { name: 'df64.sumsq', source: dfSource, entry: 'sumsq', bindings: GATE_BINDINGS, uniform: true };
const GATE: KernelSpec = { name: 'df64.gate', source: dfSource, entry: 'gate', bindings: GATE_BINDINGS, uniform: true };
const APPLY: KernelSpec = { name: 'df64.apply', source: dfSource, entry: 'apply', bindings: GATE_BINDINGS, uniform: true };
const ADD: KernelSpec = { name: 'df64.addGated', source: dfSource, entry: 'addGated', bindings: GATE_BINDINGS, uniform: true };

/** Per-matrix gate state (df64.wgsl GATE) and the partial sums of sumsq (`parts` per matrix). */
interface Gate { gs: Tensor; sums: Tensor; parts: number; batch: number }

function makeGate(ctx: GpuContext, batch: number, size: number): Gate {
  // ≥ 64 Ki elements per sumsq workgroup, at most 256 workgroups per matrix (one gate workgroup adds them)
  const parts = Math.max(1, Math.min(256, Math.ceil(size / 65536)));
  return { gs: ctx.zeros([batch * 4]), sums: ctx.empty([batch * parts]), parts, batch };
}

function disposeGate(g: Gate): void {
  g.gs.dispose();
  g.sums.dispose();
}

type GateKind = 1 | 2; // 1: solve refinement, 2: inverse correction series

function gateUniforms(g: Gate, size: number, n: number, o: { kind?: GateKind; sym?: boolean; first?: boolean } = {}): ArrayBuffer {
  return packUniforms([['u32', size], ['u32', n], ['u32', o.kind ?? 1], ['u32', o.sym ? 1 : 0], ['f32', SERIES_TOL * SERIES_TOL], ['u32', g.batch], ['u32', o.first ? 1 : 0], ['u32', g.parts]]);
}

/** R = B − M·X (identity: I − M·X) in double-float, rounded to f32; M [batch,n,n], X/B [batch,n,k]. */
function residual(ctx: GpuContext, m: Tensor, x: Tensor, b: Tensor | null, n: number, k: number, gs: Tensor, batch: number): Tensor {
  const r = ctx.empty(x.shape);
  const u = packUniforms([['u32', n], ['u32', k], ['u32', b ? 0 : 1], ['f32', 1], ['u32', n * n], ['u32', n * k], ['u32', n * k], ['u32', n * k]]);
  ctx.dispatch(RESIDUAL, { defines: { RESIDUAL: true } }, [m, x, b ?? x, r, gs], [Math.ceil(k / 64), Math.ceil(n / 64), batch], u);
  return r;
}

/**
 * E = M − L·Lᵀ (M [batch,n,n] symmetric, L its f32 Cholesky factor) to ~1e-11 of |L||Lᵀ| (df64.wgsl
 * CHOLRES), rounded to f32; the lower triangle only (the upper part of E is unspecified).
 */
export function cholResidual(ctx: GpuContext, m: Tensor, L: Tensor): Tensor {
  const { n, batch } = squareDims('cholResidual', m);
  const e = ctx.empty(m.shape);
  const t = Math.ceil(n / 64);
  ctx.dispatch(CHOLRES, { defines: { CHOLRES: true } }, [m, L, e], [t, t, batch], packUniforms([['u32', n], ['f32', 1], ['u32', n * n], ['u32', 0]]));
  return e;
}

/** Gate on ‖t‖² (sumsq into partials, then one gate workgroup per matrix). */
function measure(ctx: GpuContext, t: Tensor, size: number, n: number, g: Gate, kind: GateKind, first: boolean): void {
  const u = gateUniforms(g, size, n, { kind, first });
  ctx.dispatch(SUMSQ, {}, [t, g.sums, g.gs], [g.parts, g.batch], u);
  ctx.dispatch(GATE, {}, [dummy(ctx), g.sums, g.gs], [g.batch], u);
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
  // the Cholesky reads the lower triangle only; the residuals read all of M: make it symmetric
  symmetrizeInPlace(ctx, md);
  const { L, info } = cholesky(ctx, md);
  return { n, batch, md, L, info };
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

/** The n×n matrices of t as a GEMM window (batch stride n²). */
function whole(t: Tensor, n: number, trans = false): Window {
  return { t, off: 0, ld: n, stride: n * n, trans };
}

/**
 * S = I − W·M·Wᵀ (symmetric, full storage) from M = L·Lᵀ + E and W·L = I − H:
 * S = H + Hᵀ − H·Hᵀ − W·E·Wᵀ; H·Hᵀ (~κ(L)²u² ≤ 2e-7 at κ = 1e7) is left out. Disposes md and L.
 */
function correction(ctx: GpuContext, md: Tensor, L: Tensor, W: Tensor, n: number, batch: number): Tensor {
  const dims = { M: n, N: n, K: n, batch };
  const shape = md.shape;
  const E = cholResidual(ctx, md, L);
  md.dispose();
  symmetrizeInPlace(ctx, E);
  // lower triangle of H = I − W·L (both lower: j ≤ k ≤ i)
  const S = ctx.empty(shape);
  gemmWindow(ctx, whole(W, n), whole(L, n), whole(S, n), dims, { alpha: -1, lower: true, aLower: true, bLower: true, diagAdd: 1, label: 'H' });
  L.dispose();
  const T = ctx.empty(shape);
  gemmWindow(ctx, whole(W, n), whole(E, n), whole(T, n), dims, { aLower: true, label: 'WE' });
  E.dispose();
  // lower triangle of H + Hᵀ is H's with the diagonal doubled; Wᵀ is upper (k ≤ j)
  gemmWindow(ctx, whole(T, n), whole(W, n, true), whole(S, n), dims, { alpha: -1, beta: 1, lower: true, bUpper: true, diagScale: 2, label: 'WEWt' });
  T.dispose();
  symmetrizeInPlace(ctx, S);
  return S;
}

/**
 * P = I + S + S² + … (at most `terms` terms), gated on the GPU (df64.wgsl GATE, series kind): each
 * term past the first is one product S·S^{j−1} on lower tiles, skipped once the series has stopped.
 */
function series(ctx: GpuContext, S: Tensor, terms: number, n: number, batch: number): Tensor {
  const g = makeGate(ctx, batch, n * n);
  const P = eye(ctx, S.shape);
  const add = (t: Tensor) => elementwise(ctx, ADD, P, t, g, gateUniforms(g, n * n, n, { kind: 2 }));
  measure(ctx, S, n * n, n, g, 2, true);
  add(S);
  let prev = S;
  for (let j = 2; j <= terms; j++) {
    const T = ctx.empty(S.shape);
    gemmWindow(ctx, whole(S, n), whole(prev, n), whole(T, n), { M: n, N: n, K: n, batch }, { lower: true, gate: g.gs, label: 'series' });
    symmetrizeInPlace(ctx, T);
    measure(ctx, T, n * n, n, g, 2, false);
    add(T);
    if (prev !== S) prev.dispose();
    prev = T;
  }
  if (prev !== S) prev.dispose();
  disposeGate(g);
  return P;
}

/**
 * Full symmetric inverse (M + λ·mean(diag M)·I)⁻¹ of an SPD matrix ([n,n] or [batch,n,n]; the
 * lower triangle of m is used). Accuracy per the strategy above. Throws NotPositiveDefiniteError.
 */
export async function spdInverse(ctx: GpuContext, m: Tensor, opts: SpdOptions = {}): Promise<Tensor> {
  const { n, batch, md, L, info } = factorDamped(ctx, m, 'spdInverse', opts);
  const dims = { M: n, N: n, K: n, batch };
  const W = triangularInverse(ctx, L);
  const terms = opts.refine ?? DEFAULT_TERMS;
  let X: Tensor;
  if (terms === 0) {
    md.dispose();
    L.dispose();
    X = ctx.empty(m.shape);
    // X = Wᵀ·W on lower tiles (Wᵀ upper, W lower: K from max(row0, col0))
    gemmWindow(ctx, whole(W, n, true), whole(W, n), whole(X, n), dims, { lower: true, triK: true, sliced: true, label: 'WtW' });
  } else {
    const S = correction(ctx, md, L, W, n, batch);
    const P = series(ctx, S, terms, n, batch);
    S.dispose();
    const Q = ctx.empty(m.shape);
    gemmWindow(ctx, whole(P, n), whole(W, n), whole(Q, n), dims, { bLower: true, label: 'PW' });
    P.dispose();
    X = ctx.empty(m.shape);
    gemmWindow(ctx, whole(W, n, true), whole(Q, n), whole(X, n), dims, { lower: true, aUpper: true, sliced: true, label: 'WtQ' });
    Q.dispose();
  }
  W.dispose();
  symmetrizeInPlace(ctx, X);
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
  const { n, batch, md, L, info } = factorDamped(ctx, m, 'spdSolve', opts);
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
    const g = makeGate(ctx, batch, size);
    // one step: d = L⁻ᵀL⁻¹(b − M·x); gate on ‖d‖ (≈ the error of x): a correction that is not
    // smaller than the previous one means divergence or the rounding floor → revert x to the iterate
    // before the previous correction and freeze. The last d is computed only for this check.
    for (let it = 0; it <= refine; it++) {
      const r = residual(ctx, md, x, b, n, k, g.gs, batch);
      const d = solve(r);
      measure(ctx, d, size, n, g, 1, it === 0);
      elementwise(ctx, APPLY, x, prev, g, gateUniforms(g, size, n));
      if (it < refine) elementwise(ctx, ADD, x, d, g, gateUniforms(g, size, n));
      r.dispose();
      d.dispose();
    }
    prev.dispose();
    disposeGate(g);
  }
  L.dispose();
  md.dispose();
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
  const R = residual(ctx, M, X, null, n, n, gs, 1);
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
