/**
 * The architecture boundary, pure part (no GPU): the normalised config every family parses into, the
 * prunable linears with their bias flag, and which rows/columns form one structural unit. The surgeon,
 * the peers, the memory estimate, the API, the CLI and the demo ask a FamilySpec (arch/registry.ts)
 * instead of naming a family's modules. Each family's GPU decoder block lives beside its config
 * (arch/<family>/block.ts) and is reached through model/blocks.ts.
 */

export type Family = 'opt' | 'llama';

export type DType = 'float16' | 'bfloat16' | 'float32';

/** Fields every family normalises onto (transformers.js' "normalized config" idea). */
export interface BaseConfig {
  family: Family;
  /** config.json model_type ("opt", "llama", "mistral", "qwen2"). */
  modelType: string;
  /** First entry of config.json architectures, or the family's causal-LM class. */
  architecture: string;
  vocabSize: number;
  hiddenSize: number;
  numLayers: number;
  numHeads: number;
  /** Key/value heads (grouped-query attention); = numHeads for multi-head attention. */
  numKvHeads: number;
  headDim: number;
  /** FFN width: ffn_dim (OPT) or intermediate_size (Llama). */
  ffnDim: number;
  maxPositions: number;
  tieWordEmbeddings: boolean;
  dtype: DType;
  padTokenId: number | null;
  bosTokenId: number | null;
  eosTokenId: number | null;
  /** Every end-of-sequence id (Llama 3 lists several). */
  eosTokenIds: number[];
  /**
   * A compact (physically pruned) model's own dims per decoder layer, from config.json's
   * `compact_layers` (arch/parse.ts compactLayers); absent for a model whose layers all have the
   * global ffnDim / numHeads / numKvHeads, which then stay the maxima. Read through layerDims().
   */
  layers?: LayerDims[];
  raw: Record<string, unknown>;
}

/** One decoder layer's widths (ALGORITHM.md §12: head_dim and the residual width never change). */
export interface LayerDims {
  ffnDim: number;
  numHeads: number;
  numKvHeads: number;
}

/** Layer l's widths: its compact_layers entry, else the config's global ones. */
export function layerDims(cfg: BaseConfig, l: number): LayerDims {
  return cfg.layers?.[l] ?? { ffnDim: cfg.ffnDim, numHeads: cfg.numHeads, numKvHeads: cfg.numKvHeads };
}

export interface OptConfig extends BaseConfig {
  family: 'opt';
  wordEmbedProjDim: number;
  doLayerNormBefore: boolean;
  activation: 'relu';
  enableBias: boolean;
  layerNormElementwiseAffine: boolean;
  padTokenId: number;
  bosTokenId: number;
  eosTokenId: number;
}

/** Rotary scaling as read from rope_scaling / rope_parameters (ALGORITHM.md §12). */
export type RopeScaling =
  | { type: 'default' }
  | { type: 'linear'; factor: number }
  | { type: 'llama3'; factor: number; lowFreqFactor: number; highFreqFactor: number; originalMaxPositions: number };

export interface LlamaConfig extends BaseConfig {
  family: 'llama';
  rmsNormEps: number;
  ropeTheta: number;
  ropeScaling: RopeScaling;
  /** Biases on q/k/v (Qwen2; Llama's attention_bias), on o_proj (Llama's attention_bias only), on the MLP (mlp_bias). */
  qkvBias: boolean;
  oBias: boolean;
  mlpBias: boolean;
  /** Mistral's sliding_window (null: full causal attention). */
  slidingWindow: number | null;
}

export type ModelConfig = OptConfig | LlamaConfig;

/** One prunable linear y = a·Wᵀ (+ b). */
export interface PrunableLayer {
  /** HF module name without ".weight", e.g. "model.layers.0.mlp.up_proj". */
  name: string;
  /** Module label shared by the same linear of every layer ("q_proj", "fc1", "down_proj"), for reports. */
  type: string;
  /** out_features. */
  R: number;
  /** in_features. A is (C+1)² with a bias (the ones feature), C² without. */
  C: number;
  bias: boolean;
  /** Layers with the same inputKey read the same input (q, k, v: the q_proj name; gate and up: gate_proj). */
  inputKey: string;
  layer: number;
}

/** Columns of W' = [W | b] (with bias) or W: the parameters the surgeon counts and prunes per row. */
export const packedCols = (L: Pick<PrunableLayer, 'C' | 'bias'>): number => L.C + (L.bias ? 1 : 0);

/**
 * Rows and columns that form one removable unit of a decoder layer (suffixes relative to the layer).
 * ffn: neuron i is row i of every `rows` linear and column i of every `cols` linear.
 * head: query head h owns rows [h·headDim, (h+1)·headDim) of `q` and columns of `o`; kv head g owns
 * those rows of `k` and `v`. `ropePairs`: q/k dims i and i + headDim/2 are rotated together, so only
 * the pair can go (ALGORITHM.md §12); v/o dims can go one by one.
 */
export type UnitRule =
  | { kind: 'ffn'; width: number; rows: string[]; cols: string[] }
  | { kind: 'head'; heads: number; kvHeads: number; headDim: number; q: string; k: string; v: string; o: string; ropePairs: boolean };

export type LoraTargets = 'attention' | 'all';

/** What a family says about itself without a GPU (arch/<family>/config.ts). */
export interface FamilySpec<C extends ModelConfig = ModelConfig> {
  family: C['family'];
  /** model_type values this family parses. */
  modelTypes: readonly string[];
  /** `modelType`: config.json's model_type, or the one its architectures imply. */
  parseConfig(raw: Record<string, unknown>, modelType: string): C;
  /** Canonical tensor names → shapes, in checkpoint order. */
  tensors(cfg: C): Map<string, number[]>;
  /** A checkpoint key → canonical name (e.g. OPT's "decoder.x" → "model.decoder.x"). */
  canonicalName(name: string): string;
  /** Checkpoint tensors that are dropped without complaint (derived buffers, e.g. a saved RoPE table). */
  ignoredTensor?(name: string): boolean;
  /** The token embedding (also the LM head when tied). */
  embedName: string;
  /** Module labels of one layer's prunable linears, in order (chart columns, report keys). */
  moduleTypes: readonly string[];
  prunableLayers(cfg: C): PrunableLayer[];
  /** Units of decoder layer `layer` (its own widths on a compact model). */
  units(cfg: C, layer: number): UnitRule[];
  /** Tensor-name prefix of decoder layer l ("model.layers.3."); UnitRule suffixes are relative to it. */
  layerPrefix(l: number): string;
  /** Names (no ".weight") of the linears LoRA adapts for `targets`. */
  loraTargets(cfg: C, targets: LoraTargets): string[];
  /** One-line description for logs ("OPT 4 layers, d=256, ffn=1024"). */
  describe(cfg: C): string;
}
