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
 * exact zeros. Values that overflow the target dtype (|x| ≥ 65520 for float16, which rounds to Inf) and
 * non-finite values are rejected: a folder our own loader would refuse is never written.
 * With `compact: true` the dead units of a structured result are removed first (src/compact): the
 * safetensors hold the real smaller shapes; when every layer ends with the same widths config.json is a
 * stock one (ffn_dim / intermediate_size, head counts) that transformers loads as the usual class,
 * otherwise it gains `compact_layers` (per-layer widths; the global ones stay as the maxima), which
 * this library's loadModel and bench/compact_loader.py read (stock transformers does not).
 * `compact: 'uniform'` keeps dead units back where a layer has fewer than the widest one (and every
 * OPT head), so the config is always stock: the export of a uniform prune (PruneOptions.uniform).
 * stageFolder: a folder written beside its target and moved into place at the end, so an interrupted
 * export leaves the target as it was.
 */

import { compactModel, type CompactModel } from '../compact/apply';
import { planCompaction } from '../compact/plan';
import { layerDims, type ModelConfig } from '../arch/types';
import { expectedTensors, parseModelConfig } from './config';
import { decodeToF32, encodeFromF32, type FloatDType } from './dtype';
import { CheckpointFormatError, NonFiniteWeightsError } from './errors';
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
  /** Remove dead FFN neurons and attention heads physically (compact export, src/compact); 'uniform': equal widths, a stock config. */
  compact?: boolean | 'uniform';
}

/** What a compact export removed. */
export interface CompactionSummary {
  /** Parameters of every tensor before and after. */
  params: { before: number; after: number };
  /** Tensor data bytes of model.safetensors (header excluded) without and with compaction, at the export dtype. */
  bytes: { before: number; after: number };
  /** Per decoder layer: FFN width, query heads, kv heads before and after compaction. */
  layers: Array<{ ffnDim: number; numHeads: number; numKvHeads: number; before: { ffnDim: number; numHeads: number; numKvHeads: number } }>;
  /** config.json is a stock one (no compact_layers). */
  stock: boolean;
}

export interface ExportedFolder {
  /** file name → bytes, as written (or to be written). */
  files: Record<string, Uint8Array>;
  dtype: ExportDType;
  /** With `compact`: what was removed. */
  compaction?: CompactionSummary;
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

/** What compactModel removed from `cfg`'s model, with the data bytes at `dtype`. */
export function compactionSummary(cfg: ModelConfig, c: CompactModel, dtype: ExportDType): CompactionSummary {
  const item = dtype === 'float32' ? 4 : 2;
  return {
    params: c.params,
    bytes: { before: c.params.before * item, after: c.params.after * item },
    layers: c.plan.layers.map((l, i) => ({ ...l.dims, before: { ...layerDims(cfg, i) } })),
    stock: c.config.layers === undefined,
  };
}

/** Build the folder's files in memory. Throws CheckpointFormatError when `weights` do not fit the config. */
export function buildHfFolder(configRaw: Record<string, unknown>, weights: Map<string, Float32Array>, opts: ExportOptions = {}): ExportedFolder {
  if (opts.compact) {
    const cfg = parseModelConfig(configRaw);
    const c = compactModel(cfg, weights, planCompaction(cfg, weights, { uniform: opts.compact === 'uniform' }));
    const folder = buildHfFolder(c.raw, c.tensors, { ...opts, compact: false });
    return { ...folder, compaction: compactionSummary(cfg, c, folder.dtype) };
  }
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
  for (const t of tensors) {
    const bad = t.data.findIndex((v) => !Number.isFinite(v));
    if (bad >= 0) throw new NonFiniteWeightsError(t.name, bad, t.data[bad]);
  }
  checkExportRange(tensors.map((t) => [t.name, t.data] as const), dtype);
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

/** Largest finite value of each export dtype (for messages). */
export const DTYPE_MAX: Record<ExportDType, number> = { float16: 65504, bfloat16: 3.3895313892515355e38, float32: 3.4028234663852886e38 };

/** The first tensor holding a finite value that would round to ±Inf in `dtype`. */
export interface Overflow {
  tensor: string;
  /** Flat index and value of its first such entry. */
  index: number;
  value: number;
  /** Largest finite |x| in the tensor. */
  maxAbs: number;
}

/** The first tensor of `weights` (in order) that `dtype` cannot hold, or undefined. */
export function findOverflow(weights: Iterable<readonly [string, Float32Array]>, dtype: ExportDType): Overflow | undefined {
  if (dtype === 'float32') return undefined; // every finite f32 is a float32
  const lim = OVERFLOW[dtype];
  for (const [tensor, data] of weights) {
    let index = -1, maxAbs = 0;
    for (let i = 0; i < data.length; i++) {
      const a = Math.abs(data[i]);
      if (a === Infinity) continue; // not finite: the finiteness checks own that case
      if (a > maxAbs) maxAbs = a;
      if (a >= lim && index < 0) index = i;
    }
    if (index >= 0) return { tensor, index, value: data[index], maxAbs };
  }
  return undefined;
}

/** CheckpointFormatError naming the tensor, its first overflowing entry and its largest magnitude. */
export function checkExportRange(weights: Iterable<readonly [string, Float32Array]>, dtype: ExportDType): void {
  const o = findOverflow(weights, dtype);
  if (!o) return;
  throw new CheckpointFormatError('dtype', `export: ${o.tensor}[${o.index}] = ${o.value} overflows ${dtype} ` +
    `(max |x| in ${o.tensor} is ${o.maxAbs}; ${dtype} holds at most ${DTYPE_MAX[dtype]}); export as float32`);
}

// Held in a variable so browser bundles leave node:fs alone (only reached when writing to a path).
const FS = 'node:fs/promises';

/**
 * Build the folder (buildHfFolder) and, when `dir` is a path (Node), write its files there (the folder is
 * created if needed; existing files of the same names are replaced; not atomic: write into a
 * stageFolder's `dir` for that). `dir` null: in memory only.
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

const PATH = 'node:path';

/** A folder being written beside its target; nothing reaches the target before commit(). */
export interface StagedFolder {
  /** The folder to write into: a hidden sibling of the target (same file system, so commit renames), or a hidden folder inside it. */
  readonly dir: string;
  readonly target: string;
  /**
   * Move the staged files into the target: one rename of the folder when the target is absent or an
   * empty folder; otherwise the target's files that `replace` names are removed, then every staged
   * file is renamed in (each rename atomic; `last` after the others) and the staged folder removed.
   */
  commit(): Promise<void>;
  /** Remove the staged folder and its files (nothing once committed). */
  discard(): Promise<void>;
}

/**
 * Create the staging folder of `target` (its parent folders too). `replace`: names in an existing,
 * non-empty target to remove at commit (files the new folder supersedes); `last`: the staged file to
 * move in last (e.g. a report that marks the folder complete). `within`: stage in a hidden folder inside
 * an existing target instead (for a target whose parent is not writable); commit then moves file by file.
 */
export async function stageFolder(
  target: string, opts: { replace?: (name: string) => boolean; last?: string; within?: boolean } = {},
): Promise<StagedFolder> {
  const fs = (await import(/* @vite-ignore */ FS)) as typeof import('node:fs/promises');
  const path = (await import(/* @vite-ignore */ PATH)) as typeof import('node:path');
  // A symlinked target is staged beside the folder it points to (a rename cannot cross file systems).
  const abs = await fs.realpath(path.resolve(target)).catch(() => path.resolve(target));
  const parent = path.dirname(abs);
  await fs.mkdir(parent, { recursive: true });
  // Short, recognisable and unique: the target's name (cut to stay within NAME_MAX), the pid, a random tag.
  const tag = `${typeof process !== 'undefined' ? process.pid : 0}-${Math.random().toString(36).slice(2, 8)}`;
  const dir = opts.within ? path.join(abs, `.partial-${tag}`) : path.join(parent, `.${path.basename(abs).slice(0, 100)}.partial-${tag}`);
  await fs.mkdir(dir);
  let done = false;
  const empty = async () => (await fs.readdir(abs).catch(() => undefined))?.length === 0;
  return {
    dir,
    target: abs,
    async commit() {
      if (done) return;
      const st = await fs.lstat(abs).catch(() => undefined);
      if (!opts.within && (!st || (st.isDirectory() && (await empty())))) {
        try {
          if (st) await fs.chmod(dir, st.mode & 0o7777); // the replaced folder's permissions
          await fs.rename(dir, abs); // POSIX rename replaces an empty folder
          done = true;
          return;
        } catch (e) {
          if (st === undefined) throw e; // fall through: a platform that will not rename over a folder
        }
      }
      const names = await fs.readdir(dir);
      for (const name of await fs.readdir(abs)) if (opts.replace?.(name)) await fs.rm(path.join(abs, name), { force: true });
      const order = [...names.filter((n) => n !== opts.last).sort(), ...names.filter((n) => n === opts.last)];
      for (const name of order) await fs.rename(path.join(dir, name), path.join(abs, name));
      await fs.rmdir(dir);
      done = true;
    },
    async discard() {
      if (!done) await fs.rm(dir, { recursive: true, force: true });
      done = true;
    },
  };
}
