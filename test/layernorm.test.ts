import { describe, expect, it } from 'vitest';
import { gpu } from './helpers/gpu';
import { randn, f32 } from './helpers/rng';
import { layerNorm, layerNormBackward } from '../src/kernels/layernorm';
import { layerNormRef, layerNormBwdRef } from '../src/reference/layers';
import { ShapeError } from '../src/gpu/errors';
import { expectClose } from './helpers/close';

const U = 2 ** -24;


describe('layernorm', () => {
  // [rows, d]: one row, d = 1 (y = β), d not a multiple of the 256 threads, rows > the 256-row param block.
  it.each([[1, 16], [5, 1], [33, 64], [300, 37], [7, 700]])('forward/backward match float64, n=%i d=%i', async (n, d) => {
    const ctx = await gpu();
    const seed = n * 31 + d;
    // Offset mean (3) exercises the two-pass variance; scale 2 keeps rstd ≠ 1.
    const x = f32(randn(n * d, seed).map((v) => 3 + 2 * v));
    const gm = f32(randn(d, seed + 1).map((v) => 1 + 0.3 * v));
    const bt = f32(randn(d, seed + 2));
    const dy = f32(randn(n * d, seed + 3));
    const tx = ctx.upload(x.f32, [n, d]), tg = ctx.upload(gm.f32, [d]), tb = ctx.upload(bt.f32, [d]), tdy = ctx.upload(dy.f32, [n, d]);
    const { y, mean, rstd } = layerNorm(ctx, tx, tg, tb);
    const ref = layerNormRef(x.f64, gm.f64, bt.f64, d);
    // Error model: sums of d terms (relative u·d), amplified by |x−mean|·rstd ≤ sqrt(d).
    const K = d + 8;
    expectClose('y', await y.read(), ref.y, 8 * U * K, 8 * U * K);
    expectClose('mean', await mean.read(), ref.mean, 8 * U * K * 3, 8 * U * K);
    expectClose('rstd', await rstd.read(), ref.rstd, 0, 8 * U * K);
    const { dx, dParams } = layerNormBackward(ctx, tdy, tx, tg, mean, rstd, { paramGrads: true });
    const rb = layerNormBwdRef(dy.f64, x.f64, gm.f64, d);
    expectClose('dx', await dx.read(), rb.dx, 16 * U * K * 2, 16 * U * K);
    const dp = await dParams!.read();
    const Kn = n + K; // parameter grads sum over n rows
    expectClose('dgamma', dp.subarray(0, d), rb.dgamma, 8 * U * Kn * Math.sqrt(n), 8 * U * Kn);
    expectClose('dbeta', dp.subarray(d), rb.dbeta, 8 * U * Kn * Math.sqrt(n), 8 * U * Kn);
    // accumulate: a second pass adds the same gradients again.
    layerNormBackward(ctx, tdy, tx, tg, mean, rstd, { dParams: dParams!, accumulate: true, out: dx });
    const dp2 = await dParams!.read();
    expectClose('2·dgamma', dp2.subarray(0, d), rb.dgamma.map((v) => 2 * v), 16 * U * Kn * Math.sqrt(n), 16 * U * Kn);
    for (const t of [tx, tg, tb, tdy, y, mean, rstd, dx, dParams!]) t.dispose();
  });

  it('rejects mismatched shapes with ShapeError', async () => {
    const ctx = await gpu();
    const x = ctx.empty([4, 8]), g = ctx.empty([8]), b7 = ctx.empty([7]);
    expect(() => layerNorm(ctx, x, g, b7)).toThrow(ShapeError);
    expect(() => layerNorm(ctx, x, b7, b7)).toThrow(ShapeError);
    expect(() => layerNorm(ctx, x, g, g, { out: x })).toThrow(ShapeError);
    expect(() => layerNormBackward(ctx, x, x, g, b7, b7)).toThrow(ShapeError);
    for (const t of [x, g, b7]) t.dispose();
  });
});
