import { describe, expect, it } from 'vitest';
import { gpu } from './helpers/gpu';
import { randn } from './helpers/rng';
import { NotPositiveDefiniteError } from '../src/kernels/cholesky';
import { df64SelfTest, spdInverse, spdSolve } from '../src/kernels/spd';
import { dampF64, frobenius, kfacShaped, spdInverseF64, spdSolveF64, spdWithCondition } from '../src/reference/spd';

// Precision target of the SPD strategy (spd.ts): diag(M⁻¹) and M⁻¹b within 1e-5 relative of the
// float64 result for the same f32 matrix, up to condition 1e6.
const TARGET = 1e-5;

function asF32(x: Float64Array): { f32: Float32Array; f64: Float64Array } {
  const a = Float32Array.from(x);
  return { f32: a, f64: Float64Array.from(a) };
}

/** max_i |d_i − d*_i| / |d*_i| over the diagonal of an n×n inverse. */
function diagRelErr(x: ArrayLike<number>, ref: ArrayLike<number>, n: number): number {
  let worst = 0;
  for (let i = 0; i < n; i++) worst = Math.max(worst, Math.abs(x[i * n + i] - ref[i * n + i]) / Math.abs(ref[i * n + i]));
  return worst;
}

function normRelErr(x: ArrayLike<number>, ref: Float64Array): number {
  return frobenius(Float64Array.from(ref, (v, i) => v - x[i])) / frobenius(ref);
}

describe('double-float arithmetic on this device', () => {
  it('the residual R = I − M·X is double-float accurate (no reassociation, no f32 fallback)', async () => {
    const ctx = await gpu();
    const err = await df64SelfTest(ctx);
    console.log(`df64 residual error / max(|M||X|): ${err.toExponential(2)} (f32 would be ~1e-8)`);
    // df64 error model: ~n·u² = 24·2⁻⁴⁸ ≈ 1e-13, plus rounding the result to f32 (relative to R, tiny)
    expect(err).toBeLessThanOrEqual(1e-11);
  });
});

describe('spdInverse / spdSolve precision', () => {
  it.each([
    [1, 1], [2, 1e2], [33, 1e4], [96, 1e2], [96, 1e4], [96, 1e6], [150, 1e6],
  ])('n=%i, cond=%s: diag(M⁻¹) and M⁻¹b within 1e-5', async (n, cond) => {
    const ctx = await gpu();
    const { f32, f64 } = asF32(spdWithCondition(n, cond, 100 + n));
    const b = asF32(randn(n, 3));
    const m = ctx.upload(f32, [n, n]);
    const B = ctx.upload(b.f32, [n]);
    const X = await spdInverse(ctx, m);
    const x = await spdSolve(ctx, m, B);
    const X0 = await spdInverse(ctx, m, { refine: 0 });
    const xinv = await X.read();
    const ref = spdInverseF64(f64, n);
    const eDiag = diagRelErr(xinv, ref, n);
    const eDiag0 = diagRelErr(await X0.read(), ref, n);
    const eSolve = normRelErr(await x.read(), spdSolveF64(f64, b.f64, n, 1));
    console.log(`n=${n} cond=${cond}: diag err ${eDiag.toExponential(2)} (f32 only ${eDiag0.toExponential(2)}), solve err ${eSolve.toExponential(2)}`);
    expect(eDiag).toBeLessThanOrEqual(TARGET);
    expect(eSolve).toBeLessThanOrEqual(TARGET);
    // symmetric result
    for (let i = 0; i < n; i++) for (let j = 0; j < i; j++) expect(xinv[i * n + j]).toBe(xinv[j * n + i]);
    expect(Array.from(await m.read())).toEqual(Array.from(f32));
    for (const t of [m, B, X, x, X0]) t.dispose();
  });

  it('K-FAC-shaped activation factor with damping 0.01 (batch of 2, multi-column solve)', async () => {
    const ctx = await gpu();
    const n = 120;
    const k = 3;
    const mats = [0, 1].map((q) => asF32(kfacShaped(n, { seed: 50 + q })));
    const data = new Float32Array(2 * n * n);
    mats.forEach((mm, q) => data.set(mm.f32, q * n * n));
    const b = asF32(randn(2 * n * k, 8));
    const m = ctx.upload(data, [2, n, n]);
    const B = ctx.upload(b.f32, [2, n, k]);
    const X = await spdInverse(ctx, m, { damping: 0.01 });
    const x = await spdSolve(ctx, m, B, { damping: 0.01 });
    const xi = await X.read();
    const xs = await x.read();
    for (let q = 0; q < 2; q++) {
      const md = dampF64(mats[q].f64, n, 0.01);
      const ref = spdInverseF64(md, n);
      const eDiag = diagRelErr(xi.subarray(q * n * n), ref, n);
      const eSolve = normRelErr(xs.subarray(q * n * k, (q + 1) * n * k), spdSolveF64(md, b.f64.subarray(q * n * k, (q + 1) * n * k), n, k));
      console.log(`kfac q=${q}: diag err ${eDiag.toExponential(2)}, solve err ${eSolve.toExponential(2)}`);
      expect(eDiag).toBeLessThanOrEqual(TARGET);
      expect(eSolve).toBeLessThanOrEqual(TARGET);
    }
    expect(Array.from(await m.read())).toEqual(Array.from(data));
    for (const t of [m, B, X, x]) t.dispose();
  });

  it('reaches 1e-5 on diag(M⁻¹) at κ = 1e7 too (the correction series takes 5 terms there)', async () => {
    const ctx = await gpu();
    const n = 96;
    const { f32, f64 } = asF32(spdWithCondition(n, 1e7, 7));
    const m = ctx.upload(f32, [n, n]);
    const X = await spdInverse(ctx, m);
    const X1 = await spdInverse(ctx, m, { refine: 1 });
    const ref = spdInverseF64(f64, n);
    const e = diagRelErr(await X.read(), ref, n);
    const e1 = diagRelErr(await X1.read(), ref, n);
    console.log(`n=${n} cond=1e7: diag err ${e.toExponential(2)} (first-order term only ${e1.toExponential(2)})`);
    expect(e).toBeLessThanOrEqual(TARGET);
    expect(e1).toBeGreaterThan(10 * e);
    for (const t of [m, X, X1]) t.dispose();
  });

  it('returns the f32 inverse unchanged where the series does not converge (κ = 1e8)', async () => {
    const ctx = await gpu();
    const n = 64;
    const m = ctx.upload(asF32(spdWithCondition(n, 1e8, 72)).f32, [n, n]);
    const X = await spdInverse(ctx, m);
    const X0 = await spdInverse(ctx, m, { refine: 0 });
    expect(Array.from(await X.read())).toEqual(Array.from(await X0.read()));
    for (const t of [m, X, X0]) t.dispose();
  });

  it('throws NotPositiveDefiniteError for an indefinite matrix and shape errors for bad b', async () => {
    const ctx = await gpu();
    const n = 20;
    const a = asF32(spdWithCondition(n, 10, 2)).f32;
    a[7 * n + 7] = -5;
    const m = ctx.upload(a, [n, n]);
    await expect(spdInverse(ctx, m)).rejects.toBeInstanceOf(NotPositiveDefiniteError);
    await expect(spdInverse(ctx, m)).rejects.toMatchObject({ index: 7 });
    const B = ctx.upload(new Float32Array(n + 1), [n + 1]);
    await expect(spdSolve(ctx, m, B)).rejects.toThrow(/spdSolve: b must be/);
    m.dispose();
    B.dispose();
  });
});
