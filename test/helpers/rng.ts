import { mulberry32 } from '../../src/reference/dense';

/** Deterministic PRNG (mulberry32, shared with the float64 references). */
export const rng = mulberry32;

/** Standard normal samples (Box–Muller) as float64. */
export function randn(n: number, seed: number): Float64Array {
  const r = rng(seed);
  const out = new Float64Array(n);
  for (let i = 0; i < n; i += 2) {
    const u = Math.max(r(), 1e-300);
    const v = r();
    const m = Math.sqrt(-2 * Math.log(u));
    out[i] = m * Math.cos(2 * Math.PI * v);
    if (i + 1 < n) out[i + 1] = m * Math.sin(2 * Math.PI * v);
  }
  return out;
}

/** Round float64 data to float32 (what the GPU sees) and return both views. */
export function f32(x: Float64Array): { f32: Float32Array; f64: Float64Array } {
  const a = Float32Array.from(x);
  return { f32: a, f64: Float64Array.from(a) };
}
