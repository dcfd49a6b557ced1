/**
 * The finer memory-budgeted schedules on the software GPU (model/kfac-stream.ts, surgeon/prune.ts,
 * api/memory-schedule.ts): streamed passes (each pass runs only its own layers from inputs and gradients
 * kept in host memory), problems and updates one linear at a time (the other factors parked), frozen
 * weights offloaded to host memory during the updates. Same masks bit for bit and weights within fp32
 * tolerance as the unbudgeted shot; the pool's measured peak never above the schedule's estimate; each
 * streamed pass's peak and spdInverse's peak equal to their replays. A tiny random OPT (3 layers), 2 × 16
 * calibration tokens, one shot. (test/surgeon-budget.test.ts runs the planner's choice of these schedules
 * on opt-micro through prune().)
 */
import { beforeAll, describe, expect, it } from 'vitest';
import { deviceLimits, estimatePruneMemory, Tally } from '../src/api/memory';
import { factorBytes, spdInverseAllocs, streamedPassBytes } from '../src/api/memory-schedule';
import { accumulateKfac, disposeKfac } from '../src/model/kfac';
import { spdInverse } from '../src/kernels/spd';
import type { LoadedCheckpoint } from '../src/io/checkpoint';
import { DecoderModel } from '../src/model/model';
import { KfacStream } from '../src/model/kfac-stream';
import { pruneModel, type PruneRunOptions } from '../src/surgeon/prune';
import type { PruneOptions } from '../src/surgeon/options';
import { tinyOpt } from '../src/reference/tinyopt';
import { gpu } from './helpers/gpu';
import { rng } from './helpers/rng';
import { toCheckpoint } from './helpers/surgeon';

const TINY = { layers: 3, d: 16, heads: 2, ffn: 128, vocab: 32, maxPos: 32 };
const r = rng(9);
const calib = Array.from({ length: 2 }, () => Int32Array.from({ length: 16 }, () => Math.floor(r() * TINY.vocab)));
let host: LoadedCheckpoint;
beforeAll(async () => {
  await gpu();
  const m = tinyOpt({ ...TINY, seed: 4 });
  host = toCheckpoint({ cfg: m.cfg, w: new Map([...m.w].map(([k, v]) => [k, Float64Array.from(Float32Array.from(v))])) });
});

/** Prune a fresh GPU copy; the weights after and the pool's peak above the uploaded weights. */
async function run(opts: PruneOptions & PruneRunOptions): Promise<{ w: Map<string, Float32Array>; peak: number }> {
  const ctx = await gpu();
  const model = await DecoderModel.fromCheckpoint(ctx, host);
  try {
    await ctx.sync();
    const base = ctx.pool.bytesInUse;
    ctx.pool.peakBytesInUse = base;
    await pruneModel(ctx, model, calib, opts);
    const peak = ctx.pool.peakBytesInUse - base;
    expect(model.offloadedNames()).toEqual([]);
    return { w: await model.exportWeights(), peak };
  } finally {
    model.dispose();
  }
}

function compare(a: Map<string, Float32Array>, b: Map<string, Float32Array>): { maskDiff: number; maxDiff: number; scale: number } {
  let maskDiff = 0, maxDiff = 0, scale = 0;
  for (const [name, x] of a) {
    const y = b.get(name)!;
    for (let i = 0; i < x.length; i++) {
      if ((x[i] === 0) !== (y[i] === 0)) maskDiff++;
      maxDiff = Math.max(maxDiff, Math.abs(x[i] - y[i]));
      scale = Math.max(scale, Math.abs(x[i]));
    }
  }
  return { maskDiff, maxDiff, scale };
}

describe('streamed, per-linear, offloaded shots', () => {
  const cases: Array<{ name: string; opts: PruneOptions; sched: PruneRunOptions }> = [
    { name: 'rows-cols 30%: 3 streamed passes, one linear at a time, offloaded updates', opts: { structure: 'rows-cols', sparsity: 0.3, shots: 1 }, sched: { groups: [[2], [1], [0]], split: 'linear', streamed: true, offloadUpdate: true } },
  ];
  for (const c of cases) {
    it(`${c.name}: same masks and weights as unbudgeted, measured peak ≤ the schedule's estimate`, async () => {
      const ctx = await gpu();
      const free = await run(c.opts);
      const tight = await run({ ...c.opts, ...c.sched });
      const est = estimatePruneMemory(host.config, {
        nsamples: calib.length, seqlen: 16, structure: c.opts.structure, maxChunk: c.opts.maxChunk,
        groups: c.sched.groups, split: c.sched.split, streamed: c.sched.streamed, offloadUpdate: c.sched.offloadUpdate,
      }, deviceLimits(ctx));
      const whole = estimatePruneMemory(host.config, { nsamples: calib.length, seqlen: 16, structure: c.opts.structure, maxChunk: c.opts.maxChunk }, deviceLimits(ctx));
      const above = est.peak - est.weights - est.cached;
      const d = compare(free.w, tight.w);
      console.log(`[stream] ${c.name}: measured ${tight.peak} B above the weights (unbudgeted ${free.peak}), estimate ${above} (${(above / tight.peak).toFixed(3)}×; unbudgeted estimate ${whole.peak - whole.weights}), phases ${JSON.stringify(est.phases)}, host ${est.hostBytes} B; mask diffs ${d.maskDiff}, max |Δw| ${d.maxDiff.toExponential(2)}`);
      expect(d.maskDiff).toBe(0);
      expect(d.maxDiff).toBeLessThanOrEqual(1e-6 * d.scale);
      expect(tight.peak).toBeLessThanOrEqual(above);
      expect(tight.peak).toBeLessThan(free.peak);
      expect(est.peak).toBeLessThan(whole.peak);
    });
  }

  it('streamed passes: each pass\'s measured peak is its replay (factors + one batch of the pass), the factors bit-identical to accumulateKfac', async () => {
    const ctx = await gpu();
    const model = await DecoderModel.fromCheckpoint(ctx, host);
    const passes = [[2], [1], [0]];
    const stream = new KfacStream(ctx, model, calib, { passes, streamed: true });
    const all = model.prunableLayers();
    const ref = await accumulateKfac(ctx, model, calib);
    try {
      for (const pass of passes) {
        const linears = all.filter((L) => pass.includes(L.layer));
        await ctx.sync();
        const base = ctx.pool.bytesInUse;
        ctx.pool.peakBytesInUse = base;
        const f = await stream.factors(linears.map((L) => L.name), {});
        const measured = ctx.pool.peakBytesInUse - base;
        const replay = factorBytes(linears) + streamedPassBytes(host.config, deviceLimits(ctx), calib.length, 16, { lo: pass[0], hi: pass[0] + 1, linears }).peak;
        console.log(`[pass] layer ${pass[0]}: measured ${measured} B, replay ${replay} B`);
        expect(replay).toBeGreaterThanOrEqual(measured);
        expect(replay).toBeLessThanOrEqual(1.1 * measured);
        for (const L of linears) {
          const a = f.get(L.name)!, b = ref.get(L.name)!;
          expect(await a.A.read()).toEqual(await b.A.read());
          expect(await a.G.read()).toEqual(await b.G.read());
        }
        disposeKfac(f);
      }
    } finally {
      disposeKfac(ref);
      stream.dispose();
      model.dispose();
    }
  });

  it('spdInverse: the replay of its allocations (memory-schedule.ts) is its measured pool peak', async () => {
    const ctx = await gpu();
    const warm = ctx.upload(Float32Array.of(2, 0, 0, 2), [2, 2]);
    (await spdInverse(ctx, warm)).dispose(); // the context's kept placeholder bindings (cholesky.ts dummy) come once
    warm.dispose();
    for (const n of [40, 130]) {
      const g = rng(n);
      const B = Float32Array.from({ length: n * n }, () => g() - 0.5);
      const M = new Float32Array(n * n); // BᵀB + I: SPD
      for (let i = 0; i < n; i++) for (let j = 0; j < n; j++) { let a = i === j ? 1 : 0; for (let k = 0; k < n; k++) a += B[k * n + i] * B[k * n + j]; M[i * n + j] = a; }
      const m = ctx.upload(M, [n, n]);
      await ctx.sync();
      const base = ctx.pool.bytesInUse;
      ctx.pool.peakBytesInUse = base;
      const X = await spdInverse(ctx, m, { damping: 0.01 });
      const measured = ctx.pool.peakBytesInUse - base;
      X.dispose(); m.dispose();
      const t = new Tally(deviceLimits(ctx));
      spdInverseAllocs(t, n);
      const replay = t.mark();
      console.log(`[spd] n = ${n}: measured ${measured} B, replay ${replay} B`);
      expect(replay).toBeGreaterThanOrEqual(measured);
      expect(replay).toBeLessThanOrEqual(1.1 * measured);
    }
  });

  it('a streamed schedule must run top-down over adjacent ranges (ShapeError before any pass)', async () => {
    const ctx = await gpu();
    const model = await DecoderModel.fromCheckpoint(ctx, host);
    try {
      expect(() => new KfacStream(ctx, model, calib, { passes: [[0], [1], [2]], streamed: true })).toThrow(/top-down/);
      expect(() => new KfacStream(ctx, model, calib, { passes: [[0, 2], [1]], streamed: true })).toThrow(/contiguous/);
    } finally {
      model.dispose();
    }
  });
});
