/** GPU-side fixtures for Llama tests: a reference tiny Llama (float64) as a LoadedCheckpoint for DecoderModel. */
import type { LoadedCheckpoint } from '../../src/io/checkpoint';
import { expectedTensors, parseModelConfig } from '../../src/io/config';
import type { RefLlama } from '../../src/reference/llama';
import { tinyLlama, type TinyLlamaOptions } from '../../src/reference/tinyllama';

/** config.json fields of a reference Llama (Qwen2 when it has q/k/v biases, Llama otherwise). */
export function llamaConfigJson(m: RefLlama): Record<string, unknown> {
  const c = m.cfg;
  return {
    model_type: c.qkvBias ? 'qwen2' : 'llama', architectures: [c.qkvBias ? 'Qwen2ForCausalLM' : 'LlamaForCausalLM'],
    hidden_size: c.d, num_attention_heads: c.heads, num_key_value_heads: c.kvHeads, head_dim: c.headDim,
    num_hidden_layers: c.layers, intermediate_size: c.ffn, vocab_size: c.vocab, max_position_embeddings: c.maxPos,
    rms_norm_eps: c.eps, rope_theta: c.ropeTheta, tie_word_embeddings: c.tied, hidden_act: 'silu', torch_dtype: 'float32',
  };
}

/** The reference model's weights as the GPU model's checkpoint (f32 copies). */
export function llamaCheckpoint(m: RefLlama): LoadedCheckpoint {
  const config = parseModelConfig(llamaConfigJson(m));
  const tensors = new Map<string, Float32Array>();
  const shapes = new Map<string, number[]>();
  for (const [name, shape] of expectedTensors(config)) {
    const w = m.w.get(name);
    if (!w) throw new Error(`llamaCheckpoint: reference lacks ${name}`);
    tensors.set(name, Float32Array.from(w));
    shapes.set(name, shape);
  }
  return { config, tensors, shapes, sourceDtype: 'F32', files: [] };
}

/** tinyLlama with weights rounded to f32, so the reference sees exactly what the GPU holds. */
export function f32Llama(o: TinyLlamaOptions): RefLlama {
  const m = tinyLlama(o);
  return { cfg: { ...m.cfg }, w: new Map([...m.w].map(([k, v]) => [k, Float64Array.from(Float32Array.from(v))])) };
}
