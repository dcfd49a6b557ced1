import source from '../../shaders/attention-decode.wgsl?raw';
import { packUniforms, type GpuContext, type KernelSpec } from '../gpu/context';
import type { Tensor } from '../gpu/tensor';
import { LimitExceededError, ShapeError } from '../gpu/errors';
import { requireF32 } from './elementwise';

const PARTIAL: KernelSpec = { name: 'attention.decode.partial', source, entry: 'partial', bindings: ['read', 'read', 'read', 'write'], uniform: true };
const COMBINE: KernelSpec = { name: 'attention.decode.combine', source, entry: 'combine', bindings: ['read', 'write', 'write'], uniform: true };
const TILE = 64; // keys per tile = threads per workgroup in attention-decode.wgsl
// Chunks are split until about this many workgroups run: enough to occupy every SM of a large GPU
// (132 on an H200) when a model has few heads; each chunk stays whole 64-key tiles.
const TARGET_WORKGROUPS = 256;

export interface DecodeAttentionShape {
  /** Query heads H: q is [1, H·hd]. */
  heads: number;
  /** Key/value heads (must divide heads); the cache rows are KH·hd wide. Default heads. */
  kvHeads?: number;
  /** Valid cache rows L (positions 0 … L−1, the query's own at L−1). */
  length: number;
  /** Score scale; default hd^-0.5 (both families). */
  scale?: number;
}

/** Keys per chunk and chunk count for L keys and H heads (no empty chunk). */
export function decodeChunks(L: number, H: number): { chunk: number; nchunks: number } {
  const tiles = Math.ceil(L / TILE);
  const want = Math.min(tiles, Math.max(1, Math.ceil(TARGET_WORKGROUPS / H)));
  const chunk = Math.ceil(tiles / want) * TILE;
  return { chunk, nchunks: Math.ceil(L / chunk) };
}

const int = (x: number) => Number.isInteger(x) && x >= 1;

/**
 * Causal attention of the newest token during generation: q [1, H·hd] against the first `length` rows of
 * kCache, vCache [capacity, KH·hd] (grouped-query) → out [1, H·hd] and lse [1, H], the same values as
 * the last row of attention() over those rows. Two dispatches (chunk partials, then their merge).
 */
export function attentionDecode(ctx: GpuContext, q: Tensor, kCache: Tensor, vCache: Tensor, s: DecodeAttentionShape): { out: Tensor; lse: Tensor } {
  requireF32('attentionDecode', q, kCache, vCache);
  const H = s.heads, KH = s.kvHeads ?? H, L = s.length;
  if (!int(H) || !int(KH) || H % KH) throw new ShapeError(`attentionDecode: kvHeads ${KH} must divide heads ${H} (both integers ≥ 1)`);
  if (q.shape.length !== 2 || q.shape[0] !== 1 || q.shape[1] % H) throw new ShapeError(`attentionDecode: q must be [1, heads·hd] for heads ${H}, got [${q.shape}]`);
  const hd = q.shape[1] / H, Dk = KH * hd;
  if (hd > 128) throw new ShapeError(`attentionDecode: head dim ${hd} > 128 is not supported`);
  for (const [n, t] of [['kCache', kCache], ['vCache', vCache]] as const) {
    if (t.shape.length !== 2 || t.shape[1] !== Dk) throw new ShapeError(`attentionDecode: ${n} [${t.shape}] should be [capacity, ${Dk}] (kvHeads ${KH} · head dim ${hd})`);
  }
  if (!int(L) || L > kCache.shape[0] || kCache.shape[0] !== vCache.shape[0]) {
    throw new ShapeError(`attentionDecode: length ${L} must be 1 … ${kCache.shape[0]} (the caches' rows, k ${kCache.shape[0]}, v ${vCache.shape[0]})`);
  }
  const { chunk, nchunks } = decodeChunks(L, H);
  if (nchunks > 65535 || H > 65535) throw new LimitExceededError('maxComputeWorkgroupsPerDimension', Math.max(nchunks, H), 65535, 'attentionDecode runs one workgroup per (chunk, head)');
  const u = packUniforms([
    ['u32', L], ['u32', H], ['u32', hd], ['f32', s.scale ?? 1 / Math.sqrt(hd)], ['u32', H / KH], ['u32', Dk], ['u32', chunk], ['u32', nchunks],
  ]);
  const part = ctx.empty([H * nchunks * (hd + 2)]);
  ctx.dispatch(PARTIAL, { defines: { PARTIAL: true } }, [q, kCache, vCache, part], [nchunks, H], u);
  const out = ctx.empty([1, H * hd]), lse = ctx.empty([1, H]);
  ctx.dispatch(COMBINE, {}, [part, out, lse], [H], u);
  part.dispose();
  return { out, lse };
}
