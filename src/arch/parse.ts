/** Field readers shared by the families' config parsers: every bad value is a ConfigError naming the key. */

import { ConfigError } from '../io/errors';
import type { DType, LayerDims } from './types';

export type Raw = Record<string, unknown>;

export function posInt(raw: Raw, key: string): number {
  const v = raw[key];
  if (typeof v !== 'number' || !Number.isSafeInteger(v) || v <= 0) {
    throw new ConfigError(`config.json: ${key} must be a positive integer, got ${JSON.stringify(v)}`);
  }
  return v;
}

export function optPosInt(raw: Raw, key: string, dflt: number): number {
  return raw[key] === undefined || raw[key] === null ? dflt : posInt(raw, key);
}

export function optInt(raw: Raw, key: string, dflt: number): number {
  const v = raw[key];
  if (v === undefined || v === null) return dflt;
  if (typeof v !== 'number' || !Number.isSafeInteger(v) || v < 0) {
    throw new ConfigError(`config.json: ${key} must be a non-negative integer, got ${JSON.stringify(v)}`);
  }
  return v;
}

/** A token id that may be null/absent, or (eos) a list of ids. */
export function tokenIds(raw: Raw, key: string, dflt: number | null): number[] {
  const v = raw[key];
  if (v === undefined || v === null) return dflt === null ? [] : [dflt];
  const list = Array.isArray(v) ? v : [v];
  for (const x of list) {
    if (typeof x !== 'number' || !Number.isSafeInteger(x) || x < 0) throw new ConfigError(`config.json: ${key} must be a token id or a list of them, got ${JSON.stringify(v)}`);
  }
  return list as number[];
}

export function optBool(raw: Raw, key: string, dflt: boolean): boolean {
  const v = raw[key];
  if (v === undefined || v === null) return dflt;
  if (typeof v !== 'boolean') throw new ConfigError(`config.json: ${key} must be true or false, got ${JSON.stringify(v)}`);
  return v;
}

export function posNum(raw: Raw, key: string, dflt?: number): number {
  const v = raw[key] ?? dflt;
  if (typeof v !== 'number' || !Number.isFinite(v) || v <= 0) throw new ConfigError(`config.json: ${key} must be a positive number, got ${JSON.stringify(raw[key])}`);
  return v;
}

const DTYPES = ['float16', 'bfloat16', 'float32'] as const;

/** "torch_dtype" (older transformers) or "dtype" (≥ 4.56); float32 when absent. */
export function configDtype(raw: Raw): DType {
  const key = raw.torch_dtype !== undefined ? 'torch_dtype' : 'dtype';
  const dtype = raw[key] ?? 'float32';
  if (!DTYPES.includes(dtype as DType)) throw new ConfigError(`config.json: ${key} ${JSON.stringify(dtype)} is not supported (float16, bfloat16, float32)`);
  return dtype as DType;
}

/** architectures[0] when it is a string list. */
export function firstArchitecture(raw: Raw): string | undefined {
  const a = raw.architectures;
  const list = Array.isArray(a) ? a : a === undefined ? [] : [a];
  return typeof list[0] === 'string' ? list[0] : undefined;
}

/** config.json key of a compact model's per-layer widths (written by compact/export.ts). */
export const COMPACT_KEY = 'compact_layers';

/**
 * `compact_layers`: one `{ ffn_dim, num_attention_heads, num_key_value_heads }` per decoder layer, the
 * widths that layer's tensors really have; the global ffn_dim / intermediate_size and head counts stay
 * the maxima. Validated strictly (a wrong entry would only surface later as a shape mismatch):
 * numLayers entries, integers 1…max, heads a multiple of kv heads, kv = heads without grouped-query
 * attention (`gqa` false: OPT). undefined when the key is absent or null.
 */
export function compactLayers(
  raw: Raw, max: { numLayers: number; ffnDim: number; numHeads: number; numKvHeads: number }, gqa: boolean,
): LayerDims[] | undefined {
  const v = raw[COMPACT_KEY];
  if (v === undefined || v === null) return undefined;
  const bad = (what: string): never => { throw new ConfigError(`config.json: ${COMPACT_KEY}${what}`); };
  if (!Array.isArray(v)) bad(` must be a list of per-layer objects, got ${JSON.stringify(v)}`);
  const list = v as unknown[];
  if (list.length !== max.numLayers) bad(` has ${list.length} entries, num_hidden_layers is ${max.numLayers}`);
  return list.map((e, l) => {
    if (typeof e !== 'object' || e === null || Array.isArray(e)) bad(`[${l}] must be an object, got ${JSON.stringify(e)}`);
    const o = e as Raw;
    const extra = Object.keys(o).find((k) => !['ffn_dim', 'num_attention_heads', 'num_key_value_heads'].includes(k));
    if (extra !== undefined) bad(`[${l}] has an unknown key ${JSON.stringify(extra)}`);
    const int = (k: string, hi: number): number => {
      const x = o[k];
      if (typeof x !== 'number' || !Number.isSafeInteger(x) || x < 1 || x > hi) bad(`[${l}].${k} must be an integer in 1…${hi}, got ${JSON.stringify(x)}`);
      return x as number;
    };
    const ffnDim = int('ffn_dim', max.ffnDim), numHeads = int('num_attention_heads', max.numHeads), numKvHeads = int('num_key_value_heads', max.numKvHeads);
    if (numHeads % numKvHeads !== 0) bad(`[${l}]: num_attention_heads ${numHeads} is not a multiple of num_key_value_heads ${numKvHeads}`);
    if (!gqa && numKvHeads !== numHeads) bad(`[${l}]: num_key_value_heads ${numKvHeads} must equal num_attention_heads ${numHeads} (no grouped-query attention in this family)`);
    return { ffnDim, numHeads, numKvHeads };
  });
}
