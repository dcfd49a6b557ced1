/** Host → GPU packing of a batch of equal-length sequences: ids and next-token labels as u32 [B·T]. */

import type { GpuContext } from '../gpu/context';
import type { Tensor } from '../gpu/tensor';
import { NO_LABEL } from '../kernels/xent';

/**
 * ids[b·T + t] = seq_b[t]; labels[b·T + t] = seq_b[t + 1] for t < T−1 and NO_LABEL on each sequence's
 * last row (no next token). The caller has validated the ids (DecoderModel.checkIds).
 */
export function uploadBatch(ctx: GpuContext, seqs: ArrayLike<number>[], T: number): { ids: Tensor; labels: Tensor } {
  const B = seqs.length;
  const ids = new Uint32Array(B * T);
  const labels = new Uint32Array(B * T);
  for (let b = 0; b < B; b++) {
    const s = seqs[b];
    for (let t = 0; t < T; t++) {
      ids[b * T + t] = s[t];
      labels[b * T + t] = t + 1 < T ? s[t + 1] : NO_LABEL;
    }
  }
  return { ids: ctx.upload(ids, [B * T]), labels: ctx.upload(labels, [B * T]) };
}
