/**
 * The pruning step of `llm-surgeon prune`, for either family of methods:
 * - surgeon / kobd / lobd / magnitude → pruneModel (multi-shot, one global threshold; ALGORITHM.md §2–§7),
 * - sparsegpt / wanda → the sequential peers (src/surgeon/peers, ALGORITHM.md §9).
 * planPrune() validates the options against the model's config (a UsageError naming the problem), picks
 * the K-FAC batch when --batch is absent, and checks the job's estimated peak GPU memory against the
 * device's limits and the --memory-budget (api/job-memory.ts, the check runPruneJob does: LimitExceededError
 * naming the limit and what would fit) — all before the model is uploaded. It returns what report.json records about the
 * options, the estimate, and a run() that prunes the uploaded model in place.
 */

import { checkJobMemory, isPeerMethod, jobMemorySettings, type JobMemory } from '../api/job-memory';
import { autoKfacBatch, type DeviceLimits, type MemoryEstimate } from '../api/memory';
import type { PrunePlan as MemoryPlan } from '../api/plan';
import type { PeerMemoryEstimate } from '../api/memory-peers';
import type { GpuContext } from '../gpu/context';
import { ShapeError } from '../gpu/errors';
import type { ModelConfig } from '../io/config';
import { prunableLayersOf } from '../arch/registry';
import type { DecoderModel } from '../model/model';
import { PruneConfigError, resolveOptions, type PruneOptions, type PruneReport } from '../surgeon/options';
import { sparsegptPrune, wandaPrune, resolvePeer, type PeerOptions } from '../surgeon/peers/index';
import { pruneModel } from '../surgeon/prune';
import { UsageError } from './args';
import type { PruneArgs } from './prune-args';
import type { ProgressLine } from './prune-report';

export interface PruneOutcome {
  achievedSparsity: number;
  /** Per layer; rowsRemoved/colsRemoved for rows-cols. */
  layers: ReadonlyArray<{ name: string; rowsRemoved?: number; colsRemoved?: number }>;
  shots?: PruneReport['shots'];
  /** Peers: zeros / entries of W alone (biases are never pruned by them). */
  weightSparsity?: number;
  seconds: Record<string, number>;
}

export interface PrunePlan {
  summary: string;
  nm?: { n: number; m: number };
  /** Resolved options (defaults filled in) for report.json. */
  options: Record<string, unknown>;
  /** K-FAC batch chosen for a run without --batch (autoKfacBatch) and the peak it was chosen within; undefined otherwise. */
  autoBatch?: { batch: number; budget: number };
  /** Estimated peak GPU memory of the run (the weights included). */
  memory: MemoryEstimate | PeerMemoryEstimate;
  /** Layer groups per shot under --memory-budget (api/plan.ts); absent for SparseGPT / Wanda. */
  memoryPlan?: MemoryPlan;
  run(ctx: GpuContext, model: DecoderModel): Promise<PruneOutcome>;
}

// Estimated peak GPU memory up to which the CLI raises the K-FAC batch on its own (--batch overrides).
const AUTO_BATCH_BUDGET = 4 * 2 ** 30;

/** Options that do not fit the model (PruneConfigError, ShapeError) become UsageErrors. */
function asUsage<T>(f: () => T): T {
  try {
    return f();
  } catch (e) {
    if (e instanceof PruneConfigError || e instanceof ShapeError) throw new UsageError(e.message);
    throw e;
  }
}

export function planPrune(
  a: PruneArgs, cfg: ModelConfig, calib: Int32Array[], seqlen: number, evaluate: PruneOptions['evaluate'],
  progress: (p: ProgressLine) => void, signal: AbortSignal, lim: DeviceLimits,
): PrunePlan {
  const layers = prunableLayersOf(cfg);
  const job: JobMemory = {
    method: a.method, structure: a.structure, windows: calib.length, seqlen,
    evaluate: evaluate && { seqlen: evaluate.seqlen, windows: evaluate.windows! },
  };
  if (isPeerMethod(a.method)) {
    const method = a.method;
    const po: PeerOptions = {
      structure: a.structure as PeerOptions['structure'], sparsity: a.sparsity, blocksize: a.blocksize, percdamp: a.dampingA, signal,
    };
    const r = asUsage(() => resolvePeer({ prunableLayers: () => layers }, po, method));
    const memory = checkJobMemory(cfg, job, lim, a.memoryBudget);
    const t0 = performance.now();
    po.onProgress = (p) => {
      const f = (p.layer + p.fraction) / p.layers, el = (performance.now() - t0) / 1000;
      progress({ phase: p.phase, shot: 1, shots: 1, layer: `layer ${p.layer + 1}/${p.layers}`, fraction: f, etaSeconds: f > 0 ? (el / f) * (1 - f) : undefined });
    };
    const options = method === 'sparsegpt'
      ? { structure: a.structure, sparsity: r.sparsity, method, blocksize: r.blocksize, percdamp: r.percdamp }
      : { structure: a.structure, sparsity: r.sparsity, method };
    return {
      summary: `${method} ${a.structure} to ${r.sparsity} per layer (sequential)`,
      nm: r.nm ?? undefined,
      options,
      memory,
      async run(ctx, m) {
        const rep = await (method === 'sparsegpt' ? sparsegptPrune : wandaPrune)(ctx, m, calib, po);
        return { achievedSparsity: rep.achievedSparsity, layers: rep.layers, weightSparsity: rep.weightSparsity, seconds: rep.seconds };
      },
    };
  }
  const opts: PruneOptions = {
    structure: a.structure, sparsity: a.sparsity, shots: a.shots, method: a.method,
    lambdaG: a.dampingG, lambdaA: a.dampingA, fisherSamples: a.fisherSamples, seed: a.seed,
    maxCorrelate: a.maxCorrelate, maxChunk: a.maxChunk, signal,
    lora: a.lora ? Object.fromEntries(Object.entries(a.lora).filter(([, v]) => v !== undefined)) : undefined,
    // pruneModel's in-shot ETA assumes even phases (they are not); the printer estimates from finished shots
    onProgress: (p) => progress({ ...p, etaSeconds: undefined }),
    evaluate: a.evalEveryShot ? evaluate : undefined,
  };
  const r = asUsage(() => resolveOptions(opts, layers, calib));
  job.resolved = r;
  let batch = a.batch, autoBatch: PrunePlan['autoBatch'];
  if (batch === undefined && calib.length > 0 && a.method !== 'magnitude') {
    // Fill a large GPU (more windows per K-FAC forward/backward) while the estimated peak stays small.
    const budget = Math.min(AUTO_BATCH_BUDGET, a.memoryBudget ?? Infinity);
    batch = autoKfacBatch(cfg, jobMemorySettings(job), lim, budget);
    autoBatch = { batch, budget };
  }
  const memory = checkJobMemory(cfg, { ...job, batch }, lim, a.memoryBudget);
  const memoryPlan = 'plan' in memory ? memory.plan : undefined;
  return {
    summary: `${r.method} ${a.structure} to ${a.sparsity} in ${r.shots} shot(s)`,
    nm: r.nm,
    options: {
      structure: a.structure, sparsity: a.sparsity, method: r.method, shots: r.shots,
      lambdaG: r.lambdaG, lambdaA: r.lambdaA, fisherSamples: a.fisherSamples ?? 0, seed: a.seed,
      maxCorrelate: a.maxCorrelate ?? null, maxChunk: r.maxChunk, independentUpdates: r.independent,
      lora: r.lora ?? null, batch: batch ?? null,
    },
    autoBatch,
    memory,
    memoryPlan,
    async run(ctx, m) {
      const rep = await pruneModel(ctx, m, calib, { ...opts, batch, groups: memoryPlan?.groups, headChunkRows: memoryPlan?.headChunkRows });
      return { achievedSparsity: rep.achievedSparsity, layers: rep.layers, shots: rep.shots, seconds: rep.seconds };
    },
  };
}
