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

/** One impl's forward (out, lse) and backward (dq, dk, dv) against the float64 reference on random data. */
async function matchesF64(B: number, T: number, H: number, hd: number, impl: AttentionImpl, seedShift: number): Promise<void> {
  const ctx = await gpu();
  const n = B * T * H * hd;
  const seed = seedShift + B * 1000 + T * 10 + H + hd;
  const [q, k, v, g] = [1, 2, 3, 4].map((i) => f32(randn(n, seed * 7 + i)));
  const s: AttnShape = { B, T, H, hd, scale: 1 / Math.sqrt(hd) };
  const shape = [B * T, H * hd];
  const tq = ctx.upload(q.f32, shape), tk = ctx.upload(k.f32, shape), tv = ctx.upload(v.f32, shape), tg = ctx.upload(g.f32, shape);
  const { out, lse } = attention(ctx, tq, tk, tv, { batch: B, heads: H }, { impl });
  const grads = attentionBackward(ctx, tg, tq, tk, tv, out, lse, { batch: B, heads: H }, { impl });
  const ref = attentionRef(q.f64, k.f64, v.f64, s);
  const rb = attentionBwdRef(g.f64, q.f64, k.f64, v.f64, s);
  // Error model: dot products of length hd, softmax sums of length ≤ T, then sums of ≤ T terms.
  const K = hd + T;
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
    const a = ctx.empty([10, 12]), b = ctx.empty([10, 8]);
    expect(() => attention(ctx, a, a, a, { batch: 3, heads: 2 })).toThrow(ShapeError);
    expect(() => attention(ctx, a, a, a, { batch: 1, heads: 5 })).toThrow(ShapeError);
    expect(() => attention(ctx, a, b, a, { batch: 1, heads: 2 })).toThrow(ShapeError);
    expect(() => attention(ctx, ctx.empty([2, 260]), ctx.empty([2, 260]), ctx.empty([2, 260]), { batch: 1, heads: 2 })).toThrow(ShapeError);
    a.dispose();
    b.dispose();
  });
});

describe("causal attention, impl 'tiled'", () => {
  // [B, T, H, hd]: T = 1, T not a multiple of the 64-row tile (37, 130), B·H > 1, both head-dim
  // variants (HD64: 16, 24, 64; HD128: 128) incl. odd ones, zero-padded.
  const cases: Array<[number, number, number, number]> = [
    [1, 1, 1, 16], [2, 37, 2, 24], [1, 130, 1, 64], [2, 37, 1, 128], [1, 70, 3, 100],
  ];
  it.each(cases)('forward and backward match float64, B=%i T=%i H=%i hd=%i', (B, T, H, hd) => matchesF64(B, T, H, hd, 'tiled', 3));

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
  it('backward agrees with central finite differences of the forward', () => {
    const s: AttnShape = { B: 2, T: 4, H: 2, hd: 3, scale: 0.6 };
    const n = s.B * s.T * s.H * s.hd;
    const [q, k, v, g] = [1, 2, 3, 4].map((i) => randn(n, 500 + i));
    const loss = (qq: Float64Array, kk: Float64Array, vv: Float64Array) =>
      attentionRef(qq, kk, vv, s).out.reduce((acc, o, i) => acc + o * g[i], 0);
    const an = attentionBwdRef(g, q, k, v, s);
    const h = 1e-5;
    for (const [name, x] of [['dq', q], ['dk', k], ['dv', v]] as const) {
      for (let i = 0; i < n; i++) {
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
