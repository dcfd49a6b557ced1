/**
 * The peer kernels on their own: exact k-smallest selection (both paths: per-entry rank for segments
 * ≤ 1024, workgroup radix select beyond) against a float64 sort by (value, index) on data with many
 * exact ties, ±0 and NaN; n:m flags; SparseGPT's U (upper Cholesky factor of the damped H⁻¹) against
 * float64. Expected values come from the references; no hand-typed arrays.
 */
import { beforeAll, describe, expect, it } from 'vitest';
import type { GpuContext } from '../src/gpu/context';
import { choleskyF64, spdInverseF64 } from '../src/reference/spd';
import { nmFlags, selectSmallest } from '../src/surgeon/peers/kernels';
import { upperFactorOfInverse } from '../src/surgeon/peers/sparsegpt';
import { gpu } from './helpers/gpu';
import { randn, rng } from './helpers/rng';

/** Order of select.wgsl: NaN last, -0 == +0, then lower index. */
function refFlags(x: Float32Array, len: number, k: number): Uint32Array {
  const out = new Uint32Array(x.length);
  const v = (a: number) => (Number.isNaN(a) ? Infinity : a);
  for (let s = 0; s < x.length; s += len) {
    const idx = Array.from({ length: len }, (_, i) => i).sort((a, b) => {
      const va = x[s + a], vb = x[s + b];
      if (Number.isNaN(va) !== Number.isNaN(vb)) return Number.isNaN(va) ? 1 : -1;
      return v(va) - v(vb) || a - b;
    });
    for (let i = 0; i < k; i++) out[s + idx[i]] = 1;
  }
  return out;
}

describe('peer kernels', () => {
  let ctx: GpuContext;
  beforeAll(async () => {
    ctx = await gpu();
  });

  it.each([
    [37, 5, 1], [37, 5, 37], [37, 5, 18], [1, 3, 1], [64, 17, 32], // rank path
    [1025, 2, 1], [3000, 1, 1500], [2500, 2, 2500], [5000, 1, 4999], // radix path
  ])('selectSmallest: segments of %i × %i, k = %i, with ties, ±0 and NaN', async (len, segments, k) => {
    const r = rng(len * 31 + k);
    // few distinct values → many exact ties at the threshold
    const x = Float32Array.from({ length: len * segments }, () => {
      const u = r();
      return u < 0.02 ? NaN : u < 0.1 ? -0 : u < 0.2 ? 0 : Math.round((r() - 0.3) * 12) / 4;
    });
    const S = ctx.upload(x);
    const f = selectSmallest(ctx, S, len, segments, k);
    const got = await ctx.readU32(f);
    S.dispose(); f.dispose();
    expect(got).toEqual(refFlags(x, len, k));
  });

  it('nmFlags 2:4 and 3:8 with ties', async () => {
    for (const [n, m] of [[2, 4], [3, 8]]) {
      const r = rng(m);
      const x = Float32Array.from({ length: 40 * m }, () => Math.round(r() * 6));
      const S = ctx.upload(x);
      const f = nmFlags(ctx, S, n, m);
      expect(await ctx.readU32(f)).toEqual(refFlags(x, m, n));
      S.dispose(); f.dispose();
    }
  });

  it.each([1, 7, 45])('upperFactorOfInverse n = %i: UᵀU = (H + 0.01·mean diag·I)⁻¹', async (n) => {
    const N = 3 * n + 5;
    const X = randn(N * n, n);
    const H = new Float64Array(n * n);
    for (let t = 0; t < N; t++) for (let i = 0; i < n; i++) for (let j = 0; j < n; j++) H[i * n + j] += (X[t * n + i] * X[t * n + j] * Math.sqrt((1 + i) * (1 + j))) / N; // graded scales
    const h32 = Float32Array.from(H);
    const Hd = Float64Array.from(h32);
    let mean = 0;
    for (let i = 0; i < n; i++) mean += Hd[i * n + i] / n;
    for (let i = 0; i < n; i++) Hd[i * n + i] += 0.01 * mean;
    const { L } = choleskyF64(spdInverseF64(Hd, n), n); // U = Lᵀ
    const t = ctx.upload(h32, [n, n]);
    const { U, info } = upperFactorOfInverse(ctx, t, 0.01);
    const u = await U.read();
    expect((await ctx.readU32(info))[0]).toBe(0);
    let worst = 0, scale = 0;
    for (let i = 0; i < n; i++) for (let j = i; j < n; j++) {
      worst = Math.max(worst, Math.abs(u[i * n + j] - L[j * n + i]));
      scale = Math.max(scale, Math.abs(L[j * n + i]));
    }
    for (const x of [t, U, info]) x.dispose();
    // f32 Cholesky + triangular inverse: error ≲ n·κ(P)·u·max|U| with κ(P) = √κ(H_λ) ≤ ~30 here
    console.log(`[peers] U n=${n}: max |ΔU| ${worst.toExponential(2)} (max |U| ${scale.toExponential(2)})`);
    expect(worst).toBeLessThan(n * 30 * 6e-8 * scale + 1e-7 * scale);
  });
});
