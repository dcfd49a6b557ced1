/**
 * Export weights as a Hugging Face folder of any supported family (OPT, Llama/Mistral/Qwen2) that
 * transformers' `from_pretrained` loads:
 * - config.json: the source config unchanged except its dtype field(s) ("dtype" and/or "torch_dtype",
 *   whichever the source has; "torch_dtype" when it has neither),
 * - model.safetensors: one file, the family's canonical names ("model.decoder.…", "model.layers.…"),
 *   metadata {format: "pt"}; the tied
 *   LM head is omitted exactly as in the source (tie_word_embeddings), an untied lm_head.weight is kept,
 * - extra files (tokenizer.json, vocab.json, …) copied byte for byte.
 * Every tensor the config implies must be present with the right size (nothing more), so a folder that
 * would not load is never written. Rounding to float16/bfloat16 is round-to-nearest-even; exact zeros stay
 * exact zeros. Values that overflow the target dtype (|x| > 65504 for float16) are rejected.
 */

import { expectedTensors, parseModelConfig } from './config';
import { decodeToF32, encodeFromF32, type FloatDType } from './dtype';
import { CheckpointFormatError } from './errors';
import { writeSafetensors, type TensorToWrite } from './safetensors';

export type ExportDType = 'float16' | 'bfloat16' | 'float32';

export const EXPORT_DTYPES: readonly ExportDType[] = ['float16', 'bfloat16', 'float32'];

const ST_DTYPE: Record<ExportDType, FloatDType> = { float16: 'F16', bfloat16: 'BF16', float32: 'F32' };

/** Files a Hugging Face folder may carry beside the weights; copied when the source has them. */
export const TOKENIZER_FILES = ['tokenizer.json', 'tokenizer_config.json', 'vocab.json', 'merges.txt', 'special_tokens_map.json', 'generation_config.json'] as const;

export interface ExportOptions {
  /** Weight dtype in the folder (default: the config's dtype, float32 when it has none). */
  dtype?: ExportDType;
  /** Files copied as they are (e.g. the source's tokenizer files). Must not be config.json or weights. */
  extraFiles?: Record<string, Uint8Array>;
  /** Extra safetensors __metadata__ entries (strings). */
  metadata?: Record<string, string>;
}

export interface ExportedFolder {
  /** file name → bytes, as written (or to be written). */
  files: Record<string, Uint8Array>;
  dtype: ExportDType;
}

/** The dtype a config.json declares (dtype or torch_dtype), if it is one we write. */
export function configDType(raw: Record<string, unknown>): ExportDType | undefined {
  const d = raw.torch_dtype ?? raw.dtype;
  return EXPORT_DTYPES.includes(d as ExportDType) ? (d as ExportDType) : undefined;
}

/** `data` rounded to `dtype` and back to f32 (a new array; float32 → a copy): the values as exported. */
export function roundTo(data: Float32Array, dtype: ExportDType): Float32Array {
  if (dtype === 'float32') return data.slice();
  const st = ST_DTYPE[dtype];
  return decodeToF32(encodeFromF32(data, st), 0, data.length, st);
}

/** Build the folder's files in memory. Throws CheckpointFormatError when `weights` do not fit the config. */
export function buildHfFolder(configRaw: Record<string, unknown>, weights: Map<string, Float32Array>, opts: ExportOptions = {}): ExportedFolder {
  const cfg = parseModelConfig(configRaw);
  const dtype = opts.dtype ?? configDType(configRaw) ?? 'float32';
  if (!EXPORT_DTYPES.includes(dtype)) throw new CheckpointFormatError('dtype', `cannot export as ${String(dtype)} (${EXPORT_DTYPES.join(', ')})`);
  const expected = expectedTensors(cfg);
  const tensors: TensorToWrite[] = [];
  for (const [name, shape] of expected) {
    const data = weights.get(name);
    if (!data) throw new CheckpointFormatError('missing', `export: no weights for ${name}`);
    const n = shape.reduce((a, b) => a * b, 1);
    if (data.length !== n) throw new CheckpointFormatError('shape', `export: ${name} holds ${data.length} values, config implies [${shape}]`);
    tensors.push({ name, dtype: ST_DTYPE[dtype], shape: shape.slice(), data });
  }
  const extra = [...weights.keys()].find((k) => !expected.has(k));
  if (extra) throw new CheckpointFormatError('extra', `export: ${extra} is not part of this ${cfg.architecture} config${extra === 'lm_head.weight' ? ' (the head is tied)' : ''}`);
  if (dtype !== 'float32') checkRange(tensors, dtype);
  const st = writeSafetensors(tensors, { format: 'pt', ...opts.metadata });

  const config: Record<string, unknown> = { ...configRaw };
  let set = false;
  for (const key of ['torch_dtype', 'dtype']) if (key in config) { config[key] = dtype; set = true; }
  if (!set) config.torch_dtype = dtype;
  const files: Record<string, Uint8Array> = {
    'config.json': new TextEncoder().encode(`${JSON.stringify(config, null, 2)}\n`),
    'model.safetensors': st,
  };
  for (const [name, bytes] of Object.entries(opts.extraFiles ?? {})) {
    if (name in files || name.endsWith('.safetensors') || name.endsWith('.index.json') || name.includes('/')) {
      throw new CheckpointFormatError('extra', `export: extra file ${name} would clash with the exported weights or config`);
    }
    files[name] = bytes;
  }
  return { files, dtype };
}

// Smallest magnitudes that round to ±Inf (round to nearest even): float16 65520, bfloat16 2^128·(1 − 2^-9).
const OVERFLOW: Record<ExportDType, number> = { float16: 65520, bfloat16: 3.3961775292304772e38, float32: Infinity };

/** Finite values that would round to ±Inf in `dtype`: name the first offending tensor and index. */
function checkRange(tensors: TensorToWrite[], dtype: ExportDType): void {
  const lim = OVERFLOW[dtype];
  for (const t of tensors) {
    for (let i = 0; i < t.data.length; i++) {
      const v = Math.abs(t.data[i]);
      if (v >= lim && v !== Infinity) throw new CheckpointFormatError('dtype', `export: ${t.name}[${i}] = ${t.data[i]} overflows ${dtype}; export as float32`);
    }
  }
}

// Held in a variable so browser bundles leave node:fs alone (only reached when writing to a path).
const FS = 'node:fs/promises';

/**
 * Build the folder (buildHfFolder) and, when `dir` is a path (Node), write its files there (the folder is
 * created if needed; existing files of the same names are replaced). `dir` null: in memory only.
 */
export async function exportHfFolder(
  configRaw: Record<string, unknown>, weights: Map<string, Float32Array>, dir: string | null, opts: ExportOptions = {},
): Promise<ExportedFolder> {
  const folder = buildHfFolder(configRaw, weights, opts);
  if (dir !== null) {
    const fs = (await import(/* @vite-ignore */ FS)) as typeof import('node:fs/promises');
    await fs.mkdir(dir, { recursive: true });
    for (const [name, bytes] of Object.entries(folder.files)) await fs.writeFile(`${dir}/${name}`, bytes);
  }
  return folder;
}
