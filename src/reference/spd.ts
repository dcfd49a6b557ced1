/**
 * Float64 references for the SPD kernel family (cholesky.ts, spd.ts): Cholesky, triangular solves,
 * SPD solve and inverse, and generators of test matrices with a chosen condition number or with the
 * shape of a K-FAC activation factor. Row-major Float64Array, batch-free; pure CPU.
 */

import { mulberry32 } from './dense';

/** Lower Cholesky factor of the lower triangle of a (n×n); `fail` = first pivot ≤ 0 or NaN (−1 if none). */
export function choleskyF64(a: ArrayLike<number>, n: number): { L: Float64Array; fail: number } {
  const L = new Float64Array(n * n);
  for (let j = 0; j < n; j++) {
    let d = a[j * n + j];
    for (let p = 0; p < j; p++) d -= L[j * n + p] * L[j * n + p];
    if (!(d > 0)) return { L, fail: j };
    const r = Math.sqrt(d);
    L[j * n + j] = r;
    for (let i = j + 1; i < n; i++) {
      let s = a[i * n + j];
      for (let p = 0; p < j; p++) s -= L[i * n + p] * L[j * n + p];
      L[i * n + j] = s / r;
    }
  }
  return { L, fail: -1 };
}

/** Solve L·X = B (transpose: Lᵀ·X = B) for lower-triangular L (n×n), B n×k. */
export function trsmF64(L: ArrayLike<number>, b: ArrayLike<number>, n: number, k: number, transpose = false): Float64Array {
  const x = Float64Array.from(b);
  for (let c = 0; c < k; c++) {
    if (!transpose) {
      for (let i = 0; i < n; i++) {
        let s = x[i * k + c];
        for (let p = 0; p < i; p++) s -= L[i * n + p] * x[p * k + c];
        x[i * k + c] = s / L[i * n + i];
      }
    } else {
      for (let i = n - 1; i >= 0; i--) {
        let s = x[i * k + c];
        for (let p = i + 1; p < n; p++) s -= L[p * n + i] * x[p * k + c];
        x[i * k + c] = s / L[i * n + i];
      }
    }
  }
  return x;
}

function factor(a: ArrayLike<number>, n: number): Float64Array {
  const { L, fail } = choleskyF64(a, n);
  if (fail >= 0) throw new Error(`reference: matrix not positive definite at pivot ${fail}`);
  return L;
}

/** M⁻¹·B for SPD M (n×n), B n×k. */
export function spdSolveF64(m: ArrayLike<number>, b: ArrayLike<number>, n: number, k: number): Float64Array {
  const L = factor(m, n);
  return trsmF64(L, trsmF64(L, b, n, k), n, k, true);
}

/** M⁻¹ = L⁻ᵀ·L⁻¹ for SPD M (n×n). */
export function spdInverseF64(m: ArrayLike<number>, n: number): Float64Array {
  const L = factor(m, n);
  const W = new Float64Array(n * n); // L⁻¹, lower
  for (let c = 0; c < n; c++) {
    for (let i = c; i < n; i++) {
      let s = i === c ? 1 : 0;
      for (let p = c; p < i; p++) s -= L[i * n + p] * W[p * n + c];
      W[i * n + c] = s / L[i * n + i];
    }
  }
  const X = new Float64Array(n * n);
  for (let i = 0; i < n; i++) {
    for (let j = 0; j <= i; j++) {
      let s = 0;
      for (let p = i; p < n; p++) s += W[p * n + i] * W[p * n + j];
      X[i * n + j] = s;
      X[j * n + i] = s;
    }
  }
  return X;
}

/** M + λ·mean(diag M)·I, with the shift rounded to f32 like the GPU (dampInPlace). */
export function dampF64(m: ArrayLike<number>, n: number, lambda: number): Float64Array {
  const out = Float64Array.from(m);
  let s = 0;
  for (let i = 0; i < n; i++) s += m[i * n + i];
  const add = Math.fround((lambda * s) / n);
  for (let i = 0; i < n; i++) out[i * n + i] = Math.fround(out[i * n + i] + add);
  return out;
}

/** ‖A‖_F. */
export function frobenius(a: ArrayLike<number>): number {
  let s = 0;
  for (let i = 0; i < a.length; i++) s += a[i] * a[i];
  return Math.sqrt(s);
}

/** 1-norm condition number ‖A‖₁·‖A⁻¹‖₁ from A and its inverse. */
export function cond1(a: ArrayLike<number>, inv: ArrayLike<number>, n: number): number {
  const norm1 = (m: ArrayLike<number>) => {
    let best = 0;
    for (let j = 0; j < n; j++) {
      let s = 0;
      for (let i = 0; i < n; i++) s += Math.abs(m[i * n + j]);
      best = Math.max(best, s);
    }
    return best;
  };
  return norm1(a) * norm1(inv);
}

function gaussian(seed: number): () => number {
  const u = mulberry32(seed);
  return () => Math.sqrt(-2 * Math.log(Math.max(u(), 1e-300))) * Math.cos(2 * Math.PI * u());
}

/**
 * SPD matrix Q·diag(λ)·Qᵀ with Q Haar-like orthogonal (modified Gram–Schmidt of a Gaussian matrix)
 * and λ log-spaced from 1 down to 1/cond (condition number `cond` in float64; rounding to f32 moves
 * the smallest eigenvalues by about 1e-7·√n, so above ~1e7 the f32 matrix is less well defined).
 */
export function spdWithCondition(n: number, cond: number, seed: number): Float64Array {
  const g = gaussian(seed);
  const Q = new Float64Array(n * n); // columns are the vectors, stored column-major in rows of Q: Q[j*n+i]
  for (let i = 0; i < n * n; i++) Q[i] = g();
  for (let j = 0; j < n; j++) {
    const qj = Q.subarray(j * n, (j + 1) * n);
    for (let pass = 0; pass < 2; pass++) {
      for (let p = 0; p < j; p++) {
        const qp = Q.subarray(p * n, (p + 1) * n);
        let d = 0;
        for (let i = 0; i < n; i++) d += qp[i] * qj[i];
        for (let i = 0; i < n; i++) qj[i] -= d * qp[i];
      }
    }
    const nr = Math.hypot(...qj);
    for (let i = 0; i < n; i++) qj[i] /= nr;
  }
  const lam = Float64Array.from({ length: n }, (_, j) => (n === 1 ? 1 : Math.pow(cond, -j / (n - 1))));
  const A = new Float64Array(n * n);
  for (let p = 0; p < n; p++) {
    const qp = Q.subarray(p * n, (p + 1) * n);
    const l = lam[p];
    for (let i = 0; i < n; i++) {
      const li = l * qp[i];
      for (let j = 0; j <= i; j++) A[i * n + j] += li * qp[j];
    }
  }
  for (let i = 0; i < n; i++) for (let j = 0; j < i; j++) A[j * n + i] = A[i * n + j];
  return A;
}

export interface KfacShapedOptions {
  /** Tokens N (default 4n). */
  tokens?: number;
  /** Number of outlier channels (default 4) and their scale (default 30). */
  outliers?: number;
  outlierScale?: number;
  seed?: number;
}

/**
 * A = XᵀX/N for N random "activations" X (N×n): Gaussian channels with per-channel offsets and
 * scales, a few large outlier channels (as in LLM activations), and a last column of ones (the bias
 * feature of ALGORITHM.md §2). Condition numbers of 1e4–1e7 arise naturally.
 */
export function kfacShaped(n: number, opts: KfacShapedOptions = {}): Float64Array {
  const N = opts.tokens ?? 4 * n;
  const g = gaussian(opts.seed ?? 1);
  const u = mulberry32((opts.seed ?? 1) + 7);
  const c = n - 1; // channels without the ones column
  const scale = Float64Array.from({ length: c }, () => 0.3 + u());
  const offset = Float64Array.from({ length: c }, () => 0.5 * g());
  const nOut = Math.min(opts.outliers ?? 4, c);
  for (let q = 0; q < nOut; q++) scale[Math.floor(u() * c)] *= opts.outlierScale ?? 30;
  const row = new Float64Array(n);
  const A = new Float64Array(n * n);
  for (let t = 0; t < N; t++) {
    for (let j = 0; j < c; j++) row[j] = scale[j] * (offset[j] + g());
    row[c] = 1;
    for (let i = 0; i < n; i++) {
      const ri = row[i];
      for (let j = 0; j <= i; j++) A[i * n + j] += ri * row[j];
    }
  }
  for (let i = 0; i < n; i++) {
    for (let j = 0; j <= i; j++) {
      A[i * n + j] /= N;
      A[j * n + i] = A[i * n + j];
    }
  }
  return A;
}
