/** Field readers shared by the families' config parsers: every bad value is a ConfigError naming the key. */

import { ConfigError } from '../io/errors';
import type { DType } from './types';

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
