/**
 * `llm-surgeon prune`: prune a checkpoint of any supported family (arch/registry.ts) on the GPU and write a
 * Hugging Face folder (config.json, model.safetensors, tokenizer files) plus report.json.
 *
 * The pruning itself is the job prune() and the worker run (api/job.ts); the CLI adds files and flags:
 * check arguments and --out (nothing is loaded before the command line is valid) → load the checkpoint
 * (read only) → read --calib / --eval into token ids (a .json file of ids, or text joined like WikiText
 * rows) → prepareJob: calibration windows and options checked (exit 2, before the GPU) → runPreparedJob:
 * plan (K-FAC batch, estimated peak, memory plan; LimitExceededError, exit 1, before any upload) →
 * upload → dense perplexity → prune; its stages become the log lines → round to --dtype, count zeros on
 * the values as exported → perplexity of the exported values (the job's GPU copy) → with --compact the
 * dead units removed (src/compact; --uniform: equal widths, a stock config) and the compact model's own
 * perplexity → write folder + report.json into a staging folder beside --out, moved into place at the end.
 * Exit codes: 0 ok, 1 runtime error (class and message on stderr), 2 bad arguments, 130 interrupted
 * (SIGINT or SIGTERM; --out is left as it was).
 */

import { isPeerMethod, MIN_BATCH_TOKENS, runPreparedJob, textTokenizer, type JobPlan, type JobStage } from '../api/job';
import { mib } from '../api/memory';
import { describePlan } from '../api/plan';
import { compactPerplexity } from '../api/compact-speed';
import type { ProgressEvent } from '../api/types';
import { version } from '../../package.json';
import { familySpec } from '../arch/registry';
import { GpuContext } from '../gpu/context';
import { loadCheckpoint } from '../io/checkpoint';
import { compactModel, planCompaction, type CompactModel } from '../compact/index';
import { checkExportRange, compactionSummary, configDType, DTYPE_MAX, exportHfFolder, findOverflow, roundTo, TOKENIZER_FILES, type ExportDType } from '../io/export';
import { openSource } from '../io/sources';
import { perplexity } from '../model/eval';
import { PruneAbortedError, PruneConfigError } from '../surgeon/options';
import { checkUniformHeads } from '../surgeon/uniform';
import { describeError, readIds, UsageError } from './args';
import { checkCalibrationBudget, evalWindowCount, finitePerplexity, interruptedMessage, testPauseBeforeCommit, type RunStage } from './checks';
import { parsePruneArgs, prepareOut, PRUNE_USAGE, type PruneArgs } from './prune-args';
import { jobNm, jobOptions, jobSummary, prepareCliJob, progressLine, reportOptions, type CliInputs } from './prune-job';
import { allocation, compactionReport, countLayerZeros, makeLog } from './prune-report';

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
  if (a.uniformHeads) checkUniformHeads(cfg); // the family decides; refused before any GPU work
  // Weights pruning leaves as they are decide it now; the pruned ones are checked again before writing.
  const over = dtype === 'float32' ? undefined : findOverflow(ckpt.tensors, dtype);
  if (over) {
    throw new UsageError(`--dtype ${dtype}: ${over.tensor} holds values up to ${over.maxAbs} in magnitude (first at [${over.index}]: ${over.value}), ` +
      `beyond ${dtype}'s largest ${DTYPE_MAX[dtype]}; use --dtype ${dtype === 'float16' ? 'bfloat16 or ' : ''}float32`);
  }
  lap('load');

  // ---- token ids from the files (text through the job's tokenizer), then the job's own checks ----
  const encoder = async () => {
    if (!ckpt.tokenizerJson) throw new UsageError(`${a.model} has no tokenizer.json; pass .json files of token ids to --calib/--eval`);
    const tk = await textTokenizer(ckpt);
    return (text: string) => tk.encode(text);
  };
  const warn = (msg: string) => process.stderr.write(`llm-surgeon prune: warning: ${msg}\n`);
  const calib = a.calib ? (await readIds('--calib', a.calib, encoder, a.raw, cfg.vocabSize, warn)).ids : undefined;
  let evaluate: CliInputs['evaluate'];
  if (a.eval) {
    const r = await readIds('--eval', a.eval, encoder, a.raw, cfg.vocabSize, warn);
    const input = { flag: '--eval', file: a.eval, tokens: r.ids.length, empty: r.empty, seqlenFlag: '--eval-seqlen', windowsFlag: '--eval-windows' };
    evaluate = { ids: r.ids, seqlen: evalSeqlen, windows: evalWindowCount(input, evalSeqlen, a.evalWindows) };
  }
  const peer = isPeerMethod(a.method);
  const onProgress = (e: ProgressEvent) => {
    const p = progressLine(e, peer);
    if (!p) return;
    if (p.phase === 'update' || p.phase === 'prune') stage.layersChanged = true; // the first phases that write weights
    progress(p);
  };
  const job = await prepareCliJob(a, ckpt, jobOptions(a, { calib, seqlen, evaluate }, signal, onProgress));
  if (a.calib) log(`calibration: ${a.nsamples} windows × ${seqlen} tokens from ${job.calibTokens} tokens (seed ${a.seed})`);
  lap('tokenize');

  // ---- GPU: the job plans (refusing before the upload: LimitExceededError, exit 1), uploads, measures, prunes ----
  let largest = 0;
  for (const w of ckpt.tensors.values()) largest = Math.max(largest, w.length * 4);
  let ctx = given;
  if (!ctx) {
    ctx = await GpuContext.create({ needs: { maxStorageBufferBindingSize: largest, maxBufferSize: largest } });
    owned(ctx);
  }
  const info = ctx.gpu.info;
  log(`GPU ${info.vendor} ${info.device || info.description}${info.isFallbackAdapter ? ' (fallback adapter)' : ''}`);
  const inUse = ctx.pool.bytesInUse;
  let plan: JobPlan | undefined;
  let dense: number | undefined;
  const onStage = (s: JobStage) => {
    switch (s.stage) {
      case 'planned': {
        plan = s.plan;
        const m = plan.estimate;
        if (plan.autoBatch) {
          const why = a.memoryBudget !== undefined
            ? `the fewest curvature passes per shot within --memory-budget ${mib(a.memoryBudget)}, at least ${MIN_BATCH_TOKENS} tokens where one fits`
            : `the most ≤ 16 within ${mib(plan.autoBatch.budget)} or the job's own estimated peak`;
          log(`K-FAC batch: ${plan.autoBatch.batch} window(s) per forward/backward (${why}; --batch to set)`);
        }
        log(`estimated peak GPU memory ${mib(m.peak)} (weights ${mib(m.weights)}; largest buffer ${mib(m.largest.bytes)}: ${m.largest.what})${a.memoryBudget ? ` within --memory-budget ${mib(a.memoryBudget)}` : ''}`);
        if (plan.plan) log(`memory plan: ${describePlan(plan.plan)}`);
        return;
      }
      case 'uploaded': return lap('upload');
      case 'dense':
        dense = finitePerplexity(s.perplexity, 'dense');
        log(`dense perplexity ${dense.toFixed(5)} (${evaluate!.windows} windows of ${evalSeqlen})`);
        return lap('evalDense');
      case 'pruning': return log(`pruning: ${jobSummary(a, job)}`);
      case 'pruned':
        lap('prune');
        return log(`pruned: achieved sparsity ${s.achievedSparsity.toFixed(6)} in ${sec.prune.toFixed(1)} s`);
    }
  };
  const { model: result, report: rep, gpu } = await runPreparedJob(ctx, job, { keepGpu: true, onStage });
  const model = gpu!;
  let weights: Map<string, Float32Array>, alloc: ReturnType<typeof allocation>, pruned: number | undefined;
  try {
    // ---- export values (rounded to --dtype), zeros and perplexity of what is written ----
    weights = result.tensors;
    let changed = false;
    if (dtype !== 'float32') {
      checkExportRange(weights, dtype); // rounding would turn these into ±Inf
      for (const [name, w] of weights) {
        const r = roundTo(w, dtype);
        if (!changed && r.some((v, i) => v !== w[i])) changed = true;
        weights.set(name, r);
      }
    }
    alloc = allocation(countLayerZeros(weights, model.prunableLayers(), jobNm(job)), rep.layers);
    lap('readback');
    if (evaluate) {
      if (changed) for (const [name, w] of weights) model.setWeight(name, w);
      pruned = finitePerplexity((await perplexity(ctx, model, evaluate.ids, { seqlen: evalSeqlen, windows: evaluate.windows, signal })).ppl, `pruned (${dtype})`);
      log(`pruned perplexity ${pruned.toFixed(5)} (weights as exported, ${dtype})`);
      lap('evalPruned');
    }
  } finally {
    model.dispose();
  }
  // ---- --compact: dead units removed from the values as exported, the compact model measured itself ----
  let compact: CompactModel | undefined, compactPpl: number | undefined;
  if (a.compact) {
    compact = compactModel(cfg, weights, planCompaction(cfg, weights, { uniform: a.uniform }));
    const { before, after } = compact.params;
    log(`compact: ${before} → ${after} parameters (${((100 * after) / before).toFixed(2)}%), ${compact.config.layers ? 'per-layer widths (compact_layers)' : 'stock config'}`);
    if (evaluate) {
      compactPpl = finitePerplexity(await compactPerplexity(ctx, ckpt, compact, evaluate.ids, { seqlen: evalSeqlen, windows: evaluate.windows, signal }), 'compact');
      log(`compact perplexity ${compactPpl.toFixed(5)}`);
    }
    lap('compact');
  }
  const measuredPeak = ctx.pool.peakBytesInUse - inUse;
  signal.throwIfAborted();

  const extraFiles = await tokenizerFiles(a.model);
  stage.exporting = true;
  const staged = (stage.staged = await prepareOut(a, true));
  const exportOpts = { dtype, extraFiles, metadata: { producer: `llm-surgeon-webgpu ${version}` } };
  const folder = compact ? await exportHfFolder(compact.raw, compact.tensors, staged.dir, exportOpts) : await exportHfFolder(cfg.raw, weights, staged.dir, exportOpts);
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
    options: reportOptions(a, job, plan!),
    calibration: a.calib ? { file: a.calib, tokens: job.calibTokens, nsamples: a.nsamples, seqlen, seed: a.seed } : null,
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
    shots: peer ? null : rep.shots, // the peers run one pass, no shots
    ...(rep.weightSparsity !== undefined ? { weightSparsity: rep.weightSparsity } : {}),
    perplexity: evaluate ? {
      file: a.eval, seqlen: evalSeqlen, windows: evaluate.windows, dense, pruned,
      note: `dense: source weights; pruned: the weights as exported (${dtype})${a.evalEveryShot ? '; per-shot values in shots[] use the float32 GPU weights' : ''}`,
    } : null,
    // GPU pool bytes of this run (weights included; what was in use before the upload excluded)
    memory: { estimatedPeakBytes: plan!.estimate.peak, measuredPeakBytes: measuredPeak, budgetBytes: a.memoryBudget ?? null, plan: plan!.plan ?? null },
    seconds: { ...sec, phases: rep.seconds },
    export: { dir: a.out, dtype, files: Object.fromEntries(Object.entries(folder.files).map(([k, v]) => [k, v.length])) },
    compaction: compact ? compactionReport(compactionSummary(cfg, compact, dtype), a.uniform, compactPpl) : null,
  };
  const { writeFile } = await import('node:fs/promises');
  await writeFile(`${staged.dir}/report.json`, `${JSON.stringify(report, null, 2)}\n`);
  await testPauseBeforeCommit(staged.dir, signal);
  signal.throwIfAborted(); // the last point where --out is still as it was
  await staged.commit();
  stage.exporting = false;
  log(`wrote ${a.out} (${Object.keys(folder.files).join(', ')}, report.json)`);
  process.stdout.write(`${a.out}: ${a.method} ${a.structure} sparsity ${alloc.achievedSparsity.toFixed(6)}` +
    `${pruned !== undefined ? `, perplexity ${dense!.toFixed(4)} → ${pruned.toFixed(4)}` : ''}` +
    `${compact ? `, compact ${compact.params.after}/${compact.params.before} parameters` : ''} (${sec.total.toFixed(1)} s)\n`);
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
