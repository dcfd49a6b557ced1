/**
 * Seeded fuzzing of the safetensors reader: 10^5 mutated headers of a small synthetic file with all three
 * dtypes, an empty and a 0-d tensor, plus mutations of a copy of opt-micro's real header. Mutations work on
 * the header object (offsets, shapes, dtypes, names, metadata), on its JSON text (number literals,
 * inserted/deleted/duplicated characters, BOM, escapes) and on the bytes (broken UTF-8, the length
 * field, truncation). Every outcome must be a CheckpointFormatError, or an accepted file whose tensors
 * are exactly what the header text says (checked with JSON.parse and an independent decoder). Case i
 * is a pure function of SEED and i, so a failure names the one case to replay.
 */

import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { CheckpointFormatError } from '../src/io/errors';
import { parseSafetensors, tensorToF32, writeSafetensors, type ParsedSafetensors } from '../src/io/safetensors';
import { randn, rng } from './helpers/rng';

const SEED = 0x5afe;
const CASES = 100_000; // ~6 s on an idle 2-core machine
const MICRO_CASES = 500; // ~4 ms a case: opt-micro's 6.9 MB of data is decoded whenever a case is accepted
const MICRO = '/work/shared/models/opt-micro/model.safetensors';

type Json = Record<string, unknown>;
type Rand = () => number;

/**
 * A base file laid out for cheap cases: the data sits at a fixed place in `buf` with room before it for
 * the header and after it for appended bytes, so a case writes only its header (opt-micro's data is 6.9 MB).
 */
interface Base {
  header: Json;
  data: Uint8Array;
  buf: Uint8Array;
  at: number;
}

const HEAD_ROOM = 1 << 16;
const TAIL_ROOM = 16;

const enc = new TextEncoder();
const int = (r: Rand, n: number) => Math.floor(r() * n);
const pick = <T>(r: Rand, a: readonly T[]): T => a[int(r, a.length)];

/** Header object and data section of a well-formed file. */
function split(file: Uint8Array): Base {
  const n = Number(new DataView(file.buffer, file.byteOffset).getBigUint64(0, true));
  const data = file.subarray(8 + n);
  const buf = new Uint8Array(HEAD_ROOM + data.length + TAIL_ROOM);
  buf.set(data, HEAD_ROOM);
  return { header: JSON.parse(new TextDecoder().decode(file.subarray(8, 8 + n))), data, buf, at: HEAD_ROOM };
}

function synthetic(): Uint8Array {
  const t = (name: string, dtype: 'F32' | 'F16' | 'BF16', shape: number[], seed: number) => ({
    name, dtype, shape, data: Float32Array.from(randn(shape.reduce((a, b) => a * b, 1), seed)),
  });
  return writeSafetensors([t('w', 'F32', [3, 5], 1), t('h', 'F16', [7], 2), t('b', 'BF16', [2, 2, 2], 3), t('e', 'F32', [0, 4], 4), t('s', 'F16', [], 5)], { format: 'pt' });
}

const DTYPES = ['F16', 'BF16', 'F32', 'F64', 'I64', 'BOOL', 'U8', 'f32', '', 'constructor', '__proto__', 'toString', 7, null];
const NAMES = ['__proto__', 'constructor', '', 'é', '__metadata__', 'w', 'h', 'x.y'];
const ODD = [-1, -0, 0.5, 2 ** 53, 2 ** 64, 1e20, '0', null, true, [], {}];
const LITERALS = ['256.0', '1e2', '-0', '0.0', '1E1', '01', '1.', '.5', '-1', '9007199254740993', '1e400', '0', '1', '8', '16'];
const CHARS = ['{', '}', '[', ']', '"', ',', ':', '0', '9', '.', 'e', '-', '+', ' ', '\t', '\n', '\\', '\\u', '\\ud800', '\\u00e9', '\uFEFF', '\u0000', 'é', '𝄞', 'null', 'true'];

/** Mutate the header object in place (offsets, shapes, dtypes, fields, names, metadata). */
function mutateObject(r: Rand, h: Json, dataLen: number): void {
  const names = Object.keys(h).filter((k) => k !== '__metadata__');
  if (!names.length) return;
  const e = h[pick(r, names)] as Json;
  if (typeof e !== 'object' || e === null || Array.isArray(e)) return;
  // Earlier mutations may have broken these fields; mutate from a stand-in then.
  const offs = Array.isArray(e.data_offsets) && e.data_offsets.length === 2 ? (e.data_offsets as number[]) : [0, 0];
  const shape = Array.isArray(e.shape) ? (e.shape as number[]) : [];
  switch (int(r, 12)) {
    case 0: { // shift
      const k = pick(r, [1, -1, 2, -2, 4, -4, 8, -8, int(r, 64) - 32]);
      e.data_offsets = r() < 0.5 ? [offs[0] + k, offs[1] + k] : [offs[0], offs[1] + k];
      break;
    }
    case 1: // take another tensor's range
      e.data_offsets = structuredClone((h[pick(r, names)] as Json | null)?.data_offsets);
      break;
    case 2: // move past the data
      e.data_offsets = [dataLen + int(r, 3) * 8, dataLen + int(r, 3) * 8 + (offs[1] - offs[0])];
      break;
    case 3:
      e.data_offsets = pick(r, [[int(r, dataLen + 16), int(r, dataLen + 16)], [offs[0]], [...offs, 0], pick(r, ODD), [pick(r, ODD), offs[1]]]);
      break;
    case 4: { // one dimension
      if (!shape.length) e.shape = [int(r, 3)];
      else {
        const s = shape.slice();
        s[int(r, s.length)] = pick(r, [0, 1, s[0] + 1, s[0] - 1, 2 ** 40, ...ODD]) as number;
        e.shape = s;
      }
      break;
    }
    case 5: // reshape: often the same element count (accepted)
      e.shape = pick(r, [shape.slice().reverse(), [...shape, 1], [1, ...shape], shape.slice(1), [shape.reduce((a, b) => a * b, 1)], []]);
      break;
    case 6:
      e.dtype = pick(r, DTYPES);
      break;
    case 7:
      delete e[pick(r, ['dtype', 'shape', 'data_offsets'])];
      break;
    case 8: // unknown field: ignored, as by the reference reader
      e[pick(r, ['extra', 'offsets', 'note'])] = pick(r, [1.5, 'x', null, [1, 2], { a: 1 }]);
      break;
    case 9: { // rename
      const from = pick(r, names);
      const to = pick(r, NAMES);
      const v = h[from];
      delete h[from];
      Object.defineProperty(h, to, { value: v, enumerable: true, configurable: true, writable: true });
      break;
    }
    case 10:
      h.__metadata__ = pick(r, [null, [], { k: 1 }, { k: 'v' }, { k: { a: 'b' } }, JSON.parse('{"__proto__":"x"}'), 'pt', undefined]);
      break;
    default: // swap dtypes of equal item size: accepted, decoded differently
      e.dtype = e.dtype === 'F16' ? 'BF16' : e.dtype === 'BF16' ? 'F16' : e.dtype;
  }
}

/** Mutate the JSON text (literals, characters, prefixes, duplicate keys). */
function mutateText(r: Rand, s: string): string {
  const at = int(r, s.length + 1);
  switch (int(r, 8)) {
    case 0: { // replace a number token
      const nums = [...s.matchAll(/-?\d+/g)];
      if (!nums.length) return s;
      const m = pick(r, nums);
      return s.slice(0, m.index) + pick(r, LITERALS) + s.slice(m.index! + m[0].length);
    }
    case 1:
      return s.slice(0, at) + pick(r, CHARS) + s.slice(at);
    case 2:
      return s.slice(0, at) + s.slice(at + 1 + int(r, 8));
    case 3:
      return s.slice(0, at) + s.slice(at, at + 1 + int(r, 12)) + s.slice(at);
    case 4:
      return s.slice(0, at) + String.fromCharCode(int(r, 0x80)) + s.slice(at + 1);
    case 5:
      return pick(r, ['\uFEFF', ' ', '\n', '']) + s + pick(r, ['', '  ', '\u0000', '}', ' \t']);
    case 6: { // duplicate a key: a whole entry (tensor or metadata), or a field inside one
      const m = pick(r, [...s.matchAll(r() < 0.7 ? /"[^"]*":\{[^{}]*\}/g : /"dtype":"[^"]*"/g)]);
      return m ? s.slice(0, m.index! + m[0].length) + `,${m[0]}` + s.slice(m.index! + m[0].length) : s;
    }
    default: // escapes inside a string
      return s.replace(/"([^"\\]*)"/, `"$1${pick(r, ['\\ud800', '\\udc00x', '\\u00e9', '\\x', '\\/', '\\n', '\\u12'])}"`);
  }
}

/** The file: length field + header bytes + data, then maybe byte-level damage. Only the header region of `base.buf` is written. */
function assemble(r: Rand, text: string, base: Base): Uint8Array {
  let hb = enc.encode(text);
  if (r() < 0.1) { // broken UTF-8 in the header
    const at = int(r, hb.length + 1);
    const bad = pick(r, [[0xff], [0xc3], [0xc0, 0xaf], [0xed, 0xa0, 0x80], [0xef, 0xbb, 0xbf]]);
    hb = Uint8Array.from([...hb.subarray(0, at), ...bad, ...hb.subarray(at)]);
  }
  let n = hb.length;
  if (r() < 0.1) n = pick(r, [n + 1, n - 1, n + 8, n - 8, 0, 2 ** 32 + n, 100_000_001, int(r, 2 ** 20)]);
  const start = base.at - hb.length - 8;
  const end = base.at + base.data.length;
  const dv = new DataView(base.buf.buffer, start);
  dv.setUint32(0, n % 2 ** 32, true);
  dv.setUint32(4, Math.floor(n / 2 ** 32), true);
  base.buf.set(hb, start + 8);
  if (r() < 0.1) return base.buf.subarray(start, start + int(r, end - start));
  if (r() < 0.05) {
    const extra = 1 + int(r, TAIL_ROOM - 1);
    for (let k = end; k < end + extra; k++) base.buf[k] = int(r, 256);
    return base.buf.subarray(start, end + extra);
  }
  return base.buf.subarray(start, end);
}

function makeCase(i: number, base: Base): Uint8Array {
  const r = rng(SEED * 1_000_003 + i);
  const h = structuredClone(base.header);
  const objMuts = int(r, 3);
  for (let k = 0; k < objMuts; k++) mutateObject(r, h, base.data.length);
  let text = JSON.stringify(h);
  const textMuts = r() < 0.5 ? 0 : 1 + int(r, 2);
  for (let k = 0; k < textMuts; k++) text = mutateText(r, text);
  if (r() < 0.5) text += ' '.repeat((8 - (enc.encode(text).length % 8)) % 8); // the writer's padding
  return assemble(r, text, base);
}

// ---- oracle for accepted files: what the header text says, read independently ----

function halfRef(h: number): number {
  const s = h & 0x8000 ? -1 : 1;
  const e = (h >> 10) & 31;
  const m = h & 1023;
  return e === 0 ? s * m * 2 ** -24 : e === 31 ? (m ? NaN : s * Infinity) : s * 2 ** (e - 15) * (1 + m / 1024);
}

function decodeRef(file: Uint8Array, at: number, dtype: string, i: number): number {
  const dv = new DataView(file.buffer, file.byteOffset);
  if (dtype === 'F32') return dv.getFloat32(at + 4 * i, true);
  const u = dv.getUint16(at + 2 * i, true);
  if (dtype === 'F16') return halfRef(u);
  return new Float32Array(new Uint32Array([u << 16]).buffer)[0];
}

const same = (a: number, b: number) => Object.is(a, b) || (Number.isNaN(a) && Number.isNaN(b));
const ITEM: Record<string, number> = { F32: 4, F16: 2, BF16: 2 };

/** Undefined when the accepted file is consistent with its header text; else what is wrong. */
function checkAccepted(file: Uint8Array, st: ParsedSafetensors, sampled: boolean): string | undefined {
  const n = Number(new DataView(file.buffer, file.byteOffset).getBigUint64(0, true));
  if (st.dataOffset !== 8 + n) return `dataOffset ${st.dataOffset} ≠ 8 + ${n}`;
  const text = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true }).decode(file.subarray(8, 8 + n));
  if (text[0] !== '{') return 'accepted a header that does not start with {';
  for (const m of text.matchAll(/"(?:shape|data_offsets)":\s*\[([^\]]*)\]/g)) {
    if (m[1].trim() && !m[1].split(',').every((t) => /^\s*(0|[1-9]\d*)\s*$/.test(t))) return `accepted a non-integer literal in ${m[0]}`;
  }
  const h = JSON.parse(text) as Record<string, { dtype: string; shape: number[]; data_offsets: [number, number] }>;
  const names = Object.keys(h).filter((k) => k !== '__metadata__');
  if (names.length !== st.tensors.size || names.some((k) => !st.tensors.has(k))) return `tensor names ${[...st.tensors.keys()]} ≠ header's ${names}`;
  if (JSON.stringify(st.metadata) !== JSON.stringify(h.__metadata__ ?? {})) return 'metadata differs';
  const dataLen = file.length - st.dataOffset;
  let covered = 0;
  for (const name of names) {
    const want = h[name];
    const got = st.tensors.get(name)!;
    if (got.dtype !== want.dtype || JSON.stringify(got.shape) !== JSON.stringify(want.shape) || got.begin !== want.data_offsets[0] || got.end !== want.data_offsets[1]) {
      return `${name}: parsed ${JSON.stringify(got)} ≠ header ${JSON.stringify(want)}`;
    }
    const count = got.shape.reduce((a, b) => a * b, 1);
    if (got.end - got.begin !== count * ITEM[got.dtype] || got.end > dataLen) return `${name}: byte range inconsistent`;
    covered += got.end - got.begin;
    const out = tensorToF32(file, got, st.dataOffset);
    if (out.length !== count) return `${name}: ${out.length} values, shape says ${count}`;
    const step = sampled ? Math.max(1, Math.floor(count / 97)) : 1;
    for (let i = 0; i < count; i += step) {
      if (!same(out[i], decodeRef(file, st.dataOffset + got.begin, got.dtype, i))) return `${name}[${i}] decodes to ${out[i]}`;
    }
  }
  // Ranges are disjoint (checked by the sum) and cover the data exactly.
  return covered === dataLen ? undefined : `tensors cover ${covered} of ${dataLen} data bytes`;
}

interface Tally {
  accepted: number;
  kinds: Record<string, number>;
  slowestMs: number;
}

function run(base: Base, cases: number, offset: number, sampled: boolean): Tally {
  const t: Tally = { accepted: 0, kinds: {}, slowestMs: 0 };
  for (let i = offset; i < offset + cases; i++) {
    const file = makeCase(i, base);
    const t0 = performance.now();
    let st: ParsedSafetensors | undefined;
    try {
      st = parseSafetensors(file, 'fuzz');
    } catch (e) {
      if (!(e instanceof CheckpointFormatError)) throw new Error(`case ${i}: ${(e as Error)?.name} instead of CheckpointFormatError: ${(e as Error)?.message}`);
      t.kinds[e.kind] = (t.kinds[e.kind] ?? 0) + 1;
    }
    t.slowestMs = Math.max(t.slowestMs, performance.now() - t0);
    if (st) {
      let bad: string | undefined;
      try {
        bad = checkAccepted(file, st, sampled);
      } catch (e) {
        bad = `oracle threw ${(e as Error).message}`;
      }
      if (bad) throw new Error(`case ${i} accepted but ${bad}`);
      t.accepted++;
    }
  }
  return t;
}

describe('safetensors header fuzzing (seeded)', () => {
  it(`${CASES} mutated headers of a synthetic file: CheckpointFormatError or a consistent file`, () => {
    const base = split(synthetic());
    const t = run(base, CASES, 0, false);
    console.log(`synthetic: ${CASES} cases, ${t.accepted} accepted, rejected by kind ${JSON.stringify(t.kinds)}, slowest parse ${t.slowestMs.toFixed(1)} ms`);
    expect(base.buf.subarray(base.at, base.at + base.data.length)).toEqual(base.data); // never written by the reader
    // The fuzzer reaches both outcomes and every header-level check.
    expect(t.accepted).toBeGreaterThan(CASES / 50);
    for (const k of ['header', 'json', 'dtype', 'offsets', 'overlap', 'truncated', 'shape', 'extra']) expect(t.kinds[k] ?? 0).toBeGreaterThan(20);
    expect(t.slowestMs).toBeLessThan(1000);
  });

  it(`${MICRO_CASES} mutated copies of opt-micro's header`, () => {
    const base = split(new Uint8Array(readFileSync(MICRO)));
    const t = run(base, MICRO_CASES, CASES, true);
    expect(Buffer.compare(base.buf.subarray(base.at, base.at + base.data.length), base.data)).toBe(0);
    console.log(`opt-micro: ${MICRO_CASES} cases, ${t.accepted} accepted, rejected by kind ${JSON.stringify(t.kinds)}, slowest parse ${t.slowestMs.toFixed(1)} ms`);
    expect(t.accepted).toBeGreaterThan(0);
    expect(t.slowestMs).toBeLessThan(1000);
  });
});
