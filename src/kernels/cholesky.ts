import cholSource from '../../shaders/cholesky.wgsl?raw';
import trsmSource from '../../shaders/trsm.wgsl?raw';
import { grid1d, packUniforms, type GpuContext, type KernelSpec } from '../gpu/context';
import type { Tensor } from '../gpu/tensor';
import { ShapeError, SurgeonError } from '../gpu/errors';
import { isCpuAdapter } from './matmul';

/** Block size of the blocked Cholesky and triangular solves; equals NB in cholesky.wgsl and trsm.wgsl (one 32×32 block = 4 KiB of workgroup memory, 32 registers per solving thread). */
export const NB = 32;

const POTRF: KernelSpec = { name: 'cholesky.potrfPanel', source: cholSource, entry: 'potrfPanel', bindings: ['write', 'write', 'write'], uniform: true };
const FINALIZE: KernelSpec = { ...POTRF, name: 'cholesky.finalize', entry: 'finalize' };
const EYE: KernelSpec = { ...POTRF, name: 'cholesky.eye', entry: 'eye' };
const SYMMETRIZE: KernelSpec = { ...POTRF, name: 'cholesky.symmetrize', entry: 'symmetrize' };
const GEMM: KernelSpec = { name: 'trsm.gemm', source: trsmSource, entry: 'gemm', bindings: ['read', 'read', 'write', 'read'], uniform: true };
const SOLVE: KernelSpec = { name: 'trsm.diagSolve', source: trsmSource, entry: 'diagSolve', bindings: ['read', 'write'], uniform: true };

/** A pivot of the Cholesky factorisation was ≤ 0 or NaN: the matrix is not (numerically) positive definite. */
export class NotPositiveDefiniteError extends SurgeonError {
  static override readonly name: string = 'NotPositiveDefiniteError';
  constructor(
    /** 0-based index of the first failing pivot. */
    readonly index: number,
    /** Index of the failing matrix in the batch (0 for a single matrix). */
    readonly batchIndex = 0,
  ) {
    super(`matrix${batchIndex ? ` ${batchIndex} of the batch` : ''} is not positive definite: Cholesky pivot ${index} is ≤ 0 or NaN (add damping, or check the input for NaN/Inf)`);
  }
}

/** [n,n] or [batch,n,n] → { n, batch }. */
export function squareDims(name: string, m: Tensor): { n: number; batch: number } {
  const s = m.shape;
  if ((s.length !== 2 && s.length !== 3) || s[s.length - 1] !== s[s.length - 2]) {
    throw new ShapeError(`${name}: square [n,n] or [batch,n,n] matrix expected, got [${s}]`);
  }
  if (m.dtype !== 'f32') throw new ShapeError(`${name}: f32 matrix expected, got ${m.dtype}`);
  const n = s[s.length - 1];
  const batch = s.length === 3 ? s[0] : 1;
  if (n === 0 || batch === 0) throw new ShapeError(`${name}: empty matrix [${s}]`);
  return { n, batch };
}

// Binding placeholder for operands that a variant reads from another binding (read and read_write
// usages of one buffer may not be combined in a dispatch).
const dummies = new WeakMap<GpuContext, Tensor[]>();
export function dummy(ctx: GpuContext, slot = 0): Tensor {
  let list = dummies.get(ctx);
  if (!list) dummies.set(ctx, (list = []));
  let t = list[slot];
  if (!t || t.isDisposed) list[slot] = t = ctx.zeros([4]);
  return t;
}

/**
 * Window of a row-major matrix (or batch of them): element (i,j) at off + z·stride + p·pstride + i·ld + j
 * (transposed: + j·ld + i), z the matrix of the batch, p the pair (GemmDims.pairs; pstride default 0).
 */
export interface Window {
  t: Tensor;
  off: number;
  ld: number;
  stride: number;
  pstride?: number;
  trans?: boolean;
}

/** Triangular structure and epilogue options of gemmWindow (trsm.wgsl GEMM flags). */
export interface GemmOptions {
  alpha?: number;
  beta?: number;
  /** Compute only output tiles that touch the lower triangle (symmetric results). */
  lower?: boolean;
  /** op(A) upper and op(B) lower triangular: a tile's K loop starts at max(row0, col0) (L⁻ᵀ·L⁻¹). */
  triK?: boolean;
  aUpper?: boolean;
  aLower?: boolean;
  bLower?: boolean;
  bUpper?: boolean;
  /** Skip the whole product for matrices whose gate mode (gate[z·4+2], spd.ts) is not 0. */
  gate?: Tensor;
  /** On the window's diagonal: C_old·diagScale + diagAdd instead of C_old (needs beta ≠ 0 for diagScale). */
  diagScale?: number;
  diagAdd?: number;
  /** Force the tile (tests: the 128-tile is otherwise never chosen on CPU adapters). */
  tile?: 64 | 128;
  /** Sum each K slice separately before adding it (rounding ~ BK + K/BK additions instead of K). */
  sliced?: boolean;
  /** Names the dispatch trsm.gemm.<label> (profiles: which product costs what). */
  label?: string;
}

const gemmSpecs = new Map<string, KernelSpec>();
function gemmSpec(label?: string): KernelSpec {
  if (!label) return GEMM;
  let s = gemmSpecs.get(label);
  if (!s) gemmSpecs.set(label, (s = { ...GEMM, name: `${GEMM.name}.${label}` }));
  return s;
}

// 128×128 tiles (8×8 per thread) once this many would be launched; below, 64×64 tiles (4×4) fill the
// GPU better. An estimate (2 resident workgroups on each of the H200's 132 SMs); CPU adapters pay
// per barrier and always use the small tile with its longer K slice.
const BIG_TILES = 264;

/**
 * C = beta·C + alpha·op(A)·op(B) on windows (internal building block), batched over dims.batch
 * matrices × dims.pairs window pairs. Triangular flags (GemmOptions) shorten each tile's K loop; the
 * zeros of triangular operands must be stored. A or B may be the same tensor as C (read windows
 * must not overlap C's).
 */
export function gemmWindow(
  ctx: GpuContext, a: Window, b: Window, c: Window,
  dims: { M: number; N: number; K: number; batch: number; pairs?: number },
  o: GemmOptions = {},
): void {
  const { M, N, K, batch } = dims;
  const pairs = dims.pairs ?? 1;
  if (M <= 0 || N <= 0 || pairs <= 0) return;
  const aIsC = a.t.buffer === c.t.buffer;
  const bIsC = b.t.buffer === c.t.buffer;
  const diag = o.diagScale !== undefined || o.diagAdd !== undefined;
  const flags = (o.lower ? 1 : 0) | (o.triK || o.aUpper ? 2 : 0) | (o.triK || o.bLower ? 4 : 0) | (o.aLower ? 8 : 0)
    | (o.bUpper ? 16 : 0) | (o.gate ? 32 : 0) | (diag ? 64 : 0);
  const u = packUniforms([
    ['u32', M], ['u32', N], ['u32', K], ['u32', flags],
    ['u32', a.off], ['u32', a.ld], ['u32', a.stride], ['u32', a.pstride ?? 0],
    ['u32', b.off], ['u32', b.ld], ['u32', b.stride], ['u32', b.pstride ?? 0],
    ['u32', c.off], ['u32', c.ld], ['u32', c.stride], ['u32', c.pstride ?? 0],
    ['u32', pairs], ['f32', o.alpha ?? 1], ['f32', o.beta ?? 0], ['f32', o.diagScale ?? 1],
    ['f32', o.diagAdd ?? 0], ['u32', 0], ['u32', 0], ['u32', 0],
  ]);
  const tiles = (t: number) => Math.ceil(M / t) * Math.ceil(N / t) * batch * pairs / (o.lower ? 2 : 1);
  const big = o.tile ? o.tile === 128 : !isCpuAdapter(ctx) && tiles(128) >= BIG_TILES;
  const tm = big ? 128 : 64;
  const defines = { GEMM: true, BIG: big, TA: !!a.trans, TB: !!b.trans, A_IS_C: aIsC, B_IS_C: bIsC, SLICED: !!o.sliced };
  const d = dummy(ctx);
  ctx.dispatch(gemmSpec(o.label), { defines }, [aIsC ? d : a.t, bIsC ? d : b.t, c.t, o.gate ?? dummy(ctx, 1)], [Math.ceil(N / tm), Math.ceil(M / tm), batch * pairs], u);
}

/** Solve with one ≤NB diagonal block for `count` vectors (see trsm.wgsl, SOLVE). */
export function diagSolve(
  ctx: GpuContext, L: Tensor, X: Tensor, batch: number,
  s: {
    nb: number; count: number; trans: boolean; offL: number; ldL: number; strideL: number; offX: number; sj: number; sc: number; strideX: number;
    /** All diagonal blocks at once: `pairs` blocks, block p at + p·pstride, nb = count = min(NB, nbEnd − p·NB). */
    pairs?: number; pstrideL?: number; pstrideX?: number; nbEnd?: number;
  },
): void {
  if (s.count <= 0) return;
  const same = L.buffer === X.buffer;
  const pairs = s.pairs ?? 1;
  const u = packUniforms([
    ['u32', s.nb], ['u32', s.count], ['u32', s.trans ? 1 : 0], ['u32', s.nbEnd !== undefined ? 1 : 0],
    ['u32', s.offL], ['u32', s.ldL], ['u32', s.strideL], ['u32', s.offX],
    ['u32', s.sj], ['u32', s.sc], ['u32', s.strideX], ['u32', pairs],
    ['u32', s.pstrideL ?? 0], ['u32', s.pstrideX ?? 0], ['u32', s.nbEnd ?? 0], ['u32', 0],
  ]);
  ctx.dispatch(SOLVE, { defines: { L_IS_X: same } }, [same ? dummy(ctx) : L, X], [Math.ceil(s.count / 64), batch * pairs], u);
}

function elementwise(ctx: GpuContext, spec: KernelSpec, m: Tensor, n: number, batch: number, blocks?: Tensor): void {
  ctx.dispatch(spec, {}, [m, dummy(ctx), blocks ?? dummy(ctx, 1)], grid1d(Math.ceil((batch * n * n) / 256)), packUniforms([['u32', n], ['u32', 0], ['u32', 0], ['u32', batch * n * n]]));
}

/** Identity matrices of shape [n,n] or [batch,n,n]. */
export function eye(ctx: GpuContext, shape: readonly number[]): Tensor {
  const n = shape[shape.length - 1];
  const batch = shape.length === 3 ? shape[0] : 1;
  const t = ctx.empty(shape);
  elementwise(ctx, EYE, t, n, batch);
  return t;
}

/** In place: copy the lower triangle onto the upper one. */
export function symmetrizeInPlace(ctx: GpuContext, m: Tensor): void {
  const { n, batch } = squareDims('symmetrize', m);
  elementwise(ctx, SYMMETRIZE, m, n, batch);
}

/**
 * Blocked right-looking Cholesky M = L·Lᵀ in f32 (reads the lower triangle of m; m is not modified).
 * Per block column k (NB wide): factor the diagonal block and solve the panel below it (potrfPanel,
 * one dispatch), then update the trailing lower triangle (gemm, SYRK): 2 dispatches per block
 * column, no readback. Check `info` with checkCholesky.
 */
export function cholesky(ctx: GpuContext, m: Tensor): { L: Tensor; info: Tensor } {
  const { n, batch } = squareDims('cholesky', m);
  const L = ctx.empty(m.shape);
  ctx.copy(m, L);
  const info = ctx.zeros([batch], 'u32');
  const blocks = ctx.empty([batch * Math.ceil(n / NB) * NB * NB]);
  const nn = n * n;
  for (let k = 0; k < n; k += NB) {
    const nb = Math.min(NB, n - k);
    const rows = n - k - nb;
    ctx.dispatch(POTRF, {}, [L, info, blocks], [Math.max(1, Math.ceil(rows / 256)), batch], packUniforms([['u32', n], ['u32', k], ['u32', nb], ['u32', batch * nn]]));
    if (rows <= 0) continue;
    const panel: Window = { t: L, off: (k + nb) * n + k, ld: n, stride: nn };
    gemmWindow(ctx, panel, { ...panel, trans: true }, { t: L, off: (k + nb) * (n + 1), ld: n, stride: nn },
      { M: rows, N: rows, K: nb, batch }, { alpha: -1, beta: 1, lower: true, label: 'syrk' });
  }
  elementwise(ctx, FINALIZE, L, n, batch, blocks);
  blocks.dispose();
  return { L, info };
}

/** Read `info` (one readback) and throw NotPositiveDefiniteError naming the first failing pivot. */
export async function checkCholesky(ctx: GpuContext, info: Tensor): Promise<void> {
  const v = await ctx.readU32(info);
  for (let b = 0; b < v.length; b++) if (v[b] !== 0) throw new NotPositiveDefiniteError(v[b] - 1, b);
}

export interface TrsmOptions {
  /** L is lower triangular (the only storage supported; default true). */
  lower?: boolean;
  /** Solve Lᵀ·X = B instead of L·X = B. */
  transpose?: boolean;
  side?: 'left';
}

/**
 * Blocked triangular solve with a lower-triangular L ([n,n] or [batch,n,n]; only its lower triangle
 * is read): L·X = B or Lᵀ·X = B. b: [n], [n,k] or [batch,n,k] (a 2-D L broadcasts). Returns a new X.
 * `lowerRhs` (internal): B is lower triangular (e.g. I), so the forward solve skips the zero columns.
 */
export function trsm(ctx: GpuContext, L: Tensor, b: Tensor, opts: TrsmOptions & { lowerRhs?: boolean } = {}): Tensor {
  if (opts.lower === false) throw new ShapeError('trsm: only lower-triangular L is supported (use transpose for Lᵀ)');
  if (opts.side && opts.side !== 'left') throw new ShapeError(`trsm: side '${opts.side}' is not supported`);
  const { n, batch: lb } = squareDims('trsm', L);
  const s = b.shape;
  if (b.dtype !== 'f32') throw new ShapeError(`trsm: f32 right-hand side expected, got ${b.dtype}`);
  const k = s.length === 1 ? 1 : s[s.length - 1];
  const batch = s.length === 3 ? s[0] : 1;
  if (s.length < 1 || s.length > 3 || (s.length === 1 ? s[0] : s[s.length - 2]) !== n || k === 0) {
    throw new ShapeError(`trsm: b must be [${n}], [${n},k] or [batch,${n},k], got [${s}] for L [${L.shape}]`);
  }
  if (lb !== 1 && lb !== batch) throw new ShapeError(`trsm: batch of L [${L.shape}] and b [${s}] differ`);
  const X = ctx.empty(s);
  ctx.copy(b, X);
  const strideL = lb === 1 && L.shape.length === 2 ? 0 : n * n;
  const strideX = n * k;
  const blocks: number[] = [];
  for (let st = 0; st < n; st += NB) blocks.push(st);
  if (!opts.transpose) {
    for (const st of blocks) {
      const nb = Math.min(NB, n - st);
      const cols = opts.lowerRhs ? Math.min(k, st + nb) : k;
      diagSolve(ctx, L, X, batch, { nb, count: cols, trans: false, offL: st * n + st, ldL: n, strideL, offX: st * k, sj: k, sc: 1, strideX });
      gemmWindow(ctx, { t: L, off: (st + nb) * n + st, ld: n, stride: strideL }, { t: X, off: st * k, ld: k, stride: strideX },
        { t: X, off: (st + nb) * k, ld: k, stride: strideX }, { M: n - st - nb, N: cols, K: nb, batch }, { alpha: -1, beta: 1 });
    }
  } else {
    for (const st of blocks.reverse()) {
      const nb = Math.min(NB, n - st);
      diagSolve(ctx, L, X, batch, { nb, count: k, trans: true, offL: st * n + st, ldL: n, strideL, offX: st * k, sj: k, sc: 1, strideX });
      gemmWindow(ctx, { t: L, off: st * n, ld: n, stride: strideL, trans: true }, { t: X, off: st * k, ld: k, stride: strideX },
        { t: X, off: 0, ld: k, stride: strideX }, { M: st, N: k, K: nb, batch }, { alpha: -1, beta: 1 });
    }
  }
  return X;
}
