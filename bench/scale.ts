/**
 * Memory-budgeted pruning of random-weight models of real shape (issue 13's targets), one GPU-machine call:
 *   node dist-node/scale.mjs [--shapes opt-125m,opt-1.3b] [--structures rows-cols,element]
 *        [--budgets 2GiB,8GiB] [--nsamples 128] [--seqlen 2048] [--shots 2] [--sparsity 0.025] [--out f]
 * Per (shape, structure): the plan prune() makes under the shape's budget, the estimated and the pool's
 * measured peak, seconds per shot and per phase. Weights are uniform with std 0.02 (shape-only timing;
 * quality stays on the fixtures); calibration ids are random. A few shots at a proportionally small
 * sparsity time the per-shot work of a long schedule (the curvature passes dominate and do not depend
 * on the target). Prints a table and writes { runs: [...] } in bench/results/h200-scale.json's schema
 * (the authors' columns stay null here: the official harness runs beside this script).
 */
import { parseModelConfig, expectedTensors, type ModelConfig } from '../src/io/config';
import type { LoadedCheckpoint } from '../src/io/checkpoint';
import { prune, type PruneJobOptions } from '../src/index';
import { arg, table, writeJson } from './harness';

const SHAPES: Record<string, Record<string, unknown>> = {
  // a smoke test of this script on a software GPU
  'opt-tiny': { model_type: 'opt', architectures: ['OPTForCausalLM'], hidden_size: 32, num_attention_heads: 4, num_hidden_layers: 3, ffn_dim: 256, vocab_size: 64, max_position_embeddings: 64, word_embed_proj_dim: 32, dtype: 'float16' },
  'opt-125m': { model_type: 'opt', architectures: ['OPTForCausalLM'], hidden_size: 768, num_attention_heads: 12, num_hidden_layers: 12, ffn_dim: 3072, vocab_size: 50272, max_position_embeddings: 2048, word_embed_proj_dim: 768, dtype: 'float16' },
  'opt-1.3b': { model_type: 'opt', architectures: ['OPTForCausalLM'], hidden_size: 2048, num_attention_heads: 32, num_hidden_layers: 24, ffn_dim: 8192, vocab_size: 50272, max_position_embeddings: 2048, word_embed_proj_dim: 2048, dtype: 'float16' },
  'opt-6.7b': { model_type: 'opt', architectures: ['OPTForCausalLM'], hidden_size: 4096, num_attention_heads: 32, num_hidden_layers: 32, ffn_dim: 16384, vocab_size: 50272, max_position_embeddings: 2048, word_embed_proj_dim: 4096, dtype: 'float16' },
  'llama-7b': { model_type: 'llama', architectures: ['LlamaForCausalLM'], hidden_size: 4096, intermediate_size: 11008, num_attention_heads: 32, num_key_value_heads: 32, num_hidden_layers: 32, vocab_size: 32000, max_position_embeddings: 4096, rms_norm_eps: 1e-5, torch_dtype: 'float16' },
};
const DEFAULT_BUDGET: Record<string, string> = { 'opt-tiny': '7MiB', 'opt-125m': '2GiB', 'opt-1.3b': '8GiB', 'opt-6.7b': '130GiB', 'llama-7b': '130GiB' };

function bytesOf(s: string): number {
  const m = /^([\d.]+)\s*(GiB|MiB)$/.exec(s);
  if (!m) throw new Error(`a budget like 2GiB or 512MiB, got ${s}`);
  return Math.round(Number(m[1]) * 2 ** (m[2] === 'GiB' ? 30 : 20));
}

/** Random weights of the config's tensors: uniform with std 0.02 (fast for billions of values), norms 1. */
function randomCheckpoint(config: ModelConfig): LoadedCheckpoint {
  const shapes = expectedTensors(config);
  const tensors = new Map<string, Float32Array>();
  let s = 12345 >>> 0;
  const a = 0.02 * Math.sqrt(3) * 2 / 2 ** 32;
  for (const [n, sh] of shapes) {
    const t = new Float32Array(sh.reduce((x, y) => x * y, 1));
    if (/norm\.weight$/.test(n)) t.fill(1);
    else if (!n.endsWith('bias')) for (let i = 0; i < t.length; i++) { s = (Math.imul(s, 1664525) + 1013904223) >>> 0; t[i] = s * a - 0.02 * Math.sqrt(3); }
    tensors.set(n, t);
  }
  return { config, tensors, shapes, sourceDtype: 'F32', files: [] };
}

async function main() {
  const shapes = (arg('shapes') ?? 'opt-125m').split(',');
  const structures = (arg('structures') ?? 'rows-cols,element').split(',');
  const budgets = arg('budgets')?.split(',');
  const nsamples = Number(arg('nsamples') ?? 128), seqlen = Number(arg('seqlen') ?? 2048);
  const shots = Number(arg('shots') ?? 2), sparsity = Number(arg('sparsity') ?? 0.025);
  const runs: Array<Record<string, unknown>> = [];
  for (const [i, shape] of shapes.entries()) {
    const config = parseModelConfig(SHAPES[shape]);
    const t0 = performance.now();
    const model = randomCheckpoint(config);
    const params = [...model.tensors.values()].reduce((a, t) => a + t.length, 0);
    console.log(`${shape}: ${params} parameters, random weights in ${((performance.now() - t0) / 1000).toFixed(1)} s`);
    let r = 7;
    const ids = Int32Array.from({ length: nsamples * seqlen + 1 }, () => { r = (Math.imul(r, 1103515245) + 12345) >>> 0; return r % config.vocabSize; });
    const budget = bytesOf(budgets?.[i] ?? DEFAULT_BUDGET[shape]);
    for (const structure of structures) {
      const t1 = performance.now();
      let seen = '';
      const { report } = await prune(model, {
        structure, sparsity, shots, memoryBudget: budget,
        calibration: { ids, nsamples, seqlen, batch: 1 },
        onProgress: (p) => {
          const at = p.pass ? `shot ${p.shot?.index} pass ${p.pass.index}/${p.pass.total}` : '';
          if (at && at !== seen) console.log(`  ${shape} ${structure} ${at} at ${((performance.now() - t1) / 1000).toFixed(1)} s`);
          seen = at || seen;
        },
      } as PruneJobOptions);
      const secs = (performance.now() - t1) / 1000;
      const plan = report.memory.plan;
      runs.push({
        model: `${shape}-shape`, params, structure, shots, budget_bytes: budget,
        peak_bytes: report.memory.measuredPeakBytes, estimate_bytes: report.memory.estimatedPeakBytes,
        passes_per_shot: plan?.passesPerShot ?? null, groups: plan?.groups.length ?? null, head_chunk_rows: plan?.headChunkRows ?? null,
        host_bytes: plan?.hostBytes ?? null, seconds_per_shot: report.seconds.total / shots, job_seconds: secs,
        phases: report.seconds, authors_seconds_per_shot: null, ratio_vs_authors: null,
      });
    }
  }
  table(runs.map((x) => ({ model: x.model as string, structure: x.structure as string, budget_gib: (x.budget_bytes as number) / 2 ** 30, peak_gib: (x.peak_bytes as number) / 2 ** 30, estimate_gib: (x.estimate_bytes as number) / 2 ** 30, passes: x.passes_per_shot as number, s_per_shot: x.seconds_per_shot as number })));
  writeJson(arg('out') ?? 'bench/out/scale.json', { date: new Date().toISOString(), commit: process.env.BENCH_COMMIT ?? null, nsamples, seqlen, runs });
}

main().catch((e) => { console.error(e); process.exit(1); });
