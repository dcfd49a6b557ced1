/**
 * Apply a CompactPlan (plan.ts): the compact model's config.json and its tensors with the real
 * smaller shapes, the kept rows/columns copied in order. Pure (no GPU); the input arrays are never
 * modified. Config: when every layer has the same widths (a uniform prune, or a plan that keeps every
 * unit) a stock config — ffn_dim / intermediate_size and, for the Llama family, num_attention_heads /
 * num_key_value_heads set to them, head_dim written out — that transformers loads as the usual
 * class; OPT only while every head stays (its head_dim is hidden_size / heads). Otherwise the source's
 * config plus `compact_layers` with each layer's widths, the global ones staying as the maxima.
 */

import { COMPACT_KEY } from '../arch/parse';
import { familySpec, parseModelConfig } from '../arch/registry';
import type { LayerDims, ModelConfig } from '../arch/types';
import { planCompaction, tensorOf, type CompactPlan } from './plan';

export interface CompactModel {
  /** config.json of the compact model (the source's raw plus compact_layers when a layer shrank). */
  raw: Record<string, unknown>;
  config: ModelConfig;
  /** Canonical names → new arrays of the compact shapes, in the compact config's tensor order. */
  tensors: Map<string, Float32Array>;
  shapes: Map<string, number[]>;
  plan: CompactPlan;
  /** Parameters (every tensor of the config) before and after. */
  params: { before: number; after: number };
}

/** Row / column indices to keep of one tensor (undefined: all). */
interface Selection { rows?: number[]; cols?: number[] }

/** Indices [u·width, (u+1)·width) of every kept unit u, in order (heads → their dims). */
const expand = (units: number[], width: number): number[] => units.flatMap((u) => Array.from({ length: width }, (_, j) => u * width + j));

/** What to keep of each tensor a unit rule touches. */
function selections(cfg: ModelConfig, plan: CompactPlan): Map<string, Selection> {
  const spec = familySpec(cfg);
  const sel = new Map<string, Selection>();
  const put = (name: string, s: Selection) => sel.set(name, { ...sel.get(name), ...s });
  const rows = (p: string, linear: string, r: number[]) => { put(`${p}${linear}.weight`, { rows: r }); put(`${p}${linear}.bias`, { rows: r }); };
  plan.layers.forEach((lp, l) => {
    const p = spec.layerPrefix(l);
    for (const rule of spec.units(cfg, l)) {
      if (rule.kind === 'ffn') {
        for (const s of rule.rows) rows(p, s, lp.neurons);
        for (const s of rule.cols) put(`${p}${s}.weight`, { cols: lp.neurons }); // a cols linear's bias is residual-wide: kept whole
      } else {
        const q = expand(lp.heads, rule.headDim), kv = expand(lp.kvHeads, rule.headDim);
        rows(p, rule.q, q);
        rows(p, rule.k, kv);
        rows(p, rule.v, kv);
        put(`${p}${rule.o}.weight`, { cols: q });
      }
    }
  });
  return sel;
}

/** Gather the selected rows/columns of a [R, C] (or [R]) tensor into a new array. */
function gather(src: Float32Array, shape: number[], s: Selection | undefined): Float32Array {
  if (!s) return src.slice();
  const R = shape[0], C = shape.length > 1 ? shape[1] : 1;
  const rows = s.rows ?? Array.from({ length: R }, (_, i) => i);
  const cols = shape.length > 1 ? s.cols ?? Array.from({ length: C }, (_, i) => i) : [0];
  const out = new Float32Array(rows.length * cols.length);
  let k = 0;
  for (const r of rows) for (const c of cols) out[k++] = src[r * C + c];
  return out;
}

/** Whether layers of these widths fit a stock config of `cfg`'s family (see the file comment). */
export function stockDims(cfg: ModelConfig, dims: readonly LayerDims[]): boolean {
  const d = dims[0];
  const same = dims.every((x) => x.ffnDim === d.ffnDim && x.numHeads === d.numHeads && x.numKvHeads === d.numKvHeads);
  return same && (cfg.family !== 'opt' || d.numHeads === cfg.numHeads);
}

/** The config.json of a compact model: stock when the widths allow, else `compact_layers`. */
export function compactConfigRaw(cfg: ModelConfig, dims: LayerDims[]): Record<string, unknown> {
  const raw: Record<string, unknown> = { ...cfg.raw };
  delete raw[COMPACT_KEY];
  if (!stockDims(cfg, dims)) {
    raw[COMPACT_KEY] = dims.map((d) => ({ ffn_dim: d.ffnDim, num_attention_heads: d.numHeads, num_key_value_heads: d.numKvHeads }));
    return raw;
  }
  const d = dims[0];
  raw[cfg.family === 'opt' ? 'ffn_dim' : 'intermediate_size'] = d.ffnDim;
  if (d.numHeads !== cfg.numHeads || d.numKvHeads !== cfg.numKvHeads) {
    // Llama family: fewer heads of the same head_dim (transformers reads head_dim before hidden_size / heads).
    Object.assign(raw, { num_attention_heads: d.numHeads, num_key_value_heads: d.numKvHeads, head_dim: cfg.headDim });
  }
  return raw;
}

const count = (shapes: Map<string, number[]>) => [...shapes.values()].reduce((a, s) => a + s.reduce((x, y) => x * y, 1), 0);

/** Remove the dead units of `weights` (planCompaction unless a plan is given): the compact model. */
export function compactModel(cfg: ModelConfig, weights: ReadonlyMap<string, Float32Array>, plan = planCompaction(cfg, weights)): CompactModel {
  const spec = familySpec(cfg);
  const before = spec.tensors(cfg);
  const extra = [...weights.keys()].find((k) => !before.has(k));
  if (extra) tensorOf(weights, before, extra); // throws: not part of the config
  const raw = compactConfigRaw(cfg, plan.layers.map((l) => l.dims));
  const config = parseModelConfig(raw);
  const shapes = familySpec(config).tensors(config);
  const sel = selections(cfg, plan);
  const tensors = new Map<string, Float32Array>();
  for (const [name, shape] of shapes) {
    const t = gather(tensorOf(weights, before, name), before.get(name)!, sel.get(name));
    if (t.length !== shape.reduce((a, b) => a * b, 1)) throw new Error(`compact: ${name} gathered ${t.length} values for [${shape}] (plan does not fit the config)`);
    tensors.set(name, t);
  }
  return { raw, config, tensors, shapes, plan, params: { before: count(before), after: count(shapes) } };
}
