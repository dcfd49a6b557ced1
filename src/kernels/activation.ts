import source from '../../shaders/activation.wgsl?raw';
import { grid1d, packUniforms, type GpuContext, type KernelSpec } from '../gpu/context';
import type { Tensor } from '../gpu/tensor';
import { ShapeError } from '../gpu/errors';

const RELU: KernelSpec = { name: 'act.relu', source, entry: 'relu', bindings: ['read', 'write'], uniform: true };
const RELU_IP: KernelSpec = { name: 'act.relu', source, entry: 'relu', bindings: ['write'], uniform: true };
const RELU_BWD: KernelSpec = { name: 'act.relu_bwd', source, entry: 'relu_bwd', bindings: ['read', 'read', 'write'], uniform: true };
const RELU_BWD_IP: KernelSpec = { name: 'act.relu_bwd', source, entry: 'relu_bwd', bindings: ['write', 'read'], uniform: true };
const COLSUM: KernelSpec = { name: 'act.colsum', source, entry: 'colsum', bindings: ['read', 'write'], uniform: true };
const ROWS = 256; // must equal ROWS in activation.wgsl
const CS = { defines: { COLSUM: true } };

function checkOut(name: string, out: Tensor | undefined, shape: readonly number[]): void {
  if (out && out.size !== shape.reduce((a, b) => a * b, 1)) throw new ShapeError(`${name}: out has shape [${out.shape}], [${shape}] expected`);
}

/** y = max(x, 0), elementwise. `out` may be `x` itself (in place). */
export function relu(ctx: GpuContext, x: Tensor, opts: { out?: Tensor } = {}): Tensor {
  checkOut('relu', opts.out, x.shape);
  const out = opts.out ?? ctx.empty(x.shape);
  const u = packUniforms([['u32', x.size], ['u32', 0], ['u32', 0], ['u32', 0]]);
  if (out === x) ctx.dispatch(RELU_IP, { defines: { RELU: true, INPLACE: true } }, [x], grid1d(Math.ceil(x.size / 256)), u);
  else ctx.dispatch(RELU, { defines: { RELU: true } }, [x, out], grid1d(Math.ceil(x.size / 256)), u);
  return out;
}

/** dx = dy where y > 0 else 0 (y = relu forward output). `out` may be `dy` (in place). */
export function reluBackward(ctx: GpuContext, dy: Tensor, y: Tensor, opts: { out?: Tensor } = {}): Tensor {
  if (dy.size !== y.size) throw new ShapeError(`reluBackward: dy [${dy.shape}] and y [${y.shape}] differ in size`);
  checkOut('reluBackward', opts.out, dy.shape);
  const out = opts.out ?? ctx.empty(dy.shape);
  if (out === y) throw new ShapeError('reluBackward: out must not be y');
  const u = packUniforms([['u32', dy.size], ['u32', 0], ['u32', 0], ['u32', 0]]);
  if (out === dy) ctx.dispatch(RELU_BWD_IP, { defines: { RELU_BWD: true, INPLACE: true } }, [dy, y], grid1d(Math.ceil(dy.size / 256)), u);
  else ctx.dispatch(RELU_BWD, { defines: { RELU_BWD: true } }, [dy, y, out], grid1d(Math.ceil(dy.size / 256)), u);
  return out;
}

/**
 * Column sums of x [n, d] → [d] (the bias gradient of a linear layer from dY).
 * With `accumulate`, out += sums (out must be given). Two-level deterministic reduction, no atomics.
 */
export function colSum(ctx: GpuContext, x: Tensor, opts: { out?: Tensor; accumulate?: boolean } = {}): Tensor {
  if (x.shape.length !== 2) throw new ShapeError(`colSum: 2-D input expected, got [${x.shape}]`);
  const [n, d] = x.shape;
  checkOut('colSum', opts.out, [d]);
  if (opts.accumulate && !opts.out) throw new ShapeError('colSum: accumulate needs out');
  const out = opts.out ?? ctx.empty([d]);
  let cur = x, rows = n;
  while (rows > ROWS) {
    const nb = Math.ceil(rows / ROWS);
    const part = ctx.empty([nb, d]);
    ctx.dispatch(COLSUM, CS, [cur, part], [Math.ceil(d / 64), nb], packUniforms([['u32', rows], ['u32', d], ['u32', 0], ['u32', 0]]));
    if (cur !== x) cur.dispose();
    cur = part;
    rows = nb;
  }
  if (rows === 0) throw new ShapeError('colSum: no rows');
  ctx.dispatch(COLSUM, CS, [cur, out], [Math.ceil(d / 64), 1], packUniforms([['u32', rows], ['u32', d], ['u32', opts.accumulate ? 1 : 0], ['u32', 0]]));
  if (cur !== x) cur.dispose();
  return out;
}
