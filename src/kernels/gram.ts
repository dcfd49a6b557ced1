import source from '../../shaders/gram.wgsl?raw';
import pairwise from '../../shaders/pairwise.wgsl?raw';
import { grid1d, packUniforms, type GpuContext, type KernelSpec } from '../gpu/context';
import type { Tensor } from '../gpu/tensor';
import { ShapeError } from '../gpu/errors';
import { isCpuAdapter } from './matmul';

const MAIN: KernelSpec = { name: 'gram', source, bindings: ['read', 'write'], uniform: true };
const REDUCE: KernelSpec = { name: 'gram.reduce', source: `${source}\n${pairwise}`, entry: 'reduce', bindings: ['read', 'write'], uniform: true };
const MIRROR: KernelSpec = { name: 'gram.mirror', source, entry: 'mirror', bindings: ['write'], uniform: true };

export interface GramOptions {
  /** Append a ones column (bias feature, last index): acc is (d+1)×(d+1). */
  ones?: boolean;
  /** acc += scale·X'ᵀX' (default 1). */
  scale?: number;
  /** Number of valid token rows of x (default T = x.shape[0]). */
  rows?: number;
  /** Name of a GRAM_VARIANTS entry (benchmark sweeps); default GRAM_DEFAULT_VARIANT. */
  variant?: string;
  /** Token splits (1..GRAM_MAX_SPLITS, tests/sweeps); default planGramSplits. Scratch bound still applies. */
  splits?: number;
}

/** Square output tiles of 8·wt (wt×wt threads, 8×8 register block each), bk tokens per smem slice. */
export interface GramVariant {
  name: string;
  wt: number;
  bk: number;
}

export const GRAM_VARIANTS: readonly GramVariant[] = [
  { name: '128x8', wt: 16, bk: 8 },
  { name: '128x16', wt: 16, bk: 16 },
  { name: '128x32', wt: 16, bk: 32 },
  { name: '64x16', wt: 8, bk: 16 },
  { name: '64x32', wt: 8, bk: 32 },
];

/**
 * H200, d = 3072 + ones column, 262,144 tokens in calls of 65,536 (16,384): 128x8 97 ms (124 ms),
 * 128x16 141 (162), 128x32 166 (188), 64x16 190 (199); torch fp32 X.T @ X (full product) 91 ms.
 */
export const GRAM_DEFAULT_VARIANT = '128x8';

// Token splits are added until tiles·splits reaches this many workgroups (H200: 132 SMs × 2 resident, ×2 waves).
const TARGET_WORKGROUPS = 528;
// A split must be long enough to amortise its partial write and the reduce pass.
const MIN_TOKENS_PER_SPLIT = 4096;
// Fewer workgroups than this leave SMs idle (H200: 132 SMs × 2 resident): with n = 769 (28 tiles) and
// 4096-token calls the 4096-token minimum gave 28 workgroups; shorter splits then bring it to ≥ 264.
// Not on CPU adapters: SwiftShader (2 cores) ran n = 257 × 4096 tokens 35% slower with 16 splits than 1.
export const GRAM_MIN_WORKGROUPS = 264;
// Shortest split when tiles are few: 2·256 flops per partial element written, still compute-bound on the H200
// (≈ 7 flop/byte balance), and a shorter split only lowers the rounding bound (chunk + #chunks shrink).
const MIN_TOKENS_PER_SPLIT_FEW = 256;
// The reduce pass's pairwise tree has levels for up to 2^6 partials (pairwise.wgsl).
export const GRAM_MAX_SPLITS = 64;
// Scratch for split partials stays below this (S·n²·4 bytes).
const MAX_SCRATCH_BYTES = 256 << 20;

/**
 * Token splits for one call: `tiles` lower-triangle tiles, `rows` tokens, n²·4-byte partials; splits of
 * ≥ MIN_TOKENS_PER_SPLIT_FEW are added while fewer than `minWorkgroups` would run; `forced` overrides.
 */
export function planGramSplits(
  tiles: number, rows: number, n: number, maxBindingBytes: number, minWorkgroups = GRAM_MIN_WORKGROUPS, forced?: number,
): number {
  let s = Math.min(Math.ceil(TARGET_WORKGROUPS / tiles), Math.floor(rows / MIN_TOKENS_PER_SPLIT));
  if (tiles * Math.max(s, 1) < minWorkgroups) s = Math.max(s, Math.min(Math.ceil(minWorkgroups / tiles), Math.floor(rows / MIN_TOKENS_PER_SPLIT_FEW)));
  if (forced !== undefined) s = forced;
  return Math.max(1, Math.min(s, GRAM_MAX_SPLITS, Math.floor(Math.min(MAX_SCRATCH_BYTES, maxBindingBytes) / (n * n * 4))));
}

function variantByName(name: string): GramVariant {
  const v = GRAM_VARIANTS.find((x) => x.name === name);
  if (!v) throw new ShapeError(`gram: unknown variant '${name}' (known: ${GRAM_VARIANTS.map((x) => x.name).join(', ')})`);
  return v;
}

/**
 * acc += scale · X'ᵀX' on the lower triangle (upper untouched), X' = [x[:rows] | 1] with `ones`.
 * x: [T, d] f32; acc: [n, n], n = d + (ones ? 1 : 0). Records dispatches only; never reads back.
 * Error model: blocked summation in chunks of c ≈ √(T/S) tokens per split, S ≤ 64 splits added pairwise ⇒
 * |err_ij| ≲ (2√(T/S) + 2⌈log2 S⌉ + 4)·u·|scale|·Σ_t|x'_ti x'_tj| ≤ 2√T·eps·… (worst case; see shaders/gram.wgsl).
 */
export function gramAccumulate(ctx: GpuContext, x: Tensor, acc: Tensor, opts: GramOptions = {}): void {
  if (x.shape.length !== 2 || x.dtype !== 'f32') throw new ShapeError(`gram: x must be a 2-D f32 [T, d] tensor, got [${x.shape}] ${x.dtype}`);
  const [T, d] = x.shape;
  if (d === 0) throw new ShapeError(`gram: x has no columns [${x.shape}]`);
  const n = d + (opts.ones ? 1 : 0);
  if (acc.shape.length !== 2 || acc.shape[0] !== n || acc.shape[1] !== n || acc.dtype !== 'f32') {
    throw new ShapeError(`gram: acc must be [${n}, ${n}] f32 for x [${x.shape}]${opts.ones ? ' with ones column' : ''}, got [${acc.shape}]`);
  }
  if (acc.buffer === x.buffer) throw new ShapeError('gram: acc must not alias x');
  const rows = opts.rows ?? T;
  if (!Number.isInteger(rows) || rows < 0 || rows > T) throw new ShapeError(`gram: rows=${rows} must be an integer in [0, T=${T}]`);
  if (rows === 0) return;
  const v = opts.variant ? variantByName(opts.variant) : variantByName(GRAM_DEFAULT_VARIANT);
  const bt = 8 * v.wt;
  const nt = Math.ceil(n / bt);
  const tiles = (nt * (nt + 1)) / 2;
  if (tiles > ctx.limits.maxComputeWorkgroupsPerDimension) throw new ShapeError(`gram: n=${n} needs ${tiles} tiles, above the workgroup grid limit`);
  const bk = v.bk;
  const roundUp = (a: number, m: number) => Math.ceil(a / m) * m;
  if (opts.splits !== undefined && !(Number.isInteger(opts.splits) && opts.splits >= 1 && opts.splits <= GRAM_MAX_SPLITS)) {
    throw new ShapeError(`gram: splits=${opts.splits} must be an integer in [1, ${GRAM_MAX_SPLITS}]`);
  }
  let splits = planGramSplits(tiles, rows, n, ctx.limits.maxStorageBufferBindingSize, isCpuAdapter(ctx) ? 0 : GRAM_MIN_WORKGROUPS, opts.splits);
  const tokensPerSplit = roundUp(Math.ceil(rows / splits), bk);
  splits = Math.ceil(rows / tokensPerSplit); // every split has ≥ 1 token (its partial slice is written)
  // Chunk ≈ √(tokens per split): balances in-chunk and across-chunk rounding error.
  const chunk = Math.min(tokensPerSplit, roundUp(Math.ceil(Math.sqrt(tokensPerSplit)), bk));
  const scale = opts.scale ?? 1;
  const vec4 = d % 4 === 0;
  const variant = { defines: { VEC4: vec4 }, overrides: { WT: v.wt, BK: bk, ONES: opts.ones ? 1 : 0 } };
  const params = (mode: number) => packUniforms([
    ['u32', d], ['u32', n], ['u32', rows], ['u32', tokensPerSplit],
    ['u32', chunk], ['u32', mode], ['u32', tiles], ['u32', splits],
    ['f32', scale], ['u32', 0], ['u32', 0], ['u32', 0],
  ]);
  if (splits === 1) {
    ctx.dispatch(MAIN, variant, [x, acc], [tiles, 1], params(0));
    return;
  }
  const partials = ctx.empty([splits, n, n]);
  ctx.dispatch(MAIN, variant, [x, partials], [tiles, splits], params(1));
  ctx.dispatch(REDUCE, { defines: { REDUCE: true } }, [partials, acc], grid1d(Math.ceil((n * n) / 256)), params(1));
  // Safe to pool right away: a later user of this buffer is ordered after these dispatches.
  partials.dispose();
}

/** Copy the lower triangle of the square matrix acc into its upper triangle (in place). */
export function mirrorLower(ctx: GpuContext, acc: Tensor): void {
  const s = acc.shape;
  if (s.length !== 2 || s[0] !== s[1] || acc.dtype !== 'f32') throw new ShapeError(`mirrorLower: square f32 matrix expected, got [${s}]`);
  const nt = Math.ceil(s[0] / 16);
  const tiles = (nt * (nt + 1)) / 2;
  ctx.dispatch(MIRROR, { defines: { MIRROR: true } }, [acc], grid1d(tiles), packUniforms([['u32', s[0]], ['u32', tiles], ['u32', 0], ['u32', 0]]));
}
