/**
 * Demo page controller. All GPU work runs in the worker (src/api/worker.ts); this thread only renders
 * progress and results. The prune job (settings, cancel, resume, per-shot table) lives in ui/prune.ts.
 */

import { createSurgeonWorker, type SurgeonClient } from '../src/api/client';
import { evaluate as apiEvaluate, loadModel as apiLoadModel, prune as apiPrune } from '../src/api/public';
import { NotImplementedError } from '../src/api/errors';
import type { Capabilities, ModelSummary } from '../src/api/types';
import { SurgeonError } from '../src/errors';
import { DeviceLostError, LimitExceededError, WebGPUUnavailableError } from '../src/gpu/errors';
import { CheckpointFormatError } from '../src/io/errors';
import { joinWikitextRows } from '../src/io/wikitext';
import defaultText from './assets/default-text.txt?raw';
import { renderSparsityChart } from './ui/chart';
import { CompactView } from './ui/compact';
import { downloadZip } from './ui/download';
import { bytes, fillRows, int, pct } from './ui/format';
import { ProgressView } from './ui/progress';
import { PruneController } from './ui/prune';
import { embeddedLabel, SourcePicker } from './ui/sources';
import { PruneAbortedError } from '../src/surgeon/options';

const $ = <T extends HTMLElement = HTMLElement>(id: string) => document.getElementById(id) as T;
const FAMILY_NAMES: Record<string, string> = { opt: 'OPT', llama: 'Llama' };
const progress = new ProgressView();
const picker = new SourcePicker($<HTMLFormElement>('model-form'));
const client: SurgeonClient = createSurgeonWorker();
let caps: Capabilities | undefined;
let model: ModelSummary | undefined;
let gpuReady = false;
let loadJob = 0;
let loading = false;
let overallSparsity = 'dense';
let pruned = false;
let busyJob = false;

// Handle for the browser end-to-end tests (test/e2e): the client, the library's page API (its own
// worker, started on first use) and the error classes of this bundle.
Object.assign(globalThis, {
  __surgeonDemo: {
    client,
    api: { loadModel: apiLoadModel, prune: apiPrune, evaluate: apiEvaluate },
    errors: { SurgeonError, CheckpointFormatError, DeviceLostError, NotImplementedError, PruneAbortedError },
  },
});

function describe(e: unknown): string {
  if (e instanceof SurgeonError) return `${e.name}: ${e.message}`;
  return e instanceof Error ? `${e.name}: ${e.message}` : String(e);
}

function setStatus(text: string, kind: 'ok' | 'error'): void {
  const el = $('webgpu-status');
  el.textContent = text;
  el.className = `status ${kind}`;
}

async function initGpu(): Promise<void> {
  if (!('gpu' in navigator)) {
    setStatus('WebGPU is not available in this browser. Use a recent Chrome or Edge, or enable WebGPU in Firefox/Safari.', 'error');
    return;
  }
  try {
    const a = await client.init();
    gpuReady = true;
    const name = [a.vendor, a.architecture, a.device].filter(Boolean).join(' / ') || 'unnamed adapter';
    $('adapter').innerHTML = '';
    $('adapter').append(
      ...[['Adapter', name], ['Description', a.description || '—'], ['Fallback (software)', a.isFallbackAdapter ? 'yes — expect slow runs' : 'no']].flatMap(([k, v]) => [
        Object.assign(document.createElement('dt'), { textContent: k }),
        Object.assign(document.createElement('dd'), { textContent: v }),
      ]),
    );
    const isBytes = (k: string) => /Size$/.test(k);
    fillRows($<HTMLTableElement>('limits').tBodies[0], Object.entries(a.limits).map(([k, v]) => [k, isBytes(k) ? `${bytes(v)} (${int(v)})` : int(v)]));
    $('features').textContent = `Features: ${a.features.join(', ') || 'none'}`;
    setStatus(`WebGPU ready on ${name}${a.isFallbackAdapter ? ' (software fallback)' : ''}.`, 'ok');
  } catch (e) {
    const hint = e instanceof LimitExceededError ? ' This GPU is too small for this library.' : e instanceof WebGPUUnavailableError ? '' : '';
    setStatus(`${describe(e)}${hint}`, 'error');
  }
}

function applyCapabilities(): void {
  const c = caps;
  const notes: string[] = [];
  const pruneOk = !!c?.prune && !!model && !busyJob;
  $<HTMLFieldSetElement>('prune-fields').disabled = !c?.prune || busyJob;
  $<HTMLButtonElement>('prune').disabled = !pruneOk;
  $<HTMLButtonElement>('evaluate').disabled = !(c?.evaluate && model) || busyJob;
  $<HTMLButtonElement>('generate').disabled = !(c?.generate && model) || busyJob;
  $<HTMLButtonElement>('export').disabled = !model || busyJob;
  $<HTMLButtonElement>('export-compact').disabled = !model || busyJob;
  $<HTMLButtonElement>('load').disabled = !gpuReady || busyJob;
  if (c && !c.prune) notes.push(`Pruning ${c.notes.prune}.`);
  if (c && !c.evaluate) notes.push(`Perplexity ${c.notes.evaluate}.`);
  if (c && !c.generate) notes.push(`Text generation ${c.notes.generate}.`);
  if (!model) notes.push('Load a model first.');
  $('backend-note').textContent = notes.join(' ');
}

async function refreshMemory(): Promise<void> {
  if (!gpuReady) return;
  try {
    const m = await client.memory();
    $('gpu-mem').textContent = `${bytes(m.bytesInUse)} in use, ${bytes(m.bytesPooled)} pooled, peak ${bytes(m.peakBytesInUse)}`;
  } catch {
    /* the worker is busy failing; the next tick will tell */
  }
}

async function showSparsity(byModule?: Record<string, { params: number; zeros: number }>): Promise<void> {
  const entries = await client.sparsity();
  const zeros = entries.reduce((a, e) => a + e.zeros, 0);
  const total = entries.reduce((a, e) => a + e.rows * e.cols, 0);
  overallSparsity = `${pct(zeros / Math.max(total, 1), 2)} zeros`;
  const modules = byModule ? ` By module (weights and biases, if any): ${Object.entries(byModule).map(([k, v]) => `${k} ${pct(v.zeros / Math.max(v.params, 1), 1)}`).join(', ')}.` : '';
  renderSparsityChart($('chart'), entries, `Exact zeros per prunable weight: ${pct(zeros / Math.max(total, 1), 2)} overall (${int(zeros)} of ${int(total)}).${modules}`, model?.moduleTypes ?? []);
}

const compactView = new CompactView({ client, log: (m, k) => progress.log(m, k), describe, label: () => model?.label ?? 'model' });

const pruner = new PruneController({
  client,
  progress,
  text: () => text,
  describe,
  afterStructured: (prompt, n) => compactView.measure(prompt, n),
  setBusy: (b) => {
    if (b) compactView.clear(); // a job replaces the weights the readout describes
    busyJob = b;
    applyCapabilities();
    if (!b) void refreshMemory();
  },
  refresh: async (report) => {
    if (report) pruned = true;
    await showSparsity(report?.byModuleType);
  },
});

$<HTMLFormElement>('model-form').addEventListener('submit', async (ev) => {
  ev.preventDefault();
  const spec = picker.spec();
  if (typeof spec === 'string') return progress.log(spec, 'error');
  $<HTMLButtonElement>('load').disabled = true;
  model = undefined;
  compactView.clear();
  const job = ++loadJob;
  $<HTMLTableElement>('model-summary').hidden = true; // the worker drops the previous model first
  $('model-error').textContent = '';
  $('chart').replaceChildren(Object.assign(document.createElement('p'), { className: 'muted', textContent: 'Loading…' }));
  applyCapabilities();
  progress.log(`Loading ${spec.kind === 'files' ? 'local files' : spec.kind === 'hub' ? spec.id : spec.kind === 'url' ? spec.url : 'zip'}…`);
  const t0 = performance.now();
  loading = true;
  try {
    // Progress arrives on its own channel and may trail the result: drop events of a finished load.
    model = await client.loadModel(spec, { onProgress: (p) => job === loadJob && loading && progress.load(p) });
    if (spec.kind === 'url') model.label = embeddedLabel(spec.url) ?? model.label;
    const m = model;
    const table = $<HTMLTableElement>('model-summary');
    fillRows(table.tBodies[0], [
      ['Source', m.label], ['Family', `${FAMILY_NAMES[m.family] ?? m.family} (${m.architecture})`], ['Layers', int(m.numLayers)],
      ['Hidden size', int(m.hiddenSize)], ['Heads', int(m.numHeads)], ['Key/value heads', int(m.numKvHeads)], ['Head size', int(m.headDim)],
      ['FFN size', int(m.ffnDim)], ['Vocabulary', int(m.vocabSize)], ['Parameters', int(m.parameters)],
      ['Stored as', m.sourceDtype], ['On the GPU (f32)', bytes(m.gpuBytes)], ['Tokenizer', m.hasTokenizer ? 'yes' : 'no'],
    ]);
    table.hidden = false;
    await showSparsity();
    pruned = false;
    $('gen-before').textContent = '—';
    $('gen-after').textContent = '—';
    for (const id of ['shot-table', 'lora-table']) $<HTMLTableElement>(id).hidden = true;
    pruner.modelChanged();
    progress.log(`Loaded ${m.label} in ${((performance.now() - t0) / 1000).toFixed(1)} s.`);
    progress.idle('loaded');
  } catch (e) {
    progress.log(describe(e), 'error');
    $('model-error').textContent = describe(e);
    $('chart').replaceChildren(Object.assign(document.createElement('p'), { className: 'muted', textContent: 'No model loaded.' }));
    progress.idle('failed');
    if (e instanceof DeviceLostError) gpuReady = false;
  } finally {
    loading = false;
    applyCapabilities();
    void refreshMemory();
  }
});

$<HTMLButtonElement>('export').addEventListener('click', async () => {
  try {
    progress.log('Packing the model as a Hugging Face folder (.zip)…');
    const zip = await client.exportModel();
    downloadZip(zip, model?.label ?? 'model', 'weights');
    progress.log(`Model zip ready (${bytes(zip.byteLength)}).`);
  } catch (e) {
    progress.log(describe(e), 'error');
  }
});

// ---- text source ---------------------------------------------------------------------------------
let text = defaultText;
const textInfo = () => ($('text-info').textContent = `${int(text.length)} characters`);
textInfo();
$<HTMLSelectElement>('text-src').addEventListener('change', async (ev) => {
  const v = (ev.target as HTMLSelectElement).value;
  $<HTMLInputElement>('text-file').hidden = v !== 'file';
  if (v === 'default') text = defaultText;
  if (v === 'wikitext') text = joinWikitextRows(await (await fetch('dev-data/wikitext-2-raw/wiki.test.raw')).text());
  textInfo();
});
$<HTMLInputElement>('text-file').addEventListener('change', async (ev) => {
  const f = (ev.target as HTMLInputElement).files?.[0];
  if (f) text = await f.text();
  textInfo();
});
// WikiText-2 is offered only where the development server can read it from ../shared (never bundled).
void fetch('dev-data/wikitext-2-raw/wiki.test.raw', { method: 'HEAD' })
  .then((r) => ($<HTMLOptionElement>('text-src').querySelector<HTMLOptionElement>('option[value=wikitext]')!.hidden = !r.ok))
  .catch(() => {});

$<HTMLInputElement>('sparsity').addEventListener('input', (ev) => ($('sparsity-out').textContent = pct(Number((ev.target as HTMLInputElement).value), 0)));

/** Run one job with its button disabled and errors named in the status line. */
async function busy(button: string, what: string, fn: () => Promise<string>): Promise<void> {
  const b = $<HTMLButtonElement>(button);
  b.disabled = true;
  progress.log(`${what}…`);
  try {
    progress.log(await fn());
  } catch (e) {
    progress.log(describe(e), 'error');
    if (e instanceof DeviceLostError) gpuReady = false;
  } finally {
    progress.idle();
    applyCapabilities();
    void refreshMemory();
  }
}

$<HTMLButtonElement>('evaluate').addEventListener('click', () =>
  busy('evaluate', 'Evaluating perplexity', async () => {
    const seqlen = Number($<HTMLInputElement>('seqlen').value);
    const r = await client.evaluate({ text, seqlen, windows: Number($<HTMLInputElement>('eval-windows').value) }, { onProgress: (p) => progress.job(p) });
    const row = $<HTMLTableElement>('ppl').tBodies[0].insertRow();
    for (const c of [model?.label ?? 'model', overallSparsity, `${r.windows} × ${r.seqlen}`, r.perplexity.toFixed(3)]) row.insertCell().textContent = c;
    $('ppl-empty').hidden = true;
    return `Perplexity ${r.perplexity.toFixed(3)} on ${r.windows} windows of ${r.seqlen} tokens (${r.seconds.toFixed(1)} s).`;
  }),
);

$<HTMLButtonElement>('generate').addEventListener('click', () =>
  busy('generate', 'Generating', async () => {
    const prompt = $<HTMLInputElement>('prompt').value;
    const r = await client.generate(prompt, { maxNewTokens: Number($<HTMLInputElement>('gen-tokens').value) });
    $(pruned ? 'gen-after' : 'gen-before').textContent = `${prompt}${r.text}`;
    return `Generated ${r.tokens} tokens in ${r.seconds.toFixed(1)} s (greedy).`;
  }),
);

applyCapabilities();
await initGpu();
caps = await client.capabilities().catch(() => undefined);
applyCapabilities();
setInterval(() => void refreshMemory(), 1000);
void refreshMemory();
document.body.dataset.ready = 'true';
