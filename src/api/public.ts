/**
 * The library's front door: loadModel(), prune(), evaluate(), clearCache().
 *
 * - Node (and code already inside a worker): everything runs in-process on one shared SurgeonSession
 *   (one GPU context, Dawn in Node).
 * - A browser page's main thread: every call goes to one dedicated Web Worker (createSurgeonWorker, via
 *   Comlink); the page only receives progress events and results. Weights cross as transferables: the
 *   worker's results are moved out; the caller's model is copied once and the copy moved in, so the
 *   caller's arrays are never modified or detached.
 */

import type { ModelSource } from '../io/checkpoint';
import { loadCheckpoint } from '../io/checkpoint';
import { cachedFetch, clearCache as clearModelCache } from './cache';
import { createSurgeonWorker, type SurgeonClient } from './client';
import type { HostModel, PruneJobOptions, PruneResult, TextOrIds } from './job';
import { SurgeonSession } from './session';
import type { EvaluateResult, LoadProgress, ModelSourceSpec, ProgressEvent } from './types';

const HF_ID = /^[A-Za-z0-9][\w.-]*\/[\w.-]+$/;

/** True on a browser page's main thread (the only place where work is sent to a worker). */
export function usesWorker(): boolean {
  return typeof window !== 'undefined' && typeof document !== 'undefined' && typeof Worker !== 'undefined';
}

let session: SurgeonSession | undefined;
let client: SurgeonClient | undefined;

/** The in-process session (Node, workers). */
export function localSession(): SurgeonSession {
  return (session ??= new SurgeonSession());
}

/** The page's worker client, started on first use (or the one given to useWorker()). */
export function workerClient(): SurgeonClient {
  return (client ??= createSurgeonWorker());
}

/** Use this client (e.g. one the app created with createSurgeonWorker) for the page's calls. */
export function useWorker(c: SurgeonClient): void {
  client = c;
}

function toSpec(source: ModelSource, revision?: string): ModelSourceSpec {
  if (typeof source === 'string') return HF_ID.test(source) && !/^https?:/i.test(source) ? { kind: 'hub', id: source, revision } : { kind: 'url', url: source };
  if (source instanceof Uint8Array || source instanceof Blob) return { kind: 'zip', data: source };
  if (Array.isArray(source)) return { kind: 'files', files: source };
  if (typeof FileList !== 'undefined' && source instanceof FileList) return { kind: 'files', files: Array.from(source) };
  throw new TypeError('loadModel in a page: pass a URL, a Hugging Face id, File[] / FileList, or a .zip (Blob or bytes)');
}

/**
 * Load an OPT checkpoint (Node path or zip, URL, Hugging Face id, File[], zip Blob/bytes) into host
 * f32 arrays. Hub/URL downloads are cached in Cache Storage in browsers (clearCache() drops them).
 */
export async function loadModel(source: ModelSource, opts: { revision?: string; onProgress?: (p: LoadProgress) => void } = {}): Promise<HostModel> {
  if (usesWorker()) return workerClient().loadHost(toSpec(source, opts.revision), { onProgress: opts.onProgress });
  return loadCheckpoint(source, {
    revision: opts.revision,
    fetch: typeof source === 'string' && /^https?:|^[\w.-]+\/[\w.-]+$/.test(source) ? cachedFetch() : undefined,
    onProgress: opts.onProgress && ((p) => opts.onProgress!({ phase: 'download', file: p.file, loaded: p.loaded, total: p.total })),
  });
}

/**
 * Prune `model` with the LLM Surgeon (or a baseline) and return new host weights and the report; the
 * input model is not modified. See PruneJobOptions: structure, sparsity, shots, method, calibration
 * { text | ids, nsamples, seqlen, seed }, evaluate, lora (low-rank corrections between shots, ALGORITHM.md §8;
 * multi-shot methods only), onProgress, signal, checkpoint, memoryBudget.
 */
export async function prune(model: HostModel, opts: PruneJobOptions): Promise<PruneResult> {
  if (usesWorker()) {
    const { onProgress, signal, ...settings } = opts;
    return workerClient().pruneHost(model, settings, { onProgress, signal });
  }
  return localSession().pruneHost(model, opts, opts.onProgress, undefined, opts.signal);
}

/** Perplexity of `model` on `text` (or `ids`) in non-overlapping windows of `seqlen` tokens (ALGORITHM.md §10). */
export async function evaluate(
  model: HostModel, opts: TextOrIds & { seqlen: number; windows?: number; onProgress?: (p: ProgressEvent) => void },
): Promise<EvaluateResult> {
  const { onProgress, ...o } = opts;
  const args = { ...o, text: o.text ?? '' };
  if (usesWorker()) return workerClient().evaluateHost(model, args, { onProgress });
  return localSession().evaluateHost(model, args, onProgress);
}

/** Drop the browser's cache of downloaded checkpoint files (no-op in Node). */
export async function clearCache(): Promise<boolean> {
  if (usesWorker()) return workerClient().clearCache();
  return clearModelCache();
}
