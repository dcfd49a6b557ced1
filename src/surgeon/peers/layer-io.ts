/**
 * Layer-by-layer calibration state of the peer methods (SparseGPT, Wanda): the hidden states of every
 * calibration sequence entering decoder layer l, kept on the GPU in batches, and one decoder layer run
 * on them with the model's current weights (same kernels and block as src/model/forward.ts).
 *
 * Protocol (the SparseGPT/Wanda reference scripts): statistics of all linears of layer l come from one
 * pass of the still-dense layer l on the inputs produced by the already-pruned layers < l
 * (`layerPass(..., { onInput })`, hidden states unchanged); after pruning layer l, a second pass with
 * the pruned weights advances the hidden states in place (`layerPass(..., { advance: true })`).
 */

import type { GpuContext } from '../../gpu/context';
import { ShapeError } from '../../gpu/errors';
import type { Tensor } from '../../gpu/tensor';
import { relu } from '../../kernels/activation';
import { attention } from '../../kernels/attention';
import { embedding } from '../../kernels/embedding';
import { layerNorm } from '../../kernels/layernorm';
import { matmul } from '../../kernels/matmul';
import type { OptModel } from '../../model/opt';

const P = 'model.decoder.';
// Tokens per batch: 4096 rows fill a 128×128-tile matmul grid on a large GPU (as model/kfac.ts) while a
// layer's intermediates (fc1 output 4096 × ffn) stay ≈ 50 MB for OPT-125m.
const DEFAULT_BATCH_TOKENS = 4096;

/** Calibration sequences of T tokens per batch of the layer passes (also read by api/memory-peers.ts). */
export const peerBatch = (T: number, batchTokens = DEFAULT_BATCH_TOKENS): number => Math.max(1, Math.floor(batchTokens / T));

export interface CalibState {
  /** Hidden states per batch, [B_i·T, d] (owned). */
  hidden: Tensor[];
  /** Sequences per batch. */
  sizes: number[];
  T: number;
  /** Total tokens. */
  N: number;
}

/** Validate the calibration sequences and embed them (tokens + positions) batch by batch. */
export function embedCalibration(ctx: GpuContext, model: OptModel, calib: Int32Array[], batchTokens = DEFAULT_BATCH_TOKENS): CalibState {
  if (calib.length === 0) throw new ShapeError('peers: no calibration sequences');
  const T = calib[0].length;
  calib.forEach((s, i) => {
    if (s.length !== T) throw new ShapeError(`peers: calibration sequence ${i} has ${s.length} tokens, sequence 0 has ${T} (all must be equal)`);
    model.checkIds(s, T, `peers: calibration sequence ${i}`);
  });
  const batch = peerBatch(T, batchTokens);
  const st: CalibState = { hidden: [], sizes: [], T, N: calib.length * T };
  const w = (n: string) => model.weight(n);
  for (let s0 = 0; s0 < calib.length; s0 += batch) {
    const B = Math.min(batch, calib.length - s0);
    const ids = new Uint32Array(B * T);
    for (let b = 0; b < B; b++) ids.set(calib[s0 + b], b * T);
    const t = ctx.upload(ids, [B * T]);
    st.hidden.push(embedding(ctx, t, w(`${P}embed_tokens.weight`), w(`${P}embed_positions.weight`), { seqLen: T }));
    t.dispose();
    st.sizes.push(B);
  }
  return st;
}

export function disposeCalib(st: CalibState): void {
  for (const t of st.hidden) t.dispose();
  st.hidden.length = 0;
}

export interface LayerPassOptions {
  /** Called with each prunable input of the layer (key = PrunableLayer.inputKey) as soon as it exists. */
  onInput?: (inputKey: string, a: Tensor) => void;
  /** Replace the hidden states by the layer's output (otherwise they are left unchanged). */
  advance?: boolean;
}

/** Run decoder layer l (pre-LN attention + ReLU FFN, as forward.ts) on every calibration batch. */
export function layerPass(ctx: GpuContext, model: OptModel, st: CalibState, l: number, opts: LayerPassOptions): void {
  const w = (n: string) => model.weight(n);
  const p = `${P}layers.${l}.`;
  const lin = (a: Tensor, name: string, out?: Tensor) =>
    matmul(ctx, a, w(`${name}.weight`), { transB: true, bias: w(`${name}.bias`), out, accumulate: !!out });
  st.hidden.forEach((x, bi) => {
    const ln1 = layerNorm(ctx, x, w(`${p}self_attn_layer_norm.weight`), w(`${p}self_attn_layer_norm.bias`));
    opts.onInput?.(`${p}self_attn.q_proj`, ln1.y);
    const q = lin(ln1.y, `${p}self_attn.q_proj`);
    const k = lin(ln1.y, `${p}self_attn.k_proj`);
    const v = lin(ln1.y, `${p}self_attn.v_proj`);
    const att = attention(ctx, q, k, v, { batch: st.sizes[bi], heads: model.config.numHeads }, { impl: model.attentionImpl });
    opts.onInput?.(`${p}self_attn.out_proj`, att.out);
    // h = x + out_proj(attn), accumulated into x itself when advancing, else into a copy.
    let h = x;
    if (!opts.advance) {
      h = ctx.empty(x.shape);
      ctx.copy(x, h);
    }
    lin(att.out, `${p}self_attn.out_proj`, h);
    const ln2 = layerNorm(ctx, h, w(`${p}final_layer_norm.weight`), w(`${p}final_layer_norm.bias`));
    opts.onInput?.(`${p}fc1`, ln2.y);
    const act = lin(ln2.y, `${p}fc1`);
    relu(ctx, act, { out: act });
    opts.onInput?.(`${p}fc2`, act);
    if (opts.advance) lin(act, `${p}fc2`, h);
    else h.dispose();
    // Safe to pool right away: later users of these buffers are ordered after the dispatches above.
    for (const t of [ln1.y, ln1.mean, ln1.rstd, q, k, v, att.out, att.lse, ln2.y, ln2.mean, ln2.rstd, act]) t.dispose();
  });
}
