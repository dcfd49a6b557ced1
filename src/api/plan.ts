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
 * Finer schedules, tried when layer groups alone do not fit (memory-schedule.ts estimates them):
 * - streamed passes (model/kfac-stream.ts): the groups run top-down; the top pass keeps every lower
 *   pass's input and each pass the gradient at its lowest layer in host memory, so a pass saves and runs
 *   only its own layers (the activations of the other layers never sit on the GPU, and n passes cost
 *   about one forward and backward more than one pass, not n whole passes);
 * - split 'linear': a pass accumulates its layers' factors, then problems, inverses, costs and updates
 *   run one prunable linear at a time, the other factors parked in host memory;
 * - offloadUpdate: during the update pass only the updated linear's weights are on the GPU.
 * The weights stay in f32 everywhere: a half-precision copy of the frozen weights is not exact (random or
 * pruned-and-updated f32 weights do not round-trip through f16), and the masks must equal the unbudgeted
 * run's bit for bit. Streaming needs host memory for the kept inputs and gradients (hostBudget).
 *
 * Preference: one group when the whole model fits; else the fewest passes (schedules() below). A
 * budgeted plan splits its problems per linear: the update's bound (every unit of a group removed)
 * is then small, so the estimate's peak is a phase whose allocations are known before the job (the
 * passes or the inverses), not that bound. Groups are contiguous runs of decoder layers of near-equal
 * size, listed top-down.
 */

import type { ModelConfig } from '../io/config';
import { defaultKfacBatch } from '../model/kfac';
import { LimitExceededError } from '../gpu/errors';
import { checkPruneMemory, estimatePruneMemory, mib, type DeviceLimits, type MemoryEstimate, type MemorySettings } from './memory';

export interface PrunePlan {
  /** Decoder layers of each calibration pass of a shot, in order (one group: the unbudgeted schedule). */
  groups: number[][];
  /** K-FAC passes over the calibration windows per shot (0 for magnitude, which needs no curvature). */
  passesPerShot: number;
  /** Host bytes parked between the passes of a shot (0 with one group). */
  hostBytes: number;
  /** Precision the frozen weights are kept in on the GPU (f32: a half-precision copy would not be exact). */
  weightsPrecision: 'f32';
  /** 'linear': problems, inverses, costs and updates one prunable linear at a time; 'layer': a pass's layers together. */
  split: 'layer' | 'linear';
  /** Each pass runs only its own layers, pass inputs and gradients kept in host memory (model/kfac-stream.ts). */
  streamed: boolean;
  /** During the update pass only the updated linear's weights are on the GPU, the others in host memory. */
  offloadUpdate: boolean;
  /** The host-memory budget the plan was made for (bytes). */
  hostBudget?: number;
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
// Host memory a plan may fill (kept pass inputs, parked factors and inverses): a page's ArrayBuffers are
// kept to 1 GiB (a heuristic for a tab); Node gets half of the machine's memory.
const PAGE_HOST = 2 ** 30, NODE_HOST_SHARE = 0.5, NODE_HOST_FALLBACK = 16 * 2 ** 30;

/** The budget a job in a page gets when it names none (Node: none; the device's limits apply). */
export function defaultMemoryBudget(lim: DeviceLimits, inPage: boolean): number | undefined {
  return inPage ? Math.min(PAGE_CAP, Math.floor(PAGE_SHARE * lim.maxBufferSize)) : undefined;
}

/** Host memory a budgeted plan may use by default (see PAGE_HOST). */
export function defaultHostBudget(page = inPage()): number {
  if (page) return PAGE_HOST;
  const os = (globalThis as { process?: { getBuiltinModule?: (m: string) => { totalmem(): number } | undefined } }).process?.getBuiltinModule?.('node:os');
  return os ? Math.floor(NODE_HOST_SHARE * os.totalmem()) : NODE_HOST_FALLBACK;
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

/** One line for logs and reports: passes, groups, streaming, split, host memory, precision. */
export function describePlan(p: PrunePlan): string {
  const sizes = p.groups.map((g) => g.length);
  const same = sizes.every((x) => x === sizes[0]);
  const groups = p.groups.length === 1 ? 'all layers in one pass' : `${p.groups.length} groups of ${same ? sizes[0] : `${Math.min(...sizes)}–${Math.max(...sizes)}`} decoder layers`;
  const parts = [
    ...(p.streamed ? ['streamed: each pass runs only its own layers from inputs and gradients kept in host memory'] : []),
    ...(p.split === 'linear' ? ['problems and updates one linear at a time'] : []),
    ...(p.offloadUpdate ? ['frozen weights in host memory during the updates'] : []),
    ...(p.hostBytes ? [`${mib(p.hostBytes)} in host memory`] : []),
    ...(p.headChunkRows ? [`LM head in chunks of ${p.headChunkRows} rows`] : []),
    `weights in ${p.weightsPrecision}`,
    ...(p.budget !== undefined ? [`budget ${mib(p.budget)}`] : []),
  ];
  return `${p.passesPerShot} curvature pass${p.passesPerShot === 1 ? '' : 'es'} per shot (${groups}), ${parts.join(', ')}`;
}

/** The schedule of a plan, as estimatePruneMemory and pruneModel take it. */
export interface Schedule {
  groups?: number[][];
  split: 'layer' | 'linear';
  streamed: boolean;
  offloadUpdate: boolean;
  headChunkRows?: number;
}

/**
 * The schedules planPrune tries after one group, in its order of preference: the fewest passes; within
 * them the largest LM-head chunk; then streamed per-linear groups (no offload, offload), the plain layer
 * groups of before (no host copies of activations or factors), per-linear groups without streaming.
 */
export function* schedules(L: number, chunkRows: Array<number | undefined>): Generator<Schedule> {
  for (let n = 1; n <= L; n++) {
    const groups = n > 1 ? contiguousGroups(L, n).reverse() : undefined; // top-down: the smaller groups at the top
    for (const headChunkRows of chunkRows) {
      if (n > 1) {
        for (const offloadUpdate of [false, true]) yield { groups, split: 'linear', streamed: true, offloadUpdate, headChunkRows };
        yield { groups, split: 'layer', streamed: false, offloadUpdate: false, headChunkRows };
      }
      for (const offloadUpdate of [false, true]) yield { groups, split: 'linear', streamed: false, offloadUpdate, headChunkRows };
    }
  }
}

/**
 * The plan with the fewest passes whose estimated peak fits `budget − inUse` (and the adapter's
 * buffer limits), with its estimate. Throws LimitExceededError (as checkPruneMemory, for the finest
 * plan: one decoder layer per pass) when none fits.
 */
export function planPrune(c: ModelConfig, s: MemorySettings, lim: DeviceLimits, budget?: number, inUse = 0, hostBudget = defaultHostBudget()): { plan: PrunePlan; estimate: MemoryEstimate } {
  const L = c.numLayers;
  const curvature = (s.method ?? 'surgeon') !== 'magnitude';
  const make = (x: Schedule, est: MemoryEstimate): { plan: PrunePlan; estimate: MemoryEstimate } => {
    const groups = x.groups ?? contiguousGroups(L, 1);
    return {
      plan: {
        groups, passesPerShot: curvature ? groups.length : 0, hostBytes: est.hostBytes, weightsPrecision: 'f32',
        split: x.split, streamed: x.streamed, offloadUpdate: x.offloadUpdate, ...(x.headChunkRows ? { headChunkRows: x.headChunkRows } : {}), budget,
        ...(budget !== undefined ? { hostBudget } : {}),
      },
      estimate: est,
    };
  };
  const settings = (x: Schedule): MemorySettings => ({ ...s, groups: x.groups, split: x.split, streamed: x.streamed, offloadUpdate: x.offloadUpdate, headChunkRows: x.headChunkRows });
  const fits = (e: MemoryEstimate) => e.largest.bytes <= lim.maxStorageBufferBindingSize && e.peak <= (budget ?? Infinity) - inUse && e.hostBytes <= hostBudget;
  const whole: Schedule = { split: 'layer', streamed: false, offloadUpdate: false };
  const one = estimatePruneMemory(c, { ...s, groups: undefined }, lim);
  if (budget === undefined || fits(one)) return make(whole, checkPruneMemory(c, { ...s, groups: undefined }, lim, budget, inUse));
  // Within the same schedule the largest LM-head chunk (each extra chunk costs one more [chunk, V]·[V, d]
  // matmul per batch).
  const N = Math.max(1, Math.min(s.nsamples, s.batch ?? defaultKfacBatch(s.seqlen))) * s.seqlen;
  const chunkOptions = [undefined, ...HEAD_CHUNK_ROWS.filter((r) => r < N)];
  for (const x of schedules(L, chunkOptions)) {
    const est = estimatePruneMemory(c, settings(x), lim);
    if (fits(est)) return make(x, est);
  }
  // Nothing fits: refuse with the finest schedule's numbers (one decoder layer per pass, one linear at a
  // time, the smallest head chunk, offloaded updates; streamed if its host memory allows) and what would
  // fit it (a smaller calibration batch, a shorter seqlen, fewer evaluation windows) — or, when its GPU
  // memory fits and only the host memory does not, say that.
  const last = chunkOptions[chunkOptions.length - 1];
  const finest = (streamed: boolean): Schedule => ({ groups: L > 1 ? contiguousGroups(L, L).reverse() : undefined, split: 'linear', streamed: streamed && L > 1, offloadUpdate: true, headChunkRows: last });
  const x = estimatePruneMemory(c, settings(finest(true)), lim).hostBytes <= hostBudget ? finest(true) : finest(false);
  const est = estimatePruneMemory(c, settings(x), lim);
  if (est.hostBytes > hostBudget && est.peak <= (budget ?? Infinity) - inUse) {
    throw new LimitExceededError('hostMemoryBudget', est.hostBytes, hostBudget, `this job's finest memory plan keeps ${mib(est.hostBytes)} in host memory (inverses, costs, parked factors, offloaded weights): fewer calibration windows or a smaller model would fit`);
  }
  return make(x, checkPruneMemory(c, settings(x), lim, budget, inUse));
}
