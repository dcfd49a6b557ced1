import { describe, expect, it } from 'vitest';
import { gpu } from './helpers/gpu';
import { randn, f32 } from './helpers/rng';
import { attention, attentionBackward, type AttentionImpl } from '../src/kernels/attention';
import { attentionRef, attentionBwdRef, type AttnShape } from '../src/reference/layers';
import { ShapeError } from '../src/gpu/errors';
import { expectClose } from './helpers/close';

const U = 2 ** -24; // fp32 unit roundoff

/** |got − ref| ≤ atol + rtol·|ref| elementwise; reports the worst element on failure. */

const maxAbs = (a: Float64Array) => a.reduce((m, v) => Math.max(m, Math.abs(v)), 0);

/**
 * One impl's forward (out, lse) and backward (dq, dk, dv) against the float64 reference on random data;
 * kvH kv heads (grouped-query when < H; undefined: the option is left out), optional sliding window.
 */
async function matchesF64(
  B: number, T: number, H: number, hd: number, impl: AttentionImpl, seedShift: number, kvH?: number, window?: number,
): Promise<void> {
  const ctx = await gpu();
  const KH = kvH ?? H, G = H / KH;
  const n = B * T * H * hd, nk = B * T * KH * hd;
  const seed = seedShift + B * 1000 + T * 10 + H + hd + 37 * (G - 1) + (window ?? 0);
  const [q, k, v, g] = [1, 2, 3, 4].map((i) => f32(randn(i === 2 || i === 3 ? nk : n, seed * 7 + i)));
  const s: AttnShape = { B, T, H, hd, scale: 1 / Math.sqrt(hd), kvH, window };
  const shape = [B * T, H * hd], kshape = [B * T, KH * hd];
  const tq = ctx.upload(q.f32, shape), tk = ctx.upload(k.f32, kshape), tv = ctx.upload(v.f32, kshape), tg = ctx.upload(g.f32, shape);
  const sh = { batch: B, heads: H, kvHeads: kvH, window };
  const { out, lse } = attention(ctx, tq, tk, tv, sh, { impl });
  const grads = attentionBackward(ctx, tg, tq, tk, tv, out, lse, sh, { impl });
  expect(grads.dk.shape).toEqual(kshape);
  expect(grads.dv.shape).toEqual(kshape);
  const ref = attentionRef(q.f64, k.f64, v.f64, s);
  const rb = attentionBwdRef(g.f64, q.f64, k.f64, v.f64, s);
  // Error model: dot products of length hd, softmax sums of length ≤ T, then sums of ≤ T terms
  // (dk, dv: of ≤ G·T terms, over the group's query heads).
  const K = hd + G * T;
  expectClose('out', await out.read(), ref.out, 8 * U * K, 8 * U * K);
  expectClose('lse', await lse.read(), ref.lse, 8 * U * K, 8 * U);
  for (const key of ['dq', 'dk', 'dv'] as const) {
    expectClose(key, await grads[key].read(), rb[key], 16 * U * K * maxAbs(rb[key]), 16 * U * K);
  }
  for (const t of [tq, tk, tv, tg, out, lse, grads.dq, grads.dk, grads.dv]) t.dispose();
}

describe('causal attention', () => {
  // [B, T, H, hd]: T=1, T not a multiple of the 64-row block or the tiles, every head-dim variant.
  const cases: Array<[number, number, number, number]> = [
    [1, 1, 1, 16], [2, 5, 2, 8], [1, 33, 4, 16], [2, 70, 1, 20], [1, 40, 2, 64], [1, 9, 1, 100],
  ];
  it.each(cases)('forward and backward match float64, B=%i T=%i H=%i hd=%i', (B, T, H, hd) => matchesF64(B, T, H, hd, 'rows', 0));

  // [B, T, H, kvHeads, hd]: grouped-query ratios 1 (explicit), 2, 4 and multi-query (kvHeads 1), on the
  // head-dim variants compiled above (HD16, HD32, HD64, HD128), T not a multiple of 64 or of the tiles.
  const gqa: Array<[number, number, number, number, number]> = [
    [2, 33, 2, 2, 16], [2, 70, 4, 2, 16], [2, 37, 8, 2, 32], [1, 40, 4, 1, 64], [2, 9, 2, 1, 100],
  ];
  it.each(gqa)('grouped-query forward and backward match float64, B=%i T=%i H=%i kvHeads=%i hd=%i', (B, T, H, KH, hd) =>
    matchesF64(B, T, H, hd, 'rows', 1, KH));

  it('sliding window (GQA 2, window 5 and 40 < T = 70) matches float64', async () => {
    await matchesF64(2, 70, 4, 16, 'rows', 2, 2, 5);
    await matchesF64(1, 70, 2, 16, 'rows', 2, 1, 40);
  });

  it('applies a custom score scale', async () => {
    const ctx = await gpu();
    const [B, T, H, hd] = [1, 12, 2, 8];
    const [q, k, v] = [1, 2, 3].map((i) => f32(randn(B * T * H * hd, 90 + i)));
    const shape = [B * T, H * hd];
    const tq = ctx.upload(q.f32, shape), tk = ctx.upload(k.f32, shape), tv = ctx.upload(v.f32, shape);
    const { out, lse } = attention(ctx, tq, tk, tv, { batch: B, heads: H, scale: 0.7 });
    const ref = attentionRef(q.f64, k.f64, v.f64, { B, T, H, hd, scale: 0.7 });
    expectClose('out', await out.read(), ref.out, 8 * U * (hd + T), 8 * U * (hd + T));
    for (const t of [tq, tk, tv, out, lse]) t.dispose();
  });

  it('rejects bad shapes with ShapeError', async () => {
    const ctx = await gpu();
    const a = ctx.empty([10, 12]), b = ctx.empty([10, 8]), c = ctx.empty([10, 4]), l = ctx.empty([10, 3]);
    expect(() => attention(ctx, a, a, a, { batch: 3, heads: 2 })).toThrow(ShapeError);
    expect(() => attention(ctx, a, a, a, { batch: 1, heads: 5 })).toThrow(ShapeError);
    expect(() => attention(ctx, a, b, a, { batch: 1, heads: 2 })).toThrow(ShapeError);
    expect(() => attention(ctx, ctx.empty([2, 260]), ctx.empty([2, 260]), ctx.empty([2, 260]), { batch: 1, heads: 2 })).toThrow(ShapeError);
    // kvHeads must divide heads (3 heads of hd 4: k, v [10, 8] would be 2 kv heads).
    expect(() => attention(ctx, a, b, b, { batch: 1, heads: 3, kvHeads: 2 })).toThrow(ShapeError);
    expect(() => attention(ctx, a, a, a, { batch: 1, heads: 3, kvHeads: 0 })).toThrow(ShapeError);
    // k, v must be [B·T, kvHeads·hd]: heads 3, kvHeads 1 wants [10, 4].
    expect(() => attention(ctx, a, a, a, { batch: 1, heads: 3, kvHeads: 1 })).toThrow(ShapeError);
    expect(() => attention(ctx, a, c, b, { batch: 1, heads: 3, kvHeads: 1 })).toThrow(ShapeError);
    expect(() => attention(ctx, a, c, c, { batch: 2, heads: 3, kvHeads: 1, window: 0 })).toThrow(ShapeError);
    expect(() => attentionBackward(ctx, a, a, b, c, a, l, { batch: 1, heads: 3, kvHeads: 1 })).toThrow(ShapeError);
    expect(() => attentionBackward(ctx, a, a, a, a, a, l, { batch: 1, heads: 3, kvHeads: 1 })).toThrow(ShapeError);
    for (const t of [a, b, c, l]) t.dispose();
  });
});

describe("causal attention, impl 'tiled'", () => {
  // [B, T, H, hd]: T = 1, T not a multiple of the 64-row tile (37, 130), B·H > 1, both head-dim
  // variants (HD64: 16, 24, 64; HD128: 128) incl. odd ones, zero-padded.
  const cases: Array<[number, number, number, number]> = [
    [1, 1, 1, 16], [2, 37, 2, 24], [1, 130, 1, 64], [2, 37, 1, 128], [1, 70, 3, 100],
  ];
  it.each(cases)('forward and backward match float64, B=%i T=%i H=%i hd=%i', (B, T, H, hd) => matchesF64(B, T, H, hd, 'tiled', 3));

  // [B, T, H, kvHeads, hd]: ratios 1 (explicit), 2, 4 and multi-query, both head-dim variants
  // (HD64: 16, 32, 64; HD128: 128), T not a multiple of the 64-row tile, 3 tiles (T = 130).
  const gqa: Array<[number, number, number, number, number]> = [
    [2, 37, 2, 2, 16], [2, 70, 4, 2, 64], [1, 130, 4, 1, 32], [2, 37, 8, 2, 128], [1, 20, 4, 1, 128],
  ];
  it.each(gqa)('grouped-query forward and backward match float64, B=%i T=%i H=%i kvHeads=%i hd=%i', (B, T, H, KH, hd) =>
    matchesF64(B, T, H, hd, 'tiled', 4, KH));

  // Rows whose first visited key tile holds none of their keys (running max still NEG there): rows
  // 68, 69 at window 5, T = 70; rows 147 … 149 at window 20, T = 150, which also skips key tile 0 in
  // the last query block and query tile 2 for key block 0.
  it('sliding window (GQA 2 window 5 at T = 70, MQA window 20 at T = 150) matches float64', async () => {
    await matchesF64(2, 70, 4, 64, 'tiled', 5, 2, 5);
    await matchesF64(1, 150, 2, 64, 'tiled', 5, 1, 20);
  });

  it('a window ≥ T and kvHeads = heads run the plain kernels, bit for bit', async () => {
    const ctx = await gpu();
    const [B, T, H, hd] = [2, 37, 2, 16];
    const shape = [B * T, H * hd];
    const [tq, tk, tv, tg] = [1, 2, 3, 4].map((i) => ctx.upload(f32(randn(B * T * H * hd, 800 + i)).f32, shape));
    const run = async (sh: { batch: number; heads: number; kvHeads?: number; window?: number }) => {
      const f = attention(ctx, tq, tk, tv, sh);
      const gr = attentionBackward(ctx, tg, tq, tk, tv, f.out, f.lse, sh);
      const ts = [f.out, f.lse, gr.dq, gr.dk, gr.dv];
      const r = await Promise.all(ts.map((t) => t.read()));
      for (const t of ts) t.dispose();
      return r;
    };
    const plain = await run({ batch: B, heads: H });
    const same = await run({ batch: B, heads: H, kvHeads: H, window: T });
    for (let i = 0; i < plain.length; i++) expect(same[i]).toEqual(plain[i]);
    for (const t of [tq, tk, tv, tg]) t.dispose();
  });

  it("agrees with 'rows' on a 3-tile case (B=2 T=150 H=2 hd=64), also across impls for backward", async () => {
    const ctx = await gpu();
    const [B, T, H, hd] = [2, 150, 2, 64];
    const n = B * T * H * hd;
    const shape = [B * T, H * hd];
    // q, k scaled by 1.8 (score std ≈ 8 at scale 0.3): a peaked softmax, so the online rescaling matters.
    const [tq, tk, tv, tg] = [1, 2, 3, 4].map((i) => ctx.upload(f32(randn(n, 700 + i).map((x) => (i < 3 ? 1.8 : 1) * x)).f32, shape));
    const sh = { batch: B, heads: H, scale: 0.3 };
    const r = attention(ctx, tq, tk, tv, sh, { impl: 'rows' });
    const t = attention(ctx, tq, tk, tv, sh, { impl: 'tiled' });
    const gr = attentionBackward(ctx, tg, tq, tk, tv, r.out, r.lse, sh, { impl: 'rows' });
    const gt = attentionBackward(ctx, tg, tq, tk, tv, r.out, r.lse, sh, { impl: 'tiled' });
    const f64 = async (x: { read(): Promise<Float32Array> }) => Float64Array.from(await x.read());
    const K = hd + T;
    expectClose('out', await t.out.read(), await f64(r.out), 16 * U * K, 16 * U * K);
    expectClose('lse', await t.lse.read(), await f64(r.lse), 16 * U * K, 16 * U);
    for (const key of ['dq', 'dk', 'dv'] as const) {
      const ref = await f64(gr[key]);
      expectClose(key, await gt[key].read(), ref, 32 * U * K * maxAbs(ref), 32 * U * K);
    }
    for (const x of [tq, tk, tv, tg, r.out, r.lse, t.out, t.lse, gr.dq, gr.dk, gr.dv, gt.dq, gt.dk, gt.dv]) x.dispose();
  });
});

describe('attention float64 reference', () => {
  // Plain MHA, and grouped-query (4 heads on 2 kv heads) with a window of 3 < T = 5.
  it.each([
    [{ B: 2, T: 4, H: 2, hd: 3, scale: 0.6 }],
    [{ B: 2, T: 5, H: 4, hd: 3, scale: 0.6, kvH: 2, window: 3 }],
  ] as Array<[AttnShape]>)('backward agrees with central finite differences of the forward (%o)', (s) => {
    const n = s.B * s.T * s.H * s.hd, nk = s.B * s.T * (s.kvH ?? s.H) * s.hd;
    const [q, k, v, g] = [1, 2, 3, 4].map((i) => randn(i === 2 || i === 3 ? nk : n, 500 + i));
    const loss = (qq: Float64Array, kk: Float64Array, vv: Float64Array) =>
      attentionRef(qq, kk, vv, s).out.reduce((acc, o, i) => acc + o * g[i], 0);
    const an = attentionBwdRef(g, q, k, v, s);
    const h = 1e-5;
    for (const [name, x] of [['dq', q], ['dk', k], ['dv', v]] as const) {
      for (let i = 0; i < x.length; i++) {
        const x0 = x[i];
        x[i] = x0 + h;
        const lp = loss(q, k, v);
        x[i] = x0 - h;
        const lm = loss(q, k, v);
        x[i] = x0;
        const fd = (lp - lm) / (2 * h);
        // Central differences: truncation O(h²) ≈ 1e-10, roundoff ≈ 1e-16/h ≈ 1e-11.
        if (Math.abs(fd - an[name][i]) > 1e-8 * (1 + Math.abs(fd))) expect.fail(`${name}[${i}]: fd ${fd} vs analytic ${an[name][i]}`);
      }
    }
  });
});
