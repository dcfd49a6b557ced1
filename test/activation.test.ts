import { describe, expect, it } from 'vitest';
import { gpu } from './helpers/gpu';
import { randn, f32 } from './helpers/rng';
import { relu, reluBackward, colSum } from '../src/kernels/activation';
import { reluRef, reluBwdRef, colSumRef } from '../src/reference/layers';
import { ShapeError } from '../src/gpu/errors';

const U = 2 ** -24;

describe('activation', () => {
  it.each([1, 97, 4099])('relu forward/backward are exact, n=%i', async (n) => {
    const ctx = await gpu();
    const x = f32(randn(n, n));
    x.f32[0] = 0; // y = 0 must mask the gradient
    x.f64[0] = 0;
    const dy = f32(randn(n, n + 1));
    const tx = ctx.upload(x.f32), tdy = ctx.upload(dy.f32);
    const y = relu(ctx, tx);
    const dx = reluBackward(ctx, tdy, y);
    expect(Array.from(await y.read())).toEqual(Array.from(reluRef(x.f64)));
    expect(Array.from(await dx.read())).toEqual(Array.from(reluBwdRef(dy.f64, reluRef(x.f64))));
    reluBackward(ctx, tdy, y, { out: tdy }); // in place on dy
    expect(Array.from(await tdy.read())).toEqual(Array.from(reluBwdRef(dy.f64, reluRef(x.f64))));
    relu(ctx, tx, { out: tx }); // in place
    expect(Array.from(await tx.read())).toEqual(Array.from(reluRef(x.f64)));
    for (const t of [tx, tdy, y, dx]) t.dispose();
  });

  // [n, d]: 1×N, N×1, rows that need two and three reduction levels (256-row blocks), d not a multiple of 64.
  it.each([[1, 50], [9, 1], [300, 70], [70000, 3]])('colSum matches float64, n=%i d=%i', async (n, d) => {
    const ctx = await gpu();
    const x = f32(randn(n * d, n + d));
    const tx = ctx.upload(x.f32, [n, d]);
    const out = colSum(ctx, tx);
    const ref = colSumRef(x.f64, d);
    const got = await out.read();
    // Pairwise-ish reduction: error ≲ u·(levels·256)·Σ|x|; Σ|x| ≈ 0.8·n per column.
    for (let j = 0; j < d; j++) expect(Math.abs(got[j] - ref[j])).toBeLessThanOrEqual(U * 1024 * n + 1e-6);
    colSum(ctx, tx, { out, accumulate: true });
    const got2 = await out.read();
    for (let j = 0; j < d; j++) expect(Math.abs(got2[j] - 2 * ref[j])).toBeLessThanOrEqual(U * 2048 * n + 1e-6);
    tx.dispose();
    out.dispose();
  });

  it('rejects bad shapes with ShapeError', async () => {
    const ctx = await gpu();
    const a = ctx.empty([4, 3]), b = ctx.empty([5]);
    expect(() => reluBackward(ctx, a, b)).toThrow(ShapeError);
    expect(() => colSum(ctx, b)).toThrow(ShapeError);
    expect(() => colSum(ctx, a, { accumulate: true })).toThrow(ShapeError);
    expect(() => relu(ctx, a, { out: b })).toThrow(ShapeError);
    a.dispose();
    b.dispose();
  });
});
