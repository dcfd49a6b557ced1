/**
 * Typed errors across the worker boundary. Comlink clones a thrown Error as a plain Error (name and
 * message only), which would lose the class and its fields (`kind`, `limit`, `needed`, …). So the
 * worker throws a plain marker object instead (serializeError), and the client rebuilds an instance of
 * the same SurgeonError subclass with the same fields (rebuildError), so `instanceof` works on the main thread.
 */

import { SurgeonError } from '../errors';
import * as gpuErrors from '../gpu/errors';
import * as ioErrors from '../io/errors';
import { NotPositiveDefiniteError } from '../kernels/cholesky';
import { PruneAbortedError, PruneConfigError } from '../surgeon/options';
import { CheckpointMismatchError, CheckpointStoreError } from './jobstore';

/** An operation whose backend layer is not built yet (e.g. perplexity before src/model exists). */
export class NotImplementedError extends SurgeonError {
  constructor(
    readonly feature: string,
    detail: string,
  ) {
    super(`${feature} is not implemented yet: ${detail}`);
  }
}

/** A call that needs a loaded model came before loadModel() succeeded. */
export class NoModelError extends SurgeonError {}

/** The worker itself failed (could not start, or was terminated while a call was running). */
export class WorkerError extends SurgeonError {}

type ErrorClass = new (...args: never[]) => SurgeonError;

const registry = new Map<string, ErrorClass>();
const more = { SurgeonError, NotImplementedError, NoModelError, WorkerError, NotPositiveDefiniteError, PruneAbortedError, PruneConfigError, CheckpointMismatchError, CheckpointStoreError };
for (const mod of [gpuErrors, ioErrors, more]) {
  for (const v of Object.values(mod)) {
    if (typeof v === 'function' && (v === SurgeonError || v.prototype instanceof SurgeonError)) registry.set(v.name, v as ErrorClass);
  }
}

const MARK = '__surgeonError';

export interface SerializedError {
  [MARK]: 1;
  name: string;
  message: string;
  stack?: string;
  /** Own fields of the error (kind, limit, needed, available, reason, tensor, index, value, …). */
  fields: Record<string, unknown>;
}

const cloneable = (v: unknown) => v === null || ['string', 'number', 'boolean', 'undefined'].includes(typeof v);

/** Turn anything thrown in the worker into a structured-cloneable marker object. */
export function serializeError(e: unknown): SerializedError {
  if (e instanceof Error) {
    const fields: Record<string, unknown> = {};
    for (const [k, v] of Object.entries(e)) if (k !== 'name' && k !== 'message' && k !== 'stack' && cloneable(v)) fields[k] = v;
    return { [MARK]: 1, name: e.name, message: e.message, stack: e.stack, fields };
  }
  return { [MARK]: 1, name: 'Error', message: String(e), fields: {} };
}

export function isSerializedError(e: unknown): e is SerializedError {
  return typeof e === 'object' && e !== null && (e as SerializedError)[MARK] === 1;
}

/** Rebuild the original class (SurgeonError subclasses, AbortError, or a plain Error with the original name). */
export function rebuildError(e: unknown): unknown {
  if (!isSerializedError(e)) return e;
  if (e.name === 'AbortError' && typeof DOMException !== 'undefined') return new DOMException(e.message, 'AbortError');
  const cls = registry.get(e.name);
  // Reflect.construct(Error, …, cls): an Error with cls.prototype, without running cls's constructor
  // (whose arguments we do not have); the message is the final one, fields are restored below.
  const err = Reflect.construct(Error, [e.message], cls ?? Error) as Error;
  Object.assign(err, e.fields);
  Object.defineProperty(err, 'name', { value: e.name, enumerable: false, configurable: true, writable: true });
  if (e.stack) err.stack = `${e.stack}\n    at <worker boundary>`;
  return err;
}
