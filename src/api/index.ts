// api layer: the Web Worker protocol (client + typed errors across the boundary).
export { createSurgeonWorker, type SurgeonClient } from './client';
export { NotImplementedError, NoModelError, WorkerError, serializeError, rebuildError, type SerializedError } from './errors';
export { SurgeonSession } from './session';
export type * from './types';
