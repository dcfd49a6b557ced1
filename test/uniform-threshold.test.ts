/**
 * Uniform structured pruning without a GPU: the host selection (threshold.ts uniformThreshold over
 * the units of surgeon/uniform.ts), its options, the stock-config compaction (compact/apply.ts,
 * planCompaction's `uniform` padding), and the CLI's refusals of --compact / --uniform / --uniform-heads.
 * - No uniform kinds: exactly structuredThreshold's masks (random costs with ties).
 * - FFN kind: every layer loses the same number of units, each layer its cheapest by their cheapest
 *   side; that side is the updated one, the unit's other structures are zeroed along (`also`); the
 *   parameters counted are the removed ones and fill the budget to within one step.
 * - A layer with dead units forces the others to follow; uniform heads remove whole kv groups only.
 */
import { readFileSync } from 'node:fs';
import { describe, expect, it, vi } from 'vitest';
import { pruneCommand } from '../src/cli/prune';
import { compactConfigRaw, compactModel, planCompaction } from '../src/compact/index';
import { familySpec, parseModelConfig } from '../src/io/config';
import type { ModelConfig } from '../src/arch/types';
import { resolveOptions, PruneConfigError, type PruneOptions } from '../src/surgeon/options';
import { removedParams, structuredThreshold, uniformThreshold, selectionsAt, type StructuredLayerCosts, type StructuredSelection } from '../src/surgeon/threshold';
import { uniformKinds } from '../src/surgeon/uniform';
import { llamaCkpt, optCkpt, zeroHeadO, zeroHeadRows, zeroNeuronCol, zeroNeuronRow } from './helpers/compact';
import { rng } from './helpers/rng';

const GQA = { layers: 2, d: 16, heads: 4, kvHeads: 2, ffn: 32, vocab: 48, maxPos: 32 };
const sum = (a: Uint8Array) => a.reduce((x, y) => x + y, 0);
const union = (s: StructuredSelection) => ({ row: s.row.map((v, i) => v | (s.also?.row[i] ?? 0)), col: s.col.map((v, i) => v | (s.also?.col[i] ?? 0)) });

/** Random row/column costs for the structured layers of `cfg` (a few exact zeros and ties). */
function costsOf(cfg: ModelConfig, seed: number): Array<StructuredLayerCosts & { row: Float64Array; col: Float64Array }> {
  const r = rng(seed);
  const v = () => (r() < 0.05 ? 0.5 : Math.round(r() * 1000) / 100 + 0.01);
  return familySpec(cfg).prunableLayers(cfg).map((L) => {
    const C1 = L.C + (L.bias ? 1 : 0);
    return { R: L.R, C1, row: Float64Array.from({ length: L.R }, v), col: Float64Array.from({ length: C1 }, v) };
  });
}

/** Parameters removed by these selections (rows and columns of each layer, overlap once). */
const paramsOf = (costs: StructuredLayerCosts[], sels: StructuredSelection[]) =>
  sels.reduce((a, s, k) => { const u = union(s); return a + removedParams(costs[k].R, costs[k].C1, sum(u.row), sum(u.col)); }, 0);

describe('uniformThreshold', () => {
  it('without uniform kinds it is the free threshold (§5)', () => {
    const cfg = optCkpt(1).config;
    for (const s of [0, 0.05, 0.3, 0.7]) {
      const c = costsOf(cfg, 11);
      const u = uniformThreshold(c, [], s), f = structuredThreshold(c, s);
      expect(u.sels).toEqual(selectionsAt(c, f.tau));
      expect(u.removed).toBe(f.removed);
    }
  });

  it.each([['OPT', optCkpt(2).config], ['Llama', llamaCkpt(GQA, 3).config]] as const)('%s FFN: the same units removed per layer, each its cheapest, whole, within the budget', (_l, cfg) => {
    const layers = familySpec(cfg).prunableLayers(cfg);
    const [ffn] = uniformKinds(cfg, layers, false);
    const c = costsOf(cfg, 12);
    const s = 0.3;
    const { sels, removed, budget } = uniformThreshold(c, [ffn], s);
    expect(paramsOf(c, sels)).toBe(removed);
    expect(removed).toBeLessThanOrEqual(budget);
    const cost = (r: { k: number; row: boolean; i: number }) => (r.row ? c[r.k].row[r.i] : c[r.k].col[r.i]);
    const counts = ffn.map((units) => {
      const scored = units.map((u) => Math.min(...u.sides.map((side) => side.reduce((a, r) => a + cost(r), 0))));
      const gone = units.map((u) => u.sides.some((side) => side.every((r) => (r.row ? sels[r.k].row : sels[r.k].col)[r.i] === 1)));
      units.forEach((u, i) => {
        // a removed unit: exactly one side updated, every structure of it removed; a kept one: none.
        const updated = u.sides.filter((side) => side.every((r) => (r.row ? sels[r.k].row : sels[r.k].col)[r.i] === 1));
        expect(updated.length).toBe(gone[i] ? 1 : 0);
        for (const r of u.sides.flat()) expect((r.row ? union(sels[r.k]).row : union(sels[r.k]).col)[r.i]).toBe(gone[i] ? 1 : 0);
      });
      // the removed units are the layer's cheapest
      const maxGone = Math.max(...scored.filter((_, i) => gone[i])), minKept = Math.min(...scored.filter((_, i) => !gone[i]));
      expect(maxGone).toBeLessThanOrEqual(minKept);
      return gone.filter(Boolean).length;
    });
    expect(new Set(counts).size).toBe(1);
    expect(counts[0]).toBeGreaterThan(0);
    // the total matches the target: one more step (a unit per layer, every side) would not fit
    const unitParams = ffn.reduce((a, units) => a + units[0].sides.flat().reduce((x, r) => x + (r.row ? c[r.k].C1 : c[r.k].R), 0), 0);
    expect(removed).toBeGreaterThan(budget - unitParams - Math.max(...c.map((l) => Math.max(l.R, l.C1))));
  });

  it('dead units in one layer: the others follow; uniform heads remove whole kv groups only', () => {
    const cfg = llamaCkpt(GQA, 4).config;
    const layers = familySpec(cfg).prunableLayers(cfg);
    const kinds = uniformKinds(cfg, layers, true);
    const c = costsOf(cfg, 13);
    // layer 0: neurons 0..4 dead (every side cost 0); make neurons expensive elsewhere so only forcing removes them
    for (const units of kinds[0]) for (const u of units) for (const r of u.sides.flat()) (r.row ? c[r.k].row : c[r.k].col)[r.i] = 50;
    for (const u of kinds[0][0].slice(0, 5)) for (const r of u.sides.flat()) (r.row ? c[r.k].row : c[r.k].col)[r.i] = 0;
    const { sels } = uniformThreshold(c, kinds, 0.3);
    const gone = (units: typeof kinds[0][0]) => units.filter((u) => u.sides.some((side) => side.every((r) => (r.row ? union(sels[r.k]).row : union(sels[r.k]).col)[r.i]))).length;
    expect(kinds[0].map(gone)).toEqual([5, 5]);
    const groups = kinds[1].map(gone);
    expect(new Set(groups).size).toBe(1);
    // q/k/v rows and o columns come only in whole groups (all of a group's structures, or none)
    for (const units of kinds[1]) {
      for (const u of units) {
        const marks = [...u.sides.flat(), ...u.rest].map((r) => (r.row ? union(sels[r.k]).row : union(sels[r.k]).col)[r.i]);
        expect(new Set(marks).size).toBe(1);
      }
    }
  });
});

describe('uniform options', () => {
  const cfg = optCkpt(5).config;
  const layers = familySpec(cfg).prunableLayers(cfg);
  const calib = [Int32Array.of(1, 2, 3)];
  const bad: Array<[Partial<PruneOptions> & Record<string, unknown>, RegExp]> = [
    [{ structure: 'element', uniform: true }, /uniform needs structure rows-cols: element/],
    [{ structure: '2:4', sparsity: 0.5, uniform: true }, /uniform needs structure rows-cols: 2:4/],
    [{ structure: 'rows-cols', uniformHeads: true }, /uniformHeads needs uniform: true/],
    [{ structure: 'rows-cols', uniform: 'yes' as never }, /uniform must be true or false/],
  ];
  it.each(bad)('%j is refused with PruneConfigError', (o, msg) => {
    expect(() => resolveOptions({ sparsity: 0.3, ...o } as PruneOptions, layers, calib)).toThrow(PruneConfigError);
    expect(() => resolveOptions({ sparsity: 0.3, ...o } as PruneOptions, layers, calib)).toThrow(msg);
  });
  it('resolves uniform and its heads flag; OPT refuses uniform heads', () => {
    expect(resolveOptions({ structure: 'rows-cols', sparsity: 0.3, uniform: true }, layers, calib).uniform).toEqual({ heads: false });
    expect(resolveOptions({ structure: 'rows-cols', sparsity: 0.3 }, layers, calib).uniform).toBeUndefined();
    expect(() => uniformKinds(cfg, layers, true)).toThrow(/OPT config ties the attention width to hidden_size/);
    expect(() => uniformKinds(cfg, layers.filter((L) => L.name !== 'model.decoder.layers.0.fc2'), false)).toThrow(/uniform: model.decoder.layers.0.fc2 is not among the pruned layers/);
  });
});

describe('stock compaction', () => {
  it('equal widths give a stock config: Llama with fewer kv groups (head_dim written), OPT with every head', () => {
    const l = llamaCkpt(GQA, 6);
    for (let layer = 0; layer < 2; layer++) { zeroHeadO(l, layer, 2); zeroHeadO(l, layer, 3); zeroNeuronRow(l, layer, layer + 1); }
    const cm = compactModel(l.config, l.tensors);
    expect(cm.raw.compact_layers).toBeUndefined();
    expect([cm.raw.intermediate_size, cm.raw.num_attention_heads, cm.raw.num_key_value_heads, cm.raw.head_dim]).toEqual([31, 2, 1, l.config.headDim]);
    const back = parseModelConfig(cm.raw);
    expect([back.layers, back.ffnDim, back.numHeads, back.numKvHeads, back.headDim]).toEqual([undefined, 31, 2, 1, l.config.headDim]);

    const o = optCkpt(7);
    for (let layer = 0; layer < 2; layer++) zeroNeuronCol(o, layer, 3 * layer);
    expect(compactModel(o.config, o.tensors).raw).toEqual({ ...o.config.raw, ffn_dim: 31 });
    // OPT with one head fewer in every layer: head_dim is hidden_size / heads, so only compact_layers can say it
    zeroHeadO(o, 0, 1); zeroHeadO(o, 1, 2);
    const raw = compactConfigRaw(o.config, planCompaction(o.config, o.tensors).layers.map((x) => x.dims));
    expect([raw.ffn_dim, raw.num_attention_heads, (raw.compact_layers as unknown[]).length]).toEqual([32, 4, 2]);
  });

  it("planCompaction({ uniform }) keeps dead units back to the widest layer's count (every OPT head), a stock config", () => {
    const o = optCkpt(8);
    for (const i of [1, 2, 3]) zeroNeuronRow(o, 0, i);
    zeroNeuronRow(o, 1, 7);
    zeroHeadO(o, 0, 1);
    const plan = planCompaction(o.config, o.tensors, { uniform: true });
    expect(plan.layers.map((x) => x.dims)).toEqual([{ ffnDim: 31, numHeads: 4, numKvHeads: 4 }, { ffnDim: 31, numHeads: 4, numKvHeads: 4 }]);
    expect(plan.layers[0].neurons).toEqual([0, 1, 2, ...Array.from({ length: 28 }, (_, i) => i + 4)]); // dead 1, 2 kept back (lowest first)
    expect(compactModel(o.config, o.tensors, plan).config.layers).toBeUndefined();

    const l = llamaCkpt(GQA, 9);
    zeroHeadRows(l, 0, 1, 'v'); // one kv group dead in layer 0 only: kept back
    const lp = planCompaction(l.config, l.tensors, { uniform: true });
    expect(lp.layers.map((x) => x.dims.numKvHeads)).toEqual([2, 2]);
    expect(planCompaction(l.config, l.tensors).layers.map((x) => x.dims.numKvHeads)).toEqual([1, 2]);
  });
});

describe('llm-surgeon prune refuses --compact / --uniform it cannot honour (exit 2, before any GPU work)', () => {
  const IDS = '/work/shared/data/wikitext-2-raw/wiki.test.opt-ids.json';
  const base = ['--model', '/work/shared/models/opt-micro', '--calib', IDS, '--sparsity', '0.3'];
  const cases: Array<[string[], RegExp]> = [
    [['--structure', 'element', '--compact', '--out', '/tmp/llms-never-a'], /--compact needs --structure rows-cols: element zeroes single weights/],
    [['--structure', '2:4', '--uniform', '--out', '/tmp/llms-never-b'], /--uniform needs --structure rows-cols: 2:4/],
    [['--structure', 'rows-cols', '--uniform-heads', '--out', '/tmp/llms-never-c'], /--uniform-heads needs --uniform/],
    [['--structure', 'rows-cols', '--compact'], /--compact needs --out/],
    [['--structure', 'rows-cols', '--uniform', '--uniform-heads', '--out', '/tmp/llms-never-d'], /uniformHeads: an OPT config ties the attention width/],
  ];
  it.each(cases)('%j', async (argv, msg) => {
    const err: string[] = [];
    const se = vi.spyOn(process.stderr, 'write').mockImplementation((s: string | Uint8Array) => (err.push(String(s)), true));
    let code: number;
    try {
      code = await pruneCommand([...base, ...argv, '--quiet']);
    } finally {
      se.mockRestore();
    }
    expect(code).toBe(2);
    expect(err.join('')).toMatch(msg);
    expect(readFileSync('/work/shared/models/opt-micro/config.json', 'utf8')).toContain('"ffn_dim": 256');
  });
});
