/**
 * Per-shot, per-layer sub-problems (ALGORITHM.md §2–§3): W' = [W | b] packed on the GPU (W' = W for a
 * layer without bias), dead units
 * from one small read-back per shot (row/column nonzero flags, diag A, diag G, ‖A‖_F², ‖G‖_F² of every
 * layer in one buffer), Frobenius balancing folded into the gathers of the live sub-matrices, and the
 * damped inverses of the live sub-matrices (spdInverse; relative damping uses the mean of the LIVE
 * diagonal of the balanced factor, as the reference does).
 */

import type { GpuContext } from '../gpu/context';
import type { Tensor } from '../gpu/tensor';
import { diagonal } from '../kernels/diag';
import { gather2d, packLinear } from '../kernels/gather';
import { nonzeroFlags } from '../kernels/obs';
import { sumSquares } from '../kernels/reduce';
import { spdInverse } from '../kernels/spd';
import { readLowerTriangle, uploadSymmetric } from '../kernels/triangle';
import type { KfacResult } from '../model/kfac';
import type { DecoderModel, PrunableLayer } from '../model/model';
import { packedCols } from '../arch/types';

export interface LayerProblem {
  L: PrunableLayer;
  R: number;
  /** Columns of W': C + 1 with a bias, C without. */
  C1: number;
  /** Current W' [R, C1] (owned). */
  Wp: Tensor;
  liveRows: number[];
  liveCols: number[];
  /** u32 index lists of the live rows/columns (owned; null when empty). */
  lr: Tensor | null;
  lc: Tensor | null;
  /** W'[live, live] [nr, nc] (owned). */
  Wl?: Tensor;
  /** Balanced live factors (owned): A[lc,lc]/s, G[lr,lr]·s. */
  Al?: Tensor;
  Gl?: Tensor;
  /** Damped inverses of Gl and Al (surgeon only; owned). */
  Ginv?: Tensor;
  Ainv?: Tensor;
  /** Balanced diagonals over ALL rows / columns (float64 on the host; kobd/lobd costs). */
  diagG?: Float64Array;
  diagA?: Float64Array;
}


export function disposeProblem(p: LayerProblem): void {
  for (const t of [p.Wp, p.lr, p.lc, p.Wl, p.Al, p.Gl, p.Ginv, p.Ainv]) t?.dispose();
}

/**
 * Pack every layer's W', find its live units and build the live (balanced) sub-problem.
 * `kfac` absent (magnitude): liveness from W' alone. One readback for all layers.
 */
export async function buildProblems(ctx: GpuContext, model: DecoderModel, layers: readonly PrunableLayer[], kfac?: Map<string, KfacResult>): Promise<LayerProblem[]> {
  const offs: number[] = [];
  let size = 0;
  for (const L of layers) { offs.push(size); size += 2 * (L.R + packedCols(L)) + 2; }
  const stats = ctx.zeros([size]);
  const probs: LayerProblem[] = [];
  layers.forEach((L, l) => {
    const { R } = L, C1 = packedCols(L), o = offs[l];
    const Wp = packLinear(ctx, model.weight(`${L.name}.weight`), L.bias ? model.weight(`${L.name}.bias`) : undefined);
    nonzeroFlags(ctx, Wp, stats, o, o + R);
    const f = kfac?.get(L.name);
    if (f) {
      const dg = diagonal(ctx, f.G), da = diagonal(ctx, f.A), na = sumSquares(ctx, f.A), ng = sumSquares(ctx, f.G);
      ctx.copy(dg, stats, 0, (o + R + C1) * 4, R * 4);
      ctx.copy(da, stats, 0, (o + 2 * R + C1) * 4, C1 * 4);
      ctx.copy(na, stats, 0, (o + 2 * (R + C1)) * 4, 4);
      ctx.copy(ng, stats, 0, (o + 2 * (R + C1) + 1) * 4, 4);
      for (const t of [dg, da, na, ng]) t.dispose();
    }
    probs.push({ L, R, C1, Wp, liveRows: [], liveCols: [], lr: null, lc: null });
  });
  const host = await ctx.readF32(stats);
  stats.dispose();
  layers.forEach((L, l) => {
    const p = probs[l], { R, C1 } = p, o = offs[l];
    const f = kfac?.get(L.name);
    let s = 1;
    let zero = false;
    if (f) {
      const na = Math.sqrt(host[o + 2 * (R + C1)]), ng = Math.sqrt(host[o + 2 * (R + C1) + 1]);
      zero = na === 0 || ng === 0; // §2: both factors zero → every unit dead
      s = zero ? 1 : Math.sqrt(na / ng);
      p.diagG = Float64Array.from(host.subarray(o + R + C1, o + 2 * R + C1), (v) => (zero ? 0 : v * s));
      p.diagA = Float64Array.from(host.subarray(o + 2 * R + C1, o + 2 * (R + C1)), (v) => (zero ? 0 : v / s));
    }
    for (let r = 0; r < R; r++) if (host[o + r] !== 0 && (!p.diagG || p.diagG[r] !== 0)) p.liveRows.push(r);
    for (let c = 0; c < C1; c++) if (host[o + R + c] !== 0 && (!p.diagA || p.diagA[c] !== 0)) p.liveCols.push(c);
    const nr = p.liveRows.length, nc = p.liveCols.length;
    if (nr === 0 || nc === 0) return;
    p.lr = ctx.upload(Uint32Array.from(p.liveRows));
    p.lc = ctx.upload(Uint32Array.from(p.liveCols));
    p.Wl = gather2d(ctx, p.Wp, { rows: p.lr, nR: nr, cols: p.lc, nC: nc });
    if (f) {
      p.Gl = gather2d(ctx, f.G, { rows: p.lr, nR: nr, cols: p.lr, nC: nr }, { scale: s });
      p.Al = gather2d(ctx, f.A, { rows: p.lc, nR: nc, cols: p.lc, nC: nc }, { scale: 1 / s });
    }
  });
  return probs;
}

/** Damped inverses of every live sub-problem, all queued before the first pivot check is awaited. */
export async function invertProblems(ctx: GpuContext, probs: LayerProblem[], lambdaG: number, lambdaA: number): Promise<void> {
  const jobs: Promise<void>[] = [];
  for (const p of probs) {
    if (!p.Gl || !p.Al) continue;
    jobs.push(spdInverse(ctx, p.Gl, { damping: lambdaG }).then((t) => { p.Ginv = t; }));
    jobs.push(spdInverse(ctx, p.Al, { damping: lambdaA }).then((t) => { p.Ainv = t; }));
  }
  const res = await Promise.allSettled(jobs);
  const bad = res.find((r): r is PromiseRejectedResult => r.status === 'rejected');
  if (bad) throw bad.reason;
}

/**
 * A layer's problem parked in host memory between a budgeted shot's cost pass and its update pass
 * (the shot's other layer groups need the GPU in between): what the update and the element costs
 * need and cannot rebuild from the unchanged weights — the live index lists, the host diagonals and
 * the damped inverses. W', its live block and the index tensors are rebuilt from the model.
 */
export interface HostProblem {
  L: PrunableLayer;
  R: number;
  C1: number;
  liveRows: number[];
  liveCols: number[];
  diagG?: Float64Array;
  diagA?: Float64Array;
  /** The inverses' lower triangles, row by row (kernels/triangle.ts): spdInverse returns exactly symmetric matrices. */
  Ginv?: Float32Array;
  Ainv?: Float32Array;
}

/** Bytes a spilled problem holds in host memory. */
export const hostProblemBytes = (h: HostProblem): number => (h.Ginv?.byteLength ?? 0) + (h.Ainv?.byteLength ?? 0) + 8 * ((h.diagG?.length ?? 0) + (h.diagA?.length ?? 0)) + 8 * (h.liveRows.length + h.liveCols.length);

/** Read the inverses back (all queued, then awaited) and free every GPU tensor of the problems. */
export async function spillProblems(ctx: GpuContext, probs: LayerProblem[]): Promise<HostProblem[]> {
  const reads = probs.map((p) => Promise.all([p.Ginv ? readLowerTriangle(ctx, p.Ginv, true) : undefined, p.Ainv ? readLowerTriangle(ctx, p.Ainv, true) : undefined]));
  const inv = await Promise.all(reads);
  return probs.map((p, l) => {
    disposeProblem(p);
    const [Ginv, Ainv] = inv[l];
    return { L: p.L, R: p.R, C1: p.C1, liveRows: p.liveRows, liveCols: p.liveCols, diagG: p.diagG, diagA: p.diagA, Ginv, Ainv };
  });
}

/** Rebuild spilled problems on the GPU for the update: W' from the model (not yet updated this shot), live block, inverses. */
export function reloadProblems(ctx: GpuContext, model: DecoderModel, host: readonly HostProblem[]): LayerProblem[] {
  return host.map((h) => {
    const { L } = h;
    const Wp = packLinear(ctx, model.weight(`${L.name}.weight`), L.bias ? model.weight(`${L.name}.bias`) : undefined);
    const p: LayerProblem = { L, R: h.R, C1: h.C1, Wp, liveRows: h.liveRows, liveCols: h.liveCols, lr: null, lc: null, diagG: h.diagG, diagA: h.diagA };
    const nr = h.liveRows.length, nc = h.liveCols.length;
    if (nr === 0 || nc === 0) return p;
    p.lr = ctx.upload(Uint32Array.from(h.liveRows));
    p.lc = ctx.upload(Uint32Array.from(h.liveCols));
    p.Wl = gather2d(ctx, Wp, { rows: p.lr, nR: nr, cols: p.lc, nC: nc });
    if (h.Ginv) p.Ginv = uploadSymmetric(ctx, h.Ginv, nr);
    if (h.Ainv) p.Ainv = uploadSymmetric(ctx, h.Ainv, nc);
    return p;
  });
}
