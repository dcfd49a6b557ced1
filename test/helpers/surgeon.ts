/**
 * Shared fixtures of the surgeon GPU tests: a tiny random OPT with f32-exact weights and one dead fc1
 * unit, its checkpoint for OptModel, calibration windows, and the reference's decision margins.
 *
 * Near-ties: the GPU decides masks on f32 costs (f32 K-FAC, f32 inverses), the reference on float64
 * costs. A decision can flip only where two costs straddling τ are closer than the GPU's cost error
 * (≲ 1e-4 relative here). The tests therefore pick, deterministically, the first data seed whose
 * reference margins at every shot exceed MIN_MARGIN and compare masks exactly; see refMargins.
 */
import { expect } from 'vitest';
import type { LoadedCheckpoint } from '../../src/io/checkpoint';
import { expectedOptTensors, parseOptConfig } from '../../src/io/config';
import { refKfac } from '../../src/reference/kfac';
import type { RefOpt } from '../../src/reference/opt';
import { prunableLayers, type RefModel } from '../../src/reference/model';
import { elementCosts, elementThreshold, groupCosts24, groupThreshold, layerProblem, refPrune, rowColCosts, structuredThreshold, type PruneOptions as RefOptions } from '../../src/reference/surgeon';
import { tinyOpt } from '../../src/reference/tinyopt';
import { rng } from './rng';

export const CFG = { layers: 2, d: 16, heads: 4, ffn: 32, vocab: 64, maxPos: 32 };
export const DEAD = { layer: 0, unit: 5 }; // fc1 row (with its bias) zeroed → fc2 column has A_cc = 0
/** Relative gap between τ and the nearest cost on the other side that the tests demand (10× the GPU's cost error). */
export const MIN_MARGIN = 1e-3;

/** tinyOpt with weights rounded to f32 (exactly what the GPU holds) and one dead fc1 unit. */
export function deadUnitModel(seed: number): RefOpt {
  const m = tinyOpt({ ...CFG, seed });
  const fc1 = `model.decoder.layers.${DEAD.layer}.fc1`;
  m.w.get(`${fc1}.weight`)!.fill(0, DEAD.unit * CFG.d, (DEAD.unit + 1) * CFG.d);
  m.w.get(`${fc1}.bias`)![DEAD.unit] = 0;
  return { cfg: { ...m.cfg }, w: new Map([...m.w].map(([k, v]) => [k, Float64Array.from(Float32Array.from(v))])) };
}

export function toCheckpoint(m: RefOpt): LoadedCheckpoint {
  const { layers, d, heads, ffn, vocab, maxPos } = m.cfg;
  const config = parseOptConfig({
    model_type: 'opt', architectures: ['OPTForCausalLM'], hidden_size: d, num_attention_heads: heads,
    num_hidden_layers: layers, ffn_dim: ffn, vocab_size: vocab, max_position_embeddings: maxPos, dtype: 'float32',
  });
  const tensors = new Map<string, Float32Array>();
  const shapes = new Map<string, number[]>();
  for (const [name, shape] of expectedOptTensors(config)) {
    tensors.set(name, Float32Array.from(m.w.get(name)!));
    shapes.set(name, shape);
  }
  return { config, tensors, shapes, sourceDtype: 'F32', files: [] };
}

export function calibration(n: number, T: number, seed: number): { host: number[][]; gpu: Int32Array[] } {
  const r = rng(seed);
  const host = Array.from({ length: n }, () => Array.from({ length: T }, () => Math.floor(r() * CFG.vocab)));
  return { host, gpu: host.map((s) => Int32Array.from(s)) };
}

/** W' = [W | b] per prunable layer from a weight map (GPU export or reference); W alone for a layer without bias. */
export function wPrime(w: Map<string, ArrayLike<number>>, name: string, R: number, C: number): Float64Array {
  const W = w.get(`${name}.weight`)!, b = w.get(`${name}.bias`);
  if (!b) return Float64Array.from(W);
  const out = new Float64Array(R * (C + 1));
  for (let r = 0; r < R; r++) {
    for (let c = 0; c < C; c++) out[r * (C + 1) + c] = W[r * C + c];
    out[r * (C + 1) + C] = b[r];
  }
  return out;
}

const relGap = (a: number, b: number): number => Math.abs(a - b) / Math.max(Math.abs(a), Math.abs(b), 1e-30);

/**
 * The reference's smallest relative decision margin over the shots of a `shots`-shot run: at each shot
 * (state = refPrune of the previous shots), the gap between τ and the first cost above it (structured:
 * the first excluded row/column; element: sorted[k+1]; 2:4: next group cost, and inside every taken
 * group the gap between the 2nd and 3rd cheapest entries).
 */
export function refMargins(m: RefModel, calib: number[][], o: RefOptions): number {
  const layers = prunableLayers(m.cfg);
  const structured = o.structure === 'rows-cols';
  const lG = o.lambdaG ?? (structured ? 0.01 : 0.1), lA = o.lambdaA ?? 0.01;
  let worst = Infinity;
  for (let t = 1; t <= o.shots; t++) {
    const st = (t * o.sparsity) / o.shots;
    // shots = t−1 at sparsity (t−1)·s/T reproduces the state before shot t (exact for the T ≤ 2 used here)
    const state: RefModel = t === 1 ? m : { cfg: m.cfg, w: refPrune(m, calib, { ...o, shots: t - 1, sparsity: ((t - 1) * o.sparsity) / o.shots }).weights };
    const f = refKfac(state, calib, { fisherSamples: o.fisherSamples, seed: o.seed });
    const probs = layers.map(({ name, R, C }) => layerProblem(state, name, R, C, f.get(name), lG, lA, o.method === 'surgeon'));
    if (structured) {
      const rc = probs.map((p) => ({ R: p.R, C1: p.C1, ...rowColCosts(p, o.method) }));
      const { tau } = structuredThreshold(rc, st);
      const above = rc.flatMap((l) => [...l.row, ...l.col]).filter((v) => v > tau);
      if (above.length) worst = Math.min(worst, relGap(Math.min(...above), tau));
    } else {
      const ec = probs.map((p) => elementCosts(p, o.method));
      const vals = (xs: Float64Array[]) => Float64Array.from(xs.flatMap((x) => [...x])).sort();
      if (o.structure === 'element') {
        const tau = elementThreshold(ec, st);
        const all = vals(ec), nxt = all.find((v) => v > tau);
        if (nxt !== undefined) worst = Math.min(worst, relGap(nxt, tau));
      } else {
        const gc = probs.map((p, l) => groupCosts24(ec[l], p.R, p.C, p.C1));
        const tau = groupThreshold(gc, st);
        const nxt = vals(gc).find((v) => v > tau);
        if (nxt !== undefined) worst = Math.min(worst, relGap(nxt, tau));
        probs.forEach((p, l) => {
          const G = p.C / 4;
          for (let r = 0; r < p.R; r++) for (let g = 0; g < G; g++) {
            if (!(gc[l][r * G + g] <= tau)) continue;
            const cs = [0, 1, 2, 3].map((k) => ec[l][r * p.C1 + 4 * g + k]).sort((a, b) => a - b);
            if (cs[2] > cs[1]) worst = Math.min(worst, relGap(cs[2], cs[1]));
            else expect(cs[1]).toBe(0); // an exact tie is only acceptable between exact zeros (dead entries)
          }
        });
      }
    }
  }
  return worst;
}

/** First seed in seeds whose reference margins all exceed MIN_MARGIN. */
export function pickSeed(seeds: number[], make: (seed: number) => { m: RefModel; calib: number[][] }, o: RefOptions): number {
  for (const s of seeds) {
    const { m, calib } = make(s);
    if (refMargins(m, calib, o) > MIN_MARGIN) return s;
  }
  throw new Error('no seed without near-ties found; widen the seed list');
}

/** max_i |a_i − b_i| / (atol + rtol·|b_i|) — ≤ 1 passes. */
export function worst(a: ArrayLike<number>, b: ArrayLike<number>, atol: number, rtol: number): number {
  expect(a.length).toBe(b.length);
  let w = 0;
  for (let i = 0; i < a.length; i++) w = Math.max(w, Math.abs(a[i] - b[i]) / (atol + rtol * Math.abs(b[i])));
  return Number.isNaN(w) ? Infinity : w;
}
