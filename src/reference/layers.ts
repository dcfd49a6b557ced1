/**
 * Float64 CPU references of the OPT layer kernels (embedding, LayerNorm, causal attention,
 * vocabulary cross-entropy, ReLU, column sums, Gumbel-max sampling). Pure TypeScript, row-major
 * Float64Array; semantics follow Hugging Face OPT. Used by the tests and by the model reference.
 */

export const NO_LABEL = 0xffffffff;

/** x[r] = Etok[ids[r]] + Epos[(r mod T) + 2 + posOffset]; rows are B sequences of T tokens. */
export function embeddingRef(ids: ArrayLike<number>, etok: Float64Array, epos: Float64Array, d: number, T: number, posOffset = 0): Float64Array {
  const n = ids.length;
  const out = new Float64Array(n * d);
  for (let r = 0; r < n; r++) {
    const p = (r % T) + 2 + posOffset;
    for (let j = 0; j < d; j++) out[r * d + j] = etok[ids[r] * d + j] + epos[p * d + j];
  }
  return out;
}

export interface LayerNormRef { y: Float64Array; mean: Float64Array; rstd: Float64Array }

export function layerNormRef(x: Float64Array, gamma: Float64Array, beta: Float64Array, d: number, eps = 1e-5): LayerNormRef {
  const n = x.length / d;
  const y = new Float64Array(n * d), mean = new Float64Array(n), rstd = new Float64Array(n);
  for (let r = 0; r < n; r++) {
    let m = 0;
    for (let j = 0; j < d; j++) m += x[r * d + j];
    m /= d;
    let v = 0;
    for (let j = 0; j < d; j++) v += (x[r * d + j] - m) ** 2;
    const rs = 1 / Math.sqrt(v / d + eps);
    mean[r] = m;
    rstd[r] = rs;
    for (let j = 0; j < d; j++) y[r * d + j] = (x[r * d + j] - m) * rs * gamma[j] + beta[j];
  }
  return { y, mean, rstd };
}

export function layerNormBwdRef(dy: Float64Array, x: Float64Array, gamma: Float64Array, d: number, eps = 1e-5) {
  const n = x.length / d;
  const { mean, rstd } = layerNormRef(x, gamma, new Float64Array(d), d, eps);
  const dx = new Float64Array(n * d), dgamma = new Float64Array(d), dbeta = new Float64Array(d);
  for (let r = 0; r < n; r++) {
    let a = 0, b = 0;
    for (let j = 0; j < d; j++) {
      const xh = (x[r * d + j] - mean[r]) * rstd[r];
      const g = dy[r * d + j] * gamma[j];
      a += g;
      b += g * xh;
      dgamma[j] += dy[r * d + j] * xh;
      dbeta[j] += dy[r * d + j];
    }
    a /= d;
    b /= d;
    for (let j = 0; j < d; j++) {
      const xh = (x[r * d + j] - mean[r]) * rstd[r];
      dx[r * d + j] = rstd[r] * (dy[r * d + j] * gamma[j] - a - xh * b);
    }
  }
  return { dx, dgamma, dbeta };
}

/**
 * kvH: key/value heads (grouped-query attention, default H): k and v are [B*T, kvH*hd] and query head
 * h reads kv head floor(h / (H / kvH)). window: causal sliding window, query i sees keys
 * i − window < j ≤ i (Mistral's sliding_window); default none.
 */
export interface AttnShape { B: number; T: number; H: number; hd: number; scale: number; kvH?: number; window?: number }

/** Causal (GQA) attention on [B*T, H*hd] q and [B*T, kvH*hd] k, v; scores = scale·q·k. Returns out [B*T, H*hd], lse [B*T, H]. */
export function attentionRef(q: Float64Array, k: Float64Array, v: Float64Array, s: AttnShape) {
  const { B, T, H, hd, scale } = s;
  const kvH = s.kvH ?? H, W = s.window ?? T;
  const D = H * hd, Dk = kvH * hd, G = H / kvH;
  const out = new Float64Array(B * T * D), lse = new Float64Array(B * T * H);
  const p = new Float64Array(T);
  for (let b = 0; b < B; b++) for (let h = 0; h < H; h++) for (let i = 0; i < T; i++) {
    const qi = (b * T + i) * D + h * hd;
    const j0 = Math.max(0, i - W + 1), kh = Math.floor(h / G);
    let m = -Infinity;
    for (let j = j0; j <= i; j++) {
      const kj = (b * T + j) * Dk + kh * hd;
      let dot = 0;
      for (let c = 0; c < hd; c++) dot += q[qi + c] * k[kj + c];
      p[j] = scale * dot;
      m = Math.max(m, p[j]);
    }
    let l = 0;
    for (let j = j0; j <= i; j++) l += (p[j] = Math.exp(p[j] - m));
    for (let j = j0; j <= i; j++) {
      const vj = (b * T + j) * Dk + kh * hd;
      for (let c = 0; c < hd; c++) out[qi + c] += (p[j] / l) * v[vj + c];
    }
    lse[(b * T + i) * H + h] = m + Math.log(l);
  }
  return { out, lse };
}

/** Gradients of sum(dOut ∘ attention(q,k,v)) with respect to q, k, v (dk, dv summed over each kv head's query heads). */
export function attentionBwdRef(dOut: Float64Array, q: Float64Array, k: Float64Array, v: Float64Array, s: AttnShape) {
  const { B, T, H, hd, scale } = s;
  const kvH = s.kvH ?? H, W = s.window ?? T;
  const D = H * hd, Dk = kvH * hd, G = H / kvH;
  const { out, lse } = attentionRef(q, k, v, s);
  const dq = new Float64Array(q.length), dk = new Float64Array(k.length), dv = new Float64Array(v.length);
  for (let b = 0; b < B; b++) for (let h = 0; h < H; h++) for (let i = 0; i < T; i++) {
    const qi = (b * T + i) * D + h * hd;
    const kh = Math.floor(h / G);
    let Di = 0;
    for (let c = 0; c < hd; c++) Di += dOut[qi + c] * out[qi + c];
    for (let j = Math.max(0, i - W + 1); j <= i; j++) {
      const kj = (b * T + j) * Dk + kh * hd;
      let dot = 0, dp = 0;
      for (let c = 0; c < hd; c++) {
        dot += q[qi + c] * k[kj + c];
        dp += dOut[qi + c] * v[kj + c];
      }
      const pij = Math.exp(scale * dot - lse[(b * T + i) * H + h]);
      const ds = pij * (dp - Di) * scale;
      for (let c = 0; c < hd; c++) {
        dv[kj + c] += pij * dOut[qi + c];
        dq[qi + c] += ds * k[kj + c];
        dk[kj + c] += ds * q[qi + c];
      }
    }
  }
  return { dq, dk, dv };
}

/**
 * Cross-entropy of hidden [N,d] against the tied head E [V,d]: loss[r] = lse(h_r·Eᵀ) − h_r·E_label
 * (0 where label is NO_LABEL); dHidden = gradScale·(softmax − onehot)·E (0 rows without label).
 */
export function crossEntropyRef(hidden: Float64Array, E: Float64Array, labels: ArrayLike<number>, d: number, gradScale = 1) {
  const N = labels.length, V = E.length / d;
  const loss = new Float64Array(N), lse = new Float64Array(N), dHidden = new Float64Array(N * d);
  const z = new Float64Array(V);
  for (let r = 0; r < N; r++) {
    let m = -Infinity;
    for (let c = 0; c < V; c++) {
      let s = 0;
      for (let j = 0; j < d; j++) s += hidden[r * d + j] * E[c * d + j];
      z[c] = s;
      m = Math.max(m, s);
    }
    let l = 0;
    for (let c = 0; c < V; c++) l += Math.exp(z[c] - m);
    lse[r] = m + Math.log(l);
    if (labels[r] === NO_LABEL) continue;
    loss[r] = lse[r] - z[labels[r]];
    for (let c = 0; c < V; c++) {
      const g = gradScale * (Math.exp(z[c] - lse[r]) - (c === labels[r] ? 1 : 0));
      for (let j = 0; j < d; j++) dHidden[r * d + j] += g * E[c * d + j];
    }
  }
  return { loss, lse, dHidden };
}

/** PCG-style 32-bit hash, identical to the one in shaders/xent.wgsl. */
export function hash32(x: number): number {
  let s = (Math.imul(x >>> 0, 747796405) + 2891336453) >>> 0;
  const w = Math.imul(((s >>> ((s >>> 28) + 4)) ^ s) >>> 0, 277803737) >>> 0;
  s = ((w >>> 22) ^ w) >>> 0;
  return s;
}

/** Gumbel noise for (seed, row, column) exactly as the shader draws it (u in (0,1): 23 bits + ½, exact in f32). */
export function gumbelRef(seed: number, row: number, col: number): number {
  const h = hash32((hash32((hash32(seed) ^ row) >>> 0) ^ col) >>> 0);
  const u = ((h >>> 9) + 0.5) / 8388608;
  return -Math.log(-Math.log(u));
}

/** Row-wise argmax (lowest index on ties) of logits [n, V], optionally with Gumbel noise (a softmax sample). */
export function argmaxRef(logits: Float64Array, V: number, seed?: number, rowOffset = 0): Uint32Array {
  const n = logits.length / V;
  const out = new Uint32Array(n);
  for (let r = 0; r < n; r++) {
    let best = -Infinity, arg = 0;
    for (let c = 0; c < V; c++) {
      const z = logits[r * V + c] + (seed === undefined ? 0 : gumbelRef(seed, r + rowOffset, c));
      if (z > best) { best = z; arg = c; }
    }
    out[r] = arg;
  }
  return out;
}

export function reluRef(x: Float64Array): Float64Array {
  return x.map((v) => Math.max(v, 0));
}

export function reluBwdRef(dy: Float64Array, y: Float64Array): Float64Array {
  return dy.map((g, i) => (y[i] > 0 ? g : 0));
}

/** Column sums of x [n, d] (bias gradient). */
export function colSumRef(x: Float64Array, d: number): Float64Array {
  const out = new Float64Array(d);
  for (let i = 0; i < x.length; i++) out[i % d] += x[i];
  return out;
}
