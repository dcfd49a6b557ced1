/**
 * Decoder forward on the GPU for a batch of B sequences of T tokens, all rows stacked as [B·T, d] so
 * every linear is one matmul (M = B·T): the family's embedding, its decoder layers and its final norm
 * (model/blocks.ts). Only dispatches are recorded; nothing is read back.
 *
 * Memory: without `save`, the residual stream is updated in place and every intermediate goes back to
 * the pool as soon as its last reader is recorded (dispatch order makes that safe), so the peak is one
 * layer's intermediates. With `save`, the tensors the backward needs are kept in ForwardResult.layers
 * (free them with releaseForward).
 */

import type { GpuContext } from '../gpu/context';
import type { Tensor } from '../gpu/tensor';
import { blockOf, releaseSaved, type SavedTensors } from './blocks';
import type { DecoderModel } from './model';

/** What the backward of one decoder layer needs (keys are the family block's own). */
export type SavedLayer = SavedTensors;

export interface ForwardResult {
  /** Final norm output [B·T, d] (the LM head's input). Caller disposes. */
  hf: Tensor;
  /** With save: what the final norm's backward needs. */
  final?: SavedTensors;
  layers: SavedLayer[];
}

export interface ForwardOptions {
  /** Keep what the backward needs. */
  save?: boolean;
  /** With save: also keep the inputs of the linears (weight gradients need them). */
  keepInputs?: boolean;
  /** Called once per prunable-layer input as soon as it exists (key = PrunableLayer.inputKey); may record dispatches. */
  onInput?: (inputKey: string, a: Tensor) => void;
}

/** ids: u32 [B·T]. Records the forward; returns the final hidden states (and saved tensors with `save`). */
export function forwardBatch(ctx: GpuContext, model: DecoderModel, ids: Tensor, B: number, T: number, opts: ForwardOptions = {}): ForwardResult {
  const block = blockOf(model);
  const save = !!opts.save;
  let x = block.embed(ctx, model, ids, T);
  const layers: SavedLayer[] = [];
  for (let l = 0; l < model.config.numLayers; l++) {
    const r = block.layer(ctx, model, l, x, B, T, { save, keepInputs: opts.keepInputs, onInput: opts.onInput });
    if (r.saved) layers.push(r.saved);
    x = r.x;
  }
  const f = block.final(ctx, model, x, save);
  return { hf: f.hf, final: f.saved, layers };
}

/** Return every tensor of a ForwardResult to the pool. */
export function releaseForward(f: ForwardResult): void {
  f.hf.dispose();
  releaseSaved(f.final);
  for (const s of f.layers) releaseSaved(s);
  f.layers.length = 0;
}
