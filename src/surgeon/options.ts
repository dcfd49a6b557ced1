/**
 * Public types of pruneModel() and the validation of its options (ALGORITHM.md §2–§7 defaults).
 * Every bad option is rejected with a named error before any GPU work starts.
 */

import { SurgeonError } from '../errors';
import { ShapeError } from '../gpu/errors';
import type { PrunableLayer } from '../model/model';
import type { LoraOptions } from './lora';

export type Structure = 'rows-cols' | 'element' | '2:4' | `${number}:${number}`;
export type Method = 'surgeon' | 'kobd' | 'lobd' | 'magnitude';
export type Phase = 'curvature' | 'costs' | 'threshold' | 'update' | 'lora' | 'eval';

export interface PruneProgress {
  phase: Phase; shot: number; shots: number; layer?: string; fraction: number; etaSeconds?: number;
  /** A memory-budgeted shot's calibration pass (1…passes) during its curvature phase. */
  pass?: number; passes?: number;
}

export interface PruneOptions {
  structure: Structure;
  /** Target fraction of zeros over the pruned layers' W' (bias column included), in [0, 1). */
  sparsity: number;
  /** Default 40 for rows-cols, 5 otherwise (ALGORITHM.md §7). */
  shots?: number;
  method?: Method;
  /** Relative damping of G and A (defaults §2: rows-cols 0.01/0.01, element and N:M 0.1/0.01). */
  lambdaG?: number;
  lambdaA?: number;
  /** K-FAC: 0/undefined = empirical Fisher, k = k sampled-label draws. */
  fisherSamples?: number;
  seed?: number;
  /** 1 = independent (diagonal) OBS updates; otherwise correlated (element chunks capped at min(maxChunk, maxCorrelate)). */
  maxCorrelate?: number;
  /** Entries per correlated element chunk (default 2000). */
  maxChunk?: number;
  /** Per-shot perplexity on these ids. */
  evaluate?: { ids: Int32Array; seqlen: number; windows?: number };
  /** Low-rank first-order correction after every shot (ALGORITHM.md §8); true = defaults. */
  lora?: LoraOptions | boolean;
  /**
   * rows-cols only: every decoder layer keeps the same FFN width (each layer its own cheapest neurons,
   * surgeon/uniform.ts), so a compact export has a stock config (ffn_dim / intermediate_size).
   */
  uniform?: boolean;
  /** With uniform: also the same number of heads / kv groups per layer, attention pruned by whole kv groups (not OPT). */
  uniformHeads?: boolean;
  onProgress?: (p: PruneProgress) => void;
  signal?: AbortSignal;
}

export interface PruneReport {
  shots: Array<{ shot: number; target: number; achieved: number; ppl?: number; seconds: Record<string, number>; lora?: { steps: number; lossBefore: number; lossAfter: number } }>;
  layers: Array<{ name: string; type: string; params: number; zeros: number; rowsRemoved?: number; colsRemoved?: number }>;
  byModuleType: Record<string, { params: number; zeros: number }>;
  /** zeros / params over the pruned layers' W' (bias column included). */
  achievedSparsity: number;
  seconds: Record<string, number>;
}

/** An option of pruneModel() is unknown, out of range or does not fit the model. */
export class PruneConfigError extends SurgeonError {
  static override readonly name: string = 'PruneConfigError';
}

/** pruneModel() was cancelled through its AbortSignal. */
export class PruneAbortedError extends SurgeonError {
  static override readonly name: string = 'PruneAbortedError';
  /** where: what was running; weightsChanged: whether any weight of the GPU model had been written. */
  constructor(readonly where: string, readonly weightsChanged = true) {
    super(`pruning aborted ${where}; ${weightsChanged ? "the GPU model's weights are partially pruned — reload them from the host copy" : "no weight of the GPU model was changed"}`);
  }
}

export interface Resolved {
  structured: boolean;
  /** N:M pattern (element: undefined). */
  nm?: { n: number; m: number };
  shots: number;
  method: Method;
  lambdaG: number;
  lambdaA: number;
  independent: boolean;
  maxChunk: number;
  /** Resolved low-rank correction settings (undefined: off). */
  lora?: ResolvedLora;
  /** Uniform widths (rows-cols only); heads: kv groups too. */
  uniform?: { heads: boolean };
}

export interface ResolvedLora {
  rank: number; alpha: number; scale: number; targets: 'attention' | 'all';
  lr: number; epochs: number; fraction: number; batch?: number; seed: number;
}

const LORA_KEYS = ['rank', 'alpha', 'targets', 'lr', 'epochs', 'fraction', 'batch', 'seed'];

/** Validate LoRA options (PruneConfigError naming the field) and fill in the defaults of ALGORITHM.md §8. */
export function resolveLora(o: LoraOptions, layers: readonly PrunableLayer[], defaultSeed = 0): ResolvedLora {
  if (!o || typeof o !== 'object') throw new PruneConfigError('lora: options object or boolean expected');
  for (const k of Object.keys(o)) if (!LORA_KEYS.includes(k)) throw new PruneConfigError(`lora: unknown option '${k}' (${LORA_KEYS.join(', ')})`);
  const num = (k: string, v: unknown, ok: (x: number) => boolean, what: string): void => {
    if (v !== undefined && !(typeof v === 'number' && ok(v))) throw new PruneConfigError(`lora.${k} must be ${what}, got ${String(v)}`);
  };
  num('rank', o.rank, (x) => Number.isInteger(x) && x >= 1, 'a positive integer');
  num('alpha', o.alpha, (x) => Number.isFinite(x) && x > 0, 'a finite number > 0');
  num('lr', o.lr, (x) => Number.isFinite(x) && x >= 0, 'a finite number ≥ 0');
  num('epochs', o.epochs, (x) => Number.isInteger(x) && x >= 1, 'a positive integer');
  num('fraction', o.fraction, (x) => x > 0 && x <= 1, 'in (0, 1]');
  num('batch', o.batch, (x) => Number.isInteger(x) && x >= 1, 'a positive integer');
  num('seed', o.seed, (x) => Number.isInteger(x), 'an integer');
  const targets = o.targets ?? 'attention';
  if (targets !== 'attention' && targets !== 'all') throw new PruneConfigError(`lora.targets must be 'attention' or 'all', got ${String(targets)}`);
  const rank = o.rank ?? 8, alpha = o.alpha ?? rank;
  const maxRank = Math.min(...layers.filter((L) => targets === 'all' || L.name.includes('.self_attn.')).map((L) => Math.min(L.R, L.C)));
  if (rank > maxRank) throw new PruneConfigError(`lora.rank ${rank} exceeds min(out, in) = ${maxRank} of the smallest adapted layer`);
  return { rank, alpha, scale: alpha / rank, targets, lr: o.lr ?? 1e-4, epochs: o.epochs ?? 1, fraction: o.fraction ?? 0.025, batch: o.batch, seed: o.seed ?? defaultSeed };
}

const METHODS: readonly Method[] = ['surgeon', 'kobd', 'lobd', 'magnitude'];
const DEFAULT_CHUNK = 2000; // ALGORITHM.md §6: ~2000 entries per correlated chunk (the authors' setting)

function positiveInt(name: string, v: number | undefined): void {
  if (v !== undefined && !(Number.isInteger(v) && v >= 1)) throw new PruneConfigError(`${name} must be a positive integer, got ${v}`);
}

/** Check the options against the model's prunable layers and fill in the defaults. */
export function resolveOptions(o: PruneOptions, layers: readonly PrunableLayer[], calib: readonly Int32Array[]): Resolved {
  if (!o || typeof o !== 'object') throw new PruneConfigError('options object expected');
  const structured = o.structure === 'rows-cols';
  let nm: Resolved['nm'];
  if (!structured && o.structure !== 'element') {
    const m = typeof o.structure === 'string' ? /^(\d+):(\d+)$/.exec(o.structure) : null;
    if (!m) throw new PruneConfigError(`unknown structure '${String(o.structure)}' (rows-cols, element, 2:4 or n:m)`);
    nm = { n: Number(m[1]), m: Number(m[2]) };
    if (!(nm.n >= 1 && nm.n < nm.m && nm.m <= 32)) throw new PruneConfigError(`structure ${o.structure}: need 1 ≤ n < m ≤ 32`);
  }
  if (typeof o.sparsity !== 'number' || !(o.sparsity >= 0 && o.sparsity < 1)) throw new PruneConfigError(`sparsity must be in [0, 1), got ${o.sparsity}`);
  if (nm && o.sparsity > nm.n / nm.m) throw new PruneConfigError(`sparsity ${o.sparsity} exceeds ${nm.n}/${nm.m}, the most an ${nm.n}:${nm.m} pattern can remove`);
  const method = o.method ?? 'surgeon';
  if (!METHODS.includes(method)) throw new PruneConfigError(`unknown method '${String(method)}' (${METHODS.join(', ')})`);
  positiveInt('shots', o.shots);
  positiveInt('maxChunk', o.maxChunk);
  positiveInt('maxCorrelate', o.maxCorrelate);
  for (const k of ['lambdaG', 'lambdaA'] as const) {
    const v = o[k];
    if (v !== undefined && !(Number.isFinite(v) && v >= 0)) throw new PruneConfigError(`${k} must be a finite number ≥ 0, got ${v}`);
  }
  if (o.fisherSamples !== undefined && !(Number.isInteger(o.fisherSamples) && o.fisherSamples >= 0)) {
    throw new PruneConfigError(`fisherSamples must be a non-negative integer, got ${o.fisherSamples}`);
  }
  if (nm) for (const L of layers) if (L.C % nm.m !== 0) throw new ShapeError(`${L.name} has ${L.C} inputs, not divisible by m = ${nm.m} of ${o.structure}`);
  if (method !== 'magnitude' && calib.length === 0) throw new PruneConfigError('no calibration windows (the curvature needs at least one)');
  if (o.evaluate) {
    const { ids, seqlen } = o.evaluate;
    if (!(ids instanceof Int32Array) || !Number.isInteger(seqlen) || seqlen < 2) throw new PruneConfigError('evaluate needs ids (Int32Array) and an integer seqlen ≥ 2');
  }
  for (const k of ['uniform', 'uniformHeads'] as const) {
    if (o[k] !== undefined && typeof o[k] !== 'boolean') throw new PruneConfigError(`${k} must be true or false, got ${String(o[k])}`);
  }
  if (o.uniformHeads && !o.uniform) throw new PruneConfigError('uniformHeads needs uniform: true (equal head counts constrain a uniform prune)');
  if (o.uniform && !structured) {
    throw new PruneConfigError(`uniform needs structure rows-cols: ${o.structure} zeroes single weights, which removes no FFN neuron or head, so no width could be made uniform`);
  }
  const correlate = o.maxCorrelate ?? Infinity;
  if (o.lora !== undefined && typeof o.lora !== 'boolean' && (o.lora === null || typeof o.lora !== 'object')) throw new PruneConfigError('lora must be a boolean or an options object');
  const lora = o.lora ? resolveLora(o.lora === true ? {} : o.lora, layers, o.seed ?? 0) : undefined;
  if (lora && calib.length === 0) throw new PruneConfigError('lora needs calibration windows to train on');
  return {
    structured, nm, method,
    shots: o.shots ?? (structured ? 40 : 5),
    lambdaG: o.lambdaG ?? (structured ? 0.01 : 0.1),
    lambdaA: o.lambdaA ?? 0.01,
    independent: correlate === 1,
    maxChunk: Math.min(o.maxChunk ?? DEFAULT_CHUNK, correlate),
    lora,
    ...(o.uniform ? { uniform: { heads: !!o.uniformHeads } } : {}),
  };
}
