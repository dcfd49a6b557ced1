/**
 * The automatic K-FAC batch under a memoryBudget (issue 13): the batch is chosen against the planned,
 * streamed peak that the job will run, not the all-at-once estimate. Found on the H200 (2026-12-04): an
 * OPT-125m-shaped structured job, 32 × 2048 calibration, --memory-budget 2GiB was refused with "6039.9 MiB
 * … would fit: a calibration batch of 1" because the automatic batch (6) had been picked by the
 * unbudgeted estimate. Host-side planning only (no GPU work).
 */
import { describe, expect, it } from 'vitest';
import { fewestPassesBatch, planJob, prepareJob } from '../src/api/job-prepare';
import type { HostModel } from '../src/api/job';
import { parseModelConfig } from '../src/io/config';

const OPT_125M = { model_type: 'opt', architectures: ['OPTForCausalLM'], hidden_size: 768, num_attention_heads: 12, num_hidden_layers: 12, ffn_dim: 3072, vocab_size: 50272, max_position_embeddings: 2048, word_embed_proj_dim: 768, dtype: 'float16' };
const H200 = { maxStorageBufferBindingSize: 2 ** 31 - 4, maxBufferSize: 2 ** 40 };
const GIB = 2 ** 30;

describe('automatic K-FAC batch under a memory budget', () => {
  const host = { config: parseModelConfig(OPT_125M) } as unknown as HostModel;
  const ids = Int32Array.from({ length: 32 * 2048 + 4096 }, (_, i) => (i * 7919) % 50272);

  for (const budget of [2 * GIB, 3 * GIB]) {
    it(`structured OPT-125m shape, 32 × 2048 under ${budget / GIB} GiB: planned peak within the budget`, async () => {
      const job = await prepareJob(host, { structure: 'rows-cols', sparsity: 0.2, shots: 8, memoryBudget: budget, calibration: { ids: Array.from(ids), nsamples: 32, seqlen: 2048, batch: 'auto' } });
      const p = planJob(job, H200);
      expect(p.estimate.peak).toBeLessThanOrEqual(budget);
      expect(p.batch).toBeGreaterThanOrEqual(1);
      expect(p.autoBatch?.batch).toBe(p.batch);
      // the fewest passes per shot among the fitting batches of ≥ 8192 tokens (4 windows), ties to the
      // largest: every other such batch either does not fit, takes more passes, or is smaller
      const passes = async (b: number) => {
        const j = await prepareJob(host, { ...job.opts, calibration: { ...job.opts.calibration!, batch: b } });
        try { return planJob(j, H200).plan!.passesPerShot; } catch (e) { if (/memoryBudget/.test(String(e))) return Infinity; throw e; }
      };
      const mine = p.plan!.passesPerShot;
      expect(p.batch).toBeGreaterThanOrEqual(4);
      for (let b = 4; b <= 16; b++) {
        const q = await passes(b);
        if (b > p.batch) expect(q).toBeGreaterThan(mine);
        else expect(q).toBeGreaterThanOrEqual(mine);
      }
    });
  }

  it('fewestPassesBatch: fewest passes among batches of at least 8192 tokens, ties to the largest', () => {
    // passes as measured by the planner on the 2 GiB job above: 3→3, 4→4, 6→6, 8→7, 10→12
    const table: Record<number, number> = { 1: 1, 2: 2, 3: 3, 4: 4, 5: 5, 6: 6, 7: 6, 8: 7, 9: 9, 10: 12 };
    expect(fewestPassesBatch(10, 2048, (b) => table[b])).toBe(4);
    expect(fewestPassesBatch(10, 512, (b) => table[b])).toBe(10); // 16 windows needed, top has fewer: top
    expect(fewestPassesBatch(10, 1024, (b) => table[b])).toBe(8); // floor 8 windows: 8 → 7 passes
    expect(fewestPassesBatch(3, 2048, (b) => table[b])).toBe(3); // top below the floor: top
    expect(fewestPassesBatch(8, 2048, () => 1)).toBe(8); // one pass everywhere: the largest
    expect(fewestPassesBatch(8, 2048, (b) => (b === 7 || b === 6 ? 5 : 9))).toBe(7);
  });
});
