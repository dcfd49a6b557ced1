import { describe, expect, it } from 'vitest';
import { gpu } from './helpers/gpu';
import { randn, f32 } from './helpers/rng';
import { rope, ropeInvFreq, ropeTables, type RopeScaling } from '../src/kernels/rope';
import { ropeRef, ropeBwdRef, ropeInvFreqRef } from '../src/reference/layers-llama';
import { ShapeError } from '../src/gpu/errors';
import { expectClose } from './helpers/close';

const U = 2 ** -24;
const LLAMA31: RopeScaling = { type: 'llama3', factor: 8, lowFreqFactor: 1, highFreqFactor: 4, originalMaxPositions: 8192 };

/** Error model: cos/sin are rounded f32 (≤ u/2 each), two products and a sum add ≤ 2u·(|x1| + |x2|); margin 2. */
function ropeAtol(x: Float64Array, hd: number): number {
  let m = 0;
  for (let k = 0; k < x.length; k += hd) {
    for (let i = 0; i < hd / 2; i++) m = Math.max(m, Math.abs(x[k + i]) + Math.abs(x[k + i + hd / 2]));
  }
  return 2 * 3 * U * m;
}

describe('rope', () => {
  // [B, T, heads, hd, positionOffset, theta, scaling]: hd = 2 (one pair), several heads, offsets, and
  // positions near 4096 (where f32 angles would be off by ~1e-4 rad: the table's float64 angles matter).
  it.each([
    [1, 1, 1, 2, 0, 1e4, 'default'],
    [2, 5, 3, 16, 0, 1e4, 'linear'],
    [1, 7, 2, 32, 3, 1e4, 'default'],
    [3, 4, 1, 64, 10, 5e5, 'llama3'],
    [2, 9, 4, 128, 100, 5e5, 'llama3'],
    [1, 3, 2, 128, 4090, 1e4, 'default'],
  ] as const)('forward/backward/in-place match float64, B=%i T=%i heads=%i hd=%i offset=%i', async (B, T, heads, hd, off, theta, kind) => {
    const ctx = await gpu();
    const scaling: RopeScaling = kind === 'llama3' ? LLAMA31 : kind === 'linear' ? { type: 'linear', factor: 4 } : { type: 'default' };
    const inv = ropeInvFreq(hd, theta, scaling);
    const table = ropeTables(ctx, inv, off + T + 2);
    const shape = { B, T, heads, hd, positionOffset: off };
    const n = B * T * heads * hd, seed = n + off;
    const x = f32(randn(n, seed).map((v) => 2 * v)), dy = f32(randn(n, seed + 1));
    const tx = ctx.upload(x.f32, [B * T, heads * hd]), tdy = ctx.upload(dy.f32, [B * T, heads * hd]);
    const opts = { seqLen: T, heads, headDim: hd, positionOffset: off };
    const y = rope(ctx, tx, table, opts);
    const ref = ropeRef(x.f64, inv, shape);
    expectClose('y', await y.read(), ref, ropeAtol(x.f64, hd), 0);
    const dx = rope(ctx, tdy, table, { ...opts, backward: true });
    expectClose('dx', await dx.read(), ropeBwdRef(dy.f64, inv, shape), ropeAtol(dy.f64, hd), 0);
    // Round trip: the backward is the inverse rotation (error ≈ two applications).
    const back = rope(ctx, y, table, { ...opts, backward: true });
    expectClose('rope⁻¹(rope(x))', await back.read(), x.f64, 2 * ropeAtol(x.f64, hd), 0);
    // In place, on x itself and through a [rows, heads, hd] view of its buffer.
    rope(ctx, tx, table, { ...opts, out: tx });
    expectClose('y (in place)', await tx.read(), ref, ropeAtol(x.f64, hd), 0);
    const view = tdy.reshape([B * T, heads, hd]);
    rope(ctx, view, table, { ...opts, backward: true, out: view });
    expectClose('dx (in place, view)', await tdy.read(), ropeBwdRef(dy.f64, inv, shape), ropeAtol(dy.f64, hd), 0);
    for (const t of [table, tx, tdy, y, dx, back]) t.dispose();
  });

  it('float64 backward matches central differences of the float64 forward', () => {
    const s = { B: 2, T: 3, heads: 2, hd: 4, positionOffset: 5 };
    const inv = ropeInvFreqRef(4, 100);
    const n = 2 * 3 * 2 * 4;
    const x = randn(n, 21), dy = randn(n, 22), h = 1e-6;
    const L = (v: Float64Array) => ropeRef(v, inv, s).reduce((a, y, i) => a + dy[i] * y, 0);
    const g = ropeBwdRef(dy, inv, s);
    for (let i = 0; i < n; i++) {
      const p = x.slice(), m = x.slice();
      p[i] += h;
      m[i] -= h;
      expect(Math.abs((L(p) - L(m)) / (2 * h) - g[i])).toBeLessThan(1e-8);
    }
  });

  it('ropeInvFreq matches the reference for default, linear and llama3', () => {
    for (const hd of [2, 16, 64, 128]) {
      for (const sc of [{ type: 'default' }, { type: 'linear', factor: 2.5 }, LLAMA31] as RopeScaling[]) {
        const got = ropeInvFreq(hd, 5e5, sc), ref = ropeInvFreqRef(hd, 5e5, sc);
        expect(got.length).toBe(hd / 2);
        // pow vs exp(log): a few float64 ulps.
        for (let i = 0; i < ref.length; i++) expect(Math.abs(got[i] - ref[i])).toBeLessThanOrEqual(1e-13 * ref[i]);
      }
    }
    const base = ropeInvFreq(128, 5e5), l3 = ropeInvFreq(128, 5e5, LLAMA31);
    expect(base[0]).toBe(1);
    expect(Math.abs(base[1] - 5e5 ** (-2 / 128))).toBeLessThan(1e-15);
    // llama3: the highest frequencies (wavelength < 8192/4) are unchanged, the lowest divided by factor,
    // and the schedule stays monotone through the smooth band.
    for (let i = 0; i < 64; i++) if ((2 * Math.PI) / base[i] < 8192 / 4) expect(l3[i]).toBe(base[i]);
    expect(l3[63]).toBe(base[63] / 8);
    expect(l3.filter((f, i) => f < base[i] && f > base[i] / 8).length).toBeGreaterThan(0); // a blended band exists
    for (let i = 1; i < 64; i++) expect(l3[i]).toBeLessThan(l3[i - 1]);
    const lin = ropeInvFreq(64, 1e4, { type: 'linear', factor: 4 }), b64 = ropeInvFreq(64, 1e4);
    for (let i = 0; i < 32; i++) expect(lin[i]).toBe(b64[i] / 4);
  });

  it('rejects bad arguments', async () => {
    const ctx = await gpu();
    expect(() => ropeInvFreq(7, 1e4)).toThrow(ShapeError);
    expect(() => ropeInvFreq(0, 1e4)).toThrow(ShapeError);
    expect(() => ropeInvFreq(8, 0)).toThrow(RangeError);
    expect(() => ropeInvFreq(8, Number.NaN)).toThrow(RangeError);
    expect(() => ropeInvFreq(8, 1e4, { type: 'linear', factor: 0 })).toThrow(RangeError);
    expect(() => ropeInvFreq(8, 1e4, { ...LLAMA31, factor: -1 } as RopeScaling)).toThrow(RangeError);
    expect(() => ropeInvFreq(8, 1e4, { ...LLAMA31, highFreqFactor: 1 } as RopeScaling)).toThrow(RangeError);
    expect(() => ropeInvFreq(8, 1e4, { ...LLAMA31, originalMaxPositions: 0 } as RopeScaling)).toThrow(RangeError);
    expect(() => ropeInvFreq(8, 1e4, { type: 'yarn' } as unknown as RopeScaling)).toThrow(RangeError);
    expect(() => ropeTables(ctx, new Float64Array(0), 4)).toThrow(ShapeError);
    expect(() => ropeTables(ctx, new Float64Array(2), 0)).toThrow(ShapeError);
    const table = ropeTables(ctx, ropeInvFreq(8, 1e4), 6);
    const x = ctx.empty([6, 16]), small = ctx.empty([6, 8]);
    const o = { seqLen: 3, heads: 2, headDim: 8 };
    rope(ctx, x, table, o).dispose(); // the valid call, for contrast
    expect(() => rope(ctx, x, table, { ...o, heads: 3 })).toThrow(ShapeError); // last dim ≠ heads·hd
    expect(() => rope(ctx, x, table, { ...o, seqLen: 4 })).toThrow(ShapeError); // 6 rows are not whole sequences
    expect(() => rope(ctx, x, table, { ...o, positionOffset: 4 })).toThrow(ShapeError); // past the table
    expect(() => rope(ctx, x, table, { ...o, positionOffset: -1 })).toThrow(ShapeError);
    expect(() => rope(ctx, x, table, { seqLen: 3, heads: 4, headDim: 4 })).toThrow(ShapeError); // table has 8 columns
    expect(() => rope(ctx, x, table, { seqLen: 3, heads: 16, headDim: 1 })).toThrow(ShapeError); // odd headDim
    expect(() => rope(ctx, x, table, { ...o, out: small })).toThrow(ShapeError);
    for (const t of [table, x, small]) t.dispose();
  });
});
