/**
 * The architecture boundary, GPU part: what a family's decoder computes, as a fixed sequence of explicit
 * kernels (no autograd). forward.ts, backward.ts, kfac.ts, eval.ts, generate.ts, lora.ts and the peers'
 * layer pass compose these steps; they never name a family's modules. Each family implements it in
 * src/arch/<family>/block.ts beside its config.
 */

import type { GpuContext } from '../gpu/context';
import type { Tensor } from '../gpu/tensor';
import type { Family } from '../arch/types';
import type { DecoderModel } from './model';
import { llamaBlock } from '../arch/llama/block';
import { optBlock } from '../arch/opt/block';

/** What the backward of one layer needs; keys are the family's own (freed by releaseSaved). */
export type SavedTensors = Record<string, Tensor | undefined>;

export interface LayerStepOptions {
  /** Keep what the backward needs (returned as `saved`); the residual stream is copied, not updated in place. */
  save?: boolean;
  /** With save: also keep the inputs of the linears (weight gradients need them). */
  keepInputs?: boolean;
  /** Called once per prunable-layer input as soon as it exists (key = PrunableLayer.inputKey); may record dispatches. */
  onInput?: (inputKey: string, a: Tensor) => void;
  /**
   * Statistics pass of the peer methods: every input is reported, `x` is left unchanged and the layer's
   * last linear (whose output nobody reads) is skipped.
   */
  inspect?: boolean;
  /** Free the layer's intermediates at its end rather than each after its last reader (the peers' pass). */
  lateFree?: boolean;
  /** Position of the first of the T rows (generation with a KV cache: RoPE angles). Default 0. */
  posOffset?: number;
  /**
   * Replaces the causal self-attention over the T rows (KV-cache generation, model/kv-cache.ts): gets
   * the layer's projected (and rotated) q, k, v, returns what attention() would (out and lse).
   */
  attend?: (l: number, q: Tensor, k: Tensor, v: Tensor) => { out: Tensor; lse: Tensor };
}

/**
 * ∂L/∂y of one linear → ∂L/∂a = dy·W (accumulated into `into` when given). `a` is the linear's saved
 * input (for weight gradients; undefined unless the forward kept it). Implemented by backward.ts.
 */
export type LinearBackward = (name: string, dy: Tensor, a: Tensor | undefined, into?: Tensor) => Tensor;

export interface DecoderBlock {
  /** ids u32 [B·T] → hidden states [B·T, d] (`posOffset`: position of the first token, generation). */
  embed(ctx: GpuContext, model: DecoderModel, ids: Tensor, T: number, posOffset?: number): Tensor;
  /** One decoder layer on x [B·T, d]; returns the layer's output (x itself unless save or inspect). */
  layer(ctx: GpuContext, model: DecoderModel, l: number, x: Tensor, B: number, T: number, o: LayerStepOptions): { x: Tensor; saved?: SavedTensors };
  /** Final norm → the LM head's input; with save also what finalBackward needs (x is then kept, else freed). */
  final(ctx: GpuContext, model: DecoderModel, x: Tensor, save: boolean): { hf: Tensor; saved?: SavedTensors };
  finalBackward(ctx: GpuContext, model: DecoderModel, dHf: Tensor, saved: SavedTensors): Tensor;
  /** Backward of layer l from ∂L/∂(layer output) `dx` (consumed) → ∂L/∂(layer input). */
  layerBackward(ctx: GpuContext, model: DecoderModel, l: number, saved: SavedTensors, dx: Tensor, B: number, T: number, linear: LinearBackward): Tensor;
}

const BLOCKS: Record<Family, DecoderBlock> = { opt: optBlock, llama: llamaBlock };

export function blockOf(model: DecoderModel): DecoderBlock {
  return BLOCKS[model.config.family];
}

export function releaseSaved(s: SavedTensors | undefined): void {
  if (s) for (const t of Object.values(s)) t?.dispose();
}
