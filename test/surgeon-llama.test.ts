/**
 * pruneModel() on tiny Llamas against the float64 reference refPrune: grouped-query attention, no
 * biases (W' = W, A is C², no ones feature) or Qwen2-style q/k/v biases, one dead gate unit (its
 * down_proj column has A_cc = 0). Exact masks on data without near-ties (test/helpers/surgeon.ts),
 * weights within the OPT tests' error model, exact parameter accounting, 2:4 groups aligned on the real
 * columns, untouched host weights.
 */
import { beforeAll, describe, expect, it } from 'vitest';
import type { GpuContext } from '../src/gpu/context';
import { DecoderModel } from '../src/model/index';
import { prunableLayers, type RefModel } from '../src/reference/model';
import type { RefLlama } from '../src/reference/llama';
import { refPrune, type PruneOptions as RefOptions } from '../src/reference/surgeon';
import { pruneModel } from '../src/surgeon/index';
import { gpu } from './helpers/gpu';
import { f32Llama, llamaCheckpoint } from './helpers/llama';
import { rng } from './helpers/rng';
import { pickSeed, worst, wPrime } from './helpers/surgeon';

const BASE = { layers: 2, d: 16, heads: 4, kvHeads: 2, ffn: 32, vocab: 48, maxPos: 32 };
const DEAD_UNIT = 5;

/** A tiny Llama with gate row DEAD_UNIT of layer 0 zeroed (silu(0)·up = 0: down's column is dead). */
function deadGateModel(seed: number, qkvBias: boolean): RefLlama {
  const m = f32Llama({ ...BASE, qkvBias, seed });
  m.w.get('model.layers.0.mlp.gate_proj.weight')!.fill(0, DEAD_UNIT * BASE.d, (DEAD_UNIT + 1) * BASE.d);
  return m;
}

function calib(seed: number): number[][] {
  const r = rng(seed);
  return Array.from({ length: 4 }, () => Array.from({ length: 12 }, () => Math.floor(r() * BASE.vocab)));
}

let ctx: GpuContext;
beforeAll(async () => { ctx = await gpu(); });

const CASES: Array<[string, RefOptions, boolean]> = [
  ['rows-cols surgeon 30%', { structure: 'rows-cols', sparsity: 0.3, shots: 2, method: 'surgeon' }, false],
  ['rows-cols surgeon 30%, q/k/v biases', { structure: 'rows-cols', sparsity: 0.3, shots: 2, method: 'surgeon' }, true],
  ['element surgeon 30%', { structure: 'element', sparsity: 0.3, shots: 2, method: 'surgeon' }, false],
  ['2:4 surgeon 50%', { structure: '2:4', sparsity: 0.5, shots: 2, method: 'surgeon' }, false],
  ['2:4 surgeon 50%, q/k/v biases', { structure: '2:4', sparsity: 0.5, shots: 2, method: 'surgeon' }, true],
  ['rows-cols kobd 40%', { structure: 'rows-cols', sparsity: 0.4, shots: 2, method: 'kobd' }, false],
];

describe('pruneModel on tiny Llamas vs refPrune', () => {
  it.each(CASES)('%s: same masks, weights within tolerance, exact accounting', async (_label, ro, qkvBias) => {
    const make = (seed: number) => ({ m: deadGateModel(seed, qkvBias) as RefModel, calib: calib(seed + 1000) });
    const seed = pickSeed([11, 12, 13, 14, 15, 16, 17, 18, 19, 20], make, ro);
    const { m, calib: cal } = make(seed);
    const ref = refPrune(m, cal, ro);
    const ckpt = llamaCheckpoint(m as RefLlama);
    const before = new Map([...ckpt.tensors].map(([k, v]) => [k, Float32Array.from(v)]));
    const model = await DecoderModel.fromCheckpoint(ctx, ckpt);
    const rep = await pruneModel(ctx, model, cal.map((s) => Int32Array.from(s)), { structure: ro.structure, sparsity: ro.sparsity, shots: ro.shots, method: ro.method });
    const w = await model.exportWeights();
    model.dispose();
    for (const [k, v] of before) expect(ckpt.tensors.get(k)).toEqual(v); // host arrays untouched
    let zeros = 0, params = 0, worstW = 0;
    for (const { name, R, C, bias } of prunableLayers(m.cfg)) {
      const g = wPrime(w, name, R, C), r = wPrime(ref.weights, name, R, C);
      expect(g.length, name).toBe(R * (C + (bias ? 1 : 0)));
      expect(Array.from(g, (x) => (x === 0 ? 1 : 0)), name).toEqual(Array.from(r, (x) => (x === 0 ? 1 : 0)));
      worstW = Math.max(worstW, worst(g, r, 2e-5, 2e-4)); // error model as test/surgeon-structured.test.ts
      if (ro.structure === '2:4') {
        for (let row = 0; row < R; row++) for (let q = 0; q < C; q += 4) {
          const z = [0, 1, 2, 3].filter((k) => g[row * (C + (bias ? 1 : 0)) + q + k] === 0).length;
          // at 50% every aligned group of 4 real columns holds at least 2 zeros (more only where a unit was dead)
          expect(z, `${name} row ${row} group ${q / 4}`).toBeGreaterThanOrEqual(2);
        }
      }
      zeros += g.filter((x) => x === 0).length;
      params += g.length;
    }
    console.log(`[llama ${_label}] seed ${seed} worst weight ratio ${worstW.toFixed(3)}; ${JSON.stringify(rep.shots.map((s) => [s.target, s.achieved]))}`);
    expect(worstW).toBeLessThanOrEqual(1);
    expect(rep.achievedSparsity).toBe(zeros / params);
    expect(rep.shots.map((s) => s.achieved)).toEqual(ref.shots.map((s) => s.zeros / s.total));
    expect(rep.byModuleType).toHaveProperty('gate_proj');
    expect(Object.keys(rep.byModuleType)).toEqual(['q_proj', 'k_proj', 'v_proj', 'o_proj', 'gate_proj', 'up_proj', 'down_proj']);
    if (ro.structure === 'rows-cols') {
      // the dead gate unit goes (cost 0), and down's matching column with it
      const down = wPrime(w, 'model.layers.0.mlp.down_proj', BASE.d, BASE.ffn);
      for (let r = 0; r < BASE.d; r++) expect(down[r * BASE.ffn + DEAD_UNIT]).toBe(0);
    }
  });
});
