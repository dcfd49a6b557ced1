/**
 * A decoder-only model's weights on the GPU, for every family of src/arch: f32 tensors keyed by
 * canonical Hugging Face names ("model.decoder.layers.0.fc1.weight", "model.layers.0.mlp.up_proj.weight",
 * …), uploaded from a LoadedCheckpoint (the caller's arrays are copied, never modified) and readable back
 * with exportWeights(). What the layers compute is the family's block (model/blocks.ts); what can be
 * pruned is the family's spec (arch/registry.ts).
 *
 * Rejected here (ConfigError): OPT with enable_bias=false or layer_norm_elementwise_affine=false (the OPT
 * block assumes biases and affine LayerNorms), head dims above the attention kernels' 128.
 */

import type { GpuContext } from '../gpu/context';
import type { AttentionImpl } from '../kernels/attention';
import { ShapeError } from '../gpu/errors';
import type { Tensor } from '../gpu/tensor';
import { ConfigError } from '../io/errors';
import type { LoadedCheckpoint } from '../io/checkpoint';
import { familySpec } from '../arch/registry';
import type { FamilySpec, ModelConfig, PrunableLayer } from '../arch/types';

export type { PrunableLayer };

export class DecoderModel {
  private readonly aux = new Map<string, Tensor>();
  /** Weights moved to host memory (offload), exact f32 copies, until restore(). */
  private readonly offloaded = new Map<string, Float32Array>();

  private constructor(
    readonly ctx: GpuContext,
    readonly config: ModelConfig,
    private readonly weights: Map<string, Tensor>,
    private readonly shapes: Map<string, number[]>,
  ) {
    this.spec = familySpec(config);
  }

  readonly spec: FamilySpec;

  /**
   * Which causal-attention kernels forward/backward use: 'tiled' (FlashAttention-2-style tiles, the
   * default: 4.3× faster forward+backward than 'rows' on an H200, bench/results/h200-kernels-attention.json)
   * or 'rows' (one thread per query/key row, kept as a second implementation to cross-check).
   */
  attentionImpl: AttentionImpl = 'tiled';

  /** Upload every tensor of the checkpoint as f32 (shapes checked against the config). */
  static async fromCheckpoint(ctx: GpuContext, ckpt: LoadedCheckpoint): Promise<DecoderModel> {
    const cfg = ckpt.config;
    if (cfg.family === 'opt') {
      if (!cfg.enableBias) throw new ConfigError('OPT: enable_bias=false is not supported (OPT layers have biases)');
      if (!cfg.layerNormElementwiseAffine) throw new ConfigError('OPT: layer_norm_elementwise_affine=false is not supported');
    }
    if (cfg.headDim > 128) throw new ConfigError(`head_dim ${cfg.headDim} is not supported (the attention kernels take at most 128)`);
    const expected = familySpec(cfg).tensors(cfg);
    const weights = new Map<string, Tensor>();
    const shapes = new Map<string, number[]>();
    try {
      for (const [name, shape] of expected) {
        const data = ckpt.tensors.get(name);
        const n = shape.reduce((a, b) => a * b, 1);
        if (!data) throw new ShapeError(`model: checkpoint lacks tensor ${name}`);
        if (data.length !== n) throw new ShapeError(`model: ${name} holds ${data.length} values, config implies [${shape}]`);
        weights.set(name, ctx.upload(data, shape)); // writeBuffer copies; `data` is untouched
        shapes.set(name, shape.slice());
      }
    } catch (e) {
      for (const t of weights.values()) t.dispose();
      throw e;
    }
    return new DecoderModel(ctx, cfg, weights, shapes);
  }

  /** The GPU tensor of a canonical parameter name; throws ShapeError for an unknown name. */
  weight(name: string): Tensor {
    const t = this.weights.get(name);
    if (!t && this.offloaded.has(name)) throw new ShapeError(`model: ${name} is offloaded to host memory (restore it first)`);
    if (!t) throw new ShapeError(`model: no tensor named ${name}`);
    if (t.isDisposed) throw new ShapeError(`model: ${name} was disposed (model disposed?)`);
    return t;
  }

  /** The tensor if the model has it (optional biases), else undefined. */
  maybeWeight(name: string): Tensor | undefined {
    return this.weights.has(name) || this.offloaded.has(name) ? this.weight(name) : undefined;
  }

  /**
   * Move these weights to host memory and free their GPU buffers (a memory-budgeted shot's update pass
   * needs only the weights of the linears it updates). The host copies are the exact f32 values; weight()
   * refuses an offloaded name until restore().
   */
  async offload(names: readonly string[]): Promise<void> {
    const todo = names.filter((n) => this.weights.has(n));
    // All readbacks are recorded before the first is awaited; each buffer is freed once its copy is queued.
    const reads = todo.map((n) => { const t = this.weight(n), r = t.read(); t.dispose(); this.weights.delete(n); return r; });
    const data = await Promise.all(reads);
    todo.forEach((n, i) => this.offloaded.set(n, data[i]));
  }

  /** Upload offloaded weights again (default: all of them). */
  restore(names: readonly string[] = [...this.offloaded.keys()]): void {
    for (const n of names) {
      const data = this.offloaded.get(n);
      if (!data) continue;
      this.weights.set(n, this.ctx.upload(data, this.shapes.get(n)!));
      this.offloaded.delete(n);
    }
  }

  /** Names of the weights now in host memory. */
  offloadedNames(): string[] {
    return [...this.offloaded.keys()];
  }

  /** Canonical parameter names in checkpoint order. */
  names(): string[] {
    return [...this.shapes.keys()];
  }

  /** The LM head matrix [V, d]: the token embedding when tied, lm_head otherwise. */
  head(): Tensor {
    return this.config.tieWordEmbeddings ? this.weight(this.spec.embedName) : this.weight('lm_head.weight');
  }

  prunableLayers(): PrunableLayer[] {
    return this.spec.prunableLayers(this.config);
  }

  /** A derived constant tensor (RoPE tables, …) built once per key and freed with the model. */
  cached(key: string, make: () => Tensor): Tensor {
    let t = this.aux.get(key);
    if (!t) { t = make(); this.aux.set(key, t); }
    return t;
  }

  /** Read every weight back to the host (new arrays, canonical names). */
  async exportWeights(): Promise<Map<string, Float32Array>> {
    const out = new Map<string, Float32Array>();
    for (const name of this.shapes.keys()) {
      const t = this.weights.get(name);
      out.set(name, t ? await t.read() : this.offloaded.get(name)!.slice());
    }
    return out;
  }

  /** Replace a weight's values in place (same shape), e.g. after pruning on the host. */
  setWeight(name: string, data: Float32Array): void {
    const t = this.weight(name);
    if (data.length !== t.size) throw new ShapeError(`model.setWeight: ${name} needs ${t.size} values [${this.shapes.get(name)}], got ${data.length}`);
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
    this.offloaded.clear();
    for (const t of this.aux.values()) t.dispose();
    this.aux.clear();
  }

  /**
   * Validate token ids for a forward: integers in [0, vocab). `T` (tokens per sequence) must be
   * 1…max_position_embeddings (and within a sliding window, which the kernels do not implement).
   * Throws ShapeError naming the first bad id and its position.
   */
  checkIds(ids: ArrayLike<number>, T: number, what = 'ids'): void {
    const { vocabSize, maxPositions } = this.config;
    if (!Number.isInteger(T) || T < 1 || T > maxPositions) {
      throw new ShapeError(`${what}: sequence length ${T} is outside 1…${maxPositions} (max_position_embeddings of this model)`);
    }
    const win = this.config.family === 'llama' ? this.config.slidingWindow : null;
    if (win !== null && T > win) {
      throw new ConfigError(`${what}: sequence length ${T} exceeds the model's sliding_window ${win}; sliding-window attention is not implemented — use windows of at most ${win} tokens`);
    }
    for (let i = 0; i < ids.length; i++) {
      const v = ids[i];
      if (!Number.isInteger(v) || v < 0 || v >= vocabSize) {
        throw new ShapeError(`${what}: token id ${v} at position ${i} is outside 0…${vocabSize - 1} (vocab_size of this model)`);
      }
    }
  }
}

/** The former name, kept for callers written against the OPT-only library. */
export const OptModel = DecoderModel;
export type OptModel = DecoderModel;
