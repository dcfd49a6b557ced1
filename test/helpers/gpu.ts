import { expect } from 'vitest';
import { GpuContext } from '../../src/gpu/context';

let shared: Promise<GpuContext> | undefined;
const announced = new Set<string>();

/**
 * One GPU context per test process (the files of vite.config.ts's 'shared' project use one).
 * Fails (never skips) without an adapter, and prints adapter.info once per file, so every GPU suite's log
 * says which GPU it ran on.
 */
export function gpu(): Promise<GpuContext> {
  shared ??= GpuContext.create().then((ctx) => {
    expect(ctx.gpu.adapter).toBeTruthy();
    return ctx;
  });
  return shared.then((ctx) => {
    const file = expect.getState().testPath ?? '';
    if (!announced.has(file)) {
      announced.add(file);
      const i = ctx.gpu.info;
      console.log(`[adapter] vendor=${i.vendor} arch=${i.architecture} device=${i.device} desc=${i.description} fallback=${i.isFallbackAdapter}`);
    }
    return ctx;
  });
}

/** Destroy the shared context's free pooled buffers (if a context was made); buffers in use stay. */
export async function sharedPoolTrim(): Promise<void> {
  if (!shared) return;
  const ctx = await shared;
  await ctx.sync();
  ctx.pool.trim();
}
