/**
 * The built demo in Chromium (WebGPU via SwiftShader here): real adapter, embedded opt-micro loaded in
 * the worker, typed errors across the worker boundary, device loss, model export as a transferable zip.
 * Fails — never skips — when the browser has no WebGPU adapter. Screenshots go to test/artifacts/.
 */

import { existsSync } from 'node:fs';
import { mkdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { expectedOptTensors, parseOptConfig } from '../../src/io/config';
import { loadCheckpoint, type LoadedCheckpoint } from '../../src/io/checkpoint';
import { loadTokenizer } from '../../src/io/tokenizer';
import { refForward, refPerplexity, type RefOpt } from '../../src/reference/opt';
import { ARTIFACTS, ROOT, openDemo, type Demo } from './demo-harness';

const EMBEDDED = join(ROOT, 'demo/public/models/opt-micro');
let demo: Demo;

/** The float64 reference model of a loaded checkpoint. */
function toRef(ckpt: LoadedCheckpoint): RefOpt {
  const c = ckpt.config;
  const w = new Map([...ckpt.tensors].map(([k, v]) => [k, Float64Array.from(v)]));
  return { cfg: { layers: c.numLayers, d: c.hiddenSize, heads: c.numHeads, ffn: c.ffnDim, vocab: c.vocabSize, maxPos: c.maxPositions }, w };
}

/** Any failure prints what the page and its worker said. */
const withLogs = async <T>(fn: () => Promise<T>): Promise<T> => {
  try {
    return await fn();
  } catch (e) {
    console.log(`page log:\n${demo?.logs.join('\n')}`);
    throw e;
  }
};

const summaryRows = () =>
  demo.page.$$eval('[data-testid=model-summary] tr', (rows) => Object.fromEntries(rows.map((r) => [r.querySelector('th')!.textContent, r.querySelector('td')!.textContent])));

async function loadEmbedded(): Promise<void> {
  await demo.page.check('input[name=src][value=embedded]');
  await demo.page.click('#load');
  await demo.page.waitForFunction(() => /^Loaded /.test(document.getElementById('log')!.textContent ?? '') || document.getElementById('log')!.classList.contains('error'), null, { timeout: 120_000 });
  const log = await demo.page.textContent('#log');
  expect(log, log ?? '').toMatch(/^Loaded /);
}

beforeAll(async () => {
  await mkdir(ARTIFACTS, { recursive: true });
  demo = await openDemo();
});

afterAll(async () => {
  await demo?.close();
});

describe('demo page in Chromium', () => {
  it('shows a real WebGPU adapter and its limits', () =>
    withLogs(async () => {
      const { page } = demo;
      const info = await page.evaluate(async () => {
        const a = await navigator.gpu?.requestAdapter();
        return a ? { vendor: a.info.vendor, device: a.info.device, architecture: a.info.architecture } : null;
      });
      expect(info, 'no WebGPU adapter in Chromium (--enable-unsafe-webgpu, SwiftShader)').not.toBeNull();
      console.log(`[adapter] page: ${JSON.stringify(info)}`);
      expect(await page.getAttribute('#webgpu-status', 'class')).toContain('ok');
      const adapter = await page.textContent('[data-testid=adapter]');
      expect(adapter).toContain(info!.vendor);
      const limits = await page.$$eval('#limits tr th', (ths) => ths.map((t) => t.textContent));
      expect(limits).toContain('maxStorageBufferBindingSize');
      expect(limits).toContain('maxComputeWorkgroupStorageSize');
      // WikiText-2 is offered only where the dev/preview server can read ../shared (never bundled into dist-demo).
      const wikiHere = existsSync(join(ROOT, '../shared/data/wikitext-2-raw/wiki.test.raw'));
      await page.waitForFunction((want) => !document.querySelector<HTMLOptionElement>('#text-src option[value=wikitext]')!.hidden === want, wikiHere, { timeout: 5000 });
      expect(existsSync(join(ROOT, 'dist-demo/dev-data'))).toBe(false);
    }));

  it('loads the embedded opt-micro in the worker and shows its config, sparsity chart and GPU memory', () =>
    withLogs(async () => {
      const { page } = demo;
      await loadEmbedded();
      const cfg = parseOptConfig(JSON.parse(await readFile(join(EMBEDDED, 'config.json'), 'utf8')));
      const params = [...expectedOptTensors(cfg).values()].reduce((a, s) => a + s.reduce((x, y) => x * y, 1), 0);
      const rows = await summaryRows();
      const n = (s: string | null | undefined) => Number(String(s).replace(/,/g, ''));
      expect(n(rows['Layers'])).toBe(cfg.numLayers);
      expect(n(rows['Hidden size'])).toBe(cfg.hiddenSize);
      expect(n(rows['Heads'])).toBe(cfg.numHeads);
      expect([rows['Family'], n(rows['Key/value heads']), n(rows['Head size'])]).toEqual(['OPT (OPTForCausalLM)', cfg.numHeads, cfg.headDim]);
      expect(n(rows['FFN size'])).toBe(cfg.ffnDim);
      expect(n(rows['Vocabulary'])).toBe(cfg.vocabSize);
      expect(n(rows['Parameters'])).toBe(params);
      expect(rows['Stored as']).toBe('F16');
      expect(rows['Tokenizer']).toBe('yes');
      // Chart: one bar per prunable module (q, k, v, out, fc1, fc2) per layer; a dense model has ~no exact zeros.
      const bars = await page.$$eval('[data-testid=chart] svg rect', (r) => r.map((x) => x.getAttribute('data-module')));
      expect(bars).toEqual(Array.from({ length: cfg.numLayers }, () => ['q_proj', 'k_proj', 'v_proj', 'out_proj', 'fc1', 'fc2']).flat());
      expect(await page.textContent('[data-testid=chart] figcaption')).toMatch(/overall/);
      await page.waitForFunction(() => !/^0 B in use/.test(document.getElementById('gpu-mem')!.textContent ?? ''), null, { timeout: 5000 });
      const mem = await page.evaluate(() => (globalThis as any).__surgeonDemo.client.memory());
      expect(mem.bytesInUse).toBeGreaterThanOrEqual(params * 4);
      expect(await page.$eval('#load-progress', (p) => (p as HTMLProgressElement).value)).toBe(1);
      expect(await page.isEnabled('#export')).toBe(true);
      await page.screenshot({ path: join(ARTIFACTS, 'demo-loaded.png'), fullPage: true });
    }));

  it('exports the weights as a zip (transferred out), loads it back (transferred in), and the download opens in Node', () =>
    withLogs(async () => {
      const { page } = demo;
      const r = await page.evaluate(async () => {
        const { client } = (globalThis as any).__surgeonDemo;
        const zip: Uint8Array = await client.exportModel();
        const size = zip.byteLength;
        const summary = await client.loadModel({ kind: 'zip', data: zip });
        return { size, afterTransfer: zip.byteLength, parameters: summary.parameters, layers: summary.numLayers };
      });
      expect(r.size).toBeGreaterThan(1000);
      expect(r.afterTransfer).toBe(0); // detached: the bytes were moved, not cloned
      const ref = await loadCheckpoint(EMBEDDED);
      expect(r.parameters).toBe([...ref.tensors.values()].reduce((a, t) => a + t.length, 0));

      const [download] = await Promise.all([page.waitForEvent('download'), page.click('#export')]);
      const path = join(ARTIFACTS, 'exported-opt-micro.zip');
      await download.saveAs(path);
      const back = await loadCheckpoint(path);
      expect(back.config.numLayers).toBe(ref.config.numLayers);
      for (const [name, t] of ref.tensors) {
        const b = back.tensors.get(name)!;
        expect(b?.length, name).toBe(t.length);
        let diff = 0;
        for (let i = 0; i < t.length; i++) if (!Object.is(b[i], t[i])) diff++;
        expect(diff, `${name}: values differ from the embedded checkpoint`).toBe(0); // f16 → f32 → f32 is exact
      }
    }));

  it('a bad checkpoint fails on the main thread as CheckpointFormatError with its kind', () =>
    withLogs(async () => {
      const { page } = demo;
      const config = await readFile(join(EMBEDDED, 'config.json'), 'utf8');
      const r = await page.evaluate(async (config) => {
        const { client, errors } = (globalThis as any).__surgeonDemo;
        const bad = new Uint8Array(16);
        new DataView(bad.buffer).setBigUint64(0, 1n << 40n, true); // header length far beyond the file
        const files = [new File([config], 'config.json'), new File([bad], 'model.safetensors')];
        const outcome = async (spec: unknown) => {
          try {
            await client.loadModel(spec);
            return null;
          } catch (e: any) {
            return { name: e.name, kind: e.kind, message: e.message, isClass: e instanceof errors.CheckpointFormatError, isBase: e instanceof errors.SurgeonError, isError: e instanceof Error };
          }
        };
        return { header: await outcome({ kind: 'files', files }), missing: await outcome({ kind: 'files', files: files.slice(0, 1) }) };
      }, config);
      expect(r.header).toMatchObject({ name: 'CheckpointFormatError', kind: 'header', isClass: true, isBase: true, isError: true });
      expect(r.missing).toMatchObject({ name: 'CheckpointFormatError', kind: 'missing', isClass: true });

      // The same through the UI: file picker → Load → the error is named on the page.
      await page.setInputFiles('#model-files', [
        { name: 'config.json', mimeType: 'application/json', buffer: Buffer.from(config) },
        { name: 'model.safetensors', mimeType: 'application/octet-stream', buffer: Buffer.alloc(16, 0xff) },
      ]);
      await page.click('#load');
      await page.waitForFunction(() => document.getElementById('log')!.classList.contains('error'), null, { timeout: 30_000 });
      expect(await page.textContent('#log')).toMatch(/^CheckpointFormatError: \[header\]/);
      await page.screenshot({ path: join(ARTIFACTS, 'demo-bad-checkpoint.png'), fullPage: false });
    }));

  it('perplexity and greedy generation in the worker agree with the float64 reference', () =>
    withLogs(async () => {
      const { page } = demo;
      await loadEmbedded();
      const caps = await page.evaluate(() => (globalThis as any).__surgeonDemo.client.capabilities());
      expect(caps).toMatchObject({ evaluate: true, generate: true });
      const [seqlen, windows] = [32, 2]; // 64 tokens: the float64 reference needs ~1 s on this CPU

      // Through the UI: settings → Evaluate → a row in the perplexity table.
      await page.fill('#seqlen', String(seqlen));
      await page.fill('#eval-windows', String(windows));
      await page.click('#evaluate');
      await page.waitForSelector('[data-testid=ppl] tbody tr', { timeout: 60_000 });
      const shown = Number(await page.textContent('[data-testid=ppl] tbody tr td:last-child'));

      const text = await readFile(join(ROOT, 'demo/assets/default-text.txt'), 'utf8');
      const gpu = await page.evaluate(({ text, seqlen, windows }) => (globalThis as any).__surgeonDemo.client.evaluate({ text, seqlen, windows }), { text, seqlen, windows });

      const ckpt = await loadCheckpoint(EMBEDDED);
      const tok = await loadTokenizer(ckpt.tokenizerJson, ckpt.tokenizerConfig);
      const ids = tok.encode(text);
      const ref = toRef(ckpt);
      const want = refPerplexity(ref, ids, seqlen, windows);
      console.log(`[ppl] gpu ${gpu.perplexity} ui ${shown} float64 ${want}`);
      // f32 logits over K = d = 64 and V = 50272: |Δ log ppl| ≲ 1e-5 expected; 1e-4 relative leaves margin.
      expect(Math.abs(gpu.perplexity - want)).toBeLessThanOrEqual(1e-4 * want);
      expect(Math.abs(shown - want)).toBeLessThanOrEqual(1e-4 * want + 5e-4); // shown with 3 decimals

      // Generation through the UI, then each greedy token checked to be an argmax of the reference logits.
      await page.fill('#prompt', 'The river');
      await page.fill('#gen-tokens', '2'); // ~1.5 s per token for opt-micro on SwiftShader in Chromium
      await page.click('#generate');
      await page.waitForFunction(() => document.getElementById('gen-before')!.textContent !== '—', null, { timeout: 60_000 });
      expect(await page.textContent('[data-testid=gen-before]')).toMatch(/^The river./s);
      const g = await page.evaluate(() => (globalThis as any).__surgeonDemo.client.generate('The river', { maxNewTokens: 3 }));
      expect(g.promptIds).toEqual(tok.encode('The river'));
      const seq = g.promptIds.slice();
      for (const next of g.ids) {
        const { logits } = refForward(ref, seq);
        const V = ckpt.config.vocabSize;
        const last = logits.subarray((seq.length - 1) * V, seq.length * V);
        let max = -Infinity, amax = 0;
        for (let i = 0; i < V; i++) if (last[i] > max) [max, amax] = [last[i], i];
        // A near-tie may flip under f32 rounding; anything else is a wrong token.
        expect(max - last[next], `token ${next} vs reference argmax ${amax}`).toBeLessThanOrEqual(1e-3 * Math.max(1, Math.abs(max)));
        seq.push(next);
      }
      await page.screenshot({ path: join(ARTIFACTS, 'demo-evaluated.png'), fullPage: true });
    }));

  it('calls fail typed across the boundary: bad settings; prune is available', () =>
    withLogs(async () => {
      const { page } = demo;
      const r = await page.evaluate(async () => {
        const { client } = (globalThis as any).__surgeonDemo;
        const run = async (fn: () => Promise<unknown>) => fn().then(() => null, (e: any) => ({ name: e.name, message: e.message }));
        return {
          caps: await client.capabilities(),
          shortText: await run(() => client.evaluate({ text: 'short text', seqlen: 64 })),
          longSeq: await run(() => client.evaluate({ text: 'x', seqlen: 1 << 20 })),
        };
      });
      expect(r.shortText).toMatchObject({ name: 'DatasetError' }); // validated before any GPU work
      expect(r.longSeq).toMatchObject({ name: 'ShapeError' });
      expect(r.caps.prune).toBe(true);
      expect(await page.isDisabled('#prune')).toBe(false);
    }));

  it('a lost device fails the running call with DeviceLostError, and the page recovers', () =>
    withLogs(async () => {
      const { page } = demo;
      const r = await page.evaluate(async () => {
        const { client, errors } = (globalThis as any).__surgeonDemo;
        // Messages are handled in order and benchmark() awaits its warm-up submit, so the loss hits it mid-run.
        const running = client.benchmark(512, 100).then(
          () => ({ finished: true }),
          (e: any) => ({ name: e.name, reason: e.reason, isClass: e instanceof errors.DeviceLostError }),
        );
        await client.loseDevice();
        const lost = await running;
        const again = await client.init(); // a fresh device
        const bench = await client.benchmark(64, 2);
        return { lost, again: again.vendor, gflops: bench.gflops };
      });
      expect(r.lost).toMatchObject({ name: 'DeviceLostError', reason: 'destroyed', isClass: true });
      expect(r.again.length).toBeGreaterThan(0);
      expect(r.gflops).toBeGreaterThan(0);
      await loadEmbedded(); // the model died with the device; loading again works
    }));

  it('is keyboard operable: every control is labelled, and Tab + Enter loads the model', () =>
    withLogs(async () => {
      const { page } = demo;
      const unlabelled = await page.$$eval('input, select, button, textarea', (els) =>
        els
          .filter((e) => (e as HTMLElement).offsetParent !== null || e.id === 'model-files')
          .filter((e) => !(e as HTMLInputElement).labels?.length && !e.getAttribute('aria-label') && !(e.tagName === 'BUTTON' && e.textContent!.trim()))
          .map((e) => e.outerHTML.slice(0, 80)),
      );
      expect(unlabelled).toEqual([]);
      await page.check('input[name=src][value=embedded]');
      await page.evaluate(() => (document.activeElement as HTMLElement | null)?.blur());
      const order: string[] = [];
      for (let i = 0; i < 40 && order[order.length - 1] !== 'load'; i++) {
        await page.keyboard.press('Tab');
        order.push(await page.evaluate(() => document.activeElement?.id || document.activeElement?.tagName || ''));
      }
      expect(order, order.join(' → ')).toContain('load');
      await page.evaluate(() => (document.getElementById('log')!.textContent = ''));
      await page.keyboard.press('Enter');
      await page.waitForFunction(() => /^Loaded /.test(document.getElementById('log')!.textContent ?? ''), null, { timeout: 60_000 });
    }));

  it('stayed offline: every request went to the local server', () => {
    const foreign = demo.requests.filter((u) => !u.startsWith(demo.url) && !/^(data|blob):/.test(u));
    expect(foreign).toEqual([]);
  });
});
