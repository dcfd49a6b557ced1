import { createHash } from 'node:crypto';
import { readdirSync, readFileSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { zipSync } from 'fflate';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadCheckpoint, type LoadedCheckpoint } from '../src/io/checkpoint';
import { expectedOptTensors, expectedTensors, parseOptConfig } from '../src/io/config';
import { CheckpointFormatError, ConfigError, ModelSourceError, NonFiniteWeightsError, UnsupportedArchitectureError } from '../src/io/errors';
import { writeSafetensors, type TensorToWrite } from '../src/io/safetensors';
import { randn } from './helpers/rng';

const MODELS = '/work/shared/models';
const enc = (o: unknown) => new TextEncoder().encode(JSON.stringify(o));
const readFolder = (name: string): Record<string, Uint8Array> =>
  Object.fromEntries(readdirSync(`${MODELS}/${name}`).map((f) => [f, new Uint8Array(readFileSync(`${MODELS}/${name}/${f}`))]));
const params = (c: LoadedCheckpoint) => [...c.tensors.values()].reduce((s, t) => s + t.length, 0);

function expectSameWeights(a: LoadedCheckpoint, b: LoadedCheckpoint): void {
  expect([...a.tensors.keys()].sort()).toEqual([...b.tensors.keys()].sort());
  for (const [k, t] of a.tensors) {
    const u = b.tensors.get(k)!;
    expect(Buffer.compare(Buffer.from(t.buffer, t.byteOffset, t.byteLength), Buffer.from(u.buffer, u.byteOffset, u.byteLength))).toBe(0);
    expect(a.shapes.get(k)).toEqual(b.shapes.get(k));
  }
}

async function expectRejects(p: Promise<unknown>, cls: new (...a: never[]) => Error, kind?: string): Promise<Error> {
  const e = await p.then(
    () => undefined,
    (err: Error) => err,
  );
  expect(e, `expected ${cls.name}`).toBeInstanceOf(cls);
  if (kind) expect((e as CheckpointFormatError).kind).toBe(kind);
  return e!;
}

// ---- a tiny random OPT (d = 16, vocab 64) for the bad-checkpoint cases: cheap to build and rewrite ----
function tinyConfig(over: Record<string, unknown> = {}): Record<string, unknown> {
  return {
    model_type: 'opt', architectures: ['OPTForCausalLM'], vocab_size: 64, hidden_size: 16, num_hidden_layers: 2,
    num_attention_heads: 2, ffn_dim: 32, max_position_embeddings: 30, word_embed_proj_dim: 16, do_layer_norm_before: true,
    activation_function: 'relu', tie_word_embeddings: true, torch_dtype: 'float16', ...over,
  };
}
function tinyTensors(cfg: Record<string, unknown>, dtype: 'F16' | 'BF16' | 'F32' = 'F16'): TensorToWrite[] {
  let seed = 1;
  return [...expectedOptTensors(parseOptConfig(cfg))].map(([name, shape]) => ({
    name, dtype, shape, data: Float32Array.from(randn(shape.reduce((a, b) => a * b, 1), seed++)),
  }));
}
const tinyFolder = (cfg: Record<string, unknown>, tensors: TensorToWrite[]) => ({
  files: { 'config.json': enc(cfg), 'model.safetensors': writeSafetensors(tensors) } as Record<string, Uint8Array>,
});
function tinySharded(cfg: Record<string, unknown>, tensors: TensorToWrite[]): Record<string, Uint8Array> {
  const half = tensors.length >> 1;
  const shards = { 'model-00001-of-00002.safetensors': tensors.slice(0, half), 'model-00002-of-00002.safetensors': tensors.slice(half) };
  const weight_map = Object.fromEntries(Object.entries(shards).flatMap(([f, ts]) => ts.map((t) => [t.name, f])));
  return {
    'config.json': enc(cfg),
    'model.safetensors.index.json': enc({ metadata: {}, weight_map }),
    ...Object.fromEntries(Object.entries(shards).map(([f, ts]) => [f, writeSafetensors(ts)])),
  };
}

// ---- a local server in Hugging Face Hub layout: /<org>/<name>/resolve/<rev>/<file> ----
let server: Server;
let base = '';
const served = new Map<string, Uint8Array>();
const requests: string[] = [];
beforeAll(async () => {
  for (const m of ['opt-micro', 'opt-mini']) for (const [f, b] of Object.entries(readFolder(m))) served.set(`/test/${m}/resolve/main/${f}`, b);
  server = createServer((req, res) => {
    requests.push(req.url!);
    if (req.url!.startsWith('/broken/')) return void res.writeHead(500).end('boom');
    const body = served.get(decodeURIComponent(req.url!));
    if (!body) return void res.writeHead(404).end('not found');
    res.writeHead(200, { 'content-length': body.length, 'content-type': 'application/octet-stream' });
    // Several writes so the client sees several chunks (progress events).
    for (let o = 0; o < body.length; o += 1 << 20) res.write(body.subarray(o, o + (1 << 20)));
    res.end();
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
});
afterAll(() => new Promise<void>((r) => server.close(() => r())));

describe('loading the fixture checkpoints', () => {
  let microRef: LoadedCheckpoint;
  let miniRef: LoadedCheckpoint;

  it('opt-micro from a Node path: one file, fp16, tied head, "dtype" config key', async () => {
    const sha = createHash('sha256').update(readFileSync(`${MODELS}/opt-micro/model.safetensors`)).digest('hex');
    expect(sha.startsWith('9a3f8af8')).toBe(true); // FIXTURES.md
    microRef = await loadCheckpoint(`${MODELS}/opt-micro`);
    expect(microRef.config.hiddenSize).toBe(64);
    expect(microRef.config.dtype).toBe('float16');
    expect(microRef.sourceDtype).toBe('F16');
    expect(microRef.files).toEqual(['config.json', 'model.safetensors', 'tokenizer.json', 'tokenizer_config.json']);
    const expected = expectedTensors(microRef.config);
    expect([...microRef.shapes]).toEqual([...expected]); // canonical order
    expect([...microRef.tensors.keys()]).toEqual([...expected.keys()]);
    expect((params(microRef) / 1e6).toFixed(2)).toBe('3.45'); // FIXTURES.md: 3.45 M
    expect(microRef.tokenizerJson).toBeTypeOf('object');
  });

  it('opt-mini from a Node path: sharded index, sizes match the index metadata', async () => {
    miniRef = await loadCheckpoint(`${MODELS}/opt-mini`);
    const index = JSON.parse(readFileSync(`${MODELS}/opt-mini/model.safetensors.index.json`, 'utf8'));
    expect(params(miniRef)).toBe(index.metadata.total_parameters);
    expect(miniRef.files).toContain('model-00002-of-00002.safetensors');
    expect(miniRef.shapes.get('model.decoder.layers.3.fc2.weight')).toEqual([256, 1024]);
  });

  it.each(['opt-micro', 'opt-mini'])('%s from an in-memory folder and from a zip (nested folder), inputs untouched', async (m) => {
    const ref = m === 'opt-micro' ? microRef : miniRef;
    const files = readFolder(m);
    const copies = Object.fromEntries(Object.entries(files).map(([k, v]) => [k, v.slice()]));
    expectSameWeights(await loadCheckpoint({ files }), ref);
    const zip = zipSync(Object.fromEntries(Object.entries(files).map(([k, v]) => [`${m}/${k}`, v])), { level: 0 });
    const zipCopy = zip.slice();
    const fromZip = await loadCheckpoint(zip);
    expectSameWeights(fromZip, ref);
    expect(fromZip.tokenizerJson).toEqual(ref.tokenizerJson);
    expectSameWeights(await loadCheckpoint(new Blob([zip])), ref);
    for (const [k, v] of Object.entries(files)) expect(Buffer.compare(Buffer.from(v), Buffer.from(copies[k]))).toBe(0);
    expect(Buffer.compare(Buffer.from(zip), Buffer.from(zipCopy))).toBe(0);
  });

  it('opt-micro from File[] (browser file picker) with byte progress', async () => {
    const files = Object.entries(readFolder('opt-micro')).map(([k, v]) => new File([v as Uint8Array<ArrayBuffer>], k));
    const events: Array<{ file: string; loaded: number; total?: number }> = [];
    expectSameWeights(await loadCheckpoint(files, { onProgress: (p) => events.push(p) }), microRef);
    const last = events.filter((e) => e.file === 'model.safetensors').at(-1)!;
    expect(last.loaded).toBe(last.total);
  });

  it('opt-micro from a FileList-like pick of the parent folder (webkitRelativePath) and from a directory handle', async () => {
    const folder = readFolder('opt-micro');
    const picked = Object.entries(folder).map(([k, v]) => {
      const f = new File([v as Uint8Array<ArrayBuffer>], k);
      Object.defineProperty(f, 'webkitRelativePath', { value: `opt-micro/${k}` });
      return f;
    });
    const fileList = { ...picked, length: picked.length, item: (i: number) => picked[i] } as unknown as FileList;
    expectSameWeights(await loadCheckpoint(fileList), microRef);
    // A minimal FileSystemDirectoryHandle (the File System Access API shape), holding the model one level down.
    const notFound = () => Promise.reject(new DOMException('not found', 'NotFoundError'));
    const dir = (name: string, files: Record<string, Uint8Array>, subdirs: Record<string, unknown> = {}) => ({
      kind: 'directory' as const,
      name,
      getFileHandle: (n: string) => (files[n] ? Promise.resolve({ getFile: async () => new File([files[n] as Uint8Array<ArrayBuffer>], n) }) : notFound()),
      getDirectoryHandle: (n: string) => (subdirs[n] ? Promise.resolve(subdirs[n]) : notFound()),
      async *values() {
        for (const n of Object.keys(files)) yield { kind: 'file', name: n };
        for (const [n, d] of Object.entries(subdirs)) yield d as { kind: string; name: string };
      },
    });
    const root = dir('models', { 'README.md': new Uint8Array(3) }, { 'opt-micro': dir('opt-micro', folder) });
    expectSameWeights(await loadCheckpoint(root as unknown as FileSystemDirectoryHandle), microRef);
  });

  it.each(['opt-micro', 'opt-mini'])('%s over HTTP in Hub layout, streamed with byte progress', async (m) => {
    const events: Array<{ file: string; loaded: number; total?: number }> = [];
    const ckpt = await loadCheckpoint(`${base}/test/${m}/resolve/main`, { onProgress: (p) => events.push(p) });
    expectSameWeights(ckpt, m === 'opt-micro' ? microRef : miniRef);
    for (const f of ckpt.files) {
      const ev = events.filter((e) => e.file === f);
      const size = served.get(`/test/${m}/resolve/main/${f}`)!.length;
      expect(ev.at(-1)).toEqual({ file: f, loaded: size, total: size });
      for (let i = 1; i < ev.length; i++) expect(ev[i].loaded).toBeGreaterThanOrEqual(ev[i - 1].loaded);
      if (size > 4 << 20) expect(ev.length).toBeGreaterThan(2); // streamed, not one blob
    }
  });

  it('resolves a Hugging Face id to huggingface.co/<id>/resolve/<revision>/<file>', async () => {
    const seen: string[] = [];
    const fetchVia: typeof fetch = (input, init) => {
      const url = String(input);
      seen.push(url);
      return fetch(url.replace('https://huggingface.co/facebook', `${base}/test`), init);
    };
    expectSameWeights(await loadCheckpoint('facebook/opt-micro', { fetch: fetchVia }), microRef);
    expect(seen[0]).toBe('https://huggingface.co/facebook/opt-micro/resolve/main/config.json');
    await expectRejects(loadCheckpoint('facebook/opt-micro', { fetch: fetchVia, revision: 'v2' }), CheckpointFormatError, 'missing');
    expect(seen.at(-1)).toBe('https://huggingface.co/facebook/opt-micro/resolve/v2/config.json');
  });

  it('HTTP failures and abort are named', async () => {
    await expectRejects(loadCheckpoint(`${base}/nothing/here/resolve/main`), CheckpointFormatError, 'missing');
    await expectRejects(loadCheckpoint(`${base}/broken/x/resolve/main`), ModelSourceError);
    await expectRejects(loadCheckpoint(`${MODELS}/does-not-exist`), ModelSourceError);
    await expectRejects(loadCheckpoint(new Uint8Array([1, 2, 3, 4])), ModelSourceError);
    const ac = new AbortController();
    const p = loadCheckpoint(`${base}/test/opt-mini/resolve/main`, { signal: ac.signal, onProgress: (e) => e.loaded > 0 && ac.abort() });
    expect(((await p.catch((e: Error) => e)) as Error).name).toBe('AbortError');
  });
});

describe('key styles and config variants (tiny random OPT)', () => {
  it('accepts "decoder.*" keys and a redundant tied lm_head; torch_dtype; bf16 and f32 storage', async () => {
    const cfg = tinyConfig();
    const ref = await loadCheckpoint(tinyFolder(cfg, tinyTensors(cfg)));
    const renamed = tinyTensors(cfg).map((t) => ({ ...t, name: t.name.replace(/^model\./, '') }));
    renamed.push({ name: 'lm_head.weight', dtype: 'F16', shape: [64, 16], data: new Float32Array(64 * 16) });
    expectSameWeights(await loadCheckpoint(tinyFolder(cfg, renamed)), ref);
    for (const dtype of ['BF16', 'F32'] as const) {
      const c = await loadCheckpoint(tinyFolder(tinyConfig({ torch_dtype: undefined, dtype: dtype === 'F32' ? 'float32' : 'bfloat16' }), tinyTensors(cfg, dtype)));
      expect(c.sourceDtype).toBe(dtype);
    }
  });

  it('untied head: lm_head.weight required and loaded; no-bias / no-affine variants follow the config', async () => {
    const cfg = tinyConfig({ tie_word_embeddings: false });
    const c = await loadCheckpoint(tinyFolder(cfg, tinyTensors(cfg)));
    expect(c.shapes.get('lm_head.weight')).toEqual([64, 16]);
    const bare = tinyConfig({ enable_bias: false, layer_norm_elementwise_affine: false });
    const b = await loadCheckpoint(tinyFolder(bare, tinyTensors(bare)));
    expect([...b.tensors.keys()].some((k) => k.endsWith('.bias') || k.includes('layer_norm'))).toBe(false);
  });
});

describe('bad checkpoints: one test per class, each with its named error', () => {
  const cfg = tinyConfig();
  const good = () => tinyTensors(cfg);

  it('missing tensor', async () => {
    const e = await expectRejects(loadCheckpoint(tinyFolder(cfg, good().filter((t) => !t.name.endsWith('layers.1.fc2.bias')))), CheckpointFormatError, 'missing');
    expect(e.message).toContain('model.decoder.layers.1.fc2.bias');
    const untied = tinyConfig({ tie_word_embeddings: false });
    await expectRejects(loadCheckpoint(tinyFolder(untied, good())), CheckpointFormatError, 'missing');
    await expectRejects(loadCheckpoint({ files: { 'config.json': enc(cfg) } }), CheckpointFormatError, 'missing');
  });
  it('extra tensor', async () => {
    const t = [...good(), { name: 'model.decoder.layers.2.fc1.weight', dtype: 'F16' as const, shape: [2], data: new Float32Array(2) }];
    const e = await expectRejects(loadCheckpoint(tinyFolder(cfg, t)), CheckpointFormatError, 'extra');
    expect(e.message).toContain('layers.2.fc1.weight');
    const dup = [...good(), { ...good()[0], name: good()[0].name.replace(/^model\./, '') }];
    await expectRejects(loadCheckpoint(tinyFolder(cfg, dup)), CheckpointFormatError, 'extra');
  });
  it('wrong shape', async () => {
    const t = good().map((x) => (x.name.endsWith('layers.0.fc1.weight') ? { ...x, shape: [16, 32] } : x));
    const e = await expectRejects(loadCheckpoint(tinyFolder(cfg, t)), CheckpointFormatError, 'shape');
    expect(e.message).toContain('[32,16]');
  });
  it('malformed safetensors inside a folder (truncated)', async () => {
    const f = tinyFolder(cfg, good());
    const whole = f.files['model.safetensors'];
    f.files['model.safetensors'] = whole.subarray(0, whole.length - 100);
    await expectRejects(loadCheckpoint(f), CheckpointFormatError, 'truncated');
  });
  it('bad index.json', async () => {
    const files = tinySharded(cfg, good());
    await expectRejects(loadCheckpoint({ files: { ...files, 'model.safetensors.index.json': enc({ weights: {} }) } }), CheckpointFormatError, 'index');
    await expectRejects(loadCheckpoint({ files: { ...files, 'model.safetensors.index.json': new TextEncoder().encode('{"weight_map": ') } }), CheckpointFormatError, 'index');
    const idx = JSON.parse(new TextDecoder().decode(files['model.safetensors.index.json']));
    const [first] = Object.keys(idx.weight_map);
    const moved = { weight_map: { ...idx.weight_map, [first]: 'model-00002-of-00002.safetensors' } };
    await expectRejects(loadCheckpoint({ files: { ...files, 'model.safetensors.index.json': enc(moved) } }), CheckpointFormatError, 'index');
    const escape = { weight_map: { ...idx.weight_map, [first]: '../model.safetensors' } };
    await expectRejects(loadCheckpoint({ files: { ...files, 'model.safetensors.index.json': enc(escape) } }), CheckpointFormatError, 'index');
    const { [first]: _gone, ...fewer } = idx.weight_map;
    await expectRejects(loadCheckpoint({ files: { ...files, 'model.safetensors.index.json': enc({ weight_map: fewer }) } }), CheckpointFormatError, 'missing');
    expectSameWeights(await loadCheckpoint({ files }), await loadCheckpoint(tinyFolder(cfg, good())));
  });
  it('missing shard', async () => {
    const { 'model-00002-of-00002.safetensors': _gone, ...files } = tinySharded(cfg, good());
    const e = await expectRejects(loadCheckpoint({ files }), CheckpointFormatError, 'index');
    expect(e.message).toContain('model-00002-of-00002.safetensors');
  });
  it('bad config.json: another architecture, unsupported options, bad values, not JSON', async () => {
    const t = good();
    let e = await expectRejects(loadCheckpoint(tinyFolder(tinyConfig({ model_type: 'gpt2' }), t)), UnsupportedArchitectureError);
    expect(e.message).toContain('gpt2');
    e = await expectRejects(loadCheckpoint(tinyFolder(tinyConfig({ architectures: ['GPT2LMHeadModel'], model_type: undefined }), t)), UnsupportedArchitectureError);
    expect(e.message).toContain('GPT2LMHeadModel');
    e = await expectRejects(loadCheckpoint(tinyFolder(tinyConfig({ architectures: ['LlamaForCausalLM'] }), t)), UnsupportedArchitectureError);
    expect(e.message).toContain('does not match model_type');
    for (const [field, value] of [['word_embed_proj_dim', 8], ['do_layer_norm_before', false], ['activation_function', 'gelu'], ['hidden_size', 15], ['vocab_size', -3], ['torch_dtype', 'int8']] as const) {
      e = await expectRejects(loadCheckpoint(tinyFolder(tinyConfig({ [field]: value }), t)), ConfigError);
      expect(e.message).toContain(field === 'hidden_size' ? 'hidden_size' : field);
    }
    await expectRejects(loadCheckpoint({ files: { 'config.json': new TextEncoder().encode('{oops') } }), CheckpointFormatError, 'json');
  });
  it('NaN / Inf weight', async () => {
    const t = good();
    t[3].data[5] = NaN;
    const folder = tinyFolder(cfg, t);
    const e = (await expectRejects(loadCheckpoint(folder), NonFiniteWeightsError)) as NonFiniteWeightsError;
    expect(e.tensor).toBe(t[3].name);
    expect(e.index).toBe(5);
    const allowed = await loadCheckpoint(folder, { allowNonFinite: true });
    expect(Number.isNaN(allowed.tensors.get(t[3].name)![5])).toBe(true);
    const inf = good();
    inf[0].data[7] = 1e6; // overflows f16 → Inf
    expect(((await expectRejects(loadCheckpoint(tinyFolder(cfg, inf)), NonFiniteWeightsError)) as NonFiniteWeightsError).index).toBe(7);
  });
});
