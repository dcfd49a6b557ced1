/**
 * kthSmallestHost (surgeon/threshold.ts), the host twin of the GPU's radix select that a memory-budgeted
 * element / N:M shot uses on the costs it read back group by group: the same value as kthSmallestTensor
 * over the same arrays (and as the float64 sort), in the same order (NaN last, −0 = +0, zero as +0).
 */
import { describe, expect, it } from 'vitest';
import { gpu } from './helpers/gpu';
import { rng } from './helpers/rng';
import { kthSmallestTensor } from '../src/kernels/select';
import { kthSmallestHost } from '../src/surgeon/threshold';
import { compareNaNLast } from '../src/reference/reduce';

function data(n: number, seed: number): Float32Array {
  const r = rng(seed);
  const specials = [0, -0, 1e-45, -1e-45, Infinity, -Infinity, NaN, 1, -1, 2.5];
  return Float32Array.from({ length: n }, () => (r() < 0.2 ? specials[Math.floor(r() * specials.length)] : (r() - 0.3) * 10 ** Math.floor(r() * 6 - 3)));
}

describe('kthSmallestHost', () => {
  it('equals the GPU radix select and the sorted reference on split arrays with ties, ±0, ±inf and NaN', async () => {
    const ctx = await gpu();
    for (const [sizes, seed] of [[[1], 1], [[7, 0, 13], 2], [[1000, 1, 4097], 3], [[20000, 3000], 4]] as const) {
      const xs = sizes.map((n, i) => data(n, seed * 10 + i));
      const all = Float64Array.from(xs.flatMap((x) => Array.from(x))).sort(compareNaNLast);
      const ts = xs.map((x) => ctx.upload(x));
      for (const k of [0, 1, Math.floor(all.length / 3), Math.floor(all.length / 2), all.length - 1].filter((k) => k >= 0 && k < all.length)) {
        const host = kthSmallestHost(xs, k);
        const t = kthSmallestTensor(ctx, ts.filter((x) => x.size > 0), k);
        const dev = (await ctx.readF32(t))[0];
        t.dispose();
        if (Number.isNaN(all[k])) { expect(host).toBeNaN(); expect(dev).toBeNaN(); continue; }
        expect(Object.is(host, dev), `k=${k}: host ${host}, GPU ${dev}`).toBe(true);
        expect(host === all[k]).toBe(true);
      }
      for (const t of ts) t.dispose();
    }
    expect(() => kthSmallestHost([new Float32Array(3)], 3)).toThrow(RangeError);
  });
});
