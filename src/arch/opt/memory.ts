/**
 * The OPT block's GPU allocations, walked with shapes only (no device): api/memory-peers.ts replays
 * the peers' layer pass with it, and test/api-memory-llama.test.ts checks that the surgeon's hand-kept
 * OPT bounds (api/memory.ts, unchanged so that OPT's estimates stay as they were) never fall below
 * this walk. Each step names the arch/opt/block.ts line it mirrors; a change to the block's allocation
 * order must be made here too.
 */

import { layerDims, type OptConfig } from '../types';

/** What a walk reports; the same shape as arch/llama/memory.ts LayerAllocs (see there). */
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

const P = 'model.decoder.';

/** OPT keeps no derived tensors on the model (learned positions are a weight). */
export const optCachedTensors = (_c: OptConfig, _T: number): Array<{ key: string; n: number }> => [];

/** optBlock.embed: embedding's [B·T, d] output (token + position). */
export function optEmbedAllocs(c: OptConfig, r: LayerAllocs, N: number): number {
  return r.alloc(N * c.hiddenSize);
}

/** optBlock.layer on x [B·T, d]: the output's handle and, with save, the handles kept for the backward. */
export function optLayerAllocs(c: OptConfig, r: LayerAllocs, l: number, x: number, B: number, T: number, o: LayerWalkOptions): { x: number; saved?: number[] } {
  const N = B * T, d = c.hiddenSize, { ffnDim: f, numHeads: H } = layerDims(c, l), a = H * c.headDim; // a = d unless compact
  const p = `${P}layers.${l}.`;
  const save = !!o.save, keep = save && !!o.keepInputs;
  const late: number[] = [];
  const done = (h: number) => (o.lateFree ? late.push(h) : r.free(h));
  const y1 = r.alloc(N * d), mean1 = r.alloc(N), rstd1 = r.alloc(N); // layerNorm(x)
  r.input(`${p}self_attn.q_proj`, N, d);
  const q = r.linear(`${p}self_attn.q_proj`, N, a, d);
  const k = r.linear(`${p}self_attn.k_proj`, N, a, d);
  const v = r.linear(`${p}self_attn.v_proj`, N, a, d);
  if (!keep) done(y1);
  const out = r.alloc(N * a), lse = r.alloc(N * H); // attention: out, lse
  r.input(`${p}self_attn.out_proj`, N, a);
  let h = x;
  if (save || o.inspect) h = r.alloc(N * d); // h = ctx.empty(x.shape); copy
  r.linear(`${p}self_attn.out_proj`, N, d, a, h);
  const y2 = r.alloc(N * d), mean2 = r.alloc(N), rstd2 = r.alloc(N); // layerNorm(h)
  r.input(`${p}fc1`, N, d);
  const act = r.linear(`${p}fc1`, N, f, d, undefined, `activations (${B} × ${T} tokens × ffn ${f})`); // relu in place
  if (!keep) done(y2);
  r.input(`${p}fc2`, N, f);
  const rest = [mean1, rstd1, q, k, v, out, lse, mean2, rstd2, act];
  if (o.inspect) {
    r.free(h);
    for (const t of [...late, ...rest]) r.free(t);
    return { x };
  }
  let xn = h;
  if (save) xn = r.alloc(N * d); // xn = ctx.empty(h.shape); copy
  r.linear(`${p}fc2`, N, d, f, xn);
  if (save) return { x: xn, saved: [x, mean1, rstd1, ...(keep ? [y1] : []), q, k, v, out, lse, h, mean2, rstd2, ...(keep ? [y2] : []), act] };
  for (const t of [...late, ...rest]) r.free(t);
  return { x: xn };
}

/** optBlock.final: layerNorm → hf [N, d], mean, rstd; with save x, mean, rstd stay, else they are freed. */
export function optFinalAllocs(c: OptConfig, r: LayerAllocs, x: number, N: number, save: boolean): { hf: number; saved?: number[] } {
  const hf = r.alloc(N * c.hiddenSize), mean = r.alloc(N), rstd = r.alloc(N);
  if (save) return { hf, saved: [x, mean, rstd] };
  r.free(x);
  r.free(mean);
  r.free(rstd);
  return { hf };
}

/** optBlock.finalBackward: layerNormBackward's dx [N, d] (no parameter gradients). */
export function optFinalBackwardAllocs(c: OptConfig, r: LayerAllocs, N: number): number {
  return r.alloc(N * c.hiddenSize);
}

/** optBlock.layerBackward from dx (consumed) → the handle of ∂L/∂(layer input). */
export function optLayerBackwardAllocs(c: OptConfig, r: LayerAllocs, l: number, dx: number, B: number, T: number): number {
  const N = B * T, d = c.hiddenSize, { ffnDim: f, numHeads: H } = layerDims(c, l), a = H * c.headDim;
  const p = `${P}layers.${l}.`;
  const dact = r.linearBackward(`${p}fc2`, N, d, f); // reluBackward in place
  const dy2 = r.linearBackward(`${p}fc1`, N, f, d);
  r.free(dact);
  const dh = r.alloc(N * d); // layerNormBackward
  r.free(dy2);
  r.free(dx); // axpy(dh, dx); dx.dispose()
  const dattn = r.linearBackward(`${p}self_attn.out_proj`, N, d, a);
  const delta = r.alloc(N * H); // attentionBackward: delta, then dq, dk, dv; delta freed at its end
  const dq = r.alloc(N * a), dk = r.alloc(N * a), dv = r.alloc(N * a);
  r.free(delta);
  r.free(dattn);
  const dy1 = r.linearBackward(`${p}self_attn.q_proj`, N, a, d);
  r.linearBackward(`${p}self_attn.k_proj`, N, a, d, dy1);
  r.linearBackward(`${p}self_attn.v_proj`, N, a, d, dy1);
  r.free(dq);
  r.free(dk);
  r.free(dv);
  const dxn = r.alloc(N * d); // layerNormBackward
  r.free(dy1);
  r.free(dh); // axpy(dxn, dh); dh.dispose()
  return dxn;
}
