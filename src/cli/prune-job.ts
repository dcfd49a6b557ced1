/**
 * `llm-surgeon prune` as a job of the one orchestrator (api/job.ts, the code prune() and the worker
 * run): flags → PruneJobOptions, the job's option errors as UsageErrors (exit 2), and what the CLI
 * prints and records of a job — its summary line, report.json's options, progress lines.
 * Nothing here tokenises, plans, uploads or prunes.
 */

import { ShapeError } from '../gpu/errors';
import { DatasetError } from '../io/errors';
import { JOB_PHASES, prepareJob, type HostModel, type JobPlan, type PreparedJob, type PruneJobOptions } from '../api/job';
import type { ProgressEvent } from '../api/types';
import { PruneConfigError } from '../surgeon/options';
import { UsageError } from './args';
import type { PruneArgs } from './prune-args';
import type { ProgressLine } from './prune-report';

/** What the CLI read before the job: calibration ids (absent: magnitude without --calib) and checked evaluation windows. */
export interface CliInputs {
  calib?: Int32Array;
  seqlen: number;
  evaluate?: { ids: Int32Array; seqlen: number; windows: number };
}

/** The job `a` asks for (the K-FAC batch 'auto' unless --batch; per-shot perplexity only with --eval-every-shot). */
export function jobOptions(a: PruneArgs, inp: CliInputs, signal: AbortSignal, onProgress: (p: ProgressEvent) => void): PruneJobOptions {
  return {
    structure: a.structure, sparsity: a.sparsity, shots: a.shots, method: a.method,
    lambdaG: a.dampingG, lambdaA: a.dampingA, fisherSamples: a.fisherSamples, maxCorrelate: a.maxCorrelate, maxChunk: a.maxChunk, blocksize: a.blocksize,
    ...(a.uniform ? { uniform: true, uniformHeads: a.uniformHeads } : {}),
    lora: a.lora ? Object.fromEntries(Object.entries(a.lora).filter(([, v]) => v !== undefined)) : undefined,
    calibration: inp.calib && { ids: inp.calib, nsamples: a.nsamples, seqlen: inp.seqlen, seed: a.seed, batch: a.batch ?? 'auto' },
    // dense here; the pruned perplexity is measured by the CLI on the weights as exported (--dtype)
    evaluate: inp.evaluate && { ...inp.evaluate, everyShot: a.evalEveryShot },
    memoryBudget: a.memoryBudget, signal, onProgress,
  };
}

/** prepareJob with the job's option errors as UsageErrors; a window error names --calib and --seqlen. */
export async function prepareCliJob(a: PruneArgs, host: HostModel, opts: PruneJobOptions): Promise<PreparedJob> {
  try {
    return await prepareJob(host, opts);
  } catch (e) {
    if (e instanceof PruneConfigError || e instanceof ShapeError) throw new UsageError(e.message);
    // The ids and evaluation windows were checked by the CLI first: only the calibration windows are left.
    if (e instanceof DatasetError && a.calib) throw new UsageError(`--calib ${a.calib}: ${e.message} (--seqlen ${opts.calibration?.seqlen})`);
    throw e;
  }
}

/** The "pruning: …" line. */
export function jobSummary(a: PruneArgs, job: PreparedJob): string {
  if (job.peer) return `${a.method} ${a.structure} to ${job.peer.sparsity} per layer (sequential)`;
  return `${job.resolved!.method} ${a.structure} to ${a.sparsity} in ${job.resolved!.shots} shot(s)`;
}

/** N:M pattern of the job (undefined: element or rows-cols), for the exported weights' group counts. */
export function jobNm(job: PreparedJob): { n: number; m: number } | undefined {
  return job.peer ? job.peer.nm ?? undefined : job.resolved!.nm;
}

/** report.json's options: the resolved values of the run. */
export function reportOptions(a: PruneArgs, job: PreparedJob, plan: JobPlan): Record<string, unknown> {
  const p = job.peer;
  if (p) {
    return a.method === 'sparsegpt'
      ? { structure: a.structure, sparsity: p.sparsity, method: a.method, blocksize: p.blocksize, percdamp: p.percdamp }
      : { structure: a.structure, sparsity: p.sparsity, method: a.method };
  }
  const r = job.resolved!;
  return {
    structure: a.structure, sparsity: a.sparsity, method: r.method, shots: r.shots,
    lambdaG: r.lambdaG, lambdaA: r.lambdaA, fisherSamples: a.fisherSamples ?? 0, seed: a.seed,
    maxCorrelate: a.maxCorrelate ?? null, maxChunk: r.maxChunk, independentUpdates: r.independent,
    lora: r.lora ?? null, batch: a.batch ?? plan.autoBatch?.batch ?? null,
    uniform: r.uniform !== undefined, uniformHeads: r.uniform?.heads ?? false, compact: a.compact,
  };
}

/**
 * A pruning step's progress event as a CLI progress line; undefined for the job's own phases (tokenize,
 * upload, …: the CLI logs those stages itself). The surgeon's in-shot ETA assumes even phases (they are
 * not): dropped, the printer estimates from finished shots; a peer's one pass keeps its own.
 */
export function progressLine(p: ProgressEvent, peer: boolean): ProgressLine | undefined {
  if (JOB_PHASES.has(p.phase)) return undefined;
  return {
    phase: p.phase, shot: p.shot?.index ?? 1, shots: p.shot?.total ?? 1,
    layer: p.layerName ?? (p.layer && `layer ${p.layer.index}/${p.layer.total}`),
    fraction: p.phaseFraction ?? p.fraction, etaSeconds: peer ? p.etaSeconds : undefined,
    pass: p.pass?.index, passes: p.pass?.total,
  };
}
