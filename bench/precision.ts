/**
 * Precision (and speed) of the GPU SPD inverse/solve against float64, per condition number.
 *
 *   node dist-node/precision.mjs [--sizes 64,128,256,512] [--perf 3072,4096,8192] [--profile] [--out bench/out/precision.json]
 * (built by `npm run build:node`; VK_ICD_FILENAMES must name a Vulkan driver; SwiftShader's is used
 * when unset and present.)
 *
 * Precision table: for each n and matrix kind (Q·diag·Qᵀ with cond 1e2…1e8, K-FAC-shaped XᵀX/N with
 * outlier channels and a ones column, undamped and with λ = 0.01), the relative error of diag(M⁻¹)
 * (max over i) and of M⁻¹b (2-norm) vs float64 on the same f32 matrix, with and without refinement
 * (spd.ts: the inverse's correction series, the solve's double-float refinement).
 * --perf: wall time per call (calls recorded back to back) of the Cholesky, the f32 inverse
 * (refine 0) and the precise inverse, on a well-conditioned matrix (diagonally dominant) and on
 * G·Gᵀ/m with G Gaussian n×(n+p), p = ⌈4n/1000⌉ (κ ≈ 16n²/p² ≈ 1e6, where the series takes 3–4
 * terms). --profile: GPU time per kernel of one precise inverse of the ill-conditioned matrix
 * (timestamp queries; GEMMs are named by product, trsm.gemm.<label>). Writes --out.
 */

import { existsSync, mkdirSync, writeFileSync } from 'node:fs';
import { GpuContext } from '../src/gpu/context';
import type { Tensor } from '../src/gpu/tensor';
import { cholesky, NotPositiveDefiniteError } from '../src/kernels/cholesky';
import { df64SelfTest, spdInverse, spdSolve } from '../src/kernels/spd';
import { cond1, dampF64, frobenius, kfacShaped, spdInverseF64, spdSolveF64, spdWithCondition } from '../src/reference/spd';
import { mulberry32 } from '../src/reference/dense';
import { matmul } from '../src/kernels/matmul';

const SWIFTSHADER = '/usr/lib/chromium/vk_swiftshader_icd.json';
if (!process.env.VK_ICD_FILENAMES && existsSync(SWIFTSHADER)) process.env.VK_ICD_FILENAMES = SWIFTSHADER;

function arg(name: string, def: string): string {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 ? process.argv[i + 1] : def;
}
const sizes = arg('sizes', '64,128,256,512').split(',').filter(Boolean).map(Number);
const perfSizes = arg('perf', '').split(',').filter(Boolean).map(Number);
const profile = process.argv.includes('--profile');
const outPath = arg('out', 'bench/out/precision.json');

interface Row {
  n: number; kind: string; cond1: number | null;
  diagErrF32: number | null; diagErr: number | null; solveErrF32: number | null; solveErr: number | null;
  invSeconds: number | null; note: string;
}

const fmt = (x: number | null) => (x === null ? '—' : x.toExponential(1));

async function timed<T>(f: () => Promise<T>): Promise<[T, number]> {
  const t0 = performance.now();
  const r = await f();
  return [r, (performance.now() - t0) / 1000];
}

async function precisionRow(ctx: GpuContext, n: number, kind: string, a64: Float64Array, damping: number): Promise<Row> {
  const a32 = Float32Array.from(a64);
  const aSeen = damping ? dampF64(Float64Array.from(a32), n, damping) : Float64Array.from(a32);
  const u = mulberry32(n + 17);
  const b32 = Float32Array.from({ length: n }, () => u() * 2 - 1);
  const row: Row = { n, kind, cond1: null, diagErrF32: null, diagErr: null, solveErrF32: null, solveErr: null, invSeconds: null, note: '' };
  let ref: Float64Array;
  let xref: Float64Array;
  try {
    ref = spdInverseF64(aSeen, n);
    xref = spdSolveF64(aSeen, Float64Array.from(b32), n, 1);
    row.cond1 = cond1(aSeen, ref, n);
  } catch {
    row.note = 'f32 matrix not SPD in float64';
    return row;
  }
  const m = ctx.upload(a32, [n, n]);
  const b = ctx.upload(b32, [n]);
  const diagErr = (x: Float32Array) => {
    let w = 0;
    for (let i = 0; i < n; i++) w = Math.max(w, Math.abs(x[i * n + i] - ref[i * n + i]) / Math.abs(ref[i * n + i]));
    return w;
  };
  const solveErr = (x: Float32Array) => frobenius(Float64Array.from(xref, (v, i) => v - x[i])) / frobenius(xref);
  try {
    for (const refine of [0, undefined]) {
      const [X, secs] = await timed(async () => {
        const t = await spdInverse(ctx, m, { damping, refine });
        const v = await t.read();
        t.dispose();
        return v;
      });
      const x = await spdSolve(ctx, m, b, { damping, refine });
      const xs = await x.read();
      x.dispose();
      if (refine === 0) {
        row.diagErrF32 = diagErr(X);
        row.solveErrF32 = solveErr(xs);
      } else {
        row.diagErr = diagErr(X);
        row.solveErr = solveErr(xs);
        row.invSeconds = secs;
      }
    }
  } catch (e) {
    if (!(e instanceof NotPositiveDefiniteError)) throw e;
    row.note = `GPU: not PD at pivot ${e.index}`;
  }
  m.dispose();
  b.dispose();
  return row;
}

/** Diagonally dominant (κ small: the series stops after its first term) — timing only. */
function wellConditioned(ctx: GpuContext, n: number): Tensor {
  const u = mulberry32(n);
  const a = new Float32Array(n * n);
  for (let i = 0; i < n; i++) {
    for (let j = 0; j < i; j++) a[i * n + j] = a[j * n + i] = u() - 0.5;
    a[i * n + i] = n;
  }
  return ctx.upload(a, [n, n]);
}

/** G·Gᵀ/m, G Gaussian-like n×m with m = n + ⌈4n/1000⌉: κ ≈ 16n²/(m − n)² ≈ 1e6 (Wishart hard edge). */
function illConditioned(ctx: GpuContext, n: number): Tensor {
  const m = n + Math.ceil((4 * n) / 1000);
  const u = mulberry32(n + 1);
  // sum of 4 uniforms: near-Gaussian entries, cheap enough for n·m ≈ 7e7 in JS
  const g = ctx.upload(Float32Array.from({ length: n * m }, () => u() + u() + u() + u() - 2), [n, m]);
  const r = matmul(ctx, g, g, { transB: true, alpha: 3 / m });
  g.dispose();
  return r;
}

async function perfRow(ctx: GpuContext, n: number) {
  // R calls recorded back to back, one wait at the end: per-call time without the readback latency
  // of each call (Dawn's event polling in Node adds milliseconds to every wait).
  const R = 5;
  // waits use a 4-byte readback: mapAsync resolves promptly, onSubmittedWorkDone (ctx.sync) was
  // seen to return tens of ms late in Dawn for Node
  const probe = ctx.zeros([1]);
  const wait = async () => { await probe.read(); };
  const per = async (f: () => Promise<unknown>) => {
    for (let w = 0; w < 2; w++) await Promise.all(Array.from({ length: R }, f)); // warm-up: pipelines, pool buffers
    const [, t] = await timed(async () => {
      await Promise.all(Array.from({ length: R }, f));
      await wait();
    });
    return t / R;
  };
  const out: Record<string, unknown> = { n };
  for (const [kind, make] of [['well', wellConditioned], ['cond~1e6', illConditioned]] as const) {
    const m = make(ctx, n);
    const chol = await per(async () => {
      const { L, info } = cholesky(ctx, m);
      L.dispose();
      info.dispose();
    });
    const inv = (refine?: number) => async () => (await spdInverse(ctx, m, { refine })).dispose();
    const f32 = await per(inv(0));
    const precise = await per(inv());
    out[kind] = { choleskySeconds: chol, f32InverseSeconds: f32, preciseInverseSeconds: precise };
    console.log(`perf n=${n} ${kind}: cholesky ${(chol * 1e3).toFixed(2)} ms, f32 inverse ${(f32 * 1e3).toFixed(2)} ms, precise inverse ${(precise * 1e3).toFixed(2)} ms`);
    if (profile && kind === 'cond~1e6' && ctx.enableProfiling()) {
      (await spdInverse(ctx, m)).dispose();
      await ctx.sync();
      const r = await ctx.profiler!.report();
      ctx.profiler = null;
      const total = r.reduce((a, k) => a + k.ms, 0);
      console.log(`  GPU time per kernel, one precise inverse (${total.toFixed(1)} ms in all; one pass per dispatch while profiling):`);
      for (const k of r) console.log(`    ${k.kernel.padEnd(28)} ${String(k.calls).padStart(5)} calls ${k.ms.toFixed(2).padStart(9)} ms  ${((100 * k.ms) / total).toFixed(1).padStart(5)}%`);
      out.profile = r;
    }
    m.dispose();
  }
  probe.dispose();
  return out;
}

async function main() {
  // --perf 8192: 256 MiB matrices, the Gaussian factor n×(n+p) ≈ 270 MiB
  const ctx = await GpuContext.create({ needs: { maxStorageBufferBindingSize: 1 << 30, maxBufferSize: 1 << 30 } });
  const info = ctx.gpu.info;
  console.log(`adapter: ${info.vendor} ${info.architecture} ${info.device} ${info.description} fallback=${info.isFallbackAdapter}`);
  const selfTest = await df64SelfTest(ctx);
  console.log(`df64 residual self-test: error ${selfTest.toExponential(2)} of max(|M||X|) (double-float ≈ 1e-14, f32 ≈ 1e-8)`);
  const rows: Row[] = [];
  for (const n of sizes) {
    const kinds: Array<[string, () => Float64Array, number]> = [
      ...[1e2, 1e4, 1e6, 1e7, 1e8].map((c) => [`cond ${c.toExponential(0)}`, () => spdWithCondition(n, c, n + Math.log10(c)), 0] as [string, () => Float64Array, number]),
      ['kfac', () => kfacShaped(n, { seed: n }), 0],
      ['kfac λ=0.01', () => kfacShaped(n, { seed: n }), 0.01],
    ];
    for (const [kind, gen, damping] of kinds) {
      const r = await precisionRow(ctx, n, kind, gen(), damping);
      rows.push(r);
      console.log(
        `n=${String(n).padStart(4)}  ${kind.padEnd(12)} κ₁=${fmt(r.cond1).padStart(7)}  diag(M⁻¹): f32 ${fmt(r.diagErrF32).padStart(7)} → refined ${fmt(r.diagErr).padStart(7)}` +
        `   M⁻¹b: f32 ${fmt(r.solveErrF32).padStart(7)} → refined ${fmt(r.solveErr).padStart(7)}   inverse ${r.invSeconds === null ? '—' : r.invSeconds.toFixed(2) + ' s'}  ${r.note}`,
      );
    }
  }
  const perf = [];
  for (const n of perfSizes) perf.push(await perfRow(ctx, n));
  const dir = outPath.slice(0, Math.max(0, outPath.lastIndexOf('/')));
  if (dir) mkdirSync(dir, { recursive: true });
  writeFileSync(outPath, JSON.stringify({ adapter: info, date: new Date().toISOString(), target: 1e-5, df64SelfTest: selfTest, rows, perf }, null, 1));
  console.log(`wrote ${outPath}`);
  ctx.destroy();
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
