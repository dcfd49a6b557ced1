/**
 * Compact models on the GPU: after a structured surgeon prune of a tiny OPT / Llama (plus dead heads
 * and neurons made by hand, so whole heads and kv groups go too), the compact model (src/compact)
 * computes the zeroed model's function: perplexity within 1e-5 relative, logits within an f32 error
 * model, the same greedy generation; a compact export read back with loadModel gives the same
 * perplexity; and the surgeon itself runs on a compact model (per-layer widths in K-FAC / backward).
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadModel } from '../src/api/public';
import { compactModel } from '../src/compact/index';
import type { GpuContext } from '../src/gpu/context';
import type { LoadedCheckpoint } from '../src/io/checkpoint';
import { exportHfFolder } from '../src/io/export';
import { matmul } from '../src/kernels/matmul';
import { DecoderModel, forwardBatch, generate, perplexity, uploadBatch } from '../src/model/index';
import { pruneModel } from '../src/surgeon/index';
import { llamaCkpt, optCkpt, zeroHeadO, zeroHeadRows, zeroNeuronRow } from './helpers/compact';
import { gpu } from './helpers/gpu';
import { rng } from './helpers/rng';

let ctx: GpuContext;
let dir: string;
beforeAll(async () => {
  ctx = await gpu();
  dir = await mkdtemp(join(tmpdir(), 'compact-'));
});
afterAll(async () => { await rm(dir, { recursive: true, force: true }); });

const T = 16;
const ids = (vocab: number, n: number, seed: number) => { const r = rng(seed); return Array.from({ length: n }, () => Math.floor(r() * vocab)); };

/** Logits [B·T, V] of B windows of T tokens. */
async function logits(model: DecoderModel, tokens: number[], B: number): Promise<Float32Array> {
  const seqs = Array.from({ length: B }, (_, b) => tokens.slice(b * T, (b + 1) * T));
  const { ids: idT, labels } = uploadBatch(ctx, seqs, T);
  const f = forwardBatch(ctx, model, idT, B, T);
  const lg = matmul(ctx, f.hf, model.head(), { transB: true });
  const out = await lg.read();
  for (const t of [f.hf, lg, idT, labels]) t.dispose();
  return out;
}

interface Measured { ppl: number; logits: Float32Array; gen: number[] }
async function measure(ckpt: LoadedCheckpoint, evalIds: number[]): Promise<Measured> {
  const model = await DecoderModel.fromCheckpoint(ctx, ckpt);
  try {
    const { ppl } = await perplexity(ctx, model, evalIds, { seqlen: T });
    return { ppl, logits: await logits(model, evalIds, evalIds.length / T), gen: await generate(ctx, model, evalIds.slice(0, 5), { maxNewTokens: 6 }) };
  } finally {
    model.dispose();
  }
}

const asCkpt = (c: LoadedCheckpoint, tensors: Map<string, Float32Array>): LoadedCheckpoint => ({ ...c, tensors, shapes: new Map([...c.shapes]) });

interface Case {
  label: string;
  make: () => LoadedCheckpoint;
  /** Hand-made deaths on top of the prune: whole heads / kv groups and neurons. */
  kill: (c: LoadedCheckpoint) => void;
}

const GQA = { layers: 2, d: 16, heads: 4, kvHeads: 2, ffn: 32, vocab: 48, maxPos: 32 };
const CASES: Case[] = [
  { label: 'OPT', make: () => optCkpt(21), kill: (c) => { zeroHeadO(c, 0, 1); zeroHeadRows(c, 1, 3, 'v'); zeroNeuronRow(c, 1, 2); } },
  { label: 'Llama GQA', make: () => llamaCkpt(GQA, 22), kill: (c) => { zeroHeadO(c, 0, 2); zeroHeadO(c, 0, 3); zeroHeadRows(c, 1, 0, 'v'); zeroNeuronRow(c, 1, 4, 1); } },
  { label: 'Qwen2-style GQA (q/k/v biases)', make: () => llamaCkpt({ ...GQA, qkvBias: true }, 23), kill: (c) => { zeroHeadO(c, 1, 0); zeroHeadO(c, 1, 1); zeroHeadRows(c, 0, 1, 'v'); } },
  { label: 'Llama MHA', make: () => llamaCkpt({ ...GQA, kvHeads: 4 }, 24), kill: (c) => { zeroHeadO(c, 0, 1); zeroHeadRows(c, 1, 2, 'v'); } },
];

describe('compact models compute the zeroed model\'s function', () => {
  it.each(CASES)('$label: structured prune → compact: fewer parameters, same perplexity, logits and generation; export round trip', async ({ label, make, kill }) => {
    const src = make();
    const vocab = src.config.vocabSize;
    const calib = Array.from({ length: 4 }, (_, i) => Int32Array.from(ids(vocab, T, 100 + i)));
    const model = await DecoderModel.fromCheckpoint(ctx, src);
    await pruneModel(ctx, model, calib, { structure: 'rows-cols', sparsity: 0.3, shots: 1 });
    const pruned = await model.exportWeights();
    model.dispose();
    // The prune alone already frees FFN neurons (removed fc1/gate/up rows or fc2/down columns).
    const fromPrune = compactModel(src.config, pruned);
    expect(fromPrune.params.after).toBeLessThan(fromPrune.params.before);
    const zeroed = asCkpt(src, pruned);
    kill(zeroed);
    const cm = compactModel(src.config, zeroed.tensors);
    expect(cm.params.after).toBeLessThan(fromPrune.params.after);
    expect(cm.plan.layers.some((l) => l.dims.numKvHeads < src.config.numKvHeads)).toBe(true);
    const compact: LoadedCheckpoint = { ...src, config: cm.config, tensors: cm.tensors, shapes: cm.shapes };

    const evalIds = ids(vocab, 4 * T, 7);
    const a = await measure(zeroed, evalIds), b = await measure(compact, evalIds);
    let worst = 0, maxAbs = 0;
    for (let i = 0; i < a.logits.length; i++) { worst = Math.max(worst, Math.abs(a.logits[i] - b.logits[i])); maxAbs = Math.max(maxAbs, Math.abs(a.logits[i])); }
    console.log(`[compact ${label}] params ${cm.params.before} → ${cm.params.after} (prune alone ${fromPrune.params.after}); dims ${JSON.stringify(cm.plan.layers.map((l) => l.dims))}; ` +
      `ppl zeroed ${a.ppl} compact ${b.ppl} (rel ${Math.abs(a.ppl - b.ppl) / a.ppl}); max |Δlogit| ${worst} (max |logit| ${maxAbs})`);
    expect(Math.abs(a.ppl - b.ppl) / a.ppl).toBeLessThanOrEqual(1e-5);
    // f32 error model: the removed terms are exact zeros, so only the summation grouping of the shorter
    // dot products changes (K ≤ 32 per matmul, ~10 matmuls deep): a few ulps of |logit| ≲ 1e-5·max|logit|.
    expect(worst).toBeLessThanOrEqual(1e-5 * maxAbs + 1e-6);
    expect(b.gen).toEqual(a.gen);

    // Export (compact) → loadModel → the same perplexity as the compact model in memory.
    const out = join(dir, label.replace(/\W+/g, '-'));
    const folder = await exportHfFolder(src.config.raw, zeroed.tensors, out, { dtype: 'float32', compact: true });
    expect(folder.compaction!.params).toEqual(cm.params);
    const back = await loadModel(out);
    expect([...back.shapes]).toEqual([...cm.shapes]);
    expect(back.config.layers).toEqual(cm.config.layers);
    const c = await measure(back, evalIds);
    expect(c.ppl).toBe(b.ppl);
  });

  it('the surgeon runs on a compact model (per-layer widths in K-FAC, backward and the updates)', async () => {
    const src = optCkpt(25);
    zeroHeadO(src, 0, 0);
    for (const i of [1, 5, 9]) zeroNeuronRow(src, 1, i);
    const cm = compactModel(src.config, src.tensors);
    expect(cm.config.layers).toBeDefined();
    const model = await DecoderModel.fromCheckpoint(ctx, { ...src, config: cm.config, tensors: cm.tensors, shapes: cm.shapes });
    const calib = Array.from({ length: 4 }, (_, i) => Int32Array.from(ids(64, T, 200 + i)));
    const rep = await pruneModel(ctx, model, calib, { structure: 'rows-cols', sparsity: 0.2, shots: 1 });
    const w = await model.exportWeights();
    model.dispose();
    expect(rep.achievedSparsity).toBeGreaterThan(0);
    expect(rep.achievedSparsity).toBeLessThanOrEqual(0.2);
    for (const [k, shape] of cm.shapes) expect(w.get(k)!.length, k).toBe(shape.reduce((x, y) => x * y, 1));
  });
});
