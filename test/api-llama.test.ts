/**
 * The public API in Node on the real llama-micro checkpoint (fp16 safetensors, SentencePiece-BPE
 * tokenizer with BOS, GQA 4/2, untied head): loadModel → prune (structured, with and without
 * LoRA) → evaluate with tiny settings; input never modified; report keyed by the Llama modules; an
 * interrupted job resumes to bit-identical weights; a refusal by memory budget names the limit.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { evaluate, LimitExceededError, loadModel, prune, PruneAbortedError, type HostModel, type PruneJobOptions } from '../src/index';
import { modelFingerprint } from '../src/api/job';
import { gpu } from './helpers/gpu';

const MICRO = '/work/shared/models/llama-micro';
const TEXT = readFileSync(join(import.meta.dirname, '..', 'demo/assets/default-text.txt'), 'utf8');
const TINY = { nsamples: 2, seqlen: 64, seed: 7 };
const MODULES = ['q_proj', 'k_proj', 'v_proj', 'o_proj', 'gate_proj', 'up_proj', 'down_proj'];

let model: HostModel;
let dir: string;
beforeAll(async () => {
  await gpu();
  model = await loadModel(MICRO);
  dir = await mkdtemp(join(tmpdir(), 'surgeon-llama-'));
});
afterAll(async () => { await rm(dir, { recursive: true, force: true }); });

function zerosOf(m: HostModel): { zeros: number; params: number } {
  let zeros = 0, params = 0;
  for (const [name, t] of m.tensors) {
    if (!/layers\.\d+\.(self_attn|mlp)\.\w+_proj\.weight$/.test(name)) continue;
    params += t.length;
    for (let i = 0; i < t.length; i++) if (t[i] === 0) zeros++;
  }
  return { zeros, params };
}

describe('public API on llama-micro', () => {
  it('loads as a Llama with grouped-query attention', () => {
    expect(model.config).toMatchObject({ family: 'llama', architecture: 'LlamaForCausalLM', numKvHeads: 2, headDim: 16, tieWordEmbeddings: false });
  });

  it.each([
    // element / 2:4 surgeon runs are minutes on a software GPU at llama-micro's size (2000-entry chunks);
    // they are covered on tiny Llamas (surgeon-llama.test.ts) and through the CLI (cli-llama.test.ts).
    ['rows-cols', 0.3, false],
    ['rows-cols', 0.3, true],
  ] as const)('prune(%s, %f, lora %s): sparsity, report by Llama module, evaluate = last shot', async (structure, sparsity, lora) => {
    const before = modelFingerprint(model);
    const t0 = performance.now();
    const { model: out, report } = await prune(model, {
      structure, sparsity, shots: 2, lora: lora ? { rank: 4 } : undefined,
      calibration: { text: TEXT, ...TINY }, evaluate: { text: TEXT, seqlen: 64, windows: 2 },
    });
    console.log(`[api llama] ${structure} ${sparsity}${lora ? ' + LoRA' : ''}: ${((performance.now() - t0) / 1000).toFixed(1)} s; dense ppl ${report.densePerplexity} → ${report.shots.map((s) => s.ppl).join(', ')}; estimated/measured peak ${(report.memory.estimatedPeakBytes / report.memory.measuredPeakBytes).toFixed(3)}`);
    expect(modelFingerprint(model)).toBe(before);
    expect(Object.keys(report.byModuleType)).toEqual(MODULES);
    const w = zerosOf(out); // no biases: W' = W, so the report's accounting is the weights'
    expect(w.zeros / w.params).toBeCloseTo(report.achievedSparsity, 10);
    expect(report.achievedSparsity).toBeGreaterThan(0.2);
    expect(report.achievedSparsity).toBeLessThanOrEqual(sparsity + 1e-9);
    if (lora) expect(report.shots.every((s) => s.lora && s.lora.steps > 0)).toBe(true);
    const ev = await evaluate(out, { text: TEXT, seqlen: 64, windows: 2 });
    expect(Math.abs(ev.perplexity - report.shots[1].ppl!)).toBeLessThanOrEqual(1e-6 * ev.perplexity);
    expect(report.memory.estimatedPeakBytes).toBeGreaterThanOrEqual(report.memory.measuredPeakBytes);
  });

  it('an interrupted structured job resumes from its checkpoint to bit-identical weights', async () => {
    const opts: PruneJobOptions = { structure: 'rows-cols', sparsity: 0.3, shots: 3, calibration: { text: TEXT, ...TINY } };
    const full = await prune(model, opts);
    const ctl = new AbortController();
    let fired = false;
    const checkpoint = { dir: join(dir, 'job') };
    const err = await prune(model, {
      ...opts, checkpoint, signal: ctl.signal,
      onProgress: (p) => { if (!fired && p.phase === 'curvature' && p.shot?.index === 2) { fired = true; ctl.abort(); } },
    }).then(() => undefined, (e) => e);
    expect(err).toBeInstanceOf(PruneAbortedError);
    const resumed = await prune(model, { ...opts, checkpoint });
    expect(resumed.report.resumedFromShot).toBe(1);
    expect(modelFingerprint(resumed.model)).toBe(modelFingerprint(full.model));
  });

  it('a memory budget below the job refuses it before any GPU work, naming the limit', async () => {
    const err = await prune(model, { structure: 'rows-cols', sparsity: 0.3, shots: 2, calibration: { text: TEXT, ...TINY }, memoryBudget: 1 << 20 }).then(() => undefined, (e) => e);
    expect(err).toBeInstanceOf(LimitExceededError);
    expect((err as LimitExceededError).message).toMatch(/memoryBudget|needs about/);
  });
});
