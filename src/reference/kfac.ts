/**
 * Float64 reference of the K-FAC factors of ALGORITHM.md §2, per prunable linear layer of any
 * reference model (OPT, Llama):
 *   A = (1/N) Σ_tokens a' a'ᵀ   (C1², a' = [a; 1] with a bias, a' = a without: C1 = C + 1 or C)
 *   G = (1/N) Σ_tokens g gᵀ     (R², g = ∂L/∂y)
 * N = total tokens over all sequences; L = mean CE of one sequence (positions 0..T-2), so the last
 * position has g = 0 but still enters A. Empirical Fisher (true next tokens) by default; with
 * `fisherSamples = k`, labels are drawn k times per sequence from the model's softmax and
 * G averages over the draws. Also the Frobenius balancing of the two factors.
 */

import { ShapeError } from '../gpu/errors';
import { matmulTN, mulberry32 } from './dense';
import { prunableLayers, refBackward, refForward, type RefModel } from './model';

/** A is C1×C1 with C1 = C + 1 when `bias` (ones feature last), else C×C. */
export interface KfacFactors { A: Float64Array; G: Float64Array; C: number; R: number; bias: boolean }

/** Gram accumulation acc += Xᵀ X · w for X of shape T×n. */
function addGram(acc: Float64Array, x: Float64Array, T: number, n: number, w: number): void {
  const g = matmulTN(x, x, T, n, n);
  for (let i = 0; i < acc.length; i++) acc[i] += w * g[i];
}

/** Append the ones column (bias feature): T×C → T×(C+1). */
export function withOnes(a: Float64Array, T: number, C: number): Float64Array {
  const out = new Float64Array(T * (C + 1));
  for (let t = 0; t < T; t++) {
    out.set(a.subarray(t * C, (t + 1) * C), t * (C + 1));
    out[t * (C + 1) + C] = 1;
  }
  return out;
}

/** Draw one label per position 0..T-2 from softmax(logits row). */
function sampleLabels(logits: Float64Array, T: number, V: number, u: () => number): number[] {
  const labels: number[] = [];
  for (let t = 0; t < T - 1; t++) {
    let mx = -Infinity;
    for (let v = 0; v < V; v++) mx = Math.max(mx, logits[t * V + v]);
    let z = 0;
    for (let v = 0; v < V; v++) z += Math.exp(logits[t * V + v] - mx);
    let r = u() * z, pick = V - 1;
    for (let v = 0; v < V; v++) {
      r -= Math.exp(logits[t * V + v] - mx);
      if (r < 0) { pick = v; break; }
    }
    labels.push(pick);
  }
  return labels;
}

/** K-FAC factors of every prunable layer (keys: HF module names, e.g. "model.decoder.layers.0.fc1"). Not balanced. */
export function refKfac(m: RefModel, seqs: number[][], opts: { fisherSamples?: number; seed?: number } = {}): Map<string, KfacFactors> {
  const k = opts.fisherSamples ?? 0;
  if (!Number.isInteger(k) || k < 0) throw new ShapeError(`refKfac: fisherSamples must be a non-negative integer, got ${k}`);
  if (seqs.length === 0) throw new ShapeError('refKfac: no calibration sequences');
  const u = mulberry32(opts.seed ?? 0);
  const layers = prunableLayers(m.cfg);
  const out = new Map<string, KfacFactors>();
  for (const { name, R, C, bias } of layers) out.set(name, { A: new Float64Array((bias ? C + 1 : C) ** 2), G: new Float64Array(R * R), C, R, bias });
  let N = 0;
  for (const ids of seqs) {
    const T = ids.length;
    N += T;
    const draws: (number[] | undefined)[] = [];
    if (k === 0) draws.push(undefined);
    else {
      const { logits } = refForward(m, ids);
      for (let s = 0; s < k; s++) draws.push(sampleLabels(logits, T, m.cfg.vocab, u));
    }
    draws.forEach((labels, s) => {
      const b = refBackward(m, ids, { labels });
      for (const { name, R, C, bias } of layers) {
        const f = out.get(name)!, a = b.layerInputs.get(name)!;
        if (s === 0) addGram(f.A, bias ? withOnes(a, T, C) : a, T, bias ? C + 1 : C, 1);
        addGram(f.G, b.outputGrads.get(name)!, T, R, 1 / draws.length);
      }
    });
  }
  for (const f of out.values()) {
    for (let i = 0; i < f.A.length; i++) f.A[i] /= N;
    for (let i = 0; i < f.G.length; i++) f.G[i] /= N;
  }
  return out;
}

/** §2 balancing: s = sqrt(‖A‖_F/‖G‖_F), G·s, A/s (product G⊗A unchanged); both zero if either norm is zero. New arrays. */
export function balanceFactors(A: Float64Array, G: Float64Array): { A: Float64Array; G: Float64Array } {
  const fro = (x: Float64Array): number => Math.sqrt(x.reduce((s, v) => s + v * v, 0));
  const na = fro(A), ng = fro(G);
  if (na === 0 || ng === 0) return { A: new Float64Array(A.length), G: new Float64Array(G.length) };
  const s = Math.sqrt(na / ng);
  return { A: A.map((v) => v / s), G: G.map((v) => v * s) };
}
