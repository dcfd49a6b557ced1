/**
 * Perplexity per ALGORITHM.md §10: non-overlapping windows of `seqlen` tokens (tail dropped), per window
 * the mean cross-entropy of positions 1..seqlen−1 (each predicted from the tokens before it),
 * PPL = exp(mean over windows), the mean taken in float64 on the host.
 *
 * Windows are batched B at a time into one forward ([B·T, d] matmuls); the cross-entropy is chunked over
 * rows so B·T × V logits never exist at once. One readback per batch (B per-window loss sums), issued
 * before the next batch is recorded and awaited after it, so the GPU does not idle on the round trip.
 */

import type { GpuContext } from '../gpu/context';
import { ShapeError } from '../gpu/errors';
import { rowSums } from '../kernels/reduce';
import { crossEntropy } from '../kernels/xent';
import { uploadBatch } from './batch';
import { forwardBatch } from './forward';
import type { DecoderModel } from './model';

export interface PerplexityOptions {
  /** Tokens per window (default max_position_embeddings). */
  seqlen?: number;
  /** Number of windows from the start (default: all whole windows). */
  windows?: number;
  /** Windows per forward (default ⌊8192 / seqlen⌋, at least 1). */
  batch?: number;
  onProgress?: (done: number, total: number) => void;
  signal?: AbortSignal;
}

export interface PerplexityResult {
  ppl: number;
  /** Mean negative log-likelihood (nats) of each window. */
  nll: number[];
}

// Tokens per forward by default: 8192 rows keep every matmul grid full on a large GPU; forward-only
// intermediates of OPT-125m at that size are ≈ 0.3 GB.
const DEFAULT_BATCH_TOKENS = 8192;

export async function perplexity(
  ctx: GpuContext, model: DecoderModel, ids: Int32Array | number[], opts: PerplexityOptions = {},
): Promise<PerplexityResult> {
  const { maxPositions } = model.config;
  const T = opts.seqlen ?? maxPositions;
  if (!Number.isInteger(T) || T < 2 || T > maxPositions) {
    throw new ShapeError(`perplexity: seqlen ${T} must be an integer in 2…${maxPositions} (max_position_embeddings of this model)`);
  }
  const avail = Math.floor(ids.length / T);
  const n = opts.windows ?? avail;
  if (!Number.isInteger(n) || n < 1 || n > avail) {
    throw new ShapeError(`perplexity: ${n} windows of ${T} requested, the ${ids.length} tokens hold ${avail}`);
  }
  model.checkIds(ids.slice(0, n * T) as ArrayLike<number>, T, 'perplexity');
  const batch = Math.min(n, opts.batch ?? Math.max(1, Math.floor(DEFAULT_BATCH_TOKENS / T)));
  if (!Number.isInteger(batch) || batch < 1) throw new ShapeError(`perplexity: batch must be a positive integer, got ${opts.batch}`);

  const nll: number[] = [];
  let pending: { read: Promise<Float32Array>; B: number } | undefined;
  const settle = async () => {
    if (!pending) return;
    const sums = await pending.read;
    for (let b = 0; b < pending.B; b++) nll.push(sums[b] / (T - 1));
    pending = undefined;
    opts.onProgress?.(nll.length, n);
  };
  for (let w0 = 0; w0 < n; w0 += batch) {
    opts.signal?.throwIfAborted();
    const B = Math.min(batch, n - w0);
    const wins = Array.from({ length: B }, (_, b) => ids.slice((w0 + b) * T, (w0 + b + 1) * T) as ArrayLike<number>);
    const { ids: idT, labels } = uploadBatch(ctx, wins, T);
    const fwd = forwardBatch(ctx, model, idT, B, T);
    const ce = crossEntropy(ctx, fwd.hf, model.head(), labels);
    fwd.hf.dispose();
    ce.lse.dispose();
    // The last row of each window has NO_LABEL (loss 0), so a row sum is the window's summed NLL.
    const lossView = ce.loss.reshape([B, T]);
    const sums = rowSums(ctx, lossView);
    ce.loss.dispose();
    idT.dispose();
    labels.dispose();
    const read = sums.read(); // records the copy and submits now; the buffer may be pooled right away
    read.catch(() => undefined); // awaited by settle(); left pending when an abort stops the loop
    sums.dispose();
    await settle();
    pending = { read, B };
  }
  await settle();
  const mean = nll.reduce((a, b) => a + b, 0) / nll.length;
  return { ppl: Math.exp(mean), nll };
}
