/**
 * One prune job on host weights: the orchestrator that prune(), the worker (session.ts) and
 * `llm-surgeon prune` all run. Stages: prepare (job-prepare.ts: tokenise, calibration windows, options
 * checked; no GPU) → plan (K-FAC batch, estimated peak and memory plan, refused early) → resume from a
 * matching checkpoint (job-checkpoint.ts) → upload a GPU copy (the caller's arrays are never modified) →
 * dense perplexity → the pruning step (pruneModel, or SparseGPT / Wanda) → read the new weights back
 * into new host arrays. In-process callers (the CLI) watch the stages through `onStage`.
 */

import type { GpuContext } from '../gpu/context';
import type { LoadedCheckpoint } from '../io/checkpoint';
import { perplexity } from '../model/eval';
import { DecoderModel } from '../model/model';
import { prunableLayersOf } from '../arch/registry';
import type { PruneOptions, PruneProgress, PruneReport } from '../surgeon/options';
import { sparsegptPrune, wandaPrune } from '../surgeon/peers/index';
import { pruneModel } from '../surgeon/prune';
import { openJobCheckpoint, type JobCheckpoint } from './job-checkpoint';
import { planJob, prepareJob, type JobPlan, type PreparedJob } from './job-prepare';
import type { CheckpointSpec } from './jobstore';
import { deviceLimits, type MemoryEstimate } from './memory';
import type { PeerMemoryEstimate } from './memory-peers';
import type { PrunePlan } from './plan';
import type { ProgressEvent } from './types';

export { idsOf, MIN_BATCH_TOKENS, planJob, prepareJob, textTokenizer, type JobPlan, type PreparedJob } from './job-prepare';
export { modelFingerprint } from './job-checkpoint';
export { isPeerMethod } from './job-memory';

/** A model on the host: canonical tensor names → f32 arrays, config, tokenizer (what loadModel returns). */
export type HostModel = LoadedCheckpoint;

export interface TextOrIds {
  /** Text tokenized with the model's tokenizer… */
  text?: string;
  /** …or token ids. */
  ids?: Int32Array | number[];
}

export interface CalibrationSpec extends TextOrIds {
  /** Random windows (default 128, ALGORITHM.md §7). */
  nsamples?: number;
  /** Tokens per window (default min(2048, max_position_embeddings)). */
  seqlen?: number;
  /** Seed of the window draws (Python-compatible, io/wikitext) and of sampled Fisher labels (default 0). */
  seed?: number;
  /**
   * Sequences per K-FAC forward/backward (default ⌊4096 / seqlen⌋); smaller uses less GPU memory.
   * 'auto': the most, up to 16, whose estimated peak stays under 4 GiB (or the memoryBudget).
   */
  batch?: number | 'auto';
}

export interface EvaluationSpec extends TextOrIds {
  /** Window length (default: the calibration seqlen). */
  seqlen?: number;
  /** At most this many windows from the start (default all). */
  windows?: number;
  /** Also measure the unpruned model first (default true). */
  dense?: boolean;
  /** Measure after every shot (SparseGPT / Wanda: after their pass) (default true). */
  everyShot?: boolean;
}

/** LLM Surgeon and its baselines (multi-shot, resumable), or a peer (SparseGPT, Wanda: one pass, ALGORITHM.md §9). */
export type JobMethod = NonNullable<PruneOptions['method']> | 'sparsegpt' | 'wanda';

/** Everything of a prune job that can cross a worker boundary (no callbacks, no signal). */
export interface PruneSettings extends Omit<PruneOptions, 'evaluate' | 'onProgress' | 'signal' | 'seed' | 'method'> {
  method?: JobMethod;
  calibration?: CalibrationSpec;
  evaluate?: EvaluationSpec;
  checkpoint?: CheckpointSpec;
  /** Refuse the job when its estimated peak GPU bytes (plus what is already in use) exceed this. */
  memoryBudget?: number;
  /** SparseGPT: columns per lazy block (default 128); its damping percdamp is lambdaA (default 0.01). */
  blocksize?: number;
}

export interface PruneJobOptions extends PruneSettings {
  onProgress?: (p: ProgressEvent) => void;
  signal?: AbortSignal;
}

export interface PruneJobReport extends PruneReport {
  /** Perplexity of the unpruned model on the evaluation windows. */
  densePerplexity?: number;
  /** Shots taken from a checkpoint instead of being run (0: a fresh job). */
  resumedFromShot: number;
  calibration: { nsamples: number; seqlen: number; seed: number; batch: number };
  /**
   * Estimated (memory.ts; the peers: memory-peers.ts) and measured peak GPU bytes of the job. The measured
   * peak is the pool's, so it includes `baseBytes`, what the pool already held when the job was planned
   * (another model, a previous job's cached buffers); the estimate is the job's own and the budget check
   * adds baseBytes to it.
   */
  memory: { estimatedPeakBytes: number; measuredPeakBytes: number; baseBytes: number; estimate?: MemoryEstimate | PeerMemoryEstimate; plan?: PrunePlan };
  /** SparseGPT / Wanda: zeros / entries of W alone (they never prune biases). */
  weightSparsity?: number;
}

export interface PruneResult {
  /** New host weights (new arrays); the input model is untouched. */
  model: HostModel;
  report: PruneJobReport;
}

/** Milestones of a job for an in-process caller (the CLI's log lines, its timings and checks). */
export type JobStage =
  | { stage: 'planned'; plan: JobPlan }
  | { stage: 'uploaded' }
  /** A throw from here stops the job before any weight changes (the CLI: a non-finite perplexity). */
  | { stage: 'dense'; perplexity: number }
  | { stage: 'pruning' }
  | { stage: 'pruned'; achievedSparsity: number };

export interface JobRun {
  /** Return the GPU copy of the pruned model (the caller disposes it) instead of freeing it. */
  keepGpu?: boolean;
  onStage?: (s: JobStage) => void;
}

/** The pruning step's part of the report. */
type StepReport = PruneReport & { weightSparsity?: number };

const PROGRESS_INTERVAL_MS = 100; // ~10 UI updates per second
// Share of a shot per phase, for the overall fraction (curvature dominates on every model measured).
const PHASE_SPAN: Record<string, [number, number]> = { curvature: [0, 0.7], costs: [0.7, 0.72], threshold: [0.72, 0.74], update: [0.74, 0.85], lora: [0.85, 0.9], eval: [0.9, 1] };
// Share of a peer job before its evaluation.
const PEER_SPAN = 0.9;

/** Phases the job itself reports around the pruning step (every other phase is the step's own). */
export const JOB_PHASES: ReadonlySet<string> = new Set(['tokenize', 'checkpoint', 'upload', 'eval-dense', 'download', 'done']);

export async function runPruneJob(ctx: GpuContext, host: HostModel, opts: PruneJobOptions, run: JobRun = {}): Promise<PruneResult & { gpu?: DecoderModel }> {
  return runPreparedJob(ctx, await prepareJob(host, opts, progressEmitter(opts.onProgress)), run);
}

/** Every stage after prepareJob (job-prepare.ts) on `ctx`. */
export async function runPreparedJob(ctx: GpuContext, job: PreparedJob, run: JobRun = {}): Promise<PruneResult & { gpu?: DecoderModel }> {
  const { host, opts, calib, seqlen, seed } = job;
  const emit = progressEmitter(opts.onProgress);
  const baseBytes = ctx.pool.bytesInUse;
  const plan = planJob(job, deviceLimits(ctx), baseBytes);
  run.onStage?.({ stage: 'planned', plan });
  const ck = job.resolved && opts.checkpoint ? await openJobCheckpoint(job, plan.batch, emit) : undefined;
  opts.signal?.throwIfAborted();

  // ---- GPU copy of the model (the host arrays are only read) ----
  ctx.pool.peakBytesInUse = ctx.pool.bytesInUse;
  emit({ phase: 'upload', fraction: 0 }, true);
  const gpu = await DecoderModel.fromCheckpoint(ctx, ck ? { ...host, tensors: ck.weights } : host);
  let keep = false;
  try {
    run.onStage?.({ stage: 'uploaded' });
    const ev = job.evaluate;
    let densePerplexity = ck?.densePerplexity;
    if (ev?.dense && densePerplexity === undefined && !ck?.startShot) {
      densePerplexity = await evaluate(ctx, gpu, job, 'eval-dense', 0, emit);
      await ck?.saveDense(densePerplexity);
    }
    if (densePerplexity !== undefined) run.onStage?.({ stage: 'dense', perplexity: densePerplexity });
    run.onStage?.({ stage: 'pruning' });
    const step = job.peer ? await prunePeer(ctx, gpu, job, emit) : await pruneSurgeon(ctx, gpu, job, plan, ck, emit);
    run.onStage?.({ stage: 'pruned', achievedSparsity: step.achievedSparsity });
    emit({ phase: 'download', fraction: 1 }, true);
    const tensors = await gpu.exportWeights();
    const model: HostModel = { ...host, tensors, shapes: new Map([...host.shapes].map(([k, s]) => [k, s.slice()])), sourceDtype: 'F32', files: [] };
    const report: PruneJobReport = {
      ...step, densePerplexity, resumedFromShot: ck?.startShot ?? 0,
      calibration: { nsamples: calib.length, seqlen, seed, batch: plan.batch },
      memory: { estimatedPeakBytes: plan.estimate.peak, measuredPeakBytes: ctx.pool.peakBytesInUse, baseBytes, estimate: plan.estimate, ...(plan.plan ? { plan: plan.plan } : {}) },
    };
    emit({ phase: 'done', fraction: 1 }, true);
    keep = !!run.keepGpu;
    return { model, report, gpu: keep ? gpu : undefined };
  } finally {
    if (!keep) gpu.dispose();
  }
}

/** Perplexity of the GPU model on the job's evaluation windows (progress as `phase`, overall fraction `at`). */
async function evaluate(ctx: GpuContext, gpu: DecoderModel, job: PreparedJob, phase: string, at: number, emit: Emit): Promise<number> {
  const ev = job.evaluate!;
  return (await perplexity(ctx, gpu, ev.ids, {
    seqlen: ev.seqlen, windows: ev.windows, signal: job.opts.signal, onProgress: (d, n) => emit({ phase, fraction: at, phaseFraction: d / n }),
  })).ppl;
}

/** LLM Surgeon and its baselines: pruneModel with the plan's batch and groups, a checkpoint after every shot. */
async function pruneSurgeon(ctx: GpuContext, gpu: DecoderModel, job: PreparedJob, plan: JobPlan, ck: JobCheckpoint | undefined, emit: Emit): Promise<StepReport> {
  const names = prunableLayersOf(job.host.config).map((L) => L.name);
  const ev = job.evaluate;
  return pruneModel(ctx, gpu, job.calib, {
    ...(job.opts as PruneJobOptions & { method?: PruneOptions['method'] }), seed: job.seed, evaluate: ev?.everyShot ? ev : undefined, signal: job.opts.signal,
    startShot: ck?.startShot ?? 0, priorShots: ck?.priorShots, batch: plan.batch, groups: plan.plan?.groups, headChunkRows: plan.plan?.headChunkRows,
    split: plan.plan?.split, streamed: plan.plan?.streamed, offloadUpdate: plan.plan?.offloadUpdate,
    onProgress: (p: PruneProgress) => {
      const [a, b] = PHASE_SPAN[p.phase] ?? [0, 1];
      const li = p.layer ? names.indexOf(p.layer) : -1;
      emit({
        phase: p.phase, shot: { index: p.shot, total: p.shots }, fraction: (p.shot - 1 + a + (b - a) * p.fraction) / p.shots,
        phaseFraction: p.fraction, layer: li >= 0 ? { index: li + 1, total: names.length } : undefined, layerName: p.layer, etaSeconds: p.etaSeconds,
        pass: p.pass ? { index: p.pass, total: p.passes! } : undefined,
      });
    },
    onShotEnd: ck && ((shot, entry) => ck.saveShot(gpu, shot, entry)),
  });
}

/** SparseGPT / Wanda: one sequential pass over the layers (no shots, no checkpoints), the same report shape. */
async function prunePeer(ctx: GpuContext, gpu: DecoderModel, job: PreparedJob, emit: Emit): Promise<StepReport> {
  const { opts } = job;
  const t0 = performance.now();
  const r = await (job.method === 'sparsegpt' ? sparsegptPrune : wandaPrune)(ctx, gpu, job.calib, {
    structure: opts.structure as 'element', sparsity: opts.sparsity, blocksize: opts.blocksize, percdamp: opts.lambdaA, signal: opts.signal,
    // p.layer counts from 0; p.fraction is already the share of all layers done
    onProgress: (p) => {
      const el = (performance.now() - t0) / 1000;
      emit({ phase: p.phase, fraction: p.fraction * PEER_SPAN, phaseFraction: p.fraction, layer: { index: p.layer + 1, total: p.layers }, etaSeconds: p.fraction > 0 ? (el / p.fraction) * (1 - p.fraction) : undefined });
    },
  });
  const seconds = { ...r.seconds, total: (performance.now() - t0) / 1000 };
  const after = job.evaluate?.everyShot ? await evaluate(ctx, gpu, job, 'eval', PEER_SPAN, emit) : undefined;
  const layers = r.layers.map((l) => ({ name: l.name, type: l.name.slice(l.name.lastIndexOf('.') + 1), params: l.params, zeros: l.zeros }));
  const byModuleType: PruneReport['byModuleType'] = {};
  for (const l of layers) {
    const a = (byModuleType[l.type] ??= { params: 0, zeros: 0 });
    a.params += l.params;
    a.zeros += l.zeros;
  }
  return {
    shots: [{ shot: 1, target: opts.sparsity, achieved: r.achievedSparsity, ppl: after, seconds }], layers, byModuleType,
    achievedSparsity: r.achievedSparsity, weightSparsity: r.weightSparsity, seconds,
  };
}

type Emit = (p: ProgressEvent, force?: boolean) => void;

/** Throttled progress: at most one event per interval, plus every forced one (phase changes). */
function progressEmitter(fn?: (p: ProgressEvent) => void): Emit {
  let last = 0, lastPhase = '';
  return (p, force) => {
    if (!fn) return;
    const t = Date.now();
    if (!force && p.phase === lastPhase && t - last < PROGRESS_INTERVAL_MS) return;
    last = t;
    lastPhase = p.phase;
    fn(p);
  };
}
