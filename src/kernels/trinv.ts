/**
 * Inverse of a lower-triangular matrix, W = L⁻¹, by recursive doubling with every level batched:
 *   1. all NB×NB diagonal blocks at once (diagSolve on the identity, one dispatch);
 *   2. for block size s = NB, 2·NB, …: every aligned pair of finished s-blocks [A 0; B C] becomes one
 *      2s-block through W_CA = −W_CC·(B·W_AA), two GEMMs for all pairs of the level (trsm.wgsl GEMM,
 *      pairs batched through the grid's z), plus two for the clipped last pair when n is not a
 *      multiple of 2s.
 * ≈ 4·log2(n/NB) dispatches instead of the 2·n/NB of a blocked forward solve of L·W = I (the
 * dispatch count, not the n³/6 multiply-adds, dominates at n ≤ 4096 on a fast GPU), and the
 * products are large (s up to n/2). Error: like the blocked solve, ~κ(L)·u normwise (spd.ts corrects
 * it with H = I − W·L).
 */

import type { GpuContext } from '../gpu/context';
import type { Tensor } from '../gpu/tensor';
import { diagSolve, eye, gemmWindow, NB, squareDims } from './cholesky';

/** W = L⁻¹ for lower-triangular L ([n,n] or [batch,n,n]; only the lower triangle is read). Upper part of W is 0. */
export function triangularInverse(ctx: GpuContext, L: Tensor): Tensor {
  const { n, batch } = squareDims('triangularInverse', L);
  const nn = n * n;
  const W = eye(ctx, L.shape);
  const blocks = Math.ceil(n / NB);
  const diagStep = NB * (n + 1);
  diagSolve(ctx, L, W, batch, {
    nb: NB, count: NB, trans: false, offL: 0, ldL: n, strideL: nn, offX: 0, sj: n, sc: 1, strideX: nn,
    pairs: blocks, pstrideL: diagStep, pstrideX: diagStep, nbEnd: n,
  });
  for (let s = NB; s < n; s *= 2) {
    const full = Math.floor(n / (2 * s));
    const rest = n - 2 * s * full - s; // rows of C in the clipped last pair (≤ 0: none)
    const step = 2 * s * (n + 1);
    const groups: Array<[number, number, number]> = [[0, full, s]];
    if (rest > 0) groups.push([full, 1, rest]);
    for (const [p0, pairs, c] of groups) {
      if (pairs === 0) continue;
      const a0 = 2 * s * p0;
      const c0 = a0 + s;
      const T = ctx.empty([batch * pairs * c * s]);
      const tw = { t: T, off: 0, ld: s, stride: pairs * c * s, pstride: c * s };
      const dims = { M: c, N: s, batch, pairs };
      // T = B·W_AA (W_AA lower: k ≥ j)
      gemmWindow(ctx, { t: L, off: c0 * n + a0, ld: n, stride: nn, pstride: step }, { t: W, off: a0 * (n + 1), ld: n, stride: nn, pstride: step },
        tw, { ...dims, K: s }, { bLower: true, label: 'trinv' });
      // W_CA = −W_CC·T (W_CC lower: k ≤ i)
      gemmWindow(ctx, { t: W, off: c0 * (n + 1), ld: n, stride: nn, pstride: step }, tw,
        { t: W, off: c0 * n + a0, ld: n, stride: nn, pstride: step }, { ...dims, K: c }, { alpha: -1, aLower: true, label: 'trinv' });
      T.dispose();
    }
  }
  return W;
}
