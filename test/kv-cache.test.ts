/**
 * KV-cache generation (model/kv-cache.ts, model/generate.ts) on opt-micro and llama-micro, dense and
 * compact (heads, a kv group and FFN neurons removed by hand, so layers have their own widths): the
 * cached greedy tokens equal the no-cache path's, each cached step's logits match the full forward's row
 * within an fp32 error model, top-k sampling draws the same tokens, and generation past
 * max_position_embeddings (a tiny model) continues like the no-cache path.
 */
import { join } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { compactModel } from '../src/compact/index';
import type { GpuContext } from '../src/gpu/context';
import type { Tensor } from '../src/gpu/tensor';
import { loadCheckpoint, type LoadedCheckpoint } from '../src/io/checkpoint';
import { matmul } from '../src/kernels/matmul';
import { DecoderModel, forwardBatch, generate } from '../src/model/index';
import { lastLogits } from '../src/model/generate';
import { forwardCached, KvCache } from '../src/model/kv-cache';
import { optCkpt, zeroHeadO, zeroNeuronRow } from './helpers/compact';
import { gpu } from './helpers/gpu';
import { rng } from './helpers/rng';

const MODELS = join(import.meta.dirname, '..', 'demo/public/models');

let ctx: GpuContext;
beforeAll(async () => { ctx = await gpu(); });

const ids = (vocab: number, n: number, seed: number) => { const r = rng(seed); return Array.from({ length: n }, () => Math.floor(r() * vocab)); };

/** The fixture with query heads 0 and 1 of layer 0 (with GQA: kv group 0) and a few FFN neurons dead, compacted. */
function compacted(src: LoadedCheckpoint): LoadedCheckpoint {
  const z: LoadedCheckpoint = { ...src, tensors: new Map([...src.tensors].map(([k, v]) => [k, v.slice()])) };
  zeroHeadO(z, 0, 0);
  zeroHeadO(z, 0, 1);
  for (const i of [3, 7, 11]) zeroNeuronRow(z, 1, i);
  const cm = compactModel(src.config, z.tensors);
  expect(cm.config.layers![0].numHeads).toBe(src.config.numHeads - 2);
  return { ...src, config: cm.config, tensors: cm.tensors, shapes: cm.shapes };
}

async function rows(t: Tensor): Promise<Float32Array> {
  const r = await t.read();
  t.dispose();
  return r;
}

/** Cached step logits vs the full forward's rows for P prompt tokens then `steps` single tokens. */
async function checkLogits(model: DecoderModel, tokens: number[], P: number): Promise<void> {
  const n = tokens.length, V = model.config.vocabSize;
  const all = ctx.upload(Uint32Array.from(tokens), [n]);
  const fwd = forwardBatch(ctx, model, all, 1, n);
  all.dispose();
  const full = await rows(matmul(ctx, fwd.hf, model.head(), { transB: true }));
  fwd.hf.dispose();
  const cache = KvCache.create(ctx, model, n);
  let worst = 0, scale = 0;
  try {
    for (let t = P; t <= n; t++) {
      const T = t === P ? P : 1;
      const step = ctx.upload(Uint32Array.from(tokens.slice(t - T, t)), [T]);
      const got = await rows(lastLogits(ctx, model, forwardCached(ctx, model, cache, step, T), T));
      step.dispose();
      const ref = full.subarray((t - 1) * V, t * V);
      for (let i = 0; i < V; i++) { worst = Math.max(worst, Math.abs(got[i] - ref[i])); scale = Math.max(scale, Math.abs(ref[i])); }
    }
    expect(cache.length).toBe(n);
  } finally {
    cache.dispose();
  }
  // fp32: the two paths group the same sums differently (other attention kernels, matmuls of 1 row vs
  // n rows), so logits differ by rounding only: a few ulps of max |logit| (observed ≈ 3e-7 relative).
  const bound = 1e-5 * scale;
  console.log(`[kv-cache ${model.config.family}${model.config.layers ? ' compact' : ''}] max |Δlogit| ${worst.toExponential(2)} (max |logit| ${scale.toFixed(2)}, bound ${bound.toExponential(2)})`);
  expect(worst).toBeLessThanOrEqual(bound);
}

describe('KV-cache generation', () => {
  const fixtures: Array<[string, string]> = [['OPT', 'opt-micro'], ['Llama (GQA)', 'llama-micro']];
  it.each(fixtures)('%s %s, dense and compact: cached greedy = no-cache greedy; cached logits = full forward', async (_label, name) => {
    const dense = await loadCheckpoint(join(MODELS, name));
    for (const ckpt of [dense, compacted(dense)]) {
      const model = await DecoderModel.fromCheckpoint(ctx, ckpt);
      try {
        const prompt = ids(ckpt.config.vocabSize, 6, 3);
        const cached = await generate(ctx, model, prompt, { maxNewTokens: 10 });
        const plain = await generate(ctx, model, prompt, { maxNewTokens: 10, kvCache: false });
        expect(cached).toHaveLength(10);
        expect(cached).toEqual(plain);
        await checkLogits(model, [...prompt, ...cached.slice(0, 5)], prompt.length);
      } finally {
        model.dispose();
      }
    }
  });

  it('top-k sampling, a stop token, and generation past max_position_embeddings match the no-cache path', async () => {
    const ckpt = optCkpt(31); // max_position_embeddings 32
    const model = await DecoderModel.fromCheckpoint(ctx, ckpt);
    try {
      const prompt = ids(ckpt.config.vocabSize, 26, 5);
      const o = { maxNewTokens: 12, topK: 5, temperature: 0.8, seed: 9 };
      const sampled = await generate(ctx, model, prompt, o);
      expect(sampled).toEqual(await generate(ctx, model, prompt, { ...o, kvCache: false }));
      // Greedy across the limit (7 cached steps, then 5 windowed), and again with a stop token mid-chunk.
      const greedy = await generate(ctx, model, prompt, { maxNewTokens: 12 });
      expect(greedy).toEqual(await generate(ctx, model, prompt, { maxNewTokens: 12, kvCache: false }));
      const stop = greedy[2];
      const stopped = await generate(ctx, model, prompt, { maxNewTokens: 12, stopTokens: [stop] });
      expect(stopped).toEqual(greedy.slice(0, greedy.indexOf(stop) + 1));
    } finally {
      model.dispose();
    }
  });

  it('refuses a cache beyond max positions, a second multi-token step and an overfull cache, naming the problem', async () => {
    const ckpt = optCkpt(32);
    const model = await DecoderModel.fromCheckpoint(ctx, ckpt);
    expect(() => KvCache.create(ctx, model, 33)).toThrow(/capacity 33 is outside 1…32/);
    const cache = KvCache.create(ctx, model, 4);
    const two = ctx.upload(Uint32Array.of(1, 2), [2]), one = ctx.upload(Uint32Array.of(3), [1]);
    try {
      forwardCached(ctx, model, cache, two, 2).dispose();
      expect(() => forwardCached(ctx, model, cache, two, 2)).toThrow(/only the prompt runs several tokens/);
      forwardCached(ctx, model, cache, one, 1).dispose();
      forwardCached(ctx, model, cache, one, 1).dispose();
      expect(() => forwardCached(ctx, model, cache, one, 1)).toThrow(/exceed the cache's capacity 4/);
    } finally {
      for (const t of [two, one]) t.dispose();
      cache.dispose();
      model.dispose();
    }
  });
});
