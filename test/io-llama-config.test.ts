import { describe, expect, it } from 'vitest';
import { expectedTensors, familySpec, parseModelConfig, type LlamaConfig } from '../src/io/config';
import { ConfigError, UnsupportedArchitectureError } from '../src/io/errors';

// Config bodies as published on the Hub (keys that matter here; values as in those files).
const LLAMA2_7B = {
  architectures: ['LlamaForCausalLM'], bos_token_id: 1, eos_token_id: 2, hidden_act: 'silu', hidden_size: 4096, initializer_range: 0.02,
  intermediate_size: 11008, max_position_embeddings: 4096, model_type: 'llama', num_attention_heads: 32, num_hidden_layers: 32,
  num_key_value_heads: 32, pretraining_tp: 1, rms_norm_eps: 1e-5, rope_scaling: null, tie_word_embeddings: false, torch_dtype: 'float16',
  use_cache: true, vocab_size: 32000,
};
const LLAMA3_8B = {
  architectures: ['LlamaForCausalLM'], attention_bias: false, bos_token_id: 128000, eos_token_id: [128001, 128008, 128009], hidden_act: 'silu',
  hidden_size: 4096, intermediate_size: 14336, max_position_embeddings: 131072, mlp_bias: false, model_type: 'llama', num_attention_heads: 32,
  num_hidden_layers: 32, num_key_value_heads: 8, rms_norm_eps: 1e-5, rope_theta: 500000.0, tie_word_embeddings: false, torch_dtype: 'bfloat16',
  rope_scaling: { factor: 8.0, low_freq_factor: 1.0, high_freq_factor: 4.0, original_max_position_embeddings: 8192, rope_type: 'llama3' },
  vocab_size: 128256,
};
const MISTRAL_7B = {
  architectures: ['MistralForCausalLM'], bos_token_id: 1, eos_token_id: 2, hidden_act: 'silu', hidden_size: 4096, intermediate_size: 14336,
  max_position_embeddings: 32768, model_type: 'mistral', num_attention_heads: 32, num_hidden_layers: 32, num_key_value_heads: 8,
  rms_norm_eps: 1e-5, rope_theta: 10000.0, sliding_window: 4096, tie_word_embeddings: false, torch_dtype: 'bfloat16', vocab_size: 32000,
};
const QWEN2_05B = {
  architectures: ['Qwen2ForCausalLM'], bos_token_id: 151643, eos_token_id: 151643, hidden_act: 'silu', hidden_size: 896, intermediate_size: 4864,
  max_position_embeddings: 32768, max_window_layers: 24, model_type: 'qwen2', num_attention_heads: 14, num_hidden_layers: 24, num_key_value_heads: 2,
  rms_norm_eps: 1e-6, rope_theta: 1000000.0, sliding_window: 32768, tie_word_embeddings: true, torch_dtype: 'bfloat16', use_sliding_window: false,
  vocab_size: 151936,
};
const TINYLLAMA = {
  architectures: ['LlamaForCausalLM'], bos_token_id: 1, eos_token_id: 2, hidden_act: 'silu', hidden_size: 2048, intermediate_size: 5632,
  max_position_embeddings: 2048, model_type: 'llama', num_attention_heads: 32, num_hidden_layers: 22, num_key_value_heads: 4, rms_norm_eps: 1e-5,
  rope_scaling: null, rope_theta: 10000.0, tie_word_embeddings: false, torch_dtype: 'bfloat16', vocab_size: 32000,
};
const SMOLLM2_135M = {
  architectures: ['LlamaForCausalLM'], bos_token_id: 1, eos_token_id: 2, hidden_act: 'silu', hidden_size: 576, intermediate_size: 1536,
  max_position_embeddings: 8192, model_type: 'llama', num_attention_heads: 9, num_hidden_layers: 30, num_key_value_heads: 3, rms_norm_eps: 1e-5,
  rope_theta: 100000, tie_word_embeddings: true, torch_dtype: 'bfloat16', vocab_size: 49152,
};
const MISTRAL_NEMO = { ...MISTRAL_7B, hidden_size: 5120, head_dim: 128, max_position_embeddings: 1024000, rope_theta: 1000000.0, sliding_window: null, vocab_size: 131072, num_hidden_layers: 40 };

const llama = (raw: Record<string, unknown>) => {
  const c = parseModelConfig(raw);
  if (c.family !== 'llama') throw new Error('not llama');
  return c as LlamaConfig;
};
const shapeOf = (raw: Record<string, unknown>, name: string) => expectedTensors(llama(raw)).get(name);
function expectThrows(raw: Record<string, unknown>, cls: typeof ConfigError, ...words: string[]): void {
  let err: unknown;
  try {
    parseModelConfig(raw);
  } catch (e) {
    err = e;
  }
  expect(err, JSON.stringify(words)).toBeInstanceOf(cls);
  if (cls === ConfigError) expect(err).not.toBeInstanceOf(UnsupportedArchitectureError); // a bad value, not an unsupported option
  for (const w of words) expect((err as Error).message).toContain(w);
}

describe('Llama-family config.json → LlamaConfig', () => {
  it('Llama-2-7B: MHA, default RoPE, untied, no biases; 291 tensors, 224 prunable linears', () => {
    const c = llama(LLAMA2_7B);
    expect(c).toMatchObject({
      modelType: 'llama', architecture: 'LlamaForCausalLM', numHeads: 32, numKvHeads: 32, headDim: 128, ffnDim: 11008, maxPositions: 4096,
      rmsNormEps: 1e-5, ropeTheta: 10000, ropeScaling: { type: 'default' }, tieWordEmbeddings: false, dtype: 'float16', qkvBias: false, oBias: false,
      mlpBias: false, slidingWindow: null, bosTokenId: 1, eosTokenIds: [2],
    });
    const t = expectedTensors(c);
    expect(t.size).toBe(1 + 32 * 9 + 2);
    expect(t.get('lm_head.weight')).toEqual([32000, 4096]);
    expect(familySpec(c).prunableLayers(c).length).toBe(32 * 7);
  });

  it("keys left out take transformers' LlamaConfig defaults", () => {
    const { rms_norm_eps: _e, tie_word_embeddings: _t, num_key_value_heads: _k, bos_token_id: _b, eos_token_id: _o, rope_scaling: _r, torch_dtype: _d, ...bare } = LLAMA2_7B;
    expect(llama(bare)).toMatchObject({
      rmsNormEps: 1e-6, tieWordEmbeddings: false, ropeTheta: 10000, numKvHeads: 32, bosTokenId: 1, eosTokenId: 2, padTokenId: null, dtype: 'float32',
      qkvBias: false, oBias: false, mlpBias: false,
    });
    expect(llama({ ...bare, num_key_value_heads: null }).numKvHeads).toBe(32);
    expect(llama({ ...bare, architectures: null }).architecture).toBe('LlamaForCausalLM');
    expect(llama({ ...bare, hidden_act: 'swish' }).numLayers).toBe(32); // transformers' alias of SiLU
  });

  it('Llama attention_bias / mlp_bias put biases on q, k, v, o / the MLP', () => {
    const c = llama({ ...LLAMA2_7B, attention_bias: true, mlp_bias: true });
    expect([c.qkvBias, c.oBias, c.mlpBias]).toEqual([true, true, true]);
    expect(familySpec(c).prunableLayers(c).slice(0, 7).every((L) => L.bias)).toBe(true);
    expect(expectedTensors(c).get('model.layers.0.self_attn.o_proj.bias')).toEqual([4096]);
    expect(expectedTensors(c).get('model.layers.0.mlp.down_proj.bias')).toEqual([4096]);
  });

  it('Llama-3-8B: GQA 32/8, llama3 rope_scaling, eos_token_id as a list', () => {
    const c = llama(LLAMA3_8B);
    expect(c.ropeTheta).toBe(500000);
    expect(c.ropeScaling).toEqual({ type: 'llama3', factor: 8, lowFreqFactor: 1, highFreqFactor: 4, originalMaxPositions: 8192 });
    expect([c.bosTokenId, c.eosTokenId, c.eosTokenIds]).toEqual([128000, 128001, [128001, 128008, 128009]]);
    expect([c.numKvHeads, c.headDim, c.dtype]).toEqual([8, 128, 'bfloat16']);
    expect(shapeOf(LLAMA3_8B, 'model.layers.31.self_attn.k_proj.weight')).toEqual([1024, 4096]);
    expect(shapeOf(LLAMA3_8B, 'model.embed_tokens.weight')).toEqual([128256, 4096]);
  });

  it('the newer rope_parameters spelling (rope_theta inside), and the old "type" key', () => {
    const { rope_scaling, rope_theta: _t, ...rest } = LLAMA3_8B;
    const c = llama({ ...rest, rope_parameters: { ...rope_scaling, rope_theta: 500000.0 } });
    expect([c.ropeTheta, c.ropeScaling]).toEqual([500000, llama(LLAMA3_8B).ropeScaling]);
    expect(llama({ ...LLAMA2_7B, rope_parameters: { rope_type: 'default', rope_theta: 1e6 } })).toMatchObject({ ropeTheta: 1e6, ropeScaling: { type: 'default' } });
    expect(llama({ ...LLAMA2_7B, rope_scaling: { type: 'linear', factor: 4 } }).ropeScaling).toEqual({ type: 'linear', factor: 4 });
  });

  it('Mistral-7B: sliding_window 4096 (null in v0.2+); MistralConfig defaults; never biases', () => {
    expect(llama(MISTRAL_7B)).toMatchObject({ modelType: 'mistral', architecture: 'MistralForCausalLM', slidingWindow: 4096, numKvHeads: 8, headDim: 128, qkvBias: false });
    expect(llama({ ...MISTRAL_7B, sliding_window: null, rope_theta: 1e6 })).toMatchObject({ slidingWindow: null, ropeTheta: 1e6 });
    const { sliding_window: _s, num_key_value_heads: _k, rms_norm_eps: _e, ...bare } = MISTRAL_7B;
    expect(llama(bare)).toMatchObject({ slidingWindow: 4096, numKvHeads: 8, rmsNormEps: 1e-6 }); // MistralConfig's own defaults
    const c = llama({ ...MISTRAL_7B, attention_bias: true, mlp_bias: true }); // MistralAttention/MLP hard-code bias=False
    expect([c.qkvBias, c.oBias, c.mlpBias]).toEqual([false, false, false]);
  });

  it('Qwen2: q/k/v biases always, none on o_proj or the MLP; use_sliding_window false', () => {
    const c = llama(QWEN2_05B);
    expect(c).toMatchObject({ modelType: 'qwen2', qkvBias: true, oBias: false, mlpBias: false, slidingWindow: null, headDim: 64, numKvHeads: 2, tieWordEmbeddings: true, ropeTheta: 1e6, bosTokenId: 151643 });
    const t = expectedTensors(c);
    expect(t.get('model.layers.0.self_attn.q_proj.bias')).toEqual([896]);
    expect(t.get('model.layers.0.self_attn.k_proj.bias')).toEqual([128]);
    expect(t.get('model.layers.0.self_attn.v_proj.bias')).toEqual([128]);
    expect(t.has('model.layers.0.self_attn.o_proj.bias')).toBe(false);
    expect([...t.keys()].filter((n) => n.includes('mlp') && n.endsWith('.bias'))).toEqual([]);
    expect(t.has('lm_head.weight')).toBe(false);
    expect(familySpec(c).prunableLayers(c).slice(0, 7).map((L) => L.bias)).toEqual([true, true, true, false, false, false, false]);
    expect(llama({ ...QWEN2_05B, attention_bias: false }).qkvBias).toBe(true); // Qwen2Attention ignores the key
    // Qwen2 slides only in layers ≥ max_window_layers
    expect(llama({ ...QWEN2_05B, use_sliding_window: true }).slidingWindow).toBe(null);
    expect(llama({ ...QWEN2_05B, use_sliding_window: true, max_window_layers: 12, sliding_window: 4096 }).slidingWindow).toBe(4096);
    const { bos_token_id: _b, eos_token_id: _e, ...bare } = QWEN2_05B;
    expect(llama(bare)).toMatchObject({ bosTokenId: null, eosTokenId: null, eosTokenIds: [] }); // Qwen2Config has no token-id defaults
  });

  it('TinyLlama (GQA 32/4) and SmolLM2 (GQA 9/3, tied)', () => {
    expect(llama(TINYLLAMA)).toMatchObject({ numKvHeads: 4, headDim: 64, tieWordEmbeddings: false });
    expect(shapeOf(TINYLLAMA, 'model.layers.21.self_attn.v_proj.weight')).toEqual([256, 2048]);
    const s = llama(SMOLLM2_135M);
    expect(s).toMatchObject({ numHeads: 9, numKvHeads: 3, headDim: 64, tieWordEmbeddings: true, ropeTheta: 100000 });
    expect(expectedTensors(s).has('lm_head.weight')).toBe(false);
    expect(shapeOf(SMOLLM2_135M, 'model.layers.0.self_attn.k_proj.weight')).toEqual([192, 576]);
  });

  it('head_dim given explicitly and ≠ hidden / heads (Mistral-Nemo-like)', () => {
    const c = llama(MISTRAL_NEMO);
    expect([c.headDim, c.hiddenSize / c.numHeads]).toEqual([128, 160]);
    expect(shapeOf(MISTRAL_NEMO, 'model.layers.0.self_attn.q_proj.weight')).toEqual([4096, 5120]);
    expect(shapeOf(MISTRAL_NEMO, 'model.layers.0.self_attn.k_proj.weight')).toEqual([1024, 5120]);
    expect(shapeOf(MISTRAL_NEMO, 'model.layers.0.self_attn.o_proj.weight')).toEqual([5120, 4096]);
    const o = familySpec(c).prunableLayers(c).find((L) => L.type === 'o_proj')!;
    expect([o.R, o.C]).toEqual([5120, 4096]);
    expect(llama({ ...LLAMA2_7B, hidden_size: 60, num_attention_heads: 4, num_key_value_heads: 2, head_dim: 16 }).headDim).toBe(16);
  });

  it('unsupported families and options → UnsupportedArchitectureError naming the field and value', () => {
    const U = UnsupportedArchitectureError;
    expectThrows({ ...LLAMA2_7B, hidden_act: 'gelu' }, U, 'hidden_act', 'gelu');
    expectThrows({ ...LLAMA2_7B, rope_scaling: { rope_type: 'yarn', factor: 4, original_max_position_embeddings: 32768 } }, U, 'rope_scaling', 'yarn');
    expectThrows({ ...LLAMA2_7B, rope_scaling: { type: 'dynamic', factor: 2 } }, U, 'dynamic');
    expectThrows({ ...LLAMA2_7B, rope_parameters: { rope_type: 'longrope', rope_theta: 1e4 } }, U, 'rope_parameters', 'longrope');
    expectThrows({ ...LLAMA2_7B, partial_rotary_factor: 0.5 }, U, 'partial_rotary_factor', '0.5');
    expectThrows({ ...LLAMA2_7B, rope_parameters: { rope_type: 'default', rope_theta: 1e4, partial_rotary_factor: 0.5 } }, U, 'partial_rotary_factor');
    expectThrows({ ...LLAMA2_7B, model_type: 'gpt2', architectures: ['GPT2LMHeadModel'] }, U, 'GPT2LMHeadModel');
    expectThrows({ ...LLAMA2_7B, model_type: 'gpt2', architectures: undefined }, U, 'model_type', 'gpt2');
    expectThrows({ ...LLAMA2_7B, architectures: ['MistralForCausalLM'] }, U, 'MistralForCausalLM', 'model_type', 'llama');
    expectThrows({ ...QWEN2_05B, model_type: 'llama' }, U, 'Qwen2ForCausalLM');
    expectThrows({ ...LLAMA2_7B, architectures: ['LlamaForSequenceClassification'] }, U, 'LlamaForSequenceClassification');
    expect(new U('x')).toBeInstanceOf(ConfigError);
  });

  it('bad values → ConfigError naming the field', () => {
    const C = ConfigError;
    expectThrows({ ...LLAMA2_7B, num_key_value_heads: 5 }, C, 'num_attention_heads', 'num_key_value_heads');
    expectThrows({ ...LLAMA2_7B, head_dim: 127 }, C, 'head_dim', '127');
    expectThrows({ ...LLAMA2_7B, hidden_size: 4000, num_attention_heads: 48, num_key_value_heads: 48 }, C, 'hidden_size');
    for (const key of ['hidden_size', 'intermediate_size', 'num_hidden_layers', 'num_attention_heads', 'vocab_size', 'max_position_embeddings', 'num_key_value_heads']) {
      expectThrows({ ...LLAMA2_7B, [key]: -8 }, C, key, '-8');
    }
    expectThrows({ ...LLAMA2_7B, vocab_size: 1.5 }, C, 'vocab_size');
    expectThrows({ ...LLAMA2_7B, rope_theta: 1 }, C, 'rope_theta');
    expectThrows({ ...LLAMA2_7B, rope_theta: '10000' }, C, 'rope_theta');
    expectThrows({ ...LLAMA2_7B, rope_parameters: { rope_type: 'default', rope_theta: 0.5 } }, C, 'rope_theta');
    const l3 = LLAMA3_8B.rope_scaling;
    expectThrows({ ...LLAMA3_8B, rope_scaling: { ...l3, high_freq_factor: 1 } }, C, 'high_freq_factor', 'low_freq_factor');
    expectThrows({ ...LLAMA3_8B, rope_scaling: { ...l3, high_freq_factor: 0.5 } }, C, 'high_freq_factor');
    const { original_max_position_embeddings: _o, ...noOrig } = l3;
    expectThrows({ ...LLAMA3_8B, rope_scaling: noOrig }, C, 'rope_scaling.original_max_position_embeddings');
    expectThrows({ ...LLAMA3_8B, rope_scaling: { ...l3, factor: -8 } }, C, 'rope_scaling.factor', '-8');
    expectThrows({ ...LLAMA2_7B, rope_scaling: { type: 'linear' } }, C, 'factor');
    expectThrows({ ...LLAMA2_7B, rope_scaling: 'linear' }, C, 'rope_scaling');
    expectThrows({ ...LLAMA2_7B, rms_norm_eps: 0 }, C, 'rms_norm_eps');
    expectThrows({ ...MISTRAL_7B, sliding_window: 0 }, C, 'sliding_window');
    expectThrows({ ...LLAMA3_8B, eos_token_id: [128001, 'x'] }, C, 'eos_token_id');
    expectThrows({ ...LLAMA2_7B, tie_word_embeddings: 'yes' }, C, 'tie_word_embeddings');
    expectThrows({ ...LLAMA2_7B, torch_dtype: 'int8' }, C, 'torch_dtype', 'int8');
  });
});
