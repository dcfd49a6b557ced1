/**
 * `llm-surgeon prune` and `eval` on llama-micro (untied Llama, GQA 4/2 heads, no biases; software GPU),
 * in process: the calibration text is tokenised with the folder's SentencePiece tokenizer (BOS first);
 * rows-cols (surgeon), 2:4 (K-OBD) and element (SparseGPT, float16 export) runs exit 0, write a
 * Hugging Face folder with Llama's tensor names that loads back with exactly the report's zeros per layer,
 * report.json counts params = R·C (no bias column) under Llama's module types; 2:4 is exact.
 * `eval` on the first 8 × 128 ids matches the float64 value in FIXTURES.md. Tiny settings: 4 × 64
 * calibration tokens from a 40 kB slice of the calibration text, 2 windows of 64 eval tokens.
 */
import { mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { evalCommand } from '../src/cli/eval';
import { pruneCommand } from '../src/cli/prune';
import type { GpuContext } from '../src/gpu/context';
import { loadCheckpoint, type LoadedCheckpoint } from '../src/io/checkpoint';
import { parseSafetensors } from '../src/io/safetensors';
import { loadTokenizer } from '../src/io/tokenizer';
import { joinWikitextRows } from '../src/io/wikitext';
import { DecoderModel, perplexity } from '../src/model/index';
import { gpu } from './helpers/gpu';

const MODEL = '/work/shared/models/llama-micro';
const IDS = '/work/shared/data/wikitext-2-raw/wiki.test.mistral-ids.json';
const LLAMA_TYPES = ['q_proj', 'k_proj', 'v_proj', 'o_proj', 'gate_proj', 'up_proj', 'down_proj'];
const tmp = mkdtempSync(join(tmpdir(), 'llms-cli-llama-'));
// A slice keeps the tokenisation short (the whole file is 1.2 MB); cut at a row boundary.
const CALIB = join(tmp, 'calib.txt');
const calibText = readFileSync('/work/shared/data/wikitext-2-raw/wiki.valid.near_raw', 'utf8');
writeFileSync(CALIB, calibText.slice(0, calibText.indexOf('\n', 40_000) + 1));
const SMALL = ['--nsamples', '4', '--seqlen', '64', '--eval', IDS, '--eval-windows', '2', '--eval-seqlen', '64', '--quiet'];

interface Report {
  model: { family: string; architecture: string; numKvHeads: number; moduleTypes: string[] };
  achievedSparsity: number; params: number; zeros: number;
  calibration: { tokens: number };
  layers: Array<{ name: string; type: string; params: number; zeros: number; rowsRemoved?: number; colsRemoved?: number; nmGroups?: { full: number; total: number } }>;
  byModuleType: Record<string, { params: number; zeros: number }>;
  perplexity: { dense: number; pruned: number; seqlen: number; windows: number };
  export: { dtype: string };
  memory: { estimatedPeakBytes: number; measuredPeakBytes: number };
}

async function capture(fn: () => Promise<number>): Promise<{ code: number; out: string; err: string }> {
  const out: string[] = [], err: string[] = [];
  const so = vi.spyOn(process.stdout, 'write').mockImplementation((s: string | Uint8Array) => (out.push(String(s)), true));
  const se = vi.spyOn(process.stderr, 'write').mockImplementation((s: string | Uint8Array) => (err.push(String(s)), true));
  try {
    return { code: await fn(), out: out.join(''), err: err.join('') };
  } finally {
    so.mockRestore();
    se.mockRestore();
  }
}

async function prune(ctx: GpuContext, name: string, argv: string[]): Promise<{ rep: Report; ckpt: LoadedCheckpoint; out: string }> {
  const out = join(tmp, name);
  const t0 = performance.now();
  const r = await capture(() => pruneCommand(['--model', MODEL, '--calib', CALIB, '--out', out, ...SMALL, ...argv], { ctx }));
  expect(r.code, r.err).toBe(0);
  console.log(`[cli-llama] ${name}: ${((performance.now() - t0) / 1000).toFixed(1)} s — ${r.out.trim()}`);
  return { rep: JSON.parse(readFileSync(join(out, 'report.json'), 'utf8')) as Report, ckpt: await loadCheckpoint(out), out };
}

/** What every run must show: Llama's modules, zeros of the file = the report's, the exported values' perplexity. */
async function common(ctx: GpuContext, rep: Report, ckpt: LoadedCheckpoint, out: string): Promise<void> {
  expect(rep.model).toMatchObject({ family: 'llama', architecture: 'LlamaForCausalLM', numKvHeads: 2, moduleTypes: LLAMA_TYPES });
  expect(Object.keys(rep.byModuleType)).toEqual(LLAMA_TYPES);
  expect(rep.layers.map((L) => L.type)).toEqual([...LLAMA_TYPES, ...LLAMA_TYPES]);
  let zeros = 0, params = 0;
  for (const L of rep.layers) {
    expect(L.name).toMatch(/^model\.layers\.[01]\.(self_attn|mlp)\.[a-z_]+$/);
    const w = ckpt.tensors.get(`${L.name}.weight`)!;
    expect(ckpt.tensors.has(`${L.name}.bias`)).toBe(false);
    expect(L.params).toBe(w.length); // R·C: no bias column without a bias
    let z = 0;
    for (let i = 0; i < w.length; i++) if (w[i] === 0) z++;
    expect([L.name, z]).toEqual([L.name, L.zeros]);
    zeros += z;
    params += L.params;
  }
  expect([rep.zeros, rep.params]).toEqual([zeros, params]);
  expect(rep.achievedSparsity).toBe(zeros / params);
  // every tensor of the source under its Llama name (untied: lm_head.weight kept), nothing else
  const src = await loadCheckpoint(MODEL);
  expect([...ckpt.tensors.keys()].sort()).toEqual([...src.tensors.keys()].sort());
  expect(ckpt.tensors.has('lm_head.weight')).toBe(true);
  for (const f of ['tokenizer.json', 'tokenizer_config.json', 'generation_config.json']) expect(readFileSync(join(out, f)).equals(readFileSync(join(MODEL, f)))).toBe(true);
  const cfg = JSON.parse(readFileSync(join(out, 'config.json'), 'utf8')) as Record<string, unknown>;
  expect(cfg).toEqual({ ...(JSON.parse(readFileSync(join(MODEL, 'config.json'), 'utf8')) as object), torch_dtype: rep.export.dtype });
  const ids = JSON.parse(readFileSync(IDS, 'utf8')) as number[];
  const model = await DecoderModel.fromCheckpoint(ctx, ckpt);
  try {
    const ppl = (await perplexity(ctx, model, ids, { seqlen: rep.perplexity.seqlen, windows: rep.perplexity.windows })).ppl;
    expect(Math.abs(ppl - rep.perplexity.pruned)).toBeLessThan(1e-6 * ppl);
  } finally {
    model.dispose();
  }
  expect(Number.isFinite(rep.perplexity.dense) && rep.perplexity.pruned < 3 * rep.perplexity.dense).toBe(true);
  expect(rep.memory.measuredPeakBytes).toBeGreaterThan(0);
  expect(rep.memory.measuredPeakBytes).toBeLessThanOrEqual(rep.memory.estimatedPeakBytes);
}

describe('llm-surgeon on llama-micro', () => {
  let ctx: GpuContext;
  beforeAll(async () => { ctx = await gpu(); });
  afterAll(() => rmSync(tmp, { recursive: true, force: true }));

  it('eval: 8 × 128 ids match the float64 perplexity of FIXTURES.md; a text file is tokenised with BOS', async () => {
    const r = await capture(() => evalCommand(['--model', MODEL, '--text', IDS, '--seqlen', '128', '--windows', '8'], { ctx }));
    expect(r.code, r.err).toBe(0);
    expect(r.err).toContain('LlamaForCausalLM 2 layers, d=64, 4/2 heads × 16, ffn=176');
    const ppl = Number(/perplexity ([\d.]+)/.exec(r.out)![1]);
    expect(Math.abs(ppl - 227.625)).toBeLessThan(1e-4 * 227.625 + 5e-4); // FIXTURES: 3 decimals
    const t = await capture(() => evalCommand(['--model', MODEL, '--text', CALIB, '--seqlen', '64', '--windows', '2'], { ctx }));
    expect(t.code, t.err).toBe(0);
    expect(t.out).toMatch(/^perplexity [\d.]+ \(2 windows of 64 tokens/);
  });

  it('rows-cols surgeon, 2 shots to 20%: Llama folder and report, removed rows all zero', async () => {
    const { rep, ckpt, out } = await prune(ctx, 'rows-cols', ['--structure', 'rows-cols', '--sparsity', '0.2', '--shots', '2']);
    // the calibration tokens are the folder tokenizer's, BOS (id 1) first
    const src = await loadCheckpoint(MODEL);
    const ids = (await loadTokenizer(src.tokenizerJson, src.tokenizerConfig)).encode(joinWikitextRows(readFileSync(CALIB, 'utf8')));
    expect(ids[0]).toBe(1);
    expect(rep.calibration.tokens).toBe(ids.length);
    await common(ctx, rep, ckpt, out);
    expect(rep.achievedSparsity).toBeLessThanOrEqual(0.2);
    expect(rep.achievedSparsity).toBeGreaterThan(0.1);
    for (const L of rep.layers) {
      const w = ckpt.tensors.get(`${L.name}.weight`)!, [R, C] = src.shapes.get(`${L.name}.weight`)!;
      let zeroRows = 0;
      for (let r = 0; r < R; r++) if (w.subarray(r * C, (r + 1) * C).every((v) => v === 0)) zeroRows++;
      expect(zeroRows, L.name).toBeGreaterThanOrEqual(L.rowsRemoved!);
    }
  });

  it('2:4 K-OBD, 1 shot: exactly 2 zeros or more in every group of 4 inputs', async () => {
    const { rep, ckpt, out } = await prune(ctx, 'two-four', ['--structure', '2:4', '--method', 'kobd', '--shots', '1']);
    await common(ctx, rep, ckpt, out);
    for (const L of rep.layers) {
      const w = ckpt.tensors.get(`${L.name}.weight`)!;
      let bad = 0;
      for (let g = 0; g < w.length; g += 4) if ([0, 1, 2, 3].filter((j) => w[g + j] === 0).length < 2) bad++;
      expect([L.name, bad, L.nmGroups!.full]).toEqual([L.name, 0, w.length / 4]);
    }
  });

  it('element SparseGPT to 30%, float16 export: zeros exact on the rounded weights', async () => {
    const { rep, ckpt, out } = await prune(ctx, 'element', ['--structure', 'element', '--sparsity', '0.3', '--method', 'sparsegpt', '--dtype', 'float16']);
    const st = parseSafetensors(readFileSync(join(out, 'model.safetensors')));
    expect(new Set([...st.tensors.values()].map((t) => t.dtype))).toEqual(new Set(['F16']));
    await common(ctx, rep, ckpt, out);
    for (const L of rep.layers) expect(L.zeros, L.name).toBeGreaterThanOrEqual(Math.floor(0.3 * L.params));
    expect(rep.achievedSparsity).toBeLessThan(0.3 + 0.005);
    expect(readdirSync(out).sort()).toEqual(['config.json', 'generation_config.json', 'model.safetensors', 'report.json', 'tokenizer.json', 'tokenizer_config.json']);
  });
});
