import { expect } from 'vitest';
import { planSplitK } from '../../src/kernels/matmul';

const EPS = 2 ** -23;

/**
 * Error model: any fp32 summation order of K products satisfies |ĉ − c| ≤ γ_K·|alpha|·Σ_k|a_ik b_kj|
 * with γ_K ≈ K·2⁻²⁴ (Higham); the alpha/bias/accumulate roundings add a few ulps of
 * mag = |alpha|·Σ|ab| + |bias| + |out| (not of the result, which may cancel). We allow
 * (K + 4)·eps·|alpha|·Σ|ab| + 4·eps·mag — a worst-case bound, so the test never flakes, while any
 * indexing bug gives O(1) errors. Returns the worst error / tolerance.
 */
export function checkMatmul(got: Float32Array, ref: { c: Float64Array; absSum: Float64Array; mag: Float64Array }, K: number, alpha: number, label: string): number {
  expect(got.length).toBe(ref.c.length);
  let worst = 0;
  for (let i = 0; i < ref.c.length; i++) {
    // K is the longest sequential run: the whole K, or with split-K kSplit + 2⌈log2 S⌉ (pairwise reduce).
    const tol = (K + 4) * EPS * Math.abs(alpha) * ref.absSum[i] + 4 * EPS * ref.mag[i] + 1e-30;
    const err = Math.abs(got[i] - ref.c[i]);
    if (!(err <= tol)) throw new Error(`${label}: element ${i} got ${got[i]}, want ${ref.c[i]} (tol ${tol})`);
    worst = Math.max(worst, err / tol);
  }
  return worst;
}

/** Longest sequential fp32 run of one output element with split-K forced to `splits` (see planSplitK). */
export function seqRun(K: number, splits?: number): number {
  if (!splits) return K;
  const p = planSplitK(1, 1, K, 1, 1, 1 << 30, splits);
  // The reduce's binary-counter tree: ≤ ⌊log2 S⌋ levels, then one add per further set bit of S.
  return p.kSplit + 2 * Math.ceil(Math.log2(p.splits));
}
