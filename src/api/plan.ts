/**
 * The memory plan of a surgeon-family job (surgeon, K-OBD, L-OBD, magnitude) under a memoryBudget:
 * how many calibration passes a shot takes and which decoder layers' curvature each pass accumulates.
 * Its estimate is estimatePruneMemory of exactly the schedule pruneModel runs (`groups`), so the
 * plan and the estimate cannot drift apart.
 *
 * A shot with n groups (surgeon/shot.ts): per group, one K-FAC pass over all calibration windows that
 * accumulates only the group's factors, its problems, inverses and costs; the inverses (and element
 * costs) are parked in host memory (Node: the process heap, browser: ArrayBuffers) and the group's GPU
 * tensors freed. One global threshold over all layers; then per group the problems are rebuilt from the
 * unchanged weights and the parked inverses and updated. Same masks and weights as one group (the
 * same kernels on the same inputs), n times the curvature passes.
 *
 * Preference: the fewest passes that fit (one group when the whole model fits); groups are contiguous
 * runs of decoder layers of near-equal size. The frozen weights stay in f32 on the GPU (no lower
 * precision copy yet), so weights + one K-FAC batch's activations is the floor no plan goes below.
 */

import type { ModelConfig } from '../io/config';
import { defaultKfacBatch } from '../model/kfac';
import { checkPruneMemory, estimatePruneMemory, mib, type DeviceLimits, type MemoryEstimate, type MemorySettings } from './memory';

export interface PrunePlan {
  /** Decoder layers of each calibration pass of a shot, in order (one group: the unbudgeted schedule). */
  groups: number[][];
  /** K-FAC passes over the calibration windows per shot (0 for magnitude, which needs no curvature). */
  passesPerShot: number;
  /** Host bytes parked between the passes of a shot (0 with one group). */
  hostBytes: number;
  /** Precision the frozen weights are kept in on the GPU. */
  weightsPrecision: 'f32';
  /**
   * Rows per LM-head cross-entropy chunk in the K-FAC passes when the plan needs fewer than the default
   * (its logits chunk is the largest single buffer of a pass). Changes the head gradient's split-K
   * summation order, so weights agree with the default chunk's to fp32 rounding, not bit for bit.
   */
  headChunkRows?: number;
  /** The budget the plan was made for (bytes), if any. */
  budget?: number;
}

// A page cannot ask how much memory the GPU has; WebGPU only tells the largest buffer it may allocate.
// Three quarters of that, at most 3 GiB, stays clear of the 1–4 GiB a browser tab gets on the machines
// this targets (a heuristic, not a measurement; pass memoryBudget to choose).
const PAGE_SHARE = 0.75, PAGE_CAP = 3 * 2 ** 30;
// LM-head chunk rows a plan may fall back to (the default holds 512 MiB of logits: 2670 rows of V = 50272).
const HEAD_CHUNK_ROWS = [1024, 512, 256];

/** The budget a job in a page gets when it names none (Node: none; the device's limits apply). */
export function defaultMemoryBudget(lim: DeviceLimits, inPage: boolean): number | undefined {
  return inPage ? Math.min(PAGE_CAP, Math.floor(PAGE_SHARE * lim.maxBufferSize)) : undefined;
}

/** True in a browser page or worker (not in Node). */
export const inPage = (): boolean => typeof (globalThis as { document?: unknown }).document !== 'undefined' || typeof (globalThis as { WorkerGlobalScope?: unknown }).WorkerGlobalScope !== 'undefined';

/** n contiguous groups of near-equal size over `layers` decoder layers (the larger groups first). */
export function contiguousGroups(layers: number, n: number): number[][] {
  const k = Math.max(1, Math.min(n, layers));
  const out: number[][] = [];
  for (let g = 0, l = 0; g < k; g++) {
    const size = Math.floor(layers / k) + (g < layers % k ? 1 : 0);
    out.push(Array.from({ length: size }, (_, i) => l + i));
    l += size;
  }
  return out;
}

/** One line for logs and reports: passes, groups, host spill, precision. */
export function describePlan(p: PrunePlan): string {
  const sizes = p.groups.map((g) => g.length);
  const same = sizes.every((x) => x === sizes[0]);
  const groups = p.groups.length === 1 ? 'all layers in one pass' : `${p.groups.length} groups of ${same ? sizes[0] : `${Math.min(...sizes)}–${Math.max(...sizes)}`} decoder layers`;
  const spill = p.hostBytes ? `, ${mib(p.hostBytes)} parked in host memory between passes` : '';
  const head = p.headChunkRows ? `, LM head in chunks of ${p.headChunkRows} rows` : '';
  return `${p.passesPerShot} curvature pass${p.passesPerShot === 1 ? '' : 'es'} per shot (${groups})${spill}${head}, weights in ${p.weightsPrecision}${p.budget !== undefined ? `, budget ${mib(p.budget)}` : ''}`;
}

/**
 * The plan with the fewest passes whose estimated peak fits `budget − inUse` (and the adapter's
 * buffer limits), with its estimate. Throws LimitExceededError (as checkPruneMemory, for the finest
 * plan: one decoder layer per pass) when none fits.
 */
export function planPrune(c: ModelConfig, s: MemorySettings, lim: DeviceLimits, budget?: number, inUse = 0): { plan: PrunePlan; estimate: MemoryEstimate } {
  const L = c.numLayers;
  const passes = (n: number) => ((s.method ?? 'surgeon') === 'magnitude' ? 0 : n);
  const make = (n: number, rows: number | undefined, est: MemoryEstimate): { plan: PrunePlan; estimate: MemoryEstimate } => ({
    plan: { groups: contiguousGroups(L, n), passesPerShot: passes(n), hostBytes: est.hostBytes, weightsPrecision: 'f32', ...(rows ? { headChunkRows: rows } : {}), budget },
    estimate: est,
  });
  const fits = (e: MemoryEstimate) => e.largest.bytes <= lim.maxStorageBufferBindingSize && e.peak <= (budget ?? Infinity) - inUse;
  const one = estimatePruneMemory(c, { ...s, groups: undefined }, lim);
  if (budget === undefined || fits(one)) return make(1, undefined, checkPruneMemory(c, { ...s, groups: undefined }, lim, budget, inUse));
  // Fewest passes first (a pass is a whole forward/backward over the calibration set); within the same
  // passes the largest LM-head chunk (each extra chunk costs one more [chunk, V]·[V, d] matmul per batch).
  const N = Math.max(1, Math.min(s.nsamples, s.batch ?? defaultKfacBatch(s.seqlen))) * s.seqlen;
  const chunkOptions = [undefined, ...HEAD_CHUNK_ROWS.filter((r) => r < N)];
  for (let n = 1; n <= L; n++) {
    for (const rows of chunkOptions) {
      if (n === 1 && rows === undefined) continue; // `one` above
      const est = estimatePruneMemory(c, { ...s, groups: n > 1 ? contiguousGroups(L, n) : undefined, headChunkRows: rows }, lim);
      if (fits(est)) return make(n, rows, est);
    }
  }
  // Not even one decoder layer per pass with the smallest head chunk fits: checkPruneMemory refuses with
  // that plan's numbers and what would fit it (a smaller calibration batch, a shorter seqlen, fewer
  // evaluation windows).
  const rows = chunkOptions[chunkOptions.length - 1];
  return make(L, rows, checkPruneMemory(c, { ...s, groups: contiguousGroups(L, L), headChunkRows: rows }, lim, budget, inUse));
}
