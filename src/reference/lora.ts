/**
 * Float64 reference of the low-rank corrections (src/surgeon/lora.ts, ALGORITHM.md §8) on a RefModel
 * (OPT or Llama; adapters act on W only, biases stay as they are):
 * W_eff = W0 + M∘(s·B·A) with M = (W0 ≠ 0); per step the mean over the batch's windows of the
 * per-sequence mean CE, ∂L/∂B = s·(M∘∂L/∂W_eff)·Aᵀ, ∂L/∂A = s·Bᵀ·(M∘∂L/∂W_eff), bias-corrected Adam.
 * Deliberately plain: the gradient comes from refBackward of the full model for every window.
 */

import { matmul, matmulNT, matmulTN } from './dense';
import { refBackward, type RefModel } from './model';

export interface RefLoraConfig {
  rank: number;
  /** s = alpha / rank. */
  scale: number;
  lr: number;
  beta1?: number;
  beta2?: number;
  eps?: number;
}

export interface RefAdapter {
  name: string; R: number; C: number;
  W0: Float64Array;
  A: Float64Array; B: Float64Array; mA: Float64Array; vA: Float64Array; mB: Float64Array; vB: Float64Array;
}

/** One bias-corrected Adam step (t ≥ 1) in place on p, m, v. */
export function refAdam(p: Float64Array, g: ArrayLike<number>, m: Float64Array, v: Float64Array, t: number, lr: number, b1 = 0.9, b2 = 0.999, eps = 1e-8): void {
  const bc1 = 1 - b1 ** t, bc2 = 1 - b2 ** t;
  for (let i = 0; i < p.length; i++) {
    m[i] = b1 * m[i] + (1 - b1) * g[i];
    v[i] = b2 * v[i] + (1 - b2) * g[i] * g[i];
    p[i] -= (lr * (m[i] / bc1)) / (Math.sqrt(v[i] / bc2) + eps);
  }
}

/** Adapters on `targets` of m (W0 = the current weights), A from A0 (r×C each), B and the moments 0. */
export function refLoraInit(m: RefModel, targets: { name: string; R: number; C: number }[], A0: ArrayLike<number>[], rank: number): RefAdapter[] {
  return targets.map(({ name, R, C }, i) => ({
    name, R, C, W0: Float64Array.from(m.w.get(`${name}.weight`)!),
    A: Float64Array.from(A0[i]), B: new Float64Array(R * rank),
    mA: new Float64Array(rank * C), vA: new Float64Array(rank * C), mB: new Float64Array(R * rank), vB: new Float64Array(R * rank),
  }));
}

/** A copy of m whose adapted weights are W0 + M∘(s·B·A) (also the absorbed model after training). */
export function refMerged<M extends RefModel>(m: M, adapters: RefAdapter[], cfg: RefLoraConfig): M {
  const w = new Map(m.w);
  for (const a of adapters) {
    const d = matmul(a.B, a.A, a.R, cfg.rank, a.C);
    w.set(`${a.name}.weight`, a.W0.map((x, i) => (x !== 0 ? x + cfg.scale * d[i] : x)));
  }
  return { ...m, w };
}

/** One Adam step (t = step number, 1-based) on a batch of windows; returns the batch's mean loss at the pre-step weights. */
export function refLoraStep(m: RefModel, adapters: RefAdapter[], seqs: number[][], t: number, cfg: RefLoraConfig): { loss: number } {
  const eff = refMerged(m, adapters, cfg);
  const dW = new Map(adapters.map((a) => [a.name, new Float64Array(a.R * a.C)]));
  let loss = 0;
  for (const s of seqs) {
    const b = refBackward(eff, s);
    loss += b.loss / seqs.length;
    for (const a of adapters) {
      const g = b.dW.get(`${a.name}.weight`)!, acc = dW.get(a.name)!;
      for (let i = 0; i < acc.length; i++) acc[i] += a.W0[i] !== 0 ? g[i] / seqs.length : 0;
    }
  }
  const r = cfg.rank;
  for (const a of adapters) {
    const g = dW.get(a.name)!;
    const gB = matmulNT(g, a.A, a.R, a.C, r).map((x) => cfg.scale * x); // R×r
    const gA = matmulTN(a.B, g, a.R, r, a.C).map((x) => cfg.scale * x); // r×C
    refAdam(a.A, gA, a.mA, a.vA, t, cfg.lr, cfg.beta1, cfg.beta2, cfg.eps);
    refAdam(a.B, gB, a.mB, a.vB, t, cfg.lr, cfg.beta1, cfg.beta2, cfg.eps);
  }
  return { loss };
}
