import { expect } from 'vitest';
import { GpuContext } from '../../src/gpu/context';

let shared: Promise<GpuContext> | undefined;

/**
 * One GPU context per test file. Fails (never skips) without an adapter, and prints adapter.info
 * so every GPU suite's log says which GPU it ran on.
 */
export function gpu(): Promise<GpuContext> {
  shared ??= GpuContext.create().then((ctx) => {
    expect(ctx.gpu.adapter).toBeTruthy();
    const i = ctx.gpu.info;
    console.log(`[adapter] vendor=${i.vendor} arch=${i.architecture} device=${i.device} desc=${i.description} fallback=${i.isFallbackAdapter}`);
    return ctx;
  });
  return shared;
}
