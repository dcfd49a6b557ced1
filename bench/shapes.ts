/**
 * Configs of real model shapes (random-weight benchmarks: bench/scale.ts, bench/compact-speed.ts) and
 * their random weights: the shape decides the timing, the fixtures decide the quality.
 */
import { expectedTensors, type ModelConfig } from '../src/io/config';
import type { LoadedCheckpoint } from '../src/io/checkpoint';

export const SHAPES: Record<string, Record<string, unknown>> = {
  // a smoke test of this script on a software GPU
  'opt-tiny': { model_type: 'opt', architectures: ['OPTForCausalLM'], hidden_size: 32, num_attention_heads: 4, num_hidden_layers: 3, ffn_dim: 256, vocab_size: 64, max_position_embeddings: 64, word_embed_proj_dim: 32, dtype: 'float16' },
  'opt-125m': { model_type: 'opt', architectures: ['OPTForCausalLM'], hidden_size: 768, num_attention_heads: 12, num_hidden_layers: 12, ffn_dim: 3072, vocab_size: 50272, max_position_embeddings: 2048, word_embed_proj_dim: 768, dtype: 'float16' },
  'opt-1.3b': { model_type: 'opt', architectures: ['OPTForCausalLM'], hidden_size: 2048, num_attention_heads: 32, num_hidden_layers: 24, ffn_dim: 8192, vocab_size: 50272, max_position_embeddings: 2048, word_embed_proj_dim: 2048, dtype: 'float16' },
  'opt-6.7b': { model_type: 'opt', architectures: ['OPTForCausalLM'], hidden_size: 4096, num_attention_heads: 32, num_hidden_layers: 32, ffn_dim: 16384, vocab_size: 50272, max_position_embeddings: 2048, word_embed_proj_dim: 4096, dtype: 'float16' },
  'llama-7b': { model_type: 'llama', architectures: ['LlamaForCausalLM'], hidden_size: 4096, intermediate_size: 11008, num_attention_heads: 32, num_key_value_heads: 32, num_hidden_layers: 32, vocab_size: 32000, max_position_embeddings: 4096, rms_norm_eps: 1e-5, torch_dtype: 'float16' },
};

/** Random weights of the config's tensors: uniform with std 0.02 (fast for billions of values), norms 1. */
export function randomCheckpoint(config: ModelConfig): LoadedCheckpoint {
  const shapes = expectedTensors(config);
  const tensors = new Map<string, Float32Array>();
  let s = 12345 >>> 0;
  const a = 0.02 * Math.sqrt(3) * 2 / 2 ** 32;
  for (const [n, sh] of shapes) {
    const t = new Float32Array(sh.reduce((x, y) => x * y, 1));
    if (/norm\.weight$/.test(n)) t.fill(1);
    else if (!n.endsWith('bias')) for (let i = 0; i < t.length; i++) { s = (Math.imul(s, 1664525) + 1013904223) >>> 0; t[i] = s * a - 0.02 * Math.sqrt(3); }
    tensors.set(n, t);
  }
  return { config, tensors, shapes, sourceDtype: 'F32', files: [] };
}
