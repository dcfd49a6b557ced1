/**
 * Float64 CPU references for the reduce, select and elementwise kernel families (pure, no GPU).
 * Written from the definitions (sums in float64, selection by sorting, half-precision decoding from
 * the IEEE 754 formulas), independent of the kernels' bit tricks.
 */

type Num = ArrayLike<number>;

/** Σ x (or Σ x² with squares) in float64, plus Σ|x| (Σ x²) for error bounds. */
export function sumRef(x: Num, squares = false): { sum: number; abs: number } {
  let s = 0;
  let a = 0;
  for (let i = 0; i < x.length; i++) {
    const v = squares ? x[i] * x[i] : x[i];
    s += v;
    a += Math.abs(v);
  }
  return { sum: s, abs: a };
}

/** Row sums of a row-major R×C matrix: sums and Σ|·| per row. */
export function rowSumsRef(x: Num, R: number, C: number, squares = false): { sum: Float64Array; abs: Float64Array } {
  const sum = new Float64Array(R);
  const abs = new Float64Array(R);
  for (let r = 0; r < R; r++) {
    for (let c = 0; c < C; c++) {
      const v = squares ? x[r * C + c] ** 2 : x[r * C + c];
      sum[r] += v;
      abs[r] += Math.abs(v);
    }
  }
  return { sum, abs };
}

/** Column sums of a row-major R×C matrix: sums and Σ|·| per column. */
export function colSumsRef(x: Num, R: number, C: number, squares = false): { sum: Float64Array; abs: Float64Array } {
  const sum = new Float64Array(C);
  const abs = new Float64Array(C);
  for (let r = 0; r < R; r++) {
    for (let c = 0; c < C; c++) {
      const v = squares ? x[r * C + c] ** 2 : x[r * C + c];
      sum[c] += v;
      abs[c] += Math.abs(v);
    }
  }
  return { sum, abs };
}

/** Number of entries equal to zero (+0 and -0 compare equal). */
export function countZerosRef(x: Num): number {
  let n = 0;
  for (let i = 0; i < x.length; i++) if (x[i] === 0) n++;
  return n;
}

/** max |x|: NaN if any NaN; 0 for an empty array. */
export function maxAbsRef(x: Num): number {
  let m = 0;
  for (let i = 0; i < x.length; i++) {
    if (Number.isNaN(x[i])) return NaN;
    m = Math.max(m, Math.abs(x[i]));
  }
  return m;
}

/** Total order used by selection: numeric, -0 == +0, NaN after everything. */
export function compareNaNLast(a: number, b: number): number {
  const an = Number.isNaN(a);
  const bn = Number.isNaN(b);
  if (an || bn) return an === bn ? 0 : an ? 1 : -1;
  return a < b ? -1 : a > b ? 1 : 0;
}

/** Sorted float64 copy of the concatenation of `xs` (NaN last). */
export function sortedRef(xs: Num[]): Float64Array {
  const total = xs.reduce((s, x) => s + x.length, 0);
  const all = new Float64Array(total);
  let o = 0;
  for (const x of xs) for (let i = 0; i < x.length; i++) all[o++] = x[i];
  // Float64Array.prototype.sort sorts numerically with NaN last; -0 before +0 (values still equal).
  return all.sort();
}

/** #{x ≤ τ} in the selection order (NaN counted only when τ is NaN). */
export function countLessEqualRef(xs: Num[], tau: number): number {
  let n = 0;
  for (const x of xs) for (let i = 0; i < x.length; i++) if (compareNaNLast(x[i], tau) <= 0) n++;
  return n;
}

/** IEEE binary16 bit pattern → value (exact in float64). */
export function halfToNumber(h: number): number {
  const s = h & 0x8000 ? -1 : 1;
  const e = (h >> 10) & 0x1f;
  const m = h & 0x3ff;
  if (e === 0) return s * m * 2 ** -24;
  if (e === 31) return m === 0 ? s * Infinity : NaN;
  return s * (1 + m / 1024) * 2 ** (e - 15);
}

/** bfloat16 bit pattern → value (exact in float64): 8 exponent bits (bias 127), 7 mantissa bits. */
export function bf16ToNumber(h: number): number {
  const s = h & 0x8000 ? -1 : 1;
  const e = (h >> 7) & 0xff;
  const m = h & 0x7f;
  if (e === 0) return s * m * 2 ** -133;
  if (e === 255) return m === 0 ? s * Infinity : NaN;
  return s * (1 + m / 128) * 2 ** (e - 127);
}
