/**
 * Peak GPU memory of the finer memory-budgeted schedules (api/plan.ts), replayed in the order the job
 * runs them (model/kfac-stream.ts, surgeon/shot.ts, surgeon/curvature.ts, surgeon/prune.ts):
 *   streamed passes    the top pass: the whole forward, only its own layers saved, the LM head and the
 *                      backward down to its lowest layer; a lower pass: its layers' forward from an
 *                      uploaded input and their backward from an uploaded gradient (each with the pass's
 *                      factors and the gram scratch of its own linears only)
 *   per-linear groups  one linear's factors (uploaded from the park), buildProblems, the damped inverses
 *                      one spdInverse at a time (its allocation order below), the costs, the spill
 *   offloaded update   the update pass with only the updated linear's weights on the GPU
 * Each replay is on a Tally (memory-tally.ts), so the estimate is the schedule's own allocations; the
 * update phase keeps memory.ts's upper bound (the selected rows and columns are known only after τ).
 */

import { packedCols } from '../arch/types';
import { familySpec, type ModelConfig, type PrunableLayer } from '../io/config';
import { NB } from '../kernels/cholesky';
import { crossEntropyAllocs, f32, familyWalk, gramScratch, onesOf, Tally, type DeviceLimits } from './memory-tally';

const SERIES_TERMS = 5; // spd.ts DEFAULT_TERMS: terms of spdInverse's correction series
const SUM_TILE = 1024, COL_TILE = 64; // reduce.ts: entries per sum_flat workgroup, rows per col_sums block

/**
 * spdInverse (kernels/spd.ts, damped, the default 5 series terms) of an n×n matrix in its allocation
 * order: the damped copy md and its damping scalar; cholesky's L, pivot flag and block scratch;
 * W = L⁻¹ (trinv.ts: eye, then one product scratch per pair level); the correction S (E, S, then T
 * while E is freed); the series P = I + S + S² + … with its gate and two terms alive at once; Q = P·W;
 * X = Wᵀ·Q.
 * Returns the handles of X (the inverse) and the pivot flag (kept until checked).
 * test/surgeon-budget-stream.test.ts checks this replay against the pool's measured peak.
 */
export function spdInverseAllocs(t: Tally, n: number): { X: number; info: number } {
  const md = t.add(n * n);
  t.temp(f32(1)); // dampInPlace's added diagonal
  const L = t.add(n * n), info = t.add(1);
  t.temp(f32(Math.ceil(n / NB) * NB * NB));
  const W = t.add(n * n);
  for (let s = NB; s < n; s *= 2) {
    const full = Math.floor(n / (2 * s)), rest = n - 2 * s * full - s;
    if (full > 0) t.temp(f32(full * s * s));
    if (rest > 0) t.temp(f32(rest * s));
  }
  const E = t.add(n * n);
  t.free(md);
  const S = t.add(n * n);
  t.free(L);
  const T = t.add(n * n);
  t.free(E, T);
  const gs = t.add(4), sums = t.add(Math.max(1, Math.min(256, Math.ceil((n * n) / 65536)))), P = t.add(n * n);
  let prev = 0;
  for (let j = 2; j <= SERIES_TERMS; j++) {
    const next = t.add(n * n);
    if (prev) t.free(prev);
    prev = next;
  }
  if (prev) t.free(prev);
  t.free(gs, sums, S);
  const Q = t.add(n * n);
  t.free(P);
  const X = t.add(n * n);
  t.free(Q, W);
  return { X, info };
}

/** sumSquares' pairwise partials over n entries (two levels alive at once). */
function sumScratch(t: Tally, n: number): void {
  let prev = 0;
  for (let m = n; m > 1; m = Math.ceil(m / SUM_TILE)) {
    const part = t.add(Math.ceil(m / SUM_TILE));
    if (prev) t.free(prev);
    prev = part;
  }
  if (prev) t.free(prev);
}

/** colSums' block partials of an [R, C] matrix, then its [C] result (returned). */
function colSumsAllocs(t: Tally, R: number, C: number): number {
  let prev = 0;
  for (let r = R; ; r = Math.ceil(r / COL_TILE)) {
    const blocks = Math.ceil(r / COL_TILE);
    const out = t.add(blocks * C);
    if (prev) t.free(prev);
    prev = out;
    if (blocks === 1) return out;
  }
}

/** Factor bytes of some linears: one A per input ((C+1)² with a bias), one G per linear. */
export function factorBytes(layers: readonly PrunableLayer[]): number {
  const keys = new Set<string>();
  let b = 0;
  for (const L of layers) {
    if (!keys.has(L.inputKey)) { keys.add(L.inputKey); b += f32(packedCols(L) ** 2); }
    b += f32(L.R * L.R);
  }
  return b;
}

export interface PassShape {
  /** Decoder layers [lo, hi) of the pass; top: hi = numLayers (the pass that runs the LM head). */
  lo: number;
  hi: number;
  /** The linears whose factors the pass accumulates. */
  linears: readonly PrunableLayer[];
}

/**
 * One batch of a streamed pass (kfac-stream.ts streamedPass) of B windows of T tokens, above the pass's
 * factors: see the file comment. `draws` label draws share the saved forward (sampled labels when > 0).
 */
export function streamedPassBytes(c: ModelConfig, lim: DeviceLimits, B: number, T: number, p: PassShape, fisherSamples = 0, headChunkRows?: number): { peak: number; largest: Tally['largest'] } {
  const w = familyWalk(c), N = B * T, d = c.hiddenSize, L = c.numLayers;
  const ones = onesOf(familySpec(c).prunableLayers(c));
  const keys = new Set(p.linears.map((x) => x.inputKey)), names = new Set(p.linears.map((x) => x.name));
  const t = new Tally(lim, {
    cached: false,
    input: (r, key, rows, C) => { if (keys.has(key)) r.temp(gramScratch(C + (ones.get(key) ? 1 : 0), rows, lim)); },
    outputGrad: (r, name, rows, R) => { if (names.has(name)) r.temp(gramScratch(R, rows, lim)); },
  });
  const draws = Math.max(1, fisherSamples);
  const kept: number[] = [];
  const backward = (dx: number) => {
    for (let l = p.hi - 1; l >= p.lo; l--) dx = w.layerBackward(t, l, dx, B, T);
    t.free(dx); // read back for the pass below (the staging buffer is not the pool's), then freed
  };
  if (p.hi === L) {
    const ids = t.add(N), labels = t.add(N);
    let x = w.embed(t, N);
    for (let l = 0; l < p.lo; l++) x = w.layer(t, l, x, B, T, {}).x;
    for (let l = p.lo; l < L; l++) {
      const r = w.layer(t, l, x, B, T, { save: true });
      kept.push(...(r.saved ?? []));
      x = r.x;
    }
    const f = w.final(t, x, N, true);
    for (let i = 0; i < draws; i++) {
      const ce = crossEntropyAllocs(t, c, lim, N, true, fisherSamples > 0, headChunkRows);
      t.free(ce.loss, ce.lse, ce.sampled);
      const dx = w.finalBackward(t, N);
      t.free(ce.dHidden);
      backward(dx);
    }
    t.free(f.hf, ...(f.saved ?? []), ...kept, ids, labels);
  } else {
    let x = t.add(N * d); // the kept input, uploaded
    for (let l = p.lo; l < p.hi; l++) {
      const r = w.layer(t, l, x, B, T, { save: true });
      kept.push(...(r.saved ?? []));
      x = r.x;
    }
    t.free(x); // the range's output: the pass above has used it already
    for (let i = 0; i < draws; i++) backward(t.add(N * d));
    t.free(...kept);
  }
  return { peak: t.mark(), largest: t.largest };
}

/**
 * The problems phase of one group of linears in a budgeted shot (shot.ts groupProblems, then the group's
 * costs and spill), every unit assumed live: its factors, buildProblems (W' packed, the statistics buffer
 * and its diagonal/norm temporaries, then index lists, live W', balanced live factors), the factors
 * freed, the damped inverses one spdInverse at a time (surgeon), the costs (rows-cols: W·A, G·W and their
 * products and sums; element: one cost tensor per linear, N:M group costs), all freed at the spill.
 */
export function problemsBytes(lim: DeviceLimits, layers: readonly PrunableLayer[], o: { method: string; structured: boolean; nm?: { n: number; m: number } }): number {
  const t = new Tally(lim);
  const curvature = o.method !== 'magnitude';
  const fac: number[] = [];
  if (curvature) {
    const keys = new Set<string>();
    for (const L of layers) {
      if (!keys.has(L.inputKey)) { keys.add(L.inputKey); fac.push(t.add(packedCols(L) ** 2)); }
      fac.push(t.add(L.R * L.R));
    }
  }
  const held: number[] = [];
  const stats = t.add(layers.reduce((a, L) => a + 2 * (L.R + packedCols(L)) + 2, 0));
  for (const L of layers) {
    const C1 = packedCols(L);
    held.push(t.add(L.R * C1)); // W'
    if (curvature) {
      const dg = t.add(L.R), da = t.add(C1);
      sumScratch(t, C1 * C1);
      const na = t.add(1);
      sumScratch(t, L.R * L.R);
      t.free(dg, da, na, t.add(1));
    }
  }
  t.free(stats);
  const live: Array<{ L: PrunableLayer; Gl: number; Al: number }> = [];
  for (const L of layers) {
    const C1 = packedCols(L);
    held.push(t.add(L.R), t.add(C1), t.add(L.R * C1)); // lr, lc, W_l
    live.push({ L, Gl: curvature ? t.add(L.R * L.R) : 0, Al: curvature ? t.add(C1 * C1) : 0 });
  }
  t.free(...fac);
  if (o.method === 'surgeon') {
    for (const { L } of live) {
      for (const n of [L.R, packedCols(L)]) { const r = spdInverseAllocs(t, n); held.push(r.X, r.info); }
    }
  }
  if (o.structured) {
    const out = t.add(layers.reduce((a, L) => a + L.R + packedCols(L), 0));
    for (const L of layers) {
      const R = L.R, C1 = packedCols(L);
      let qr: number, qc: number;
      if (o.method === 'magnitude') qr = t.add(R);
      else {
        const WA = t.linear('', R, C1, C1), h = t.add(R * C1);
        qr = t.add(R);
        t.free(WA, h);
      }
      if (o.method === 'magnitude' || o.method === 'lobd') qc = colSumsAllocs(t, R, C1);
      else {
        const GW = t.linear('', R, C1, R), h = t.add(R * C1);
        qc = colSumsAllocs(t, R, C1);
        t.free(GW, h);
      }
      t.free(qr, qc);
    }
    t.free(out);
  } else {
    const costs: number[] = [];
    for (const L of layers) {
      const R = L.R, C1 = packedCols(L);
      const rf = t.add(R), cf = t.add(C1);
      costs.push(t.add(R * C1));
      t.free(rf, cf);
      if (o.nm) costs.push(t.add(R * Math.floor(L.C / o.nm.m)), t.add(R * Math.floor(L.C / o.nm.m))); // groupCosts: gcost, pick
    }
    t.free(...costs);
  }
  t.free(...held, ...live.flatMap((x) => [x.Gl, x.Al]));
  return t.mark();
}

/** Pool bytes of the linears' weights and biases (what prune.ts offloads during an update pass). */
export function linearWeightBytes(layers: readonly PrunableLayer[]): number {
  return layers.reduce((a, L) => a + f32(L.R * L.C) + (L.bias ? f32(L.R) : 0), 0);
}
