import { afterEach, describe, expect, it } from 'vitest';
import { gpu } from './helpers/gpu';
import { randn, f32, rng } from './helpers/rng';
import { colSums, countZeros, hasNonFinite, maxAbs, rowSums, sum, sumSquares } from '../src/kernels/reduce';
import { dispatchLimits } from '../src/kernels/elementwise';
import { colSumsRef, countZerosRef, maxAbsRef, rowSumsRef, sumRef } from '../src/reference/reduce';
import { ShapeError } from '../src/gpu/errors';
import type { GpuContext } from '../src/gpu/context';
import type { Tensor } from '../src/gpu/tensor';

const U = 2 ** -24; // unit roundoff of f32

/** Data with a non-zero mean so that cancellation does not hide ordering errors. */
function data(n: number, seed: number) {
  return f32(randn(n, seed).map((v) => v + 0.75));
}

async function read1(ctx: GpuContext, t: Tensor, u32 = false): Promise<number> {
  const v = u32 ? (await ctx.readU32(t))[0] : (await t.read())[0];
  t.dispose();
  return v;
}

afterEach(() => {
  dispatchLimits.maxWorkgroupsPerDim = 65535;
});

describe('sum / sumSquares', () => {
  // 1, one partial tile, one tile + 1 (2 passes), 1e6 (2 passes), 2^20 + 3 (3 passes)
  it.each([1, 1000, 1025, 1_000_000, (1 << 20) + 3])('pairwise sum within (log2 n + 6)·u·Σ|x| (n=%i)', async (n) => {
    const ctx = await gpu();
    const x = data(n, n);
    const t = ctx.upload(x.f32);
    const depth = Math.ceil(Math.log2(n)) + 6; // 4 sequential terms per thread + tree + one rounding per pass
    for (const squares of [false, true]) {
      const got = await read1(ctx, squares ? sumSquares(ctx, t) : sum(ctx, t));
      const ref = sumRef(x.f64, squares);
      expect(Math.abs(got - ref.sum)).toBeLessThanOrEqual(depth * U * ref.abs + 1e-30);
    }
    t.dispose();
  });

  it('adds in tree order: tiny terms are not absorbed by a large one', async () => {
    const ctx = await gpu();
    // 1 followed by 2^20 − 1 terms of 2^-25: a sequential f32 sum stays at 1 (each term is below half
    // an ulp of 1), a pairwise sum adds the tiny terms among themselves first and is within a few ulps.
    const n = 1 << 20;
    const x = new Float32Array(n).fill(2 ** -25);
    x[0] = 1;
    const t = ctx.upload(x);
    const ref = sumRef(Float64Array.from(x));
    expect(Math.abs((await read1(ctx, sum(ctx, t))) - ref.sum)).toBeLessThanOrEqual(8 * U * ref.sum);
    t.dispose();
  });

  it('sums an empty tensor to 0 and folds large grids into y', async () => {
    const ctx = await gpu();
    const e = ctx.empty([0]);
    expect(await read1(ctx, sum(ctx, e))).toBe(0);
    e.dispose();
    dispatchLimits.maxWorkgroupsPerDim = 5; // 20 workgroups → 5×4 grid
    const x = data(20_000, 3);
    const t = ctx.upload(x.f32);
    const ref = sumRef(x.f64);
    expect(Math.abs((await read1(ctx, sum(ctx, t))) - ref.sum)).toBeLessThanOrEqual(21 * U * ref.abs);
    t.dispose();
  });
});

describe('rowSums / colSums', () => {
  // 1×N, N×1, odd shapes, the thread-per-row path (C ≤ 32) and the workgroup-per-row path
  const SHAPES: Array<[number, number]> = [[1, 1], [1, 3001], [3001, 1], [7, 33], [300, 20], [5, 1000], [130, 70], [4100, 3]];
  it.each(SHAPES)('match float64 within the error model (%i×%i)', async (R, C) => {
    const ctx = await gpu();
    const x = data(R * C, R * 7 + C);
    const t = ctx.upload(x.f32, [R, C]);
    for (const squares of [false, true]) {
      const rs = await rowSums(ctx, t, { squares }).read();
      const cs = await colSums(ctx, t, { squares }).read();
      expect(rs.length).toBe(R);
      expect(cs.length).toBe(C);
      const rr = rowSumsRef(x.f64, R, C, squares);
      const cr = colSumsRef(x.f64, R, C, squares);
      const rowDepth = Math.ceil(C / 256) + 10; // sequential strided terms + 8-level tree + 1 (C ≤ 32: C terms)
      for (let r = 0; r < R; r++) expect(Math.abs(rs[r] - rr.sum[r])).toBeLessThanOrEqual(Math.max(rowDepth, C <= 32 ? C : 0) * U * rr.abs[r]);
      const colDepth = 18 * Math.max(1, Math.ceil(Math.log(R) / Math.log(64))); // 16 terms + 2-level tree per pass
      for (let c = 0; c < C; c++) expect(Math.abs(cs[c] - cr.sum[c])).toBeLessThanOrEqual(colDepth * U * cr.abs[c]);
    }
    t.dispose();
  });

  it('folds grids and rejects non-matrices', async () => {
    const ctx = await gpu();
    dispatchLimits.maxWorkgroupsPerDim = 4;
    const [R, C] = [23, 300]; // 23 row workgroups; col_sums: 5 tiles × 1 block
    const x = data(R * C, 42);
    const t = ctx.upload(x.f32, [R, C]);
    const rs = await rowSums(ctx, t).read();
    const cs = await colSums(ctx, t, { squares: true }).read();
    const rr = rowSumsRef(x.f64, R, C);
    const cr = colSumsRef(x.f64, R, C, true);
    for (let r = 0; r < R; r++) expect(Math.abs(rs[r] - rr.sum[r])).toBeLessThanOrEqual(12 * U * rr.abs[r]);
    for (let c = 0; c < C; c++) expect(Math.abs(cs[c] - cr.sum[c])).toBeLessThanOrEqual(18 * U * cr.abs[c]);
    expect(() => rowSums(ctx, t.reshape([R * C]))).toThrow(ShapeError);
    expect(() => colSums(ctx, t.reshape([1, R, C]))).toThrow(ShapeError);
    t.dispose();
  });
});

describe('countZeros / maxAbs / hasNonFinite', () => {
  function special(n: number, seed: number): Float32Array {
    const r = rng(seed);
    const pool = [0, -0, 1e-45, -1e-45, 1e-38, 2.5, -3.5];
    return Float32Array.from({ length: n }, () => (r() < 0.3 ? pool[Math.floor(r() * pool.length)] : (r() - 0.5) * 8));
  }

  it.each([1, 4097, 100_003])('counts zeros exactly, subnormals are not zero (n=%i)', async (n) => {
    const ctx = await gpu();
    const x = special(n, n);
    const t = ctx.upload(x);
    expect(await read1(ctx, countZeros(ctx, t), true)).toBe(countZerosRef(x));
    expect(await read1(ctx, maxAbs(ctx, t))).toBe(maxAbsRef(x));
    expect(await read1(ctx, hasNonFinite(ctx, t), true)).toBe(0);
    t.dispose();
  });

  it('propagates NaN and inf; folds grids', async () => {
    const ctx = await gpu();
    dispatchLimits.maxWorkgroupsPerDim = 2; // 100_003 entries / 4096 per workgroup = 25 workgroups → 2×13
    const x = special(100_003, 7);
    x[3] = -50; // the largest magnitude is negative
    const t = ctx.upload(x);
    expect(await read1(ctx, maxAbs(ctx, t))).toBe(50);
    expect(await read1(ctx, countZeros(ctx, t), true)).toBe(countZerosRef(x));
    x[99_999] = -Infinity;
    ctx.write(t, x);
    expect(await read1(ctx, maxAbs(ctx, t))).toBe(Infinity);
    expect(await read1(ctx, hasNonFinite(ctx, t), true)).toBe(1);
    x[12_345] = NaN;
    ctx.write(t, x);
    expect(await read1(ctx, maxAbs(ctx, t))).toBeNaN();
    expect(await read1(ctx, hasNonFinite(ctx, t), true)).toBe(1);
    expect(await read1(ctx, countZeros(ctx, t), true)).toBe(countZerosRef(x));
    t.dispose();
    const e = ctx.empty([0]);
    expect(await read1(ctx, maxAbs(ctx, e))).toBe(0);
    expect(await read1(ctx, countZeros(ctx, e), true)).toBe(0);
    e.dispose();
  });
});
