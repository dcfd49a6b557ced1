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

/** Row or column i of the structured layer k (an index into the costs list). */
export interface StructRef { k: number; row: boolean; i: number }

/**
 * A unit that a uniform prune removes whole: it dies when any one of its `sides` goes (all structures
 * of that side); `rest` are further structures of it that carry nothing once it is dead (e.g. the q/k
 * rows of a kv group whose v rows or o columns went).
 */
export interface UnitSpec { sides: StructRef[][]; rest: StructRef[] }

/** Units of one kind per decoder layer (units[l]); a uniform prune leaves every layer the same count. */
export type UniformKind = ReadonlyArray<readonly UnitSpec[]>;

/**
 * Rows and columns of one structured layer to remove (1 = removed). `also`: further ones that are only
 * set to zero, without an OBS update — the other sides of a unit removed by one side, which carry
 * nothing once that side is zero (relu(0) = 0, silu(0)·up = 0, softmax·0 = 0).
 */
export interface StructuredSelection { row: Uint8Array; col: Uint8Array; also?: { row: Uint8Array; col: Uint8Array } }

/** The masks of §5's τ: every row/column with cost ≤ τ. */
export const selectionsAt = (layers: readonly StructuredLayerCosts[], tau: number): StructuredSelection[] =>
  layers.map((c) => ({ row: Uint8Array.from(c.row, (v) => (v <= tau ? 1 : 0)), col: Uint8Array.from(c.col, (v) => (v <= tau ? 1 : 0)) }));

/** One step of a uniform kind: every layer still wider than some width loses its next cheapest unit. */
interface Level { cost: number; update: Int32Array; zero: Int32Array }

/**
 * The steps of one uniform kind, widest first. Per layer the units are ranked by their cost — the
 * cheapest side's summed cost (the free threshold would take that side first) — and a step removes
 * each layer's next unit: that side with its OBS update, the unit's other structures zeroed with it,
 * so the parameters counted are the ones a compact export drops (none turn up dead a shot later). A
 * step enters the global order at the mean cost of its units, so that it compares per structure as §5
 * compares structures; costs are made non-decreasing so the steps are taken in order. Steps down to
 * the narrowest live width of any layer cost 0: that layer cannot get its dead units back, so the
 * others must follow.
 */
function levels(layers: readonly StructuredLayerCosts[], units: UniformKind, flat: (r: StructRef) => number): Level[] {
  const cost = (r: StructRef) => { const v = r.row ? layers[r.k].row[r.i] : layers[r.k].col[r.i]; return Number.isNaN(v) ? 0 : v; };
  const ranked = units.map((us) => {
    const scored = us.map((u) => {
      const sideCosts = u.sides.map((s) => s.reduce((a, r) => a + cost(r), 0));
      const best = sideCosts.indexOf(Math.min(...sideCosts));
      return { cost: sideCosts[best], update: u.sides[best].map(flat), zero: [...u.sides.filter((_, j) => j !== best).flat(), ...u.rest].map(flat) };
    });
    return scored.map((_, j) => j).sort((a, b) => scored[a].cost - scored[b].cost || a - b).map((j) => scored[j]);
  });
  const minLive = Math.min(...ranked.map((r) => r.filter((u) => u.cost > 0).length));
  const out: Level[] = [];
  let prev = 0;
  for (let w = Math.max(...ranked.map((r) => r.length)) - 1; w >= 1; w--) {
    const step = ranked.filter((r) => r.length > w).map((r) => r[r.length - w - 1]);
    const mean = step.reduce((a, u) => a + u.cost, 0) / step.length;
    prev = w >= minLive ? 0 : Math.max(prev, mean);
    out.push({ cost: prev, update: Int32Array.from(step.flatMap((u) => u.update)), zero: Int32Array.from(step.flatMap((u) => u.zero)) });
  }
  return out;
}

/**
 * §5 with uniform kinds (a uniform prune): the FFN neurons (and with uniform heads the kv groups) of
 * `kinds` are removed only in steps that leave every decoder layer the same width, each layer its own
 * cheapest units; every other row and column stays under the free threshold. Steps and free structures
 * share one order by cost and the longest prefix (tie groups whole) whose removed parameters fit
 * s·total is taken. With no kinds the selection is structuredThreshold's.
 */
export function uniformThreshold(layers: readonly StructuredLayerCosts[], kinds: readonly UniformKind[], s: number): { sels: StructuredSelection[]; removed: number; budget: number; total: number } {
  const total = layers.reduce((t, l) => t + l.R * l.C1, 0);
  const budget = s * total;
  const base: number[] = [];
  let n = 0;
  for (const L of layers) { base.push(n); n += L.R + L.C1; }
  const flat = (r: StructRef) => base[r.k] + (r.row ? r.i : layers[r.k].R + r.i);
  // Structure e: layer layerOf[e], row or column local[e], cost val[e].
  const layerOf = new Int32Array(n), local = new Int32Array(n), isRow = new Uint8Array(n), val = new Float64Array(n);
  layers.forEach((L, k) => {
    for (let i = 0; i < L.R + L.C1; i++) {
      const e = base[k] + i, row = i < L.R;
      layerOf[e] = k; isRow[e] = row ? 1 : 0; local[e] = row ? i : i - L.R; val[e] = row ? L.row[i] : L.col[i - L.R];
    }
  });
  const inUnit = new Uint8Array(n);
  for (const kind of kinds) for (const us of kind) for (const u of us) for (const r of [...u.sides.flat(), ...u.rest]) inUnit[flat(r)] = 1;
  const steps = kinds.flatMap((kind) => levels(layers, kind, flat));
  // Items: the free structures (item e < n is structure e) and the steps (item n + j), ordered by cost.
  const items: number[] = [];
  for (let e = 0; e < n; e++) if (!inUnit[e]) items.push(e);
  steps.forEach((_, j) => items.push(n + j));
  const itemCost = (it: number) => (it < n ? val[it] : steps[it - n].cost);
  items.sort((a, b) => itemCost(a) - itemCost(b) || a - b);
  const r = new Int32Array(layers.length), c = new Int32Array(layers.length);
  const counted = new Uint8Array(n);
  const add = (e: number): number => {
    if (counted[e]) return 0;
    counted[e] = 1;
    const k = layerOf[e];
    // The increment of one structure given the ones already counted (order within a tie group is irrelevant).
    if (isRow[e]) { r[k]++; return layers[k].C1 - c[k]; }
    c[k]++;
    return layers[k].R - r[k];
  };
  let removed = 0, end = 0;
  for (let i = 0; i < items.length;) {
    let j = i, next = removed;
    while (j < items.length && itemCost(items[j]) === itemCost(items[i])) {
      const it = items[j++];
      if (it < n) next += add(it);
      else for (const list of [steps[it - n].update, steps[it - n].zero]) for (const e of list) next += add(e);
    }
    if (next > budget) break;
    removed = next;
    end = i = j;
  }
  const sels: StructuredSelection[] = layers.map((L) => ({ row: new Uint8Array(L.R), col: new Uint8Array(L.C1) }));
  const mark = (e: number, zeroOnly: boolean) => {
    const s = sels[layerOf[e]];
    const m = zeroOnly ? (s.also ??= { row: new Uint8Array(s.row.length), col: new Uint8Array(s.col.length) }) : s;
    (isRow[e] ? m.row : m.col)[local[e]] = 1;
  };
  for (const it of items.slice(0, end)) {
    if (it < n) { mark(it, false); continue; }
    for (const e of steps[it - n].update) mark(e, false);
    for (const e of steps[it - n].zero) mark(e, true);
  }
  return { sels, removed, budget, total };
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
