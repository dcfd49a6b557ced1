/**
 * Interleaved low-rank first-order corrections (ALGORITHM.md §8): after a pruning shot, LoRA adapters
 * on the chosen linears are trained with Adam on a few calibration windows, then absorbed into W.
 *
 * For y = (W0 + M∘(s·B·A)) x + b, B [R, r] (init 0), A [r, C] (init U(±1/√C), seeded), s = alpha/r and
 * the keep-mask M = (W0 ≠ 0) taken when the correction starts:
 *   ∂L/∂B = s·(M∘∂L/∂W_eff)·Aᵀ,   ∂L/∂A = s·Bᵀ·(M∘∂L/∂W_eff)
 * where ∂L/∂W_eff is the weight gradient the OPT backward computes while the model's weight tensor
 * holds W_eff. One step = merge W_eff into the model (maskedMerge), forward + backward of a batch of
 * windows with weight gradients for the targets only, mask, two small matmuls per layer, Adam on A and B.
 * The loss is the mean over the batch's windows of the per-sequence mean CE (as in K-FAC's dW).
 * Absorption is the same merge with the final A, B: pruned entries, removed rows and removed columns of
 * W0 are zero, so the zero pattern (rows, columns, N:M groups, elements) is preserved bit-exactly and
 * biases are never touched. Nothing is read back inside the training loop.
 */

import type { GpuContext } from '../gpu/context';
import { ShapeError } from '../gpu/errors';
import type { Tensor } from '../gpu/tensor';
import { adamStep, maskedMerge, maskLike } from '../kernels/adam';
import { fill } from '../kernels/elementwise';
import { matmul } from '../kernels/matmul';
import { backwardBatch, type LinearGrad } from '../model/backward';
import { uploadBatch } from '../model/batch';
import { perplexity } from '../model/eval';
import { forwardBatch, releaseForward } from '../model/forward';
import type { DecoderModel, PrunableLayer } from '../model/model';
import { PruneAbortedError, resolveLora, type ResolvedLora } from './options';

export interface LoraOptions {
  /** Adapter rank r (default 8). */
  rank?: number;
  /** Scale s = alpha / rank (default alpha = rank, s = 1). */
  alpha?: number;
  /** 'attention' = q, k, v, out_proj (default); 'all' = every prunable linear. */
  targets?: 'attention' | 'all';
  /** Adam learning rate (default 1e-4; betas 0.9, 0.999, eps 1e-8). */
  lr?: number;
  /** Passes over the training windows (default 1). */
  epochs?: number;
  /** Fraction of the calibration windows trained on (default 0.025, at least one window). */
  fraction?: number;
  /** Windows per Adam step (default ⌊2048 / seqlen⌋, at least 1). */
  batch?: number;
  /** Seeds the window subset and the A initialisation (default 0; pruneModel: lora.seed ?? seed, plus shot − 1). */
  seed?: number;
}

export interface LoraRunOptions extends LoraOptions {
  signal?: AbortSignal;
  /** Adam steps done / total. */
  onProgress?: (done: number, total: number) => void;
}

export interface LoraResult {
  seconds: number;
  steps: number;
  /** Mean per-window loss (nats) on the training windows before and after the correction. */
  lossBefore: number;
  lossAfter: number;
  /** Indices of the calibration windows trained on. */
  windows: number[];
}

// Rows per Adam step by default: 2048 (one paper-length window) keeps every matmul of the step full on a
// large GPU while giving several steps over the ~3 windows of the default subset.
const DEFAULT_STEP_TOKENS = 2048;
const BETA1 = 0.9, BETA2 = 0.999, EPS = 1e-8; // Adam defaults (Kingma & Ba; PyTorch)

/** Deterministic PRNG (mulberry32): same stream on every platform. */
function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

const mix = (seed: number, k: number): number => (Math.imul((seed ^ 0x9e3779b9) >>> 0, 0x85ebca6b) + Math.imul(k + 1, 0xc2b2ae35)) >>> 0;

/** The prunable layers that get adapters (the family says which are 'attention'). */
export function loraTargets(model: DecoderModel, targets: 'attention' | 'all' = 'attention'): PrunableLayer[] {
  const names = new Set(model.spec.loraTargets(model.config, targets));
  return model.prunableLayers().filter((L) => names.has(L.name));
}

/** Initial A [r, C] of adapter `index`: U(−1/√C, 1/√C) from (seed, index), the Kaiming-uniform bound of LoRA. */
export function loraInitA(r: number, C: number, seed: number, index: number): Float32Array {
  const u = prng(mix(seed, index)), bound = 1 / Math.sqrt(C);
  return Float32Array.from({ length: r * C }, () => (2 * u() - 1) * bound);
}

/** Sorted indices of max(1, round(fraction·n)) distinct windows out of n, seeded partial Fisher–Yates. */
export function loraWindows(n: number, fraction: number, seed: number): number[] {
  const k = Math.min(n, Math.max(1, Math.round(fraction * n)));
  const idx = Array.from({ length: n }, (_, i) => i), u = prng(mix(seed, -1));
  for (let i = 0; i < k; i++) {
    const j = i + Math.floor(u() * (n - i));
    [idx[i], idx[j]] = [idx[j], idx[i]];
  }
  return idx.slice(0, k).sort((a, b) => a - b);
}

export interface LoraAdapter {
  layer: PrunableLayer;
  /** The weight when the correction started (its zeros are the keep-mask). */
  W0: Tensor;
  A: Tensor; B: Tensor; mA: Tensor; vA: Tensor; mB: Tensor; vB: Tensor;
  /** Weight-gradient accumulators of the backward (db is not used: biases are not adapted). */
  grad: LinearGrad;
}

export interface LoraState { cfg: ResolvedLora; adapters: LoraAdapter[]; steps: number }

/** Adapters for cfg.targets: W0 copies of the current weights, A seeded, B and the Adam moments zero. */
export function createLora(ctx: GpuContext, model: DecoderModel, cfg: ResolvedLora): LoraState {
  const adapters: LoraAdapter[] = [];
  loraTargets(model, cfg.targets).forEach((L, i) => {
    const w = model.weight(`${L.name}.weight`);
    const W0 = ctx.empty([L.R, L.C]);
    ctx.copy(w, W0);
    const r = cfg.rank;
    adapters.push({
      layer: L, W0,
      A: ctx.upload(loraInitA(r, L.C, cfg.seed, i), [r, L.C]), B: ctx.zeros([L.R, r]),
      mA: ctx.zeros([r, L.C]), vA: ctx.zeros([r, L.C]), mB: ctx.zeros([L.R, r]), vB: ctx.zeros([L.R, r]),
      grad: { dW: ctx.empty([L.R, L.C]), db: L.bias ? ctx.empty([L.R]) : undefined },
    });
  });
  return { cfg, adapters, steps: 0 };
}

/** Write W0 + M∘(s·B·A) into every adapted weight of the model (also the final absorption). */
export function mergeLora(ctx: GpuContext, model: DecoderModel, st: LoraState): void {
  for (const a of st.adapters) {
    const d = matmul(ctx, a.B, a.A, { alpha: st.cfg.scale });
    maskedMerge(ctx, model.weight(`${a.layer.name}.weight`), a.W0, d);
    d.dispose();
  }
}

/** Put W0 back into every adapted weight (abandons the correction). */
export function restoreLora(ctx: GpuContext, model: DecoderModel, st: LoraState): void {
  for (const a of st.adapters) ctx.copy(a.W0, model.weight(`${a.layer.name}.weight`));
}

export function disposeLora(st: LoraState): void {
  for (const a of st.adapters) for (const t of [a.W0, a.A, a.B, a.mA, a.vA, a.mB, a.vB, a.grad.dW, a.grad.db]) t?.dispose();
  st.adapters.length = 0;
}

/** Record one Adam step on a batch of equal-length windows (validated by the caller). Leaves W_eff of the old A, B in the model. */
export function loraStep(ctx: GpuContext, model: DecoderModel, st: LoraState, seqs: Int32Array[]): void {
  const T = seqs[0].length, nb = seqs.length, s = st.cfg.scale;
  mergeLora(ctx, model, st);
  const grads = new Map<string, LinearGrad>();
  for (const a of st.adapters) {
    fill(ctx, a.grad.dW, 0);
    if (a.grad.db) fill(ctx, a.grad.db, 0);
    grads.set(a.layer.name, a.grad);
  }
  const { ids, labels } = uploadBatch(ctx, seqs, T);
  const fwd = forwardBatch(ctx, model, ids, nb, T, { save: true, keepInputs: true });
  backwardBatch(ctx, model, fwd, labels, nb, T, { weightGrads: grads });
  releaseForward(fwd);
  ids.dispose();
  labels.dispose();
  const t = ++st.steps;
  const hyper = { lr: st.cfg.lr, beta1: BETA1, beta2: BETA2, eps: EPS };
  for (const a of st.adapters) {
    // backward sums the per-sequence losses' gradients; 1/nb makes it the batch mean.
    maskLike(ctx, a.grad.dW, a.W0);
    const gB = matmul(ctx, a.grad.dW, a.A, { transB: true, alpha: s / nb }); // [R, C]·[r, C]ᵀ
    const gA = matmul(ctx, a.B, a.grad.dW, { transA: true, alpha: s / nb }); // [R, r]ᵀ·[R, C]
    adamStep(ctx, a.A, gA, a.mA, a.vA, t, hyper);
    adamStep(ctx, a.B, gB, a.mB, a.vB, t, hyper);
    gA.dispose();
    gB.dispose();
  }
}

/** Mean per-window next-token loss of equal-length windows (forward only). */
async function meanLoss(ctx: GpuContext, model: DecoderModel, wins: Int32Array[], signal?: AbortSignal): Promise<number> {
  const T = wins[0].length, ids = new Int32Array(wins.length * T);
  wins.forEach((w, i) => ids.set(w, i * T));
  try {
    const { nll } = await perplexity(ctx, model, ids, { seqlen: T, signal });
    return nll.reduce((a, b) => a + b, 0) / nll.length;
  } catch (e) {
    if (signal?.aborted) throw new PruneAbortedError('during the low-rank correction, in the loss of the training windows');
    throw e;
  }
}

const now = (): number => (typeof performance !== 'undefined' ? performance.now() : Date.now()) / 1000;

/**
 * Train adapters on a seeded subset of `calib` and absorb them into the model's weights (in place).
 * Options are validated first (PruneConfigError); windows must have equal lengths (ShapeError).
 * On abort (PruneAbortedError, checked before every Adam step) or error the adapted weights are
 * restored to their values at the start.
 */
export async function loraCorrect(ctx: GpuContext, model: DecoderModel, calib: Int32Array[], opts: LoraRunOptions = {}): Promise<LoraResult> {
  const start = now();
  const { signal, onProgress, ...lo } = opts;
  const cfg = resolveLora(lo, model.prunableLayers());
  if (calib.length === 0) throw new ShapeError('loraCorrect: no calibration windows');
  const T = calib[0].length;
  if (T < 2) throw new ShapeError(`loraCorrect: windows need ≥ 2 tokens, got ${T}`);
  const windows = loraWindows(calib.length, cfg.fraction, cfg.seed);
  const wins = windows.map((i) => calib[i]);
  wins.forEach((w, i) => {
    if (w.length !== T) throw new ShapeError(`loraCorrect: window ${windows[i]} has ${w.length} tokens, window 0 has ${T} (all must be equal)`);
    model.checkIds(w, T, `loraCorrect: window ${windows[i]}`);
  });
  const batch = cfg.batch ?? Math.max(1, Math.floor(DEFAULT_STEP_TOKENS / T));
  const total = cfg.epochs * Math.ceil(wins.length / batch);
  const lossBefore = await meanLoss(ctx, model, wins, signal);
  const st = createLora(ctx, model, cfg);
  try {
    let inFlight: Promise<unknown> | undefined;
    for (let e = 0; e < cfg.epochs; e++) {
      for (let s0 = 0; s0 < wins.length; s0 += batch) {
        if (signal?.aborted) throw new PruneAbortedError(`during the low-rank correction, before Adam step ${st.steps + 1} of ${total}`);
        loraStep(ctx, model, st, wins.slice(s0, s0 + batch));
        // At most two steps in flight, as in accumulateKfac: bounded queue, no idle GPU.
        ctx.flush();
        const done = Promise.race([ctx.device.queue.onSubmittedWorkDone(), ctx.gpu.lost.then((x) => Promise.reject(x))]);
        done.catch(() => undefined);
        if (inFlight) await inFlight;
        inFlight = done;
        onProgress?.(st.steps, total);
      }
    }
    mergeLora(ctx, model, st);
    await ctx.sync();
  } catch (e) {
    try {
      restoreLora(ctx, model, st);
    } catch {
      // a lost device may refuse the restore; the original error is the one to report
    }
    disposeLora(st);
    throw e;
  }
  disposeLora(st);
  const lossAfter = await meanLoss(ctx, model, wins, signal);
  return { seconds: now() - start, steps: st.steps, lossBefore, lossAfter, windows };
}
