/**
 * Text preparation for evaluation and calibration (ALGORITHM.md §10).
 * - joinWikitextRows: rows are the file's lines; a non-blank line becomes `line + "\n"`, a blank
 *   (whitespace-only) line becomes ""; rows joined with "\n\n" — the same string as
 *   `"\n\n".join(datasets.load_dataset("wikitext", "wikitext-2-raw-v1")[split]["text"])`. FIXTURES
 *   joins calibration text this way too; `separator = ' '` gives the string the authors' calibration
 *   loaders build from the train split (a different token stream, kept for comparisons).
 * - evaluationWindows: non-overlapping windows of `seqlen` tokens, the tail dropped.
 * - calibrationWindows: `nsamples` random windows (they may overlap), start offsets drawn like the
 *   SparseGPT / LLM Surgeon data loaders: Python's `random.seed(seed)` then `i = random.randint(0, n - seqlen - 1)`
 *   per sample. The PRNG is MT19937 seeded exactly as CPython seeds it from an int, and randint uses
 *   CPython's rejection sampling on getrandbits(k), so the same seed picks the same start offsets as
 *   the reference code on the same token ids.
 */

import { DatasetError } from './errors';

export function joinWikitextRows(raw: string, separator = '\n\n'): string {
  const lines = raw.replace(/\r\n?/g, '\n').split('\n');
  if (lines.length && lines[lines.length - 1] === '') lines.pop(); // the file's final newline ends the last row
  return lines.map((l) => (l.trim() === '' ? '' : `${l}\n`)).join(separator);
}

export function evaluationWindows(ids: Int32Array | number[], seqlen: number, maxWindows = Infinity): Int32Array[] {
  if (!Number.isInteger(seqlen) || seqlen < 2) throw new DatasetError(`seqlen must be an integer ≥ 2, got ${seqlen}`);
  const n = Math.min(Math.floor(ids.length / seqlen), maxWindows);
  if (n < 1) throw new DatasetError(`${ids.length} tokens hold no window of ${seqlen}`);
  const all = Int32Array.from(ids);
  return Array.from({ length: n }, (_, w) => all.slice(w * seqlen, (w + 1) * seqlen));
}

/** MT19937 with CPython's seeding from a non-negative integer (init_by_array over its 32-bit words). */
export class PythonRandom {
  private mt = new Uint32Array(624);
  private idx = 624;

  constructor(seed: number) {
    if (!Number.isSafeInteger(seed)) throw new DatasetError(`seed must be an integer, got ${seed}`);
    let s = Math.abs(seed);
    const key: number[] = [];
    do {
      key.push(s % 2 ** 32);
      s = Math.floor(s / 2 ** 32);
    } while (s > 0);
    this.initByArray(key);
  }

  /** A generator seeded with init_by_array(key) directly (32-bit words, least significant first). */
  static fromKey(key: number[]): PythonRandom {
    const r = new PythonRandom(0);
    r.initByArray(key.map((k) => k >>> 0));
    return r;
  }

  private initGenrand(s: number): void {
    const mt = this.mt;
    mt[0] = s >>> 0;
    for (let i = 1; i < 624; i++) {
      const p = mt[i - 1] ^ (mt[i - 1] >>> 30);
      mt[i] = (Math.imul(1812433253, p) + i) >>> 0;
    }
    this.idx = 624;
  }

  private initByArray(key: number[]): void {
    this.initGenrand(19650218);
    const mt = this.mt;
    let i = 1;
    let j = 0;
    for (let k = Math.max(624, key.length); k > 0; k--) {
      const p = mt[i - 1] ^ (mt[i - 1] >>> 30);
      mt[i] = ((mt[i] ^ Math.imul(p, 1664525)) + key[j] + j) >>> 0;
      i++;
      j++;
      if (i >= 624) {
        mt[0] = mt[623];
        i = 1;
      }
      if (j >= key.length) j = 0;
    }
    for (let k = 623; k > 0; k--) {
      const p = mt[i - 1] ^ (mt[i - 1] >>> 30);
      mt[i] = ((mt[i] ^ Math.imul(p, 1566083941)) - i) >>> 0;
      i++;
      if (i >= 624) {
        mt[0] = mt[623];
        i = 1;
      }
    }
    mt[0] = 0x80000000;
  }

  /** Next 32-bit output of MT19937. */
  nextUint32(): number {
    const mt = this.mt;
    if (this.idx >= 624) {
      for (let k = 0; k < 624; k++) {
        const y = (mt[k] & 0x80000000) | (mt[(k + 1) % 624] & 0x7fffffff);
        mt[k] = mt[(k + 397) % 624] ^ (y >>> 1) ^ (y & 1 ? 0x9908b0df : 0);
      }
      this.idx = 0;
    }
    let y = mt[this.idx++];
    y ^= y >>> 11;
    y ^= (y << 7) & 0x9d2c5680;
    y ^= (y << 15) & 0xefc60000;
    y ^= y >>> 18;
    return y >>> 0;
  }

  /** Python's random.randint(a, b) (inclusive), for b − a < 2^32. */
  randint(a: number, b: number): number {
    const n = b - a + 1;
    if (!Number.isSafeInteger(n) || n < 1 || n >= 2 ** 32) throw new DatasetError(`randint range [${a}, ${b}] unsupported`);
    const shift = Math.clz32(n); // 32 − n.bit_length(): getrandbits(k) keeps the top k bits
    for (;;) {
      const r = this.nextUint32() >>> shift;
      if (r < n) return a + r;
    }
  }
}

/** `nsamples` windows of `seqlen` tokens at random starts in [0, n − seqlen − 1] (Python-compatible draws). */
export function calibrationWindows(ids: Int32Array | number[], nsamples: number, seqlen: number, seed: number): Int32Array[] {
  if (!Number.isInteger(nsamples) || nsamples < 1) throw new DatasetError(`nsamples must be a positive integer, got ${nsamples}`);
  if (!Number.isInteger(seqlen) || seqlen < 1) throw new DatasetError(`seqlen must be a positive integer, got ${seqlen}`);
  if (ids.length < seqlen + 1) throw new DatasetError(`${ids.length} tokens are too few for windows of ${seqlen} (need ${seqlen + 1})`);
  const rnd = new PythonRandom(seed);
  const all = ids instanceof Int32Array ? ids : Int32Array.from(ids);
  const out: Int32Array[] = [];
  for (let s = 0; s < nsamples; s++) {
    const i = rnd.randint(0, all.length - seqlen - 1);
    out.push(all.slice(i, i + seqlen));
  }
  return out;
}
