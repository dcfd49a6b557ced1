import { afterEach, describe, expect, it } from 'vitest';
import { gpu } from './helpers/gpu';
import { randn, rng } from './helpers/rng';
import {
  countLessEqual, floorToF32, kthSmallest, kthSmallestMany, kthSmallestTensor, maskLessEqual,
} from '../src/kernels/select';
import { dispatchLimits } from '../src/kernels/elementwise';
import { compareNaNLast, countLessEqualRef, sortedRef } from '../src/reference/reduce';
import { ShapeError } from '../src/gpu/errors';
import type { GpuContext } from '../src/gpu/context';
import type { Tensor } from '../src/gpu/tensor';

/** Same value in the selection order: NaN equals NaN, -0 equals +0 (the GPU returns +0 for zero). */
function expectSameValue(got: number, want: number, what: string) {
  if (Number.isNaN(want)) expect(got, what).toBeNaN();
  else if (want === 0) expect(Object.is(got, 0), `${what}: +0 expected, got ${got}`).toBe(true);
  else expect(got, what).toBe(want);
}

async function readCount(ctx: GpuContext, t: Tensor): Promise<number> {
  const v = (await ctx.readU32(t))[0];
  t.dispose();
  return v;
}

/** Hard cases: duplicates, ±0, negatives, subnormals, ±inf and NaN of both signs. */
function tricky(n: number, seed: number): Float32Array {
  const r = rng(seed);
  const specials = [0, -0, 1e-45, -1e-45, 3e-39, Infinity, -Infinity, NaN, -NaN, 1, -1, 2.5];
  return Float32Array.from({ length: n }, () => {
    const u = r();
    if (u < 0.25) return specials[Math.floor(r() * specials.length)];
    if (u < 0.6) return Math.round((r() - 0.5) * 8) / 2; // heavy duplicates
    return (r() - 0.5) * 1e3;
  });
}

afterEach(() => {
  dispatchLimits.maxWorkgroupsPerDim = 65535;
});

describe('kthSmallest (radix select)', () => {
  it('n = 1', async () => {
    const ctx = await gpu();
    for (const v of [-0, 3.25, -7, NaN, Infinity]) {
      const t = ctx.upload(Float32Array.of(v));
      expectSameValue(await kthSmallest(ctx, t, 0), Math.fround(v), `[${v}]`);
      t.dispose();
    }
  });

  it.each([2, 17, 4099])('matches sorting on duplicates, ±0, subnormals, ±inf, NaN (n=%i)', async (n) => {
    const ctx = await gpu();
    const x = tricky(n, n);
    const sorted = sortedRef([x]);
    const t = ctx.upload(x);
    const ks = new Set([0, 1, n >> 1, n - 2, n - 1].filter((k) => k >= 0 && k < n));
    const r = rng(n + 1);
    for (let i = 0; i < 12; i++) ks.add(Math.floor(r() * n));
    for (const k of ks) expectSameValue(await kthSmallest(ctx, t, k), sorted[k], `k=${k}`);
    t.dispose();
  });

  it('n = 1e6 normal random, k at 0, n−1, middle; then τ = 30 % quantile kept on the GPU', async () => {
    const ctx = await gpu();
    const n = 1_000_000;
    const x = Float32Array.from(randn(n, 2024));
    const sorted = sortedRef([x]);
    const t = ctx.upload(x);
    for (const k of [0, n - 1, n >> 1]) {
      expectSameValue(await kthSmallest(ctx, t, k), sorted[k], `k=${k}`);
    }
    // τ kept on the GPU: count and mask agree with the reference, and rank invariants hold
    const k = Math.floor(0.3 * n);
    const tau = kthSmallestTensor(ctx, t, k);
    const count = await readCount(ctx, countLessEqual(ctx, t, tau));
    expect(count).toBe(countLessEqualRef([x], sorted[k]));
    expect(count).toBeGreaterThanOrEqual(k + 1);
    const mask = await maskLessEqual(ctx, t, tau).read();
    for (let i = 0; i < n; i += 997) expect(mask[i]).toBe(x[i] <= sorted[k] ? 1 : 0);
    tau.dispose();
    t.dispose();
  });

  it('kthSmallestMany treats 3 tensors as one array (and folds grids)', async () => {
    const ctx = await gpu();
    dispatchLimits.maxWorkgroupsPerDim = 3; // one dispatch of 5 + 1 + 1 workgroups (4096 entries each) → 3×3 grid, 2 idle
    const parts = [tricky(20_000, 1), Float32Array.from(randn(3001, 2)), tricky(1, 3)];
    const sorted = sortedRef(parts);
    const ts = parts.map((p) => ctx.upload(p));
    const N = sorted.length;
    for (const k of [0, 1, 19_999, 20_000, 23_000, N >> 1, N - 1]) {
      expectSameValue(await kthSmallestMany(ctx, ts, k), sorted[k], `k=${k}`);
    }
    const tau = sorted[Math.floor(0.4 * N)];
    expect(await readCount(ctx, countLessEqual(ctx, ts, tau))).toBe(countLessEqualRef(parts, tau));
    ts.forEach((t) => t.dispose());
  });

  it('kthSmallestMany batches 14 tensors (6 per dispatch), including empty and 1-entry ones', async () => {
    const ctx = await gpu();
    const sizes = [5, 0, 1, 3000, 17, 1, 0, 2049, 300, 1, 4100, 7, 64, 999];
    const parts = sizes.map((n, i) => tricky(n, 100 + i));
    const sorted = sortedRef(parts);
    const ts = parts.map((p) => ctx.upload(p, [p.length]));
    const N = sorted.length;
    for (const k of [0, 5, 6, 3006, N >> 1, N - 1]) {
      expectSameValue(await kthSmallestMany(ctx, ts, k), sorted[k], `k=${k}`);
    }
    ts.forEach((t) => t.dispose());
  });

  it('rejects k out of range, empty input and non-f32 tensors', async () => {
    const ctx = await gpu();
    const t = ctx.upload(new Float32Array(5));
    const u = ctx.upload(new Uint32Array(5));
    expect(() => kthSmallestTensor(ctx, t, 5)).toThrow(ShapeError);
    expect(() => kthSmallestTensor(ctx, t, -1)).toThrow(ShapeError);
    expect(() => kthSmallestTensor(ctx, t, 1.5)).toThrow(ShapeError);
    expect(() => kthSmallestTensor(ctx, [], 0)).toThrow(ShapeError);
    expect(() => kthSmallestTensor(ctx, u, 0)).toThrow(ShapeError);
    t.dispose();
    u.dispose();
  });
});

describe('countLessEqual / maskLessEqual', () => {
  it('are exact for τ between floats, at ±0, ±inf and NaN', async () => {
    const ctx = await gpu();
    const x = tricky(5003, 77);
    const t = ctx.upload(x);
    const r = rng(5);
    const taus = [0, -0, 0.1, -0.1, 1e-46, -1e-46, 1.5, Infinity, -Infinity, NaN, 1e39, -1e39];
    for (let i = 0; i < 5; i++) taus.push(x[Math.floor(r() * x.length)]);
    for (const tau of taus) {
      const want = countLessEqualRef([x], tau);
      expect(await readCount(ctx, countLessEqual(ctx, t, tau)), `τ=${tau}`).toBe(want);
      const mask = await maskLessEqual(ctx, t, tau).read();
      let ones = 0;
      for (let i = 0; i < x.length; i++) {
        const m = compareNaNLast(x[i], tau) <= 0 ? 1 : 0;
        if (mask[i] !== m) expect.fail(`τ=${tau}, x[${i}]=${x[i]}: mask ${mask[i]}`);
        ones += mask[i];
      }
      expect(ones).toBe(want);
    }
    t.dispose();
  });

  it('floorToF32 is the largest f32 ≤ τ', () => {
    for (const v of [0.1, -0.1, 1 / 3, -1e-46, 1e-46, 3.4e38 * 1.5, -3.4e38 * 1.5, 1, -0]) {
      const f = floorToF32(v);
      expect(f <= v).toBe(true);
      expect(Math.fround(f)).toBe(f);
      // the next f32 up is above v
      const b = new Uint32Array(Float32Array.of(f).buffer)[0];
      const up = f > 0 || Object.is(f, 0) ? b + 1 : b === 0x80000000 ? 1 : b - 1;
      expect(new Float32Array(Uint32Array.of(up).buffer)[0] > v).toBe(true);
    }
  });
});
