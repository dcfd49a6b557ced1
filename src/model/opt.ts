/**
 * OPT decoder weights on the GPU: f32 tensors keyed by canonical Hugging Face names
 * ("model.decoder.layers.0.fc1.weight", …), uploaded from a LoadedCheckpoint (the caller's arrays are
 * copied, never modified) and readable back with exportWeights().
 *
 * Supported: the OPT family as parsed by io/config (pre-LayerNorm, ReLU, learned positions with offset 2),
 * tied or untied LM head. Rejected here: enable_bias=false and layer_norm_elementwise_affine=false
 * (the K-FAC ones column and the forward assume biases and affine LayerNorms).
 */

import type { GpuContext } from '../gpu/context';
import type { AttentionImpl } from '../kernels/attention';
import { ShapeError } from '../gpu/errors';
import type { Tensor } from '../gpu/tensor';
import { ConfigError } from '../io/errors';
import type { LoadedCheckpoint } from '../io/checkpoint';
import { expectedOptTensors, OPT_POSITION_OFFSET, type OptConfig } from '../io/config';

const P = 'model.decoder.';

/** Prunable linears of one decoder layer, in the order used everywhere (ALGORITHM.md §1). */
export const PRUNABLE_SUFFIXES = ['self_attn.q_proj', 'self_attn.k_proj', 'self_attn.v_proj', 'self_attn.out_proj', 'fc1', 'fc2'] as const;

export interface PrunableLayer {
  /** HF module name without ".weight", e.g. "model.decoder.layers.0.fc1". */
  name: string;
  /** out_features. */
  R: number;
  /** in_features (A is (C+1)² with the bias feature). */
  C: number;
  /** Layers with the same inputKey see the same input (q, k, v: the q_proj name). */
  inputKey: string;
  layer: number;
}

export class OptModel {
  private constructor(
    readonly ctx: GpuContext,
    readonly config: OptConfig,
    private readonly weights: Map<string, Tensor>,
    private readonly shapes: Map<string, number[]>,
  ) {}

  /**
   * Which causal-attention kernels forward/backward use: 'tiled' (FlashAttention-2-style tiles, the
   * default: 4.3× faster forward+backward than 'rows' on an H200, bench/results/h200-kernels-attention.json)
   * or 'rows' (one thread per query/key row, kept as a second implementation to cross-check).
   */
  attentionImpl: AttentionImpl = 'tiled';

  /** Upload every tensor of the checkpoint as f32 (shapes checked against the config). */
  static async fromCheckpoint(ctx: GpuContext, ckpt: LoadedCheckpoint): Promise<OptModel> {
    const cfg = ckpt.config;
    if (!cfg.enableBias) throw new ConfigError('OptModel: enable_bias=false is not supported (OPT layers have biases)');
    if (!cfg.layerNormElementwiseAffine) throw new ConfigError('OptModel: layer_norm_elementwise_affine=false is not supported');
    const expected = expectedOptTensors(cfg);
    const weights = new Map<string, Tensor>();
    const shapes = new Map<string, number[]>();
    try {
      for (const [name, shape] of expected) {
        const data = ckpt.tensors.get(name);
        const n = shape.reduce((a, b) => a * b, 1);
        if (!data) throw new ShapeError(`OptModel: checkpoint lacks tensor ${name}`);
        if (data.length !== n) throw new ShapeError(`OptModel: ${name} holds ${data.length} values, config implies [${shape}]`);
        weights.set(name, ctx.upload(data, shape)); // writeBuffer copies; `data` is untouched
        shapes.set(name, shape.slice());
      }
    } catch (e) {
      for (const t of weights.values()) t.dispose();
      throw e;
    }
    return new OptModel(ctx, cfg, weights, shapes);
  }

  /** The GPU tensor of a canonical parameter name; throws ShapeError for an unknown name. */
  weight(name: string): Tensor {
    const t = this.weights.get(name);
    if (!t) throw new ShapeError(`OptModel: no tensor named ${name}`);
    if (t.isDisposed) throw new ShapeError(`OptModel: ${name} was disposed (model disposed?)`);
    return t;
  }

  /** Canonical parameter names in checkpoint order. */
  names(): string[] {
    return [...this.weights.keys()];
  }

  /** The LM head matrix [V, d]: embed_tokens when tied, lm_head otherwise. */
  head(): Tensor {
    return this.config.tieWordEmbeddings ? this.weight(`${P}embed_tokens.weight`) : this.weight('lm_head.weight');
  }

  prunableLayers(): PrunableLayer[] {
    return prunableLayersOf(this.config);
  }

  /** Read every weight back to the host (new arrays, canonical names). */
  async exportWeights(): Promise<Map<string, Float32Array>> {
    const out = new Map<string, Float32Array>();
    for (const [name, t] of this.weights) out.set(name, await t.read());
    return out;
  }

  /** Replace a weight's values in place (same shape), e.g. after pruning on the host. */
  setWeight(name: string, data: Float32Array): void {
    const t = this.weight(name);
    if (data.length !== t.size) throw new ShapeError(`OptModel.setWeight: ${name} needs ${t.size} values [${this.shapes.get(name)}], got ${data.length}`);
    this.ctx.write(t, data);
  }

  /** Bytes of GPU memory held by the weights (pool buckets). */
  get bytes(): number {
    let b = 0;
    for (const t of this.weights.values()) b += t.buffer.size;
    return b;
  }

  dispose(): void {
    for (const t of this.weights.values()) t.dispose();
  }

  /**
   * Validate token ids for a forward: integers in [0, vocab). `T` (tokens per sequence) must be
   * 1…max_position_embeddings. Throws ShapeError naming the first bad id and its position.
   */
  checkIds(ids: ArrayLike<number>, T: number, what = 'ids'): void {
    const { vocabSize, maxPositions } = this.config;
    if (!Number.isInteger(T) || T < 1 || T > maxPositions) {
      throw new ShapeError(`${what}: sequence length ${T} is outside 1…${maxPositions} (max_position_embeddings of this model)`);
    }
    for (let i = 0; i < ids.length; i++) {
      const v = ids[i];
      if (!Number.isInteger(v) || v < 0 || v >= vocabSize) {
        throw new ShapeError(`${what}: token id ${v} at position ${i} is outside 0…${vocabSize - 1} (vocab_size of this model)`);
      }
    }
  }
}

export { OPT_POSITION_OFFSET };

/** The prunable linears of a model with this config (what OptModel.prunableLayers returns), without a GPU copy. */
export function prunableLayersOf(config: OptConfig): PrunableLayer[] {
  const { numLayers, hiddenSize: d, ffnDim } = config;
  const out: PrunableLayer[] = [];
  for (let l = 0; l < numLayers; l++) {
    for (const s of PRUNABLE_SUFFIXES) {
      const name = `${P}layers.${l}.${s}`;
      const R = s === 'fc1' ? ffnDim : d;
      const C = s === 'fc2' ? ffnDim : d;
      const inputKey = s.startsWith('self_attn.') && s !== 'self_attn.out_proj' ? `${P}layers.${l}.self_attn.q_proj` : name;
      out.push({ name, R, C, inputKey, layer: l });
    }
  }
  return out;
}
