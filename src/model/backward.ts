/**
 * Decoder backward on the GPU from a saved forward (forwardBatch with save): loss = per-sequence mean
 * next-token cross-entropy (positions 0..T-2; the last row has NO_LABEL, so its gradient is 0), the
 * same convention as src/reference/. The LM head gradient is chunked over the vocabulary by
 * crossEntropy, so B·T × V logits never exist at once.
 *
 * A fixed sequence of explicit *_bwd kernels (the family's block, model/blocks.ts), no autograd. Hooks
 * see ∂L/∂y of every prunable linear (for G) and may accumulate weight gradients. The saved forward is
 * only read, so several backward passes (sampled-label draws) can reuse it. Every temporary is
 * returned to the pool when dead.
 */

import type { GpuContext } from '../gpu/context';
import type { Tensor } from '../gpu/tensor';
import { colSum } from '../kernels/activation';
import { matmul } from '../kernels/matmul';
import { crossEntropy } from '../kernels/xent';
import { blockOf, type LinearBackward } from './blocks';
import type { ForwardResult, SavedLayer } from './forward';
import type { DecoderModel } from './model';

/** Weight gradient accumulators of one linear (db only for a linear with a bias). */
export interface LinearGrad { dW: Tensor; db?: Tensor }

export interface BackwardOptions {
  /** Replace the labels by samples of the model's softmax (seeded per row of this batch). */
  sampleSeed?: number;
  /** Called with ∂L/∂y [B·T, R] of every prunable linear (name without ".weight"). */
  onOutputGrad?: (name: string, dy: Tensor) => void;
  /** Accumulate dW += dyᵀ a and db += Σ_rows dy into these (by layer name); needs forward keepInputs. */
  weightGrads?: Map<string, LinearGrad>;
  /** Lowest decoder layer to go back through (default 0): the layers below it get no gradients. */
  stopAt?: number;
  /** Rows per LM-head cross-entropy chunk (default: xent's). */
  headChunkRows?: number;
}

/** Records the backward of one batch. labels: u32 [B·T] (NO_LABEL on each sequence's last row). */
export function backwardBatch(
  ctx: GpuContext, model: DecoderModel, fwd: ForwardResult, labels: Tensor, B: number, T: number, opts: BackwardOptions = {},
): void {
  const dx = headBackward(ctx, model, fwd, labels, T, opts);
  backwardLayers(ctx, model, fwd.layers, dx, model.config.numLayers, opts.stopAt ?? 0, B, T, opts).dispose();
}

/** The LM head's cross-entropy and the final norm's backward: ∂L/∂(output of the last decoder layer). */
export function headBackward(ctx: GpuContext, model: DecoderModel, fwd: ForwardResult, labels: Tensor, T: number, opts: BackwardOptions = {}): Tensor {
  if (!fwd.final) throw new Error('backwardBatch: the forward was run without save');
  const ce = crossEntropy(ctx, fwd.hf, model.head(), labels, { grad: true, gradScale: 1 / (T - 1), sampleSeed: opts.sampleSeed, chunkRows: opts.headChunkRows });
  ce.loss.dispose();
  ce.lse.dispose();
  ce.sampled?.dispose();
  const dHf = ce.dHidden!;
  const dx = blockOf(model).finalBackward(ctx, model, dHf, fwd.final);
  dHf.dispose();
  return dx;
}

/**
 * Backward through decoder layers hi−1 … lo from dx = ∂L/∂(output of layer hi−1) (consumed), with the
 * saved forward of those layers (saved[l]); returns ∂L/∂(input of layer lo) (the caller disposes it).
 */
export function backwardLayers(
  ctx: GpuContext, model: DecoderModel, saved: readonly SavedLayer[], dx: Tensor, hi: number, lo: number, B: number, T: number, opts: BackwardOptions = {},
): Tensor {
  const block = blockOf(model);
  // ∂L/∂y of a linear: G hook, weight gradient, then ∂L/∂a = dy·W (accumulated into `into` if given).
  const linear: LinearBackward = (name, dy, a, into) => {
    opts.onOutputGrad?.(name, dy);
    const g = opts.weightGrads?.get(name);
    if (g) {
      if (!a) throw new Error(`backwardBatch: weight gradient of ${name} needs the forward run with keepInputs`);
      matmul(ctx, dy, a, { transA: true, out: g.dW, accumulate: true });
      if (g.db) colSum(ctx, dy, { out: g.db, accumulate: true });
    }
    return matmul(ctx, dy, model.weight(`${name}.weight`), { out: into, accumulate: !!into });
  };
  for (let l = hi - 1; l >= lo; l--) {
    const s = saved[l];
    if (!s) throw new Error(`backwardLayers: decoder layer ${l} was not saved by the forward`);
    dx = block.layerBackward(ctx, model, l, s, dx, B, T, linear);
  }
  return dx;
}
