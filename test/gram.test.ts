import { describe, expect, it } from 'vitest';
import { gpu } from './helpers/gpu';
import { randn, f32 } from './helpers/rng';
import { gramAccumulate, mirrorLower, planGramSplits, GRAM_MAX_SPLITS, GRAM_VARIANTS, type GramOptions } from '../src/kernels/gram';
import { gramRef } from '../src/reference/linalg';
import { ShapeError } from '../src/gpu/errors';
import type { GpuContext } from '../src/gpu/context';

const EPS = 2 ** -23;

/**
 * Error model (shaders/gram.wgsl): blocked summation in chunks of c ≈ √tokens, then S split partials,
 * then one rounding per call into acc: |err| ≤ (c + #chunks + S + 4)·eps·Σ_t|x'_ti x'_tj|·|scale|
 * (+ a few ulps of the previous acc value). We use the loose but safe (2√T + 8)·eps bound per call.
 */
function tolFor(T: number) {
  return (2 * Math.ceil(Math.sqrt(T)) + 24) * EPS;
}

async function runGram(ctx: GpuContext, T: number, d: number, calls: Array<GramOptions & { seed: number }>, variant?: string) {
  const n = d + (calls[0].ones ? 1 : 0);
  const init = f32(randn(n * n, 99));
  const acc = ctx.upload(init.f32, [n, n]);
  const expect64 = Float64Array.from(init.f64);
  const absTotal = new Float64Array(n * n);
  let rtol = 0;
  for (const c of calls) {
    const X = f32(randn(T * d, c.seed));
    const x = ctx.upload(X.f32, [T, d]);
    gramAccumulate(ctx, x, acc, { ...c, variant });
    const r = gramRef(X.f64, T, d, c);
    for (let i = 0; i < n; i++) for (let j = 0; j <= i; j++) expect64[i * n + j] += r.g[i * n + j];
    for (let k = 0; k < n * n; k++) absTotal[k] += r.absSum[k];
    rtol = Math.max(rtol, tolFor(c.rows ?? T));
    x.dispose();
  }
  const got = await acc.read();
  for (let i = 0; i < n; i++) {
    for (let j = 0; j < n; j++) {
      const k = i * n + j;
      if (j > i) {
        if (got[k] !== init.f32[k]) throw new Error(`upper (${i},${j}) changed: ${got[k]} vs ${init.f32[k]}`);
        continue;
      }
      const tol = rtol * absTotal[k] + calls.length * 2 * EPS * (Math.abs(expect64[k]) + Math.abs(init.f64[k])) + 1e-30;
      if (!(Math.abs(got[k] - expect64[k]) <= tol)) throw new Error(`T=${T} d=${d} (${i},${j}): got ${got[k]}, want ${expect64[k]} (tol ${tol})`);
    }
  }
  mirrorLower(ctx, acc);
  const m = await acc.read();
  for (let i = 0; i < n; i++) for (let j = 0; j < n; j++) expect(m[i * n + j]).toBe(got[Math.max(i, j) * n + Math.min(i, j)]);
  acc.dispose();
}

describe('gram', () => {
  it.each([
    [1, 1], [5, 3], [37, 8], [64, 17], [130, 12], [9, 70],
  ])('T=%i d=%i with and without the ones column, scale, rows < T', async (T, d) => {
    const ctx = await gpu();
    await runGram(ctx, T, d, [{ seed: T + d }]);
    await runGram(ctx, T, d, [{ seed: T + d + 1, ones: true, scale: 0.25 }]);
    await runGram(ctx, T, d, [{ seed: T + d + 2, ones: true, rows: Math.max(1, T - 3), scale: -1.5 }]);
  });

  it('accumulates over several calls', async () => {
    const ctx = await gpu();
    await runGram(ctx, 40, 20, [{ seed: 1, ones: true, scale: 1 / 120 }, { seed: 2, ones: true, scale: 1 / 120, rows: 33 }, { seed: 3, ones: true, scale: 1 / 120 }]);
  });

  it('splits long token ranges (partials + reduce) and every variant', async () => {
    const ctx = await gpu();
    // 8200 rows ≥ 2 × 4096 (MIN_TOKENS_PER_SPLIT): the split path with a ragged last split runs on any adapter.
    await runGram(ctx, 8200, 5, [{ seed: 11, ones: true, scale: 1 / 8200 }, { seed: 12, ones: true, rows: 8197 }]);
    // Short splits as GPUs use them when tiles are few: 32 splits of 264 tokens; then three tiles (n = 131),
    // 5 splits (not a power of two: uneven pairwise reduce), ragged last split.
    await runGram(ctx, 8200, 5, [{ seed: 14, ones: true, splits: 32 }]);
    await runGram(ctx, 1300, 130, [{ seed: 13, ones: true, scale: 0.5, splits: 5 }]);
    for (const [i, v] of GRAM_VARIANTS.entries()) await runGram(ctx, 45, i % 2 ? 68 : 71, [{ seed: 20 + i, ones: i % 2 === 0 }], v.name);
  });

  it('planGramSplits: occupancy for few tiles, 4096-token splits otherwise, bounds', () => {
    const tilesOf = (n: number) => { const nt = Math.ceil(n / 128); return (nt * (nt + 1)) / 2; };
    // K-FAC on OPT-125m: n = 769, 4096 tokens per call → 28 tiles; before: 1 split = 28 workgroups.
    const s769 = planGramSplits(tilesOf(769), 4096, 769, 1 << 30);
    expect(s769 * tilesOf(769)).toBeGreaterThanOrEqual(264);
    expect(4096 / s769).toBeGreaterThanOrEqual(256);
    // Many tiles (n = 3073: 300 tiles) keep whole 4096-token splits; long calls split at ≥ 4096 tokens.
    expect(planGramSplits(tilesOf(3073), 4096, 3073, 1 << 30)).toBe(1);
    expect(planGramSplits(tilesOf(3073), 65536, 3073, 1 << 30)).toBe(2);
    // Bounds: never more than GRAM_MAX_SPLITS, never over the scratch limit, never < 1.
    expect(planGramSplits(1, 1 << 22, 8, 1 << 30)).toBeLessThanOrEqual(GRAM_MAX_SPLITS);
    expect(planGramSplits(28, 4096, 769, 3 * 769 * 769 * 4)).toBe(3);
    expect(planGramSplits(28, 100, 769, 1 << 30)).toBe(1);
    // CPU adapters (minWorkgroups 0) keep the 4096-token minimum; a forced count wins over the heuristic.
    expect(planGramSplits(tilesOf(769), 4096, 769, 1 << 30, 0)).toBe(1);
    expect(planGramSplits(tilesOf(769), 4096, 769, 1 << 30, 0, 7)).toBe(7);
  });

  it('mirrorLower on a non-multiple of 16', async () => {
    const ctx = await gpu();
    const n = 37;
    const a = f32(randn(n * n, 5)).f32;
    const t = ctx.upload(a, [n, n]);
    mirrorLower(ctx, t);
    const m = await t.read();
    for (let i = 0; i < n; i++) for (let j = 0; j < n; j++) expect(m[i * n + j]).toBe(a[Math.max(i, j) * n + Math.min(i, j)]);
    t.dispose();
  });

  it('rejects bad shapes with ShapeError', async () => {
    const ctx = await gpu();
    const x = ctx.zeros([10, 4]);
    expect(() => gramAccumulate(ctx, x, ctx.zeros([4, 4]), { ones: true })).toThrow(/\[5, 5\]/);
    expect(() => gramAccumulate(ctx, x, ctx.zeros([5, 5]))).toThrow(ShapeError);
    expect(() => gramAccumulate(ctx, x, ctx.zeros([4, 4]), { rows: 11 })).toThrow(/rows=11/);
    expect(() => gramAccumulate(ctx, ctx.zeros([40]), ctx.zeros([4, 4]))).toThrow(ShapeError);
    expect(() => gramAccumulate(ctx, x, ctx.zeros([4, 4]), { variant: 'x' })).toThrow(ShapeError);
    expect(() => gramAccumulate(ctx, x, ctx.zeros([4, 4]), { splits: 0 })).toThrow(/splits=0/);
    expect(() => gramAccumulate(ctx, x, ctx.zeros([4, 4]), { splits: GRAM_MAX_SPLITS + 1 })).toThrow(ShapeError);
    expect(() => mirrorLower(ctx, ctx.zeros([3, 4]))).toThrow(ShapeError);
  });
});
