import source from '../../shaders/diag.wgsl?raw';
import { grid1d, packUniforms, type GpuContext, type KernelSpec } from '../gpu/context';
import type { Tensor } from '../gpu/tensor';
import { ShapeError } from '../gpu/errors';

const EXTRACT: KernelSpec = { name: 'diag.extract', source, entry: 'extract', bindings: ['write', 'write'], uniform: true };
const DAMP: KernelSpec = { name: 'diag.damp', source, entry: 'damp', bindings: ['write', 'write'], uniform: true };

function square(m: Tensor): { n: number; batch: number } {
  const s = m.shape;
  const n = s[s.length - 1];
  if (s.length < 2 || s[s.length - 2] !== n) throw new ShapeError(`diag: square matrix expected, got [${s}]`);
  return { n, batch: m.size / (n * n) };
}

/** Diagonal of a (batched) square matrix: [..., n, n] → [..., n]. */
export function diagonal(ctx: GpuContext, m: Tensor): Tensor {
  const { n, batch } = square(m);
  const out = ctx.empty([...m.shape.slice(0, -2), n]);
  ctx.dispatch(EXTRACT, {}, [m, out], grid1d(Math.ceil((n * batch) / 256)), packUniforms([['u32', n], ['u32', batch], ['f32', 0], ['u32', 0]]));
  return out;
}

/**
 * In place: M ← M + λ·mean(diag M)·I for each matrix of the batch (ALGORITHM.md §2 relative damping).
 * Returns the added amount per matrix ([batch]).
 */
export function dampInPlace(ctx: GpuContext, m: Tensor, lambda: number): Tensor {
  const { n, batch } = square(m);
  const added = ctx.empty([batch]);
  ctx.dispatch(DAMP, {}, [m, added], [batch], packUniforms([['u32', n], ['u32', batch], ['f32', lambda], ['u32', 0]]));
  return added;
}
