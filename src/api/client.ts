/**
 * Main-thread side of the worker: `createSurgeonWorker()` starts src/api/worker.ts as a module worker
 * and returns a typed client. Errors come back as the same SurgeonError subclasses (with their fields);
 * progress arrives through Comlink.proxy callbacks; zip bytes are transferred in both directions.
 */

import * as Comlink from 'comlink';
import type { CompactSpeed } from './compact-speed';
import { rebuildError, WorkerError } from './errors';
import type { FolderOptions } from './export';
import type { HostModel, PruneResult, PruneSettings } from './job';
import type { CheckpointSpec } from './jobstore';
import type { MemoryEstimate } from './memory';
import type { PeerMemoryEstimate } from './memory-peers';
import type { PrunePlan } from './plan';
import type { WorkerApi } from './worker';
import type {
  AdapterSummary, BenchmarkResult, Capabilities, EvaluateOptions, EvaluateResult, GenerateOptions, GenerateResult,
  LoadProgress, MemoryStats, ModelSourceSpec, ModelSummary, ProgressEvent, SparsityEntry,
} from './types';

export interface SurgeonClient {
  init(): Promise<AdapterSummary>;
  capabilities(): Promise<Capabilities>;
  loadModel(source: ModelSourceSpec, opts?: { onProgress?: (p: LoadProgress) => void }): Promise<ModelSummary>;
  evaluate(opts: EvaluateOptions, o?: { onProgress?: (p: ProgressEvent) => void }): Promise<EvaluateResult>;
  generate(prompt: string, opts?: GenerateOptions): Promise<GenerateResult>;
  sparsity(): Promise<SparsityEntry[]>;
  /** The current weights as a zipped Hugging Face folder (transferred from the worker); `compact`: dead units removed. */
  exportModel(opts?: FolderOptions): Promise<Uint8Array>;
  /** Generation speed (tokens/s) and sizes of the current weights, zeroed and compacted (compact-speed.ts). */
  compactSpeed(prompt: string, opts?: GenerateOptions): Promise<CompactSpeed>;
  memory(): Promise<MemoryStats>;
  benchmark(size?: number, repeats?: number): Promise<BenchmarkResult>;
  /** Test hook: destroy the worker's GPU device as a driver reset would. */
  loseDevice(): Promise<void>;
  /** Prune the loaded model in the worker; the result becomes its current weights. `signal` cancels (PruneAbortedError). */
  prune(settings: PruneSettings, o?: JobCallOptions): Promise<Omit<PruneResult, 'model'>>;
  /** Prune host weights: a copy of `model`'s arrays is transferred in (the input stays intact), the new weights are transferred out. */
  pruneHost(model: HostModel, settings: PruneSettings, o?: JobCallOptions): Promise<PruneResult>;
  /** Load a checkpoint into host arrays (transferred out of the worker). */
  loadHost(source: ModelSourceSpec, o?: { onProgress?: (p: LoadProgress) => void }): Promise<HostModel>;
  /** Perplexity of host weights (a copy is transferred in). */
  evaluateHost(model: HostModel, opts: EvaluateOptions & { ids?: Int32Array | number[] }, o?: { onProgress?: (p: ProgressEvent) => void }): Promise<EvaluateResult>;
  /** Estimate (and, for the surgeon family, the memory plan under `budget`, default a share of the adapter's limits in a page). */
  estimate(settings: Parameters<WorkerApi['estimate']>[0], budget?: number): Promise<(MemoryEstimate & { plan?: PrunePlan }) | PeerMemoryEstimate>;
  /** Shots saved in a checkpoint of the loaded model (null: nothing to resume). */
  checkpointInfo(spec: CheckpointSpec): Promise<{ shotsDone: number; shots: number } | null>;
  /** Drop the downloaded-checkpoint cache (Cache Storage). */
  clearCache(): Promise<boolean>;
  /** Stop the worker; calls still running reject with WorkerError. */
  terminate(): void;
}

export interface JobCallOptions {
  onProgress?: (p: ProgressEvent) => void;
  signal?: AbortSignal;
}

/** New arrays holding the model's weights, marked for transfer: the caller's arrays stay intact. */
function transferCopy(m: HostModel): HostModel {
  const tensors = new Map([...m.tensors].map(([k, v]) => [k, v.slice()]));
  return Comlink.transfer({ ...m, tensors }, [...tensors.values()].map((t) => t.buffer as ArrayBuffer));
}

let nextJob = 0;

/** Resolve relative URLs against the page (the worker's own base is its script URL), and transfer zip bytes. */
function prepare(spec: ModelSourceSpec): ModelSourceSpec {
  if (spec.kind === 'url') return { kind: 'url', url: new URL(spec.url, globalThis.location?.href).href };
  if (spec.kind === 'zip' && spec.data instanceof Uint8Array) return Comlink.transfer(spec, [spec.data.buffer as ArrayBuffer]);
  return spec;
}

export function createSurgeonWorker(opts: { worker?: Worker } = {}): SurgeonClient {
  const worker = opts.worker ?? new Worker(new URL('./worker.ts', import.meta.url), { type: 'module', name: 'llm-surgeon' });
  const remote = Comlink.wrap<WorkerApi>(worker);
  let failure: WorkerError | undefined;
  const rejectors = new Set<(e: unknown) => void>();
  const fail = (e: WorkerError) => {
    failure = e;
    for (const r of rejectors) r(e);
    rejectors.clear();
  };
  worker.addEventListener('error', (ev) => fail(new WorkerError(`the worker failed: ${ev.message || 'script error (see the console)'}`)));

  /** Await a remote call, rebuilding typed errors; a dead worker rejects instead of hanging. */
  const run = <T>(p: Promise<T>): Promise<T> => {
    if (failure) return Promise.reject(failure);
    let reject!: (e: unknown) => void;
    const dead = new Promise<never>((_, r) => (reject = r));
    rejectors.add(reject);
    return Promise.race([p, dead])
      .catch((e) => Promise.reject(rebuildError(e)))
      .finally(() => rejectors.delete(reject)) as Promise<T>;
  };

  /** A cancellable job: the signal's abort becomes a cancel message to the worker. */
  const job = <T>(o: JobCallOptions, start: (progress: ((p: ProgressEvent) => void) | undefined, jobId: string) => Promise<T>): Promise<T> => {
    const jobId = `job-${++nextJob}-${Date.now().toString(36)}`;
    if (o.signal?.aborted) return Promise.reject(o.signal.reason ?? new DOMException('aborted', 'AbortError'));
    const onAbort = () => void remote.cancel(jobId).catch(() => undefined);
    o.signal?.addEventListener('abort', onAbort, { once: true });
    return run(start(o.onProgress && Comlink.proxy(o.onProgress), jobId)).finally(() => o.signal?.removeEventListener('abort', onAbort));
  };

  return {
    init: () => run(remote.init()),
    capabilities: () => run(remote.capabilities()),
    loadModel: (source, o = {}) => run(remote.loadModel(prepare(source), o.onProgress && Comlink.proxy(o.onProgress))),
    evaluate: (opts, o = {}) => run(remote.evaluate(opts, o.onProgress && Comlink.proxy(o.onProgress))),
    generate: (prompt, o) => run(remote.generate(prompt, o)),
    sparsity: () => run(remote.sparsity()),
    exportModel: (opts) => run(remote.exportModel(opts)),
    compactSpeed: (prompt, o) => run(remote.compactSpeed(prompt, o)),
    memory: () => run(remote.memory()),
    benchmark: (size, repeats) => run(remote.benchmark(size, repeats)),
    loseDevice: () => run(remote.loseDevice()),
    prune: (settings, o = {}) => job(o, (p, id) => remote.prune(settings, p, id)),
    pruneHost: (model, settings, o = {}) => job(o, (p, id) => remote.pruneHost(transferCopy(model), settings, p, id)),
    loadHost: (source, o = {}) => run(remote.loadHost(prepare(source), o.onProgress && Comlink.proxy(o.onProgress))),
    evaluateHost: (model, opts, o = {}) => run(remote.evaluateHost(transferCopy(model), opts, o.onProgress && Comlink.proxy(o.onProgress))),
    estimate: (settings, budget) => run<(MemoryEstimate & { plan?: PrunePlan }) | PeerMemoryEstimate>(remote.estimate(settings, budget)),
    checkpointInfo: (spec) => run(remote.checkpointInfo(spec)),
    clearCache: () => run(remote.clearCache()),
    terminate: () => {
      fail(new WorkerError('the worker was terminated'));
      remote[Comlink.releaseProxy]();
      worker.terminate();
    },
  };
}
