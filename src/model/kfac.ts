/**
 * K-FAC factors of every prunable linear (ALGORITHM.md §2), streamed: per batch of B calibration
 * sequences, one forward with saved activations (each layer input goes into its A accumulator right
 * away, with the ones column when the layer has a bias) and one backward per label draw (each ∂L/∂y goes into its
 * G accumulator). Only the (C+1)² (C² without bias) and R² accumulators persist, so memory does not grow with the number
 * of sequences. q/k/v share one input, so one A is accumulated and the same Tensor is returned for all
 * three (disposing it once disposes it for all).
 *
 * Conventions match src/reference/kfac.ts: L = per-sequence mean CE (gradients carry 1/(T−1)), the last
 * position has g = 0 but enters A, A and G are divided by N = total tokens, sampled-label G averages
 * over the draws. Sampled labels come from the GPU's Gumbel-max sampler seeded by (seed, batch, draw)
 * and the row within the batch: deterministic for a given seed and batch size, not the reference's
 * host RNG stream.
 */

import type { GpuContext } from '../gpu/context';
import { ShapeError } from '../gpu/errors';
import type { Tensor } from '../gpu/tensor';
import { scale } from '../kernels/elementwise';
import { gramAccumulate, mirrorLower } from '../kernels/gram';
import { backwardBatch, type LinearGrad } from './backward';
import { forwardBatch, releaseForward } from './forward';
import { uploadBatch } from './batch';
import type { DecoderModel, PrunableLayer } from './model';

export interface KfacResult {
  /** (C+1)² with a bias (ones feature last), C² without; full symmetric, already divided by N (shared by the linears of one input). */
  A: Tensor;
  /** R² full symmetric, already divided by N. */
  G: Tensor;
  /** Tokens accumulated (sequences × T). */
  N: number;
  /** With weightGrads: ∂(mean over sequences of the per-sequence loss)/∂W [R, C] and ∂/∂b [R] (layers with a bias), true labels. */
  dW?: Tensor;
  db?: Tensor;
}

export interface KfacOptions {
  /** 0 / undefined: empirical Fisher (true next tokens). k > 0: k sampled-label draws per sequence. */
  fisherSamples?: number;
  seed?: number;
  /** Sequences per forward/backward (rows B·T in every matmul). Default: ⌊4096 / T⌋, at least 1. */
  batch?: number;
  onProgress?: (done: number, total: number) => void;
  signal?: AbortSignal;
  /** Also return weight gradients (true labels; an extra backward per batch when fisherSamples > 0). */
  weightGrads?: boolean;
  /**
   * Accumulate only these decoder layers' linears (a layer group of a memory-budgeted shot); default
   * all. Every other factor is skipped and the backward stops at the lowest listed layer. A layer's
   * factors come out bit-identical to an all-layers pass: the same kernels on the same batches.
   */
  decoderLayers?: readonly number[];
  /** Rows per LM-head cross-entropy chunk of the backward (default: xent's; a memory plan may choose fewer). */
  headChunkRows?: number;
  /**
   * Accumulate only these linears (names without ".weight"; a sub-layer group of a budgeted shot), within
   * decoderLayers when both are given. Their factors are bit-identical to an all-linears pass.
   */
  linears?: readonly string[];
  /**
   * The shot's memory-budgeted pass schedule (kfac-stream.ts): the factors come from it — its passes run
   * when first asked for, the other linears' factors parked on the host until asked for.
   */
  stream?: { factors(linears: readonly string[], run: { signal?: AbortSignal; onProgress?: (done: number, total: number) => void }): Promise<Map<string, KfacResult>> };
}

// Tokens per batch by default: B·T = 4096 rows fill a 128×128-tile matmul grid on a large GPU while the
// saved activations of OPT-125m stay ≈ 1.8 GB.
const DEFAULT_BATCH_TOKENS = 4096;

/** accumulateKfac's default sequences per forward/backward at T tokens each: ⌊4096 / T⌋, at least 1. */
export function defaultKfacBatch(T: number): number {
  return Math.max(1, Math.floor(DEFAULT_BATCH_TOKENS / T));
}

/** Dispose every tensor of an accumulateKfac result once (q/k/v share one A). */
export function disposeKfac(kfac: Map<string, KfacResult> | undefined): void {
  if (!kfac) return;
  const seen = new Set<Tensor>();
  for (const f of kfac.values()) for (const t of [f.A, f.G, f.dW, f.db]) if (t && !seen.has(t)) { seen.add(t); t.dispose(); }
}

/** Mix (seed, batch, draw) into one u32 seed for the GPU sampler. */
export function drawSeed(seed: number, batch: number, draw: number): number {
  let h = (seed ^ 0x9e3779b9) >>> 0;
  for (const v of [batch, draw]) h = Math.imul(h ^ (v + 0x7f4a7c15), 0x85ebca6b) >>> 0;
  return (h ^ (h >>> 13)) >>> 0;
}

/** The calibration checks of accumulateKfac (ShapeError naming the problem): tokens per sequence T, label draws k, sequences per batch. */
export function checkKfacInput(model: DecoderModel, seqs: Int32Array[], opts: KfacOptions): { T: number; k: number; batch: number } {
  const k = opts.fisherSamples ?? 0;
  if (!Number.isInteger(k) || k < 0) throw new ShapeError(`accumulateKfac: fisherSamples must be a non-negative integer, got ${k}`);
  if (seqs.length === 0) throw new ShapeError('accumulateKfac: no calibration sequences');
  const T = seqs[0].length;
  if (T < 2) throw new ShapeError(`accumulateKfac: sequences need ≥ 2 tokens (one next-token label), got ${T}`);
  seqs.forEach((s, i) => {
    if (s.length !== T) throw new ShapeError(`accumulateKfac: sequence ${i} has ${s.length} tokens, sequence 0 has ${T} (all must be equal)`);
    model.checkIds(s, T, `accumulateKfac: sequence ${i}`);
  });
  const batch = opts.batch ?? defaultKfacBatch(T);
  if (!Number.isInteger(batch) || batch < 1) throw new ShapeError(`accumulateKfac: batch must be a positive integer, got ${batch}`);
  return { T, k, batch };
}

/** Zeroed K-FAC accumulators of `layers` (one A per input, one G per linear) and the hooks that fill them from a pass over N tokens with k label draws. */
export function kfacAccumulators(ctx: GpuContext, layers: readonly PrunableLayer[], N: number, k: number) {
  const A = new Map<string, Tensor>();
  const G = new Map<string, Tensor>();
  const ones = new Map<string, boolean>(); // per input: the ones feature of its layers' bias
  const owned: Tensor[] = [];
  const zeros = (shape: number[]) => {
    const t = ctx.zeros(shape);
    owned.push(t);
    return t;
  };
  for (const L of layers) {
    const n = L.C + (L.bias ? 1 : 0);
    if (!A.has(L.inputKey)) { A.set(L.inputKey, zeros([n, n])); ones.set(L.inputKey, L.bias); }
    if (ones.get(L.inputKey) !== L.bias) {
      for (const t of owned) t.dispose();
      throw new ShapeError(`accumulateKfac: ${L.name} shares its input with a layer of another bias flag`);
    }
    G.set(L.name, zeros([L.R, L.R]));
  }
  const gScale = 1 / (N * Math.max(k, 1));
  return {
    owned, zeros,
    onInput: (key: string, a: Tensor): void => { const acc = A.get(key); if (acc) gramAccumulate(ctx, a, acc, { ones: ones.get(key), scale: 1 / N }); },
    onOutputGrad: (name: string, dy: Tensor): void => { const acc = G.get(name); if (acc) gramAccumulate(ctx, dy, acc, { scale: gScale }); },
    /** Mirror the accumulated lower triangles; the factors of every layer (q/k/v share their A tensor). */
    results(): Map<string, KfacResult> {
      for (const t of [...A.values(), ...G.values()]) mirrorLower(ctx, t);
      return new Map(layers.map((L) => [L.name, { A: A.get(L.inputKey)!, G: G.get(L.name)!, N }]));
    },
  };
}

/** Label draws per batch: the G passes, plus a true-label pass for weight gradients when G uses samples. */
export function kfacDraws(k: number, grads: boolean): Array<{ sample: boolean; g: boolean; w: boolean }> {
  return k === 0
    ? [{ sample: false, g: true, w: grads }]
    : [...Array.from({ length: k }, () => ({ sample: true, g: true, w: false })), ...(grads ? [{ sample: false, g: false, w: true }] : [])];
}

/**
 * Keeps at most two batches in flight: after a batch is recorded, wait for the previous one (and what
 * `also` adds, e.g. its readbacks), not this one, so the GPU never idles.
 */
export function batchPacer(ctx: GpuContext): (also?: Promise<unknown>) => Promise<void> {
  let inFlight: Promise<unknown> | undefined;
  return async (also) => {
    ctx.flush();
    const done = Promise.all([Promise.race([ctx.device.queue.onSubmittedWorkDone(), ctx.gpu.lost.then((e) => Promise.reject(e))]), also]);
    done.catch(() => undefined); // observed when awaited below; avoids an unhandled rejection if we stop early
    if (inFlight) await inFlight;
    inFlight = done;
  };
}

export async function accumulateKfac(
  ctx: GpuContext, model: DecoderModel, seqs: Int32Array[], opts: KfacOptions = {},
): Promise<Map<string, KfacResult>> {
  const only = opts.decoderLayers ? new Set(opts.decoderLayers) : undefined;
  if (only) {
    for (const l of only) if (!(Number.isInteger(l) && l >= 0 && l < model.config.numLayers)) throw new ShapeError(`accumulateKfac: decoder layer ${l} is not in 0…${model.config.numLayers - 1}`);
    if (only.size === 0) throw new ShapeError('accumulateKfac: decoderLayers is empty');
  }
  const names = opts.linears ? new Set(opts.linears) : undefined;
  const layers = model.prunableLayers().filter((L) => (!only || only.has(L.layer)) && (!names || names.has(L.name)));
  if (layers.length === 0) throw new ShapeError('accumulateKfac: no prunable linear selected');
  if (names && layers.length !== names.size) throw new ShapeError(`accumulateKfac: linears ${[...names].filter((n) => !layers.some((L) => L.name === n)).join(', ')} are not prunable linears of these decoder layers`);
  if (opts.stream) {
    if (opts.weightGrads) throw new ShapeError('accumulateKfac: weightGrads are not computed by a budgeted pass schedule');
    return opts.stream.factors(layers.map((L) => L.name), { signal: opts.signal, onProgress: opts.onProgress });
  }
  const { T, k, batch } = checkKfacInput(model, seqs, opts);
  const N = seqs.length * T;
  const stopAt = Math.min(...layers.map((L) => L.layer));
  const acc = kfacAccumulators(ctx, layers, N, k);
  const grads = opts.weightGrads ? new Map<string, LinearGrad>() : undefined;
  try {
    for (const L of layers) grads?.set(L.name, { dW: acc.zeros([L.R, L.C]), db: L.bias ? acc.zeros([L.R]) : undefined });
    const draws = kfacDraws(k, !!grads);
    const pace = batchPacer(ctx);
    for (let s0 = 0, bi = 0; s0 < seqs.length; s0 += batch, bi++) {
      opts.signal?.throwIfAborted();
      const B = Math.min(batch, seqs.length - s0);
      const { ids, labels } = uploadBatch(ctx, seqs.slice(s0, s0 + B), T);
      const fwd = forwardBatch(ctx, model, ids, B, T, { save: true, keepInputs: !!grads, onInput: acc.onInput });
      draws.forEach((d, di) => {
        backwardBatch(ctx, model, fwd, labels, B, T, {
          sampleSeed: d.sample ? drawSeed(opts.seed ?? 0, bi, di) : undefined,
          onOutputGrad: d.g ? acc.onOutputGrad : undefined,
          weightGrads: d.w ? grads : undefined,
          stopAt,
          headChunkRows: opts.headChunkRows,
        });
      });
      releaseForward(fwd);
      ids.dispose();
      labels.dispose();
      await pace();
      opts.onProgress?.(Math.min(s0 + B, seqs.length), seqs.length);
    }
    const out = acc.results();
    for (const L of layers) {
      const g = grads?.get(L.name);
      if (!g) continue;
      // Mean over sequences of the per-sequence loss.
      const r = out.get(L.name)!;
      r.dW = scale(ctx, g.dW, 1 / seqs.length);
      if (g.db) r.db = scale(ctx, g.db, 1 / seqs.length);
      g.dW.dispose();
      g.db?.dispose();
    }
    await ctx.sync();
    return out;
  } catch (e) {
    for (const t of acc.owned) t.dispose();
    throw e;
  }
}
