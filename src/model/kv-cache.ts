/**
 * KV cache for generation (batch 1), every family and compact models alike: per decoder layer one K and
 * one V buffer [capacity, kvHeads_l·headDim] (the layer's own kv heads), rows = positions. The family
 * block runs unchanged; its attention is swapped (LayerStepOptions.attend) for: write the new rows'
 * k/v into the cache, then causal attention over the prompt (prefill, one attention() call) or the new
 * token's row against the cache (attentionDecode). RoPE angles and OPT's learned positions take the
 * position offset. Nothing is read back.
 */

import type { GpuContext } from '../gpu/context';
import { ShapeError } from '../gpu/errors';
import type { Tensor } from '../gpu/tensor';
import { layerDims } from '../arch/types';
import { attention } from '../kernels/attention';
import { attentionDecode } from '../kernels/attention-decode';
import { blockOf } from './blocks';
import type { DecoderModel } from './model';

export class KvCache {
  /** Positions filled so far (the next token's position). */
  length = 0;

  private constructor(readonly model: DecoderModel, readonly capacity: number, readonly k: Tensor[], readonly v: Tensor[]) {}

  /** Buffers for `capacity` positions (at most max_position_embeddings) in every layer. */
  static create(ctx: GpuContext, model: DecoderModel, capacity: number): KvCache {
    const { maxPositions, numLayers, headDim } = model.config;
    if (!Number.isInteger(capacity) || capacity < 1 || capacity > maxPositions) {
      throw new ShapeError(`KvCache: capacity ${capacity} is outside 1…${maxPositions} (max_position_embeddings of this model)`);
    }
    const k: Tensor[] = [], v: Tensor[] = [];
    for (let l = 0; l < numLayers; l++) {
      const w = layerDims(model.config, l).numKvHeads * headDim;
      k.push(ctx.empty([capacity, w]));
      v.push(ctx.empty([capacity, w]));
    }
    return new KvCache(model, capacity, k, v);
  }

  /** GPU bytes of the K and V buffers. */
  get bytes(): number {
    return [...this.k, ...this.v].reduce((a, t) => a + t.bytes, 0);
  }

  dispose(): void {
    for (const t of [...this.k, ...this.v]) t.dispose();
  }
}

/**
 * Run T new tokens (ids u32 [T]) at positions cache.length … cache.length+T−1 through the model,
 * appending their keys and values; returns the final norm's output [T, d] (the LM head's input; caller
 * disposes). T > 1 only for the prompt (an empty cache); afterwards one token per call.
 */
export function forwardCached(ctx: GpuContext, model: DecoderModel, cache: KvCache, ids: Tensor, T: number): Tensor {
  if (cache.model !== model) throw new ShapeError('forwardCached: the cache belongs to another model');
  const pos = cache.length;
  if (!Number.isInteger(T) || T < 1) throw new ShapeError(`forwardCached: T must be an integer ≥ 1, got ${T}`);
  if (pos > 0 && T > 1) throw new ShapeError(`forwardCached: ${T} tokens after a filled cache (position ${pos}); only the prompt runs several tokens at once`);
  if (pos + T > cache.capacity) throw new ShapeError(`forwardCached: positions up to ${pos + T - 1} exceed the cache's capacity ${cache.capacity}`);
  if (ids.size !== T) throw new ShapeError(`forwardCached: ids hold ${ids.size} tokens, T is ${T}`);
  const block = blockOf(model);
  const attend = (l: number, q: Tensor, k: Tensor, v: Tensor) => {
    const { numHeads: heads, numKvHeads: kvHeads } = layerDims(model.config, l);
    const kc = cache.k[l], vc = cache.v[l], row = kc.shape[1] * 4;
    ctx.copy(k, kc, 0, pos * row, T * row);
    ctx.copy(v, vc, 0, pos * row, T * row);
    if (pos === 0) return attention(ctx, q, k, v, { batch: 1, heads, kvHeads }, { impl: model.attentionImpl });
    return attentionDecode(ctx, q, kc, vc, { heads, kvHeads, length: pos + 1 });
  };
  let x = block.embed(ctx, model, ids, T, pos);
  for (let l = 0; l < model.config.numLayers; l++) x = block.layer(ctx, model, l, x, 1, T, { attend, posOffset: pos }).x;
  cache.length = pos + T;
  return block.final(ctx, model, x, false).hf;
}
