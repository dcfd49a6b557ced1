/**
 * Dedicated Web Worker entry: exposes a SurgeonSession through Comlink. Every method's failure is
 * re-thrown as a serialized marker (see errors.ts) so the client can rebuild the same error class.
 * Byte results (exportModel) are transferred, never cloned.
 */

import * as Comlink from 'comlink';
import { serializeError } from './errors';
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

export const workerApi = {
  init: () => call(() => session.init()),
  capabilities: () => call(() => session.capabilities()),
  loadModel: (spec: ModelSourceSpec, onProgress?: (p: LoadProgress) => void) => call(() => session.loadModel(spec, safe(onProgress))),
  evaluate: (opts: EvaluateOptions, onProgress?: (p: ProgressEvent) => void) => call(() => session.evaluate(opts, safe(onProgress))),
  generate: (...a: Parameters<SurgeonSession['generate']>) => call(() => session.generate(...a)),
  sparsity: () => call(() => session.sparsity()),
  exportModel: () =>
    call(async () => {
      const bytes = await session.exportModel();
      return Comlink.transfer(bytes, [bytes.buffer as ArrayBuffer]);
    }),
  memory: () => call(() => session.memory()),
  benchmark: (size?: number, repeats?: number) => call(() => session.benchmark(size, repeats)),
  loseDevice: () => call(() => session.loseDevice()),
  dispose: () => call(() => session.dispose()),
};

export type WorkerApi = typeof workerApi;

Comlink.expose(workerApi);
