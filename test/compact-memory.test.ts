/**
 * Memory estimates of compact models (per-layer widths): the Llama walk (arch/llama/memory.ts) replays
 * each layer's own shapes, so its K-FAC batch and perplexity estimates stay within 1% above the pool's
 * measured peak, as test/api-memory-llama.test.ts demands of stock models; the K-FAC factors follow the
 * per-layer prunable shapes; OPT's walk is as tight, its hand-kept bounds use the global maxima and stay
 * upper bounds.
 */
import { beforeAll, describe, expect, it } from 'vitest';
import { cachedBytes, deviceLimits, estimatePruneMemory, evaluationOf, kfacBatchBytes, replayPass, type DeviceLimits } from '../src/api/memory';
import { compactModel } from '../src/compact/index';
import type { GpuContext } from '../src/gpu/context';
import type { LoadedCheckpoint } from '../src/io/checkpoint';
import { perplexity } from '../src/model/eval';
import { accumulateKfac, disposeKfac } from '../src/model/kfac';
import { DecoderModel } from '../src/model/model';
import { llamaCkpt, optCkpt, zeroHeadO, zeroNeuronCol } from './helpers/compact';
import { gpu } from './helpers/gpu';
import { modelPoolPeak } from './helpers/memory';
import { rng } from './helpers/rng';

let ctx: GpuContext;
let lim: DeviceLimits;
beforeAll(async () => {
  ctx = await gpu();
  lim = deviceLimits(ctx);
});

/** The compact model of `c` after killing kv group 1 of layer 0 and 2 of every 3 neurons of layer 1. */
function compactOf(c: LoadedCheckpoint): LoadedCheckpoint {
  const G = c.config.numHeads / c.config.numKvHeads;
  for (let h = G; h < 2 * G; h++) zeroHeadO(c, 0, h);
  for (let i = 0; i < c.config.ffnDim; i++) if (i % 3) zeroNeuronCol(c, 1, i);
  const cm = compactModel(c.config, c.tensors);
  expect(cm.config.layers![0].numKvHeads).toBe(c.config.numKvHeads - 1);
  return { ...c, config: cm.config, tensors: cm.tensors, shapes: cm.shapes };
}

const measure = (host: LoadedCheckpoint, fn: (m: DecoderModel) => Promise<void>) => modelPoolPeak(ctx, host, fn);

const r = rng(5);
const ids = Array.from({ length: 4000 }, () => Math.floor(r() * 128));
const seqs = (n: number, T: number) => Array.from({ length: n }, (_, i) => Int32Array.from(ids.slice(i * T, (i + 1) * T)));

describe('memory of compact models', () => {
  it('compact Llama GQA: K-FAC batch and perplexity walks within 1% above the measured peak', async () => {
    const h = compactOf(llamaCkpt({ layers: 2, d: 64, heads: 4, kvHeads: 2, ffn: 176, vocab: 128, maxPos: 64 }, 3));
    const c = h.config, T = 32, B = 8;
    const kfac = await measure(h, async (m) => disposeKfac(await accumulateKfac(ctx, m, seqs(B, T), { batch: B })));
    const est = estimatePruneMemory(c, { nsamples: B, seqlen: T, batch: B, structure: 'element' }, lim);
    const kfacWant = est.factors + kfacBatchBytes(c, lim, B, T).peak + cachedBytes(c, [T]);
    const ppl = await measure(h, async (m) => { await perplexity(ctx, m, ids.slice(0, 16 * T), { seqlen: T, windows: 16 }); });
    const pplWant = evaluationOf(c, lim, { seqlen: T, windows: 16 }).bytes + cachedBytes(c, [T]);
    for (const [what, want, got] of [['K-FAC batch', kfacWant, kfac], ['perplexity', pplWant, ppl]] as const) {
      console.log(`[compact memory llama] ${what}: estimated ${want} B, measured ${got} B (${(want / got).toFixed(4)}×)`);
      expect(want).toBeGreaterThanOrEqual(got);
      expect(want).toBeLessThanOrEqual(1.01 * got);
    }
  });

  it('compact OPT: the hand-kept bounds (global maxima) stay above the walk and the measured perplexity peak', async () => {
    const h = compactOf(optCkpt(8, { d: 64, ffn: 256, vocab: 128, maxPos: 64 }));
    const c = h.config, T = 32;
    const ppl = await measure(h, async (m) => { await perplexity(ctx, m, ids.slice(0, 16 * T), { seqlen: T, windows: 16 }); });
    const want = evaluationOf(c, lim, { seqlen: T, windows: 16 }).bytes, walk = replayPass(c, lim, 16, T, { backward: false }).peak;
    console.log(`[compact memory opt] perplexity: estimated ${want} B, walk ${walk} B, measured ${ppl} B`);
    expect(want).toBeGreaterThanOrEqual(walk);
    // The OPT walk (arch/opt/memory.ts) follows the per-layer widths exactly.
    expect(walk).toBeGreaterThanOrEqual(ppl);
    expect(walk).toBeLessThanOrEqual(1.01 * ppl);
  });
});
