/**
 * Peak GPU memory estimate of the peer methods (src/api/memory-peers.ts): monotone in the calibration
 * size, refusals that name the limit and what would fit; on the GPU (runPruneJob, SparseGPT element,
 * SparseGPT 2:4, Wanda) never below the pool's measured peak and within 1% of it, on a small random OPT
 * (the layer pass sets the peak) and on opt-micro (weights dominate); and a job over its memoryBudget
 * refused before a single buffer is acquired.
 */
import { readFileSync } from 'node:fs';
import { beforeAll, describe, expect, it } from 'vitest';
import type { GpuContext } from '../src/gpu/context';
import { bucketSize } from '../src/gpu/pool';
import { loadCheckpoint } from '../src/io/checkpoint';
import {
  checkPeerMemory, deviceLimits, estimatePeerMemory, LimitExceededError, parseOptConfig, runPruneJob,
  type HostModel, type MemorySettings, type PeerMemoryEstimate, type PeerMethod, type PruneJobOptions,
} from '../src/index';
import { tinyOpt } from '../src/reference/tinyopt';
import { gpu } from './helpers/gpu';
import { expectTightSuggestion, refusal } from './helpers/memory';
import { rng } from './helpers/rng';
import { toCheckpoint } from './helpers/surgeon';

const opt125 = parseOptConfig({ model_type: 'opt', architectures: ['OPTForCausalLM'], hidden_size: 768, num_attention_heads: 12, num_hidden_layers: 12, ffn_dim: 3072, vocab_size: 50272, max_position_embeddings: 2048, dtype: 'float16' });
const LIM = { maxStorageBufferBindingSize: 1 << 30, maxBufferSize: 1 << 30 }; // SwiftShader's limits (TOOLCHAIN.md)
const BASE: MemorySettings = { nsamples: 128, seqlen: 2048, structure: 'element' };
const MiB = 2 ** 20;
// Estimate within this factor of the measured peak (measured: 1.000 on every case below).
const TIGHT = 1.01;

describe('peer memory estimate (CPU)', () => {
  const e = (method: PeerMethod, s: Partial<MemorySettings> = {}) => estimatePeerMemory(opt125, { ...BASE, ...s, method }, LIM);

  it('grows with nsamples and seqlen; SparseGPT (Hessians, Cholesky) needs more than Wanda; evaluation can set the peak', () => {
    for (const m of ['sparsegpt', 'wanda'] as const) {
      for (let n = 1; n < 256; n *= 2) expect(e(m, { nsamples: 2 * n }).peak).toBeGreaterThanOrEqual(e(m, { nsamples: n }).peak);
      for (let t = 64; t < 2048; t *= 2) expect(e(m, { seqlen: 2 * t }).peak).toBeGreaterThanOrEqual(e(m, { seqlen: t }).peak);
      expect(e(m, { nsamples: 256 }).peak).toBeGreaterThan(e(m, { nsamples: 64 }).peak);
      // 128 × 2048 tokens of [·, 768] f32 hidden states: 768 MiB kept through the pass.
      expect(e(m).hidden).toBe(128 * 2048 * 768 * 4);
    }
    expect(e('sparsegpt').peak).toBeGreaterThan(e('wanda').peak);
    // One layer's Hessians: q/k/v share one input, so 3 of 768² (qkv, out_proj, fc1 inputs) and one of 3072² (fc2), in pool buckets.
    expect(e('sparsegpt').statistics).toBe(3 * bucketSize(768 * 768 * 4) + bucketSize(3072 * 3072 * 4));
    // 2:4 drops the per-block scores and flags: never more.
    expect(e('sparsegpt', { structure: '2:4' }).peak).toBeLessThanOrEqual(e('sparsegpt').peak);
    const ev = e('wanda', { nsamples: 4, seqlen: 512, evaluate: { seqlen: 2048, windows: 4 } });
    expect(ev.phases.evaluate).toBeGreaterThan(Math.max(ev.phases.statistics, ev.phases.prune, ev.phases.advance));
    const s = e('sparsegpt');
    console.log(`[memory peers] OPT-125m sparsegpt 128 × 2048: peak ${(s.peak / MiB).toFixed(0)} MiB ${JSON.stringify(Object.fromEntries(Object.entries(s.phases).map(([k, v]) => [k, +(v / MiB).toFixed(0)])))}, wanda ${(e('wanda').peak / MiB).toFixed(0)} MiB`);
  });

  it('refuses with LimitExceededError naming memoryBudget and the most calibration windows that fit', () => {
    const s = { ...BASE, method: 'sparsegpt' as const };
    const est = estimatePeerMemory(opt125, s, LIM);
    const budget = est.weights + est.phases.statistics / 2;
    const x = refusal(() => checkPeerMemory(opt125, s, LIM, budget));
    expect(x.limit).toBe('memoryBudget');
    expect([x.needed, x.available]).toEqual([est.peak, budget]);
    expect(x.message).toMatch(/\(prune phase; weights [\d.]+ MiB, calibration hidden states 768\.0 MiB, one layer's Hessians [\d.]+ MiB\)/);
    // Right and tight: n windows fit, n + 1 do not.
    const n = expectTightSuggestion(x.message, /would fit: (\d+) calibration windows? \(nsamples; \d+ tokens instead of 262144\)/, 128,
      (v) => checkPeerMemory(opt125, { ...s, nsamples: v }, LIM, budget));
    // Memory already in use counts against the budget.
    expect(refusal(() => checkPeerMemory(opt125, { ...s, nsamples: n }, LIM, budget, 64 * MiB)).message).toMatch(/besides 64\.0 MiB already in use/);
    // Evaluation windows: the only setting that helps when the evaluation forward sets the peak.
    const sev = { ...s, nsamples: 2, seqlen: 256, evaluate: { seqlen: 2048, windows: 4 } };
    const eev = estimatePeerMemory(opt125, sev, LIM);
    const evx = refusal(() => checkPeerMemory(opt125, sev, LIM, eev.weights + eev.phases.evaluate - 1));
    expect(evx.message).toMatch(/evaluate phase.*would fit: .*[123] evaluation windows? of 2048 tokens/);
    // Weights alone above the budget: nothing fits, said plainly.
    expect(refusal(() => checkPeerMemory(opt125, s, LIM, est.weights)).message).toMatch(/this model does not fit here/);
    console.log(`[memory peers] refusals:\n  ${x.message}\n  ${evx.message}`);
  });

  it('refuses a buffer above maxStorageBufferBindingSize, naming it and what fits', () => {
    // Small vocabulary: the fc1 activations of 2 × 2048 tokens (48 MiB) are the largest buffer.
    const cfg = parseOptConfig({ ...opt125.raw, vocab_size: 512 });
    const lim = { maxStorageBufferBindingSize: 40 * MiB, maxBufferSize: 1 << 30 };
    const x = refusal(() => checkPeerMemory(cfg, { ...BASE, method: 'wanda' }, lim));
    expect(x.limit).toBe('maxStorageBufferBindingSize');
    expect(x.message).toMatch(/activations \(2 × 2048 tokens × ffn 3072\) does not fit in one storage binding.*would fit: 1 calibration window /);
    // SparseGPT's fc2 Hessian (3072² = 36 MiB) fits 40 MiB but not 32 MiB, whatever the calibration.
    const y = refusal(() => checkPeerMemory(cfg, { ...BASE, nsamples: 1, seqlen: 512, method: 'sparsegpt' }, { ...lim, maxStorageBufferBindingSize: 32 * MiB }));
    expect(y.message).toMatch(/Hessian \(3072\)² does not fit.*this model does not fit here/);
  });
});

describe('peer memory on the GPU', () => {
  let ctx: GpuContext;
  let small: HostModel;
  let micro: HostModel;
  const r = rng(5);
  // A small OPT whose layer pass outweighs its weights: d = 64, ffn = 256, 128-token vocabulary.
  const CFG = { layers: 2, d: 64, heads: 4, ffn: 256, vocab: 128, maxPos: 64 };
  const ids = Array.from({ length: 8000 }, () => Math.floor(r() * CFG.vocab));
  let microIds: number[];
  beforeAll(async () => {
    ctx = await gpu();
    const m = tinyOpt({ ...CFG, seed: 4 });
    small = toCheckpoint({ cfg: m.cfg, w: new Map([...m.w].map(([k, v]) => [k, Float64Array.from(Float32Array.from(v))])) });
    micro = await loadCheckpoint('/work/shared/models/opt-micro');
    microIds = JSON.parse(readFileSync('/work/shared/data/wikitext-2-raw/wiki.test.opt-ids.json', 'utf8')) as number[];
  });

  const run = async (host: HostModel, o: PruneJobOptions) => {
    const inUse = ctx.pool.bytesInUse;
    const { report } = await runPruneJob(ctx, host, o);
    expect(ctx.pool.bytesInUse - inUse).toBeLessThanOrEqual(512); // nothing left behind but the Cholesky kernels' two cached dummies
    return { got: report.memory.measuredPeakBytes - inUse, est: report.memory.estimate as PeerMemoryEstimate, peak: report.memory.estimatedPeakBytes };
  };
  const peers: Array<[string, PeerMethod, PruneJobOptions['structure']]> = [
    ['sparsegpt element', 'sparsegpt', 'element'],
    ['sparsegpt 2:4', 'sparsegpt', '2:4'],
    ['wanda element', 'wanda', 'element'],
  ];

  // 16 windows of 64 tokens: one layer-pass batch; 72 windows: batches of 64 + 8 (⌊4096 / 64⌋ per batch).
  const small3: Array<[string, PeerMethod, PruneJobOptions['structure'], number]> = [...peers.map(([n, m, s]) => [n, m, s, 16] as [string, PeerMethod, PruneJobOptions['structure'], number]), ['wanda element', 'wanda', 'element', 72]];
  for (const [name, method, structure, nsamples] of small3) {
    it(`estimate vs measured peak, small OPT: ${name}, ${nsamples} × 64 tokens`, async () => {
      const { got, est, peak } = await run(small, { method, structure, sparsity: 0.5, calibration: { ids, nsamples, seqlen: 64 } });
      console.log(`[memory peers] small ${name} ${nsamples} × 64: estimated ${peak} B (${JSON.stringify(est.phases)}, weights ${est.weights}), measured ${got} B (${(peak / got).toFixed(4)}×)`);
      expect(est.batch).toBe(Math.min(nsamples, 64));
      expect(peak).toBe(est.peak);
      // The layer pass, not the weights, sets this peak.
      expect(got - est.weights).toBeGreaterThan(est.weights);
      expect(peak).toBeGreaterThanOrEqual(got);
      expect(peak).toBeLessThanOrEqual(TIGHT * got);
    });
  }

  it('estimate vs measured peak, small OPT: wanda 2:4 with evaluation (evaluate phase: never below, within 2×)', async () => {
    const { got, est, peak } = await run(small, { method: 'wanda', structure: '2:4', sparsity: 0.5, calibration: { ids, nsamples: 8, seqlen: 64 }, evaluate: { ids, seqlen: 64, windows: 8 } });
    console.log(`[memory peers] small wanda 2:4 + eval: estimated ${peak} B (${JSON.stringify(est.phases)}), measured ${got} B (${(peak / got).toFixed(4)}×)`);
    expect(peak).toBeGreaterThanOrEqual(got);
    expect(peak).toBeLessThanOrEqual(2 * got);
  });

  for (const [name, method, structure] of peers) {
    it(`estimate vs measured peak, opt-micro: ${name}, 4 × 128 tokens`, async () => {
      const { got, est, peak } = await run(micro, { method, structure, sparsity: 0.5, calibration: { ids: microIds.slice(100_000, 200_000), nsamples: 4, seqlen: 128 } });
      console.log(`[memory peers] opt-micro ${name}: estimated ${peak} B (${JSON.stringify(est.phases)}, weights ${est.weights}), measured ${got} B (${(peak / got).toFixed(4)}×)`);
      expect(peak).toBeGreaterThanOrEqual(got);
      expect(peak).toBeLessThanOrEqual(TIGHT * got);
    });
  }

  it('a job over its memoryBudget is refused before any buffer is acquired', async () => {
    const o: PruneJobOptions = { method: 'sparsegpt', structure: 'element', sparsity: 0.5, calibration: { ids, nsamples: 16, seqlen: 64 } };
    const est = estimatePeerMemory(small.config, { nsamples: 16, seqlen: 64, structure: 'element', method: 'sparsegpt' }, deviceLimits(ctx));
    const inUse = ctx.pool.bytesInUse, pooled = ctx.pool.bytesPooled;
    const acquire = ctx.pool.acquire.bind(ctx.pool);
    let acquired = 0;
    ctx.pool.acquire = (bytes: number) => {
      acquired++;
      return acquire(bytes);
    };
    let x: unknown;
    try {
      await runPruneJob(ctx, small, { ...o, memoryBudget: inUse + est.peak - 1 });
    } catch (err) {
      x = err;
    } finally {
      ctx.pool.acquire = acquire;
    }
    expect(x).toBeInstanceOf(LimitExceededError);
    const e = x as LimitExceededError;
    console.log(`[memory peers] job refusal: ${e.message}`);
    expect(e.limit).toBe('memoryBudget');
    expect(e.needed).toBe(inUse + est.peak);
    expect(e.message).toMatch(/would fit: \d+ calibration windows? \(nsamples/);
    expect(acquired).toBe(0);
    expect([ctx.pool.bytesInUse, ctx.pool.bytesPooled]).toEqual([inUse, pooled]);
    // Exactly the estimate fits.
    const { report } = await runPruneJob(ctx, small, { ...o, memoryBudget: inUse + est.peak });
    expect(report.memory.estimatedPeakBytes).toBe(est.peak);
  });
});
