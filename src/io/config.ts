/**
 * OPT config.json → OptConfig, and the tensor names/shapes such a model must hold.
 * Supported: the OPT family as in facebook/opt-125m…66b (pre-LayerNorm, ReLU, learned positions with
 * offset 2, word_embed_proj_dim = hidden_size). Rejected with a ConfigError naming the field: opt-350m's
 * project_in/project_out (word_embed_proj_dim ≠ hidden_size), post-LayerNorm (do_layer_norm_before=false),
 * _remove_final_layer_norm=true, activations other than relu. Biases (enable_bias) and LayerNorm affine
 * parameters (layer_norm_elementwise_affine) may be absent; the tensor list follows those flags.
 */

import { ConfigError, UnsupportedArchitectureError } from './errors';

export interface OptConfig {
  vocabSize: number;
  hiddenSize: number;
  numLayers: number;
  numHeads: number;
  ffnDim: number;
  maxPositions: number;
  wordEmbedProjDim: number;
  doLayerNormBefore: boolean;
  activation: 'relu';
  enableBias: boolean;
  tieWordEmbeddings: boolean;
  dtype: 'float16' | 'bfloat16' | 'float32';
  layerNormElementwiseAffine: boolean;
  padTokenId: number;
  bosTokenId: number;
  eosTokenId: number;
  raw: Record<string, unknown>;
}

/** OPT's learned positional embedding table has max_position_embeddings + 2 rows (fairseq offset). */
export const OPT_POSITION_OFFSET = 2;

const DTYPES = ['float16', 'bfloat16', 'float32'] as const;

function posInt(raw: Record<string, unknown>, key: string): number {
  const v = raw[key];
  if (typeof v !== 'number' || !Number.isSafeInteger(v) || v <= 0) {
    throw new ConfigError(`config.json: ${key} must be a positive integer, got ${JSON.stringify(v)}`);
  }
  return v;
}

function optInt(raw: Record<string, unknown>, key: string, dflt: number): number {
  const v = raw[key];
  if (v === undefined || v === null) return dflt;
  if (typeof v !== 'number' || !Number.isSafeInteger(v) || v < 0) {
    throw new ConfigError(`config.json: ${key} must be a non-negative integer, got ${JSON.stringify(v)}`);
  }
  return v;
}

function optBool(raw: Record<string, unknown>, key: string, dflt: boolean): boolean {
  const v = raw[key];
  if (v === undefined || v === null) return dflt;
  if (typeof v !== 'boolean') throw new ConfigError(`config.json: ${key} must be true or false, got ${JSON.stringify(v)}`);
  return v;
}

function checkArchitecture(raw: Record<string, unknown>): void {
  const mt = raw.model_type;
  const arch = raw.architectures;
  if (mt !== undefined && mt !== 'opt') {
    throw new UnsupportedArchitectureError(`config.json: model_type ${JSON.stringify(mt)} is not supported (only "opt")`);
  }
  if (arch !== undefined) {
    const list = Array.isArray(arch) ? arch : [arch];
    const other = list.find((a) => typeof a !== 'string' || !a.startsWith('OPT'));
    if (other !== undefined) {
      throw new UnsupportedArchitectureError(`config.json: architecture ${JSON.stringify(other)} is not supported (only OPT*, e.g. OPTForCausalLM)`);
    }
  }
  if (mt === undefined && arch === undefined) {
    throw new UnsupportedArchitectureError('config.json: neither model_type nor architectures is given; cannot tell it is an OPT model');
  }
}

/** Validate an OPT config.json (already JSON-parsed). Accepts "torch_dtype" (older) or "dtype" (transformers ≥ 4.56). */
export function parseOptConfig(json: unknown): OptConfig {
  if (typeof json !== 'object' || json === null || Array.isArray(json)) throw new ConfigError('config.json is not a JSON object');
  const raw = json as Record<string, unknown>;
  checkArchitecture(raw);
  const hiddenSize = posInt(raw, 'hidden_size');
  const numHeads = posInt(raw, 'num_attention_heads');
  if (hiddenSize % numHeads !== 0) {
    throw new ConfigError(`config.json: hidden_size ${hiddenSize} is not divisible by num_attention_heads ${numHeads}`);
  }
  const wordEmbedProjDim = raw.word_embed_proj_dim === undefined || raw.word_embed_proj_dim === null ? hiddenSize : posInt(raw, 'word_embed_proj_dim');
  if (wordEmbedProjDim !== hiddenSize) {
    throw new ConfigError(
      `config.json: word_embed_proj_dim ${wordEmbedProjDim} ≠ hidden_size ${hiddenSize} (project_in/project_out as in opt-350m) is not supported`,
    );
  }
  const doLayerNormBefore = optBool(raw, 'do_layer_norm_before', true);
  if (!doLayerNormBefore) throw new ConfigError('config.json: do_layer_norm_before=false (post-LayerNorm, as in opt-350m) is not supported');
  if (optBool(raw, '_remove_final_layer_norm', false)) {
    throw new ConfigError('config.json: _remove_final_layer_norm=true is not supported');
  }
  const act = raw.activation_function ?? 'relu';
  if (act !== 'relu') throw new ConfigError(`config.json: activation_function ${JSON.stringify(act)} is not supported (only "relu")`);
  const dtypeKey = raw.torch_dtype !== undefined ? 'torch_dtype' : 'dtype';
  const dtype = raw[dtypeKey] ?? 'float32';
  if (!DTYPES.includes(dtype as (typeof DTYPES)[number])) {
    throw new ConfigError(`config.json: ${dtypeKey} ${JSON.stringify(dtype)} is not supported (float16, bfloat16, float32)`);
  }
  return {
    vocabSize: posInt(raw, 'vocab_size'),
    hiddenSize,
    numLayers: posInt(raw, 'num_hidden_layers'),
    numHeads,
    ffnDim: posInt(raw, 'ffn_dim'),
    maxPositions: posInt(raw, 'max_position_embeddings'),
    wordEmbedProjDim,
    doLayerNormBefore,
    activation: 'relu',
    enableBias: optBool(raw, 'enable_bias', true),
    tieWordEmbeddings: optBool(raw, 'tie_word_embeddings', true),
    dtype: dtype as OptConfig['dtype'],
    layerNormElementwiseAffine: optBool(raw, 'layer_norm_elementwise_affine', true),
    padTokenId: optInt(raw, 'pad_token_id', 1),
    bosTokenId: optInt(raw, 'bos_token_id', 2),
    eosTokenId: optInt(raw, 'eos_token_id', 2),
    raw,
  };
}

/** Canonical tensor names ("model.decoder.…", plus "lm_head.weight" only when untied) → shape, in a stable order. */
export function expectedOptTensors(cfg: OptConfig): Map<string, number[]> {
  const h = cfg.hiddenSize;
  const m = new Map<string, number[]>();
  const p = 'model.decoder.';
  const ln = (name: string) => {
    if (!cfg.layerNormElementwiseAffine) return;
    m.set(`${name}.weight`, [h]);
    m.set(`${name}.bias`, [h]);
  };
  const linear = (name: string, out: number, inp: number) => {
    m.set(`${name}.weight`, [out, inp]);
    if (cfg.enableBias) m.set(`${name}.bias`, [out]);
  };
  m.set(`${p}embed_tokens.weight`, [cfg.vocabSize, cfg.wordEmbedProjDim]);
  m.set(`${p}embed_positions.weight`, [cfg.maxPositions + OPT_POSITION_OFFSET, h]);
  for (let l = 0; l < cfg.numLayers; l++) {
    const q = `${p}layers.${l}.`;
    ln(`${q}self_attn_layer_norm`);
    for (const proj of ['q_proj', 'k_proj', 'v_proj', 'out_proj']) linear(`${q}self_attn.${proj}`, h, h);
    ln(`${q}final_layer_norm`);
    linear(`${q}fc1`, cfg.ffnDim, h);
    linear(`${q}fc2`, h, cfg.ffnDim);
  }
  ln(`${p}final_layer_norm`);
  if (!cfg.tieWordEmbeddings) m.set('lm_head.weight', [cfg.vocabSize, cfg.wordEmbedProjDim]);
  return m;
}

/** Map a checkpoint key to its canonical name: "decoder.x" (facebook/opt-* style) → "model.decoder.x"; others unchanged. */
export function canonicalOptName(name: string): string {
  return name.startsWith('decoder.') ? `model.${name}` : name;
}
