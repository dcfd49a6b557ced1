/**
 * Float64 LLM Surgeon reference: the Kronecker-factored OBS updates and costs against the dense
 * closed form with F = G⊗A built explicitly (row-major vec), chunking semantics, and refPrune's
 * invariants on a tiny random OPT (exact parameter budget, exact 2:4, pruned entries exactly 0,
 * dead-unit propagation, input untouched).
 */
import { describe, expect, it } from 'vitest';
import { spdInverse, spdSolve, subMatrix } from '../src/reference/dense';
import { prunableLayers, type RefOpt } from '../src/reference/opt';
import {
  chunkedElementUpdate, dampedInverse, elementCosts, getWPrime, refPrune, removedParams, rowColCosts, rowColUpdate,
  type LayerProblem,
} from '../src/reference/surgeon';
import { cloneOpt, tinyOpt } from '../src/reference/tinyopt';
import { randn, rng } from './helpers/rng';

/** Random SPD n×n with condition ~1e2: M Mᵀ/n + 0.05·I. */
function spd(n: number, seed: number): Float64Array {
  const m = randn(n * n, seed), out = new Float64Array(n * n);
  for (let i = 0; i < n; i++) for (let j = 0; j < n; j++) {
    let s = 0;
    for (let k = 0; k < n; k++) s += m[i * n + k] * m[j * n + k];
    out[i * n + j] = s / n + (i === j ? 0.05 : 0);
  }
  return out;
}
const damp = (M: Float64Array, n: number, lam: number): Float64Array => {
  let mean = 0;
  for (let i = 0; i < n; i++) mean += M[i * n + i] / n;
  return M.map((v, i) => (i % (n + 1) === 0 ? v + lam * mean : v));
};

/** A full-rank layer problem plus the dense inverse Fisher kron(G_d, A_d)⁻¹ in row-major vec order. */
function problem(R: number, C: number, seed: number, lamG = 0.1, lamA = 0.01): { p: LayerProblem; Finv: Float64Array; n: number } {
  const C1 = C + 1, G = spd(R, seed + 1), A = spd(C1, seed + 2);
  const all = (k: number): number[] => Array.from({ length: k }, (_, i) => i);
  const p: LayerProblem = {
    name: 'x', R, C, C1, W: randn(R * C1, seed), A, G, liveRows: all(R), liveCols: all(C1),
    Ginv: dampedInverse(G, R, all(R), lamG), Ainv: dampedInverse(A, C1, all(C1), lamA),
  };
  const Gd = damp(G, R, lamG), Ad = damp(A, C1, lamA), n = R * C1, F = new Float64Array(n * n);
  for (let i = 0; i < R; i++) for (let j = 0; j < C1; j++) for (let k = 0; k < R; k++) for (let l = 0; l < C1; l++) {
    F[(i * C1 + j) * n + k * C1 + l] = Gd[i * R + k] * Ad[j * C1 + l];
  }
  return { p, Finv: spdInverse(F, n), n };
}

/** Dense OBS: θ − F⁻¹E_Q(E_QᵀF⁻¹E_Q)⁻¹E_Qᵀθ, and its loss ½θ_Qᵀ(E_QᵀF⁻¹E_Q)⁻¹θ_Q. */
function denseObs(theta: Float64Array, Finv: Float64Array, n: number, Q: number[]): { theta: Float64Array; loss: number } {
  const x = spdSolve(subMatrix(Finv, n, Q), Float64Array.from(Q, (q) => theta[q]), Q.length, 1);
  const out = Float64Array.from(theta);
  for (let i = 0; i < n; i++) Q.forEach((q, a) => { out[i] -= Finv[i * n + q] * x[a]; });
  return { theta: out, loss: 0.5 * Q.reduce((s, q, a) => s + theta[q] * x[a], 0) };
}

// Both sides are float64 solves of systems with condition ≲ 1e4: 1e-10 relative to max|W| is ample.
function expectClose(a: Float64Array, b: Float64Array): void {
  const scale = Math.max(...Array.from(b, Math.abs));
  for (let i = 0; i < a.length; i++) expect(Math.abs(a[i] - b[i])).toBeLessThanOrEqual(1e-10 * scale);
}
const zeroAt = (x: Float64Array, Q: number[]): Float64Array => { const y = Float64Array.from(x); for (const q of Q) y[q] = 0; return y; };
const sel = (n: number, idx: number[]): Uint8Array => { const s = new Uint8Array(n); for (const i of idx) s[i] = 1; return s; };

describe('Kronecker OBS algebra against the dense F = G⊗A', () => {
  const R = 4, C = 5, C1 = 6;
  const { p, Finv, n } = problem(R, C, 1);
  const rowQ = (r: number): number[] => Array.from({ length: C1 }, (_, j) => r * C1 + j);
  const colQ = (c: number): number[] => Array.from({ length: R }, (_, i) => i * C1 + c);

  it('single-row and correlated two-row updates', () => {
    expectClose(rowColUpdate(p, sel(R, [2]), sel(C1, [])), zeroAt(denseObs(p.W, Finv, n, rowQ(2)).theta, rowQ(2)));
    const Q = [...rowQ(0), ...rowQ(3)];
    expectClose(rowColUpdate(p, sel(R, [0, 3]), sel(C1, [])), zeroAt(denseObs(p.W, Finv, n, Q).theta, Q));
  });

  it('correlated column updates (bias column included) and the independent ablation', () => {
    const Q = [...colQ(1), ...colQ(5)];
    expectClose(rowColUpdate(p, sel(R, []), sel(C1, [1, 5])), zeroAt(denseObs(p.W, Finv, n, Q).theta, Q));
    // independent = sum of the single-row OBS updates
    const sum = Float64Array.from(p.W);
    for (const r of [0, 3]) denseObs(p.W, Finv, n, rowQ(r)).theta.forEach((v, i) => { sum[i] += v - p.W[i]; });
    expectClose(rowColUpdate(p, sel(R, [0, 3]), sel(C1, []), true), zeroAt(sum, [...rowQ(0), ...rowQ(3)]));
  });

  it('row, column and element costs equal the dense OBS loss', () => {
    const exact = rowColCosts(problem(R, C, 1, 0.1, 0).p, 'surgeon'); // row cost uses undamped A: λ_A = 0
    expect(exact.row[1]).toBeCloseTo(denseObs(p.W, problem(R, C, 1, 0.1, 0).Finv, n, rowQ(1)).loss, 10);
    const pc = problem(R, C, 1, 0, 0.01);
    expect(rowColCosts(pc.p, 'surgeon').col[4]).toBeCloseTo(denseObs(p.W, pc.Finv, n, colQ(4)).loss, 10);
    const ec = elementCosts(p, 'surgeon');
    for (const q of [0, 7, 17, 23]) expect(ec[q]).toBeCloseTo(denseObs(p.W, Finv, n, [q]).loss, 10);
  });

  it('one chunk of elements equals the joint OBS; several chunks equal sequential OBS on the updated θ', () => {
    const Q = [1, 4, 6, 8, 9, 11, 14, 20, 21, 22, 23]; // row counts 2, 4, 1, 4
    expectClose(chunkedElementUpdate(p, sel(R * C1, Q), 2000), zeroAt(denseObs(p.W, Finv, n, Q).theta, Q));
    // maxChunk 5: [row0] (2; adding row1's 4 would exceed 5), [row1, row2] (4 + 1), [row3] (4)
    let theta = p.W;
    for (const chunk of [[1, 4], [6, 8, 9, 11, 14], [20, 21, 22, 23]]) theta = denseObs(theta, Finv, n, chunk).theta;
    expectClose(chunkedElementUpdate(p, sel(R * C1, Q), 5), zeroAt(theta, Q));
    // maxChunk 3: the 4-entry rows are chunks of their own: [row0], [row1], [row2], [row3]
    theta = p.W;
    for (const chunk of [[1, 4], [6, 8, 9, 11], [14], [20, 21, 22, 23]]) theta = denseObs(theta, Finv, n, chunk).theta;
    expectClose(chunkedElementUpdate(p, sel(R * C1, Q), 3), zeroAt(theta, Q));
  });
});

const CFG = { layers: 2, d: 16, heads: 4, ffn: 32, vocab: 64, maxPos: 16 };
function calib(seed: number): number[][] {
  const r = rng(seed);
  return Array.from({ length: 4 }, () => Array.from({ length: 12 }, () => Math.floor(r() * CFG.vocab)));
}
const layers = prunableLayers(CFG);
function wPrimes(w: Map<string, Float64Array>): Map<string, Float64Array> {
  const m: RefOpt = { cfg: CFG, w };
  return new Map(layers.map(({ name, R, C }) => [name, getWPrime(m, name, R, C)]));
}
/** A tiny OPT whose layer-0 fc1 unit `u` (weights and bias) is zero: fc2's input column u never fires. */
function withDeadUnit(u: number): RefOpt {
  const m = tinyOpt({ ...CFG, seed: 3 });
  const p = 'model.decoder.layers.0.fc1';
  m.w.get(`${p}.weight`)!.fill(0, u * CFG.d, (u + 1) * CFG.d);
  m.w.get(`${p}.bias`)![u] = 0;
  return m;
}
function expectMasksZero(res: ReturnType<typeof refPrune>): void {
  const wp = wPrimes(res.weights);
  for (const [name, mask] of res.masks) mask.forEach((b, i) => { if (b) expect(wp.get(name)![i]).toBe(0); });
}

describe('refPrune on a tiny OPT', () => {
  it('structured: exact parameter budget every shot, input untouched, masks exactly zero', () => {
    const m = tinyOpt({ ...CFG, seed: 2 }), before = cloneOpt(m);
    const res = refPrune(m, calib(1), { structure: 'rows-cols', sparsity: 0.5, shots: 3, method: 'surgeon' });
    expect(m.w).toEqual(before.w);
    const total = layers.reduce((s, l) => s + l.R * (l.C + 1), 0);
    res.shots.forEach((s, i) => {
      const acc = s.structured!;
      expect(s.target).toBeCloseTo(((i + 1) * 0.5) / 3, 15);
      expect(acc.removed).toBeLessThanOrEqual(s.target * total);
      expect(acc.nextRemoved).toBeGreaterThan(s.target * total); // the bound is tight
      expect(s.zeros).toBe(acc.removed);
      s.layers.forEach((l, k) => expect(l.zeros).toBe(removedParams(layers[k].R, layers[k].C + 1, l.rows!, l.cols!)));
    });
    const wp = wPrimes(res.weights);
    let removed = 0;
    for (const { name, R, C } of layers) { // zeros are exactly the union of whole removed rows and columns
      const W = wp.get(name)!, C1 = C + 1;
      const rows = Array.from({ length: R }, (_, r) => W.subarray(r * C1, (r + 1) * C1).every((v) => v === 0)).filter(Boolean).length;
      const cols = Array.from({ length: C1 }, (_, c) => Array.from({ length: R }, (_, r) => W[r * C1 + c]).every((v) => v === 0)).filter(Boolean).length;
      removed += removedParams(R, C1, rows, cols);
    }
    expect(removed).toBe(res.shots[2].zeros);
    expectMasksZero(res);
  });

  it('2:4: every group of every layer has ≥ 2 zeros, the bias column is never pruned (dead column present)', () => {
    const m = withDeadUnit(5);
    const res = refPrune(m, calib(2), { structure: '2:4', sparsity: 0.5, shots: 2, method: 'surgeon', maxChunk: 64 });
    const wp = wPrimes(res.weights);
    for (const { name, R, C } of layers) {
      const W = wp.get(name)!;
      for (let r = 0; r < R; r++) {
        if (!(name === 'model.decoder.layers.0.fc1' && r === 5)) expect(W[r * (C + 1) + C]).not.toBe(0); // the dead row's bias was 0
        for (let g = 0; g < C / 4; g++) {
          const z = [0, 1, 2, 3].filter((k) => W[r * (C + 1) + 4 * g + k] === 0).length;
          expect(z).toBeGreaterThanOrEqual(2);
        }
      }
      expect(res.masks.get(name)!.reduce((a, b) => a + b, 0)).toBe(R * C / 2);
    }
    expectMasksZero(res);
    expect(() => refPrune(tinyOpt({ ...CFG, ffn: 30, seed: 1 }), calib(2), { structure: '2:4', sparsity: 0.5, shots: 1, method: 'surgeon' })).toThrow(/divisible by 4/);
  });

  it('unstructured: the last shot selects every cost ≤ τ at ⌊s·N⌋, zeros ≥ s·N, chunked updates stay finite', () => {
    const res = refPrune(tinyOpt({ ...CFG, seed: 4 }), calib(3), { structure: 'element', sparsity: 0.5, shots: 2, method: 'surgeon', maxChunk: 50 });
    const last = res.shots[1];
    const selected = [...res.masks.values()].reduce((s, m) => s + m.reduce((a, b) => a + b, 0), 0);
    expect(selected).toBeGreaterThanOrEqual(Math.floor(0.5 * last.total) + 1);
    expect(last.zeros).toBe(selected);
    for (const w of res.weights.values()) expect(w.every(Number.isFinite)).toBe(true);
    expectMasksZero(res);
  });

  it('dead units: a zero fc1 row makes fc2 column dead; structure propagates to the next shot', () => {
    const u = 5, m = withDeadUnit(u), fc2 = 'model.decoder.layers.0.fc2', fc1 = 'model.decoder.layers.0.fc1';
    for (const structure of ['rows-cols', 'element'] as const) {
      const res = refPrune(m, calib(4), { structure, sparsity: 0.2, shots: 1, method: 'surgeon' });
      const l1 = res.shots[0].layers.find((l) => l.name === fc1)!, l2 = res.shots[0].layers.find((l) => l.name === fc2)!;
      expect(l1.liveRows).toBe(CFG.ffn - 1);
      expect(l2.liveCols).toBe(CFG.ffn); // C1 = ffn + 1 columns, one dead
      const W = wPrimes(res.weights).get(fc2)!, mask = res.masks.get(fc2)!;
      for (let r = 0; r < CFG.d; r++) { expect(W[r * (CFG.ffn + 1) + u]).toBe(0); expect(mask[r * (CFG.ffn + 1) + u]).toBe(1); }
    }
    // Two shots: fc1 rows removed by shot 1 (identical to a 1-shot run at s/2) are dead fc2 columns at shot 2.
    const one = refPrune(m, calib(4), { structure: 'rows-cols', sparsity: 0.2, shots: 1, method: 'surgeon' });
    const two = refPrune(m, calib(4), { structure: 'rows-cols', sparsity: 0.4, shots: 2, method: 'surgeon' });
    for (let l = 0; l < CFG.layers; l++) {
      const W1 = wPrimes(one.weights).get(`model.decoder.layers.${l}.fc1`)!;
      const dead = Array.from({ length: CFG.ffn }, (_, r) => r).filter((r) => W1.subarray(r * (CFG.d + 1), (r + 1) * (CFG.d + 1)).every((v) => v === 0));
      expect(dead.length).toBeGreaterThan(0);
      const info = two.shots[1].layers.find((x) => x.name === `model.decoder.layers.${l}.fc2`)!;
      expect(info.liveCols).toBeLessThanOrEqual(CFG.ffn + 1 - dead.length);
      const W2 = wPrimes(two.weights).get(`model.decoder.layers.${l}.fc2`)!;
      for (const r of dead) for (let i = 0; i < CFG.d; i++) expect(W2[i * (CFG.ffn + 1) + r]).toBe(0);
    }
  });

  it('baselines: magnitude prunes the globally smallest |w|; K-OBD / L-OBD keep the exact structured budget', () => {
    const m = tinyOpt({ ...CFG, seed: 6 });
    const res = refPrune(m, calib(5), { structure: 'element', sparsity: 0.3, shots: 1, method: 'magnitude' });
    const before = wPrimes(m.w), after = wPrimes(res.weights);
    const all = [...before.values()].flatMap((w) => Array.from(w, Math.abs)).sort((a, b) => a - b);
    const tau = all[Math.floor(0.3 * all.length)];
    for (const [name, w] of before) w.forEach((v, i) => expect(after.get(name)![i]).toBe(Math.abs(v) <= tau ? 0 : v));
    for (const method of ['kobd', 'lobd'] as const) {
      const r = refPrune(m, calib(5), { structure: 'rows-cols', sparsity: 0.3, shots: 2, method });
      for (const s of r.shots) { expect(s.zeros).toBe(s.structured!.removed); expect(s.structured!.nextRemoved).toBeGreaterThan(s.target * s.total); }
      expectMasksZero(r);
    }
    expect(() => refPrune(m, calib(5), { structure: 'element', sparsity: 1, shots: 1, method: 'surgeon' })).toThrow(/sparsity/);
  });
});
