import source from '../../shaders/swiglu.wgsl?raw';
import { packUniforms, type GpuContext, type KernelSpec } from '../gpu/context';
import type { Tensor } from '../gpu/tensor';
import { ShapeError } from '../gpu/errors';
import { foldedGrid, requireF32 } from './elementwise';

const FWD: KernelSpec = { name: 'swiglu.fwd', source, entry: 'fwd', bindings: ['read', 'read', 'write'], uniform: true };
const FWD_IP: KernelSpec = { name: 'swiglu.fwd', source, entry: 'fwd', bindings: ['write', 'read'], uniform: true };
const BWD: KernelSpec = { name: 'swiglu.bwd', source, entry: 'bwd', bindings: ['read', 'read', 'read', 'write', 'write'], uniform: true };
const BWD_IP: KernelSpec = { name: 'swiglu.bwd', source, entry: 'bwd', bindings: ['read', 'write', 'write'], uniform: true };

const same = (a: Tensor | undefined, b: Tensor) => a !== undefined && a.buffer === b.buffer;

function sizes(name: string, ref: Tensor, ts: Record<string, Tensor | undefined>): void {
  for (const [k, t] of Object.entries(ts)) {
    if (!t) continue;
    requireF32(name, t);
    if (t.size !== ref.size) throw new ShapeError(`${name}: ${k} [${t.shape}] does not match gate [${ref.shape}] in size`);
  }
}

const uniforms = (n: number, outIsUp = false) => packUniforms([['u32', n], ['u32', outIsUp ? 1 : 0], ['u32', 0], ['u32', 0]]);

/** y = silu(gate)·up = gate·σ(gate)·up, elementwise (Llama MLP). `out` may be gate or up (in place). */
export function swiglu(ctx: GpuContext, gate: Tensor, up: Tensor, opts: { out?: Tensor } = {}): Tensor {
  sizes('swiglu', gate, { gate, up, out: opts.out });
  const out = opts.out ?? ctx.empty(gate.shape);
  const grid = foldedGrid(Math.ceil(gate.size / 256));
  if (same(out, gate) && same(out, up)) throw new ShapeError('swiglu: gate and up must be different tensors when out aliases them');
  if (same(out, gate)) ctx.dispatch(FWD_IP, { defines: { FWD: true, INPLACE: true } }, [gate, up], grid, uniforms(gate.size));
  else if (same(out, up)) ctx.dispatch(FWD_IP, { defines: { FWD: true, INPLACE: true } }, [up, gate], grid, uniforms(gate.size, true));
  else ctx.dispatch(FWD, { defines: { FWD: true } }, [gate, up, out], grid, uniforms(gate.size));
  return out;
}

export interface SwigluBackwardOptions {
  /** Where to write dGate; may be `gate` itself if dUpOut is `up` (both in place). */
  dGateOut?: Tensor;
  /** Where to write dUp; may be `up` itself if dGateOut is `gate`. */
  dUpOut?: Tensor;
}

/** Backward of swiglu: dUp = dy·silu(g), dGate = dy·up·σ(g)·(1 + g·(1 − σ(g))). */
export function swigluBackward(
  ctx: GpuContext, dy: Tensor, gate: Tensor, up: Tensor, opts: SwigluBackwardOptions = {},
): { dGate: Tensor; dUp: Tensor } {
  const { dGateOut, dUpOut } = opts;
  sizes('swigluBackward', gate, { dy, gate, up, dGateOut, dUpOut });
  const grid = foldedGrid(Math.ceil(gate.size / 256));
  const u = uniforms(gate.size);
  if (same(dGateOut, gate) && same(dUpOut, up) && !same(gate, up) && !same(dy, gate) && !same(dy, up)) {
    ctx.dispatch(BWD_IP, { defines: { BWD: true, INPLACE: true } }, [dy, gate, up], grid, u);
    return { dGate: gate, dUp: up };
  }
  const inputs = [dy, gate, up];
  if (inputs.some((t) => same(dGateOut, t) || same(dUpOut, t)) || (dGateOut && same(dUpOut, dGateOut))) {
    throw new ShapeError('swigluBackward: outputs must be fresh tensors, or exactly dGateOut = gate and dUpOut = up (in place)');
  }
  const dGate = dGateOut ?? ctx.empty(gate.shape);
  const dUp = dUpOut ?? ctx.empty(gate.shape);
  ctx.dispatch(BWD, { defines: { BWD: true } }, [dy, gate, up, dGate, dUp], grid, u);
  return { dGate, dUp };
}
