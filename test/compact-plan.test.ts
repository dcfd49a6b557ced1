/**
 * Compaction bookkeeping (src/compact, no GPU): which units are dead by the unit rules, the compact
 * tensors (kept rows/columns copied in order, inputs untouched), the compact config (compact_layers
 * parsed back, tensors/prunableLayers/units per layer), and the file size of a compact export.
 */
import { describe, expect, it } from 'vitest';
import { compactModel, planCompaction } from '../src/compact/index';
import { familySpec, parseModelConfig } from '../src/io/config';
import { buildHfFolder } from '../src/io/export';
import { layerDims } from '../src/arch/types';
import { copyTensors, llamaCkpt, optCkpt, zeroHeadO, zeroHeadRows, zeroNeuronCol, zeroNeuronRow } from './helpers/compact';

const GQA = { layers: 2, d: 16, heads: 4, kvHeads: 2, ffn: 32, vocab: 48, maxPos: 32 };
const range = (n: number, skip: number[] = []) => Array.from({ length: n }, (_, i) => i).filter((i) => !skip.includes(i));

/** Row-major [R, C] → rows `rows` and columns `cols` (reference gather for the checks). */
function pick(W: Float32Array, C: number, rows: number[], cols: number[]): Float32Array {
  return Float32Array.from(rows.flatMap((r) => cols.map((c) => W[r * C + c])));
}
const dims = (hd: number, heads: number[]) => heads.flatMap((h) => range(hd).map((j) => h * hd + j));

describe('planCompaction / compactModel', () => {
  it('a model whose units are all alive compacts to identical shapes, values and config', () => {
    for (const c of [optCkpt(1), llamaCkpt(GQA, 2), llamaCkpt({ ...GQA, qkvBias: true }, 3)]) {
      const cm = compactModel(c.config, c.tensors);
      expect(cm.raw).toEqual(c.config.raw); // no compact_layers: a stock config
      expect(cm.config.layers).toBeUndefined();
      expect([...cm.shapes]).toEqual([...familySpec(c.config).tensors(c.config)]);
      for (const [k, v] of c.tensors) expect(cm.tensors.get(k), k).toEqual(v);
      expect(cm.params.after).toBe(cm.params.before);
    }
  });

  it('OPT: neuron and head death by the rules (bias, q/k rows, v bias); rows/columns copied in order; inputs untouched', () => {
    const c = optCkpt(4);
    const p = 'model.decoder.layers.';
    zeroNeuronRow(c, 0, 3); // fc1 row + bias: relu(0) = 0 → dead
    zeroNeuronRow(c, 0, 4, 0, true); // fc1 row only, bias kept: relu(b) ≠ 0 → alive
    zeroNeuronCol(c, 0, 7); // fc2 column → dead
    zeroHeadO(c, 0, 1); // out_proj columns → dead
    zeroHeadRows(c, 0, 2, 'v', true); // v rows, v bias kept → alive (softmax·b = b)
    zeroHeadRows(c, 0, 3, 'q'); // q rows + bias: uniform softmax, alive
    zeroHeadRows(c, 0, 3, 'k');
    zeroHeadRows(c, 1, 0, 'v'); // v rows + bias → dead
    const before = copyTensors(c.tensors);
    const cm = compactModel(c.config, c.tensors);
    for (const [k, v] of before) expect(c.tensors.get(k), k).toEqual(v);
    expect(cm.plan.layers.map((l) => [l.neurons, l.heads])).toEqual([[range(32, [3, 7]), [0, 2, 3]], [range(32), [1, 2, 3]]]);
    expect(cm.raw.compact_layers).toEqual([
      { ffn_dim: 30, num_attention_heads: 3, num_key_value_heads: 3 }, { ffn_dim: 32, num_attention_heads: 3, num_key_value_heads: 3 },
    ]);
    expect([cm.raw.ffn_dim, cm.raw.num_attention_heads]).toEqual([32, 4]); // the maxima stay
    const d = 16, hd = 4, heads0 = dims(hd, [0, 2, 3]), n0 = range(32, [3, 7]);
    const t = (n: string) => before.get(n)!, u = (n: string) => cm.tensors.get(n)!;
    expect(u(`${p}0.fc1.weight`)).toEqual(pick(t(`${p}0.fc1.weight`), d, n0, range(d)));
    expect(u(`${p}0.fc1.bias`)).toEqual(pick(t(`${p}0.fc1.bias`), 1, n0, [0]));
    expect(u(`${p}0.fc2.weight`)).toEqual(pick(t(`${p}0.fc2.weight`), 32, range(d), n0));
    expect(u(`${p}0.fc2.bias`)).toEqual(t(`${p}0.fc2.bias`));
    for (const s of ['q_proj', 'k_proj', 'v_proj']) {
      expect(u(`${p}0.self_attn.${s}.weight`)).toEqual(pick(t(`${p}0.self_attn.${s}.weight`), d, heads0, range(d)));
      expect(u(`${p}0.self_attn.${s}.bias`)).toEqual(pick(t(`${p}0.self_attn.${s}.bias`), 1, heads0, [0]));
    }
    expect(u(`${p}0.self_attn.out_proj.weight`)).toEqual(pick(t(`${p}0.self_attn.out_proj.weight`), d, range(d), heads0));
    expect(u('model.decoder.embed_tokens.weight')).toEqual(t('model.decoder.embed_tokens.weight'));
    // Exact accounting: a neuron is fc1 row + bias + fc2 column (2d + 1); a head q, k, v rows + biases and o columns (4·hd·d + 3·hd).
    expect(cm.params.before - cm.params.after).toBe(2 * (2 * d + 1) + 2 * (4 * hd * d + 3 * hd));
    expect(cm.params.after).toBe([...cm.tensors.values()].reduce((a, x) => a + x.length, 0));
  });

  it('Llama GQA: only whole kv groups go; gate or up rows kill a neuron; q/k/v rows and o columns follow', () => {
    for (const qkvBias of [false, true]) {
      const c = llamaCkpt({ ...GQA, qkvBias }, 5);
      zeroHeadO(c, 0, 0); // one head of group 0: the group stays
      zeroHeadO(c, 1, 2); // both heads of group 1 → the group goes
      zeroHeadO(c, 1, 3);
      zeroHeadRows(c, 0, 1, 'v', qkvBias); // v rows of group 1 (bias kept with Qwen2 biases → alive)
      zeroNeuronRow(c, 0, 5, 0); // gate row → silu(0)·up = 0
      zeroNeuronRow(c, 0, 6, 1); // up row → silu(gate)·0 = 0
      zeroNeuronCol(c, 1, 9); // down column
      const cm = compactModel(c.config, c.tensors);
      const L0groups = qkvBias ? [0, 1] : [0];
      expect(cm.plan.layers.map((l) => [l.neurons, l.kvHeads, l.heads])).toEqual([
        [range(32, [5, 6]), L0groups, L0groups.flatMap((g) => [2 * g, 2 * g + 1])], [range(32, [9]), [0], [0, 1]],
      ]);
      for (const [l, lp] of cm.plan.layers.entries()) expect(layerDims(cm.config, l)).toEqual(lp.dims);
      const p = 'model.layers.1.', hd = 4, d = 16;
      const t = (n: string) => c.tensors.get(n)!, u = (n: string) => cm.tensors.get(n)!;
      expect(u(`${p}self_attn.q_proj.weight`)).toEqual(pick(t(`${p}self_attn.q_proj.weight`), d, dims(hd, [0, 1]), range(d)));
      expect(u(`${p}self_attn.k_proj.weight`)).toEqual(pick(t(`${p}self_attn.k_proj.weight`), d, dims(hd, [0]), range(d)));
      expect(u(`${p}self_attn.v_proj.weight`)).toEqual(pick(t(`${p}self_attn.v_proj.weight`), d, dims(hd, [0]), range(d)));
      if (qkvBias) expect(u(`${p}self_attn.k_proj.bias`)).toEqual(pick(t(`${p}self_attn.k_proj.bias`), 1, dims(hd, [0]), [0]));
      expect(u(`${p}self_attn.o_proj.weight`)).toEqual(pick(t(`${p}self_attn.o_proj.weight`), 16, range(d), dims(hd, [0, 1])));
      expect(u(`${p}mlp.down_proj.weight`)).toEqual(pick(t(`${p}mlp.down_proj.weight`), 32, range(d), range(32, [9])));
      expect(u(`${p}mlp.up_proj.weight`)).toEqual(pick(t(`${p}mlp.up_proj.weight`), d, range(32, [9]), range(d)));
      // Compacting the compact model again changes nothing.
      const again = compactModel(cm.config, cm.tensors);
      expect([...again.shapes]).toEqual([...cm.shapes]);
      expect(again.raw.compact_layers).toEqual(cm.raw.compact_layers);
    }
  });

  it('a layer whose units are all dead keeps one (kernels need non-empty tensors)', () => {
    const c = optCkpt(6);
    for (let i = 0; i < 32; i++) zeroNeuronCol(c, 1, i);
    for (let h = 0; h < 4; h++) zeroHeadO(c, 1, h);
    const plan = planCompaction(c.config, c.tensors);
    expect(plan.layers[1]).toMatchObject({ neurons: [0], heads: [0], kvHeads: [0], dims: { ffnDim: 1, numHeads: 1, numKvHeads: 1 } });
  });
});

describe('compact_layers in config.json', () => {
  const opt = optCkpt(7).config.raw;
  const llama = llamaCkpt(GQA, 8).config.raw;
  const entry = (f: number, h: number, k: number) => ({ ffn_dim: f, num_attention_heads: h, num_key_value_heads: k });

  it('per-layer shapes in tensors(), prunableLayers() and units()', () => {
    const cfg = parseModelConfig({ ...llama, compact_layers: [entry(20, 2, 1), entry(32, 4, 2)] });
    const shapes = familySpec(cfg).tensors(cfg);
    expect(shapes.get('model.layers.0.self_attn.q_proj.weight')).toEqual([8, 16]);
    expect(shapes.get('model.layers.0.self_attn.k_proj.weight')).toEqual([4, 16]);
    expect(shapes.get('model.layers.0.self_attn.o_proj.weight')).toEqual([16, 8]);
    expect(shapes.get('model.layers.0.mlp.down_proj.weight')).toEqual([16, 20]);
    expect(shapes.get('model.layers.1.mlp.gate_proj.weight')).toEqual([32, 16]);
    const L0 = familySpec(cfg).prunableLayers(cfg).filter((L) => L.layer === 0).map((L) => [L.type, L.R, L.C]);
    expect(L0).toEqual([['q_proj', 8, 16], ['k_proj', 4, 16], ['v_proj', 4, 16], ['o_proj', 16, 8], ['gate_proj', 20, 16], ['up_proj', 20, 16], ['down_proj', 16, 20]]);
    expect(familySpec(cfg).units(cfg, 0)).toMatchObject([{ kind: 'ffn', width: 20 }, { kind: 'head', heads: 2, kvHeads: 1, headDim: 4 }]);
    const o = parseModelConfig({ ...opt, compact_layers: [entry(10, 3, 3), entry(32, 4, 4)] });
    const os = familySpec(o).tensors(o);
    expect([os.get('model.decoder.layers.0.self_attn.v_proj.bias'), os.get('model.decoder.layers.0.self_attn.out_proj.weight'), os.get('model.decoder.layers.0.fc2.weight')])
      .toEqual([[12], [16, 12], [16, 10]]);
    expect(layerDims(o, 1)).toEqual({ ffnDim: 32, numHeads: 4, numKvHeads: 4 });
    // Without compact_layers (or with null) every layer has the global widths.
    for (const raw of [opt, { ...opt, compact_layers: null }]) {
      const g = parseModelConfig(raw);
      expect(g.layers).toBeUndefined();
      expect(layerDims(g, 0)).toEqual({ ffnDim: 32, numHeads: 4, numKvHeads: 4 });
      expect(familySpec(g).tensors(g).get('model.decoder.layers.0.fc1.weight')).toEqual([32, 16]);
    }
  });

  it.each([
    ['not a list', { a: 1 }, /compact_layers must be a list/],
    ['wrong length', [entry(8, 2, 1)], /compact_layers has 1 entries, num_hidden_layers is 2/],
    ['not an object', [3, entry(8, 2, 1)], /compact_layers\[0\] must be an object/],
    ['zero width', [entry(0, 2, 1), entry(8, 2, 1)], /compact_layers\[0\]\.ffn_dim must be an integer in 1…32/],
    ['above the maximum', [entry(8, 2, 1), entry(33, 2, 1)], /compact_layers\[1\]\.ffn_dim must be an integer in 1…32/],
    ['fraction', [entry(8, 1.5, 1), entry(8, 2, 1)], /compact_layers\[0\]\.num_attention_heads/],
    ['kv heads above the maximum', [entry(8, 4, 4), entry(8, 2, 1)], /compact_layers\[0\]\.num_key_value_heads must be an integer in 1…2/],
    ['missing key', [{ ffn_dim: 8, num_attention_heads: 2 }, entry(8, 2, 1)], /compact_layers\[0\]\.num_key_value_heads/],
    ['unknown key', [{ ...entry(8, 2, 1), head_dim: 4 }, entry(8, 2, 1)], /compact_layers\[0\] has an unknown key "head_dim"/],
    ['heads not a multiple of kv heads', [entry(8, 3, 2), entry(8, 2, 1)], /compact_layers\[0\]: num_attention_heads 3 is not a multiple of num_key_value_heads 2/],
  ])('Llama: %s is a ConfigError naming compact_layers', (_what, value, msg) => {
    expect(() => parseModelConfig({ ...llama, compact_layers: value })).toThrowError(expect.objectContaining({ name: 'ConfigError', message: expect.stringMatching(msg) }));
  });

  it('OPT: kv heads must equal heads (no grouped-query attention)', () => {
    expect(() => parseModelConfig({ ...opt, compact_layers: [entry(8, 2, 1), entry(8, 2, 2)] })).toThrowError(/compact_layers\[0\]: num_key_value_heads 1 must equal num_attention_heads 2/);
  });
});

describe('compact export file size', () => {
  // Large enough that the safetensors header is ≪ 1% of the file (it is the same order in both files).
  const MED = { layers: 2, d: 64, heads: 4, ffn: 256, vocab: 256, maxPos: 64 };
  it.each(['float32', 'float16'] as const)('%s: compact file / dense file = kept / all parameters ± 1%%', (dtype) => {
    for (const c of [optCkpt(9, MED), llamaCkpt({ ...MED, kvHeads: 2 }, 10)]) {
      for (let i = 0; i < 256; i += 3) zeroNeuronCol(c, i % 2, i); // a third of the neurons
      zeroHeadO(c, 0, 1);
      if (c.config.family === 'llama') zeroHeadO(c, 0, 0); // a whole kv group (heads 0, 1)
      const dense = buildHfFolder(c.config.raw, c.tensors, { dtype }).files['model.safetensors'].length;
      const f = buildHfFolder(c.config.raw, c.tensors, { dtype, compact: true });
      const compact = f.files['model.safetensors'].length;
      const kept = f.compaction!.params.after / f.compaction!.params.before;
      console.log(`[compact size ${c.config.family} ${dtype}] dense ${dense} B, compact ${compact} B: ratio ${(compact / dense).toFixed(4)}, params kept ${kept.toFixed(4)}`);
      expect(kept).toBeLessThan(0.9);
      expect(Math.abs(compact / dense - kept) / kept).toBeLessThan(0.01);
      const cfg = JSON.parse(new TextDecoder().decode(f.files['config.json']));
      expect(cfg.compact_layers).toHaveLength(2);
      expect(cfg.ffn_dim ?? cfg.intermediate_size).toBe(256);
    }
  });
});
