/**
 * Typed errors across the worker boundary. Comlink clones a thrown Error as a plain Error (name and
 * message only), which would lose the class and its fields (`kind`, `limit`, `needed`, …). So the
 * worker throws a plain marker object instead (serializeError), and the client rebuilds an instance of
 * the same SurgeonError subclass with the same fields (rebuildError), so `instanceof` works on the main thread.
 * Both sides key on the class's literal static `name` (src/errors.ts): the client and the worker are
 * separate minified bundles, so their own class identifiers differ.
 */

import { SurgeonError } from '../errors';
import * as gpuErrors from '../gpu/errors';
import * as ioErrors from '../io/errors';
import { NotPositiveDefiniteError } from '../kernels/cholesky';
import { PruneAbortedError, PruneConfigError } from '../surgeon/options';
import { CheckpointMismatchError, CheckpointStoreError } from './jobstore';

/** An operation whose backend layer is not built yet (e.g. perplexity before src/model exists). */
export class NotImplementedError extends SurgeonError {
  static override readonly name: string = 'NotImplementedError';
  constructor(
    readonly feature: string,
    detail: string,
  ) {
    super(`${feature} is not implemented yet: ${detail}`);
  }
}

/** A call that needs a loaded model came before loadModel() succeeded. */
export class NoModelError extends SurgeonError {
  static override readonly name: string = 'NoModelError';
}

/** The worker itself failed (could not start, or was terminated while a call was running). */
export class WorkerError extends SurgeonError {
  static override readonly name: string = 'WorkerError';
}

type ErrorClass = new (...args: never[]) => SurgeonError;

/** Stable name → class, for every SurgeonError subclass that can cross the boundary. */
const registry = new Map<string, ErrorClass>();
const more = { SurgeonError, NotImplementedError, NoModelError, WorkerError, NotPositiveDefiniteError, PruneAbortedError, PruneConfigError, CheckpointMismatchError, CheckpointStoreError };
for (const mod of [gpuErrors, ioErrors, more]) {
  for (const v of Object.values(mod)) {
    if (typeof v === 'function' && (v === SurgeonError || v.prototype instanceof SurgeonError)) registry.set((v as typeof SurgeonError).name, v as ErrorClass);
  }
}
// Built-in errors keep their class too (their names are part of the language, never minified).
const builtins: Record<string, ErrorConstructor> = { Error, TypeError, RangeError, SyntaxError, ReferenceError, EvalError, URIError };

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

/** Rebuild the original class by its stable name (SurgeonError subclasses, built-in errors, AbortError; else a plain Error with the original name). */
export function rebuildError(e: unknown): unknown {
  if (!isSerializedError(e)) return e;
  if (e.name === 'AbortError' && typeof DOMException !== 'undefined') return new DOMException(e.message, 'AbortError');
  const cls = registry.get(e.name) ?? (Object.hasOwn(builtins, e.name) ? builtins[e.name] : undefined);
  // Reflect.construct(Error, …, cls): an Error with cls.prototype, without running cls's constructor
  // (whose arguments we do not have); the message is the final one, fields are restored below.
  const err = Reflect.construct(Error, [e.message], cls ?? Error) as Error;
  Object.assign(err, e.fields);
  Object.defineProperty(err, 'name', { value: e.name, enumerable: false, configurable: true, writable: true });
  if (e.stack) err.stack = `${e.stack}\n    at <worker boundary>`;
  return err;
}
