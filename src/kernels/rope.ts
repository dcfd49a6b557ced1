import source from '../../shaders/rope.wgsl?raw';
import { packUniforms, type GpuContext, type KernelSpec } from '../gpu/context';
import type { Tensor } from '../gpu/tensor';
import { ShapeError } from '../gpu/errors';
import { foldedGrid, requireF32 } from './elementwise';

const ROPE: KernelSpec = { name: 'rope', source, bindings: ['read', 'read', 'write'], uniform: true };
const ROPE_IP: KernelSpec = { name: 'rope', source, bindings: ['write', 'read'], uniform: true };

export type RopeScaling =
  | { type: 'default' }
  | { type: 'linear'; factor: number }
  | { type: 'llama3'; factor: number; lowFreqFactor: number; highFreqFactor: number; originalMaxPositions: number };

function positive(name: string, v: number): void {
  if (!(Number.isFinite(v) && v > 0)) throw new RangeError(`ropeInvFreq: ${name} must be a finite number > 0, got ${v}`);
}

/**
 * Rotary inverse frequencies [headDim/2] in float64: invFreq[i] = theta^(−2i/headDim), then
 * `linear`: invFreq/factor (= positions/factor); `llama3`: by wavelength λ = 2π/invFreq as transformers'
 * _compute_llama3_parameters (λ < L/high kept, λ > L/low divided by factor, smooth blend between, L =
 * originalMaxPositions). HF computes these in float32; float64 here differs by at most ~1 f32 ulp.
 */
export function ropeInvFreq(headDim: number, theta: number, scaling: RopeScaling = { type: 'default' }): Float64Array {
  if (!Number.isInteger(headDim) || headDim < 2 || headDim % 2) throw new ShapeError(`ropeInvFreq: headDim must be an even integer ≥ 2, got ${headDim}`);
  positive('theta', theta);
  const half = headDim / 2;
  const inv = new Float64Array(half);
  for (let i = 0; i < half; i++) inv[i] = Math.pow(theta, (-2 * i) / headDim);
  switch (scaling.type) {
    case 'default':
      return inv;
    case 'linear':
      positive('linear factor', scaling.factor);
      return inv.map((f) => f / scaling.factor);
    case 'llama3': {
      const { factor, lowFreqFactor: low, highFreqFactor: high, originalMaxPositions: L } = scaling;
      positive('llama3 factor', factor);
      positive('llama3 lowFreqFactor', low);
      positive('llama3 originalMaxPositions', L);
      if (!(high > low) || !Number.isFinite(high)) throw new RangeError(`ropeInvFreq: llama3 highFreqFactor (${high}) must be finite and > lowFreqFactor (${low})`);
      return inv.map((f) => {
        const wavelen = (2 * Math.PI) / f;
        if (wavelen < L / high) return f; // high frequency: unchanged
        if (wavelen > L / low) return f / factor; // low frequency: interpolated like linear
        const smooth = (L / wavelen - low) / (high - low);
        return (1 - smooth) * (f / factor) + smooth * f;
      });
    }
    default:
      throw new RangeError(`ropeInvFreq: unknown rope scaling type '${(scaling as { type: string }).type}'`);
  }
}

/**
 * cos/sin table for positions 0..maxT−1 as one f32 tensor [maxT, hd] (hd = 2·invFreq.length):
 * row t = [cos(t·invFreq[0..hd/2)), sin(t·invFreq[0..hd/2))]. Angles in float64 on the host, so
 * entries are the correctly rounded f32 values even at large t.
 */
export function ropeTables(ctx: GpuContext, invFreq: Float64Array, maxT: number): Tensor {
  const half = invFreq.length;
  if (half < 1) throw new ShapeError('ropeTables: invFreq is empty');
  if (!Number.isInteger(maxT) || maxT < 1) throw new ShapeError(`ropeTables: maxT must be an integer ≥ 1, got ${maxT}`);
  if (!invFreq.every(Number.isFinite)) throw new RangeError('ropeTables: invFreq has non-finite entries');
  const t = new Float32Array(maxT * 2 * half);
  for (let p = 0; p < maxT; p++) {
    for (let i = 0; i < half; i++) {
      const a = p * invFreq[i];
      t[p * 2 * half + i] = Math.cos(a);
      t[p * 2 * half + half + i] = Math.sin(a);
    }
  }
  return ctx.upload(t, [maxT, 2 * half]);
}

export interface RopeOptions {
  /** Tokens per sequence T: row r of x has position (r mod T) + positionOffset. */
  seqLen: number;
  heads: number;
  headDim: number;
  /** Added to every position (generation with a KV cache). Default 0. */
  positionOffset?: number;
  /** Apply the transpose (rotation by −angle): the exact gradient of the forward. */
  backward?: boolean;
  /** Output tensor of x's size; may be x itself (in place). */
  out?: Tensor;
}

const count = (v: number) => Number.isInteger(v) && v >= 1;

/** Rotate-half RoPE on x [B·T, heads·headDim] (or [..., heads, headDim]) with a table from ropeTables. */
export function rope(ctx: GpuContext, x: Tensor, table: Tensor, opts: RopeOptions): Tensor {
  requireF32('rope', x, table);
  const { seqLen: T, heads, headDim: hd } = opts;
  const off = opts.positionOffset ?? 0;
  if (!count(T) || !count(heads) || !count(hd) || hd % 2) {
    throw new ShapeError(`rope: seqLen ${T}, heads ${heads} must be integers ≥ 1 and headDim ${hd} an even integer ≥ 2`);
  }
  if (!Number.isInteger(off) || off < 0) throw new ShapeError(`rope: positionOffset must be an integer ≥ 0, got ${off}`);
  const D = heads * hd, s = x.shape, last = s[s.length - 1];
  if (!(last === D || (last === hd && s[s.length - 2] === heads))) throw new ShapeError(`rope: x [${s}] should end in ${D} = heads·headDim (or [${heads}, ${hd}])`);
  const rows = x.size / D;
  if (rows % T) throw new ShapeError(`rope: ${rows} rows of x are not whole sequences of seqLen ${T}`);
  if (table.shape.length !== 2 || table.shape[1] !== hd) throw new ShapeError(`rope: table [${table.shape}] should be [maxT, ${hd}]`);
  if (off + T > table.shape[0]) throw new ShapeError(`rope: positions up to ${off + T - 1} exceed the table's ${table.shape[0]} rows`);
  if (opts.out && (opts.out.size !== x.size || opts.out.buffer === table.buffer)) throw new ShapeError(`rope: out [${opts.out.shape}] must be x or a tensor of x's size`);
  if (opts.out) requireF32('rope', opts.out);
  const out = opts.out ?? ctx.empty(x.shape);
  const pairs = x.size / 2;
  const u = packUniforms([['u32', pairs], ['u32', hd / 2], ['u32', heads], ['u32', T], ['u32', off], ['f32', opts.backward ? -1 : 1], ['u32', 0], ['u32', 0]]);
  const grid = foldedGrid(Math.ceil(pairs / 256));
  // In place, also when out is a reshape() view of x's buffer.
  if (out.buffer === x.buffer) ctx.dispatch(ROPE_IP, { defines: { INPLACE: true } }, [x, table], grid, u);
  else ctx.dispatch(ROPE, {}, [x, table, out], grid, u);
  return out;
}
