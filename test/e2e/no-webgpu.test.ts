/**
 * The demo in a browser without WebGPU: navigator.gpu is removed before the page's scripts run, and the
 * page must say so plainly instead of failing deep inside a kernel; pruning stays disabled.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { openDemo, type Demo } from './demo-harness';

describe('demo page without WebGPU', () => {
  let demo: Demo;

  beforeAll(async () => {
    demo = await openDemo({
      initScript: () => {
        delete (Navigator.prototype as unknown as { gpu?: unknown }).gpu;
      },
    });
  }, 180_000);

  afterAll(async () => {
    await demo?.close();
  });

  it('names the missing WebGPU and keeps the prune button disabled', async () => {
    const { page } = demo;
    expect(await page.evaluate(() => 'gpu' in navigator)).toBe(false);
    const status = page.locator('#webgpu-status');
    await expect.poll(() => status.textContent(), { timeout: 30_000 }).toMatch(/WebGPU is not available in this browser/);
    expect(await status.getAttribute('class')).toMatch(/error/);
    expect(await page.locator('#prune').isDisabled()).toBe(true);
    expect(demo.logs.filter((l) => l.startsWith('[pageerror]'))).toEqual([]);
  });
});
