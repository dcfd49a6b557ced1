/**
 * Main-thread side of the worker: `createSurgeonWorker()` starts src/api/worker.ts as a module worker
 * and returns a typed client. Errors come back as the same SurgeonError subclasses (with their fields);
 * progress arrives through Comlink.proxy callbacks; zip bytes are transferred in both directions.
 */

import * as Comlink from 'comlink';
import { rebuildError, WorkerError } from './errors';
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
  /** The current weights as a zipped Hugging Face folder (transferred from the worker). */
  exportModel(): Promise<Uint8Array>;
  memory(): Promise<MemoryStats>;
  benchmark(size?: number, repeats?: number): Promise<BenchmarkResult>;
  /** Test hook: destroy the worker's GPU device as a driver reset would. */
  loseDevice(): Promise<void>;
  /** Stop the worker; calls still running reject with WorkerError. */
  terminate(): void;
}

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

  return {
    init: () => run(remote.init()),
    capabilities: () => run(remote.capabilities()),
    loadModel: (source, o = {}) => run(remote.loadModel(prepare(source), o.onProgress && Comlink.proxy(o.onProgress))),
    evaluate: (opts, o = {}) => run(remote.evaluate(opts, o.onProgress && Comlink.proxy(o.onProgress))),
    generate: (prompt, o) => run(remote.generate(prompt, o)),
    sparsity: () => run(remote.sparsity()),
    exportModel: () => run(remote.exportModel()),
    memory: () => run(remote.memory()),
    benchmark: (size, repeats) => run(remote.benchmark(size, repeats)),
    loseDevice: () => run(remote.loseDevice()),
    terminate: () => {
      fail(new WorkerError('the worker was terminated'));
      remote[Comlink.releaseProxy]();
      worker.terminate();
    },
  };
}
