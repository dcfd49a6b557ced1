/**
 * Compact vs dense inference speed in our runtime (issue 14's targets), one GPU-machine call:
 *   node dist-node/compact-speed.mjs --models <dir> --data <dir> --data-llama <dir>
 *        [--targets opt-mini,llama-mini,opt-125m] [--masks prune,units] [--sparsity 0.5] [--shots 2]
 *        [--calib 32x512] [--decode 512] [--prompt 16] [--prefill 2048] [--reps 3]
 *        [--ppl-seqlen 512] [--ppl-windows 4] [--out f]
 * A target is a fixture folder under --models (token ids test.i32 / calib.i32, or .json, from --data
 * for OPT, --data-llama for Llama) or a shape of bench/shapes.ts (random weights and random ids: timing
 * and the zeroed = compact check only; its perplexity means nothing). Per target and mask, a 50%
 * structured result:
 *  - prune (fixtures): LLM Surgeon rows-cols, a quick schedule (--shots, --calib windows); the
 *    compaction removes what it killed whole (FFN neurons, heads);
 *  - units: a deterministic plan (labelled as such): every other FFN neuron and the second half of the
 *    kv groups (with their query heads) of every layer, zeroed, then compacted.
 * Then, in one run: decode (batch 1, --decode new tokens after a --prompt-token prompt, KV cache,
 * greedy, tokens/s), prefill (--prefill tokens into an empty cache, ms), both for the zeroed dense and
 * the compact model (median of --reps after a warm-up); FLOP ratios dense/compact counted from the
 * shapes (linears + LM head per token; the decode and prefill ones add the attention scores of their
 * contexts); bytes of the safetensors export (config dtype) dense and compact; perplexity zeroed vs
 * compact. Prints a table and writes { runs } in bench/results/h200-compact.json's schema plus the raw
 * numbers, the device and the commit (BENCH_COMMIT).
 */
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { familySpec, prunableLayersOf } from '../src/arch/registry';
import { layerDims, type ModelConfig } from '../src/arch/types';
import { compactModel, planCompaction, type CompactPlan } from '../src/compact/index';
import { GpuContext } from '../src/gpu/context';
import { loadCheckpoint, type LoadedCheckpoint } from '../src/io/checkpoint';
import { buildHfFolder } from '../src/io/export';
import { parseModelConfig } from '../src/io/config';
import { calibrationWindows } from '../src/io/wikitext';
import { DecoderModel, generate, perplexity } from '../src/model/index';
import { forwardCached, KvCache } from '../src/model/kv-cache';
import { pruneModel } from '../src/surgeon/index';
import { arg, table, writeJson } from './harness';
import { randomCheckpoint, SHAPES } from './shapes';

const num = (name: string, def: number) => Number(arg(name) ?? def);
const S = {
  sparsity: num('sparsity', 0.5), shots: num('shots', 2), decode: num('decode', 512), prompt: num('prompt', 16),
  prefill: num('prefill', 2048), reps: num('reps', 3), pplSeqlen: num('ppl-seqlen', 512), pplWindows: num('ppl-windows', 4),
  calib: (arg('calib') ?? '32x512').split('x').map(Number),
};

function ids(dir: string, name: string): Int32Array {
  const bin = join(dir, `${name}.i32`), json = join(dir, `${name}.json`);
  if (existsSync(bin)) { const b = readFileSync(bin); return new Int32Array(b.buffer.slice(b.byteOffset, b.byteOffset + b.byteLength)); }
  if (existsSync(json)) return Int32Array.from(JSON.parse(readFileSync(json, 'utf8')) as number[]);
  throw new Error(`no token ids ${bin} or ${json}`);
}

function randomIds(n: number, vocab: number, seed: number): Int32Array {
  let r = seed >>> 0;
  return Int32Array.from({ length: n }, () => { r = (Math.imul(r, 1103515245) + 12345) >>> 0; return r % vocab; });
}

/** Every other FFN neuron and the second half of the kv groups (their query heads with them) go. */
function unitsPlan(cfg: ModelConfig): CompactPlan {
  const range = (n: number) => Array.from({ length: n }, (_, i) => i);
  return {
    layers: range(cfg.numLayers).map((l) => {
      const d = layerDims(cfg, l), G = d.numHeads / d.numKvHeads;
      const kvHeads = range(Math.max(1, Math.ceil(d.numKvHeads / 2)));
      const neurons = range(d.ffnDim).filter((i) => i % 2 === 0);
      const heads = kvHeads.flatMap((g) => range(G).map((j) => g * G + j));
      return { neurons, heads, kvHeads, dims: { ffnDim: neurons.length, numHeads: heads.length, numKvHeads: kvHeads.length } };
    }),
  };
}

/** A copy of the weights with the plan's removed units zeroed: their row-side rows (and biases), their o columns. */
function zeroRemoved(cfg: ModelConfig, w: Map<string, Float32Array>, plan: CompactPlan): Map<string, Float32Array> {
  const out = new Map([...w].map(([k, v]) => [k, v.slice()]));
  const spec = familySpec(cfg);
  plan.layers.forEach((lp, l) => {
    const p = spec.layerPrefix(l);
    for (const rule of spec.units(cfg, l)) {
      if (rule.kind === 'ffn') {
        const keep = new Set(lp.neurons), W = out.get(`${p}${rule.rows[0]}.weight`)!, b = out.get(`${p}${rule.rows[0]}.bias`), C = W.length / rule.width;
        for (let i = 0; i < rule.width; i++) if (!keep.has(i)) { W.fill(0, i * C, (i + 1) * C); b?.fill(0, i, i + 1); }
      } else {
        const keep = new Set(lp.heads), W = out.get(`${p}${rule.o}.weight`)!, C = rule.heads * rule.headDim;
        for (let h = 0; h < rule.heads; h++) if (!keep.has(h)) for (let r = 0; r < W.length / C; r++) W.fill(0, r * C + h * rule.headDim, r * C + (h + 1) * rule.headDim);
      }
    }
  });
  return out;
}

/** FLOPs of every linear (and the LM head) for one token. */
const perToken = (cfg: ModelConfig, head: boolean) => prunableLayersOf(cfg).reduce((a, L) => a + 2 * L.R * L.C, 0) + (head ? 2 * cfg.vocabSize * cfg.hiddenSize : 0);

/** FLOPs of `tokens` tokens at positions start … start+tokens−1 (each attends to its position + 1 keys). */
function flops(cfg: ModelConfig, tokens: number, start: number, head: boolean): number {
  let perKey = 0; // q·k and p·v per key, every layer
  for (let l = 0; l < cfg.numLayers; l++) perKey += 4 * layerDims(cfg, l).numHeads * cfg.headDim;
  return tokens * perToken(cfg, head) + perKey * (tokens * start + (tokens * (tokens + 1)) / 2);
}

const median = (x: number[]) => x.slice().sort((a, b) => a - b)[Math.floor(x.length / 2)];

async function decodeTokS(ctx: GpuContext, model: DecoderModel, prompt: number[]): Promise<number> {
  await generate(ctx, model, prompt, { maxNewTokens: Math.min(S.decode, 40) }); // compiles every pipeline
  const ms: number[] = [];
  for (let r = 0; r < S.reps; r++) {
    const t0 = performance.now();
    const out = await generate(ctx, model, prompt, { maxNewTokens: S.decode });
    ms.push(performance.now() - t0);
    if (out.length !== S.decode) throw new Error(`decode: ${out.length} tokens instead of ${S.decode}`);
  }
  return S.decode / (median(ms) / 1000);
}

async function prefillMs(ctx: GpuContext, model: DecoderModel, tokens: Int32Array): Promise<number> {
  const T = tokens.length;
  const cache = KvCache.create(ctx, model, T);
  const t = ctx.upload(Uint32Array.from(tokens), [T]);
  const once = async () => {
    cache.length = 0;
    forwardCached(ctx, model, cache, t, T).dispose();
    await ctx.sync();
  };
  try {
    await once();
    const ms: number[] = [];
    for (let r = 0; r < S.reps; r++) { const t0 = performance.now(); await once(); ms.push(performance.now() - t0); }
    return median(ms);
  } finally {
    t.dispose();
    cache.dispose();
  }
}

interface Timed { decode: number; prefill: number; ppl: number }
async function measure(ctx: GpuContext, ckpt: LoadedCheckpoint, test: Int32Array): Promise<Timed> {
  const model = await DecoderModel.fromCheckpoint(ctx, ckpt);
  try {
    const T = Math.min(S.prefill, ckpt.config.maxPositions);
    const decode = await decodeTokS(ctx, model, [...test.subarray(0, S.prompt)]);
    const prefill = await prefillMs(ctx, model, test.subarray(0, T));
    const { ppl } = await perplexity(ctx, model, test, { seqlen: Math.min(S.pplSeqlen, ckpt.config.maxPositions), windows: S.pplWindows });
    return { decode, prefill, ppl };
  } finally {
    model.dispose();
  }
}

const bytesOf = (raw: Record<string, unknown>, w: Map<string, Float32Array>, compact: boolean) =>
  Object.entries(buildHfFolder(raw, w, { compact }).files).filter(([n]) => n.endsWith('.safetensors')).reduce((a, [, f]) => a + f.byteLength, 0);

async function main() {
  const ctx = await GpuContext.create();
  const info = ctx.gpu.info;
  const device = [info.vendor, info.architecture, info.device, info.description].filter(Boolean).join(' / ');
  console.log(`device: ${device}`);
  const models = arg('models') ?? '/tmp/models';
  const runs: Array<Record<string, unknown>> = [];
  const summary: Array<Record<string, string | number>> = [];
  for (const target of (arg('targets') ?? 'opt-mini,llama-mini,opt-125m').split(',')) {
    const shape = SHAPES[target];
    const dense = shape ? randomCheckpoint(parseModelConfig(shape)) : await loadCheckpoint(join(models, target));
    const cfg = dense.config;
    const dataDir = arg(cfg.family === 'llama' ? 'data-llama' : 'data') ?? (cfg.family === 'llama' ? '/tmp/data-llama' : '/tmp/data');
    const need = Math.max(S.prompt, S.prefill, S.pplSeqlen * S.pplWindows);
    const test = shape ? randomIds(need, cfg.vocabSize, 7) : ids(dataDir, 'test');
    const masks = shape ? ['units'] : (arg('masks') ?? 'prune,units').split(',');
    for (const mask of masks) {
      const t0 = performance.now();
      let zeroed: Map<string, Float32Array>, label: string;
      if (mask === 'prune') {
        const [n, seqlen] = S.calib;
        const model = await DecoderModel.fromCheckpoint(ctx, dense);
        const rep = await pruneModel(ctx, model, calibrationWindows(ids(dataDir, 'calib'), n, seqlen, 0), { structure: 'rows-cols', sparsity: S.sparsity, shots: S.shots });
        zeroed = await model.exportWeights();
        model.dispose();
        label = `LLM Surgeon rows-cols ${S.shots} shot(s), ${n}×${seqlen} calibration (quick; achieved ${rep.achievedSparsity.toFixed(4)})`;
      } else if (mask === 'units') {
        zeroed = zeroRemoved(cfg, dense.tensors, unitsPlan(cfg));
        label = 'deterministic units: every other FFN neuron, second half of the kv groups (not a prune)';
      } else throw new Error(`--masks: prune or units, got ${mask}`);
      const cm = compactModel(cfg, zeroed, planCompaction(cfg, zeroed));
      const zeroedCkpt: LoadedCheckpoint = { ...dense, tensors: zeroed };
      const compact: LoadedCheckpoint = { ...dense, config: cm.config, tensors: cm.tensors, shapes: cm.shapes };
      const d = await measure(ctx, zeroedCkpt, test), c = await measure(ctx, compact, test);
      const T = Math.min(S.prefill, cfg.maxPositions);
      const ratio = (f: (x: ModelConfig) => number) => f(cfg) / f(cm.config);
      const bytesDense = bytesOf(cfg.raw, zeroed, false), bytesCompact = bytesOf(cfg.raw, zeroed, true);
      const row = {
        model: shape ? `${target}-shape` : target, structure: mask === 'prune' ? 'rows-cols' : 'units', mask: label, sparsity: S.sparsity,
        bytes_dense: bytesDense, bytes_compact: bytesCompact, params_dense: cm.params.before, params_compact: cm.params.after,
        flop_ratio: ratio((x) => perToken(x, true)),
        flop_ratio_decode: ratio((x) => flops(x, S.decode, S.prompt, true)), flop_ratio_prefill: ratio((x) => flops(x, T, 0, false)),
        decode_speedup: c.decode / d.decode, prefill_speedup: d.prefill / c.prefill,
        decode_tok_s: { dense: d.decode, compact: c.decode }, prefill_ms: { dense: d.prefill, compact: c.prefill },
        decode_tokens: S.decode, prompt_tokens: S.prompt, prefill_tokens: T,
        ppl_zeroed: d.ppl, ppl_compact: c.ppl, ppl_rel_diff: Math.abs(d.ppl - c.ppl) / d.ppl, ppl_windows: `${S.pplWindows}x${Math.min(S.pplSeqlen, cfg.maxPositions)}${shape ? ' (random ids)' : ''}`,
        compact_layers: cm.plan.layers.map((l) => l.dims), uniform: false, transformers_ok: null, seconds: (performance.now() - t0) / 1000,
      };
      console.log(`${row.model} ${mask}: ${JSON.stringify(row)}`);
      runs.push(row);
      summary.push({
        model: row.model, structure: row.structure, kept: cm.params.after / cm.params.before, bytes: bytesCompact / bytesDense, flops: row.flop_ratio,
        'tok/s dense': d.decode, 'tok/s compact': c.decode, decode_x: row.decode_speedup, 'decode/(0.8·flops)': row.decode_speedup / (0.8 * row.flop_ratio_decode),
        prefill_x: row.prefill_speedup, 'prefill/(0.8·flops)': row.prefill_speedup / (0.8 * row.flop_ratio_prefill), ppl_rel: row.ppl_rel_diff,
      });
    }
  }
  table(summary);
  writeJson(arg('out') ?? 'bench/out/compact-speed.json', { date: new Date().toISOString(), commit: process.env.BENCH_COMMIT ?? null, device, settings: S, runs });
  ctx.destroy();
}

main().catch((e) => { console.error(e); process.exit(1); });
