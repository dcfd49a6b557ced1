/**
 * safetensors reader and writer (format: 8-byte little-endian header length N, N bytes of UTF-8 JSON
 * `{name: {dtype, shape, data_offsets: [begin, end]}, "__metadata__": {str: str}}`, then the data; offsets
 * are relative to the first data byte). The reader validates everything before any value is read, and
 * rejects what the reference reader rejects (a header not starting with `{`, e.g. after a byte order
 * mark; integers written as `256.0` or `1e3`; see header-json.ts). The writer produces the same layout
 * as the reference implementation (metadata first, tensors ordered by dtype alignment then name,
 * compact JSON, header padded with spaces to a multiple of 8 bytes).
 */

import { decodeToF32, encodeFromF32, ITEMSIZE, type FloatDType } from './dtype';
import { CheckpointFormatError } from './errors';
import { JsonFloat, parseHeaderJson } from './header-json';

export interface TensorInfo {
  name: string;
  dtype: FloatDType;
  shape: number[];
  /** Byte range relative to the start of the data section (`dataOffset`). */
  begin: number;
  end: number;
}

export interface ParsedSafetensors {
  tensors: Map<string, TensorInfo>;
  metadata: Record<string, string>;
  /** Absolute byte offset of the data section: 8 + header length. */
  dataOffset: number;
}

const MAX_HEADER = 100_000_000; // the reference implementation refuses larger headers too
const KNOWN_DTYPES = new Set(['BOOL', 'U8', 'I8', 'U16', 'I16', 'U32', 'I32', 'U64', 'I64', 'F64', 'F8_E4M3', 'F8_E5M2']);

function isUint(v: unknown): v is number {
  return typeof v === 'number' && Number.isSafeInteger(v) && v >= 0;
}

const isObject = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v) && !(v instanceof JsonFloat);

/** A header value as written (JsonFloat keeps its literal text: `256.0`, not `256`). */
function show(v: unknown): string {
  if (Array.isArray(v)) return `[${v.map(show).join(', ')}]`;
  return v instanceof JsonFloat ? v.text : JSON.stringify(v) ?? String(v);
}

/** Why `v` is not a list of non-negative integers, e.g. "entry 256.0 is not an integer literal" (undefined: it is one). */
function notUintList(v: unknown): string | undefined {
  if (!Array.isArray(v)) return 'not a list';
  const f = v.find((x) => x instanceof JsonFloat);
  if (f) return `entry ${show(f)} is not an integer literal`;
  return v.every(isUint) ? undefined : 'not a list of non-negative integers';
}

export function shapeSize(shape: readonly number[]): number {
  let n = 1;
  for (const d of shape) n *= d;
  return n;
}

/** Parse and fully validate a safetensors file held in memory. `bytes` is only read. */
export function parseSafetensors(bytes: Uint8Array, file = 'safetensors file'): ParsedSafetensors {
  if (bytes.length < 8) throw new CheckpointFormatError('truncated', `${file}: ${bytes.length} bytes, shorter than the 8-byte header length`);
  const dv = new DataView(bytes.buffer, bytes.byteOffset, 8);
  const n = dv.getUint32(0, true) + dv.getUint32(4, true) * 2 ** 32;
  if (n === 0 || n > MAX_HEADER) throw new CheckpointFormatError('header', `${file}: header length ${n} is not in 1..${MAX_HEADER}`);
  if (bytes.length === 8) throw new CheckpointFormatError('truncated', `${file}: the file ends right after the header length (${n} header bytes missing)`);
  if (8 + n > bytes.length) {
    throw new CheckpointFormatError('header', `${file}: header length ${n} runs past the end of the ${bytes.length}-byte file`);
  }
  let text: string;
  try {
    // ignoreBOM keeps a byte order mark in the text, so it is rejected below rather than silently dropped.
    text = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true }).decode(bytes.subarray(8, 8 + n));
  } catch (e) {
    throw new CheckpointFormatError('json', `${file}: header is not valid UTF-8 (${(e as Error).message})`);
  }
  if (text.startsWith('\uFEFF')) throw new CheckpointFormatError('json', `${file}: header starts with a UTF-8 byte order mark (EF BB BF); it must start with '{'`);
  if (!text.startsWith('{')) throw new CheckpointFormatError('json', `${file}: header starts with ${JSON.stringify(text.slice(0, 1))}, not '{'`);
  const header = parseHeaderJson(text, file);
  if (!isObject(header)) throw new CheckpointFormatError('json', `${file}: header is not a JSON object`);
  const dataOffset = 8 + n;
  const dataLen = bytes.length - dataOffset;
  const metadata: Record<string, string> = Object.create(null); // a key "__proto__" stays a key
  const tensors = new Map<string, TensorInfo>();
  for (const [name, entry] of Object.entries(header)) {
    if (name === '__metadata__') {
      if (!isObject(entry)) {
        throw new CheckpointFormatError('header', `${file}: __metadata__ is not an object`);
      }
      for (const [k, v] of Object.entries(entry)) {
        if (typeof v !== 'string') throw new CheckpointFormatError('header', `${file}: __metadata__.${k} is not a string`);
        metadata[k] = v;
      }
      continue;
    }
    tensors.set(name, parseEntry(file, name, entry));
  }
  checkLayout(file, [...tensors.values()], dataLen);
  return { tensors, metadata, dataOffset };
}

function parseEntry(file: string, name: string, entry: unknown): TensorInfo {
  if (!isObject(entry)) throw new CheckpointFormatError('header', `${file}: entry ${name} is not an object`);
  const { dtype, shape, data_offsets: offs } = entry;
  if (typeof dtype !== 'string') throw new CheckpointFormatError('header', `${file}: ${name} has no dtype`);
  if (!Object.hasOwn(ITEMSIZE, dtype)) {
    const what = KNOWN_DTYPES.has(dtype) ? 'is not supported (F16, BF16, F32 only)' : 'is not a safetensors dtype';
    throw new CheckpointFormatError('dtype', `${file}: ${name} has dtype ${dtype}, which ${what}`);
  }
  const badShape = notUintList(shape);
  if (badShape) throw new CheckpointFormatError('header', `${file}: ${name} has shape ${show(shape)}: ${badShape}`);
  const badOffs = notUintList(offs);
  if (badOffs || (offs as number[]).length !== 2 || (offs as number[])[0] > (offs as number[])[1]) {
    throw new CheckpointFormatError('offsets', `${file}: ${name} has data_offsets ${show(offs)}, not [begin, end] with 0 ≤ begin ≤ end${badOffs ? ` (${badOffs})` : ''}`);
  }
  const [begin, end] = offs as number[];
  const info: TensorInfo = { name, dtype: dtype as FloatDType, shape: shape as number[], begin, end };
  const want = shapeSize(info.shape) * ITEMSIZE[info.dtype];
  if (info.end - info.begin !== want) {
    throw new CheckpointFormatError(
      'shape',
      `${file}: ${name} spans ${info.end - info.begin} bytes but shape [${info.shape}] of ${dtype} needs ${want}`,
    );
  }
  return info;
}

/**
 * Offsets must tile [0, dataLen) exactly: sorted, no overlap, no gap, nothing past the end, nothing left
 * over. A gap is reported last: a tensor moved out of place leaves a gap before its neighbour, and the
 * tensor to blame is the one that now overlaps another or lies past the data, not that neighbour.
 */
function checkLayout(file: string, infos: TensorInfo[], dataLen: number): void {
  const sorted = infos.slice().sort((a, b) => a.begin - b.begin || a.end - b.end);
  let pos = 0;
  let prev = '';
  let gap: { from: number; next: TensorInfo } | undefined;
  for (const t of sorted) {
    if (t.begin < pos) throw new CheckpointFormatError('overlap', `${file}: ${t.name} [${t.begin}, ${t.end}) overlaps ${prev} (ends at ${pos})`);
    if (t.begin > pos) gap ??= { from: pos, next: t };
    if (t.end > pos || t.begin === t.end) prev = t.name;
    pos = Math.max(pos, t.end);
  }
  if (gap) {
    const out = sorted.find((t) => t.end > dataLen);
    if (out) throw new CheckpointFormatError('offsets', `${file}: ${out.name} [${out.begin}, ${out.end}) lies past the end of the ${dataLen}-byte data section`);
    throw new CheckpointFormatError('offsets', `${file}: bytes [${gap.from}, ${gap.next.begin}) belong to no tensor (the next one, ${gap.next.name}, starts at ${gap.next.begin})`);
  }
  if (pos > dataLen) {
    throw new CheckpointFormatError('truncated', `${file}: header describes ${pos} data bytes but the file holds ${dataLen} (truncated download?)`);
  }
  if (pos < dataLen) throw new CheckpointFormatError('offsets', `${file}: ${dataLen - pos} trailing data bytes belong to no tensor`);
}

/** The tensor's values as a new Float32Array (never aliases `bytes`, which is only read). */
export function tensorToF32(bytes: Uint8Array, info: TensorInfo, dataOffset: number): Float32Array {
  const n = shapeSize(info.shape);
  if (dataOffset + info.end > bytes.length || info.end - info.begin !== n * ITEMSIZE[info.dtype]) {
    throw new CheckpointFormatError('offsets', `${info.name}: byte range does not fit the given buffer`);
  }
  return decodeToF32(bytes, dataOffset + info.begin, n, info.dtype);
}

export interface TensorToWrite {
  name: string;
  dtype: FloatDType;
  shape: number[];
  data: Float32Array;
}

const WRITE_ORDER: Record<FloatDType, number> = { F32: 0, BF16: 1, F16: 2 }; // larger alignment first, like the reference

/** Serialize tensors (f32 data converted to each tensor's dtype, round to nearest even) into a new safetensors file. */
export function writeSafetensors(tensors: TensorToWrite[], metadata?: Record<string, string>): Uint8Array {
  const seen = new Set<string>();
  for (const t of tensors) {
    if (!t.name || t.name === '__metadata__' || seen.has(t.name)) {
      throw new CheckpointFormatError('extra', `cannot write tensor name ${JSON.stringify(t.name)} (empty, reserved or duplicate)`);
    }
    seen.add(t.name);
    if (!(t.dtype in ITEMSIZE)) throw new CheckpointFormatError('dtype', `cannot write ${t.name} as ${t.dtype} (F16, BF16, F32 only)`);
    if (!t.shape.every(isUint) || shapeSize(t.shape) !== t.data.length) {
      throw new CheckpointFormatError('shape', `${t.name}: shape [${t.shape}] does not hold ${t.data.length} values`);
    }
  }
  const order = tensors.slice().sort((a, b) => WRITE_ORDER[a.dtype] - WRITE_ORDER[b.dtype] || (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
  const header: Record<string, unknown> = {};
  if (metadata && Object.keys(metadata).length) header.__metadata__ = metadata;
  let pos = 0;
  for (const t of order) {
    const nb = t.data.length * ITEMSIZE[t.dtype];
    header[t.name] = { dtype: t.dtype, shape: t.shape, data_offsets: [pos, pos + nb] };
    pos += nb;
  }
  let json = new TextEncoder().encode(JSON.stringify(header));
  const padded = Math.ceil(json.length / 8) * 8;
  if (padded !== json.length) {
    const p = new Uint8Array(padded).fill(0x20);
    p.set(json);
    json = p;
  }
  const out = new Uint8Array(8 + padded + pos);
  const dv = new DataView(out.buffer);
  dv.setUint32(0, padded % 2 ** 32, true);
  dv.setUint32(4, Math.floor(padded / 2 ** 32), true);
  out.set(json, 8);
  let off = 8 + padded;
  for (const t of order) {
    const enc = encodeFromF32(t.data, t.dtype);
    out.set(enc, off);
    off += enc.length;
  }
  return out;
}
