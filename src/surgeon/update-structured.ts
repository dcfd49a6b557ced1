/**
 * §6 structured OBS update of one layer's live sub-problem, all removed rows (and all removed columns)
 * correlated, both from the same original W_l:
 *   rows:    X = (G⁻¹_RR)⁻¹ W_l[R,:],     W_l −= G⁻¹[:,R]·X
 *   columns: Y = (A⁻¹_CC)⁻¹ A⁻¹[C,:],     W_l −= W_l[:,C]·Y
 * (independent: the inner inverses replaced by their diagonals). The |R|×|R| and |C|×|C| solves go
 * through spdSolve (f32 Cholesky + double-float refinement). The caller scatters W_l back into W' and
 * zeroes the removed rows and columns exactly. With a signal, the abort is checked before the solves are
 * queued and again when they are done, before the W_l products (PruneAbortedError).
 */

import type { GpuContext } from '../gpu/context';
import type { Tensor } from '../gpu/tensor';
import { gather2d } from '../kernels/gather';
import { matmul } from '../kernels/matmul';
import { divideRows } from '../kernels/obs';
import { spdSolve } from '../kernels/spd';
import type { LayerProblem } from './curvature';
import { PruneAbortedError } from './options';

/** Local (live) indices of the selected live units. */
export function selectedLocal(live: readonly number[], sel: Uint8Array): number[] {
  const out: number[] = [];
  live.forEach((g, i) => { if (sel[g]) out.push(i); });
  return out;
}

/**
 * Queue the update of p.Wl for the selected rows/columns (global numbering in rowSel/colSel) and
 * return the new W_l (the old one is disposed). Awaits the pivot checks of its two solves only.
 */
export async function structuredUpdate(ctx: GpuContext, p: LayerProblem, rowSel: Uint8Array, colSel: Uint8Array, independent: boolean, signal?: AbortSignal): Promise<void> {
  const Wl = p.Wl, Ginv = p.Ginv, Ainv = p.Ainv;
  if (!Wl || !Ginv || !Ainv) return;
  const check = (when: string): void => { if (signal?.aborted) throw new PruneAbortedError(`${when} the structured update of ${p.L.name}`); };
  check('before');
  const nr = p.liveRows.length, nc = p.liveCols.length;
  const Rl = selectedLocal(p.liveRows, rowSel), Cl = selectedLocal(p.liveCols, colSel);
  if (Rl.length === 0 && Cl.length === 0) return;
  const owned: Tensor[] = [];
  const keep = <T extends Tensor>(t: T): T => { owned.push(t); return t; };
  try {
    const ri = Rl.length ? keep(ctx.upload(Uint32Array.from(Rl))) : null;
    const ci = Cl.length ? keep(ctx.upload(Uint32Array.from(Cl))) : null;
    // Both solves are queued before either pivot check is awaited.
    let rows: Promise<Tensor> | undefined, cols: Promise<Tensor> | undefined;
    let Gcols: Tensor | undefined, Wcols: Tensor | undefined;
    if (ri) {
      const k = Rl.length;
      const B = keep(gather2d(ctx, Wl, { rows: ri, nR: k, cols: null, nC: nc }));
      const M = keep(gather2d(ctx, Ginv, { rows: ri, nR: k, cols: ri, nC: k }));
      rows = independent ? Promise.resolve(divideRows(ctx, B, M)) : spdSolve(ctx, M, B);
      Gcols = keep(gather2d(ctx, Ginv, { rows: null, nR: nr, cols: ri, nC: k }));
    }
    if (ci) {
      const k = Cl.length;
      const B = keep(gather2d(ctx, Ainv, { rows: ci, nR: k, cols: null, nC: nc }));
      const M = keep(gather2d(ctx, Ainv, { rows: ci, nR: k, cols: ci, nC: k }));
      cols = independent ? Promise.resolve(divideRows(ctx, B, M)) : spdSolve(ctx, M, B);
      Wcols = keep(gather2d(ctx, Wl, { rows: null, nR: nr, cols: ci, nC: k }));
    }
    const [X, Y] = await Promise.all([rows, cols]);
    if (X) keep(X);
    if (Y) keep(Y);
    // The layers are updated one after another (surgeon/shot.ts); after an abort this layer queues no
    // products and does not touch p.Wl, which the caller may already have disposed.
    check('during');
    const out = ctx.empty([nr, nc]);
    ctx.copy(Wl, out);
    if (X) matmul(ctx, Gcols!, X, { out, accumulate: true, alpha: -1 });
    if (Y) matmul(ctx, Wcols!, Y, { out, accumulate: true, alpha: -1 });
    Wl.dispose();
    p.Wl = out;
  } finally {
    for (const t of owned) t.dispose();
  }
}
