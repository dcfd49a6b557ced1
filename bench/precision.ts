/**
 * Precision (and speed) of the GPU SPD inverse/solve against float64, per condition number.
 *
 *   npx vite-node bench/precision.ts [--sizes 64,128,256,512] [--perf 1024,2048,3072,4096]
 * vite-node is not installed here (vitest 4 no longer ships it); without it:
 *   node -e "import('vite').then(v=>v.build({configFile:false,build:{ssr:'bench/precision.ts',outDir:'bench/out/build'}}))"
 *   node bench/out/build/precision.js   (the same bundle runs on the GPU machine after .gpu/setup.sh)
 * (VK_ICD_FILENAMES must name a Vulkan driver; SwiftShader's is used when unset and present.)
 *
 * Precision table: for each n and matrix kind (Q·diag·Qᵀ with cond 1e2…1e8, K-FAC-shaped XᵀX/N with
 * outlier channels and a ones column, undamped and with λ = 0.01), the relative error of diag(M⁻¹)
 * (max over i) and of M⁻¹b (2-norm) vs float64 on the same f32 matrix, with and without refinement.
 * --perf: wall time of Cholesky, Cholesky + inverse (refine 0) and of the default refined inverse.
 * Writes bench/out/precision.json.
 */

import { existsSync, mkdirSync, writeFileSync } from 'node:fs';
import { GpuContext } from '../src/gpu/context';
import { cholesky, NotPositiveDefiniteError } from '../src/kernels/cholesky';
import { df64SelfTest, spdInverse, spdSolve } from '../src/kernels/spd';
import { cond1, dampF64, frobenius, kfacShaped, spdInverseF64, spdSolveF64, spdWithCondition } from '../src/reference/spd';
import { mulberry32 } from '../src/reference/dense';

const SWIFTSHADER = '/usr/lib/chromium/vk_swiftshader_icd.json';
if (!process.env.VK_ICD_FILENAMES && existsSync(SWIFTSHADER)) process.env.VK_ICD_FILENAMES = SWIFTSHADER;

function arg(name: string, def: string): string {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 ? process.argv[i + 1] : def;
}
const sizes = arg('sizes', '64,128,256,512').split(',').filter(Boolean).map(Number);
const perfSizes = arg('perf', '').split(',').filter(Boolean).map(Number);

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

async function perfRow(ctx: GpuContext, n: number) {
  // cheap well-conditioned SPD matrix (diagonally dominant) — timing only
  const u = mulberry32(n);
  const a = new Float32Array(n * n);
  for (let i = 0; i < n; i++) {
    for (let j = 0; j < i; j++) a[i * n + j] = a[j * n + i] = u() - 0.5;
    a[i * n + i] = n;
  }
  const m = ctx.upload(a, [n, n]);
  // R calls recorded back to back, one wait at the end: per-call GPU time without the readback
  // latency of each call (Dawn's event polling in Node adds milliseconds to every wait).
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
  const single = async (f: () => Promise<unknown>) => (await timed(async () => { await f(); await wait(); }))[1];
  const chol = await per(async () => {
    const { L, info } = cholesky(ctx, m);
    L.dispose();
    info.dispose();
  });
  // CPU time to record the Cholesky's dispatches (bind groups, encoder calls), without any wait
  const t0 = performance.now();
  const rec = cholesky(ctx, m);
  const recordSeconds = (performance.now() - t0) / 1000;
  await wait();
  rec.L.dispose();
  rec.info.dispose();
  const inv = (refine: number) => async () => (await spdInverse(ctx, m, { refine })).dispose();
  const inv0 = await per(inv(0));
  const inv1 = await per(inv(1));
  const inv0Single = await single(inv(0));
  m.dispose();
  probe.dispose();
  return { n, choleskySeconds: chol, choleskyRecordSeconds: recordSeconds, inverseSeconds: inv0, inverseSingleCallSeconds: inv0Single, refineStepSeconds: inv1 - inv0, gflopsInverse: (n ** 3 * (1 / 3 + 1 / 3 + 1 / 3)) / inv0 / 1e9 };
}

async function main() {
  const ctx = await GpuContext.create();
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
  for (const n of perfSizes) {
    const p = await perfRow(ctx, n);
    perf.push(p);
    console.log(`perf n=${n}: cholesky ${(p.choleskySeconds * 1e3).toFixed(2)} ms (recording alone ${(p.choleskyRecordSeconds * 1e3).toFixed(2)} ms), cholesky+inverse ${(p.inverseSeconds * 1e3).toFixed(2)} ms (${p.gflopsInverse.toFixed(0)} GFLOP/s; one call with its wait ${(p.inverseSingleCallSeconds * 1e3).toFixed(2)} ms), one refinement step ${(p.refineStepSeconds * 1e3).toFixed(2)} ms`);
  }
  mkdirSync('bench/out', { recursive: true });
  writeFileSync('bench/out/precision.json', JSON.stringify({ adapter: info, target: 1e-5, df64SelfTest: selfTest, rows, perf }, null, 1));
  console.log('wrote bench/out/precision.json');
  ctx.destroy();
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
