import source from '../../shaders/layernorm.wgsl?raw';
import { grid1d, packUniforms, type GpuContext, type KernelSpec } from '../gpu/context';
import type { Tensor } from '../gpu/tensor';
import { ShapeError } from '../gpu/errors';
import { colSum } from './activation';

const B: KernelSpec['bindings'] = ['read', 'read', 'read', 'write', 'write', 'write'];
const FWD: KernelSpec = { name: 'layernorm.fwd', source, entry: 'fwd', bindings: B, uniform: true };
const BWD: KernelSpec = { name: 'layernorm.bwd', source, entry: 'bwd', bindings: B, uniform: true };
const PARAMS: KernelSpec = { name: 'layernorm.params', source, entry: 'params', bindings: B, uniform: true };
const ROWS = 256; // must equal ROWS in layernorm.wgsl

function rowsOf(name: string, x: Tensor, d: number): number {
  if (x.shape.length < 1 || x.shape[x.shape.length - 1] !== d) throw new ShapeError(`${name}: last dim of [${x.shape}] should be ${d}`);
  return x.size / d;
}

export interface LayerNormResult { y: Tensor; mean: Tensor; rstd: Tensor }

/** y = (x − mean)·rstd·γ + β over the last dim (HF OPT LayerNorm). Also returns mean, rstd [rows] for backward. */
export function layerNorm(ctx: GpuContext, x: Tensor, gamma: Tensor, beta: Tensor, opts: { eps?: number; out?: Tensor } = {}): LayerNormResult {
  const d = gamma.size;
  if (beta.size !== d) throw new ShapeError(`layerNorm: gamma [${gamma.shape}] and beta [${beta.shape}] differ`);
  const n = rowsOf('layerNorm', x, d);
  if (opts.out && opts.out.size !== x.size) throw new ShapeError(`layerNorm: out [${opts.out.shape}] does not match x [${x.shape}]`);
  if (opts.out === x) throw new ShapeError('layerNorm: out must not be x');
  const y = opts.out ?? ctx.empty(x.shape);
  const mean = ctx.empty([n]);
  const rstd = ctx.empty([n]);
  const u = packUniforms([['u32', n], ['u32', d], ['f32', opts.eps ?? 1e-5], ['u32', 0]]);
  ctx.dispatch(FWD, {}, [x, gamma, beta, y, mean, rstd], grid1d(n), u);
  return { y, mean, rstd };
}

export interface LayerNormBackwardOptions {
  eps?: number;
  out?: Tensor;
  /** Also compute the parameter gradients, packed as dParams [2, d] (row 0: dγ, row 1: dβ). */
  paramGrads?: boolean;
  /** Where to write dParams; with `accumulate`, dParams += the new gradients. */
  dParams?: Tensor;
  accumulate?: boolean;
}

/** Backward of layerNorm: dx from dy, x, γ and the saved mean/rstd; optionally dγ, dβ. */
export function layerNormBackward(
  ctx: GpuContext, dy: Tensor, x: Tensor, gamma: Tensor, mean: Tensor, rstd: Tensor, opts: LayerNormBackwardOptions = {},
): { dx: Tensor; dParams?: Tensor } {
  const d = gamma.size;
  const n = rowsOf('layerNormBackward', x, d);
  if (dy.size !== x.size) throw new ShapeError(`layerNormBackward: dy [${dy.shape}] does not match x [${x.shape}]`);
  if (mean.size !== n || rstd.size !== n) throw new ShapeError(`layerNormBackward: mean/rstd should hold ${n} rows`);
  if (opts.out && (opts.out.size !== x.size || opts.out === x || opts.out === dy)) throw new ShapeError('layerNormBackward: out must be a fresh tensor of x\'s size');
  const dx = opts.out ?? ctx.empty(x.shape);
  const nb = Math.ceil(n / ROWS);
  const u = packUniforms([['u32', n], ['u32', d], ['f32', opts.eps ?? 1e-5], ['u32', nb]]);
  ctx.dispatch(BWD, {}, [x, gamma, dy, dx, mean, rstd], grid1d(n), u);
  if (!opts.paramGrads && !opts.dParams) return { dx };
  if (opts.dParams && opts.dParams.size !== 2 * d) throw new ShapeError(`layerNormBackward: dParams should be [2, ${d}]`);
  const part = ctx.empty([nb, 2 * d]);
  ctx.dispatch(PARAMS, {}, [x, gamma, dy, part, mean, rstd], [Math.ceil(d / 64), nb], u);
  const dParams = opts.dParams ?? ctx.empty([2, d]);
  colSum(ctx, part, { out: dParams, accumulate: opts.accumulate });
  part.dispose();
  return { dx, dParams };
}
