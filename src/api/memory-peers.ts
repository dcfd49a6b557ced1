/**
 * Peak GPU memory of a SparseGPT or Wanda job (runPeerJob in job.ts), estimated from the model config
 * and the job's settings before any GPU work, and the refusal (LimitExceededError, through memory.ts
 * checkFit) that names the limit and what would fit: fewer calibration windows, a shorter seqlen, or
 * fewer evaluation windows per batch.
 *
 * Unlike the surgeon's estimate (sums of upper bounds), this one replays the allocations of the peer
 * pass in program order (src/surgeon/peers/*) on a tally of pool buckets, so its peak is the pool's
 * peak up to the split-K/gram scratch plans (upper bounds only for K ≥ 4096 matmuls):
 *   statistics  embedCalibration: the hidden states of every calibration window ([B·T, d] per batch of
 *               B = ⌊4096/T⌋ windows, kept through the pass); then per batch one dense pass of a decoder
 *               layer (layerPass: the family's block with inspect and lateFree, replayed by its walk in
 *               src/arch/<family>/memory.ts — OPT: LayerNorm y/mean/rstd ×2, q, k, v, attention out +
 *               lse, the residual copy h, fc1 activations; Llama: RMSNorm y/rstd ×2, q [B·T, heads·hd],
 *               k, v [B·T, kvHeads·hd] (RoPE in place), attention out + lse, h, gate and up [B·T, ffn],
 *               the RoPE table cached on the model) with the layer's statistics of each input:
 *               SparseGPT H [C, C] per distinct input (q/k/v share one; Llama's gate/up too) +
 *               gramAccumulate's split partials; Wanda squared column norms [C] + colSums' block partials
 *   prune       SparseGPT per linear W [R, C] (the family's linears, each with its own R, C), the
 *               statistics alive: a copy of H, then the reversed copy, Cholesky factor, pivot flags and
 *               block scratch; identity and triangular inverse (4 C² at once); U; the block errors
 *               [R, 128], scores and flags [R·128] (unstructured); the Cholesky kernels' two cached 16-byte
 *               dummies stay from then on (counted from the start). Wanda per linear: scores and flags [R·C]
 *   advance     the pruned layer's pass over every batch (lateFree, x updated in place), then the zero
 *               counts per tensor (weight, and bias where the linear has one)
 *   evaluate    dense and pruned perplexity: one forward batch without saving (memory.ts forwardOnlyBytes)
 *               + the cached tables of both lengths
 * peak = weights + the largest phase; every layer has the same shapes, so one layer is replayed.
 * test/api-memory-peers.test.ts (OPT) and test/api-memory-llama.test.ts check it against the pool's
 * measured peak: never below, within 1% when the pass sets the peak (equal to the byte on their runs);
 * the evaluation term is memory.ts's bound (OPT) or replay (Llama).
 */

import { familySpec, type ModelConfig } from '../io/config';
import { NB } from '../kernels/cholesky';
import { COL_TILE } from '../kernels/reduce';
import { MAX_BLOCK } from '../surgeon/peers/kernels';
import { peerBatch } from '../surgeon/peers/layer-io';
import {
  cachedBytes, checkFit, evalWindowsHint, evaluationOf, f32, familyWalk, gramScratch, hintText, largestFit, mib, Tally, weightsOf, worstPhase,
  type DeviceLimits, type MemorySettings,
} from './memory';

export type PeerMethod = 'sparsegpt' | 'wanda';

export interface PeerMemoryEstimate {
  method: PeerMethod;
  /** Bytes (pool buckets) of the weights, of all calibration hidden states, and of one layer's statistics (SparseGPT H, Wanda column norms). */
  weights: number;
  hidden: number;
  statistics: number;
  /** Peak bytes above the weights of each phase; `peak` = weights + the largest phase. */
  phases: { statistics: number; prune: number; advance: number; evaluate: number };
  peak: number;
  /** The largest single buffer (exact bytes, as bound) and what it holds. */
  largest: { bytes: number; what: string };
  /** Calibration sequences per layer-pass batch. */
  batch: number;
}

/** colSums (reduce.ts) over `rows` rows of C columns: block partials, two levels alive at once; returns the [C] result's bytes (still allocated). */
function colSums(t: Tally, rows: number, C: number): number {
  let prev = 0;
  for (let R = rows; ;) {
    const blocks = Math.ceil(R / COL_TILE);
    const out = t.add(blocks === 1 ? C : blocks * C);
    t.free(prev);
    prev = out;
    R = blocks;
    if (blocks === 1) return out;
  }
}

export function estimatePeerMemory(c: ModelConfig, s: MemorySettings & { method: PeerMethod }, lim: DeviceLimits): PeerMemoryEstimate {
  const T = s.seqlen, method = s.method, d = c.hiddenSize;
  const nm = s.structure && s.structure !== 'element' ? /^(\d+):(\d+)$/.exec(s.structure) : null;
  const blocksize = nm ? MAX_BLOCK - (MAX_BLOCK % Number(nm[2])) : MAX_BLOCK; // resolvePeer's default
  const own = weightsOf(c);
  const walk = familyWalk(c);
  const t = new Tally(lim);
  t.largest = own.largest;
  const batch = Math.min(Math.max(1, s.nsamples), peerBatch(T));
  const sizes: number[] = [];
  for (let left = Math.max(1, s.nsamples); left > 0; left -= batch) sizes.push(Math.min(batch, left));

  // ---- statistics: embedded calibration, then the dense layer pass per batch ----
  // SparseGPT: the Cholesky kernels' two cached 16-byte dummies (cholesky.ts dummy(ctx, 0 | 1)) appear in
  // the first prune and stay for the context's life, so every later layer's pass sees them (counted from the start).
  const dummies = method === 'sparsegpt' ? t.add(4) + t.add(4) : 0;
  // The dense perplexity (before the pass) builds the model's cached tensors for its length (Llama's RoPE table).
  if (s.evaluate) for (const x of walk.cachedTensors(s.evaluate.seqlen)) t.cached(x.key, x.n);
  const hidden = sizes.map((B) => {
    const ids = t.add(B * T);
    const h = walk.embed(t, B * T);
    t.big(4 * B * T * d, `hidden states (${B} × ${T} tokens × ${d})`);
    t.free(ids);
    return h;
  });
  const stats = new Map<string, number>();
  const statistic = (key: string, rows: number, C: number) => {
    if (method === 'sparsegpt') {
      if (!stats.has(key)) stats.set(key, t.add(C * C, `Hessian (${C})²`));
      t.temp(gramScratch(C, rows, lim));
    } else {
      const part = colSums(t, rows, C);
      if (!stats.has(key)) stats.set(key, part);
      else t.free(part); // added into the first batch's norms
    }
  };
  // layerPass (layer-io.ts) over every batch: the family's block with lateFree; the statistics pass
  // inspects (inputs reported, x unchanged, last linear skipped), advance updates x in place.
  const pass = (inspect: boolean) => {
    t.hooks = inspect ? { input: (_t, key, rows, C) => statistic(key, rows, C) } : {};
    sizes.forEach((B, i) => walk.layer(t, 0, hidden[i], B, T, { inspect, lateFree: true }));
  };
  pass(true);
  const statistics = [...stats.values()].reduce((a, b) => a + b, 0);
  const phaseStats = t.mark();

  // ---- prune: every linear of the layer (the family's, with its own R, C) with its statistics alive ----
  const all = familySpec(c).prunableLayers(c);
  const linears = all.filter((L) => L.layer === 0);
  for (const { R, C } of linears) {
    if (method === 'wanda') {
      t.free(t.add(R * C, `Wanda scores (${R} × ${C})`), t.add(R * C));
      continue;
    }
    const h = t.add(C * C);
    t.temp(f32(1)); // dampInPlace's added amount
    const Hr = t.add(C * C), L = t.add(C * C), info = t.add(1);
    t.temp(f32(Math.ceil(C / NB) * NB * NB)); // Cholesky block scratch
    t.free(Hr);
    const I = t.add(C * C), X = t.add(C * C);
    t.free(I, L);
    const U = t.add(C * C);
    t.free(X);
    const blockTemps = [t.add(R * MAX_BLOCK)]; // Err
    if (!nm) blockTemps.push(t.add(R * blocksize), t.add(R * blocksize)); // scores, flags
    t.free(h, info, U, ...blockTemps);
  }
  t.free(...stats.values());
  const phasePrune = t.mark();

  // ---- advance (all layers but the last), then the zero counts (weight, and bias if any) after the hidden states are freed ----
  if (c.numLayers > 1) pass(false);
  t.free(...hidden);
  const counts = all.flatMap((L) => (L.bias ? [t.add(1), t.add(1)] : [t.add(1)]));
  t.free(...counts);
  const phaseAdvance = t.mark();

  // ---- evaluation: dense and pruned perplexity, one forward batch with only the weights (dummies, cached tables) alive ----
  let phaseEval = 0;
  if (s.evaluate) {
    const ev = evaluationOf(c, lim, s.evaluate);
    phaseEval = dummies + cachedBytes(c, [T, s.evaluate.seqlen]) + ev.bytes; // dense before the pass, pruned after it (with the dummies)
    t.big(ev.largest.bytes, ev.largest.what);
  }

  const phases = { statistics: phaseStats, prune: phasePrune, advance: phaseAdvance, evaluate: phaseEval };
  return {
    method, weights: own.weights, hidden: hidden.reduce((a, b) => a + b, 0), statistics, phases,
    peak: own.weights + Math.max(...Object.values(phases)), largest: t.largest, batch,
  };
}

/**
 * Throw LimitExceededError when the peer job cannot fit (memory.ts checkFit: a buffer above the binding
 * or buffer size, or a peak above budget − inUse); the hint names fewer calibration windows, a shorter
 * seqlen or fewer evaluation windows per batch that fit.
 */
export function checkPeerMemory(c: ModelConfig, s: MemorySettings & { method: PeerMethod }, lim: DeviceLimits, budget?: number, inUse = 0): PeerMemoryEstimate {
  const est = estimatePeerMemory(c, s, lim);
  const stat = s.method === 'sparsegpt' ? 'Hessians' : 'column norms';
  checkFit(est, lim, budget, inUse, `${worstPhase(est.phases)} phase; weights ${mib(est.weights)}, calibration hidden states ${mib(est.hidden)}, one layer's ${stat} ${mib(est.statistics)}`, (fits) => {
    const e = (x: MemorySettings) => estimatePeerMemory(c, { ...x, method: s.method }, lim);
    const tries: string[] = [];
    const n = largestFit(1, s.nsamples - 1, (v) => fits(e({ ...s, nsamples: v })));
    if (n > 0) tries.push(`${n} calibration window${n > 1 ? 's' : ''} (nsamples; ${n * s.seqlen} tokens instead of ${s.nsamples * s.seqlen})`);
    else {
      const T = largestFit(2, s.seqlen - 1, (v) => fits(e({ ...s, nsamples: 1, seqlen: v, evaluate: s.evaluate && { ...s.evaluate, seqlen: Math.min(v, s.evaluate.seqlen) } })));
      if (T > 0) tries.push(`seqlen ≤ ${T} with 1 calibration window`);
    }
    const ev = evalWindowsHint(s, e, fits);
    if (ev) tries.push(ev);
    return hintText(tries, e({ ...s, seqlen: 2, nsamples: 1, evaluate: undefined }));
  });
  return est;
}
