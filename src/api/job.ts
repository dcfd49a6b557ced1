/**
 * One prune job on host weights, the same in Node and in the worker: tokenize the calibration (and
 * evaluation) text, estimate the peak GPU memory and refuse early (memory.ts), upload a GPU copy of the
 * model (the caller's arrays are never modified), resume from a matching checkpoint (jobstore.ts),
 * optionally measure the dense perplexity, run pruneModel with a checkpoint after every shot, and read
 * the new weights back into new host arrays.
 */

import type { GpuContext } from '../gpu/context';
import type { LoadedCheckpoint } from '../io/checkpoint';
import { checkTokenIds } from '../io/ids';
import { loadTokenizer, type TextTokenizer } from '../io/tokenizer';
import { calibrationWindows, evaluationWindows } from '../io/wikitext';
import { perplexity } from '../model/eval';
import { DecoderModel } from '../model/model';
import { prunableLayersOf } from '../arch/registry';
import { PruneConfigError, resolveOptions, type PruneOptions, type PruneProgress, type PruneReport } from '../surgeon/options';
import { sparsegptPrune, wandaPrune } from '../surgeon/peers/index';
import { pruneModel } from '../surgeon/prune';
import { CheckpointMismatchError, Hasher, loadShotWeights, openStore, readState, saveShot, saveState, stableJson, type CheckpointSpec, type JobState, type Store } from './jobstore';
import { checkJobMemory, isPeerMethod, kfacBatchOf } from './job-memory';
import type { PrunePlan } from './plan';
import { deviceLimits, type MemoryEstimate } from './memory';
import type { PeerMemoryEstimate } from './memory-peers';
import type { ProgressEvent } from './types';

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
  /** Sequences per K-FAC forward/backward (default ⌊4096 / seqlen⌋); smaller uses less GPU memory. */
  batch?: number;
}

export interface EvaluationSpec extends TextOrIds {
  /** Window length (default: the calibration seqlen). */
  seqlen?: number;
  /** At most this many windows from the start (default all). */
  windows?: number;
  /** Also measure the unpruned model first (default true). */
  dense?: boolean;
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
  /** Estimated (memory.ts; the peers: memory-peers.ts) and measured peak GPU bytes of the job. */
  memory: { estimatedPeakBytes: number; measuredPeakBytes: number; estimate?: MemoryEstimate | PeerMemoryEstimate; plan?: PrunePlan };
}

export interface PruneResult {
  /** New host weights (new arrays); the input model is untouched. */
  model: HostModel;
  report: PruneJobReport;
}

const PROGRESS_INTERVAL_MS = 100; // ~10 UI updates per second
// Share of a shot per phase, for the overall fraction (curvature dominates on every model measured).
const PHASE_SPAN: Record<string, [number, number]> = { curvature: [0, 0.7], costs: [0.7, 0.72], threshold: [0.72, 0.74], update: [0.74, 0.85], lora: [0.85, 0.9], eval: [0.9, 1] };

const tokenizers = new WeakMap<object, Promise<TextTokenizer>>();

/** Token ids of `spec`, each checked against the vocabulary (io/ids.ts: DatasetError naming `what` and the index). */
async function idsOf(host: HostModel, spec: TextOrIds, what: string): Promise<Int32Array> {
  const vocab = host.config.vocabSize;
  if (spec.ids) return checkTokenIds(spec.ids, vocab, `${what} ids`);
  if (typeof spec.text !== 'string') throw new PruneConfigError(`${what}: give text or ids`);
  if (!host.tokenizerJson) throw new PruneConfigError(`${what}: the model has no tokenizer.json; pass token ids instead of text`);
  let t = tokenizers.get(host.tokenizerJson as object);
  if (!t) tokenizers.set(host.tokenizerJson as object, (t = loadTokenizer(host.tokenizerJson, host.tokenizerConfig)));
  return checkTokenIds((await t).encode(spec.text), vocab, `${what} text (tokenised)`);
}

/** Order-independent fingerprint of a model's config and weights. */
export function modelFingerprint(host: HostModel): string {
  const h = new Hasher().text(stableJson(host.config.raw));
  for (const name of [...host.tensors.keys()].sort()) h.text(name).floats(host.tensors.get(name)!);
  return h.hex();
}

export async function runPruneJob(
  ctx: GpuContext, host: HostModel, opts: PruneJobOptions, run: { keepGpu?: boolean } = {},
): Promise<PruneResult & { gpu?: DecoderModel }> {
  const cfg = host.config;
  const signal = opts.signal;
  const emit = progressEmitter(opts.onProgress);
  const method = opts.method ?? 'surgeon';
  const cal = opts.calibration ?? {};
  const seed = cal.seed ?? 0;
  const seqlen = cal.seqlen ?? Math.min(2048, cfg.maxPositions);
  const nsamples = cal.nsamples ?? 128;
  if (seqlen > cfg.maxPositions) throw new PruneConfigError(`calibration seqlen ${seqlen} exceeds max_position_embeddings ${cfg.maxPositions}`);
  emit({ phase: 'tokenize', fraction: 0 }, true);
  let calib: Int32Array[] = [];
  if (method !== 'magnitude' || opts.calibration) {
    if (!opts.calibration) throw new PruneConfigError(`method ${method} needs calibration: { text | ids, nsamples, seqlen }`);
    calib = calibrationWindows(await idsOf(host, cal, 'calibration'), nsamples, seqlen, seed);
  }
  let evalSpec: PruneOptions['evaluate'];
  if (opts.evaluate) {
    const ev = opts.evaluate;
    const eSeq = ev.seqlen ?? seqlen;
    const ids = await idsOf(host, ev, 'evaluate');
    const windows = evaluationWindows(ids, eSeq, ev.windows).length; // DatasetError before any GPU work
    evalSpec = { ids, seqlen: eSeq, windows };
  }
  if (isPeerMethod(method)) return runPeerJob(ctx, host, opts, method, calib, seqlen, evalSpec, emit);
  const layers = prunableLayersOf(cfg);
  const resolved = resolveOptions({ ...opts, evaluate: evalSpec, seed } as PruneOptions, layers, calib);
  const surgeonOpts = opts as PruneJobOptions & { method?: PruneOptions['method'] };
  const batch = kfacBatchOf(calib.length, seqlen, cal.batch);
  const estimate = checkJobMemory(cfg, {
    method, structure: opts.structure, windows: calib.length, seqlen, batch, resolved,
    evaluate: evalSpec && { seqlen: evalSpec.seqlen, windows: evalSpec.windows! },
  }, deviceLimits(ctx), opts.memoryBudget, ctx.pool.bytesInUse);
  const plan = 'plan' in estimate ? estimate.plan : undefined;

  // ---- checkpoint: resume or start ----
  let store: Store | undefined;
  let state: JobState | undefined;
  let weights = host.tensors;
  if (opts.checkpoint) {
    emit({ phase: 'checkpoint', fraction: 0 }, true);
    store = await openStore(opts.checkpoint);
    const calH = new Hasher();
    for (const w of calib) calH.words(w);
    const settings = {
      structure: opts.structure, sparsity: opts.sparsity, shots: resolved.shots, method, lambdaG: resolved.lambdaG, lambdaA: resolved.lambdaA,
      fisherSamples: opts.fisherSamples ?? 0, maxCorrelate: opts.maxCorrelate, maxChunk: resolved.maxChunk, calibration: { nsamples, seqlen, seed, batch },
      lora: opts.lora ?? false, // first-order corrections change the weights of every later shot
    };
    const fingerprint = { model: modelFingerprint(host), options: new Hasher().text(stableJson(settings)).hex(), calibration: calH.hex() };
    const old = opts.checkpoint.resume === false ? undefined : await readState(store);
    if (old) {
      for (const k of ['model', 'options', 'calibration'] as const) if (old.fingerprint[k] !== fingerprint[k]) throw new CheckpointMismatchError(store.label, k);
      state = old;
      const saved = await loadShotWeights(store, old);
      weights = new Map([...host.tensors].map(([k, v]) => [k, saved.get(k) ?? v]));
    } else {
      state = { format: 'llm-surgeon-job/1', fingerprint, options: settings, calibrationSeed: seed, shots: resolved.shots, shotsDone: 0, report: [], updated: '' };
      await saveState(store, state);
    }
  }
  signal?.throwIfAborted();

  // ---- GPU copy of the model (the host arrays are only read) ----
  ctx.pool.peakBytesInUse = ctx.pool.bytesInUse;
  emit({ phase: 'upload', fraction: 0 }, true);
  const gpu = await DecoderModel.fromCheckpoint(ctx, { ...host, tensors: weights });
  let keep = false;
  try {
    let densePerplexity = state?.densePerplexity;
    if (evalSpec && opts.evaluate?.dense !== false && densePerplexity === undefined && !state?.shotsDone) {
      densePerplexity = (await perplexity(ctx, gpu, evalSpec.ids, {
        seqlen: evalSpec.seqlen, windows: evalSpec.windows, signal, onProgress: (d, n) => emit({ phase: 'eval-dense', fraction: 0, phaseFraction: d / n }),
      })).ppl;
      if (state && store) {
        state.densePerplexity = densePerplexity;
        await saveState(store, state);
      }
    }
    const startShot = state?.shotsDone ?? 0;
    const names = layers.map((L) => L.name);
    const report = await pruneModel(ctx, gpu, calib, {
      ...surgeonOpts, seed, evaluate: evalSpec, signal,
      startShot, priorShots: state?.report, batch, groups: plan?.groups, headChunkRows: plan?.headChunkRows,
      onProgress: (p: PruneProgress) => {
        const [a, b] = PHASE_SPAN[p.phase] ?? [0, 1];
        const li = p.layer ? names.indexOf(p.layer) : -1;
        emit({
          phase: p.phase, shot: { index: p.shot, total: p.shots }, fraction: (p.shot - 1 + a + (b - a) * p.fraction) / p.shots,
          phaseFraction: p.fraction, layer: li >= 0 ? { index: li + 1, total: names.length } : undefined, layerName: p.layer, etaSeconds: p.etaSeconds,
          pass: p.pass ? { index: p.pass, total: p.passes! } : undefined,
        });
      },
      onShotEnd: store && state ? async (shot, entry) => {
        emit({ phase: 'checkpoint', shot: { index: shot, total: resolved.shots }, fraction: shot / resolved.shots }, true);
        const w = new Map<string, { data: Float32Array; shape: number[] }>();
        for (const L of layers) {
          for (const n of L.bias ? [`${L.name}.weight`, `${L.name}.bias`] : [`${L.name}.weight`]) { // bias-free families (Llama) have no .bias
            const t = gpu.weight(n);
            w.set(n, { data: await t.read(), shape: [...t.shape] });
          }
        }
        state!.shotsDone = shot;
        state!.report = [...state!.report, entry];
        await saveShot(store!, state!, w);
      } : undefined,
    });
    emit({ phase: 'download', fraction: 1 }, true);
    const tensors = await gpu.exportWeights();
    const model: HostModel = { ...host, tensors, shapes: new Map([...host.shapes].map(([k, s]) => [k, s.slice()])), sourceDtype: 'F32', files: [] };
    const full: PruneJobReport = {
      ...report, densePerplexity, resumedFromShot: startShot,
      calibration: { nsamples: calib.length, seqlen, seed, batch },
      memory: { estimatedPeakBytes: estimate.peak, measuredPeakBytes: ctx.pool.peakBytesInUse, estimate, plan },
    };
    emit({ phase: 'done', fraction: 1 }, true);
    keep = !!run.keepGpu;
    return { model, report: full, gpu: keep ? gpu : undefined };
  } finally {
    if (!keep) gpu.dispose();
  }
}

/** SparseGPT / Wanda: one sequential pass over the layers (no shots, no checkpoints), same result shape. */
async function runPeerJob(
  ctx: GpuContext, host: HostModel, opts: PruneJobOptions, method: 'sparsegpt' | 'wanda', calib: Int32Array[], seqlen: number,
  evalSpec: PruneOptions['evaluate'], emit: (p: ProgressEvent, force?: boolean) => void,
): Promise<PruneResult> {
  if (opts.structure === 'rows-cols') throw new PruneConfigError(`${method} prunes elements or n:m groups, not rows and columns`);
  if (opts.checkpoint) throw new PruneConfigError(`${method} runs in one pass; checkpoints apply to the multi-shot methods`);
  if (opts.lora) throw new PruneConfigError(`${method} runs in one pass; lora corrections run between the shots of the multi-shot methods`);
  const cal = opts.calibration ?? {};
  const estimate = checkJobMemory(host.config, {
    method, windows: calib.length, seqlen, structure: opts.structure,
    evaluate: evalSpec && { seqlen: evalSpec.seqlen, windows: evalSpec.windows! },
  }, deviceLimits(ctx), opts.memoryBudget, ctx.pool.bytesInUse);
  emit({ phase: 'upload', fraction: 0 }, true);
  ctx.pool.peakBytesInUse = ctx.pool.bytesInUse;
  const gpu = await DecoderModel.fromCheckpoint(ctx, host);
  try {
    const ppl = async (phase: string) => evalSpec && (await perplexity(ctx, gpu, evalSpec.ids, {
      seqlen: evalSpec.seqlen, windows: evalSpec.windows, signal: opts.signal, onProgress: (d, n) => emit({ phase, fraction: phase === 'eval' ? 0.95 : 0, phaseFraction: d / n }),
    })).ppl;
    const densePerplexity = opts.evaluate?.dense !== false ? await ppl('eval-dense') : undefined;
    const run = method === 'sparsegpt' ? sparsegptPrune : wandaPrune;
    const t0 = performance.now();
    const r = await run(ctx, gpu, calib, {
      structure: opts.structure as 'element', sparsity: opts.sparsity, signal: opts.signal,
      onProgress: (p) => emit({ phase: p.phase, fraction: ((p.layer - 1 + p.fraction) / p.layers) * 0.9, phaseFraction: p.fraction, layer: { index: p.layer, total: p.layers } }),
    });
    const seconds = { ...r.seconds, total: (performance.now() - t0) / 1000 };
    const after = await ppl('eval');
    const layers = r.layers.map((l) => ({ name: l.name, type: l.name.slice(l.name.lastIndexOf('.') + 1), params: l.params, zeros: l.zeros }));
    const byModuleType: PruneReport['byModuleType'] = {};
    for (const l of layers) {
      const a = (byModuleType[l.type] ??= { params: 0, zeros: 0 });
      a.params += l.params;
      a.zeros += l.zeros;
    }
    const tensors = await gpu.exportWeights();
    emit({ phase: 'done', fraction: 1 }, true);
    return {
      model: { ...host, tensors, shapes: new Map([...host.shapes].map(([k, v]) => [k, v.slice()])), sourceDtype: 'F32', files: [] },
      report: {
        shots: [{ shot: 1, target: opts.sparsity, achieved: r.achievedSparsity, ppl: after, seconds }], layers, byModuleType,
        achievedSparsity: r.achievedSparsity, seconds, densePerplexity, resumedFromShot: 0,
        calibration: { nsamples: calib.length, seqlen, seed: cal.seed ?? 0, batch: 1 },
        memory: { estimatedPeakBytes: estimate.peak, measuredPeakBytes: ctx.pool.peakBytesInUse, estimate },
      },
    };
  } finally {
    gpu.dispose();
  }
}

/** Throttled progress: at most one event per interval, plus every forced one (phase changes). */
function progressEmitter(fn?: (p: ProgressEvent) => void): (p: ProgressEvent, force?: boolean) => void {
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

