/**
 * The pruning step of `llm-surgeon prune`, for either family of methods:
 * - surgeon / kobd / lobd / magnitude → pruneModel (multi-shot, one global threshold; ALGORITHM.md §2–§7),
 * - sparsegpt / wanda → the sequential peers (src/surgeon/peers, ALGORITHM.md §9).
 * planPrune() validates the options against the loaded model (a UsageError naming the problem, before any
 * GPU work) and returns what report.json records about them, plus a run() that prunes in place.
 */

import type { GpuContext } from '../gpu/context';
import { ShapeError } from '../gpu/errors';
import type { OptModel } from '../model/opt';
import { PruneConfigError, resolveOptions, type PruneOptions, type PruneReport } from '../surgeon/options';
import { sparsegptPrune, wandaPrune, resolvePeer, type PeerOptions } from '../surgeon/peers/index';
import { pruneModel } from '../surgeon/prune';
import { UsageError } from './args';
import type { PruneArgs } from './prune-args';
import type { ProgressLine } from './prune-report';

export interface PruneOutcome {
  achievedSparsity: number;
  /** Per layer; rowsRemoved/colsRemoved for rows-cols. */
  layers: ReadonlyArray<{ name: string; rowsRemoved?: number; colsRemoved?: number }>;
  shots?: PruneReport['shots'];
  /** Peers: zeros / entries of W alone (biases are never pruned by them). */
  weightSparsity?: number;
  seconds: Record<string, number>;
}

export interface PrunePlan {
  summary: string;
  nm?: { n: number; m: number };
  /** Resolved options (defaults filled in) for report.json. */
  options: Record<string, unknown>;
  run(ctx: GpuContext, model: OptModel): Promise<PruneOutcome>;
}

/** Options that do not fit the model (PruneConfigError, ShapeError) become UsageErrors. */
function asUsage<T>(f: () => T): T {
  try {
    return f();
  } catch (e) {
    if (e instanceof PruneConfigError || e instanceof ShapeError) throw new UsageError(e.message);
    throw e;
  }
}

export function planPrune(
  a: PruneArgs, model: OptModel, calib: Int32Array[], evaluate: PruneOptions['evaluate'],
  progress: (p: ProgressLine) => void, signal: AbortSignal,
): PrunePlan {
  if (a.method === 'sparsegpt' || a.method === 'wanda') {
    const method = a.method;
    const po: PeerOptions = {
      structure: a.structure as PeerOptions['structure'], sparsity: a.sparsity, blocksize: a.blocksize, percdamp: a.dampingA, signal,
    };
    const r = asUsage(() => resolvePeer(model, po, method));
    const t0 = performance.now();
    po.onProgress = (p) => {
      const f = (p.layer + p.fraction) / p.layers, el = (performance.now() - t0) / 1000;
      progress({ phase: p.phase, shot: 1, shots: 1, layer: `layer ${p.layer + 1}/${p.layers}`, fraction: f, etaSeconds: f > 0 ? (el / f) * (1 - f) : undefined });
    };
    const options = method === 'sparsegpt'
      ? { structure: a.structure, sparsity: r.sparsity, method, blocksize: r.blocksize, percdamp: r.percdamp }
      : { structure: a.structure, sparsity: r.sparsity, method };
    return {
      summary: `${method} ${a.structure} to ${r.sparsity} per layer (sequential)`,
      nm: r.nm ?? undefined,
      options,
      async run(ctx, m) {
        const rep = await (method === 'sparsegpt' ? sparsegptPrune : wandaPrune)(ctx, m, calib, po);
        return { achievedSparsity: rep.achievedSparsity, layers: rep.layers, weightSparsity: rep.weightSparsity, seconds: rep.seconds };
      },
    };
  }
  const opts: PruneOptions = {
    structure: a.structure, sparsity: a.sparsity, shots: a.shots, method: a.method,
    lambdaG: a.dampingG, lambdaA: a.dampingA, fisherSamples: a.fisherSamples, seed: a.seed,
    maxCorrelate: a.maxCorrelate, maxChunk: a.maxChunk, signal,
    lora: a.lora ? Object.fromEntries(Object.entries(a.lora).filter(([, v]) => v !== undefined)) : undefined,
    // pruneModel's in-shot ETA assumes even phases (they are not); the printer estimates from finished shots
    onProgress: (p) => progress({ ...p, etaSeconds: undefined }),
    evaluate: a.evalEveryShot ? evaluate : undefined,
  };
  const r = asUsage(() => resolveOptions(opts, model.prunableLayers(), calib));
  return {
    summary: `${r.method} ${a.structure} to ${a.sparsity} in ${r.shots} shot(s)`,
    nm: r.nm,
    options: {
      structure: a.structure, sparsity: a.sparsity, method: r.method, shots: r.shots,
      lambdaG: r.lambdaG, lambdaA: r.lambdaA, fisherSamples: a.fisherSamples ?? 0, seed: a.seed,
      maxCorrelate: a.maxCorrelate ?? null, maxChunk: r.maxChunk, independentUpdates: r.independent,
      lora: r.lora ?? null, batch: a.batch ?? null,
    },
    async run(ctx, m) {
      const rep = await pruneModel(ctx, m, calib, { ...opts, batch: a.batch });
      return { achievedSparsity: rep.achievedSparsity, layers: rep.layers, shots: rep.shots, seconds: rep.seconds };
    },
  };
}
