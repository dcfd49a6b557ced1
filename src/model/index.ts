// model layer: decoder models of every family on the GPU (weights, forward, backward, K-FAC factors, perplexity, generation).
export { DecoderModel, OptModel, type PrunableLayer } from './model';
export { blockOf, type DecoderBlock, type LayerStepOptions, type SavedTensors } from './blocks';
export { PRUNABLE_SUFFIXES } from '../arch/opt/config';
export { forwardBatch, releaseForward, type ForwardOptions, type ForwardResult, type SavedLayer } from './forward';
export { backwardBatch, type BackwardOptions, type LinearGrad } from './backward';
export { accumulateKfac, defaultKfacBatch, disposeKfac, type KfacOptions, type KfacResult } from './kfac';
export { perplexity, type PerplexityOptions, type PerplexityResult } from './eval';
export { generate, type GenerateOptions } from './generate';
export { uploadBatch } from './batch';
export { KvCache, forwardCached } from './kv-cache';
