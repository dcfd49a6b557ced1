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
  /** With save: layers[l] for every decoder layer. */
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
  const r = forwardLayers(ctx, model, block.embed(ctx, model, ids, T), B, T, 0, model.config.numLayers, opts);
  const f = block.final(ctx, model, r.x, !!opts.save);
  return { hf: f.hf, final: f.saved, layers: r.layers };
}

export interface LayerRangeOptions extends ForwardOptions {
  /** With save: keep only the layers from this one up (a backward that stops there needs no more); default 0. */
  saveFrom?: number;
  /** Sees each decoder layer's input before the layer runs (which may update it in place); may record dispatches or a readback. */
  onLayerInput?: (l: number, x: Tensor) => void;
}

/**
 * Decoder layers lo…hi−1 on x [B·T, d] (a memory-budgeted K-FAC pass runs a range of them from an input
 * kept on the host): the range's output and, for each saved layer l, layers[l] (unsaved: undefined).
 * x is updated in place by unsaved layers and kept by saved ones, exactly as in forwardBatch.
 */
export function forwardLayers(ctx: GpuContext, model: DecoderModel, x: Tensor, B: number, T: number, lo: number, hi: number, opts: LayerRangeOptions = {}): { x: Tensor; layers: SavedLayer[] } {
  const block = blockOf(model);
  const layers: SavedLayer[] = [];
  for (let l = lo; l < hi; l++) {
    opts.onLayerInput?.(l, x);
    const save = !!opts.save && l >= (opts.saveFrom ?? 0);
    const r = block.layer(ctx, model, l, x, B, T, { save, keepInputs: opts.keepInputs, onInput: opts.onInput });
    if (r.saved) layers[l] = r.saved;
    x = r.x;
  }
  return { x, layers };
}

/** Return every tensor of a ForwardResult to the pool. */
export function releaseForward(f: ForwardResult): void {
  f.hf.dispose();
  releaseSaved(f.final);
  releaseLayers(f.layers);
}

/** Return the saved tensors of a range of layers (forwardLayers) to the pool. */
export function releaseLayers(layers: SavedLayer[]): void {
  for (const s of layers) releaseSaved(s);
  layers.length = 0;
}
