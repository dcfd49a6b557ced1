/**
 * Layer-by-layer calibration state of the peer methods (SparseGPT, Wanda): the hidden states of every
 * calibration sequence entering decoder layer l, kept on the GPU in batches, and one decoder layer run
 * on them with the model's current weights (the family's block, as src/model/forward.ts).
 *
 * Protocol (the SparseGPT/Wanda reference scripts): statistics of all linears of layer l come from one
 * pass of the still-dense layer l on the inputs produced by the already-pruned layers < l
 * (`layerPass(..., { onInput })`, hidden states unchanged); after pruning layer l, a second pass with
 * the pruned weights advances the hidden states in place (`layerPass(..., { advance: true })`).
 */

import type { GpuContext } from '../../gpu/context';
import { ShapeError } from '../../gpu/errors';
import type { Tensor } from '../../gpu/tensor';
import { blockOf } from '../../model/blocks';
import type { DecoderModel } from '../../model/model';

// Tokens per batch: 4096 rows fill a 128×128-tile matmul grid on a large GPU (as model/kfac.ts) while a
// layer's intermediates (FFN activations 4096 × ffn) stay ≈ 50 MB for OPT-125m.
const DEFAULT_BATCH_TOKENS = 4096;

/** Calibration sequences of T tokens per batch of the layer passes (also read by api/memory-peers.ts). */
export const peerBatch = (T: number, batchTokens = DEFAULT_BATCH_TOKENS): number => Math.max(1, Math.floor(batchTokens / T));

export interface CalibState {
  /** Hidden states per batch, [B_i·T, d] (owned). */
  hidden: Tensor[];
  /** Sequences per batch. */
  sizes: number[];
  T: number;
  /** Total tokens. */
  N: number;
}

/** Validate the calibration sequences and embed them batch by batch. */
export function embedCalibration(ctx: GpuContext, model: DecoderModel, calib: Int32Array[], batchTokens = DEFAULT_BATCH_TOKENS): CalibState {
  if (calib.length === 0) throw new ShapeError('peers: no calibration sequences');
  const T = calib[0].length;
  calib.forEach((s, i) => {
    if (s.length !== T) throw new ShapeError(`peers: calibration sequence ${i} has ${s.length} tokens, sequence 0 has ${T} (all must be equal)`);
    model.checkIds(s, T, `peers: calibration sequence ${i}`);
  });
  const batch = peerBatch(T, batchTokens);
  const st: CalibState = { hidden: [], sizes: [], T, N: calib.length * T };
  const block = blockOf(model);
  for (let s0 = 0; s0 < calib.length; s0 += batch) {
    const B = Math.min(batch, calib.length - s0);
    const ids = new Uint32Array(B * T);
    for (let b = 0; b < B; b++) ids.set(calib[s0 + b], b * T);
    const t = ctx.upload(ids, [B * T]);
    st.hidden.push(block.embed(ctx, model, t, T));
    t.dispose();
    st.sizes.push(B);
  }
  return st;
}

export function disposeCalib(st: CalibState): void {
  for (const t of st.hidden) t.dispose();
  st.hidden.length = 0;
}

export interface LayerPassOptions {
  /** Called with each prunable input of the layer (key = PrunableLayer.inputKey) as soon as it exists. */
  onInput?: (inputKey: string, a: Tensor) => void;
  /** Replace the hidden states by the layer's output (otherwise they are left unchanged). */
  advance?: boolean;
  /** Awaited before each batch is recorded (runSequential: abort check with a bounded GPU queue). */
  pace?: (batch: number, batches: number) => Promise<void>;
}

/** Run decoder layer l (the family's block, as forward.ts) on every calibration batch. */
export async function layerPass(ctx: GpuContext, model: DecoderModel, st: CalibState, l: number, opts: LayerPassOptions): Promise<void> {
  const block = blockOf(model);
  for (const [bi, x] of st.hidden.entries()) {
    await opts.pace?.(bi, st.hidden.length);
    // Intermediates are freed at the layer's end (lateFree): api/memory-peers.ts replays exactly this order.
    block.layer(ctx, model, l, x, st.sizes[bi], st.T, { onInput: opts.onInput, inspect: !opts.advance, lateFree: true });
  }
}
