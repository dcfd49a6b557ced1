import source from '../../shaders/embedding.wgsl?raw';
import { grid1d, packUniforms, type GpuContext, type KernelSpec } from '../gpu/context';
import type { Tensor } from '../gpu/tensor';
import { ShapeError } from '../gpu/errors';

const EMBED: KernelSpec = { name: 'embedding', source, bindings: ['read', 'read', 'read', 'write'], uniform: true };

export interface EmbeddingOptions {
  /** Tokens per sequence; ids holds B·T tokens (default: all ids are one sequence). */
  seqLen?: number;
  /** Position of the first token (generation with a prefix); HF OPT adds another 2. */
  posOffset?: number;
  out?: Tensor;
}

/** Token embedding alone (Llama: positions enter through RoPE): ids [B·T] (u32) → x [B·T, d] = etok[ids]. */
export function tokenEmbedding(ctx: GpuContext, ids: Tensor, etok: Tensor, opts: { out?: Tensor } = {}): Tensor {
  if (ids.dtype !== 'u32') throw new ShapeError(`tokenEmbedding: ids must be u32, got ${ids.dtype}`);
  if (etok.shape.length !== 2) throw new ShapeError(`tokenEmbedding: etok [V, d] expected, got [${etok.shape}]`);
  const n = ids.size;
  const [vocab, d] = etok.shape;
  if (opts.out && opts.out.size !== n * d) throw new ShapeError(`tokenEmbedding: out [${opts.out.shape}] should hold [${n}, ${d}]`);
  const out = opts.out ?? ctx.empty([n, d]);
  const u = packUniforms([['u32', n], ['u32', d], ['u32', n], ['u32', 0], ['u32', vocab], ['u32', 0], ['u32', 0], ['u32', 0]]);
  ctx.dispatch(EMBED, { defines: { NOPOS: true } }, [ids, etok, etok, out], grid1d(Math.ceil((n * d) / 256)), u);
  return out;
}

/**
 * OPT token + learned position embedding: ids [B·T] (u32) → x [B·T, d].
 * etok [V, d], epos [maxPos + 2, d] (HF's table includes the offset rows). Out-of-range ids give NaN rows.
 */
export function embedding(ctx: GpuContext, ids: Tensor, etok: Tensor, epos: Tensor, opts: EmbeddingOptions = {}): Tensor {
  if (ids.dtype !== 'u32') throw new ShapeError(`embedding: ids must be u32, got ${ids.dtype}`);
  if (etok.shape.length !== 2 || epos.shape.length !== 2 || etok.shape[1] !== epos.shape[1]) {
    throw new ShapeError(`embedding: etok [V, d] and epos [P, d] expected, got [${etok.shape}] and [${epos.shape}]`);
  }
  const n = ids.size;
  const [vocab, d] = etok.shape;
  const T = opts.seqLen ?? n;
  const posOffset = opts.posOffset ?? 0;
  if (T < 1 || n % T !== 0) throw new ShapeError(`embedding: ${n} ids are not whole sequences of ${T}`);
  if (T + 2 + posOffset > epos.shape[0]) {
    throw new ShapeError(`embedding: positions up to ${T + 1 + posOffset} need ${T + 2 + posOffset} rows, epos has ${epos.shape[0]}`);
  }
  if (opts.out && opts.out.size !== n * d) throw new ShapeError(`embedding: out [${opts.out.shape}] should hold [${n}, ${d}]`);
  const out = opts.out ?? ctx.empty([n, d]);
  const u = packUniforms([['u32', n], ['u32', d], ['u32', T], ['u32', posOffset], ['u32', vocab], ['u32', epos.shape[0]], ['u32', 0], ['u32', 0]]);
  ctx.dispatch(EMBED, {}, [ids, etok, epos, out], grid1d(Math.ceil((n * d) / 256)), u);
  return out;
}
