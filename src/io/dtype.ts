/**
 * Element conversions between the safetensors float dtypes and f32.
 * f16 → f32 goes through a 65,536-entry table (256 KiB, built once); bf16 → f32 is a 16-bit shift.
 * f32 → f16/bf16 round to nearest, ties to even (IEEE 754 default), overflow → ±Inf, NaN stays NaN (quiet).
 * Typed-array views assume a little-endian host (every browser and Node platform in use); checked below.
 */

import { SurgeonError } from '../errors';

export type FloatDType = 'F16' | 'BF16' | 'F32';

export const ITEMSIZE: Record<FloatDType, number> = { F16: 2, BF16: 2, F32: 4 };

export const LITTLE_ENDIAN = new Uint8Array(new Uint16Array([1]).buffer)[0] === 1;

function requireLittleEndian(): void {
  if (!LITTLE_ENDIAN) throw new SurgeonError('safetensors I/O needs a little-endian host');
}

/** Value of an IEEE binary16 bit pattern. */
export function halfBitsToNumber(h: number): number {
  const sign = h & 0x8000 ? -1 : 1;
  const exp = (h >>> 10) & 0x1f;
  const mant = h & 0x3ff;
  if (exp === 0) return sign * mant * 2 ** -24;
  if (exp === 31) return mant ? NaN : sign * Infinity;
  return sign * (1 + mant / 1024) * 2 ** (exp - 15);
}

let f16Table: Float32Array | undefined;
function halfTable(): Float32Array {
  if (!f16Table) {
    f16Table = new Float32Array(65536);
    for (let h = 0; h < 65536; h++) f16Table[h] = halfBitsToNumber(h);
  }
  return f16Table;
}

/** Binary16 bits of an f32 bit pattern, round to nearest even. */
export function f32BitsToHalf(x: number): number {
  const sign = (x >>> 16) & 0x8000;
  const abs = x & 0x7fffffff;
  if (abs >= 0x7f800000) return abs > 0x7f800000 ? sign | 0x7e00 | ((abs >>> 13) & 0x3ff) : sign | 0x7c00;
  if (abs >= 0x477ff000) return sign | 0x7c00; // ≥ 65520 rounds to Inf
  if (abs < 0x38800000) {
    // below 2^-14: f16 subnormal (or zero); q = |x|·2^24 is exact in float64
    const e = abs >>> 23;
    const m = e === 0 ? (abs & 0x7fffff) * 2 ** -149 : ((abs & 0x7fffff) | 0x800000) * 2 ** (e - 150);
    const q = m * 2 ** 24;
    let r = Math.floor(q);
    const d = q - r;
    if (d > 0.5 || (d === 0.5 && r & 1)) r++;
    return sign | r; // r = 0x400 encodes the smallest normal, which is correct
  }
  const mant = abs & 0x7fffff;
  let h = ((((abs >>> 23) - 112) << 10) | (mant >>> 13)) >>> 0; // exponent rebias 127 → 15
  const rem = mant & 0x1fff;
  if (rem > 0x1000 || (rem === 0x1000 && h & 1)) h++; // carry into the exponent is the correct rounding
  return sign | h;
}

/** Bfloat16 bits of an f32 bit pattern, round to nearest even. */
export function f32BitsToBf16(x: number): number {
  if ((x & 0x7fffffff) > 0x7f800000) return (x >>> 16) | 0x40; // NaN, keep it quiet
  return ((x >>> 0) + 0x7fff + ((x >>> 16) & 1)) / 65536 >>> 0; // may carry up to Inf: correct overflow
}

/** Decode `n` elements of `dtype` starting at `bytes[off]` into a new Float32Array (never a view of `bytes`). */
export function decodeToF32(bytes: Uint8Array, off: number, n: number, dtype: FloatDType): Float32Array {
  requireLittleEndian();
  const nbytes = n * ITEMSIZE[dtype];
  const abs = bytes.byteOffset + off;
  // Aligned data is viewed in place (read only); unaligned data is copied once into an aligned buffer.
  const aligned = abs % ITEMSIZE[dtype] === 0;
  const buf = aligned ? bytes.buffer : bytes.slice(off, off + nbytes).buffer;
  const start = aligned ? abs : 0;
  if (dtype === 'F32') return new Float32Array(buf, start, n).slice();
  const src = new Uint16Array(buf, start, n);
  const out = new Float32Array(n);
  if (dtype === 'F16') {
    const t = halfTable();
    for (let i = 0; i < n; i++) out[i] = t[src[i]];
  } else {
    const u = new Uint32Array(out.buffer);
    for (let i = 0; i < n; i++) u[i] = src[i] << 16;
  }
  return out;
}

/** Encode f32 values as `dtype` little-endian bytes (a new array). */
export function encodeFromF32(data: Float32Array, dtype: FloatDType): Uint8Array {
  requireLittleEndian();
  if (dtype === 'F32') return new Uint8Array(data.buffer.slice(data.byteOffset, data.byteOffset + data.byteLength));
  const bits = new Uint32Array(data.buffer, data.byteOffset, data.length);
  const out = new Uint16Array(data.length);
  const conv = dtype === 'F16' ? f32BitsToHalf : f32BitsToBf16;
  for (let i = 0; i < data.length; i++) out[i] = conv(bits[i]);
  return new Uint8Array(out.buffer);
}
