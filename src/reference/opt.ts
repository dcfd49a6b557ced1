/**
 * Float64 reference of Hugging Face OPTForCausalLM (pre-LayerNorm, ReLU FFN, learned positions with
 * offset 2, tied LM head): forward, mean next-token cross-entropy, explicit backward to every
 * parameter and to every prunable linear layer's output, and perplexity per ALGORITHM.md §10.
 *
 * Conventions: activations are row-major T×features; a linear weight is R×C (out×in), y = a Wᵀ + b.
 * The loss of a sequence is the mean CE of positions 0..T-2 predicting labels[0..T-2]
 * (default labels[t] = ids[t+1]); the last position carries no loss (its gradient is 0).
 */

import { ShapeError } from '../gpu/errors';
import { matmul, matmulNT, matmulTN } from './dense';

export interface OptConfig { layers: number; d: number; heads: number; ffn: number; vocab: number; maxPos: number }
export interface RefOpt { cfg: OptConfig; w: Map<string, Float64Array> }

const LN_EPS = 1e-5; // nn.LayerNorm default, as in OPT
const POS_OFFSET = 2; // OPTLearnedPositionalEmbedding offset
const P = 'model.decoder.';

/** Module suffixes of the prunable linears of one decoder layer, in the order used everywhere. */
export const PRUNABLE_SUFFIXES = ['self_attn.q_proj', 'self_attn.k_proj', 'self_attn.v_proj', 'self_attn.out_proj', 'fc1', 'fc2'] as const;

/** Prunable linear layers: HF module name (no ".weight"), R = out_features, C = in_features. */
export function prunableLayers(cfg: OptConfig): { name: string; R: number; C: number }[] {
  const out: { name: string; R: number; C: number }[] = [];
  for (let l = 0; l < cfg.layers; l++) {
    for (const s of PRUNABLE_SUFFIXES) {
      const R = s === 'fc1' ? cfg.ffn : cfg.d;
      const C = s === 'fc2' ? cfg.ffn : cfg.d;
      out.push({ name: `${P}layers.${l}.${s}`, R, C });
    }
  }
  return out;
}

/** A named parameter, checked for presence and size. */
export function param(m: RefOpt, name: string, size: number): Float64Array {
  const t = m.w.get(name);
  if (!t) throw new ShapeError(`OPT reference: missing tensor ${name}`);
  if (t.length !== size) throw new ShapeError(`OPT reference: ${name} has ${t.length} values, expected ${size}`);
  return t;
}

interface LnCache { xhat: Float64Array; rstd: Float64Array; out: Float64Array }
interface LayerCache {
  ln1: LnCache; q: Float64Array; k: Float64Array; v: Float64Array; probs: Float64Array; attn: Float64Array;
  ln2: LnCache; pre: Float64Array; act: Float64Array;
}
export interface OptCache { ids: number[]; T: number; layers: LayerCache[]; lnf: LnCache }

function layerNorm(x: Float64Array, T: number, d: number, g: Float64Array, b: Float64Array): LnCache {
  const xhat = new Float64Array(T * d), out = new Float64Array(T * d), rstd = new Float64Array(T);
  for (let t = 0; t < T; t++) {
    let mu = 0;
    for (let i = 0; i < d; i++) mu += x[t * d + i];
    mu /= d;
    let v = 0;
    for (let i = 0; i < d; i++) v += (x[t * d + i] - mu) ** 2;
    const r = 1 / Math.sqrt(v / d + LN_EPS);
    rstd[t] = r;
    for (let i = 0; i < d; i++) {
      const h = (x[t * d + i] - mu) * r;
      xhat[t * d + i] = h;
      out[t * d + i] = h * g[i] + b[i];
    }
  }
  return { xhat, rstd, out };
}

/** LayerNorm backward: returns dx, accumulates dγ, dβ. */
function layerNormBwd(c: LnCache, dy: Float64Array, T: number, d: number, g: Float64Array, dg: Float64Array, db: Float64Array): Float64Array {
  const dx = new Float64Array(T * d);
  for (let t = 0; t < T; t++) {
    let m1 = 0, m2 = 0;
    for (let i = 0; i < d; i++) {
      const dh = dy[t * d + i] * g[i];
      m1 += dh;
      m2 += dh * c.xhat[t * d + i];
      dg[i] += dy[t * d + i] * c.xhat[t * d + i];
      db[i] += dy[t * d + i];
    }
    m1 /= d;
    m2 /= d;
    for (let i = 0; i < d; i++) {
      dx[t * d + i] = c.rstd[t] * (dy[t * d + i] * g[i] - m1 - c.xhat[t * d + i] * m2);
    }
  }
  return dx;
}

function linear(m: RefOpt, name: string, x: Float64Array, T: number, C: number, R: number, delta?: Map<string, Float64Array>): Float64Array {
  const y = matmulNT(x, param(m, `${name}.weight`, R * C), T, C, R);
  const b = param(m, `${name}.bias`, R);
  const dy = delta?.get(name);
  for (let t = 0; t < T; t++) for (let r = 0; r < R; r++) y[t * R + r] += b[r] + (dy ? dy[t * R + r] : 0);
  return y;
}

function checkIds(m: RefOpt, ids: number[]): void {
  const { vocab, maxPos } = m.cfg;
  if (ids.length < 1 || ids.length > maxPos) throw new ShapeError(`OPT reference: sequence length ${ids.length} not in 1..${maxPos}`);
  for (const id of ids) if (!Number.isInteger(id) || id < 0 || id >= vocab) throw new ShapeError(`OPT reference: token id ${id} outside 0..${vocab - 1}`);
}

/** Decoder forward up to the final LayerNorm. `delta` adds a T×R tensor to named linear outputs (gradient checks). */
export function forwardHidden(m: RefOpt, ids: number[], delta?: Map<string, Float64Array>): { hf: Float64Array; cache: OptCache } {
  checkIds(m, ids);
  const { d, heads, ffn, vocab, maxPos, layers } = m.cfg;
  if (d % heads !== 0) throw new ShapeError(`OPT reference: d=${d} not divisible by heads=${heads}`);
  const T = ids.length, hd = d / heads, scale = 1 / Math.sqrt(hd);
  const emb = param(m, `${P}embed_tokens.weight`, vocab * d);
  const pos = param(m, `${P}embed_positions.weight`, (maxPos + POS_OFFSET) * d);
  let x = new Float64Array(T * d);
  for (let t = 0; t < T; t++) for (let i = 0; i < d; i++) x[t * d + i] = emb[ids[t] * d + i] + pos[(t + POS_OFFSET) * d + i];
  const lc: LayerCache[] = [];
  for (let l = 0; l < layers; l++) {
    const p = `${P}layers.${l}.`;
    const ln1 = layerNorm(x, T, d, param(m, `${p}self_attn_layer_norm.weight`, d), param(m, `${p}self_attn_layer_norm.bias`, d));
    const q = linear(m, `${p}self_attn.q_proj`, ln1.out, T, d, d, delta);
    for (let i = 0; i < q.length; i++) q[i] *= scale; // HF scales q after q_proj (bias included)
    const k = linear(m, `${p}self_attn.k_proj`, ln1.out, T, d, d, delta);
    const v = linear(m, `${p}self_attn.v_proj`, ln1.out, T, d, d, delta);
    const probs = new Float64Array(heads * T * T), attn = new Float64Array(T * d);
    for (let h = 0; h < heads; h++) {
      for (let i = 0; i < T; i++) {
        const row = (h * T + i) * T;
        let mx = -Infinity;
        for (let j = 0; j <= i; j++) {
          let s = 0;
          for (let e = 0; e < hd; e++) s += q[i * d + h * hd + e] * k[j * d + h * hd + e];
          probs[row + j] = s;
          mx = Math.max(mx, s);
        }
        let z = 0;
        for (let j = 0; j <= i; j++) z += (probs[row + j] = Math.exp(probs[row + j] - mx));
        for (let j = 0; j <= i; j++) {
          const pij = (probs[row + j] /= z);
          for (let e = 0; e < hd; e++) attn[i * d + h * hd + e] += pij * v[j * d + h * hd + e];
        }
      }
    }
    const o = linear(m, `${p}self_attn.out_proj`, attn, T, d, d, delta);
    const hmid = new Float64Array(T * d);
    for (let i = 0; i < T * d; i++) hmid[i] = x[i] + o[i];
    const ln2 = layerNorm(hmid, T, d, param(m, `${p}final_layer_norm.weight`, d), param(m, `${p}final_layer_norm.bias`, d));
    const pre = linear(m, `${p}fc1`, ln2.out, T, d, ffn, delta);
    const act = pre.map((u) => (u > 0 ? u : 0));
    const f2 = linear(m, `${p}fc2`, act, T, ffn, d, delta);
    x = new Float64Array(T * d);
    for (let i = 0; i < T * d; i++) x[i] = hmid[i] + f2[i];
    lc.push({ ln1, q, k, v, probs, attn, ln2, pre, act });
  }
  const lnf = layerNorm(x, T, d, param(m, `${P}final_layer_norm.weight`, d), param(m, `${P}final_layer_norm.bias`, d));
  return { hf: lnf.out, cache: { ids, T, layers: lc, lnf } };
}

function defaultLabels(m: RefOpt, ids: number[], labels?: number[]): number[] {
  const want = ids.slice(1);
  if (!labels) return want;
  if (labels.length !== ids.length - 1) throw new ShapeError(`OPT reference: ${labels.length} labels for ${ids.length} tokens (need T-1)`);
  for (const y of labels) if (!Number.isInteger(y) || y < 0 || y >= m.cfg.vocab) throw new ShapeError(`OPT reference: label ${y} outside vocab`);
  return labels;
}

/** Mean CE of rows 0..T-2 against labels, one logits row at a time (never T×V at once). */
function meanCE(m: RefOpt, hf: Float64Array, T: number, labels: number[]): number {
  const { d, vocab } = m.cfg;
  if (T < 2) return NaN;
  const emb = param(m, `${P}embed_tokens.weight`, vocab * d);
  const row = new Float64Array(vocab);
  let total = 0;
  for (let t = 0; t < T - 1; t++) {
    let mx = -Infinity;
    for (let v = 0; v < vocab; v++) {
      let s = 0;
      for (let i = 0; i < d; i++) s += hf[t * d + i] * emb[v * d + i];
      row[v] = s;
      if (s > mx) mx = s;
    }
    let z = 0;
    for (let v = 0; v < vocab; v++) z += Math.exp(row[v] - mx);
    total += mx + Math.log(z) - row[labels[t]];
  }
  return total / (T - 1);
}

/** Full forward: logits (T×V, tied head), mean next-token CE, and the cache for the backward. */
export function refForward(m: RefOpt, ids: number[]): { logits: Float64Array; loss: number; cache: OptCache } {
  const { hf, cache } = forwardHidden(m, ids);
  const { d, vocab } = m.cfg;
  const logits = matmulNT(hf, param(m, `${P}embed_tokens.weight`, vocab * d), ids.length, d, vocab);
  return { logits, loss: meanCE(m, hf, ids.length, ids.slice(1)), cache };
}

/** Loss only, optionally with custom labels and additive perturbations of linear outputs (for finite differences). */
export function refLoss(m: RefOpt, ids: number[], opts: { labels?: number[]; outputDelta?: Map<string, Float64Array> } = {}): number {
  const labels = defaultLabels(m, ids, opts.labels);
  const { hf } = forwardHidden(m, ids, opts.outputDelta);
  return meanCE(m, hf, ids.length, labels);
}

/** Perplexity per ALGORITHM §10: non-overlapping windows of `seqlen`, tail dropped, exp(mean of per-window mean CE). */
export function refPerplexity(m: RefOpt, ids: number[], seqlen: number, windows?: number): number {
  const avail = Math.floor(ids.length / seqlen);
  const n = windows ?? avail;
  if (!Number.isInteger(seqlen) || seqlen < 2 || seqlen > m.cfg.maxPos) throw new ShapeError(`refPerplexity: seqlen ${seqlen} not in 2..${m.cfg.maxPos}`);
  if (!Number.isInteger(n) || n < 1 || n > avail) throw new ShapeError(`refPerplexity: ${n} windows requested, ${avail} available`);
  let sum = 0;
  for (let w = 0; w < n; w++) {
    const win = ids.slice(w * seqlen, (w + 1) * seqlen);
    sum += refLoss(m, win);
  }
  return Math.exp(sum / n);
}

export interface RefBackward {
  dW: Map<string, Float64Array>;
  layerInputs: Map<string, Float64Array>;
  outputGrads: Map<string, Float64Array>;
  loss: number;
  logits: Float64Array;
}

/** Backward of the mean CE to every parameter (dW, same names as m.w) and to every prunable linear output. */
export function refBackward(m: RefOpt, ids: number[], opts: { labels?: number[] } = {}): RefBackward {
  const labels = defaultLabels(m, ids, opts.labels);
  const { hf, cache } = forwardHidden(m, ids);
  const { d, heads, ffn, vocab, maxPos, layers } = m.cfg;
  const T = ids.length, hd = d / heads, scale = 1 / Math.sqrt(hd);
  const dW = new Map<string, Float64Array>();
  for (const [k, v] of m.w) dW.set(k, new Float64Array(v.length));
  const layerInputs = new Map<string, Float64Array>(), outputGrads = new Map<string, Float64Array>();
  const emb = param(m, `${P}embed_tokens.weight`, vocab * d);
  const logits = matmulNT(hf, emb, T, d, vocab);
  const dlog = new Float64Array(T * vocab);
  let loss = 0;
  for (let t = 0; t < T - 1; t++) {
    let mx = -Infinity;
    for (let v = 0; v < vocab; v++) mx = Math.max(mx, logits[t * vocab + v]);
    let z = 0;
    for (let v = 0; v < vocab; v++) z += Math.exp(logits[t * vocab + v] - mx);
    loss += mx + Math.log(z) - logits[t * vocab + labels[t]];
    for (let v = 0; v < vocab; v++) dlog[t * vocab + v] = Math.exp(logits[t * vocab + v] - mx) / z / (T - 1);
    dlog[t * vocab + labels[t]] -= 1 / (T - 1);
  }
  loss = T > 1 ? loss / (T - 1) : NaN;
  addInto(dW.get(`${P}embed_tokens.weight`)!, matmulTN(dlog, hf, T, vocab, d));
  const dhf = matmul(dlog, emb, T, vocab, d);
  const g = (n: string): Float64Array => dW.get(n)!;
  let dx = layerNormBwd(cache.lnf, dhf, T, d, param(m, `${P}final_layer_norm.weight`, d), g(`${P}final_layer_norm.weight`), g(`${P}final_layer_norm.bias`));
  // Gradient of a linear: records a and dL/dy, accumulates dW, db, returns dL/da.
  const linBwd = (name: string, a: Float64Array, dy: Float64Array, C: number, R: number): Float64Array => {
    layerInputs.set(name, a);
    outputGrads.set(name, dy);
    addInto(g(`${name}.weight`), matmulTN(dy, a, T, R, C));
    const db = g(`${name}.bias`);
    for (let t = 0; t < T; t++) for (let r = 0; r < R; r++) db[r] += dy[t * R + r];
    return matmul(dy, param(m, `${name}.weight`, R * C), T, R, C);
  };
  for (let l = layers - 1; l >= 0; l--) {
    const p = `${P}layers.${l}.`, c = cache.layers[l];
    const dact = linBwd(`${p}fc2`, c.act, dx, ffn, d);
    const dpre = dact.map((u, i) => (c.pre[i] > 0 ? u : 0));
    const dln2 = linBwd(`${p}fc1`, c.ln2.out, dpre, d, ffn);
    const dh = layerNormBwd(c.ln2, dln2, T, d, param(m, `${p}final_layer_norm.weight`, d), g(`${p}final_layer_norm.weight`), g(`${p}final_layer_norm.bias`));
    for (let i = 0; i < T * d; i++) dh[i] += dx[i];
    const dattn = linBwd(`${p}self_attn.out_proj`, c.attn, dh, d, d);
    const dq = new Float64Array(T * d), dk = new Float64Array(T * d), dv = new Float64Array(T * d);
    const dp = new Float64Array(T);
    for (let h = 0; h < heads; h++) {
      for (let i = 0; i < T; i++) {
        const row = (h * T + i) * T;
        let dot = 0;
        for (let j = 0; j <= i; j++) {
          let s = 0;
          for (let e = 0; e < hd; e++) {
            s += dattn[i * d + h * hd + e] * c.v[j * d + h * hd + e];
            dv[j * d + h * hd + e] += c.probs[row + j] * dattn[i * d + h * hd + e];
          }
          dp[j] = s;
          dot += s * c.probs[row + j];
        }
        for (let j = 0; j <= i; j++) {
          const ds = c.probs[row + j] * (dp[j] - dot);
          for (let e = 0; e < hd; e++) {
            dq[i * d + h * hd + e] += ds * c.k[j * d + h * hd + e];
            dk[j * d + h * hd + e] += ds * c.q[i * d + h * hd + e];
          }
        }
      }
    }
    for (let i = 0; i < T * d; i++) dq[i] *= scale; // q = scale·q_proj(x)
    const dln1 = linBwd(`${p}self_attn.q_proj`, c.ln1.out, dq, d, d);
    addInto(dln1, linBwd(`${p}self_attn.k_proj`, c.ln1.out, dk, d, d));
    addInto(dln1, linBwd(`${p}self_attn.v_proj`, c.ln1.out, dv, d, d));
    dx = layerNormBwd(c.ln1, dln1, T, d, param(m, `${p}self_attn_layer_norm.weight`, d), g(`${p}self_attn_layer_norm.weight`), g(`${p}self_attn_layer_norm.bias`));
    for (let i = 0; i < T * d; i++) dx[i] += dh[i];
  }
  const dE = g(`${P}embed_tokens.weight`), dPos = g(`${P}embed_positions.weight`);
  if (dPos.length !== (maxPos + POS_OFFSET) * d) throw new ShapeError('OPT reference: embed_positions has the wrong size');
  for (let t = 0; t < T; t++) {
    for (let i = 0; i < d; i++) {
      dE[ids[t] * d + i] += dx[t * d + i];
      dPos[(t + POS_OFFSET) * d + i] += dx[t * d + i];
    }
  }
  return { dW, layerInputs, outputGrads, loss, logits };
}

function addInto(a: Float64Array, b: Float64Array): void {
  for (let i = 0; i < a.length; i++) a[i] += b[i];
}
