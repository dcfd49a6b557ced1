/**
 * Greedy / top-k text generation (batch 1).
 *
 * With the KV cache (default; model/kv-cache.ts): the prompt runs once (prefill), then one token per
 * step against the cached keys and values. Greedy steps feed the GPU argmax straight into the next
 * step and read the tokens back once per chunk of steps (a stop token ends the output there; the few
 * steps recorded past it are discarded), so there is no readback per token; top-k reads each step's
 * logits (sampling is on the host). Once the context would exceed max_position_embeddings, every
 * further token reruns the forward over the last max_position_embeddings tokens, as the no-cache path
 * (`kvCache: false`) does for every token: both give the same tokens.
 */

import type { GpuContext } from '../gpu/context';
import { ShapeError } from '../gpu/errors';
import { matmul } from '../kernels/matmul';
import { argmaxRows } from '../kernels/xent';
import type { Tensor } from '../gpu/tensor';
import { forwardBatch } from './forward';
import { forwardCached, KvCache } from './kv-cache';
import type { DecoderModel } from './model';

// Greedy tokens read back per chunk: the first chunk is small (an early stop token wastes little),
// later ones double up to 32 (a readback per 32 tokens is negligible next to their forwards).
const FIRST_CHUNK = 4;
const MAX_CHUNK = 32;

export interface GenerateOptions {
  maxNewTokens: number;
  /** 1 or undefined: greedy (argmax). k > 1: sample from the k most likely tokens. */
  topK?: number;
  /** Sampling temperature for top-k (default 1). */
  temperature?: number;
  seed?: number;
  /** Stop after emitting one of these ids (it is included in the result). */
  stopTokens?: number[];
  /** Reuse keys and values across steps (default true); false reruns the whole forward per token. */
  kvCache?: boolean;
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

/** Logits [1, V] of the last of T rows of the final hidden states `hf` (consumed). */
export function lastLogits(ctx: GpuContext, model: DecoderModel, hf: Tensor, T: number): Tensor {
  const d = model.config.hiddenSize;
  const last = ctx.empty([1, d]);
  ctx.copy(hf, last, (T - 1) * d * 4, 0, d * 4);
  hf.dispose();
  const logits = matmul(ctx, last, model.head(), { transB: true });
  last.dispose();
  return logits;
}

interface Picker { topK: number; temperature: number; u: () => number }

/** The next token from logits [1, V] (consumed), read back to the host. */
async function pick(ctx: GpuContext, logits: Tensor, p: Picker): Promise<number> {
  try {
    if (p.topK > 1) return sampleTopK(await logits.read(), p.topK, p.temperature, p.u);
    const am = argmaxRows(ctx, logits);
    const next = (await ctx.readU32(am))[0];
    am.dispose();
    return next;
  } finally {
    logits.dispose();
  }
}

/** Next-token logits from the whole context (its last max_position_embeddings tokens), no cache. */
function windowedLogits(ctx: GpuContext, model: DecoderModel, tokens: number[]): Tensor {
  const context = tokens.slice(-model.config.maxPositions);
  const T = context.length;
  const ids = ctx.upload(Uint32Array.from(context), [T]);
  const fwd = forwardBatch(ctx, model, ids, 1, T);
  ids.dispose();
  return lastLogits(ctx, model, fwd.hf, T);
}

/** Logits of the cache step that feeds `ids` (u32 [T], consumed). */
function cachedLogits(ctx: GpuContext, model: DecoderModel, cache: KvCache, ids: Tensor): Tensor {
  const T = ids.size;
  const hf = forwardCached(ctx, model, cache, ids, T);
  ids.dispose();
  return lastLogits(ctx, model, hf, T);
}

/** `steps` greedy tokens with the cache, argmax fed on the GPU, read back per chunk; stops after a stop token. */
async function cachedGreedy(ctx: GpuContext, model: DecoderModel, cache: KvCache, prompt: number[], steps: number, stop: Set<number>): Promise<number[]> {
  const out: number[] = [];
  let prev = ctx.upload(Uint32Array.from(prompt), [prompt.length]);
  try {
    for (let chunk = FIRST_CHUNK; out.length < steps; chunk = Math.min(2 * chunk, MAX_CHUNK)) {
      const n = Math.min(chunk, steps - out.length);
      const got = ctx.empty([n], 'u32');
      for (let j = 0; j < n; j++) {
        const logits = cachedLogits(ctx, model, cache, prev);
        prev = argmaxRows(ctx, logits); // the previous ids were consumed by cachedLogits
        logits.dispose();
        ctx.copy(prev, got, 0, 4 * j, 4);
      }
      const ids = await ctx.readU32(got);
      got.dispose();
      for (const t of ids) {
        out.push(t);
        if (stop.has(t)) return out;
      }
    }
    return out;
  } finally {
    prev.dispose();
  }
}

/** `steps` top-k tokens with the cache (host sampling: one logits readback per step). */
async function cachedSampled(ctx: GpuContext, model: DecoderModel, cache: KvCache, prompt: number[], steps: number, stop: Set<number>, p: Picker): Promise<number[]> {
  const out: number[] = [];
  let ids = ctx.upload(Uint32Array.from(prompt), [prompt.length]);
  while (out.length < steps) {
    const next = await pick(ctx, cachedLogits(ctx, model, cache, ids), p);
    out.push(next);
    if (stop.has(next) || out.length === steps) break;
    ids = ctx.upload(Uint32Array.of(next), [1]);
  }
  return out;
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
  const { maxPositions } = model.config;
  model.checkIds(prompt, Math.min(prompt.length, maxPositions), 'generate: prompt');
  const picker: Picker = { topK, temperature, u: rng(opts.seed ?? 0) };
  const stop = new Set(opts.stopTokens ?? []);
  // Step s (0-based) sees prompt.length + s positions: the cache serves the steps within max positions.
  const cacheSteps = opts.kvCache === false ? 0 : Math.max(0, Math.min(maxNewTokens, maxPositions - prompt.length + 1));
  let out: number[] = [];
  if (cacheSteps > 0) {
    // The last step's token is never fed back, hence one position less than prompt + steps.
    const cache = KvCache.create(ctx, model, prompt.length + cacheSteps - 1);
    try {
      out = topK === 1 ? await cachedGreedy(ctx, model, cache, prompt, cacheSteps, stop) : await cachedSampled(ctx, model, cache, prompt, cacheSteps, stop, picker);
    } finally {
      cache.dispose();
    }
  }
  const tokens = [...prompt, ...out];
  while (out.length < maxNewTokens && !stop.has(out[out.length - 1])) {
    const next = await pick(ctx, windowedLogits(ctx, model, tokens), picker);
    tokens.push(next);
    out.push(next);
  }
  return out;
}
