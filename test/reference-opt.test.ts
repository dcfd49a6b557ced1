/**
 * Float64 OPT reference: finite-difference checks of the backward (every parameter tensor and every
 * prunable layer output), causality, K-FAC factors against explicit per-token sums, balancing, and
 * the opt-micro perplexity fixture (FIXTURES.md: 128 × 8 windows → 676.20930).
 */
import { readFileSync, existsSync } from 'node:fs';
import { resolve } from 'node:path';
import { describe, expect, it } from 'vitest';
import { cholesky } from '../src/reference/dense';
import { balanceFactors, refKfac, withOnes } from '../src/reference/kfac';
import { prunableLayers, refBackward, refForward, refLoss, refPerplexity, type RefOpt } from '../src/reference/opt';
import { cloneOpt, tinyOpt } from '../src/reference/tinyopt';
import { rng } from './helpers/rng';

const CFG = { layers: 2, d: 16, heads: 4, ffn: 32, vocab: 64, maxPos: 16 };
const ids = (n: number, seed: number, V = CFG.vocab): number[] => { const r = rng(seed); return Array.from({ length: n }, () => Math.floor(r() * V)); };

// Central differences, step h: truncation ≈ h²|f'''|/6 ~ 1e-10, rounding ≈ ε|L|/h ~ 1e-10 for
// L ≈ log 64 and h = 1e-5, so 1e-8 absolute + 1e-6 relative leaves two orders of margin.
const H = 1e-5;
const close = (fd: number, an: number): boolean => Math.abs(fd - an) <= 1e-8 + 1e-6 * Math.abs(an);

describe('OPT float64 reference', () => {
  const m = tinyOpt({ ...CFG, seed: 7 });
  const seq = ids(12, 3);

  it('weight gradients match central differences (every tensor, sampled entries, true and custom labels)', () => {
    const labels = ids(11, 99);
    for (const lab of [undefined, labels]) {
      const b = refBackward(m, seq, { labels: lab });
      expect(Math.abs(b.loss - refLoss(m, seq, { labels: lab }))).toBeLessThan(1e-12);
      const r = rng(5);
      let checked = 0;
      for (const [name, w] of m.w) {
        const g = b.dW.get(name)!;
        // Embedding rows of unused tokens/positions have zero gradient; sample used ones too.
        const picks = Array.from({ length: 6 }, () => Math.floor(r() * w.length));
        if (name.endsWith('embed_tokens.weight')) picks.push(seq[4] * CFG.d + 3, seq[11] * CFG.d + 1);
        if (name.endsWith('embed_positions.weight')) picks.push(2 * CFG.d + 5, 13 * CFG.d + 7);
        for (const i of picks) {
          const p = cloneOpt(m), q = p.w.get(name)!;
          q[i] = w[i] + H;
          const up = refLoss(p, seq, { labels: lab });
          q[i] = w[i] - H;
          const dn = refLoss(p, seq, { labels: lab });
          const fd = (up - dn) / (2 * H);
          if (!close(fd, g[i])) throw new Error(`${name}[${i}]: fd ${fd} vs ${g[i]}`);
          checked++;
        }
      }
      expect(checked).toBeGreaterThan(100);
    }
  });

  it('output gradients dL/dy of every prunable linear match central differences', () => {
    const b = refBackward(m, seq);
    const T = seq.length, r = rng(11);
    for (const { name, R } of prunableLayers(m.cfg)) {
      const dy = b.outputGrads.get(name)!;
      expect(dy.length).toBe(T * R);
      for (let k = 0; k < 5; k++) {
        const i = Math.floor(r() * T * R);
        const delta = new Float64Array(T * R);
        delta[i] = H;
        const up = refLoss(m, seq, { outputDelta: new Map([[name, delta]]) });
        delta[i] = -H;
        const dn = refLoss(m, seq, { outputDelta: new Map([[name, delta]]) });
        const fd = (up - dn) / (2 * H);
        if (!close(fd, dy[i])) throw new Error(`${name} dy[${i}]: fd ${fd} vs ${dy[i]}`);
      }
      // The last position has no label and nothing after it: g = 0 there.
      for (let j = 0; j < R; j++) expect(dy[(T - 1) * R + j]).toBe(0);
    }
  });

  it('is causal and its logits agree with the loss', () => {
    const a = refForward(m, seq), alt = seq.slice();
    alt[11] = (alt[11] + 1) % CFG.vocab;
    const b = refForward(m, alt);
    expect(Array.from(b.logits.subarray(0, 11 * CFG.vocab))).toEqual(Array.from(a.logits.subarray(0, 11 * CFG.vocab)));
    let ce = 0;
    for (let t = 0; t < 11; t++) {
      const row = Array.from(a.logits.subarray(t * CFG.vocab, (t + 1) * CFG.vocab));
      const mx = Math.max(...row);
      ce += mx + Math.log(row.reduce((s, v) => s + Math.exp(v - mx), 0)) - row[seq[t + 1]];
    }
    expect(Math.abs(ce / 11 - a.loss)).toBeLessThan(1e-12);
    expect(() => refForward(m, [1, 2, 64])).toThrow(/token id/);
  });

  it('K-FAC A and G equal explicit per-token sums, are symmetric PSD, q/k/v share A', () => {
    const seqs = [ids(12, 21), ids(9, 22), ids(12, 23)];
    const f = refKfac(m, seqs);
    const N = 33;
    const bs = seqs.map((s) => refBackward(m, s));
    for (const { name, R, C } of prunableLayers(m.cfg)) {
      const { A, G } = f.get(name)!;
      const A2 = new Float64Array((C + 1) ** 2), G2 = new Float64Array(R * R);
      bs.forEach((b, si) => {
        const T = seqs[si].length, a = withOnes(b.layerInputs.get(name)!, T, C), g = b.outputGrads.get(name)!;
        for (let t = 0; t < T; t++) {
          for (let i = 0; i <= C; i++) for (let j = 0; j <= C; j++) A2[i * (C + 1) + j] += a[t * (C + 1) + i] * a[t * (C + 1) + j] / N;
          for (let i = 0; i < R; i++) for (let j = 0; j < R; j++) G2[i * R + j] += g[t * R + i] * g[t * R + j] / N;
        }
      });
      for (const [X, Y, n] of [[A, A2, C + 1], [G, G2, R]] as const) {
        let scale = 0;
        for (let i = 0; i < n; i++) scale = Math.max(scale, Y[i * n + i]);
        for (let i = 0; i < n * n; i++) expect(Math.abs(X[i] - Y[i])).toBeLessThanOrEqual(1e-13 * scale);
        for (let i = 0; i < n; i++) for (let j = 0; j < n; j++) expect(X[i * n + j]).toBe(X[j * n + i]);
        const jitter = Float64Array.from(X);
        for (let i = 0; i < n; i++) jitter[i * n + i] += 1e-12 * scale;
        expect(() => cholesky(jitter, n)).not.toThrow();
      }
      expect(A[C * (C + 1) + C]).toBeCloseTo(1, 14); // ones feature
    }
    for (let l = 0; l < CFG.layers; l++) {
      const p = `model.decoder.layers.${l}.self_attn.`;
      expect(f.get(`${p}k_proj`)!.A).toEqual(f.get(`${p}q_proj`)!.A);
      expect(f.get(`${p}v_proj`)!.A).toEqual(f.get(`${p}q_proj`)!.A);
    }
    // Sampled-label (true) Fisher: same A, a different PSD G, deterministic for a seed.
    const s1 = refKfac(m, seqs, { fisherSamples: 3, seed: 4 }), s2 = refKfac(m, seqs, { fisherSamples: 3, seed: 4 });
    const name = 'model.decoder.layers.1.fc1';
    expect(s1.get(name)!.A).toEqual(f.get(name)!.A);
    expect(s1.get(name)!.G).toEqual(s2.get(name)!.G);
    expect(s1.get(name)!.G).not.toEqual(f.get(name)!.G);
  });

  it('balanceFactors keeps G⊗A, equalises the Frobenius norms, zeroes both if one is zero', () => {
    const f = refKfac(m, [ids(10, 31)]).get('model.decoder.layers.0.fc2')!;
    const { A, G } = balanceFactors(f.A, f.G);
    const fro = (x: Float64Array): number => Math.sqrt(x.reduce((s, v) => s + v * v, 0));
    expect(fro(A) / fro(G)).toBeCloseTo(1, 12);
    const i = f.A.length - 1, j = 0; // the ones feature's A entry and G_00 are nonzero
    expect((A[i] * G[j]) / (f.A[i] * f.G[j])).toBeCloseTo(1, 12);
    const z = balanceFactors(f.A, new Float64Array(f.G.length));
    expect(z.A.every((v) => v === 0)).toBe(true);
  });
});

/** Minimal fp16 safetensors reader (test-only): header JSON + little-endian F16 payload → float64. */
function loadSafetensorsF16(path: string): Map<string, Float64Array> {
  const buf = readFileSync(path);
  const n = Number(buf.readBigUInt64LE(0));
  const header = JSON.parse(buf.subarray(8, 8 + n).toString('utf8')) as Record<string, { dtype: string; data_offsets: [number, number] }>;
  const out = new Map<string, Float64Array>();
  for (const [name, t] of Object.entries(header)) {
    if (name === '__metadata__') continue;
    if (t.dtype !== 'F16') throw new Error(`${name}: dtype ${t.dtype}`);
    const [a, b] = t.data_offsets, base = 8 + n + a, x = new Float64Array((b - a) / 2);
    for (let i = 0; i < x.length; i++) {
      const h = buf.readUInt16LE(base + 2 * i), e = (h >> 10) & 31, f = h & 1023, s = h >> 15 ? -1 : 1;
      x[i] = e === 0 ? s * f * 2 ** -24 : e === 31 ? (f ? NaN : s * Infinity) : s * (1 + f / 1024) * 2 ** (e - 15);
    }
    out.set(name, x);
  }
  return out;
}

describe('OPT float64 reference on the opt-micro fixture', () => {
  const shared = resolve(import.meta.dirname, '../../shared');
  const dir = `${shared}/models/opt-micro`;
  const idsPath = `${shared}/data/wikitext-2-raw/wiki.test.opt-ids.json`;
  it('perplexity of the first 8 windows of 128 tokens is 676.20930 (FIXTURES.md)', () => {
    expect(existsSync(`${dir}/model.safetensors`) && existsSync(idsPath)).toBe(true);
    const m: RefOpt = { cfg: { layers: 2, d: 64, heads: 4, ffn: 256, vocab: 50272, maxPos: 2048 }, w: loadSafetensorsF16(`${dir}/model.safetensors`) };
    const test = JSON.parse(readFileSync(idsPath, 'utf8')) as number[];
    const ppl = refPerplexity(m, test, 128, 8);
    expect(Math.abs(ppl - 676.2093) / 676.2093).toBeLessThan(1e-6); // fixture has 8 significant digits
  });
});
