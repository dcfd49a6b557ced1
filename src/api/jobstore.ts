/**
 * Where a prune job checkpoints itself after every shot, so an interrupted job (cancel, lost device,
 * closed tab) can resume: a folder in Node (`{ dir }`), the Origin Private File System in browsers
 * (`{ opfs: name }`, a folder under "llm-surgeon-jobs").
 *
 * Layout: `weights-<shot>.safetensors` (the prunable layers' weights and biases after that shot, F32;
 * every other tensor is unchanged from the input model) and `state.json` (JobState). The weights are
 * written first and state.json last (atomically: temp file + rename in Node, a committed writable in
 * OPFS), then the previous shot's weights file is removed — a crash at any point leaves a consistent
 * state.json pointing at a complete weights file.
 */

import { SurgeonError } from '../errors';
import { parseSafetensors, tensorToF32, writeSafetensors } from '../io/safetensors';
import type { PruneReport } from '../surgeon/options';

/** The checkpoint location of a job: a folder (Node) or an OPFS folder name (browser). */
export type CheckpointSpec = ({ dir: string } | { opfs: string }) & {
  /** Continue from a matching checkpoint (default true); false starts afresh and overwrites it. */
  resume?: boolean;
};

/** A checkpoint exists but belongs to another job (model, options or calibration differ). */
export class CheckpointMismatchError extends SurgeonError {
  static override readonly name: string = 'CheckpointMismatchError';
  constructor(readonly location: string, readonly field: string) {
    super(`the checkpoint in ${location} belongs to another job (${field} differs); pass checkpoint.resume = false to start afresh, or use another location`);
  }
}

/** The checkpoint location cannot be used (no OPFS, not a folder, unreadable state). */
export class CheckpointStoreError extends SurgeonError {
  static override readonly name: string = 'CheckpointStoreError';
}

export interface JobState {
  format: 'llm-surgeon-job/1';
  /** Hashes identifying the job: model weights+config, options, calibration ids. */
  fingerprint: { model: string; options: string; calibration: string };
  /** The options as given (callbacks dropped), for people reading the folder. */
  options: unknown;
  calibrationSeed: number;
  shots: number;
  shotsDone: number;
  /** File holding the weights after shotsDone shots (absent at 0). */
  weights?: string;
  report: PruneReport['shots'];
  densePerplexity?: number;
  /** The final report once every shot is done. */
  final?: PruneReport;
  updated: string;
}

export interface Store {
  label: string;
  read(name: string): Promise<Uint8Array | undefined>;
  write(name: string, bytes: Uint8Array): Promise<void>;
  remove(name: string): Promise<void>;
}

const STATE = 'state.json';
const OPFS_ROOT = 'llm-surgeon-jobs';
// Specifiers held in variables so bundlers leave node:* alone (only reached in Node).
const FS = 'node:fs/promises';
const PATH = 'node:path';

async function nodeStore(dir: string): Promise<Store> {
  const fs = (await import(/* @vite-ignore */ FS)) as typeof import('node:fs/promises');
  const path = (await import(/* @vite-ignore */ PATH)) as typeof import('node:path');
  try {
    await fs.mkdir(dir, { recursive: true });
  } catch (e) {
    throw new CheckpointStoreError(`cannot create the checkpoint folder ${dir}: ${(e as Error).message}`);
  }
  return {
    label: dir,
    async read(name) {
      try {
        return new Uint8Array(await fs.readFile(path.join(dir, name)));
      } catch (e) {
        if ((e as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
        throw new CheckpointStoreError(`cannot read ${path.join(dir, name)}: ${(e as Error).message}`);
      }
    },
    async write(name, bytes) {
      const tmp = path.join(dir, `.${name}.tmp`);
      await fs.writeFile(tmp, bytes);
      await fs.rename(tmp, path.join(dir, name));
    },
    async remove(name) {
      await fs.rm(path.join(dir, name), { force: true });
    },
  };
}

async function opfsStore(name: string): Promise<Store> {
  const storage = (globalThis as { navigator?: Navigator }).navigator?.storage;
  if (!storage?.getDirectory) throw new CheckpointStoreError('this browser has no Origin Private File System (navigator.storage.getDirectory); checkpoints need it');
  if (!/^[\w.-]{1,100}$/.test(name)) throw new CheckpointStoreError(`OPFS checkpoint name must be 1–100 letters, digits, '.', '_' or '-', got ${JSON.stringify(name)}`);
  const root = await (await storage.getDirectory()).getDirectoryHandle(OPFS_ROOT, { create: true });
  const dir = await root.getDirectoryHandle(name, { create: true });
  return {
    label: `OPFS ${OPFS_ROOT}/${name}`,
    async read(file) {
      try {
        const h = await dir.getFileHandle(file);
        return new Uint8Array(await (await h.getFile()).arrayBuffer());
      } catch (e) {
        if ((e as DOMException).name === 'NotFoundError') return undefined;
        throw e;
      }
    },
    async write(file, bytes) {
      const h = await dir.getFileHandle(file, { create: true });
      if ('createWritable' in h) {
        const w = await h.createWritable(); // writes go to a swap file; close() commits atomically
        await w.write(bytes as Uint8Array<ArrayBuffer>);
        await w.close();
      } else {
        // Safari's workers: synchronous access handle (dedicated workers only).
        const s = await (h as FileSystemFileHandle & { createSyncAccessHandle(): Promise<{ truncate(n: number): void; write(b: Uint8Array, o: { at: number }): number; flush(): void; close(): void }> }).createSyncAccessHandle();
        s.truncate(0);
        s.write(bytes, { at: 0 });
        s.flush();
        s.close();
      }
    },
    async remove(file) {
      await dir.removeEntry(file).catch(() => undefined);
    },
  };
}

export function openStore(spec: CheckpointSpec): Promise<Store> {
  if ('dir' in spec && typeof spec.dir === 'string') return nodeStore(spec.dir);
  if ('opfs' in spec && typeof spec.opfs === 'string') return opfsStore(spec.opfs);
  throw new CheckpointStoreError('checkpoint must be { dir: string } (Node) or { opfs: string } (browser)');
}

/** Remove a job's checkpoint (its state and weights files). */
export async function deleteCheckpoint(spec: CheckpointSpec): Promise<void> {
  const store = await openStore(spec);
  const st = await readState(store).catch(() => undefined);
  if (st?.weights) await store.remove(st.weights);
  await store.remove(STATE);
}

export async function readState(store: Store): Promise<JobState | undefined> {
  const b = await store.read(STATE);
  if (!b) return undefined;
  let s: JobState;
  try {
    s = JSON.parse(new TextDecoder().decode(b)) as JobState;
  } catch (e) {
    throw new CheckpointStoreError(`${store.label}/${STATE} is not valid JSON (${(e as Error).message})`);
  }
  if (s?.format !== 'llm-surgeon-job/1') throw new CheckpointStoreError(`${store.label}/${STATE} is not a llm-surgeon job state`);
  return s;
}

/** Save the weights after `state.shotsDone` shots, then the state, then drop the previous weights file. */
export async function saveShot(store: Store, state: JobState, weights: Map<string, { data: Float32Array; shape: number[] }>): Promise<void> {
  const prev = state.weights;
  const file = `weights-${state.shotsDone}.safetensors`;
  const tensors = [...weights].map(([name, t]) => ({ name, dtype: 'F32' as const, shape: t.shape, data: t.data }));
  await store.write(file, writeSafetensors(tensors, { format: 'pt', shot: String(state.shotsDone) }));
  state.weights = file;
  await saveState(store, state);
  if (prev && prev !== file) await store.remove(prev);
}

export async function saveState(store: Store, state: JobState): Promise<void> {
  state.updated = new Date().toISOString();
  await store.write(STATE, new TextEncoder().encode(JSON.stringify(state, null, 1)));
}

export async function loadShotWeights(store: Store, state: JobState): Promise<Map<string, Float32Array>> {
  const out = new Map<string, Float32Array>();
  if (!state.weights) return out;
  const bytes = await store.read(state.weights);
  if (!bytes) throw new CheckpointStoreError(`${store.label}: ${STATE} names ${state.weights}, which is missing`);
  const st = parseSafetensors(bytes, state.weights);
  for (const info of st.tensors.values()) out.set(info.name, tensorToF32(bytes, info, st.dataOffset));
  return out;
}

// ---- fingerprints -------------------------------------------------------------------------------

/** 64-bit FNV-1a-style hash (two 32-bit lanes) over 32-bit words; hex. Fast enough for 125M weights (~0.3 s). */
export class Hasher {
  private a = 0x811c9dc5;
  private b = 0x9e3779b9;
  words(u: Uint32Array | Int32Array): this {
    let a = this.a, b = this.b;
    for (let i = 0; i < u.length; i++) {
      const w = u[i];
      a = Math.imul(a ^ w, 0x01000193);
      b = Math.imul(b ^ w, 0x5bd1e995) ^ (b >>> 15);
    }
    this.a = a;
    this.b = b;
    return this;
  }
  floats(f: Float32Array): this {
    return this.words(new Uint32Array(f.buffer, f.byteOffset, f.length));
  }
  text(s: string): this {
    const e = new TextEncoder().encode(s);
    const u = new Uint32Array(Math.ceil(e.length / 4) + 1);
    new Uint8Array(u.buffer).set(e);
    u[u.length - 1] = e.length;
    return this.words(u);
  }
  hex(): string {
    return (this.a >>> 0).toString(16).padStart(8, '0') + (this.b >>> 0).toString(16).padStart(8, '0');
  }
}

/** JSON with sorted keys (stable option fingerprints). */
export function stableJson(v: unknown): string {
  if (Array.isArray(v)) return `[${v.map(stableJson).join(',')}]`;
  if (v && typeof v === 'object') {
    return `{${Object.keys(v).sort().filter((k) => (v as Record<string, unknown>)[k] !== undefined).map((k) => `${JSON.stringify(k)}:${stableJson((v as Record<string, unknown>)[k])}`).join(',')}}`;
  }
  return JSON.stringify(v);
}
