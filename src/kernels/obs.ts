import source from '../../shaders/obs.wgsl?raw';
import { packUniforms, type GpuContext, type KernelSpec } from '../gpu/context';
import type { Tensor } from '../gpu/tensor';
import { ShapeError } from '../gpu/errors';
import { foldedGrid } from './elementwise';

/*
 * LLM Surgeon building blocks (see shaders/obs.wgsl for the formulas). Each wrapper records one
 * dispatch and never reads back.
 */

const WG = 256; // threads per workgroup (1-D entries of obs.wgsl)
const TILE = 16; // builds: 16×16 threads per workgroup
const spec = (entry: string, bindings: KernelSpec['bindings']): KernelSpec => ({ name: `obs.${entry}`, source, entry, bindings, uniform: true });
const v = (entry: string) => ({ defines: { [entry.toUpperCase()]: true } });
const NZ = spec('nzflags', ['read', 'write']);
const EC = spec('elemcost', ['read', 'read', 'read', 'write']);
const RC = spec('rcfinal', ['read', 'read', 'read', 'write']);
const DS = spec('diagscat', ['read', 'read', 'write']);
const ZS = spec('zerosel', ['write', 'read', 'read', 'read']);
const GC = spec('groupcost', ['read', 'write', 'write']);
const GM = spec('groupmask', ['read', 'read', 'read', 'write']);
const BS = spec('builds', ['read', 'read', 'read', 'read', 'write']);
const GQ = spec('gatherq', ['read', 'read', 'read', 'read', 'read', 'read', 'write']);
const SQ = spec('scatterq', ['read', 'read', 'read', 'write']);
const DR = spec('divrows', ['read', 'read', 'write']);

const u4 = (a: number, b: number, c: number, d: number) => packUniforms([['u32', a], ['u32', b], ['u32', c], ['u32', d]]);
const grid = (n: number) => foldedGrid(Math.ceil(n / WG));

function dims2(op: string, t: Tensor): [number, number] {
  if (t.shape.length !== 2) throw new ShapeError(`${op}: 2-D tensor expected, got [${t.shape}]`);
  return [t.shape[0], t.shape[1]];
}

/** Row/column "has a nonzero" flags of W' [R, C1] written into out[offR..offR+R) and out[offC..offC+C1). */
export function nonzeroFlags(ctx: GpuContext, Wp: Tensor, out: Tensor, offR: number, offC: number): void {
  const [R, C1] = dims2('nonzeroFlags', Wp);
  if (offR + R > out.size || offC + C1 > out.size) throw new ShapeError('nonzeroFlags: offsets outside out');
  ctx.dispatch(NZ, v('nzflags'), [Wp, out], grid(R + C1), u4(R, C1, offR, offC));
}

/** Element costs [R, C1]: mode 'divide' (½w²)/(rf·cf), 'multiply' ((½w²)·rf)·cf; 0 where rf or cf is 0; NaN → 0. */
export function elementCost(ctx: GpuContext, Wp: Tensor, rf: Tensor, cf: Tensor, mode: 'divide' | 'multiply'): Tensor {
  const [R, C1] = dims2('elementCost', Wp);
  if (rf.size !== R || cf.size !== C1) throw new ShapeError(`elementCost: factors must be [${R}] and [${C1}]`);
  const out = ctx.empty([R, C1]);
  ctx.dispatch(EC, v('elemcost'), [Wp, rf, cf, out], grid(R * C1), u4(R, C1, mode === 'divide' ? 0 : 1, 0));
  return out;
}

export type RcMode = 'divide-diag' | 'times-diag' | 'half' | 'sqrt';
const RC_MODES: Record<RcMode, number> = { 'divide-diag': 0, 'times-diag': 1, half: 2, sqrt: 3 };

/** out[off + idx[i]] = f(q[i], M[i,i]) (structured row/column costs, see obs.wgsl). M is [n,n] (unused for half/sqrt). */
export function rowColFinal(ctx: GpuContext, q: Tensor, M: Tensor, idx: Tensor, out: Tensor, off: number, mode: RcMode): void {
  const n = q.size;
  if (idx.dtype !== 'u32' || idx.size < n) throw new ShapeError('rowColFinal: idx must be u32 with one entry per q');
  if ((mode === 'divide-diag' || mode === 'times-diag') && M.size !== n * n) throw new ShapeError(`rowColFinal: M must be [${n},${n}]`);
  ctx.dispatch(RC, v('rcfinal'), [q, M, idx, out], grid(n), u4(n, off, RC_MODES[mode], 0));
}

/** out[idx[i]] = M[i,i] for M [n,n]. */
export function diagScatter(ctx: GpuContext, M: Tensor, idx: Tensor, out: Tensor): void {
  const [n] = dims2('diagScatter', M);
  ctx.dispatch(DS, v('diagscat'), [M, idx, out], grid(n), u4(n, 0, 0, 0));
}

/** W'[r,c] ← 0 where rowSel[r], colSel[c] or mask[r,c] is nonzero (mask optional). */
export function zeroSelected(ctx: GpuContext, Wp: Tensor, rowSel: Tensor, colSel: Tensor, mask?: Tensor): void {
  const [R, C1] = dims2('zeroSelected', Wp);
  if (rowSel.size !== R || colSel.size !== C1 || (mask && mask.size !== R * C1)) throw new ShapeError('zeroSelected: selection sizes do not match W\'');
  ctx.dispatch(ZS, v('zerosel'), [Wp, rowSel, colSel, mask ?? rowSel], grid(R * C1), u4(R, C1, mask ? 1 : 0, 0));
}

/**
 * N:M group costs over the C input columns of cost [R, C1] (C1 = C + 1 with a bias column, which is never
 * grouped; C1 = C without): gcost [R, C/m], pick [R, C/m] u32 bit sets. Groups start at column 0, so they
 * are the real column groups whether or not a bias column follows.
 */
export function groupCosts(ctx: GpuContext, cost: Tensor, n: number, m: number, C = cost.shape[1] - 1): { gcost: Tensor; pick: Tensor } {
  const [R, C1] = dims2('groupCosts', cost);
  if (C !== C1 && C !== C1 - 1) throw new ShapeError(`groupCosts: ${C} input columns do not fit cost [${cost.shape}] (C or C + 1 columns)`);
  if (!(Number.isInteger(n) && Number.isInteger(m) && n >= 1 && n < m && m <= 32)) throw new ShapeError(`groupCosts: need 1 ≤ n < m ≤ 32, got ${n}:${m}`);
  if (C % m !== 0) throw new ShapeError(`groupCosts: ${C} input columns are not divisible by m = ${m}`);
  const groups = C / m;
  const gcost = ctx.empty([R, groups]);
  const pick = ctx.empty([R, groups], 'u32');
  ctx.dispatch(GC, v('groupcost'), [cost, gcost, pick], grid(R * groups), packUniforms([['u32', R], ['u32', C1], ['u32', groups], ['u32', n], ['u32', m], ['u32', 0], ['u32', 0], ['u32', 0]]));
  return { gcost, pick };
}

/** Mask [R, C1] (1 = prune) of the picked entries of every group whose cost is ≤ tau[0]; a bias column is 0. */
export function groupMask(ctx: GpuContext, gcost: Tensor, pick: Tensor, tau: Tensor, C1: number, m: number): Tensor {
  const [R, groups] = dims2('groupMask', gcost);
  const mask = ctx.zeros([R, C1]);
  ctx.dispatch(GM, v('groupmask'), [gcost, pick, tau, mask], grid(R * groups), u4(R, C1, groups, m));
  return mask;
}

/** S [n,n] = G⁻¹[qr,qr] ∘ A⁻¹[qc,qc] for entries e0..e0+n of the (qr, qc) lists. */
export function buildS(ctx: GpuContext, Ginv: Tensor, Ainv: Tensor, qr: Tensor, qc: Tensor, e0: number, n: number): Tensor {
  const [nr] = dims2('buildS', Ginv);
  const [nc] = dims2('buildS', Ainv);
  const S = ctx.empty([n, n]);
  ctx.dispatch(BS, v('builds'), [Ginv, Ainv, qr, qc, S], [Math.ceil(n / TILE), Math.ceil(n / TILE)], u4(n, e0, nr, nc));
  return S;
}

/** rhs [n] = W_l[q] (+ E[q]) (independent: divided by G⁻¹_rr·A⁻¹_cc) for entries e0..e0+n. */
export function gatherEntries(ctx: GpuContext, Wl: Tensor, E: Tensor | null, Ginv: Tensor, Ainv: Tensor, qr: Tensor, qc: Tensor, e0: number, n: number, independent: boolean): Tensor {
  const [nr, nc] = dims2('gatherEntries', Wl);
  const rhs = ctx.empty([n]);
  const flags = (E ? 1 : 0) | (independent ? 2 : 0);
  ctx.dispatch(GQ, v('gatherq'), [Wl, E ?? Wl, Ginv, Ainv, qr, qc, rhs], grid(n),
    packUniforms([['u32', n], ['u32', e0], ['u32', nr], ['u32', nc], ['u32', flags], ['u32', 0], ['u32', 0], ['u32', 0]]));
  return rhs;
}

/** X [k, nc] (pre-zeroed) ← x at (qr − r0, qc) for entries e0..e0+n. */
export function scatterEntries(ctx: GpuContext, x: Tensor, qr: Tensor, qc: Tensor, X: Tensor, e0: number, n: number, r0: number): void {
  const [, nc] = dims2('scatterEntries', X);
  ctx.dispatch(SQ, v('scatterq'), [x, qr, qc, X], grid(n), u4(n, e0, r0, nc));
}

/** X [k, nc] = B / diag(M) row-wise (M [k,k]). */
export function divideRows(ctx: GpuContext, B: Tensor, M: Tensor): Tensor {
  const [k, nc] = dims2('divideRows', B);
  if (M.size !== k * k) throw new ShapeError(`divideRows: M must be [${k},${k}]`);
  const X = ctx.empty([k, nc]);
  ctx.dispatch(DR, v('divrows'), [B, M, X], grid(k * nc), u4(k, nc, 0, 0));
  return X;
}
