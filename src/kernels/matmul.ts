import source from '../../shaders/matmul.wgsl?raw';
import { packUniforms, type GpuContext, type KernelSpec } from '../gpu/context';
import type { Tensor } from '../gpu/tensor';
import { LimitExceededError, ShapeError } from '../gpu/errors';

const SPEC: KernelSpec = { name: 'matmul', source, bindings: ['read', 'read', 'read', 'write'], uniform: true };

export interface MatmulOptions {
  /** a is stored [.., K, M] and used as its transpose. */
  transA?: boolean;
  /** b is stored [.., N, K] and used as its transpose. */
  transB?: boolean;
  /** Length N, added to every row of the result. */
  bias?: Tensor;
  /** Write into this tensor instead of allocating. */
  out?: Tensor;
  /** out += result (requires out). */
  accumulate?: boolean;
  /** Result scaled by alpha (default 1) before bias/accumulate. */
  alpha?: number;
  /** Name of a MATMUL_VARIANTS entry; default: chosen from the output size. */
  variant?: string;
}

/** A tile configuration: WX×WY threads, each an 8×8 register block → (8·WY)×(8·WX) tile, K slice BK. */
export interface MatmulVariant {
  name: string;
  wx: number;
  wy: number;
  bk: number;
  /** Double-buffered workgroup memory (one barrier per K slice instead of two). */
  db?: boolean;
}

/**
 * Sweepable tile shapes (override constants). Workgroup memory = (8·wy + 8·wx)·bk·4 bytes.
 * 128×128 tiles give the highest arithmetic intensity (64 FMAs per 4 vec4 smem reads per thread);
 * smaller tiles exist so small outputs still fill the GPU.
 */
export const MATMUL_VARIANTS: readonly MatmulVariant[] = [
  { name: '128x128x8', wx: 16, wy: 16, bk: 8 },
  { name: '128x128x16', wx: 16, wy: 16, bk: 16 },
  { name: '128x128x32', wx: 16, wy: 16, bk: 32 },
  { name: '128x128x8db', wx: 16, wy: 16, bk: 8, db: true },
  { name: '128x128x16db', wx: 16, wy: 16, bk: 16, db: true },
  { name: '64x128x8', wx: 16, wy: 8, bk: 8 },
  { name: '64x128x16', wx: 16, wy: 8, bk: 16 },
  { name: '128x64x8', wx: 8, wy: 16, bk: 8 },
  { name: '64x64x8', wx: 8, wy: 8, bk: 8 },
  { name: '64x64x16', wx: 8, wy: 8, bk: 16 },
  { name: '32x32x8', wx: 4, wy: 4, bk: 8 },
];

// H200 (Dawn/Vulkan, fp32), TFLOP/s: 4096³ 128x128x8 34–36, 128x128x16 23–26, 128x128x32 16, 64x128x8 27.5,
// 64x64x8 19.6; 2048³ 30–33 / 24–26 / 15 / 25 / 19. cuBLAS fp32 (TF32 off) 50–51 at both sizes.
// BK = 8 likely wins because its smaller prefetch staging keeps ≤ 128 registers (2 workgroups per SM).
export const MATMUL_DEFAULT_VARIANT = '128x128x8';

// Below this many 128×128 tiles a smaller tile is used. On the H200 128x128x8 beat every smaller tile
// at 512³–4096³ (512³: 16 workgroups, 2.2 vs ≤ 1.9 TFLOP/s), so only tiny outputs switch.
const MIN_WORKGROUPS = 8;

/** Default tile choice for an M×N output (times batch). */
export function pickMatmulVariant(m: number, n: number, batch: number): MatmulVariant {
  for (const name of [MATMUL_DEFAULT_VARIANT, '64x64x8']) {
    const v = variantByName(name);
    if (Math.ceil(m / (8 * v.wy)) * Math.ceil(n / (8 * v.wx)) * batch >= MIN_WORKGROUPS) return v;
  }
  return variantByName('32x32x8');
}

function variantByName(name: string): MatmulVariant {
  const v = MATMUL_VARIANTS.find((x) => x.name === name);
  if (!v) throw new ShapeError(`matmul: unknown variant '${name}' (known: ${MATMUL_VARIANTS.map((x) => x.name).join(', ')})`);
  return v;
}

function dims(name: string, t: Tensor): { batch: number; r: number; c: number } {
  const s = t.shape;
  if (s.length !== 2 && s.length !== 3) throw new ShapeError(`matmul: ${name} must be 2-D or 3-D, got [${s}]`);
  if (t.dtype !== 'f32') throw new ShapeError(`matmul: ${name} must be f32, got ${t.dtype}`);
  if (s.some((x) => x <= 0)) throw new ShapeError(`matmul: ${name} has an empty dimension [${s}]`);
  return s.length === 3 ? { batch: s[0], r: s[1], c: s[2] } : { batch: 0, r: s[0], c: s[1] };
}

/**
 * C = alpha·op(A)·op(B) (+ bias) (+ out if accumulate). a: [M,K] or [batch,M,K]; b: [K,N] or [batch,K,N]
 * (transposed storage with transA/transB); a 2-D operand broadcasts over the other's batch.
 * Records one dispatch; never reads back.
 */
export function matmul(ctx: GpuContext, a: Tensor, b: Tensor, opts: MatmulOptions = {}): Tensor {
  const da = dims('a', a);
  const db = dims('b', b);
  const [M, K] = opts.transA ? [da.c, da.r] : [da.r, da.c];
  const [Kb, N] = opts.transB ? [db.c, db.r] : [db.r, db.c];
  if (K !== Kb) {
    throw new ShapeError(`matmul: inner dimensions differ: a [${a.shape}]${opts.transA ? 'ᵀ' : ''} has K=${K}, b [${b.shape}]${opts.transB ? 'ᵀ' : ''} has K=${Kb}`);
  }
  if (da.batch && db.batch && da.batch !== db.batch) throw new ShapeError(`matmul: batch sizes differ: a [${a.shape}], b [${b.shape}]`);
  const batch = Math.max(da.batch, db.batch);
  const outShape = batch ? [batch, M, N] : [M, N];
  if (opts.bias) {
    if (opts.bias.size !== N || opts.bias.dtype !== 'f32') throw new ShapeError(`matmul: bias must have N=${N} f32 entries, got [${opts.bias.shape}]`);
  }
  if (opts.accumulate && !opts.out) throw new ShapeError('matmul: accumulate requires out');
  const out = opts.out ?? ctx.empty(outShape);
  if (opts.out) {
    const s = opts.out.shape;
    if (opts.out.size !== M * N * Math.max(batch, 1) || s[s.length - 1] !== N || opts.out.dtype !== 'f32') {
      throw new ShapeError(`matmul: out must have shape [${outShape}], got [${s}]`);
    }
    if (opts.out.buffer === a.buffer || opts.out.buffer === b.buffer || opts.out.buffer === opts.bias?.buffer) {
      throw new ShapeError('matmul: out must not alias a, b or bias');
    }
  }
  const v = opts.variant ? variantByName(opts.variant) : pickMatmulVariant(M, N, Math.max(batch, 1));
  const grid: [number, number, number] = [Math.ceil(N / (8 * v.wx)), Math.ceil(M / (8 * v.wy)), Math.max(batch, 1)];
  if (grid.some((g) => g > ctx.limits.maxComputeWorkgroupsPerDimension)) throw new ShapeError(`matmul: grid [${grid}] for [${outShape}] exceeds the workgroup grid limit`);
  const smem = (8 * v.wx + 8 * v.wy) * v.bk * 4 * (v.db ? 2 : 1);
  if (smem > ctx.limits.maxComputeWorkgroupStorageSize) {
    throw new LimitExceededError('maxComputeWorkgroupStorageSize', smem, ctx.limits.maxComputeWorkgroupStorageSize, `matmul variant ${v.name}`);
  }
  // vec4 loads need the contiguous dimension of both stored operands to be a multiple of 4.
  const vec4 = da.c % 4 === 0 && db.c % 4 === 0;
  const uniforms = packUniforms([
    ['u32', M], ['u32', N], ['u32', K], ['u32', da.batch ? M * K : 0],
    ['u32', db.batch ? K * N : 0], ['f32', opts.alpha ?? 1], ['u32', 0], ['u32', 0],
  ]);
  const overrides = {
    WX: v.wx, WY: v.wy, BK: v.bk,
    TRANS_A: opts.transA ? 1 : 0, TRANS_B: opts.transB ? 1 : 0,
    HAS_BIAS: opts.bias ? 1 : 0, ACCUM: opts.accumulate ? 1 : 0,
  };
  // Without bias, bind a (read-only, already bound) as a placeholder: read and write usages may not alias.
  ctx.dispatch(SPEC, { defines: { VEC4: vec4, DB: !!v.db }, overrides }, [a, b, opts.bias ?? a, out], grid, uniforms);
  return out;
}
