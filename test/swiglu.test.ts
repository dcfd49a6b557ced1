import { describe, expect, it } from 'vitest';
import { gpu } from './helpers/gpu';
import { randn, f32 } from './helpers/rng';
import { swiglu, swigluBackward } from '../src/kernels/swiglu';
import { swigluRef, swigluBwdRef } from '../src/reference/layers-llama';
import { ShapeError } from '../src/gpu/errors';

const U = 2 ** -24;
// Subnormal results (σ(−100) ≈ 4e-44) may be flushed to 0 by the GPU: an absolute floor of 2^-126·max|g·u|.
const FTZ = 2 ** -126 * 1e3;

const sig = (g: number) => 1 / (1 + Math.exp(-g));

/** |got − ref| ≤ bound, entry by entry (NaN fails). */
function expectWithin(name: string, got: Float32Array, ref: Float64Array, bound: Float64Array): void {
  expect(got.length).toBe(ref.length);
  for (let i = 0; i < ref.length; i++) {
    if (!(Math.abs(got[i] - ref[i]) <= bound[i])) expect.fail(`${name}[${i}] = ${got[i]}, reference ${ref[i]}, bound ${bound[i]}`);
  }
}

type Pair = { f32: Float32Array; f64: Float64Array };

/**
 * Error model, per entry: WGSL exp(x) is within (3 + 2|x|) ulp and 1/(1+e) adds ~3.5 ulp, so σ(±g)
 * carries ≤ rel = (8 + 2|g|)·u relative error (+2 roundings for the products; margin 2).
 * y and dUp: rel·|ref|. dG = dy·u·σ(g)·h with h = 1 + g·σ(−g), which cancels near g ≈ −1.28: h's
 * absolute error is ≲ rel·(1 + |g|·σ(−g)), so dG's bound is rel·|dy·u|·σ(g)·(|h| + 1 + |g|·σ(−g)).
 */
async function check(ctx: Awaited<ReturnType<typeof gpu>>, g: Pair, u: Pair, dy: Pair) {
  const n = g.f32.length;
  const yRef = swigluRef(g.f64, u.f64), bRef = swigluBwdRef(dy.f64, g.f64, u.f64);
  const bY = new Float64Array(n), bU = new Float64Array(n), bG = new Float64Array(n);
  for (let i = 0; i < n; i++) {
    const gi = g.f64[i], rel = 2 * (12 + 2 * Math.abs(gi)) * U, h = 1 + gi * sig(-gi);
    bY[i] = rel * Math.abs(yRef[i]) + FTZ;
    bU[i] = rel * Math.abs(bRef.dUp[i]) + FTZ;
    bG[i] = rel * Math.abs(dy.f64[i] * u.f64[i]) * sig(gi) * (Math.abs(h) + 1 + Math.abs(gi) * sig(-gi)) + FTZ;
  }
  const tg = ctx.upload(g.f32), tu = ctx.upload(u.f32), tdy = ctx.upload(dy.f32);

  const y = swiglu(ctx, tg, tu);
  expectWithin('y', await y.read(), yRef, bY);
  const { dGate, dUp } = swigluBackward(ctx, tdy, tg, tu);
  const gotG = await dGate.read(), gotU = await dUp.read();
  for (const a of [gotG, gotU]) expect(a.every(Number.isFinite)).toBe(true);
  expectWithin('dGate', gotG, bRef.dGate, bG);
  expectWithin('dUp', gotU, bRef.dUp, bU);

  // In place: y into up, then into gate (re-uploaded), then the backward over gate/up themselves.
  const tu2 = ctx.upload(u.f32);
  expect(swiglu(ctx, tg, tu2, { out: tu2 })).toBe(tu2);
  expectWithin('y (out = up)', await tu2.read(), yRef, bY);
  const tg2 = ctx.upload(g.f32);
  swiglu(ctx, tg2, tu, { out: tg2 });
  expectWithin('y (out = gate)', await tg2.read(), yRef, bY);
  ctx.write(tg2, g.f32);
  ctx.write(tu2, u.f32);
  const ip = swigluBackward(ctx, tdy, tg2, tu2, { dGateOut: tg2, dUpOut: tu2 });
  expect(ip.dGate).toBe(tg2);
  expectWithin('dGate (in place)', await tg2.read(), bRef.dGate, bG);
  expectWithin('dUp (in place)', await tu2.read(), bRef.dUp, bU);
  for (const t of [tg, tu, tdy, y, dGate, dUp, tu2, tg2]) t.dispose();
}

describe('swiglu', () => {
  // One element, a size not a multiple of 256, several workgroups.
  it.each([1, 97, 4099])('forward/backward match float64, n=%i', async (n) => {
    const ctx = await gpu();
    await check(ctx, f32(randn(n, n).map((v) => 3 * v)), f32(randn(n, n + 1)), f32(randn(n, n + 2)));
  });

  it('is finite and accurate for large |gate| and at the zero of dGate', async () => {
    const ctx = await gpu();
    const gs = [100, -100, 88, -88, 30, -30, 17, -17, 0, -0, 1e-30, -1.2784645, -1.2784646, 1, -1];
    const g = f32(Float64Array.from(gs));
    await check(ctx, g, f32(randn(gs.length, 7)), f32(randn(gs.length, 8)));
  });

  it('float64 backward matches central differences of the float64 forward', () => {
    const g = Float64Array.from([-6, -1.3, -0.2, 0, 0.7, 2.5, 9]), u = randn(7, 31), dy = randn(7, 32), h = 1e-6;
    const b = swigluBwdRef(dy, g, u);
    const L = (gg: Float64Array, uu: Float64Array) => swigluRef(gg, uu).reduce((s, y, i) => s + dy[i] * y, 0);
    for (let i = 0; i < 7; i++) {
      const gp = g.slice(), gm = g.slice(), up = u.slice(), um = u.slice();
      gp[i] += h; gm[i] -= h; up[i] += h; um[i] -= h;
      expect(Math.abs((L(gp, u) - L(gm, u)) / (2 * h) - b.dGate[i])).toBeLessThan(1e-8);
      expect(Math.abs((L(g, up) - L(g, um)) / (2 * h) - b.dUp[i])).toBeLessThan(1e-8);
    }
  });

  it('rejects mismatched shapes and bad aliasing with ShapeError', async () => {
    const ctx = await gpu();
    const a = ctx.empty([4, 3]), b = ctx.empty([4, 3]), c = ctx.empty([5]), d = ctx.empty([12]);
    expect(() => swiglu(ctx, a, c)).toThrow(ShapeError);
    expect(() => swiglu(ctx, a, b, { out: c })).toThrow(ShapeError);
    expect(() => swiglu(ctx, a, a, { out: a })).toThrow(ShapeError);
    expect(() => swigluBackward(ctx, c, a, b)).toThrow(ShapeError);
    expect(() => swigluBackward(ctx, d, a, b, { dGateOut: c })).toThrow(ShapeError);
    expect(() => swigluBackward(ctx, d, a, b, { dGateOut: b })).toThrow(ShapeError); // dGate over up
    expect(() => swigluBackward(ctx, d, a, b, { dGateOut: a })).toThrow(ShapeError); // only one in place
    expect(() => swigluBackward(ctx, d, a, b, { dUpOut: d })).toThrow(ShapeError); // over dy
    const e = ctx.empty([12]);
    expect(() => swigluBackward(ctx, d, a, b, { dGateOut: e, dUpOut: e })).toThrow(ShapeError);
    for (const t of [a, b, c, d, e]) t.dispose();
  });
});
