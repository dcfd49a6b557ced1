/**
 * The memory check of a prune job (planJob in job-prepare.ts, which prune(), the worker and
 * `llm-surgeon prune` all run): the settings the run will use → the estimate of memory.ts (surgeon, kobd, lobd,
 * magnitude) or memory-peers.ts (sparsegpt, wanda), and their early refusal (LimitExceededError naming the
 * limit and what would fit), before any GPU work. Nothing here is family-specific: both estimates read the
 * config's family (its linears, its block's allocation walk).
 */

import type { ModelConfig } from '../io/config';
import { defaultKfacBatch } from '../model/kfac';
import type { Resolved } from '../surgeon/options';
import type { DeviceLimits, MemoryEstimate, MemorySettings } from './memory';
import { checkPeerMemory, type PeerMemoryEstimate, type PeerMethod } from './memory-peers';
import { planPrune, type PrunePlan } from './plan';

/** A surgeon-family job's estimate with the plan it was made for (layer groups per shot). */
export type PlannedEstimate = MemoryEstimate & { plan: PrunePlan };

export interface JobMemory {
  method: string;
  structure?: string;
  /** Calibration windows drawn (0: magnitude without calibration) and tokens per window. */
  windows: number;
  seqlen: number;
  /** K-FAC windows per forward/backward as asked (default ⌊4096 / seqlen⌋; kfacBatchOf). */
  batch?: number;
  /** The surgeon family's resolved options (surgeon/options.ts resolveOptions); absent for the peers. */
  resolved?: Pick<Resolved, 'independent' | 'maxChunk' | 'lora'>;
  /** The job's perplexity runs (dense, per shot, pruned): window length and windows. */
  evaluate?: { seqlen: number; windows: number };
  /** Sampled-label draws per K-FAC batch (PruneOptions.fisherSamples; 0: the true labels). */
  fisherSamples?: number;
}

export const isPeerMethod = (m: string): m is PeerMethod => m === 'sparsegpt' || m === 'wanda';

/** The K-FAC batch a run uses: the asked one (default ⌊4096 / seqlen⌋), clamped to 1…windows. */
export function kfacBatchOf(windows: number, seqlen: number, batch?: number): number {
  return Math.max(1, Math.min(windows || 1, batch ?? defaultKfacBatch(seqlen)));
}

/** The estimate's view of a job (maxChunk 1 for independent updates, LoRA as resolved). */
export function jobMemorySettings(j: JobMemory): MemorySettings {
  const r = j.resolved;
  return {
    nsamples: Math.max(1, j.windows), seqlen: j.seqlen, batch: kfacBatchOf(j.windows, j.seqlen, j.batch), method: j.method, structure: j.structure,
    maxChunk: r && (r.independent ? 1 : r.maxChunk),
    evaluate: j.evaluate, fisherSamples: j.fisherSamples,
    lora: r?.lora && { rank: r.lora.rank, targets: r.lora.targets, batch: r.lora.batch, fraction: r.lora.fraction },
  };
}

/**
 * The job's estimated peak GPU memory and, for the surgeon family, the plan that fits the budget (the
 * fewest calibration passes per shot: api/plan.ts); throws LimitExceededError when nothing fits.
 * SparseGPT and Wanda run layer by layer already: their estimate is checked against the same budget.
 */
export function checkJobMemory(c: ModelConfig, j: JobMemory, lim: DeviceLimits, budget?: number, inUse = 0): PlannedEstimate | PeerMemoryEstimate {
  const s = jobMemorySettings(j);
  if (isPeerMethod(j.method)) return checkPeerMemory(c, { ...s, method: j.method }, lim, budget, inUse);
  const { plan, estimate } = planPrune(c, s, lim, budget, inUse);
  return { ...estimate, plan };
}
