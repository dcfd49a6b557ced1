/**
 * §6 element / N:M OBS update of one layer's live sub-problem, chunked and correlated:
 * Q = selected live entries in row-major order (compacted on the GPU from the mask), cut on the host
 * into chunks of whole rows with ≤ maxChunk entries from the read-back per-row counts. Per chunk:
 *   S = G⁻¹[Qr,Qr] ∘ A⁻¹[Qc,Qc],  x = S⁻¹ (w_Q + E_Q)   (f32 Cholesky + two triangular solves)
 *   Y = X_rows·A⁻¹ (X_rows: x scattered into the chunk's row range),  E −= G⁻¹[rows,:]ᵀ·Y
 * so later chunks see earlier chunks' updates; finally W_l + E. Independent (maxCorrelate = 1):
 * x_q = w_q/(G⁻¹_ii A⁻¹_jj) for all entries at once, E = −G⁻¹·(X·A⁻¹).
 * No readback: each chunk's Cholesky pivot flag is collected and checked once per shot. With an abort
 * signal the chunk loop waits for the GPU every PACE_CHUNKS chunks (QueuePacer), so a cancel is seen
 * after at most ~2·PACE_CHUNKS queued chunks instead of after the whole shot's updates.
 * Precision: x carries the f32 Cholesky error ~κ(S)·2⁻²⁴ relative (no refinement); S is damped
 * through G⁻¹, A⁻¹, so κ(S) ≤ κ(G_λ)·κ(A_λ) and in practice far smaller.
 */

import type { GpuContext } from '../gpu/context';
import type { Tensor } from '../gpu/tensor';
import { cholesky, NotPositiveDefiniteError, trsm } from '../kernels/cholesky';
import { add } from '../kernels/elementwise';
import { compactMask, gather2d } from '../kernels/gather';
import { matmul } from '../kernels/matmul';
import { buildS, gatherEntries, scatterEntries } from '../kernels/obs';
import { rowSums } from '../kernels/reduce';
import type { LayerProblem } from './curvature';
import { PruneAbortedError } from './options';
import { planChunks } from './threshold';

// Chunks per paced group. One chunk ≈ 10 dispatches: 8 one-row chunks ≈ 0.05–0.1 s on SwiftShader here;
// a submit + wait round trip is ~0.1 ms (SwiftShader), and the group queued behind it hides the wait.
const PACE_CHUNKS = 8;

/**
 * Abort checks for loops that only record GPU work. With a signal, step() (before each unit of work)
 * checks it, and every `every` units submits and awaits the group submitted before, so at most two
 * groups are queued at a check and the GPU does not idle on the wait (as accumulateKfac's batches).
 * Without a signal it does nothing: no extra submits or waits.
 */
export class QueuePacer {
  private units = 0;
  private inFlight: Promise<unknown> | undefined;
  private lost: Promise<never> | undefined;
  constructor(private readonly ctx: GpuContext, readonly signal: AbortSignal | undefined, private readonly every: number) {}

  check(where: () => string): void {
    if (this.signal?.aborted) throw new PruneAbortedError(where());
  }

  async step(where: () => string): Promise<void> {
    if (!this.signal) return;
    this.check(where);
    if (++this.units % this.every !== 0) return;
    const { ctx } = this;
    ctx.flush();
    if (!this.lost) {
      this.lost = ctx.gpu.lost.then((e) => Promise.reject(e));
      this.lost.catch(() => undefined); // observed through the race below
    }
    const done = Promise.race([ctx.device.queue.onSubmittedWorkDone(), this.lost]);
    done.catch(() => undefined); // awaited at the next group, or dropped on an abort
    const prev = this.inFlight;
    this.inFlight = done;
    if (prev) await prev;
    this.check(where);
  }
}

/**
 * Per-shot checks of the chunk updates: the pivot flags of the chunk factorizations, checked with one
 * readback, and (with a signal) the abort before every chunk, the queue bounded by a QueuePacer.
 */
export class PivotChecks {
  private infos: Tensor[] = [];
  private pacer: QueuePacer | undefined;
  constructor(private readonly signal?: AbortSignal) {}
  add(t: Tensor): void { this.infos.push(t); }
  /** Before each chunk (shared by all layers of the shot, so short layers still count towards a group). */
  step(ctx: GpuContext, where: () => string): Promise<void> {
    this.pacer ??= new QueuePacer(ctx, this.signal, PACE_CHUNKS);
    return this.pacer.step(where);
  }
  async check(ctx: GpuContext): Promise<void> {
    if (this.infos.length === 0) return;
    const all = ctx.empty([this.infos.length], 'u32');
    this.infos.forEach((t, i) => ctx.copy(t, all, 0, i * 4, 4));
    for (const t of this.infos) t.dispose();
    this.infos = [];
    const v = await ctx.readU32(all);
    all.dispose();
    const bad = v.findIndex((x) => x !== 0);
    if (bad >= 0) throw new NotPositiveDefiniteError(v[bad] - 1, bad);
  }
  dispose(): void { for (const t of this.infos) t.dispose(); this.infos = []; }
}

/**
 * Live masks W-sized → [nr, nc] per layer and their row counts, all counts in one buffer
 * (offsets = cumulative live rows) so the caller reads them back once.
 */
export function liveMasks(ctx: GpuContext, probs: readonly LayerProblem[], masks: readonly Tensor[]): { live: (Tensor | null)[]; counts: Tensor; offs: number[] } {
  const offs: number[] = [];
  let size = 0;
  for (const p of probs) { offs.push(size); size += p.liveRows.length; }
  const counts = ctx.zeros([Math.max(1, size)]);
  const live = probs.map((p, l) => {
    if (!p.Wl || !p.lr || !p.lc) return null;
    const nr = p.liveRows.length;
    const m = gather2d(ctx, masks[l], { rows: p.lr, nR: nr, cols: p.lc, nC: p.liveCols.length });
    const c = rowSums(ctx, m);
    ctx.copy(c, counts, 0, offs[l] * 4, nr * 4);
    c.dispose();
    return m;
  });
  return { live, counts, offs };
}

/**
 * Queue the chunked update of p.Wl for the entries of `maskL` ([nr, nc]); `counts` = its row counts (host).
 * Resolves once every chunk is queued; throws PruneAbortedError between chunks (pivots' signal).
 */
export async function elementUpdate(ctx: GpuContext, p: LayerProblem, maskL: Tensor, counts: Float32Array, maxChunk: number, independent: boolean, pivots: PivotChecks): Promise<void> {
  const Wl = p.Wl, Ginv = p.Ginv, Ainv = p.Ainv;
  if (!Wl || !Ginv || !Ainv) return;
  const name = p.L.name;
  await pivots.step(ctx, () => `before the update of ${name}`);
  const nr = p.liveRows.length, nc = p.liveCols.length;
  const offsets = new Uint32Array(nr);
  let total = 0;
  for (let i = 0; i < nr; i++) { offsets[i] = total; total += counts[i]; }
  if (total === 0) return;
  const offT = ctx.upload(offsets);
  const { qr, qc } = compactMask(ctx, maskL, offT, total);
  let E: Tensor | undefined;
  try {
    if (independent) {
      const x = gatherEntries(ctx, Wl, null, Ginv, Ainv, qr, qc, 0, total, true);
      const X = ctx.zeros([nr, nc]);
      scatterEntries(ctx, x, qr, qc, X, 0, total, 0);
      const Y = matmul(ctx, X, Ainv);
      E = matmul(ctx, Ginv, Y, { alpha: -1 });
      for (const t of [x, X, Y]) t.dispose();
    } else {
      E = ctx.zeros([nr, nc]);
      const chunks = planChunks(counts, maxChunk);
      for (const [i, ch] of chunks.entries()) {
        if (i > 0) await pivots.step(ctx, () => `in the update of ${name}, before chunk ${i + 1} of ${chunks.length}`);
        const S = buildS(ctx, Ginv, Ainv, qr, qc, ch.e0, ch.n);
        const rhs = gatherEntries(ctx, Wl, E, Ginv, Ainv, qr, qc, ch.e0, ch.n, false);
        const { L, info } = cholesky(ctx, S);
        pivots.add(info);
        const y = trsm(ctx, L, rhs);
        const x = trsm(ctx, L, y, { transpose: true });
        const k = ch.r1 - ch.r0 + 1;
        const Xr = ctx.zeros([k, nc]);
        scatterEntries(ctx, x, qr, qc, Xr, ch.e0, ch.n, ch.r0);
        const Y = matmul(ctx, Xr, Ainv);
        const Grows = ctx.empty([k, nr]); // G⁻¹[rows, :] = (G⁻¹[:, rows])ᵀ: a contiguous block of the symmetric G⁻¹
        ctx.copy(Ginv, Grows, ch.r0 * nr * 4, 0, k * nr * 4);
        matmul(ctx, Grows, Y, { transA: true, out: E, accumulate: true, alpha: -1 });
        for (const t of [S, rhs, L, y, x, Xr, Y, Grows]) t.dispose();
      }
    }
    p.Wl = add(ctx, Wl, E);
    Wl.dispose(); // on an abort p.Wl stays the old W_l, disposed with the problem
  } finally {
    for (const t of [E, offT, qr, qc]) t?.dispose();
  }
}
