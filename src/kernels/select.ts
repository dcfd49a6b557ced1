import source from '../../shaders/select.wgsl?raw';
import { packUniforms, type GpuContext, type KernelSpec } from '../gpu/context';
import type { Tensor } from '../gpu/tensor';
import { ShapeError } from '../gpu/errors';
import { foldedGrid, requireF32 } from './elementwise';

/*
 * Exact selection over f32 data in the total order "NaN last, -0 == +0" (see shaders/select.wgsl).
 * kthSmallest*: radix select, 3 histogram passes over the data (11/11/10-bit digits); the running
 * prefix and rank stay on the GPU, so the only readback is the final 4-byte value.
 */

const spec = (entry: string, bindings: KernelSpec['bindings']): KernelSpec => ({
  name: `select.${entry}`,
  source,
  entry,
  bindings,
  uniform: true,
});
const HIST = spec('hist', ['read', 'read', 'read', 'read', 'read', 'read', 'write', 'read']);
const SLOTS = 6; // input tensors per hist dispatch: 6 + histogram + state = the 8 storage bindings of BASE_NEEDS
const SCAN = spec('scan', ['read', 'write', 'write']);
const COUNT_LE = spec('count_le', ['read', 'write']);
const COUNT_LE_BUF = spec('count_le', ['read', 'write', 'read']);
const MASK_LE = spec('mask_le', ['read', 'write']);
const MASK_LE_BUF = spec('mask_le', ['read', 'write', 'read']);

const WG = 256; // threads per workgroup in select.wgsl
const BINS = 2048; // 11-bit digits
// Entries per thread at least: a 4096-entry tile amortises clearing and merging the 2048 bins
// (with 1024-entry tiles, a 1e6 selection on SwiftShader took ~1.5× longer).
const MIN_ITEMS = 16;
// Workgroups per dispatch that fill an H200 (132 SMs × 8 resident 256-thread workgroups); larger
// inputs give each thread more entries instead of adding workgroups.
const TARGET_GROUPS = 1024;
/** [shift, digit bits] of the 3 passes, most significant digit first. */
const PASSES: Array<[number, number]> = [[21, 11], [10, 11], [0, 10]];

const f32Bits = (v: number): number => new Uint32Array(Float32Array.of(v).buffer)[0];

/** Order-preserving u32 key of an f32 value (as in select.wgsl): NaN → 0xffffffff, ±0 → 0x80000000. */
export function f32Key(v: number): number {
  const b = f32Bits(v);
  const a = b & 0x7fffffff;
  if (a > 0x7f800000) return 0xffffffff;
  if (a === 0) return 0x80000000;
  return a !== b ? ~b >>> 0 : (b | 0x80000000) >>> 0;
}

/** The largest f32 ≤ v (so that x ≤ v ⇔ x ≤ floorToF32(v) for every f32 x); NaN stays NaN. */
export function floorToF32(v: number): number {
  const f = Math.fround(v);
  if (!(f > v)) return f;
  const b = f32Bits(f);
  // f > v: one f32 step towards -inf (positive: bits − 1; negative or -0: magnitude bits + 1).
  const down = b & 0x80000000 ? b + 1 : b === 0 ? 0x80000001 : b - 1;
  return new Float32Array(Uint32Array.of(down).buffer)[0];
}

function params(f: { n?: number; items?: number; shift?: number; digitMask?: number; hiMask?: number; histOffset?: number; last?: number; tauKey?: number }): ArrayBuffer {
  return packUniforms([
    ['u32', f.n ?? 0], ['u32', f.items ?? 0], ['u32', f.shift ?? 0], ['u32', f.digitMask ?? 0],
    ['u32', (f.hiMask ?? 0) >>> 0], ['u32', f.histOffset ?? 0], ['u32', f.last ?? 0], ['u32', (f.tauKey ?? 0) >>> 0],
  ]);
}

function tiling(n: number): { items: number; groups: number } {
  const items = Math.max(MIN_ITEMS, Math.ceil(n / (WG * TARGET_GROUPS)));
  return { items, groups: Math.ceil(n / (WG * items)) };
}

function checkInputs(op: string, xs: Tensor[]): number {
  if (xs.length === 0) throw new ShapeError(`${op}: at least one tensor expected`);
  requireF32(op, ...xs);
  return xs.reduce((s, t) => s + t.size, 0);
}

/**
 * k-th smallest (0-based) value over the concatenation of `xs`, left on the GPU as a [1] f32 tensor
 * (no readback; usable as τ by countLessEqual/maskLessEqual). Exact. NaN sorts last; -0 and +0 are
 * equal and a zero answer is returned as +0.
 */
export function kthSmallestTensor(ctx: GpuContext, xs: Tensor | Tensor[], k: number): Tensor {
  const list = Array.isArray(xs) ? xs : [xs];
  const total = checkInputs('kthSmallest', list);
  if (!Number.isInteger(k) || k < 0 || k >= total) {
    throw new ShapeError(`kthSmallest: k = ${k} is outside [0, ${total - 1}] for ${total} entries`);
  }
  if (total > 0xffffffff) throw new ShapeError(`kthSmallest: ${total} entries exceed the u32 counters`);
  const hist = ctx.zeros([PASSES.length * BINS], 'u32');
  const state = ctx.upload(new Uint32Array([0, k, 0, 0]));
  const out = ctx.empty([1]);
  // Batches of up to 6 non-empty tensors, one hist dispatch per batch and pass.
  const nonEmpty = list.filter((t) => t.size > 0);
  const batches: Tensor[][] = [];
  for (let i = 0; i < nonEmpty.length; i += SLOTS) batches.push(nonEmpty.slice(i, i + SLOTS));
  let hiMask = 0;
  PASSES.forEach(([shift, bits], p) => {
    const digitMask = (1 << bits) - 1;
    for (const batch of batches) {
      const { items } = tiling(batch.reduce((a, t) => a + t.size, 0));
      const n = [0, 0, 0, 0, 0, 0, 0, 0];
      const g = [0, 0, 0, 0, 0, 0, 0, 0];
      let groups = 0;
      for (let s = 0; s < SLOTS; s++) {
        g[s] = groups;
        n[s] = batch[s]?.size ?? 0;
        groups += Math.ceil(n[s] / (WG * items));
      }
      g[SLOTS] = groups;
      const u = packUniforms([
        ['u32', items], ['u32', shift], ['u32', digitMask], ['u32', hiMask >>> 0], ['u32', p * BINS], ['u32', 0], ['u32', 0], ['u32', 0],
        ...n.map((v): ['u32', number] => ['u32', v]),
        ...g.map((v): ['u32', number] => ['u32', v]),
      ]);
      const xs = Array.from({ length: SLOTS }, (_, s) => batch[Math.min(s, batch.length - 1)]); // unused slots: any bound tensor, n = 0
      ctx.dispatch(HIST, {}, [...xs, hist, state], foldedGrid(groups), u);
    }
    const last = p === PASSES.length - 1 ? 1 : 0;
    ctx.dispatch(SCAN, {}, [hist, state, out], [1], params({ shift, histOffset: p * BINS, last }));
    hiMask = (hiMask | (digitMask << shift)) >>> 0;
  });
  hist.dispose();
  state.dispose();
  return out;
}

/** Exact k-th smallest (0-based) value of x. NaN sorts last; a zero answer is +0. One 4-byte readback. */
export async function kthSmallest(ctx: GpuContext, x: Tensor, k: number): Promise<number> {
  return kthSmallestMany(ctx, [x], k);
}

/** Exact k-th smallest (0-based) over several tensors treated as one concatenated array (not copied). */
export async function kthSmallestMany(ctx: GpuContext, xs: Tensor[], k: number): Promise<number> {
  const t = kthSmallestTensor(ctx, xs, k);
  const v = (await ctx.readF32(t))[0];
  t.dispose();
  return v;
}

/** τ as a uniform key, or as a GPU scalar ([1] f32 tensor, e.g. from kthSmallestTensor). */
function tauArgs(op: string, tau: number | Tensor): { buf?: Tensor; key: number } {
  if (typeof tau === 'number') return { key: Number.isNaN(tau) ? 0xffffffff : f32Key(floorToF32(tau)) };
  requireF32(op, tau);
  if (tau.size < 1) throw new ShapeError(`${op}: τ tensor is empty`);
  return { buf: tau, key: 0 };
}

/**
 * Exact count of entries x ≤ τ over one or more tensors → [1] u32, in the order of kthSmallest
 * (NaN is larger than everything, so it is counted only when τ is NaN; -0 == +0). A number τ is
 * compared exactly (as the largest f32 ≤ τ), a tensor τ is read on the GPU.
 */
export function countLessEqual(ctx: GpuContext, x: Tensor | Tensor[], tau: number | Tensor): Tensor {
  const list = Array.isArray(x) ? x : [x];
  checkInputs('countLessEqual', list);
  const { buf, key } = tauArgs('countLessEqual', tau);
  const out = ctx.zeros([1], 'u32');
  for (const t of list) {
    if (t.size === 0) continue;
    const { items, groups } = tiling(t.size);
    const u = params({ n: t.size, items, tauKey: key });
    if (buf) ctx.dispatch(COUNT_LE_BUF, { defines: { TAU_BUFFER: true } }, [t, out, buf], foldedGrid(groups), u);
    else ctx.dispatch(COUNT_LE, {}, [t, out], foldedGrid(groups), u);
  }
  return out;
}

/** mask[i] = 1 if x[i] ≤ τ else 0 (f32, same shape as x), same comparison as countLessEqual. */
export function maskLessEqual(ctx: GpuContext, x: Tensor, tau: number | Tensor): Tensor {
  requireF32('maskLessEqual', x);
  const { buf, key } = tauArgs('maskLessEqual', tau);
  const out = ctx.empty(x.shape);
  const u = params({ n: x.size, tauKey: key });
  const grid = foldedGrid(Math.ceil(x.size / WG));
  if (buf) ctx.dispatch(MASK_LE_BUF, { defines: { TAU_BUFFER: true } }, [x, out, buf], grid, u);
  else ctx.dispatch(MASK_LE, {}, [x, out], grid, u);
  return out;
}
