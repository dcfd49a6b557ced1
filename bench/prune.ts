/**
 * Quality and speed of pruneModel() (or SparseGPT / Wanda with --method sparsegpt|wanda) on a real checkpoint
 * of any supported family (OPT, Llama), FIXTURES protocol:
 * calibration = nsamples random windows of seqlen from the calibration ids (seed 100, as the authors' runs),
 * perplexity on WikiText-2 test windows of seqlen after every shot (eval time reported separately).
 *   node dist-node/prune.mjs --model <dir> --data <dir with test.i32, calib.i32> --structure rows-cols
 *        --sparsity 0.5 [--shots 40] [--method surgeon] [--nsamples 128] [--seqlen 2048] [--eval-every 8]
 *        [--seed 100] [--calib calib.i32] [--batch B] [--attention rows|tiled] [--lora [--lora-lr x] [--lora-rank r] [--lora-targets attention|all] [--lora-fraction f]]
 *        [--uniform [--uniform-heads]] [--out f]
 * --uniform: rows-cols with the same FFN width in every layer (--uniform-heads: and kv groups), PruneOptions.uniform.
 * --calib F: the calibration ids file in --data (calib-space.i32: joined like the authors' loaders; prepare-data.ts).
 * --eval-every K: also the test perplexity after every K-th shot (its time is left out of the prune seconds).
 * BENCH_COMMIT in the environment is written into the JSON (the device copy of the tree has no .git).
 */
import { readFileSync } from 'node:fs';
import { GpuContext } from '../src/gpu/context';
import { loadCheckpoint, calibrationWindows } from '../src/io/index';
import type { AttentionImpl } from '../src/kernels/attention';
import { DecoderModel, perplexity } from '../src/model/index';
import { pruneModel, type Method, type PruneReport, type Structure } from '../src/surgeon/index';
import { sparsegptPrune, wandaPrune } from '../src/surgeon/peers/index';
import { arg, table, writeJson } from './harness';

function i32(path: string): Int32Array {
  const b = readFileSync(path);
  return new Int32Array(b.buffer.slice(b.byteOffset, b.byteOffset + b.byteLength));
}

async function main() {
  const modelDir = arg('model') ?? '/tmp/models/opt-mini';
  const dataDir = arg('data') ?? '.gpu/data';
  const structure = (arg('structure') ?? 'rows-cols') as Structure;
  const sparsity = Number(arg('sparsity') ?? 0.5);
  const shots = arg('shots') ? Number(arg('shots')) : undefined;
  const method = (arg('method') ?? 'surgeon') as Method | 'sparsegpt' | 'wanda';
  const nsamples = Number(arg('nsamples') ?? 128);
  const seqlen = Number(arg('seqlen') ?? 2048);
  const evalEvery = Number(arg('eval-every') ?? 0);
  const evalWindows = arg('eval-windows') ? Number(arg('eval-windows')) : undefined;
  const seed = Number(arg('seed') ?? 100);
  const calibFile = arg('calib') ?? 'calib.i32';
  const attentionImpl = (arg('attention') ?? 'tiled') as AttentionImpl;
  const batch = arg('batch') ? Number(arg('batch')) : undefined; // K-FAC windows per forward/backward
  const num = (k: string) => (arg(k) !== undefined ? Number(arg(k)) : undefined);
  const lora = arg('lora') !== undefined
    ? { lr: num('lora-lr'), rank: num('lora-rank'), fraction: num('lora-fraction'), targets: arg('lora-targets') as 'attention' | 'all' | undefined }
    : undefined;
  if (lora) for (const k of Object.keys(lora) as Array<keyof typeof lora>) if (lora[k] === undefined) delete lora[k];
  const uniform = arg('uniform') !== undefined, uniformHeads = arg('uniform-heads') !== undefined;
  const out = arg('out') ?? `bench/out/prune-${structure.replace(':', 'of')}-${method}-${sparsity}.json`;

  const ctx = await GpuContext.create({ needs: { maxStorageBufferBindingSize: 256 << 20 } });
  console.log(`adapter: ${JSON.stringify(ctx.gpu.info)}`);
  const ckpt = await loadCheckpoint(modelDir);
  const model = await DecoderModel.fromCheckpoint(ctx, ckpt);
  model.attentionImpl = attentionImpl;
  const testIds = i32(`${dataDir}/test.i32`);
  const calib = calibrationWindows(i32(`${dataDir}/${calibFile}`), nsamples, seqlen, seed);

  const dense = await perplexity(ctx, model, testIds, { seqlen, windows: evalWindows });
  console.log(`dense ppl ${dense.ppl}`);
  const rows: Array<Record<string, string | number | null>> = [];
  let last = performance.now();
  let evalSeconds = 0;
  const t0 = performance.now();
  // Evaluate at chosen shots through onShotEnd: pruneModel's own per-shot evaluation would run every shot.
  const shotPpl = new Map<number, number>();
  const peer = method === 'sparsegpt' || method === 'wanda';
  const report: PruneReport = peer ? await peerReport() : await pruneModel(ctx, model, calib, {
    structure, sparsity, shots, method, seed, lora, batch, uniform, uniformHeads,
    onShotEnd: async (shot) => {
      if (evalEvery <= 0 || shot % evalEvery !== 0) return;
      const ts = performance.now();
      shotPpl.set(shot, (await perplexity(ctx, model, testIds, { seqlen, windows: evalWindows })).ppl);
      evalSeconds += (performance.now() - ts) / 1000;
      console.log(`  shot ${shot}: ppl ${shotPpl.get(shot)}`);
    },
    onProgress: (p) => {
      const now = performance.now();
      if (now - last > 5000) { console.log(`  ${p.phase} shot ${p.shot}/${p.shots} ${(p.fraction * 100).toFixed(0)}% eta ${p.etaSeconds?.toFixed(0) ?? '?'} s`); last = now; }
    },
  });
  // One-pass peers: their report in the surgeon's shape (one "shot", per-layer zeros, phase seconds).
  async function peerReport(): Promise<PruneReport> {
    const r = await (method === 'sparsegpt' ? sparsegptPrune : wandaPrune)(ctx, model, calib, { structure: structure as 'element' | `${number}:${number}`, sparsity });
    const byModuleType: PruneReport['byModuleType'] = {};
    for (const L of r.layers) {
      const t = (byModuleType[L.name.slice(L.name.lastIndexOf('.') + 1)] ??= { params: 0, zeros: 0 });
      t.params += L.params; t.zeros += L.zeros;
    }
    return { shots: [{ shot: 1, target: sparsity, achieved: r.achievedSparsity, seconds: r.seconds }], layers: r.layers.map((L) => ({ name: L.name, type: L.name.slice(L.name.lastIndexOf('.') + 1), params: L.params, zeros: L.zeros })), byModuleType, achievedSparsity: r.achievedSparsity, seconds: r.seconds };
  }
  const pruneSeconds = (performance.now() - t0) / 1000 - evalSeconds;
  const te = performance.now();
  const pruned = await perplexity(ctx, model, testIds, { seqlen, windows: evalWindows });
  evalSeconds += (performance.now() - te) / 1000;
  for (const s of report.shots) rows.push({ shot: s.shot, target: s.target, achieved: s.achieved, ppl: shotPpl.get(s.shot) ?? null, ...Object.fromEntries(Object.entries(s.seconds).map(([k, v]) => [`${k}_s`, v])) });
  table(rows.filter((r, i) => evalEvery === 0 || (i + 1) % Math.max(1, evalEvery) === 0 || i === rows.length - 1));
  console.log(`${method}${lora ? '+lora' : ''} ${structure} ${sparsity} shots=${report.shots.length}: ppl ${pruned.ppl} (dense ${dense.ppl}), achieved ${report.achievedSparsity}, prune ${pruneSeconds.toFixed(1)} s, eval ${evalSeconds.toFixed(1)} s`);
  console.log(`phase seconds: ${JSON.stringify(report.seconds)}`);
  writeJson(out, {
    adapter: ctx.gpu.info, date: new Date().toISOString(), commit: process.env.BENCH_COMMIT ?? null,
    run: { method, structure, shots: report.shots.length, sparsity, lora: lora ?? false, uniform, uniformHeads, seed, calib: calibFile, batch: batch ?? null, attention: attentionImpl, ppl: pruned.ppl, dense_ppl: dense.ppl, seconds: pruneSeconds, achieved: report.achievedSparsity, nsamples, seqlen },
    phases: report.seconds, shots: report.shots.map((e) => ({ ...e, ppl: shotPpl.get(e.shot) })), byModuleType: report.byModuleType, layers: report.layers,
  });
  model.dispose();
  ctx.destroy();
}

main().catch((e) => { console.error(e); process.exit(1); });
