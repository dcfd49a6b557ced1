import source from '../../shaders/gather.wgsl?raw';
import { packUniforms, type GpuContext, type KernelSpec } from '../gpu/context';
import type { Tensor } from '../gpu/tensor';
import { ShapeError } from '../gpu/errors';
import { foldedGrid } from './elementwise';

/*
 * Index gathers/scatters used by the surgeon's live sub-problems (see shaders/gather.wgsl).
 * Every wrapper records one dispatch and never reads back.
 */

const WG = 256; // threads per workgroup in gather.wgsl
const spec = (entry: string, bindings: KernelSpec['bindings']): KernelSpec => ({ name: `gather.${entry}`, source, entry, bindings, uniform: true });
const PACK = spec('pack', ['read', 'read', 'write']);
const UNPACK = spec('unpack', ['read', 'write', 'write']);
const GATHER = spec('gather2d', ['read', 'read', 'read', 'write']);
const SCATTER = spec('scatter2d', ['read', 'read', 'read', 'write']);
const COMPACT = spec('compact', ['read', 'read', 'write', 'write']);

const placeholders = new WeakMap<GpuContext, Tensor>();
/** A small u32 tensor bound where an index list is not used (identity flag set). */
function noIndex(ctx: GpuContext): Tensor {
  let t = placeholders.get(ctx);
  if (!t || t.isDisposed) placeholders.set(ctx, (t = ctx.upload(new Uint32Array(4))));
  return t;
}

function checkLinear(op: string, W: Tensor, b: Tensor, Wp: Tensor): { R: number; C: number } {
  if (W.shape.length !== 2) throw new ShapeError(`${op}: weight must be [R, C], got [${W.shape}]`);
  const [R, C] = W.shape;
  if (b.size !== R) throw new ShapeError(`${op}: bias must have ${R} entries, got [${b.shape}]`);
  if (Wp.size !== R * (C + 1)) throw new ShapeError(`${op}: W' must have ${R}×${C + 1} entries, got [${Wp.shape}]`);
  return { R, C };
}

/** W' = [W | b] as a new [R, C+1] tensor; without a bias (Llama) W' = W, a new [R, C] copy. */
export function packLinear(ctx: GpuContext, W: Tensor, b?: Tensor): Tensor {
  if (!b) {
    if (W.shape.length !== 2) throw new ShapeError(`packLinear: weight must be [R, C], got [${W.shape}]`);
    const Wp = ctx.empty(W.shape);
    ctx.copy(W, Wp);
    return Wp;
  }
  const [R, C] = W.shape;
  const Wp = ctx.empty([R, C + 1]);
  checkLinear('packLinear', W, b, Wp);
  ctx.dispatch(PACK, { defines: { PACK: true } }, [W, b, Wp], foldedGrid(Math.ceil((R * (C + 1)) / WG)), packUniforms([['u32', R], ['u32', C], ['u32', 0], ['u32', 0]]));
  return Wp;
}

/** W ← W'[:, :C], b ← W'[:, C] in place (without a bias: W ← W'). */
export function unpackLinear(ctx: GpuContext, Wp: Tensor, W: Tensor, b?: Tensor): void {
  if (!b) {
    if (Wp.size !== W.size) throw new ShapeError(`unpackLinear: W' [${Wp.shape}] and W [${W.shape}] differ in size`);
    ctx.copy(Wp, W);
    return;
  }
  const { R, C } = checkLinear('unpackLinear', W, b, Wp);
  ctx.dispatch(UNPACK, { defines: { UNPACK: true } }, [Wp, W, b], foldedGrid(Math.ceil((R * (C + 1)) / WG)), packUniforms([['u32', R], ['u32', C], ['u32', 0], ['u32', 0]]));
}

export interface Index2d {
  /** Row indices (u32 tensor) or null for 0..nR-1. */
  rows: Tensor | null;
  nR: number;
  /** Column indices (u32 tensor) or null for 0..nC-1. */
  cols: Tensor | null;
  nC: number;
}

function moveArgs(ctx: GpuContext, op: string, ix: Index2d, ld: number, off: number, scale: number) {
  for (const [t, n] of [[ix.rows, ix.nR], [ix.cols, ix.nC]] as const) {
    if (t && (t.dtype !== 'u32' || t.size < n)) throw new ShapeError(`${op}: index list must be u32 with ≥ ${n} entries, got [${t.shape}] ${t.dtype}`);
  }
  const flags = (ix.rows ? 0 : 1) | (ix.cols ? 0 : 2);
  const u = packUniforms([['u32', ix.nR], ['u32', ix.nC], ['u32', ld], ['u32', off], ['u32', flags], ['u32', 0], ['u32', 0], ['f32', scale]]);
  return { u, ri: ix.rows ?? noIndex(ctx), ci: ix.cols ?? noIndex(ctx) };
}

/** dst[i,j] = scale·src[off + rows[i]·ld + cols[j]] → new [nR, nC] tensor (src read as a row-major matrix with leading dimension ld). */
export function gather2d(ctx: GpuContext, src: Tensor, ix: Index2d, opts: { ld?: number; off?: number; scale?: number } = {}): Tensor {
  const ld = opts.ld ?? src.shape[src.shape.length - 1];
  const dst = ctx.empty([ix.nR, ix.nC]);
  if (ix.nR * ix.nC === 0) return dst;
  const { u, ri, ci } = moveArgs(ctx, 'gather2d', ix, ld, opts.off ?? 0, opts.scale ?? 1);
  ctx.dispatch(GATHER, { defines: { MOVE: true } }, [src, ri, ci, dst], foldedGrid(Math.ceil((ix.nR * ix.nC) / WG)), u);
  return dst;
}

/** dst[rows[i]·ld + cols[j]] = src[i,j] in place (src is [nR, nC]); other entries of dst are untouched. */
export function scatter2d(ctx: GpuContext, src: Tensor, dst: Tensor, ix: Index2d, opts: { ld?: number } = {}): void {
  if (src.size !== ix.nR * ix.nC) throw new ShapeError(`scatter2d: src must have ${ix.nR}×${ix.nC} entries, got [${src.shape}]`);
  if (src.size === 0) return;
  const { u, ri, ci } = moveArgs(ctx, 'scatter2d', ix, opts.ld ?? dst.shape[dst.shape.length - 1], 0, 1);
  ctx.dispatch(SCATTER, { defines: { MOVE: true } }, [src, ri, ci, dst], foldedGrid(Math.ceil(src.size / WG)), u);
}

/**
 * Row-major list of the nonzero entries of an [nR, nC] 0/1 mask: qr/qc (u32, `total` entries) with
 * row i's entries starting at offsets[i] (u32 [nR], the exclusive prefix sum of the row counts).
 */
export function compactMask(ctx: GpuContext, mask: Tensor, offsets: Tensor, total: number): { qr: Tensor; qc: Tensor } {
  if (mask.shape.length !== 2) throw new ShapeError(`compactMask: mask must be 2-D, got [${mask.shape}]`);
  const [nR, nC] = mask.shape;
  if (offsets.dtype !== 'u32' || offsets.size !== nR) throw new ShapeError(`compactMask: offsets must be u32 [${nR}]`);
  const qr = ctx.empty([Math.max(1, total)], 'u32');
  const qc = ctx.empty([Math.max(1, total)], 'u32');
  ctx.dispatch(COMPACT, { defines: { COMPACT: true } }, [mask, offsets, qr, qc], foldedGrid(Math.ceil(nR / WG)), packUniforms([['u32', nR], ['u32', nC], ['u32', 0], ['u32', 0]]));
  return { qr, qc };
}
