// Building blocks of the blocked SPD routines (cholesky.ts, spd.ts). Two sections, chosen with #if:
//
// GEMM: strided sub-matrix update  C = beta·C + alpha·op(A)·op(B), batched over workgroup_id.z.
//   Operands are windows of larger row-major matrices: element (i,l) of op(A) is
//   A[offA + z·strideA + i·lda + l] (or + l·lda + i with TA); same for B (TB) and C (ldc).
//   A_IS_C / B_IS_C read that operand from the C binding: the blocked Cholesky reads its panel from
//   the very matrix it updates (WebGPU forbids binding one buffer as read and read_write at once);
//   the caller guarantees the read window and the written window do not overlap.
//   flags bit 0 (LOWER): skip output tiles strictly above the diagonal (symmetric results, SYRK);
//   flags bit 1 (TRI_K): op(A)(i,l) = 0 for l < i and op(B)(l,j) = 0 for l < j (both triangular),
//   so a tile starts its K loop at max(row0, col0) — used for L⁻ᵀ·L⁻¹.
//   Thread mapping: 16×16 threads, 64×64 output tile, thread (tx,ty) owns rows ty+16r, cols tx+16c
//   (r,c < 4) so that neighbouring threads read neighbouring smem words. K slices of 16.
//   Workgroup memory: 2·64·16·4 = 8 KiB. Grid: (ceil(N/64), ceil(M/64), batch).
//
// SOLVE (diagSolve): triangular solve with one ≤32×32 diagonal block for many vectors at once.
//   Vector c (c < count) has element j at X[offX + z·strideX + c·sc + j·sj]; the block is
//   L[offL + z·strideL + i·ldL + j] (lower triangle read). trans = 0 solves L·x = rhs (forward),
//   trans = 1 solves Lᵀ·x = rhs (backward). One thread per vector, the vector in registers, the
//   block in workgroup memory (4 KiB). L_IS_X reads the block from the X binding (Cholesky panel).
//   Grid: (ceil(count/64), batch).

#if GEMM
struct Params {
  M: u32, N: u32, K: u32, flags: u32,
  offA: u32, lda: u32, strideA: u32, offB: u32,
  ldb: u32, strideB: u32, offC: u32, ldc: u32,
  strideC: u32, alpha: f32, beta: f32, _pad: u32,
}

@group(0) @binding(0) var<storage, read> A: array<f32>;
@group(0) @binding(1) var<storage, read> B: array<f32>;
@group(0) @binding(2) var<storage, read_write> C: array<f32>;
@group(0) @binding(3) var<uniform> g: Params;

const TM: u32 = 64u;   // output tile rows and columns (16 threads × 4 registers)
const TK: u32 = 16u;   // K slice: 8 KiB of smem for both operands, half the 16 KiB baseline limit

var<workgroup> As: array<f32, 1024>;  // [TK][TM]
var<workgroup> Bs: array<f32, 1024>;  // [TK][TM]

fn ldA(i: u32) -> f32 {
#if A_IS_C
  return C[i];
#else
  return A[i];
#endif
}

fn ldB(i: u32) -> f32 {
#if B_IS_C
  return C[i];
#else
  return B[i];
#endif
}

@compute @workgroup_size(16, 16)
fn gemm(@builtin(local_invocation_id) lid: vec3<u32>, @builtin(workgroup_id) wid: vec3<u32>) {
  let tx = lid.x;
  let ty = lid.y;
  let t = ty * 16u + tx;
  let row0 = wid.y * TM;
  let col0 = wid.x * TM;
  if ((g.flags & 1u) != 0u && col0 > row0 + TM - 1u) { return; }
  var k0 = 0u;
  if ((g.flags & 2u) != 0u) { k0 = max(row0, col0); }
  let bA = g.offA + wid.z * g.strideA;
  let bB = g.offB + wid.z * g.strideB;
  let bC = g.offC + wid.z * g.strideC;
  var acc: array<f32, 16>;
  for (var q = 0u; q < 16u; q++) { acc[q] = 0.0; }
  for (var kt = k0; kt < g.K; kt += TK) {
    for (var q = 0u; q < 4u; q++) {
      let e = t + q * 256u;
#if TA
      let ii = e % TM;
      let kk = e / TM;
#else
      let kk = e % TK;
      let ii = e / TK;
#endif
      let gi = row0 + ii;
      let gk = kt + kk;
      var v = 0.0;
      if (gi < g.M && gk < g.K) {
#if TA
        v = ldA(bA + gk * g.lda + gi);
#else
        v = ldA(bA + gi * g.lda + gk);
#endif
      }
      As[kk * TM + ii] = v;
#if TB
      let kb = e % TK;
      let jj = e / TK;
#else
      let jj = e % TM;
      let kb = e / TM;
#endif
      let gj = col0 + jj;
      let gkb = kt + kb;
      var w = 0.0;
      if (gj < g.N && gkb < g.K) {
#if TB
        w = ldB(bB + gj * g.ldb + gkb);
#else
        w = ldB(bB + gkb * g.ldb + gj);
#endif
      }
      Bs[kb * TM + jj] = w;
    }
    workgroupBarrier();
    for (var kk = 0u; kk < TK; kk++) {
      var a: array<f32, 4>;
      var b: array<f32, 4>;
      for (var r = 0u; r < 4u; r++) { a[r] = As[kk * TM + ty + 16u * r]; }
      for (var c = 0u; c < 4u; c++) { b[c] = Bs[kk * TM + tx + 16u * c]; }
      for (var r = 0u; r < 4u; r++) {
        for (var c = 0u; c < 4u; c++) { acc[r * 4u + c] += a[r] * b[c]; }
      }
    }
    workgroupBarrier();
  }
  for (var r = 0u; r < 4u; r++) {
    let i = row0 + ty + 16u * r;
    if (i >= g.M) { continue; }
    for (var c = 0u; c < 4u; c++) {
      let j = col0 + tx + 16u * c;
      if (j >= g.N) { continue; }
      let idx = bC + i * g.ldc + j;
      var v = g.alpha * acc[r * 4u + c];
      if (g.beta != 0.0) { v += g.beta * C[idx]; }  // beta = 0 never reads C (it may hold NaN garbage)
      C[idx] = v;
    }
  }
}
#else
struct Params {
  nb: u32, count: u32, trans: u32, _p0: u32,
  offL: u32, ldL: u32, strideL: u32, offX: u32,
  sj: u32, sc: u32, strideX: u32, _p1: u32,
}

@group(0) @binding(0) var<storage, read> Lm: array<f32>;
@group(0) @binding(1) var<storage, read_write> X: array<f32>;
@group(0) @binding(2) var<uniform> s: Params;

const NB: u32 = 32u;   // diagonal block size; must equal NB in cholesky.ts (registers: 32 floats per thread)
var<workgroup> Ls: array<f32, 1024>;  // NB×NB

fn ldL(i: u32) -> f32 {
#if L_IS_X
  return X[i];
#else
  return Lm[i];
#endif
}

@compute @workgroup_size(64)
fn diagSolve(@builtin(local_invocation_index) lid: u32, @builtin(workgroup_id) wid: vec3<u32>) {
  let bl = s.offL + wid.y * s.strideL;
  // pad the block to NB×NB with the identity so every loop below has the constant bound NB
  // (the compiler can then unroll it and keep x in registers instead of local memory)
  for (var e = lid; e < NB * NB; e += 64u) {
    let i = e / NB;
    let j = e % NB;
    var v = select(0.0, 1.0, i == j);
    if (i < s.nb && j <= i) { v = ldL(bl + i * s.ldL + j); }
    Ls[e] = v;
  }
  workgroupBarrier();
  let c = wid.x * 64u + lid;
  if (c >= s.count) { return; }
  let bx = s.offX + wid.y * s.strideX + c * s.sc;
  var x: array<f32, NB>;
  for (var j = 0u; j < NB; j++) {
    x[j] = 0.0;
    if (j < s.nb) { x[j] = X[bx + j * s.sj]; }
  }
  if (s.trans == 0u) {
    for (var j = 0u; j < NB; j++) {
      var acc = x[j];
      for (var l = 0u; l < j; l++) { acc -= Ls[j * NB + l] * x[l]; }
      x[j] = acc / Ls[j * NB + j];
    }
  } else {
    for (var jj = NB; jj > 0u; jj--) {
      let j = jj - 1u;
      var acc = x[j];
      for (var l = j + 1u; l < NB; l++) { acc -= Ls[l * NB + j] * x[l]; }
      x[j] = acc / Ls[j * NB + j];
    }
  }
  for (var j = 0u; j < NB; j++) {
    if (j < s.nb) { X[bx + j * s.sj] = x[j]; }
  }
}
#endif
