/**
 * Float64 reference of the LLM Surgeon (ALGORITHM.md §2–§7) for tiny reference models (OPT, Llama).
 * Every step is a small exported function so the GPU pipeline can be checked step by step:
 *   layerProblem (W' = [W | b] or W, balanced K-FAC, dead units, damped live inverses)
 *   → elementCosts / rowColCosts / groupCosts24 → elementThreshold / groupThreshold / structuredThreshold
 *   → rowColUpdate / chunkedElementUpdate → refPrune (linear multi-shot schedule).
 * Conventions: W' is R×C1 row-major; C1 = C+1 (bias last) for a layer with bias, C1 = C without
 * (Llama; Qwen2's o/gate/up/down), so C1 > C is the bias flag. The structured column candidates are
 * all C1 columns (the bias column included); 2:4 groups are input columns 4g..4g+3 of the real
 * columns (never the bias, aligned whether or not a bias column follows);
 * "live" index lists hold the global row/column numbers of the live sub-problem, and G⁻¹/A⁻¹ are
 * indexed in that local (live) numbering.
 */

import { ShapeError } from '../gpu/errors';
import { spdInverse, spdSolve, subMatrix } from './dense';
import { balanceFactors, refKfac } from './kfac';
import { cloneModel, linearHasBias, modelParam, prunableLayers, type RefModel } from './model';

export type Structure = 'element' | 'rows-cols' | '2:4';
export type Method = 'surgeon' | 'kobd' | 'lobd' | 'magnitude';

export interface LayerProblem {
  name: string; R: number; C: number; C1: number;
  W: Float64Array; // R×C1 current W'
  A?: Float64Array; G?: Float64Array; // balanced factors (absent for magnitude)
  liveRows: number[]; liveCols: number[];
  Ginv?: Float64Array; Ainv?: Float64Array; // inv_λ of the live sub-matrices (surgeon only)
}

/** W' = [W | b] (R×(C+1)) of a linear layer with bias; a copy of W (R×C) without. */
export function getWPrime(m: RefModel, name: string, R: number, C: number, bias = linearHasBias(m.cfg, name)): Float64Array {
  const W = modelParam(m, `${name}.weight`, R * C);
  if (!bias) return Float64Array.from(W);
  const b = modelParam(m, `${name}.bias`, R);
  const out = new Float64Array(R * (C + 1));
  for (let r = 0; r < R; r++) {
    out.set(W.subarray(r * C, (r + 1) * C), r * (C + 1));
    out[r * (C + 1) + C] = b[r];
  }
  return out;
}

/** Write W' back into (new) weight and bias arrays of `w`; a bias is written iff W' has the extra column. */
export function setWPrime(w: Map<string, Float64Array>, name: string, Wp: Float64Array, R: number, C: number): void {
  if (Wp.length === R * C) { w.set(`${name}.weight`, Float64Array.from(Wp)); return; }
  if (Wp.length !== R * (C + 1)) throw new ShapeError(`setWPrime: ${name} W' has ${Wp.length} values, expected ${R * C} or ${R * (C + 1)}`);
  const W = new Float64Array(R * C), b = new Float64Array(R);
  for (let r = 0; r < R; r++) {
    W.set(Wp.subarray(r * (C + 1), r * (C + 1) + C), r * C);
    b[r] = Wp[r * (C + 1) + C];
  }
  w.set(`${name}.weight`, W);
  w.set(`${name}.bias`, b);
}

/** §3: a row is dead if its W' row is all zero or G_rr = 0; a column if all zero or A_cc = 0. */
export function liveUnits(W: Float64Array, R: number, C1: number, A?: Float64Array, G?: Float64Array): { liveRows: number[]; liveCols: number[] } {
  const rowNz = new Uint8Array(R), colNz = new Uint8Array(C1);
  for (let r = 0; r < R; r++) for (let c = 0; c < C1; c++) if (W[r * C1 + c] !== 0) { rowNz[r] = 1; colNz[c] = 1; }
  const liveRows: number[] = [], liveCols: number[] = [];
  for (let r = 0; r < R; r++) if (rowNz[r] && (!G || G[r * R + r] !== 0)) liveRows.push(r);
  for (let c = 0; c < C1; c++) if (colNz[c] && (!A || A[c * C1 + c] !== 0)) liveCols.push(c);
  return { liveRows, liveCols };
}

/** inv_λ(M[idx,idx]) = (M_sub + λ·mean(diag M_sub)·I)⁻¹ (float64 Cholesky). */
export function dampedInverse(M: Float64Array, n: number, idx: readonly number[], lambda: number): Float64Array {
  const k = idx.length;
  const s = subMatrix(M, n, idx);
  if (k === 0) return s;
  let mean = 0;
  for (let i = 0; i < k; i++) mean += s[i * k + i];
  mean /= k;
  for (let i = 0; i < k; i++) s[i * k + i] += lambda * mean;
  return spdInverse(s, k);
}

/** Everything one shot needs for one layer; inverses only for the surgeon method. `bias` defaults to the model's. */
export function layerProblem(m: RefModel, name: string, R: number, C: number, f: { A: Float64Array; G: Float64Array } | undefined, lambdaG: number, lambdaA: number, withInverses: boolean, bias = linearHasBias(m.cfg, name)): LayerProblem {
  const C1 = bias ? C + 1 : C, W = getWPrime(m, name, R, C, bias);
  if (f && f.A.length !== C1 * C1) throw new ShapeError(`layerProblem: ${name} A has ${f.A.length} entries, expected ${C1}² (bias ${bias})`);
  const bal = f ? balanceFactors(f.A, f.G) : undefined;
  const { liveRows, liveCols } = liveUnits(W, R, C1, bal?.A, bal?.G);
  const p: LayerProblem = { name, R, C, C1, W, A: bal?.A, G: bal?.G, liveRows, liveCols };
  if (withInverses && bal) {
    p.Ginv = dampedInverse(bal.G, R, liveRows, lambdaG);
    p.Ainv = dampedInverse(bal.A, C1, liveCols, lambdaA);
  }
  return p;
}

const fin = (x: number): number => (Number.isNaN(x) ? 0 : x); // §4: NaN costs become 0

function need<T>(x: T | undefined, what: string): T {
  if (x === undefined) throw new ShapeError(`surgeon reference: ${what} missing for this method`);
  return x;
}

/** §4 element costs (R×C1); 0 on dead rows/columns. */
export function elementCosts(p: LayerProblem, method: Method): Float64Array {
  const { R, C1, W, liveRows, liveCols } = p;
  const cost = new Float64Array(R * C1);
  liveRows.forEach((r, li) => liveCols.forEach((c, lj) => {
    const w2 = W[r * C1 + c] ** 2;
    let v: number;
    if (method === 'magnitude') v = 0.5 * w2;
    else if (method === 'lobd') v = 0.5 * w2 * need(p.A, 'A')[c * C1 + c];
    else if (method === 'kobd') v = 0.5 * w2 * need(p.G, 'G')[r * R + r] * need(p.A, 'A')[c * C1 + c];
    else v = (0.5 * w2) / (need(p.Ginv, 'G⁻¹')[li * liveRows.length + li] * need(p.Ainv, 'A⁻¹')[lj * liveCols.length + lj]);
    cost[r * C1 + c] = fin(v);
  }));
  return cost;
}

/** §4 row costs (R) and column costs (C1, bias column included); 0 on dead units. */
export function rowColCosts(p: LayerProblem, method: Method): { row: Float64Array; col: Float64Array } {
  const { R, C1, W, liveRows, liveCols } = p;
  const row = new Float64Array(R), col = new Float64Array(C1);
  const nr = liveRows.length, nc = liveCols.length;
  liveRows.forEach((r, li) => {
    let q = 0; // w_rᵀ A w_r (or ‖w_r‖² for magnitude)
    for (const c of liveCols) {
      if (method === 'magnitude') { q += W[r * C1 + c] ** 2; continue; }
      let s = 0;
      for (const c2 of liveCols) s += need(p.A, 'A')[c * C1 + c2] * W[r * C1 + c2];
      q += W[r * C1 + c] * s;
    }
    const v = method === 'magnitude' ? Math.sqrt(q) : method === 'lobd' ? 0.5 * q
      : method === 'kobd' ? 0.5 * need(p.G, 'G')[r * R + r] * q : (0.5 * q) / need(p.Ginv, 'G⁻¹')[li * nr + li];
    row[r] = fin(v);
  });
  liveCols.forEach((c, lj) => {
    let q = 0; // w_cᵀ G w_c (‖w_c‖² for magnitude and L-OBD, whose G = I)
    for (const r of liveRows) {
      if (method === 'magnitude' || method === 'lobd') { q += W[r * C1 + c] ** 2; continue; }
      let s = 0;
      for (const r2 of liveRows) s += need(p.G, 'G')[r * R + r2] * W[r2 * C1 + c];
      q += W[r * C1 + c] * s;
    }
    const v = method === 'magnitude' ? Math.sqrt(q) : method === 'surgeon' ? (0.5 * q) / need(p.Ainv, 'A⁻¹')[lj * nc + lj]
      : 0.5 * need(p.A, 'A')[c * C1 + c] * q;
    col[c] = fin(v);
  });
  return { row, col };
}

/** The two cheapest columns (ties: lower column) of group g (columns 4g..4g+3) of row r. */
export function groupPick(cost: Float64Array, C1: number, r: number, g: number): [number, number] {
  const cols = [4 * g, 4 * g + 1, 4 * g + 2, 4 * g + 3];
  cols.sort((a, b) => cost[r * C1 + a] - cost[r * C1 + b] || a - b);
  return [cols[0], cols[1]];
}

/**
 * §4 2:4 group costs (R×C/4) of element costs with row stride C1 (C + 1 with a bias column, C
 * without): sum of the 2 smallest; groups are the real columns 4g..4g+3, the bias is never grouped.
 */
export function groupCosts24(cost: Float64Array, R: number, C: number, C1 = C + 1): Float64Array {
  if (C % 4 !== 0) throw new ShapeError(`2:4 needs in_features divisible by 4, got ${C}`);
  if (C1 !== C && C1 !== C + 1) throw new ShapeError(`groupCosts24: row stride ${C1} is neither C nor C + 1`);
  if (cost.length !== R * C1) throw new ShapeError(`groupCosts24: ${cost.length} costs, expected ${R}×${C1}`);
  const G = C / 4, out = new Float64Array(R * G);
  for (let r = 0; r < R; r++) for (let g = 0; g < G; g++) {
    const [a, b] = groupPick(cost, C1, r, g);
    out[r * G + g] = cost[r * C1 + a] + cost[r * C1 + b];
  }
  return out;
}

/** τ = sorted(costs)[⌊frac·N⌋] (clamped to N−1); −∞ (nothing selected) when frac ≤ 0. */
export function kthThreshold(costs: readonly Float64Array[], frac: number): number {
  const n = costs.reduce((s, c) => s + c.length, 0);
  if (frac <= 0 || n === 0) return -Infinity;
  const all = new Float64Array(n);
  let o = 0;
  for (const c of costs) { all.set(c, o); o += c.length; }
  all.sort();
  return all[Math.min(Math.floor(frac * n), n - 1)];
}
/** §5 unstructured: τ over all element costs of all layers at sparsity s. */
export const elementThreshold = (costs: readonly Float64Array[], s: number): number => kthThreshold(costs, s);
/** §5 2:4: τ over all group costs with target group fraction 2·s. */
export const groupThreshold = (groups: readonly Float64Array[], s: number): number => kthThreshold(groups, 2 * s);

/** Parameters removed by taking r rows and c columns of an R×C1 layer (overlap counted once). */
export const removedParams = (R: number, C1: number, r: number, c: number): number => r * C1 + c * R - r * c;

/**
 * §5 structured: the largest τ among the row/column costs such that Σ_layers removedParams ≤ s·total
 * when every row/column with cost ≤ τ (ties included) is removed. −∞ if even the cheapest tie group
 * does not fit. `removed` is the count at τ, `nextRemoved` the count of the first tie group that
 * did not fit (Infinity if none).
 */
export function structuredThreshold(layers: readonly { R: number; C1: number; row: Float64Array; col: Float64Array }[], s: number): { tau: number; removed: number; budget: number; total: number; nextRemoved: number } {
  const total = layers.reduce((t, l) => t + l.R * l.C1, 0);
  const budget = s * total;
  const items: { v: number; l: number; isRow: boolean }[] = [];
  layers.forEach((L, l) => {
    L.row.forEach((v) => items.push({ v, l, isRow: true }));
    L.col.forEach((v) => items.push({ v, l, isRow: false }));
  });
  items.sort((a, b) => a.v - b.v);
  const r = new Array<number>(layers.length).fill(0), c = new Array<number>(layers.length).fill(0);
  let tau = -Infinity, removed = 0, i = 0;
  while (i < items.length) {
    let j = i, next = removed;
    const r2 = r.slice(), c2 = c.slice();
    while (j < items.length && items[j].v === items[i].v) {
      const { l, isRow } = items[j++];
      next += isRow ? layers[l].C1 - c2[l] : layers[l].R - r2[l];
      if (isRow) r2[l]++; else c2[l]++;
    }
    if (next > budget) return { tau, removed, budget, total, nextRemoved: next };
    tau = items[i].v;
    removed = next;
    r.splice(0, r.length, ...r2);
    c.splice(0, c.length, ...c2);
    i = j;
  }
  return { tau, removed, budget, total, nextRemoved: Infinity };
}

/**
 * §6 structured update from the original W': ΔW' = −G⁻¹[:,R](G⁻¹_RR)⁻¹W'_R − W'_{:,C}(A⁻¹_CC)⁻¹A⁻¹[C,:]
 * on the live sub-problem (independent: the inner inverses replaced by their diagonals), then
 * removed rows and columns set to exactly 0. Returns a new W'.
 */
export function rowColUpdate(p: LayerProblem, rowSel: Uint8Array, colSel: Uint8Array, independent = false): Float64Array {
  const { C1, W, liveRows: lr, liveCols: lc } = p;
  const Ginv = need(p.Ginv, 'G⁻¹'), Ainv = need(p.Ainv, 'A⁻¹');
  const nr = lr.length, nc = lc.length, out = Float64Array.from(W);
  const Rl = lr.map((_, i) => i).filter((i) => rowSel[lr[i]]);
  const Cl = lc.map((_, j) => j).filter((j) => colSel[lc[j]]);
  if (Rl.length > 0) { // X = (G⁻¹_RR)⁻¹ W'_R  (|R|×nc), ΔW' = −G⁻¹[:,R] X
    const k = Rl.length, B = new Float64Array(k * nc);
    Rl.forEach((li, a) => lc.forEach((c, j) => { B[a * nc + j] = W[lr[li] * C1 + c]; }));
    const X = independent ? B.map((v, idx) => v / Ginv[Rl[Math.floor(idx / nc)] * (nr + 1)]) : spdSolve(subMatrix(Ginv, nr, Rl), B, k, nc);
    for (let i = 0; i < nr; i++) for (let j = 0; j < nc; j++) {
      let s = 0;
      for (let a = 0; a < k; a++) s += Ginv[i * nr + Rl[a]] * X[a * nc + j];
      out[lr[i] * C1 + lc[j]] -= s;
    }
  }
  if (Cl.length > 0) { // Y = (A⁻¹_CC)⁻¹ A⁻¹[C,:]  (|C|×nc), ΔW' = −W'_{:,C} Y
    const k = Cl.length, B = new Float64Array(k * nc);
    Cl.forEach((lj, a) => { for (let j = 0; j < nc; j++) B[a * nc + j] = Ainv[lj * nc + j]; });
    const Y = independent ? B.map((v, idx) => v / Ainv[Cl[Math.floor(idx / nc)] * (nc + 1)]) : spdSolve(subMatrix(Ainv, nc, Cl), B, k, nc);
    for (let i = 0; i < nr; i++) for (let j = 0; j < nc; j++) {
      let s = 0;
      for (let a = 0; a < k; a++) s += W[lr[i] * C1 + lc[Cl[a]]] * Y[a * nc + j];
      out[lr[i] * C1 + lc[j]] -= s;
    }
  }
  for (let r = 0; r < p.R; r++) for (let c = 0; c < C1; c++) if (rowSel[r] || colSel[c]) out[r * C1 + c] = 0;
  return out;
}

/**
 * §6 element / 2:4 update. Q = selected live entries in row-major order, cut into chunks of whole
 * consecutive rows with ≤ maxChunk entries (a longer row is its own chunk). Per chunk:
 * S = G⁻¹_{Qr,Qr} ∘ A⁻¹_{Qc,Qc}, x = S⁻¹(w_Q + E_Q), E −= G⁻¹[:,rows]·(X_rows·A⁻¹) (E starts at 0);
 * independent: x_q = w_q/(G⁻¹_ii A⁻¹_jj) in one pass. Finally W' + E with every selected entry
 * (dead ones included) set to exactly 0. Returns a new W'.
 */
export function chunkedElementUpdate(p: LayerProblem, sel: Uint8Array, maxChunk = 2000, independent = false): Float64Array {
  const { C1, W, liveRows: lr, liveCols: lc } = p;
  const Ginv = need(p.Ginv, 'G⁻¹'), Ainv = need(p.Ainv, 'A⁻¹');
  const nr = lr.length, nc = lc.length, E = new Float64Array(nr * nc);
  const rowsQ: number[][] = lr.map((r) => lc.map((c, j) => (sel[r * C1 + c] ? j : -1)).filter((j) => j >= 0));
  const chunks: number[][] = [];
  let cur: number[] = [], count = 0;
  rowsQ.forEach((q, li) => {
    if (q.length === 0) return;
    if (cur.length > 0 && (independent || count + q.length > maxChunk)) { chunks.push(cur); cur = []; count = 0; }
    cur.push(li);
    count += q.length;
  });
  if (cur.length > 0) chunks.push(cur);
  for (const rows of chunks) {
    const Q: [number, number][] = rows.flatMap((li) => rowsQ[li].map((lj): [number, number] => [li, lj]));
    const n = Q.length, rhs = new Float64Array(n);
    Q.forEach(([li, lj], a) => { rhs[a] = W[lr[li] * C1 + lc[lj]] + (independent ? 0 : E[li * nc + lj]); });
    let x: Float64Array;
    if (independent) x = rhs.map((v, a) => v / (Ginv[Q[a][0] * (nr + 1)] * Ainv[Q[a][1] * (nc + 1)]));
    else {
      const S = new Float64Array(n * n);
      for (let a = 0; a < n; a++) for (let b = 0; b < n; b++) S[a * n + b] = Ginv[Q[a][0] * nr + Q[b][0]] * Ainv[Q[a][1] * nc + Q[b][1]];
      x = spdSolve(S, rhs, n, 1);
    }
    // Y_rows = X_rows · A⁻¹ (only the chunk's rows), then E −= G⁻¹[:, rows] · Y_rows.
    const Y = new Float64Array(rows.length * nc), slot = new Map(rows.map((li, k) => [li, k]));
    Q.forEach(([li, lj], a) => { const k = slot.get(li)!; for (let j = 0; j < nc; j++) Y[k * nc + j] += x[a] * Ainv[lj * nc + j]; });
    for (let i = 0; i < nr; i++) rows.forEach((li, k) => {
      const g = Ginv[i * nr + li];
      for (let j = 0; j < nc; j++) E[i * nc + j] -= g * Y[k * nc + j];
    });
  }
  const out = Float64Array.from(W);
  for (let i = 0; i < nr; i++) for (let j = 0; j < nc; j++) out[lr[i] * C1 + lc[j]] += E[i * nc + j];
  for (let i = 0; i < out.length; i++) if (sel[i]) out[i] = 0;
  return out;
}

export interface PruneOptions {
  structure: Structure; sparsity: number; shots: number; method: Method;
  lambdaG?: number; lambdaA?: number; // defaults §2: structured 0.01/0.01, element and 2:4 0.1/0.01
  maxChunk?: number; // entries per correlated chunk (default 2000)
  fisherSamples?: number; seed?: number; // K-FAC options (refKfac)
  independent?: boolean; // maxCorrelate = 1 ablation
}
export interface ShotInfo {
  shot: number; target: number; tau: number; zeros: number; total: number;
  structured?: { removed: number; budget: number; nextRemoved: number }; // §5 accounting (rows-cols only)
  layers: { name: string; zeros: number; total: number; liveRows: number; liveCols: number; rows?: number; cols?: number }[];
}
export interface PruneResult { weights: Map<string, Float64Array>; masks: Map<string, Uint8Array>; shots: ShotInfo[] }

function checkOptions(m: RefModel, o: PruneOptions): void {
  if (!['element', 'rows-cols', '2:4'].includes(o.structure)) throw new ShapeError(`refPrune: unknown structure ${o.structure}`);
  if (!['surgeon', 'kobd', 'lobd', 'magnitude'].includes(o.method)) throw new ShapeError(`refPrune: unknown method ${o.method}`);
  if (!(o.sparsity >= 0 && o.sparsity < 1)) throw new ShapeError(`refPrune: sparsity ${o.sparsity} not in [0, 1)`);
  if (o.structure === '2:4' && o.sparsity > 0.5) throw new ShapeError(`refPrune: 2:4 sparsity ${o.sparsity} > 0.5`);
  if (!Number.isInteger(o.shots) || o.shots < 1) throw new ShapeError(`refPrune: shots must be a positive integer, got ${o.shots}`);
  if (o.maxChunk !== undefined && !(o.maxChunk >= 1)) throw new ShapeError(`refPrune: maxChunk must be ≥ 1`);
  if (o.structure === '2:4') for (const { name, C } of prunableLayers(m.cfg)) if (C % 4 !== 0) throw new ShapeError(`refPrune: ${name} has ${C} inputs, not divisible by 4`);
}

/**
 * §7 multi-shot LLM Surgeon (or a baseline's costs with plain zeroing) on a copy of the model:
 * for t = 1..T, s_t = t·s/T; K-FAC on the current weights; costs; one global τ; update every layer
 * from that snapshot. `masks` (R×C1, 1 = pruned) are the last shot's selection.
 */
export function refPrune(m: RefModel, calib: number[][], o: PruneOptions): PruneResult {
  checkOptions(m, o);
  const structured = o.structure === 'rows-cols';
  const lambdaG = o.lambdaG ?? (structured ? 0.01 : 0.1), lambdaA = o.lambdaA ?? 0.01;
  const model = cloneModel(m);
  const layers = prunableLayers(m.cfg), surgeon = o.method === 'surgeon';
  const shots: ShotInfo[] = [];
  let masks = new Map<string, Uint8Array>();
  for (let t = 1; t <= o.shots; t++) {
    const st = (t * o.sparsity) / o.shots;
    const f = o.method === 'magnitude' ? undefined : refKfac(model, calib, { fisherSamples: o.fisherSamples, seed: o.seed });
    const probs = layers.map(({ name, R, C, bias }) => layerProblem(model, name, R, C, f?.get(name), lambdaG, lambdaA, surgeon, bias));
    const sels: Uint8Array[] = probs.map((p) => new Uint8Array(p.R * p.C1));
    const extra: { rows?: number; cols?: number }[] = probs.map(() => ({}));
    let tau: number;
    let accounting: ShotInfo['structured'];
    if (structured) {
      const rc = probs.map((p) => ({ R: p.R, C1: p.C1, ...rowColCosts(p, o.method) }));
      const th = structuredThreshold(rc, st);
      tau = th.tau;
      accounting = { removed: th.removed, budget: th.budget, nextRemoved: th.nextRemoved };
      probs.forEach((p, l) => {
        const rowSel = rc[l].row.map((v) => (v <= tau ? 1 : 0)), colSel = rc[l].col.map((v) => (v <= tau ? 1 : 0));
        const rs = Uint8Array.from(rowSel), cs = Uint8Array.from(colSel);
        for (let r = 0; r < p.R; r++) for (let c = 0; c < p.C1; c++) sels[l][r * p.C1 + c] = rs[r] | cs[c];
        extra[l] = { rows: rs.reduce((a, b) => a + b, 0), cols: cs.reduce((a, b) => a + b, 0) };
        p.W = surgeon ? rowColUpdate(p, rs, cs, o.independent) : p.W.map((w, i) => (sels[l][i] ? 0 : w));
      });
    } else {
      const ec = probs.map((p) => elementCosts(p, o.method));
      if (o.structure === 'element') {
        tau = elementThreshold(ec, st);
        probs.forEach((p, l) => ec[l].forEach((v, i) => { sels[l][i] = v <= tau ? 1 : 0; }));
      } else {
        const gc = probs.map((p, l) => groupCosts24(ec[l], p.R, p.C, p.C1));
        tau = groupThreshold(gc, st);
        probs.forEach((p, l) => {
          const ng = p.C / 4;
          for (let r = 0; r < p.R; r++) for (let g = 0; g < ng; g++) {
            if (!(gc[l][r * ng + g] <= tau)) continue;
            for (const c of groupPick(ec[l], p.C1, r, g)) sels[l][r * p.C1 + c] = 1;
          }
        });
      }
      probs.forEach((p, l) => {
        p.W = surgeon ? chunkedElementUpdate(p, sels[l], o.maxChunk ?? 2000, o.independent) : p.W.map((w, i) => (sels[l][i] ? 0 : w));
      });
    }
    const info: ShotInfo = { shot: t, target: st, tau, zeros: 0, total: 0, structured: accounting, layers: [] };
    probs.forEach((p, l) => {
      setWPrime(model.w, p.name, p.W, p.R, p.C);
      const zeros = p.W.reduce((a, w) => a + (w === 0 ? 1 : 0), 0);
      info.zeros += zeros;
      info.total += p.W.length;
      info.layers.push({ name: p.name, zeros, total: p.W.length, liveRows: p.liveRows.length, liveCols: p.liveCols.length, ...extra[l] });
    });
    shots.push(info);
    masks = new Map(probs.map((p, l) => [p.name, sels[l]]));
  }
  return { weights: model.w, masks, shots };
}
