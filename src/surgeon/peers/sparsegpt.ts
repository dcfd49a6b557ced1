/**
 * SparseGPT (Frantar & Alistarh 2023; ALGORITHM.md §9) on the GPU, sequential layer by layer.
 *
 * Per decoder layer (common.ts runSequential): H = (2/N) Σ_t x xᵀ of each distinct linear input (q/k/v
 * share one) from the dense layer on the already-pruned previous layers' outputs. Per linear W [R, C]
 * (biases untouched):
 *   dead inputs (H_ii = 0): H_ii = 1, W[:, i] = 0;  H_λ = H + percdamp·mean(diag H)·I;
 *   U = the upper Cholesky factor of H_λ⁻¹ (H_λ⁻¹ = UᵀU), from one Cholesky of the index-reversed H_λ
 *   and one triangular inverse (upperFactorOfInverse);
 *   per block of ≤ 128 columns [c0, c1):
 *     unstructured: scores w²/U_jj² of the block (current weights) → exact selection of
 *       ⌊s·R·c1⌋ − ⌊s·R·c0⌋ entries over the whole block (one workgroup, selectSmallest);
 *     obsBlock: the sequential column loop (one thread per row; n:m decided there per group);
 *     lazy update W[:, c1:] −= Err · U[c0:c1, c1:] (one windowed GEMM).
 * Dispatches per block: 2 (scores, select; unstructured only) + 2. Readbacks: one pivot check per linear,
 * after all its work is queued.
 */

import type { GpuContext } from '../../gpu/context';
import type { Tensor } from '../../gpu/tensor';
import { checkCholesky, cholesky, eye, gemmWindow, symmetrizeInPlace, trsm } from '../../kernels/cholesky';
import { dampInPlace } from '../../kernels/diag';
import { gramAccumulate, mirrorLower } from '../../kernels/gram';
import type { DecoderModel, PrunableLayer } from '../../model/model';
import { PruneAbortedError } from '../options';
import { QueuePacer } from '../update-elements';
import { resolvePeer, runSequential, targetCount, type PeerOptions, type PeerReport, type ResolvedPeer } from './common';
import { blockScores, MAX_BLOCK, obsBlock, prepareDead, reverseSquare, selectSmallest } from './kernels';

/**
 * U with H⁻¹ = UᵀU (upper) for the damped H, without forming H⁻¹: P = chol(J·H_λ·J) (lower), then
 * U = J·P⁻¹·J (J reverses the indices; see sparsegpt.wgsl REVERSE). f32 throughout, like the
 * reference's torch code; the triangular inverse's error grows with κ(P) = √κ(H) rather than κ(H).
 * H is consumed (damped in place). Returns U and the Cholesky pivot flags (check with checkCholesky).
 */
export function upperFactorOfInverse(ctx: GpuContext, H: Tensor, percdamp: number): { U: Tensor; info: Tensor } {
  if (percdamp > 0) dampInPlace(ctx, H, percdamp).dispose();
  symmetrizeInPlace(ctx, H); // chol reads the lower triangle: reversal maps the upper one there
  const Hr = reverseSquare(ctx, H);
  const { L: P, info } = cholesky(ctx, Hr);
  Hr.dispose();
  const I = eye(ctx, H.shape);
  const Pinv = trsm(ctx, P, I, { lowerRhs: true });
  I.dispose();
  P.dispose();
  const U = reverseSquare(ctx, Pinv);
  Pinv.dispose();
  return { U, info };
}

// Column blocks per paced group with a signal: a block of 128 columns is ~4 dispatches, so one wait per
// ~64 dispatches (2 for OPT-125m's fc2, 3072 inputs), beside the per-linear pivot readback.
const PACE_BLOCKS = 16;

/**
 * Prune one linear W [R, C] in place given its input Hessian H [C, C] (full symmetric; H is modified).
 * `pace` is awaited before each column block (sparsegptPrune: abort check, bounded GPU queue).
 */
export async function sparsegptLinear(ctx: GpuContext, W: Tensor, H: Tensor, o: ResolvedPeer, pace?: (block: number, blocks: number) => Promise<void>): Promise<void> {
  const [R, C] = W.shape;
  prepareDead(ctx, H, W);
  const { U, info } = upperFactorOfInverse(ctx, H, o.percdamp);
  const Err = ctx.empty([R, MAX_BLOCK]);
  const owned: Tensor[] = [U, Err];
  try {
    let S: Tensor | null = null, flags: Tensor | null = null;
    if (!o.nm) {
      S = ctx.empty([R * o.blocksize]);
      flags = ctx.empty([R * o.blocksize], 'u32');
      owned.push(S, flags);
    }
    const blocks = Math.ceil(C / o.blocksize);
    for (let c0 = 0; c0 < C; c0 += o.blocksize) {
      await pace?.(c0 / o.blocksize, blocks);
      const c1 = Math.min(C, c0 + o.blocksize);
      const count = c1 - c0;
      if (o.nm) {
        obsBlock(ctx, W, U, Err, c0, count, o.nm);
      } else {
        const k = targetCount(o.sparsity, R * c1) - targetCount(o.sparsity, R * c0);
        if (k === 0) continue; // nothing pruned in this block: no error to propagate
        blockScores(ctx, W, U, c0, count, false, S!);
        selectSmallest(ctx, S!, R * count, 1, k, flags!);
        obsBlock(ctx, W, U, Err, c0, count, { flags: flags! });
      }
      if (c1 < C) {
        // W[:, c1:] −= Err[:, :count] · U[c0:c1, c1:]
        gemmWindow(ctx, { t: Err, off: 0, ld: MAX_BLOCK, stride: 0 }, { t: U, off: c0 * C + c1, ld: C, stride: 0 },
          { t: W, off: c1, ld: C, stride: 0 }, { M: R, N: C - c1, K: count, batch: 1 }, { alpha: -1, beta: 1 });
      }
    }
    await checkCholesky(ctx, info);
  } finally {
    info.dispose();
    for (const t of owned) t.dispose();
  }
}

/**
 * SparseGPT on the whole model (ALGORITHM.md §9): unstructured ('element', exact ⌊s·R·C⌋ zeros per
 * layer) or n:m. Changes the model's GPU weights in place; the caller's host arrays are untouched.
 */
export async function sparsegptPrune(ctx: GpuContext, model: DecoderModel, calib: Int32Array[], opts: PeerOptions): Promise<PeerReport> {
  const o = resolvePeer(model, opts, 'sparsegpt');
  const H = new Map<string, Tensor>();
  const pacer = new QueuePacer(ctx, opts.signal, PACE_BLOCKS);
  return runSequential(ctx, model, calib, opts, 'sparsegpt', {
    accumulate: (key, a, N) => {
      let h = H.get(key);
      if (!h) H.set(key, (h = ctx.zeros([a.shape[1], a.shape[1]])));
      gramAccumulate(ctx, a, h, { scale: 2 / N });
    },
    prune: async (l: number, linears: PrunableLayer[]) => {
      for (const h of H.values()) mirrorLower(ctx, h);
      // q/k/v share one input: each linear gets its own copy (prepareDead and the damping work in place).
      for (const [i, L] of linears.entries()) {
        if (opts.signal?.aborted) throw new PruneAbortedError(`sparsegpt: in layer ${l} before ${L.name}`);
        const src = H.get(L.inputKey)!;
        const h = ctx.empty(src.shape);
        ctx.copy(src, h);
        try {
          await sparsegptLinear(ctx, model.weight(`${L.name}.weight`), h, o, (b, n) => pacer.step(() => `sparsegpt: in layer ${l}, ${L.name} before column block ${b + 1} of ${n}`));
        } finally {
          h.dispose();
        }
        opts.onProgress?.({ phase: 'prune', layer: l, layers: model.config.numLayers, fraction: (l + (i + 1) / linears.length) / model.config.numLayers });
      }
    },
    release: () => {
      for (const h of H.values()) h.dispose();
      H.clear();
    },
  });
}
