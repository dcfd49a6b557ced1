/**
 * One float64 reference model type over the families (OPT, Llama), so K-FAC, the surgeon, the peers
 * and LoRA never name a family's modules. Dispatch is by config shape: a Llama config carries
 * `kvHeads` (and `headDim`, `ropeTheta`), an OPT config does not. That keeps every existing
 * `{ cfg, w }` OPT literal valid without a new field; `isLlama` is the one place that decides.
 */

import { ShapeError } from '../gpu/errors';
import * as llama from './llama';
import * as opt from './opt';
import type { LlamaCache, LlamaRefConfig, RefLlama } from './llama';
import type { OptCache, OptConfig, RefBackward, RefOpt } from './opt';

export type RefModel = RefOpt | RefLlama;
export type RefConfig = OptConfig | LlamaRefConfig;
export type RefCache = OptCache | LlamaCache;
export type { RefBackward };

/** A prunable linear: HF module name, R = out_features, C = in_features, bias = W' has the extra column. */
export interface RefLinear { name: string; R: number; C: number; bias: boolean }

export const isLlamaConfig = (cfg: RefConfig): cfg is LlamaRefConfig => 'kvHeads' in cfg;
export const isLlama = (m: RefModel): m is RefLlama => isLlamaConfig(m.cfg);
export const familyOf = (cfg: RefConfig): 'opt' | 'llama' => (isLlamaConfig(cfg) ? 'llama' : 'opt');

/** Prunable linears in the order used everywhere (per layer: OPT q k v out fc1 fc2; Llama q k v o gate up down). */
export function prunableLayers(cfg: RefConfig): RefLinear[] {
  return isLlamaConfig(cfg) ? llama.prunableLayers(cfg) : opt.prunableLayers(cfg).map((l) => ({ ...l, bias: true }));
}

/** Whether a prunable linear has a bias (OPT: all; Llama: q/k/v of a qkvBias model). */
export function linearHasBias(cfg: RefConfig, name: string): boolean {
  return isLlamaConfig(cfg) ? cfg.qkvBias && /self_attn\.[qkv]_proj$/.test(name) : true;
}

/** Decoder layer index of a module name ("….layers.3.…" → 3). */
export function layerIndexOf(name: string): number {
  const mm = /\blayers\.(\d+)\./.exec(name);
  if (!mm) throw new ShapeError(`reference model: ${name} is not inside a decoder layer`);
  return Number(mm[1]);
}

/** A named parameter, checked for presence and size. */
export function modelParam(m: RefModel, name: string, size: number): Float64Array {
  return isLlama(m) ? llama.param(m, name, size) : opt.param(m, name, size);
}

/** The LM head E (V×d): OPT's tied embed_tokens; Llama's embed_tokens or lm_head. */
export function headMatrix(m: RefModel): Float64Array {
  return isLlama(m) ? llama.headMatrix(m) : opt.param(m, 'model.decoder.embed_tokens.weight', m.cfg.vocab * m.cfg.d);
}

export function forwardHidden(m: RefModel, ids: number[], delta?: Map<string, Float64Array>): { hf: Float64Array; cache: RefCache } {
  return isLlama(m) ? llama.forwardHidden(m, ids, delta) : opt.forwardHidden(m, ids, delta);
}

export function refForward(m: RefModel, ids: number[]): { logits: Float64Array; loss: number; cache: RefCache } {
  return isLlama(m) ? llama.refForward(m, ids) : opt.refForward(m, ids);
}

export function refLoss(m: RefModel, ids: number[], opts: { labels?: number[]; outputDelta?: Map<string, Float64Array> } = {}): number {
  return isLlama(m) ? llama.refLoss(m, ids, opts) : opt.refLoss(m, ids, opts);
}

export function refBackward(m: RefModel, ids: number[], opts: { labels?: number[] } = {}): RefBackward {
  return isLlama(m) ? llama.refBackward(m, ids, opts) : opt.refBackward(m, ids, opts);
}

export function refPerplexity(m: RefModel, ids: number[], seqlen: number, windows?: number): number {
  return isLlama(m) ? llama.refPerplexity(m, ids, seqlen, windows) : opt.refPerplexity(m, ids, seqlen, windows);
}

/** The input (T×C) of every prunable linear of decoder layer `l`; linears sharing an input share the array. */
export function linearInputs(m: RefModel, ids: number[], l: number): Map<string, Float64Array> {
  if (isLlama(m)) return llama.linearInputs(m, ids, l);
  const c = opt.forwardHidden(m, ids).cache.layers[l];
  if (!c) throw new ShapeError(`OPT reference: no decoder layer ${l}`);
  const p = `model.decoder.layers.${l}.`;
  return new Map([
    [`${p}self_attn.q_proj`, c.ln1.out], [`${p}self_attn.k_proj`, c.ln1.out], [`${p}self_attn.v_proj`, c.ln1.out],
    [`${p}self_attn.out_proj`, c.attn], [`${p}fc1`, c.ln2.out], [`${p}fc2`, c.act],
  ]);
}

/** Deep copy (weights and config); the references never mutate their inputs. */
export function cloneModel<M extends RefModel>(m: M): M {
  const w = new Map<string, Float64Array>();
  for (const [k, v] of m.w) w.set(k, Float64Array.from(v));
  const cfg = { ...m.cfg } as M['cfg'];
  if ('invFreq' in cfg && cfg.invFreq) cfg.invFreq = Float64Array.from(cfg.invFreq);
  return { ...m, cfg, w };
}
