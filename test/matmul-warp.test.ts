import { describe, expect, it } from 'vitest';
import { gpu } from './helpers/gpu';
import { randn, f32 } from './helpers/rng';
import { checkMatmul, seqRun } from './helpers/matmul-check';
import {
  matmul, matmulShapeClass, parseWarpVariant, pickMatmulVariant, variantTile, warpVariantProblem, workgroupBytes,
  MATMUL_DEFAULT_VARIANT, MATMUL_SELECTION, MATMUL_VARIANTS, type MatmulOptions, type MatmulVariant,
} from '../src/kernels/matmul';
import { matmulRef } from '../src/reference/linalg';
import { ShapeError } from '../src/gpu/errors';
import type { GpuContext } from '../src/gpu/context';

/** The warp-tiled variants (matmul-warp.wgsl), each against the float64 reference (error model: helpers/matmul-check). */
const WARP = MATMUL_VARIANTS.filter((v) => v.warp);

interface Case { M: number; K: number; N: number; batch?: number; aBatched?: boolean; o: MatmulOptions & { useBias?: boolean; useOut?: boolean } }

async function run(ctx: GpuContext, c: Case, seed: number) {
  const { M, K, N, o } = c;
  const batch = c.batch ?? 1;
  const na = c.aBatched ? batch : 1;
  const A = f32(randn(na * M * K, seed));
  const B = f32(randn(K * N, seed + 1));
  const bias = f32(randn(N, seed + 2));
  const prev = f32(randn(batch * M * N, seed + 3));
  const sa = o.transA ? [K, M] : [M, K];
  const ta = ctx.upload(A.f32, c.aBatched ? [batch, ...sa] : sa);
  const tb = ctx.upload(B.f32, o.transB ? [N, K] : [K, N]);
  const tbias = o.useBias ? ctx.upload(bias.f32) : undefined;
  const tout = o.useOut ? ctx.upload(prev.f32, c.aBatched ? [batch, M, N] : [M, N]) : undefined;
  const res = matmul(ctx, ta, tb, { ...o, bias: tbias, out: tout });
  const got = await res.read();
  const alpha = o.alpha ?? 1;
  for (let bi = 0; bi < batch; bi++) {
    const ref = matmulRef(A.f64.subarray(c.aBatched ? bi * M * K : 0), B.f64, M, K, N, {
      transA: o.transA, transB: o.transB, alpha, bias: o.useBias ? bias.f64 : undefined, out: o.accumulate ? prev.f64.subarray(bi * M * N) : undefined,
    });
    checkMatmul(got.subarray(bi * M * N, (bi + 1) * M * N), ref, seqRun(K, o.splitK), alpha, `${JSON.stringify({ M, K, N, batch, ...o })} batch ${bi}`);
  }
  for (const t of [ta, tb, tbias, res]) t?.dispose();
}

const epi = { useBias: true, useOut: true, accumulate: true, alpha: -0.75 };
const tr = (j: number) => ({ transA: !!(j & 1), transB: !!(j & 2) });

describe('matmul warp-tiled variants', () => {
  // The option paths (transposes, epilogue, vec4 or scalar loads and stores, batch offsets) are the same code in
  // every variant: all of them on the cheapest one to compile (SwiftShader: ~1.2 s a pipeline, ~3 s for 128×128).
  it('w64x64x8: every transpose pair and epilogue, vec4 and scalar loads, batched split-K', async () => {
    const ctx = await gpu();
    const variant = 'w64x64x8';
    const epis = [{}, { useBias: true }, { useOut: true, accumulate: true }, epi];
    let seed = 11;
    // 132×44×68: every stored dimension a multiple of 4 (vec4 loads, vec4 C), tiles crossing M and N.
    for (let t = 0; t < 4; t++) await run(ctx, { M: 132, K: 44, N: 68, o: { ...epis[t], ...tr(t), variant } }, seed++);
    // 69×41×67: scalar loads and stores, an interior tile and edge tiles.
    await run(ctx, { M: 69, K: 41, N: 67, o: { ...epi, ...tr(3), variant } }, seed++);
    await run(ctx, { M: 21, K: 76, N: 20, batch: 3, aBatched: true, o: { transB: true, useBias: true, splitK: 2, variant } }, seed++);
  });

  // Per variant one case over an interior tile and edge tiles (the geometry: tile, thread block, K slice, lanes,
  // buffers): even ones vec4 with bias + accumulate + alpha, odd ones scalar loads and a 3-way split-K with a
  // ragged last split; transposes rotate. (w64x64x8: the test above.)
  it.each(WARP.map((v, i) => [v.name, i] as [string, number]).filter(([n]) => n !== 'w64x64x8'))('%s: interior and edge tiles', async (name, i) => {
    const ctx = await gpu();
    const { rows, cols } = variantTile(WARP[i]);
    const c = i % 2 === 0
      ? { M: rows + 4, K: 44, N: cols + 4, o: { ...epi, ...tr(i), variant: name } }
      : { M: rows + 3, K: 301, N: cols + 1, o: { ...epi, ...tr(i), splitK: 3, variant: name } };
    await run(ctx, c, 500 + i);
  });

  it('every warp variant meets the kernel preconditions; a bad one is rejected with its name', async () => {
    for (const v of WARP) {
      expect(warpVariantProblem(v), v.name).toBe('');
      expect(parseWarpVariant(v.name)).toEqual(v);   // names say what they are
    }
    expect(parseWarpVariant('w128x256x16-t8x16sp0')).toMatchObject({ wx: 16, wy: 16, bk: 16, db: false, warp: { tm: 8, tn: 16, lx: 8, pad: 0 } });
    expect(parseWarpVariant('w128x128x8r')?.warp?.lx).toBe(16);
    expect(parseWarpVariant('w100x128x8')).toBeNull();
    const bad: MatmulVariant = { name: 'bad', wx: 16, wy: 16, bk: 8, warp: { tm: 16, tn: 16, lx: 8, pad: 1 } };
    expect(warpVariantProblem(bad)).toMatch(/16×16/);
    expect(warpVariantProblem({ ...bad, warp: { tm: 8, tn: 8, lx: 8, pad: 1 }, bk: 12 })).toMatch(/bk 12/);
    expect(warpVariantProblem({ ...bad, warp: { tm: 8, tn: 8, lx: 8, pad: 1 }, wx: 4, wy: 4 })).toMatch(/units|lanes/);
    // w128x128x8: 16·(32 + 32 + 2)·8·2 bytes; w128x128x16p0: 32 KiB.
    expect(workgroupBytes(WARP.find((v) => v.name === 'w128x128x8')!)).toBe(16896);
    expect(workgroupBytes(parseWarpVariant('w128x128x16p0')!)).toBe(32768);
    const ctx = await gpu();
    // 98 KiB of workgroup memory: more than any adapter offers.
    expect(() => matmul(ctx, ctx.zeros([8, 8]), ctx.zeros([8, 8]), { variant: 'w256x128x32-t16x8' })).toThrow(/maxComputeWorkgroupStorageSize.*w256x128x32-t16x8/);
    expect(() => matmul(ctx, ctx.zeros([8, 8]), ctx.zeros([8, 8]), { variant: 'w1x1x1' })).toThrow(ShapeError);
    expect(() => matmul(ctx, ctx.zeros([8, 8]), ctx.zeros([8, 8]), { variant: 'w16x16x8' })).toThrow(/w16x16x8: lanes/);
  });

  it('selection table: classes of the K-FAC shapes, known variants, the current default everywhere', () => {
    expect(matmulShapeClass(2669, 768, 50272)).toBe('longK');
    expect(matmulShapeClass(740, 256, 50272)).toBe('longK');
    expect(matmulShapeClass(32768, 768, 3072)).toBe('narrow');
    expect(matmulShapeClass(2669, 50272, 768)).toBe('large');
    expect(matmulShapeClass(4096, 4096, 4096)).toBe('large');
    for (const name of Object.values(MATMUL_SELECTION)) expect(MATMUL_VARIANTS.some((v) => v.name === name), name).toBe(true);
    // Until H200 numbers exist every class keeps the measured default; tiny outputs fall back to smaller tiles.
    expect(new Set(Object.values(MATMUL_SELECTION))).toEqual(new Set([MATMUL_DEFAULT_VARIANT]));
    for (const [m, n, k] of [[4096, 4096, 4096], [32768, 768, 768], [2669, 768, 50272]]) expect(pickMatmulVariant(m, n, 1, false, k).name).toBe(MATMUL_DEFAULT_VARIANT);
    expect(pickMatmulVariant(256, 256, 1, false, 256).name).toBe('64x64x8');
    expect(pickMatmulVariant(64, 64, 1, false, 64).name).toBe('32x32x8');
  });
});
