/**
 * One shot of pruneModel's schedule (ALGORITHM.md §2–§6), all layers at once or in layer groups.
 *
 * One group (no memory budget, or one that holds the whole model): K-FAC for every layer, every
 * layer's problem and inverses on the GPU together, costs, one threshold (rows-cols on the host,
 * element / N:M by the GPU's k-th selection), the updates, W' written back.
 *
 * Several groups (api/plan.ts): per group one calibration pass accumulating only its layers' factors,
 * its problems, inverses and costs; the costs are read back (row/column vectors, or element costs, or
 * N:M group costs), the inverses parked in host memory, the group's GPU tensors freed. Then one global
 * threshold over all layers on the host (structuredThreshold, or kthSmallestHost: the exact k-th value,
 * the same as the GPU's), and per group the problems rebuilt from the weights — which no update of this
 * shot has touched yet — and the parked inverses, the element costs recomputed from them (the same
 * kernels on the same bits), updated and written back. Masks and weights equal the one-group shot's.
 */

import type { GpuContext } from '../gpu/context';
import type { Tensor } from '../gpu/tensor';
import { packLinear, scatter2d, unpackLinear } from '../kernels/gather';
import { groupCosts, groupMask, zeroSelected } from '../kernels/obs';
import { countZeros } from '../kernels/reduce';
import { kthSmallestTensor, maskLessEqual } from '../kernels/select';
import { accumulateKfac, disposeKfac, type KfacOptions, type KfacResult } from '../model/kfac';
import type { DecoderModel, PrunableLayer } from '../model/model';
import { buildProblems, disposeProblem, invertProblems, reloadProblems, spillProblems, type HostProblem, type LayerProblem } from './curvature';
import { elementCosts, rowColCosts, rowColOffsets } from './costs';
import { PruneAbortedError, type Phase, type Resolved } from './options';
import { kthIndex, kthSmallestHost, selectionsAt, structuredThreshold, uniformThreshold, type StructuredLayerCosts, type StructuredSelection, type UniformKind } from './threshold';
import { uniformKinds } from './uniform';
import { elementUpdate, liveMasks, PivotChecks } from './update-elements';
import { structuredUpdate } from './update-structured';

export interface ShotInput {
  ctx: GpuContext;
  model: DecoderModel;
  layers: readonly PrunableLayer[];
  calib: Int32Array[];
  o: Resolved;
  /** This shot's number and target sparsity s_t. */
  shot: number;
  st: number;
  /** Prunable linears (indices into `layers`) of each group (api/plan.ts, prune.ts shotGroups); one group = all layers at once. */
  groups: readonly (readonly number[])[];
  kfac: { fisherSamples?: number; seed?: number; batch?: number; headChunkRows?: number; stream?: KfacOptions['stream'] };
  /** Awaited before each group's update pass of a budgeted shot (prune.ts: weights of the other linears to host memory). */
  beforeUpdate?: (layers: readonly PrunableLayer[]) => Promise<void>;
  signal?: AbortSignal;
  /** Progress within a phase; pass/passes: the calibration pass of a budgeted shot. */
  progress: (phase: Phase, fraction: number, layer?: string, pass?: { pass: number; passes: number }) => void;
  /** Charges the time since the last call to a phase (and checks the abort signal). */
  time: (p: Phase) => void;
}

export interface ShotResult {
  /** Exact zeros of every layer's W' after the shot (layer order of `layers`). */
  zeros: Uint32Array;
  /** rows-cols: rows and columns removed per layer. */
  rowsCols?: Array<{ rows: number; cols: number }>;
}

/** Exact zeros of these layers' W' (from the problems' W' when given, else packed from the model), one readback. */
export async function countLayerZeros(ctx: GpuContext, model: DecoderModel, layers: readonly PrunableLayer[], probs?: readonly LayerProblem[]): Promise<Uint32Array> {
  const counts = ctx.zeros([Math.max(1, layers.length)], 'u32');
  layers.forEach((L, l) => {
    const Wp = probs ? probs[l].Wp : packLinear(ctx, model.weight(`${L.name}.weight`), L.bias ? model.weight(`${L.name}.bias`) : undefined);
    const z = countZeros(ctx, Wp);
    ctx.copy(z, counts, 0, l * 4, 4);
    z.dispose();
    if (!probs) Wp.dispose();
  });
  const out = await ctx.readU32(counts);
  counts.dispose();
  return out.subarray(0, layers.length);
}

/** The curvature pass of one group (or all layers), its problems and (surgeon) inverses. */
async function groupProblems(s: ShotInput, layers: readonly PrunableLayer[], decoderLayers: readonly number[] | undefined, pass: number, passes: number): Promise<LayerProblem[]> {
  const { ctx, model, o } = s;
  let kfac: Map<string, KfacResult> | undefined;
  let probs: LayerProblem[] = [];
  try {
    if (o.method !== 'magnitude') {
      try {
        kfac = await accumulateKfac(ctx, model, s.calib, {
          ...s.kfac, signal: s.signal, decoderLayers, linears: decoderLayers && layers.map((L) => L.name),
          onProgress: (d, n) => s.progress('curvature', (pass + d / n) / passes, undefined, passes > 1 ? { pass: pass + 1, passes } : undefined),
        });
      } catch (e) {
        if (s.signal?.aborted) throw new PruneAbortedError(`during the curvature pass${passes > 1 ? ` ${pass + 1}/${passes}` : ''} of shot ${s.shot}`);
        throw e;
      }
    }
    probs = await buildProblems(ctx, model, layers, kfac);
    disposeKfac(kfac);
    kfac = undefined;
    if (o.method === 'surgeon') await invertProblems(ctx, probs, o.lambdaG, o.lambdaA);
    return probs;
  } catch (e) {
    disposeKfac(kfac);
    for (const p of probs) disposeProblem(p);
    throw e;
  }
}

/** Removed rows and columns of a selection: the updated ones and those only zeroed (`also`). */
const removedMasks = (sel: StructuredSelection): { row: Uint8Array; col: Uint8Array } => {
  const a = sel.also;
  return a ? { row: sel.row.map((v, i) => v | a.row[i]), col: sel.col.map((v, i) => v | a.col[i]) } : sel;
};

/** Rows and columns removed per layer (report.layers rowsRemoved / colsRemoved). */
const countRemoved = (sels: readonly StructuredSelection[]): ShotResult['rowsCols'] =>
  sels.map((sel) => { const { row, col } = removedMasks(sel); return { rows: row.reduce((a, b) => a + b, 0), cols: col.reduce((a, b) => a + b, 0) }; });

/** rows-cols update of some layers from their selections, removed rows/columns zeroed exactly. */
async function applyStructured(s: ShotInput, probs: LayerProblem[], sels: StructuredSelection[], done: number, total: number): Promise<void> {
  const { ctx, o } = s;
  // One layer at a time: a layer's gathered blocks and solutions are freed before the next one's are
  // built, so the update phase holds one layer's temporaries (api/memory.ts), not every layer's at once
  // (on the H200 that bound set the unbudgeted OPT-125m estimate 11.8 % above the measured peak).
  if (o.method === 'surgeon') for (const [l, p] of probs.entries()) await structuredUpdate(ctx, p, sels[l].row, sels[l].col, o.independent, s.signal);
  probs.forEach((p, l) => {
    if (p.Wl && p.lr && p.lc) scatter2d(ctx, p.Wl, p.Wp, { rows: p.lr, nR: p.liveRows.length, cols: p.lc, nC: p.liveCols.length });
    const z = removedMasks(sels[l]);
    const rs = ctx.upload(Float32Array.from(z.row)), cs = ctx.upload(Float32Array.from(z.col));
    zeroSelected(ctx, p.Wp, rs, cs);
    rs.dispose(); cs.dispose();
    s.progress('update', (done + l + 1) / total, p.L.name);
  });
}

/** Fraction of the selection's entries to take: s_t, or s_t·m/n of the N:M groups (2:4 → 2·s exactly, as in the reference). */
const selectionFraction = (o: Resolved, st: number): number => (o.nm ? st * (o.nm.m / o.nm.n) : st);

/**
 * What the k-th selection runs over — the element costs, or with N:M the group costs (their tensors go
 * to `owned`) — with the fraction to select and the masks a τ gives.
 */
function selection(s: ShotInput, probs: readonly LayerProblem[], costs: Tensor[], owned: Tensor[]): { sel: Tensor[]; frac: number; masks: (tau: Tensor) => Tensor[] } {
  const { ctx, o } = s;
  const frac = selectionFraction(o, s.st);
  if (!o.nm) return { sel: costs, frac, masks: (tau) => costs.map((c) => maskLessEqual(ctx, c, tau)) };
  const { n, m } = o.nm;
  const groups = costs.map((c, l) => groupCosts(ctx, c, n, m, probs[l].L.C));
  for (const g of groups) owned.push(g.gcost, g.pick);
  return {
    sel: groups.map((g) => g.gcost),
    frac,
    masks: (tau) => groups.map((g, l) => groupMask(ctx, g.gcost, g.pick, tau, probs[l].C1, m)),
  };
}

// The uniform units of a prune, built once per layer list (the same array serves every shot of a prune).
const kindsCache = new WeakMap<readonly PrunableLayer[], UniformKind[]>();

/** rows-cols: the rows/columns to remove this shot, by the global threshold or, uniform, in equal-width steps. */
function structuredSelection(s: ShotInput, per: readonly StructuredLayerCosts[]): StructuredSelection[] {
  const u = s.o.uniform;
  if (!u) return selectionsAt(per, structuredThreshold(per, s.st).tau);
  let kinds = kindsCache.get(s.layers);
  if (!kinds) kindsCache.set(s.layers, (kinds = uniformKinds(s.model.config, s.layers, u.heads)));
  return uniformThreshold(per, kinds, s.st).sels;
}

/** element / N:M update of some layers from their masks, masked entries zeroed exactly. */
async function applyElements(s: ShotInput, probs: LayerProblem[], masks: Tensor[], owned: Tensor[], done: number, total: number): Promise<void> {
  const { ctx, o } = s;
  if (o.method === 'surgeon') {
    const { live, counts, offs } = liveMasks(ctx, probs, masks);
    for (const t of live) if (t) owned.push(t);
    owned.push(counts);
    const host = await ctx.readF32(counts);
    const pivots = new PivotChecks(s.signal);
    try {
      for (const [l, p] of probs.entries()) {
        const m = live[l];
        if (m) await elementUpdate(ctx, p, m, host.subarray(offs[l], offs[l] + p.liveRows.length), o.maxChunk, o.independent, pivots);
        s.progress('update', (done + l + 1) / total, p.L.name);
      }
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
}

/** W' of the problems back into the model's weight (and bias) tensors, then their exact zero counts. */
async function writeBack(s: ShotInput, probs: readonly LayerProblem[]): Promise<Uint32Array> {
  for (const p of probs) unpackLinear(s.ctx, p.Wp, s.model.weight(`${p.L.name}.weight`), p.L.bias ? s.model.weight(`${p.L.name}.bias`) : undefined);
  return countLayerZeros(s.ctx, s.model, probs.map((p) => p.L), probs);
}

/** All layers at once (the unbudgeted schedule). */
async function shotAllAtOnce(s: ShotInput): Promise<ShotResult> {
  const { ctx, o, layers } = s;
  const probs = await groupProblems(s, layers, undefined, 0, 1);
  const owned: Tensor[] = [];
  try {
    s.time('curvature');
    let rowsCols: ShotResult['rowsCols'];
    if (o.structured) {
      const costs = rowColCosts(ctx, probs, o.method);
      const host = await ctx.readF32(costs);
      costs.dispose();
      s.time('costs');
      const { offs } = rowColOffsets(probs);
      const per = probs.map((p, l) => ({ R: p.R, C1: p.C1, row: host.subarray(offs[l], offs[l] + p.R), col: host.subarray(offs[l] + p.R, offs[l] + p.R + p.C1) }));
      const sels = structuredSelection(s, per);
      s.time('threshold');
      await applyStructured(s, probs, sels, 0, probs.length);
      rowsCols = countRemoved(sels);
    } else {
      const costs = elementCosts(ctx, probs, o.method);
      owned.push(...costs);
      s.time('costs');
      const { sel, frac, masks: masksOf } = selection(s, probs, costs, owned);
      const k = kthIndex(frac, sel.reduce((a, c) => a + c.size, 0));
      if (k >= 0) {
        const tau = kthSmallestTensor(ctx, sel, k);
        owned.push(tau);
        const masks = masksOf(tau);
        owned.push(...masks);
        s.time('threshold');
        await applyElements(s, probs, masks, owned, 0, probs.length);
      }
    }
    const zeros = await writeBack(s, probs);
    s.time('update');
    return { zeros, rowsCols };
  } finally {
    for (const t of owned) t.dispose();
    for (const p of probs) disposeProblem(p);
  }
}

/** Layer groups, one calibration pass each, inverses parked in host memory (api/plan.ts). */
async function shotInGroups(s: ShotInput): Promise<ShotResult> {
  const { ctx, o, layers } = s;
  const passes = s.groups.length;
  const index = new Map(layers.map((L, i) => [L, i]));
  const groupLayers = s.groups.map((g) => g.map((i) => layers[i]));
  const parked: HostProblem[][] = [];
  // Per layer (layer order): structured row/column costs, element costs or N:M group costs, on the host.
  const rowCol: Array<{ R: number; C1: number; row: Float32Array; col: Float32Array }> = new Array(layers.length);
  const selCosts: Float32Array[] = new Array(layers.length);
  for (let g = 0; g < passes; g++) {
    const probs = await groupProblems(s, groupLayers[g], [...new Set(groupLayers[g].map((L) => L.layer))], g, passes);
    try {
      s.time('curvature');
      if (o.structured) {
        const costs = rowColCosts(ctx, probs, o.method);
        const host = await ctx.readF32(costs);
        costs.dispose();
        const { offs } = rowColOffsets(probs);
        probs.forEach((p, l) => { rowCol[index.get(p.L)!] = { R: p.R, C1: p.C1, row: host.slice(offs[l], offs[l] + p.R), col: host.slice(offs[l] + p.R, offs[l] + p.R + p.C1) }; });
      } else {
        const costs = elementCosts(ctx, probs, o.method);
        const owned: Tensor[] = [...costs];
        try {
          const { sel } = selection(s, probs, costs, owned);
          const host = await Promise.all(sel.map((t) => ctx.readF32(t)));
          probs.forEach((p, l) => { selCosts[index.get(p.L)!] = host[l]; });
        } finally {
          for (const t of owned) t.dispose();
        }
      }
      s.time('costs');
      parked.push(await spillProblems(ctx, probs));
    } catch (e) {
      for (const p of probs) disposeProblem(p);
      throw e;
    }
  }

  // One global threshold over every layer of the shot.
  let sels: StructuredSelection[] | undefined;
  let tau: number | undefined;
  if (o.structured) sels = structuredSelection(s, rowCol);
  else {
    const k = kthIndex(selectionFraction(o, s.st), selCosts.reduce((a, c) => a + c.length, 0));
    if (k >= 0) tau = kthSmallestHost(selCosts, k);
  }
  selCosts.fill(new Float32Array(0)); // the host costs are not needed past τ
  s.time('threshold');

  const zeros = new Uint32Array(layers.length);
  if (!o.structured && tau === undefined) {
    // Nothing selected at this target: the weights stay as they are.
    zeros.set(await countLayerZeros(ctx, s.model, layers));
    s.time('update');
    return { zeros };
  }
  let done = 0;
  for (let g = 0; g < passes; g++) {
    await s.beforeUpdate?.(groupLayers[g]);
    const probs = reloadProblems(ctx, s.model, parked[g]);
    parked[g] = [];
    const owned: Tensor[] = [];
    try {
      if (o.structured) await applyStructured(s, probs, probs.map((p) => sels![index.get(p.L)!]), done, layers.length);
      else {
        const costs = elementCosts(ctx, probs, o.method);
        owned.push(...costs);
        const tauT = ctx.upload(Float32Array.of(tau!));
        owned.push(tauT);
        const masks = selection(s, probs, costs, owned).masks(tauT);
        owned.push(...masks);
        await applyElements(s, probs, masks, owned, done, layers.length);
      }
      const z = await writeBack(s, probs);
      probs.forEach((p, l) => { zeros[index.get(p.L)!] = z[l]; });
      done += probs.length;
    } finally {
      for (const t of owned) t.dispose();
      for (const p of probs) disposeProblem(p);
    }
    if (s.signal?.aborted) throw new PruneAbortedError(`during the update of shot ${s.shot}, after ${done} of ${layers.length} layers were written`);
  }
  s.time('update');
  const rowsCols = sels && countRemoved(sels);
  return { zeros, rowsCols };
}

/** Run one shot: all at once with one group, else group by group (see the file comment). */
export function runShot(s: ShotInput): Promise<ShotResult> {
  return s.groups.length > 1 ? shotInGroups(s) : shotAllAtOnce(s);
}
