/**
 * Typed errors in the SHIPPED bundles (dist/, built by `npm run build`, which CI runs before `npm test`).
 * The bundles are minified: class identifiers become "i", "a", …, so names and the worker boundary must
 * rest on each class's literal static name. In-process: dist/index.js. Across the boundary: the built
 * client (createSurgeonWorker from dist/index.js) talks over a MessageChannel to the built worker bundle
 * (dist/assets/worker-*.js) running in a Node worker thread, with the port standing in for `self`.
 * Only calls that need no GPU are made (the session acquires the GPU lazily, in init/loadModel).
 */

import { existsSync, readFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import { MessageChannel, Worker } from 'node:worker_threads';
import { zipSync } from 'fflate';
import { afterAll, beforeEach, describe, expect, it } from 'vitest';

type Dist = typeof import('../src/index');
type Client = ReturnType<Dist['createSurgeonWorker']>;

const DIST = resolve(import.meta.dirname, '../dist');
const INDEX = resolve(DIST, 'index.js');
const MICRO = '/work/shared/models/opt-micro';

function requireDist(): void {
  if (!existsSync(INDEX)) throw new Error(`${INDEX} is missing: run \`npm run build\` before this test (CI builds dist/ before \`npm test\`)`);
}

/** The worker file that the built client itself would start (its `new URL(…)` names it). */
function workerFile(): string {
  const m = /assets\/(worker-[\w-]+\.js)/.exec(readFileSync(INDEX, 'utf8'));
  if (!m) throw new Error('dist/index.js names no worker bundle: run `npm run build`');
  const file = resolve(DIST, 'assets', m[1]);
  if (!existsSync(file)) throw new Error(`${file} is missing: run \`npm run build\``);
  return file;
}

// Worker-thread bootstrap: the port plays the worker global (Comlink.expose listens on globalThis).
const BOOT = `
const { workerData } = require('node:worker_threads');
const { port, url } = workerData;
globalThis.addEventListener = port.addEventListener.bind(port);
globalThis.removeEventListener = port.removeEventListener.bind(port);
globalThis.postMessage = port.postMessage.bind(port);
import(url);
`;

const ERROR_NAMES = [
  'SurgeonError', 'CheckpointFormatError', 'ConfigError', 'UnsupportedArchitectureError', 'NonFiniteWeightsError', 'ModelSourceError',
  'TokenizerError', 'DatasetError', 'WebGPUUnavailableError', 'LimitExceededError', 'DeviceLostError', 'GpuValidationError', 'ShapeError',
  'NotImplementedError', 'NoModelError', 'WorkerError', 'PruneConfigError', 'PruneAbortedError', 'CheckpointMismatchError', 'CheckpointStoreError',
] as const;

let dist: Dist;
let loading: Promise<Dist> | undefined;

/** Load dist/index.js once; run in beforeEach, so a missing build fails every test (with the hint) instead of skipping it. */
async function loadDist(): Promise<void> {
  requireDist();
  // Vitest rewrites the bundle's import/export syntax only; the worker thread below loads its bundle natively.
  dist = await (loading ??= import(/* @vite-ignore */ pathToFileURL(INDEX).href) as Promise<Dist>);
}

const opt = () => new Uint8Array(readFileSync(`${MICRO}/config.json`));
const json = (v: unknown) => new TextEncoder().encode(JSON.stringify(v));
const zip = (files: Record<string, Uint8Array>) => zipSync(Object.fromEntries(Object.entries(files).map(([k, v]) => [`m/${k}`, v])), { level: 0 });

/** opt-micro's weights with element 3 of the final LayerNorm's weight set to NaN. */
function nanMicro(): Uint8Array {
  const bytes = new Uint8Array(readFileSync(`${MICRO}/model.safetensors`));
  const st = dist.parseSafetensors(bytes);
  const t = [...st.tensors.values()].find((x) => x.name.endsWith('final_layer_norm.weight'))!;
  const at = st.dataOffset + t.begin + 3 * dist.ITEMSIZE[t.dtype];
  const dv = new DataView(bytes.buffer, bytes.byteOffset);
  if (t.dtype === 'F32') dv.setUint32(at, 0x7fc00000, true);
  else dv.setUint16(at, t.dtype === 'F16' ? 0x7e00 : 0x7fc0, true);
  return bytes;
}

/** The rejection of `p`, failing the test if it resolves. */
async function rejection(p: Promise<unknown>): Promise<Error> {
  return p.then(
    () => {
      throw new Error('expected a rejection');
    },
    (e: Error) => e,
  );
}

/** Own fields other than name, message and stack (kind, limit, tensor, …). */
const fields = (e: Error) => Object.fromEntries(Object.entries(e).filter(([k]) => !['name', 'message', 'stack'].includes(k)));

describe('dist/index.js: typed errors in-process', () => {
  beforeEach(loadDist);

  it('every exported error class has its own name, on the class and its instances', () => {
    const exported = Object.entries(dist).filter(([, v]) => typeof v === 'function' && (v === dist.SurgeonError || v.prototype instanceof dist.SurgeonError));
    expect(exported.map(([k]) => k).sort()).toEqual([...ERROR_NAMES].sort());
    for (const [key, cls] of exported) {
      const C = cls as new (...a: unknown[]) => Error;
      expect(C.name).toBe(key);
      const e = new C('a', 'b', 'c');
      expect(e.name).toBe(key);
      expect(e).toBeInstanceOf(dist.SurgeonError);
      expect(String(e).startsWith(`${key}: `)).toBe(true);
    }
  });

  it('errors thrown by the bundle carry their names and classes', () => {
    const caught = (fn: () => unknown) => {
      try {
        fn();
      } catch (e) {
        return e as Error;
      }
      throw new Error('expected a throw');
    };
    const fmt = caught(() => dist.parseSafetensors(new Uint8Array(8)));
    expect(fmt).toBeInstanceOf(dist.CheckpointFormatError);
    expect(fmt.name).toBe('CheckpointFormatError');
    const arch = caught(() => dist.parseModelConfig({ model_type: 'bert' }));
    expect(arch).toBeInstanceOf(dist.UnsupportedArchitectureError);
    expect(arch).toBeInstanceOf(dist.ConfigError);
    expect(arch.name).toBe('UnsupportedArchitectureError');
    const nan = caught(() => dist.assertFiniteWeights({ tensors: new Map([['w', Float32Array.from([1, NaN])]]) }));
    expect(nan).toBeInstanceOf(dist.NonFiniteWeightsError);
    expect(nan.name).toBe('NonFiniteWeightsError');
    expect(nan).toMatchObject({ tensor: 'w', index: 1 });
  });

  it('serializeError → structured clone → rebuildError keeps class, name, message and fields', () => {
    for (const name of ERROR_NAMES) {
      const C = dist[name] as unknown as new (...a: unknown[]) => Error;
      const e = name === 'CheckpointFormatError' ? new C('offsets', 'bad') : new C('limitOrReason', 7, 3);
      const back = dist.rebuildError(structuredClone(dist.serializeError(e))) as Error;
      expect(back).toBeInstanceOf(C);
      expect(back.name).toBe(name);
      expect(back.message).toBe(e.message);
      expect(fields(back)).toEqual(fields(e));
    }
    // Classes the package does not export are rebuilt by name too.
    const spd = dist.rebuildError({ __surgeonError: 1, name: 'NotPositiveDefiniteError', message: 'm', fields: { index: 2 } }) as Error;
    expect(spd.constructor.name).toBe('NotPositiveDefiniteError');
    expect(spd).toBeInstanceOf(dist.SurgeonError);
    expect(dist.rebuildError(dist.serializeError(new TypeError('t')))).toBeInstanceOf(TypeError);
  });
});

describe('built client ↔ built worker over a MessageChannel', () => {
  let client: Client | undefined;
  let thread: Worker | undefined;
  let crashed: Error | undefined;

  beforeEach(async () => {
    await loadDist();
    if (client) return;
    const url = pathToFileURL(workerFile()).href;
    const { port1, port2 } = new MessageChannel();
    thread = new Worker(BOOT, { eval: true, workerData: { port: port2, url }, transferList: [port2] });
    thread.on('error', (e) => (crashed = e));
    // createSurgeonWorker needs postMessage/addEventListener (the port) and terminate (the thread).
    const terminate = () => {
      port1.close();
      void thread?.terminate();
    };
    const endpoint = Object.assign(port1, { terminate }) as unknown as NonNullable<Parameters<Dist['createSurgeonWorker']>[0]>['worker'];
    client = dist.createSurgeonWorker({ worker: endpoint });
  });
  afterAll(() => client?.terminate());

  const remote = async (p: Promise<unknown>) => {
    const e = await rejection(p);
    expect(crashed).toBeUndefined();
    return e;
  };

  it('NoModelError and ModelSourceError', async () => {
    const none = await remote(client!.sparsity());
    expect(none).toBeInstanceOf(dist.NoModelError);
    expect(none).toBeInstanceOf(dist.SurgeonError);
    expect(none.name).toBe('NoModelError');
    const src = await remote(client!.loadHost({ kind: 'zip', data: new Uint8Array([1, 2, 3]) }));
    expect(src).toBeInstanceOf(dist.ModelSourceError);
    expect(src.name).toBe('ModelSourceError');
  }, 60_000);

  it('CheckpointFormatError keeps its kind', async () => {
    const bad = new TextEncoder().encode('{"x":');
    const file = new Uint8Array(8 + bad.length);
    new DataView(file.buffer).setUint32(0, bad.length, true);
    file.set(bad, 8);
    const e = await remote(client!.loadHost({ kind: 'zip', data: zip({ 'config.json': opt(), 'model.safetensors': file }) }));
    expect(e).toBeInstanceOf(dist.CheckpointFormatError);
    expect(e.name).toBe('CheckpointFormatError');
    expect((e as InstanceType<Dist['CheckpointFormatError']>).kind).toBe('json');
  }, 60_000);

  it('UnsupportedArchitectureError is also a ConfigError; a plain ConfigError is not unsupported', async () => {
    const arch = await remote(client!.loadHost({ kind: 'zip', data: zip({ 'config.json': json({ model_type: 'bert' }) }) }));
    expect(arch).toBeInstanceOf(dist.UnsupportedArchitectureError);
    expect(arch).toBeInstanceOf(dist.ConfigError);
    expect(arch.name).toBe('UnsupportedArchitectureError');
    const cfg = { ...JSON.parse(new TextDecoder().decode(opt())), num_attention_heads: 3 }; // 64 not divisible by 3
    const bad = await remote(client!.loadHost({ kind: 'zip', data: zip({ 'config.json': json(cfg) }) }));
    expect(bad).toBeInstanceOf(dist.ConfigError);
    expect(bad).not.toBeInstanceOf(dist.UnsupportedArchitectureError);
    expect(bad.name).toBe('ConfigError');
  }, 60_000);

  it('NonFiniteWeightsError keeps tensor, index and value, the same as in-process', async () => {
    const files = () => ({ 'config.json': opt(), 'model.safetensors': nanMicro() });
    const local = await rejection(dist.loadCheckpoint(zip(files())));
    const e = await remote(client!.loadHost({ kind: 'zip', data: zip(files()) }));
    expect(local).toBeInstanceOf(dist.NonFiniteWeightsError);
    expect(e).toBeInstanceOf(dist.NonFiniteWeightsError);
    expect(e.name).toBe('NonFiniteWeightsError');
    expect(e.message).toBe(local.message);
    const f = e as InstanceType<Dist['NonFiniteWeightsError']>;
    expect(f.tensor.endsWith('final_layer_norm.weight')).toBe(true);
    expect(f.index).toBe(3);
    expect(f.value).toBeNaN();
  }, 60_000);

  it('a built-in error keeps its class', async () => {
    const e = await remote(client!.loadHost({ kind: 'nope' } as never));
    expect(e).toBeInstanceOf(TypeError);
  }, 60_000);
});
