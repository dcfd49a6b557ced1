/**
 * Memory-budgeted shots (api/plan.ts, surgeon/shot.ts) on the software GPU: a budget far below the
 * unbudgeted estimate makes the job split each shot into layer groups (one calibration pass each,
 * inverses parked in host memory), and the result equals the unbudgeted run's — masks bit for bit,
 * weights within fp32 tolerance — for structured, unstructured, 2:4 and structured + LoRA, while the
 * pool's measured peak stays within the budget and the plan's estimate is never below it.
 */
import { join } from 'node:path';
import { readFileSync } from 'node:fs';
import { beforeAll, describe, expect, it } from 'vitest';
import { LimitExceededError, loadModel, localSession, prune, type HostModel } from '../src/index';
import { estimatePruneMemory, deviceLimits, type MemorySettings } from '../src/api/memory';
import { contiguousGroups, describePlan } from '../src/api/plan';
import { gpu } from './helpers/gpu';

const ROOT = join(import.meta.dirname, '..');
const MODEL = process.env.BUDGET_MODEL ?? join(ROOT, '../shared/models/opt-mini');
const TEXT = readFileSync(join(ROOT, 'demo/assets/default-text.txt'), 'utf8');
const CAL = { nsamples: 2, seqlen: 64, seed: 3 };

let model: HostModel;
beforeAll(async () => {
  await gpu();
  model = await loadModel(MODEL);
});

const prunable = (name: string) => /(proj|fc1|fc2)\.(weight|bias)$/.test(name);

function compare(a: HostModel, b: HostModel): { maskDiff: number; maxDiff: number; scale: number } {
  let maskDiff = 0, maxDiff = 0, scale = 0;
  for (const [name, x] of a.tensors) {
    if (!prunable(name)) continue;
    const y = b.tensors.get(name)!;
    for (let i = 0; i < x.length; i++) {
      if ((x[i] === 0) !== (y[i] === 0)) maskDiff++;
      maxDiff = Math.max(maxDiff, Math.abs(x[i] - y[i]));
      scale = Math.max(scale, Math.abs(x[i]));
    }
  }
  return { maskDiff, maxDiff, scale };
}

describe('memory-budgeted shots', () => {
  const cases: Array<{ name: string; opts: Parameters<typeof prune>[1]; settings: Partial<MemorySettings> }> = [
    { name: 'rows-cols 30%, 2 shots', opts: { structure: 'rows-cols', sparsity: 0.3, shots: 2 }, settings: { structure: 'rows-cols' } },
    { name: 'element 50%, 1 shot', opts: { structure: 'element', sparsity: 0.5, shots: 1 }, settings: { structure: 'element' } },
    { name: '2:4, 1 shot', opts: { structure: '2:4', sparsity: 0.5, shots: 1 }, settings: { structure: '2:4' } },
    { name: 'rows-cols 20% + LoRA, 1 shot', opts: { structure: 'rows-cols', sparsity: 0.2, shots: 1, lora: { targets: 'attention', fraction: 1 } }, settings: { structure: 'rows-cols', lora: { targets: 'attention', fraction: 1 } } },
  ];
  for (const c of cases) {
    it(`${c.name}: same masks and weights as unbudgeted, peak within the budget`, async () => {
      const ctx = await gpu();
      const calibration = { text: TEXT, ...CAL };
      const t0 = performance.now();
      const free = await prune(model, { ...c.opts, calibration } as Parameters<typeof prune>[1]);
      const t1 = performance.now();
      expect(free.report.memory.plan?.groups.length).toBe(1);
      const L = model.config.numLayers;
      const inUse = localSession().memory().bytesInUse;
      // The finest plan's own estimate (one decoder layer per pass) as the budget.
      const finest = estimatePruneMemory(model.config, { nsamples: CAL.nsamples, seqlen: CAL.seqlen, ...c.settings, groups: contiguousGroups(L, L) }, deviceLimits(ctx));
      const budget = inUse + finest.peak;
      const unbudgeted = free.report.memory.estimatedPeakBytes;
      const tight = await prune(model, { ...c.opts, calibration, memoryBudget: budget } as Parameters<typeof prune>[1]);
      const t2 = performance.now();
      const plan = tight.report.memory.plan!;
      const measured = tight.report.memory.measuredPeakBytes;
      const d = compare(free.model, tight.model);
      console.log(`[budget] ${c.name}: unbudgeted estimate ${(unbudgeted / 2 ** 20).toFixed(2)} MiB (measured ${(free.report.memory.measuredPeakBytes / 2 ** 20).toFixed(2)}), budget ${(budget / 2 ** 20).toFixed(2)} MiB (${(budget / (inUse + unbudgeted)).toFixed(3)}× of it): ${describePlan(plan)}; estimate ${(tight.report.memory.estimatedPeakBytes / 2 ** 20).toFixed(2)}, measured ${(measured / 2 ** 20).toFixed(2)} MiB (${((inUse + tight.report.memory.estimatedPeakBytes) / measured).toFixed(3)}× measured); mask diffs ${d.maskDiff}, max |Δw| ${d.maxDiff.toExponential(2)}; ${((t1 - t0) / 1000).toFixed(1)} s vs ${((t2 - t1) / 1000).toFixed(1)} s`);
      expect(plan.groups.length).toBeGreaterThan(1);
      expect(plan.groups.flat()).toEqual(Array.from({ length: L }, (_, i) => i));
      expect(budget).toBeLessThan(inUse + unbudgeted);
      expect(measured).toBeLessThanOrEqual(budget);
      expect(inUse + tight.report.memory.estimatedPeakBytes).toBeGreaterThanOrEqual(measured);
      expect(d.maskDiff).toBe(0);
      expect(d.maxDiff).toBeLessThanOrEqual(1e-6 * d.scale);
      expect(tight.report.achievedSparsity).toBe(free.report.achievedSparsity);
    });
  }

  it('a budget below even one layer per pass is refused before any GPU work, naming the budget', async () => {
    await expect(prune(model, { structure: 'rows-cols', sparsity: 0.2, shots: 1, calibration: { text: TEXT, ...CAL }, memoryBudget: 1024 })).rejects.toThrow(LimitExceededError);
    await expect(prune(model, { structure: 'rows-cols', sparsity: 0.2, shots: 1, calibration: { text: TEXT, ...CAL }, memoryBudget: 1024 })).rejects.toThrow(/memoryBudget/);
  });
});
