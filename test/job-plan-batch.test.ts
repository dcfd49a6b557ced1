/**
 * The automatic K-FAC batch under a memoryBudget (issue 13): the batch is chosen against the planned,
 * streamed peak that the job will run, not the all-at-once estimate. Found on the H200 (2026-12-04): an
 * OPT-125m-shaped structured job, 32 × 2048 calibration, --memory-budget 2GiB was refused with "6039.9 MiB
 * … would fit: a calibration batch of 1" because the automatic batch (6) had been picked by the
 * unbudgeted estimate. Host-side planning only (no GPU work).
 */
import { describe, expect, it } from 'vitest';
import { planJob, prepareJob } from '../src/api/job-prepare';
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
      // the largest batch whose plan fits: one more window per forward/backward would not
      if (p.batch < 16) {
        const bigger = await prepareJob(host, { ...job.opts, calibration: { ...job.opts.calibration!, batch: p.batch + 1 } });
        expect(() => planJob(bigger, H200)).toThrow(/memoryBudget/);
      }
    });
  }
});
