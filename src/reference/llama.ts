/**
 * Float64 reference of Hugging Face LlamaForCausalLM (also Mistral; Qwen2 with q/k/v biases):
 * RMSNorm, rotate-half RoPE, grouped-query causal attention, SwiGLU FFN, tied or untied LM head.
 * Forward, mean next-token cross-entropy, explicit backward to every parameter and to every prunable
 * linear output, and perplexity per ALGORITHM.md §10 — the same contract as opt.ts.
 *
 * Conventions as opt.ts: activations T×features row-major, a linear weight is R×C (out×in),
 * y = a Wᵀ (+ b). q is T×(heads·headDim), k and v are T×(kvHeads·headDim). The gradient recorded for
 * q_proj / k_proj is with respect to the linear output before RoPE (what K-FAC's G needs).
 * Self-contained on purpose (the layer references in layers*.ts are checked against this one).
 */

import { ShapeError } from '../gpu/errors';
import { matmul, matmulNT, matmulTN } from './dense';
import type { RefBackward } from './opt';

export interface LlamaRefConfig {
  layers: number; d: number; heads: number; kvHeads: number; headDim: number; ffn: number; vocab: number; maxPos: number;
  eps: number; ropeTheta: number;
  /** headDim/2 inverse frequencies; overrides ropeTheta (rope_scaling computed by the caller). */
  invFreq?: Float64Array;
  tied: boolean;
  /** Biases on q/k/v only (Qwen2). */
  qkvBias: boolean;
}
export interface RefLlama { cfg: LlamaRefConfig; w: Map<string, Float64Array> }

const P = 'model.';

/** Module suffixes of the prunable linears of one decoder layer, in the order used everywhere. */
export const LLAMA_PRUNABLE_SUFFIXES = ['self_attn.q_proj', 'self_attn.k_proj', 'self_attn.v_proj', 'self_attn.o_proj', 'mlp.gate_proj', 'mlp.up_proj', 'mlp.down_proj'] as const;

/** Prunable linears: HF module name, R = out, C = in, bias only on q/k/v of a qkvBias model. */
export function prunableLayers(cfg: LlamaRefConfig): { name: string; R: number; C: number; bias: boolean }[] {
  const { d, ffn } = cfg, qd = cfg.heads * cfg.headDim, kd = cfg.kvHeads * cfg.headDim;
  const shape: Record<(typeof LLAMA_PRUNABLE_SUFFIXES)[number], [number, number]> = {
    'self_attn.q_proj': [qd, d], 'self_attn.k_proj': [kd, d], 'self_attn.v_proj': [kd, d], 'self_attn.o_proj': [d, qd],
    'mlp.gate_proj': [ffn, d], 'mlp.up_proj': [ffn, d], 'mlp.down_proj': [d, ffn],
  };
  const out: { name: string; R: number; C: number; bias: boolean }[] = [];
  for (let l = 0; l < cfg.layers; l++) {
    for (const s of LLAMA_PRUNABLE_SUFFIXES) {
      const [R, C] = shape[s];
      out.push({ name: `${P}layers.${l}.${s}`, R, C, bias: cfg.qkvBias && /[qkv]_proj$/.test(s) });
    }
  }
  return out;
}

/** A named parameter, checked for presence and size. */
export function param(m: RefLlama, name: string, size: number): Float64Array {
  const t = m.w.get(name);
  if (!t) throw new ShapeError(`Llama reference: missing tensor ${name}`);
  if (t.length !== size) throw new ShapeError(`Llama reference: ${name} has ${t.length} values, expected ${size}`);
  return t;
}

/** The LM head E (V×d): embed_tokens when tied, else lm_head. */
export function headMatrix(m: RefLlama): Float64Array {
  return param(m, m.cfg.tied ? `${P}embed_tokens.weight` : 'lm_head.weight', m.cfg.vocab * m.cfg.d);
}

/** inv_freq (headDim/2): the config's override or theta^(−2i/headDim). */
export function ropeInvFreq(cfg: LlamaRefConfig): Float64Array {
  const half = cfg.headDim / 2;
  if (cfg.invFreq) {
    if (cfg.invFreq.length !== half) throw new ShapeError(`Llama reference: invFreq has ${cfg.invFreq.length} entries, expected ${half}`);
    return cfg.invFreq;
  }
  return Float64Array.from({ length: half }, (_, i) => cfg.ropeTheta ** (-(2 * i) / cfg.headDim));
}

interface NormCache { x: Float64Array; rstd: Float64Array; out: Float64Array }
interface LayerCache {
  n1: NormCache; q: Float64Array; k: Float64Array; v: Float64Array; probs: Float64Array; attn: Float64Array;
  n2: NormCache; gate: Float64Array; up: Float64Array; act: Float64Array;
}
/** cos/sin are T×(headDim/2); q/k in the cache are after RoPE. */
export interface LlamaCache { ids: number[]; T: number; cos: Float64Array; sin: Float64Array; layers: LayerCache[]; norm: NormCache }

function rmsNorm(x: Float64Array, T: number, d: number, w: Float64Array, eps: number): NormCache {
  const out = new Float64Array(T * d), rstd = new Float64Array(T);
  for (let t = 0; t < T; t++) {
    let ss = 0;
    for (let i = 0; i < d; i++) ss += x[t * d + i] ** 2;
    const r = (rstd[t] = 1 / Math.sqrt(ss / d + eps));
    for (let i = 0; i < d; i++) out[t * d + i] = x[t * d + i] * r * w[i];
  }
  return { x, rstd, out };
}

/** y = x·r·w, r = (mean x² + eps)^(−½): dx_j = r·w_j·dy_j − r³·x_j·Σ_i(dy_i w_i x_i)/d; accumulates dw. */
function rmsNormBwd(c: NormCache, dy: Float64Array, T: number, d: number, w: Float64Array, dw: Float64Array): Float64Array {
  const dx = new Float64Array(T * d);
  for (let t = 0; t < T; t++) {
    const r = c.rstd[t];
    let s = 0;
    for (let i = 0; i < d; i++) {
      s += dy[t * d + i] * w[i] * c.x[t * d + i];
      dw[i] += dy[t * d + i] * c.x[t * d + i] * r;
    }
    const k = (r * r * r * s) / d;
    for (let i = 0; i < d; i++) dx[t * d + i] = r * w[i] * dy[t * d + i] - k * c.x[t * d + i];
  }
  return dx;
}

/** In-place rotate-half RoPE of every head of x (T×nh·hd); `inverse` applies the transpose (backward). */
function rope(x: Float64Array, T: number, nh: number, hd: number, cos: Float64Array, sin: Float64Array, inverse = false): void {
  const half = hd / 2, sg = inverse ? -1 : 1;
  for (let t = 0; t < T; t++) for (let h = 0; h < nh; h++) {
    const o = t * nh * hd + h * hd;
    for (let i = 0; i < half; i++) {
      const c = cos[t * half + i], s = sg * sin[t * half + i], a = x[o + i], b = x[o + i + half];
      x[o + i] = a * c - b * s;
      x[o + i + half] = b * c + a * s;
    }
  }
}

const sigmoid = (z: number): number => 1 / (1 + Math.exp(-z));

function linear(m: RefLlama, name: string, x: Float64Array, T: number, C: number, R: number, bias: boolean, delta?: Map<string, Float64Array>): Float64Array {
  const y = matmulNT(x, param(m, `${name}.weight`, R * C), T, C, R);
  const b = bias ? param(m, `${name}.bias`, R) : undefined, dy = delta?.get(name);
  if (b || dy) for (let t = 0; t < T; t++) for (let r = 0; r < R; r++) y[t * R + r] += (b ? b[r] : 0) + (dy ? dy[t * R + r] : 0);
  return y;
}

function checkModel(m: RefLlama, ids: number[]): void {
  const { vocab, maxPos, heads, kvHeads, headDim } = m.cfg;
  if (heads % kvHeads !== 0) throw new ShapeError(`Llama reference: heads=${heads} not divisible by kvHeads=${kvHeads}`);
  if (headDim % 2 !== 0) throw new ShapeError(`Llama reference: headDim=${headDim} must be even for RoPE`);
  if (ids.length < 1 || ids.length > maxPos) throw new ShapeError(`Llama reference: sequence length ${ids.length} not in 1..${maxPos}`);
  for (const id of ids) if (!Number.isInteger(id) || id < 0 || id >= vocab) throw new ShapeError(`Llama reference: token id ${id} outside 0..${vocab - 1}`);
}

/** Decoder forward up to the final RMSNorm. `delta` adds a T×R tensor to named linear outputs (gradient checks). */
export function forwardHidden(m: RefLlama, ids: number[], delta?: Map<string, Float64Array>): { hf: Float64Array; cache: LlamaCache } {
  checkModel(m, ids);
  const { d, heads, kvHeads, headDim: hd, ffn, vocab, layers, eps, qkvBias } = m.cfg;
  const T = ids.length, qd = heads * hd, kd = kvHeads * hd, grp = heads / kvHeads, scale = 1 / Math.sqrt(hd), half = hd / 2;
  const inv = ropeInvFreq(m.cfg), cos = new Float64Array(T * half), sin = new Float64Array(T * half);
  for (let t = 0; t < T; t++) for (let i = 0; i < half; i++) { cos[t * half + i] = Math.cos(t * inv[i]); sin[t * half + i] = Math.sin(t * inv[i]); }
  const emb = param(m, `${P}embed_tokens.weight`, vocab * d);
  let x = new Float64Array(T * d);
  for (let t = 0; t < T; t++) x.set(emb.subarray(ids[t] * d, (ids[t] + 1) * d), t * d);
  const lc: LayerCache[] = [];
  for (let l = 0; l < layers; l++) {
    const p = `${P}layers.${l}.`;
    const n1 = rmsNorm(x, T, d, param(m, `${p}input_layernorm.weight`, d), eps);
    const q = linear(m, `${p}self_attn.q_proj`, n1.out, T, d, qd, qkvBias, delta);
    const k = linear(m, `${p}self_attn.k_proj`, n1.out, T, d, kd, qkvBias, delta);
    const v = linear(m, `${p}self_attn.v_proj`, n1.out, T, d, kd, qkvBias, delta);
    rope(q, T, heads, hd, cos, sin);
    rope(k, T, kvHeads, hd, cos, sin);
    const probs = new Float64Array(heads * T * T), attn = new Float64Array(T * qd);
    for (let h = 0; h < heads; h++) {
      const g = Math.floor(h / grp); // GQA: query head h reads kv head ⌊h/(heads/kvHeads)⌋
      for (let i = 0; i < T; i++) {
        const row = (h * T + i) * T;
        let mx = -Infinity;
        for (let j = 0; j <= i; j++) {
          let s = 0;
          for (let e = 0; e < hd; e++) s += q[i * qd + h * hd + e] * k[j * kd + g * hd + e];
          mx = Math.max(mx, (probs[row + j] = s * scale));
        }
        let z = 0;
        for (let j = 0; j <= i; j++) z += (probs[row + j] = Math.exp(probs[row + j] - mx));
        for (let j = 0; j <= i; j++) {
          const pij = (probs[row + j] /= z);
          for (let e = 0; e < hd; e++) attn[i * qd + h * hd + e] += pij * v[j * kd + g * hd + e];
        }
      }
    }
    const o = linear(m, `${p}self_attn.o_proj`, attn, T, qd, d, false, delta);
    const hmid = x.map((xi, i) => xi + o[i]);
    const n2 = rmsNorm(hmid, T, d, param(m, `${p}post_attention_layernorm.weight`, d), eps);
    const gate = linear(m, `${p}mlp.gate_proj`, n2.out, T, d, ffn, false, delta);
    const up = linear(m, `${p}mlp.up_proj`, n2.out, T, d, ffn, false, delta);
    const act = gate.map((z, i) => z * sigmoid(z) * up[i]); // silu(gate)·up
    const down = linear(m, `${p}mlp.down_proj`, act, T, ffn, d, false, delta);
    x = hmid.map((hi, i) => hi + down[i]);
    lc.push({ n1, q, k, v, probs, attn, n2, gate, up, act });
  }
  const norm = rmsNorm(x, T, d, param(m, `${P}norm.weight`, d), eps);
  return { hf: norm.out, cache: { ids, T, cos, sin, layers: lc, norm } };
}

function defaultLabels(m: RefLlama, ids: number[], labels?: number[]): number[] {
  if (!labels) return ids.slice(1);
  if (labels.length !== ids.length - 1) throw new ShapeError(`Llama reference: ${labels.length} labels for ${ids.length} tokens (need T-1)`);
  for (const y of labels) if (!Number.isInteger(y) || y < 0 || y >= m.cfg.vocab) throw new ShapeError(`Llama reference: label ${y} outside vocab`);
  return labels;
}

/** Mean CE of rows 0..T-2 against labels, one logits row at a time (never T×V at once). */
function meanCE(m: RefLlama, hf: Float64Array, T: number, labels: number[]): number {
  const { d, vocab } = m.cfg;
  if (T < 2) return NaN;
  const E = headMatrix(m), row = new Float64Array(vocab);
  let total = 0;
  for (let t = 0; t < T - 1; t++) {
    const h = hf.subarray(t * d, (t + 1) * d);
    let mx = -Infinity;
    for (let v = 0; v < vocab; v++) {
      let s = 0;
      for (let i = 0, o = v * d; i < d; i++) s += h[i] * E[o + i];
      row[v] = s;
      if (s > mx) mx = s;
    }
    let z = 0;
    for (let v = 0; v < vocab; v++) z += Math.exp(row[v] - mx);
    total += mx + Math.log(z) - row[labels[t]];
  }
  return total / (T - 1);
}

/** Full forward: logits (T×V), mean next-token CE, and the cache. */
export function refForward(m: RefLlama, ids: number[]): { logits: Float64Array; loss: number; cache: LlamaCache } {
  const { hf, cache } = forwardHidden(m, ids);
  const logits = matmulNT(hf, headMatrix(m), ids.length, m.cfg.d, m.cfg.vocab);
  return { logits, loss: meanCE(m, hf, ids.length, ids.slice(1)), cache };
}

/** Loss only, optionally with custom labels and additive perturbations of linear outputs (finite differences). */
export function refLoss(m: RefLlama, ids: number[], opts: { labels?: number[]; outputDelta?: Map<string, Float64Array> } = {}): number {
  const labels = defaultLabels(m, ids, opts.labels);
  return meanCE(m, forwardHidden(m, ids, opts.outputDelta).hf, ids.length, labels);
}

/** Perplexity per ALGORITHM §10: non-overlapping windows of `seqlen`, tail dropped, exp(mean of per-window mean CE). */
export function refPerplexity(m: RefLlama, ids: number[], seqlen: number, windows?: number): number {
  const avail = Math.floor(ids.length / seqlen), n = windows ?? avail;
  if (!Number.isInteger(seqlen) || seqlen < 2 || seqlen > m.cfg.maxPos) throw new ShapeError(`refPerplexity: seqlen ${seqlen} not in 2..${m.cfg.maxPos}`);
  if (!Number.isInteger(n) || n < 1 || n > avail) throw new ShapeError(`refPerplexity: ${n} windows requested, ${avail} available`);
  let sum = 0;
  for (let w = 0; w < n; w++) sum += refLoss(m, ids.slice(w * seqlen, (w + 1) * seqlen));
  return Math.exp(sum / n);
}

/** Backward of the mean CE to every parameter (dW, same names as m.w) and to every prunable linear output. */
export function refBackward(m: RefLlama, ids: number[], opts: { labels?: number[] } = {}): RefBackward {
  const labels = defaultLabels(m, ids, opts.labels);
  const { hf, cache } = forwardHidden(m, ids);
  const { d, heads, kvHeads, headDim: hd, ffn, vocab, layers, qkvBias } = m.cfg;
  const T = ids.length, qd = heads * hd, kd = kvHeads * hd, grp = heads / kvHeads, scale = 1 / Math.sqrt(hd);
  const dW = new Map<string, Float64Array>();
  for (const [k, v] of m.w) dW.set(k, new Float64Array(v.length));
  const g = (n: string): Float64Array => {
    const t = dW.get(n);
    if (!t) throw new ShapeError(`Llama reference: missing tensor ${n}`);
    return t;
  };
  const layerInputs = new Map<string, Float64Array>(), outputGrads = new Map<string, Float64Array>();
  const E = headMatrix(m), logits = matmulNT(hf, E, T, d, vocab), dlog = new Float64Array(T * vocab);
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
  addInto(g(m.cfg.tied ? `${P}embed_tokens.weight` : 'lm_head.weight'), matmulTN(dlog, hf, T, vocab, d));
  let dx = rmsNormBwd(cache.norm, matmul(dlog, E, T, vocab, d), T, d, param(m, `${P}norm.weight`, d), g(`${P}norm.weight`));
  // Gradient of a linear: records a and dL/dy, accumulates dW (and db), returns dL/da.
  const linBwd = (name: string, a: Float64Array, dy: Float64Array, C: number, R: number, bias: boolean): Float64Array => {
    layerInputs.set(name, a);
    outputGrads.set(name, dy);
    addInto(g(`${name}.weight`), matmulTN(dy, a, T, R, C));
    if (bias) {
      const db = g(`${name}.bias`);
      for (let t = 0; t < T; t++) for (let r = 0; r < R; r++) db[r] += dy[t * R + r];
    }
    return matmul(dy, param(m, `${name}.weight`, R * C), T, R, C);
  };
  for (let l = layers - 1; l >= 0; l--) {
    const p = `${P}layers.${l}.`, c = cache.layers[l];
    const dact = linBwd(`${p}mlp.down_proj`, c.act, dx, ffn, d, false);
    const dgate = new Float64Array(T * ffn), dup = new Float64Array(T * ffn);
    for (let i = 0; i < T * ffn; i++) {
      const z = c.gate[i], s = sigmoid(z);
      dup[i] = dact[i] * z * s;
      dgate[i] = dact[i] * c.up[i] * s * (1 + z * (1 - s)); // silu'(z) = σ(z)(1 + z(1 − σ(z)))
    }
    const dn2 = linBwd(`${p}mlp.gate_proj`, c.n2.out, dgate, d, ffn, false);
    addInto(dn2, linBwd(`${p}mlp.up_proj`, c.n2.out, dup, d, ffn, false));
    const dh = rmsNormBwd(c.n2, dn2, T, d, param(m, `${p}post_attention_layernorm.weight`, d), g(`${p}post_attention_layernorm.weight`));
    addInto(dh, dx);
    const dattn = linBwd(`${p}self_attn.o_proj`, c.attn, dh, qd, d, false);
    const dq = new Float64Array(T * qd), dk = new Float64Array(T * kd), dv = new Float64Array(T * kd), dp = new Float64Array(T);
    for (let h = 0; h < heads; h++) {
      const gh = Math.floor(h / grp);
      for (let i = 0; i < T; i++) {
        const row = (h * T + i) * T;
        let dot = 0;
        for (let j = 0; j <= i; j++) {
          let s = 0;
          for (let e = 0; e < hd; e++) {
            s += dattn[i * qd + h * hd + e] * c.v[j * kd + gh * hd + e];
            dv[j * kd + gh * hd + e] += c.probs[row + j] * dattn[i * qd + h * hd + e];
          }
          dp[j] = s;
          dot += s * c.probs[row + j];
        }
        for (let j = 0; j <= i; j++) {
          const ds = c.probs[row + j] * (dp[j] - dot) * scale;
          for (let e = 0; e < hd; e++) {
            dq[i * qd + h * hd + e] += ds * c.k[j * kd + gh * hd + e];
            dk[j * kd + gh * hd + e] += ds * c.q[i * qd + h * hd + e];
          }
        }
      }
    }
    rope(dq, T, heads, hd, cache.cos, cache.sin, true); // back to the q_proj / k_proj outputs
    rope(dk, T, kvHeads, hd, cache.cos, cache.sin, true);
    const dn1 = linBwd(`${p}self_attn.q_proj`, c.n1.out, dq, d, qd, qkvBias);
    addInto(dn1, linBwd(`${p}self_attn.k_proj`, c.n1.out, dk, d, kd, qkvBias));
    addInto(dn1, linBwd(`${p}self_attn.v_proj`, c.n1.out, dv, d, kd, qkvBias));
    dx = rmsNormBwd(c.n1, dn1, T, d, param(m, `${p}input_layernorm.weight`, d), g(`${p}input_layernorm.weight`));
    addInto(dx, dh);
  }
  const dE = g(`${P}embed_tokens.weight`);
  for (let t = 0; t < T; t++) for (let i = 0; i < d; i++) dE[ids[t] * d + i] += dx[t * d + i];
  return { dW, layerInputs, outputGrads, loss, logits };
}

/**
 * The input (T×C) of every prunable linear of decoder layer `l` on the current weights; q/k/v share
 * one array, gate/up another (peers and statistics passes read these).
 */
export function linearInputs(m: RefLlama, ids: number[], l: number): Map<string, Float64Array> {
  const c = forwardHidden(m, ids).cache.layers[l];
  if (!c) throw new ShapeError(`Llama reference: no decoder layer ${l}`);
  const p = `${P}layers.${l}.`;
  return new Map([
    [`${p}self_attn.q_proj`, c.n1.out], [`${p}self_attn.k_proj`, c.n1.out], [`${p}self_attn.v_proj`, c.n1.out],
    [`${p}self_attn.o_proj`, c.attn], [`${p}mlp.gate_proj`, c.n2.out], [`${p}mlp.up_proj`, c.n2.out], [`${p}mlp.down_proj`, c.act],
  ]);
}

function addInto(a: Float64Array, b: Float64Array): void {
  for (let i = 0; i < a.length; i++) a[i] += b[i];
}
