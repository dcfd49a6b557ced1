/**
 * Kernel benchmark: matmul, covariance accumulation (gram), Cholesky + inverse, causal attention, and the
 * matmuls of opt-mini's K-FAC pass (kfac).
 *   node dist-node/kernels.mjs [--quick] [--torch] [--sweep] [--only attention] [--out bench/out/kernels.json]
 * --quick: small shapes for a CPU/SwiftShader run. --torch: same shapes through PyTorch on this machine
 * (bench/torch_kernels.py) and ratio = torch_ms / ours_ms. --sweep: every matmul tile variant (matmul, kfac).
 * --only KERNEL[,KERNEL…]: just those groups (matmul, gram, cholinv, attention, kfac, epilogue, matmul-sweep;
 * the last two only when named). matmul-sweep: every variant × split-K choice at real widths, validated on the
 * device (bench/matmul-sweep.ts: --variants, --extra, --cases, --budget-s). --dawn-features a,b: Dawn toggles.
 * kfac: each distinct matmul (M, N, K, transposes, bias, accumulate) that one K-FAC forward+backward of
 * opt-mini at 16 × 2048 tokens issues (kfacMatmuls), with the model's options and default variant/split-K,
 * in its own table with the calls per pass and a total row = Σ calls × ms per pass (ours vs torch).
 */
import { GpuContext } from '../src/gpu/context';
import { matmul, planMatmul, MATMUL_VARIANTS } from '../src/kernels/matmul';
import { defaultChunkRows } from '../src/kernels/xent';
import { gramAccumulate } from '../src/kernels/gram';
import { spdInverse } from '../src/kernels/spd';
import { attention, attentionBackward, type AttentionImpl } from '../src/kernels/attention';
import { arg, table, timeAsync, timeGpu, torchTimes, writeJson, type TorchCase } from './harness';
import { kfacMatmuls, opLabel, randomF32, type KfacMatmul } from './matmul-cases';
import { dawnGpu, matmulSweep } from './matmul-sweep';

const quick = arg('quick') !== undefined;
const out = arg('out') ?? 'bench/out/kernels.json';
const only = arg('only')?.split(',');
// epilogue (a diagnostic) and matmul-sweep (bench/matmul-sweep.ts): only when asked for.
const want = (group: string) => (!only ? !['epilogue', 'matmul-sweep'].includes(group) : only.includes(group));
const list = (name: string) => arg(name)?.split(',').filter((x) => x);

interface Row { kernel: string; shape: number[]; ours_ms: number; gflops: number; variant?: string }

const mmReps = (flops: number) => (quick ? 1 : Math.max(3, Math.min(50, Math.round(4e11 / flops))));

async function main() {
  const dawnFeatures = arg('dawn-features');
  const ctx = await GpuContext.create({
    needs: { maxStorageBufferBindingSize: quick ? 128 << 20 : 1 << 30, maxBufferSize: quick ? 256 << 20 : 1 << 30 },
    gpu: dawnFeatures ? await dawnGpu(dawnFeatures) : undefined,
  });
  const info = ctx.gpu.info;
  console.log(`adapter: ${JSON.stringify(info)}${dawnFeatures ? `, dawn features ${dawnFeatures}` : ''}`);
  const rows: Row[] = [];
  const date = new Date().toISOString();
  const sweep = !want('matmul-sweep') ? undefined : await matmulSweep(ctx, {
    quick, torch: !!arg('torch'), variants: list('variants'), extra: list('extra'), cases: list('cases'), budgetS: Number(arg('budget-s') ?? 180),
    save: (j) => writeJson(out, { adapter: info, date, quick, dawn_features: dawnFeatures ?? null, matmul_sweep: j }),
  });

  // matmul M=N=K
  const sizes = !want('matmul') ? [] : quick ? [128, 256] : [512, 1024, 2048, 4096];
  const variants = arg('sweep') ? MATMUL_VARIANTS.map((v) => v.name) : [undefined];
  for (const n of sizes) {
    const a = ctx.upload(randomF32(n * n, 1), [n, n]);
    const b = ctx.upload(randomF32(n * n, 2), [n, n]);
    const c = ctx.empty([n, n]);
    for (const variant of variants) {
      const reps = quick ? 2 : mmReps(2 * n ** 3);
      const ms = await timeGpu(ctx, () => void matmul(ctx, a, b, { out: c, variant }), reps);
      rows.push({ kernel: 'matmul', shape: [n, n, n], ours_ms: ms, gflops: (2 * n ** 3) / ms / 1e6, variant: variant ?? 'default' });
    }
    // K ≥ SPLIT_MIN_K splits K for precision (matmul.ts): also the unsplit kernel, to show what that costs.
    const { splits } = planMatmul(ctx, n, n, n, 1).split;
    if (splits > 1 && !arg('sweep')) {
      const ms = await timeGpu(ctx, () => void matmul(ctx, a, b, { out: c, splitK: 1 }), quick ? 2 : mmReps(2 * n ** 3));
      rows.push({ kernel: 'matmul', shape: [n, n, n], ours_ms: ms, gflops: (2 * n ** 3) / ms / 1e6, variant: `default unsplit (default: ${splits} splits)` });
    }
    a.dispose(); b.dispose(); c.dispose();
  }

  // covariance accumulation over T tokens, streamed in chunks as the K-FAC pass does
  const T = quick ? 4096 : 262144;
  // 65536 × 3072 × 4 B = 768 MiB per call, under the 1 GiB binding limit; on the H200 65536-token calls measured
  // 97 ms for the whole pass vs 124 ms with 16384-token calls (fewer split-K partial sums to reduce).
  const chunk = quick ? 2048 : 65536;
  for (const d of !want('gram') ? [] : quick ? [64, 256] : [256, 768, 3072]) {
    const x = ctx.upload(randomF32(chunk * d, 3), [chunk, d]);
    const acc = ctx.zeros([d + 1, d + 1]); // + ones column, as in K-FAC's A
    const ms = await timeGpu(ctx, () => { for (let t = 0; t < T; t += chunk) gramAccumulate(ctx, x, acc, { ones: true }); }, quick ? 1 : 3);
    // Only the lower triangle is computed (half the flops of X.T@X); GFLOP/s counts the full product for comparability.
    rows.push({ kernel: 'gram', shape: [d, T], ours_ms: ms, gflops: (2 * d * d * T) / ms / 1e6 });
    x.dispose(); acc.dispose();
  }

  // Cholesky + inverse (with the library's precision strategy, spd.ts) on two matrices per n: the
  // bench's G·Gᵀ/(2n) + 1% damping (κ ≈ 30: the correction series stops after its first term) and
  // G·Gᵀ/m with G n×(n+p), p = ⌈4n/1000⌉, undamped (κ ≈ 16n²/p² ≈ 1e6: 3–4 terms). torch's time
  // does not depend on κ (same torch row for both).
  for (const n of !want('cholinv') ? [] : quick ? [64, 128] : [256, 768, 1024, 2048, 3072, 4096, 8192]) {
    for (const [variant, cols, damping] of [['cond~30 λ=0.01', 2 * n, 0.01], ['cond~1e6', n + Math.ceil((4 * n) / 1000), 0]] as const) {
      const g = ctx.upload(randomF32(n * cols, 5), [n, cols]);
      const m = matmul(ctx, g, g, { transB: true, alpha: 1 / cols });
      g.dispose();
      const ms = await timeAsync(async () => { const inv = await spdInverse(ctx, m, { damping }); inv.dispose(); }, quick ? 1 : 3);
      rows.push({ kernel: 'cholinv', shape: [n], ours_ms: ms, gflops: n ** 3 / ms / 1e6, variant });
      m.dispose();
    }
  }

  // Causal attention [B·T, H·hd] as in the model (opt-mini: B 16, H 4; OPT-125m: B 2, H 12; hd 64, T 2048),
  // both kernel families. fwd = attention(); fwdbwd = attention() + attentionBackward() (delta, dq, dkv).
  // GFLOP/s counts the causal half of the matmuls: fwd 2 (S, P·V), fwd+bwd 2 + 5 (S, dP, dV, dQ, dK) of
  // 2·B·H·T²·hd / 2 each, the FlashAttention-2 convention (recomputed S in bwd counted once).
  const attnShapes: Array<[number, number, number, number]> = !want('attention') ? [] : quick ? [[2, 256, 2, 64]] : [[16, 2048, 4, 64], [2, 2048, 12, 64]];
  for (const [B, Tq, H, hd] of attnShapes) {
    const shape = [B * Tq, H * hd];
    const [q, k, v, g] = [11, 12, 13, 14].map((s) => ctx.upload(randomF32(B * Tq * H * hd, s), shape));
    const mm = B * H * Tq * Tq * hd; // one causal matmul: 2·B·H·T²·hd / 2
    for (const impl of ['rows', 'tiled'] as AttentionImpl[]) {
      const fwd = () => attention(ctx, q, k, v, { batch: B, heads: H }, { impl });
      const reps = quick ? 2 : 10;
      const fms = await timeGpu(ctx, () => { const r = fwd(); r.out.dispose(); r.lse.dispose(); }, reps);
      rows.push({ kernel: 'attention_fwd', shape: [B, Tq, H, hd], ours_ms: fms, gflops: (2 * mm) / fms / 1e6, variant: impl });
      const bms = await timeGpu(ctx, () => {
        const r = fwd();
        const gr = attentionBackward(ctx, g, q, k, v, r.out, r.lse, { batch: B, heads: H }, { impl });
        for (const t of [r.out, r.lse, gr.dq, gr.dk, gr.dv]) t.dispose();
      }, reps);
      rows.push({ kernel: 'attention_fwdbwd', shape: [B, Tq, H, hd], ours_ms: bms, gflops: (7 * mm) / bms / 1e6, variant: impl });
    }
    for (const t of [q, k, v, g]) t.dispose();
  }

  // Matmuls of opt-mini's K-FAC pass (hidden 256, ffn 1024, 4 layers, vocab 50272) at 16 windows × 2048
  // tokens, LM head in crossEntropy's default row chunks for this device (2669 rows with a ≥ 512 MiB binding
  // limit, as on the H200: 12 chunks + one of 740). --quick: 256 rows in chunks of 192 (one + one of 64).
  const mini = { d: 256, f: 1024, L: 4, V: 50272 };
  const kfacTokens = quick ? 256 : 16 * 2048;
  const kfacChunk = quick ? 192 : defaultChunkRows(ctx, mini.V);
  const kfac = want('kfac') ? kfacMatmuls(kfacTokens, mini.d, mini.f, mini.V, mini.L, kfacChunk) : [];
  const kfacRows: Array<{ i: number; ours_ms: number; gflops: number; variant: string; split: string; isDefault: boolean }> = [];
  for (const [i, c] of kfac.entries()) {
    const a = ctx.upload(randomF32(c.M * c.K, 21), c.transA ? [c.K, c.M] : [c.M, c.K]);
    const b = ctx.upload(randomF32(c.K * c.N, 22), c.transB ? [c.N, c.K] : [c.K, c.N]);
    const bias = c.bias ? ctx.upload(randomF32(c.N, 23), [c.N]) : undefined;
    const out = ctx.zeros([c.M, c.N]);
    const flops = 2 * c.M * c.N * c.K;
    const defaultVariant = planMatmul(ctx, c.M, c.N, c.K, 1).variant.name;
    for (const variant of arg('sweep') ? MATMUL_VARIANTS.map((v) => v.name) : [defaultVariant]) {
      const { split } = planMatmul(ctx, c.M, c.N, c.K, 1, { variant });
      const run = () => void matmul(ctx, a, b, { transA: c.transA, transB: c.transB, bias, out, accumulate: c.accumulate, variant });
      let ms: number;
      try {
        ms = await timeGpu(ctx, run, mmReps(flops));
      } catch (e) {
        console.log(`kfac ${c.what} ${variant}: skipped (${(e as Error).message})`);
        continue;
      }
      kfacRows.push({ i, ours_ms: ms, gflops: flops / ms / 1e6, variant, split: split.splits > 1 ? `${split.splits}×${split.kSplit}` : '1', isDefault: variant === defaultVariant });
    }
    for (const t of [a, b, bias, out]) t?.dispose();
  }

  // epilogue: the K-FAC forward's residual matmuls (C += x·Wᵀ + b) ran 7–13× slower than the same product
  // without accumulate on the H200 (kfac table, 2026-11-28; fixed by matmul.wgsl's EPI_UNROLL); every
  // transB × bias × accumulate combination at those shapes, default variant, to see which option costs what.
  const epilogueRows: Array<Record<string, string | number | null>> = [];
  if (want('epilogue')) {
    const epi: Array<Record<string, string | number | null>> = [];
    for (const [M, N, K] of quick ? [[256, 64, 64]] : [[32768, 256, 256], [32768, 256, 1024]]) {
      for (const transB of [false, true]) {
        const a = ctx.upload(randomF32(M * K, 31), [M, K]);
        const b = ctx.upload(randomF32(K * N, 32), transB ? [N, K] : [K, N]);
        const bias = ctx.upload(randomF32(N, 33), [N]);
        for (const withBias of [false, true]) {
          for (const accumulate of [false, true]) {
            const o = ctx.zeros([M, N]);
            const ms = await timeGpu(ctx, () => void matmul(ctx, a, b, { transB, bias: withBias ? bias : undefined, out: o, accumulate }), mmReps(2 * M * N * K));
            epi.push({ shape: `${M}×${N}×${K}`, op: opLabel({ transB, bias: withBias, accumulate }), ours_ms: ms, gflops: (2 * M * N * K) / ms / 1e6 });
            o.dispose();
          }
        }
        a.dispose(); b.dispose(); bias.dispose();
      }
    }
    console.log('epilogue: matmul options at the K-FAC forward shapes (default variant)');
    table(epi);
    epilogueRows.push(...epi);
  }

  let torch: Array<number | null> = rows.map(() => null);
  let torch64: Array<number | null> = [];
  let torchMath: Array<number | null> = [];
  let kfacTorch: Array<number | null> = kfac.map(() => null);
  const attn = rows.filter((r) => r.kernel.startsWith('attention'));
  if (arg('torch')) {
    // Each distinct (kernel, shape) once: the attention rows repeat theirs per impl.
    const key = (r: TorchCase) => `${r.kernel}|${r.shape.join(',')}`;
    const uniq = [...new Map(rows.map((r) => [key(r), { kernel: r.kernel, shape: r.shape }] as [string, TorchCase])).values()];
    const kfacCases: TorchCase[] = kfac.map((c) => ({
      kernel: 'matmul', shape: [c.M, c.N, c.K],
      opts: { transA: !!c.transA, transB: !!c.transB, bias: !!c.bias, accumulate: !!c.accumulate },
    }));
    const ms = torchTimes([...uniq, ...kfacCases]);
    const byKey = new Map(uniq.map((c, i) => [key(c), ms[i]]));
    torch = rows.map((r) => byKey.get(key(r)) ?? null);
    kfacTorch = ms.slice(uniq.length);
    // The other torch runs only when the first one worked (a missing torch fails once, not three times).
    if (ms.some((t) => t !== null)) {
      torch64 = torchTimes(rows.filter((r) => r.kernel === 'cholinv').map((r) => ({ kernel: 'cholinv_f64', shape: r.shape })));
      // SDPA's math backend too (the default backend for fp32 is the memory-efficient kernel, see torch_kernels.py).
      const mathUniq = [...new Map(attn.map((r) => [key(r), { kernel: `${r.kernel}_math`, shape: r.shape }] as [string, TorchCase])).entries()];
      const mms = torchTimes(mathUniq.map(([, c]) => c));
      const mathBy = new Map(mathUniq.map(([k], i) => [k, mms[i]]));
      torchMath = attn.map((r) => mathBy.get(key(r)) ?? null);
    }
  }
  let j = 0, a = 0;
  const results = rows.map((r, i) => {
    const t = torch[i];
    const res: Record<string, unknown> = { ...r, torch_ms: t, ratio: t ? t / r.ours_ms : null };
    if (r.kernel === 'cholinv' && torch64.length) {
      res.torch_f64_ms = torch64[j];
      res.ratio_vs_f64 = torch64[j] ? (torch64[j] as number) / r.ours_ms : null;
      j++;
    }
    if (r.kernel.startsWith('attention') && torchMath.length) {
      res.torch_math_ms = torchMath[a];
      res.ratio_vs_math = torchMath[a] ? (torchMath[a] as number) / r.ours_ms : null;
      a++;
    }
    return res;
  });
  table(results.map((r) => ({ ...r, shape: (r.shape as number[]).join('×') }) as Record<string, string | number | null>));
  const kfacJson = kfac.length ? kfacReport(kfac, kfacRows, kfacTorch, kfacTokens, kfacChunk) : undefined;
  writeJson(out, {
    adapter: info, date, quick, ...(dawnFeatures ? { dawn_features: dawnFeatures } : {}), results, ...(kfacJson ? { kfac: kfacJson } : {}),
    ...(epilogueRows.length ? { epilogue: epilogueRows } : {}), ...(sweep ? { matmul_sweep: sweep } : {}),
  });
  ctx.destroy();
}

/**
 * Prints the kfac table (a row per shape and variant, then the total per pass over the default-variant rows
 * weighted by calls; with --sweep also the fastest variant per shape) and returns its JSON.
 */
function kfacReport(
  cases: KfacMatmul[], timed: Array<{ i: number; ours_ms: number; gflops: number; variant: string; split: string; isDefault: boolean }>,
  torchMs: Array<number | null>, tokens: number, chunk: number,
) {
  const rows = timed.map((r) => {
    const c = cases[r.i];
    const t = torchMs[r.i];
    return {
      what: c.what, shape: `${c.M}×${c.N}×${c.K}`, op: opLabel(c), calls: c.calls, ours_ms: r.ours_ms, gflops: r.gflops,
      variant: r.variant, split: r.split, torch_ms: t, ratio: t ? t / r.ours_ms : null, default: r.isDefault,
    };
  });
  const def = rows.filter((r) => r.default);
  const perPass = (ms: (r: (typeof rows)[number]) => number) => def.reduce((s, r) => s + r.calls * ms(r), 0);
  const oursPass = perPass((r) => r.ours_ms);
  const torchPass = def.length && def.every((r) => r.torch_ms !== null) ? perPass((r) => r.torch_ms as number) : null;
  const flopsPass = cases.reduce((s, c) => s + c.calls * 2 * c.M * c.N * c.K, 0);
  const total = {
    what: 'total per pass', shape: '', op: '', calls: def.reduce((s, r) => s + r.calls, 0), ours_ms: oursPass,
    gflops: flopsPass / oursPass / 1e6, variant: '', split: '', torch_ms: torchPass, ratio: torchPass ? torchPass / oursPass : null,
  };
  console.log(`kfac: the matmuls of one opt-mini K-FAC forward+backward, ${tokens} rows, LM head in chunks of ${chunk} rows`);
  // calls as text: the table prints numbers to 4 significant digits.
  table([...rows.map(({ default: _, ...r }) => r), total].map((r) => ({ ...r, calls: String(r.calls) })));
  let best: Array<Record<string, string | number | null>> | undefined;
  if (rows.length > def.length) {
    best = cases.flatMap((c, i) => {
      const mine = rows.filter((_, j) => timed[j].i === i);
      if (!mine.length) return [];
      const d = mine.find((r) => r.default);
      const b = mine.reduce((x, y) => (y.ours_ms < x.ours_ms ? y : x));
      return [{ what: c.what, shape: `${c.M}×${c.N}×${c.K}`, calls: c.calls, default: d?.variant ?? null, default_ms: d?.ours_ms ?? null, best: b.variant, best_ms: b.ours_ms, best_split: b.split, speedup: d ? d.ours_ms / b.ours_ms : null }];
    });
    const bestPass = best.reduce((s, r) => s + (r.calls as number) * (r.best_ms as number), 0);
    console.log(`kfac --sweep: fastest variant per shape (default split-K for each); per pass ${bestPass.toFixed(2)} ms with the fastest vs ${oursPass.toFixed(2)} ms default`);
    table(best.map((r) => ({ ...r, calls: String(r.calls) })));
  }
  return { model: 'opt-mini', tokens, chunk_rows: chunk, rows, total, ...(best ? { best } : {}) };
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
