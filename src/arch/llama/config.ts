/**
 * The Llama family without a GPU (ALGORITHM.md §12): LlamaForCausalLM, MistralForCausalLM and
 * Qwen2ForCausalLM configs → LlamaConfig, tensor names/shapes, prunable linears, units, LoRA targets.
 * Differences inside the family are config fields, not classes: Qwen2 always has q/k/v biases,
 * Llama's attention_bias puts biases on q/k/v/o and mlp_bias on the MLP, Mistral has no biases and a
 * sliding window. Defaults follow transformers' config classes per model_type.
 * Unsupported options (other activations, rope types other than default/linear/llama3, partial
 * rotary) are UnsupportedArchitectureError naming the field; bad values are ConfigError.
 */

import { ConfigError, UnsupportedArchitectureError } from '../../io/errors';
import { compactLayers, configDtype, firstArchitecture, optBool, optInt, optPosInt, posInt, posNum, tokenIds, type Raw } from '../parse';
import { layerDims, type FamilySpec, type LlamaConfig, type PrunableLayer, type RopeScaling } from '../types';

export type { LlamaConfig };

const P = 'model.';
const ATTENTION = ['q_proj', 'k_proj', 'v_proj', 'o_proj'] as const;
/** Prunable linears of one decoder layer, in the order used everywhere. */
export const LLAMA_PRUNABLE_SUFFIXES = ['self_attn.q_proj', 'self_attn.k_proj', 'self_attn.v_proj', 'self_attn.o_proj', 'mlp.gate_proj', 'mlp.up_proj', 'mlp.down_proj'] as const;

const CLASSES: Record<string, string> = { llama: 'LlamaForCausalLM', mistral: 'MistralForCausalLM', qwen2: 'Qwen2ForCausalLM' };

/** rope_scaling (transformers < 5) or rope_parameters (newer; also carries rope_theta). */
function parseRope(raw: Raw): { theta: number; scaling: RopeScaling } {
  const params = raw.rope_parameters;
  const src = (params ?? raw.rope_scaling) as Raw | null | undefined;
  const key = params !== undefined && params !== null ? 'rope_parameters' : 'rope_scaling';
  const thetaRaw = (params as Raw | undefined)?.rope_theta ?? raw.rope_theta ?? 10000; // 10000: every family's default
  if (typeof thetaRaw !== 'number' || !Number.isFinite(thetaRaw) || !(thetaRaw > 1)) {
    throw new ConfigError(`config.json: rope_theta must be a finite number > 1, got ${JSON.stringify(thetaRaw)}`);
  }
  const partial = (src as Raw | undefined)?.partial_rotary_factor ?? raw.partial_rotary_factor;
  if (partial !== undefined && partial !== null && partial !== 1) {
    throw new UnsupportedArchitectureError(`config.json: partial_rotary_factor ${JSON.stringify(partial)} is not supported (only full rotary embeddings)`);
  }
  if (src === undefined || src === null) return { theta: thetaRaw, scaling: { type: 'default' } };
  if (typeof src !== 'object' || Array.isArray(src)) throw new ConfigError(`config.json: ${key} must be an object or null, got ${JSON.stringify(src)}`);
  // transformers reads rope_type, falling back to the older spelling "type".
  const type = src.rope_type ?? src.type ?? 'default';
  const num = (k: string): number => {
    const v = src[k];
    if (v === undefined || v === null) throw new ConfigError(`config.json: ${key}.${k} is required for rope type ${JSON.stringify(type)}`);
    if (typeof v !== 'number' || !Number.isFinite(v) || v <= 0) throw new ConfigError(`config.json: ${key}.${k} must be a positive number, got ${JSON.stringify(v)}`);
    return v;
  };
  switch (type) {
    case 'default':
      return { theta: thetaRaw, scaling: { type: 'default' } };
    case 'linear':
      return { theta: thetaRaw, scaling: { type: 'linear', factor: num('factor') } };
    case 'llama3': {
      // All four are required, as transformers' _validate_llama3_parameters requires them.
      const s = {
        type: 'llama3' as const, factor: num('factor'), lowFreqFactor: num('low_freq_factor'), highFreqFactor: num('high_freq_factor'),
        originalMaxPositions: num('original_max_position_embeddings'),
      };
      if (!(s.highFreqFactor > s.lowFreqFactor)) throw new ConfigError(`config.json: ${key}.high_freq_factor ${s.highFreqFactor} must exceed low_freq_factor ${s.lowFreqFactor}`);
      return { theta: thetaRaw, scaling: s };
    }
    default:
      throw new UnsupportedArchitectureError(`config.json: ${key} type ${JSON.stringify(type)} is not supported (default, linear, llama3)`);
  }
}

/**
 * Defaults that differ per model_type (transformers' LlamaConfig / MistralConfig / Qwen2Config __init__
 * defaults, applied when config.json omits the key; an explicit null kv-head count means "= heads").
 */
const DEFAULTS: Record<string, { kvHeads: number | null; bos: number | null; eos: number | null }> = {
  llama: { kvHeads: null, bos: 1, eos: 2 },
  mistral: { kvHeads: 8, bos: 1, eos: 2 },
  qwen2: { kvHeads: 32, bos: null, eos: null },
};

/** The window of a Mistral / Qwen2 config, or null. See the comment in parseLlamaFields. */
function slidingWindowOf(raw: Raw, modelType: string, numLayers: number): number | null {
  const window = (): number | null => (raw.sliding_window === undefined ? 4096 : raw.sliding_window === null ? null : posInt(raw, 'sliding_window'));
  if (modelType === 'mistral') return window();
  if (modelType !== 'qwen2' || !optBool(raw, 'use_sliding_window', false)) return null;
  // Qwen2 slides only in layers ≥ max_window_layers (default 28). One window for the model is exact
  // when no layer slides, and safe otherwise: the model refuses sequences longer than the window, and
  // within it sliding attention equals full attention.
  return optInt(raw, 'max_window_layers', 28) >= numLayers ? null : window();
}

export function parseLlamaFields(raw: Raw, modelType = 'llama'): LlamaConfig {
  const dflt = DEFAULTS[modelType] ?? DEFAULTS.llama;
  const hiddenSize = posInt(raw, 'hidden_size');
  const numHeads = posInt(raw, 'num_attention_heads');
  const numKvHeads = raw.num_key_value_heads === null ? numHeads : optPosInt(raw, 'num_key_value_heads', dflt.kvHeads ?? numHeads);
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
  // "swish" is transformers' other name for SiLU (ACT2CLS maps both to nn.SiLU).
  if (act !== 'silu' && act !== 'swish') throw new UnsupportedArchitectureError(`config.json: hidden_act ${JSON.stringify(act)} is not supported (only "silu", SwiGLU)`);
  const maxPositions = posInt(raw, 'max_position_embeddings');
  const numLayers = posInt(raw, 'num_hidden_layers');
  const rope = parseRope(raw);
  // Biases: Llama reads attention_bias (q, k, v and o) and mlp_bias; Mistral has none; Qwen2 always
  // has q/k/v biases and none on o_proj or the MLP (the modeling code hard-codes these, ignoring the keys).
  const llama = modelType === 'llama';
  const attnBias = llama && optBool(raw, 'attention_bias', false);
  const eos = tokenIds(raw, 'eos_token_id', dflt.eos);
  const bos = tokenIds(raw, 'bos_token_id', dflt.bos);
  const pad = tokenIds(raw, 'pad_token_id', null);
  const ffnDim = posInt(raw, 'intermediate_size');
  const layers = compactLayers(raw, { numLayers, ffnDim, numHeads, numKvHeads }, true);
  return {
    family: 'llama',
    modelType,
    architecture: firstArchitecture(raw) ?? CLASSES[modelType] ?? 'LlamaForCausalLM',
    vocabSize: posInt(raw, 'vocab_size'),
    hiddenSize,
    numLayers,
    numHeads,
    numKvHeads,
    headDim,
    ffnDim,
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
    qkvBias: modelType === 'qwen2' || attnBias,
    oBias: attnBias,
    mlpBias: llama && optBool(raw, 'mlp_bias', false),
    slidingWindow: slidingWindowOf(raw, modelType, numLayers),
    ...(layers ? { layers } : {}),
    raw,
  };
}

/** Shapes of layer l's linears (its own widths on a compact model): [name suffix, rows, cols, bias]. */
function linears(c: LlamaConfig, l: number): Array<[string, number, number, boolean]> {
  const L = layerDims(c, l);
  const d = c.hiddenSize, q = L.numHeads * c.headDim, kv = L.numKvHeads * c.headDim, f = L.ffnDim;
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
    for (const [s, R, C, b] of linears(c, l)) {
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
    for (const [s, R, C, bias] of linears(c, l)) {
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
  layerPrefix: (l) => `${P}layers.${l}.`,
  units: (c, layer) => [
    { kind: 'ffn', width: layerDims(c, layer).ffnDim, rows: ['mlp.gate_proj', 'mlp.up_proj'], cols: ['mlp.down_proj'] },
    { kind: 'head', heads: layerDims(c, layer).numHeads, kvHeads: layerDims(c, layer).numKvHeads, headDim: c.headDim, q: 'self_attn.q_proj', k: 'self_attn.k_proj', v: 'self_attn.v_proj', o: 'self_attn.o_proj', ropePairs: true },
  ],
  loraTargets: (c, targets) => llamaPrunableLayers(c).filter((L) => targets === 'all' || (ATTENTION as readonly string[]).includes(L.type)).map((L) => L.name),
  describe: (c) => `${c.architecture} ${c.numLayers} layers, d=${c.hiddenSize}, ${c.numHeads}/${c.numKvHeads} heads × ${c.headDim}, ffn=${c.ffnDim}${c.layers ? ' (maxima; compact per-layer widths)' : ''}`,
};
