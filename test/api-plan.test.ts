/**
 * The memory plan (api/plan.ts) on the CPU: the fewest calibration passes per shot whose estimate fits
 * the budget, contiguous layer groups that cover every decoder layer once, one group when the whole model
 * fits, and a LimitExceededError naming the budget when not even one layer per pass fits. Prints the plans
 * of real shapes (OPT-125m under 2 GiB, OPT-1.3B under 8 GiB, OPT-6.7B and Llama-2-7B on one H200).
 */
import { describe, expect, it } from 'vitest';
import { parseModelConfig } from '../src/arch/registry';
import { LimitExceededError } from '../src/gpu/errors';
import { estimatePruneMemory, type MemorySettings } from '../src/api/memory';
import { contiguousGroups, defaultMemoryBudget, describePlan, planPrune, schedules } from '../src/api/plan';
import { refusal } from './helpers/memory';

const GiB = 2 ** 30;
const opt = (d: number, L: number, H: number, f: number) => parseModelConfig({ model_type: 'opt', architectures: ['OPTForCausalLM'], hidden_size: d, num_attention_heads: H, num_hidden_layers: L, ffn_dim: f, vocab_size: 50272, max_position_embeddings: 2048, word_embed_proj_dim: d, dtype: 'float16' });
const OPT125 = opt(768, 12, 12, 3072), OPT1B3 = opt(2048, 24, 32, 8192), OPT6B7 = opt(4096, 32, 32, 16384);
const LLAMA7B = parseModelConfig({ model_type: 'llama', architectures: ['LlamaForCausalLM'], hidden_size: 4096, intermediate_size: 11008, num_attention_heads: 32, num_hidden_layers: 32, num_key_value_heads: 32, vocab_size: 32000, max_position_embeddings: 4096, rms_norm_eps: 1e-5, torch_dtype: 'float16' });
const H200 = { maxStorageBufferBindingSize: 2 ** 32 - 4, maxBufferSize: 2 ** 36 };
const HOST = 64 * GiB; // the H200 machine's default host budget (half of its 128 GiB)
const S = (structure: string, extra: Partial<MemorySettings> = {}): MemorySettings => ({ nsamples: 128, seqlen: 2048, batch: 1, structure, ...extra });

describe('memory plan (CPU)', () => {
  it('contiguous groups cover every layer once, larger groups first', () => {
    for (const L of [1, 2, 5, 12, 32]) for (let n = 1; n <= L; n++) {
      const g = contiguousGroups(L, n);
      expect(g.length).toBe(n);
      expect(g.flat()).toEqual(Array.from({ length: L }, (_, i) => i));
      const sizes = g.map((x) => x.length);
      expect(Math.max(...sizes) - Math.min(...sizes)).toBeLessThanOrEqual(1);
      expect([...sizes].sort((a, b) => b - a)).toEqual(sizes);
    }
  });

  it('one group without a budget or when everything fits; else the first schedule in order of preference that fits', () => {
    const s = S('rows-cols');
    const free = planPrune(OPT125, s, H200);
    expect(free.plan.groups.length).toBe(1);
    expect(free.plan.split).toBe('layer');
    expect(free.plan.hostBytes).toBe(0);
    expect(free.estimate.peak).toBe(estimatePruneMemory(OPT125, s, H200).peak);
    expect(planPrune(OPT125, s, H200, free.estimate.peak).plan.groups.length).toBe(1);
    for (const budget of [free.estimate.peak - 1, 2 * GiB, 1.2 * GiB]) {
      const tight = planPrune(OPT125, s, H200, budget, 0, HOST);
      const p = tight.plan;
      expect(p.groups.length > 1 || p.split === 'linear').toBe(true);
      expect(tight.estimate.peak).toBeLessThanOrEqual(budget);
      expect(tight.plan.hostBytes).toBeGreaterThan(0);
      // Every schedule before it in the order of preference does not fit: the plan takes no more passes than needed.
      const N = 2048, chunks = [undefined, 1024, 512, 256].filter((r) => r === undefined || r < N);
      for (const x of schedules(12, chunks)) {
        const e = estimatePruneMemory(OPT125, { ...s, ...x }, H200);
        const same = JSON.stringify(x.groups ?? contiguousGroups(12, 1)) === JSON.stringify(p.groups) && x.split === p.split && x.streamed === p.streamed && x.offloadUpdate === p.offloadUpdate && x.headChunkRows === p.headChunkRows;
        if (same) {
          // The estimate of a plan is the estimate of its schedule.
          expect(tight.estimate.peak).toBe(e.peak);
          break;
        }
        expect(e.peak > budget || e.hostBytes > HOST).toBe(true);
      }
      console.log(`[plan] OPT-125m rows-cols under ${(budget / GiB).toFixed(2)} GiB: ${describePlan(p)}`);
    }
    expect(planPrune(OPT125, { ...s, method: 'magnitude', nsamples: 1 }, H200, free.estimate.peak / 2, 0, HOST).plan.passesPerShot).toBe(0);
  });

  it('streamed plans run top-down; the host budget decides whether a plan may stream', () => {
    const s = S('element');
    const { plan } = planPrune(OPT1B3, s, H200, 8 * GiB, 0, 64 * GiB);
    expect(plan.streamed).toBe(true);
    expect(plan.split).toBe('linear');
    expect(plan.groups[0]).toContain(23);
    expect(plan.groups.flat().sort((a, b) => a - b)).toEqual(Array.from({ length: 24 }, (_, i) => i));
    for (let g = 1; g < plan.groups.length; g++) expect(Math.max(...plan.groups[g]) + 1).toBe(Math.min(...plan.groups[g - 1]));
    // Without room for the kept activations the plan does not stream (and here nothing fits 8 GiB).
    const e = refusal(() => planPrune(OPT1B3, s, H200, 8 * GiB, 0, 8 * GiB));
    expect(e.limit).toMatch(/memoryBudget|hostMemoryBudget/);
  });

  it('refuses a budget below the finest plan with LimitExceededError naming memoryBudget', () => {
    const s = S('element');
    // The finest plan: one decoder layer per pass, streamed, one linear at a time, offloaded updates, the LM head in its smallest chunks.
    const finest = estimatePruneMemory(OPT125, { ...s, groups: contiguousGroups(12, 12).reverse(), split: 'linear', streamed: true, offloadUpdate: true, headChunkRows: 256 }, H200).peak;
    expect(planPrune(OPT125, s, H200, finest, 0, HOST).estimate.peak).toBeLessThanOrEqual(finest);
    expect(() => planPrune(OPT125, s, H200, finest - 1, 0, HOST)).toThrow(LimitExceededError);
    expect(() => planPrune(OPT125, s, H200, finest - 1, 0, HOST)).toThrow(/memoryBudget/);
  });

  it('real shapes (estimates, not measurements): OPT-125m fits 2 GiB, OPT-1.3B 8 GiB, OPT-6.7B and Llama-2-7B one H200', () => {
    const cases: Array<[string, ReturnType<typeof opt>, MemorySettings, number, number]> = [
      ['OPT-125m rows-cols', OPT125, S('rows-cols'), 2 * GiB, 1 * GiB],
      ['OPT-125m element', OPT125, S('element'), 2 * GiB, 64 * GiB],
      ['OPT-1.3B rows-cols', OPT1B3, S('rows-cols'), 8 * GiB, 64 * GiB],
      ['OPT-1.3B element', OPT1B3, S('element'), 8 * GiB, 64 * GiB],
      ['OPT-1.3B rows-cols, 32 × 2048', OPT1B3, S('rows-cols', { nsamples: 32 }), 8 * GiB, 64 * GiB],
      ['OPT-6.7B rows-cols, 16 × 2048', OPT6B7, S('rows-cols', { nsamples: 16 }), 130 * GiB, 128 * GiB],
      ['Llama-2-7B rows-cols, 16 × 2048', LLAMA7B, S('rows-cols', { nsamples: 16 }), 130 * GiB, 128 * GiB],
    ];
    for (const [name, c, s, budget, host] of cases) {
      const unbudgeted = estimatePruneMemory(c, s, H200).peak;
      const { plan, estimate } = planPrune(c, s, H200, budget, 0, host);
      console.log(`[plan] ${name}, batch 1: unbudgeted ${(unbudgeted / GiB).toFixed(2)} GiB → ${(estimate.peak / GiB).toFixed(2)} GiB under ${(budget / GiB).toFixed(0)} GiB (host ${(host / GiB).toFixed(0)} GiB): ${describePlan(plan)}`);
      expect(estimate.peak).toBeLessThanOrEqual(budget);
      expect(estimate.hostBytes).toBeLessThanOrEqual(host);
      expect(plan.groups.flat().sort((a, b) => a - b)).toEqual(Array.from({ length: c.numLayers }, (_, i) => i));
    }
  });

  it('a page gets a default budget (a share of its largest buffer, at most 3 GiB); Node gets none', () => {
    expect(defaultMemoryBudget(H200, false)).toBeUndefined();
    expect(defaultMemoryBudget({ maxStorageBufferBindingSize: 2 ** 30, maxBufferSize: 2 ** 31 }, true)).toBe(0.75 * 2 ** 31);
    expect(defaultMemoryBudget(H200, true)).toBe(3 * GiB);
  });
});
