/**
 * The Llama family without a GPU (ALGORITHM.md §12): LlamaForCausalLM, MistralForCausalLM and
 * Qwen2ForCausalLM configs → LlamaConfig, tensor names/shapes, prunable linears, units, LoRA targets.
 * Differences inside the family are config fields, not classes: Qwen2 always has q/k/v biases,
 * Llama's attention_bias puts biases on q/k/v/o and mlp_bias on the MLP, Mistral has a sliding window.
 * Unsupported options (other activations, rope types other than default/linear/llama3, partial
 * rotary) are UnsupportedArchitectureError naming the field; bad values are ConfigError.
 */

import { ConfigError, UnsupportedArchitectureError } from '../../io/errors';
import { configDtype, firstArchitecture, optBool, optPosInt, posInt, posNum, tokenIds, type Raw } from '../parse';
import type { FamilySpec, LlamaConfig, PrunableLayer, RopeScaling } from '../types';

export type { LlamaConfig };

const P = 'model.';
const ATTENTION = ['q_proj', 'k_proj', 'v_proj', 'o_proj'] as const;
/** Prunable linears of one decoder layer, in the order used everywhere. */
export const LLAMA_PRUNABLE_SUFFIXES = ['self_attn.q_proj', 'self_attn.k_proj', 'self_attn.v_proj', 'self_attn.o_proj', 'mlp.gate_proj', 'mlp.up_proj', 'mlp.down_proj'] as const;

const CLASSES: Record<string, string> = { llama: 'LlamaForCausalLM', mistral: 'MistralForCausalLM', qwen2: 'Qwen2ForCausalLM' };

/** rope_scaling (transformers < 5) or rope_parameters (newer; also carries rope_theta). */
function parseRope(raw: Raw, maxPositions: number): { theta: number; scaling: RopeScaling } {
  const params = raw.rope_parameters;
  const src = (params ?? raw.rope_scaling) as Raw | null | undefined;
  const key = params !== undefined && params !== null ? 'rope_parameters' : 'rope_scaling';
  const thetaRaw = (params as Raw | undefined)?.rope_theta ?? raw.rope_theta ?? 10000;
  if (typeof thetaRaw !== 'number' || !(thetaRaw > 1)) throw new ConfigError(`config.json: rope_theta must be a number > 1, got ${JSON.stringify(thetaRaw)}`);
  const partial = (src as Raw | undefined)?.partial_rotary_factor ?? raw.partial_rotary_factor;
  if (partial !== undefined && partial !== null && partial !== 1) {
    throw new UnsupportedArchitectureError(`config.json: partial_rotary_factor ${JSON.stringify(partial)} is not supported (only full rotary embeddings)`);
  }
  if (src === undefined || src === null) return { theta: thetaRaw, scaling: { type: 'default' } };
  if (typeof src !== 'object' || Array.isArray(src)) throw new ConfigError(`config.json: ${key} must be an object or null, got ${JSON.stringify(src)}`);
  const type = src.rope_type ?? src.type ?? 'default';
  const num = (k: string, dflt?: number) => posNum(src, k, dflt);
  switch (type) {
    case 'default':
      return { theta: thetaRaw, scaling: { type: 'default' } };
    case 'linear':
      return { theta: thetaRaw, scaling: { type: 'linear', factor: num('factor') } };
    case 'llama3': {
      const s = {
        type: 'llama3' as const, factor: num('factor'), lowFreqFactor: num('low_freq_factor'), highFreqFactor: num('high_freq_factor'),
        originalMaxPositions: num('original_max_position_embeddings', maxPositions),
      };
      if (!(s.highFreqFactor > s.lowFreqFactor)) throw new ConfigError(`config.json: ${key}.high_freq_factor ${s.highFreqFactor} must exceed low_freq_factor ${s.lowFreqFactor}`);
      return { theta: thetaRaw, scaling: s };
    }
    default:
      throw new UnsupportedArchitectureError(`config.json: ${key} type ${JSON.stringify(type)} is not supported (default, linear, llama3)`);
  }
}

export function parseLlamaFields(raw: Raw, modelType = 'llama'): LlamaConfig {
  const hiddenSize = posInt(raw, 'hidden_size');
  const numHeads = posInt(raw, 'num_attention_heads');
  const numKvHeads = optPosInt(raw, 'num_key_value_heads', numHeads);
  if (numHeads % numKvHeads !== 0) {
    throw new ConfigError(`config.json: num_attention_heads ${numHeads} is not a multiple of num_key_value_heads ${numKvHeads}`);
  }
  let headDim: number;
  if (raw.head_dim === undefined || raw.head_dim === null) {
    if (hiddenSize % numHeads !== 0) throw new ConfigError(`config.json: hidden_size ${hiddenSize} is not divisible by num_attention_heads ${numHeads} (and no head_dim is given)`);
    headDim = hiddenSize / numHeads;
  } else headDim = posInt(raw, 'head_dim');
  if (headDim % 2 !== 0) throw new ConfigError(`config.json: head_dim ${headDim} must be even (rotary embeddings rotate pairs)`);
  const act = raw.hidden_act ?? 'silu';
  if (act !== 'silu') throw new UnsupportedArchitectureError(`config.json: hidden_act ${JSON.stringify(act)} is not supported (only "silu", SwiGLU)`);
  const maxPositions = posInt(raw, 'max_position_embeddings');
  const rope = parseRope(raw, maxPositions);
  const qwen = modelType === 'qwen2';
  const attnBias = optBool(raw, 'attention_bias', false);
  // Mistral: sliding_window applies when set; Qwen2 only with use_sliding_window.
  let slidingWindow: number | null = null;
  if (modelType === 'mistral' || (qwen && optBool(raw, 'use_sliding_window', false))) {
    slidingWindow = raw.sliding_window === undefined || raw.sliding_window === null ? null : posInt(raw, 'sliding_window');
  }
  const eos = tokenIds(raw, 'eos_token_id', 2);
  const bos = tokenIds(raw, 'bos_token_id', 1);
  const pad = tokenIds(raw, 'pad_token_id', null);
  return {
    family: 'llama',
    modelType,
    architecture: firstArchitecture(raw) ?? CLASSES[modelType] ?? 'LlamaForCausalLM',
    vocabSize: posInt(raw, 'vocab_size'),
    hiddenSize,
    numLayers: posInt(raw, 'num_hidden_layers'),
    numHeads,
    numKvHeads,
    headDim,
    ffnDim: posInt(raw, 'intermediate_size'),
    maxPositions,
    tieWordEmbeddings: optBool(raw, 'tie_word_embeddings', false),
    dtype: configDtype(raw),
    padTokenId: pad[0] ?? null,
    bosTokenId: bos[0] ?? null,
    eosTokenId: eos[0] ?? null,
    eosTokenIds: eos,
    rmsNormEps: posNum(raw, 'rms_norm_eps', 1e-6),
    ropeTheta: rope.theta,
    ropeScaling: rope.scaling,
    qkvBias: qwen || attnBias,
    oBias: !qwen && attnBias,
    mlpBias: optBool(raw, 'mlp_bias', false),
    slidingWindow,
    raw,
  };
}

/** Shapes of one layer's linears: [name suffix, rows, cols, bias]. */
function linears(c: LlamaConfig): Array<[string, number, number, boolean]> {
  const d = c.hiddenSize, q = c.numHeads * c.headDim, kv = c.numKvHeads * c.headDim, f = c.ffnDim;
  return [
    ['self_attn.q_proj', q, d, c.qkvBias], ['self_attn.k_proj', kv, d, c.qkvBias], ['self_attn.v_proj', kv, d, c.qkvBias],
    ['self_attn.o_proj', d, q, c.oBias], ['mlp.gate_proj', f, d, c.mlpBias], ['mlp.up_proj', f, d, c.mlpBias], ['mlp.down_proj', d, f, c.mlpBias],
  ];
}

export function expectedLlamaTensors(c: LlamaConfig): Map<string, number[]> {
  const m = new Map<string, number[]>();
  const d = c.hiddenSize;
  m.set(`${P}embed_tokens.weight`, [c.vocabSize, d]);
  for (let l = 0; l < c.numLayers; l++) {
    const p = `${P}layers.${l}.`;
    m.set(`${p}input_layernorm.weight`, [d]);
    for (const [s, R, C, b] of linears(c)) {
      m.set(`${p}${s}.weight`, [R, C]);
      if (b) m.set(`${p}${s}.bias`, [R]);
      if (s === 'self_attn.o_proj') m.set(`${p}post_attention_layernorm.weight`, [d]);
    }
  }
  m.set(`${P}norm.weight`, [d]);
  if (!c.tieWordEmbeddings) m.set('lm_head.weight', [c.vocabSize, d]);
  return m;
}

export function llamaPrunableLayers(c: LlamaConfig): PrunableLayer[] {
  const out: PrunableLayer[] = [];
  for (let l = 0; l < c.numLayers; l++) {
    const p = `${P}layers.${l}.`;
    for (const [s, R, C, bias] of linears(c)) {
      const type = s.slice(s.indexOf('.') + 1);
      const inputKey = type === 'k_proj' || type === 'v_proj' ? `${p}self_attn.q_proj` : type === 'up_proj' ? `${p}mlp.gate_proj` : `${p}${s}`;
      out.push({ name: `${p}${s}`, type, R, C, bias, inputKey, layer: l });
    }
  }
  return out;
}

export const llamaSpec: FamilySpec<LlamaConfig> = {
  family: 'llama',
  modelTypes: ['llama', 'mistral', 'qwen2'],
  parseConfig: parseLlamaFields,
  tensors: expectedLlamaTensors,
  canonicalName: (n) => n,
  ignoredTensor: (n) => /\.rotary_emb\.inv_freq$/.test(n), // older exports saved the RoPE buffer; it is recomputed from the config
  embedName: `${P}embed_tokens.weight`,
  moduleTypes: ['q_proj', 'k_proj', 'v_proj', 'o_proj', 'gate_proj', 'up_proj', 'down_proj'],
  prunableLayers: llamaPrunableLayers,
  units: (c) => [
    { kind: 'ffn', width: c.ffnDim, rows: ['mlp.gate_proj', 'mlp.up_proj'], cols: ['mlp.down_proj'] },
    { kind: 'head', heads: c.numHeads, kvHeads: c.numKvHeads, headDim: c.headDim, q: 'self_attn.q_proj', k: 'self_attn.k_proj', v: 'self_attn.v_proj', o: 'self_attn.o_proj', ropePairs: true },
  ],
  loraTargets: (c, targets) => llamaPrunableLayers(c).filter((L) => targets === 'all' || (ATTENTION as readonly string[]).includes(L.type)).map((L) => L.name),
  describe: (c) => `${c.architecture} ${c.numLayers} layers, d=${c.hiddenSize}, ${c.numHeads}/${c.numKvHeads} heads × ${c.headDim}, ffn=${c.ffnDim}`,
};
