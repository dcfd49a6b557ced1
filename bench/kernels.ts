/**
 * Kernel benchmark: matmul, covariance accumulation (gram), Cholesky + inverse, causal attention.
 *   node dist-node/kernels.mjs [--quick] [--torch] [--sweep] [--only attention] [--out bench/out/kernels.json]
 * --quick: small shapes for a CPU/SwiftShader run. --torch: same shapes through PyTorch on this machine
 * (bench/torch_kernels.py) and ratio = torch_ms / ours_ms. --sweep: every matmul tile variant.
 * --only KERNEL[,KERNEL…]: just those groups (matmul, gram, cholinv, attention).
 */
import { GpuContext } from '../src/gpu/context';
import { matmul, MATMUL_VARIANTS } from '../src/kernels/matmul';
import { gramAccumulate } from '../src/kernels/gram';
import { spdInverse } from '../src/kernels/spd';
import { attention, attentionBackward, type AttentionImpl } from '../src/kernels/attention';
import { arg, table, timeAsync, timeGpu, torchTimes, writeJson, type TorchCase } from './harness';

const quick = arg('quick') !== undefined;
const out = arg('out') ?? 'bench/out/kernels.json';
const only = arg('only')?.split(',');
const want = (group: string) => !only || only.includes(group);

function randomF32(n: number, seed: number): Float32Array {
  const a = new Float32Array(n);
  let s = seed >>> 0;
  for (let i = 0; i < n; i++) {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    a[i] = s / 2 ** 31 - 1;
  }
  return a;
}

interface Row { kernel: string; shape: number[]; ours_ms: number; gflops: number; variant?: string }

async function main() {
  const ctx = await GpuContext.create({ needs: { maxStorageBufferBindingSize: quick ? 128 << 20 : 1 << 30, maxBufferSize: quick ? 256 << 20 : 1 << 30 } });
  const info = ctx.gpu.info;
  console.log(`adapter: ${JSON.stringify(info)}`);
  const rows: Row[] = [];

  // matmul M=N=K
  const sizes = !want('matmul') ? [] : quick ? [128, 256] : [512, 1024, 2048, 4096];
  const variants = arg('sweep') ? MATMUL_VARIANTS.map((v) => v.name) : [undefined];
  for (const n of sizes) {
    const a = ctx.upload(randomF32(n * n, 1), [n, n]);
    const b = ctx.upload(randomF32(n * n, 2), [n, n]);
    const c = ctx.empty([n, n]);
    for (const variant of variants) {
      const reps = quick ? 2 : Math.max(3, Math.min(50, Math.round(2e11 / n ** 3)));
      const ms = await timeGpu(ctx, () => void matmul(ctx, a, b, { out: c, variant }), reps);
      rows.push({ kernel: 'matmul', shape: [n, n, n], ours_ms: ms, gflops: (2 * n ** 3) / ms / 1e6, variant: variant ?? 'default' });
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

  // Cholesky + inverse (with the library's precision strategy)
  for (const n of !want('cholinv') ? [] : quick ? [64, 128] : [256, 768, 1024, 2048, 3072, 4096]) {
    const x = randomF32(n * 2 * n, 5);
    const g = ctx.upload(x, [n, 2 * n]);
    const m = matmul(ctx, g, g, { transB: true, alpha: 1 / (2 * n) });
    const ms = await timeAsync(async () => { const inv = await spdInverse(ctx, m, { damping: 0.01 }); inv.dispose(); }, quick ? 1 : 3);
    rows.push({ kernel: 'cholinv', shape: [n], ours_ms: ms, gflops: n ** 3 / ms / 1e6 });
    g.dispose(); m.dispose();
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

  let torch: Array<number | null> = rows.map(() => null);
  let torch64: Array<number | null> = [];
  let torchMath: Array<number | null> = [];
  const attn = rows.filter((r) => r.kernel.startsWith('attention'));
  if (arg('torch')) {
    // Each distinct (kernel, shape) once: the attention rows repeat theirs per impl.
    const key = (r: { kernel: string; shape: number[] }) => `${r.kernel}|${r.shape.join(',')}`;
    const uniq = [...new Map(rows.map((r) => [key(r), { kernel: r.kernel, shape: r.shape }] as [string, TorchCase])).values()];
    const ms = torchTimes(uniq);
    const byKey = new Map(uniq.map((c, i) => [key(c), ms[i]]));
    torch = rows.map((r) => byKey.get(key(r)) ?? null);
    torch64 = torchTimes(rows.filter((r) => r.kernel === 'cholinv').map((r) => ({ kernel: 'cholinv_f64', shape: r.shape })));
    // SDPA's math backend too (the default backend for fp32 is the memory-efficient kernel, see torch_kernels.py).
    const mathUniq = [...new Map(attn.map((r) => [key(r), { kernel: `${r.kernel}_math`, shape: r.shape }] as [string, TorchCase])).entries()];
    const mms = torchTimes(mathUniq.map(([, c]) => c));
    const mathBy = new Map(mathUniq.map(([k], i) => [k, mms[i]]));
    torchMath = attn.map((r) => mathBy.get(key(r)) ?? null);
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
  writeJson(out, { adapter: info, date: new Date().toISOString(), quick, results });
  ctx.destroy();
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
