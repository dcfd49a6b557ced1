/**
 * Random tiny OPT generator for tests: Hugging Face parameter names ("model.decoder.…"), float64,
 * deterministic for a seed. Scales keep activations O(1) so losses, gradients and curvature are
 * well conditioned at d = 16…64.
 */

import { ShapeError } from '../gpu/errors';
import { mulberry32, normalSampler } from './dense';
import type { OptConfig, RefOpt } from './opt';

export interface TinyOptOptions extends OptConfig {
  seed: number;
}

/** Build a random OPT (tied LM head, pre-LN, biases everywhere) with HF names. */
export function tinyOpt(o: TinyOptOptions): RefOpt {
  const { layers, d, heads, ffn, vocab, maxPos } = o;
  for (const [k, v] of Object.entries({ layers, d, heads, ffn, vocab, maxPos })) {
    if (!Number.isInteger(v) || v < 1) throw new ShapeError(`tinyOpt: ${k} must be a positive integer, got ${v}`);
  }
  if (d % heads !== 0) throw new ShapeError(`tinyOpt: d=${d} not divisible by heads=${heads}`);
  const randn = normalSampler(mulberry32(o.seed));
  const w = new Map<string, Float64Array>();
  const fill = (name: string, n: number, scale: number, offset = 0): void => {
    const a = new Float64Array(n);
    for (let i = 0; i < n; i++) a[i] = offset + scale * randn();
    w.set(name, a);
  };
  const p = 'model.decoder.';
  fill(`${p}embed_tokens.weight`, vocab * d, 0.5); // tied head: logits ~ N(0, d·0.25), losses a few nats
  fill(`${p}embed_positions.weight`, (maxPos + 2) * d, 0.3);
  const linear = (name: string, r: number, c: number): void => {
    fill(`${name}.weight`, r * c, 1 / Math.sqrt(c));
    fill(`${name}.bias`, r, 0.1);
  };
  const ln = (name: string): void => {
    fill(`${name}.weight`, d, 0.1, 1);
    fill(`${name}.bias`, d, 0.1);
  };
  for (let l = 0; l < layers; l++) {
    const q = `${p}layers.${l}.`;
    ln(`${q}self_attn_layer_norm`);
    for (const m of ['q_proj', 'k_proj', 'v_proj', 'out_proj']) linear(`${q}self_attn.${m}`, d, d);
    ln(`${q}final_layer_norm`);
    linear(`${q}fc1`, ffn, d);
    linear(`${q}fc2`, d, ffn);
  }
  ln(`${p}final_layer_norm`);
  return { cfg: { layers, d, heads, ffn, vocab, maxPos }, w };
}

/** Deep copy of a model's weights (the reference never mutates its inputs; tests use this to perturb). */
export function cloneOpt(m: RefOpt): RefOpt {
  const w = new Map<string, Float64Array>();
  for (const [k, v] of m.w) w.set(k, Float64Array.from(v));
  return { cfg: { ...m.cfg }, w };
}
