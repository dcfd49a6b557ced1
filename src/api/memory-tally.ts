/**
 * The replay machinery of the memory estimates (memory.ts, memory-schedule.ts, memory-peers.ts): pool
 * bytes of a tensor, split-K and gram scratch bounds, and a Tally that replays a family's allocation walk
 * (src/arch/<family>/memory.ts) with the hooks the model's passes attach around the block.
 */

import type { GpuContext } from '../gpu/context';
import { bucketSize } from '../gpu/pool';
import { familySpec, type ModelConfig, type PrunableLayer } from '../io/config';
import {
  llamaCachedTensors, llamaEmbedAllocs, llamaFinalAllocs, llamaFinalBackwardAllocs, llamaLayerAllocs, llamaLayerBackwardAllocs,
  type LayerAllocs, type LayerWalkOptions,
} from '../arch/llama/memory';
import { optCachedTensors, optEmbedAllocs, optFinalAllocs, optFinalBackwardAllocs, optLayerAllocs, optLayerBackwardAllocs } from '../arch/opt/memory';
import { GRAM_MIN_WORKGROUPS, planGramSplits } from '../kernels/gram';
import { isCpuAdapter, planSplitK } from '../kernels/matmul';
import { DEFAULT_CHUNK_BYTES } from '../kernels/xent';

const COLSUM_ROWS = 256; // activation.ts colSum: rows reduced per partial

export interface DeviceLimits {
  maxStorageBufferBindingSize: number;
  maxBufferSize: number;
  /** A software/CPU adapter (kernels/matmul isCpuAdapter): gram plans no occupancy splits there. Default false (the larger scratch). */
  cpuAdapter?: boolean;
}

/** The limits of a context as the estimates read them. */
export function deviceLimits(ctx: GpuContext): DeviceLimits {
  const l = ctx.limits;
  return { maxStorageBufferBindingSize: l.maxStorageBufferBindingSize, maxBufferSize: l.maxBufferSize, cpuAdapter: isCpuAdapter(ctx) };
}

/** Pool bytes of a tensor of n f32 (or u32) entries. */
export const f32 = (n: number): number => bucketSize(Math.max(4, 4 * n));

/** Rows of one cross-entropy chunk for N rows: `rows` when the run chooses them, else xent.defaultChunkRows. */
export function chunkRowsFor(c: ModelConfig, lim: DeviceLimits, N: number, rows?: number): number {
  const budget = Math.min(DEFAULT_CHUNK_BYTES, lim.maxStorageBufferBindingSize);
  return Math.min(N, rows ?? Math.max(1, Math.floor(budget / (4 * c.vocabSize))));
}

/** Split-K partials of one [M, K]·[K, N] matmul (upper bound: one tile workgroup, i.e. the most splits). */
export function splitScratch(M: number, N: number, K: number, lim: DeviceLimits): number {
  const { splits } = planSplitK(M, N, K, 1, 1, Math.min(lim.maxStorageBufferBindingSize, lim.maxBufferSize));
  return splits > 1 ? f32(splits * M * N) : 0;
}

/** colSum's partials over n rows of R columns (two consecutive levels alive at once). */
export function colSumScratch(n: number, R: number): number {
  let most = 0, prev = 0;
  for (let rows = n; rows > COLSUM_ROWS; rows = Math.ceil(rows / COLSUM_ROWS)) {
    const part = f32(Math.ceil(rows / COLSUM_ROWS) * R);
    most = Math.max(most, prev + part);
    prev = part;
  }
  return most;
}

/** Gram partials of one accumulation of `rows` tokens into an n×n matrix (gramAccumulate's default variant, 128-wide tiles). */
export function gramScratch(n: number, rows: number, lim: DeviceLimits): number {
  const nt = Math.ceil(n / 128);
  const s = planGramSplits((nt * (nt + 1)) / 2, rows, n, lim.maxStorageBufferBindingSize, lim.cpuAdapter ? 0 : GRAM_MIN_WORKGROUPS);
  return s > 1 ? f32(s * n * n) : 0;
}

// ---- replaying allocations ------------------------------------------------------------------------

/** What a replay calls for the hooks the model's passes attach around the block (kfac.ts, backward.ts, the peers). */
export interface TallyHooks {
  /** LayerStepOptions.onInput with an input [rows, C]. */
  input?: (t: Tally, key: string, rows: number, C: number) => void;
  /** backward.ts linear's hooks on dy [rows, R] of linear `name` [R, C] (G accumulation, weight gradients), before dy·W. */
  outputGrad?: (t: Tally, name: string, rows: number, R: number, C: number) => void;
  /** false: DecoderModel.cached tensors are counted elsewhere (the surgeon's `cached`), not where a walk first asks for them. */
  cached?: boolean;
}

/**
 * Pool bytes alive along a replay of allocations; `mark()` returns the peak since the last mark. As a
 * family walk's recorder (arch/<family>/memory.ts LayerAllocs): handles are the buffers' bucket bytes,
 * a linear is its output then its split-K scratch (matmul.ts order), a cached tensor is added once.
 */
export class Tally implements LayerAllocs {
  now = 0;
  private top = 0;
  largest = { bytes: 0, what: '' };
  private readonly keys = new Set<string>();
  constructor(private readonly lim: DeviceLimits, public hooks: TallyHooks = {}) {}
  /** Allocate n f32/u32 entries; returns the bucket bytes (for free). */
  add(n: number, what?: string): number {
    if (what) this.big(4 * n, what);
    return this.bytes(f32(n));
  }
  big(bytes: number, what: string): void {
    if (bytes > this.largest.bytes) this.largest = { bytes, what };
  }
  /** Allocate already-bucketed bytes (scratch sized by memory.ts). */
  bytes(b: number): number {
    this.now += b;
    this.top = Math.max(this.top, this.now);
    return b;
  }
  free(...bs: number[]): void {
    for (const b of bs) this.now -= b;
  }
  /** A buffer released right after its use. */
  temp(b: number): void {
    this.free(this.bytes(b));
  }
  mark(): number {
    const p = this.top;
    this.top = this.now;
    return p;
  }
  alloc(n: number, what?: string): number {
    return this.add(n, what);
  }
  linear(_name: string, M: number, N: number, K: number, into?: number, what?: string): number {
    const out = into ?? this.add(M * N, what);
    this.temp(splitScratch(M, N, K, this.lim));
    return out;
  }
  input(key: string, rows: number, C: number): void {
    this.hooks.input?.(this, key, rows, C);
  }
  linearBackward(name: string, rows: number, R: number, C: number, into?: number): number {
    this.hooks.outputGrad?.(this, name, rows, R, C);
    const out = into ?? this.add(rows * C);
    this.temp(splitScratch(rows, C, R, this.lim));
    return out;
  }
  cached(key: string, n: number): void {
    if (this.hooks.cached === false || this.keys.has(key)) return;
    this.keys.add(key);
    this.add(n);
  }
}

/** A family's allocation walk (src/arch/<family>/memory.ts) bound to its config. */
export interface FamilyWalk {
  cachedTensors(T: number): Array<{ key: string; n: number }>;
  embed(r: LayerAllocs, N: number): number;
  layer(r: LayerAllocs, l: number, x: number, B: number, T: number, o: LayerWalkOptions): { x: number; saved?: number[] };
  final(r: LayerAllocs, x: number, N: number, save: boolean): { hf: number; saved?: number[] };
  finalBackward(r: LayerAllocs, N: number): number;
  layerBackward(r: LayerAllocs, l: number, dx: number, B: number, T: number): number;
}

export function familyWalk(c: ModelConfig): FamilyWalk {
  if (c.family === 'llama') {
    return {
      cachedTensors: (T) => llamaCachedTensors(c, T), embed: (r, N) => llamaEmbedAllocs(c, r, N),
      layer: (r, l, x, B, T, o) => llamaLayerAllocs(c, r, l, x, B, T, o), final: (r, x, N, save) => llamaFinalAllocs(c, r, x, N, save),
      finalBackward: (r, N) => llamaFinalBackwardAllocs(c, r, N), layerBackward: (r, l, dx, B, T) => llamaLayerBackwardAllocs(c, r, l, dx, B, T),
    };
  }
  return {
    cachedTensors: (T) => optCachedTensors(c, T), embed: (r, N) => optEmbedAllocs(c, r, N),
    layer: (r, l, x, B, T, o) => optLayerAllocs(c, r, l, x, B, T, o), final: (r, x, N, save) => optFinalAllocs(c, r, x, N, save),
    finalBackward: (r, N) => optFinalBackwardAllocs(c, r, N), layerBackward: (r, l, dx, B, T) => optLayerBackwardAllocs(c, r, l, dx, B, T),
  };
}

/** Pool bytes of the model-held tensors (DecoderModel.cached) that forwards of these lengths build. */
export function cachedBytes(c: ModelConfig, lengths: number[]): number {
  const seen = new Map<string, number>();
  for (const T of lengths) for (const t of familyWalk(c).cachedTensors(T)) seen.set(t.key, f32(t.n));
  return [...seen.values()].reduce((a, b) => a + b, 0);
}

/**
 * crossEntropy (kernels/xent.ts) in its allocation order: loss, lse [N], dHidden [N, d] (grad), sampled
 * labels [N] (sample), the logits chunk, the chunk copies of hidden and dHidden (several chunks); per
 * chunk the head matmul's split-K partials (K = d) and the gradient matmul's (K = V). Returns the
 * handles the kernel returns (the chunk buffers are freed).
 */
export function crossEntropyAllocs(t: Tally, c: ModelConfig, lim: DeviceLimits, N: number, grad: boolean, sample: boolean, rows?: number): { loss: number; lse: number; dHidden: number; sampled: number } {
  const d = c.hiddenSize, V = c.vocabSize, ch = chunkRowsFor(c, lim, N, rows);
  const loss = t.add(N), lse = t.add(N), dHidden = grad ? t.add(N * d) : 0, sampled = sample ? t.add(N) : 0;
  const chunks = [t.add(ch * V), ...(ch < N ? [t.add(ch * d)] : []), ...(grad && ch < N ? [t.add(ch * d)] : [])];
  t.temp(splitScratch(ch, V, d, lim));
  if (grad) t.temp(splitScratch(ch, d, V, lim));
  t.free(...chunks);
  return { loss, lse, dHidden, sampled };
}

/**
 * One model pass over B windows of T tokens replayed with the family's walk (model/forward.ts,
 * backward.ts): ids and labels (uploadBatch), the embedding, every layer, the final norm; with
 * `backward` the forward is saved (keepInputs for weight gradients), then one backward (the
 * cross-entropy with its gradient, the final norm's and every layer's backward, `hooks` on each linear)
 * and the release of the saved forward; without it the perplexity step (cross-entropy without gradient,
 * per-window row sums). Returns the pass's peak above its start.
 */
export function replayPass(c: ModelConfig, lim: DeviceLimits, B: number, T: number, o: { backward: boolean; keepInputs?: boolean; sample?: boolean; headChunkRows?: number }, hooks: TallyHooks = {}): { peak: number; largest: Tally['largest'] } {
  const w = familyWalk(c), N = B * T, t = new Tally(lim, { ...hooks, cached: false });
  const ids = t.add(N), labels = t.add(N);
  let x = w.embed(t, N);
  const kept: number[] = [];
  for (let l = 0; l < c.numLayers; l++) {
    const r = w.layer(t, l, x, B, T, { save: o.backward, keepInputs: o.keepInputs });
    if (r.saved) kept.push(...r.saved);
    x = r.x;
  }
  const f = w.final(t, x, N, o.backward);
  if (o.backward) {
    const ce = crossEntropyAllocs(t, c, lim, N, true, !!o.sample, o.headChunkRows);
    t.free(ce.loss, ce.lse, ce.sampled);
    let dx = w.finalBackward(t, N);
    t.free(ce.dHidden);
    for (let l = c.numLayers - 1; l >= 0; l--) dx = w.layerBackward(t, l, dx, B, T);
    t.free(dx, f.hf, ...(f.saved ?? []), ...kept); // releaseForward
  } else {
    const ce = crossEntropyAllocs(t, c, lim, N, false, false);
    t.free(f.hf, ce.lse);
    const sums = t.add(B); // rowSums
    t.free(ce.loss, sums);
  }
  t.free(ids, labels);
  return { peak: t.mark(), largest: t.largest };
}

/** The bias flag of each distinct input (the K-FAC A factor has the ones column when its layers have biases). */
export const onesOf = (layers: PrunableLayer[]): Map<string, boolean> => new Map(layers.map((L) => [L.inputKey, L.bias]));
