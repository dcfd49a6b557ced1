/**
 * Float64 CPU references of the Llama layer kernels (RMSNorm, rotary embeddings, SwiGLU) and of the
 * rotary frequency schedule. Pure TypeScript, row-major Float64Array, Hugging Face Llama semantics.
 * Written straightforwardly (no shared code with the kernels' host side) so tests compare two
 * independent implementations.
 */

export function rmsNormRef(x: Float64Array, gamma: Float64Array, d: number, eps = 1e-6): { y: Float64Array; rstd: Float64Array } {
  const n = x.length / d;
  const y = new Float64Array(n * d), rstd = new Float64Array(n);
  for (let r = 0; r < n; r++) {
    let ss = 0;
    for (let j = 0; j < d; j++) ss += x[r * d + j] ** 2;
    const rs = 1 / Math.sqrt(ss / d + eps);
    rstd[r] = rs;
    for (let j = 0; j < d; j++) y[r * d + j] = x[r * d + j] * rs * gamma[j];
  }
  return { y, rstd };
}

/** Gradients of Σ dy∘rmsNorm(x) with respect to x and γ. */
export function rmsNormBwdRef(dy: Float64Array, x: Float64Array, gamma: Float64Array, d: number, eps = 1e-6): { dx: Float64Array; dgamma: Float64Array } {
  const n = x.length / d;
  const { rstd } = rmsNormRef(x, gamma, d, eps);
  const dx = new Float64Array(n * d), dgamma = new Float64Array(d);
  for (let r = 0; r < n; r++) {
    const rs = rstd[r];
    // d rstd / d x_j = −rstd³·x_j / d
    let gx = 0;
    for (let j = 0; j < d; j++) gx += dy[r * d + j] * gamma[j] * x[r * d + j];
    for (let j = 0; j < d; j++) {
      const k = r * d + j;
      dx[k] = dy[k] * gamma[j] * rs - (rs ** 3 / d) * x[k] * gx;
      dgamma[j] += dy[k] * x[k] * rs;
    }
  }
  return { dx, dgamma };
}

export interface RopeShape { B: number; T: number; heads: number; hd: number; positionOffset?: number }

/**
 * Rotate-half RoPE on x [B·T, heads·hd]: row r has position (r mod T) + positionOffset; within each head,
 * dims i and i + hd/2 rotate by angle pos·invFreq[i]. `sign` = −1 rotates backwards (the transpose).
 */
function ropeApply(x: Float64Array, invFreq: Float64Array, s: RopeShape, sign: number): Float64Array {
  const { B, T, heads, hd } = s;
  const half = hd / 2, D = heads * hd;
  const out = new Float64Array(B * T * D);
  for (let r = 0; r < B * T; r++) {
    const pos = (r % T) + (s.positionOffset ?? 0);
    for (let h = 0; h < heads; h++) {
      for (let i = 0; i < half; i++) {
        const a = pos * invFreq[i];
        const c = Math.cos(a), sn = sign * Math.sin(a);
        const k1 = r * D + h * hd + i, k2 = k1 + half;
        out[k1] = x[k1] * c - x[k2] * sn;
        out[k2] = x[k2] * c + x[k1] * sn;
      }
    }
  }
  return out;
}

export function ropeRef(x: Float64Array, invFreq: Float64Array, s: RopeShape): Float64Array {
  return ropeApply(x, invFreq, s, 1);
}

/** Gradient of Σ dy∘rope(x) with respect to x: the rotation is orthogonal, so its transpose (angle −a). */
export function ropeBwdRef(dy: Float64Array, invFreq: Float64Array, s: RopeShape): Float64Array {
  return ropeApply(dy, invFreq, s, -1);
}

export type RopeScalingRef =
  | { type: 'default' }
  | { type: 'linear'; factor: number }
  | { type: 'llama3'; factor: number; lowFreqFactor: number; highFreqFactor: number; originalMaxPositions: number };

/**
 * inv_freq[i] = theta^(−2i/hd), i < hd/2, then the scaling. llama3 (transformers' rope_type "llama3"):
 * wavelength λ = 2π/f; λ < L/high: f kept; λ > L/low: f/factor; between: linear blend in L/λ.
 * Stated here in frequency terms (f > 2π·high/L is "short wavelength") — same rule, other spelling.
 */
export function ropeInvFreqRef(hd: number, theta: number, scaling: RopeScalingRef = { type: 'default' }): Float64Array {
  const out = new Float64Array(hd / 2);
  for (let i = 0; i < hd / 2; i++) {
    const f = Math.exp((-2 * i / hd) * Math.log(theta));
    if (scaling.type === 'default') out[i] = f;
    else if (scaling.type === 'linear') out[i] = f / scaling.factor;
    else {
      const { factor, lowFreqFactor: lo, highFreqFactor: hi, originalMaxPositions: L } = scaling;
      const cyclesInContext = (L * f) / (2 * Math.PI); // = L / λ
      if (cyclesInContext > hi) out[i] = f;
      else if (cyclesInContext < lo) out[i] = f / factor;
      else {
        const w = (cyclesInContext - lo) / (hi - lo);
        out[i] = w * f + (1 - w) * (f / factor);
      }
    }
  }
  return out;
}

const sigmoid = (g: number) => 1 / (1 + Math.exp(-g));

/** y = silu(gate)·up = gate·σ(gate)·up, elementwise. */
export function swigluRef(gate: Float64Array, up: Float64Array): Float64Array {
  return gate.map((g, i) => g * sigmoid(g) * up[i]);
}

/** Gradients of Σ dy∘swiglu(gate, up): dUp = dy·silu(g); dGate = dy·up·σ(g)·(1 + g·(1 − σ(g))). */
export function swigluBwdRef(dy: Float64Array, gate: Float64Array, up: Float64Array): { dGate: Float64Array; dUp: Float64Array } {
  const dGate = new Float64Array(gate.length), dUp = new Float64Array(gate.length);
  for (let i = 0; i < gate.length; i++) {
    const g = gate[i], s = sigmoid(g);
    dUp[i] = dy[i] * g * s;
    dGate[i] = dy[i] * up[i] * (s + g * s * (1 - s));
  }
  return { dGate, dUp };
}
