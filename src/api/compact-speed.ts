/**
 * What physical compaction buys, measured where the model runs (the demo's readout after a structured
 * prune): the compact model of the current weights (src/compact) beside the zeroed dense one, their
 * parameters and f32 weight bytes, and greedy generation speed of both on this GPU (KV cache, the same
 * prompt and token count, each after a warm-up of two tokens that compiles every pipeline).
 */

import type { LayerDims } from '../arch/types';
import { compactModel } from '../compact/index';
import type { GpuContext } from '../gpu/context';
import { ShapeError } from '../gpu/errors';
import type { LoadedCheckpoint } from '../io/checkpoint';
import { DecoderModel, generate } from '../model/index';
import { perplexity } from '../model/eval';
import type { CompactModel } from '../compact/index';

export interface CompactSpeed {
  params: { dense: number; compact: number };
  /** f32 weight bytes (parameters × 4: what the GPU holds and a float32 export writes, less its header). */
  bytes: { dense: number; compact: number };
  /** The compact model's per-layer widths. */
  layers: LayerDims[];
  /** Tokens generated per model for the timing. */
  tokens: number;
  tokensPerSecond: { dense: number; compact: number };
  /** The compact model generated the same tokens as the dense one (it computes the same function). */
  sameTokens: boolean;
}

/** `dense`: the GPU copy of `host` (the zeroed weights); the compact copy lives only during the call. */
export async function measureCompactSpeed(ctx: GpuContext, dense: DecoderModel, host: LoadedCheckpoint, prompt: number[], tokens: number): Promise<CompactSpeed> {
  if (!Number.isInteger(tokens) || tokens < 1) throw new ShapeError(`compactSpeed: maxNewTokens must be a positive integer, got ${tokens}`);
  const cm = compactModel(host.config, host.tensors);
  const compact = await DecoderModel.fromCheckpoint(ctx, { ...host, config: cm.config, tensors: cm.tensors, shapes: cm.shapes });
  const timed = async (m: DecoderModel) => {
    await generate(ctx, m, prompt, { maxNewTokens: 2 }); // prefill and one cached step: compiles their pipelines
    const t0 = performance.now();
    const ids = await generate(ctx, m, prompt, { maxNewTokens: tokens });
    return { ids, perSecond: ids.length / ((performance.now() - t0) / 1000) };
  };
  try {
    const d = await timed(dense), c = await timed(compact);
    return {
      params: { dense: cm.params.before, compact: cm.params.after },
      bytes: { dense: 4 * cm.params.before, compact: 4 * cm.params.after },
      layers: cm.plan.layers.map((l) => ({ ...l.dims })),
      tokens,
      tokensPerSecond: { dense: d.perSecond, compact: c.perSecond },
      sameTokens: d.ids.length === c.ids.length && d.ids.every((t, i) => t === c.ids[i]),
    };
  } finally {
    compact.dispose();
  }
}

/** Perplexity of a compact model (its own per-layer shapes on the GPU for the call only) on `ids`: the check that it computes what the zeroed one does. */
export async function compactPerplexity(ctx: GpuContext, host: LoadedCheckpoint, cm: CompactModel, ids: Int32Array | number[], opts: { seqlen: number; windows: number; signal?: AbortSignal }): Promise<number> {
  const model = await DecoderModel.fromCheckpoint(ctx, { ...host, config: cm.config, tensors: cm.tensors, shapes: cm.shapes });
  try {
    return (await perplexity(ctx, model, ids, opts)).ppl;
  } finally {
    model.dispose();
  }
}
