import { spawnSync } from 'node:child_process';
import { mkdirSync, writeFileSync } from 'node:fs';
import { dirname } from 'node:path';
import type { GpuContext } from '../src/gpu/context';

/** Shared benchmark plumbing: GPU timing, a torch side run, table printing, JSON output. */

export function arg(name: string): string | undefined {
  const i = process.argv.indexOf(`--${name}`);
  if (i < 0) return undefined;
  const v = process.argv[i + 1];
  return v === undefined || v.startsWith('--') ? 'true' : v;
}

/**
 * Mean milliseconds per call of `fn`, whose dispatches are recorded back to back and synced once:
 * warm-up calls (pipeline compile, GPU clocks up), then `reps` calls timed wall-clock from first record to completion.
 */
export async function timeGpu(ctx: GpuContext, fn: () => void, reps: number, warmMs = 50): Promise<number> {
  // Warm up for at least warmMs of GPU work, not one call: after a long CPU phase (a float64
  // reference) the GPU has clocked down, and the first case timed after it read 2–5× slow on the
  // H200 (matmul sweep, 2026-12-04).
  const w0 = performance.now();
  for (let i = 0; i < 1000; i++) {
    fn();
    await ctx.sync();
    if (performance.now() - w0 >= warmMs) break;
  }
  const t0 = performance.now();
  for (let i = 0; i < reps; i++) fn();
  await ctx.sync();
  return (performance.now() - t0) / reps;
}

export async function timeAsync(fn: () => Promise<unknown>, reps: number): Promise<number> {
  await fn();
  const t0 = performance.now();
  for (let i = 0; i < reps; i++) await fn();
  return (performance.now() - t0) / reps;
}

/** A torch_kernels.py case; opts: matmul's transA / transB / bias / accumulate. */
export interface TorchCase { kernel: string; shape: number[]; opts?: Record<string, boolean> }

/** Runs bench/torch_kernels.py on the same cases in this process's machine; returns ms per case (null when unavailable). */
export function torchTimes(cases: TorchCase[], script = 'bench/torch_kernels.py'): Array<number | null> {
  if (!cases.length) return [];
  const r = spawnSync('python3', [script], { input: JSON.stringify(cases), encoding: 'utf8', maxBuffer: 1 << 24 });
  if (r.status !== 0) {
    console.error(`torch side failed (${r.error?.message ?? `exit ${r.status}`}), no torch columns: ${(r.stderr ?? '').slice(-2000).trim()}`);
    return cases.map(() => null);
  }
  const lines = r.stdout.trim().split('\n');
  const out = JSON.parse(lines[lines.length - 1]) as { ms: Array<number | null>; info: unknown };
  console.log(`torch: ${JSON.stringify(out.info)}`);
  return out.ms;
}

export function table(rows: Array<Record<string, string | number | null>>): void {
  if (!rows.length) return;
  const cols = Object.keys(rows[0]);
  const fmt = (v: unknown) => (typeof v === 'number' ? (Math.abs(v) >= 100 ? v.toFixed(1) : v.toPrecision(4)) : String(v ?? '—'));
  const w = cols.map((c) => Math.max(c.length, ...rows.map((r) => fmt(r[c]).length)));
  console.log(cols.map((c, i) => c.padEnd(w[i])).join('  '));
  for (const r of rows) console.log(cols.map((c, i) => fmt(r[c]).padStart(w[i])).join('  '));
}

export function writeJson(path: string, data: unknown): void {
  mkdirSync(dirname(path), { recursive: true });
  writeFileSync(path, JSON.stringify(data, null, 2) + '\n');
  console.log(`wrote ${path}`);
}

/** With --profile: per-kernel GPU time table (timestamp queries) for everything run since enableProfiling(). */
export async function printProfile(ctx: GpuContext, title: string): Promise<Array<{ kernel: string; calls: number; ms: number }>> {
  if (!ctx.profiler) return [];
  await ctx.sync();
  const r = await ctx.profiler.report();
  ctx.profiler.reset();
  const total = r.reduce((a, k) => a + k.ms, 0);
  console.log(`GPU time by kernel — ${title} (${total.toFixed(1)} ms in all; one pass per dispatch while profiling)`);
  table(r.slice(0, 20).map((k) => ({ kernel: k.kernel, calls: k.calls, ms: k.ms, share: k.ms / total })));
  return r;
}
