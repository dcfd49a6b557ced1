/**
 * OPT's decoder block on the GPU. Pre-LayerNorm as in HF OPTDecoderLayer:
 *   h = x + out_proj(attn(q_proj(ln1 x), k_proj(ln1 x), v_proj(ln1 x)))      (q scaled by hd^-0.5 inside attention)
 *   x' = h + fc2(relu(fc1(ln2 h)))
 * then the final LayerNorm. Residual adds are fused into the out_proj / fc2 matmuls (accumulate into
 * the residual buffer). Allocation order is part of the contract: api/memory-peers.ts replays it.
 */

import type { GpuContext } from '../../gpu/context';
import type { Tensor } from '../../gpu/tensor';
import { relu, reluBackward } from '../../kernels/activation';
import { attention, attentionBackward } from '../../kernels/attention';
import { embedding } from '../../kernels/embedding';
import { axpy } from '../../kernels/elementwise';
import { layerNorm, layerNormBackward } from '../../kernels/layernorm';
import { matmul } from '../../kernels/matmul';
import type { DecoderBlock, SavedTensors } from '../../model/blocks';
import type { DecoderModel } from '../../model/model';
import { layerDims } from '../types';

const P = 'model.decoder.';

function linear(ctx: GpuContext, model: DecoderModel, a: Tensor, name: string, out?: Tensor): Tensor {
  return matmul(ctx, a, model.weight(`${name}.weight`), { transB: true, bias: model.weight(`${name}.bias`), out, accumulate: !!out });
}

export const optBlock: DecoderBlock = {
  embed(ctx, model, ids, T, posOffset) {
    return embedding(ctx, ids, model.weight(`${P}embed_tokens.weight`), model.weight(`${P}embed_positions.weight`), { seqLen: T, posOffset });
  },

  layer(ctx, model, l, x, B, _T, o) {
    const w = (n: string) => model.weight(n);
    const p = `${P}layers.${l}.`;
    const save = !!o.save, keep = save && !!o.keepInputs;
    const late: Tensor[] = [];
    const done = (t: Tensor) => (o.lateFree ? late.push(t) : t.dispose());
    const lin = (a: Tensor, name: string, out?: Tensor) => linear(ctx, model, a, `${p}${name}`, out);
    const ln1 = layerNorm(ctx, x, w(`${p}self_attn_layer_norm.weight`), w(`${p}self_attn_layer_norm.bias`));
    o.onInput?.(`${p}self_attn.q_proj`, ln1.y);
    const q = lin(ln1.y, 'self_attn.q_proj');
    const k = lin(ln1.y, 'self_attn.k_proj');
    const v = lin(ln1.y, 'self_attn.v_proj');
    if (!keep) done(ln1.y);
    // The layer's own head count (compact models); headDim, hence q's scale, never changes.
    const att = o.attend?.(l, q, k, v) ?? attention(ctx, q, k, v, { batch: B, heads: layerDims(model.config, l).numHeads }, { impl: model.attentionImpl });
    o.onInput?.(`${p}self_attn.out_proj`, att.out);
    // h = x + out_proj(attn): accumulate into a copy of x (save, inspect) or into x itself.
    let h = x;
    if (save || o.inspect) {
      h = ctx.empty(x.shape);
      ctx.copy(x, h);
    }
    lin(att.out, 'self_attn.out_proj', h);
    const ln2 = layerNorm(ctx, h, w(`${p}final_layer_norm.weight`), w(`${p}final_layer_norm.bias`));
    o.onInput?.(`${p}fc1`, ln2.y);
    const act = lin(ln2.y, 'fc1');
    relu(ctx, act, { out: act });
    if (!keep) done(ln2.y);
    o.onInput?.(`${p}fc2`, act);
    if (o.inspect) {
      h.dispose();
      for (const t of [...late, ln1.mean, ln1.rstd, q, k, v, att.out, att.lse, ln2.mean, ln2.rstd, act]) t.dispose();
      return { x };
    }
    let xn = h;
    if (save) {
      xn = ctx.empty(h.shape);
      ctx.copy(h, xn);
    }
    lin(act, 'fc2', xn);
    if (save) {
      const saved: SavedTensors = {
        x, mean1: ln1.mean, rstd1: ln1.rstd, y1: keep ? ln1.y : undefined,
        q, k, v, attn: att.out, lse: att.lse,
        h, mean2: ln2.mean, rstd2: ln2.rstd, y2: keep ? ln2.y : undefined, act,
      };
      return { x: xn, saved };
    }
    for (const t of [...late, ln1.mean, ln1.rstd, q, k, v, att.out, att.lse, ln2.mean, ln2.rstd, act]) t.dispose();
    return { x: xn };
  },

  final(ctx, model, x, save) {
    const lnf = layerNorm(ctx, x, model.weight(`${P}final_layer_norm.weight`), model.weight(`${P}final_layer_norm.bias`));
    if (save) return { hf: lnf.y, saved: { xf: x, meanF: lnf.mean, rstdF: lnf.rstd } };
    x.dispose();
    lnf.mean.dispose();
    lnf.rstd.dispose();
    return { hf: lnf.y };
  },

  finalBackward(ctx, model, dHf, s) {
    return layerNormBackward(ctx, dHf, s.xf!, model.weight(`${P}final_layer_norm.weight`), s.meanF!, s.rstdF!).dx;
  },

  layerBackward(ctx, model, l, s, dx, B, _T, linearBwd) {
    const w = (n: string) => model.weight(n);
    const p = `${P}layers.${l}.`;
    // FFN: x' = h + fc2(relu(fc1(ln2 h)))
    const dact = linearBwd(`${p}fc2`, dx, s.act);
    reluBackward(ctx, dact, s.act!, { out: dact });
    const dy2 = linearBwd(`${p}fc1`, dact, s.y2);
    dact.dispose();
    const dh = layerNormBackward(ctx, dy2, s.h!, w(`${p}final_layer_norm.weight`), s.mean2!, s.rstd2!).dx;
    dy2.dispose();
    axpy(ctx, dh, dx, 1);
    dx.dispose();
    // Attention: h = x + out_proj(attn(q, k, v))
    const dattn = linearBwd(`${p}self_attn.out_proj`, dh, s.attn);
    const { dq, dk, dv } = attentionBackward(ctx, dattn, s.q!, s.k!, s.v!, s.attn!, s.lse!, { batch: B, heads: layerDims(model.config, l).numHeads }, { impl: model.attentionImpl });
    dattn.dispose();
    const dy1 = linearBwd(`${p}self_attn.q_proj`, dq, s.y1);
    linearBwd(`${p}self_attn.k_proj`, dk, s.y1, dy1);
    linearBwd(`${p}self_attn.v_proj`, dv, s.y1, dy1);
    dq.dispose();
    dk.dispose();
    dv.dispose();
    const dxn = layerNormBackward(ctx, dy1, s.x!, w(`${p}self_attn_layer_norm.weight`), s.mean1!, s.rstd1!).dx;
    dy1.dispose();
    axpy(ctx, dxn, dh, 1);
    dh.dispose();
    return dxn;
  },
};

