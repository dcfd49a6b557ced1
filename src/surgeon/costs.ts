/**
 * §4 costs on the GPU.
 *  - structured: row q_r = w_rᵀ A w_r (rowSums((W_l·A_l) ∘ W_l)), column q_c = w_cᵀ G w_c
 *    (colSums((G_l·W_l) ∘ W_l)), magnitude ‖w‖², on the live sub-problem; finalised per method and
 *    scattered into one [Σ (R + C1)] buffer (dead units 0) that is read back once per shot.
 *  - element: one [R, C1] cost tensor per layer from W' and per-row/per-column factors (0 = dead).
 */

import type { GpuContext } from '../gpu/context';
import type { Tensor } from '../gpu/tensor';
import { mul } from '../kernels/elementwise';
import { matmul } from '../kernels/matmul';
import { diagScatter, elementCost, rowColFinal } from '../kernels/obs';
import { colSums, rowSums } from '../kernels/reduce';
import type { LayerProblem } from './curvature';
import type { Method } from './options';

/** Offsets of each layer's [row R | col C1] block in the structured cost buffer. */
export function rowColOffsets(probs: readonly LayerProblem[]): { offs: number[]; size: number } {
  const offs: number[] = [];
  let size = 0;
  for (const p of probs) { offs.push(size); size += p.R + p.C1; }
  return { offs, size };
}

/** Row and column costs of every layer into one buffer (read it back once). */
export function rowColCosts(ctx: GpuContext, probs: readonly LayerProblem[], method: Method): Tensor {
  const { offs, size } = rowColOffsets(probs);
  const out = ctx.zeros([Math.max(1, size)]);
  probs.forEach((p, l) => {
    if (!p.Wl || !p.lr || !p.lc) return;
    const Wl = p.Wl, o = offs[l];
    let qr: Tensor, qc: Tensor;
    if (method === 'magnitude') qr = rowSums(ctx, Wl, { squares: true });
    else {
      const WA = matmul(ctx, Wl, p.Al!);
      const h = mul(ctx, WA, Wl);
      qr = rowSums(ctx, h);
      WA.dispose(); h.dispose();
    }
    if (method === 'magnitude' || method === 'lobd') qc = colSums(ctx, Wl, { squares: true });
    else {
      const GW = matmul(ctx, p.Gl!, Wl);
      const h = mul(ctx, GW, Wl);
      qc = colSums(ctx, h);
      GW.dispose(); h.dispose();
    }
    switch (method) {
      case 'surgeon':
        rowColFinal(ctx, qr, p.Ginv!, p.lr, out, o, 'divide-diag');
        rowColFinal(ctx, qc, p.Ainv!, p.lc, out, o + p.R, 'divide-diag');
        break;
      case 'kobd':
        rowColFinal(ctx, qr, p.Gl!, p.lr, out, o, 'times-diag');
        rowColFinal(ctx, qc, p.Al!, p.lc, out, o + p.R, 'times-diag');
        break;
      case 'lobd':
        rowColFinal(ctx, qr, qr, p.lr, out, o, 'half');
        rowColFinal(ctx, qc, p.Al!, p.lc, out, o + p.R, 'times-diag');
        break;
      default:
        rowColFinal(ctx, qr, qr, p.lr, out, o, 'sqrt');
        rowColFinal(ctx, qc, qc, p.lc, out, o + p.R, 'sqrt');
    }
    qr.dispose(); qc.dispose();
  });
  return out;
}

/** Per-layer element costs [R, C1] (0 on dead units). */
export function elementCosts(ctx: GpuContext, probs: readonly LayerProblem[], method: Method): Tensor[] {
  return probs.map((p) => {
    const { R, C1 } = p;
    let rf: Tensor, cf: Tensor;
    if (method === 'surgeon' && p.Ginv && p.Ainv && p.lr && p.lc) {
      rf = ctx.zeros([R]); cf = ctx.zeros([C1]);
      diagScatter(ctx, p.Ginv, p.lr, rf);
      diagScatter(ctx, p.Ainv, p.lc, cf);
    } else {
      // live flags times the K-OBD / L-OBD factors (magnitude: 1); surgeon without a live block: all dead.
      const hr = new Float32Array(R), hc = new Float32Array(C1);
      if (method !== 'surgeon') {
        for (const r of p.liveRows) hr[r] = method === 'kobd' ? p.diagG![r] : 1;
        for (const c of p.liveCols) hc[c] = method === 'kobd' || method === 'lobd' ? p.diagA![c] : 1;
      }
      rf = ctx.upload(hr); cf = ctx.upload(hc);
    }
    const cost = elementCost(ctx, p.Wp, rf, cf, method === 'surgeon' ? 'divide' : 'multiply');
    rf.dispose(); cf.dispose();
    return cost;
  });
}
