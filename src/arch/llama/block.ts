/**
 * The Llama family's decoder block on the GPU (ALGORITHM.md §12), as HF LlamaDecoderLayer:
 *   h  = x + o_proj(attn(rope(q_proj(n1 x)), rope(k_proj(n1 x)), v_proj(n1 x)))   (grouped-query)
 *   x' = h + down_proj(silu(gate_proj(n2 h)) · up_proj(n2 h))
 * with RMSNorms n1, n2 and a final RMSNorm. Residual adds are fused into the o_proj / down_proj
 * matmuls. q and k are rotated in place after their projections, so the saved q/k are the rotated
 * ones (what attention's backward needs); their gradients are rotated back (the transpose) before they
 * reach the q/k linears, whose G hooks thus see ∂L/∂(projection output) as K-FAC needs.
 * Biases come from the config (Qwen2's q/k/v; Llama's attention_bias / mlp_bias).
 */

import type { GpuContext } from '../../gpu/context';
import type { Tensor } from '../../gpu/tensor';
import { attention, attentionBackward } from '../../kernels/attention';
import { tokenEmbedding } from '../../kernels/embedding';
import { axpy } from '../../kernels/elementwise';
import { matmul } from '../../kernels/matmul';
import { rmsNorm, rmsNormBackward } from '../../kernels/rmsnorm';
import { rope, ropeInvFreq, ropeTables } from '../../kernels/rope';
import { swiglu, swigluBackward } from '../../kernels/swiglu';
import { layerDims, type LlamaConfig } from '../types';
import type { DecoderBlock, SavedTensors } from '../../model/blocks';
import type { DecoderModel } from '../../model/model';

const P = 'model.';

const cfgOf = (model: DecoderModel): LlamaConfig => model.config as LlamaConfig;

function linear(ctx: GpuContext, model: DecoderModel, a: Tensor, name: string, out?: Tensor): Tensor {
  return matmul(ctx, a, model.weight(`${name}.weight`), { transB: true, bias: model.maybeWeight(`${name}.bias`), out, accumulate: !!out });
}

/** cos/sin rows for positions < T: one table per power-of-two length (≥ 2048), built once per model. */
function ropeTable(ctx: GpuContext, model: DecoderModel, T: number): Tensor {
  const c = cfgOf(model);
  let rows = 2048;
  while (rows < T) rows *= 2;
  rows = Math.min(rows, Math.max(T, c.maxPositions));
  return model.cached(`rope:${rows}`, () => ropeTables(ctx, ropeInvFreq(c.headDim, c.ropeTheta, c.ropeScaling), rows));
}

export const llamaBlock: DecoderBlock = {
  embed(ctx, model, ids) {
    return tokenEmbedding(ctx, ids, model.weight(`${P}embed_tokens.weight`));
  },

  layer(ctx, model, l, x, B, T, o) {
    const c = cfgOf(model), w = (n: string) => model.weight(n);
    const { numHeads, numKvHeads } = layerDims(c, l); // the layer's own head counts (compact models)
    const p = `${P}layers.${l}.`;
    const save = !!o.save, keep = save && !!o.keepInputs;
    const late: Tensor[] = [];
    const done = (t: Tensor) => (o.lateFree ? late.push(t) : t.dispose());
    const lin = (a: Tensor, name: string, out?: Tensor) => linear(ctx, model, a, `${p}${name}`, out);
    const pos = o.posOffset ?? 0;
    const table = ropeTable(ctx, model, pos + T);
    const n1 = rmsNorm(ctx, x, w(`${p}input_layernorm.weight`), { eps: c.rmsNormEps });
    o.onInput?.(`${p}self_attn.q_proj`, n1.y);
    const q = lin(n1.y, 'self_attn.q_proj');
    const k = lin(n1.y, 'self_attn.k_proj');
    const v = lin(n1.y, 'self_attn.v_proj');
    if (!keep) done(n1.y);
    rope(ctx, q, table, { seqLen: T, heads: numHeads, headDim: c.headDim, positionOffset: pos, out: q });
    rope(ctx, k, table, { seqLen: T, heads: numKvHeads, headDim: c.headDim, positionOffset: pos, out: k });
    const att = o.attend?.(l, q, k, v) ?? attention(ctx, q, k, v, { batch: B, heads: numHeads, kvHeads: numKvHeads }, { impl: model.attentionImpl });
    o.onInput?.(`${p}self_attn.o_proj`, att.out);
    let h = x;
    if (save || o.inspect) {
      h = ctx.empty(x.shape);
      ctx.copy(x, h);
    }
    lin(att.out, 'self_attn.o_proj', h);
    const n2 = rmsNorm(ctx, h, w(`${p}post_attention_layernorm.weight`), { eps: c.rmsNormEps });
    o.onInput?.(`${p}mlp.gate_proj`, n2.y);
    const g = lin(n2.y, 'mlp.gate_proj');
    const u = lin(n2.y, 'mlp.up_proj');
    if (!keep) done(n2.y);
    // The backward needs gate and up: with save the product gets its own buffer, else it overwrites gate.
    const act = swiglu(ctx, g, u, save ? {} : { out: g });
    if (!save) done(u);
    o.onInput?.(`${p}mlp.down_proj`, act);
    const rest = [n1.rstd, q, k, v, att.out, att.lse, n2.rstd];
    if (o.inspect) {
      h.dispose();
      for (const t of [...late, ...rest, act]) t.dispose();
      return { x };
    }
    let xn = h;
    if (save) {
      xn = ctx.empty(h.shape);
      ctx.copy(h, xn);
    }
    lin(act, 'mlp.down_proj', xn);
    if (save) {
      if (!keep) act.dispose(); // only down_proj's weight gradient reads it again
      const saved: SavedTensors = {
        x, rstd1: n1.rstd, y1: keep ? n1.y : undefined, q, k, v, attn: att.out, lse: att.lse,
        h, rstd2: n2.rstd, y2: keep ? n2.y : undefined, g, u, act: keep ? act : undefined,
      };
      return { x: xn, saved };
    }
    for (const t of [...late, ...rest, act]) t.dispose();
    return { x: xn };
  },

  final(ctx, model, x, save) {
    const nf = rmsNorm(ctx, x, model.weight(`${P}norm.weight`), { eps: cfgOf(model).rmsNormEps });
    if (save) return { hf: nf.y, saved: { xf: x, rstdF: nf.rstd } };
    x.dispose();
    nf.rstd.dispose();
    return { hf: nf.y };
  },

  finalBackward(ctx, model, dHf, s) {
    return rmsNormBackward(ctx, dHf, s.xf!, model.weight(`${P}norm.weight`), s.rstdF!).dx;
  },

  layerBackward(ctx, model, l, s, dx, B, T, linearBwd) {
    const c = cfgOf(model), w = (n: string) => model.weight(n);
    const { numHeads, numKvHeads } = layerDims(c, l);
    const p = `${P}layers.${l}.`;
    const table = ropeTable(ctx, model, T);
    // MLP: x' = h + down(silu(gate(n2 h)) · up(n2 h))
    const dact = linearBwd(`${p}mlp.down_proj`, dx, s.act);
    const { dGate, dUp } = swigluBackward(ctx, dact, s.g!, s.u!);
    dact.dispose();
    const dy2 = linearBwd(`${p}mlp.gate_proj`, dGate, s.y2);
    linearBwd(`${p}mlp.up_proj`, dUp, s.y2, dy2);
    dGate.dispose();
    dUp.dispose();
    const dh = rmsNormBackward(ctx, dy2, s.h!, w(`${p}post_attention_layernorm.weight`), s.rstd2!).dx;
    dy2.dispose();
    axpy(ctx, dh, dx, 1);
    dx.dispose();
    // Attention: h = x + o(attn(rope q, rope k, v))
    const dattn = linearBwd(`${p}self_attn.o_proj`, dh, s.attn);
    const { dq, dk, dv } = attentionBackward(ctx, dattn, s.q!, s.k!, s.v!, s.attn!, s.lse!, { batch: B, heads: numHeads, kvHeads: numKvHeads }, { impl: model.attentionImpl });
    dattn.dispose();
    rope(ctx, dq, table, { seqLen: T, heads: numHeads, headDim: c.headDim, backward: true, out: dq });
    rope(ctx, dk, table, { seqLen: T, heads: numKvHeads, headDim: c.headDim, backward: true, out: dk });
    const dy1 = linearBwd(`${p}self_attn.q_proj`, dq, s.y1);
    linearBwd(`${p}self_attn.k_proj`, dk, s.y1, dy1);
    linearBwd(`${p}self_attn.v_proj`, dv, s.y1, dy1);
    dq.dispose();
    dk.dispose();
    dv.dispose();
    const dxn = rmsNormBackward(ctx, dy1, s.x!, w(`${p}input_layernorm.weight`), s.rstd1!).dx;
    dy1.dispose();
    axpy(ctx, dxn, dh, 1);
    dh.dispose();
    return dxn;
  },
};
