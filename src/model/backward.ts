/**
 * OPT backward on the GPU from a saved forward (forwardBatch with save): loss = per-sequence mean
 * next-token cross-entropy (positions 0..T-2; the last row has NO_LABEL, so its gradient is 0), the
 * same convention as src/reference/opt.ts. The LM head gradient is chunked over the vocabulary by
 * crossEntropy, so B·T × V logits never exist at once.
 *
 * A fixed sequence of explicit *_bwd kernels, no autograd. Hooks see ∂L/∂y of every prunable linear
 * (for G) and may accumulate weight gradients. The saved forward is only read, so several backward
 * passes (sampled-label draws) can reuse it. Every temporary is returned to the pool when dead.
 */

import type { GpuContext } from '../gpu/context';
import type { Tensor } from '../gpu/tensor';
import { attentionBackward } from '../kernels/attention';
import { colSum, reluBackward } from '../kernels/activation';
import { axpy } from '../kernels/elementwise';
import { layerNormBackward } from '../kernels/layernorm';
import { matmul } from '../kernels/matmul';
import { crossEntropy } from '../kernels/xent';
import type { ForwardResult } from './forward';
import type { OptModel } from './opt';

const P = 'model.decoder.';

export interface LinearGrad { dW: Tensor; db: Tensor }

export interface BackwardOptions {
  /** Replace the labels by samples of the model's softmax (seeded per row of this batch). */
  sampleSeed?: number;
  /** Called with ∂L/∂y [B·T, R] of every prunable linear (name without ".weight"). */
  onOutputGrad?: (name: string, dy: Tensor) => void;
  /** Accumulate dW += dyᵀ a and db += Σ_rows dy into these (by layer name); needs forward keepInputs. */
  weightGrads?: Map<string, LinearGrad>;
}

/** Records the backward of one batch. labels: u32 [B·T] (NO_LABEL on each sequence's last row). */
export function backwardBatch(
  ctx: GpuContext, model: OptModel, fwd: ForwardResult, labels: Tensor, B: number, T: number, opts: BackwardOptions = {},
): void {
  if (!fwd.xf || !fwd.meanF || !fwd.rstdF) throw new Error('backwardBatch: the forward was run without save');
  const w = (n: string) => model.weight(n);
  const { numLayers, numHeads } = model.config;
  const ce = crossEntropy(ctx, fwd.hf, model.head(), labels, { grad: true, gradScale: 1 / (T - 1), sampleSeed: opts.sampleSeed });
  ce.loss.dispose();
  ce.lse.dispose();
  ce.sampled?.dispose();
  const dHf = ce.dHidden!;
  let dx = layerNormBackward(ctx, dHf, fwd.xf, w(`${P}final_layer_norm.weight`), fwd.meanF, fwd.rstdF).dx;
  dHf.dispose();

  // ∂L/∂y of a linear: G hook, weight gradient, then ∂L/∂a = dy·W (accumulated into `into` if given).
  const linear = (name: string, dy: Tensor, a: Tensor | undefined, into?: Tensor): Tensor => {
    opts.onOutputGrad?.(name, dy);
    const g = opts.weightGrads?.get(name);
    if (g) {
      if (!a) throw new Error(`backwardBatch: weight gradient of ${name} needs the forward run with keepInputs`);
      matmul(ctx, dy, a, { transA: true, out: g.dW, accumulate: true });
      colSum(ctx, dy, { out: g.db, accumulate: true });
    }
    return matmul(ctx, dy, w(`${name}.weight`), { out: into, accumulate: !!into });
  };

  for (let l = numLayers - 1; l >= 0; l--) {
    const p = `${P}layers.${l}.`;
    const s = fwd.layers[l];
    // FFN: x' = h + fc2(relu(fc1(ln2 h)))
    const dact = linear(`${p}fc2`, dx, s.act);
    reluBackward(ctx, dact, s.act, { out: dact });
    const dy2 = linear(`${p}fc1`, dact, s.y2);
    dact.dispose();
    const dh = layerNormBackward(ctx, dy2, s.h, w(`${p}final_layer_norm.weight`), s.mean2, s.rstd2).dx;
    dy2.dispose();
    axpy(ctx, dh, dx, 1);
    dx.dispose();
    // Attention: h = x + out_proj(attn(q, k, v))
    const dattn = linear(`${p}self_attn.out_proj`, dh, s.attn);
    const { dq, dk, dv } = attentionBackward(ctx, dattn, s.q, s.k, s.v, s.attn, s.lse, { batch: B, heads: numHeads }, { impl: model.attentionImpl });
    dattn.dispose();
    const dy1 = linear(`${p}self_attn.q_proj`, dq, s.y1);
    linear(`${p}self_attn.k_proj`, dk, s.y1, dy1);
    linear(`${p}self_attn.v_proj`, dv, s.y1, dy1);
    dq.dispose();
    dk.dispose();
    dv.dispose();
    const dxn = layerNormBackward(ctx, dy1, s.x, w(`${p}self_attn_layer_norm.weight`), s.mean1, s.rstd1).dx;
    dy1.dispose();
    axpy(ctx, dxn, dh, 1);
    dh.dispose();
    dx = dxn;
  }
  dx.dispose();
}
