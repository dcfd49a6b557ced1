/**
 * The Llama block on the GPU against the float64 reference: the real llama-micro checkpoint's
 * perplexity (FIXTURES.md's float64 prefix values), and tiny random Llamas (grouped-query, multi-query,
 * tied head, Qwen2-style q/k/v biases, head_dim ≠ d/heads) for perplexity and K-FAC factors with both
 * attention implementations.
 */
import { readFileSync } from 'node:fs';
import { beforeAll, describe, expect, it } from 'vitest';
import type { GpuContext } from '../src/gpu/context';
import { loadCheckpoint } from '../src/io/checkpoint';
import { accumulateKfac, DecoderModel, disposeKfac, perplexity } from '../src/model/index';
import { refKfac } from '../src/reference/kfac';
import { refPerplexity } from '../src/reference/model';
import type { TinyLlamaOptions } from '../src/reference/tinyllama';
import { relFro } from './helpers/close';
import { gpu } from './helpers/gpu';
import { f32Llama, llamaCheckpoint } from './helpers/llama';
import { rng } from './helpers/rng';

const MICRO = '/work/shared/models/llama-micro';
const IDS = '/work/shared/data/wikitext-2-raw/wiki.test.mistral-ids.json';

describe('llama-micro perplexity on the GPU (FIXTURES.md float64 prefixes)', () => {
  let ctx: GpuContext;
  let model: DecoderModel;
  let ids: number[];
  beforeAll(async () => {
    ctx = await gpu();
    model = await DecoderModel.fromCheckpoint(ctx, await loadCheckpoint(MICRO));
    ids = JSON.parse(readFileSync(IDS, 'utf8')) as number[];
    expect(ids.length).toBe(334661);
  });

  it.each([
    [128, 8, 227.625],
    [256, 4, 215.32],
  ])('seqlen %i × %i windows = %f (1e-5 relative: the printed digits)', async (seqlen, windows, want) => {
    const t0 = performance.now();
    const { ppl } = await perplexity(ctx, model, ids, { seqlen, windows });
    console.log(`[llama-micro] ${seqlen} × ${windows}: ppl ${ppl.toFixed(5)} (float64 ${want}) in ${((performance.now() - t0) / 1000).toFixed(2)} s`);
    expect(Math.abs(ppl - want) / want).toBeLessThan(1e-5);
  });

  it('refuses what the Llama block cannot run, with named errors', async () => {
    await expect(perplexity(ctx, model, ids, { seqlen: 4096, windows: 1 })).rejects.toThrow(/max_position_embeddings/);
    await ctx.sync();
    expect(ctx.pool.bytesInUse).toBeGreaterThanOrEqual(model.bytes);
  });
});

const VARIANTS: Array<[string, Omit<TinyLlamaOptions, 'seed'>]> = [
  ['GQA 4/2, untied', { layers: 2, d: 32, heads: 4, kvHeads: 2, ffn: 40, vocab: 48, maxPos: 64 }],
  ['MQA 4/1, tied, q/k/v biases (Qwen2)', { layers: 2, d: 32, heads: 4, kvHeads: 1, ffn: 36, vocab: 40, maxPos: 64, tied: true, qkvBias: true }],
  ['MHA 2/2, head_dim 12 ≠ d/heads, theta 500', { layers: 1, d: 20, heads: 2, headDim: 12, ffn: 24, vocab: 32, maxPos: 64, ropeTheta: 500 }],
];

describe.each(VARIANTS)('tiny Llama %s vs float64', (_label, o) => {
  let ctx: GpuContext;
  const ref = f32Llama({ ...o, seed: 7 });
  const r = rng(11);
  const seqs = Array.from({ length: 3 }, () => Array.from({ length: 37 }, () => Math.floor(r() * o.vocab)));
  beforeAll(async () => { ctx = await gpu(); });

  it.each(['tiled', 'rows'] as const)('perplexity and K-FAC A, G of every linear (%s attention)', async (impl) => {
    const model = await DecoderModel.fromCheckpoint(ctx, llamaCheckpoint(ref));
    model.attentionImpl = impl;
    const flat = seqs.flat();
    const { ppl } = await perplexity(ctx, model, flat, { seqlen: 37 });
    const want = refPerplexity(ref, flat, 37);
    expect(Math.abs(ppl - want) / want).toBeLessThan(1e-5);
    const g = await accumulateKfac(ctx, model, seqs.map((s) => Int32Array.from(s)), { batch: 2 });
    const rf = refKfac(ref, seqs);
    for (const L of model.prunableLayers()) {
      const f = g.get(L.name)!, w = rf.get(L.name)!;
      expect(f.A.shape, `${L.name} A shape`).toEqual([L.C + (L.bias ? 1 : 0), L.C + (L.bias ? 1 : 0)]);
      expect(relFro(await f.A.read(), w.A), `${L.name} A`).toBeLessThan(1e-5);
      expect(relFro(await f.G.read(), w.G), `${L.name} G`).toBeLessThan(1e-4);
    }
    disposeKfac(g);
    model.dispose();
  });
});
