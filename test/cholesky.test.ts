import { describe, expect, it } from 'vitest';
import { gpu } from './helpers/gpu';
import { randn } from './helpers/rng';
import { checkCholesky, cholesky, NotPositiveDefiniteError, trsm } from '../src/kernels/cholesky';
import { choleskyF64, frobenius, spdWithCondition, trsmF64 } from '../src/reference/spd';

const U = 2 ** -24; // f32 unit roundoff

/** Round to f32 and keep the float64 copy of exactly what the GPU sees. */
function asF32(x: Float64Array): { f32: Float32Array; f64: Float64Array } {
  const a = Float32Array.from(x);
  return { f32: a, f64: Float64Array.from(a) };
}

/** ‖L·Lᵀ − A‖_F / ‖A‖_F for one n×n matrix (L read from the GPU result, A the f32 input). */
function relResidual(L: ArrayLike<number>, A: ArrayLike<number>, n: number): number {
  const d = new Float64Array(n * n);
  for (let i = 0; i < n; i++) {
    for (let j = 0; j <= i; j++) {
      let s = 0;
      for (let p = 0; p <= j; p++) s += L[i * n + p] * L[j * n + p];
      d[i * n + j] = s - A[i * n + j];
      d[j * n + i] = d[i * n + j];
    }
  }
  return frobenius(d) / frobenius(A);
}

describe('blocked Cholesky (f32)', () => {
  // Backward-error model: ‖ΔA‖ ≤ γ_{n+1}·‖|L||Lᵀ|‖ (worst case, ≈ n·u); with independent
  // rounding errors the probabilistic bound λ·√n·u holds with overwhelming probability (Higham &
  // Mary 2019). λ = 8 here; observed residuals are ~1e-7 at n = 130, any condition number.
  const bound = (n: number) => 8 * Math.sqrt(n + 1) * U;

  it.each([
    [1, 1e2], [2, 1e2], [17, 1e3], [63, 1e2], [63, 1e6], [130, 1e4], [130, 1e6],
  ])('n=%i, cond=%s: ‖LLᵀ−A‖/‖A‖ within the error model, upper part zero', async (n, cond) => {
    const ctx = await gpu();
    const { f32, f64 } = asF32(spdWithCondition(n, cond, 11 + n));
    const m = ctx.upload(f32, [n, n]);
    const { L, info } = cholesky(ctx, m);
    await checkCholesky(ctx, info);
    const l = await L.read();
    const res = relResidual(l, f64, n);
    console.log(`n=${n} cond=${cond}: ‖LLᵀ−A‖/‖A‖ = ${res.toExponential(2)} (bound ${bound(n).toExponential(2)})`);
    expect(res).toBeLessThanOrEqual(bound(n));
    for (let i = 0; i < n; i++) for (let j = i + 1; j < n; j++) expect(l[i * n + j]).toBe(0);
    // the caller's matrix is untouched
    expect(Array.from(await m.read())).toEqual(Array.from(f32));
    for (const t of [m, L, info]) t.dispose();
  });

  it('factors a batch [3, 45, 45] with different conditions', async () => {
    const ctx = await gpu();
    const n = 45;
    const conds = [1e2, 1e5, 1e3];
    const data = new Float32Array(3 * n * n);
    conds.forEach((c, b) => data.set(Float32Array.from(spdWithCondition(n, c, 5 + b)), b * n * n));
    const m = ctx.upload(data, [3, n, n]);
    const { L, info } = cholesky(ctx, m);
    expect(Array.from(await ctx.readU32(info))).toEqual([0, 0, 0]);
    const l = await L.read();
    for (let b = 0; b < 3; b++) {
      const res = relResidual(l.subarray(b * n * n), Float64Array.from(data.subarray(b * n * n, (b + 1) * n * n)), n);
      expect(res).toBeLessThanOrEqual(bound(n));
    }
    for (const t of [m, L, info]) t.dispose();
  });

  it('reports the first non-positive pivot (per batch entry) as NotPositiveDefiniteError', async () => {
    const ctx = await gpu();
    const n = 50;
    const good = asF32(spdWithCondition(n, 1e2, 3)).f64;
    const bad = Float64Array.from(good);
    bad[37 * n + 37] = -1; // pivot 37 (inside the second 32-block) becomes negative
    const expected = choleskyF64(bad, n).fail;
    expect(expected).toBe(37);
    const data = new Float32Array(2 * n * n);
    data.set(Float32Array.from(good), 0);
    data.set(Float32Array.from(bad), n * n);
    const m = ctx.upload(data, [2, n, n]);
    const { L, info } = cholesky(ctx, m);
    expect(Array.from(await ctx.readU32(info))).toEqual([0, expected + 1]);
    const err = await checkCholesky(ctx, info).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(NotPositiveDefiniteError);
    expect((err as NotPositiveDefiniteError).index).toBe(expected);
    expect((err as NotPositiveDefiniteError).batchIndex).toBe(1);
    expect((err as Error).name).toBe('NotPositiveDefiniteError');
    for (const t of [m, L, info]) t.dispose();
  });

  it('a NaN entry fails at the pivot where it arrives', async () => {
    const ctx = await gpu();
    const n = 40;
    const a = asF32(spdWithCondition(n, 1e2, 4)).f64;
    a[33 * n + 3] = NaN;
    const expected = choleskyF64(a, n).fail;
    const m = ctx.upload(Float32Array.from(a), [n, n]);
    const { L, info } = cholesky(ctx, m);
    const err = await checkCholesky(ctx, info).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(NotPositiveDefiniteError);
    expect((err as NotPositiveDefiniteError).index).toBe(expected);
    for (const t of [m, L, info]) t.dispose();
  });
});

describe('blocked triangular solve', () => {
  it.each([
    [1, 1, false], [45, 3, false], [45, 3, true], [70, 1, true], [97, 40, false], [97, 40, true],
  ])('n=%i, k=%i, transpose=%s matches the float64 solve', async (n, k, transpose) => {
    const ctx = await gpu();
    const a = asF32(spdWithCondition(n, 1e2, 21 + n)).f64;
    const Lref = asF32(choleskyF64(a, n).L);
    const b = asF32(randn(n * k, 7 + k));
    const L = ctx.upload(Lref.f32, [n, n]);
    const B = ctx.upload(b.f32, k === 1 ? [n] : [n, k]);
    const X = trsm(ctx, L, B, { transpose });
    expect(X.shape).toEqual(B.shape);
    const x = await X.read();
    const ref = trsmF64(Lref.f64, b.f64, n, k, transpose);
    // forward error ≤ κ(L)·γ_n normwise; κ(L) = √κ(A) = 10
    const diff = frobenius(Float64Array.from(x, (v, i) => v - ref[i]));
    expect(diff / frobenius(ref)).toBeLessThanOrEqual(10 * (n + 1) * U * 4);
    expect(Array.from(await B.read())).toEqual(Array.from(b.f32));
    for (const t of [L, B, X]) t.dispose();
  });

  it('solves a batch [2, 33, 5] in both modes', async () => {
    const ctx = await gpu();
    const n = 33;
    const k = 5;
    const Ls = [0, 1].map((q) => asF32(choleskyF64(asF32(spdWithCondition(n, 1e2, 40 + q)).f64, n).L));
    const b = asF32(randn(2 * n * k, 9));
    const Ldata = new Float32Array(2 * n * n);
    Ls.forEach((l, q) => Ldata.set(l.f32, q * n * n));
    const L = ctx.upload(Ldata, [2, n, n]);
    const B = ctx.upload(b.f32, [2, n, k]);
    for (const transpose of [false, true]) {
      const X = trsm(ctx, L, B, { transpose });
      const x = await X.read();
      for (let q = 0; q < 2; q++) {
        const ref = trsmF64(Ls[q].f64, b.f64.subarray(q * n * k, (q + 1) * n * k), n, k, transpose);
        const diff = frobenius(Float64Array.from(ref, (v, i) => v - x[q * n * k + i]));
        expect(diff / frobenius(ref)).toBeLessThanOrEqual(10 * (n + 1) * U * 4);
      }
      X.dispose();
    }
    for (const t of [L, B]) t.dispose();
  });
});
