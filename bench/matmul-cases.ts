/** Matmul cases shared by the kernel benchmarks (bench/kernels.ts, bench/matmul-sweep.ts). */

/** Uniform in [-1, 1), a fixed LCG per seed (fast for 10⁸ values). */
export function randomF32(n: number, seed: number): Float32Array {
  const a = new Float32Array(n);
  let s = seed >>> 0;
  for (let i = 0; i < n; i++) {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    a[i] = s / 2 ** 31 - 1;
  }
  return a;
}

export interface MatmulCase { transA?: boolean; transB?: boolean; bias?: boolean; accumulate?: boolean }

/** One distinct matmul of the K-FAC pass: what it computes, op(A)·op(B) of M×N×K, and how often per pass. */
export interface KfacMatmul extends MatmulCase { what: string; M: number; N: number; K: number; calls: number }

/**
 * The matmuls one K-FAC forward+backward issues (src/model/kfac.ts: empirical Fisher, one backward, no
 * weight gradients; a sampled-label run repeats the backward and head rows per draw) for `rows` = B·T
 * tokens, hidden d, ffn f, vocab V, L layers. Forward linears: x·Wᵀ + b with W stored [out, in], out_proj
 * and fc2 accumulating into the residual (forward.ts). LM head: crossEntropy (xent.ts) in row chunks of
 * `chunk`: logits h·Eᵀ, then dHidden = dlogits·E (K = V, split-K). Backward: dy·W, k/v accumulating
 * into q's input gradient (backward.ts). Attention, LayerNorm and the gram (A, G) kernels use no matmul.
 */
export function kfacMatmuls(rows: number, d: number, f: number, V: number, L: number, chunkRows: number): KfacMatmul[] {
  const chunk = Math.min(chunkRows, rows);
  const full = Math.floor(rows / chunk), rest = rows - full * chunk;
  const lin = { transB: true, bias: true };
  const head = (M: number, calls: number): KfacMatmul[] => [
    { what: 'head logits', M, N: V, K: d, transB: true, calls },
    { what: 'head dhidden', M, N: d, K: V, calls },
  ];
  return [
    { what: 'fwd q/k/v', M: rows, N: d, K: d, ...lin, calls: 3 * L },
    { what: 'fwd out_proj+res', M: rows, N: d, K: d, ...lin, accumulate: true, calls: L },
    { what: 'fwd fc1', M: rows, N: f, K: d, ...lin, calls: L },
    { what: 'fwd fc2+res', M: rows, N: d, K: f, ...lin, accumulate: true, calls: L },
    ...head(chunk, full),
    ...(rest ? head(rest, 1) : []),
    { what: 'bwd fc2', M: rows, N: f, K: d, calls: L },
    { what: 'bwd fc1', M: rows, N: d, K: f, calls: L },
    { what: 'bwd out_proj/q', M: rows, N: d, K: d, calls: 2 * L },
    { what: 'bwd k/v (+=)', M: rows, N: d, K: d, accumulate: true, calls: 2 * L },
  ];
}

/** 'C+=Aᵀ·B+b'-style label of a case's options. */
export function opLabel(c: MatmulCase): string {
  return `${c.accumulate ? 'C+=' : ''}${c.transA ? 'Aᵀ' : 'A'}·${c.transB ? 'Bᵀ' : 'B'}${c.bias ? '+b' : ''}`;
}
