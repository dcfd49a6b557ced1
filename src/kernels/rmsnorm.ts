import source from '../../shaders/rmsnorm.wgsl?raw';
import { grid1d, packUniforms, type GpuContext, type KernelSpec } from '../gpu/context';
import type { Tensor } from '../gpu/tensor';
import { ShapeError } from '../gpu/errors';
import { colSum } from './activation';
import { requireF32 } from './elementwise';

const FWD: KernelSpec = { name: 'rmsnorm.fwd', source, entry: 'fwd', bindings: ['read', 'read', 'write', 'write'], uniform: true };
const BWD: KernelSpec = { name: 'rmsnorm.bwd', source, entry: 'bwd', bindings: ['read', 'read', 'read', 'read', 'write'], uniform: true };
const PARAMS: KernelSpec = { name: 'rmsnorm.params', source, entry: 'params', bindings: ['read', 'read', 'read', 'write'], uniform: true };
const ROWS = 256; // must equal ROWS in rmsnorm.wgsl

function rowsOf(name: string, x: Tensor, d: number): number {
  if (x.shape.length < 1 || x.shape[x.shape.length - 1] !== d) throw new ShapeError(`${name}: last dim of [${x.shape}] should be ${d} (gamma's size)`);
  return x.size / d;
}

const uniforms = (n: number, d: number, eps: number) => packUniforms([['u32', n], ['u32', d], ['f32', eps], ['u32', 0]]);

/** y = x·rstd·γ over the last dim, rstd = 1/sqrt(mean(x²) + eps) (Llama RMSNorm). Also returns rstd [rows] for backward. */
export function rmsNorm(ctx: GpuContext, x: Tensor, gamma: Tensor, opts: { eps?: number; out?: Tensor } = {}): { y: Tensor; rstd: Tensor } {
  requireF32('rmsNorm', x, gamma);
  const d = gamma.size;
  const n = rowsOf('rmsNorm', x, d);
  const eps = opts.eps ?? 1e-6; // Llama 2/3's rms_norm_eps is 1e-5 or 1e-6; callers pass the config value
  if (!(eps >= 0)) throw new ShapeError(`rmsNorm: eps must be ≥ 0, got ${eps}`);
  if (opts.out && opts.out.size !== x.size) throw new ShapeError(`rmsNorm: out [${opts.out.shape}] does not match x [${x.shape}]`);
  if (opts.out && [x, gamma].some((t) => t.buffer === opts.out!.buffer)) throw new ShapeError('rmsNorm: out must not be an input');
  const y = opts.out ?? ctx.empty(x.shape);
  const rstd = ctx.empty([n]);
  ctx.dispatch(FWD, { defines: { FWD: true } }, [x, gamma, y, rstd], grid1d(n), uniforms(n, d, eps));
  return { y, rstd };
}

export interface RmsNormBackwardOptions {
  out?: Tensor;
  /** Also compute dγ [d]. */
  paramGrads?: boolean;
  /** Where to write dγ [d]; with `accumulate`, dParams += the new gradient. */
  dParams?: Tensor;
  accumulate?: boolean;
}

/** Backward of rmsNorm: dx from dy, x, γ and the saved rstd; optionally dγ (as dParams [d]). */
export function rmsNormBackward(
  ctx: GpuContext, dy: Tensor, x: Tensor, gamma: Tensor, rstd: Tensor, opts: RmsNormBackwardOptions = {},
): { dx: Tensor; dParams?: Tensor } {
  requireF32('rmsNormBackward', dy, x, gamma, rstd);
  const d = gamma.size;
  const n = rowsOf('rmsNormBackward', x, d);
  if (dy.size !== x.size) throw new ShapeError(`rmsNormBackward: dy [${dy.shape}] does not match x [${x.shape}]`);
  if (rstd.size !== n) throw new ShapeError(`rmsNormBackward: rstd [${rstd.shape}] should hold ${n} rows`);
  if (opts.out && (opts.out.size !== x.size || [x, dy, gamma, rstd].some((t) => t.buffer === opts.out!.buffer))) {
    throw new ShapeError('rmsNormBackward: out must be a fresh tensor of x\'s size');
  }
  if (opts.dParams && (opts.dParams.size !== d || [x, dy, gamma, rstd, opts.out].some((t) => t?.buffer === opts.dParams!.buffer))) {
    throw new ShapeError(`rmsNormBackward: dParams should be a separate tensor [${d}]`);
  }
  if (opts.accumulate && !opts.dParams) throw new ShapeError('rmsNormBackward: accumulate needs dParams');
  const dx = opts.out ?? ctx.empty(x.shape);
  const u = uniforms(n, d, 0);
  ctx.dispatch(BWD, { defines: { BWD: true } }, [x, gamma, dy, rstd, dx], grid1d(n), u);
  if (!opts.paramGrads && !opts.dParams) return { dx };
  const nb = Math.ceil(n / ROWS);
  const part = ctx.empty([nb, d]);
  ctx.dispatch(PARAMS, { defines: { PARAMS: true } }, [x, dy, rstd, part], [Math.ceil(d / 64), nb], u);
  const dParams = opts.dParams ?? ctx.empty([d]);
  colSum(ctx, part, { out: dParams, accumulate: opts.accumulate });
  part.dispose();
  return { dx, dParams };
}
