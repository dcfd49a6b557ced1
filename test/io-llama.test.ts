import { createHash } from 'node:crypto';
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { zipSync } from 'fflate';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadCheckpoint, type LoadedCheckpoint } from '../src/io/checkpoint';
import { parseModelConfig, type LlamaConfig } from '../src/io/config';
import { CheckpointFormatError, UnsupportedArchitectureError } from '../src/io/errors';
import { buildHfFolder, exportHfFolder, roundTo, TOKENIZER_FILES, type ExportDType } from '../src/io/export';
import { parseSafetensors, tensorToF32, writeSafetensors, type TensorToWrite } from '../src/io/safetensors';
import { loadTokenizer } from '../src/io/tokenizer';

const MODELS = '/work/shared/models';
const MICRO = `${MODELS}/llama-micro`;
const MINI = `${MODELS}/llama-mini`;
const enc = (o: unknown) => new TextEncoder().encode(JSON.stringify(o));
const dec = (b: Uint8Array) => JSON.parse(new TextDecoder().decode(b));
const readFolder = (dir: string): Record<string, Uint8Array> =>
  Object.fromEntries(readdirSync(dir).map((f) => [f, new Uint8Array(readFileSync(`${dir}/${f}`))]));
const params = (c: LoadedCheckpoint) => [...c.tensors.values()].reduce((s, t) => s + t.length, 0);
const bits = (t: Float32Array) => Buffer.from(t.buffer, t.byteOffset, t.byteLength);

function expectSameWeights(a: LoadedCheckpoint, b: LoadedCheckpoint): void {
  expect([...a.tensors.keys()]).toEqual([...b.tensors.keys()]);
  for (const [k, t] of a.tensors) {
    expect(Buffer.compare(bits(t), bits(b.tensors.get(k)!)), k).toBe(0);
    expect(a.shapes.get(k)).toEqual(b.shapes.get(k));
  }
}

async function expectRejects(p: Promise<unknown>, cls: new (...a: never[]) => Error, kind?: string): Promise<Error> {
  const e = await p.then(() => undefined, (err: Error) => err);
  expect(e, `expected ${cls.name}`).toBeInstanceOf(cls);
  if (kind) expect((e as CheckpointFormatError).kind, (e as Error).message).toBe(kind);
  return e!;
}

/** Tensor names and shapes a Llama folder must hold, written out from the architecture (FIXTURES.md), canonical order. */
function llamaNames(o: { layers: number; d: number; heads: number; kv: number; hd: number; ffn: number; vocab: number; tied: boolean }): Array<[string, number[]]> {
  const out: Array<[string, number[]]> = [['model.embed_tokens.weight', [o.vocab, o.d]]];
  for (let l = 0; l < o.layers; l++) {
    const p = `model.layers.${l}.`;
    out.push(
      [`${p}input_layernorm.weight`, [o.d]], [`${p}self_attn.q_proj.weight`, [o.heads * o.hd, o.d]], [`${p}self_attn.k_proj.weight`, [o.kv * o.hd, o.d]],
      [`${p}self_attn.v_proj.weight`, [o.kv * o.hd, o.d]], [`${p}self_attn.o_proj.weight`, [o.d, o.heads * o.hd]], [`${p}post_attention_layernorm.weight`, [o.d]],
      [`${p}mlp.gate_proj.weight`, [o.ffn, o.d]], [`${p}mlp.up_proj.weight`, [o.ffn, o.d]], [`${p}mlp.down_proj.weight`, [o.d, o.ffn]],
    );
  }
  out.push(['model.norm.weight', [o.d]]);
  if (!o.tied) out.push(['lm_head.weight', [o.vocab, o.d]]);
  return out;
}
const MICRO_NAMES = llamaNames({ layers: 2, d: 64, heads: 4, kv: 2, hd: 16, ffn: 176, vocab: 32000, tied: false });
const MINI_NAMES = llamaNames({ layers: 4, d: 256, heads: 8, kv: 2, hd: 32, ffn: 688, vocab: 32000, tied: true });

/** Float64 reference of f32 → bfloat16 rounding (nearest, ties to even) for finite f32 values. */
function bf16Ref(x: number): number {
  if (x === 0) return x;
  const e = Math.floor(Math.log2(Math.abs(x)));
  const exp = Math.abs(x) >= 2 ** (e + 1) ? e + 1 : Math.abs(x) < 2 ** e ? e - 1 : e; // guard log2 rounding
  const step = 2 ** (Math.max(exp, -126) - 7); // 7 fraction bits
  const q = x / step;
  let r = Math.floor(q);
  if (q - r > 0.5 || (q - r === 0.5 && r % 2 !== 0)) r++;
  return r * step;
}

let bf16Cache: Map<string, Float32Array> | undefined;
/** llama-micro's weights rounded to bfloat16 by bf16Ref (computed once: ~1.5 s). */
const microAsBf16 = () => (bf16Cache ??= new Map([...micro.tensors].map(([n, t]) => [n, Float32Array.from(t, bf16Ref)])));

/** A copy of a loaded checkpoint as one safetensors file, each tensor in the dtype `pick` chooses. */
function rewrite(ck: LoadedCheckpoint, pick: (name: string) => 'F16' | 'BF16' | 'F32', extra: TensorToWrite[] = []): Uint8Array {
  const ts: TensorToWrite[] = [...ck.tensors].map(([name, data]) => ({ name, dtype: pick(name), shape: ck.shapes.get(name)!, data }));
  return writeSafetensors([...ts, ...extra], { format: 'pt' });
}
const withConfig = (files: Record<string, Uint8Array>, over: Record<string, unknown>) => ({ ...files, 'config.json': enc({ ...dec(files['config.json']), ...over }) });

let micro: LoadedCheckpoint;
let mini: LoadedCheckpoint;
let microFiles: Record<string, Uint8Array>;
let miniFiles: Record<string, Uint8Array>;
const tmp = mkdtempSync(join(tmpdir(), 'io-llama-'));
beforeAll(async () => {
  microFiles = readFolder(MICRO);
  miniFiles = readFolder(MINI);
  micro = await loadCheckpoint(MICRO);
  mini = await loadCheckpoint(MINI);
});
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

describe('Llama fixture folders (FIXTURES.md)', () => {
  it('llama-micro from a Node path: one fp16 file, untied head, config fields, canonical order', () => {
    const sha = createHash('sha256').update(microFiles['model.safetensors']).digest('hex');
    expect(sha.slice(0, 16)).toBe('821b1b0f5351b414');
    const c = micro.config as LlamaConfig;
    expect(c).toMatchObject({
      family: 'llama', modelType: 'llama', architecture: 'LlamaForCausalLM', vocabSize: 32000, hiddenSize: 64, numLayers: 2, numHeads: 4, numKvHeads: 2,
      headDim: 16, ffnDim: 176, maxPositions: 2048, rmsNormEps: 1e-5, ropeTheta: 10000, ropeScaling: { type: 'default' }, tieWordEmbeddings: false,
      dtype: 'float16', bosTokenId: 1, eosTokenId: 2, eosTokenIds: [2], padTokenId: null, qkvBias: false, oBias: false, mlpBias: false, slidingWindow: null,
    });
    expect(micro.sourceDtype).toBe('F16');
    expect(micro.files).toEqual(['config.json', 'model.safetensors', 'tokenizer.json', 'tokenizer_config.json']);
    expect([...micro.shapes]).toEqual(MICRO_NAMES);
    // the file stores them alphabetically; the loader's order is canonical
    expect([...parseSafetensors(microFiles['model.safetensors']).tensors.keys()].sort()).toEqual(MICRO_NAMES.map(([n]) => n).sort());
    expect((params(micro) / 1e6).toFixed(2)).toBe('4.19');
    expect(micro.tokenizerJson).toBeTypeOf('object');
  });

  it('llama-mini from a Node path: sharded index without lm_head, tied head', () => {
    const index = dec(miniFiles['model.safetensors.index.json']);
    expect(Object.keys(index.weight_map)).not.toContain('lm_head.weight');
    expect(createHash('sha256').update(miniFiles['model-00001-of-00002.safetensors']).digest('hex').slice(0, 16)).toBe('7326e1436115c334');
    expect(createHash('sha256').update(miniFiles['model-00002-of-00002.safetensors']).digest('hex').slice(0, 16)).toBe('aba2be29fba7befa');
    expect(mini.config).toMatchObject({ numLayers: 4, hiddenSize: 256, numHeads: 8, numKvHeads: 2, headDim: 32, ffnDim: 688, maxPositions: 4096, rmsNormEps: 1e-5, ropeTheta: 10000, tieWordEmbeddings: true });
    expect([...mini.shapes]).toEqual(MINI_NAMES);
    expect(params(mini)).toBe(index.metadata.total_parameters);
    expect((params(mini) / 1e6).toFixed(2)).toBe('10.96');
    expect(mini.files).toEqual(['config.json', 'model.safetensors.index.json', 'model-00001-of-00002.safetensors', 'model-00002-of-00002.safetensors', 'tokenizer.json', 'tokenizer_config.json']);
  });

  it.each(['micro', 'mini'])('llama-%s from { files }, a zip (bytes, Blob, .zip path) and File[]: same weights, inputs untouched', async (m) => {
    const [ref, files] = m === 'micro' ? [micro, microFiles] : [mini, miniFiles];
    const copies = Object.fromEntries(Object.entries(files).map(([k, v]) => [k, v.slice()]));
    expectSameWeights(await loadCheckpoint({ files }), ref);
    const zip = zipSync(Object.fromEntries(Object.entries(files).map(([k, v]) => [`llama-${m}/${k}`, v])), { level: 0 });
    const fromZip = await loadCheckpoint(zip);
    expectSameWeights(fromZip, ref);
    expect(fromZip.tokenizerConfig).toEqual(ref.tokenizerConfig);
    expectSameWeights(await loadCheckpoint(new Blob([zip])), ref);
    writeFileSync(`${tmp}/llama-${m}.zip`, zip);
    expectSameWeights(await loadCheckpoint(`${tmp}/llama-${m}.zip`), ref);
    expectSameWeights(await loadCheckpoint(Object.entries(files).map(([k, v]) => new File([v as Uint8Array<ArrayBuffer>], k))), ref);
    for (const [k, v] of Object.entries(files)) expect(Buffer.compare(Buffer.from(v), Buffer.from(copies[k]))).toBe(0);
  });

  it("the loaded tokenizer files give the fixture's ids", async () => {
    const tok = await loadTokenizer(mini.tokenizerJson, mini.tokenizerConfig);
    expect(tok.encode('Hello world')).toEqual([1, 22557, 1526]);
  });
});

describe('Llama storage dtypes and tolerated extras', () => {
  it('bf16 copy of llama-micro loads to the exactly rounded values; F32 copy loads unchanged', async () => {
    const bf = await loadCheckpoint({ files: { ...withConfig(microFiles, { torch_dtype: 'bfloat16' }), 'model.safetensors': rewrite(micro, () => 'BF16') } });
    expect(bf.config.dtype).toBe('bfloat16');
    expect(bf.sourceDtype).toBe('BF16');
    let changed = 0;
    for (const [name, t] of micro.tensors) {
      const want = microAsBf16().get(name)!;
      const got = bf.tensors.get(name)!;
      expect(Buffer.compare(bits(got), bits(want)), name).toBe(0);
      for (let i = 0; i < t.length; i++) if (got[i] !== t[i]) changed++;
    }
    expect(changed).toBeGreaterThan(params(micro) / 2); // f16 → bf16 drops 3 fraction bits: most values move
    const f32 = await loadCheckpoint({ files: { ...withConfig(microFiles, { torch_dtype: 'float32' }), 'model.safetensors': rewrite(micro, () => 'F32') } });
    expect(f32.sourceDtype).toBe('F32');
    expectSameWeights(f32, micro);
  });

  it('mixed dtypes are reported in sourceDtype', async () => {
    const norms = (n: string) => n.endsWith('norm.weight');
    const a = await loadCheckpoint({ files: { ...microFiles, 'model.safetensors': rewrite(micro, (n) => (norms(n) ? 'F32' : 'F16')) } });
    expect(a.sourceDtype).toBe('F16+F32');
    expectSameWeights(a, micro);
    const b = await loadCheckpoint({ files: { ...microFiles, 'model.safetensors': rewrite(micro, (n) => (norms(n) ? 'F32' : 'BF16')) } });
    expect(b.sourceDtype).toBe('BF16+F32');
  });

  it('a saved rotary_emb.inv_freq buffer is ignored; a redundant tied lm_head is tolerated in a shard', async () => {
    const invFreq = (l: number): TensorToWrite => ({ name: `model.layers.${l}.self_attn.rotary_emb.inv_freq`, dtype: 'F32', shape: [8], data: Float32Array.from({ length: 8 }, (_, i) => 10000 ** (-i / 8)) });
    const c = await loadCheckpoint({ files: { ...microFiles, 'model.safetensors': rewrite(micro, () => 'F16', [invFreq(0), invFreq(1)]) } });
    expectSameWeights(c, micro);
    expect(c.sourceDtype).toBe('F16');
    // llama-mini with lm_head.weight (= embed) in a third shard listed by the index
    const index = dec(miniFiles['model.safetensors.index.json']);
    const head = { name: 'lm_head.weight', dtype: 'F16' as const, shape: [32000, 256], data: mini.tensors.get('model.embed_tokens.weight')! };
    const extra = { 'model-00003-of-00003.safetensors': writeSafetensors([head]), 'model.safetensors.index.json': enc({ ...index, weight_map: { ...index.weight_map, 'lm_head.weight': 'model-00003-of-00003.safetensors' } }) };
    const tied = await loadCheckpoint({ files: { ...miniFiles, ...extra } });
    expectSameWeights(tied, mini);
    const wrongHead = { ...extra, 'model-00003-of-00003.safetensors': writeSafetensors([{ ...head, shape: [256, 32000] }]) };
    await expectRejects(loadCheckpoint({ files: { ...miniFiles, ...wrongHead } }), CheckpointFormatError, 'shape');
  });
});

describe('corrupt and mismatched Llama checkpoints', () => {
  it('truncated or corrupt safetensors', async () => {
    const st = microFiles['model.safetensors'];
    await expectRejects(loadCheckpoint({ files: { ...microFiles, 'model.safetensors': st.subarray(0, st.length - 1000) } }), CheckpointFormatError, 'truncated');
    const badLen = st.slice(0, 4096);
    new DataView(badLen.buffer).setUint32(0, 1 << 30, true);
    await expectRejects(loadCheckpoint({ files: { ...microFiles, 'model.safetensors': badLen } }), CheckpointFormatError, 'header');
    const shard = miniFiles['model-00002-of-00002.safetensors'];
    await expectRejects(loadCheckpoint({ files: { ...miniFiles, 'model-00002-of-00002.safetensors': shard.subarray(0, shard.length >> 1) } }), CheckpointFormatError, 'truncated');
  });

  it('index problems: missing shard, misplaced / omitted / unknown tensors, not JSON', async () => {
    const index = dec(miniFiles['model.safetensors.index.json']);
    const withIndex = (wm: Record<string, string>) => ({ files: { ...miniFiles, 'model.safetensors.index.json': enc({ ...index, weight_map: wm }) } });
    const { 'model-00001-of-00002.safetensors': _gone, ...noShard } = miniFiles;
    expect((await expectRejects(loadCheckpoint({ files: noShard }), CheckpointFormatError, 'index')).message).toContain('model-00001-of-00002.safetensors');
    await expectRejects(loadCheckpoint(withIndex({ ...index.weight_map, 'model.norm.weight': 'model-00001-of-00002.safetensors' })), CheckpointFormatError, 'index');
    const { 'model.layers.3.mlp.up_proj.weight': _up, ...fewer } = index.weight_map;
    expect((await expectRejects(loadCheckpoint(withIndex(fewer)), CheckpointFormatError, 'missing')).message).toContain('model.layers.3.mlp.up_proj.weight');
    await expectRejects(loadCheckpoint(withIndex({ ...index.weight_map, 'model.layers.4.mlp.up_proj.weight': 'model-00002-of-00002.safetensors' })), CheckpointFormatError, 'extra');
    await expectRejects(loadCheckpoint({ files: { ...miniFiles, 'model.safetensors.index.json': new TextEncoder().encode('{"weight_map":') } }), CheckpointFormatError, 'index');
  });

  it('config and weights that disagree', async () => {
    const e = await expectRejects(loadCheckpoint({ files: withConfig(microFiles, { num_key_value_heads: 4 }) }), CheckpointFormatError, 'shape');
    expect(e.message).toContain('k_proj');
    await expectRejects(loadCheckpoint({ files: withConfig(microFiles, { intermediate_size: 177 }) }), CheckpointFormatError, 'shape');
    expect((await expectRejects(loadCheckpoint({ files: withConfig(miniFiles, { tie_word_embeddings: false }) }), CheckpointFormatError, 'missing')).message).toContain('lm_head.weight');
    expect((await expectRejects(loadCheckpoint({ files: withConfig(microFiles, { attention_bias: true }) }), CheckpointFormatError, 'missing')).message).toContain('self_attn.q_proj.bias');
    const qwen = withConfig(microFiles, { model_type: 'qwen2', architectures: ['Qwen2ForCausalLM'] });
    expect((await expectRejects(loadCheckpoint({ files: qwen }), CheckpointFormatError, 'missing')).message).toContain('self_attn.q_proj.bias');
    await expectRejects(loadCheckpoint({ files: withConfig(microFiles, { model_type: 'mistral' }) }), UnsupportedArchitectureError);
    // a tied config over the untied files: lm_head is the tolerated duplicate, dropped
    const tied = await loadCheckpoint({ files: withConfig(microFiles, { tie_word_embeddings: true }) });
    expect(tied.tensors.has('lm_head.weight')).toBe(false);
  });
});

describe('export as a Hugging Face Llama folder', () => {
  const tokenizerFiles = (files: Record<string, Uint8Array>) => Object.fromEntries(TOKENIZER_FILES.filter((f) => f in files).map((f) => [f, files[f]]));

  it.each(['float32', 'float16', 'bfloat16'] as const)('llama-micro → %s folder → loadCheckpoint: names, config, values as rounded', async (dtype: ExportDType) => {
    const raw = micro.config.raw;
    const out = buildHfFolder(raw, micro.tensors, { dtype, extraFiles: tokenizerFiles(microFiles) });
    expect(Object.keys(out.files).sort()).toEqual(['config.json', 'generation_config.json', 'model.safetensors', 'tokenizer.json', 'tokenizer_config.json']);
    const cfg = dec(out.files['config.json']);
    expect(cfg).toEqual({ ...raw, torch_dtype: dtype }); // only the dtype changes
    const st = parseSafetensors(out.files['model.safetensors']);
    expect(st.metadata).toEqual({ format: 'pt' });
    expect([...st.tensors.keys()].sort()).toEqual(MICRO_NAMES.map(([n]) => n).sort());
    const back = await loadCheckpoint({ files: out.files });
    expect(back.sourceDtype).toBe({ float32: 'F32', float16: 'F16', bfloat16: 'BF16' }[dtype]);
    expect(back.config).toMatchObject({ dtype, numKvHeads: 2, headDim: 16, tieWordEmbeddings: false });
    expect([...back.shapes]).toEqual(MICRO_NAMES);
    for (const [name, t] of micro.tensors) {
      const want = dtype === 'bfloat16' ? microAsBf16().get(name)! : t; // f16 values are exact in f16 and f32
      expect(Buffer.compare(bits(back.tensors.get(name)!), bits(want)), name).toBe(0);
      if (dtype === 'bfloat16' && name === 'model.norm.weight') expect(Buffer.compare(bits(roundTo(t, dtype)), bits(want))).toBe(0);
    }
    expect(back.tokenizerJson).toEqual(micro.tokenizerJson);
  });

  it('llama-mini (tied): written to disk without lm_head, loads back identical; an lm_head weight is rejected', async () => {
    const dir = `${tmp}/mini-export`;
    const out = await exportHfFolder(mini.config.raw, mini.tensors, dir, { extraFiles: tokenizerFiles(miniFiles) });
    expect(out.dtype).toBe('float16'); // the config's torch_dtype
    expect(parseSafetensors(out.files['model.safetensors']).tensors.has('lm_head.weight')).toBe(false);
    const back = await loadCheckpoint(dir);
    expectSameWeights(back, mini);
    expect(back.files).toContain('model.safetensors');
    const withHead = new Map([...mini.tensors, ['lm_head.weight', mini.tensors.get('model.embed_tokens.weight')!]]);
    const e = await expectRejects(Promise.resolve().then(() => buildHfFolder(mini.config.raw, withHead)), CheckpointFormatError, 'extra');
    expect(e.message).toContain('tied');
    const { 'model.layers.1.mlp.gate_proj.weight': _g, ...rest } = Object.fromEntries(micro.tensors);
    await expectRejects(Promise.resolve().then(() => buildHfFolder(micro.config.raw, new Map(Object.entries(rest)))), CheckpointFormatError, 'missing');
  });
});
