/**
 * `llm-surgeon prune` end to end, in process, on opt-micro (software GPU): the written folder loads back
 * with loadCheckpoint, its zeros per layer are report.json's, the achieved sparsity follows the official
 * convention, the tokenizer files are byte copies, the input files are byte-identical afterwards, and the
 * reported pruned perplexity is the one of the weights as exported (float32 and float16); 2:4 runs are
 * exactly 2:4; a --force'd folder loses its stale weights only. Methods: surgeon rows-cols, K-OBD and
 * Wanda 2:4, SparseGPT element. Tiny settings: 4 × 64 calibration tokens, 2 windows of 128 eval tokens.
 * Memory: every run logs its estimated peak and stays within it (report.json memory); a job that cannot
 * fit the device's limits exits 1 with the LimitExceededError before the model is uploaded.
 */
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { pruneCommand } from '../src/cli/prune';
import type { GpuContext } from '../src/gpu/context';
import { loadCheckpoint, type LoadedCheckpoint } from '../src/io/checkpoint';
import { parseSafetensors } from '../src/io/safetensors';
import { OptModel, perplexity } from '../src/model/index';
import { gpu } from './helpers/gpu';

const MODEL = '/work/shared/models/opt-micro';
const CALIB = '/work/shared/data/wikitext-2-raw/wiki.valid.near_raw';
const IDS = '/work/shared/data/wikitext-2-raw/wiki.test.opt-ids.json';
const tmp = mkdtempSync(join(tmpdir(), 'llms-cli-prune-'));
const EVAL = ['--eval', IDS, '--eval-windows', '2', '--eval-seqlen', '128', '--quiet'];
const SMALL = ['--nsamples', '4', '--seqlen', '64', ...EVAL];

const hashes = (dir: string) => Object.fromEntries(readdirSync(dir).sort().map((f) => [f, createHash('sha256').update(readFileSync(join(dir, f))).digest('hex')]));

interface Report {
  achievedSparsity: number; params: number; zeros: number; target: number;
  layers: Array<{ name: string; params: number; zeros: number; rowsRemoved?: number; colsRemoved?: number; nmGroups?: { full: number; total: number } }>;
  shots: Array<{ shot: number; achieved: number }>;
  perplexity: { dense: number; pruned: number; seqlen: number; windows: number };
  export: { dtype: string };
  options: { batch?: number | null };
  memory: { estimatedPeakBytes: number; measuredPeakBytes: number; budgetBytes: number | null };
}

async function prune(ctx: GpuContext, out: string, argv: string[], base = SMALL): Promise<{ code: number; err: string; report?: Report; ckpt?: LoadedCheckpoint }> {
  const err: string[] = [];
  const se = vi.spyOn(process.stderr, 'write').mockImplementation((s: string | Uint8Array) => (err.push(String(s)), true));
  const so = vi.spyOn(process.stdout, 'write').mockImplementation(() => true);
  let code: number;
  try {
    // the file's one context: SwiftShader compiles every pipeline once instead of once per run
    code = await pruneCommand(['--model', MODEL, '--calib', CALIB, '--out', out, ...base, ...argv], { ctx });
  } finally {
    se.mockRestore();
    so.mockRestore();
  }
  if (code !== 0) return { code, err: err.join('') };
  return { code, err: err.join(''), report: JSON.parse(readFileSync(join(out, 'report.json'), 'utf8')) as Report, ckpt: await loadCheckpoint(out) };
}

/** Zeros of W' (weight + bias) per prunable layer of a loaded checkpoint. */
function zerosOf(ckpt: LoadedCheckpoint, name: string): number {
  let z = 0;
  for (const t of [ckpt.tensors.get(`${name}.weight`)!, ckpt.tensors.get(`${name}.bias`)!]) for (let i = 0; i < t.length; i++) if (t[i] === 0) z++;
  return z;
}

/** Our perplexity of a written folder, on the same windows as the report. */
async function pplOf(ctx: GpuContext, ckpt: LoadedCheckpoint, rep: Report): Promise<number> {
  const ids = JSON.parse(readFileSync(IDS, 'utf8')) as number[];
  const model = await OptModel.fromCheckpoint(ctx, ckpt);
  try {
    return (await perplexity(ctx, model, ids, { seqlen: rep.perplexity.seqlen, windows: rep.perplexity.windows })).ppl;
  } finally {
    model.dispose();
  }
}

/** Checks every run shares: counts, sparsity convention, untied files, perplexity of the exported values. */
async function common(ctx: GpuContext, rep: Report, ckpt: LoadedCheckpoint, out: string): Promise<void> {
  let zeros = 0, params = 0;
  for (const L of rep.layers) {
    expect([L.name, zerosOf(ckpt, L.name)]).toEqual([L.name, L.zeros]);
    zeros += L.zeros;
    params += L.params;
  }
  expect([rep.zeros, rep.params]).toEqual([zeros, params]);
  expect(rep.achievedSparsity).toBe(zeros / params);
  for (const f of ['tokenizer.json', 'vocab.json', 'merges.txt', 'tokenizer_config.json', 'special_tokens_map.json']) {
    expect(readFileSync(join(out, f)).equals(readFileSync(join(MODEL, f)))).toBe(true);
  }
  const cfg = JSON.parse(readFileSync(join(out, 'config.json'), 'utf8')) as Record<string, unknown>;
  const src = JSON.parse(readFileSync(join(MODEL, 'config.json'), 'utf8')) as Record<string, unknown>;
  expect(cfg).toEqual({ ...src, dtype: rep.export.dtype });
  const ppl = await pplOf(ctx, ckpt, rep);
  // Same weights, same kernels, same windows: only run-to-run reduction order could differ.
  expect(Math.abs(ppl - rep.perplexity.pruned)).toBeLessThan(1e-6 * ppl);
  expect(Number.isFinite(rep.perplexity.dense) && rep.perplexity.pruned < 2 * rep.perplexity.dense).toBe(true);
  // the estimate checked before the upload bounds what the run took from the pool
  expect(rep.memory.measuredPeakBytes).toBeGreaterThan(0);
  expect(rep.memory.measuredPeakBytes).toBeLessThanOrEqual(rep.memory.estimatedPeakBytes);
}

/** The same device with a smaller maxStorageBufferBindingSize, as the memory check reads it. */
function withBindingLimit(ctx: GpuContext, bytes: number): GpuContext {
  return Object.create(ctx, { limits: { value: { maxStorageBufferBindingSize: bytes, maxBufferSize: ctx.limits.maxBufferSize } } }) as GpuContext;
}

describe('llm-surgeon prune on opt-micro', () => {
  let ctx: GpuContext;
  const before = hashes(MODEL);
  beforeAll(async () => { ctx = await gpu(); });
  afterAll(() => rmSync(tmp, { recursive: true, force: true }));

  it('rows-cols, 2 shots to 20%: folder loads, zeros and sparsity as reported, input untouched', async () => {
    const out = join(tmp, 'rows-cols');
    const inUse = ctx.pool.bytesInUse;
    const { code, err, report: rep, ckpt } = await prune(ctx, out, ['--structure', 'rows-cols', '--sparsity', '0.2', '--shots', '2']);
    expect(code, err).toBe(0);
    await ctx.sync();
    // The model (14 MB on the GPU) and the run's intermediates go back to the pool. pruneModel rows-cols
    // currently keeps 768 bytes per run (not in the CLI's code): logged, bounded here.
    console.log(`[cli] GPU bytes still in use after the run: ${ctx.pool.bytesInUse - inUse}`);
    expect(ctx.pool.bytesInUse - inUse).toBeLessThan(64 << 10);
    await common(ctx, rep!, ckpt!, out);
    // the structured threshold never removes more than the target; one row or column less at most
    expect(rep!.achievedSparsity).toBeLessThanOrEqual(0.2);
    expect(rep!.achievedSparsity).toBeGreaterThan(0.2 - 257 / rep!.params);
    expect(rep!.shots.map((s) => s.shot)).toEqual([1, 2]);
    expect(rep!.options.batch).toBe(4); // K-FAC windows per batch chosen by the CLI: all 4 (default ⌊4096/64⌋ capped)
    expect(rep!.shots[1].achieved).toBe(rep!.achievedSparsity); // float32 export: GPU and file agree
    for (const L of rep!.layers) {
      // every removed row is all zero in the file (weights and bias)
      const w = ckpt!.tensors.get(`${L.name}.weight`)!, b = ckpt!.tensors.get(`${L.name}.bias`)!;
      const C = w.length / b.length;
      let zeroRows = 0;
      for (let r = 0; r < b.length; r++) if (b[r] === 0 && w.subarray(r * C, (r + 1) * C).every((v) => v === 0)) zeroRows++;
      expect(zeroRows).toBeGreaterThanOrEqual(L.rowsRemoved!);
    }
    expect(hashes(MODEL)).toEqual(before);
  });

  // K-OBD (the multi-shot framework's masks without inverses or updates) and Wanda keep these runs short;
  // 2:4 with the surgeon's correlated updates is covered against the float64 reference in surgeon-element.
  for (const method of ['kobd', 'wanda']) {
    it(`2:4 ${method}: 2 zeros or more in every group of 4 inputs`, async () => {
      const out = join(tmp, `two-four-${method}`);
      const { code, err, report: rep, ckpt } = await prune(ctx, out, ['--structure', '2:4', '--method', method, '--memory-budget', '1GiB', ...(method === 'kobd' ? ['--shots', '1'] : [])], SMALL.filter((f) => f !== '--quiet'));
      expect(code, err).toBe(0);
      // logged before the upload, the same estimate as report.json's, with the budget it stays within
      expect(err).toContain(`estimated peak GPU memory ${(rep!.memory.estimatedPeakBytes / 2 ** 20).toFixed(1)} MiB (weights `);
      expect(err).toContain('within --memory-budget 1024.0 MiB');
      if (method === 'kobd') expect(err).toContain('memory plan: 1 curvature pass per shot (all layers in one pass)');
      expect(rep!.memory.budgetBytes).toBe(2 ** 30);
      expect(err.indexOf('estimated peak GPU memory')).toBeLessThan(err.indexOf('pruning: '));
      await common(ctx, rep!, ckpt!, out);
      for (const L of rep!.layers) {
        const w = ckpt!.tensors.get(`${L.name}.weight`)!;
        let bad = 0;
        for (let g = 0; g < w.length; g += 4) if ([0, 1, 2, 3].filter((j) => w[g + j] === 0).length < 2) bad++;
        expect([L.name, bad, L.nmGroups!.full]).toEqual([L.name, 0, w.length / 4]);
      }
      expect(hashes(MODEL)).toEqual(before);
    });
  }

  it('element sparsegpt to 30%, float16 export into a --force\'d folder: zeros exact, perplexity of the rounded weights', async () => {
    const out = join(tmp, 'element');
    // a non-empty folder: stale weights removed, other files kept
    mkdirSync(out, { recursive: true });
    writeFileSync(join(out, 'model-00001-of-00002.safetensors'), 'stale');
    writeFileSync(join(out, 'notes.txt'), 'mine');
    const { code, err, report: rep, ckpt } = await prune(ctx, out, ['--structure', 'element', '--sparsity', '0.3', '--method', 'sparsegpt', '--dtype', 'float16', '--force']);
    expect(code, err).toBe(0);
    expect(readdirSync(out)).not.toContain('model-00001-of-00002.safetensors');
    expect(readFileSync(join(out, 'notes.txt'), 'utf8')).toBe('mine');
    const st = parseSafetensors(readFileSync(join(out, 'model.safetensors')));
    expect(new Set([...st.tensors.values()].map((t) => t.dtype))).toEqual(new Set(['F16']));
    await common(ctx, rep!, ckpt!, out);
    // SparseGPT zeros ⌊0.3·R·C⌋ weights per layer and no bias; float16 rounding may only add zeros
    const least = rep!.layers.reduce((acc, L) => acc + Math.floor(0.3 * ckpt!.tensors.get(`${L.name}.weight`)!.length + 1e-7), 0);
    expect(rep!.zeros).toBeGreaterThanOrEqual(least);
    expect(rep!.achievedSparsity).toBeLessThan(0.3 + 0.005);
    expect(hashes(MODEL)).toEqual(before);
  });

  // Refused from the estimate, before OptModel.fromCheckpoint: K-OBD with 16 windows of 2048 tokens per
  // K-FAC batch (32 MiB of fc1 activations; 8 windows fit in 16 MiB); Wanda on a device whose binding
  // cannot hold the 12.3 MiB token embedding (no setting fits).
  for (const [method, bind, argv, what] of [
    ['kobd', 16 << 20, ['--shots', '1', '--nsamples', '16', '--seqlen', '2048', '--batch', '16'],
      /activations \(16 × 2048 tokens × ffn 256\) does not fit in one storage binding on this GPU; would fit: a calibration batch of 8 sequences/],
    ['wanda', 8 << 20, ['--nsamples', '4', '--seqlen', '64'], /weight model\.decoder\.embed_tokens\.weight does not fit .*: this model does not fit here/],
  ] as const) {
    it(`${method} over a ${bind >> 20} MiB maxStorageBufferBindingSize: exit 1 naming the limit and what fits, nothing uploaded`, async () => {
      const out = join(tmp, `too-big-${method}`);
      const inUse = ctx.pool.bytesInUse;
      const upload = vi.spyOn(OptModel, 'fromCheckpoint');
      let r: Awaited<ReturnType<typeof prune>>;
      try {
        r = await prune(withBindingLimit(ctx, bind), out, ['--structure', '2:4', '--method', method, ...argv], EVAL);
      } finally {
        upload.mockRestore();
      }
      expect(r.code, r.err).toBe(1);
      expect(r.err).toMatch(new RegExp(`^llm-surgeon prune: LimitExceededError: GPU limit maxStorageBufferBindingSize is ${bind}, but \\d+ is needed: `));
      expect(r.err).toMatch(what);
      expect(upload).not.toHaveBeenCalled();
      expect(ctx.pool.bytesInUse).toBe(inUse);
      expect(existsSync(join(out, 'model.safetensors'))).toBe(false);
    });
  }

  // --memory-budget: the same refusal for a peak above the user's budget even with the finest memory plan (surgeon) and for a peer, naming
  // what would fit when something does (K-OBD: shorter windows, one per batch), before anything is uploaded.
  for (const [method, budget, argv, what] of [
    // 150 MiB: below the finest plan at batch 16 (streamed per-linear groups: 181.6 MiB, the curvature phase's activations), above batch 10's.
    ['kobd', '150MiB', ['--shots', '1', '--nsamples', '16', '--seqlen', '2048', '--batch', '16'], /this job needs about [\d.]+ MiB at its peak .*; would fit: .*a calibration batch of \d+ sequence/],
    ['wanda', '4MiB', ['--nsamples', '4', '--seqlen', '64'], /this job needs about [\d.]+ MiB at its peak/],
  ] as const) {
    it(`${method} over --memory-budget ${budget}: exit 1 naming the budget, nothing uploaded`, async () => {
      const out = join(tmp, `over-budget-${method}`);
      const inUse = ctx.pool.bytesInUse;
      const upload = vi.spyOn(OptModel, 'fromCheckpoint');
      let r: Awaited<ReturnType<typeof prune>>;
      try {
        r = await prune(ctx, out, ['--structure', '2:4', '--method', method, '--memory-budget', budget, ...argv], EVAL);
      } finally {
        upload.mockRestore();
      }
      expect(r.code, r.err).toBe(1);
      const bytes = Number(budget.replace('MiB', '')) * 2 ** 20;
      expect(r.err).toMatch(new RegExp(`^llm-surgeon prune: LimitExceededError: GPU limit memoryBudget is ${bytes}, but \\d+ is needed: `));
      expect(r.err).toMatch(what);
      expect(upload).not.toHaveBeenCalled();
      expect(ctx.pool.bytesInUse).toBe(inUse);
      expect(existsSync(join(out, 'model.safetensors'))).toBe(false);
    });
  }
});
