// Peer methods in the same library (ALGORITHM.md §9): SparseGPT and Wanda, sequential layer by layer.
export { sparsegptLinear, sparsegptPrune } from './sparsegpt';
export { wandaLinear, wandaPrune } from './wanda';
export { resolvePeer, targetCount, type PeerLayerReport, type PeerOptions, type PeerProgress, type PeerReport, type ResolvedPeer } from './common';
export { embedCalibration, layerPass, disposeCalib, type CalibState, type LayerPassOptions } from './layer-io';
