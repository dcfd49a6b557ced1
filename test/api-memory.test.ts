/**
 * Peak GPU memory estimate of a prune job (src/api/memory.ts): monotone in every size, sane against the
 * pool's measured peak on small runs (never below, within 2×), refusal with a LimitExceededError that
 * names the limit and says what would fit; and no pool growth across repeated jobs. The LoRA phase:
 * monotone in rank, targets and batch, a refusal naming a LoRA batch that fits, and on opt-micro (where
 * it sets the job's peak) never below the measured peak and within 10% of it.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { autoKfacBatch, checkPruneMemory, estimatePruneMemory, LimitExceededError, loadModel, localSession, parseOptConfig, prune, type HostModel, type MemoryEstimate, type MemorySettings, type PruneJobOptions } from '../src/index';
import { tinyOpt } from '../src/reference/tinyopt';
import { gpu } from './helpers/gpu';
import { expectTightSuggestion, refusal as refused } from './helpers/memory';
import { rng } from './helpers/rng';
import { toCheckpoint } from './helpers/surgeon';

const opt125 = parseOptConfig({ model_type: 'opt', architectures: ['OPTForCausalLM'], hidden_size: 768, num_attention_heads: 12, num_hidden_layers: 12, ffn_dim: 3072, vocab_size: 50272, max_position_embeddings: 2048, dtype: 'float16' });
const LIM = { maxStorageBufferBindingSize: 1 << 30, maxBufferSize: 1 << 30 }; // SwiftShader's limits (TOOLCHAIN.md)
const BASE: MemorySettings = { nsamples: 128, seqlen: 2048, structure: 'element', evaluate: { seqlen: 2048, windows: 4 } };
const GiB = 2 ** 30;

describe('memory estimate (CPU)', () => {
  it('grows with seqlen, batch, evaluation windows and model size; magnitude needs less', () => {
    const e = (s: Partial<MemorySettings>) => estimatePruneMemory(opt125, { ...BASE, ...s }, LIM).peak;
    const curv = (s: Partial<MemorySettings>) => estimatePruneMemory(opt125, { ...BASE, ...s }, LIM).phases.curvature;
    // Non-decreasing step by step (pool buckets can merge neighbours), strictly over larger steps.
    expect(curv({ seqlen: 2048, batch: 1 })).toBeGreaterThan(curv({ seqlen: 512, batch: 1 }));
    expect(curv({ batch: 4 })).toBeGreaterThan(curv({ batch: 2 }));
    for (let t = 128; t < 2048; t *= 2) {
      expect(curv({ seqlen: t * 2, batch: 1 })).toBeGreaterThanOrEqual(curv({ seqlen: t, batch: 1 }));
      expect(e({ seqlen: t * 2, batch: 1 })).toBeGreaterThanOrEqual(e({ seqlen: t, batch: 1 }));
    }
    for (let b = 1; b < 12; b++) {
      expect(curv({ batch: b + 1 })).toBeGreaterThanOrEqual(curv({ batch: b }));
      expect(e({ batch: b + 1 })).toBeGreaterThanOrEqual(e({ batch: b }));
    }
    expect(e({ batch: 4, evaluate: { seqlen: 2048, windows: 4 } })).toBeGreaterThanOrEqual(e({ batch: 4, evaluate: { seqlen: 2048, windows: 1 } }));
    expect(e({ method: 'magnitude', evaluate: undefined })).toBeLessThan(e({ evaluate: undefined }));
    const bigger = parseOptConfig({ ...opt125.raw, num_hidden_layers: 24 });
    expect(estimatePruneMemory(bigger, BASE, LIM).peak).toBeGreaterThan(e({}));
    const est = estimatePruneMemory(opt125, BASE, LIM);
    console.log(`[memory] opt-125m, 2 × 2048 tokens per batch: peak ${(est.peak / GiB).toFixed(2)} GiB ${JSON.stringify(Object.fromEntries(Object.entries(est.phases).map(([k, v]) => [k, +(v / GiB).toFixed(2)])))}`);
    // The K-FAC comment in src/model/kfac.ts measured ≈ 1.8 GB of saved activations at 4096 tokens.
    expect(est.phases.curvature).toBeGreaterThan(1.8e9);
    expect(est.peak).toBeLessThan(8 * GiB);
  });

  it('refuses with LimitExceededError naming memoryBudget and what would fit', () => {
    const refusal = (s: MemorySettings, budget?: number, lim = LIM): LimitExceededError => refused(() => checkPruneMemory(opt125, s, lim, budget));
    // 8 sequences of 2048 tokens per K-FAC batch: the saved activations dominate.
    const big = { ...BASE, batch: 8 };
    const est = estimatePruneMemory(opt125, big, LIM);
    const budget = 6 * GiB;
    const e = refusal(big, budget);
    expect(e.limit).toBe('memoryBudget');
    expect(e.available).toBe(budget);
    expect(e.needed).toBe(est.peak);
    // The suggestion is right and tight: that batch fits, one more does not.
    expectTightSuggestion(e.message, /would fit: a calibration batch of (\d+) sequences? \(\d+ tokens per forward\/backward instead of 16384\)/, 8,
      (b) => checkPruneMemory(opt125, { ...big, batch: b }, LIM, budget));
    // Too small for weights + factors + updates whatever the batch: said plainly.
    expect(refusal(BASE, 2 * GiB).message).toMatch(/this model does not fit here/);
    // Per-buffer limit: a 256 MiB binding cannot hold 16 × 2048 tokens × ffn 3072 activations (402 MB); 10 sequences fit.
    const small = { maxStorageBufferBindingSize: 256 << 20, maxBufferSize: 1 << 30 };
    const bind = refusal({ ...BASE, batch: 16 }, undefined, small);
    expect(bind.limit).toBe('maxStorageBufferBindingSize');
    expect(bind.message).toMatch(/activations \(16 × 2048 tokens × ffn 3072\).*would fit: a calibration batch of 10 sequences/);
    // A weight that alone exceeds the binding: nothing fits, said plainly.
    expect(refusal(BASE, undefined, { maxStorageBufferBindingSize: 64 << 20, maxBufferSize: 1 << 30 }).message).toMatch(/embed_tokens.*this model does not fit here/);
    console.log(`[memory] refusals:\n  ${e.message}\n  ${bind.message}`);
  });

  it('autoKfacBatch: the most K-FAC windows per batch (≤ 16) under the budget, never below the default', () => {
    const optMini = parseOptConfig({ ...opt125.raw, hidden_size: 256, num_attention_heads: 4, num_hidden_layers: 4, ffn_dim: 1024 });
    const H200 = { maxStorageBufferBindingSize: 2 ** 31 - 4, maxBufferSize: 2 ** 40 };
    const S: MemorySettings = { nsamples: 128, seqlen: 2048, structure: 'rows-cols' };
    // opt-mini at 16 windows: 2.0 GB measured on the H200 (bench/results/h200-kfac-batch.json)
    expect(autoKfacBatch(optMini, S, H200, 4 * GiB)).toBe(16);
    expect(estimatePruneMemory(optMini, { ...S, batch: 16 }, H200).peak).toBeLessThan(4 * GiB);
    expect(autoKfacBatch(optMini, { ...S, nsamples: 3 }, H200, 4 * GiB)).toBe(3);
    // a budget between the estimates of two batches picks the larger one that fits
    const at = (b: number) => estimatePruneMemory(optMini, { ...S, batch: b }, H200).peak;
    expect(autoKfacBatch(optMini, S, H200, (at(8) + at(9)) / 2)).toBe(8);
    // nothing above the default fits: the default (⌊4096 / seqlen⌋), also for OPT-125m at 4 GiB
    expect(autoKfacBatch(optMini, S, H200, at(2))).toBe(2);
    // OPT-125m: its update phase needs more than 4 GiB at any batch; the batch grows while the peak stays there
    const p125 = (b: number) => estimatePruneMemory(opt125, { ...S, batch: b }, H200).peak;
    const b125 = autoKfacBatch(opt125, S, H200, 4 * GiB);
    expect(p125(b125)).toBeLessThanOrEqual(p125(2));
    expect(p125(b125 + 1)).toBeGreaterThan(p125(2));
    console.log(`[memory] autoKfacBatch OPT-125m at 4 GiB: ${b125} (peak ${(p125(b125) / GiB).toFixed(2)} GiB, default batch ${(p125(2) / GiB).toFixed(2)} GiB)`);
    expect(autoKfacBatch(optMini, { ...S, seqlen: 256 }, H200, 64 * GiB)).toBe(16);
    expect(autoKfacBatch(optMini, { ...S, seqlen: 64, nsamples: 8 }, H200, 4 * GiB)).toBe(8); // default 64 capped by the windows
  });

  it('LoRA phase: 0 without lora, grows with rank, targets and LoRA batch; a refusal names a LoRA batch that fits', () => {
    const lora = (l?: MemorySettings['lora']) => estimatePruneMemory(opt125, { ...BASE, lora: l }, LIM).phases.lora;
    expect(lora(undefined)).toBe(0);
    expect(lora({})).toBeGreaterThan(0);
    expect(lora({ rank: 64 })).toBeGreaterThan(lora({ rank: 8 }));
    expect(lora({ targets: 'all' })).toBeGreaterThan(lora({ targets: 'attention' }));
    // Default: max(1, round(0.025 · 128)) = 3 windows, 1 window of 2048 tokens per step; lora.batch and
    // fraction change the rows per step, capped by the windows trained on.
    for (let b = 1; b < 3; b++) expect(lora({ batch: b + 1 })).toBeGreaterThan(lora({ batch: b }));
    expect(lora({ batch: 8 })).toBe(lora({ batch: 3 }));
    expect(lora({ batch: 8, fraction: 0.05 })).toBeGreaterThan(lora({ batch: 8 }));

    // 8 windows of 2048 tokens per Adam step (every adapter of 'all'): the LoRA phase sets the peak.
    const s: MemorySettings = { ...BASE, batch: 1, lora: { targets: 'all', batch: 8, fraction: 0.1 } };
    const est = estimatePruneMemory(opt125, s, LIM);
    expect(Object.entries(est.phases).sort((a, b) => b[1] - a[1])[0][0]).toBe('lora');
    const budget = est.weights + est.phases.curvature + (est.phases.lora - est.phases.curvature) / 2;
    const e = refused(() => checkPruneMemory(opt125, s, LIM, budget));
    expect(e.message).toMatch(/lora phase/);
    expectTightSuggestion(e.message, /a LoRA batch of (\d+) windows? per Adam step \(lora\.batch\)/, 8,
      (b) => checkPruneMemory(opt125, { ...s, lora: { ...s.lora, batch: b } }, LIM, budget));
    console.log(`[memory] LoRA refusal: ${e.message}`);
  });
});

describe('memory on the GPU', () => {
  const CFG = { layers: 2, d: 16, heads: 4, ffn: 32, vocab: 64, maxPos: 32 };
  let model: HostModel;
  const r = rng(9);
  const ids = Array.from({ length: 400 }, () => Math.floor(r() * CFG.vocab));
  beforeAll(async () => {
    await gpu();
    const m = tinyOpt({ ...CFG, seed: 2 });
    model = toCheckpoint({ cfg: m.cfg, w: new Map([...m.w].map(([k, v]) => [k, Float64Array.from(Float32Array.from(v))])) });
  });

  const cases: Array<[string, Partial<PruneJobOptions>]> = [
    ['rows-cols, 4 × 16 tokens', { structure: 'rows-cols', sparsity: 0.3 }],
    ['element, 8 × 32 tokens, eval', { structure: 'element', sparsity: 0.5, maxChunk: 64, calibration: { ids, nsamples: 8, seqlen: 32 }, evaluate: { ids, seqlen: 32, windows: 8 } }],
    ['2:4 kobd, batch 2', { structure: '2:4', sparsity: 0.5, method: 'kobd', calibration: { ids, nsamples: 6, seqlen: 16, batch: 2 } }],
    // The LoRA step keeps the q/k/v and fc1 inputs for weight gradients: its phase exceeds K-FAC's here.
    ['element kobd, lora all', { method: 'kobd', lora: { targets: 'all', fraction: 1 } }],
  ];
  for (const [name, o] of cases) {
    it(`estimate vs measured peak: ${name}`, async () => {
      const inUse = localSession().memory().bytesInUse;
      const { report } = await prune(model, { structure: 'element', sparsity: 0.5, shots: 1, calibration: { ids, nsamples: 4, seqlen: 16 }, ...o } as PruneJobOptions);
      const got = report.memory.measuredPeakBytes - inUse, est = report.memory.estimatedPeakBytes;
      console.log(`[memory] ${name}: estimated ${est} B, measured ${got} B (${(est / got).toFixed(2)}×)`);
      expect(est).toBeGreaterThanOrEqual(got);
      expect(est).toBeLessThanOrEqual(2 * got);
    });
  }

  it('repeated jobs leave no GPU memory behind (pool bytes equal after job 1 and job 2)', async () => {
    const s = localSession();
    const o: PruneJobOptions = { structure: 'element', sparsity: 0.5, shots: 2, maxChunk: 64, calibration: { ids, nsamples: 4, seqlen: 16 }, evaluate: { ids, seqlen: 16, windows: 2 } };
    const m0 = s.memory();
    await prune(model, o);
    const m1 = s.memory();
    await prune(model, o);
    const m2 = s.memory();
    console.log(`[memory] pool before ${JSON.stringify(m0)}, after job 1 ${JSON.stringify(m1)}, after job 2 ${JSON.stringify(m2)}`);
    expect(m1.bytesInUse).toBe(m0.bytesInUse);
    expect(m2.bytesInUse).toBe(m0.bytesInUse);
    expect(m2.bytesPooled).toBe(m1.bytesPooled); // the second job reused the first job's buffers: nothing new allocated
  });
});

describe('LoRA phase on opt-micro (GPU)', () => {
  const ROOT = join(import.meta.dirname, '..');
  const text = readFileSync(join(ROOT, 'demo/assets/default-text.txt'), 'utf8');
  let micro: HostModel;
  beforeAll(async () => {
    await gpu();
    micro = await loadModel(join(ROOT, 'demo/public/models/opt-micro'));
  });
  // Magnitude (no K-FAC) with 2 × 32 calibration tokens, both windows in one Adam step: the LoRA step's
  // saved forward, cross-entropy chunk (64 rows × 50272) and adapters set the job's peak.
  for (const targets of ['attention', 'all'] as const) {
    it(`estimate vs measured peak: magnitude element, lora ${targets}`, async () => {
      const inUse = localSession().memory().bytesInUse;
      const { report } = await prune(micro, {
        structure: 'element', sparsity: 0.5, shots: 1, method: 'magnitude',
        calibration: { text, nsamples: 2, seqlen: 32, seed: 7 }, lora: { targets, fraction: 1 },
      });
      const got = report.memory.measuredPeakBytes - inUse, est = report.memory.estimate as MemoryEstimate;
      const { lora, ...others } = est.phases;
      console.log(`[memory] opt-micro lora ${targets}: estimated ${est.peak} B (lora phase ${lora} B + weights ${est.weights} B), measured ${got} B (${(est.peak / got).toFixed(4)}×)`);
      expect(report.shots[0].lora?.steps).toBe(1);
      // The measured peak exceeds every other phase's bound, so it was reached in the LoRA phase.
      expect(got).toBeGreaterThan(est.weights + Math.max(...Object.values(others)));
      expect(est.peak).toBe(est.weights + lora);
      expect(est.peak).toBeGreaterThanOrEqual(got);
      expect(est.peak).toBeLessThanOrEqual(1.1 * got);
    });
  }
});

describe('memory estimate: magnitude (CPU)', () => {
  it('names no logits chunk as its largest buffer: magnitude without evaluation or LoRA never runs the LM head', () => {
    const e = estimatePruneMemory(opt125, { nsamples: 1, seqlen: 2048, method: 'magnitude', structure: 'rows-cols' }, LIM);
    expect(e.largest.what).not.toMatch(/logits/);
    expect(e.largest.what).toMatch(/embed_tokens/);
    const ev = estimatePruneMemory(opt125, { nsamples: 1, seqlen: 2048, method: 'magnitude', structure: 'rows-cols', evaluate: { seqlen: 2048, windows: 4 } }, LIM);
    expect(ev.phases.evaluate).toBeGreaterThan(0);
  });
});
