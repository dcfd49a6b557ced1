/**
 * `llm-surgeon prune`: prune a checkpoint of any supported family (arch/registry.ts) on the GPU (pruneModel, ALGORITHM.md §2–§7) and write a
 * Hugging Face folder (config.json, model.safetensors, tokenizer files) plus report.json.
 *
 * Flow: check arguments and --out (nothing is loaded before the command line is valid) → load the
 * checkpoint (read only) → tokenise --calib, draw the seeded calibration windows → validate the prune
 * options against the model's config, pick the K-FAC batch, check the estimated peak GPU memory against
 * the device's limits (LimitExceededError, exit 1, before any upload) → upload → dense perplexity (--eval)
 * → prune → read back, round to --dtype, count zeros on the values as exported → perplexity of the
 * exported values → write folder + report.json into a staging folder beside --out, moved into place at the end.
 * Exit codes: 0 ok, 1 runtime error (class and message on stderr), 2 bad arguments, 130 interrupted
 * (SIGINT or SIGTERM; --out is left as it was).
 */

import { describePlan } from '../api/plan';
import { version } from '../../package.json';
import { familySpec } from '../arch/registry';
import { GpuContext } from '../gpu/context';
import { loadCheckpoint } from '../io/checkpoint';
import { DatasetError } from '../io/errors';
import { checkExportRange, configDType, DTYPE_MAX, exportHfFolder, findOverflow, roundTo, TOKENIZER_FILES, type ExportDType } from '../io/export';
import { openSource } from '../io/sources';
import { loadTokenizer } from '../io/tokenizer';
import { calibrationWindows } from '../io/wikitext';
import { perplexity } from '../model/eval';
import { DecoderModel } from '../model/model';
import { deviceLimits, mib } from '../api/memory';
import { PruneAbortedError, PruneConfigError } from '../surgeon/options';
import { describeError, readIds, UsageError } from './args';
import { checkCalibrationBudget, evalWindowCount, finitePerplexity, interruptedMessage, testPauseBeforeCommit, type RunStage } from './checks';
import { parsePruneArgs, prepareOut, PRUNE_USAGE, type PruneArgs } from './prune-args';
import { planPrune } from './prune-plan';
import { allocation, countLayerZeros, makeLog, type ProgressLine } from './prune-report';

const now = () => performance.now();

/**
 * Run `llm-surgeon prune …` in this process; returns the exit code. `env.ctx`: use this GPU context
 * (kept alive afterwards; tests share one so pipelines compile once) instead of creating one.
 */
export async function pruneCommand(argv: string[], env: { ctx?: GpuContext } = {}): Promise<number> {
  let args: PruneArgs | 'help';
  try {
    args = parsePruneArgs(argv);
    if (args !== 'help') await prepareOut(args, false);
  } catch (e) {
    if (!(e instanceof UsageError)) throw e;
    process.stderr.write(`llm-surgeon prune: ${e.message}\n(llm-surgeon prune --help for usage)\n`);
    return 2;
  }
  if (args === 'help') {
    process.stdout.write(`${PRUNE_USAGE}\n`);
    return 0;
  }
  const ac = new AbortController();
  // SIGTERM (kill, a job scheduler) stops the run like Ctrl-C; a second signal gets the default handler.
  const onSignal = (sig: NodeJS.Signals) => {
    process.removeListener('SIGINT', onSignal);
    process.removeListener('SIGTERM', onSignal);
    process.stderr.write(`\nllm-surgeon prune: ${sig}; stopping at the next step (the input model is untouched)\n`);
    ac.abort();
  };
  process.once('SIGINT', onSignal);
  process.once('SIGTERM', onSignal);
  let ctx: GpuContext | undefined;
  const stage: RunStage = { layersChanged: false, exporting: false };
  try {
    return await run(args, ac.signal, env.ctx, (c) => (ctx = c), stage);
  } catch (e) {
    if (e instanceof UsageError || e instanceof PruneConfigError) {
      process.stderr.write(`llm-surgeon prune: ${e.message}\n`);
      return 2;
    }
    if (e instanceof PruneAbortedError || ac.signal.aborted) {
      process.stderr.write(`llm-surgeon prune: ${interruptedMessage(stage, args.out)}\n`);
      return 130;
    }
    process.stderr.write(`llm-surgeon prune: ${describeError(e)}\n`);
    return 1;
  } finally {
    process.removeListener('SIGINT', onSignal);
    process.removeListener('SIGTERM', onSignal);
    await stage.staged?.discard().catch(() => undefined); // an export that did not commit leaves nothing behind
    (ctx as GpuContext | undefined)?.destroy();
  }
}

async function run(a: PruneArgs, signal: AbortSignal, given: GpuContext | undefined, owned: (ctx: GpuContext) => void, stage: RunStage): Promise<number> {
  const start = now();
  const sec: Record<string, number> = {};
  let t = start;
  const lap = (k: string) => { const n = now(); sec[k] = (sec[k] ?? 0) + (n - t) / 1000; t = n; };
  const { log, progress } = makeLog(a.quiet, start);

  // ---- load (read only) ----
  const ckpt = await loadCheckpoint(a.model, { signal });
  const cfg = ckpt.config;
  const dtype: ExportDType = a.dtype ?? 'float32';
  log(`model ${a.model}: ${familySpec(cfg).describe(cfg)}, ${ckpt.sourceDtype} weights`);
  const seqlen = a.seqlen ?? Math.min(2048, cfg.maxPositions);
  if (seqlen > cfg.maxPositions || seqlen < 2) throw new UsageError(`--seqlen ${seqlen} must be in 2…${cfg.maxPositions} (max_position_embeddings of this model)`);
  const evalSeqlen = a.evalSeqlen ?? cfg.maxPositions;
  if (evalSeqlen > cfg.maxPositions || evalSeqlen < 2) throw new UsageError(`--eval-seqlen ${evalSeqlen} must be in 2…${cfg.maxPositions} (max_position_embeddings of this model)`);
  if (a.calib) checkCalibrationBudget(a.nsamples, seqlen); // before the windows are built
  // Weights pruning leaves as they are decide it now; the pruned ones are checked again before writing.
  const over = dtype === 'float32' ? undefined : findOverflow(ckpt.tensors, dtype);
  if (over) {
    throw new UsageError(`--dtype ${dtype}: ${over.tensor} holds values up to ${over.maxAbs} in magnitude (first at [${over.index}]: ${over.value}), ` +
      `beyond ${dtype}'s largest ${DTYPE_MAX[dtype]}; use --dtype ${dtype === 'float16' ? 'bfloat16 or ' : ''}float32`);
  }
  lap('load');

  let tok: Promise<(text: string) => number[]> | undefined;
  const encoder = () => (tok ??= (async () => {
    if (!ckpt.tokenizerJson) throw new UsageError(`${a.model} has no tokenizer.json; pass .json files of token ids to --calib/--eval`);
    const tk = await loadTokenizer(ckpt.tokenizerJson, ckpt.tokenizerConfig);
    return (text: string) => tk.encode(text);
  })());
  const warn = (msg: string) => process.stderr.write(`llm-surgeon prune: warning: ${msg}\n`);
  let calib: Int32Array[] = [];
  let calibTokens = 0;
  if (a.calib) {
    const { ids } = await readIds('--calib', a.calib, encoder, a.raw, cfg.vocabSize, warn);
    calibTokens = ids.length;
    try {
      calib = calibrationWindows(ids, a.nsamples, seqlen, a.seed);
    } catch (e) {
      if (e instanceof DatasetError) throw new UsageError(`--calib ${a.calib}: ${e.message} (--seqlen ${seqlen})`);
      throw e;
    }
    log(`calibration: ${a.nsamples} windows × ${seqlen} tokens from ${ids.length} tokens (seed ${a.seed})`);
  }
  let evalIds: Int32Array | undefined;
  let evalWindows = 0;
  if (a.eval) {
    const r = await readIds('--eval', a.eval, encoder, a.raw, cfg.vocabSize, warn);
    evalIds = r.ids;
    const input = { flag: '--eval', file: a.eval, tokens: evalIds.length, empty: r.empty, seqlenFlag: '--eval-seqlen', windowsFlag: '--eval-windows' };
    evalWindows = evalWindowCount(input, evalSeqlen, a.evalWindows);
  }
  lap('tokenize');

  // ---- GPU ----
  let largest = 0;
  for (const w of ckpt.tensors.values()) largest = Math.max(largest, w.length * 4);
  let ctx = given;
  if (!ctx) {
    ctx = await GpuContext.create({ needs: { maxStorageBufferBindingSize: largest, maxBufferSize: largest } });
    owned(ctx);
  }
  const info = ctx.gpu.info;
  log(`GPU ${info.vendor} ${info.device || info.description}${info.isFallbackAdapter ? ' (fallback adapter)' : ''}`);
  // Options, K-FAC batch and the estimated peak checked before the model is uploaded (LimitExceededError: exit 1).
  const tracked = (p: ProgressLine) => {
    if (p.phase === 'update' || p.phase === 'prune') stage.layersChanged = true; // the first phases that write weights
    progress(p);
  };
  const prune = planPrune(a, cfg, calib, seqlen, evalIds ? { ids: evalIds, seqlen: evalSeqlen, windows: evalWindows } : undefined, tracked, signal, deviceLimits(ctx));
  if (prune.autoBatch !== undefined) {
    log(`K-FAC batch: ${prune.autoBatch.batch} window(s) per forward/backward (the most ≤ 16 within ${mib(prune.autoBatch.budget)} or the job's own estimated peak; --batch to set)`);
  }
  log(`estimated peak GPU memory ${mib(prune.memory.peak)} (weights ${mib(prune.memory.weights)}; largest buffer ${mib(prune.memory.largest.bytes)}: ${prune.memory.largest.what})${a.memoryBudget ? ` within --memory-budget ${mib(a.memoryBudget)}` : ''}`);
  if (prune.memoryPlan) log(`memory plan: ${describePlan(prune.memoryPlan)}`);
  const inUse = ctx.pool.bytesInUse;
  ctx.pool.peakBytesInUse = inUse;
  const model = await DecoderModel.fromCheckpoint(ctx, ckpt);
  const layers = model.prunableLayers();
  lap('upload');

  let dense: number | undefined;
  if (evalIds) {
    dense = finitePerplexity((await perplexity(ctx, model, evalIds, { seqlen: evalSeqlen, windows: evalWindows, signal })).ppl, 'dense');
    log(`dense perplexity ${dense.toFixed(5)} (${evalWindows} windows of ${evalSeqlen})`);
    lap('evalDense');
  }

  // ---- prune ----
  log(`pruning: ${prune.summary}`);
  const rep = await prune.run(ctx, model);
  lap('prune');
  log(`pruned: achieved sparsity ${rep.achievedSparsity.toFixed(6)} in ${sec.prune.toFixed(1)} s`);

  // ---- export values (rounded to --dtype), zeros and perplexity of what is written ----
  const weights = await model.exportWeights();
  let changed = false;
  if (dtype !== 'float32') {
    checkExportRange(weights, dtype); // rounding would turn these into ±Inf
    for (const [name, w] of weights) {
      const r = roundTo(w, dtype);
      if (!changed && r.some((v, i) => v !== w[i])) changed = true;
      weights.set(name, r);
    }
  }
  const counts = countLayerZeros(weights, layers, prune.nm);
  const alloc = allocation(counts, rep.layers);
  lap('readback');
  let pruned: number | undefined;
  if (evalIds) {
    if (changed) for (const [name, w] of weights) model.setWeight(name, w);
    pruned = finitePerplexity((await perplexity(ctx, model, evalIds, { seqlen: evalSeqlen, windows: evalWindows, signal })).ppl, `pruned (${dtype})`);
    log(`pruned perplexity ${pruned.toFixed(5)} (weights as exported, ${dtype})`);
    lap('evalPruned');
  }
  model.dispose();
  const measuredPeak = ctx.pool.peakBytesInUse - inUse;
  signal.throwIfAborted();

  const extraFiles = await tokenizerFiles(a.model);
  stage.exporting = true;
  const staged = (stage.staged = await prepareOut(a, true));
  const folder = await exportHfFolder(cfg.raw, weights, staged.dir, { dtype, extraFiles, metadata: { producer: `llm-surgeon-webgpu ${version}` } });
  lap('export');
  sec.total = (now() - start) / 1000;

  const report = {
    tool: { name: 'llm-surgeon-webgpu', version, command: ['llm-surgeon', 'prune', ...a.argv] },
    date: new Date().toISOString(),
    model: {
      source: a.model, family: cfg.family, modelType: cfg.modelType, architecture: cfg.architecture,
      sourceDtype: ckpt.sourceDtype, configDtype: configDType(cfg.raw) ?? null, layers: cfg.numLayers, hiddenSize: cfg.hiddenSize,
      numHeads: cfg.numHeads, numKvHeads: cfg.numKvHeads, headDim: cfg.headDim, ffnDim: cfg.ffnDim,
      moduleTypes: [...familySpec(cfg).moduleTypes],
    },
    options: prune.options,
    calibration: a.calib ? { file: a.calib, tokens: calibTokens, nsamples: a.nsamples, seqlen, seed: a.seed } : null,
    adapter: { ...info, limits: { maxStorageBufferBindingSize: ctx.limits.maxStorageBufferBindingSize, maxBufferSize: ctx.limits.maxBufferSize } },
    // Official convention (ALGORITHM.md §1): zeros / parameters of every pruned linear's W' (the bias
    // column included where the layer has one), counted on the weights as written to model.safetensors.
    target: a.sparsity,
    achievedSparsity: alloc.achievedSparsity,
    params: alloc.params,
    zeros: alloc.zeros,
    layers: alloc.layers,
    byModuleType: alloc.byModuleType,
    byDecoderLayer: alloc.byDecoderLayer,
    shots: rep.shots ?? null,
    ...(rep.weightSparsity !== undefined ? { weightSparsity: rep.weightSparsity } : {}),
    perplexity: evalIds ? {
      file: a.eval, seqlen: evalSeqlen, windows: evalWindows, dense, pruned,
      note: `dense: source weights; pruned: the weights as exported (${dtype})${a.evalEveryShot ? '; per-shot values in shots[] use the float32 GPU weights' : ''}`,
    } : null,
    // GPU pool bytes of this run (weights included; what was in use before the upload excluded)
    memory: { estimatedPeakBytes: prune.memory.peak, measuredPeakBytes: measuredPeak, budgetBytes: a.memoryBudget ?? null, plan: prune.memoryPlan ?? null },
    seconds: { ...sec, phases: rep.seconds },
    export: { dir: a.out, dtype, files: Object.fromEntries(Object.entries(folder.files).map(([k, v]) => [k, v.length])) },
  };
  const { writeFile } = await import('node:fs/promises');
  await writeFile(`${staged.dir}/report.json`, `${JSON.stringify(report, null, 2)}\n`);
  await testPauseBeforeCommit(staged.dir, signal);
  signal.throwIfAborted(); // the last point where --out is still as it was
  await staged.commit();
  stage.exporting = false;
  log(`wrote ${a.out} (${Object.keys(folder.files).join(', ')}, report.json)`);
  process.stdout.write(`${a.out}: ${a.method} ${a.structure} sparsity ${alloc.achievedSparsity.toFixed(6)}` +
    `${pruned !== undefined ? `, perplexity ${dense!.toFixed(4)} → ${pruned.toFixed(4)}` : ''} (${sec.total.toFixed(1)} s)\n`);
  return 0;
}

/** The source's tokenizer files (byte-identical copies), when present. */
async function tokenizerFiles(model: string): Promise<Record<string, Uint8Array>> {
  const folder = await openSource(model);
  const out: Record<string, Uint8Array> = {};
  for (const name of TOKENIZER_FILES) {
    const b = await folder.read(name);
    if (b) out[name] = b;
  }
  return out;
}
