/**
 * Peak GPU memory of a prune job, estimated from the model config and the job's settings before any
 * GPU work, and the refusal (LimitExceededError) when it does not fit the adapter's limits or the
 * caller's memoryBudget. The message says what would fit: fewer calibration tokens per batch (a smaller
 * batch), a shorter seqlen, fewer evaluation windows per batch, or fewer LoRA windows per Adam step.
 *
 * Model of the pool (src/gpu/pool.ts): every buffer is rounded up to its size bucket (bucketSize), and
 * a buffer returns to the pool as soon as its last reader is recorded, so the peak is the largest set of
 * buffers alive at once. Phases (src/surgeon/prune.ts, src/model/*):
 *   curvature  K-FAC accumulators (C+1)² per distinct input + R² per layer, the saved forward of one
 *              batch of B·T tokens, then the larger of the backward's cross-entropy chunk (logits
 *              chunk × V, split-K partials) and one layer's backward temporaries
 *   problems   factors + packed W' and live W', G, A per layer; then the damped inverses (+G⁻¹, A⁻¹)
 *              with one inversion's temporaries (~7 n²) at a time
 *   update     problems + costs, masks and live masks (3 W') + one layer's update temporaries
 *   evaluate   one forward batch without saving (⌊8192/T⌋ windows) + its cross-entropy chunk
 *   lora       (src/surgeon/lora.ts, after every shot, alone with the weights) the larger of the loss
 *              forwards (as evaluate, on the training windows) and the adapters (W0 copy, dW, db per
 *              target; A, B and their Adam moments) + the largest step part: merge (B·A), the saved
 *              forward with the q/k/v and fc1 inputs kept + the larger of its cross-entropy chunk and
 *              one layer's backward with weight gradients (matmul split-K / column-sum partials), or
 *              the Adam gradients of one adapter; Bl = min(windows, lora.batch ?? ⌊2048/T⌋) per step
 * peak = weights + the largest phase. Terms are upper bounds (every temporary of a step counted as
 * alive together), so the estimate errs high; test/api-memory.test.ts checks it against the pool's
 * measured peak on small runs (never below, within 2×; LoRA jobs on opt-micro within 10%).
 * The peer methods (SparseGPT, Wanda) have their own estimate in memory-peers.ts, built from the
 * helpers exported here, with the same refusal (checkFit).
 */

import type { GpuContext } from '../gpu/context';
import { bucketSize } from '../gpu/pool';
import { LimitExceededError } from '../gpu/errors';
import { expectedTensors, type ModelConfig } from '../io/config';
import { GRAM_MIN_WORKGROUPS, planGramSplits } from '../kernels/gram';
import { isCpuAdapter, planSplitK } from '../kernels/matmul';
import { DEFAULT_CHUNK_BYTES } from '../kernels/xent';
import { defaultKfacBatch } from '../model/kfac';

export interface MemorySettings {
  /** Calibration windows and tokens per window. */
  nsamples: number;
  seqlen: number;
  /** Calibration sequences per K-FAC forward/backward (default ⌊4096 / seqlen⌋, as accumulateKfac). */
  batch?: number;
  method?: string;
  structure?: string;
  /** Entries per correlated element chunk (default 2000). */
  maxChunk?: number;
  /** Per-shot (and dense) perplexity: window length and count. */
  evaluate?: { seqlen: number; windows: number };
  /**
   * LoRA corrections after every shot (surgeon/options.ts resolveLora): adapter rank (default 8),
   * adapted layers (default 'attention'), windows per Adam step (default ⌊2048 / seqlen⌋) and the
   * fraction of the calibration windows trained on (default 0.025, at least one window).
   */
  lora?: { rank?: number; targets?: 'attention' | 'all'; batch?: number; fraction?: number };
}

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

export interface MemoryEstimate {
  /** Bytes (pool buckets) of each part; `peak` = weights + the largest phase. */
  weights: number;
  factors: number;
  phases: { curvature: number; problems: number; update: number; evaluate: number; lora: number };
  peak: number;
  /** The largest single buffer (exact bytes, as bound) and what it holds. */
  largest: { bytes: number; what: string };
  /** Calibration sequences per batch and rows of one cross-entropy logits chunk. */
  batch: number;
  chunkRows: number;
}

export const EVAL_BATCH_TOKENS = 8192; // perplexity's default tokens per batch
const LORA_STEP_TOKENS = 2048; // lora.ts DEFAULT_STEP_TOKENS: windows per Adam step ⌊2048 / T⌋
const LORA_RANK = 8, LORA_FRACTION = 0.025; // resolveLora's defaults
const COLSUM_ROWS = 256; // activation.ts colSum: rows reduced per partial
const DEFAULT_MAX_CHUNK = 2000; // options.ts: entries per correlated element chunk
const INVERSE_TEMPS = 7; // spdInverse: damped copy, L, blocks, I, W, X, T/R alive around one call

/** Pool bytes of a tensor of n f32 (or u32) entries. */
export const f32 = (n: number): number => bucketSize(Math.max(4, 4 * n));

interface Layer { R: number; C: number; key: string }

/** The layers lora.ts adapts: q, k, v, out_proj ('attention') or every prunable linear ('all'). */
const loraLayers = (layers: Layer[], targets: 'attention' | 'all' = 'attention'): Layer[] =>
  layers.filter((L) => targets === 'all' || L.key.endsWith('.qkv') || L.key.endsWith('.out'));

/** LoRA training windows (loraWindows: max(1, round(fraction · n))) and windows per Adam step (min(those, lora.batch ?? ⌊2048 / T⌋)). */
function loraBatchOf(s: MemorySettings): { windows: number; batch: number } {
  const lo = s.lora ?? {};
  const windows = Math.min(s.nsamples, Math.max(1, Math.round((lo.fraction ?? LORA_FRACTION) * s.nsamples)));
  return { windows, batch: Math.max(1, Math.min(windows, lo.batch ?? Math.floor(LORA_STEP_TOKENS / s.seqlen))) };
}

/** The prunable linears (ALGORITHM.md §1) of an OPT config: q, k, v share their input. */
function layersOf(c: ModelConfig): Layer[] {
  const d = c.hiddenSize, f = c.ffnDim, out: Layer[] = [];
  for (let l = 0; l < c.numLayers; l++) {
    for (let i = 0; i < 3; i++) out.push({ R: d, C: d, key: `${l}.qkv` }); // q, k, v: one input
    out.push({ R: d, C: d, key: `${l}.out` }, { R: f, C: d, key: `${l}.fc1` }, { R: d, C: f, key: `${l}.fc2` });
  }
  return out;
}

/** Rows of one cross-entropy chunk (xent.defaultChunkRows) for N rows. */
function chunkRowsFor(c: ModelConfig, lim: DeviceLimits, N: number): number {
  const budget = Math.min(DEFAULT_CHUNK_BYTES, lim.maxStorageBufferBindingSize);
  return Math.min(N, Math.max(1, Math.floor(budget / (4 * c.vocabSize))));
}

/** Cross-entropy over N rows: logits chunk, chunk copies, loss/lse, optional gradient and its split-K partials. */
function crossEntropyBytes(c: ModelConfig, lim: DeviceLimits, N: number, grad: boolean): number {
  const d = c.hiddenSize, V = c.vocabSize, ch = chunkRowsFor(c, lim, N);
  let b = f32(ch * V) + 3 * f32(N) + (ch < N ? 2 * f32(ch * d) : 0);
  if (grad) {
    const { splits } = planSplitK(ch, d, V, 1, 1, Math.min(lim.maxStorageBufferBindingSize, lim.maxBufferSize));
    b += f32(N * d) + (splits > 1 ? f32(splits * ch * d) : 0);
  }
  return b;
}

/** Split-K partials of one [M, K]·[K, N] matmul (upper bound: one tile workgroup, i.e. the most splits). */
export function splitScratch(M: number, N: number, K: number, lim: DeviceLimits): number {
  const { splits } = planSplitK(M, N, K, 1, 1, Math.min(lim.maxStorageBufferBindingSize, lim.maxBufferSize));
  return splits > 1 ? f32(splits * M * N) : 0;
}

/** colSum's partials over n rows of R columns (two consecutive levels alive at once). */
function colSumScratch(n: number, R: number): number {
  let most = 0, prev = 0;
  for (let rows = n; rows > COLSUM_ROWS; rows = Math.ceil(rows / COLSUM_ROWS)) {
    const part = f32(Math.ceil(rows / COLSUM_ROWS) * R);
    most = Math.max(most, prev + part);
    prev = part;
  }
  return most;
}

/** One forward batch without saving (perplexity) over `windows` windows of Te tokens, with its cross-entropy chunk. */
export function forwardOnlyBytes(c: ModelConfig, lim: DeviceLimits, Te: number, windows: number): number {
  const Be = Math.max(1, Math.min(windows, Math.floor(EVAL_BATCH_TOKENS / Te)));
  const Ne = Be * Te;
  return 7 * f32(Ne * c.hiddenSize) + f32(Ne * c.ffnDim) + 6 * f32(Ne) + f32(Ne * c.numHeads) + crossEntropyBytes(c, lim, Ne, false) + f32(Be);
}

/** Perplexity over `windows` windows of `seqlen` tokens: its peak above the weights (forwardOnlyBytes) and its largest buffer, the logits chunk. */
export function evaluationOf(c: ModelConfig, lim: DeviceLimits, ev: { seqlen: number; windows: number }): { bytes: number; largest: { bytes: number; what: string } } {
  const Ne = Math.max(1, Math.min(ev.windows, Math.floor(EVAL_BATCH_TOKENS / ev.seqlen))) * ev.seqlen;
  const rows = chunkRowsFor(c, lim, Ne);
  return { bytes: forwardOnlyBytes(c, lim, ev.seqlen, ev.windows), largest: { bytes: 4 * rows * c.vocabSize, what: `evaluation logits chunk (${rows} × ${c.vocabSize})` } };
}

/** Gram partials of one accumulation of `rows` tokens into an n×n matrix (gramAccumulate's default variant, 128-wide tiles). */
export function gramScratch(n: number, rows: number, lim: DeviceLimits): number {
  const nt = Math.ceil(n / 128);
  const s = planGramSplits((nt * (nt + 1)) / 2, rows, n, lim.maxStorageBufferBindingSize, lim.cpuAdapter ? 0 : GRAM_MIN_WORKGROUPS);
  return s > 1 ? f32(s * n * n) : 0;
}

/** Pool bytes of the model's weights (every tensor of the config) and its largest tensor. */
export function weightsOf(c: ModelConfig): { weights: number; largest: { bytes: number; what: string } } {
  let weights = 0, largest = { bytes: 0, what: '' };
  for (const [name, shape] of expectedTensors(c)) {
    const n = shape.reduce((a, b) => a * b, 1);
    weights += f32(n);
    if (4 * n > largest.bytes) largest = { bytes: 4 * n, what: `weight ${name}` };
  }
  return { weights, largest };
}

export function estimatePruneMemory(c: ModelConfig, s: MemorySettings, lim: DeviceLimits): MemoryEstimate {
  const d = c.hiddenSize, f = c.ffnDim, H = c.numHeads, V = c.vocabSize, Lc = c.numLayers;
  const method = s.method ?? 'surgeon';
  const curvature = method !== 'magnitude';
  const layers = layersOf(c);
  const own = weightsOf(c), weights = own.weights;
  let largest = own.largest;
  const big = (bytes: number, what: string) => { if (bytes > largest.bytes) largest = { bytes, what }; };

  // ---- curvature (K-FAC) ----
  const T = s.seqlen;
  const B = Math.max(1, Math.min(s.nsamples, s.batch ?? defaultKfacBatch(T)));
  const N = B * T;
  const keys = new Set<string>();
  let factors = 0;
  for (const L of layers) {
    if (!keys.has(L.key)) { keys.add(L.key); factors += f32((L.C + 1) ** 2); }
    factors += f32(L.R * L.R);
  }
  if (!curvature) factors = 0;
  const chunkRows = chunkRowsFor(c, lim, N);
  let phaseCurv = 0;
  if (curvature) {
    const nd = f32(N * d), nn = f32(N);
    const saved = Lc * (6 * nd + 4 * nn + f32(N * H) + f32(N * f)) + 2 * nd + 2 * nn + 2 * nn /* ids, labels */;
    const gram = Math.max(gramScratch(d + 1, N, lim), gramScratch(f + 1, N, lim), gramScratch(f, N, lim));
    const fwdTemp = nd + 2 * nn + gram;
    const ce = crossEntropyBytes(c, lim, N, true) + nn; // + sampled labels
    const layerBwd = f32(N * f) + 7 * nd + 2 * f32(N * H) + gram + f32(2 * d * Math.ceil(N / 64));
    phaseCurv = factors + saved + Math.max(fwdTemp, ce, layerBwd);
    big(4 * N * f, `activations (${B} × ${T} tokens × ffn ${f})`);
    big(4 * (f + 1) ** 2, `K-FAC factor (${f + 1})²`);
  }
  big(4 * chunkRows * V, `logits chunk (${chunkRows} × ${V})`);

  // ---- problems and inverses ----
  let wp = 0, gl = 0, al = 0, maxN2 = 0, maxRC = 0;
  for (const L of layers) {
    const RC = L.R * (L.C + 1);
    wp += f32(RC);
    gl += f32(L.R * L.R);
    al += f32((L.C + 1) ** 2);
    maxN2 = Math.max(maxN2, f32(Math.max(L.R, L.C + 1) ** 2));
    maxRC = Math.max(maxRC, f32(RC));
  }
  const stats = f32(layers.reduce((a, L) => a + 2 * (L.R + L.C + 2) + 2, 0));
  const live = curvature ? gl + al : 0;
  const inv = method === 'surgeon' ? gl + al : 0;
  const P1 = 2 * wp + live + stats;
  const phaseProblems = Math.max(factors + P1, P1 + inv + (inv ? INVERSE_TEMPS * maxN2 : 0));

  // ---- update ----
  // rows-cols: every layer's update is queued before the first solve's pivot check is awaited, so all
  // layers' gathered blocks (selected rows/columns of W', G⁻¹, A⁻¹, the solutions, the new W') are alive
  // together (bounded by all rows/columns selected); one solve's internal temporaries at a time.
  // element (surgeon, correlated): layers and chunks run one after another; per chunk S (≤ maxChunk²),
  // its factor and solves, and per layer E, X, Y and the new W' (≤ 4 W').
  const structured = s.structure === 'rows-cols';
  const correlated = method === 'surgeon' && (s.maxChunk ?? DEFAULT_MAX_CHUNK) > 1;
  const chunk = Math.min(s.maxChunk ?? DEFAULT_MAX_CHUNK, DEFAULT_MAX_CHUNK);
  let updTemp: number;
  if (structured) {
    updTemp = method === 'surgeon' ? INVERSE_TEMPS * maxN2 : 0;
    if (method === 'surgeon') for (const L of layers) updTemp += 3 * f32(L.R * (L.C + 1)) + 2 * f32(L.R * L.R) + 3 * f32((L.C + 1) ** 2) + 2 * f32(Math.max(L.R, L.C + 1));
    updTemp += 2 * stats;
  } else {
    updTemp = 3 * wp + (method === 'surgeon' ? 4 * maxRC + (correlated ? 4 * f32(chunk * chunk) + maxN2 : 0) : 0);
  }
  const phaseUpdate = P1 + inv + updTemp;

  // ---- evaluation ----
  let phaseEval = 0;
  if (s.evaluate) {
    const ev = evaluationOf(c, lim, s.evaluate);
    phaseEval = ev.bytes;
    big(ev.largest.bytes, ev.largest.what);
  }

  // ---- LoRA corrections (after the shot's problems are freed: only the weights stay) ----
  // loraCorrect: meanLoss (a forward batch without saving over the trained windows), then per Adam step
  // (loraStep) with the adapters alive: mergeLora's B·A [R, C], one at a time; the forward with save and
  // keepInputs (per layer x, y1, q, k, v, attn, h, y2 [N, d], act [N, f], lse [N, H], 4 LayerNorm
  // statistics; hf, xf, meanF, rstdF; ids, labels) and during it the split-K partials of a linear; the
  // backward's cross-entropy chunk, or one layer's temporaries (fc: dx, dact, dy2; attention: dh, dattn,
  // dq, dk, dv, delta) + the partials of a weight-gradient matmul (K = N rows), its bias colSum or an
  // input-gradient matmul; after releaseForward, one adapter's gA, gB (+ partials).
  let phaseLora = 0;
  if (s.lora) {
    const r = s.lora.rank ?? LORA_RANK;
    const { windows: wins, batch: Bl } = loraBatchOf(s), Nl = Bl * T, nd = f32(Nl * d), nn = f32(Nl);
    let adapters = 0, merge = 0, adam = 0, wgrad = 0;
    for (const L of loraLayers(layers, s.lora.targets)) {
      adapters += 2 * f32(L.R * L.C) + f32(L.R) + 3 * f32(r * L.C) + 3 * f32(L.R * r);
      merge = Math.max(merge, f32(L.R * L.C) + splitScratch(L.R, L.C, r, lim));
      adam = Math.max(adam, f32(L.R * r) + f32(r * L.C) + Math.max(splitScratch(L.R, r, L.C, lim), splitScratch(r, L.C, L.R, lim)));
      wgrad = Math.max(wgrad, splitScratch(L.R, L.C, Nl, lim), colSumScratch(Nl, L.R));
    }
    const saved = Lc * (8 * nd + 4 * nn + f32(Nl * H) + f32(Nl * f)) + 2 * nd + 2 * nn + 2 * nn /* ids, labels */;
    const lin = Math.max(splitScratch(Nl, d, d, lim), splitScratch(Nl, f, d, lim), splitScratch(Nl, d, f, lim));
    const layerBwd = Math.max(2 * nd + f32(Nl * f), 5 * nd + f32(Nl * H)) + Math.max(lin, wgrad);
    const step = saved + Math.max(lin, crossEntropyBytes(c, lim, Nl, true), layerBwd);
    phaseLora = Math.max(forwardOnlyBytes(c, lim, T, wins), adapters + Math.max(merge, step, adam));
    big(4 * Nl * f, `LoRA activations (${Bl} × ${T} tokens × ffn ${f})`);
    big(4 * chunkRowsFor(c, lim, Nl) * V, `LoRA logits chunk (${chunkRowsFor(c, lim, Nl)} × ${V})`);
  }

  const phases = { curvature: phaseCurv, problems: phaseProblems, update: phaseUpdate, evaluate: phaseEval, lora: phaseLora };
  return { weights, factors, phases, peak: weights + Math.max(...Object.values(phases)), largest, batch: B, chunkRows };
}

/**
 * The most K-FAC windows per forward/backward, between accumulateKfac's default ⌊4096 / T⌋ and
 * maxBatch (and the number of windows), whose estimated peak stays within the budget — or within
 * the default batch's own peak when another phase needs more anyway; the default when none larger
 * fits. More windows per batch fill a large GPU better (opt-mini on an H200: 3.6 s per K-FAC pass at 2,
 * 2.5 s at 16) at the price of activations that grow with the batch.
 */
export function autoKfacBatch(c: ModelConfig, s: MemorySettings, lim: DeviceLimits, budget: number, maxBatch = 16): number {
  const base = defaultKfacBatch(s.seqlen);
  const top = Math.min(maxBatch, s.nsamples);
  const cap = Math.max(budget, estimatePruneMemory(c, { ...s, batch: Math.min(base, s.nsamples) }, lim).peak);
  for (let b = top; b > base; b--) {
    const e = estimatePruneMemory(c, { ...s, batch: b }, lim);
    if (e.peak <= cap && e.largest.bytes <= lim.maxStorageBufferBindingSize && bucketSize(e.largest.bytes) <= lim.maxBufferSize) return b;
  }
  return Math.min(base, Math.max(1, s.nsamples));
}

export const mib = (b: number): string => `${(b / 2 ** 20).toFixed(1)} MiB`;

/** What checkFit needs of an estimate. */
export interface Fit { peak: number; largest: { bytes: number; what: string } }

/**
 * Throw LimitExceededError when an estimate cannot fit: a buffer above maxStorageBufferBindingSize or
 * maxBufferSize, or (with `budget`) a peak above budget − inUse. `needs` describes the peak (budget
 * message); `hint(fits)` names settings whose estimate passes `fits` ("; would fit: …").
 */
export function checkFit<E extends Fit>(est: E, lim: DeviceLimits, budget: number | undefined, inUse: number, needs: string, hint: (fits: (e: E) => boolean) => string): void {
  const bind = lim.maxStorageBufferBindingSize;
  if (est.largest.bytes > bind) {
    throw new LimitExceededError('maxStorageBufferBindingSize', est.largest.bytes, bind, `${est.largest.what} does not fit in one storage binding on this GPU${hint((e) => e.largest.bytes <= bind)}`);
  }
  if (bucketSize(est.largest.bytes) > lim.maxBufferSize) {
    throw new LimitExceededError('maxBufferSize', bucketSize(est.largest.bytes), lim.maxBufferSize, `${est.largest.what} does not fit in one buffer on this GPU${hint((e) => bucketSize(e.largest.bytes) <= lim.maxBufferSize)}`);
  }
  if (budget !== undefined && est.peak + inUse > budget) {
    const avail = budget - inUse;
    throw new LimitExceededError('memoryBudget', est.peak + inUse, budget,
      `this job needs about ${mib(est.peak)} at its peak (${needs})${inUse ? ` besides ${mib(inUse)} already in use` : ''}${hint((e) => e.peak <= avail)}`);
  }
}

/** The name of an estimate's largest phase. */
export const worstPhase = (phases: Record<string, number>): string => Object.entries(phases).sort((a, b) => b[1] - a[1])[0][0];

/** The largest integer in lo…hi with ok(value) (ok monotone: true up to some value), or 0 if none. */
export function largestFit(lo: number, hi: number, ok: (v: number) => boolean): number {
  let best = 0;
  while (lo <= hi) {
    const mid = (lo + hi) >> 1;
    if (ok(mid)) { best = mid; lo = mid + 1; } else hi = mid - 1;
  }
  return best;
}

/** "N evaluation windows of T tokens" per batch that fit when the job's own evaluation setting does not (undefined: none, or not needed). */
export function evalWindowsHint<S extends { evaluate?: MemorySettings['evaluate'] }, E>(s: S, estimate: (s: S) => E, fits: (e: E) => boolean): string | undefined {
  const ev = s.evaluate;
  if (!ev || ev.windows <= 1 || fits(estimate(s))) return undefined;
  for (let w = Math.min(ev.windows, Math.floor(EVAL_BATCH_TOKENS / ev.seqlen)) - 1; w >= 1; w--) {
    if (fits(estimate({ ...s, evaluate: { ...ev, windows: w } }))) return `${w} evaluation window${w > 1 ? 's' : ''} of ${ev.seqlen} tokens`;
  }
  return undefined;
}

/** The hint's text: the settings that fit, or a plain "does not fit" with the smallest job's needs. */
export function hintText(tries: string[], floor: Fit): string {
  if (!tries.length) {
    return `; no smaller calibration or evaluation setting fits (1 sequence of 2 tokens still needs ${mib(floor.peak)} at its peak, largest buffer ${mib(floor.largest.bytes)}: ${floor.largest.what}): this model does not fit here`;
  }
  return `; would fit: ${tries.join(', or ')}`;
}

/**
 * Throw LimitExceededError when the job cannot fit: a buffer above maxStorageBufferBindingSize or
 * maxBufferSize, or (with `budget`) a peak above budget − inUse. The hint names settings that fit.
 */
export function checkPruneMemory(c: ModelConfig, s: MemorySettings, lim: DeviceLimits, budget?: number, inUse = 0): MemoryEstimate {
  const est = estimatePruneMemory(c, s, lim);
  checkFit(est, lim, budget, inUse, `${worstPhase(est.phases)} phase; weights ${mib(est.weights)}, K-FAC factors ${mib(est.factors)}`, (fits) => suggest(c, s, lim, fits));
  return est;
}

/** What would fit: the largest calibration batch, else the longest seqlen at batch 1, and evaluation windows per batch. */
function suggest(c: ModelConfig, s: MemorySettings, lim: DeviceLimits, fits: (e: MemoryEstimate) => boolean): string {
  const tries: string[] = [];
  const est = (x: MemorySettings) => estimatePruneMemory(c, x, lim);
  const B = est(s).batch;
  let b = B - 1;
  while (b >= 1 && !fits(est({ ...s, batch: b }))) b--;
  if (b > 0) tries.push(`a calibration batch of ${b} sequence${b > 1 ? 's' : ''} (${b * s.seqlen} tokens per forward/backward instead of ${B * s.seqlen})`);
  else {
    const t = largestFit(2, s.seqlen - 1, (mid) => fits(est({ ...s, seqlen: mid, batch: 1, evaluate: s.evaluate && { ...s.evaluate, seqlen: Math.min(mid, s.evaluate.seqlen) } })));
    if (t > 0) tries.push(`seqlen ≤ ${t} with a calibration batch of 1 sequence`);
  }
  const ev = evalWindowsHint(s, est, fits);
  if (ev) tries.push(ev);
  if (s.lora) {
    let w = loraBatchOf(s).batch - 1;
    while (w >= 1 && !fits(est({ ...s, lora: { ...s.lora, batch: w } }))) w--;
    if (w > 0) tries.push(`a LoRA batch of ${w} window${w > 1 ? 's' : ''} per Adam step (lora.batch)`);
  }
  return hintText(tries, est({ ...s, seqlen: 2, batch: 1, nsamples: 1, evaluate: undefined }));
}
