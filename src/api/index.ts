// api layer: the public functions (prune, evaluate, loadModel), the Web Worker protocol (client + typed
// errors across the boundary), jobs with memory estimates and resumable checkpoints, the download cache.
export { prune, evaluate, loadModel, clearCache, usesWorker, useWorker, localSession, workerClient } from './public';
export { createSurgeonWorker, type SurgeonClient, type JobCallOptions } from './client';
export { NotImplementedError, NoModelError, WorkerError, serializeError, rebuildError, type SerializedError } from './errors';
export { SurgeonSession } from './session';
export { runPruneJob, modelFingerprint, type HostModel, type PruneJobOptions, type PruneJobReport, type PruneResult, type PruneSettings, type CalibrationSpec, type EvaluationSpec, type TextOrIds } from './job';
export { CheckpointMismatchError, CheckpointStoreError, deleteCheckpoint, type CheckpointSpec, type JobState } from './jobstore';
export { autoKfacBatch, estimatePruneMemory, checkPruneMemory, deviceLimits, type MemoryEstimate, type MemorySettings, type DeviceLimits } from './memory';
export { estimatePeerMemory, checkPeerMemory, type PeerMemoryEstimate, type PeerMethod } from './memory-peers';
export { cachedFetch, cachedFiles, MODEL_CACHE } from './cache';
export { exportZip, modelFolder, type FolderOptions } from './export';
export type * from './types';
