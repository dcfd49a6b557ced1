/**
 * The Llama block's GPU allocations, walked with shapes only (no device): the memory estimates
 * (api/memory.ts, api/memory-peers.ts) replay these instead of keeping a second formula of what
 * arch/llama/block.ts allocates. Each step names the block line it mirrors; a change to the block's
 * allocation order must be made here too (test/api-memory-llama.test.ts compares the replay with the
 * pool's measured peak on real runs).
 *
 * The walker only says what the block allocates and frees, in order; the recorder decides what the
 * callbacks cost (a linear's split-K scratch, a K-FAC/Hessian hook, weight gradients), as the model's
 * forward/backward/kfac and the peers' layer pass do around the block.
 */

import { layerDims, type LlamaConfig } from '../types';

/**
 * What a walk reports (same shape as arch/opt/memory.ts's; handles are the recorder's own numbers).
 * `linear`: matmul of an [M, K] input with a linear's Wᵀ → [M, N], new or accumulated into `into`;
 * `what` names a large output for refusal messages (as alloc's).
 * `input`: LayerStepOptions.onInput with an [rows, C] tensor. `linearBackward`: backward.ts's
 * LinearBackward (hooks on dy [rows, R], then dy·W → [rows, C], new or into `into`).
 * `cached`: DecoderModel.cached(key) of n entries (built once per key, kept with the model).
 */
export interface LayerAllocs {
  alloc(n: number, what?: string): number;
  free(h: number): void;
  linear(name: string, M: number, N: number, K: number, into?: number, what?: string): number;
  input(key: string, rows: number, C: number): void;
  linearBackward(name: string, rows: number, R: number, C: number, into?: number): number;
  cached(key: string, n: number): void;
}

/** LayerStepOptions without the callback (the recorder's `input` stands for onInput). */
export interface LayerWalkOptions { save?: boolean; keepInputs?: boolean; inspect?: boolean; lateFree?: boolean }

const P = 'model.';

/** block.ts ropeTable: rows of the cos/sin table a forward of T tokens uses (its cache key). */
export function llamaRopeRows(c: LlamaConfig, T: number): number {
  let rows = 2048;
  while (rows < T) rows *= 2;
  return Math.min(rows, Math.max(T, c.maxPositions));
}

/** The model-held tensors (DecoderModel.cached) a forward of T tokens needs: the RoPE table [rows, headDim]. */
export function llamaCachedTensors(c: LlamaConfig, T: number): Array<{ key: string; n: number }> {
  const rows = llamaRopeRows(c, T);
  return [{ key: `rope:${rows}`, n: rows * c.headDim }];
}

/** llamaBlock.embed: tokenEmbedding's [B·T, d] output. */
export function llamaEmbedAllocs(c: LlamaConfig, r: LayerAllocs, N: number): number {
  return r.alloc(N * c.hiddenSize);
}

/**
 * llamaBlock.layer on x [B·T, d] (`x`: its handle). Returns the output's handle (x itself unless save
 * or inspect) and, with save, the handles the backward keeps (freed by releaseSaved).
 */
export function llamaLayerAllocs(c: LlamaConfig, r: LayerAllocs, l: number, x: number, B: number, T: number, o: LayerWalkOptions): { x: number; saved?: number[] } {
  const N = B * T, d = c.hiddenSize, L = layerDims(c, l), f = L.ffnDim, qd = L.numHeads * c.headDim, kvd = L.numKvHeads * c.headDim;
  const p = `${P}layers.${l}.`;
  const save = !!o.save, keep = save && !!o.keepInputs;
  const late: number[] = [];
  const done = (h: number) => (o.lateFree ? late.push(h) : r.free(h));
  const act = `activations (${B} × ${T} tokens × ffn ${f})`;
  for (const t of llamaCachedTensors(c, T)) r.cached(t.key, t.n); // const table = ropeTable(...)
  const y1 = r.alloc(N * d), rstd1 = r.alloc(N); // rmsNorm(x): y, rstd
  r.input(`${p}self_attn.q_proj`, N, d);
  const q = r.linear(`${p}self_attn.q_proj`, N, qd, d);
  const k = r.linear(`${p}self_attn.k_proj`, N, kvd, d);
  const v = r.linear(`${p}self_attn.v_proj`, N, kvd, d);
  if (!keep) done(y1);
  // rope(q), rope(k): in place
  const out = r.alloc(N * qd), lse = r.alloc(N * L.numHeads); // attention: out, lse
  r.input(`${p}self_attn.o_proj`, N, qd);
  let h = x;
  if (save || o.inspect) h = r.alloc(N * d); // h = ctx.empty(x.shape); copy
  r.linear(`${p}self_attn.o_proj`, N, d, qd, h);
  const y2 = r.alloc(N * d), rstd2 = r.alloc(N); // rmsNorm(h)
  r.input(`${p}mlp.gate_proj`, N, d);
  const g = r.linear(`${p}mlp.gate_proj`, N, f, d, undefined, act), u = r.linear(`${p}mlp.up_proj`, N, f, d, undefined, act);
  if (!keep) done(y2);
  const a = save ? r.alloc(N * f, act) : g; // swiglu: own buffer with save, else into gate
  if (!save) done(u);
  r.input(`${p}mlp.down_proj`, N, f);
  const rest = [rstd1, q, k, v, out, lse, rstd2];
  if (o.inspect) {
    r.free(h);
    for (const t of [...late, ...rest, a]) r.free(t);
    return { x };
  }
  let xn = h;
  if (save) xn = r.alloc(N * d); // xn = ctx.empty(h.shape); copy
  r.linear(`${p}mlp.down_proj`, N, d, f, xn);
  if (save) {
    if (!keep) r.free(a); // act.dispose()
    return { x: xn, saved: [x, rstd1, ...(keep ? [y1] : []), q, k, v, out, lse, h, rstd2, ...(keep ? [y2] : []), g, u, ...(keep ? [a] : [])] };
  }
  for (const t of [...late, ...rest, a]) r.free(t);
  return { x: xn };
}

/** llamaBlock.final: rmsNorm → hf [N, d] and rstdF; with save x and rstdF stay (saved), else they are freed. */
export function llamaFinalAllocs(c: LlamaConfig, r: LayerAllocs, x: number, N: number, save: boolean): { hf: number; saved?: number[] } {
  const hf = r.alloc(N * c.hiddenSize), rstd = r.alloc(N);
  if (save) return { hf, saved: [x, rstd] };
  r.free(x);
  r.free(rstd);
  return { hf };
}

/** llamaBlock.finalBackward: rmsNormBackward's dx [N, d] (no parameter gradients). */
export function llamaFinalBackwardAllocs(c: LlamaConfig, r: LayerAllocs, N: number): number {
  return r.alloc(N * c.hiddenSize);
}

/** llamaBlock.layerBackward from dx (consumed) → the handle of ∂L/∂(layer input). Saved tensors are only read. */
export function llamaLayerBackwardAllocs(c: LlamaConfig, r: LayerAllocs, l: number, dx: number, B: number, T: number): number {
  const N = B * T, d = c.hiddenSize, L = layerDims(c, l), f = L.ffnDim, qd = L.numHeads * c.headDim, kvd = L.numKvHeads * c.headDim;
  const p = `${P}layers.${l}.`;
  for (const t of llamaCachedTensors(c, T)) r.cached(t.key, t.n); // ropeTable (already built by the forward)
  const dact = r.linearBackward(`${p}mlp.down_proj`, N, d, f);
  const dGate = r.alloc(N * f), dUp = r.alloc(N * f); // swigluBackward
  r.free(dact);
  const dy2 = r.linearBackward(`${p}mlp.gate_proj`, N, f, d);
  r.linearBackward(`${p}mlp.up_proj`, N, f, d, dy2);
  r.free(dGate);
  r.free(dUp);
  const dh = r.alloc(N * d); // rmsNormBackward
  r.free(dy2);
  r.free(dx); // axpy(dh, dx); dx.dispose()
  const dattn = r.linearBackward(`${p}self_attn.o_proj`, N, d, qd);
  const delta = r.alloc(N * L.numHeads); // attentionBackward: delta, then dq, dk, dv; delta freed at its end
  const dq = r.alloc(N * qd), dk = r.alloc(N * kvd), dv = r.alloc(N * kvd);
  r.free(delta);
  r.free(dattn);
  // rope backward on dq, dk: in place
  const dy1 = r.linearBackward(`${p}self_attn.q_proj`, N, qd, d);
  r.linearBackward(`${p}self_attn.k_proj`, N, kvd, d, dy1);
  r.linearBackward(`${p}self_attn.v_proj`, N, kvd, d, dy1);
  r.free(dq);
  r.free(dk);
  r.free(dv);
  const dxn = r.alloc(N * d); // rmsNormBackward
  r.free(dy1);
  r.free(dh); // axpy(dxn, dh); dh.dispose()
  return dxn;
}
