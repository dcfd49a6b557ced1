/**
 * The plan side of bench/scale.ts, no GPU work: the memory plan a job gets under a budget, the floor of
 * the layer-group plans (one decoder layer per pass, the smallest LM-head chunk: what dominated before
 * the streamed and per-linear schedules), and a time estimate per shot from a FLOP model of the
 * schedule by kernel class, calibrated on the H200's profile of one OPT-1.3B-shaped K-FAC pass and its
 * measured spdInverse times (CAL, INVERSE below). A guide for sizing GPU-machine calls, not a measurement: host
 * transfers (kept activations, parked factors, offloaded weights) and small kernels are left out.
 */
import { estimatePruneMemory, type DeviceLimits, type MemoryEstimate, type MemorySettings } from '../src/api/memory';
import { contiguousGroups, describePlan, planPrune, type PrunePlan } from '../src/api/plan';
import { familySpec, type ModelConfig, type PrunableLayer } from '../src/io/config';

/** An H200's limits as Dawn reports them (the estimates' view). */
export const H200: DeviceLimits = { maxStorageBufferBindingSize: 2 ** 32 - 4, maxBufferSize: 2 ** 36 };
const GiB = 2 ** 30;
const gib = (b: number): number => +(b / GiB).toFixed(3);
const C1 = (L: PrunableLayer): number => L.C + (L.bias ? 1 : 0);

/** FLOPs of one decoder layer's linears (forward; the backward's input gradients are as many), attention, factor grams, per batch of N tokens of T. */
function layerFlops(c: ModelConfig, layers: PrunableLayer[], l: number, N: number, T: number): { lin: number; attn: number; gram: number } {
  const mine = layers.filter((L) => L.layer === l);
  const inputs = new Map(mine.map((L) => [L.inputKey, C1(L)]));
  return {
    lin: mine.reduce((a, L) => a + 2 * N * L.R * L.C, 0),
    attn: 2 * N * T * c.hiddenSize, // QKᵀ and PV over the causal half (forward; the backward counts 2.5×)
    gram: [...inputs.values()].reduce((a, n) => a + N * n * n, 0) + mine.reduce((a, L) => a + N * L.R * L.R, 0),
  };
}

export interface ShotWork { matmul: number; attention: number; gram: number; inverses: number[] }

/** One shot's curvature work by kernel class (FLOPs) and the sizes of its damped inverses, under a plan (see the file comment). */
export function shotWork(c: ModelConfig, plan: Pick<PrunePlan, 'groups' | 'streamed'> | undefined, nsamples: number, T: number, B: number): ShotWork {
  const layers = familySpec(c).prunableLayers(c);
  const N = B * T, batches = Math.ceil(nsamples / B), Lc = c.numLayers;
  const per = Array.from({ length: Lc }, (_, l) => layerFlops(c, layers, l, N, T));
  const head = 4 * N * c.hiddenSize * c.vocabSize; // logits and ∂hidden (no head weight gradient)
  const w = { matmul: 0, attention: 0, gram: per.reduce((a, x) => a + x.gram, 0) };
  const fwd = (lo: number, hi: number) => { for (const x of per.slice(lo, hi)) { w.matmul += x.lin; w.attention += x.attn; } };
  const bwd = (lo: number, hi: number) => { for (const x of per.slice(lo, hi)) { w.matmul += x.lin; w.attention += 2.5 * x.attn; } };
  for (const g of plan?.groups ?? [Array.from({ length: Lc }, (_, i) => i)]) {
    const lo = Math.min(...g), hi = Math.max(...g) + 1;
    if (plan?.streamed && hi < Lc) { fwd(lo, hi); bwd(lo, hi); } else { fwd(0, Lc); w.matmul += head; bwd(lo, Lc); }
  }
  return { matmul: batches * w.matmul, attention: batches * w.attention, gram: batches * w.gram, inverses: layers.flatMap((L) => [L.R, C1(L)]) };
}

// Calibration (H200, 2026-12-04, bench/results/raw-2026-12-04/model.json at 7c70535): one unbudgeted K-FAC
// pass of the OPT-1.3B shape, 16 × 2048, batch 2: gram 6.96 s, matmul 5.27 s, attention 1.77 s.
const CAL = { gram: 6.96, matmul: 5.27, attention: 1.77 };
// spdInverse (cholinv, cond ~30) after the issue-16 rewrite, H200 2026-12-04 at 9a187e3
// (bench/results/h200-kernels.json): [n, seconds]; log-log interpolation between, n³ beyond the last.
const INVERSE: ReadonlyArray<[number, number]> = [[256, 0.00529], [768, 0.00726], [1024, 0.00846], [2048, 0.01437], [3072, 0.02517], [4096, 0.04072], [8192, 0.18184]];

/** Seconds of one damped inverse of order n by the table above. */
export function inverseSeconds(n: number): number {
  const [n0, t0] = INVERSE[0];
  if (n <= n0) return t0;
  for (let i = 1; i < INVERSE.length; i++) {
    const [a, ta] = INVERSE[i - 1], [b, tb] = INVERSE[i];
    if (n <= b) return ta * Math.exp((Math.log(n / a) / Math.log(b / a)) * Math.log(tb / ta));
  }
  const [nl, tl] = INVERSE[INVERSE.length - 1];
  return tl * (n / nl) ** 3;
}
function rates(opt13: ModelConfig): { gram: number; matmul: number; attention: number } {
  const w = shotWork(opt13, undefined, 16, 2048, 2);
  return { gram: w.gram / CAL.gram, matmul: w.matmul / CAL.matmul, attention: w.attention / CAL.attention };
}

/** Seconds per shot on the H200 by the model above: the curvature passes and the inverses. */
export function shotSeconds(c: ModelConfig, opt13: ModelConfig, plan: Pick<PrunePlan, 'groups' | 'streamed'> | undefined, nsamples: number, T: number, B: number): { curvature: number; inverses: number } {
  const w = shotWork(c, plan, nsamples, T, B), r = rates(opt13);
  return { curvature: w.gram / r.gram + w.matmul / r.matmul + w.attention / r.attention, inverses: w.inverses.reduce((a, n) => a + inverseSeconds(n), 0) };
}

export interface PlanRow {
  shape: string; structure: string; nsamples: number; seqlen: number; budget_bytes: number;
  unbudgeted_gib: number;
  floor: { peak_gib: number; weights_gib: number; activations_gib: number; factors_gib: number; problems_gib: number; update_gib: number; dominant: string };
  plan: string | null; refused: string | null; estimate_gib: number | null; phases_gib: Record<string, number> | null; host_gib: number | null;
  est_seconds_per_shot: number | null;
  /** Of which the damped inverses (the rest: the curvature passes). */
  est_inverse_seconds: number | null;
}

/** The floor, the plan and the time estimate of one job (random-weight model of `shape`). */
export function planRow(shape: string, c: ModelConfig, opt13: ModelConfig, structure: string, nsamples: number, seqlen: number, budget: number, hostBudget: number, lim = H200): PlanRow {
  const s: MemorySettings = { nsamples, seqlen, batch: 1, structure };
  const L = c.numLayers;
  const whole = estimatePruneMemory(c, s, lim);
  const f: MemoryEstimate = estimatePruneMemory(c, { ...s, groups: contiguousGroups(L, L), headChunkRows: 256 }, lim);
  const phases = { curvature: f.phases.curvature, problems: f.phases.problems, update: f.phases.update };
  const top = Object.entries(phases).sort((a, b) => b[1] - a[1])[0][0];
  const floor = {
    peak_gib: gib(f.peak), weights_gib: gib(f.weights), activations_gib: gib(f.phases.curvature - f.factors), factors_gib: gib(f.factors),
    problems_gib: gib(f.phases.problems), update_gib: gib(f.phases.update),
    dominant: `weights ${gib(f.weights)} GiB + the ${top} phase${top === 'curvature' ? ` (activations ${gib(f.phases.curvature - f.factors)} GiB)` : ''}`,
  };
  const row: PlanRow = { shape, structure, nsamples, seqlen, budget_bytes: budget, unbudgeted_gib: gib(whole.peak), floor, plan: null, refused: null, estimate_gib: null, phases_gib: null, host_gib: null, est_seconds_per_shot: null, est_inverse_seconds: null };
  try {
    const { plan, estimate } = planPrune(c, s, lim, budget, 0, hostBudget);
    row.plan = describePlan(plan);
    row.estimate_gib = gib(estimate.peak);
    row.phases_gib = Object.fromEntries(Object.entries(estimate.phases).map(([k, v]) => [k, gib(v)]));
    row.host_gib = gib(estimate.hostBytes);
    const t = shotSeconds(c, opt13, plan, nsamples, seqlen, 1);
    row.est_seconds_per_shot = +(t.curvature + t.inverses).toFixed(0);
    row.est_inverse_seconds = +t.inverses.toFixed(0);
  } catch (e) {
    row.refused = (e as Error).message;
  }
  return row;
}

export function printPlanRow(r: PlanRow): void {
  const fl = r.floor;
  console.log(`${r.shape} ${r.structure} ${r.nsamples} × ${r.seqlen}, budget ${gib(r.budget_bytes)} GiB (unbudgeted estimate ${r.unbudgeted_gib} GiB)`);
  console.log(`  floor of the layer-group plans (1 layer per pass, head chunks of 256): ${fl.peak_gib} GiB = weights ${fl.weights_gib} + the largest phase of: activations ${fl.activations_gib} + factors ${fl.factors_gib} (curvature), problems ${fl.problems_gib}, update ${fl.update_gib}; the floor is ${fl.dominant}`);
  if (r.refused) console.log(`  refused: ${r.refused}`);
  else console.log(`  plan: ${r.plan}\n  estimate ${r.estimate_gib} GiB, phases above the weights ${JSON.stringify(r.phases_gib)}, host ${r.host_gib} GiB; ≈ ${r.est_seconds_per_shot} s per shot on the H200 (FLOP model; inverses ${r.est_inverse_seconds} s)`);
}
