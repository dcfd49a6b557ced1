import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { CheckpointFormatError } from '../src/io/errors';
import { parseSafetensors, tensorToF32, writeSafetensors, type TensorToWrite } from '../src/io/safetensors';
import { randn } from './helpers/rng';

const MICRO = '/work/shared/models/opt-micro/model.safetensors';

/** Bytes of a safetensors file with an arbitrary (possibly invalid) header object. */
function rawFile(header: unknown, data: Uint8Array, headerText?: string): Uint8Array {
  const json = new TextEncoder().encode(headerText ?? JSON.stringify(header));
  const out = new Uint8Array(8 + json.length + data.length);
  new DataView(out.buffer).setUint32(0, json.length, true);
  out.set(json, 8);
  out.set(data, 8 + json.length);
  return out;
}

function expectFormatError(fn: () => unknown, kind: CheckpointFormatError['kind']): void {
  try {
    fn();
  } catch (e) {
    expect(e).toBeInstanceOf(CheckpointFormatError);
    expect((e as CheckpointFormatError).kind).toBe(kind);
    expect((e as Error).name).toBe('CheckpointFormatError');
    return;
  }
  throw new Error(`expected CheckpointFormatError(${kind})`);
}

/** Float64 reference of round-to-nearest-even into a float format with `mant` fraction bits, min normal exponent `emin`, overflow at `max`. */
function roundRef(x: number, mant: number, emin: number, overflow: number): number {
  if (!Number.isFinite(x) || x === 0) return x;
  const bits = new Uint32Array(new Float32Array([x]).buffer)[0];
  const e = Math.max(((bits >>> 23) & 0xff) - 127, emin); // exact exponent of the f32 value
  const step = 2 ** (e - mant);
  const q = x / step;
  let r = Math.floor(q);
  if (q - r > 0.5 || (q - r === 0.5 && r % 2 !== 0)) r++;
  const v = r === 0 ? (x < 0 ? -0 : 0) : r * step; // underflow keeps the sign
  return Math.abs(v) >= overflow ? Math.sign(v) * Infinity : v;
}

const f16Ref = (x: number) => roundRef(x, 10, -14, 65520); // ≥ 65520 = 65504 + half an ulp rounds to Inf
const bf16Ref = (x: number) => roundRef(x, 7, -126, 2 ** 128 - 2 ** 119); // max 0x7f7f…, half ulp above it rounds to Inf

function testValues(): Float32Array {
  const specials = [0, -0, 1, -1, 65504, 65519.99, 65520, -70000, 2 ** -24, 2 ** -25, 3 * 2 ** -26, 2 ** -14, 1e-8, 1e-30, 1.40129846e-45, 3.4e38, 1 + 2 ** -11, 1 + 3 * 2 ** -11, 1 + 2 ** -8, 1 + 3 * 2 ** -8, Infinity, -Infinity];
  const r = randn(4000, 11);
  const scaled = Array.from(r, (v, i) => v * 10 ** ((i % 13) - 8));
  return Float32Array.from([...specials, ...scaled]);
}

describe('safetensors writer and reader', () => {
  it.each([
    ['F32', (x: number) => x],
    ['F16', f16Ref],
    ['BF16', bf16Ref],
  ] as const)('round-trips %s with round-to-nearest-even against a float64 reference', (dtype, ref) => {
    const data = testValues();
    const copy = data.slice();
    const file = writeSafetensors([{ name: 'x', dtype, shape: [data.length], data }], { format: 'pt' });
    expect(data).toEqual(copy); // the writer does not touch its input
    const st = parseSafetensors(file);
    expect(st.metadata).toEqual({ format: 'pt' });
    expect(st.dataOffset % 8).toBe(0);
    const out = tensorToF32(file, st.tensors.get('x')!, st.dataOffset);
    for (let i = 0; i < data.length; i++) expect(out[i]).toBe(Math.fround(ref(data[i])));
    // A second round trip is exact (already representable).
    const again = parseSafetensors(writeSafetensors([{ name: 'x', dtype, shape: [out.length], data: out }]));
    expect(again.tensors.get('x')!.end).toBe(st.tensors.get('x')!.end);
  });

  it('keeps NaN as NaN in every dtype', () => {
    for (const dtype of ['F32', 'F16', 'BF16'] as const) {
      const file = writeSafetensors([{ name: 'n', dtype, shape: [2], data: Float32Array.from([NaN, -NaN]) }]);
      const st = parseSafetensors(file);
      expect(Array.from(tensorToF32(file, st.tensors.get('n')!, st.dataOffset)).every(Number.isNaN)).toBe(true);
    }
  });

  it('re-writes the opt-micro fixture byte for byte (layout, order and padding as the reference writer)', () => {
    const bytes = new Uint8Array(readFileSync(MICRO));
    const st = parseSafetensors(bytes);
    const tensors: TensorToWrite[] = [...st.tensors.values()].map((t) => ({ name: t.name, dtype: t.dtype, shape: t.shape, data: tensorToF32(bytes, t, st.dataOffset) }));
    const out = writeSafetensors(tensors.reverse(), st.metadata);
    expect(out.length).toBe(bytes.length);
    expect(Buffer.compare(Buffer.from(out), Buffer.from(bytes))).toBe(0);
  });

  it('orders tensors deterministically (F32 before BF16 before F16, then by name) and mixes dtypes', () => {
    const mk = (name: string, dtype: 'F16' | 'BF16' | 'F32', n: number): TensorToWrite => ({ name, dtype, shape: [n], data: Float32Array.from(randn(n, n)) });
    const list = [mk('b', 'F16', 3), mk('a', 'F16', 5), mk('c', 'F32', 1), mk('d', 'BF16', 7), mk('e', 'F32', 0)];
    const a = writeSafetensors(list);
    const b = writeSafetensors(list.slice().reverse());
    expect(Buffer.compare(Buffer.from(a), Buffer.from(b))).toBe(0);
    const st = parseSafetensors(a);
    const byBegin = [...st.tensors.values()].sort((x, y) => x.begin - y.begin || x.end - y.end).map((t) => t.name);
    expect(byBegin).toEqual(['c', 'e', 'd', 'a', 'b']);
  });

  it('never aliases the input and decodes unaligned data', () => {
    const data = Float32Array.from(randn(33, 5));
    for (const dtype of ['F32', 'F16', 'BF16'] as const) {
      const file = writeSafetensors([{ name: 't', dtype, shape: [3, 11], data }]);
      const shifted = new Uint8Array(file.length + 1);
      shifted.set(file, 1);
      const view = shifted.subarray(1); // byteOffset 1: every element is misaligned
      const before = view.slice();
      const st = parseSafetensors(view);
      const a = tensorToF32(view, st.tensors.get('t')!, st.dataOffset);
      const b = tensorToF32(file, parseSafetensors(file).tensors.get('t')!, st.dataOffset);
      expect(a).toEqual(b);
      a.fill(123);
      expect(view).toEqual(before);
      expect(tensorToF32(view, st.tensors.get('t')!, st.dataOffset)).toEqual(b);
    }
  });

  it('rejects bad writer input with named errors', () => {
    const d = new Float32Array(4);
    expectFormatError(() => writeSafetensors([{ name: 'a', dtype: 'F32', shape: [3], data: d }]), 'shape');
    expectFormatError(() => writeSafetensors([{ name: 'a', dtype: 'F32', shape: [4], data: d }, { name: 'a', dtype: 'F16', shape: [4], data: d }]), 'extra');
    expectFormatError(() => writeSafetensors([{ name: 'a', dtype: 'I64' as 'F32', shape: [4], data: d }]), 'dtype');
  });
});

describe('safetensors validation: one test per class of bad file', () => {
  const data = new Uint8Array(24); // a: F32 [2,2] (16 bytes), b: F16 [4] (8 bytes)
  const good = { a: { dtype: 'F32', shape: [2, 2], data_offsets: [0, 16] }, b: { dtype: 'F16', shape: [4], data_offsets: [16, 24] } };

  it('accepts the well-formed file', () => {
    const st = parseSafetensors(rawFile(good, data));
    expect([...st.tensors.keys()].sort()).toEqual(['a', 'b']);
  });
  it('truncated file', () => {
    const f = rawFile(good, data);
    expectFormatError(() => parseSafetensors(f.subarray(0, f.length - 3)), 'truncated');
    expectFormatError(() => parseSafetensors(f.subarray(0, 5)), 'truncated');
    const micro = new Uint8Array(readFileSync(MICRO));
    expectFormatError(() => parseSafetensors(micro.subarray(0, micro.length >> 1)), 'truncated');
  });
  it('header length beyond the file', () => {
    const f = rawFile(good, data);
    new DataView(f.buffer).setUint32(0, f.length, true);
    expectFormatError(() => parseSafetensors(f), 'header');
    new DataView(f.buffer).setUint32(4, 7, true); // > 2^32
    expectFormatError(() => parseSafetensors(f), 'header');
  });
  it('bad JSON', () => {
    const text = JSON.stringify(good).slice(0, -1) + '?';
    expectFormatError(() => parseSafetensors(rawFile(null, data, text)), 'json');
    expectFormatError(() => parseSafetensors(rawFile([1, 2], data)), 'json');
  });
  it('unknown or unsupported dtype', () => {
    expectFormatError(() => parseSafetensors(rawFile({ ...good, b: { ...good.b, dtype: 'Q4' } }, data)), 'dtype');
    expectFormatError(() => parseSafetensors(rawFile({ ...good, b: { dtype: 'I64', shape: [1], data_offsets: [16, 24] } }, data)), 'dtype');
  });
  it('offsets out of range', () => {
    expectFormatError(() => parseSafetensors(rawFile({ ...good, b: { ...good.b, data_offsets: [1000, 1008] } }, data)), 'offsets');
    expectFormatError(() => parseSafetensors(rawFile({ ...good, b: { ...good.b, data_offsets: [24, 16] } }, data)), 'offsets');
    expectFormatError(() => parseSafetensors(rawFile({ ...good, b: { ...good.b, data_offsets: [-8, 0] } }, data)), 'offsets');
  });
  it('overlapping offsets', () => {
    const h = { a: { dtype: 'F32', shape: [2, 2], data_offsets: [0, 16] }, b: { dtype: 'F16', shape: [4], data_offsets: [8, 16] } };
    expectFormatError(() => parseSafetensors(rawFile(h, data.subarray(0, 16))), 'overlap');
  });
  it('gap and uncovered trailing bytes', () => {
    const gap = { a: { dtype: 'F32', shape: [2], data_offsets: [0, 8] }, b: { dtype: 'F16', shape: [4], data_offsets: [16, 24] } };
    expectFormatError(() => parseSafetensors(rawFile(gap, data)), 'offsets');
    const extraBytes = new Uint8Array(32);
    expectFormatError(() => parseSafetensors(rawFile(good, extraBytes)), 'offsets');
  });
  it('shape × itemsize ≠ byte length', () => {
    expectFormatError(() => parseSafetensors(rawFile({ ...good, a: { ...good.a, shape: [2, 3] } }, data)), 'shape');
    expectFormatError(() => parseSafetensors(rawFile({ ...good, a: { ...good.a, shape: [2, -2] } }, data)), 'header');
  });
  it('a tensor moved past the data is the one blamed, not its neighbour', () => {
    const msg = (h: unknown) => {
      try {
        parseSafetensors(rawFile(h, data));
      } catch (e) {
        expect((e as CheckpointFormatError).kind).toBe('offsets');
        return (e as Error).message;
      }
      throw new Error('expected CheckpointFormatError(offsets)');
    };
    expect(msg({ ...good, a: { ...good.a, data_offsets: [1000, 1016] } })).toMatch(/: a \[1000, 1016\) lies past the end of the 24-byte data section/);
    expect(msg({ ...good, b: { ...good.b, data_offsets: [1000, 1008] } })).toMatch(/: b \[1000, 1008\) lies past/);
  });
  it('a file cut right after the 8-byte header length is truncated', () => {
    expectFormatError(() => parseSafetensors(rawFile(good, data).subarray(0, 8)), 'truncated');
  });
  it('a header must start with "{": a byte order mark or leading space is rejected', () => {
    const text = JSON.stringify(good);
    expectFormatError(() => parseSafetensors(rawFile(null, data, `\uFEFF${text}`)), 'json');
    expect(() => parseSafetensors(rawFile(null, data, `\uFEFF${text}`))).toThrow(/byte order mark/);
    expectFormatError(() => parseSafetensors(rawFile(null, data, ` ${text}`)), 'json');
  });
  it('integers written as 256.0, 1e2 or -0 are rejected (the reference reader wants integer literals)', () => {
    const text = JSON.stringify(good);
    expect(text).toContain('"shape":[4]');
    for (const lit of ['4.0', '4e0', '0.4E1']) {
      const t = text.replace('"shape":[4]', `"shape":[${lit}]`);
      expectFormatError(() => parseSafetensors(rawFile(null, data, t)), 'header');
      expect(() => parseSafetensors(rawFile(null, data, t))).toThrow(`shape [${lit}]: entry ${lit} is not an integer literal`);
    }
    const big = { big: { dtype: 'F32', shape: [64], data_offsets: [0, 256] } };
    const t256 = JSON.stringify(big).replace('[0,256]', '[0,256.0]');
    expectFormatError(() => parseSafetensors(rawFile(null, new Uint8Array(256), t256)), 'offsets');
    expect(() => parseSafetensors(rawFile(null, new Uint8Array(256), t256))).toThrow('256.0');
    expectFormatError(() => parseSafetensors(rawFile(null, data, text.replace('"data_offsets":[0,16]', '"data_offsets":[-0,16]'))), 'offsets');
  });
  it('duplicate keys and prototype names are not taken silently', () => {
    const text = JSON.stringify(good);
    const entryB = JSON.stringify(good.b);
    expectFormatError(() => parseSafetensors(rawFile(null, data, text.replace('}}', `},"b":${entryB}}`))), 'extra');
    expectFormatError(() => parseSafetensors(rawFile(null, data, text.replace('"dtype":"F16"', '"dtype":"F16","dtype":"F16"'))), 'json');
    for (const dtype of ['constructor', 'toString', '__proto__']) {
      expectFormatError(() => parseSafetensors(rawFile({ ...good, b: { ...good.b, dtype } }, data)), 'dtype');
    }
    const st = parseSafetensors(rawFile(null, data, text.replace('"b":', '"__proto__":')));
    expect([...st.tensors.keys()].sort()).toEqual(['__proto__', 'a']);
  });
  it('input bytes are never modified by parsing and decoding', () => {
    const micro = new Uint8Array(readFileSync(MICRO));
    const before = micro.slice();
    const st = parseSafetensors(micro);
    for (const t of st.tensors.values()) tensorToF32(micro, t, st.dataOffset).fill(1);
    expect(Buffer.compare(Buffer.from(micro), Buffer.from(before))).toBe(0);
  });
});
