/**
 * Plain, structured-cloneable types shared by the worker (src/api/worker.ts) and the main thread
 * (src/api/client.ts). Nothing here holds a GPU object: only numbers, strings and byte arrays cross.
 */

/** Where a checkpoint comes from, as sent to the worker. */
export type ModelSourceSpec =
  /** An http(s) folder URL (relative URLs are resolved against the page by the client). */
  | { kind: 'url'; url: string }
  /** A Hugging Face model id such as "facebook/opt-125m" (fetched from the Hub). */
  | { kind: 'hub'; id: string; revision?: string }
  /** Files picked or dropped by the user (a checkpoint folder's files, or one .zip). */
  | { kind: 'files'; files: File[] }
  /** A .zip of the checkpoint folder, as a Blob (cloned by reference) or bytes (transferred). */
  | { kind: 'zip'; data: Blob | Uint8Array };

export interface AdapterSummary {
  vendor: string;
  architecture: string;
  device: string;
  description: string;
  isFallbackAdapter: boolean;
  features: string[];
  /** The device's limits that this library relies on (bytes or counts). */
  limits: Record<string, number>;
}

export interface LoadProgress {
  phase: 'download' | 'upload';
  /** File being read (download phase). */
  file?: string;
  loaded: number;
  total?: number;
}

export interface ModelSummary {
  label: string;
  /** Model family ('opt', 'llama') and checkpoint class ("OPTForCausalLM", "MistralForCausalLM", …). */
  family: 'opt' | 'llama';
  architecture: string;
  /** Module labels of one layer's prunable linears, in order ("q_proj", …, "fc2" / "down_proj"). */
  moduleTypes: string[];
  numLayers: number;
  hiddenSize: number;
  numHeads: number;
  /** Key/value heads (grouped-query attention) and the head dimension. */
  numKvHeads: number;
  headDim: number;
  ffnDim: number;
  vocabSize: number;
  maxPositions: number;
  /** Total number of parameters (tied lm_head counted once). */
  parameters: number;
  /** dtype as stored in the checkpoint ("F16", "F32", …). */
  sourceDtype: string;
  hasTokenizer: boolean;
  /** Bytes of GPU memory holding the weights (f32). */
  gpuBytes: number;
  files: string[];
}

export interface MemoryStats {
  bytesInUse: number;
  bytesPooled: number;
  peakBytesInUse: number;
}

/** Which operations the worker can run with the layers built so far. */
export interface Capabilities {
  evaluate: boolean;
  generate: boolean;
  prune: boolean;
  /** Human-readable reason for each missing capability. */
  notes: Partial<Record<'evaluate' | 'generate' | 'prune', string>>;
}

export interface EvaluateOptions {
  /** Evaluation text (joined WikiText rows, a book, the user's file). */
  text: string;
  seqlen: number;
  /** At most this many non-overlapping windows (default: all). */
  windows?: number;
}

export interface EvaluateResult {
  perplexity: number;
  windows: number;
  seqlen: number;
  tokens: number;
  seconds: number;
}

export interface GenerateOptions {
  maxNewTokens?: number;
}

export interface GenerateResult {
  /** The continuation only (the prompt is not repeated). */
  text: string;
  /** Prompt token ids as encoded (OPT: a leading </s>) and the generated ids. */
  promptIds: number[];
  ids: number[];
  tokens: number;
  seconds: number;
}

/** Fraction of exactly-zero weights per prunable module (what a prune allocates). */
export interface SparsityEntry {
  layer: number;
  module: string;
  rows: number;
  cols: number;
  zeros: number;
}

export interface BenchmarkResult {
  size: number;
  repeats: number;
  seconds: number;
  gflops: number;
}

export interface ProgressEvent {
  phase: string;
  shot?: { index: number; total: number };
  layer?: { index: number; total: number };
  /** Overall fraction done, 0..1. */
  fraction: number;
  /** Fraction of the current phase done, 0..1. */
  phaseFraction?: number;
  /** Name of the layer being processed (prune: "model.decoder.layers.3.fc1"). */
  layerName?: string;
  etaSeconds?: number;
  /** A memory-budgeted shot's calibration pass (curvature phase): which of how many. */
  pass?: { index: number; total: number };
}
