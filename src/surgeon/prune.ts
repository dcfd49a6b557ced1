/**
 * pruneModel(): the LLM Surgeon's multi-shot schedule (ALGORITHM.md §7) and its baselines on the GPU.
 *
 *   for t = 1..T:  s_t = t·s/T   (one shot: surgeon/shot.ts, all layers at once or in layer groups)
 *     K-FAC on the current weights (accumulateKfac; skipped for magnitude)
 *     per layer: W' packed, dead units, balanced live factors, damped inverses   (1 readback)
 *     costs → one global τ:  rows-cols: read back the small row/column cost vectors and run the exact
 *       float64 structuredThreshold on the host (1 readback);  element / N:M: exact radix k-th
 *       selection on the GPU (no readback of τ)
 *     update every layer from that snapshot (surgeon; baselines only zero), pruned entries exactly 0
 *       (element / N:M read back per-row counts once to plan the chunks)
 *     count zeros (1 readback), optional perplexity
 *
 * Only the model's GPU tensors change (the caller's host arrays are never touched). On abort
 * (PruneAbortedError) or any error mid-shot, the layers already written in that shot hold the new
 * weights and the others the previous shot's: the GPU model is in a mixed state; reload it from the
 * host copy. Phase seconds are wall-clock on the host; GPU work queued in one phase may finish in a
 * later phase's readback.
 */

import type { GpuContext } from '../gpu/context';
import { perplexity } from '../model/eval';
import type { DecoderModel } from '../model/model';
import { packedCols } from '../arch/types';
import { PruneAbortedError, PruneConfigError, resolveOptions, type Phase, type PruneOptions, type PruneReport } from './options';
import { loraCorrect, type LoraResult } from './lora';
import { countLayerZeros, runShot } from './shot';
import { KfacStream } from '../model/kfac-stream';
import type { PrunableLayer } from '../model/model';

const now = (): number => (typeof performance !== 'undefined' ? performance.now() : Date.now()) / 1000;

/**
 * Resuming and checkpointing (src/api's jobs), additive to PruneOptions. Shot t only depends on the
 * weights after shot t−1, the calibration windows and the options, so a job restarted at `startShot`
 * from the weights saved after that shot yields bit-identical weights to an uninterrupted run.
 */
export interface PruneRunOptions {
  /** Shots already applied to the model's weights (0…T); the loop starts at shot startShot + 1. */
  startShot?: number;
  /** Report entries of those earlier shots, copied to the front of report.shots. */
  priorShots?: PruneReport['shots'];
  /** Awaited after every shot (after its evaluation), the model holding the weights so far. */
  onShotEnd?: (shot: number, entry: PruneReport['shots'][number]) => void | Promise<void>;
  /** Calibration sequences per K-FAC forward/backward (default: accumulateKfac's ⌊4096 / T⌋). */
  batch?: number;
  /**
   * Decoder layers per calibration pass of a shot (api/plan.ts planPrune under a memory budget);
   * default one group of all layers. Any grouping gives the same masks and weights.
   */
  groups?: readonly (readonly number[])[];
  /** Rows per LM-head cross-entropy chunk of the K-FAC passes (the memory plan's; default xent's). */
  headChunkRows?: number;
  /**
   * 'linear': a shot's problems, inverses, costs and updates run one prunable linear at a time, the other
   * factors of its pass parked in host memory (api/plan.ts); default 'layer': a pass's layers together.
   */
  split?: 'layer' | 'linear';
  /** Streamed passes (model/kfac-stream.ts): pass inputs and gradients kept on the host; `groups` must then run top-down. */
  streamed?: boolean;
  /** During a budgeted shot's update pass, keep only the updated linears' weights on the GPU (the others in host memory). */
  offloadUpdate?: boolean;
}

/** The layer groups of a shot: every decoder layer exactly once (default: one group of all). */
function checkGroups(groups: PruneRunOptions['groups'], numLayers: number): number[][] {
  const all = Array.from({ length: numLayers }, (_, i) => i);
  if (!groups || groups.length === 0) return [all];
  const seen = new Set<number>();
  for (const g of groups) {
    if (g.length === 0) throw new PruneConfigError('groups: an empty layer group');
    for (const l of g) {
      if (!(Number.isInteger(l) && l >= 0 && l < numLayers)) throw new PruneConfigError(`groups: decoder layer ${l} is not in 0…${numLayers - 1}`);
      if (seen.has(l)) throw new PruneConfigError(`groups: decoder layer ${l} is in two groups`);
      seen.add(l);
    }
  }
  if (seen.size !== numLayers) throw new PruneConfigError(`groups: decoder layers ${all.filter((l) => !seen.has(l)).join(', ')} are in no group`);
  return groups.map((g) => [...g]);
}

/** A shot's groups of prunable linears (indices into `layers`): per pass its layers' linears, or each linear alone. */
export function shotGroups(layers: readonly PrunableLayer[], passes: readonly (readonly number[])[], split: 'layer' | 'linear' = 'layer'): number[][] {
  const out: number[][] = [];
  for (const pass of passes) {
    const idx = layers.flatMap((L, i) => (pass.includes(L.layer) ? [i] : []));
    if (split === 'linear') out.push(...idx.map((i) => [i]));
    else if (idx.length) out.push(idx);
  }
  return out;
}

/** Weight and bias names of a linear. */
const paramsOf = (L: PrunableLayer): string[] => [`${L.name}.weight`, ...(L.bias ? [`${L.name}.bias`] : [])];

/**
 * Prune the model's prunable layers in place on the GPU (see the file comment). Validates the
 * options first (PruneConfigError, ShapeError); throws PruneAbortedError when `signal` aborts.
 */

export async function pruneModel(ctx: GpuContext, model: DecoderModel, calib: Int32Array[], opts: PruneOptions & PruneRunOptions): Promise<PruneReport> {
  const layers = model.prunableLayers();
  const o = resolveOptions(opts, layers, calib);
  const T = o.shots, start = now();
  const first = opts.startShot ?? 0;
  if (!(Number.isInteger(first) && first >= 0 && first <= T)) throw new PruneConfigError(`startShot must be an integer in 0…${T}, got ${first}`);
  const seconds: Record<string, number> = {};
  const report: PruneReport = { shots: [...(opts.priorShots ?? [])], layers: [], byModuleType: {}, achievedSparsity: 0, seconds };
  const signal = opts.signal;
  let shot = 0;
  // Whether this call has begun writing weights (the first update): an abort before that leaves them as given.
  let written = first > 0;
  const abortCheck = (what: string): void => { if (signal?.aborted) throw new PruneAbortedError(what, written); };
  const progress = (phase: Phase, fraction: number, layer?: string, pass?: { pass: number; passes: number }): void => {
    if (!opts.onProgress) return;
    const done = (shot - 1 - first + fraction) / (T - first), el = now() - start;
    // The shot numbers its groups of linears; progress names the calibration pass that serves the group.
    const at = pass && { pass: passOfGroup[pass.pass - 1] + 1, passes: passes.length };
    opts.onProgress({ phase, shot, shots: T, layer, fraction, etaSeconds: done > 0 ? (el / done) * (1 - done) : undefined, ...at });
  };
  let rowsCols: Array<{ rows: number; cols: number }> | undefined;
  let zeros: Uint32Array = first === T ? await countLayerZeros(ctx, model, layers) : new Uint32Array(layers.length);
  const passes = checkGroups(opts.groups, model.config.numLayers);
  const groups = shotGroups(layers, passes, opts.split);
  const passOfGroup = groups.map((g) => passes.findIndex((p) => p.includes(layers[g[0]].layer)));
  const kfacOpts = { fisherSamples: opts.fisherSamples, seed: opts.seed, batch: opts.batch, headChunkRows: opts.headChunkRows };
  // Offloading during the update: each group's update sees only its own linears' weights on the GPU.
  const frozen = layers.flatMap(paramsOf);
  const beforeUpdate = opts.offloadUpdate ? async (group: readonly PrunableLayer[]): Promise<void> => {
    const need = new Set(group.flatMap(paramsOf));
    await model.offload(frozen.filter((n) => !need.has(n)));
    model.restore([...need]);
  } : undefined;
  for (shot = first + 1; shot <= T; shot++) {
    const st = (shot * opts.sparsity) / T;
    const shotSec: Record<string, number> = {};
    let t0 = now();
    const time = (p: Phase): void => {
      const t1 = now();
      shotSec[p] = (shotSec[p] ?? 0) + (t1 - t0);
      seconds[p] = (seconds[p] ?? 0) + (t1 - t0);
      t0 = t1;
      abortCheck(`after the ${p} phase of shot ${shot}`);
      if (p === 'threshold') written = true; // the updates come next
    };
    abortCheck(`before shot ${shot}`);
    // A budgeted shot's passes (several groups): its factors come from one pass schedule per shot.
    const stream = groups.length > 1 && o.method !== 'magnitude' ? new KfacStream(ctx, model, calib, { passes, streamed: !!opts.streamed, ...kfacOpts }) : undefined;
    const r = await runShot({
      ctx, model, layers, calib, o, shot, st, groups, signal, time, beforeUpdate,
      kfac: { ...kfacOpts, stream },
      progress,
    }).catch((e: unknown) => {
      // An abort inside the shot before its first update (curvature, costs) changed no weight.
      if (e instanceof PruneAbortedError && e.weightsChanged && !written) throw new PruneAbortedError(e.where, false);
      throw e;
    }).finally(() => {
      stream?.dispose();
      model.restore();
    });
    zeros = r.zeros;
    if (r.rowsCols) rowsCols = r.rowsCols;
    let lora: LoraResult | undefined;
    if (o.lora) {
      time('update'); // the update's queued GPU work finished in the zero-count readback: charge it to 'update', not 'lora'
      const { scale: _s, seed, ...lo } = o.lora;
      try {
        lora = await loraCorrect(ctx, model, calib, { ...lo, seed: seed + shot - 1, signal, onProgress: (d, n) => progress('lora', d / n) });
      } catch (e) {
        if (signal?.aborted) throw new PruneAbortedError(`during the low-rank correction of shot ${shot}`);
        throw e;
      }
      time('lora');
    }
    const params = layers.reduce((a, L) => a + L.R * packedCols(L), 0);
    const entry: PruneReport['shots'][number] = { shot, target: st, achieved: zeros.reduce((a, b) => a + b, 0) / params, seconds: shotSec };
    if (lora) entry.lora = { steps: lora.steps, lossBefore: lora.lossBefore, lossAfter: lora.lossAfter };
    if (opts.evaluate) {
      abortCheck(`before the evaluation of shot ${shot}`);
      try {
        const { ids, seqlen, windows } = opts.evaluate;
        entry.ppl = (await perplexity(ctx, model, ids, { seqlen, windows, signal, onProgress: (d, n) => progress('eval', d / n) })).ppl;
      } catch (e) {
        if (signal?.aborted) throw new PruneAbortedError(`during the evaluation of shot ${shot}`);
        throw e;
      }
      time('eval');
    }
    report.shots.push(entry);
    await opts.onShotEnd?.(shot, entry);
  }
  let totalZeros = 0, totalParams = 0;
  layers.forEach((L, l) => {
    const params = L.R * packedCols(L), type = L.type;
    const row: PruneReport['layers'][number] = { name: L.name, type, params, zeros: zeros[l] };
    if (rowsCols) { row.rowsRemoved = rowsCols[l].rows; row.colsRemoved = rowsCols[l].cols; }
    report.layers.push(row);
    const agg = (report.byModuleType[type] ??= { params: 0, zeros: 0 });
    agg.params += params;
    agg.zeros += zeros[l];
    totalZeros += zeros[l];
    totalParams += params;
  });
  report.achievedSparsity = totalZeros / totalParams;
  seconds.total = now() - start;
  return report;
}
