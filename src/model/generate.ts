/**
 * Greedy / top-k text generation for the demo's before/after samples.
 *
 * Deliberately simple: no KV cache — every new token reruns the forward over the whole context
 * (the last max_position_embeddings tokens), O(n²) in the generated length. Fine for the small models
 * and short continuations of the demo; a KV cache would be the next step for long generations.
 * One small readback per token is inherent (the next step needs the token).
 */

import type { GpuContext } from '../gpu/context';
import { ShapeError } from '../gpu/errors';
import { matmul } from '../kernels/matmul';
import { argmaxRows } from '../kernels/xent';
import { forwardBatch } from './forward';
import type { DecoderModel } from './model';

export interface GenerateOptions {
  maxNewTokens: number;
  /** 1 or undefined: greedy (argmax). k > 1: sample from the k most likely tokens. */
  topK?: number;
  /** Sampling temperature for top-k (default 1). */
  temperature?: number;
  seed?: number;
  /** Stop after emitting one of these ids (it is included in the result). */
  stopTokens?: number[];
}

/** mulberry32: deterministic host PRNG for top-k sampling. */
function rng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = Math.imul(a ^ (a >>> 15), a | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

function sampleTopK(logits: Float32Array, k: number, temperature: number, u: () => number): number {
  const idx = Array.from(logits.keys()).sort((a, b) => logits[b] - logits[a] || a - b).slice(0, k);
  const mx = logits[idx[0]];
  const p = idx.map((i) => Math.exp((logits[i] - mx) / temperature));
  let r = u() * p.reduce((a, b) => a + b, 0);
  for (let j = 0; j < idx.length; j++) if ((r -= p[j]) < 0) return idx[j];
  return idx[idx.length - 1];
}

/** Returns the generated token ids only (not the prompt). */
export async function generate(ctx: GpuContext, model: DecoderModel, prompt: number[], opts: GenerateOptions): Promise<number[]> {
  const { maxNewTokens } = opts;
  const topK = opts.topK ?? 1;
  const temperature = opts.temperature ?? 1;
  if (!Number.isInteger(maxNewTokens) || maxNewTokens < 0) throw new ShapeError(`generate: maxNewTokens must be a non-negative integer, got ${maxNewTokens}`);
  if (!Number.isInteger(topK) || topK < 1) throw new ShapeError(`generate: topK must be a positive integer, got ${topK}`);
  if (!(temperature > 0)) throw new ShapeError(`generate: temperature must be > 0, got ${temperature}`);
  if (prompt.length === 0) throw new ShapeError('generate: the prompt is empty (OPT prompts start with </s> = 2)');
  const { maxPositions, hiddenSize: d } = model.config;
  model.checkIds(prompt, Math.min(prompt.length, maxPositions), 'generate: prompt');
  const u = rng(opts.seed ?? 0);
  const tokens = prompt.slice();
  const out: number[] = [];
  const stop = new Set(opts.stopTokens ?? []);
  for (let i = 0; i < maxNewTokens; i++) {
    const context = tokens.slice(-maxPositions);
    const T = context.length;
    const ids = ctx.upload(Uint32Array.from(context), [T]);
    const fwd = forwardBatch(ctx, model, ids, 1, T);
    ids.dispose();
    // Only the last row's logits matter: [1, d] · headᵀ → [1, V].
    const last = ctx.empty([1, d]);
    ctx.copy(fwd.hf, last, (T - 1) * d * 4, 0, d * 4);
    fwd.hf.dispose();
    const logits = matmul(ctx, last, model.head(), { transB: true });
    last.dispose();
    let next: number;
    if (topK === 1) {
      const am = argmaxRows(ctx, logits);
      next = (await ctx.readU32(am))[0];
      am.dispose();
    } else {
      next = sampleTopK(await logits.read(), topK, temperature, u);
    }
    logits.dispose();
    tokens.push(next);
    out.push(next);
    if (stop.has(next)) break;
  }
  return out;
}
