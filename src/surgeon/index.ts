// surgeon layer: the LLM Surgeon (curvature, costs, global threshold, OBS updates, multi-shot) and its baselines.
export { pruneModel } from './prune';
export { PruneAbortedError, PruneConfigError, type Method, type Phase, type PruneOptions, type PruneProgress, type PruneReport, type Structure } from './options';
export { kthIndex, planChunks, removedParams, structuredThreshold, type Chunk } from './threshold';
export { loraCorrect, type LoraOptions, type LoraResult, type LoraRunOptions } from './lora';
export { sparsegptPrune, wandaPrune, type PeerOptions, type PeerReport } from './peers/index';
