import { describe, expect, it } from 'vitest';
import { gpu } from './helpers/gpu';
import { randn, f32, rng } from './helpers/rng';
import { embedding } from '../src/kernels/embedding';
import { embeddingRef } from '../src/reference/layers';
import { ShapeError } from '../src/gpu/errors';

describe('embedding', () => {
  // [B, T, d, V, posOffset]
  it.each([[1, 1, 16, 97, 0], [2, 5, 24, 97, 0], [3, 33, 64, 50, 3]])('matches float64, B=%i T=%i d=%i V=%i off=%i', async (B, T, d, V, off) => {
    const ctx = await gpu();
    const P = T + 2 + off + 1; // one spare row
    const r = rng(B * 100 + T);
    const ids = Uint32Array.from({ length: B * T }, () => Math.floor(r() * V));
    ids[0] = V - 1;
    const et = f32(randn(V * d, 5)), ep = f32(randn(P * d, 6));
    const tid = ctx.upload(ids), te = ctx.upload(et.f32, [V, d]), tp = ctx.upload(ep.f32, [P, d]);
    const x = embedding(ctx, tid, te, tp, { seqLen: T, posOffset: off });
    const ref = embeddingRef(ids, et.f64, ep.f64, d, T, off);
    const got = await x.read();
    // One fp32 addition: exactly the rounded float64 sum.
    for (let i = 0; i < ref.length; i++) if (got[i] !== Math.fround(ref[i])) expect.fail(`x[${i}] = ${got[i]}, reference ${ref[i]}`);
    for (const t of [tid, te, tp, x]) t.dispose();
  });

  it('writes NaN for out-of-range ids and rejects bad shapes', async () => {
    const ctx = await gpu();
    const ids = ctx.upload(Uint32Array.from([1, 7]));
    const te = ctx.upload(new Float32Array(5 * 4), [5, 4]), tp = ctx.upload(new Float32Array(6 * 4), [6, 4]);
    const got = await embedding(ctx, ids, te, tp).read();
    expect(got.slice(0, 4).every((v) => v === 0)).toBe(true);
    expect(got.slice(4).every(Number.isNaN)).toBe(true);
    expect(() => embedding(ctx, ids, te, tp, { seqLen: 5 })).toThrow(ShapeError); // 2 ids, T = 5
    expect(() => embedding(ctx, ids, te, tp, { posOffset: 3 })).toThrow(ShapeError); // positions past the table
    expect(() => embedding(ctx, te, te, tp)).toThrow(ShapeError); // f32 ids
    expect(() => embedding(ctx, ids, te, ctx.empty([6, 3]))).toThrow(ShapeError);
  });
});
