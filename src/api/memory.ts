/**
 * Peak GPU memory of a prune job, estimated from the model config and the job's settings before any
 * GPU work, and the refusal (LimitExceededError) when it does not fit the adapter's limits or the
 * caller's memoryBudget. The message says what would fit: fewer calibration tokens per batch (a smaller
 * batch), a shorter seqlen, fewer evaluation windows per batch, or fewer LoRA windows per Adam step.
 *
 * Model of the pool (src/gpu/pool.ts): every buffer is rounded up to its size bucket (bucketSize), and
 * a buffer returns to the pool as soon as its last reader is recorded, so the peak is the largest set of
 * buffers alive at once. Phases (src/surgeon/prune.ts, src/model/*):
 *   curvature  K-FAC accumulators A per distinct input ((C+1)² with a bias, C² without) + R² per layer,
 *              and one K-FAC batch of B·T tokens: its saved forward, then the larger of the backward's
 *              cross-entropy chunk (logits chunk × V, split-K partials) and one layer's backward temporaries
 *   problems   factors + packed W' and live W', G, A per layer; then the damped inverses (+G⁻¹, A⁻¹)
 *              with one inversion's temporaries (~7 n²) at a time
 *   update     problems + costs, masks and live masks (3 W') + one layer's update temporaries (and, but
 *              for OPT, every element chunk's Cholesky pivot flag, kept until the shot's one check)
 *   evaluate   one forward batch without saving (⌊8192/T⌋ windows) + its cross-entropy chunk
 *   lora       (src/surgeon/lora.ts, after every shot, alone with the weights) the larger of the loss
 *              forwards (as evaluate, on the training windows) and the adapters (W0 copy, dW, db per
 *              target with a bias; A, B and their Adam moments) + the largest step part: merge (B·A), the
 *              saved forward with the linears' inputs kept + the larger of its cross-entropy chunk and
 *              one layer's backward with weight gradients (matmul split-K / column-sum partials), or
 *              the Adam gradients of one adapter; Bl = min(windows, lora.batch ?? ⌊2048 / T⌋) per step
 * peak = weights + cached + the largest phase (cached: the tensors a model builds once and keeps, the
 * Llama RoPE tables, one per table length its forwards use; 0 for OPT).
 *
 * The linears and their shapes come from the family (familySpec(c).prunableLayers, loraTargets); the
 * model passes (K-FAC batch, LoRA step, evaluation forward) from the family's allocation walk
 * (src/arch/<family>/memory.ts, the block's allocations in program order) replayed on a Tally — except
 * for OPT, whose hand-kept bounds below are kept so that its estimates stay as they were (the walk
 * cross-checks them: test/api-memory-llama.test.ts). Split-K and gram scratch are their plans' upper
 * bounds and the update phases sum upper bounds, so the estimate errs high; test/api-memory.test.ts and
 * test/api-memory-llama.test.ts check it against the pool's measured peak on small runs (never below,
 * within 2×; LoRA jobs within 10% where the LoRA step sets the peak).
 * The peer methods (SparseGPT, Wanda) have their own estimate in memory-peers.ts, built from the
 * helpers exported here, with the same refusal (checkFit).
 */

import { bucketSize } from '../gpu/pool';
import { LimitExceededError } from '../gpu/errors';
import { expectedTensors, familySpec, type ModelConfig, type PrunableLayer } from '../io/config';
import { packedCols } from '../arch/types';
import { planSplitK } from '../kernels/matmul';
import { defaultKfacBatch } from '../model/kfac';
import {
  cachedBytes, chunkRowsFor, colSumScratch, crossEntropyAllocs, f32, familyWalk, gramScratch, onesOf, replayPass, splitScratch, Tally,
  type DeviceLimits, type TallyHooks,
} from './memory-tally';
import { factorBytes, linearWeightBytes, problemsBytes, streamedPassBytes } from './memory-schedule';

export { cachedBytes, deviceLimits, f32, familyWalk, gramScratch, replayPass, splitScratch, Tally, type DeviceLimits, type FamilyWalk, type TallyHooks } from './memory-tally';

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
  /**
   * Decoder layers per calibration pass of a memory-budgeted shot (plan.ts): the factors, problems and
   * update of one group at a time, the other groups' inverses (and element costs) parked in host memory.
   * Absent or one group: every layer at once.
   */
  groups?: readonly (readonly number[])[];
  /** Rows per LM-head cross-entropy chunk in the K-FAC passes (default: xent's 512 MiB of logits). */
  headChunkRows?: number;
  /** Problems, inverses, costs and updates one prunable linear at a time (the pass's other factors parked on the host). */
  split?: 'layer' | 'linear';
  /** Streamed passes (model/kfac-stream.ts): `groups` run top-down, each saving only its own layers. */
  streamed?: boolean;
  /** The update pass keeps only the updated linear's weights on the GPU (prune.ts offloadUpdate). */
  offloadUpdate?: boolean;
  /** Sampled-label draws per calibration batch (0: the true labels, one backward). */
  fisherSamples?: number;
}


export interface MemoryEstimate {
  /** Bytes (pool buckets) of each part; `peak` = weights + cached + the largest phase. */
  weights: number;
  /** Tensors the model builds once and keeps (DecoderModel.cached: Llama's RoPE tables); 0 for OPT. */
  cached: number;
  factors: number;
  phases: { curvature: number; problems: number; update: number; evaluate: number; lora: number };
  peak: number;
  /** The largest single buffer (exact bytes, as bound) and what it holds. */
  largest: { bytes: number; what: string };
  /** Calibration sequences per batch and rows of one cross-entropy logits chunk. */
  batch: number;
  chunkRows: number;
  /** Host bytes a budgeted shot parks between its passes (inverses, element costs); 0 for one group. */
  hostBytes: number;
}

export const EVAL_BATCH_TOKENS = 8192; // perplexity's default tokens per batch
const LORA_STEP_TOKENS = 2048; // lora.ts DEFAULT_STEP_TOKENS: windows per Adam step ⌊2048 / T⌋
const LORA_RANK = 8, LORA_FRACTION = 0.025; // resolveLora's defaults
const DEFAULT_MAX_CHUNK = 2000; // options.ts: entries per correlated element chunk
const INVERSE_TEMPS = 7; // spdInverse: damped copy, L, blocks, I, W, X, T/R alive around one call


/** The layers lora.ts adapts (the family's loraTargets). */
function loraLayers(c: ModelConfig, layers: PrunableLayer[], targets: 'attention' | 'all' = 'attention'): PrunableLayer[] {
  const names = new Set(familySpec(c).loraTargets(c, targets));
  return layers.filter((L) => names.has(L.name));
}

/** LoRA training windows (loraWindows: max(1, round(fraction · n))) and windows per Adam step (min(those, lora.batch ?? ⌊2048 / T⌋)). */
function loraBatchOf(s: MemorySettings): { windows: number; batch: number } {
  const lo = s.lora ?? {};
  const windows = Math.min(s.nsamples, Math.max(1, Math.round((lo.fraction ?? LORA_FRACTION) * s.nsamples)));
  return { windows, batch: Math.max(1, Math.min(windows, lo.batch ?? Math.floor(LORA_STEP_TOKENS / s.seqlen))) };
}


/** Cross-entropy over N rows: logits chunk, chunk copies, loss/lse, optional gradient and its split-K partials (OPT's bound). */
function crossEntropyBytes(c: ModelConfig, lim: DeviceLimits, N: number, grad: boolean, rows?: number): number {
  const d = c.hiddenSize, V = c.vocabSize, ch = chunkRowsFor(c, lim, N, rows);
  let b = f32(ch * V) + 3 * f32(N) + (ch < N ? 2 * f32(ch * d) : 0);
  if (grad) {
    const { splits } = planSplitK(ch, d, V, 1, 1, Math.min(lim.maxStorageBufferBindingSize, lim.maxBufferSize));
    b += f32(N * d) + (splits > 1 ? f32(splits * ch * d) : 0);
  }
  return b;
}




/** One K-FAC batch (accumulateKfac): the saved forward with each input into its A, one backward with each ∂L/∂y into its G (sampled labels counted). */
export function kfacBatchBytes(c: ModelConfig, lim: DeviceLimits, B: number, T: number, headChunkRows?: number): { peak: number; largest: Tally['largest'] } {
  const ones = onesOf(familySpec(c).prunableLayers(c));
  return replayPass(c, lim, B, T, { backward: true, sample: true, headChunkRows }, {
    input: (t, key, rows, C) => t.temp(gramScratch(C + (ones.get(key) ? 1 : 0), rows, lim)),
    outputGrad: (t, _name, rows, R) => t.temp(gramScratch(R, rows, lim)),
  });
}

/** One LoRA step's pass (loraStep): forward with save and keepInputs, backward with the targets' weight gradients (dyᵀ·a split-K partials, db colSum partials). */
export function loraPassBytes(c: ModelConfig, lim: DeviceLimits, B: number, T: number, targets: PrunableLayer[]): { peak: number; largest: Tally['largest'] } {
  const byName = new Map(targets.map((L) => [L.name, L]));
  return replayPass(c, lim, B, T, { backward: true, keepInputs: true }, {
    outputGrad: (t, name, rows, R, C) => {
      const L = byName.get(name);
      if (!L) return;
      t.temp(splitScratch(R, C, rows, lim));
      if (L.bias) t.temp(colSumScratch(rows, R));
    },
  });
}

/**
 * OPT keeps the hand-kept bounds of its passes that its estimates have always used (byte-identical
 * across the architecture refactor; each is ≥ the walk's replay, test/api-memory-llama.test.ts); other
 * families are replayed from their walk. A compact OPT (per-layer widths, compact_layers) keeps these
 * bounds at the global maxima ffn_dim / num_attention_heads: an over-estimate, never an under-one.
 */
const handKept = (c: ModelConfig): boolean => c.family === 'opt';

/** One forward batch without saving (perplexity) over `windows` windows of Te tokens, with its cross-entropy chunk (the model's cached tensors not included). */
export function forwardOnlyBytes(c: ModelConfig, lim: DeviceLimits, Te: number, windows: number): number {
  const Be = Math.max(1, Math.min(windows, Math.floor(EVAL_BATCH_TOKENS / Te)));
  const Ne = Be * Te;
  if (!handKept(c)) return replayPass(c, lim, Be, Te, { backward: false }).peak;
  return 7 * f32(Ne * c.hiddenSize) + f32(Ne * c.ffnDim) + 6 * f32(Ne) + f32(Ne * c.numHeads) + crossEntropyBytes(c, lim, Ne, false) + f32(Be);
}

/** Perplexity over `windows` windows of `seqlen` tokens: its peak above the weights (forwardOnlyBytes) and its largest buffer, the logits chunk. */
export function evaluationOf(c: ModelConfig, lim: DeviceLimits, ev: { seqlen: number; windows: number }): { bytes: number; largest: { bytes: number; what: string } } {
  const Ne = Math.max(1, Math.min(ev.windows, Math.floor(EVAL_BATCH_TOKENS / ev.seqlen))) * ev.seqlen;
  const rows = chunkRowsFor(c, lim, Ne);
  return { bytes: forwardOnlyBytes(c, lim, ev.seqlen, ev.windows), largest: { bytes: 4 * rows * c.vocabSize, what: `evaluation logits chunk (${rows} × ${c.vocabSize})` } };
}

/** Pool bytes of the model's weights (every tensor of the config: a tied head is the embedding, an untied one lm_head) and its largest tensor. */
export function weightsOf(c: ModelConfig): { weights: number; largest: { bytes: number; what: string } } {
  let weights = 0, largest = { bytes: 0, what: '' };
  for (const [name, shape] of expectedTensors(c)) {
    const n = shape.reduce((a, b) => a * b, 1);
    weights += f32(n);
    if (4 * n > largest.bytes) largest = { bytes: 4 * n, what: `weight ${name}` };
  }
  return { weights, largest };
}

/** f32 bytes of an order-n symmetric matrix parked as its lower triangle (kernels/triangle.ts). */
const triangleBytes = (n: number): number => 2 * n * (n + 1);

/** Host bytes of layers' factors parked as lower triangles, one A per input. */
const parkedFactorBytes = (layers: readonly PrunableLayer[]): number => {
  const keys = new Set(layers.map((L) => L.inputKey));
  return [...keys].reduce((a, k) => a + triangleBytes(packedCols(layers.find((L) => L.inputKey === k)!)), 0) + layers.reduce((a, L) => a + triangleBytes(L.R), 0);
};

export function estimatePruneMemory(c: ModelConfig, s: MemorySettings, lim: DeviceLimits): MemoryEstimate {
  const d = c.hiddenSize, f = c.ffnDim, H = c.numHeads, V = c.vocabSize, Lc = c.numLayers;
  const method = s.method ?? 'surgeon';
  const curvature = method !== 'magnitude';
  const layers = familySpec(c).prunableLayers(c);
  const own = weightsOf(c), weights = own.weights;
  let largest = own.largest;
  const big = (bytes: number, what: string) => { if (bytes > largest.bytes) largest = { bytes, what }; };
  const hand = handKept(c);

  // ---- curvature (K-FAC) ----
  const T = s.seqlen;
  const B = Math.max(1, Math.min(s.nsamples, s.batch ?? defaultKfacBatch(T)));
  const N = B * T;
  const chunkRows = chunkRowsFor(c, lim, N, s.headChunkRows);
  // One K-FAC batch's activations and temporaries: the same for every layer group (the whole model runs).
  let pass = 0;
  if (curvature) {
    if (hand) {
      const nd = f32(N * d), nn = f32(N);
      const saved = Lc * (6 * nd + 4 * nn + f32(N * H) + f32(N * f)) + 2 * nd + 2 * nn + 2 * nn /* ids, labels */;
      const gram = Math.max(gramScratch(d + 1, N, lim), gramScratch(f + 1, N, lim), gramScratch(f, N, lim));
      const fwdTemp = nd + 2 * nn + gram;
      const ce = crossEntropyBytes(c, lim, N, true, s.headChunkRows) + nn; // + sampled labels
      const layerBwd = f32(N * f) + 7 * nd + 2 * f32(N * H) + gram + f32(2 * d * Math.ceil(N / 64));
      pass = saved + Math.max(fwdTemp, ce, layerBwd);
    } else {
      const walk = kfacBatchBytes(c, lim, B, T, s.headChunkRows);
      pass = walk.peak;
      big(walk.largest.bytes, walk.largest.what);
    }
    big(4 * N * f, `activations (${B} × ${T} tokens × ffn ${f})`);
    big(4 * chunkRows * V, `logits chunk (${chunkRows} × ${V})`); // only the K-FAC backward allocates it (magnitude never does)
  }

  const structured = s.structure === 'rows-cols';
  const correlated = method === 'surgeon' && (s.maxChunk ?? DEFAULT_MAX_CHUNK) > 1;
  const chunk = Math.min(s.maxChunk ?? DEFAULT_MAX_CHUNK, DEFAULT_MAX_CHUNK);
  /** Factors, problems and update of the layers of one group (all layers without a plan). */
  const groupPhases = (layers: PrunableLayer[]): { factors: number; curvature: number; problems: number; update: number } => {
    // ---- curvature (K-FAC) ----
    const keys = new Set<string>();
    let factors = 0, factorN = 0;
    for (const L of layers) {
      const C1 = packedCols(L);
      if (!keys.has(L.inputKey)) { keys.add(L.inputKey); factors += f32(C1 ** 2); } // q/k/v (and gate/up) share one A
      factors += f32(L.R * L.R);
      factorN = Math.max(factorN, C1, L.R);
    }
    if (!curvature) factors = 0;
    else big(4 * factorN ** 2, `K-FAC factor (${factorN})²`);
    const phaseCurv = curvature ? factors + pass : 0;

    // ---- problems and inverses ----
    let wp = 0, gl = 0, al = 0, maxN2 = 0, maxRC = 0;
    for (const L of layers) {
      const C1 = packedCols(L), RC = L.R * C1;
      wp += f32(RC);
      gl += f32(L.R * L.R);
      al += f32(C1 ** 2);
      maxN2 = Math.max(maxN2, f32(Math.max(L.R, C1) ** 2));
      maxRC = Math.max(maxRC, f32(RC));
    }
    // buildProblems' statistics: 2(R + C1) + 2 per layer (one more row and column counted: OPT's figure).
    const stats = f32(layers.reduce((a, L) => a + 2 * (L.R + packedCols(L) + 1) + 2, 0));
    const live = curvature ? gl + al : 0;
    const inv = method === 'surgeon' ? gl + al : 0;
    const P1 = 2 * wp + live + stats;
    const phaseProblems = Math.max(factors + P1, P1 + inv + (inv ? INVERSE_TEMPS * maxN2 : 0));

    // ---- update ----
    // rows-cols: the layers are updated one after another (surgeon/shot.ts), so one layer's gathered
    // blocks (selected rows/columns of W', G⁻¹, A⁻¹, the solutions, the new W') are alive at a time
    // (bounded by all its rows/columns selected); one solve's internal temporaries at a time.
    // element (surgeon, correlated): layers and chunks run one after another; per chunk S (≤ maxChunk²),
    // its factor and solves, and per layer E, X, Y and the new W' (≤ 4 W').
    // A budgeted shot's update pass rebuilds less than this (no live factors): the same bound holds.
    let updTemp: number;
    if (structured) {
      updTemp = method === 'surgeon' ? INVERSE_TEMPS * maxN2 : 0;
      if (method === 'surgeon') {
        updTemp += Math.max(0, ...layers.map((L) => {
          const C1 = packedCols(L);
          return 3 * f32(L.R * C1) + 2 * f32(L.R * L.R) + 3 * f32(C1 ** 2) + 2 * f32(Math.max(L.R, C1));
        }));
      }
      updTemp += 2 * stats;
    } else {
      // A chunk holds at most maxChunk entries and at most a whole layer's.
      const S = Math.min(chunk, Math.max(...layers.map((L) => L.R * packedCols(L))));
      updTemp = 3 * wp + (method === 'surgeon' ? 4 * maxRC + (correlated ? 4 * f32(S * S) + maxN2 : 0) : 0);
      if (correlated && !hand) {
        // PivotChecks: every chunk's Cholesky pivot flag stays until the shot's one check (+ the gathered
        // copy). Greedy chunks of whole rows: two neighbours hold > maxChunk entries, so a layer has at most
        // min(R, 2·R·C1/maxChunk + 1) chunks. (OPT's hand-kept figure predates this term, which its slack
        // covered on every measured run; it is left out there so that OPT's estimates stay byte-identical.)
        const chunks = layers.reduce((a, L) => a + Math.min(L.R, Math.floor((2 * L.R * packedCols(L)) / chunk) + 1), 0);
        updTemp += chunks * f32(1) + f32(chunks);
      }
    }
    return { factors, curvature: phaseCurv, problems: phaseProblems, update: P1 + inv + updTemp };
  };
  const groups = s.groups && s.groups.length > 1 ? s.groups : undefined;
  let factors = 0, phaseCurv = 0, phaseProblems = 0, phaseUpdate = 0, hostBytes = 0;
  if (!(s.streamed || s.split === 'linear' || s.offloadUpdate)) {
    const perGroup = groups ? groups.map((g) => { const set = new Set(g); return groupPhases(layers.filter((L) => set.has(L.layer))); }) : [groupPhases(layers)];
    factors = Math.max(...perGroup.map((g) => g.factors));
    phaseCurv = Math.max(...perGroup.map((g) => g.curvature));
    phaseProblems = Math.max(...perGroup.map((g) => g.problems));
    phaseUpdate = Math.max(...perGroup.map((g) => g.update));
  } else {
    // The finer schedules (memory-schedule.ts): per pass its factors and one batch of it (streamed: only
    // its own layers saved), per group of linears the problems replayed, the update's bound net of the
    // weights offloaded during it.
    const passes = s.groups && s.groups.length ? s.groups : [layers.map((L) => L.layer)];
    const nm = /^(\d+):(\d+)$/.exec(s.structure ?? '');
    const shape = { method, structured, nm: nm ? { n: Number(nm[1]), m: Number(nm[2]) } : undefined };
    const offloadable = linearWeightBytes(layers);
    let parked = 0;
    phaseUpdate = -Infinity;
    for (const dl of passes) {
      const pl = layers.filter((L) => dl.includes(L.layer));
      if (curvature && pl.length) {
        const F = factorBytes(pl);
        factors = Math.max(factors, F);
        let batchBytes = pass;
        if (s.streamed) {
          const r = streamedPassBytes(c, lim, B, T, { lo: Math.min(...dl), hi: Math.max(...dl) + 1, linears: pl }, s.fisherSamples, s.headChunkRows);
          batchBytes = r.peak;
          big(r.largest.bytes, r.largest.what);
        }
        phaseCurv = Math.max(phaseCurv, F + batchBytes);
        if (s.split === 'linear') parked = Math.max(parked, parkedFactorBytes(pl) - parkedFactorBytes(pl.slice(0, 1)));
      }
      for (const g of s.split === 'linear' ? pl.map((L) => [L]) : [pl]) {
        phaseProblems = Math.max(phaseProblems, problemsBytes(lim, g, shape));
        phaseUpdate = Math.max(phaseUpdate, groupPhases(g).update - (s.offloadUpdate ? offloadable - linearWeightBytes(g) : 0));
      }
    }
    phaseUpdate = Math.max(0, phaseUpdate);
    // Host memory of the schedule: the stream's kept pass inputs and gradients, the parked factors, the
    // offloaded weights (exact f32 bytes).
    const P = passes.length;
    if (s.streamed && curvature && P > 1) hostBytes += (P - 1 + Math.max(1, s.fisherSamples ?? 0)) * s.nsamples * T * d * 4;
    hostBytes += parked;
    if (s.offloadUpdate) hostBytes += layers.reduce((a, L) => a + 4 * L.R * (L.C + (L.bias ? 1 : 0)), 0);
  }
  // Parked between a budgeted shot's passes (host memory): the damped inverses, and element costs until τ.
  if (groups || s.split === 'linear') {
    for (const L of layers) {
      const C1 = packedCols(L);
      if (method === 'surgeon') hostBytes += triangleBytes(L.R) + triangleBytes(C1);
      if (!structured) hostBytes += 4 * L.R * C1;
    }
  }

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
  // keepInputs and its backward with the targets' weight gradients (OPT's bound: per layer x, y1, q, k,
  // v, attn, h, y2 [N, d], act [N, f], lse [N, H], 4 LayerNorm statistics; hf, xf, meanF, rstdF; ids,
  // labels; the backward's cross-entropy chunk, or one layer's temporaries (fc: dx, dact, dy2; attention:
  // dh, dattn, dq, dk, dv, delta) + the partials of a weight-gradient matmul (K = N rows), its bias
  // colSum or an input-gradient matmul); after releaseForward, one adapter's gA, gB (+ partials).
  let phaseLora = 0;
  if (s.lora) {
    const r = s.lora.rank ?? LORA_RANK;
    const { windows: wins, batch: Bl } = loraBatchOf(s), Nl = Bl * T, nd = f32(Nl * d), nn = f32(Nl);
    const targets = loraLayers(c, layers, s.lora.targets);
    let adapters = 0, merge = 0, adam = 0, wgrad = 0;
    for (const L of targets) {
      adapters += 2 * f32(L.R * L.C) + (L.bias ? f32(L.R) : 0) + 3 * f32(r * L.C) + 3 * f32(L.R * r); // W0, dW, db; A, mA, vA; B, mB, vB
      merge = Math.max(merge, f32(L.R * L.C) + splitScratch(L.R, L.C, r, lim));
      adam = Math.max(adam, f32(L.R * r) + f32(r * L.C) + Math.max(splitScratch(L.R, r, L.C, lim), splitScratch(r, L.C, L.R, lim)));
      wgrad = Math.max(wgrad, splitScratch(L.R, L.C, Nl, lim), colSumScratch(Nl, L.R));
    }
    let step: number;
    if (hand) {
      const saved = Lc * (8 * nd + 4 * nn + f32(Nl * H) + f32(Nl * f)) + 2 * nd + 2 * nn + 2 * nn /* ids, labels */;
      const lin = Math.max(splitScratch(Nl, d, d, lim), splitScratch(Nl, f, d, lim), splitScratch(Nl, d, f, lim));
      const layerBwd = Math.max(2 * nd + f32(Nl * f), 5 * nd + f32(Nl * H)) + Math.max(lin, wgrad);
      step = saved + Math.max(lin, crossEntropyBytes(c, lim, Nl, true), layerBwd);
    } else {
      const pass = loraPassBytes(c, lim, Bl, T, targets);
      step = pass.peak;
      big(pass.largest.bytes, `LoRA ${pass.largest.what}`);
    }
    phaseLora = Math.max(forwardOnlyBytes(c, lim, T, wins), adapters + Math.max(merge, step, adam));
    big(4 * Nl * f, `LoRA activations (${Bl} × ${T} tokens × ffn ${f})`);
    big(4 * chunkRowsFor(c, lim, Nl) * V, `LoRA logits chunk (${chunkRowsFor(c, lim, Nl)} × ${V})`);
  }

  // ---- tensors the model keeps from its first forward of a length on (Llama's RoPE tables) ----
  const lengths = [...(curvature || s.lora ? [T] : []), ...(s.evaluate ? [s.evaluate.seqlen] : [])];
  // + gather.ts's per-context index placeholder (one 16-byte u32 tensor, kept from the first gather on).
  // Llama's walk is exact, so it shows there; OPT's upper bounds already cover it (its values stay as before).
  const cached = cachedBytes(c, lengths) + (c.family === 'opt' ? 0 : f32(4));

  const phases = { curvature: phaseCurv, problems: phaseProblems, update: phaseUpdate, evaluate: phaseEval, lora: phaseLora };
  return { weights, cached, factors, phases, peak: weights + cached + Math.max(...Object.values(phases)), largest, batch: B, chunkRows, hostBytes };
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
