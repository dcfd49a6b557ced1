import source from '../../shaders/xent.wgsl?raw';
import { grid1d, packUniforms, type GpuContext, type KernelSpec } from '../gpu/context';
import { Tensor } from '../gpu/tensor';
import { LimitExceededError, ShapeError } from '../gpu/errors';
import { matmul } from './matmul';

/** Label value meaning "no label at this position" (e.g. the last token of a sequence). */
export const NO_LABEL = 0xffffffff;

const LSE: KernelSpec = { name: 'xent.lse', source, entry: 'lse_rows', bindings: ['read', 'read', 'write', 'write'], uniform: true };
const GRAD: KernelSpec = { name: 'xent.grad', source, entry: 'grad', bindings: ['write', 'read', 'read'], uniform: true };
const ARGMAX: KernelSpec = { name: 'xent.argmax', source, entry: 'argmax', bindings: ['read', 'read', 'write'], uniform: true };
// Default logits budget per chunk (also capped by maxStorageBufferBindingSize): 512 MiB = 2670 rows of
// V = 50272, so a 2048-token window is one chunk. Chunks should be large: on the H200 the head-gradient
// matmul [chunk, V]·[V, 768] took ~9.2 ms for every chunk size from 256 to 2048 rows (its K = V loop
// bounds it; chunk·d outputs are too few to fill the GPU), so time grows with the number of chunks.
export const DEFAULT_CHUNK_BYTES = 512 << 20;

/** Rows per chunk used when the caller does not choose: as many as fit the logits budget. */
export function defaultChunkRows(ctx: GpuContext, V: number): number {
  const budget = Math.min(DEFAULT_CHUNK_BYTES, ctx.limits.maxStorageBufferBindingSize);
  return Math.max(1, Math.floor(budget / (4 * V)));
}

interface RowOpts { rowOffset?: number; seed?: number; gradScale?: number; useMask?: boolean }

function u(rows: number, V: number, o: RowOpts): ArrayBuffer {
  return packUniforms([
    ['u32', rows], ['u32', V], ['u32', o.rowOffset ?? 0], ['u32', (o.seed ?? 0) >>> 0],
    ['f32', o.gradScale ?? 1], ['u32', o.useMask ? 1 : 0], ['u32', 0], ['u32', 0],
  ]);
}

function logitsDims(name: string, logits: Tensor): [number, number] {
  if (logits.shape.length !== 2) throw new ShapeError(`${name}: logits must be [rows, V], got [${logits.shape}]`);
  return [logits.shape[0], logits.shape[1]];
}

function checkRows(name: string, t: Tensor, need: number, what: string, dtype: 'f32' | 'u32'): void {
  if (t.size < need || t.dtype !== dtype) throw new ShapeError(`${name}: ${what} must be ${dtype} with ≥ ${need} entries, got ${t.dtype} [${t.shape}]`);
}

/**
 * Chunk step 1: for chunk rows r, lse[rowOffset+r] = logsumexp(logits[r]) and loss[rowOffset+r] =
 * lse − logits[r, label] (0 without label). labels, loss, lse are full-length [N] tensors.
 */
export function xentRows(ctx: GpuContext, logits: Tensor, labels: Tensor, loss: Tensor, lse: Tensor, rowOffset = 0): void {
  const [rows, V] = logitsDims('xentRows', logits);
  for (const [t, w, dt] of [[labels, 'labels', 'u32'], [loss, 'loss', 'f32'], [lse, 'lse', 'f32']] as const) checkRows('xentRows', t, rowOffset + rows, w, dt);
  ctx.dispatch(LSE, { defines: { LSE: true } }, [logits, labels, loss, lse], grid1d(rows), u(rows, V, { rowOffset }));
}

/** Chunk step 2, in place: logits ← gradScale·(softmax − onehot(label)); rows without label become 0. */
export function xentGradRows(ctx: GpuContext, logits: Tensor, labels: Tensor, lse: Tensor, opts: { rowOffset?: number; gradScale?: number } = {}): void {
  const [rows, V] = logitsDims('xentGradRows', logits);
  checkRows('xentGradRows', labels, (opts.rowOffset ?? 0) + rows, 'labels', 'u32');
  checkRows('xentGradRows', lse, (opts.rowOffset ?? 0) + rows, 'lse', 'f32');
  ctx.dispatch(GRAD, { defines: { GRAD: true } }, [logits, labels, lse], grid1d(Math.ceil((rows * V) / 256)), u(rows, V, opts));
}

export interface ArgmaxOptions {
  /** Write into out[rowOffset + r] (out: u32, ≥ rowOffset + rows entries). */
  out?: Tensor;
  rowOffset?: number;
  /** Rows whose mask label is NO_LABEL get NO_LABEL (mask indexed like out). */
  mask?: Tensor;
}

/** Row-wise argmax of logits [rows, V] → u32 [rows] (lowest index on ties): greedy decoding. */
export function argmaxRows(ctx: GpuContext, logits: Tensor, opts: ArgmaxOptions = {}): Tensor {
  return pick(ctx, logits, opts, undefined);
}

/**
 * One sample per row from softmax(logits) (Gumbel-max with a counter-based hash of
 * (seed, rowOffset + r, column)): deterministic for a seed and independent of the chunking.
 */
export function sampleLabels(ctx: GpuContext, logits: Tensor, seed: number, opts: ArgmaxOptions = {}): Tensor {
  if (!Number.isInteger(seed)) throw new ShapeError(`sampleLabels: seed must be an integer, got ${seed}`);
  return pick(ctx, logits, opts, seed);
}

function pick(ctx: GpuContext, logits: Tensor, opts: ArgmaxOptions, seed: number | undefined): Tensor {
  const [rows, V] = logitsDims('argmax', logits);
  const off = opts.rowOffset ?? 0;
  if (opts.out) checkRows('argmax', opts.out, off + rows, 'out', 'u32');
  if (opts.mask) checkRows('argmax', opts.mask, off + rows, 'mask', 'u32');
  const out = opts.out ?? ctx.empty([off + rows], 'u32');
  const defines = { ARGMAX: true, GUMBEL: seed !== undefined };
  ctx.dispatch(ARGMAX, { defines }, [logits, opts.mask ?? logits, out], grid1d(rows), u(rows, V, { rowOffset: off, seed, useMask: !!opts.mask }));
  return out;
}

export interface CrossEntropyOptions {
  /** Rows of hidden per chunk: peak extra memory is chunkRows × V logits. Default: defaultChunkRows(). */
  chunkRows?: number;
  /** Also return dHidden = gradScale·(softmax − onehot)·E. */
  grad?: boolean;
  /** Scale of the gradient: 1 = gradient of the summed loss; pass 1/count for the mean. Default 1. */
  gradScale?: number;
  /** Replace every real label by a sample from the model's softmax (true Fisher); NO_LABEL rows stay. */
  sampleSeed?: number;
}

export interface CrossEntropyResult {
  /** Per-row loss [N] (0 for NO_LABEL rows). */
  loss: Tensor;
  /** Per-row log-sum-exp of the logits [N]. */
  lse: Tensor;
  dHidden?: Tensor;
  /** The sampled labels [N] when sampleSeed was given. */
  sampled?: Tensor;
}

/**
 * Cross-entropy of hidden [N, d] against the tied head E [V, d] with labels [N] (u32), chunked over
 * rows so that at most chunkRows × V logits exist at once. All work is recorded; nothing is read back.
 */
export function crossEntropy(ctx: GpuContext, hidden: Tensor, E: Tensor, labels: Tensor, opts: CrossEntropyOptions = {}): CrossEntropyResult {
  if (hidden.shape.length !== 2 || E.shape.length !== 2 || hidden.shape[1] !== E.shape[1]) {
    throw new ShapeError(`crossEntropy: hidden [N, d] and E [V, d] expected, got [${hidden.shape}] and [${E.shape}]`);
  }
  const [N, d] = hidden.shape;
  const V = E.shape[0];
  if (labels.dtype !== 'u32' || labels.size !== N) throw new ShapeError(`crossEntropy: labels must be u32 [${N}], got ${labels.dtype} [${labels.shape}]`);
  const chunk = Math.min(opts.chunkRows ?? defaultChunkRows(ctx, V), N);
  if (!Number.isInteger(chunk) || chunk < 1) throw new ShapeError(`crossEntropy: chunkRows must be a positive integer, got ${opts.chunkRows}`);
  const maxBind = ctx.limits.maxStorageBufferBindingSize;
  if (chunk * V * 4 > maxBind) {
    throw new LimitExceededError('maxStorageBufferBindingSize', chunk * V * 4, maxBind, `a chunk of ${chunk} rows × ${V} logits; use chunkRows ≤ ${Math.floor(maxBind / (4 * V))}`);
  }
  const loss = ctx.empty([N]), lse = ctx.empty([N]);
  const dHidden = opts.grad ? ctx.empty([N, d]) : undefined;
  const sampled = opts.sampleSeed !== undefined ? ctx.empty([N], 'u32') : undefined;
  const lab = sampled ?? labels;
  const single = chunk === N;
  const logitsBuf = ctx.empty([chunk, V]);
  const hBuf = single ? hidden : ctx.empty([chunk, d]);
  const dBuf = dHidden && !single ? ctx.empty([chunk, d]) : dHidden;
  for (let r0 = 0; r0 < N; r0 += chunk) {
    const c = Math.min(chunk, N - r0);
    // Non-owning views of the chunk buffers with this chunk's row count (the last chunk may be short).
    const z = c === chunk ? logitsBuf : new Tensor(ctx, logitsBuf.buffer, [c, V], 'f32', false);
    let h = hidden;
    if (!single) {
      h = c === chunk ? hBuf : new Tensor(ctx, hBuf.buffer, [c, d], 'f32', false);
      ctx.copy(hidden, h, r0 * d * 4, 0, c * d * 4);
    }
    matmul(ctx, h, E, { transB: true, out: z });
    if (sampled) sampleLabels(ctx, z, opts.sampleSeed!, { out: sampled, rowOffset: r0, mask: labels });
    xentRows(ctx, z, lab, loss, lse, r0);
    if (dHidden && dBuf) {
      xentGradRows(ctx, z, lab, lse, { rowOffset: r0, gradScale: opts.gradScale });
      const dh = single ? dHidden : c === chunk ? dBuf : new Tensor(ctx, dBuf.buffer, [c, d], 'f32', false);
      matmul(ctx, z, E, { out: dh });
      if (!single) ctx.copy(dh, dHidden, 0, r0 * d * 4, c * d * 4);
    }
  }
  logitsBuf.dispose();
  if (!single) {
    hBuf.dispose();
    if (dBuf && dBuf !== dHidden) dBuf.dispose();
  }
  return { loss, lse, dHidden, sampled };
}
