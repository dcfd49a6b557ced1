// Public entry point of llm-surgeon-webgpu. Layers: gpu → kernels → model → surgeon → api; io beside.
//
//   import { loadModel, prune, evaluate } from 'llm-surgeon-webgpu';
//   const model = await loadModel('facebook/opt-125m');
//   const { model: pruned, report } = await prune(model, { structure: 'element', sparsity: 0.5, calibration: { text } });
//
// In Node these run in-process (Dawn); on a browser page they run in a dedicated Web Worker.
export * from './api/index';
export * from './gpu/index';
export * from './io/index';
export { DecoderModel, OptModel, PRUNABLE_SUFFIXES, forwardBatch, releaseForward, backwardBatch, accumulateKfac, perplexity, generate, uploadBatch } from './model/index';
export type { PrunableLayer, ForwardOptions, ForwardResult, SavedLayer, BackwardOptions, LinearGrad, KfacOptions, KfacResult, PerplexityOptions, PerplexityResult, GenerateOptions as ModelGenerateOptions } from './model/index';
export * from './surgeon/index';
export * from './compact/index';
export { pruneModel as pruneModelOnGpu, type PruneRunOptions } from './surgeon/prune';
