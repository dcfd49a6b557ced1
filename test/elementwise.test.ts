import { afterEach, describe, expect, it } from 'vitest';
import { gpu } from './helpers/gpu';
import { randn, f32, rng } from './helpers/rng';
import {
  add, applyMask, axpy, castBf16ToF32, castF16ToF32, dispatchLimits, fill, mul, scale,
} from '../src/kernels/elementwise';
import { bf16ToNumber, halfToNumber } from '../src/reference/reduce';
import { ShapeError } from '../src/gpu/errors';

const U = 2 ** -24; // unit roundoff of f32
const bitsOf = (a: Float32Array) => new Uint32Array(a.buffer, a.byteOffset, a.length);
const f32Bits = (v: number) => bitsOf(Float32Array.of(v))[0];

// 1, a partial workgroup, just over one workgroup, several workgroups with a tail.
const SIZES = [1, 255, 257, 3001];

afterEach(() => {
  dispatchLimits.maxWorkgroupsPerDim = 65535;
});

describe('elementwise kernels', () => {
  it.each(SIZES)('scale, add, mul, axpy match float64 (n=%i)', async (n) => {
    const ctx = await gpu();
    const a = f32(randn(n, 11 + n));
    const b = f32(randn(n, 12 + n));
    const alpha = Math.fround(-0.37);
    const ta = ctx.upload(a.f32);
    const tb = ctx.upload(b.f32);
    const [s, sum, prod] = await Promise.all([scale(ctx, ta, alpha), add(ctx, ta, tb), mul(ctx, ta, tb)].map((t) => t.read()));
    axpy(ctx, tb, ta, alpha);
    const y = await tb.read();
    for (let i = 0; i < n; i++) {
      // one correctly rounded operation: within half an ulp, bounded by u·|exact|
      const exS = alpha * a.f64[i], exA = a.f64[i] + b.f64[i], exM = a.f64[i] * b.f64[i];
      expect(Math.abs(s[i] - exS)).toBeLessThanOrEqual(U * Math.abs(exS));
      expect(Math.abs(sum[i] - exA)).toBeLessThanOrEqual(U * Math.abs(exA));
      expect(Math.abs(prod[i] - exM)).toBeLessThanOrEqual(U * Math.abs(exM));
      // two roundings (or one fused): 2u·(|y| + |αx|)
      const exY = b.f64[i] + alpha * a.f64[i];
      expect(Math.abs(y[i] - exY)).toBeLessThanOrEqual(2 * U * (Math.abs(b.f64[i]) + Math.abs(alpha * a.f64[i])));
    }
    ta.dispose();
    tb.dispose();
  });

  it('axpy with x === y scales in place', async () => {
    const ctx = await gpu();
    const a = f32(randn(700, 5));
    const t = ctx.upload(a.f32);
    axpy(ctx, t, t, 0.5);
    const y = await t.read();
    for (let i = 0; i < 700; i++) expect(Math.abs(y[i] - 1.5 * a.f64[i])).toBeLessThanOrEqual(2 * U * 1.5 * Math.abs(a.f64[i]));
    t.dispose();
  });

  it('folds grids beyond the per-dimension workgroup limit into y', async () => {
    const ctx = await gpu();
    dispatchLimits.maxWorkgroupsPerDim = 3; // 8 workgroups → a 3×3 grid with one idle workgroup
    const n = 256 * 7 + 5;
    const a = f32(randn(n, 99));
    const t = ctx.upload(a.f32);
    const s = await scale(ctx, t, 2).read();
    for (let i = 0; i < n; i++) expect(s[i]).toBe(2 * a.f32[i]);
    const z = ctx.upload(new Float32Array(n + 300).fill(7), [n + 300]);
    fill(ctx, z, -1.5);
    const zs = await z.read();
    for (let i = 0; i < n + 300; i++) expect(zs[i]).toBe(-1.5);
    t.dispose();
    z.dispose();
  });

  it('fill writes exact bit patterns (-0, NaN, u32, i32)', async () => {
    const ctx = await gpu();
    const x = ctx.empty([513]);
    fill(ctx, x, -0);
    expect(bitsOf(await x.read()).every((b) => b === 0x80000000)).toBe(true);
    fill(ctx, x, NaN);
    expect((await x.read()).every((v) => Number.isNaN(v))).toBe(true);
    const u = ctx.empty([33], 'u32');
    fill(ctx, u, 0xdeadbeef);
    expect((await ctx.readU32(u)).every((v) => v === 0xdeadbeef)).toBe(true);
    const i = ctx.empty([33], 'i32');
    fill(ctx, i, -5);
    expect(new Int32Array((await ctx.readU32(i)).buffer).every((v) => v === -5)).toBe(true);
    expect(() => fill(ctx, u, 0.5)).toThrow(ShapeError);
    x.dispose();
    u.dispose();
    i.dispose();
  });

  it.each([1, 1000])('applyMask zeroes pruned entries to exactly +0 and keeps the others bit-exact (n=%i)', async (n) => {
    const ctx = await gpu();
    const r = rng(n);
    const specials = [-0, 0, Infinity, -Infinity, NaN, 1e-45, -1e-45];
    const w = Float32Array.from({ length: n }, (_, i) => (i < specials.length && n > 1 ? specials[i] : (r() - 0.5) * 10));
    const m = Float32Array.from({ length: n }, () => (r() < 0.5 ? 0 : 1));
    const tw = ctx.upload(w);
    const tm = ctx.upload(m);
    applyMask(ctx, tw, tm);
    const out = bitsOf(await tw.read());
    const wb = bitsOf(w);
    for (let i = 0; i < n; i++) expect(out[i]).toBe(m[i] === 0 ? 0 : wb[i]);
    expect(() => applyMask(ctx, tw, tw)).toThrow(ShapeError);
    tw.dispose();
    tm.dispose();
  });

  it.each([
    ['f16', castF16ToF32, halfToNumber, 0x3ff],
    ['bf16', castBf16ToF32, bf16ToNumber, 0x7f],
  ] as const)('%s → f32 is exact on all 65536 bit patterns', async (_name, cast, decode, mantMask) => {
    const ctx = await gpu();
    const halves = new Uint16Array(65536).map((_, i) => i);
    const packed = ctx.upload(new Uint32Array(halves.buffer));
    const out = bitsOf(await cast(ctx, packed, 65536).read());
    for (let h = 0; h < 65536; h++) {
      const v = decode(h);
      if (Number.isNaN(v)) {
        // sign kept, quiet/signalling payload kept in the top mantissa bits
        const sign = (out[h] >>> 31) === h >>> 15;
        const nan = (out[h] & 0x7f800000) === 0x7f800000 && (out[h] & 0x7fffff) !== 0;
        const payload = mantMask === 0x3ff ? (out[h] >>> 13) & 0x3ff : (out[h] >>> 16) & 0x7f;
        expect(sign && nan && payload === (h & mantMask), `pattern ${h.toString(16)}`).toBe(true);
      } else if (out[h] !== f32Bits(v)) {
        expect.fail(`pattern 0x${h.toString(16)}: got bits 0x${out[h].toString(16)}, expected ${v}`);
      }
    }
    // odd n: only the low half of the last word is decoded
    const odd = await cast(ctx, packed, 7).read();
    expect(odd.length).toBe(7);
    for (let h = 0; h < 7; h++) expect(odd[h]).toBe(Math.fround(decode(h)));
    expect(() => cast(ctx, packed, 65537)).toThrow(ShapeError);
    packed.dispose();
  });

  it('rejects mismatched sizes and non-f32 tensors with ShapeError', async () => {
    const ctx = await gpu();
    const a = ctx.zeros([3]);
    const b = ctx.zeros([4]);
    const c = ctx.zeros([3], 'u32');
    expect(() => add(ctx, a, b)).toThrow(ShapeError);
    expect(() => mul(ctx, a, c)).toThrow(ShapeError);
    expect(() => axpy(ctx, a, b, 1)).toThrow(ShapeError);
    a.dispose();
    b.dispose();
    c.dispose();
  });
});
