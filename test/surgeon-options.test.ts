/**
 * pruneModel() control surface: option validation (named errors before any GPU work), n:m beyond 2:4
 * (exactly n zeros per group at full n/m sparsity, bias column never grouped), per-shot perplexity and
 * progress events, and cancellation through an AbortSignal (PruneAbortedError between steps).
 */
import { beforeAll, describe, expect, it } from 'vitest';
import type { GpuContext } from '../src/gpu/context';
import { ShapeError } from '../src/gpu/errors';
import { OptModel } from '../src/model/index';
import { prunableLayers } from '../src/reference/opt';
import { PruneAbortedError, PruneConfigError, pruneModel, type PruneOptions, type PruneProgress } from '../src/surgeon/index';
import { gpu } from './helpers/gpu';
import { calibration, CFG, deadUnitModel, toCheckpoint, wPrime } from './helpers/surgeon';

let ctx: GpuContext;
let model: OptModel;
const m = deadUnitModel(3);
const cal = calibration(3, 10, 99).gpu;
beforeAll(async () => {
  ctx = await gpu();
  model = await OptModel.fromCheckpoint(ctx, toCheckpoint(m));
});

async function fresh(): Promise<OptModel> {
  model.dispose();
  model = await OptModel.fromCheckpoint(ctx, toCheckpoint(m));
  return model;
}

describe('pruneModel options', () => {
  const bad: Array<[Partial<PruneOptions> & Record<string, unknown>, new (...a: never[]) => Error]> = [
    [{ structure: 'rows-cols', sparsity: 1 }, PruneConfigError],
    [{ structure: 'rows-cols', sparsity: -0.1 }, PruneConfigError],
    [{ structure: 'rows-cols', sparsity: Number.NaN }, PruneConfigError],
    [{ structure: 'blocks' as never, sparsity: 0.5 }, PruneConfigError],
    [{ structure: '4:2' as never, sparsity: 0.2 }, PruneConfigError],
    [{ structure: '0:4' as never, sparsity: 0.2 }, PruneConfigError],
    [{ structure: '2:4', sparsity: 0.6 }, PruneConfigError],
    [{ structure: '3:5', sparsity: 0.2 }, ShapeError], // 16 and 32 inputs are not divisible by 5
    [{ structure: 'element', sparsity: 0.5, method: 'obd' as never }, PruneConfigError],
    [{ structure: 'element', sparsity: 0.5, shots: 0 }, PruneConfigError],
    [{ structure: 'element', sparsity: 0.5, shots: 1.5 }, PruneConfigError],
    [{ structure: 'element', sparsity: 0.5, lambdaG: -1 }, PruneConfigError],
    [{ structure: 'element', sparsity: 0.5, maxChunk: 0 }, PruneConfigError],
    [{ structure: 'element', sparsity: 0.5, fisherSamples: -1 }, PruneConfigError],
  ];
  for (const [o, E] of bad) {
    it(`rejects ${JSON.stringify(o)} with ${E.name}`, async () => {
      await expect(pruneModel(ctx, model, cal, o as PruneOptions)).rejects.toBeInstanceOf(E);
    });
  }
  it('rejects an empty calibration set for curvature methods', async () => {
    await expect(pruneModel(ctx, model, [], { structure: 'element', sparsity: 0.5 })).rejects.toBeInstanceOf(PruneConfigError);
  });
});

describe('pruneModel n:m, progress, evaluation', () => {
  it('1:4 at 25%: exactly one zero per group, bias column untouched by grouping; per-shot ppl and progress', async () => {
    const mm = await fresh();
    const events: PruneProgress[] = [];
    const ids = Int32Array.from(calibration(1, 40, 5).host[0]);
    const rep = await pruneModel(ctx, mm, cal, { structure: '1:4', sparsity: 0.25, shots: 2, evaluate: { ids, seqlen: 20 }, onProgress: (p) => events.push(p) });
    const w = await mm.exportWeights();
    for (const { name, R, C } of prunableLayers(m.cfg)) {
      const g = wPrime(w, name, R, C), orig = wPrime(m.w, name, R, C);
      for (let r = 0; r < R; r++) {
        for (let grp = 0; grp < C / 4; grp++) {
          const z = [0, 1, 2, 3].filter((k) => g[r * (C + 1) + 4 * grp + k] === 0).length;
          const z0 = [0, 1, 2, 3].filter((k) => orig[r * (C + 1) + 4 * grp + k] === 0).length;
          expect(z).toBe(Math.max(1, z0)); // exactly 1 pruned per group (dead unit rows/columns were already 0)
        }
        if (orig[r * (C + 1) + C] !== 0) expect(g[r * (C + 1) + C]).not.toBe(0);
      }
    }
    expect(rep.shots).toHaveLength(2);
    for (const s of rep.shots) expect(Number.isFinite(s.ppl)).toBe(true);
    expect(new Set(events.map((e) => e.phase))).toEqual(new Set(['curvature', 'update', 'eval']));
    expect(events.every((e) => e.shots === 2 && e.fraction >= 0 && e.fraction <= 1)).toBe(true);
    const types = Object.keys(rep.byModuleType).sort();
    expect(types).toEqual(['fc1', 'fc2', 'k_proj', 'out_proj', 'q_proj', 'v_proj']);
    const zeros = rep.layers.reduce((a, l) => a + l.zeros, 0), params = rep.layers.reduce((a, l) => a + l.params, 0);
    expect(rep.achievedSparsity).toBe(zeros / params);
    expect(params).toBe(CFG.layers * (4 * CFG.d * (CFG.d + 1) + CFG.ffn * (CFG.d + 1) + CFG.d * (CFG.ffn + 1)));
  });

  it('sparsity 0 leaves the weights unchanged', async () => {
    const mm = await fresh();
    const rep = await pruneModel(ctx, mm, cal, { structure: 'element', sparsity: 0, shots: 1 });
    const w = await mm.exportWeights();
    for (const [k, v] of toCheckpoint(m).tensors) expect(w.get(k)).toEqual(v);
    expect(rep.shots[0].target).toBe(0);
  });
});

describe('pruneModel abort', () => {
  for (const at of ['curvature', 'update'] as const) {
    it(`an AbortSignal fired during ${at} stops with PruneAbortedError`, async () => {
      const mm = await fresh();
      const ac = new AbortController();
      let shotsSeen = 0;
      const run = pruneModel(ctx, mm, cal, {
        structure: 'rows-cols', sparsity: 0.3, shots: 3, signal: ac.signal,
        onProgress: (p) => { shotsSeen = p.shot; if (p.phase === at) ac.abort(); },
      });
      await expect(run).rejects.toBeInstanceOf(PruneAbortedError);
      expect(shotsSeen).toBe(1);
    });
  }
  it('an already-aborted signal throws before any GPU work', async () => {
    const ac = new AbortController();
    ac.abort();
    await expect(pruneModel(ctx, model, cal, { structure: 'element', sparsity: 0.2, signal: ac.signal })).rejects.toBeInstanceOf(PruneAbortedError);
  });
});
