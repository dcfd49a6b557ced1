/**
 * OPT (facebook/opt-125m…66b) without a GPU: config.json → OptConfig, tensor names/shapes, prunable
 * linears, units, LoRA targets. Supported: pre-LayerNorm, ReLU, learned positions with offset 2,
 * word_embed_proj_dim = hidden_size. Rejected with a ConfigError naming the field: opt-350m's
 * project_in/project_out, post-LayerNorm (do_layer_norm_before=false), _remove_final_layer_norm=true,
 * activations other than relu. enable_bias / layer_norm_elementwise_affine may be false in a config
 * (the tensor list follows them); the GPU model refuses such a model (model/model.ts).
 */

import { ConfigError } from '../../io/errors';
import { compactLayers, configDtype, firstArchitecture, optBool, optInt, posInt, type Raw } from '../parse';
import { layerDims, type FamilySpec, type OptConfig, type PrunableLayer, type UnitRule } from '../types';

export type { OptConfig };

/** OPT's learned positional embedding table has max_position_embeddings + 2 rows (fairseq offset). */
export const OPT_POSITION_OFFSET = 2;

const P = 'model.decoder.';

/** Prunable linears of one decoder layer, in the order used everywhere (ALGORITHM.md §1). */
export const PRUNABLE_SUFFIXES = ['self_attn.q_proj', 'self_attn.k_proj', 'self_attn.v_proj', 'self_attn.out_proj', 'fc1', 'fc2'] as const;
const ATTENTION = PRUNABLE_SUFFIXES.slice(0, 4);

/** Validate an OPT config.json (model_type already dispatched on by the registry). */
export function parseOptFields(raw: Raw): OptConfig {
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
  const eosTokenId = optInt(raw, 'eos_token_id', 2);
  const numLayers = posInt(raw, 'num_hidden_layers'), ffnDim = posInt(raw, 'ffn_dim');
  const layers = compactLayers(raw, { numLayers, ffnDim, numHeads, numKvHeads: numHeads }, false);
  return {
    family: 'opt',
    modelType: 'opt',
    architecture: firstArchitecture(raw) ?? 'OPTForCausalLM',
    vocabSize: posInt(raw, 'vocab_size'),
    hiddenSize,
    numLayers,
    numHeads,
    numKvHeads: numHeads,
    headDim: hiddenSize / numHeads,
    ffnDim,
    maxPositions: posInt(raw, 'max_position_embeddings'),
    wordEmbedProjDim,
    doLayerNormBefore,
    activation: 'relu',
    enableBias: optBool(raw, 'enable_bias', true),
    tieWordEmbeddings: optBool(raw, 'tie_word_embeddings', true),
    dtype: configDtype(raw),
    layerNormElementwiseAffine: optBool(raw, 'layer_norm_elementwise_affine', true),
    padTokenId: optInt(raw, 'pad_token_id', 1),
    bosTokenId: optInt(raw, 'bos_token_id', 2),
    eosTokenId,
    eosTokenIds: [eosTokenId],
    ...(layers ? { layers } : {}),
    raw,
  };
}

/** Canonical tensor names ("model.decoder.…", plus "lm_head.weight" only when untied) → shape, in a stable order. */
export function expectedOptTensors(cfg: OptConfig): Map<string, number[]> {
  const h = cfg.hiddenSize;
  const m = new Map<string, number[]>();
  const ln = (name: string) => {
    if (!cfg.layerNormElementwiseAffine) return;
    m.set(`${name}.weight`, [h]);
    m.set(`${name}.bias`, [h]);
  };
  const linear = (name: string, out: number, inp: number) => {
    m.set(`${name}.weight`, [out, inp]);
    if (cfg.enableBias) m.set(`${name}.bias`, [out]);
  };
  m.set(`${P}embed_tokens.weight`, [cfg.vocabSize, cfg.wordEmbedProjDim]);
  m.set(`${P}embed_positions.weight`, [cfg.maxPositions + OPT_POSITION_OFFSET, h]);
  for (let l = 0; l < cfg.numLayers; l++) {
    const q = `${P}layers.${l}.`;
    const { ffnDim: f, numHeads } = layerDims(cfg, l), a = numHeads * cfg.headDim; // a = h unless compact
    ln(`${q}self_attn_layer_norm`);
    for (const proj of ['q_proj', 'k_proj', 'v_proj']) linear(`${q}self_attn.${proj}`, a, h);
    linear(`${q}self_attn.out_proj`, h, a);
    ln(`${q}final_layer_norm`);
    linear(`${q}fc1`, f, h);
    linear(`${q}fc2`, h, f);
  }
  ln(`${P}final_layer_norm`);
  if (!cfg.tieWordEmbeddings) m.set('lm_head.weight', [cfg.vocabSize, cfg.wordEmbedProjDim]);
  return m;
}

/** "decoder.x" (facebook/opt-* style) → "model.decoder.x"; others unchanged. */
export function canonicalOptName(name: string): string {
  return name.startsWith('decoder.') ? `model.${name}` : name;
}

/** The prunable linears of an OPT config, q, k, v, out_proj, fc1, fc2 per layer. */
export function optPrunableLayers(cfg: OptConfig): PrunableLayer[] {
  const { numLayers, hiddenSize: d } = cfg;
  const out: PrunableLayer[] = [];
  for (let l = 0; l < numLayers; l++) {
    const { ffnDim, numHeads } = layerDims(cfg, l), a = numHeads * cfg.headDim;
    for (const s of PRUNABLE_SUFFIXES) {
      const name = `${P}layers.${l}.${s}`;
      const R = s === 'fc1' ? ffnDim : s === 'fc2' || s === 'self_attn.out_proj' ? d : a;
      const C = s === 'fc2' ? ffnDim : s === 'self_attn.out_proj' ? a : d;
      const inputKey = s.startsWith('self_attn.') && s !== 'self_attn.out_proj' ? `${P}layers.${l}.self_attn.q_proj` : name;
      out.push({ name, type: s.slice(s.lastIndexOf('.') + 1), R, C, bias: cfg.enableBias, inputKey, layer: l });
    }
  }
  return out;
}

export const optSpec: FamilySpec<OptConfig> = {
  family: 'opt',
  modelTypes: ['opt'],
  parseConfig: parseOptFields,
  tensors: expectedOptTensors,
  canonicalName: canonicalOptName,
  embedName: `${P}embed_tokens.weight`,
  moduleTypes: ['q_proj', 'k_proj', 'v_proj', 'out_proj', 'fc1', 'fc2'],
  prunableLayers: optPrunableLayers,
  layerPrefix: (l) => `${P}layers.${l}.`,
  units(cfg, layer): UnitRule[] {
    const { ffnDim, numHeads } = layerDims(cfg, layer);
    return [
      { kind: 'ffn', width: ffnDim, rows: ['fc1'], cols: ['fc2'] },
      // No RoPE: any q/k dim can go on its own.
      { kind: 'head', heads: numHeads, kvHeads: numHeads, headDim: cfg.headDim, q: 'self_attn.q_proj', k: 'self_attn.k_proj', v: 'self_attn.v_proj', o: 'self_attn.out_proj', ropePairs: false },
    ];
  },
  loraTargets(cfg, targets) {
    return optPrunableLayers(cfg).filter((L) => targets === 'all' || ATTENTION.some((s) => L.name.endsWith(`.${s}`))).map((L) => L.name);
  },
  describe: (c) => `OPT ${c.numLayers} layers, d=${c.hiddenSize}, ${c.numHeads} heads, ffn=${c.ffnDim}${c.layers ? ' (maxima; compact per-layer widths)' : ''}`,
};
