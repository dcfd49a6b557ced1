/**
 * Wanda (Sun et al. 2023; ALGORITHM.md §9) on the GPU, with the same sequential protocol as SparseGPT
 * (the Wanda reference script also feeds each layer the pruned previous layers' outputs).
 * Score |W_ij|·‖X_j‖₂ with ‖X_j‖₂² = Σ_t x_tj² over all calibration tokens of the layer's input;
 * unstructured: the ⌊s·C⌋ smallest scores of every output row are zeroed (ties: lower column first,
 * as the reference's stable sort); n:m: the n smallest of every m consecutive columns of a row.
 * No weight update; biases untouched.
 */

import type { GpuContext } from '../../gpu/context';
import type { Tensor } from '../../gpu/tensor';
import { axpy } from '../../kernels/elementwise';
import { colSums } from '../../kernels/reduce';
import type { DecoderModel, PrunableLayer } from '../../model/model';
import { PruneAbortedError } from '../options';
import { resolvePeer, runSequential, targetCount, type PeerOptions, type PeerReport, type ResolvedPeer } from './common';
import { blockScores, nmFlags, selectSmallest, zeroFlagged } from './kernels';

/** Prune one linear W [R, C] in place from its input's squared column norms n2 [C]. */
export function wandaLinear(ctx: GpuContext, W: Tensor, n2: Tensor, o: ResolvedPeer): void {
  const [R, C] = W.shape;
  const k = o.nm ? 0 : targetCount(o.sparsity, C);
  if (!o.nm && k === 0) return;
  const S = blockScores(ctx, W, n2, 0, C, true);
  const flags = o.nm ? nmFlags(ctx, S, o.nm.n, o.nm.m) : selectSmallest(ctx, S, C, R, k);
  zeroFlagged(ctx, flags, W);
  S.dispose();
  flags.dispose();
}

/** Wanda on the whole model; changes the model's GPU weights in place (host arrays untouched). */
export async function wandaPrune(ctx: GpuContext, model: DecoderModel, calib: Int32Array[], opts: PeerOptions): Promise<PeerReport> {
  const o = resolvePeer(model, opts, 'wanda');
  const norms = new Map<string, Tensor>();
  return runSequential(ctx, model, calib, opts, 'wanda', {
    accumulate: (key, a) => {
      const part = colSums(ctx, a, { squares: true });
      const acc = norms.get(key);
      if (!acc) norms.set(key, part);
      else {
        axpy(ctx, acc, part, 1);
        part.dispose();
      }
    },
    prune: async (l: number, linears: PrunableLayer[]) => {
      for (const L of linears) {
        if (opts.signal?.aborted) throw new PruneAbortedError(`wanda: in layer ${l} before ${L.name}`);
        wandaLinear(ctx, model.weight(`${L.name}.weight`), norms.get(L.inputKey)!, o);
      }
      await ctx.sync();
    },
    release: () => {
      for (const t of norms.values()) t.dispose();
      norms.clear();
    },
  });
}
