/**
 * Pruning in the built demo (Chromium, WebGPU via SwiftShader, work in the dedicated worker): a tiny
 * structured prune of the embedded opt-micro through the page's controls with its perplexity table
 * (dense and pruned values checked against the float64 reference), sparsity chart and generated text;
 * the downloaded zip loads back in Node with the requested sparsity, the compact readout (sizes, tokens/s
 * dense vs compact) and its download (the compact model of that zip); a cancelled job resumes from its
 * OPFS checkpoint; downloads are cached in Cache Storage and clearCache() drops them; the LoRA checkbox
 * (off for the peers and magnitude) adds the 'lora' phase and per-shot losses to a run.
 * Screenshots: test/artifacts/demo-pruned.png, demo-cancelled.png, demo-resumed.png, demo-lora.png.
 */

import { mkdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { compactModel } from '../../src/compact/index';
import { loadCheckpoint, type LoadedCheckpoint } from '../../src/io/checkpoint';
import { loadTokenizer } from '../../src/io/tokenizer';
import { refPerplexity, type RefOpt } from '../../src/reference/opt';
import { ARTIFACTS, ROOT, openDemo, type Demo } from './demo-harness';

let demo: Demo;
const PROMPT = 'The river';

const toRef = (ckpt: LoadedCheckpoint): RefOpt => {
  const c = ckpt.config;
  return { cfg: { layers: c.numLayers, d: c.hiddenSize, heads: c.numHeads, ffn: c.ffnDim, vocab: c.vocabSize, maxPos: c.maxPositions }, w: new Map([...ckpt.tensors].map(([k, v]) => [k, Float64Array.from(v)])) };
};

const withLogs = async <T>(fn: () => Promise<T>): Promise<T> => {
  try {
    return await fn();
  } catch (e) {
    console.log(`page log:\n${demo?.logs.join('\n')}\nstatus: ${await demo?.page.textContent('#log').catch(() => '')}`);
    throw e;
  }
};

/** Fill the prune form (the range input is set through its value + input event). */
async function settings(o: { method: string; structure: string; sparsity: number; shots: number; nsamples: number; seqlen: number; windows: number }): Promise<void> {
  const { page } = demo;
  await page.selectOption('#method', o.method);
  await page.selectOption('#structure', o.structure);
  await page.$eval('#sparsity', (el, v) => { (el as HTMLInputElement).value = String(v); el.dispatchEvent(new Event('input', { bubbles: true })); el.dispatchEvent(new Event('change', { bubbles: true })); }, o.sparsity);
  await page.fill('#shots', String(o.shots));
  await page.fill('#nsamples', String(o.nsamples));
  await page.fill('#seqlen', String(o.seqlen));
  await page.fill('#eval-windows', String(o.windows));
  await page.fill('#prompt', PROMPT);
  await page.fill('#gen-tokens', '2'); // ~1.5 s per token for opt-micro on SwiftShader
}

const waitLog = (re: RegExp, timeout: number) =>
  demo.page.waitForFunction((src) => new RegExp(src).test(document.getElementById('log')!.textContent ?? '') || document.getElementById('log')!.classList.contains('error'), re.source, { timeout });

beforeAll(async () => {
  await mkdir(ARTIFACTS, { recursive: true });
  demo = await openDemo();
  await demo.page.check('input[name=src][value=embedded]');
  await demo.page.click('#load');
  await waitLog(/^Loaded /, 120_000);
});

afterAll(async () => {
  await demo?.close();
});

describe('pruning in the demo page', () => {
  it('prunes opt-micro (rows-cols 20%, 2 shots, 2 × 64 tokens): perplexity table, chart, text before/after, download', () =>
    withLogs(async () => {
      const { page } = demo;
      expect(await page.isEnabled('#prune')).toBe(true);
      await settings({ method: 'surgeon', structure: 'rows-cols', sparsity: 0.2, shots: 2, nsamples: 2, seqlen: 64, windows: 2 });
      const t0 = Date.now();
      await page.click('#prune');
      await page.waitForFunction(() => document.getElementById('p-shot-text')!.textContent !== '—', null, { timeout: 60_000 });
      expect(await page.isEnabled('#cancel')).toBe(true);
      await waitLog(/^Pruned to/, 240_000);
      console.log(`[e2e] prune in the page: ${((Date.now() - t0) / 1000).toFixed(1)} s — ${await page.textContent('#log')}`);
      expect(await page.textContent('#log')).toMatch(/^Pruned to \d+\.\d+% sparsity/);
      expect(await page.textContent('[data-testid=estimate]')).toMatch(/Estimated peak GPU memory of this job: [\d.]+ MiB/);

      // Per-shot table: 2 rows; dense and pruned perplexities.
      const rows = await page.$$eval('[data-testid=shots] tbody tr', (trs) => trs.map((tr) => [...tr.querySelectorAll('td')].map((td) => td.textContent ?? '')));
      expect(rows).toHaveLength(2);
      const dense = Number(rows[0][3]), last = Number(rows[1][4]);
      expect(rows.map((r) => r[0])).toEqual(['1', '2']);
      // Chart: 12 bars, caption with the overall sparsity and the per-module split.
      expect(await page.$$eval('[data-testid=chart] svg rect', (r) => r.length)).toBe(12);
      expect(await page.textContent('[data-testid=chart] figcaption')).toMatch(/overall.*By module \(weights and biases, if any\): q_proj [\d.]+%.*fc2 [\d.]+%/);
      // Text before and after.
      expect(await page.textContent('[data-testid=gen-before]')).toMatch(/^The river./s);
      expect(await page.textContent('[data-testid=gen-after]')).toMatch(/^The river./s);
      await page.screenshot({ path: join(ARTIFACTS, 'demo-pruned.png'), fullPage: true });

      // Download the pruned model; it loads in Node with the requested sparsity and the page's perplexity.
      const [download] = await Promise.all([page.waitForEvent('download'), page.click('#export')]);
      const path = join(ARTIFACTS, 'pruned-opt-micro.zip');
      await download.saveAs(path);
      const back = await loadCheckpoint(path);
      let zeros = 0, params = 0;
      for (const [name, t] of back.tensors) {
        if (!/layers\.\d+\.(self_attn\.(q|k|v|out)_proj|fc1|fc2)\.(weight|bias)$/.test(name)) continue;
        params += t.length;
        for (const v of t) if (v === 0) zeros++;
      }
      console.log(`[e2e] downloaded model: ${(100 * zeros / params).toFixed(2)}% zeros in W' (target 20%); ppl dense ${dense} → ${last}`);
      expect(zeros / params).toBeGreaterThan(0.15);
      expect(zeros / params).toBeLessThanOrEqual(0.2 + 1e-9);
      const text = await readFile(join(ROOT, 'demo/assets/default-text.txt'), 'utf8');
      const orig = await loadCheckpoint(join(ROOT, 'demo/public/models/opt-micro'));
      const ids = (await loadTokenizer(orig.tokenizerJson, orig.tokenizerConfig)).encode(text);
      const wantDense = refPerplexity(toRef(orig), ids, 64, 2), wantPruned = refPerplexity(toRef(back), ids, 64, 2);
      // Shown with 3 decimals; f32 GPU vs float64 reference ≲ 1e-5 relative (demo.test.ts).
      expect(Math.abs(dense - wantDense)).toBeLessThanOrEqual(1e-4 * wantDense + 5e-4);
      expect(Math.abs(last - wantPruned)).toBeLessThanOrEqual(1e-4 * wantPruned + 5e-4);
      expect(last).not.toBe(dense);

      // The compact readout (measured during the job, before "Pruned to") and its download: the zip holds
      // exactly compactModel() of the zeroed download, so fewer parameters and per-layer widths.
      const info = await page.textContent('[data-testid=compact-info]');
      console.log(`[e2e] ${info}`);
      expect(info).toMatch(/^Compact model: [\d,]+ of [\d,]+ parameters .*weights [\d.]+ \w+ → [\d.]+ \w+ \(f32\).* [\d.]+ tokens\/s dense → [\d.]+ tokens\/s compact \([\d.]+×\), same text\.$/);
      const [compactDownload] = await Promise.all([page.waitForEvent('download'), page.click('#export-compact')]);
      const compactPath = join(ARTIFACTS, 'pruned-opt-micro-compact.zip');
      await compactDownload.saveAs(compactPath);
      const small = await loadCheckpoint(compactPath), want = compactModel(back.config, back.tensors);
      expect(small.config.layers).toEqual(want.config.layers);
      for (const [name, t] of want.tensors) expect(small.tensors.get(name), name).toEqual(t);
    }));

  it('downloads are cached in Cache Storage (model id/URL + file) and clearCache() drops them', () =>
    withLogs(async () => {
      const { page } = demo;
      const keys = () => page.evaluate(async () => (await (await caches.open('llm-surgeon-models-v1')).keys()).map((r) => new URL(r.url).pathname));
      expect(await keys()).toEqual(expect.arrayContaining(['/models/opt-micro/config.json', '/models/opt-micro/model.safetensors', '/models/opt-micro/tokenizer.json']));
      const before = demo.requests.filter((u) => u.endsWith('/models/opt-micro/model.safetensors')).length;
      await page.evaluate(() => (globalThis as any).__surgeonDemo.client.loadModel({ kind: 'url', url: 'models/opt-micro/' }));
      expect(demo.requests.filter((u) => u.endsWith('/models/opt-micro/model.safetensors')).length).toBe(before); // served from the cache
      expect(await page.evaluate(() => (globalThis as any).__surgeonDemo.client.clearCache())).toBe(true);
      expect(await keys()).toEqual([]);
    }));

  it('host weights through the worker (what prune() uses on a page): copies transferred in, results transferred out, input intact', () =>
    withLogs(async () => {
      const r = await demo.page.evaluate(async () => {
        const { client, errors } = (globalThis as any).__surgeonDemo;
        const model = await client.loadHost({ kind: 'url', url: 'models/opt-micro/' });
        const q = model.tensors.get('model.decoder.layers.0.fc1.weight') as Float32Array;
        const copy = q.slice();
        const out = await client.pruneHost(model, { structure: '2:4', sparsity: 0.5, shots: 1, method: 'magnitude' });
        const p = out.model.tensors.get('model.decoder.layers.0.fc1.weight') as Float32Array;
        let zeros = 0;
        for (const v of p) if (v === 0) zeros++;
        const bad = await client.pruneHost(model, { structure: 'element', sparsity: 2 }).then(() => null, (e: any) => ({ name: e.name, isClass: e instanceof errors.SurgeonError }));
        const ev = await client.evaluateHost(out.model, { text: '', ids: Array.from({ length: 130 }, (_, i) => (i * 37) % 1000), seqlen: 64, windows: 2 });
        return { intact: q.byteLength > 0 && q.every((v, i) => Object.is(v, copy[i])), zeros: zeros / p.length, achieved: out.report.achievedSparsity, bad, ppl: ev.perplexity };
      });
      expect(r.intact).toBe(true);
      expect(r.zeros).toBe(0.5); // magnitude 2:4: exactly 2 of every 4 weights
      expect(r.achieved).toBeGreaterThanOrEqual(0.49);
      expect(r.bad).toEqual({ name: 'PruneConfigError', isClass: true });
      expect(r.ppl).toBeGreaterThan(1);
    }));

  it('cancel a run after shot 1, then resume it from the OPFS checkpoint', () =>
    withLogs(async () => {
      const { page } = demo;
      await page.click('#load'); // the previous test reloaded the model behind the page's back
      await waitLog(/^Loaded /, 120_000);
      await settings({ method: 'kobd', structure: 'element', sparsity: 0.5, shots: 3, nsamples: 2, seqlen: 64, windows: 2 });
      await page.click('#prune');
      await page.waitForFunction(() => /^2 \/ 3/.test(document.getElementById('p-shot-text')!.textContent ?? ''), null, { timeout: 120_000 });
      await page.click('#cancel');
      await waitLog(/^Cancelled\./, 120_000);
      expect(await page.textContent('#log')).toMatch(/^Cancelled\. [12] of 3 shots are saved; Resume continues from there\./);
      await page.waitForFunction(() => !(document.getElementById('resume') as HTMLButtonElement).disabled, null, { timeout: 10_000 });
      expect(await page.textContent('#resume')).toMatch(/^Resume \(from shot [23] of 3\)/);
      await page.screenshot({ path: join(ARTIFACTS, 'demo-cancelled.png'), fullPage: false });

      await page.focus('#resume');
      await page.keyboard.press('Enter'); // keyboard operable
      await waitLog(/^Pruned to/, 240_000);
      expect(await page.textContent('#log')).toMatch(/^Pruned to 50\.\d+% sparsity \(resumed after shot [12]\)/);
      const rows = await page.$$eval('[data-testid=shots] tbody tr', (trs) => trs.length);
      expect(rows).toBe(3);
      expect(await page.isDisabled('#resume')).toBe(true);
      await page.screenshot({ path: join(ARTIFACTS, 'demo-resumed.png'), fullPage: true });
    }));

  it('LoRA corrections between shots: checkbox (off for sparsegpt, wanda, magnitude), phase "lora" in the progress, losses and time in the result', () =>
    withLogs(async () => {
      const { page } = demo;
      await page.click('#load'); // start from the dense model again
      await waitLog(/^Loaded /, 120_000);
      for (const m of ['sparsegpt', 'wanda', 'magnitude']) {
        await page.selectOption('#method', m);
        expect(await page.isDisabled('#lora'), m).toBe(true);
      }
      // K-OBD elements on 2 × 32 tokens: a few seconds per shot on SwiftShader.
      await settings({ method: 'kobd', structure: 'element', sparsity: 0.3, shots: 2, nsamples: 2, seqlen: 32, windows: 2 });
      expect(await page.isEnabled('#lora')).toBe(true);
      expect(await page.isDisabled('#lora-rank')).toBe(true); // rank and lr follow the checkbox
      await page.check('#lora');
      expect(await page.isEnabled('#lora-rank')).toBe(true);
      await page.fill('#lora-rank', '4');
      await page.fill('#lora-lr', '0.01'); // paper: 1e-4; larger so the loss change shows in 4 decimals
      // Every phase name the progress area shows (a correction lasts about a second per shot).
      await page.evaluate(() => {
        const el = document.getElementById('p-phase-name')!, seen: string[] = ((globalThis as any).__phases = []);
        new MutationObserver(() => seen.push(el.textContent ?? '')).observe(el, { childList: true, characterData: true, subtree: true });
      });
      const t0 = Date.now();
      await page.click('#prune');
      await waitLog(/^Pruned to/, 240_000);
      const log = await page.textContent('#log');
      console.log(`[e2e] prune with LoRA in the page: ${((Date.now() - t0) / 1000).toFixed(1)} s — ${log}`);
      expect(log).toMatch(/^Pruned to 30\.\d+% sparsity .*; LoRA corrections took [\d.]+ s\.$/);
      const phases: string[] = await page.evaluate(() => (globalThis as any).__phases);
      expect(phases).toContain('lora');

      // Result: a LoRA table with steps, the training windows' loss before → after and the time per shot, the total in its caption.
      const rows = await page.$$eval('[data-testid=lora] tbody tr', (trs) => trs.map((tr) => [...tr.querySelectorAll('td')].map((td) => td.textContent ?? '')));
      expect(rows.map((r) => r[0])).toEqual(['1', '2']);
      for (const [, steps, before, after, time] of rows) {
        expect(steps).toBe('1'); // 1 of 2 windows (default fraction), one batch
        expect(Number(after), `${before} → ${after}`).toBeLessThan(Number(before));
        expect(time).toMatch(/^[\d.]+ s$/);
      }
      expect(await page.textContent('[data-testid=lora] caption')).toMatch(/: [\d.]+ s in all$/);
      await page.screenshot({ path: join(ARTIFACTS, 'demo-lora.png'), fullPage: true });
      await page.uncheck('#lora');
      expect(await page.isDisabled('#lora-lr')).toBe(true);
      await page.click('#load'); // a new model clears the result tables
      await waitLog(/^Loaded /, 120_000);
      expect(await page.isHidden('[data-testid=lora]')).toBe(true);
    }));
});
