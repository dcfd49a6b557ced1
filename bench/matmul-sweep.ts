/**
 * Matmul variant sweep (bench/kernels.ts --only matmul-sweep): every tile variant, with its automatic split-K
 * and the alternative (unsplit when the plan splits, an occupancy split when it does not and the output has
 * fewer tiles than SPLIT_TARGET_WORKGROUPS), on the square products 2048³, 4096³, 8192×8192×2048 and the
 * distinct matmuls of an OPT-125m K-FAC pass at 16 × 2048 tokens (kfacMatmuls: bias / residual epilogues,
 * LM head with vocab 50272), each beside torch (--torch).
 * Every (variant, split) is first run once inside WebGPU error scopes and checked against float64 rows of the
 * same product (three sampled rows, one in the last row tile): a variant that does not compile, fails
 * validation or computes wrong values is reported and skipped, never fatal. The JSON is rewritten after
 * every case, so a crash leaves the cases before it. Ends with the fastest valid variant per case and a
 * suggested MATMUL_SELECTION (src/kernels/matmul.ts) per shape class.
 * Options: --variants a,b (default: every listed variant, the CPU-only REG ones only on CPU adapters)
 * --extra a,b (parseable w… names, untested in CI; default EXTRA)
 * --cases substr,… (case labels) --budget-s S (default 180: later timings are skipped past it).
 * Wall time on the H200, estimated (not yet run): ~2–3 min with the defaults, torch included.
 */
import type { GpuContext } from '../src/gpu/context';
import {
  isCpuAdapter, matmul, matmulShapeClass, planMatmul, MATMUL_SELECTION, MATMUL_VARIANTS, SPLIT_MAX, SPLIT_TARGET_WORKGROUPS,
  type MatmulShapeClass,
} from '../src/kernels/matmul';
import { defaultChunkRows } from '../src/kernels/xent';
import { matmulRef } from '../src/reference/linalg';
import { table, timeGpu, torchTimes } from './harness';
import { kfacMatmuls, opLabel, randomF32, type KfacMatmul } from './matmul-cases';

export interface SweepOptions {
  quick: boolean;
  torch: boolean;
  variants?: string[];
  extra?: string[];
  cases?: string[];
  budgetS: number;
  /** Called with the JSON so far after every case. */
  save: (json: unknown) => void;
}

/** Parseable warp-tiled names swept by default beside the listed variants (not selectable defaults until listed and tested). */
const EXTRA = ['w128x128x16p0', 'w128x128x16s', 'w128x128x32sp0', 'w128x128x8p0', 'w128x256x16-t8x16s', 'w128x64x8', 'w256x128x8-t16x8s', 'w128x256x8-t8x16s'];
// SwiftShader (--quick): a few cheap variants of each kernel.
const QUICK_VARIANTS = ['reg64x64', '64x64x8', 'w64x64x8'];
const EPS = 2 ** -23;

interface SweepCase extends KfacMatmul { label: string; cls: MatmulShapeClass }

interface SweepRow {
  case: string; variant: string; split: string; ok: boolean; note: string;
  ours_ms: number | null; tflops: number | null; err_tol: number | null; rel_err: number | null; torch_ms: number | null; ratio: number | null;
  isDefault: boolean; listed: boolean;
}

function sweepCases(ctx: GpuContext, quick: boolean): SweepCase[] {
  const sq = quick ? [[128, 128, 128], [192, 160, 4096]] : [[2048, 2048, 2048], [4096, 4096, 4096], [8192, 8192, 2048]];
  const square: KfacMatmul[] = sq.map(([M, N, K]) => ({ what: 'square', M, N, K, calls: 0 }));
  // OPT-125m (d 768, ffn 3072, 12 layers, vocab 50272), 16 × 2048 tokens; --quick: a 64-wide toy with vocab 8192.
  const kfac = quick ? kfacMatmuls(256, 64, 256, 8192, 2, 192) : kfacMatmuls(16 * 2048, 768, 3072, 50272, 12, defaultChunkRows(ctx, 50272));
  return [...square, ...kfac].map((c) => ({ ...c, label: `${c.what} ${c.M}×${c.N}×${c.K} ${opLabel(c)}`, cls: matmulShapeClass(c.M, c.N, c.K) }));
}

/** Automatic split-K, plus unsplit when it splits, or an occupancy split when it does not and the grid is small. */
function splitChoices(ctx: GpuContext, c: SweepCase, variant: string): Array<{ label: string; splitK?: number }> {
  const p = planMatmul(ctx, c.M, c.N, c.K, 1, { variant });
  if (p.split.splits > 1) return [{ label: `auto ${p.split.splits}×${p.split.kSplit}` }, { label: '1', splitK: 1 }];
  const tiles = Math.ceil(c.M / p.tm) * Math.ceil(c.N / p.tn);
  const s = Math.min(Math.ceil(SPLIT_TARGET_WORKGROUPS / tiles), Math.floor(c.K / 512), SPLIT_MAX);
  return s > 1 ? [{ label: 'auto 1' }, { label: `occ ${s}`, splitK: s }] : [{ label: 'auto 1' }];
}

/** Runs fn inside validation / internal / out-of-memory error scopes; the first error's message, or ''. */
export async function scoped(ctx: GpuContext, fn: () => Promise<void>): Promise<string> {
  const dev = ctx.device;
  for (const f of ['out-of-memory', 'internal', 'validation'] as GPUErrorFilter[]) dev.pushErrorScope(f);
  let thrown = '';
  try {
    await fn();
  } catch (e) {
    thrown = (e as Error).message;
  }
  const errs = [await dev.popErrorScope(), await dev.popErrorScope(), await dev.popErrorScope()].filter((e) => e);
  return errs.length ? errs.map((e) => e!.message).join('; ') : thrown;
}

/** Float64 reference of a few rows of op(A)·op(B) + bias (the validation run starts from a zero C). */
function referenceRows(c: SweepCase, A: Float32Array, B: Float32Array, bias: Float32Array | undefined, rows: number[]) {
  const sub = new Float32Array(rows.length * c.K);
  rows.forEach((r, i) => { for (let k = 0; k < c.K; k++) sub[i * c.K + k] = c.transA ? A[k * c.M + r] : A[r * c.K + k]; });
  return matmulRef(sub, B, rows.length, c.K, c.N, { transB: c.transB, bias });
}

export async function matmulSweep(ctx: GpuContext, o: SweepOptions) {
  const t0 = performance.now();
  const elapsed = () => (performance.now() - t0) / 1000;
  const listed = new Set(MATMUL_VARIANTS.map((v) => v.name));
  const cpu = isCpuAdapter(ctx);
  // The REG variants exist for CPU adapters (no workgroup memory; 2–10× slower tiles on a GPU): on GPUs only by --variants.
  const defaults = o.quick ? QUICK_VARIANTS : MATMUL_VARIANTS.filter((v) => cpu || !v.reg).map((v) => v.name);
  const variants = [...(o.variants ?? defaults), ...(o.extra ?? (o.quick ? [] : EXTRA))];
  const cases = sweepCases(ctx, o.quick).filter((c) => !o.cases || o.cases.some((s) => c.label.includes(s)));
  const reps = (flops: number) => (o.quick ? 1 : Math.max(3, Math.min(50, Math.round(3e11 / flops))));
  const rows: SweepRow[] = [];
  // torch first (its process ends before our large buffers exist), so every partial JSON has its column.
  const torchMs: Array<number | null> = o.torch
    ? torchTimes(cases.map((c) => ({ kernel: 'matmul', shape: [c.M, c.N, c.K], opts: { transA: !!c.transA, transB: !!c.transB, bias: !!c.bias, accumulate: !!c.accumulate } })))
    : cases.map(() => null);
  const torchOf = (label: string) => torchMs[cases.findIndex((c) => c.label === label)];
  const json = () => ({ adapter: adapterReport(ctx), variants, cases: cases.map((c, i) => ({ ...c, torch_ms: torchMs[i] })), rows, wall_s: elapsed() });
  for (const [ci, c] of cases.entries()) {
    const A = randomF32(c.M * c.K, 21 + ci);
    const B = randomF32(c.K * c.N, 22 + ci);
    const bias = c.bias ? randomF32(c.N, 23) : undefined;
    const ta = ctx.upload(A, c.transA ? [c.K, c.M] : [c.M, c.K]);
    const tb = ctx.upload(B, c.transB ? [c.N, c.K] : [c.K, c.N]);
    const tbias = bias ? ctx.upload(bias) : undefined;
    const check = [...new Set([0, Math.min(c.M - 1, (c.M >> 1) + 1), c.M - 1])];
    const ref = referenceRows(c, A, B, bias, check);
    const flops = 2 * c.M * c.N * c.K;
    const def = planMatmul(ctx, c.M, c.N, c.K, 1);
    // The default's row always exists (the per-case and per-pass comparisons need it).
    for (const variant of variants.includes(def.variant.name) ? variants : [def.variant.name, ...variants]) {
      let choices: Array<{ label: string; splitK?: number }>;
      try {
        choices = splitChoices(ctx, c, variant);
      } catch (e) {
        rows.push(row(c, variant, '—', false, (e as Error).message));
        continue;
      }
      for (const ch of choices) {
        if (elapsed() > o.budgetS) { rows.push(row(c, variant, ch.label, false, `skipped: past the ${o.budgetS} s budget`)); continue; }
        const opts = { transA: c.transA, transB: c.transB, bias: tbias, accumulate: c.accumulate, variant, splitK: ch.splitK };
        // Validation run: a fresh zero C, the sampled rows against float64.
        let got: Float32Array[] = [];
        const err = await scoped(ctx, async () => {
          const out = ctx.zeros([c.M, c.N]);
          try {
            matmul(ctx, ta, tb, { ...opts, out });
            await ctx.sync();
            got = await Promise.all(check.map(async (r) => new Float32Array(await ctx.readBytes(out.buffer, r * c.N * 4, c.N * 4))));
          } finally {
            out.dispose();
          }
        });
        if (err) { rows.push(row(c, variant, ch.label, false, err.split('\n')[0].slice(0, 300))); continue; }
        let worst = 0, e2 = 0, r2 = 0;
        got.forEach((g, i) => {
          for (let j = 0; j < c.N; j++) {
            const k = i * c.N + j;
            const d = Math.abs(g[j] - ref.c[k]);
            worst = Math.max(worst, d / ((c.K + 4) * EPS * ref.absSum[k] + 4 * EPS * ref.mag[k] + 1e-30));
            e2 += d * d; r2 += ref.c[k] ** 2;
          }
        });
        const relErr = Math.sqrt(e2 / r2);
        if (!(worst <= 1)) { rows.push({ ...row(c, variant, ch.label, false, `wrong values: error ${worst.toPrecision(3)}× the bound`), err_tol: worst, rel_err: relErr }); continue; }
        const out = ctx.zeros([c.M, c.N]);
        try {
          // Best of two timings after a 200 ms warm-up: the first variant timed after a case's float64
          // reference read 2–5× slow on the H200 even after a 50 ms warm-up (2026-12-04, two sweeps).
          const run = () => void matmul(ctx, ta, tb, { ...opts, out });
          const warm = o.quick ? 0 : 200;
          const ms = Math.min(await timeGpu(ctx, run, reps(flops), warm), await timeGpu(ctx, run, reps(flops), 0));
          const isDefault = variant === def.variant.name && ch.label.startsWith('auto');
          const t = torchOf(c.label);
          rows.push({ ...row(c, variant, ch.label, true, ''), ours_ms: ms, tflops: flops / ms / 1e9, err_tol: worst, rel_err: relErr, torch_ms: t, ratio: t ? t / ms : null, isDefault });
        } catch (e) {
          rows.push(row(c, variant, ch.label, false, `timing failed: ${(e as Error).message.slice(0, 300)}`));
        } finally {
          out.dispose();
        }
      }
    }
    for (const t of [ta, tb, tbias]) t?.dispose();
    ctx.trim();
    console.log(`matmul-sweep: case ${ci + 1}/${cases.length} ${c.label} done at ${elapsed().toFixed(1)} s`);
    o.save(json());
  }

  const summary = report(cases, rows, torchMs);
  if (cpu) console.log('(a CPU adapter: MATMUL_SELECTION is the GPU default, these numbers are no basis for it)');
  const result = { ...json(), ...summary };
  o.save(result);
  return result;

  function row(c: SweepCase, variant: string, split: string, ok: boolean, note: string): SweepRow {
    return { case: c.label, variant, split, ok, note, ours_ms: null, tflops: null, err_tol: null, rel_err: null, torch_ms: null, ratio: null, isDefault: false, listed: listed.has(variant) };
  }
}

/** Prints the per-case top rows, the fastest per case, the per-class suggestion and the K-FAC pass totals. */
function report(cases: SweepCase[], rows: SweepRow[], torchMs: Array<number | null>) {
  const fmt = (r: SweepRow) => ({ variant: r.variant + (r.listed ? '' : '*'), split: r.split, ms: r.ours_ms, tflops: r.tflops, torch_ms: r.torch_ms, ratio: r.ratio, err_tol: r.err_tol, default: r.isDefault ? 'yes' : '' });
  const best: Array<Record<string, string | number | null>> = [];
  for (const [i, c] of cases.entries()) {
    const mine = rows.filter((r) => r.case === c.label && r.ok).sort((x, y) => x.ours_ms! - y.ours_ms!);
    const bad = rows.filter((r) => r.case === c.label && !r.ok);
    console.log(`\n${c.label} (${c.cls}${c.calls ? `, ${c.calls} calls per pass` : ''}; torch ${torchMs[i]?.toFixed(3) ?? '—'} ms): fastest 8 of ${mine.length} valid, ${bad.length} not run or invalid`);
    const d = mine.find((r) => r.isDefault);
    table([...mine.slice(0, 8), ...(d && !mine.slice(0, 8).includes(d) ? [d] : [])].map(fmt));
    const b = mine[0];
    best.push({
      case: c.label, calls: String(c.calls), default: d ? `${d.variant} ${d.split}` : null, default_ms: d?.ours_ms ?? null, best: b ? `${b.variant}${b.listed ? '' : '*'} ${b.split}` : null,
      best_ms: b?.ours_ms ?? null, torch_ms: torchMs[i], ratio_default: d?.ratio ?? null, ratio_best: b?.ratio ?? null,
    });
  }
  const problems = rows.filter((r) => !r.ok);
  if (problems.length) {
    console.log(`\nnot run or invalid (${problems.length}; first 40):`);
    table(problems.slice(0, 40).map((r) => ({ case: r.case, variant: r.variant, split: r.split, note: r.note.slice(0, 140) })));
  }
  // Per class: the listed variant with the best geometric mean of (fastest time / its automatic-split time) over the class's cases.
  const suggestion: Record<string, { variant: string; score: number }> = {};
  for (const cls of Object.keys(MATMUL_SELECTION) as MatmulShapeClass[]) {
    const cc = cases.filter((c) => c.cls === cls);
    let top: { variant: string; score: number } | undefined;
    for (const v of new Set(rows.filter((r) => r.listed).map((r) => r.variant))) {
      let logSum = 0, n = 0;
      for (const c of cc) {
        const fastest = Math.min(...rows.filter((r) => r.case === c.label && r.ok).map((r) => r.ours_ms!));
        const mine = rows.find((r) => r.case === c.label && r.variant === v && r.ok && r.split.startsWith('auto'));
        if (!mine) { n = -1; break; }
        logSum += Math.log(fastest / mine.ours_ms!); n++;
      }
      if (n > 0 && (!top || Math.exp(logSum / n) > top.score)) top = { variant: v, score: Math.exp(logSum / n) };
    }
    if (top) suggestion[cls] = top;
  }
  const pass = (pick: (c: SweepCase) => SweepRow | undefined) => {
    const k = cases.filter((c) => c.calls > 0);
    const ms = k.map((c) => pick(c)?.ours_ms);
    return k.length && ms.every((x) => x != null) ? k.reduce((s, c, i) => s + c.calls * ms[i]!, 0) : null;
  };
  const okRows = (c: SweepCase) => rows.filter((r) => r.case === c.label && r.ok);
  const kfacPass = {
    default_ms: pass((c) => okRows(c).find((r) => r.isDefault)),
    suggested_ms: pass((c) => okRows(c).find((r) => r.variant === suggestion[c.cls]?.variant && r.split.startsWith('auto'))),
    best_ms: pass((c) => okRows(c).sort((x, y) => x.ours_ms! - y.ours_ms!)[0]),
    torch_ms: cases.some((c) => c.calls > 0) && cases.every((c, i) => !c.calls || torchMs[i] != null)
      ? cases.reduce((s, c, i) => s + c.calls * (torchMs[i] ?? 0), 0) : null,
  };
  console.log('\nfastest valid variant per case (* = not listed in MATMUL_VARIANTS; split: auto = planSplitK, 1 = none, occ = occupancy split)');
  table(best);
  console.log(`\nK-FAC pass matmuls (Σ calls × ms): default ${kfacPass.default_ms?.toFixed(2) ?? '—'} ms, suggested table ${kfacPass.suggested_ms?.toFixed(2) ?? '—'} ms, fastest per case ${kfacPass.best_ms?.toFixed(2) ?? '—'} ms, torch ${kfacPass.torch_ms?.toFixed(2) ?? '—'} ms`);
  console.log('suggested MATMUL_SELECTION (src/kernels/matmul.ts; score = geometric mean of fastest / this variant over the class):');
  for (const [cls, s] of Object.entries(suggestion)) console.log(`  ${cls}: '${s.variant}',   // score ${s.score.toFixed(3)}`);
  return { best, suggestion, kfac_pass: kfacPass };
}

/** What the sweep needs to know about the adapter: features (subgroups, subgroup matrices), limits, subgroup sizes. */
function adapterReport(ctx: GpuContext) {
  const ai = ctx.gpu.adapter.info as unknown as Record<string, unknown>;
  const configs = (ai.subgroupMatrixConfigs as unknown[] | undefined) ?? null;
  const lim = ctx.limits;
  return {
    ...ctx.gpu.info,
    adapter_features: [...(ctx.gpu.adapter.features as unknown as Iterable<string>)].sort(),
    device_features: [...ctx.gpu.features].sort(),
    subgroup_min_size: ai.subgroupMinSize ?? null,
    subgroup_max_size: ai.subgroupMaxSize ?? null,
    subgroup_matrix_configs: configs && configs.map((c) => {
      const x = c as Record<string, unknown>;   // Dawn's objects keep their fields as prototype getters
      return { componentType: x.componentType, resultComponentType: x.resultComponentType, M: x.M, N: x.N, K: x.K };
    }),
    limits: { maxComputeWorkgroupStorageSize: lim.maxComputeWorkgroupStorageSize, maxStorageBufferBindingSize: lim.maxStorageBufferBindingSize, maxComputeInvocationsPerWorkgroup: lim.maxComputeInvocationsPerWorkgroup },
  };
}

/**
 * A Dawn GPU object with extra toggles (`--dawn-features a,b` → create(['enable-dawn-features=a,b'])), e.g.
 * enable_integer_range_analysis_in_robustness (skips provably in-bounds index clamps) or, with
 * allow_unsafe_apis, disable_robustness: how much the bounds clamps cost. Kept referenced for the process.
 */
let keptGpu: GPU | undefined;
export async function dawnGpu(features: string): Promise<GPU> {
  const mod = (await import(/* @vite-ignore */ 'webgpu')) as { create(flags: string[]): GPU; globals: Record<string, unknown> };
  for (const [k, v] of Object.entries(mod.globals)) if (!(k in globalThis)) (globalThis as Record<string, unknown>)[k] = v;
  keptGpu = mod.create([`enable-dawn-features=${features}`]);
  return keptGpu;
}
