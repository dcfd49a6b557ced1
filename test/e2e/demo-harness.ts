/**
 * Browser end-to-end harness: build the demo (vite.demo.config.ts), serve it with vite preview on
 * 127.0.0.1 at a free port, and open it in Debian's Chromium through playwright-core with WebGPU
 * (SwiftShader here) and a fresh profile. Collects console output, page errors and every request URL
 * so tests can prove the page works offline (nothing leaves the local server).
 */

import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { chromium, type BrowserContext, type Page } from 'playwright-core';
import { build, preview, type PreviewServer } from 'vite';

export const ROOT = resolve(import.meta.dirname, '../..');
export const ARTIFACTS = join(ROOT, 'test/artifacts');
const CONFIG = join(ROOT, 'vite.demo.config.ts');
const CHROMIUM = process.env.CHROMIUM_PATH ?? '/usr/bin/chromium';

// TOOLCHAIN.md: the flags that give WebGPU (SwiftShader) in pages and dedicated workers.
const FLAGS = [
  '--headless', '--no-sandbox', '--enable-unsafe-webgpu', '--disable-quic', '--no-first-run',
  '--disable-background-networking', '--disable-component-update', '--disable-sync',
];

export interface Demo {
  url: string;
  page: Page;
  context: BrowserContext;
  /** Console lines and page errors, for failure messages. */
  logs: string[];
  /** Every URL the page or its worker requested. */
  requests: string[];
  close(): Promise<void>;
}

export interface OpenOptions {
  /** Script run in the page before its own scripts (e.g. to simulate a browser without WebGPU). */
  initScript?: () => void;
}

export async function openDemo(opts: OpenOptions = {}): Promise<Demo> {
  await build({ configFile: CONFIG, logLevel: 'warn' });
  const server: PreviewServer = await preview({ configFile: CONFIG, logLevel: 'warn', preview: { host: '127.0.0.1', port: 0, strictPort: false, open: false } });
  const addr = server.httpServer.address();
  if (!addr || typeof addr === 'string') throw new Error('vite preview did not listen on a TCP port');
  const url = `http://127.0.0.1:${addr.port}/`;
  const profile = await mkdtemp(join(tmpdir(), 'surgeon-e2e-'));
  const context = await chromium.launchPersistentContext(profile, {
    executablePath: CHROMIUM,
    headless: true,
    args: FLAGS,
    viewport: { width: 1366, height: 900 }, // a common laptop screen
    acceptDownloads: true,
  });
  const logs: string[] = [];
  const requests: string[] = [];
  context.on('request', (r) => requests.push(r.url()));
  const page = context.pages()[0] ?? (await context.newPage());
  page.on('console', (m) => logs.push(`[${m.type()}] ${m.text()}`));
  page.on('pageerror', (e) => logs.push(`[pageerror] ${e.message}`));
  page.on('worker', (w) => logs.push(`[worker] started ${w.url()}`));
  if (opts.initScript) await context.addInitScript(opts.initScript);
  await page.goto(url);
  await page.waitForSelector('body[data-ready=true]', { timeout: 60_000 });
  return {
    url, page, context, logs, requests,
    async close() {
      await context.close().catch(() => {});
      await new Promise<void>((r) => server.httpServer.close(() => r()));
      await rm(profile, { recursive: true, force: true });
    },
  };
}
