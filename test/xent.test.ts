import { describe, expect, it } from 'vitest';
import { gpu } from './helpers/gpu';
import { randn, f32, rng } from './helpers/rng';
import { crossEntropy, argmaxRows, sampleLabels, NO_LABEL } from '../src/kernels/xent';
import { crossEntropyRef, argmaxRef, gumbelRef } from '../src/reference/layers';
import { ShapeError } from '../src/gpu/errors';
import { expectClose } from './helpers/close';

const U = 2 ** -24;


function labelsFor(N: number, V: number, seed: number): Uint32Array {
  const r = rng(seed);
  const l = Uint32Array.from({ length: N }, () => Math.floor(r() * V));
  l[N - 1] = NO_LABEL; // the last position has no next token
  return l;
}

describe('chunked cross-entropy', () => {
  // [N, d, V, chunkRows]: N = 1, chunks that do not divide N, chunk 1, one chunk bigger than N.
  it.each([[1, 16, 97, 256], [7, 24, 97, 3], [33, 64, 97, 16], [33, 32, 50, 1], [40, 16, 130, 64]])(
    'loss and dHidden match float64, N=%i d=%i V=%i chunk=%i', async (N, d, V, chunkRows) => {
      const ctx = await gpu();
      const h = f32(randn(N * d, N + d).map((v) => 0.5 * v));
      const E = f32(randn(V * d, V + d).map((v) => 0.5 * v));
      const labels = labelsFor(N, V, N * 3 + V);
      const count = labels.filter((l) => l !== NO_LABEL).length;
      const th = ctx.upload(h.f32, [N, d]), tE = ctx.upload(E.f32, [V, d]), tl = ctx.upload(labels);
      const gradScale = 1 / Math.max(count, 1);
      const res = crossEntropy(ctx, th, tE, tl, { chunkRows, grad: true, gradScale });
      const ref = crossEntropyRef(h.f64, E.f64, labels, d, gradScale);
      // Logits are dot products of length d with |h||E| ≈ 0.25·d; lse and the head gradient add V terms.
      const zmag = 0.25 * Math.sqrt(d) * 4;
      expectClose('lse', await res.lse.read(), ref.lse, 8 * U * d * zmag, 8 * U * V);
      expectClose('loss', await res.loss.read(), ref.loss, 8 * U * d * zmag, 8 * U * V);
      const gmax = ref.dHidden.reduce((m, v) => Math.max(m, Math.abs(v)), 0);
      expectClose('dHidden', await res.dHidden!.read(), ref.dHidden, 8 * U * (d + V) * gmax * zmag, 8 * U * (d + V));
      for (const t of [th, tE, tl, res.loss, res.lse, res.dHidden!]) t.dispose();
    });

  it('samples labels per row, independently of the chunking, and keeps NO_LABEL rows', async () => {
    const ctx = await gpu();
    const [N, d, V] = [21, 16, 97];
    const h = f32(randn(N * d, 11)), E = f32(randn(V * d, 12));
    const labels = labelsFor(N, V, 13);
    const th = ctx.upload(h.f32, [N, d]), tE = ctx.upload(E.f32, [V, d]), tl = ctx.upload(labels);
    const a = crossEntropy(ctx, th, tE, tl, { chunkRows: 4, sampleSeed: 1234, grad: true });
    const b = crossEntropy(ctx, th, tE, tl, { chunkRows: 21, sampleSeed: 1234 });
    const sa = await ctx.readU32(a.sampled!), sb = await ctx.readU32(b.sampled!);
    expect(Array.from(sa)).toEqual(Array.from(sb));
    expect(sa[N - 1]).toBe(NO_LABEL);
    expect(sa.slice(0, N - 1).every((l) => l < V)).toBe(true);
    // Loss and gradient are those of the sampled labels.
    const ref = crossEntropyRef(h.f64, E.f64, sa, d);
    expectClose('loss', await a.loss.read(), ref.loss, 1e-4, 1e-5);
    const gmax = ref.dHidden.reduce((m, v) => Math.max(m, Math.abs(v)), 0);
    expectClose('dHidden', await a.dHidden!.read(), ref.dHidden, 1e-5 * gmax, 1e-5);
    for (const t of [th, tE, tl, a.loss, a.lse, a.dHidden!, a.sampled!, b.loss, b.lse, b.sampled!]) t.dispose();
  });
});

describe('argmax and sampling', () => {
  it('argmax equals the float64 argmax (lowest index on ties)', async () => {
    const ctx = await gpu();
    const [n, V] = [5, 300];
    const z = f32(randn(n * V, 77));
    z.f32[2 * V + 10] = z.f32[2 * V + 200] = 9; // tie in row 2
    z.f64[2 * V + 10] = z.f64[2 * V + 200] = 9;
    const tz = ctx.upload(z.f32, [n, V]);
    const got = await ctx.readU32(argmaxRows(ctx, tz));
    expect(Array.from(got)).toEqual(Array.from(argmaxRef(z.f64, V)));
    expect(got[2]).toBe(10);
    tz.dispose();
  });

  it('sampleLabels is the Gumbel-max of the reference hash', async () => {
    const ctx = await gpu();
    const [n, V, seed] = [64, 97, 99];
    const z = f32(randn(n * V, 78));
    const tz = ctx.upload(z.f32, [n, V]);
    const got = await ctx.readU32(sampleLabels(ctx, tz, seed));
    const ref = argmaxRef(z.f64, V, seed);
    for (let r = 0; r < n; r++) {
      if (got[r] === ref[r]) continue;
      // Only a near-tie of the two perturbed values may differ (f32 vs f64 log).
      const a = z.f64[r * V + got[r]] + gumbelRef(seed, r, got[r]);
      const b = z.f64[r * V + ref[r]] + gumbelRef(seed, r, ref[r]);
      expect(Math.abs(a - b)).toBeLessThan(1e-5);
    }
    tz.dispose();
  });

  it('sample frequencies follow the softmax', async () => {
    const ctx = await gpu();
    const [n, V] = [4000, 5];
    const row = [0.5, -1, 2, 0, 1];
    const tz = ctx.upload(Float32Array.from({ length: n * V }, (_, i) => row[i % V]), [n, V]);
    const got = await ctx.readU32(sampleLabels(ctx, tz, 7));
    const Z = row.reduce((s, v) => s + Math.exp(v), 0);
    for (let c = 0; c < V; c++) {
      const pc = Math.exp(row[c]) / Z;
      const k = got.filter((l) => l === c).length;
      // Binomial count: within 4.5 standard deviations (false-failure rate ~1e-5 per class).
      expect(Math.abs(k - n * pc)).toBeLessThan(4.5 * Math.sqrt(n * pc * (1 - pc)));
    }
    tz.dispose();
  });

  it('rejects bad shapes with ShapeError', async () => {
    const ctx = await gpu();
    const h = ctx.empty([4, 8]), E = ctx.empty([10, 8]), E7 = ctx.empty([10, 7]);
    const l = ctx.upload(new Uint32Array(4)), lf = ctx.empty([4]);
    expect(() => crossEntropy(ctx, h, E7, l)).toThrow(ShapeError);
    expect(() => crossEntropy(ctx, h, E, lf)).toThrow(ShapeError);
    expect(() => crossEntropy(ctx, h, E, l, { chunkRows: 0 })).toThrow(ShapeError);
    expect(() => argmaxRows(ctx, h, { out: lf })).toThrow(ShapeError);
    expect(() => sampleLabels(ctx, h, 0.5)).toThrow(ShapeError);
    for (const t of [h, E, E7, l, lf]) t.dispose();
  });
});
