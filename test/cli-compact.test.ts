/**
 * Physically smaller exports on the software GPU (one file, so the pipelines compile once):
 * - `llm-surgeon prune --compact` on opt-micro (rows-cols, K-OBD, 2 shots, 4 × 32 calibration tokens): the
 *   folder holds the smaller shapes, report.json's compaction matches them (widths per layer, units
 *   removed, parameters and bytes), and loadModel reads it back with the zeroed model's perplexity
 *   (report.perplexity.pruned) within 1e-5 relative — as does the compact model measured by the CLI.
 * - `--compact --uniform --uniform-heads` on llama-micro: every layer keeps the same FFN width and kv
 *   groups, config.json is stock (intermediate_size, head counts, head_dim; no compact_layers), and it
 *   loads back and matches.
 * - pruneModel({ uniform }) on a tiny OPT (d = 16) through the layer-group shot (one decoder layer per pass):
 *   equal FFN widths; the 'uniform' export keeps every OPT head and has a stock ffn_dim.
 * K-OBD (costs without inverses or updates) keeps the runs short (the file is compile-bound): the uniform
 * selection, the zeroing of a unit's other sides and the compaction do not depend on the method; the
 * surgeon's OBS update gets the same row/column selection as without uniform (shot.ts applyStructured).
 */
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { loadModel } from '../src/api/public';
import { pruneCommand } from '../src/cli/prune';
import { planCompaction } from '../src/compact/index';
import type { GpuContext } from '../src/gpu/context';
import type { LoadedCheckpoint } from '../src/io/checkpoint';
import { exportHfFolder } from '../src/io/export';
import { DecoderModel, perplexity } from '../src/model/index';
import { pruneModel } from '../src/surgeon/index';
import { optCkpt } from './helpers/compact';
import { gpu } from './helpers/gpu';
import { rng } from './helpers/rng';

const MODELS = '/work/shared/models';
const DATA = '/work/shared/data/wikitext-2-raw';
const OPT_IDS = join(DATA, 'wiki.test.opt-ids.json'), LLAMA_IDS = join(DATA, 'wiki.test.mistral-ids.json');
const T = 32;
const tmp = mkdtempSync(join(tmpdir(), 'llms-cli-compact-'));
// Calibration from the same id files (.json ids need no tokenizer); evaluation on their first 2 windows.
const RUN = ['--structure', 'rows-cols', '--sparsity', '0.3', '--shots', '2', '--nsamples', '4', '--seqlen', String(T), '--eval-windows', '2', '--eval-seqlen', String(T), '--quiet'];

interface Dim { before: number; after: number; removed: number }
interface Report {
  perplexity: { pruned: number; seqlen: number; windows: number };
  options: { uniform: boolean; uniformHeads: boolean; compact: boolean };
  compaction: {
    uniform: boolean; stockConfig: boolean; params: { before: number; after: number }; bytes: { before: number; after: number };
    layers: Array<{ layer: number; ffnDim: Dim; numHeads: Dim; numKvHeads: Dim }>; perplexity: number;
  };
}

let ctx: GpuContext;
beforeAll(async () => { ctx = await gpu(); });
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

async function cli(model: string, ids: string, out: string, argv: string[]): Promise<{ code: number; err: string }> {
  const err: string[] = [];
  const se = vi.spyOn(process.stderr, 'write').mockImplementation((s: string | Uint8Array) => (err.push(String(s)), true));
  const so = vi.spyOn(process.stdout, 'write').mockImplementation(() => true);
  try {
    return { code: await pruneCommand(['--model', join(MODELS, model), '--calib', ids, '--eval', ids, '--out', out, ...RUN, ...argv], { ctx }), err: err.join('') };
  } finally {
    se.mockRestore();
    so.mockRestore();
  }
}

async function pplOf(ckpt: LoadedCheckpoint, ids: Int32Array | number[], windows: number): Promise<number> {
  const m = await DecoderModel.fromCheckpoint(ctx, ckpt);
  try {
    return (await perplexity(ctx, m, ids, { seqlen: T, windows })).ppl;
  } finally {
    m.dispose();
  }
}

const readJson = <X>(p: string) => JSON.parse(readFileSync(p, 'utf8')) as X;
const rel = (a: number, b: number) => Math.abs(a - b) / b;

/** The folder matches its report: shapes per layer, parameter count, and our perplexity of it. */
async function checkFolder(out: string, ids: string): Promise<{ rep: Report; back: LoadedCheckpoint }> {
  const rep = readJson<Report>(join(out, 'report.json'));
  const back = await loadModel(out);
  const c = rep.compaction;
  for (const l of c.layers) {
    const d = back.config.layers?.[l.layer] ?? { ffnDim: back.config.ffnDim, numHeads: back.config.numHeads, numKvHeads: back.config.numKvHeads };
    expect([d.ffnDim, d.numHeads, d.numKvHeads]).toEqual([l.ffnDim.after, l.numHeads.after, l.numKvHeads.after]);
    for (const x of [l.ffnDim, l.numHeads, l.numKvHeads]) expect(x.removed).toBe(x.before - x.after);
  }
  let params = 0;
  for (const t of back.tensors.values()) params += t.length;
  expect(params).toBe(c.params.after);
  expect(c.params.after).toBeLessThan(c.params.before);
  expect(c.bytes).toEqual({ before: 4 * c.params.before, after: 4 * c.params.after }); // float32 export
  const ppl = await pplOf(back, readJson<number[]>(ids), rep.perplexity.windows);
  console.log(`[cli-compact ${out}] params ${c.params.before} → ${c.params.after}; ppl zeroed ${rep.perplexity.pruned}, compact (CLI) ${c.perplexity}, loaded ${ppl}`);
  expect(rel(ppl, rep.perplexity.pruned)).toBeLessThanOrEqual(1e-5);
  expect(rel(c.perplexity, rep.perplexity.pruned)).toBeLessThanOrEqual(1e-5);
  return { rep, back };
}

describe('compact exports', () => {
  it('prune --compact (opt-micro): smaller shapes, compaction in report.json, loads back with the zeroed perplexity', async () => {
    const out = join(tmp, 'opt-free');
    const r = await cli('opt-micro', OPT_IDS, out, ['--compact', '--method', 'kobd']);
    expect(r.code, r.err).toBe(0);
    const { rep, back } = await checkFolder(out, OPT_IDS);
    expect([rep.options.compact, rep.options.uniform, rep.compaction.uniform]).toEqual([true, false, false]);
    expect(rep.compaction.layers.reduce((a, l) => a + l.ffnDim.removed, 0)).toBeGreaterThan(0);
    expect(rep.compaction.stockConfig).toBe(back.config.layers === undefined);
  });

  it('prune --compact --uniform --uniform-heads (llama-micro): equal widths, a stock config, loads back and matches', async () => {
    const out = join(tmp, 'llama-uniform');
    const r = await cli('llama-micro', LLAMA_IDS, out, ['--compact', '--uniform', '--uniform-heads', '--method', 'kobd']);
    expect(r.code, r.err).toBe(0);
    const { rep, back } = await checkFolder(out, LLAMA_IDS);
    expect([rep.options.uniform, rep.options.uniformHeads, rep.compaction.stockConfig]).toEqual([true, true, true]);
    const ffn = new Set(rep.compaction.layers.map((l) => l.ffnDim.after)), kv = new Set(rep.compaction.layers.map((l) => l.numKvHeads.after));
    expect([ffn.size, kv.size]).toEqual([1, 1]);
    const raw = readJson<Record<string, unknown>>(join(out, 'config.json'));
    const src = readJson<Record<string, unknown>>(join(MODELS, 'llama-micro', 'config.json'));
    expect(raw.compact_layers).toBeUndefined();
    expect([raw.intermediate_size, raw.num_key_value_heads, raw.num_attention_heads, raw.head_dim]).toEqual([[...ffn][0], [...kv][0], 2 * [...kv][0], src.head_dim]);
    expect(raw.intermediate_size).toBeLessThan(src.intermediate_size as number);
    expect(back.config.layers).toBeUndefined();
  });

  it('pruneModel({ uniform }) (a tiny OPT) in layer groups: equal FFN widths; the uniform export is a stock OPT', async () => {
    const src = optCkpt(31);
    const r = rng(5), tok = () => Int32Array.from({ length: T }, () => Math.floor(r() * src.config.vocabSize));
    const calib = Array.from({ length: 4 }, tok), ids = Int32Array.from(Array.from({ length: 2 }, tok).flatMap((x) => [...x]));
    const gm = await DecoderModel.fromCheckpoint(ctx, src);
    let weights: Map<string, Float32Array>, achieved: number;
    try {
      achieved = (await pruneModel(ctx, gm, calib, { structure: 'rows-cols', sparsity: 0.3, shots: 2, method: 'kobd', uniform: true, groups: [[0], [1]] })).achievedSparsity;
      weights = await gm.exportWeights();
    } finally {
      gm.dispose();
    }
    // Every unit is removed whole (its other side zeroed too), so the zeros are what a compact export drops.
    expect(achieved).toBeGreaterThan(0.25);
    expect(achieved).toBeLessThanOrEqual(0.3);
    const ffn = planCompaction(src.config, weights).layers.map((l) => l.dims.ffnDim);
    expect(new Set(ffn).size).toBe(1);
    expect(ffn[0]).toBeLessThan(src.config.ffnDim);
    const out = join(tmp, 'opt-uniform');
    const folder = await exportHfFolder(src.config.raw, weights, out, { dtype: 'float32', compact: 'uniform' });
    const raw = readJson<Record<string, unknown>>(join(out, 'config.json'));
    expect([raw.compact_layers, raw.ffn_dim, raw.num_attention_heads]).toEqual([undefined, ffn[0], src.config.numHeads]);
    expect(folder.compaction!.stock).toBe(true);
    const a = await pplOf({ ...src, tensors: weights }, ids, 2), b = await pplOf(await loadModel(out), ids, 2);
    console.log(`[uniform tiny OPT] achieved ${achieved}, kept FFN ${ffn}; ppl zeroed ${a} compact ${b}`);
    expect(rel(b, a)).toBeLessThanOrEqual(1e-5);
  });
});
