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
import type { DecoderModel } from './model';

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
function drawSeed(seed: number, batch: number, draw: number): number {
  let h = (seed ^ 0x9e3779b9) >>> 0;
  for (const v of [batch, draw]) h = Math.imul(h ^ (v + 0x7f4a7c15), 0x85ebca6b) >>> 0;
  return (h ^ (h >>> 13)) >>> 0;
}

export async function accumulateKfac(
  ctx: GpuContext, model: DecoderModel, seqs: Int32Array[], opts: KfacOptions = {},
): Promise<Map<string, KfacResult>> {
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
  const N = seqs.length * T;
  const only = opts.decoderLayers ? new Set(opts.decoderLayers) : undefined;
  if (only) {
    for (const l of only) if (!(Number.isInteger(l) && l >= 0 && l < model.config.numLayers)) throw new ShapeError(`accumulateKfac: decoder layer ${l} is not in 0…${model.config.numLayers - 1}`);
    if (only.size === 0) throw new ShapeError('accumulateKfac: decoderLayers is empty');
  }
  const layers = model.prunableLayers().filter((L) => !only || only.has(L.layer));
  const stopAt = only ? Math.min(...only) : 0;
  const A = new Map<string, Tensor>();
  const G = new Map<string, Tensor>();
  const ones = new Map<string, boolean>(); // per input: the ones feature of its layers' bias
  const grads = opts.weightGrads ? new Map<string, LinearGrad>() : undefined;
  const owned: Tensor[] = [];
  const zeros = (shape: number[]) => {
    const t = ctx.zeros(shape);
    owned.push(t);
    return t;
  };
  try {
    for (const L of layers) {
      const n = L.C + (L.bias ? 1 : 0);
      if (!A.has(L.inputKey)) { A.set(L.inputKey, zeros([n, n])); ones.set(L.inputKey, L.bias); }
      if (ones.get(L.inputKey) !== L.bias) throw new ShapeError(`accumulateKfac: ${L.name} shares its input with a layer of another bias flag`);
      G.set(L.name, zeros([L.R, L.R]));
      grads?.set(L.name, { dW: zeros([L.R, L.C]), db: L.bias ? zeros([L.R]) : undefined });
    }
    // Draws per batch: the G passes, plus a true-label pass for weight gradients when G uses samples.
    const draws: Array<{ sample: boolean; g: boolean; w: boolean }> = k === 0
      ? [{ sample: false, g: true, w: !!grads }]
      : [...Array.from({ length: k }, () => ({ sample: true, g: true, w: false })), ...(grads ? [{ sample: false, g: false, w: true }] : [])];
    const gScale = 1 / (N * Math.max(k, 1));
    let inFlight: Promise<unknown> | undefined;
    for (let s0 = 0, bi = 0; s0 < seqs.length; s0 += batch, bi++) {
      opts.signal?.throwIfAborted();
      const B = Math.min(batch, seqs.length - s0);
      const { ids, labels } = uploadBatch(ctx, seqs.slice(s0, s0 + B), T);
      const fwd = forwardBatch(ctx, model, ids, B, T, {
        save: true,
        keepInputs: !!grads,
        onInput: (key, a) => { const acc = A.get(key); if (acc) gramAccumulate(ctx, a, acc, { ones: ones.get(key), scale: 1 / N }); },
      });
      draws.forEach((d, di) => {
        backwardBatch(ctx, model, fwd, labels, B, T, {
          sampleSeed: d.sample ? drawSeed(opts.seed ?? 0, bi, di) : undefined,
          onOutputGrad: d.g ? (name, dy) => { const acc = G.get(name); if (acc) gramAccumulate(ctx, dy, acc, { scale: gScale }); } : undefined,
          weightGrads: d.w ? grads : undefined,
          stopAt,
          headChunkRows: opts.headChunkRows,
        });
      });
      releaseForward(fwd);
      ids.dispose();
      labels.dispose();
      // At most two batches in flight: wait for the previous one, not this one, so the GPU never idles.
      ctx.flush();
      const done = Promise.race([ctx.device.queue.onSubmittedWorkDone(), ctx.gpu.lost.then((e) => Promise.reject(e))]);
      done.catch(() => undefined); // observed when awaited below; avoids an unhandled rejection if we stop early
      if (inFlight) await inFlight;
      inFlight = done;
      opts.onProgress?.(Math.min(s0 + B, seqs.length), seqs.length);
    }
    for (const t of [...A.values(), ...G.values()]) mirrorLower(ctx, t);
    const out = new Map<string, KfacResult>();
    for (const L of layers) {
      const r: KfacResult = { A: A.get(L.inputKey)!, G: G.get(L.name)!, N };
      const g = grads?.get(L.name);
      if (g) {
        // Mean over sequences of the per-sequence loss.
        r.dW = scale(ctx, g.dW, 1 / seqs.length);
        if (g.db) r.db = scale(ctx, g.db, 1 / seqs.length);
        g.dW.dispose();
        g.db?.dispose();
      }
      out.set(L.name, r);
    }
    await ctx.sync();
    return out;
  } catch (e) {
    for (const t of owned) t.dispose();
    throw e;
  }
}
