/**
 * Wrappers of shaders/sparsegpt.wgsl: the kernels of the peer methods (SparseGPT, Wanda). Each records
 * dispatches only (no readback). Selections are exact with ties broken by the lower index.
 */

import source from '../../../shaders/sparsegpt.wgsl?raw';
import { grid1d, packUniforms, type GpuContext, type KernelSpec } from '../../gpu/context';
import { ShapeError } from '../../gpu/errors';
import type { Tensor } from '../../gpu/tensor';
import { dummy } from '../../kernels/cholesky';

const spec = (name: string, entry: string, bindings: KernelSpec['bindings']): KernelSpec => ({ name: `peers.${name}`, source, entry, bindings, uniform: true });
const PREPARE = spec('prepare', 'prepareDead', ['write', 'write']);
const SCORES = spec('scores', 'blockScores', ['read', 'read', 'write']);
const SELECT = spec('select', 'selectK', ['read', 'write']);
const RANK = spec('rank', 'rankSelect', ['read', 'write']);
const REVERSE = spec('reverse', 'reverseSquare', ['read', 'write']);
const ZERO = spec('zero', 'zeroFlagged', ['read', 'write']);
const BLOCK = spec('block', 'obsBlock', ['write', 'read', 'read', 'write']);

// Segments up to this length use the per-entry rank kernel (len compares per entry; beyond it the
// radix kernel's fixed cost per segment is cheaper).
const RANK_MAX = 1024;

/** Largest SparseGPT block (private row array of obsBlock; SparseGPT's default blocksize). */
export const MAX_BLOCK = 128;

const u4 = (a: number, b = 0, c = 0, d = 0): ArrayBuffer => packUniforms([['u32', a], ['u32', b], ['u32', c], ['u32', d]]);

function dims2(op: string, t: Tensor): [number, number] {
  if (t.shape.length !== 2 || t.dtype !== 'f32') throw new ShapeError(`${op}: 2-D f32 tensor expected, got [${t.shape}] ${t.dtype}`);
  return [t.shape[0], t.shape[1]];
}

/** SparseGPT dead inputs: where H_ii = 0 set H_ii = 1 and zero column i of W [R, C] (both in place). */
export function prepareDead(ctx: GpuContext, H: Tensor, W: Tensor): void {
  const [R, C] = dims2('prepareDead', W);
  const [n, n2] = dims2('prepareDead', H);
  if (n !== C || n2 !== C) throw new ShapeError(`prepareDead: H must be [${C}, ${C}] for W [${R}, ${C}], got [${H.shape}]`);
  ctx.dispatch(PREPARE, { defines: { PREPARE: true } }, [H, W], [Math.ceil(C / 64)], u4(R, C));
}

/** J·M·J (both indices reversed) of a square matrix, into a new tensor. */
export function reverseSquare(ctx: GpuContext, M: Tensor): Tensor {
  const [n, n2] = dims2('reverseSquare', M);
  if (n !== n2) throw new ShapeError(`reverseSquare: square matrix expected, got [${M.shape}]`);
  const out = ctx.empty([n, n]);
  ctx.dispatch(REVERSE, { defines: { REVERSE: true } }, [M, out], grid1d(Math.ceil((n * n) / 256)), u4(n));
  return out;
}

/**
 * Scores of the block columns c0..c0+count of W [R, C] → S [R·count] (row-major):
 * SparseGPT w²/U_jj² (v = U, the upper Cholesky factor of H⁻¹, [C, C]); Wanda |w|·√v_j (v = Σ_t x_j², [C]).
 */
export function blockScores(ctx: GpuContext, W: Tensor, v: Tensor, c0: number, count: number, wanda: boolean, out?: Tensor): Tensor {
  const [R, C] = dims2('blockScores', W);
  if (v.size !== (wanda ? C : C * C)) throw new ShapeError(`blockScores: ${wanda ? 'column norms' : 'U'} has ${v.size} entries for W [${R}, ${C}]`);
  if (!(c0 >= 0 && count >= 1 && c0 + count <= C)) throw new ShapeError(`blockScores: columns ${c0}..${c0 + count} outside W [${R}, ${C}]`);
  const S = out ?? ctx.empty([R * count]);
  if (S.size < R * count) throw new ShapeError(`blockScores: out has ${S.size} < ${R * count} entries`);
  ctx.dispatch(SCORES, { defines: { SCORES: true, WANDA: wanda } }, [W, v, S], grid1d(Math.ceil((R * count) / 256)), u4(R, C, c0, count));
  return S;
}

/**
 * Flags (u32, 1 = selected) of the exact k smallest entries of each of `segments` segments of `len`
 * consecutive entries of S (segment s starts at s·len); ties by lower index. 1 ≤ k ≤ len.
 */
export function selectSmallest(ctx: GpuContext, S: Tensor, len: number, segments: number, k: number, out?: Tensor): Tensor {
  if (!(Number.isInteger(k) && k >= 1 && k <= len)) throw new ShapeError(`selectSmallest: k = ${k} outside 1..${len}`);
  if (S.size < len * segments) throw new ShapeError(`selectSmallest: S has ${S.size} < ${len * segments} entries`);
  const flags = out ?? ctx.empty([len * segments], 'u32');
  if (len <= RANK_MAX) ctx.dispatch(RANK, { defines: { RANK: true } }, [S, flags], grid1d(Math.ceil((len * segments) / 256)), u4(len, len, k, segments));
  else ctx.dispatch(SELECT, { defines: { SELECT: true } }, [S, flags], grid1d(segments), u4(len, len, k, segments));
  return flags;
}

/** n:m flags of S (groups of m consecutive entries): the n smallest of every group (ties: lower index). */
export function nmFlags(ctx: GpuContext, S: Tensor, n: number, m: number): Tensor {
  if (S.size % m !== 0 || m > RANK_MAX) throw new ShapeError(`nmFlags: ${S.size} entries are not groups of ${m} (m ≤ ${RANK_MAX})`);
  return selectSmallest(ctx, S, m, S.size / m, n);
}

/** W[e] = +0 where flags[e] ≠ 0 (in place). */
export function zeroFlagged(ctx: GpuContext, flags: Tensor, W: Tensor): void {
  if (flags.size !== W.size) throw new ShapeError(`zeroFlagged: ${flags.size} flags for ${W.size} weights`);
  ctx.dispatch(ZERO, { defines: { ZERO: true } }, [flags, W], grid1d(Math.ceil(W.size / 256)), u4(W.size));
}

/**
 * SparseGPT's sequential column loop over block c0..c0+count of W [R, C] (in place): masked columns
 * become 0 and the OBS error err = (w − q)/U_ii is propagated inside the block; Err [R, MAX_BLOCK]
 * receives the errors for the lazy update. Mask: `flags` [R·count] (unstructured) or n:m decided in
 * the kernel from the running weights (`nm`; m divides c0 and count).
 */
export function obsBlock(
  ctx: GpuContext, W: Tensor, U: Tensor, Err: Tensor, c0: number, count: number,
  mask: { flags: Tensor } | { n: number; m: number },
): void {
  const [R, C] = dims2('obsBlock', W);
  if (count < 1 || count > MAX_BLOCK || c0 + count > C) throw new ShapeError(`obsBlock: block ${c0}..${c0 + count} invalid for W [${R}, ${C}] (at most ${MAX_BLOCK} columns)`);
  if (Err.size < R * MAX_BLOCK) throw new ShapeError(`obsBlock: Err must hold [${R}, ${MAX_BLOCK}]`);
  const nm = 'm' in mask;
  if (nm && (c0 % mask.m !== 0 || count % mask.m !== 0)) throw new ShapeError(`obsBlock: n:m groups of ${mask.m} must align with block ${c0}..${c0 + count}`);
  const u = packUniforms([['u32', R], ['u32', C], ['u32', c0], ['u32', count], ['u32', nm ? mask.n : 0], ['u32', nm ? mask.m : 1], ['u32', 0], ['u32', 0]]);
  ctx.dispatch(BLOCK, { defines: { BLOCK: true, BLOCK_NM: nm } }, [W, U, nm ? dummy(ctx) : mask.flags, Err], grid1d(Math.ceil(R / 64)), u);
}
