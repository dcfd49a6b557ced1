/**
 * OPT decoder forward on the GPU for a batch of B sequences of T tokens, all rows stacked as [B·T, d]
 * so every linear is one matmul (M = B·T). Pre-LayerNorm block as in HF OPTDecoderLayer:
 *   h = x + out_proj(attn(q_proj(ln1 x), k_proj(ln1 x), v_proj(ln1 x)))      (q scaled by hd^-0.5 inside attention)
 *   x' = h + fc2(relu(fc1(ln2 h)))
 * then the final LayerNorm. Residual adds are fused into the out_proj / fc2 matmuls (accumulate into
 * the residual buffer). Only dispatches are recorded; nothing is read back.
 *
 * Memory: without `save`, the residual stream is updated in place and every intermediate goes back to
 * the pool as soon as its last reader is recorded (dispatch order makes that safe), so the peak is one
 * layer's intermediates. With `save`, the tensors the backward needs are kept in ForwardResult.layers
 * (free them with releaseForward).
 */

import type { GpuContext } from '../gpu/context';
import type { Tensor } from '../gpu/tensor';
import { attention } from '../kernels/attention';
import { relu } from '../kernels/activation';
import { embedding } from '../kernels/embedding';
import { layerNorm } from '../kernels/layernorm';
import { matmul } from '../kernels/matmul';
import type { OptModel } from './opt';

const P = 'model.decoder.';

/** What the backward of one decoder layer needs (y1/y2 only when the inputs are kept for weight gradients). */
export interface SavedLayer {
  x: Tensor; mean1: Tensor; rstd1: Tensor; y1?: Tensor;
  q: Tensor; k: Tensor; v: Tensor; attn: Tensor; lse: Tensor;
  h: Tensor; mean2: Tensor; rstd2: Tensor; y2?: Tensor; act: Tensor;
}

export interface ForwardResult {
  /** Final LayerNorm output [B·T, d] (the LM head's input). Caller disposes. */
  hf: Tensor;
  /** With save: the final LayerNorm's input and statistics, and every layer's saved tensors. */
  xf?: Tensor; meanF?: Tensor; rstdF?: Tensor;
  layers: SavedLayer[];
}

export interface ForwardOptions {
  /** Keep what the backward needs. */
  save?: boolean;
  /** With save: also keep the LayerNorm outputs feeding q/k/v and fc1 (weight gradients need them). */
  keepInputs?: boolean;
  /** Called once per prunable-layer input as soon as it exists (key = PrunableLayer.inputKey); may record dispatches. */
  onInput?: (inputKey: string, a: Tensor) => void;
}

/** ids: u32 [B·T]. Records the forward; returns the final hidden states (and saved tensors with `save`). */
export function forwardBatch(ctx: GpuContext, model: OptModel, ids: Tensor, B: number, T: number, opts: ForwardOptions = {}): ForwardResult {
  const w = (n: string) => model.weight(n);
  const { numLayers, numHeads } = model.config;
  const save = !!opts.save;
  const keepInputs = save && !!opts.keepInputs;
  const lin = (a: Tensor, name: string, out?: Tensor) =>
    matmul(ctx, a, w(`${name}.weight`), { transB: true, bias: w(`${name}.bias`), out, accumulate: !!out });
  let x = embedding(ctx, ids, w(`${P}embed_tokens.weight`), w(`${P}embed_positions.weight`), { seqLen: T });
  const layers: SavedLayer[] = [];
  for (let l = 0; l < numLayers; l++) {
    const p = `${P}layers.${l}.`;
    const ln1 = layerNorm(ctx, x, w(`${p}self_attn_layer_norm.weight`), w(`${p}self_attn_layer_norm.bias`));
    opts.onInput?.(`${p}self_attn.q_proj`, ln1.y);
    const q = lin(ln1.y, `${p}self_attn.q_proj`);
    const k = lin(ln1.y, `${p}self_attn.k_proj`);
    const v = lin(ln1.y, `${p}self_attn.v_proj`);
    if (!keepInputs) ln1.y.dispose();
    const att = attention(ctx, q, k, v, { batch: B, heads: numHeads }, { impl: model.attentionImpl });
    opts.onInput?.(`${p}self_attn.out_proj`, att.out);
    // h = x + out_proj(attn): accumulate into a copy of x (save) or into x itself.
    let h = x;
    if (save) {
      h = ctx.empty(x.shape);
      ctx.copy(x, h);
    }
    lin(att.out, `${p}self_attn.out_proj`, h);
    const ln2 = layerNorm(ctx, h, w(`${p}final_layer_norm.weight`), w(`${p}final_layer_norm.bias`));
    opts.onInput?.(`${p}fc1`, ln2.y);
    const act = lin(ln2.y, `${p}fc1`);
    relu(ctx, act, { out: act });
    if (!keepInputs) ln2.y.dispose();
    opts.onInput?.(`${p}fc2`, act);
    let xn = h;
    if (save) {
      xn = ctx.empty(h.shape);
      ctx.copy(h, xn);
    }
    lin(act, `${p}fc2`, xn);
    if (save) {
      layers.push({
        x, mean1: ln1.mean, rstd1: ln1.rstd, y1: keepInputs ? ln1.y : undefined,
        q, k, v, attn: att.out, lse: att.lse,
        h, mean2: ln2.mean, rstd2: ln2.rstd, y2: keepInputs ? ln2.y : undefined, act,
      });
    } else {
      for (const t of [ln1.mean, ln1.rstd, q, k, v, att.out, att.lse, ln2.mean, ln2.rstd, act]) t.dispose();
    }
    x = xn;
  }
  const lnf = layerNorm(ctx, x, w(`${P}final_layer_norm.weight`), w(`${P}final_layer_norm.bias`));
  if (save) return { hf: lnf.y, xf: x, meanF: lnf.mean, rstdF: lnf.rstd, layers };
  x.dispose();
  lnf.mean.dispose();
  lnf.rstd.dispose();
  return { hf: lnf.y, layers };
}

/** Return every tensor of a ForwardResult to the pool. */
export function releaseForward(f: ForwardResult): void {
  f.hf.dispose();
  for (const t of [f.xf, f.meanF, f.rstdF]) t?.dispose();
  for (const s of f.layers) for (const t of Object.values(s)) (t as Tensor | undefined)?.dispose();
  f.layers.length = 0;
}
