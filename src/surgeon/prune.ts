/**
 * pruneModel(): the LLM Surgeon's multi-shot schedule (ALGORITHM.md §7) and its baselines on the GPU.
 *
 *   for t = 1..T:  s_t = t·s/T
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
import type { Tensor } from '../gpu/tensor';
import { packLinear, scatter2d, unpackLinear } from '../kernels/gather';
import { groupCosts, groupMask, zeroSelected } from '../kernels/obs';
import { countZeros } from '../kernels/reduce';
import { kthSmallestTensor, maskLessEqual } from '../kernels/select';
import { perplexity } from '../model/eval';
import { accumulateKfac, disposeKfac, type KfacResult } from '../model/kfac';
import type { DecoderModel } from '../model/model';
import { buildProblems, disposeProblem, invertProblems, type LayerProblem } from './curvature';
import { packedCols } from '../arch/types';
import { elementCosts, rowColCosts, rowColOffsets } from './costs';
import { PruneAbortedError, PruneConfigError, resolveOptions, type Phase, type PruneOptions, type PruneReport, type Resolved } from './options';
import { kthIndex, structuredThreshold } from './threshold';
import { loraCorrect, type LoraResult } from './lora';
import { elementUpdate, liveMasks, PivotChecks } from './update-elements';
import { structuredUpdate } from './update-structured';

const now = (): number => (typeof performance !== 'undefined' ? performance.now() : Date.now()) / 1000;

interface ShotCtx {
  ctx: GpuContext; o: Resolved; st: number; probs: LayerProblem[];
  progress: (phase: Phase, fraction: number, layer?: string) => void;
}

/** rows-cols: costs → host threshold → correlated row/column updates → zero removed rows/columns. */
async function structuredShot(s: ShotCtx, time: (p: Phase) => void): Promise<Array<{ rows: number; cols: number }>> {
  const { ctx, o, probs } = s;
  const costs = rowColCosts(ctx, probs, o.method);
  const host = await ctx.readF32(costs);
  costs.dispose();
  time('costs');
  const { offs } = rowColOffsets(probs);
  const per = probs.map((p, l) => ({ R: p.R, C1: p.C1, row: host.subarray(offs[l], offs[l] + p.R), col: host.subarray(offs[l] + p.R, offs[l] + p.R + p.C1) }));
  const { tau } = structuredThreshold(per, s.st);
  const sels = per.map((c) => ({ row: Uint8Array.from(c.row, (v) => (v <= tau ? 1 : 0)), col: Uint8Array.from(c.col, (v) => (v <= tau ? 1 : 0)) }));
  time('threshold');
  if (o.method === 'surgeon') await Promise.all(probs.map((p, l) => structuredUpdate(ctx, p, sels[l].row, sels[l].col, o.independent)));
  probs.forEach((p, l) => {
    if (p.Wl && p.lr && p.lc) scatter2d(ctx, p.Wl, p.Wp, { rows: p.lr, nR: p.liveRows.length, cols: p.lc, nC: p.liveCols.length });
    const rs = ctx.upload(Float32Array.from(sels[l].row)), cs = ctx.upload(Float32Array.from(sels[l].col));
    zeroSelected(ctx, p.Wp, rs, cs);
    rs.dispose(); cs.dispose();
    s.progress('update', (l + 1) / probs.length, p.L.name);
  });
  time('update');
  return sels.map(({ row, col }) => ({ rows: row.reduce((a, b) => a + b, 0), cols: col.reduce((a, b) => a + b, 0) }));
}

/** element / N:M: costs → GPU k-th selection → masks → chunked correlated updates → zero masked entries. */
async function elementShot(s: ShotCtx, time: (p: Phase) => void): Promise<void> {
  const { ctx, o, probs } = s;
  const costs = elementCosts(ctx, probs, o.method);
  time('costs');
  const owned: Tensor[] = [...costs];
  try {
    let masks: Tensor[];
    if (!o.nm) {
      const k = kthIndex(s.st, costs.reduce((a, c) => a + c.size, 0));
      if (k < 0) return; // nothing selected at this target
      const tau = kthSmallestTensor(ctx, costs, k);
      owned.push(tau);
      masks = costs.map((c) => maskLessEqual(ctx, c, tau));
    } else {
      const { n, m } = o.nm;
      const groups = costs.map((c, l) => groupCosts(ctx, c, n, m, probs[l].L.C));
      for (const g of groups) owned.push(g.gcost, g.pick);
      // target fraction of groups: s·m/n (2:4 → 2·s exactly, as in the reference)
      const k = kthIndex(s.st * (m / n), groups.reduce((a, g) => a + g.gcost.size, 0));
      if (k < 0) return;
      const tau = kthSmallestTensor(ctx, groups.map((g) => g.gcost), k);
      owned.push(tau);
      masks = groups.map((g, l) => groupMask(ctx, g.gcost, g.pick, tau, probs[l].C1, m));
    }
    owned.push(...masks);
    time('threshold');
    if (o.method === 'surgeon') {
      const { live, counts, offs } = liveMasks(ctx, probs, masks);
      for (const t of live) if (t) owned.push(t);
      owned.push(counts);
      const host = await ctx.readF32(counts);
      const pivots = new PivotChecks();
      try {
        probs.forEach((p, l) => {
          const m = live[l];
          if (m) elementUpdate(ctx, p, m, host.subarray(offs[l], offs[l] + p.liveRows.length), o.maxChunk, o.independent, pivots);
          s.progress('update', (l + 1) / probs.length, p.L.name);
        });
        await pivots.check(ctx);
      } finally {
        pivots.dispose();
      }
    }
    probs.forEach((p, l) => {
      if (p.Wl && p.lr && p.lc) scatter2d(ctx, p.Wl, p.Wp, { rows: p.lr, nR: p.liveRows.length, cols: p.lc, nC: p.liveCols.length });
      const rs = ctx.zeros([p.R]), cs = ctx.zeros([p.C1]);
      zeroSelected(ctx, p.Wp, rs, cs, masks[l]);
      rs.dispose(); cs.dispose();
    });
    time('update');
  } finally {
    for (const t of owned) t.dispose();
  }
}

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
}

/** Exact zeros of every layer's W' (used when no shot runs, e.g. resuming a finished job). */
async function countLayerZeros(ctx: GpuContext, model: DecoderModel, layers: ReturnType<DecoderModel['prunableLayers']>): Promise<Uint32Array> {
  const counts = ctx.zeros([layers.length], 'u32');
  layers.forEach((L, l) => {
    const Wp = packLinear(ctx, model.weight(`${L.name}.weight`), L.bias ? model.weight(`${L.name}.bias`) : undefined);
    const z = countZeros(ctx, Wp);
    ctx.copy(z, counts, 0, l * 4, 4);
    z.dispose();
    Wp.dispose();
  });
  const out = await ctx.readU32(counts);
  counts.dispose();
  return out;
}

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
  const abortCheck = (what: string): void => { if (signal?.aborted) throw new PruneAbortedError(what); };
  const progress = (phase: Phase, fraction: number, layer?: string): void => {
    if (!opts.onProgress) return;
    const done = (shot - 1 - first + fraction) / (T - first), el = now() - start;
    opts.onProgress({ phase, shot, shots: T, layer, fraction, etaSeconds: done > 0 ? (el / done) * (1 - done) : undefined });
  };
  let rowsCols: Array<{ rows: number; cols: number }> | undefined;
  let zeros: Uint32Array = first === T ? await countLayerZeros(ctx, model, layers) : new Uint32Array(layers.length);
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
    };
    abortCheck(`before shot ${shot}`);
    let kfac: Map<string, KfacResult> | undefined;
    let probs: LayerProblem[] = [];
    try {
      if (o.method !== 'magnitude') {
        try {
          kfac = await accumulateKfac(ctx, model, calib, { fisherSamples: opts.fisherSamples, seed: opts.seed, batch: opts.batch, signal, onProgress: (d, n) => progress('curvature', d / n) });
        } catch (e) {
          if (signal?.aborted) throw new PruneAbortedError(`during the curvature pass of shot ${shot}`);
          throw e;
        }
      }
      probs = await buildProblems(ctx, model, layers, kfac);
      disposeKfac(kfac);
      kfac = undefined;
      if (o.method === 'surgeon') await invertProblems(ctx, probs, o.lambdaG, o.lambdaA);
      time('curvature');
      const sc: ShotCtx = { ctx, o, st, probs, progress };
      if (o.structured) rowsCols = await structuredShot(sc, time);
      else await elementShot(sc, time);
      const counts = ctx.zeros([layers.length], 'u32');
      probs.forEach((p, l) => {
        unpackLinear(ctx, p.Wp, model.weight(`${p.L.name}.weight`), p.L.bias ? model.weight(`${p.L.name}.bias`) : undefined);
        const z = countZeros(ctx, p.Wp);
        ctx.copy(z, counts, 0, l * 4, 4);
        z.dispose();
      });
      zeros = await ctx.readU32(counts);
      counts.dispose();
    } finally {
      disposeKfac(kfac);
      for (const p of probs) disposeProblem(p);
    }
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
