/**
 * The public API in Node (in-process, Dawn): loadModel → prune → evaluate on opt-micro with tiny
 * settings. The input model is never modified, the result is new host arrays with the requested
 * sparsity, progress covers every phase, and evaluate() on the result reproduces the report's
 * last-shot perplexity. Bad settings fail with named errors before any GPU work.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { DatasetError, evaluate, loadModel, localSession, prune, PruneConfigError, usesWorker, type HostModel, type ProgressEvent } from '../src/index';
import { modelFingerprint } from '../src/api/job';
import { gpu } from './helpers/gpu';

const ROOT = join(import.meta.dirname, '..');
export const MICRO = join(ROOT, 'demo/public/models/opt-micro');
export const TEXT = readFileSync(join(ROOT, 'demo/assets/default-text.txt'), 'utf8');
// Tiny settings: 2 shots, 2 × 64 calibration tokens, 2 × 64 evaluation tokens (~seconds on SwiftShader).
export const TINY = { nsamples: 2, seqlen: 64, seed: 7 };

let model: HostModel;
beforeAll(async () => {
  await gpu(); // logs the adapter; the public API uses its own shared session
  model = await loadModel(MICRO);
});

function zerosOf(m: HostModel, suffix: RegExp): { zeros: number; params: number } {
  let zeros = 0, params = 0;
  for (const [name, t] of m.tensors) {
    if (!suffix.test(name)) continue;
    params += t.length;
    for (let i = 0; i < t.length; i++) if (t[i] === 0) zeros++;
  }
  return { zeros, params };
}

describe('public API in Node', () => {
  it('runs in-process (no worker in Node)', () => {
    expect(usesWorker()).toBe(false);
    expect(model.config.numLayers).toBe(2);
  });

  it('prune(rows-cols, 20%, 2 shots) returns new weights with the requested sparsity; the input is untouched', async () => {
    const before = modelFingerprint(model);
    const inUse = localSession().memory().bytesInUse;
    const events: ProgressEvent[] = [];
    const t0 = performance.now();
    const { model: out, report } = await prune(model, {
      structure: 'rows-cols', sparsity: 0.2, shots: 2,
      calibration: { text: TEXT, ...TINY },
      evaluate: { text: TEXT, seqlen: 64, windows: 2 },
      onProgress: (p) => events.push(p),
    });
    console.log(`[api] prune rows-cols 2 shots: ${((performance.now() - t0) / 1000).toFixed(1)} s; dense ppl ${report.densePerplexity} → ${report.shots.map((s) => s.ppl).join(', ')}`);
    expect(modelFingerprint(model)).toBe(before);
    for (const [name, t] of out.tensors) expect(t, name).not.toBe(model.tensors.get(name));
    expect(report.shots.map((s) => s.shot)).toEqual([1, 2]);
    expect(report.resumedFromShot).toBe(0);
    // Structured: the global threshold removes whole rows/columns up to s·total (ALGORITHM.md §5), so a bit under s.
    expect(report.achievedSparsity).toBeGreaterThan(0.15);
    expect(report.achievedSparsity).toBeLessThanOrEqual(0.2 + 1e-9);
    expect(report.layers.some((l) => (l.rowsRemoved ?? 0) + (l.colsRemoved ?? 0) > 0)).toBe(true);
    const w = zerosOf(out, /layers\.\d+\.(self_attn\.(q|k|v|out)_proj|fc1|fc2)\.(weight|bias)$/);
    expect(w.zeros / w.params).toBeCloseTo(report.achievedSparsity, 10);
    expect(report.densePerplexity).toBeGreaterThan(1);
    for (const s of report.shots) expect(Number.isFinite(s.ppl)).toBe(true);
    const phases = new Set(events.map((e) => e.phase));
    for (const p of ['tokenize', 'upload', 'eval-dense', 'curvature', 'update', 'eval', 'done']) expect(phases, p).toContain(p);
    expect(events.every((e) => e.fraction >= 0 && e.fraction <= 1)).toBe(true);
    expect(events.some((e) => e.layer && e.layer.total === 12)).toBe(true);

    const ev = await evaluate(out, { text: TEXT, seqlen: 64, windows: 2 });
    expect(Math.abs(ev.perplexity - report.shots[1].ppl!)).toBeLessThanOrEqual(1e-6 * ev.perplexity); // same kernels, same weights
    // Every GPU copy was released; only the Cholesky kernels' cached 16-byte dummy bindings (≤ 3 × 256 B buckets) stay.
    expect(localSession().memory().bytesInUse - inUse).toBeLessThanOrEqual(768);
    // Memory estimate vs the pool's measured peak of this job: never below, within 2×.
    const { estimatedPeakBytes: est, measuredPeakBytes: got } = report.memory;
    console.log(`[api] peak GPU bytes: estimated ${est}, measured ${got} (${(est / got).toFixed(3)}×)`);
    expect(est).toBeGreaterThanOrEqual(got - inUse);
    expect(est).toBeLessThanOrEqual(2 * (got - inUse));
  });

  it('magnitude 2:4 runs through the same API without calibration', async () => {
    const r2 = await prune(model, { structure: '2:4', sparsity: 0.5, shots: 1, method: 'magnitude' });
    expect(r2.report.achievedSparsity).toBeGreaterThanOrEqual(0.49);
  });

  it('bad settings fail with named errors before any GPU work', async () => {
    await expect(prune(model, { structure: 'element', sparsity: 1.5, calibration: { text: TEXT, ...TINY } })).rejects.toBeInstanceOf(PruneConfigError);
    await expect(prune(model, { structure: 'element', sparsity: 0.5 })).rejects.toBeInstanceOf(PruneConfigError); // no calibration
    await expect(prune(model, { structure: 'element', sparsity: 0.5, calibration: { text: 'too short', nsamples: 2, seqlen: 64 } })).rejects.toBeInstanceOf(DatasetError);
    await expect(prune(model, { structure: 'element', sparsity: 0.5, calibration: { text: TEXT, nsamples: 2, seqlen: 4096 } })).rejects.toBeInstanceOf(PruneConfigError);
  });
});
