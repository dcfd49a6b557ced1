/**
 * Fixtures of the compaction tests: tiny OPT / Llama checkpoints (f32) and hand-made dead units,
 * written through the family's unit rules (FamilySpec.units / layerPrefix) so the tests name units,
 * not modules.
 */
import type { LoadedCheckpoint } from '../../src/io/checkpoint';
import { familySpec } from '../../src/io/config';
import type { UnitRule } from '../../src/arch/types';
import { tinyOpt } from '../../src/reference/tinyopt';
import { f32Llama, llamaCheckpoint } from './llama';
import { toCheckpoint } from './surgeon';
import type { TinyLlamaOptions } from '../../src/reference/tinyllama';

export const OPT_CFG = { layers: 2, d: 16, heads: 4, ffn: 32, vocab: 64, maxPos: 32 };

/** tinyOpt rounded to f32, as a checkpoint. */
export function optCkpt(seed: number, cfg: Partial<typeof OPT_CFG> = {}): LoadedCheckpoint {
  const m = tinyOpt({ ...OPT_CFG, ...cfg, seed });
  return toCheckpoint({ cfg: m.cfg, w: new Map([...m.w].map(([k, v]) => [k, Float64Array.from(Float32Array.from(v))])) });
}

export function llamaCkpt(o: Omit<TinyLlamaOptions, 'seed'>, seed: number): LoadedCheckpoint {
  return llamaCheckpoint(f32Llama({ ...o, seed }));
}

/** Deep copy of a checkpoint's tensors (to check inputs are left alone, or to edit a copy). */
export const copyTensors = (t: Map<string, Float32Array>) => new Map([...t].map(([k, v]) => [k, v.slice()]));

const ruleOf = <K extends UnitRule['kind']>(c: LoadedCheckpoint, l: number, kind: K) =>
  familySpec(c.config).units(c.config, l).find((r) => r.kind === kind) as Extract<UnitRule, { kind: K }>;

/** Zero rows [r0, r1) of a linear with `rows` outputs (and its bias entries when withBias). */
function zeroRowRange(c: LoadedCheckpoint, name: string, rows: number, r0: number, r1: number, withBias: boolean): void {
  const W = c.tensors.get(`${name}.weight`)!, C = W.length / rows;
  W.fill(0, r0 * C, r1 * C);
  const b = c.tensors.get(`${name}.bias`);
  if (withBias && b) b.fill(0, r0, r1);
}

function zeroCols(c: LoadedCheckpoint, name: string, C: number, c0: number, c1: number): void {
  const W = c.tensors.get(`${name}.weight`)!;
  for (let r = 0; r < W.length / C; r++) W.fill(0, r * C + c0, r * C + c1);
}

/** Zero FFN neuron i's row in the rule's `rows[which]` linear (with its bias unless keepBias). */
export function zeroNeuronRow(c: LoadedCheckpoint, l: number, i: number, which = 0, keepBias = false): void {
  const r = ruleOf(c, l, 'ffn');
  zeroRowRange(c, `${familySpec(c.config).layerPrefix(l)}${r.rows[which]}`, r.width, i, i + 1, !keepBias);
}

/** Zero FFN neuron i's column in every `cols` linear. */
export function zeroNeuronCol(c: LoadedCheckpoint, l: number, i: number): void {
  const r = ruleOf(c, l, 'ffn');
  for (const s of r.cols) zeroCols(c, `${familySpec(c.config).layerPrefix(l)}${s}`, r.width, i, i + 1);
}

/** Zero query head h's o columns. */
export function zeroHeadO(c: LoadedCheckpoint, l: number, h: number): void {
  const r = ruleOf(c, l, 'head');
  zeroCols(c, `${familySpec(c.config).layerPrefix(l)}${r.o}`, r.heads * r.headDim, h * r.headDim, (h + 1) * r.headDim);
}

/** Zero kv head g's rows of the `which` projection ('v', 'q' uses query head g, 'k'). */
export function zeroHeadRows(c: LoadedCheckpoint, l: number, g: number, which: 'q' | 'k' | 'v', keepBias = false): void {
  const r = ruleOf(c, l, 'head');
  const rows = (which === 'q' ? r.heads : r.kvHeads) * r.headDim;
  zeroRowRange(c, `${familySpec(c.config).layerPrefix(l)}${r[which]}`, rows, g * r.headDim, (g + 1) * r.headDim, !keepBias);
}
