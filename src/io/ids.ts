/**
 * Token ids from the outside (a .json file, an API caller's array, a tokenizer's output) checked once,
 * the same way on every path, before they are copied into an Int32Array: a wrapping copy would turn
 * 4294967301 into 5 and a fraction into its integer part, and the GPU embedding lookup does not check.
 * Errors are DatasetErrors (they cross the worker boundary as such) naming the source and the index.
 */

import { DatasetError } from './errors';

function show(v: unknown): string {
  if (typeof v === 'string') return `${JSON.stringify(v.length > 20 ? `${v.slice(0, 20)}…` : v)} (a string)`;
  if (v === null || typeof v !== 'object') return String(v);
  return Array.isArray(v) ? 'an array' : 'an object';
}

/**
 * `ids` as an Int32Array after checking every entry: a finite integer in 0…vocabSize−1 (a number;
 * strings, booleans and nulls are refused). `source` names the file or argument in the error.
 */
export function checkTokenIds(ids: ArrayLike<unknown>, vocabSize: number, source: string): Int32Array {
  if (!Number.isSafeInteger(vocabSize) || vocabSize < 1) throw new DatasetError(`${source}: vocab size ${vocabSize} is not a positive integer`);
  if (ids instanceof Int32Array) {
    // Already 32-bit integers: only the range can be wrong.
    for (let i = 0; i < ids.length; i++) if (ids[i] < 0 || ids[i] >= vocabSize) throw outside(source, i, ids[i], vocabSize);
    return ids.slice();
  }
  const out = new Int32Array(ids.length);
  for (let i = 0; i < ids.length; i++) {
    const v = ids[i];
    if (typeof v !== 'number' || !Number.isFinite(v) || !Number.isInteger(v)) {
      throw new DatasetError(`${source}: entry ${i} is ${show(v)}, not a token id (an integer in 0…${vocabSize - 1})`);
    }
    if (v < 0 || v >= vocabSize) throw outside(source, i, v, vocabSize);
    out[i] = v;
  }
  return out;
}

function outside(source: string, i: number, v: number, vocabSize: number): DatasetError {
  return new DatasetError(`${source}: entry ${i} is ${v}, outside 0…${vocabSize - 1} (the model's vocab_size is ${vocabSize})`);
}

/** The entries of a .json ids file (a JSON array); a file that does not parse, or holds no array, is named. */
export function parseTokenIdsJson(text: string, source: string): unknown[] {
  let v: unknown;
  try {
    v = JSON.parse(text);
  } catch (e) {
    throw new DatasetError(`${source}: not valid JSON (${(e as Error).message}); expected an array of token ids`);
  }
  if (!Array.isArray(v)) throw new DatasetError(`${source}: expected a JSON array of token ids, got ${show(v)}`);
  return v;
}
