/**
 * Random tiny Llama generator for tests: Hugging Face parameter names ("model.layers.…"), float64,
 * deterministic for a seed. Options cover grouped-query / multi-query attention, a tied or untied
 * head, Qwen2-style q/k/v biases and a head_dim different from d/heads. Scales as tinyopt.ts: O(1)
 * activations, losses of a few nats.
 */

import { ShapeError } from '../gpu/errors';
import { mulberry32, normalSampler } from './dense';
import type { LlamaRefConfig, RefLlama } from './llama';

export interface TinyLlamaOptions {
  layers: number; d: number; heads: number; ffn: number; vocab: number; maxPos: number;
  /** Default heads (multi-head attention). */
  kvHeads?: number;
  /** Default d / heads. */
  headDim?: number;
  /** Default false (untied lm_head). */
  tied?: boolean;
  /** Default false (Llama/Mistral); true: Qwen2-style q/k/v biases. */
  qkvBias?: boolean;
  eps?: number; ropeTheta?: number; invFreq?: Float64Array;
  seed: number;
}

/** Build a random Llama with HF names. */
export function tinyLlama(o: TinyLlamaOptions): RefLlama {
  const kvHeads = o.kvHeads ?? o.heads, headDim = o.headDim ?? o.d / o.heads;
  const { layers, d, heads, ffn, vocab, maxPos } = o;
  for (const [k, v] of Object.entries({ layers, d, heads, ffn, vocab, maxPos, kvHeads, headDim })) {
    if (!Number.isInteger(v) || v < 1) throw new ShapeError(`tinyLlama: ${k} must be a positive integer, got ${v}`);
  }
  if (heads % kvHeads !== 0) throw new ShapeError(`tinyLlama: heads=${heads} not divisible by kvHeads=${kvHeads}`);
  if (headDim % 2 !== 0) throw new ShapeError(`tinyLlama: headDim=${headDim} must be even (RoPE)`);
  const cfg: LlamaRefConfig = {
    layers, d, heads, kvHeads, headDim, ffn, vocab, maxPos, eps: o.eps ?? 1e-5, ropeTheta: o.ropeTheta ?? 10000,
    tied: o.tied ?? false, qkvBias: o.qkvBias ?? false, ...(o.invFreq ? { invFreq: Float64Array.from(o.invFreq) } : {}),
  };
  const randn = normalSampler(mulberry32(o.seed));
  const w = new Map<string, Float64Array>();
  const fill = (name: string, n: number, scale: number, offset = 0): void => {
    const a = new Float64Array(n);
    for (let i = 0; i < n; i++) a[i] = offset + scale * randn();
    w.set(name, a);
  };
  const qd = heads * headDim, kd = kvHeads * headDim;
  fill('model.embed_tokens.weight', vocab * d, 0.5); // RMSNorm'd h has rms ≈ 1: logits ~ N(0, d·0.25)
  if (!cfg.tied) fill('lm_head.weight', vocab * d, 0.5);
  const linear = (name: string, r: number, c: number, bias: boolean): void => {
    fill(`${name}.weight`, r * c, 1 / Math.sqrt(c));
    if (bias) fill(`${name}.bias`, r, 0.1);
  };
  for (let l = 0; l < layers; l++) {
    const p = `model.layers.${l}.`;
    fill(`${p}input_layernorm.weight`, d, 0.1, 1);
    linear(`${p}self_attn.q_proj`, qd, d, cfg.qkvBias);
    linear(`${p}self_attn.k_proj`, kd, d, cfg.qkvBias);
    linear(`${p}self_attn.v_proj`, kd, d, cfg.qkvBias);
    linear(`${p}self_attn.o_proj`, d, qd, false);
    fill(`${p}post_attention_layernorm.weight`, d, 0.1, 1);
    linear(`${p}mlp.gate_proj`, ffn, d, false);
    linear(`${p}mlp.up_proj`, ffn, d, false);
    linear(`${p}mlp.down_proj`, d, ffn, false);
  }
  fill('model.norm.weight', d, 0.1, 1);
  return { cfg, w };
}

/** Deep copy of a Llama's weights and config. */
export function cloneLlama(m: RefLlama): RefLlama {
  const w = new Map<string, Float64Array>();
  for (const [k, v] of m.w) w.set(k, Float64Array.from(v));
  const cfg: LlamaRefConfig = { ...m.cfg };
  if (m.cfg.invFreq) cfg.invFreq = Float64Array.from(m.cfg.invFreq);
  return { cfg, w };
}
