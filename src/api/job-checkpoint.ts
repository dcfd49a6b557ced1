/**
 * The resume side of a prune job (job.ts, surgeon family only): open the job's checkpoint store
 * (jobstore.ts), continue from a state whose model, options and calibration fingerprints match (or
 * refuse with CheckpointMismatchError), start a fresh one otherwise, and save the prunable layers'
 * weights after every shot.
 */

import type { DecoderModel } from '../model/model';
import { prunableLayersOf } from '../arch/registry';
import type { PruneReport } from '../surgeon/options';
import type { HostModel } from './job';
import type { PreparedJob } from './job-prepare';
import { CheckpointMismatchError, Hasher, loadShotWeights, openStore, readState, saveShot, saveState, stableJson, type JobState } from './jobstore';
import type { ProgressEvent } from './types';

export interface JobCheckpoint {
  /** Shots already done (0: a fresh job), their report entries and the dense perplexity measured before them. */
  startShot: number;
  priorShots: PruneReport['shots'];
  densePerplexity?: number;
  /** The weights to upload: the input model's, with the saved shot's prunable layers. */
  weights: Map<string, Float32Array>;
  saveDense(ppl: number): Promise<void>;
  /** After shot `shot`: the GPU model's prunable weights and the shot's report entry. */
  saveShot(gpu: DecoderModel, shot: number, entry: PruneReport['shots'][number]): Promise<void>;
}

/** Order-independent fingerprint of a model's config and weights. */
export function modelFingerprint(host: HostModel): string {
  const h = new Hasher().text(stableJson(host.config.raw));
  for (const name of [...host.tensors.keys()].sort()) h.text(name).floats(host.tensors.get(name)!);
  return h.hex();
}

/** Open `job.opts.checkpoint` (a surgeon-family job) for a run with K-FAC `batch`. */
export async function openJobCheckpoint(job: PreparedJob, batch: number, emit: (p: ProgressEvent, force?: boolean) => void): Promise<JobCheckpoint> {
  const { host, opts, seqlen, seed } = job;
  const resolved = job.resolved!;
  emit({ phase: 'checkpoint', fraction: 0 }, true);
  const store = await openStore(opts.checkpoint!);
  const calH = new Hasher();
  for (const w of job.calib) calH.words(w);
  // Exactly these fields (and their order) are hashed: a change would orphan existing checkpoints.
  const settings = {
    structure: opts.structure, sparsity: opts.sparsity, shots: resolved.shots, method: job.method, lambdaG: resolved.lambdaG, lambdaA: resolved.lambdaA,
    fisherSamples: opts.fisherSamples ?? 0, maxCorrelate: opts.maxCorrelate, maxChunk: resolved.maxChunk,
    calibration: { nsamples: opts.calibration?.nsamples ?? 128, seqlen, seed, batch },
    lora: opts.lora ?? false, // first-order corrections change the weights of every later shot
    ...(resolved.uniform ? { uniform: resolved.uniform } : {}), // only when set: older checkpoints keep their fingerprint
  };
  const fingerprint = { model: modelFingerprint(host), options: new Hasher().text(stableJson(settings)).hex(), calibration: calH.hex() };
  const old = opts.checkpoint!.resume === false ? undefined : await readState(store);
  let state: JobState;
  let weights = host.tensors;
  if (old) {
    for (const k of ['model', 'options', 'calibration'] as const) if (old.fingerprint[k] !== fingerprint[k]) throw new CheckpointMismatchError(store.label, k);
    state = old;
    const saved = await loadShotWeights(store, old);
    weights = new Map([...host.tensors].map(([k, v]) => [k, saved.get(k) ?? v]));
  } else {
    state = { format: 'llm-surgeon-job/1', fingerprint, options: settings, calibrationSeed: seed, shots: resolved.shots, shotsDone: 0, report: [], updated: '' };
    await saveState(store, state);
  }
  const layers = prunableLayersOf(host.config);
  return {
    startShot: state.shotsDone, priorShots: state.report, densePerplexity: state.densePerplexity, weights,
    async saveDense(ppl) {
      state.densePerplexity = ppl;
      await saveState(store, state);
    },
    async saveShot(gpu, shot, entry) {
      emit({ phase: 'checkpoint', shot: { index: shot, total: resolved.shots }, fraction: shot / resolved.shots }, true);
      const w = new Map<string, { data: Float32Array; shape: number[] }>();
      for (const L of layers) {
        for (const n of L.bias ? [`${L.name}.weight`, `${L.name}.bias`] : [`${L.name}.weight`]) { // bias-free families (Llama) have no .bias
          const t = gpu.weight(n);
          w.set(n, { data: await t.read(), shape: [...t.shape] });
        }
      }
      state.shotsDone = shot;
      state.report = [...state.report, entry];
      await saveShot(store, state, w);
    },
  };
}
