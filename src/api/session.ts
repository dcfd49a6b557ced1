/**
 * What the worker does, without the worker: one GPU context, one loaded model, and the calls the page
 * makes. Every GPU call races the device's `lost` promise, so a lost device fails the running call with
 * DeviceLostError (and drops the context and model; the next init() starts afresh).
 * Kept free of worker globals so it can also run in Node (Dawn) behind the same API.
 */

import { prunableLayersOf } from '../arch/registry';
import { GpuContext } from '../gpu/context';
import { BASE_NEEDS } from '../gpu/device';
import { LimitExceededError, ShapeError } from '../gpu/errors';
import { loadCheckpoint, type LoadedCheckpoint, type ModelSource } from '../io/checkpoint';
import { loadTokenizer, type TextTokenizer } from '../io/tokenizer';
import { checkTokenIds } from '../io/ids';
import { evaluationWindows } from '../io/wikitext';
import { matmul } from '../kernels/matmul';
import { generate as generateTokens, DecoderModel, perplexity } from '../model/index';
import { cachedFetch, clearCache } from './cache';
import { NoModelError } from './errors';
import { measureCompactSpeed, type CompactSpeed } from './compact-speed';
import { exportZip, type FolderOptions } from './export';
import { modelFingerprint, runPruneJob, type HostModel, type PruneResult, type PruneSettings } from './job';
import { isPeerMethod } from './job-memory';
import { openStore, readState, type CheckpointSpec } from './jobstore';
import { deviceLimits, estimatePruneMemory, type MemoryEstimate, type MemorySettings } from './memory';
import { estimatePeerMemory, type PeerMemoryEstimate } from './memory-peers';
import { defaultMemoryBudget, inPage, planPrune, type PrunePlan } from './plan';
import type {
  AdapterSummary, BenchmarkResult, Capabilities, EvaluateOptions, EvaluateResult, GenerateOptions,
  GenerateResult, LoadProgress, MemoryStats, ModelSourceSpec, ModelSummary, ProgressEvent, SparsityEntry,
} from './types';

const LIMIT_KEYS = [
  ...Object.keys(BASE_NEEDS),
  'maxComputeWorkgroupSizeX',
  'maxComputeWorkgroupsPerDimension',
] as const;

const PROGRESS_INTERVAL_MS = 100; // ~10 UI updates per second: smooth bars, negligible message traffic

interface Loaded {
  /** The model as loaded (never modified; every prune starts from it). */
  ckpt: LoadedCheckpoint;
  /** The weights now in use: ckpt, or the last prune's result. */
  current: HostModel;
  tokenizer?: TextTokenizer;
  /** GPU copy of `current` (uploaded lazily; dropped during a prune and after a lost device). */
  model?: DecoderModel;
  summary: ModelSummary;
}

export class SurgeonSession {
  private ctx?: GpuContext;
  private model?: Loaded;
  private jobs = new Map<string, AbortController>();

  /** Acquire the GPU (once) and describe the adapter and its limits. */
  async init(): Promise<AdapterSummary> {
    const ctx = await this.context();
    const lim = ctx.limits as unknown as Record<string, number>;
    return {
      ...ctx.gpu.info,
      features: [...ctx.gpu.features].sort(),
      limits: Object.fromEntries(LIMIT_KEYS.map((k) => [k, lim[k]])),
    };
  }

  capabilities(): Capabilities {
    return {
      evaluate: true,
      generate: true,
      prune: true,
      notes: {},
    };
  }

  async loadModel(spec: ModelSourceSpec, onProgress?: (p: LoadProgress) => void): Promise<ModelSummary> {
    const ctx = await this.context();
    return this.guard(ctx, async () => {
      this.unload();
      const throttled = throttle(onProgress);
      const { source, revision, label } = toSource(spec);
      const ckpt = await loadCheckpoint(source, {
        revision,
        fetch: spec.kind === 'url' || spec.kind === 'hub' ? cachedFetch() : undefined,
        onProgress: (p) => throttled({ phase: 'download', file: p.file, loaded: p.loaded, total: p.total }, p.loaded === p.total),
      });
      const maxBinding = ctx.limits.maxStorageBufferBindingSize;
      for (const [name, t] of ckpt.tensors) {
        if (t.byteLength > maxBinding) {
          throw new LimitExceededError('maxStorageBufferBindingSize', t.byteLength, maxBinding, `tensor ${name} does not fit in one storage binding on this GPU`);
        }
      }
      const totalBytes = [...ckpt.tensors.values()].reduce((a, t) => a + t.byteLength, 0);
      throttled({ phase: 'upload', loaded: 0, total: totalBytes }, true);
      const model = await DecoderModel.fromCheckpoint(ctx, ckpt);
      try {
        await ctx.sync();
      } catch (e) {
        model.dispose();
        throw e;
      }
      throttled({ phase: 'upload', loaded: totalBytes, total: totalBytes }, true);
      const tokenizer = ckpt.tokenizerJson ? await loadTokenizer(ckpt.tokenizerJson, ckpt.tokenizerConfig) : undefined;
      const c = ckpt.config;
      const summary: ModelSummary = {
        label: label ?? ckpt.files[0] ?? 'model',
        family: c.family,
        architecture: c.architecture,
        moduleTypes: [...model.spec.moduleTypes],
        numLayers: c.numLayers,
        hiddenSize: c.hiddenSize,
        numHeads: c.numHeads,
        numKvHeads: c.numKvHeads,
        headDim: c.headDim,
        ffnDim: c.ffnDim,
        vocabSize: c.vocabSize,
        maxPositions: c.maxPositions,
        parameters: [...ckpt.tensors.values()].reduce((a, t) => a + t.length, 0),
        sourceDtype: ckpt.sourceDtype,
        hasTokenizer: !!tokenizer,
        gpuBytes: model.bytes,
        files: ckpt.files,
      };
      this.model = { ckpt, current: ckpt, tokenizer, model, summary };
      return summary;
    });
  }

  /** Perplexity of `text` in non-overlapping windows (ALGORITHM.md §10 protocol). */
  async evaluate(opts: EvaluateOptions, onProgress?: (p: ProgressEvent) => void): Promise<EvaluateResult> {
    const m = this.needModel();
    if (!m.tokenizer) throw new NoModelError('the loaded checkpoint has no tokenizer.json; cannot tokenize the evaluation text');
    const ids = checkTokenIds(m.tokenizer.encode(opts.text), m.ckpt.config.vocabSize, 'the evaluation text');
    if (opts.seqlen > m.ckpt.config.maxPositions) {
      throw new ShapeError(`seqlen ${opts.seqlen} exceeds the model's max_position_embeddings ${m.ckpt.config.maxPositions}`);
    }
    const windows = evaluationWindows(ids, opts.seqlen, opts.windows).length; // DatasetError before any GPU work
    const ctx = await this.context();
    return this.guard(ctx, async () => {
      const t0 = performance.now();
      const r = await perplexity(ctx, await this.gpuModel(ctx), ids, {
        seqlen: opts.seqlen,
        windows,
        onProgress: (done, total) => onProgress?.({ phase: 'evaluate', fraction: done / total, etaSeconds: done ? ((performance.now() - t0) / 1000) * (total / done - 1) : undefined }),
      });
      return { perplexity: r.ppl, windows, seqlen: opts.seqlen, tokens: windows * opts.seqlen, seconds: (performance.now() - t0) / 1000 };
    });
  }

  async generate(prompt: string, opts: GenerateOptions = {}): Promise<GenerateResult> {
    const { m, ids, max } = this.generationInput(prompt, opts);
    const ctx = await this.context();
    return this.guard(ctx, async () => {
      const t0 = performance.now();
      // Greedy decoding (deterministic: the before/after samples differ only because the weights do).
      const out = await generateTokens(ctx, await this.gpuModel(ctx), ids, { maxNewTokens: max, stopTokens: m.ckpt.config.eosTokenIds });
      return { text: m.tokenizer!.decode(out), promptIds: ids, ids: out, tokens: out.length, seconds: (performance.now() - t0) / 1000 };
    });
  }

  /** Fraction of exact zeros in every prunable weight of the current weights, labelled by the family's module types. */
  async sparsity(): Promise<SparsityEntry[]> {
    const m = this.needModel();
    return prunableLayersOf(m.current.config).map((L) => {
      const data = m.current.tensors.get(`${L.name}.weight`)!;
      let zeros = 0;
      for (let i = 0; i < data.length; i++) if (data[i] === 0) zeros++;
      return { layer: L.layer, module: L.type, rows: L.R, cols: L.C, zeros };
    });
  }

  /**
   * The current weights as a Hugging Face folder (config.json, model.safetensors, tokenizer) zipped;
   * `compact`: dead FFN neurons and heads removed physically (per-layer widths in config.json).
   */
  async exportModel(opts: FolderOptions = {}): Promise<Uint8Array> {
    return exportZip(this.needModel().current, opts);
  }

  /**
   * Greedy generation speed of the current weights, zeroed as they are and compacted (their dead units
   * removed), on `prompt` for `maxNewTokens` tokens each, with both models' sizes.
   */
  async compactSpeed(prompt: string, opts: GenerateOptions = {}): Promise<CompactSpeed> {
    const { m, ids, max } = this.generationInput(prompt, opts);
    const ctx = await this.context();
    return this.guard(ctx, async () => measureCompactSpeed(ctx, await this.gpuModel(ctx), m.current, ids, max));
  }

  /**
   * Prune the loaded model (always starting from the weights as loaded); the result becomes the current
   * weights (evaluate, generate, sparsity and export then use it). `jobId` lets cancel() abort it.
   */
  async prune(settings: PruneSettings, onProgress?: (p: ProgressEvent) => void, jobId?: string): Promise<Omit<PruneResult, 'model'>> {
    const m = this.needModel();
    const ctx = await this.context();
    m.model?.dispose(); // the job uploads its own copy; keeping both would double the weights' GPU memory
    m.model = undefined;
    const memoryBudget = settings.memoryBudget ?? defaultMemoryBudget(deviceLimits(ctx), inPage());
    const r = await this.job(jobId, (signal) => this.guard(ctx, () => runPruneJob(ctx, m.ckpt, { ...settings, memoryBudget, onProgress, signal }, { keepGpu: true })));
    if (this.model === m) {
      m.current = r.model;
      m.model = r.gpu;
    } else r.gpu?.dispose();
    return { report: r.report };
  }

  /** Load a checkpoint onto the host only (public loadModel() in a browser); downloads go through the cache. */
  async loadHost(spec: ModelSourceSpec, onProgress?: (p: LoadProgress) => void): Promise<HostModel> {
    const { source, revision } = toSource(spec);
    const throttled = throttle(onProgress);
    return loadCheckpoint(source, {
      revision,
      fetch: spec.kind === 'url' || spec.kind === 'hub' ? cachedFetch() : undefined,
      onProgress: (p) => throttled({ phase: 'download', file: p.file, loaded: p.loaded, total: p.total }, p.loaded === p.total),
    });
  }

  /** Prune host weights given by the caller (public prune() in a browser); the input is not kept. */
  async pruneHost(host: HostModel, settings: PruneSettings, onProgress?: (p: ProgressEvent) => void, jobId?: string, signal?: AbortSignal): Promise<PruneResult> {
    const ctx = await this.context();
    const memoryBudget = settings.memoryBudget ?? defaultMemoryBudget(deviceLimits(ctx), inPage());
    const r = await this.job(jobId, (sig) => this.guard(ctx, () => runPruneJob(ctx, host, { ...settings, memoryBudget, onProgress, signal: sig })), signal);
    return { model: r.model, report: r.report };
  }

  /** Perplexity of host weights given by the caller (a temporary GPU copy). */
  async evaluateHost(host: HostModel, opts: EvaluateOptions & { ids?: Int32Array | number[] }, onProgress?: (p: ProgressEvent) => void): Promise<EvaluateResult> {
    const ctx = await this.context();
    let ids: Int32Array;
    // One check for every path (io/ids.ts): integers in 0…vocab − 1, never wrapped to 32 bits.
    if (opts.ids) ids = checkTokenIds(opts.ids, host.config.vocabSize, 'evaluate ids');
    else {
      if (!host.tokenizerJson) throw new NoModelError('the model has no tokenizer.json; pass ids instead of text');
      ids = checkTokenIds((await loadTokenizer(host.tokenizerJson, host.tokenizerConfig)).encode(opts.text), host.config.vocabSize, 'the evaluation text');
    }
    const windows = evaluationWindows(ids, opts.seqlen, opts.windows).length;
    return this.guard(ctx, async () => {
      const model = await DecoderModel.fromCheckpoint(ctx, host);
      try {
        const t0 = performance.now();
        const r = await perplexity(ctx, model, ids, { seqlen: opts.seqlen, windows, onProgress: (d, n) => onProgress?.({ phase: 'evaluate', fraction: d / n }) });
        return { perplexity: r.ppl, windows, seqlen: opts.seqlen, tokens: windows * opts.seqlen, seconds: (performance.now() - t0) / 1000 };
      } finally {
        model.dispose();
      }
    });
  }

  /** Abort a running prune started with this jobId (it fails with PruneAbortedError; its checkpoint stays). */
  cancel(jobId: string): boolean {
    const c = this.jobs.get(jobId);
    c?.abort();
    return !!c;
  }

  /**
   * Peak GPU memory a prune of the loaded model would need (memory.ts; SparseGPT and Wanda:
   * memory-peers.ts), for the page to show; for the surgeon family with the plan a job would run under
   * `budget` (default in a page: defaultMemoryBudget), or without a plan when even the finest does not fit.
   */
  async estimate(settings: MemorySettings, budget?: number): Promise<(MemoryEstimate & { plan?: PrunePlan }) | PeerMemoryEstimate> {
    const m = this.needModel();
    const ctx = await this.context();
    const { method } = settings;
    const lim = deviceLimits(ctx);
    if (method && isPeerMethod(method)) return estimatePeerMemory(m.ckpt.config, { ...settings, method }, lim);
    try {
      const { plan, estimate } = planPrune(m.ckpt.config, settings, lim, budget ?? defaultMemoryBudget(lim, inPage()), ctx.pool.bytesInUse);
      return { ...estimate, plan };
    } catch (e) {
      if (!(e instanceof LimitExceededError)) throw e;
      return estimatePruneMemory(m.ckpt.config, settings, lim);
    }
  }

  /** Shots saved in a checkpoint, when it belongs to the loaded model (null: nothing to resume). */
  async checkpointInfo(spec: CheckpointSpec): Promise<{ shotsDone: number; shots: number } | null> {
    const m = this.needModel();
    const st = await readState(await openStore(spec)).catch(() => undefined);
    if (!st || st.fingerprint.model !== modelFingerprint(m.ckpt)) return null;
    return { shotsDone: st.shotsDone, shots: st.shots };
  }

  clearCache(): Promise<boolean> {
    return clearCache();
  }

  memory(): MemoryStats {
    const p = this.ctx?.pool;
    return { bytesInUse: p?.bytesInUse ?? 0, bytesPooled: p?.bytesPooled ?? 0, peakBytesInUse: p?.peakBytesInUse ?? 0 };
  }

  /** GPU self-test: `repeats` square matmuls of `size`, timed end to end (submit to completion). */
  async benchmark(size = 256, repeats = 8): Promise<BenchmarkResult> {
    const ctx = await this.context();
    return this.guard(ctx, async () => {
      const n = size * size;
      const a = ctx.upload(Float32Array.from({ length: n }, (_, i) => ((i * 7919) % 13) / 13 - 0.5), [size, size]);
      const b = ctx.upload(Float32Array.from({ length: n }, (_, i) => ((i * 104729) % 17) / 17 - 0.5), [size, size]);
      const c = ctx.empty([size, size]);
      try {
        matmul(ctx, a, b, { out: c }); // warm-up: pipeline compilation is not part of the timing
        await ctx.sync();
        const t0 = performance.now();
        for (let r = 0; r < repeats; r++) matmul(ctx, a, b, { out: c });
        await ctx.sync();
        const seconds = (performance.now() - t0) / 1000;
        return { size, repeats, seconds, gflops: (2 * size ** 3 * repeats) / seconds / 1e9 };
      } finally {
        a.dispose();
        b.dispose();
        c.dispose();
      }
    });
  }

  /** Test hook: destroy the device as a driver reset would (device.lost fires with reason "destroyed"). */
  loseDevice(): void {
    this.ctx?.device.destroy();
  }

  dispose(): void {
    this.unload();
    this.ctx?.destroy();
    this.ctx = undefined;
  }

  /** The prompt's ids and the token count, checked before any GPU work. */
  private generationInput(prompt: string, opts: GenerateOptions): { m: Loaded; ids: number[]; max: number } {
    const m = this.needModel();
    if (!m.tokenizer) throw new NoModelError('the loaded checkpoint has no tokenizer.json; cannot tokenize the prompt');
    const ids = m.tokenizer.encode(prompt);
    const max = opts.maxNewTokens ?? 32;
    if (ids.length + max > m.ckpt.config.maxPositions) {
      throw new ShapeError(`prompt (${ids.length} tokens) + ${max} new tokens exceeds max_position_embeddings ${m.ckpt.config.maxPositions}`);
    }
    return { m, ids, max };
  }

  private needModel(): Loaded {
    if (!this.model) throw new NoModelError('no model is loaded; call loadModel() first');
    return this.model;
  }

  private unload(): void {
    this.model?.model?.dispose();
    this.model = undefined;
  }

  /** The GPU copy of the current weights, uploaded if it was dropped. */
  private async gpuModel(ctx: GpuContext): Promise<DecoderModel> {
    const m = this.needModel();
    m.model ??= await DecoderModel.fromCheckpoint(ctx, m.current);
    return m.model;
  }

  /** Run a cancellable job: cancel(jobId) or the caller's `outer` signal aborts it. */
  private async job<T>(jobId: string | undefined, fn: (signal: AbortSignal) => Promise<T>, outer?: AbortSignal): Promise<T> {
    const c = new AbortController();
    const onAbort = () => c.abort(outer?.reason);
    if (outer?.aborted) onAbort();
    outer?.addEventListener('abort', onAbort, { once: true });
    if (jobId) this.jobs.set(jobId, c);
    try {
      return await fn(c.signal);
    } finally {
      if (jobId) this.jobs.delete(jobId);
      outer?.removeEventListener('abort', onAbort);
    }
  }

  private async context(): Promise<GpuContext> {
    this.ctx ??= await GpuContext.create();
    return this.ctx;
  }

  /** Run `fn`; if the device is lost meanwhile, fail with DeviceLostError and forget the context and model. */
  private async guard<T>(ctx: GpuContext, fn: () => Promise<T>): Promise<T> {
    const lost = ctx.gpu.lost.then((e) => {
      if (this.ctx === ctx) {
        this.ctx = undefined;
        if (this.model) this.model.model = undefined; // its buffers died with the device; the host weights stay
      }
      throw e;
    });
    return Promise.race([fn(), lost]);
  }
}

function toSource(spec: ModelSourceSpec): { source: ModelSource; revision?: string; label?: string } {
  switch (spec.kind) {
    case 'url':
      return { source: spec.url, label: spec.url };
    case 'hub':
      return { source: spec.id, revision: spec.revision, label: spec.id };
    case 'files':
      return { source: spec.files, label: spec.files.length === 1 ? spec.files[0].name : `${spec.files.length} files` };
    case 'zip':
      return { source: spec.data, label: spec.data instanceof Blob ? ((spec.data as File).name ?? 'zip') : 'zip bytes' };
  }
}

/** Forward at most one progress event per interval, plus every `force`d one (end of a file). */
function throttle(fn?: (p: LoadProgress) => void): (p: LoadProgress, force?: boolean) => void {
  let last = 0;
  return (p, force) => {
    const now = Date.now();
    if (!fn || (!force && now - last < PROGRESS_INTERVAL_MS)) return;
    last = now;
    fn(p);
  };
}
