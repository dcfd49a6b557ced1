/**
 * Small float64 dense helpers for the CPU references (row-major Float64Array, explicit dims).
 * Deliberately naive loops: these are ground truth for tiny shapes, not a fast path.
 */

import { ShapeError } from '../gpu/errors';

/** C (m×n) = A (m×k) · B (k×n). */
export function matmul(a: Float64Array, b: Float64Array, m: number, k: number, n: number): Float64Array {
  const c = new Float64Array(m * n);
  for (let i = 0; i < m; i++) {
    const ci = i * n;
    for (let p = 0; p < k; p++) {
      const aip = a[i * k + p];
      if (aip === 0) continue;
      const bp = p * n;
      for (let j = 0; j < n; j++) c[ci + j] += aip * b[bp + j];
    }
  }
  return c;
}

/** C (m×n) = A (m×k) · Bᵀ where B is n×k. */
export function matmulNT(a: Float64Array, b: Float64Array, m: number, k: number, n: number): Float64Array {
  const c = new Float64Array(m * n);
  for (let i = 0; i < m; i++) {
    for (let j = 0; j < n; j++) {
      let s = 0;
      for (let p = 0; p < k; p++) s += a[i * k + p] * b[j * k + p];
      c[i * n + j] = s;
    }
  }
  return c;
}

/** C (m×n) = Aᵀ · B where A is k×m and B is k×n. */
export function matmulTN(a: Float64Array, b: Float64Array, k: number, m: number, n: number): Float64Array {
  const c = new Float64Array(m * n);
  for (let p = 0; p < k; p++) {
    for (let i = 0; i < m; i++) {
      const api = a[p * m + i];
      if (api === 0) continue;
      for (let j = 0; j < n; j++) c[i * n + j] += api * b[p * n + j];
    }
  }
  return c;
}

/** Lower Cholesky factor L (n×n, LLᵀ = M) of an SPD matrix; throws ShapeError if M is not positive definite. */
export function cholesky(m: Float64Array, n: number): Float64Array {
  const l = new Float64Array(n * n);
  for (let j = 0; j < n; j++) {
    let d = m[j * n + j];
    for (let p = 0; p < j; p++) d -= l[j * n + p] * l[j * n + p];
    if (!(d > 0)) throw new ShapeError(`cholesky: matrix not positive definite at pivot ${j} (${d})`);
    const ljj = Math.sqrt(d);
    l[j * n + j] = ljj;
    for (let i = j + 1; i < n; i++) {
      let s = m[i * n + j];
      for (let p = 0; p < j; p++) s -= l[i * n + p] * l[j * n + p];
      l[i * n + j] = s / ljj;
    }
  }
  return l;
}

/** Solve M X = B (B is n×k) for SPD M via Cholesky. */
export function spdSolve(m: Float64Array, b: Float64Array, n: number, k: number): Float64Array {
  const l = cholesky(m, n);
  const x = Float64Array.from(b);
  for (let c = 0; c < k; c++) {
    for (let i = 0; i < n; i++) {
      let s = x[i * k + c];
      for (let p = 0; p < i; p++) s -= l[i * n + p] * x[p * k + c];
      x[i * k + c] = s / l[i * n + i];
    }
    for (let i = n - 1; i >= 0; i--) {
      let s = x[i * k + c];
      for (let p = i + 1; p < n; p++) s -= l[p * n + i] * x[p * k + c];
      x[i * k + c] = s / l[i * n + i];
    }
  }
  return x;
}

/** Inverse of an SPD matrix (Cholesky, then inverse from the factor), symmetrised. */
export function spdInverse(m: Float64Array, n: number): Float64Array {
  const eye = new Float64Array(n * n);
  for (let i = 0; i < n; i++) eye[i * n + i] = 1;
  const x = spdSolve(m, eye, n, n);
  for (let i = 0; i < n; i++) {
    for (let j = 0; j < i; j++) {
      const v = 0.5 * (x[i * n + j] + x[j * n + i]);
      x[i * n + j] = v;
      x[j * n + i] = v;
    }
  }
  return x;
}

/** Principal sub-matrix M[idx, idx] of an n×n matrix. */
export function subMatrix(m: Float64Array, n: number, idx: readonly number[]): Float64Array {
  const k = idx.length;
  const s = new Float64Array(k * k);
  for (let a = 0; a < k; a++) for (let b = 0; b < k; b++) s[a * k + b] = m[idx[a] * n + idx[b]];
  return s;
}

/** Deterministic PRNG (mulberry32), uniform in [0, 1). */
export function mulberry32(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** Standard normal sampler (Box–Muller) on top of a uniform source. */
export function normalSampler(u: () => number): () => number {
  return () => Math.sqrt(-2 * Math.log(Math.max(u(), 1e-300))) * Math.cos(2 * Math.PI * u());
}
