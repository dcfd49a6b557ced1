/**
 * Host-side (float64) pieces of the global threshold (ALGORITHM.md §5) and of the chunk plan (§6),
 * on small read-back vectors. Conventions mirror src/reference/surgeon.ts exactly.
 */

/** Index of τ in the sorted costs: min(⌊frac·N⌋, N−1); −1 (nothing selected) when frac ≤ 0 or N = 0. */
export function kthIndex(frac: number, n: number): number {
  if (frac <= 0 || n === 0) return -1;
  return Math.min(Math.floor(frac * n), n - 1);
}

export interface StructuredLayerCosts { R: number; C1: number; row: ArrayLike<number>; col: ArrayLike<number> }

/** Parameters removed by taking r rows and c columns of an R×C1 layer (overlap counted once). */
export const removedParams = (R: number, C1: number, r: number, c: number): number => r * C1 + c * R - r * c;

/**
 * §5 structured: the largest τ among the row/column costs such that Σ_layers removedParams ≤ s·total
 * when every row/column with cost ≤ τ (ties included, as one group) is removed; −∞ if even the
 * cheapest tie group does not fit. Same result as the reference's structuredThreshold.
 */
export function structuredThreshold(layers: readonly StructuredLayerCosts[], s: number): { tau: number; removed: number; budget: number; total: number } {
  const total = layers.reduce((t, l) => t + l.R * l.C1, 0);
  const budget = s * total;
  let n = 0;
  for (const L of layers) n += L.R + L.C1;
  const val = new Float64Array(n), layer = new Int32Array(n), isRow = new Uint8Array(n);
  let k = 0;
  layers.forEach((L, l) => {
    for (let i = 0; i < L.R; i++, k++) { val[k] = L.row[i]; layer[k] = l; isRow[k] = 1; }
    for (let i = 0; i < L.C1; i++, k++) { val[k] = L.col[i]; layer[k] = l; }
  });
  const order = Array.from({ length: n }, (_, i) => i).sort((a, b) => val[a] - val[b]);
  const r = new Int32Array(layers.length), c = new Int32Array(layers.length);
  let tau = -Infinity, removed = 0;
  for (let i = 0; i < n;) {
    let j = i, next = removed;
    while (j < n && val[order[j]] === val[order[i]]) {
      const e = order[j++], l = layer[e];
      // The increment of one structure given the ones already counted (order within a tie group is irrelevant).
      if (isRow[e]) { next += layers[l].C1 - c[l]; r[l]++; } else { next += layers[l].R - r[l]; c[l]++; }
    }
    if (next > budget) break;
    tau = val[order[i]];
    removed = next;
    i = j;
  }
  return { tau, removed, budget, total };
}

export interface Chunk {
  /** First and last live row (local numbering) of the chunk; rows between them without entries are included (zero rows). */
  r0: number;
  r1: number;
  /** Entry range [e0, e0 + n) in the row-major list of selected entries. */
  e0: number;
  n: number;
}

/**
 * §6 chunks: rows with selected entries in order, grouped greedily into chunks of ≤ maxChunk entries
 * (a longer row is its own chunk); rows without entries are skipped.
 */
export function planChunks(counts: ArrayLike<number>, maxChunk: number): Chunk[] {
  const out: Chunk[] = [];
  let cur: Chunk | null = null;
  let e = 0;
  for (let li = 0; li < counts.length; li++) {
    const q = counts[li];
    if (q === 0) continue;
    if (cur && cur.n + q > maxChunk) { out.push(cur); cur = null; }
    if (!cur) cur = { r0: li, r1: li, e0: e, n: 0 };
    cur.r1 = li;
    cur.n += q;
    e += q;
  }
  if (cur) out.push(cur);
  return out;
}

/** select.wgsl's order-preserving key of the f32 with these bits (NaN last, ±0 equal). */
function keyOfBits(b: number): number {
  const a = b & 0x7fffffff;
  if (a > 0x7f800000) return 0xffffffff;
  if (a === 0) return 0x80000000;
  return b & 0x80000000 ? ~b >>> 0 : (b | 0x80000000) >>> 0;
}

/**
 * Exact k-th smallest (0-based) entry over several f32 arrays, in kthSmallestTensor's order (NaN last,
 * −0 = +0, a zero answer is +0): its host twin for the costs a memory-budgeted shot reads back group by
 * group. Radix select over the keys with the GPU's digits (11/11/10 bits), no copy of the data.
 */
export function kthSmallestHost(xs: readonly Float32Array[], k: number): number {
  const total = xs.reduce((a, x) => a + x.length, 0);
  if (!Number.isInteger(k) || k < 0 || k >= total) throw new RangeError(`kthSmallestHost: k = ${k} is outside [0, ${total - 1}]`);
  let prefix = 0, hiMask = 0, rank = k;
  for (const [shift, bits] of [[21, 11], [10, 11], [0, 10]] as const) {
    const hist = new Float64Array(1 << bits), dm = (1 << bits) - 1;
    for (const x of xs) {
      const u = new Uint32Array(x.buffer, x.byteOffset, x.length);
      for (let i = 0; i < u.length; i++) {
        const key = keyOfBits(u[i]);
        if (((key & hiMask) >>> 0) === prefix) hist[(key >>> shift) & dm]++;
      }
    }
    let d = 0;
    while (rank >= hist[d]) rank -= hist[d++];
    prefix = (prefix | (d << shift)) >>> 0;
    hiMask = (hiMask | (dm << shift)) >>> 0;
  }
  if (prefix === 0xffffffff) return NaN;
  if (prefix === 0x80000000) return 0;
  const bitsOut = prefix & 0x80000000 ? prefix & 0x7fffffff : ~prefix >>> 0;
  return new Float32Array(Uint32Array.of(bitsOut).buffer)[0];
}
