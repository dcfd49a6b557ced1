import { describe, expect, it } from 'vitest';
import { gpu } from './helpers/gpu';
import { randn } from './helpers/rng';
import { gemmWindow, type GemmOptions, type Window } from '../src/kernels/cholesky';
import { triangularInverse } from '../src/kernels/trinv';
import { cholResidual } from '../src/kernels/spd';
import { choleskyF64, spdWithCondition } from '../src/reference/spd';
import type { GpuContext } from '../src/gpu/context';

const U = 2 ** -24;

/** op(A)·op(B) on host windows in float64, with the kernel's epilogue (beta, diagonal terms). */
function gemmRef(
  a: Float32Array, aw: Omit<Window, 't'>, b: Float32Array, bw: Omit<Window, 't'>, c0: Float32Array, cw: Omit<Window, 't'>,
  M: number, N: number, K: number, z: number, p: number, o: GemmOptions,
): { c: Float64Array; scale: Float64Array } {
  const at = (w: Omit<Window, 't'>, x: Float32Array, i: number, j: number) => x[w.off + z * w.stride + p * (w.pstride ?? 0) + (w.trans ? j * w.ld + i : i * w.ld + j)];
  const c = new Float64Array(M * N);
  const scale = new Float64Array(M * N);
  for (let i = 0; i < M; i++) {
    for (let j = 0; j < N; j++) {
      let s = 0, abs = 0;
      for (let k = 0; k < K; k++) { const v = at(aw, a, i, k) * at(bw, b, k, j); s += v; abs += Math.abs(v); }
      let v = (o.alpha ?? 1) * s;
      const diag = i === j && (o.diagScale !== undefined || o.diagAdd !== undefined);
      if (o.beta) v += o.beta * at(cw, c0, i, j) * (diag ? o.diagScale ?? 1 : 1);
      if (diag) v += o.diagAdd ?? 0;
      c[i * N + j] = v;
      scale[i * N + j] = Math.abs(o.alpha ?? 1) * abs + Math.abs(v);
    }
  }
  return { c, scale };
}

/** Random data, made triangular where the flags promise stored zeros. */
function operand(rows: number, cols: number, seed: number, zero?: (i: number, j: number) => boolean): Float32Array {
  const r = randn(rows * cols, seed);
  return Float32Array.from(r, (v, e) => (zero?.(Math.floor(e / cols), e % cols) ? 0 : v));
}

async function checkGemm(
  ctx: GpuContext, A: Float32Array, aw: Omit<Window, 't'>, B: Float32Array, bw: Omit<Window, 't'>, C: Float32Array, cw: Omit<Window, 't'>,
  d: { M: number; N: number; K: number; batch: number; pairs?: number }, o: GemmOptions,
): Promise<void> {
  const ta = ctx.upload(A, [A.length]);
  const tb = ctx.upload(B, [B.length]);
  const tc = ctx.upload(C, [C.length]);
  gemmWindow(ctx, { ...aw, t: ta }, { ...bw, t: tb }, { ...cw, t: tc }, d, o);
  const got = await tc.read();
  for (let z = 0; z < d.batch; z++) {
    for (let p = 0; p < (d.pairs ?? 1); p++) {
      const { c, scale } = gemmRef(A, aw, B, bw, C, cw, d.M, d.N, d.K, z, p, o);
      for (let i = 0; i < d.M; i++) {
        for (let j = 0; j < d.N; j++) {
          if (o.lower && Math.floor(j / (o.tile ?? 64)) > Math.floor(i / (o.tile ?? 64))) continue; // tile not computed
          const g = got[cw.off + z * cw.stride + p * (cw.pstride ?? 0) + i * cw.ld + j];
          expect(Math.abs(g - c[i * d.N + j])).toBeLessThanOrEqual(4 * (d.K + 2) * U * scale[i * d.N + j] + 1e-30);
        }
      }
    }
  }
  for (const t of [ta, tb, tc]) t.dispose();
}

describe('windowed GEMM (trsm.wgsl), both tiles', () => {
  it.each([64, 128] as const)('tile %i: plain, transposed, triangular K ranges, diagonal epilogue, lower tiles', async (tile) => {
    const ctx = await gpu();
    // C[70×150] = 0.5·A·B + 2·C, windows inside larger matrices, a batch of 2
    const [M, N, K] = [70, 150, 45];
    await checkGemm(ctx, operand(2, 80 * 50, 1), { off: 3, ld: 50, stride: 80 * 50 }, operand(2, 50 * 160, 2), { off: 5 * 160 + 1, ld: 160, stride: 50 * 160 },
      operand(2, 72 * 151, 3), { off: 151, ld: 151, stride: 72 * 151 }, { M, N, K, batch: 2 }, { alpha: 0.5, beta: 2, tile });
    // X = Wᵀ·W with W lower (Wᵀ upper, W lower: triK), lower tiles, K slices summed apart, n = 150 (not a tile multiple)
    const n = 150;
    const W = operand(n, n, 4, (i, j) => j > i);
    await checkGemm(ctx, W, { off: 0, ld: n, stride: 0, trans: true }, W, { off: 0, ld: n, stride: 0 }, new Float32Array(n * n), { off: 0, ld: n, stride: 0 },
      { M: n, N: n, K: n, batch: 1 }, { lower: true, triK: true, sliced: true, tile });
    // H' = I − W·L (both lower), diagonal +1; then S-style update −T·Wᵀ + C·(2 on the diagonal) with Wᵀ upper
    const L = operand(n, n, 5, (i, j) => j > i);
    await checkGemm(ctx, W, { off: 0, ld: n, stride: 0 }, L, { off: 0, ld: n, stride: 0 }, operand(n, n, 6), { off: 0, ld: n, stride: 0 },
      { M: n, N: n, K: n, batch: 1 }, { alpha: -1, lower: true, aLower: true, bLower: true, diagAdd: 1, tile });
    await checkGemm(ctx, operand(n, n, 7), { off: 0, ld: n, stride: 0 }, W, { off: 0, ld: n, stride: 0, trans: true }, operand(n, n, 8), { off: 0, ld: n, stride: 0 },
      { M: n, N: n, K: n, batch: 1 }, { alpha: -1, beta: 1, lower: true, bUpper: true, diagScale: 2, tile });
  });

  it('pairs of windows batched through z, operand read from the output buffer', async () => {
    const ctx = await gpu();
    // 3 pairs × batch 2 of 12×24·24×24 products stepping along a 100×100 matrix's diagonal, A inside C's buffer
    const n = 100;
    const step = 30 * (n + 1);
    const buf = operand(2, n * n, 9);
    const ta = ctx.upload(buf, [buf.length]);
    const B = operand(1, 3 * 24 * 24, 10);
    const tb = ctx.upload(B, [B.length]);
    const aw = { off: 0, ld: n, stride: n * n, pstride: step };
    const bw = { off: 0, ld: 24, stride: 0, pstride: 24 * 24 };
    const cw = { off: 24 * n, ld: n, stride: n * n, pstride: step };
    gemmWindow(ctx, { ...aw, t: ta }, { ...bw, t: tb }, { ...cw, t: ta }, { M: 12, N: 24, K: 24, batch: 2, pairs: 3 }, { alpha: -1 });
    const got = await ta.read();
    for (let z = 0; z < 2; z++) {
      for (let p = 0; p < 3; p++) {
        const { c, scale } = gemmRef(buf, aw, B, bw, buf, cw, 12, 24, 24, z, p, { alpha: -1 });
        for (let i = 0; i < 12; i++) {
          for (let j = 0; j < 24; j++) {
            const g = got[cw.off + z * n * n + p * step + i * n + j];
            expect(Math.abs(g - c[i * 24 + j])).toBeLessThanOrEqual(4 * 26 * U * scale[i * 24 + j]);
          }
        }
      }
    }
    ta.dispose();
    tb.dispose();
  });

  it('a gated product leaves its output alone while the gate mode is not 0', async () => {
    const ctx = await gpu();
    const n = 40;
    const A = ctx.upload(operand(n, n, 11), [n, n]);
    const C0 = operand(2, n * n, 12);
    const C = ctx.upload(C0, [2, n, n]);
    const gs = ctx.upload(new Float32Array([0, 0, 2, 0, 0, 0, 0, 0]), [8]); // matrix 0 frozen, matrix 1 active
    const w = (t: typeof A, stride: number) => ({ t, off: 0, ld: n, stride });
    gemmWindow(ctx, w(A, 0), w(A, 0), w(C, n * n), { M: n, N: n, K: n, batch: 2 }, { gate: gs });
    const got = await C.read();
    expect(Array.from(got.subarray(0, n * n))).toEqual(Array.from(C0.subarray(0, n * n)));
    expect(Array.from(got.subarray(n * n))).not.toEqual(Array.from(C0.subarray(n * n)));
    for (const t of [A, C, gs]) t.dispose();
  });
});

describe('triangular inverse by batched recursive doubling', () => {
  it.each([[1, 1], [31, 1], [33, 1], [100, 2], [200, 1]])('n=%i (batch %i): W·L = I within κ(L)·n·u', async (n, batch) => {
    const ctx = await gpu();
    const data = new Float32Array(batch * n * n);
    for (let q = 0; q < batch; q++) data.set(Float32Array.from(choleskyF64(spdWithCondition(n, 1e2, 30 + n + q), n).L), q * n * n);
    const L = ctx.upload(data, batch > 1 ? [batch, n, n] : [n, n]);
    const W = triangularInverse(ctx, L);
    const w = await W.read();
    for (let q = 0; q < batch; q++) {
      const o = q * n * n;
      let worst = 0;
      for (let i = 0; i < n; i++) {
        for (let j = 0; j < n; j++) {
          if (j > i) { expect(w[o + i * n + j]).toBe(0); continue; }
          let s = i === j ? -1 : 0;
          for (let k = j; k <= i; k++) s += w[o + i * n + k] * data[o + k * n + j];
          worst = Math.max(worst, Math.abs(s));
        }
      }
      // κ(L) = √κ(A) = 10
      expect(worst).toBeLessThanOrEqual(10 * (n + 1) * U * 4);
    }
    L.dispose();
    W.dispose();
  });
});

describe('double-float Cholesky residual E = M − L·Lᵀ', () => {
  it('matches float64 to ≤ 1e-10 of |L||Lᵀ| (f32 would be ~1e-7) at κ = 1e6, batch of 2, n = 150', async () => {
    const ctx = await gpu();
    const n = 150;
    const mats = [0, 1].map((q) => Float32Array.from(spdWithCondition(n, 1e6, 60 + q)));
    const Ls = mats.map((m) => Float32Array.from(choleskyF64(Float64Array.from(m), n).L));
    const pack = (xs: Float32Array[]) => { const d = new Float32Array(2 * n * n); xs.forEach((x, q) => d.set(x, q * n * n)); return d; };
    const M = ctx.upload(pack(mats), [2, n, n]);
    const L = ctx.upload(pack(Ls), [2, n, n]);
    const E = cholResidual(ctx, M, L);
    const e = await E.read();
    let worst = 0;
    for (let q = 0; q < 2; q++) {
      for (let i = 0; i < n; i++) {
        for (let j = 0; j <= i; j++) {
          let s = mats[q][i * n + j], abs = 0;
          for (let k = 0; k <= j; k++) { const v = Ls[q][i * n + k] * Ls[q][j * n + k]; s -= v; abs += Math.abs(v); }
          worst = Math.max(worst, Math.abs(e[q * n * n + i * n + j] - s) / abs);
        }
      }
    }
    console.log(`cholResidual: max |E − E64| / (|L||Lᵀ|) = ${worst.toExponential(2)}`);
    expect(worst).toBeLessThanOrEqual(1e-10);
    for (const t of [M, L, E]) t.dispose();
  });
});
