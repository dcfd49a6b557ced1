import { describe, expect, it } from 'vitest';
import { gpu } from './helpers/gpu';
import { GpuContext, packUniforms, grid1d } from '../src/gpu/context';
import { DeviceLostError, LimitExceededError, GpuValidationError, WebGPUUnavailableError } from '../src/gpu/errors';
import { bucketSize } from '../src/gpu/pool';
import { preprocess } from '../src/gpu/wgsl';
import { diagonal } from '../src/kernels/diag';
import { scale } from '../src/kernels/elementwise';

describe('gpu runtime', () => {
  it('reuses pooled buffers and keeps bytes in use flat across repeated work', async () => {
    const ctx = await gpu();
    const x = ctx.upload(new Float32Array(1000).fill(2));
    const before = ctx.pool.bytesInUse;
    for (let i = 0; i < 5; i++) {
      const y = scale(ctx, x, 3);
      expect((await y.read())[999]).toBe(6);
      y.dispose();
    }
    expect(ctx.pool.bytesInUse).toBe(before);
    expect(ctx.pool.bytesPooled).toBeGreaterThan(0);
    x.dispose();
  });

  it('caches pipelines by kernel and variant, never by shape', async () => {
    const ctx = await gpu();
    const n0 = ctx.pipelineCount;
    for (const n of [3, 17, 64]) {
      const m = ctx.upload(new Float32Array(n * n).fill(1), [n, n]);
      diagonal(ctx, m).dispose();
      m.dispose();
    }
    await ctx.sync();
    expect(ctx.pipelineCount - n0).toBeLessThanOrEqual(1);
  });

  it('batches dispatches into few submits', async () => {
    const ctx = await gpu();
    const x = ctx.upload(new Float32Array(64).fill(1));
    await ctx.sync();
    const s0 = ctx.submits;
    let y = x;
    for (let i = 0; i < 50; i++) y = scale(ctx, y, 1.5);
    const out = await y.read();
    expect(ctx.submits - s0).toBe(1);
    expect(out[0]).toBeCloseTo(1.5 ** 50, -3);
  });

  it('bucket sizes waste at most 25% and are multiples of 256', () => {
    for (const b of [1, 255, 257, 1000, 4097, 123456, 1e8]) {
      const s = bucketSize(b);
      expect(s).toBeGreaterThanOrEqual(b);
      expect(s % 256).toBe(0);
      expect(s).toBeLessThanOrEqual(Math.max(256, b * 1.25 + 256));
    }
  });

  it('preprocesses #if/#else/#endif', () => {
    const src = 'a\n#if X\nb\n#if !Y\nc\n#else\nd\n#endif\n#else\ne\n#endif\nf';
    expect(preprocess(src, { X: true })).toBe('a\nb\nc\nf');
    expect(preprocess(src, { X: true, Y: true })).toBe('a\nb\nd\nf');
    expect(preprocess(src, {})).toBe('a\ne\nf');
    expect(() => preprocess('#if X\na', {})).toThrow(/unterminated/);
  });

  it('folds large 1-D grids into two dimensions', () => {
    const [x, y] = grid1d(200000);
    expect(x).toBeLessThanOrEqual(65535);
    expect(x * y).toBeGreaterThanOrEqual(200000);
  });

  it('names the limit when the adapter cannot provide it', async () => {
    const err = await GpuContext.create({ needs: { maxStorageBufferBindingSize: 2 ** 50 } }).catch((e) => e);
    expect(err).toBeInstanceOf(LimitExceededError);
    expect(err.limit).toBe('maxStorageBufferBindingSize');
    expect(err.message).toMatch(/maxStorageBufferBindingSize is \d+, but \d+ is needed/);
  });

  it('reports a missing adapter as WebGPUUnavailableError', async () => {
    const fake = { requestAdapter: async () => null } as unknown as GPU;
    await expect(GpuContext.create({ gpu: fake })).rejects.toBeInstanceOf(WebGPUUnavailableError);
  });

  it('surfaces a WebGPU validation error as GpuValidationError naming the kernel', async () => {
    const ctx = await GpuContext.create();
    const run = async () => {
      ctx.dispatch({ name: 'broken', source: 'fn main( {', bindings: [] }, {}, [], [1]);
      await ctx.sync();
      await new Promise((r) => setTimeout(r, 20));
      ctx.empty([1]);
    };
    const err = await run().catch((e) => e);
    expect(err).toBeInstanceOf(GpuValidationError);
    expect(err.message).toMatch(/broken/);
    ctx.destroy();
  });

  it('turns device loss into DeviceLostError on the next call', async () => {
    const ctx = await GpuContext.create();
    const t = ctx.upload(new Float32Array(16));
    ctx.device.destroy();
    await ctx.gpu.lost;
    await new Promise((r) => setTimeout(r, 10));
    expect(() => ctx.empty([4])).toThrow(DeviceLostError);
    void packUniforms;
    void t;
  });
});

describe('profiler', () => {
  it('sums GPU time per kernel from timestamp queries', async () => {
    const ctx = await GpuContext.create();
    expect(ctx.gpu.features.has('timestamp-query')).toBe(true); // SwiftShader and the H200 both have it
    expect(ctx.enableProfiling()).toBe(true);
    const x = ctx.upload(new Float32Array(4096).fill(1));
    for (let i = 0; i < 600; i++) scale(ctx, x, 2).dispose(); // > one query set: forces a mid-run flush
    const m = ctx.upload(new Float32Array(64 * 64).fill(1), [64, 64]);
    diagonal(ctx, m).dispose();
    await ctx.sync();
    const r = await ctx.profiler!.report();
    const byName = new Map(r.map((k) => [k.kernel, k]));
    expect(byName.get('diag.extract')?.calls).toBe(1);
    const sc = [...byName.values()].find((k) => k.calls === 600);
    expect(sc).toBeTruthy();
    for (const k of r) expect(k.ms).toBeGreaterThanOrEqual(0);
    expect(r.reduce((a, k) => a + k.ms, 0)).toBeGreaterThan(0);
    ctx.destroy();
  });
});
