/** Float64 CPU references for dense linear algebra (row-major). Pure functions; used by tests only. */

export interface MatmulRefOptions {
  transA?: boolean;
  transB?: boolean;
  bias?: ArrayLike<number>;
  /** Previous output, added when given (accumulate). */
  out?: ArrayLike<number>;
  alpha?: number;
}

/**
 * C = alpha·op(A)·op(B) + bias + out for one matrix. a stored [M,K] (or [K,M] with transA), b stored
 * [K,N] (or [N,K] with transB). Also returns `absSum[i,j] = Σ_k |a_ik b_kj|`, the scale of the
 * rounding error of any summation order, and `mag[i,j] = |alpha|·absSum + |bias_j| + |out_ij|`, the scale
 * of the epilogue roundings (error model: |ĉ − c| ≤ γ_K·|alpha|·absSum + few·eps·mag).
 */
export function matmulRef(
  a: ArrayLike<number>, b: ArrayLike<number>, M: number, K: number, N: number, opts: MatmulRefOptions = {},
): { c: Float64Array; absSum: Float64Array; mag: Float64Array } {
  const c = new Float64Array(M * N);
  const absSum = new Float64Array(M * N);
  const mag = new Float64Array(M * N);
  const alpha = opts.alpha ?? 1;
  for (let i = 0; i < M; i++) {
    for (let j = 0; j < N; j++) {
      let s = 0;
      let s1 = 0;
      for (let k = 0; k < K; k++) {
        const x = opts.transA ? a[k * M + i] : a[i * K + k];
        const y = opts.transB ? b[j * K + k] : b[k * N + j];
        s += x * y;
        s1 += Math.abs(x * y);
      }
      let v = alpha * s;
      let m = Math.abs(alpha) * s1;
      if (opts.bias) { v += opts.bias[j]; m += Math.abs(opts.bias[j]); }
      if (opts.out) { v += opts.out[i * N + j]; m += Math.abs(opts.out[i * N + j]); }
      c[i * N + j] = v;
      absSum[i * N + j] = s1;
      mag[i * N + j] = m;
    }
  }
  return { c, absSum, mag };
}

/**
 * Lower triangle of scale·X'ᵀX' for X [T,d] (first `rows` rows used), X' = [X | 1] when ones.
 * Returns the full d'×d' matrix (upper triangle filled by symmetry) and Σ_t |x'_ti x'_tj|.
 */
export function gramRef(
  x: ArrayLike<number>, T: number, d: number, opts: { ones?: boolean; scale?: number; rows?: number } = {},
): { g: Float64Array; absSum: Float64Array; n: number } {
  const rows = opts.rows ?? T;
  const scale = opts.scale ?? 1;
  const n = d + (opts.ones ? 1 : 0);
  const g = new Float64Array(n * n);
  const absSum = new Float64Array(n * n);
  const at = (t: number, i: number) => (i < d ? x[t * d + i] : 1);
  for (let i = 0; i < n; i++) {
    for (let j = 0; j <= i; j++) {
      let s = 0;
      let s1 = 0;
      for (let t = 0; t < rows; t++) {
        const p = at(t, i) * at(t, j);
        s += p;
        s1 += Math.abs(p);
      }
      g[i * n + j] = g[j * n + i] = scale * s;
      absSum[i * n + j] = absSum[j * n + i] = Math.abs(scale) * s1;
    }
  }
  return { g, absSum, n };
}
