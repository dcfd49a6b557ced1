/**
 * Model sources as "folders": anything that can hand over a file of the checkpoint folder by name.
 * Supported: Node path (folder or .zip; node:fs is imported dynamically so browser bundles never pull it),
 * http(s) base URL or Hugging Face id (streamed with byte progress), File[]/FileList, a directory handle,
 * a .zip (Blob or bytes, fflate), or an in-memory { files }. A folder may sit one level deep (zip of a folder,
 * webkitdirectory pick of the parent). Input buffers are only read, never modified.
 */

import { unzipSync } from 'fflate';
import { ModelSourceError } from './errors';

export type ProgressFn = (loaded: number, total?: number) => void;

export interface Folder {
  label: string;
  /** The file's bytes, or undefined when the folder has no such file. */
  read(name: string, progress?: ProgressFn, signal?: AbortSignal): Promise<Uint8Array | undefined>;
}

export type ModelSource =
  | string
  | File[]
  | FileList
  | FileSystemDirectoryHandle
  | Blob
  | Uint8Array
  | { files: Record<string, Uint8Array> };

export interface OpenOptions {
  fetch?: typeof fetch;
  revision?: string;
  signal?: AbortSignal;
}

const HF_ID = /^[A-Za-z0-9][\w.-]*\/[\w.-]+$/;
const ZIP_MAGIC = [0x50, 0x4b]; // "PK": local file header or end-of-central-directory record
const NODE_CHUNK = 16 << 20; // 16 MiB per read: progress granularity without syscall overhead

const isNode = (): boolean => typeof process !== 'undefined' && !!process.versions?.node;

/** Keys relative to the checkpoint folder: unify separators, drop "./", and strip a single enclosing folder. */
function rootRelative<T>(entries: Array<[string, T]>): Map<string, T> {
  const clean = entries
    .map(([k, v]) => [k.replace(/\\/g, '/').replace(/^(\.\/|\/)+/, ''), v] as [string, T])
    .filter(([k]) => !k.startsWith('__MACOSX/') && !k.endsWith('/'));
  const keys = new Set(clean.map(([k]) => k));
  let prefix = '';
  if (!keys.has('config.json')) {
    const nested = [...keys].filter((k) => /^[^/]+\/config\.json$/.test(k));
    if (nested.length === 1) prefix = nested[0].slice(0, -'config.json'.length);
  }
  return new Map(clean.filter(([k]) => k.startsWith(prefix)).map(([k, v]) => [k.slice(prefix.length), v]));
}

function memoryFolder(label: string, files: Map<string, Uint8Array>): Folder {
  return {
    label,
    async read(name, progress) {
      const f = files.get(name);
      if (f) progress?.(f.length, f.length);
      return f;
    },
  };
}

/** Only the files a checkpoint load can use are decompressed. */
const wanted = (path: string) => /(^|\/)(config\.json|tokenizer(_config)?\.json|[^/]*\.safetensors(\.index\.json)?)$/.test(path);

export function zipFolder(label: string, bytes: Uint8Array): Folder {
  let files: Record<string, Uint8Array>;
  try {
    files = unzipSync(bytes, { filter: (f) => wanted(f.name) && f.name.split('/').length <= 2 });
  } catch (e) {
    throw new ModelSourceError(`${label}: cannot read the zip archive (${(e as Error).message})`);
  }
  return memoryFolder(label, rootRelative(Object.entries(files)));
}

async function readStream(
  stream: ReadableStream<Uint8Array>,
  total: number | undefined,
  progress?: ProgressFn,
  signal?: AbortSignal,
): Promise<Uint8Array> {
  const reader = stream.getReader();
  let out = new Uint8Array(total ?? 1 << 20);
  let loaded = 0;
  progress?.(0, total);
  for (;;) {
    signal?.throwIfAborted();
    const { done, value } = await reader.read();
    if (done) break;
    if (loaded + value.length > out.length) {
      const grown = new Uint8Array(Math.max(out.length * 2, loaded + value.length));
      grown.set(out.subarray(0, loaded));
      out = grown;
    }
    out.set(value, loaded);
    loaded += value.length;
    progress?.(loaded, total);
  }
  return loaded === out.length ? out : out.slice(0, loaded);
}

function blobFolder(label: string, files: Map<string, Blob>): Folder {
  return {
    label,
    async read(name, progress, signal) {
      const f = files.get(name);
      return f && readStream(f.stream() as ReadableStream<Uint8Array>, f.size, progress, signal);
    },
  };
}

function urlFolder(base: string, opts: OpenOptions): Folder {
  const fetchFn = opts.fetch ?? globalThis.fetch;
  if (!fetchFn) throw new ModelSourceError('no fetch() in this environment; pass opts.fetch');
  const root = base.replace(/\/+$/, '');
  return {
    label: root,
    async read(name, progress, signal) {
      const url = `${root}/${name.split('/').map(encodeURIComponent).join('/')}`;
      let res: Response;
      try {
        res = await fetchFn(url, { signal });
      } catch (e) {
        if ((e as Error).name === 'AbortError') throw e;
        throw new ModelSourceError(`GET ${url} failed: ${(e as Error).message}`);
      }
      if (res.status === 404) return undefined;
      if (!res.ok) throw new ModelSourceError(`GET ${url}: HTTP ${res.status} ${res.statusText}`);
      const len = Number(res.headers.get('content-length'));
      const total = Number.isFinite(len) && len > 0 && !res.headers.get('content-encoding') ? len : undefined;
      if (!res.body) return new Uint8Array(await res.arrayBuffer());
      return readStream(res.body, total, progress, signal);
    },
  };
}

interface DirHandleLike {
  kind: 'directory';
  name: string;
  getFileHandle(name: string): Promise<{ getFile(): Promise<File> }>;
  getDirectoryHandle(name: string): Promise<DirHandleLike>;
  values?(): AsyncIterable<{ kind: string; name: string }>;
}

async function dirHandleFolder(handle: DirHandleLike): Promise<Folder> {
  const file = async (dir: DirHandleLike, name: string): Promise<File | undefined> => {
    try {
      let d = dir;
      const parts = name.split('/');
      for (const p of parts.slice(0, -1)) d = await d.getDirectoryHandle(p);
      return await (await d.getFileHandle(parts[parts.length - 1])).getFile();
    } catch (e) {
      if ((e as Error).name === 'NotFoundError' || (e as Error).name === 'TypeError') return undefined;
      throw new ModelSourceError(`${handle.name}/${name}: ${(e as Error).message}`);
    }
  };
  let dir = handle;
  if (!(await file(dir, 'config.json')) && dir.values) {
    const subs: DirHandleLike[] = [];
    for await (const e of dir.values()) if (e.kind === 'directory') subs.push(e as unknown as DirHandleLike);
    const withConfig: DirHandleLike[] = [];
    for (const s of subs) if (await file(s, 'config.json')) withConfig.push(s);
    if (withConfig.length === 1) dir = withConfig[0];
  }
  return {
    label: dir.name,
    async read(name, progress, signal) {
      const f = await file(dir, name);
      return f && readStream(f.stream() as ReadableStream<Uint8Array>, f.size, progress, signal);
    },
  };
}

// Specifiers held in variables so bundlers leave node:* alone (they are only reached in Node).
const FS = 'node:fs/promises';

async function nodeFolder(path: string): Promise<Folder | undefined> {
  const fs = (await import(/* @vite-ignore */ FS)) as typeof import('node:fs/promises');
  const st = await fs.stat(path).catch(() => undefined);
  if (!st) return undefined;
  const readFile = async (p: string, progress?: ProgressFn, signal?: AbortSignal): Promise<Uint8Array | undefined> => {
    let fh: import('node:fs/promises').FileHandle;
    try {
      fh = await fs.open(p, 'r');
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
      throw new ModelSourceError(`cannot open ${p}: ${(e as Error).message}`);
    }
    try {
      const size = (await fh.stat()).size;
      const buf = new Uint8Array(size);
      progress?.(0, size);
      for (let off = 0; off < size; ) {
        signal?.throwIfAborted();
        const { bytesRead } = await fh.read(buf, off, Math.min(NODE_CHUNK, size - off), off);
        if (bytesRead === 0) throw new ModelSourceError(`${p}: file shrank while reading`);
        off += bytesRead;
        progress?.(off, size);
      }
      return buf;
    } finally {
      await fh.close();
    }
  };
  if (st.isFile()) {
    const bytes = (await readFile(path))!;
    if (!isZip(bytes)) throw new ModelSourceError(`${path} is a file but not a .zip archive; pass the checkpoint folder`);
    return zipFolder(path, bytes);
  }
  let dir = path.replace(/[\\/]+$/, '');
  if (!(await fs.stat(`${dir}/config.json`).catch(() => undefined))) {
    const subs = await fs.readdir(dir, { withFileTypes: true });
    const nested = [];
    for (const s of subs) if (s.isDirectory() && (await fs.stat(`${dir}/${s.name}/config.json`).catch(() => undefined))) nested.push(s.name);
    if (nested.length === 1) dir = `${dir}/${nested[0]}`;
  }
  return { label: dir, read: (name, progress, signal) => readFile(`${dir}/${name}`, progress, signal) };
}

const isZip = (b: Uint8Array) => b.length >= 4 && b[0] === ZIP_MAGIC[0] && b[1] === ZIP_MAGIC[1];

export function hubUrl(id: string, revision = 'main'): string {
  return `https://huggingface.co/${id}/resolve/${encodeURIComponent(revision)}`;
}

/** Turn any supported source into a Folder. */
export async function openSource(source: ModelSource, opts: OpenOptions = {}): Promise<Folder> {
  if (typeof source === 'string') {
    if (/^https?:\/\//i.test(source)) return urlFolder(source, opts);
    if (isNode()) {
      const f = await nodeFolder(source);
      if (f) return f;
      if (HF_ID.test(source)) return urlFolder(hubUrl(source, opts.revision), opts);
      throw new ModelSourceError(`${source}: no such file or folder, and not a Hugging Face id like "facebook/opt-125m"`);
    }
    if (HF_ID.test(source) && !source.startsWith('.')) return urlFolder(hubUrl(source, opts.revision), opts);
    return urlFolder(new URL(source, globalThis.location?.href).href, opts);
  }
  if (source instanceof Uint8Array) {
    if (!isZip(source)) throw new ModelSourceError('a Uint8Array source must hold a .zip of the checkpoint folder');
    return zipFolder('zip bytes', source);
  }
  if (typeof source === 'object' && source !== null && 'files' in source && !(source instanceof Blob)) {
    return memoryFolder('in-memory folder', rootRelative(Object.entries(source.files)));
  }
  if ((source as DirHandleLike).kind === 'directory' && typeof (source as DirHandleLike).getFileHandle === 'function') {
    return dirHandleFolder(source as unknown as DirHandleLike);
  }
  if (typeof Blob !== 'undefined' && source instanceof Blob) {
    return zipFolder((source as File).name ?? 'zip blob', new Uint8Array(await source.arrayBuffer()));
  }
  if (Array.isArray(source) || (typeof source === 'object' && source !== null && 'length' in source && 'item' in source)) {
    const list = Array.from(source as ArrayLike<File>);
    const zips = list.filter((f) => f.name.toLowerCase().endsWith('.zip'));
    if (zips.length === 1 && !list.some((f) => f.name === 'config.json')) return openSource(zips[0], opts);
    const entries = list.map((f) => [(f as File & { webkitRelativePath?: string }).webkitRelativePath || f.name, f] as [string, Blob]);
    return blobFolder('selected files', rootRelative(entries));
  }
  throw new ModelSourceError('unsupported model source (expected a path/URL/Hub id, File[], FileList, directory handle, zip Blob/bytes or { files })');
}
