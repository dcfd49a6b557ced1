/**
 * Low-rank first-order corrections (src/surgeon/lora.ts, ALGORITHM.md §8): Adam and masked-merge kernels
 * against float64; two GPU LoRA steps against the float64 reference (src/reference/lora.ts) on a tiny
 * OPT with pruned entries, rows and columns; loss decrease after a correction of a 50% structured prune;
 * the exact zero pattern after absorption (rows-cols, element, 2:4); lr = 0 leaves every weight
 * bit-identical; option validation; pruneModel integration (progress phase, report, abort).
 */
import { beforeAll, describe, expect, it } from 'vitest';
import type { GpuContext } from '../src/gpu/context';
import { ShapeError } from '../src/gpu/errors';
import { adamStep, maskedMerge, maskLike } from '../src/kernels/adam';
import { OptModel } from '../src/model/index';
import { refAdam, refLoraInit, refLoraStep, refMerged } from '../src/reference/lora';
import { prunableLayers, refLoss, type RefOpt } from '../src/reference/opt';
import { prunableLayers as genericLayers, type RefModel } from '../src/reference/model';
import type { LoadedCheckpoint } from '../src/io/checkpoint';
import { f32Llama, llamaCheckpoint } from './helpers/llama';
import { createLora, disposeLora, loraInitA, loraStep, loraTargets, loraWindows } from '../src/surgeon/lora';
import { resolveLora } from '../src/surgeon/options';
import { loraCorrect, PruneAbortedError, PruneConfigError, pruneModel, type PruneProgress, type Structure } from '../src/surgeon/index';
import { gpu } from './helpers/gpu';
import { f32, randn, rng } from './helpers/rng';
import { calibration, CFG, deadUnitModel, toCheckpoint } from './helpers/surgeon';

let ctx: GpuContext;
beforeAll(async () => { ctx = await gpu(); });

const bits = (x: Float32Array): Uint32Array => new Uint32Array(x.buffer, x.byteOffset, x.length);
const isZero = (x: ArrayLike<number>): boolean[] => Array.from(x, (v) => v === 0);

describe('adam / merge kernels', () => {
  it.each([1, 7, 300, 1025])('3 Adam steps on n=%i match float64 (gradients spanning 1e-6…1e2)', async (n) => {
    const lr = 1e-2;
    const p0 = f32(randn(n, n));
    const p = ctx.upload(p0.f32), m = ctx.zeros([n]), v = ctx.zeros([n]);
    const rp = Float64Array.from(p0.f64), rm = new Float64Array(n), rv = new Float64Array(n);
    for (let t = 1; t <= 3; t++) {
      const scales = randn(n, 100 + t).map((x) => 10 ** (4 * Math.tanh(x) - 2)); // per-entry magnitudes 1e-6…1e2
      const g = f32(randn(n, 10 * n + t).map((x, i) => x * scales[i]));
      const gt = ctx.upload(g.f32);
      adamStep(ctx, p, gt, m, v, t, { lr });
      gt.dispose();
      refAdam(rp, g.f64, rm, rv, t, lr);
    }
    const got = await p.read();
    // Error model: the step is lr·m̂/(√v̂+eps) from f32 moments and a ≤ 3-ulp sqrt (Vulkan) → ≲ 1e-6·lr per
    // step, plus the f32 rounding of p each step (½ ulp): atol 1e-6·lr·steps + 3·2⁻²⁴·|p|.
    let w = 0;
    for (let i = 0; i < n; i++) w = Math.max(w, Math.abs(got[i] - rp[i]) / (3e-6 * lr + 1.8e-7 * Math.abs(rp[i])));
    console.log(`[adam n=${n}] worst error / tolerance ${w.toFixed(3)}`);
    expect(w).toBeLessThanOrEqual(1);
    for (const t of [p, m, v]) t.dispose();
  });

  it('merge keeps the zero pattern bit-exactly (±0 kept, sums rounding to 0 keep W0); maskLike zeros masked gradients', async () => {
    const w0 = Float32Array.of(0, -0, 1.5, -2, 3, 0, 1e-30, 7);
    const d = Float32Array.of(5, 5, 0.25, 2, -1, -0, -1e-30, 0);
    const W = ctx.zeros([8]), W0 = ctx.upload(w0), D = ctx.upload(d);
    maskedMerge(ctx, W, W0, D);
    const got = await W.read();
    const want = Float32Array.from(w0, (x, i) => (x !== 0 && x + d[i] !== 0 ? Math.fround(x + d[i]) : x));
    expect(Array.from(bits(got))).toEqual(Array.from(bits(want)));
    const X = ctx.upload(Float32Array.of(1, 2, 3, 4, 5, 6, 7, 8));
    maskLike(ctx, X, W0);
    expect(Array.from(await X.read())).toEqual([0, 0, 3, 4, 5, 0, 7, 8]);
    expect(() => maskedMerge(ctx, W, W, D)).toThrow(ShapeError);
    expect(() => maskLike(ctx, X, ctx.zeros([3]))).toThrow(ShapeError);
    for (const t of [W, W0, D, X]) t.dispose();
  });
});

/** deadUnitModel with extra pruning in every prunable layer: one removed row, one removed column, 25% random entries. */
/** Zero one row (with its bias), one column and a quarter of the entries of every prunable weight. */
function prune<M extends RefModel>(m: M, seed: number): M {
  const r = rng(seed + 7);
  for (const { name, R, C } of genericLayers(m.cfg)) {
    const W = m.w.get(`${name}.weight`)!, b = m.w.get(`${name}.bias`);
    const row = Math.floor(r() * R), col = Math.floor(r() * C);
    for (let c = 0; c < C; c++) W[row * C + c] = 0;
    if (b) b[row] = 0;
    for (let rr = 0; rr < R; rr++) W[rr * C + col] = 0;
    for (let i = 0; i < W.length; i++) if (r() < 0.25) W[i] = 0;
  }
  return m;
}

const prunedModel = (seed: number): RefOpt => prune(deadUnitModel(seed), seed);

const STEP_MODELS: Array<[string, () => { m: RefModel; ckpt: LoadedCheckpoint }]> = [
  ['OPT', () => { const m = prunedModel(5); return { m, ckpt: toCheckpoint(m) }; }],
  ['Llama (GQA 4/2, no biases)', () => {
    const m = prune(f32Llama({ layers: 2, d: 16, heads: 4, kvHeads: 2, ffn: 24, vocab: CFG.vocab, maxPos: 32, seed: 5 }), 5);
    return { m, ckpt: llamaCheckpoint(m) };
  }],
];

describe('LoRA step vs float64 reference', () => {
  it.each(STEP_MODELS)('%s: A and B after 2 Adam steps (targets all, rank 4, alpha 8, batch 2) match; A unchanged by step 1', async (_family, build) => {
    const { m, ckpt } = build();
    const cal = calibration(4, 10, 77);
    const model = await OptModel.fromCheckpoint(ctx, ckpt);
    const cfg = resolveLora({ rank: 4, alpha: 8, lr: 1e-2, targets: 'all', seed: 3 }, model.prunableLayers());
    const st = createLora(ctx, model, cfg);
    const targets = loraTargets(model, 'all');
    const A0 = targets.map((L, i) => loraInitA(4, L.C, 3, i));
    const rcfg = { rank: 4, scale: cfg.scale, lr: cfg.lr };
    const ref = refLoraInit(m, targets, A0, 4);
    const losses: number[] = [];
    let a1: Float32Array[] = [];
    for (let t = 1; t <= 2; t++) {
      const b = [cal.gpu[2 * t - 2], cal.gpu[2 * t - 1]];
      loraStep(ctx, model, st, b);
      losses.push(refLoraStep(m, ref, [cal.host[2 * t - 2], cal.host[2 * t - 1]], t, rcfg).loss);
      if (t === 1) a1 = await Promise.all(st.adapters.map((a) => a.A.read()));
    }
    const got = await Promise.all(st.adapters.map(async (a) => ({ A: await a.A.read(), B: await a.B.read() })));
    // Adam's step is lr·(ratio of moments) ≈ lr·sign(g) in the first steps, so f32 gradient errors
    // (≲ 1e-5 relative) move it by ≲ 1e-5·lr except where |g| is that small relative to the layer's
    // largest; plus the f32 rounding of A (|A| ≤ 0.25 → ≤ 1.5e-8). Measured: |ΔA| 1.5e-8, |ΔB| 3.5e-8
    // (3.5e-6·lr). Bound 1e-4·lr (+ A's rounding).
    let worstA = 0, worstB = 0;
    st.adapters.forEach((a, l) => {
      expect(Array.from(a1[l])).toEqual(Array.from(A0[l])); // step 1: B = 0 → ∂L/∂A = 0 exactly
      got[l].A.forEach((x, i) => (worstA = Math.max(worstA, Math.abs(x - ref[l].A[i]))));
      got[l].B.forEach((x, i) => (worstB = Math.max(worstB, Math.abs(x - ref[l].B[i]))));
      // masked rows (removed / dead units) get no B update: their gradient is exactly 0
      for (let r = 0; r < a.layer.R; r++) {
        let live = false;
        for (let c = 0; c < a.layer.C; c++) live ||= ref[l].W0[r * a.layer.C + c] !== 0;
        if (!live) for (let k = 0; k < 4; k++) expect(got[l].B[r * 4 + k]).toBe(0);
      }
    });
    console.log(`[lora step] losses ${losses.map((x) => x.toFixed(5))}; worst |ΔA| ${worstA.toExponential(2)}, |ΔB| ${worstB.toExponential(2)} (lr ${cfg.lr})`);
    expect(worstA).toBeLessThanOrEqual(1e-4 * cfg.lr + 3e-8);
    expect(worstB).toBeLessThanOrEqual(1e-4 * cfg.lr);
    expect(worstB).toBeGreaterThan(0); // not vacuous: B moved …
    expect(got.some((g) => g.B.some((x) => Math.abs(x) > 0.5 * cfg.lr))).toBe(true); // … by ~lr
    disposeLora(st);
    model.dispose();
  });
});

async function exported(model: OptModel): Promise<Map<string, Float32Array>> {
  return model.exportWeights();
}

describe('loraCorrect on pruned models', () => {
  it('50% rows-cols: loss on the training windows decreases, the zero pattern and biases are bit-exact, lossBefore = float64', async () => {
    const m = deadUnitModel(21);
    const cal = calibration(6, 12, 2100).gpu;
    const model = await OptModel.fromCheckpoint(ctx, toCheckpoint(m));
    await pruneModel(ctx, model, cal, { structure: 'rows-cols', sparsity: 0.5, shots: 1 });
    const before = await exported(model);
    const res = await loraCorrect(ctx, model, cal, { lr: 1e-2, epochs: 3, fraction: 0.5, batch: 1, seed: 1 });
    const after = await exported(model);
    console.log(`[lora rows-cols 50%] windows ${res.windows} steps ${res.steps}: loss ${res.lossBefore.toFixed(5)} → ${res.lossAfter.toFixed(5)} in ${res.seconds.toFixed(2)} s`);
    expect(res.windows).toEqual(loraWindows(6, 0.5, 1));
    expect(res.windows.length).toBe(3);
    expect(res.steps).toBe(9);
    expect(res.lossAfter).toBeLessThan(res.lossBefore);
    // lossBefore against the float64 loss of the pruned weights (f32 forward on d = 16: ≲ 1e-5 relative)
    const refW = { cfg: m.cfg, w: new Map([...before].map(([k, v]) => [k, Float64Array.from(v)])) };
    const want = res.windows.reduce((s, i) => s + refLoss(refW, Array.from(cal[i])), 0) / res.windows.length;
    expect(Math.abs(res.lossBefore - want)).toBeLessThanOrEqual(1e-5 * want);
    checkPattern(before, after, 'attention');
    model.dispose();
  });

  for (const structure of ['element', '2:4'] as Structure[]) {
    it(`${structure} 50%, targets all: zero pattern, N:M groups and biases bit-exact after absorption`, async () => {
      const m = deadUnitModel(22);
      const cal = calibration(4, 12, 2200).gpu;
      const model = await OptModel.fromCheckpoint(ctx, toCheckpoint(m));
      await pruneModel(ctx, model, cal, { structure, sparsity: 0.5, shots: 1 });
      const before = await exported(model);
      const res = await loraCorrect(ctx, model, cal, { lr: 1e-2, fraction: 1, batch: 2, targets: 'all' });
      const after = await exported(model);
      console.log(`[lora ${structure} 50%] steps ${res.steps}: loss ${res.lossBefore.toFixed(5)} → ${res.lossAfter.toFixed(5)}`);
      checkPattern(before, after, 'all');
      if (structure === '2:4') {
        for (const { name, R, C } of prunableLayers(m.cfg)) {
          const W = after.get(`${name}.weight`)!;
          for (let g = 0; g < (R * C) / 4; g++) expect(isZero(W.subarray(4 * g, 4 * g + 4)).filter(Boolean).length).toBeGreaterThanOrEqual(2);
        }
      }
      model.dispose();
    });
  }

  it('lr = 0 leaves every weight bit-identical', async () => {
    const m = prunedModel(23);
    const cal = calibration(3, 10, 2300).gpu;
    const model = await OptModel.fromCheckpoint(ctx, toCheckpoint(m));
    const before = await exported(model);
    const res = await loraCorrect(ctx, model, cal, { lr: 0, fraction: 1, targets: 'all', epochs: 2 });
    const after = await exported(model);
    for (const [k, v] of before) expect(Array.from(bits(after.get(k)!)), k).toEqual(Array.from(bits(v)));
    expect(res.lossAfter).toBe(res.lossBefore);
    model.dispose();
  });
});

/** Same zeros in every prunable weight, biases and non-prunable tensors bit-identical, adapted kept weights moved. */
function checkPattern(before: Map<string, Float32Array>, after: Map<string, Float32Array>, targets: 'attention' | 'all'): void {
  let moved = 0;
  for (const [k, v] of before) {
    const a = after.get(k)!;
    const adapted = k.endsWith('.weight') && /\.(q_proj|k_proj|v_proj|out_proj|fc1|fc2)\./.test(k) && (targets === 'all' || k.includes('.self_attn.'));
    if (!adapted) {
      expect(Array.from(bits(a)), k).toEqual(Array.from(bits(v)));
      continue;
    }
    expect(isZero(a), k).toEqual(isZero(v));
    v.forEach((x, i) => { if (x !== a[i]) moved++; });
  }
  expect(moved).toBeGreaterThan(0);
}

describe('options and pruneModel integration', () => {
  const layers = () => prunableLayers(CFG).map((L) => ({ ...L, type: L.name.split('.').pop()!, bias: true, inputKey: L.name, layer: 0 }));
  it.each([
    { rank: 0 }, { rank: 1.5 }, { rank: 17 }, { alpha: 0 }, { alpha: Number.NaN }, { lr: -1 }, { lr: Infinity },
    { epochs: 0 }, { fraction: 0 }, { fraction: 1.5 }, { batch: 0 }, { seed: 0.5 }, { targets: 'mlp' }, { rnak: 8 },
  ])('rejects lora %j with PruneConfigError', async (bad) => {
    expect(() => resolveLora(bad as never, layers())).toThrow(PruneConfigError);
    const m = deadUnitModel(3);
    const model = await OptModel.fromCheckpoint(ctx, toCheckpoint(m));
    const cal = calibration(2, 8, 1).gpu;
    await expect(pruneModel(ctx, model, cal, { structure: 'element', sparsity: 0.2, lora: bad as never })).rejects.toBeInstanceOf(PruneConfigError);
    await expect(loraCorrect(ctx, model, cal, bad as never)).rejects.toBeInstanceOf(PruneConfigError);
    model.dispose();
  });

  it('rejects bad lora values and windows with named errors', async () => {
    const model = await OptModel.fromCheckpoint(ctx, toCheckpoint(deadUnitModel(3)));
    const cal = calibration(2, 8, 1).gpu;
    await expect(pruneModel(ctx, model, cal, { structure: 'element', sparsity: 0.2, lora: 'yes' as never })).rejects.toBeInstanceOf(PruneConfigError);
    await expect(pruneModel(ctx, model, [], { structure: 'element', sparsity: 0.2, method: 'magnitude', lora: true })).rejects.toBeInstanceOf(PruneConfigError);
    await expect(loraCorrect(ctx, model, [])).rejects.toBeInstanceOf(ShapeError);
    await expect(loraCorrect(ctx, model, [cal[0], cal[1].subarray(0, 5)], { fraction: 1 })).rejects.toBeInstanceOf(ShapeError);
    await expect(loraCorrect(ctx, model, [Int32Array.of(1, 2, 999)])).rejects.toBeInstanceOf(ShapeError);
    expect(resolveLora({}, layers())).toMatchObject({ rank: 8, alpha: 8, scale: 1, targets: 'attention', lr: 1e-4, epochs: 1, fraction: 0.025, seed: 0 });
    model.dispose();
  });

  it('pruneModel with lora: phase "lora" in progress, seconds.lora and per-shot losses in the report, sparsity kept; abort → PruneAbortedError', async () => {
    const m = deadUnitModel(24);
    const cal = calibration(4, 10, 2400).gpu;
    const model = await OptModel.fromCheckpoint(ctx, toCheckpoint(m));
    const phases = new Set<string>();
    const rep = await pruneModel(ctx, model, cal, {
      structure: 'rows-cols', sparsity: 0.4, shots: 2, lora: { lr: 1e-3, fraction: 0.5 },
      onProgress: (p: PruneProgress) => phases.add(p.phase),
    });
    expect(phases.has('lora')).toBe(true);
    expect(rep.seconds.lora).toBeGreaterThan(0);
    for (const s of rep.shots) {
      expect(s.seconds.lora).toBeGreaterThan(0);
      expect(s.lora!.steps).toBe(1); // 2 of 4 windows of 10 tokens, default batch ⌊2048/10⌋ → one step
      expect(Number.isFinite(s.lora!.lossAfter)).toBe(true);
    }
    const w = await model.exportWeights();
    let zeros = 0, params = 0;
    for (const { name, R, C } of prunableLayers(m.cfg)) {
      zeros += isZero(w.get(`${name}.weight`)!).filter(Boolean).length + isZero(w.get(`${name}.bias`)!).filter(Boolean).length;
      params += R * (C + 1);
    }
    expect(rep.achievedSparsity).toBe(zeros / params); // counted before the correction, still exact after it
    const ac = new AbortController();
    await expect(pruneModel(ctx, model, cal, {
      structure: 'rows-cols', sparsity: 0.5, shots: 2, lora: { fraction: 1, batch: 1 }, signal: ac.signal,
      onProgress: (p) => { if (p.phase === 'lora') ac.abort(); },
    })).rejects.toBeInstanceOf(PruneAbortedError);
    model.dispose();
  });
});
