/**
 * Dedicated Web Worker entry: exposes a SurgeonSession through Comlink. Every method's failure is
 * re-thrown as a serialized marker (see errors.ts) so the client can rebuild the same error class.
 * Weights and zip bytes are transferred, never cloned.
 */

import * as Comlink from 'comlink';
import { serializeError } from './errors';
import type { HostModel, PruneSettings } from './job';
import type { CheckpointSpec } from './jobstore';
import { SurgeonSession } from './session';
import type { EvaluateOptions, LoadProgress, ModelSourceSpec, ProgressEvent } from './types';

const session = new SurgeonSession();

async function call<T>(fn: () => T | Promise<T>): Promise<T> {
  try {
    return await fn();
  } catch (e) {
    throw serializeError(e);
  }
}

/** Progress callbacks are Comlink proxies: calls are fire-and-forget, and a closed page must not break the job. */
const safe = <A>(cb?: (a: A) => unknown) => cb && ((a: A) => void Promise.resolve(cb(a)).catch(() => {}));

/** Mark every tensor buffer of a host model for transfer (each buffer once). */
export function transferModel<T extends HostModel>(m: T): T {
  return Comlink.transfer(m, [...new Set([...m.tensors.values()].map((t) => t.buffer as ArrayBuffer))]);
}

export const workerApi = {
  init: () => call(() => session.init()),
  capabilities: () => call(() => session.capabilities()),
  loadModel: (spec: ModelSourceSpec, onProgress?: (p: LoadProgress) => void) => call(() => session.loadModel(spec, safe(onProgress))),
  evaluate: (opts: EvaluateOptions, onProgress?: (p: ProgressEvent) => void) => call(() => session.evaluate(opts, safe(onProgress))),
  generate: (...a: Parameters<SurgeonSession['generate']>) => call(() => session.generate(...a)),
  compactSpeed: (...a: Parameters<SurgeonSession['compactSpeed']>) => call(() => session.compactSpeed(...a)),
  sparsity: () => call(() => session.sparsity()),
  exportModel: (...a: Parameters<SurgeonSession['exportModel']>) =>
    call(async () => {
      const bytes = await session.exportModel(...a);
      return Comlink.transfer(bytes, [bytes.buffer as ArrayBuffer]);
    }),
  memory: () => call(() => session.memory()),
  benchmark: (size?: number, repeats?: number) => call(() => session.benchmark(size, repeats)),
  loseDevice: () => call(() => session.loseDevice()),
  dispose: () => call(() => session.dispose()),
  prune: (settings: PruneSettings, onProgress: ((p: ProgressEvent) => void) | undefined, jobId: string) =>
    call(() => session.prune(settings, safe(onProgress), jobId)),
  pruneHost: (host: HostModel, settings: PruneSettings, onProgress: ((p: ProgressEvent) => void) | undefined, jobId: string) =>
    call(async () => {
      const r = await session.pruneHost(host, settings, safe(onProgress), jobId);
      return Comlink.transfer(r, [...new Set([...r.model.tensors.values()].map((t) => t.buffer as ArrayBuffer))]);
    }),
  loadHost: (spec: ModelSourceSpec, onProgress?: (p: LoadProgress) => void) => call(async () => transferModel(await session.loadHost(spec, safe(onProgress)))),
  evaluateHost: (host: HostModel, opts: EvaluateOptions & { ids?: Int32Array | number[] }, onProgress?: (p: ProgressEvent) => void) =>
    call(() => session.evaluateHost(host, opts, safe(onProgress))),
  cancel: (jobId: string) => call(() => session.cancel(jobId)),
  estimate: (...a: Parameters<SurgeonSession['estimate']>) => call(() => session.estimate(...a)),
  checkpointInfo: (spec: CheckpointSpec) => call(() => session.checkpointInfo(spec)),
  clearCache: () => call(() => session.clearCache()),
};

export type WorkerApi = typeof workerApi;

Comlink.expose(workerApi);
