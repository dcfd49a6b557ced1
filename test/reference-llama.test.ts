/**
 * Float64 Llama reference (src/reference/llama.ts) and the architecture-generic reference pipeline:
 * finite-difference checks of the backward (GQA and MQA, tied and untied head, with and without
 * Qwen2-style q/k/v biases), grouped-query attention against the equivalent multi-head model, the
 * llama-micro perplexity fixture (FIXTURES.md), K-FAC without the ones feature on bias-free layers,
 * and refPrune / SparseGPT / Wanda / LoRA on a tiny Llama with exact accounting.
 */
import { describe, expect, it } from 'vitest';
import { refKfac, withOnes } from '../src/reference/kfac';
import { refLoraInit, refLoraStep, refMerged } from '../src/reference/lora';
import { refBackward, refForward, refLoss, type RefLlama } from '../src/reference/llama';
import { cloneModel, headMatrix, isLlama, prunableLayers, refPerplexity } from '../src/reference/model';
import { refSparseGPT, refTargetCount, refWanda } from '../src/reference/peers';
import { getWPrime, refPrune, removedParams } from '../src/reference/surgeon';
import { cloneLlama, tinyLlama, type TinyLlamaOptions } from '../src/reference/tinyllama';
import { tinyOpt } from '../src/reference/tinyopt';
import { loadRefLlama, mistralTestIds, SHARED } from './helpers/llama-fixture';
import { rng } from './helpers/rng';

const BASE = { layers: 2, d: 16, heads: 4, ffn: 24, vocab: 64, maxPos: 16 };
const ids = (n: number, seed: number, V = BASE.vocab): number[] => { const r = rng(seed); return Array.from({ length: n }, () => Math.floor(r() * V)); };
const calib = (seed: number, n = 4, T = 12): number[][] => Array.from({ length: n }, (_, i) => ids(T, seed * 100 + i));

// Central differences as in reference-opt.test.ts: h = 1e-5 gives truncation and rounding ~1e-10
// for losses of a few nats; 1e-8 absolute + 1e-6 relative leaves two orders of margin.
const H = 1e-5;
const close = (fd: number, an: number): boolean => Math.abs(fd - an) <= 1e-8 + 1e-6 * Math.abs(an);

type Variant = [string, Partial<TinyLlamaOptions>];
const VARIANTS: Variant[] = [
  ['GQA 4/2, untied, no bias', { kvHeads: 2 }],
  ['MQA 4/1, tied, q/k/v bias', { kvHeads: 1, tied: true, qkvBias: true }],
  ['GQA 4/2, tied, q/k/v bias, headDim 6, theta 50', { kvHeads: 2, tied: true, qkvBias: true, headDim: 6, ropeTheta: 50 }],
  ['MQA 4/1, untied, no bias, theta 50', { kvHeads: 1, ropeTheta: 50 }],
];
const make = (v: Partial<TinyLlamaOptions>, seed = 7): RefLlama => tinyLlama({ ...BASE, ...v, seed });

describe('Llama float64 reference: gradients', () => {
  const seq = ids(12, 3);

  it.each(VARIANTS)('weight gradients match central differences (%s)', (_label, v) => {
    const m = make(v);
    expect(m.w.has('lm_head.weight')).toBe(!v.tied);
    expect(m.w.has('model.layers.0.self_attn.k_proj.bias')).toBe(!!v.qkvBias);
    const labels = ids(11, 99);
    for (const lab of [undefined, labels]) {
      const b = refBackward(m, seq, { labels: lab });
      expect(Math.abs(b.loss - refLoss(m, seq, { labels: lab }))).toBeLessThan(1e-12);
      const r = rng(5);
      let checked = 0;
      for (const [name, w] of m.w) {
        const g = b.dW.get(name)!;
        const picks = Array.from({ length: 4 }, () => Math.floor(r() * w.length));
        if (name === 'model.embed_tokens.weight') picks.push(seq[4] * BASE.d + 3, seq[11] * BASE.d + 1); // rows actually used
        for (const i of picks) {
          const p = cloneLlama(m), q = p.w.get(name)!;
          q[i] = w[i] + H;
          const up = refLoss(p, seq, { labels: lab });
          q[i] = w[i] - H;
          const fd = (up - refLoss(p, seq, { labels: lab })) / (2 * H);
          if (!close(fd, g[i])) throw new Error(`${name}[${i}]: fd ${fd} vs ${g[i]}`);
          checked++;
        }
      }
      expect(checked).toBeGreaterThan(80);
    }
  });

  it.each(VARIANTS)('output gradients dL/dy of every prunable linear match central differences (%s)', (_label, v) => {
    const m = make(v), b = refBackward(m, seq), T = seq.length, r = rng(11);
    const layers = prunableLayers(m.cfg);
    expect(layers.map((l) => l.name.split('.').slice(-1)[0]).slice(0, 7)).toEqual(['q_proj', 'k_proj', 'v_proj', 'o_proj', 'gate_proj', 'up_proj', 'down_proj']);
    const kd = m.cfg.kvHeads * m.cfg.headDim, qd = m.cfg.heads * m.cfg.headDim;
    expect(layers.slice(0, 7).map((l) => [l.R, l.C, l.bias])).toEqual([
      [qd, 16, !!v.qkvBias], [kd, 16, !!v.qkvBias], [kd, 16, !!v.qkvBias], [16, qd, false], [24, 16, false], [24, 16, false], [16, 24, false],
    ]);
    for (const { name, R, C } of layers) {
      const dy = b.outputGrads.get(name)!;
      expect(dy.length).toBe(T * R);
      expect(b.layerInputs.get(name)!.length).toBe(T * C);
      for (let k = 0; k < 4; k++) {
        const i = Math.floor(r() * (T - 1) * R);
        const delta = new Float64Array(T * R);
        delta[i] = H;
        const up = refLoss(m, seq, { outputDelta: new Map([[name, delta]]) });
        delta[i] = -H;
        const fd = (up - refLoss(m, seq, { outputDelta: new Map([[name, delta]]) })) / (2 * H);
        if (!close(fd, dy[i])) throw new Error(`${name} dy[${i}]: fd ${fd} vs ${dy[i]}`);
      }
      for (let j = 0; j < R; j++) expect(Math.abs(dy[(T - 1) * R + j])).toBe(0); // no label at the last position (±0)
    }
  });

  it('is causal; grouped-query attention equals multi-head attention with k/v heads repeated; invFreq overrides theta', () => {
    const m = make({ kvHeads: 2, ropeTheta: 50 }), seq2 = seq.slice();
    seq2[11] = (seq2[11] + 1) % BASE.vocab;
    const a = refForward(m, seq), b = refForward(m, seq2);
    expect(Array.from(b.logits.subarray(0, 11 * BASE.vocab))).toEqual(Array.from(a.logits.subarray(0, 11 * BASE.vocab)));
    // MHA twin: kv head g of the GQA model serves query heads 2g and 2g+1 (h → ⌊h/(heads/kvHeads)⌋).
    const mha = cloneLlama(m), hd = m.cfg.headDim;
    mha.cfg.kvHeads = 4;
    for (let l = 0; l < BASE.layers; l++) for (const s of ['k_proj', 'v_proj']) {
      const name = `model.layers.${l}.self_attn.${s}.weight`, W = m.w.get(name)!, out = new Float64Array(4 * hd * BASE.d);
      for (let h = 0; h < 4; h++) out.set(W.subarray(Math.floor(h / 2) * hd * BASE.d, (Math.floor(h / 2) + 1) * hd * BASE.d), h * hd * BASE.d);
      mha.w.set(name, out);
    }
    const c = refForward(mha, seq);
    for (let i = 0; i < a.logits.length; i++) expect(Math.abs(c.logits[i] - a.logits[i])).toBeLessThan(1e-12);
    // invFreq equal to theta^(−2i/hd) reproduces the default; another table changes the result.
    const inv = Float64Array.from({ length: hd / 2 }, (_, i) => 50 ** (-(2 * i) / hd));
    expect(refLoss({ ...m, cfg: { ...m.cfg, invFreq: inv } }, seq)).toBeCloseTo(a.loss, 13);
    expect(Math.abs(refLoss({ ...m, cfg: { ...m.cfg, invFreq: inv.map((x) => x / 4) } }, seq) - a.loss)).toBeGreaterThan(1e-6);
    expect(() => refForward(m, [1, 2, 64])).toThrow(/token id/);
    expect(isLlama(m)).toBe(true);
    expect(isLlama(tinyOpt({ ...BASE, seed: 1 }))).toBe(false);
    expect(headMatrix(m)).toBe(m.w.get('lm_head.weight'));
  });
});

describe('Llama float64 reference on the llama-micro fixture', () => {
  it('perplexity: 128 × 8 windows → 227.625, 256 × 4 → 215.320 (FIXTURES.md, transformers float64)', async () => {
    const t0 = performance.now();
    const m = await loadRefLlama(`${SHARED}/models/llama-micro`);
    expect(m.cfg).toMatchObject({ layers: 2, d: 64, heads: 4, kvHeads: 2, headDim: 16, ffn: 176, vocab: 32000, maxPos: 2048, eps: 1e-5, ropeTheta: 10000, tied: false, qkvBias: false });
    const test = mistralTestIds();
    expect(test.length).toBe(334661);
    const p128 = refPerplexity(m, test, 128, 8), p256 = refPerplexity(m, test, 256, 4);
    console.log(`[llama-micro f64] ppl 128×8 ${p128.toFixed(6)}, 256×4 ${p256.toFixed(6)} (${((performance.now() - t0) / 1000).toFixed(1)} s)`);
    expect(Math.abs(p128 - 227.625) / 227.625).toBeLessThan(1e-5);
    expect(Math.abs(p256 - 215.32) / 215.32).toBeLessThan(1e-5);
  });
});

describe('generic reference pipeline on a tiny Llama', () => {
  it('K-FAC: A is C×C on bias-free layers, (C+1)² with the ones feature on Qwen2 q/k/v; equals explicit sums; shared inputs share A', () => {
    for (const qkvBias of [false, true]) {
      const m = make({ kvHeads: 2, qkvBias }), seqs = [ids(12, 21), ids(9, 22), ids(12, 23)], N = 33;
      const f = refKfac(m, seqs), bs = seqs.map((s) => refBackward(m, s));
      for (const { name, R, C, bias } of prunableLayers(m.cfg)) {
        const { A, G } = f.get(name)!, C1 = bias ? C + 1 : C;
        expect(f.get(name)!.bias).toBe(bias);
        expect(A.length).toBe(C1 * C1);
        expect(G.length).toBe(R * R);
        const A2 = new Float64Array(C1 * C1);
        bs.forEach((b, si) => {
          const T = seqs[si].length, a0 = b.layerInputs.get(name)!, a = bias ? withOnes(a0, T, C) : a0;
          for (let t = 0; t < T; t++) for (let i = 0; i < C1; i++) for (let j = 0; j < C1; j++) A2[i * C1 + j] += (a[t * C1 + i] * a[t * C1 + j]) / N;
        });
        let scale = 0;
        for (let i = 0; i < C1; i++) scale = Math.max(scale, A2[i * C1 + i]);
        for (let i = 0; i < A.length; i++) expect(Math.abs(A[i] - A2[i])).toBeLessThanOrEqual(1e-13 * scale);
        if (bias) expect(A[C * C1 + C]).toBeCloseTo(1, 14);
      }
      for (let l = 0; l < BASE.layers; l++) {
        const p = `model.layers.${l}.`;
        expect(f.get(`${p}self_attn.k_proj`)!.A).toEqual(f.get(`${p}self_attn.q_proj`)!.A);
        expect(f.get(`${p}self_attn.v_proj`)!.A).toEqual(f.get(`${p}self_attn.q_proj`)!.A);
        expect(f.get(`${p}mlp.up_proj`)!.A).toEqual(f.get(`${p}mlp.gate_proj`)!.A);
      }
    }
    // Dead unit: a zero gate row u makes silu(gate)·up = 0, so down_proj's column u has A_uu = 0.
    const m = make({ kvHeads: 2 }), u = 5;
    m.w.get('model.layers.0.mlp.gate_proj.weight')!.fill(0, u * BASE.d, (u + 1) * BASE.d);
    const A = refKfac(m, calib(1)).get('model.layers.0.mlp.down_proj')!.A;
    expect(A[u * BASE.ffn + u]).toBe(0);
  });

  const wPrimes = (m: RefLlama, w: Map<string, Float64Array>) => new Map(prunableLayers(m.cfg).map(({ name, R, C, bias }) => [name, getWPrime({ ...m, w }, name, R, C, bias)]));

  it.each([['Llama (no bias)', {}], ['Qwen2 (q/k/v bias)', { qkvBias: true }]] as const)('refPrune rows-cols: exact parameter accounting over W\' (%s)', (_l, v) => {
    const m = make({ kvHeads: 2, ...v }, 2), before = cloneModel(m);
    const res = refPrune(m, calib(1), { structure: 'rows-cols', sparsity: 0.4, shots: 2, method: 'surgeon' });
    expect(m.w).toEqual(before.w);
    const layers = prunableLayers(m.cfg), C1 = (l: { C: number; bias: boolean }) => l.C + (l.bias ? 1 : 0);
    const total = layers.reduce((s, l) => s + l.R * C1(l), 0);
    res.shots.forEach((s) => {
      expect(s.total).toBe(total);
      expect(s.structured!.removed).toBeLessThanOrEqual(s.target * total);
      expect(s.structured!.nextRemoved).toBeGreaterThan(s.target * total);
      expect(s.zeros).toBe(s.structured!.removed);
      s.layers.forEach((l, k) => {
        expect(l.total).toBe(layers[k].R * C1(layers[k]));
        expect(l.zeros).toBe(removedParams(layers[k].R, C1(layers[k]), l.rows!, l.cols!));
      });
    });
    let removed = 0;
    const wp = wPrimes(m, res.weights);
    for (const L of layers) {
      const W = wp.get(L.name)!, c1 = C1(L);
      expect(res.masks.get(L.name)!.length).toBe(L.R * c1);
      const rows = Array.from({ length: L.R }, (_, r) => W.subarray(r * c1, (r + 1) * c1).every((x) => x === 0)).filter(Boolean).length;
      const cols = Array.from({ length: c1 }, (_, c) => Array.from({ length: L.R }, (_, r) => W[r * c1 + c]).every((x) => x === 0)).filter(Boolean).length;
      removed += removedParams(L.R, c1, rows, cols);
      res.masks.get(L.name)!.forEach((b, i) => { if (b) expect(W[i]).toBe(0); });
    }
    expect(removed).toBe(res.shots[1].zeros);
  });

  it.each([['Llama (no bias)', {}], ['Qwen2 (q/k/v bias)', { qkvBias: true }]] as const)('refPrune 2:4 exactly 2 zeros per aligned group of 4 real columns, element ≥ ⌊s·N⌋ (%s)', (_l, v) => {
    const m = make({ kvHeads: 2, ...v }, 3);
    const res = refPrune(m, calib(2), { structure: '2:4', sparsity: 0.5, shots: 2, method: 'surgeon', maxChunk: 64 });
    const wp = wPrimes(m, res.weights);
    for (const { name, R, C, bias } of prunableLayers(m.cfg)) {
      const c1 = bias ? C + 1 : C, W = wp.get(name)!, mask = res.masks.get(name)!;
      for (let r = 0; r < R; r++) {
        for (let g = 0; g < C / 4; g++) {
          const at = [0, 1, 2, 3].map((k) => r * c1 + 4 * g + k);
          expect(at.filter((i) => W[i] === 0).length).toBe(2);
          expect(at.filter((i) => mask[i] === 1).length).toBe(2);
        }
        if (bias) { expect(mask[r * c1 + C]).toBe(0); expect(W[r * c1 + C]).not.toBe(0); }
      }
    }
    const el = refPrune(m, calib(2), { structure: 'element', sparsity: 0.5, shots: 2, method: 'surgeon', maxChunk: 50 });
    const last = el.shots[1], selected = [...el.masks.values()].reduce((s, x) => s + x.reduce((a, b) => a + b, 0), 0);
    expect(selected).toBeGreaterThanOrEqual(Math.floor(0.5 * last.total) + 1);
    expect(last.zeros).toBe(selected);
    for (const w of el.weights.values()) expect(w.every(Number.isFinite)).toBe(true);
    expect(() => refPrune(make({ ffn: 22 }), calib(2), { structure: '2:4', sparsity: 0.5, shots: 1, method: 'surgeon' })).toThrow(/divisible by 4/);
  });

  it('refPrune dead unit: a zero up_proj row makes down_proj\'s column dead and pruned', () => {
    const m = make({ kvHeads: 1 }, 4), u = 7;
    m.w.get('model.layers.1.mlp.up_proj.weight')!.fill(0, u * BASE.d, (u + 1) * BASE.d);
    const res = refPrune(m, calib(4), { structure: 'element', sparsity: 0.2, shots: 1, method: 'surgeon' });
    const info = res.shots[0].layers.find((l) => l.name === 'model.layers.1.mlp.down_proj')!;
    expect(info.liveCols).toBe(BASE.ffn - 1);
    const W = res.weights.get('model.layers.1.mlp.down_proj.weight')!;
    for (let r = 0; r < BASE.d; r++) expect(W[r * BASE.ffn + u]).toBe(0);
  });

  it.each([['SparseGPT', refSparseGPT], ['Wanda', refWanda]] as const)('%s runs sequentially on a tiny Qwen2-style Llama: exact counts, biases and other tensors untouched', (_l, fn) => {
    const m = make({ kvHeads: 2, qkvBias: true }, 5), cal = calib(3, 4, 16);
    for (const structure of ['element', '2:4'] as const) {
      const res = fn(m, cal, { structure, sparsity: 0.5, blocksize: 8 });
      const pruned = new Set(prunableLayers(m.cfg).map((l) => `${l.name}.weight`));
      for (const [k, w] of m.w) if (!pruned.has(k)) expect(res.weights.get(k)).toEqual(w);
      for (const { name, R, C } of prunableLayers(m.cfg)) {
        const mk = res.masks.get(name)!, W = res.weights.get(`${name}.weight`)!;
        expect(mk.length).toBe(R * C);
        mk.forEach((b, i) => { if (b) expect(W[i]).toBe(0); });
        const zeros = mk.reduce((a, b) => a + b, 0);
        if (structure === 'element') expect(zeros).toBe(fn === refSparseGPT ? refTargetCount(0.5, R * C) : R * refTargetCount(0.5, C));
        else for (let g = 0; g < R * C; g += 4) expect(mk[g] + mk[g + 1] + mk[g + 2] + mk[g + 3]).toBe(2);
      }
      expect(res.minMargin).toBeGreaterThan(0);
    }
  });

  it('LoRA reference: steps on a tiny Llama lower the batch loss and keep the zero pattern of W0', () => {
    const m = make({ kvHeads: 2 }, 6), r = rng(8);
    const W = m.w.get('model.layers.0.self_attn.q_proj.weight')!;
    for (let i = 0; i < W.length; i++) if (r() < 0.3) W[i] = 0;
    const targets = prunableLayers(m.cfg).filter((l) => /self_attn\.[qv]_proj$/.test(l.name));
    const rank = 2, cfg = { rank, scale: 2, lr: 2e-2 };
    const A0 = targets.map((t) => Float64Array.from({ length: rank * t.C }, () => (r() - 0.5) / Math.sqrt(t.C)));
    const ad = refLoraInit(m, targets, A0, rank), batch = calib(5, 2);
    const losses = [1, 2, 3, 4, 5].map((t) => refLoraStep(m, ad, batch, t, cfg).loss);
    expect(losses[4]).toBeLessThan(losses[0]);
    const merged = refMerged(m, ad, cfg);
    expect(isLlama(merged)).toBe(true);
    const Wm = merged.w.get('model.layers.0.self_attn.q_proj.weight')!;
    W.forEach((x, i) => expect(Wm[i] === 0).toBe(x === 0));
    expect(Wm).not.toEqual(W);
  });
});
