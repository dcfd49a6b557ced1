/**
 * Load a Hugging Face checkpoint folder of a supported family (OPT, Llama/Mistral/Qwen2) into f32 tensors
 * keyed by canonical name. Steps: config.json → family (arch/registry) → expected names/shapes; model.safetensors (preferred, as transformers does) or
 * model.safetensors.index.json + shards; every header validated; names normalised ("decoder.x" →
 * "model.decoder.x"); missing / extra / wrong-shape tensors rejected; values upcast to f32 into new arrays;
 * non-finite weights rejected unless allowNonFinite. For sharded checkpoints the index is checked against
 * the config before any shard is downloaded.
 *
 * Extras policy: tolerated unexpected tensors are "lm_head.weight" when tie_word_embeddings is true
 * (it duplicates embed_tokens by definition; its shape is still checked, its values are dropped) and the
 * family's derived buffers (FamilySpec.ignoredTensor: Llama's saved rotary_emb.inv_freq, recomputed from
 * the config). A compact folder (config.json with compact_layers, src/compact) needs nothing extra: the
 * family's tensors(config) already gives each layer's own shapes. Any other unknown tensor is CheckpointFormatError('extra'): silently ignoring weights
 * would hide a config/checkpoint mismatch.
 */

import { familySpec, parseModelConfig, type ModelConfig } from './config';
import type { FamilySpec } from '../arch/types';
import { CheckpointFormatError, NonFiniteWeightsError } from './errors';
import { parseSafetensors, tensorToF32 } from './safetensors';
import { openSource, type Folder, type ModelSource } from './sources';

export type { ModelSource } from './sources';

export interface LoadedCheckpoint {
  config: ModelConfig;
  tensors: Map<string, Float32Array>;
  shapes: Map<string, number[]>;
  /** Tensor dtype as stored ("F16", "BF16", "F32", or e.g. "F16+F32" when mixed). */
  sourceDtype: string;
  tokenizerJson?: unknown;
  tokenizerConfig?: unknown;
  /** Files read, in order. */
  files: string[];
}

export interface LoadOptions {
  onProgress?: (p: { file: string; loaded: number; total?: number }) => void;
  signal?: AbortSignal;
  fetch?: typeof fetch;
  revision?: string;
  /** Skip assertFiniteWeights (default false: NaN/Inf weights throw NonFiniteWeightsError). */
  allowNonFinite?: boolean;
}

const SINGLE = 'model.safetensors';
const INDEX = 'model.safetensors.index.json';

function parseJson(bytes: Uint8Array, file: string, kind: 'json' | 'index'): unknown {
  try {
    return JSON.parse(new TextDecoder('utf-8', { fatal: true }).decode(bytes));
  } catch (e) {
    throw new CheckpointFormatError(kind, `${file} is not valid JSON (${(e as Error).message})`);
  }
}

/** Shard list from an index, checked for shape and safe names, and its names checked against the config. */
function parseIndex(json: unknown, expected: Map<string, number[]>, tied: boolean, spec: FamilySpec): Map<string, string> {
  const wm = (json as { weight_map?: unknown } | null)?.weight_map;
  if (typeof wm !== 'object' || wm === null || Array.isArray(wm)) throw new CheckpointFormatError('index', `${INDEX} has no weight_map object`);
  const map = new Map<string, string>();
  for (const [name, file] of Object.entries(wm)) {
    if (typeof file !== 'string' || !file.endsWith('.safetensors') || file.startsWith('/') || file.split(/[\\/]/).includes('..')) {
      throw new CheckpointFormatError('index', `${INDEX}: ${name} maps to ${JSON.stringify(file)}, not a .safetensors file in the folder`);
    }
    map.set(name, file);
  }
  checkNames([...map.keys()], expected, tied, INDEX, spec);
  return map;
}

/** Canonical names must cover `expected` exactly (plus a tolerated tied lm_head). */
function checkNames(names: string[], expected: Map<string, number[]>, tied: boolean, where: string, spec: FamilySpec): void {
  const seen = new Set<string>();
  for (const n of names) {
    const c = spec.canonicalName(n);
    if ((tied && c === 'lm_head.weight') || spec.ignoredTensor?.(c)) continue;
    if (!expected.has(c)) throw new CheckpointFormatError('extra', `${where}: tensor ${n} is not part of this ${spec.family === 'opt' ? 'OPT' : 'Llama-family'} config`);
    if (seen.has(c)) throw new CheckpointFormatError('extra', `${where}: tensor ${c} appears twice (as ${n})`);
    seen.add(c);
  }
  const missing = [...expected.keys()].filter((n) => !seen.has(n));
  if (missing.length) {
    const more = missing.length > 3 ? ` and ${missing.length - 3} more` : '';
    throw new CheckpointFormatError('missing', `${where}: missing tensor${missing.length > 1 ? 's' : ''} ${missing.slice(0, 3).join(', ')}${more}`);
  }
}

const sameShape = (a: number[], b: number[]) => a.length === b.length && a.every((d, i) => d === b[i]);

/** Throw NonFiniteWeightsError for the first NaN/±Inf weight (tensor name and flat index). */
export function assertFiniteWeights(ckpt: Pick<LoadedCheckpoint, 'tensors'>): void {
  for (const [name, t] of ckpt.tensors) {
    for (let i = 0; i < t.length; i++) {
      const v = t[i];
      if (v - v !== 0) throw new NonFiniteWeightsError(name, i, v); // NaN and ±Inf give NaN
    }
  }
}

export async function loadCheckpoint(source: ModelSource, opts: LoadOptions = {}): Promise<LoadedCheckpoint> {
  const { signal } = opts;
  const folder = await openSource(source, { fetch: opts.fetch, revision: opts.revision, signal });
  const files: string[] = [];
  const read = async (name: string): Promise<Uint8Array | undefined> => {
    signal?.throwIfAborted();
    const b = await folder.read(name, (loaded, total) => opts.onProgress?.({ file: name, loaded, total }), signal);
    if (b) files.push(name);
    return b;
  };
  const need = async (name: string, kind: 'missing' | 'index'): Promise<Uint8Array> => {
    const b = await read(name);
    if (!b) throw new CheckpointFormatError(kind, `${folder.label}: ${name} not found`);
    return b;
  };

  const config = parseModelConfig(parseJson(await need('config.json', 'missing'), 'config.json', 'json'));
  const spec = familySpec(config);
  const expected = spec.tensors(config);
  const tied = config.tieWordEmbeddings;
  const tensors = new Map<string, Float32Array>();
  const shapes = new Map<string, number[]>();
  const dtypes = new Set<string>();

  const ingest = (bytes: Uint8Array, file: string, only?: Set<string>) => {
    const st = parseSafetensors(bytes, file);
    if (only) {
      for (const n of only) if (!st.tensors.has(n)) throw new CheckpointFormatError('index', `${INDEX} places ${n} in ${file}, which lacks it`);
      for (const n of st.tensors.keys()) if (!only.has(n)) throw new CheckpointFormatError('index', `${file} holds ${n}, which ${INDEX} places elsewhere or omits`);
    } else checkNames([...st.tensors.keys()], expected, tied, file, spec);
    for (const info of st.tensors.values()) {
      const c = spec.canonicalName(info.name);
      if (spec.ignoredTensor?.(c)) continue;
      const want = c === 'lm_head.weight' && tied ? expected.get(spec.embedName)! : expected.get(c)!;
      if (!sameShape(info.shape, want)) {
        throw new CheckpointFormatError('shape', `${file}: ${info.name} has shape [${info.shape}], config.json implies [${want}]`);
      }
      if (c === 'lm_head.weight' && tied) continue;
      dtypes.add(info.dtype);
      tensors.set(c, tensorToF32(bytes, info, st.dataOffset));
      shapes.set(c, want.slice());
    }
  };

  const single = await read(SINGLE);
  if (single) ingest(single, SINGLE);
  else {
    const idx = await read(INDEX);
    if (!idx) throw new CheckpointFormatError('missing', `${folder.label}: neither ${SINGLE} nor ${INDEX} found (pytorch_model.bin is not supported)`);
    const map = parseIndex(parseJson(idx, INDEX, 'index'), expected, tied, spec);
    const byShard = new Map<string, Set<string>>();
    for (const [n, f] of map) byShard.set(f, (byShard.get(f) ?? new Set()).add(n));
    for (const shard of [...byShard.keys()].sort()) ingest(await need(shard, 'index'), shard, byShard.get(shard));
  }

  // Canonical order (embeddings, layers in order, final norm, head) regardless of file order.
  const order = [...expected.keys()];
  const sortedTensors = new Map(order.map((k) => [k, tensors.get(k)!]));
  const sortedShapes = new Map(order.map((k) => [k, shapes.get(k)!]));

  const tj = await read('tokenizer.json');
  const tc = await read('tokenizer_config.json');
  const ckpt: LoadedCheckpoint = {
    config,
    tensors: sortedTensors,
    shapes: sortedShapes,
    sourceDtype: [...dtypes].sort().join('+'),
    tokenizerJson: tj && parseJson(tj, 'tokenizer.json', 'json'),
    tokenizerConfig: tc && parseJson(tc, 'tokenizer_config.json', 'json'),
    files,
  };
  if (!opts.allowNonFinite) assertFiniteWeights(ckpt);
  return ckpt;
}
