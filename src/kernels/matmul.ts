import source from '../../shaders/matmul.wgsl?raw';
import warpSource from '../../shaders/matmul-warp.wgsl?raw';
import pairwise from '../../shaders/pairwise.wgsl?raw';
import bindings from '../../shaders/matmul-bindings.wgsl?raw';
import { grid1d, packUniforms, type GpuContext, type KernelSpec } from '../gpu/context';
import type { Tensor } from '../gpu/tensor';
import { LimitExceededError, ShapeError } from '../gpu/errors';

const SPEC: KernelSpec = { name: 'matmul', source: `${bindings}\n${source}`, bindings: ['read', 'read', 'read', 'write'], uniform: true };
const WARP: KernelSpec = { name: 'matmul.warp', source: `${bindings}\n${warpSource}`, bindings: ['read', 'read', 'read', 'write'], uniform: true };
const REG: KernelSpec = { name: 'matmul.reg', source: `${bindings}\n${source}`, entry: 'reg', bindings: ['read', 'read', 'read', 'write'], uniform: true };
const REDUCE: KernelSpec = { name: 'matmul.reduce', source: `${source}\n${pairwise}`, entry: 'reduce', bindings: ['read', 'read', 'write'], uniform: true };

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
  /** Name of a MATMUL_VARIANTS entry (or a parseWarpVariant name); default: MATMUL_SELECTION by shape class, or the CPU choice. */
  variant?: string;
  /** Number of K splits (1 = none, at most SPLIT_MAX); default: chosen from K and the output size (planSplitK). */
  splitK?: number;
}

/**
 * A tile configuration. Tiled (workgroup memory): WX×WY threads, each an 8×8 register block →
 * (8·WY)×(8·WX) tile, K slice BK. `reg`: no workgroup memory, each thread a 4×4 block → (4·WY)×(4·WX).
 * `warp` (matmul-warp.wgsl): each thread a tm×tn block → (tm·WY)×(tn·WX) tile.
 */
export interface MatmulVariant {
  name: string;
  wx: number;
  wy: number;
  bk: number;
  /** Double-buffered workgroup memory (one barrier per K slice instead of two). */
  db?: boolean;
  /** Register-tiled kernel without workgroup memory or barriers (CPU adapters). */
  reg?: boolean;
  /** reg only: 4×4 sub-blocks per thread along M and N (1 or 2 each). */
  rm?: number;
  rn?: number;
  /**
   * Warp-tiled kernel (matmul-warp.wgsl): thread block tm×tn (8×8, 8×16 or 16×8), lx lanes along N in each
   * 32-lane patch (lx = wx: row-major lanes), pad vec4 of padding per workgroup-memory row.
   */
  warp?: { tm: 8 | 16; tn: 8 | 16; lx: number; pad: number };
}

/**
 * The selectable warp-tiled variants, for NVIDIA's 32-lane subgroups; not yet timed on the H200 (bench/kernels.ts
 * --only matmul-sweep). Covered: thread blocks 8×8 / 8×16 / 16×8 (8×16 and 16×8: 128 accumulators per thread, so one
 * 256-thread workgroup per SM, as cuBLAS's fp32 kernels run such tiles), single vs double buffer,
 * warp-patch vs row-major lanes, 64 / 128 / 256 threads. Each costs ~3 s of SwiftShader compile in the tests, so
 * further shapes (BK 16 / 32, no padding, …) are swept by name first (the sweep's --extra) and listed here when they win.
 */
const WARP_VARIANT_NAMES = [
  'w128x128x8', 'w128x128x8s', 'w128x128x8r', 'w128x256x8-t8x16', 'w256x128x8-t16x8', 'w128x128x8-t8x16',
  'w64x128x8', 'w64x64x8',
];

/**
 * A warp-tiled variant from its name w{BM}x{BN}x{BK}[-t{TM}x{TN}][s][r][p0]: tile BM×BN, K slice BK, thread block
 * TM×TN (default 8×8); s one workgroup buffer (default two), r row-major lanes (default 8×4 lane patches),
 * p0 no row padding (default one vec4). Null when the name does not follow the pattern; matmul() checks the
 * kernel's preconditions (warpVariantProblem).
 */
export function parseWarpVariant(name: string): MatmulVariant | null {
  const m = /^w(\d+)x(\d+)x(\d+)(?:-t(8|16)x(8|16))?(s?)(r?)(p0)?$/.exec(name);
  if (!m) return null;
  const [bm, bn, bk] = [m[1], m[2], m[3]].map(Number);
  const tm = (m[4] ? Number(m[4]) : 8) as 8 | 16;
  const tn = (m[5] ? Number(m[5]) : 8) as 8 | 16;
  if (bm % tm !== 0 || bn % tn !== 0) return null;
  const wx = bn / tn;
  return { name, wx, wy: bm / tm, bk, db: !m[6], warp: { tm, tn, lx: m[7] ? wx : 8, pad: m[8] ? 0 : 1 } };
}

/**
 * Sweepable tile shapes (override constants). Tiled: workgroup memory = (8·wy + 8·wx)·bk·4 bytes;
 * REG: none (bk unused; the kernel steps k by 4).
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
  // REG (no workgroup memory): tile = (4·rm·wy)×(4·rn·wx), each thread a (4·rm)×(4·rn) block.
  { name: 'reg64x64', wx: 8, wy: 8, bk: 4, reg: true, rm: 2, rn: 2 },
  { name: 'reg128x128', wx: 16, wy: 16, bk: 4, reg: true, rm: 2, rn: 2 },
  { name: 'reg32x64', wx: 8, wy: 8, bk: 4, reg: true, rm: 1, rn: 2 },
  { name: 'reg64x32', wx: 8, wy: 8, bk: 4, reg: true, rm: 2, rn: 1 },
  { name: 'reg32x32', wx: 8, wy: 8, bk: 4, reg: true, rm: 1, rn: 1 },
  // Warp-tiled (matmul-warp.wgsl): the names are parsed (parseWarpVariant), each one tested in matmul-warp.test.ts.
  ...WARP_VARIANT_NAMES.map((n) => parseWarpVariant(n)!),
];

// H200 (Dawn/Vulkan, fp32), TFLOP/s: 4096³ 128x128x8 34–36, 128x128x16 23–26, 128x128x32 16, 64x128x8 27.5,
// 64x64x8 19.6; 2048³ 30–33 / 24–26 / 15 / 25 / 19. cuBLAS fp32 (TF32 off) 50–51 at both sizes.
// BK = 8 likely wins because its smaller prefetch staging keeps ≤ 128 registers (2 workgroups per SM).
export const MATMUL_DEFAULT_VARIANT = '128x128x8';
// SwiftShader (2 cores, shared), [256,64]·[64,50272]ᵀ in GFLOP/s per CPU-second: every tiled variant 0.18–0.27;
// reg32x32 0.93, reg32x64 1.16, reg64x32 1.13, reg64x64 1.41–1.46 (8×8 blocks: 16 vec4 loads per 256 FMAs);
// 16×16, 16×4, 4×16 or 4×4 threads with 8×8 blocks all within ±10% of 8×8 threads.
export const MATMUL_CPU_VARIANT = 'reg64x64';

// Below this many 128×128 tiles a smaller tile is used. On the H200 128x128x8 beat every smaller tile
// at 512³–4096³ (512³: 16 workgroups, 2.2 vs ≤ 1.9 TFLOP/s), so only tiny outputs switch.
const MIN_WORKGROUPS = 8;

/**
 * Shape classes of the GPU default (matmulShapeClass): `longK` K ≥ SPLIT_MIN_K on an output of fewer than
 * LONGK_MAX_OUTPUT elements (the LM-head backward: split-K territory); `narrow` an output side ≤ NARROW_MAX
 * (the K-FAC pass's hidden-width products, e.g. 32768×768×3072); `large` the rest (square products, fc1 at
 * 3072 columns, the LM-head logits).
 */
export type MatmulShapeClass = 'large' | 'narrow' | 'longK';
const LONGK_MAX_OUTPUT = 1 << 22;
const NARROW_MAX = 1024;

export function matmulShapeClass(m: number, n: number, k: number, batch = 1): MatmulShapeClass {
  if (k >= SPLIT_MIN_K && m * n * batch < LONGK_MAX_OUTPUT) return 'longK';
  return Math.min(m, n) <= NARROW_MAX ? 'narrow' : 'large';
}

/**
 * Default variant per shape class on GPUs. Switch an entry from the H200 sweep (bench/kernels.ts --only
 * matmul-sweep prints the suggested table); outputs with fewer than MIN_WORKGROUPS tiles of the chosen
 * variant fall back to 64x64x8, then 32x32x8, and a variant needing more workgroup memory than the device
 * has falls back to MATMUL_DEFAULT_VARIANT.
 */
export const MATMUL_SELECTION: Readonly<Record<MatmulShapeClass, string>> = {
  large: MATMUL_DEFAULT_VARIANT,
  narrow: MATMUL_DEFAULT_VARIANT,
  longK: MATMUL_DEFAULT_VARIANT,
};

/**
 * Default tile choice for an M×N×K product (times batch); `cpu`: a fallback/software adapter;
 * `smemLimit`: the device's maxComputeWorkgroupStorageSize.
 */
export function pickMatmulVariant(m: number, n: number, batch: number, cpu = false, k = 0, smemLimit = Infinity): MatmulVariant {
  if (cpu) {
    // An 8-row (8-col) thread block on a 1..4-row (col) output would compute up to 8× the needed products.
    if (m <= 4) return variantByName(n <= 4 ? 'reg32x32' : 'reg32x64');
    return variantByName(n <= 4 ? 'reg64x32' : MATMUL_CPU_VARIANT);
  }
  let first = variantByName(MATMUL_SELECTION[matmulShapeClass(m, n, k, batch)]);
  if (workgroupBytes(first) > smemLimit) first = variantByName(MATMUL_DEFAULT_VARIANT);
  for (const v of [first, variantByName('64x64x8')]) {
    const t = variantTile(v);
    if (Math.ceil(m / t.rows) * Math.ceil(n / t.cols) * batch >= MIN_WORKGROUPS) return v;
  }
  return variantByName('32x32x8');
}

/** Output tile of a variant: rows (along M) × cols (along N). */
export function variantTile(v: MatmulVariant): { rows: number; cols: number } {
  if (v.reg) return { rows: 4 * (v.rm ?? 1) * v.wy, cols: 4 * (v.rn ?? 1) * v.wx };
  if (v.warp) return { rows: v.warp.tm * v.wy, cols: v.warp.tn * v.wx };
  return { rows: 8 * v.wy, cols: 8 * v.wx };
}

/** Workgroup memory of a variant in bytes (the shaders' headers give the formulas). */
export function workgroupBytes(v: MatmulVariant): number {
  if (v.reg) return 0;
  const t = variantTile(v);
  const perBuf = v.warp ? (t.rows / 4 + t.cols / 4 + 2 * v.warp.pad) * v.bk * 16 : (t.rows + t.cols) * v.bk * 4;
  return perBuf * (v.db ? 2 : 1);
}

/** matmul-warp.wgsl's preconditions on a variant (its header); '' when they hold. */
export function warpVariantProblem(v: MatmulVariant): string {
  const w = v.warp;
  if (!w) return '';
  const nt = v.wx * v.wy;
  const t = variantTile(v);
  const units = [(t.rows * v.bk) / 4 / nt, (t.cols * v.bk) / 4 / nt];
  if (w.tm === 16 && w.tn === 16) return 'a 16×16 thread block is not supported';
  if (v.bk % 4 !== 0 || SPLIT_ALIGN % v.bk !== 0) return `bk ${v.bk} must be a multiple of 4 dividing ${SPLIT_ALIGN}`;
  if (units.some((u) => !Number.isInteger(u) || u < 1 || u > 8)) return `units per thread [${units}] must be integers in 1..8`;
  if (nt % 32 !== 0 || nt > 256 || 32 % w.lx !== 0 || v.wx % w.lx !== 0 || v.wy % (32 / w.lx) !== 0) return `lanes: ${v.wx}×${v.wy} threads do not tile into ${w.lx}×${32 / w.lx} patches`;
  return '';
}

/** Software/CPU adapters (SwiftShader, llvmpipe/lavapipe): barriers are expensive there, so the REG kernel wins. */
export function isCpuAdapter(ctx: GpuContext): boolean {
  const i = ctx.gpu.info;
  return i.isFallbackAdapter || /swiftshader|llvmpipe|lavapipe/i.test(`${i.architecture} ${i.device} ${i.description}`);
}

// ---- split-K -------------------------------------------------------------------------------------
// Error model (fp32, u = 2⁻²⁴): a split sums its kSplit products sequentially, the reduce pass adds the
// S partials pairwise, so |ĉ − c| ≲ (kSplit + 2⌈log2 S⌉ + 2)·u·|alpha|·Σ_k|a_ik b_kj| (worst case; typical
// errors grow like the square root) instead of K·u for the unsplit kernel.
/** Below this K no automatic split: K·u ≤ 2.4e-4 worst case, and the output tiles usually fill the GPU. */
export const SPLIT_MIN_K = 4096;
/** Longest sequential fp32 run per output element once K ≥ SPLIT_MIN_K (50272 → 25 splits of 2016). */
export const SPLIT_SEQ_K = 2048;
/** Shortest split added for occupancy: its 2·M·N·len flops must dwarf its M·N·8 bytes of partial traffic. */
const SPLIT_MIN_LEN = 512;
/** Occupancy target: H200 132 SMs × 2 resident 256-thread workgroups. */
export const SPLIT_TARGET_WORKGROUPS = 264;
/** Most splits: the reduce pass's pairwise tree has levels for up to 2^6 partials (pairwise.wgsl). */
export const SPLIT_MAX = 64;
/** Split boundaries are multiples of this (of every BK, and of the REG kernel's 4-wide k step). */
const SPLIT_ALIGN = 32;
/** Scratch for the partials stays below this (S·batch·M·N·4 bytes). */
const SPLIT_MAX_SCRATCH = 256 << 20;

/**
 * Number of K splits and K per split. `tileWorkgroups`: workgroups of the unsplit dispatch.
 * `forced` (MatmulOptions.splitK) overrides the heuristic; the scratch bound always applies.
 */
export function planSplitK(
  M: number, N: number, K: number, batch: number, tileWorkgroups: number, scratchBytes: number, forced?: number,
): { splits: number; kSplit: number } {
  let s: number;
  if (forced !== undefined) s = forced;
  else if (K < SPLIT_MIN_K) s = 1;
  else s = Math.max(Math.ceil(K / SPLIT_SEQ_K), Math.min(Math.ceil(SPLIT_TARGET_WORKGROUPS / tileWorkgroups), Math.floor(K / SPLIT_MIN_LEN)));
  s = Math.max(1, Math.min(s, SPLIT_MAX, Math.floor(Math.min(SPLIT_MAX_SCRATCH, scratchBytes) / (batch * M * N * 4))));
  const kSplit = Math.ceil(Math.ceil(K / s) / SPLIT_ALIGN) * SPLIT_ALIGN;
  return { splits: Math.ceil(K / kSplit), kSplit };
}

/** A listed variant, or a parseable warp-tiled name (untested ones: for the sweep's exploration). */
function variantByName(name: string): MatmulVariant {
  const v = MATMUL_VARIANTS.find((x) => x.name === name) ?? parseWarpVariant(name);
  if (!v) throw new ShapeError(`matmul: unknown variant '${name}' (known: ${MATMUL_VARIANTS.map((x) => x.name).join(', ')}, or w{BM}x{BN}x{BK}[-t{TM}x{TN}][s][r][p0])`);
  return v;
}

export interface MatmulPlan {
  variant: MatmulVariant;
  /** Output tile rows and columns of the variant. */
  tm: number;
  tn: number;
  split: { splits: number; kSplit: number };
}

/** The tile variant and K split matmul() uses for an M×N×K product over `batch` (≥ 1) on this device. */
export function planMatmul(
  ctx: GpuContext, M: number, N: number, K: number, batch: number, opts: Pick<MatmulOptions, 'variant' | 'splitK'> = {},
): MatmulPlan {
  const lim = ctx.limits;
  const v = opts.variant ? variantByName(opts.variant) : pickMatmulVariant(M, N, batch, isCpuAdapter(ctx), K, lim.maxComputeWorkgroupStorageSize);
  const { rows: tm, cols: tn } = variantTile(v);
  const split = planSplitK(M, N, K, batch, Math.ceil(N / tn) * Math.ceil(M / tm) * batch,
    Math.min(lim.maxStorageBufferBindingSize, lim.maxBufferSize), opts.splitK);
  return { variant: v, tm, tn, split };
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
 * Records one dispatch (two with split-K: partial products into pooled scratch, then a pairwise reduce
 * that applies alpha/bias/accumulate); never reads back.
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
  const nb = Math.max(batch, 1);
  const outShape = batch ? [batch, M, N] : [M, N];
  if (opts.bias) {
    if (opts.bias.size !== N || opts.bias.dtype !== 'f32') throw new ShapeError(`matmul: bias must have N=${N} f32 entries, got [${opts.bias.shape}]`);
  }
  if (opts.accumulate && !opts.out) throw new ShapeError('matmul: accumulate requires out');
  if (opts.splitK !== undefined && !(Number.isInteger(opts.splitK) && opts.splitK >= 1 && opts.splitK <= SPLIT_MAX)) {
    throw new ShapeError(`matmul: splitK=${opts.splitK} must be an integer in [1, ${SPLIT_MAX}]`);
  }
  const { variant: v, tm, tn, split } = planMatmul(ctx, M, N, K, nb, opts);
  const lim = ctx.limits;
  const grid: [number, number, number] = [Math.ceil(N / tn), Math.ceil(M / tm), nb * split.splits];
  if (grid.some((g) => g > lim.maxComputeWorkgroupsPerDimension)) throw new ShapeError(`matmul: grid [${grid}] for [${outShape}] exceeds the workgroup grid limit`);
  const problem = warpVariantProblem(v);
  if (problem) throw new ShapeError(`matmul variant ${v.name}: ${problem}`);
  const smem = workgroupBytes(v);
  if (smem > lim.maxComputeWorkgroupStorageSize) {
    throw new LimitExceededError('maxComputeWorkgroupStorageSize', smem, lim.maxComputeWorkgroupStorageSize, `matmul variant ${v.name}`);
  }
  const out = opts.out ?? ctx.empty(outShape);
  if (opts.out) {
    const s = opts.out.shape;
    if (opts.out.size !== M * N * nb || s[s.length - 1] !== N || opts.out.dtype !== 'f32') {
      throw new ShapeError(`matmul: out must have shape [${outShape}], got [${s}]`);
    }
    if (opts.out.buffer === a.buffer || opts.out.buffer === b.buffer || opts.out.buffer === opts.bias?.buffer) {
      throw new ShapeError('matmul: out must not alias a, b or bias');
    }
  }
  const splitting = split.splits > 1;
  // vec4 loads need the contiguous dimension of both stored operands to be a multiple of 4.
  const vec4 = da.c % 4 === 0 && db.c % 4 === 0;
  const alpha = opts.alpha ?? 1;
  const uniforms = packUniforms([
    ['u32', M], ['u32', N], ['u32', K], ['u32', da.batch ? M * K : 0],
    ['u32', db.batch ? K * N : 0], ['f32', alpha], ['u32', splitting ? split.kSplit : 0], ['u32', splitting ? nb : 0],
  ]);
  // With split-K the epilogue (bias, accumulate) runs in the reduce pass, so the product kernel skips it.
  const overrides: Record<string, number> = {
    WX: v.wx, WY: v.wy,
    TRANS_A: opts.transA ? 1 : 0, TRANS_B: opts.transB ? 1 : 0,
    HAS_BIAS: opts.bias && !splitting ? 1 : 0, ACCUM: opts.accumulate && !splitting ? 1 : 0,
  };
  if (v.reg) Object.assign(overrides, { RM: v.rm ?? 1, RN: v.rn ?? 1 });
  else overrides.BK = v.bk;
  if (v.warp) Object.assign(overrides, { LX: v.warp.lx, PAD: v.warp.pad });
  // EPI_UNROLL: the tiled kernel's epilogue for bias + accumulate (matmul.wgsl says why).
  const epiUnroll = !!opts.bias && !!opts.accumulate && !splitting && !v.reg && !v.warp;
  const defines: Record<string, boolean> = v.warp
    ? { VEC4: vec4, DB: !!v.db, SPLITK: splitting, VEC4C: N % 4 === 0, TM16: v.warp.tm === 16, TN16: v.warp.tn === 16 }
    : { VEC4: vec4, DB: !!v.db && !v.reg, REG: !!v.reg, SPLITK: splitting, EPI_UNROLL: epiUnroll };
  const spec = v.reg ? REG : v.warp ? WARP : SPEC;
  if (!splitting) {
    // Without bias, bind a (read-only, already bound) as a placeholder: read and write usages may not alias.
    ctx.dispatch(spec, { defines, overrides }, [a, b, opts.bias ?? a, out], grid, uniforms);
    return out;
  }
  const total = nb * M * N;
  const partials = ctx.empty([split.splits * total]);
  ctx.dispatch(spec, { defines, overrides }, [a, b, a, partials], grid, uniforms);
  ctx.dispatch(REDUCE, { defines: { REDUCE: true }, overrides: { HAS_BIAS: opts.bias ? 1 : 0, ACCUM: opts.accumulate ? 1 : 0 } },
    [partials, opts.bias ?? partials, out], grid1d(Math.ceil(total / 256)),
    packUniforms([['u32', total], ['u32', N], ['u32', split.splits], ['f32', alpha]]));
  // Safe to pool right away: a later user of this buffer is ordered after these dispatches.
  partials.dispose();
  return out;
}
