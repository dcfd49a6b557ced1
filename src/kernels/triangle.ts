/**
 * Lower triangles packed in place (shaders/triangle.wgsl): a budgeted shot parks its damped inverses in
 * host memory between the cost pass and the update pass (surgeon/curvature.ts), and they are symmetric,
 * so only n(n+1)/2 entries cross the bus each way and no host loop repacks them.
 */
import source from '../../shaders/triangle.wgsl?raw';
import { packUniforms, type GpuContext, type KernelSpec } from '../gpu/context';
import type { Tensor } from '../gpu/tensor';
import { ShapeError } from '../gpu/errors';
import { symmetrizeInPlace } from './cholesky';

const PACK: KernelSpec = { name: 'triangle.pack', source, entry: 'pack', bindings: ['write'], uniform: true };
const UNPACK: KernelSpec = { name: 'triangle.unpack', source, entry: 'unpack', bindings: ['write'], uniform: true };

/** Entries of a packed lower triangle of order n. */
export const triangleSize = (n: number): number => (n * (n + 1)) / 2;

// From order 3 a single row's packed place never overlaps its full place (triangleBlocks); row indices
// and tri(i) stay in u32, and one row block fits the workgroup grid's y dimension, up to MAX_N.
const MIN_N = 3, MAX_N = 46340;

function order(what: string, m: Tensor): number {
  const [n, n2] = m.shape;
  if (m.shape.length !== 2 || n !== n2 || m.dtype !== 'f32') throw new ShapeError(`${what}: a square f32 matrix is expected, got [${m.shape}] ${m.dtype}`);
  if (n < MIN_N || n > MAX_N) throw new ShapeError(`${what}: order ${n} is outside ${MIN_N}…${MAX_N}`);
  return n;
}

/**
 * Row blocks [r0, r1) in which a row's move never overlaps another's: tri(r1) ≤ r0·n, or a single row
 * (whose packed place lies at least one row length below its full place when n ≥ 3). Row 0 never moves.
 */
export function triangleBlocks(n: number): Array<[number, number]> {
  const tri = triangleSize;
  const out: Array<[number, number]> = [];
  for (let r0 = 1; r0 < n;) {
    let r1 = Math.min(n, Math.floor((Math.sqrt(8 * r0 * n + 1) - 1) / 2));
    while (r1 > r0 && tri(r1) > r0 * n) r1--;
    r1 = Math.max(r1, r0 + 1);
    out.push([r0, r1]);
    r0 = r1;
  }
  return out;
}

function run(ctx: GpuContext, spec: KernelSpec, m: Tensor, n: number, blocks: Array<[number, number]>): void {
  const x = Math.ceil(n / 256);
  for (const [r0, r1] of blocks) ctx.dispatch(spec, {}, [m], [x, r1 - r0], packUniforms([['u32', n], ['u32', r0], ['u32', 0], ['u32', 0]]));
}

/** In place: the first n(n+1)/2 entries of m become its lower triangle, row by row (the rest is garbage). */
export function packLowerInPlace(ctx: GpuContext, m: Tensor): void {
  const n = order('packLowerInPlace', m);
  run(ctx, PACK, m, n, triangleBlocks(n));
}

/** In place, the inverse of packLowerInPlace followed by a mirror: m becomes the full symmetric matrix. */
export function unpackSymmetricInPlace(ctx: GpuContext, m: Tensor): void {
  const n = order('unpackSymmetricInPlace', m);
  run(ctx, UNPACK, m, n, triangleBlocks(n).reverse()); // bottom rows first: their places are free
  symmetrizeInPlace(ctx, m);
}

/** The lower triangle of a symmetric n×n matrix, row by row (n(n+1)/2 entries): half the host memory, exact. */
export function packLower(m: Float32Array, n: number): Float32Array {
  const out = new Float32Array(triangleSize(n));
  for (let i = 0, o = 0; i < n; o += i + 1, i++) out.set(m.subarray(i * n, i * n + i + 1), o);
  return out;
}

/**
 * Read a symmetric matrix's lower triangle, packed. `consume`: m is freed after this (it is packed in
 * place on the GPU and half the bytes cross back); else it stays intact (read whole, packed on the host).
 */
export async function readLowerTriangle(ctx: GpuContext, m: Tensor, consume: boolean): Promise<Float32Array> {
  const n = m.shape[0];
  if (!consume || n < MIN_N) return packLower(await ctx.readF32(m), n);
  packLowerInPlace(ctx, m);
  return new Float32Array(await ctx.readBytes(m.buffer, 0, 4 * triangleSize(n)));
}

/** Upload a packed lower triangle as the full symmetric n×n matrix (expanded and mirrored on the GPU). */
export function uploadSymmetric(ctx: GpuContext, packed: Float32Array, n: number): Tensor {
  if (packed.length !== triangleSize(n)) throw new ShapeError(`uploadSymmetric: ${packed.length} entries is not a triangle of order ${n}`);
  if (n < MIN_N) { // below the in-place orders: expand on the host
    const full = new Float32Array(n * n);
    for (let i = 0, o = 0; i < n; o += i + 1, i++) full.set(packed.subarray(o, o + i + 1), i * n);
    const t = ctx.upload(full, [n, n]);
    symmetrizeInPlace(ctx, t);
    return t;
  }
  const t = ctx.empty([n, n]);
  ctx.write(t, packed);
  unpackSymmetricInPlace(ctx, t);
  return t;
}
