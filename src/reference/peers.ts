/**
 * Float64 references of the peer methods (ALGORITHM.md §9) on tiny reference models (OPT, Llama), with the same
 * sequential protocol and the same exact, index-tie-broken selections as src/surgeon/peers:
 *
 *   for each decoder layer l: the inputs of its linears come from forwardHidden on the current
 *   weights (layers < l pruned, layer l and later still dense) — exactly what the GPU's statistics
 *   pass sees; every linear of layer l is pruned from those inputs; then layer l + 1.
 *
 * SparseGPT: H = (2/N) Σ x xᵀ, dead inputs (H_ii = 0 → H_ii = 1, W[:, i] = 0), H⁻¹ of
 * H + percdamp·mean(diag H)·I, U = upper Cholesky factor of H⁻¹; blocks of `blocksize` columns:
 * unstructured mask = the ⌊s·R·c1⌋ − ⌊s·R·c0⌋ smallest w²/U_jj² of the block (all rows, flat index
 * r·count + j breaks ties), n:m = the n smallest scores of each group of m at the group's first
 * column (running weights); per column q = masked ? 0 : w, err = (w − q)/U_ii, W1[:, i+1:] −= err·U[i, i+1:];
 * lazy W[:, c1:] −= Err·U[c0:c1, c1:]. Wanda: |W_ij|·‖X_j‖₂, ⌊s·C⌋ smallest per row or n:m per group.
 * Both act on W only (R×C, n:m groups along its real input columns); biases are never touched.
 *
 * Decision bookkeeping for GPU comparisons: every selection records its own margin (relative gap
 * between the last selected and the first rejected score). With `forceMasks` (e.g. the GPU's zero
 * pattern) the reference follows the given selections instead and reports how many entries differ
 * from its own choice and by how much a forced selection contradicts its scores (`violation`, the
 * worst relative gap by which a forced-in entry exceeds a forced-out one; 0 when consistent).
 */

import { ShapeError } from '../gpu/errors';
import { choleskyF64, spdInverseF64 } from './spd';
import { cloneModel, layerIndexOf, linearInputs, modelParam, prunableLayers, type RefModel } from './model';

export interface RefPeerOptions {
  structure: 'element' | `${number}:${number}`;
  sparsity: number;
  blocksize?: number;
  percdamp?: number;
  /** Per layer name, [R·C] with 1 = pruned: follow these selections (count must match the target). */
  forceMasks?: Map<string, Uint8Array>;
}

export interface RefPeerResult {
  /** All model weights after pruning (new arrays). */
  weights: Map<string, Float64Array>;
  /** Per prunable layer, [R·C], 1 = selected for pruning. */
  masks: Map<string, Uint8Array>;
  /** Smallest relative margin of the reference's own selections. */
  minMargin: number;
  /** With forceMasks: entries whose forced decision differs from the reference's own, and the worst contradiction. */
  mismatches: number;
  violation: number;
}

/** ⌊s·n⌋, robust to s·n landing just below an integer (same as src/surgeon/peers targetCount). */
export const refTargetCount = (s: number, n: number): number => Math.floor(s * n + 1e-7);

const relGap = (lo: number, hi: number): number => {
  const den = Math.max(Math.abs(lo), Math.abs(hi));
  return den === 0 ? 0 : (hi - lo) / den;
};

export class Decider {
  minMargin = Infinity;
  mismatches = 0;
  violation = 0;
  /**
   * Choose k of the candidate scores (ties: lower position first); `forced` (same length, 1 = chosen)
   * overrides the choice. Returns the chosen flags.
   */
  choose(scores: Float64Array, k: number, forced?: Uint8Array): Uint8Array {
    const n = scores.length;
    const order = Array.from({ length: n }, (_, i) => i).sort((a, b) => scores[a] - scores[b] || a - b);
    const own = new Uint8Array(n);
    for (let i = 0; i < k; i++) own[order[i]] = 1;
    if (k > 0 && k < n) this.minMargin = Math.min(this.minMargin, relGap(scores[order[k - 1]], scores[order[k]]));
    if (!forced) return own;
    let cnt = 0, maxIn = -Infinity, minOut = Infinity;
    for (let i = 0; i < n; i++) {
      if (forced[i]) { cnt++; maxIn = Math.max(maxIn, scores[i]); } else minOut = Math.min(minOut, scores[i]);
      if (forced[i] !== own[i]) this.mismatches++;
    }
    if (cnt !== k) throw new ShapeError(`peers reference: a forced selection has ${cnt} entries, ${k} expected`);
    if (maxIn > minOut) this.violation = Math.max(this.violation, relGap(minOut, maxIn));
    return forced;
  }
}

function parseStructure(o: RefPeerOptions): { n: number; m: number } | null {
  if (o.structure === 'element') return null;
  const mm = /^(\d+):(\d+)$/.exec(o.structure);
  if (!mm) throw new ShapeError(`peers reference: bad structure ${o.structure}`);
  return { n: Number(mm[1]), m: Number(mm[2]) };
}

/** The input of every prunable linear of layer l for every sequence, stacked (rows = tokens). */
function layerInputs(m: RefModel, calib: number[][], l: number): Map<string, { X: Float64Array; N: number }> {
  const parts = new Map<string, Float64Array[]>();
  for (const ids of calib) for (const [k, a] of linearInputs(m, ids, l)) parts.set(k, [...(parts.get(k) ?? []), a]);
  const out = new Map<string, { X: Float64Array; N: number }>();
  for (const [k, list] of parts) {
    const X = new Float64Array(list.reduce((a, x) => a + x.length, 0));
    let off = 0;
    for (const x of list) { X.set(x, off); off += x.length; }
    out.set(k, { X, N: calib.length * calib[0].length });
  }
  return out;
}

function sequential(
  m: RefModel, calib: number[][], o: RefPeerOptions,
  pruneLinear: (W: Float64Array, R: number, C: number, X: Float64Array, N: number, d: Decider, forced?: Uint8Array) => Uint8Array,
): RefPeerResult {
  const cur = cloneModel(m);
  const masks = new Map<string, Uint8Array>();
  const d = new Decider();
  for (let l = 0; l < m.cfg.layers; l++) {
    const inputs = layerInputs(cur, calib, l);
    for (const { name, R, C } of prunableLayers(m.cfg).filter((L) => layerIndexOf(L.name) === l)) {
      const { X, N } = inputs.get(name)!;
      const W = modelParam(cur, `${name}.weight`, R * C);
      masks.set(name, pruneLinear(W, R, C, X, N, d, o.forceMasks?.get(name)));
    }
  }
  return { weights: cur.w, masks, minMargin: d.minMargin, mismatches: d.mismatches, violation: d.violation };
}

/** SparseGPT of one linear W [R, C] (in place) from its inputs X [N, C]; returns the mask. */
export function refSparseGPTLinear(W: Float64Array, R: number, C: number, X: Float64Array, N: number, o: RefPeerOptions, d = new Decider(), forced?: Uint8Array): Uint8Array {
  const nm = parseStructure(o);
  const bs = o.blocksize ?? 128;
  const H = new Float64Array(C * C);
  for (let t = 0; t < N; t++) for (let i = 0; i < C; i++) {
    const xi = X[t * C + i];
    if (xi !== 0) for (let j = 0; j < C; j++) H[i * C + j] += (2 / N) * xi * X[t * C + j];
  }
  for (let i = 0; i < C; i++) if (H[i * C + i] === 0) {
    H[i * C + i] = 1;
    for (let r = 0; r < R; r++) W[r * C + i] = 0;
  }
  let mean = 0;
  for (let i = 0; i < C; i++) mean += H[i * C + i] / C;
  for (let i = 0; i < C; i++) H[i * C + i] += (o.percdamp ?? 0.01) * mean;
  const { L, fail } = choleskyF64(spdInverseF64(H, C), C);
  if (fail >= 0) throw new ShapeError(`peers reference: H⁻¹ not positive definite (pivot ${fail})`);
  const U = (i: number, j: number) => L[j * C + i];
  const mask = new Uint8Array(R * C);
  const score = (r: number, j: number) => W[r * C + j] ** 2 / U(j, j) ** 2;
  for (let c0 = 0; c0 < C; c0 += bs) {
    const c1 = Math.min(C, c0 + bs), count = c1 - c0;
    if (!nm) {
      const k = refTargetCount(o.sparsity, R * c1) - refTargetCount(o.sparsity, R * c0);
      const S = new Float64Array(R * count);
      for (let r = 0; r < R; r++) for (let j = 0; j < count; j++) S[r * count + j] = score(r, c0 + j);
      const f = forced && Uint8Array.from({ length: R * count }, (_, e) => forced[Math.floor(e / count) * C + c0 + (e % count)]);
      const sel = d.choose(S, k, f || undefined);
      for (let r = 0; r < R; r++) for (let j = 0; j < count; j++) mask[r * C + c0 + j] = sel[r * count + j];
    }
    const Err = new Float64Array(R * count);
    for (let r = 0; r < R; r++) {
      for (let i = 0; i < count; i++) {
        const c = c0 + i;
        if (nm && c % nm.m === 0) {
          const S = Float64Array.from({ length: nm.m }, (_, j) => score(r, c + j));
          const sel = d.choose(S, nm.n, forced?.subarray(r * C + c, r * C + c + nm.m));
          for (let j = 0; j < nm.m; j++) mask[r * C + c + j] = sel[j];
        }
        if (!mask[r * C + c]) continue;
        const err = W[r * C + c] / U(c, c);
        W[r * C + c] = 0;
        for (let j = c + 1; j < c1; j++) W[r * C + j] -= err * U(c, j);
        Err[r * count + i] = err;
      }
    }
    for (let r = 0; r < R; r++) for (let j = c1; j < C; j++) {
      let s = 0;
      for (let i = 0; i < count; i++) s += Err[r * count + i] * U(c0 + i, j);
      W[r * C + j] -= s;
    }
  }
  return mask;
}

/** Wanda of one linear W [R, C] (in place) from its inputs X [N, C]; returns the mask. */
export function refWandaLinear(W: Float64Array, R: number, C: number, X: Float64Array, N: number, o: RefPeerOptions, d = new Decider(), forced?: Uint8Array): Uint8Array {
  const nm = parseStructure(o);
  const norm = new Float64Array(C);
  for (let t = 0; t < N; t++) for (let j = 0; j < C; j++) norm[j] += X[t * C + j] ** 2;
  for (let j = 0; j < C; j++) norm[j] = Math.sqrt(norm[j]);
  const mask = new Uint8Array(R * C);
  const seg = nm ? nm.m : C, k = nm ? nm.n : refTargetCount(o.sparsity, C);
  for (let r = 0; r < R; r++) for (let c0 = 0; c0 < C; c0 += seg) {
    const S = Float64Array.from({ length: seg }, (_, j) => Math.abs(W[r * C + c0 + j]) * norm[c0 + j]);
    const sel = d.choose(S, k, forced?.subarray(r * C + c0, r * C + c0 + seg));
    for (let j = 0; j < seg; j++) if ((mask[r * C + c0 + j] = sel[j])) W[r * C + c0 + j] = 0;
  }
  return mask;
}

/** SparseGPT on the whole tiny model, sequential layer by layer (the input model is not modified). */
export function refSparseGPT(m: RefModel, calib: number[][], o: RefPeerOptions): RefPeerResult {
  return sequential(m, calib, o, (W, R, C, X, N, d, f) => refSparseGPTLinear(W, R, C, X, N, o, d, f));
}

/** Wanda on the whole tiny model, sequential layer by layer (the input model is not modified). */
export function refWanda(m: RefModel, calib: number[][], o: RefPeerOptions): RefPeerResult {
  return sequential(m, calib, o, (W, R, C, X, N, d, f) => refWandaLinear(W, R, C, X, N, o, d, f));
}
