/**
 * The first two stages of a prune job (job.ts), the same for prune(), the worker and `llm-surgeon prune`:
 * - prepareJob (host only, no GPU): token ids of the calibration and evaluation inputs (text through
 *   the model's tokenizer), the seeded calibration windows, and the options checked against the model,
 *   so a bad input fails with a named error before any GPU work;
 * - planJob (the device's limits, no GPU work): the K-FAC batch, the estimated peak and the layer groups
 *   of the memory plan (job-memory.ts), refused early (LimitExceededError) when nothing fits.
 */

import { prunableLayersOf } from '../arch/registry';
import { checkTokenIds } from '../io/ids';
import { loadTokenizer, type TextTokenizer } from '../io/tokenizer';
import { calibrationWindows, evaluationWindows } from '../io/wikitext';
import { PruneConfigError, resolveOptions, type PruneOptions, type Resolved } from '../surgeon/options';
import { resolvePeer, type ResolvedPeer } from '../surgeon/peers/index';
import type { HostModel, JobMethod, PruneJobOptions, TextOrIds } from './job';
import { checkJobMemory, isPeerMethod, jobMemorySettings, kfacBatchOf, type JobMemory, type PlannedEstimate } from './job-memory';
import { LimitExceededError } from '../gpu/errors';
import { autoKfacBatch, largestFit, type DeviceLimits } from './memory';
import type { PeerMemoryEstimate } from './memory-peers';
import type { PrunePlan } from './plan';
import type { ProgressEvent } from './types';

// Estimated peak GPU memory up to which calibration batch 'auto' raises the K-FAC batch (the CLI's
// default: a large GPU gets more windows per forward/backward, a small job stays small).
const AUTO_BATCH_BUDGET = 4 * 2 ** 30;
const AUTO_MAX_BATCH = 16; // autoKfacBatch's default maxBatch

/** A job whose inputs are tokenised and checked, ready for planJob and runPreparedJob. */
export interface PreparedJob {
  host: HostModel;
  opts: PruneJobOptions;
  method: JobMethod;
  /** Calibration windows (empty: magnitude without calibration), drawn from `calibTokens` token ids. */
  calib: Int32Array[];
  calibTokens: number;
  seqlen: number;
  seed: number;
  /** Evaluation windows; `dense`: measure the unpruned model; `everyShot`: after every shot (peers: after their pass). */
  evaluate?: { ids: Int32Array; seqlen: number; windows: number; dense: boolean; everyShot: boolean };
  /** Surgeon family (surgeon, kobd, lobd, magnitude): the options with their defaults. */
  resolved?: Resolved;
  /** SparseGPT / Wanda: their options with defaults. */
  peer?: ResolvedPeer;
}

/** What a job will run on this device: checked against its limits and the memoryBudget. */
export interface JobPlan {
  /** K-FAC windows per forward/backward (peers: 1). */
  batch: number;
  /** Calibration batch 'auto': the batch chosen and the estimated peak it was chosen within. */
  autoBatch?: { batch: number; budget: number };
  estimate: PlannedEstimate | PeerMemoryEstimate;
  /** Surgeon family: layer groups per shot under the budget (api/plan.ts). */
  plan?: PrunePlan;
}

const tokenizers = new WeakMap<object, Promise<TextTokenizer>>();

/** The model's tokenizer, loaded once per tokenizer.json (PruneConfigError when it has none). */
export function textTokenizer(host: HostModel): Promise<TextTokenizer> {
  if (!host.tokenizerJson) return Promise.reject(new PruneConfigError('the model has no tokenizer.json; pass token ids instead of text'));
  let t = tokenizers.get(host.tokenizerJson as object);
  if (!t) tokenizers.set(host.tokenizerJson as object, (t = loadTokenizer(host.tokenizerJson, host.tokenizerConfig)));
  return t;
}

/** Token ids of `spec`, each checked against the vocabulary (io/ids.ts: DatasetError naming `what` and the index). */
export async function idsOf(host: HostModel, spec: TextOrIds, what: string): Promise<Int32Array> {
  const vocab = host.config.vocabSize;
  if (spec.ids) return checkTokenIds(spec.ids, vocab, `${what} ids`);
  if (typeof spec.text !== 'string') throw new PruneConfigError(`${what}: give text or ids`);
  if (!host.tokenizerJson) throw new PruneConfigError(`${what}: the model has no tokenizer.json; pass token ids instead of text`);
  return checkTokenIds((await textTokenizer(host)).encode(spec.text), vocab, `${what} text (tokenised)`);
}

/** Tokenise, draw the calibration windows, check the options against the model; touches no GPU. */
export async function prepareJob(host: HostModel, opts: PruneJobOptions, emit: (p: ProgressEvent, force?: boolean) => void = () => undefined): Promise<PreparedJob> {
  const cfg = host.config;
  const method = opts.method ?? 'surgeon';
  const cal = opts.calibration ?? {};
  const seed = cal.seed ?? 0;
  const seqlen = cal.seqlen ?? Math.min(2048, cfg.maxPositions);
  if (seqlen > cfg.maxPositions) throw new PruneConfigError(`calibration seqlen ${seqlen} exceeds max_position_embeddings ${cfg.maxPositions}`);
  emit({ phase: 'tokenize', fraction: 0 }, true);
  const job: PreparedJob = { host, opts, method, calib: [], calibTokens: 0, seqlen, seed };
  if (method !== 'magnitude' || opts.calibration) {
    if (!opts.calibration) throw new PruneConfigError(`method ${method} needs calibration: { text | ids, nsamples, seqlen }`);
    const ids = await idsOf(host, cal, 'calibration');
    job.calibTokens = ids.length;
    job.calib = calibrationWindows(ids, cal.nsamples ?? 128, seqlen, seed);
  }
  if (opts.evaluate) {
    const ev = opts.evaluate;
    const eSeq = ev.seqlen ?? seqlen;
    const ids = await idsOf(host, ev, 'evaluate');
    const windows = evaluationWindows(ids, eSeq, ev.windows).length; // DatasetError before any GPU work
    job.evaluate = { ids, seqlen: eSeq, windows, dense: ev.dense !== false, everyShot: ev.everyShot !== false };
  }
  const layers = prunableLayersOf(cfg);
  if (isPeerMethod(method)) {
    if (opts.structure === 'rows-cols') throw new PruneConfigError(`${method} prunes elements or n:m groups, not rows and columns`);
    if (opts.checkpoint) throw new PruneConfigError(`${method} runs in one pass; checkpoints apply to the multi-shot methods`);
    if (opts.lora) throw new PruneConfigError(`${method} runs in one pass; lora corrections run between the shots of the multi-shot methods`);
    // H of SparseGPT is the input covariance, K-FAC's A: lambdaA is its relative damping (percdamp).
    job.peer = resolvePeer({ prunableLayers: () => layers }, { structure: opts.structure as 'element', sparsity: opts.sparsity, blocksize: opts.blocksize, percdamp: opts.lambdaA }, method);
  } else {
    job.resolved = resolveOptions({ ...opts, method, evaluate: job.evaluate, seed } as PruneOptions, layers, job.calib);
  }
  return job;
}

// Tokens per K-FAC forward/backward below which a larger batch is preferred over fewer passes: each
// window then costs its own kernel launches (measured on the H200, 2026-12-04, OPT-125m shape 32 × 2048
// under 2 GiB, 2 shots: batch 4 → 4 passes 22.5 s, 6 → 6 passes 23.0 s, 10 → 12 passes 29.2 s).
export const MIN_BATCH_TOKENS = 8192;

/**
 * Among the batches 1…top that fit, the one whose plan takes the fewest calibration passes per shot:
 * a pass boundary moves the kept activations through host memory and re-runs the lower layers, which
 * costs more than a smaller batch does. Only batches of at least MIN_BATCH_TOKENS tokens compete (when
 * `top` has fewer, `top`); ties go to the largest batch.
 */
export function fewestPassesBatch(top: number, seqlen: number, passesOf: (batch: number) => number): number {
  const floor = Math.min(top, Math.max(1, Math.ceil(MIN_BATCH_TOKENS / seqlen)));
  let best = top, bestPasses = passesOf(top);
  for (let b = top - 1; b >= floor && bestPasses > 1; b--) {
    const p = passesOf(b);
    if (p < bestPasses) { best = b; bestPasses = p; }
  }
  return best;
}

/** The K-FAC batch, the estimated peak and the memory plan of `job` on a device with `lim` (`inUse` bytes already taken). */
export function planJob(job: PreparedJob, lim: DeviceLimits, inUse = 0): JobPlan {
  const { host, opts, method, calib, seqlen } = job;
  const ev = job.evaluate;
  const mem: JobMemory = {
    method, structure: opts.structure, windows: calib.length, seqlen, resolved: job.resolved, fisherSamples: opts.fisherSamples,
    evaluate: ev && { seqlen: ev.seqlen, windows: ev.windows },
  };
  if (job.peer) return { batch: 1, estimate: checkJobMemory(host.config, mem, lim, opts.memoryBudget, inUse) };
  let asked = opts.calibration?.batch, autoBatch: JobPlan['autoBatch'];
  if (asked === 'auto') {
    if (calib.length > 0 && method !== 'magnitude') {
      const budget = Math.min(AUTO_BATCH_BUDGET, opts.memoryBudget ?? Infinity);
      autoBatch = { batch: autoKfacBatch(host.config, jobMemorySettings(mem), lim, budget), budget };
    }
    asked = autoBatch?.batch;
  }
  let batch = kfacBatchOf(calib.length, seqlen, asked), chosen: PlannedEstimate | undefined;
  // autoKfacBatch weighs the all-at-once estimate; under a memoryBudget the planned peak is what counts
  // (a finer schedule may hold a larger batch than one group does). Its peak grows with the batch in
  // every schedule, so a bisection finds the largest batch (≤ AUTO_MAX_BATCH windows) whose plan fits.
  // An explicit batch is the user's and is refused as it is.
  if (autoBatch && opts.memoryBudget !== undefined) {
    const planned = new Map<number, PlannedEstimate | undefined>(); // each batch is planned once
    const planOf = (b: number) => {
      if (!planned.has(b)) {
        try { planned.set(b, checkJobMemory(host.config, { ...mem, batch: b }, lim, opts.memoryBudget, inUse) as PlannedEstimate); } catch (e) { if (!(e instanceof LimitExceededError)) throw e; planned.set(b, undefined); }
      }
      return planned.get(b);
    };
    const top = Math.max(1, largestFit(1, Math.min(AUTO_MAX_BATCH, Math.max(1, calib.length)), (b) => planOf(b) !== undefined));
    batch = fewestPassesBatch(top, seqlen, (b) => planOf(b)?.plan?.passesPerShot ?? Infinity);
    autoBatch = { ...autoBatch, batch };
    chosen = planOf(batch);
  }
  const estimate = chosen ?? checkJobMemory(host.config, { ...mem, batch }, lim, opts.memoryBudget, inUse) as PlannedEstimate;
  return { batch, autoBatch, estimate, plan: estimate.plan };
}
