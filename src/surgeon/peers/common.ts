/**
 * Shared part of the peer methods (ALGORITHM.md §9): options, the sequential layer-by-layer driver
 * and the zero count of the result.
 *
 * Sparsity targets (exact, deterministic; ties broken by the lower index):
 *  - SparseGPT unstructured: the zeros of a layer's W are ⌊s·R·C⌋ exactly; block [c0, c1) takes
 *    ⌊s·R·c1⌋ − ⌊s·R·c0⌋ of them, chosen over the whole block (all rows). The SparseGPT reference
 *    selects `score ≤ sorted[⌊s·n⌋]` per block, one entry more than s·n (and more on ties); here the
 *    count is exact.
 *  - Wanda unstructured: ⌊s·C⌋ zeros in every row (as the Wanda reference).
 *  - n:m: exactly n zeros in every group of m consecutive input columns of every row.
 * Biases are never pruned, so the reported W' = [W | b] sparsity is slightly below the weight sparsity.
 */

import type { GpuContext } from '../../gpu/context';
import type { Tensor } from '../../gpu/tensor';
import { countZeros } from '../../kernels/reduce';
import type { DecoderModel, PrunableLayer } from '../../model/model';
import { packedCols } from '../../arch/types';
import { PruneAbortedError, PruneConfigError } from '../options';
import { QueuePacer } from '../update-elements';
import { MAX_BLOCK } from './kernels';
import { disposeCalib, embedCalibration, layerPass, type CalibState } from './layer-io';

export interface PeerProgress { phase: string; layer: number; layers: number; fraction: number }

export interface PeerOptions {
  structure: 'element' | '2:4' | `${number}:${number}`;
  /** Fraction of zeros per layer (unstructured) in [0, 1); ignored for n:m (n/m). */
  sparsity: number;
  /** SparseGPT columns per lazy block, 1…128 (default 128); a multiple of m for n:m. */
  blocksize?: number;
  /** SparseGPT damping: H + percdamp·mean(diag H)·I (default 0.01). */
  percdamp?: number;
  onProgress?: (p: PeerProgress) => void;
  signal?: AbortSignal;
}

export interface PeerLayerReport {
  name: string;
  /** Entries of W' = [W | b] (R·(C+1)). */
  params: number;
  /** Zeros of W' (weights and biases). */
  zeros: number;
  /** Entries and zeros of W alone. */
  weightParams: number;
  weightZeros: number;
}

export interface PeerReport {
  /** zeros / params over the pruned layers' W' (bias column included: the official convention). */
  achievedSparsity: number;
  /** zeros / entries over the weights W alone (exactly the target for unstructured and n:m). */
  weightSparsity: number;
  layers: PeerLayerReport[];
  /** Host wall-clock seconds per phase (GPU work queued in one phase may finish in a later one). */
  seconds: Record<string, number>;
}

export interface ResolvedPeer { nm: { n: number; m: number } | null; sparsity: number; blocksize: number; percdamp: number }

/** Validate the options against the model (named PruneConfigError before any GPU work). */
export function resolvePeer(model: Pick<DecoderModel, 'prunableLayers'>, o: PeerOptions, method: string): ResolvedPeer {
  let nm: ResolvedPeer['nm'] = null;
  if (o.structure !== 'element') {
    const mm = /^(\d+):(\d+)$/.exec(String(o.structure));
    if (!mm) throw new PruneConfigError(`${method}: structure must be 'element' or 'n:m', got '${o.structure}'`);
    const n = Number(mm[1]), m = Number(mm[2]);
    if (!(n >= 1 && n < m)) throw new PruneConfigError(`${method}: n:m needs 1 ≤ n < m, got ${o.structure}`);
    nm = { n, m };
  }
  const sparsity = nm ? nm.n / nm.m : o.sparsity;
  if (!nm && !(Number.isFinite(sparsity) && sparsity >= 0 && sparsity < 1)) throw new PruneConfigError(`${method}: sparsity must be in [0, 1), got ${o.sparsity}`);
  const blocksize = o.blocksize ?? (nm ? MAX_BLOCK - (MAX_BLOCK % nm.m) : MAX_BLOCK);
  if (!(Number.isInteger(blocksize) && blocksize >= 1 && blocksize <= MAX_BLOCK)) throw new PruneConfigError(`${method}: blocksize must be an integer in 1…${MAX_BLOCK}, got ${o.blocksize}`);
  if (nm && (blocksize % nm.m !== 0 || nm.m > MAX_BLOCK)) throw new PruneConfigError(`${method}: blocksize ${blocksize} must be a multiple of m = ${nm.m}`);
  const percdamp = o.percdamp ?? 0.01;
  if (!(Number.isFinite(percdamp) && percdamp >= 0)) throw new PruneConfigError(`${method}: percdamp must be a finite number ≥ 0, got ${o.percdamp}`);
  if (nm) {
    const bad = model.prunableLayers().find((L) => L.C % nm.m !== 0);
    if (bad) throw new PruneConfigError(`${method}: ${bad.name} has ${bad.C} input columns, not a multiple of m = ${nm.m}`);
  }
  return { nm, sparsity, blocksize, percdamp };
}

/** ⌊s·n⌋, robust to s·n landing just below an integer in floating point. */
export function targetCount(s: number, n: number): number {
  return Math.floor(s * n + 1e-7);
}

const now = (): number => (typeof performance !== 'undefined' ? performance.now() : Date.now()) / 1000;

export class Timer {
  readonly seconds: Record<string, number> = {};
  private t = now();
  lap(phase: string): void {
    const t = now();
    this.seconds[phase] = (this.seconds[phase] ?? 0) + t - this.t;
    this.t = t;
  }
}

export interface LayerStep {
  /** Per-input statistics accumulator for one batch's input a of `key`. */
  accumulate: (key: string, a: Tensor, N: number) => void;
  /** Prune every linear of layer l (statistics complete); may await readbacks. */
  prune: (l: number, linears: PrunableLayer[]) => Promise<void>;
  /** Free the statistics of layer l. */
  release: () => void;
}

/**
 * The sequential protocol: per decoder layer, one statistics pass of the dense layer on the current
 * hidden states, pruning of its linears, one pass of the pruned layer to advance the hidden states.
 * The model's GPU weights change in place; on abort or error the layers before the current one are
 * pruned (PruneAbortedError says so). The caller's host arrays are never touched.
 */
export async function runSequential(ctx: GpuContext, model: DecoderModel, calib: Int32Array[], o: PeerOptions, method: string, step: LayerStep): Promise<PeerReport> {
  const timer = new Timer();
  const layers = model.config.numLayers;
  const all = model.prunableLayers();
  const progress = (phase: string, layer: number, fraction: number) => o.onProgress?.({ phase, layer, layers, fraction });
  const check = (what: string, changed = true) => {
    if (o.signal?.aborted) throw new PruneAbortedError(`${method}: ${what}`, changed);
  };
  check('before the first layer', false);
  // One calibration batch (a decoder layer on ≤ 4096 tokens) per group: ≤ 2 batches queued at a check.
  const pacer = new QueuePacer(ctx, o.signal, 1);
  let st: CalibState | null = null;
  try {
    st = embedCalibration(ctx, model, calib);
    const cs = st;
    for (let l = 0; l < layers; l++) {
      check(`before layer ${l}`);
      const pace = (what: string) => (b: number, n: number) => pacer.step(() => `${method}: ${what} of layer ${l}, before batch ${b + 1} of ${n}`);
      progress('statistics', l, l / layers);
      await layerPass(ctx, model, cs, l, { onInput: (key, a) => step.accumulate(key, a, cs.N), pace: pace('statistics pass') });
      timer.lap('statistics');
      progress('prune', l, l / layers);
      try {
        await step.prune(l, all.filter((L) => L.layer === l));
      } finally {
        step.release();
      }
      timer.lap('prune');
      if (l + 1 < layers) {
        await layerPass(ctx, model, cs, l, { advance: true, pace: pace('advance pass') });
        timer.lap('advance');
      }
      progress('prune', l, (l + 1) / layers);
    }
  } finally {
    if (st) disposeCalib(st);
  }
  const report = await countReport(ctx, model, all);
  timer.lap('count');
  report.seconds = timer.seconds;
  progress('done', layers - 1, 1);
  return report;
}

/** Zeros of every prunable layer's W and b (one readback per tensor, after all work is queued). */
export async function countReport(ctx: GpuContext, model: DecoderModel, all: PrunableLayer[]): Promise<PeerReport> {
  const counts = all.map((L) => [countZeros(ctx, model.weight(`${L.name}.weight`)), ...(L.bias ? [countZeros(ctx, model.weight(`${L.name}.bias`))] : [])]);
  const layers: PeerLayerReport[] = [];
  for (let i = 0; i < all.length; i++) {
    const L = all[i];
    const wz = (await ctx.readU32(counts[i][0]))[0], bz = counts[i][1] ? (await ctx.readU32(counts[i][1]))[0] : 0;
    counts[i].forEach((t) => t.dispose());
    layers.push({ name: L.name, params: L.R * packedCols(L), zeros: wz + bz, weightParams: L.R * L.C, weightZeros: wz });
  }
  const sum = (f: (x: PeerLayerReport) => number) => layers.reduce((a, x) => a + f(x), 0);
  return {
    achievedSparsity: sum((x) => x.zeros) / sum((x) => x.params),
    weightSparsity: sum((x) => x.weightZeros) / sum((x) => x.weightParams),
    layers,
    seconds: {},
  };
}
