import { describe, expect, it } from 'vitest';
import { gpu } from './helpers/gpu';
import { f32, randn } from './helpers/rng';
import { expectClose } from './helpers/close';
import { attentionDecode, decodeChunks } from '../src/kernels/attention-decode';
import { attentionRef } from '../src/reference/layers';
import { ShapeError } from '../src/gpu/errors';

const U = 2 ** -24; // fp32 unit roundoff

/**
 * attentionDecode of the last of L positions vs the float64 causal reference's last row. The caches
 * have `cap` ≥ L rows; rows ≥ L hold NaN, so reading one would show in the output.
 */
async function matches(L: number, cap: number, H: number, KH: number, hd: number): Promise<void> {
  const ctx = await gpu();
  const seed = L * 31 + H * 7 + KH + hd;
  const [q, k, v] = [L * H * hd, L * KH * hd, L * KH * hd].map((n, i) => f32(randn(n, seed + i)).f64);
  const ref = attentionRef(q, k, v, { B: 1, T: L, H, hd, scale: 1 / Math.sqrt(hd), kvH: KH });
  const cache = (x: Float64Array) => {
    const c = new Float32Array(cap * KH * hd).fill(NaN);
    c.set(Float32Array.from(x));
    return ctx.upload(c, [cap, KH * hd]);
  };
  const tq = ctx.upload(Float32Array.from(q.subarray((L - 1) * H * hd)), [1, H * hd]);
  const tk = cache(k), tv = cache(v);
  const { out, lse } = attentionDecode(ctx, tq, tk, tv, { heads: H, kvHeads: KH, length: L });
  // Error model: a dot of length hd, then softmax sums of L terms (chunk merges add a few roundings).
  const K = hd + L;
  expectClose('out', await out.read(), ref.out.subarray((L - 1) * H * hd), 8 * U * K, 8 * U * K);
  expectClose('lse', await lse.read(), ref.lse.subarray((L - 1) * H), 8 * U * K, 8 * U);
  for (const t of [tq, tk, tv, out, lse]) t.dispose();
}

describe('attentionDecode (one query row against a KV cache)', () => {
  // [L, capacity, H, kvHeads, hd]: one key; a partial tile; several tiles; several chunks (GQA);
  // chunks of two tiles with a short last one (many heads); hd > 64 (two output dims per thread), MQA.
  const cases: Array<[number, number, number, number, number]> = [
    [1, 1, 1, 1, 16], [5, 9, 2, 2, 8], [70, 100, 4, 2, 20], [300, 320, 8, 2, 32], [300, 300, 64, 8, 8], [130, 131, 2, 1, 100], [65, 80, 1, 1, 128],
  ];
  it.each(cases)('matches the last row of causal attention in float64, L=%i cap=%i H=%i kvHeads=%i hd=%i', matches);

  it('splits keys into whole 64-key tiles with no empty chunk', () => {
    for (const [L, H] of [[1, 1], [64, 1], [65, 12], [2560, 12], [300, 64], [4096, 256]]) {
      const { chunk, nchunks } = decodeChunks(L, H);
      expect(chunk % 64).toBe(0);
      expect(nchunks * chunk).toBeGreaterThanOrEqual(L);
      expect((nchunks - 1) * chunk).toBeLessThan(L);
    }
    expect(decodeChunks(2560, 12).nchunks).toBeGreaterThan(1); // few heads: keys are split
  });

  it('refuses bad shapes with a ShapeError naming the problem', async () => {
    const ctx = await gpu();
    const q = ctx.zeros([1, 32]), c = ctx.zeros([8, 16]);
    expect(() => attentionDecode(ctx, q, c, c, { heads: 2, kvHeads: 1, length: 9 })).toThrow(/length 9 must be 1 … 8/);
    expect(() => attentionDecode(ctx, q, c, c, { heads: 2, kvHeads: 3, length: 1 })).toThrow(ShapeError);
    expect(() => attentionDecode(ctx, q, c, c, { heads: 4, kvHeads: 1, length: 1 })).toThrow(/kCache \[8,16\] should be \[capacity, 8\]/);
    expect(() => attentionDecode(ctx, q, c, c, { heads: 2, kvHeads: 2, length: 1 })).toThrow(/\[capacity, 32\]/);
    for (const t of [q, c]) t.dispose();
  });
});
