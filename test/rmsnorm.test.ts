import { describe, expect, it } from 'vitest';
import { gpu } from './helpers/gpu';
import { randn, f32 } from './helpers/rng';
import { rmsNorm, rmsNormBackward } from '../src/kernels/rmsnorm';
import { rmsNormRef, rmsNormBwdRef } from '../src/reference/layers-llama';
import { ShapeError } from '../src/gpu/errors';
import { expectClose } from './helpers/close';

const U = 2 ** -24;

/** Central differences of L = Σ dy∘f(v) with respect to every entry of v. */
function numGrad(f: (v: Float64Array) => Float64Array, v: Float64Array, dy: Float64Array, h = 1e-6): Float64Array {
  const g = new Float64Array(v.length);
  const L = (w: Float64Array) => f(w).reduce((s, y, i) => s + dy[i] * y, 0);
  for (let i = 0; i < v.length; i++) {
    const p = v.slice(), m = v.slice();
    p[i] += h;
    m[i] -= h;
    g[i] = (L(p) - L(m)) / (2 * h);
  }
  return g;
}

/** |got − ref| ≤ bound, entry by entry (NaN fails). */
function expectWithin(name: string, got: Float32Array, ref: Float64Array, bound: Float64Array): void {
  expect(got.length).toBe(ref.length);
  for (let i = 0; i < ref.length; i++) {
    if (!(Math.abs(got[i] - ref[i]) <= bound[i])) expect.fail(`${name}[${i}] = ${got[i]}, reference ${ref[i]}, bound ${bound[i]}`);
  }
}

describe('rmsnorm', () => {
  // [rows, d]: one row, d = 1, rows > the 256-row parameter block, d > 256 threads and not a multiple of them.
  it.each([[1, 16], [5, 1], [33, 64], [300, 37], [7, 700]])('forward/backward match float64, n=%i d=%i', async (n, d) => {
    const ctx = await gpu();
    const seed = n * 37 + d;
    const x = f32(randn(n * d, seed).map((v) => 0.5 + 2 * v));
    if (n > 1) { // an all-zero row: rstd = 1/sqrt(eps), dx = rstd·dy·γ
      x.f32.fill(0, 0, d);
      x.f64.fill(0, 0, d);
    }
    const gm = f32(randn(d, seed + 1).map((v) => 1 + 0.3 * v));
    const dy = f32(randn(n * d, seed + 2));
    const eps = 1e-5;
    const tx = ctx.upload(x.f32, [n, d]), tg = ctx.upload(gm.f32, [d]), tdy = ctx.upload(dy.f32, [n, d]);
    const { y, rstd } = rmsNorm(ctx, tx, tg, { eps });
    const ref = rmsNormRef(x.f64, gm.f64, d, eps);
    // Error model: Σx² of non-negative terms, each thread sums ⌈d/256⌉ then an 8-level tree: relative
    // error ≤ (⌈d/256⌉ + 8)·u; inverseSqrt ≤ 2 ulp and the division ≤ 2.5 ulp (the + 4);
    // y = (x·rstd)·γ adds two roundings. Factor 2 margin.
    const K = Math.ceil(d / 256) + 8 + 4;
    expectClose('rstd', await rstd.read(), ref.rstd, 0, 2 * U * K);
    expectClose('y', await y.read(), ref.y, 1e-30, 2 * U * (K + 2));

    const { dx, dParams } = rmsNormBackward(ctx, tdy, tx, tg, rstd, { paramGrads: true });
    const rb = rmsNormBwdRef(dy.f64, x.f64, gm.f64, d, eps);
    // dx = rstd·(g − x̂·t), t = mean(g·x̂): t carries ≈ K·u·mean|g·x̂| absolute error, rstd K·u relative,
    // and g − x̂·t may cancel, so each entry's bound is absolute in S = rstd·(|g| + |x̂|·mean_row|g·x̂|)
    // (per entry: the zero row's rstd = 1/sqrt(eps) would swamp a global scale).
    const bound = new Float64Array(n * d);
    for (let r = 0; r < n; r++) {
      let m = 0;
      for (let j = 0; j < d; j++) m += Math.abs(dy.f64[r * d + j] * gm.f64[j] * x.f64[r * d + j] * ref.rstd[r]) / d;
      for (let j = 0; j < d; j++) {
        const k = r * d + j;
        bound[k] = 2 * U * K * ref.rstd[r] * (Math.abs(dy.f64[k] * gm.f64[j]) + Math.abs(x.f64[k] * ref.rstd[r]) * m);
      }
    }
    expectWithin('dx', await dx.read(), rb.dx, bound);
    // dγ_j = Σ_r dy·x̂ per 256-row block (64 sequential terms per lane + 4 lanes), then colSum's levels of
    // the same shape over the blocks; plus rstd's K·u relative error. Bound: u·(68·(1 + levels) + K)·Σ|dy·x̂|.
    const colAbs = new Float64Array(d);
    for (let k = 0; k < n * d; k++) colAbs[k % d] += Math.abs(dy.f64[k] * x.f64[k] * ref.rstd[Math.floor(k / d)]);
    const levels = Math.max(1, Math.ceil(Math.log(Math.ceil(n / 256)) / Math.log(256)));
    const Kn = 68 * (1 + levels) + K;
    const atolP = 2 * U * Kn * Math.max(...colAbs);
    expectClose('dgamma', await dParams!.read(), rb.dgamma, atolP, 0);
    // accumulate: a second pass (into a given out) adds the same gradient again.
    rmsNormBackward(ctx, tdy, tx, tg, rstd, { dParams: dParams!, accumulate: true, out: dx });
    expectClose('2·dgamma', await dParams!.read(), rb.dgamma.map((v) => 2 * v), 2 * atolP, 0);
    expectWithin('dx (out)', await dx.read(), rb.dx, bound);
    for (const t of [tx, tg, tdy, y, rstd, dx, dParams!]) t.dispose();
  });

  it('default eps is 1e-6 and out is honoured', async () => {
    const ctx = await gpu();
    const n = 3, d = 8;
    const x = f32(randn(n * d, 5).map((v) => 1e-3 * v)); // small x: eps matters
    const gm = f32(randn(d, 6));
    const tx = ctx.upload(x.f32, [n, d]), tg = ctx.upload(gm.f32, [d]), out = ctx.empty([n, d]);
    const { y, rstd } = rmsNorm(ctx, tx, tg, { out });
    expect(y).toBe(out);
    const ref = rmsNormRef(x.f64, gm.f64, d, 1e-6);
    expectClose('y', await out.read(), ref.y, 1e-30, 32 * U);
    for (const t of [tx, tg, out, rstd]) t.dispose();
  });

  it('float64 backward matches central differences of the float64 forward', () => {
    const n = 2, d = 5, eps = 1e-5;
    const x = randn(n * d, 11), gm = randn(d, 12).map((v) => 1 + 0.5 * v), dy = randn(n * d, 13);
    const rb = rmsNormBwdRef(dy, x, gm, d, eps);
    const ndx = numGrad((v) => rmsNormRef(v, gm, d, eps).y, x, dy);
    const ndg = numGrad((v) => rmsNormRef(x, v, d, eps).y, gm, dy);
    for (let i = 0; i < ndx.length; i++) expect(Math.abs(rb.dx[i] - ndx[i])).toBeLessThan(1e-8 * (1 + Math.abs(ndx[i])));
    for (let i = 0; i < ndg.length; i++) expect(Math.abs(rb.dgamma[i] - ndg[i])).toBeLessThan(1e-8 * (1 + Math.abs(ndg[i])));
  });

  it('rejects mismatched shapes with ShapeError', async () => {
    const ctx = await gpu();
    const x = ctx.empty([4, 8]), g = ctx.empty([8]), g7 = ctx.empty([7]), r4 = ctx.empty([4]), r3 = ctx.empty([3]);
    expect(() => rmsNorm(ctx, x, g7)).toThrow(ShapeError);
    expect(() => rmsNorm(ctx, x, g, { out: x })).toThrow(ShapeError);
    expect(() => rmsNorm(ctx, x, g, { out: g7 })).toThrow(ShapeError);
    expect(() => rmsNorm(ctx, x, g, { eps: -1 })).toThrow(ShapeError);
    expect(() => rmsNormBackward(ctx, x, x, g, r3)).toThrow(ShapeError);
    expect(() => rmsNormBackward(ctx, g, x, g, r4)).toThrow(ShapeError);
    expect(() => rmsNormBackward(ctx, x, x, g, r4, { out: x })).toThrow(ShapeError);
    expect(() => rmsNormBackward(ctx, x, x, g, r4, { dParams: g7 })).toThrow(ShapeError);
    expect(() => rmsNormBackward(ctx, x, x, g, r4, { paramGrads: true, accumulate: true })).toThrow(ShapeError);
    for (const t of [x, g, g7, r4, r3]) t.dispose();
  });
});
