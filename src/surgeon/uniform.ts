/**
 * The units of a uniform prune (PruneOptions.uniform / uniformHeads), from the family's unit rules
 * (FamilySpec.units, the same rules src/compact/plan.ts removes by): per decoder layer its FFN neurons
 * and, with uniform heads, its kv groups, as rows/columns of the structured layers (threshold.ts
 * uniformThreshold takes them in equal-width steps).
 * - FFN neuron i: each `rows` linear's row i is a side (any one zero row kills it: relu(0) = 0,
 *   silu(gate)·up = 0), and column i of the `cols` linears is the other.
 * - kv group g: its v rows are one side, the o columns of its query heads the other (softmax·0 = 0, as
 *   plan.ts); its q and k rows go along once dead. With uniform heads these are never taken one by one,
 *   so attention is pruned by whole groups only; without, they stay under the free threshold.
 */

import { familySpec } from '../arch/registry';
import type { ModelConfig, PrunableLayer } from '../arch/types';
import { PruneConfigError } from './options';
import type { StructRef, UniformKind, UnitSpec } from './threshold';

const range = (a: number, b: number) => Array.from({ length: b - a }, (_, i) => a + i);

/**
 * A stock config can only carry fewer heads where the family states head_dim apart from hidden_size
 * (Llama, Mistral, Qwen2); OPT's attention width is hidden_size (head_dim = hidden_size / heads).
 */
export function checkUniformHeads(cfg: ModelConfig): void {
  if (cfg.family === 'opt') {
    throw new PruneConfigError('uniformHeads: an OPT config ties the attention width to hidden_size (head_dim = hidden_size / num_attention_heads), ' +
      'so no stock OPT has fewer heads; use uniform alone (every head is kept in the stock export)');
  }
}

/** The uniform kinds of `cfg` over `layers` (the structured layers in cost order): FFN neurons, and kv groups with `heads`. */
export function uniformKinds(cfg: ModelConfig, layers: readonly PrunableLayer[], heads: boolean): UniformKind[] {
  if (heads) checkUniformHeads(cfg);
  const spec = familySpec(cfg);
  const index = new Map(layers.map((L, k) => [L.name, k]));
  const k = (name: string): number => {
    const i = index.get(name);
    if (i === undefined) throw new PruneConfigError(`uniform: ${name} is not among the pruned layers, so its units cannot be removed`);
    return i;
  };
  const ffn: UnitSpec[][] = [], groups: UnitSpec[][] = [];
  for (let l = 0; l < cfg.numLayers; l++) {
    const p = spec.layerPrefix(l);
    for (const rule of spec.units(cfg, l)) {
      if (rule.kind === 'ffn') {
        ffn.push(range(0, rule.width).map((i) => ({
          sides: [...rule.rows.map((s) => [{ k: k(p + s), row: true, i }]), rule.cols.map((s) => ({ k: k(p + s), row: false, i }))],
          rest: [],
        })));
      } else if (heads) {
        const hd = rule.headDim, G = rule.heads / rule.kvHeads;
        const rows = (name: string, r0: number, r1: number): StructRef[] => range(r0, r1).map((i) => ({ k: k(p + name), row: true, i }));
        groups.push(range(0, rule.kvHeads).map((g) => ({
          sides: [rows(rule.v, g * hd, (g + 1) * hd), range(g * G * hd, (g + 1) * G * hd).map((i) => ({ k: k(p + rule.o), row: false, i }))],
          rest: [...rows(rule.q, g * G * hd, (g + 1) * G * hd), ...rows(rule.k, g * hd, (g + 1) * hd)],
        })));
      }
    }
  }
  return heads ? [ffn, groups] : [ffn];
}
