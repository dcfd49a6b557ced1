import source from '../../shaders/reduce.wgsl?raw';
import { packUniforms, type GpuContext, type KernelSpec, type KernelVariant } from '../gpu/context';
import type { Tensor } from '../gpu/tensor';
import { ShapeError } from '../gpu/errors';
import { foldedGrid, requireF32 } from './elementwise';

const spec = (entry: string, bindings: KernelSpec['bindings']): KernelSpec => ({
  name: `reduce.${entry}`,
  source,
  entry,
  bindings,
  uniform: true,
});
const SUM_FLAT = spec('sum_flat', ['read', 'write']);
const ROW_SUMS = spec('row_sums', ['read', 'write']);
const ROW_SUMS_SMALL = spec('row_sums_small', ['read', 'write']);
const COL_SUMS = spec('col_sums', ['read', 'write']);
const COUNT_FLAT = spec('count_flat', ['read', 'write']);

const WG = 256; // threads per workgroup in reduce.wgsl
const SUM_TILE = WG * 4; // entries per sum_flat workgroup (ITEMS = 4)
export const COL_TILE = 64; // columns and rows per col_sums workgroup
const SMALL_ROW = 32; // rows up to this length use one thread per row: a 256-thread workgroup would idle ≥ 7/8
const COUNT_ITEMS = 16; // entries per thread in count_flat: amortises the two atomics per workgroup
const COUNT_MAX_GROUPS = 8192; // beyond this, threads take more entries (enough workgroups to fill an H200)

const variant = (squares?: boolean): KernelVariant => ({ defines: { SQUARES: Boolean(squares) } });

function u(n: number, cols: number, groups: number, items: number): ArrayBuffer {
  return packUniforms([['u32', n], ['u32', cols], ['u32', groups], ['u32', items]]);
}

/** Flat pairwise sum of the first n entries of x (optionally squared) → [1]. */
function sumFlat(ctx: GpuContext, x: Tensor, squares: boolean): Tensor {
  let n = x.size;
  if (n === 0) return ctx.zeros([1]);
  let cur = x;
  let sq = squares;
  for (;;) {
    const groups = Math.ceil(n / SUM_TILE);
    const out = ctx.empty([groups]);
    ctx.dispatch(SUM_FLAT, variant(sq), [cur, out], foldedGrid(groups), u(n, 0, groups, 0));
    if (cur !== x) cur.dispose(); // safe to reuse: dispatches run in stream order, later writers follow this read
    cur = out;
    n = groups;
    sq = false;
    if (groups === 1) return out;
  }
}

/** Σ x over all entries → [1] f32. Pairwise (tree) order: error ≲ (log2 n + 4)·u·Σ|x|. */
export function sum(ctx: GpuContext, x: Tensor): Tensor {
  requireF32('sum', x);
  return sumFlat(ctx, x, false);
}

/** Σ x² over all entries (squared Frobenius norm) → [1] f32, pairwise like sum(). */
export function sumSquares(ctx: GpuContext, x: Tensor): Tensor {
  requireF32('sumSquares', x);
  return sumFlat(ctx, x, true);
}

function matrix(op: string, x: Tensor): [number, number] {
  requireF32(op, x);
  if (x.shape.length !== 2) throw new ShapeError(`${op}: 2-D [R, C] tensor expected, got [${x.shape}]`);
  return [x.shape[0], x.shape[1]];
}

/** Row sums of an [R, C] matrix → [R] (`squares`: Σ_c x²). Error ≲ (C/256 + 8)·u·Σ|row|. */
export function rowSums(ctx: GpuContext, x: Tensor, opts: { squares?: boolean } = {}): Tensor {
  const [R, C] = matrix('rowSums', x);
  if (C === 0 || R === 0) return ctx.zeros([R]);
  const out = ctx.empty([R]);
  if (C <= SMALL_ROW) {
    ctx.dispatch(ROW_SUMS_SMALL, variant(opts.squares), [x, out], foldedGrid(Math.ceil(R / WG)), u(R, C, 0, 0));
  } else {
    ctx.dispatch(ROW_SUMS, variant(opts.squares), [x, out], foldedGrid(R), u(R, C, 0, 0));
  }
  return out;
}

/** Column sums of an [R, C] matrix → [C] (`squares`: Σ_r x²). Blocked tree: error ≲ 18·⌈log64 R⌉·u·Σ|col|. */
export function colSums(ctx: GpuContext, x: Tensor, opts: { squares?: boolean } = {}): Tensor {
  const [R0, C] = matrix('colSums', x);
  if (R0 === 0) return ctx.zeros([C]);
  let R = R0;
  let cur = x;
  let sq = Boolean(opts.squares);
  const tiles = Math.ceil(C / COL_TILE);
  for (;;) {
    const blocks = Math.ceil(R / COL_TILE);
    const out = ctx.empty(blocks === 1 ? [C] : [blocks, C]);
    const groups = tiles * blocks;
    ctx.dispatch(COL_SUMS, variant(sq), [cur, out], foldedGrid(groups), u(R, C, groups, tiles));
    if (cur !== x) cur.dispose();
    cur = out;
    R = blocks;
    sq = false;
    if (blocks === 1) return out;
  }
}

type CountOp = 'ZEROS' | 'MAXABS' | 'NONFINITE';

function countFlat(ctx: GpuContext, x: Tensor, op: CountOp, dtype: 'u32' | 'f32'): Tensor {
  const out = ctx.zeros([1], dtype);
  const n = x.size;
  if (n === 0) return out;
  const items = Math.max(COUNT_ITEMS, Math.ceil(n / (WG * COUNT_MAX_GROUPS)));
  const groups = Math.ceil(n / (WG * items));
  ctx.dispatch(COUNT_FLAT, { defines: { [op]: true } }, [x, out], foldedGrid(groups), u(n, 0, groups, items));
  return out;
}

/** Exact number of entries equal to 0 (+0 or -0) → [1] u32. */
export function countZeros(ctx: GpuContext, x: Tensor): Tensor {
  requireF32('countZeros', x);
  return countFlat(ctx, x, 'ZEROS', 'u32');
}

/** max |x| → [1] f32 (exact). NaN-propagating: NaN if any entry is NaN, else inf if any is ±inf; 0 for an empty tensor. */
export function maxAbs(ctx: GpuContext, x: Tensor): Tensor {
  requireF32('maxAbs', x);
  return countFlat(ctx, x, 'MAXABS', 'f32');
}

/** 1 if any entry is NaN or ±inf, else 0 → [1] u32. */
export function hasNonFinite(ctx: GpuContext, x: Tensor): Tensor {
  requireF32('hasNonFinite', x);
  return countFlat(ctx, x, 'NONFINITE', 'u32');
}
