import { expect } from 'vitest';
import { LimitExceededError } from '../../src/index';
import type { GpuContext } from '../../src/gpu/context';
import type { LoadedCheckpoint } from '../../src/io/checkpoint';
import { DecoderModel } from '../../src/model/model';

/** The LimitExceededError that f throws (the test fails when f returns or throws something else). */
export function refusal(f: () => unknown): LimitExceededError {
  try {
    f();
  } catch (x) {
    expect(x).toBeInstanceOf(LimitExceededError);
    return x as LimitExceededError;
  }
  throw new Error('expected a refusal');
}

/**
 * The value a refusal's message suggests (group 1 of `re`, in 1…below−1), checked right and tight:
 * `check(v)` passes and `check(v + 1)` is refused. Returns v.
 */
export function expectTightSuggestion(message: string, re: RegExp, below: number, check: (v: number) => unknown): number {
  const m = re.exec(message);
  expect(m, message).not.toBeNull();
  const v = Number(m![1]);
  expect(v).toBeGreaterThanOrEqual(1);
  expect(v).toBeLessThan(below);
  expect(() => check(v)).not.toThrow();
  expect(() => check(v + 1)).toThrow(LimitExceededError);
  return v;
}

/** Pool peak of `fn` above the bytes in use once `host` is uploaded (a fresh model: no cached tables yet). */
export async function modelPoolPeak(ctx: GpuContext, host: LoadedCheckpoint, fn: (m: DecoderModel) => Promise<void>): Promise<number> {
  const m = await DecoderModel.fromCheckpoint(ctx, host);
  try {
    await ctx.sync();
    const base = ctx.pool.bytesInUse;
    ctx.pool.peakBytesInUse = base;
    await fn(m);
    return ctx.pool.peakBytesInUse - base;
  } finally {
    m.dispose();
  }
}
