import { describe, expect, it } from 'vitest';
import { gpu } from './helpers/gpu';
import { randn, f32 } from './helpers/rng';
import { packLower, packLowerInPlace, readLowerTriangle, triangleBlocks, triangleSize, unpackSymmetricInPlace, uploadSymmetric } from '../src/kernels/triangle';
import { ShapeError } from '../src/gpu/errors';

describe('lower triangles packed in place (host spills of symmetric inverses)', () => {
  it('row blocks never let one row\'s move overlap another\'s, and cover rows 1…n−1 once', () => {
    for (const n of [3, 4, 5, 17, 768, 3073, 16385, 46340]) {
      const b = triangleBlocks(n);
      expect(b[0][0]).toBe(1);
      expect(b[b.length - 1][1]).toBe(n);
      for (let k = 0; k < b.length; k++) {
        const [r0, r1] = b[k];
        if (k > 0) expect(r0).toBe(b[k - 1][1]);
        if (r1 - r0 > 1) expect(triangleSize(r1)).toBeLessThanOrEqual(r0 * n); // writes below every read
        else expect(r0 * n - triangleSize(r0)).toBeGreaterThan(r0); // one row: its places do not overlap
      }
      expect(b.length).toBeLessThanOrEqual(6);
    }
  });

  it.each([3, 4, 5, 17, 130, 301])('n=%i: pack gives packLower\'s bits; unpack gives the mirrored matrix', async (n) => {
    const ctx = await gpu();
    const { f32: m } = f32(randn(n * n, 40 + n));
    const want = packLower(m, n);
    const t = ctx.upload(m, [n, n]);
    packLowerInPlace(ctx, t);
    const got = new Float32Array(await ctx.readBytes(t.buffer, 0, 4 * triangleSize(n)));
    expect(got).toEqual(want);
    // Unpack from a buffer whose tail is garbage (as after a pack): every entry is set from the triangle.
    const u = ctx.upload(new Float32Array(n * n).fill(Number.NaN), [n, n]);
    ctx.write(u, want);
    unpackSymmetricInPlace(ctx, u);
    const mirrored = new Float32Array(n * n);
    for (let i = 0; i < n; i++) for (let j = 0; j < n; j++) mirrored[i * n + j] = m[Math.max(i, j) * n + Math.min(i, j)];
    expect(await u.read()).toEqual(mirrored);
    t.dispose();
    u.dispose();
  });

  it.each([1, 2, 3, 64])('n=%i: readLowerTriangle packs (in place only when consumed); uploadSymmetric restores the matrix', async (n) => {
    const ctx = await gpu();
    const { f32: r } = f32(randn(n * n, 7 + n));
    const m = new Float32Array(n * n); // exactly symmetric, as the factors and inverses are
    for (let i = 0; i < n; i++) for (let j = 0; j <= i; j++) m[i * n + j] = m[j * n + i] = r[i * n + j];
    const t = ctx.upload(m, [n, n]);
    expect(await readLowerTriangle(ctx, t, false)).toEqual(packLower(m, n));
    expect(await t.read()).toEqual(m); // not consumed: intact
    const packed = await readLowerTriangle(ctx, t, true);
    expect(packed).toEqual(packLower(m, n));
    t.dispose();
    const back = uploadSymmetric(ctx, packed, n);
    expect(await back.read()).toEqual(m);
    back.dispose();
    expect(() => uploadSymmetric(ctx, packed.subarray(1), n)).toThrow(/not a triangle of order/);
  });

  it('refuses what it cannot move in place', async () => {
    const ctx = await gpu();
    const a = ctx.empty([4, 5]);
    const b = ctx.empty([2, 2]);
    expect(() => packLowerInPlace(ctx, a)).toThrow(ShapeError);
    expect(() => unpackSymmetricInPlace(ctx, b)).toThrow(/outside 3…/);
    a.dispose();
    b.dispose();
  });
});
