import { describe, expect, it } from 'vitest';
import { gpu } from './helpers/gpu';
import { randn, f32 } from './helpers/rng';
import { matmul, MATMUL_VARIANTS, type MatmulOptions } from '../src/kernels/matmul';
import { matmulRef } from '../src/reference/linalg';
import { ShapeError } from '../src/gpu/errors';
import type { GpuContext } from '../src/gpu/context';

const EPS = 2 ** -23;

/**
 * Error model: any fp32 summation order of K products satisfies |ĉ − c| ≤ γ_K·|alpha|·Σ_k|a_ik b_kj|
 * with γ_K ≈ K·2⁻²⁴ (Higham); the alpha/bias/accumulate roundings add a few ulps of
 * mag = |alpha|·Σ|ab| + |bias| + |out| (not of the result, which may cancel). We allow
 * (K + 4)·eps·|alpha|·Σ|ab| + 4·eps·mag — a worst-case bound, so the test never flakes, while any
 * indexing bug gives O(1) errors.
 */
function check(got: Float32Array, ref: { c: Float64Array; absSum: Float64Array; mag: Float64Array }, K: number, alpha: number, label: string) {
  expect(got.length).toBe(ref.c.length);
  let worst = 0;
  for (let i = 0; i < ref.c.length; i++) {
    const tol = (K + 4) * EPS * Math.abs(alpha) * ref.absSum[i] + 4 * EPS * ref.mag[i] + 1e-30;
    const err = Math.abs(got[i] - ref.c[i]);
    if (!(err <= tol)) throw new Error(`${label}: element ${i} got ${got[i]}, want ${ref.c[i]} (tol ${tol})`);
    worst = Math.max(worst, err / tol);
  }
  return worst;
}

interface Case { M: number; K: number; N: number; batch: number; aBatched: boolean; bBatched: boolean; o: MatmulOptions & { useBias?: boolean; useOut?: boolean } }

async function runCase(ctx: GpuContext, c: Case, seed: number) {
  const { M, K, N, batch, o } = c;
  const na = c.aBatched ? batch : 1;
  const nb = c.bBatched ? batch : 1;
  const A = f32(randn(na * M * K, seed));
  const B = f32(randn(nb * K * N, seed + 1));
  const bias = f32(randn(N, seed + 2));
  const prev = f32(randn(batch * M * N, seed + 3));
  const sa = o.transA ? [K, M] : [M, K];
  const sb = o.transB ? [N, K] : [K, N];
  const batched = c.aBatched || c.bBatched;
  const ta = ctx.upload(A.f32, c.aBatched ? [batch, ...sa] : sa);
  const tb = ctx.upload(B.f32, c.bBatched ? [batch, ...sb] : sb);
  const tbias = o.useBias ? ctx.upload(bias.f32) : undefined;
  const tout = o.useOut ? ctx.upload(prev.f32, batched ? [batch, M, N] : [M, N]) : undefined;
  const res = matmul(ctx, ta, tb, { ...o, bias: tbias, out: tout });
  expect(res.shape).toEqual(batched ? [batch, M, N] : [M, N]);
  const got = await res.read();
  const alpha = o.alpha ?? 1;
  for (let bi = 0; bi < (batched ? batch : 1); bi++) {
    const ref = matmulRef(
      A.f64.subarray(c.aBatched ? bi * M * K : 0), B.f64.subarray(c.bBatched ? bi * K * N : 0), M, K, N,
      { transA: o.transA, transB: o.transB, alpha, bias: o.useBias ? bias.f64 : undefined, out: o.accumulate ? prev.f64.subarray(bi * M * N) : undefined },
    );
    check(got.subarray(bi * M * N, (bi + 1) * M * N), ref, K, alpha, `${JSON.stringify(c)} batch ${bi}`);
  }
  for (const t of [ta, tb, tbias, res]) t?.dispose();
}

describe('matmul', () => {
  // Odd shapes (not tile multiples), K = 1, 1×N, N×1, vec4-aligned and not.
  const shapes: Array<[number, number, number]> = [
    [1, 1, 1], [1, 7, 33], [37, 1, 1], [5, 1, 9], [65, 19, 70], [130, 36, 8], [24, 40, 132], [3, 129, 2],
  ];
  it.each(shapes)('M=%i K=%i N=%i with every option combination', async (M, K, N) => {
    const ctx = await gpu();
    let seed = M * 1000 + K * 10 + N;
    for (let mask = 0; mask < 32; mask++) {
      const o = {
        transA: !!(mask & 1), transB: !!(mask & 2), useBias: !!(mask & 4), useOut: !!(mask & 8),
        accumulate: !!(mask & 8) && !!(mask & 16), alpha: mask & 16 ? -0.75 : undefined,
      };
      await runCase(ctx, { M, K, N, batch: 1, aBatched: false, bBatched: false, o }, seed++);
    }
  });

  it('batched and broadcast operands', async () => {
    const ctx = await gpu();
    let seed = 7;
    for (const [aB, bB] of [[true, true], [true, false], [false, true]]) {
      for (const transA of [false, true]) {
        for (const transB of [false, true]) {
          await runCase(ctx, { M: 21, K: 12, N: 18, batch: 3, aBatched: aB, bBatched: bB, o: { transA, transB, useBias: true } }, seed++);
        }
      }
    }
  });

  it('every variant on an edge-crossing shape', async () => {
    const ctx = await gpu();
    // One case per variant (SwiftShader is slow with barriers): alternate vec4/scalar loads and transposes.
    for (const [i, v] of MATMUL_VARIANTS.entries()) {
      const c = i % 2 === 0 ? { M: 70, K: 44, N: 68, o: { variant: v.name, transB: i % 4 === 0 } } : { M: 33, K: 41, N: 68, o: { variant: v.name, transA: i % 4 === 1, useBias: true } };
      await runCase(ctx, { ...c, batch: 1, aBatched: false, bBatched: false }, 100 + i);
    }
  });

  it('rejects bad shapes with ShapeError', async () => {
    const ctx = await gpu();
    const a = ctx.zeros([4, 5]);
    const b = ctx.zeros([6, 3]);
    const b3 = ctx.zeros([2, 5, 3]);
    const a3 = ctx.zeros([3, 4, 5]);
    expect(() => matmul(ctx, a, b)).toThrow(ShapeError);
    expect(() => matmul(ctx, a, b)).toThrow(/K=5.*K=6/);
    expect(() => matmul(ctx, a3, b3)).toThrow(/batch/);
    expect(() => matmul(ctx, a, ctx.zeros([5, 3]), { bias: ctx.zeros([4]) })).toThrow(ShapeError);
    expect(() => matmul(ctx, a, ctx.zeros([5, 3]), { out: ctx.zeros([4, 4]) })).toThrow(ShapeError);
    expect(() => matmul(ctx, a, ctx.zeros([5, 3]), { accumulate: true })).toThrow(ShapeError);
    expect(() => matmul(ctx, a, ctx.zeros([5]))).toThrow(ShapeError);
    expect(() => matmul(ctx, a, ctx.zeros([5, 3]), { variant: 'nope' })).toThrow(ShapeError);
    expect(() => matmul(ctx, ctx.zeros([0, 5]), ctx.zeros([5, 3]))).toThrow(ShapeError);
  });
});
