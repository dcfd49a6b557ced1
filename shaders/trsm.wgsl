// Building blocks of the blocked SPD routines (cholesky.ts, trinv.ts, spd.ts). Two sections, chosen with #if:
//
// GEMM: windowed, batched  C = alpha·op(A)·op(B) + beta·C  with triangular shortcuts.
//   Operands are windows of larger row-major matrices: element (i,l) of op(A) is
//   A[offA + zb·strideA + zp·pstrideA + i·lda + l] (or + l·lda + i with TA); same for B (TB) and C.
//   Workgroup z = zb·pairs + zp: zb is the matrix of a batch, zp a "pair" (trinv.ts batches the
//   independent diagonal-block products of one recursion level through it).
//   A_IS_C / B_IS_C read that operand from the C binding (WebGPU forbids binding one buffer as read
//   and read_write at once); the caller guarantees the read and written windows do not overlap.
//   flags: 1 LOWER  skip output tiles strictly above the diagonal (symmetric results);
//          2 A_UPPER  op(A)(i,l) = 0 for l < i;  4 B_LOWER  op(B)(l,j) = 0 for l < j;
//          8 A_LOWER  op(A)(i,l) = 0 for l > i; 16 B_UPPER  op(B)(l,j) = 0 for l > j:
//          a tile's K loop only covers [max(row0 | col0), min(row0+TM | col0+TM)) of the flags set
//          (the zeros must be stored: the loop still reads them inside a diagonal tile);
//         32 GATED  the workgroup returns at once when G[zb·4+2] (spd.ts gate mode) is not 0;
//         64 DIAG  epilogue on the window's diagonal: C_old·dscale + dadd instead of C_old.
//   Epilogue: v = alpha·acc (+ beta·C_old when beta ≠ 0: beta = 0 never reads C, it may hold NaN).
//   Tiles (BIG): 16×16 threads, each an 8×8 register block (rows 4ty..4ty+3 and 64+4ty.., columns
//   likewise: neighbouring threads read neighbouring vec4 of workgroup memory), 128×128 output tile,
//   K slices of 8; without BIG: 4×4 blocks, 64×64 tiles, K slices of 16 (small outputs fill the GPU,
//   and CPU adapters pay per barrier). The next slice is loaded into registers while the current one
//   is multiplied. Workgroup memory 8 KiB. Grid: (ceil(N/TM), ceil(M/TM), batch·pairs).
//   SLICED: each K slice is summed on its own and then added, so the f32 rounding grows with
//   BK + K/BK additions instead of K (the diagonal of L⁻ᵀ·L⁻¹, a sum of n positive terms: 3e-6 →
//   9e-7 at n = 8192 in an f32 emulation); costs one more register block.
//
// SOLVE (diagSolve): triangular solve with one ≤32×32 diagonal block for many vectors at once.
//   Vector c (c < count) has element j at X[offX + zb·strideX + zp·pstrideX + c·sc + j·sj]; the
//   block is L[offL + zb·strideL + zp·pstrideL + i·ldL + j] (lower triangle read). trans = 0 solves
//   L·x = rhs (forward), trans = 1 solves Lᵀ·x = rhs (backward). dyn = 1: block zp has
//   nb = count = min(NB, nbEnd − zp·NB) (all diagonal blocks of a matrix in one dispatch). One thread
//   per vector, the vector in registers, the block in workgroup memory (4 KiB). L_IS_X reads the block
//   from the X binding (Cholesky panel). Grid: (ceil(count/64), batch·pairs).

#if GEMM
struct Params {
  M: u32, N: u32, K: u32, flags: u32,
  offA: u32, lda: u32, strideA: u32, pstrideA: u32,
  offB: u32, ldb: u32, strideB: u32, pstrideB: u32,
  offC: u32, ldc: u32, strideC: u32, pstrideC: u32,
  pairs: u32, alpha: f32, beta: f32, dscale: f32,
  dadd: f32, _p0: u32, _p1: u32, _p2: u32,
}

@group(0) @binding(0) var<storage, read> A: array<f32>;
@group(0) @binding(1) var<storage, read> B: array<f32>;
@group(0) @binding(2) var<storage, read_write> C: array<f32>;
@group(0) @binding(3) var<storage, read> G: array<f32>;
@group(0) @binding(4) var<uniform> g: Params;

#if BIG
const RB: u32 = 8u;    // register block rows = columns per thread
const BK: u32 = 8u;    // K slice
#else
const RB: u32 = 4u;
const BK: u32 = 16u;
#endif
const TM: u32 = 16u * RB;      // output tile rows = columns
const H4: u32 = TM / 4u;       // vec4 per K row of a tile in workgroup memory
const LPT: u32 = TM * BK / 256u;  // elements of each operand a thread loads per slice (4)

var<workgroup> As: array<vec4<f32>, BK * H4>;  // [BK][TM/4], k-major
var<workgroup> Bs: array<vec4<f32>, BK * H4>;

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

#if TA
const TRANS_A: bool = true;
#else
const TRANS_A: bool = false;
#endif
#if TB
const TRANS_B: bool = true;
#else
const TRANS_B: bool = false;
#endif

// Tile coordinates (index along M or N, k) of element e of a slice. Threads run along the stored
// contiguous dimension: k for A without TA and for B with TB.
fn pos(e: u32, kFast: bool) -> vec2<u32> {
  if (kFast) { return vec2<u32>(e / BK, e % BK); }
  return vec2<u32>(e % TM, e / TM);
}

// Element e of the slice at k0 of op(A) (tile rows from row0) and of op(B) (columns from col0),
// zero outside the matrix and outside [kLo, kHi).
fn loadA(e: u32, row0: u32, k0: u32, kHi: u32, bA: u32) -> f32 {
  let c = pos(e, !TRANS_A);
  let gi = row0 + c.x;
  let gk = k0 + c.y;
  if (gi >= g.M || gk >= kHi) { return 0.0; }
  return ldA(bA + select(gi * g.lda + gk, gk * g.lda + gi, TRANS_A));
}

fn loadB(e: u32, col0: u32, k0: u32, kHi: u32, bB: u32) -> f32 {
  let c = pos(e, TRANS_B);
  let gj = col0 + c.x;
  let gk = k0 + c.y;
  if (gj >= g.N || gk >= kHi) { return 0.0; }
  return ldB(bB + select(gk * g.ldb + gj, gj * g.ldb + gk, TRANS_B));
}

var<private> acc: array<vec4<f32>, RB * RB / 4u>;  // acc[(4·hr + r)·(RB/4) + hc]: row r of row half hr, column half hc

// Four outputs of one row (columns c..c+3 of the window), epilogue applied.
fn put(bC: u32, i: u32, c: u32, v: vec4<f32>) {
  if (i >= g.M) { return; }
  for (var j = 0u; j < 4u; j++) {
    let jj = c + j;
    if (jj < g.N) {
      let idx = bC + i * g.ldc + jj;
      var x = g.alpha * v[j];
      if (g.beta != 0.0) {
        var old = C[idx];
        if ((g.flags & 64u) != 0u && i == jj) { old *= g.dscale; }
        x += g.beta * old;
      }
      if ((g.flags & 64u) != 0u && i == jj) { x += g.dadd; }
      C[idx] = x;
    }
  }
}

@compute @workgroup_size(16, 16)
fn gemm(@builtin(local_invocation_id) lid: vec3<u32>, @builtin(workgroup_id) wid: vec3<u32>) {
  let tx = lid.x;
  let ty = lid.y;
  let t = ty * 16u + tx;
  let zb = wid.z / g.pairs;
  let zp = wid.z % g.pairs;
  let row0 = wid.y * TM;
  let col0 = wid.x * TM;
  let f = g.flags;
  if ((f & 1u) != 0u && col0 > row0 + TM - 1u) { return; }
  if ((f & 32u) != 0u && G[zb * 4u + 2u] != 0.0) { return; }
  var kLo = 0u;
  var kHi = g.K;
  if ((f & 2u) != 0u) { kLo = max(kLo, row0); }
  if ((f & 4u) != 0u) { kLo = max(kLo, col0); }
  if ((f & 8u) != 0u) { kHi = min(kHi, row0 + TM); }
  if ((f & 16u) != 0u) { kHi = min(kHi, col0 + TM); }
  let bA = g.offA + zb * g.strideA + zp * g.pstrideA;
  let bB = g.offB + zb * g.strideB + zp * g.pstrideB;
  let bC = g.offC + zb * g.strideC + zp * g.pstrideC;
  for (var q = 0u; q < RB * RB / 4u; q++) { acc[q] = vec4<f32>(0.0); }
  var ra: array<f32, LPT>;
  var rb: array<f32, LPT>;
  if (kLo < kHi) {
    for (var q = 0u; q < LPT; q++) {
      ra[q] = loadA(t + q * 256u, row0, kLo, kHi, bA);
      rb[q] = loadB(t + q * 256u, col0, kLo, kHi, bB);
    }
  }
  for (var k0 = kLo; k0 < kHi; k0 += BK) {
    for (var q = 0u; q < LPT; q++) {
      let ca = pos(t + q * 256u, !TRANS_A);
      As[ca.y * H4 + ca.x / 4u][ca.x % 4u] = ra[q];
      let cb = pos(t + q * 256u, TRANS_B);
      Bs[cb.y * H4 + cb.x / 4u][cb.x % 4u] = rb[q];
    }
    workgroupBarrier();
    let kn = k0 + BK;
    if (kn < kHi) {
      for (var q = 0u; q < LPT; q++) {
        ra[q] = loadA(t + q * 256u, row0, kn, kHi, bA);
        rb[q] = loadB(t + q * 256u, col0, kn, kHi, bB);
      }
    }
#if SLICED
    let before = acc;
    for (var q = 0u; q < RB * RB / 4u; q++) { acc[q] = vec4<f32>(0.0); }
#endif
    for (var kk = 0u; kk < BK; kk++) {
      let a0 = As[kk * H4 + ty];
      let b0 = Bs[kk * H4 + tx];
#if BIG
      let a1 = As[kk * H4 + 16u + ty];
      let b1 = Bs[kk * H4 + 16u + tx];
      for (var r = 0u; r < 4u; r++) {
        acc[2u * r] = fma(vec4<f32>(a0[r]), b0, acc[2u * r]);
        acc[2u * r + 1u] = fma(vec4<f32>(a0[r]), b1, acc[2u * r + 1u]);
        acc[8u + 2u * r] = fma(vec4<f32>(a1[r]), b0, acc[8u + 2u * r]);
        acc[8u + 2u * r + 1u] = fma(vec4<f32>(a1[r]), b1, acc[8u + 2u * r + 1u]);
      }
#else
      for (var r = 0u; r < 4u; r++) { acc[r] = fma(vec4<f32>(a0[r]), b0, acc[r]); }
#endif
    }
#if SLICED
    for (var q = 0u; q < RB * RB / 4u; q++) { acc[q] += before[q]; }
#endif
    workgroupBarrier();
  }
  // constant accumulator indices (a loop here kept acc in local memory in matmul.wgsl's experience)
  let r0 = row0 + 4u * ty;
  let c0 = col0 + 4u * tx;
#if BIG
  let r1 = r0 + TM / 2u;
  let c1 = c0 + TM / 2u;
  put(bC, r0, c0, acc[0]); put(bC, r0, c1, acc[1]);
  put(bC, r0 + 1u, c0, acc[2]); put(bC, r0 + 1u, c1, acc[3]);
  put(bC, r0 + 2u, c0, acc[4]); put(bC, r0 + 2u, c1, acc[5]);
  put(bC, r0 + 3u, c0, acc[6]); put(bC, r0 + 3u, c1, acc[7]);
  put(bC, r1, c0, acc[8]); put(bC, r1, c1, acc[9]);
  put(bC, r1 + 1u, c0, acc[10]); put(bC, r1 + 1u, c1, acc[11]);
  put(bC, r1 + 2u, c0, acc[12]); put(bC, r1 + 2u, c1, acc[13]);
  put(bC, r1 + 3u, c0, acc[14]); put(bC, r1 + 3u, c1, acc[15]);
#else
  put(bC, r0, c0, acc[0]);
  put(bC, r0 + 1u, c0, acc[1]);
  put(bC, r0 + 2u, c0, acc[2]);
  put(bC, r0 + 3u, c0, acc[3]);
#endif
}
#else
struct Params {
  nb: u32, count: u32, trans: u32, dyn: u32,
  offL: u32, ldL: u32, strideL: u32, offX: u32,
  sj: u32, sc: u32, strideX: u32, pairs: u32,
  pstrideL: u32, pstrideX: u32, nbEnd: u32, _p: u32,
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
  let zb = wid.y / s.pairs;
  let zp = wid.y % s.pairs;
  var nb = s.nb;
  var count = s.count;
  if (s.dyn != 0u) {
    nb = min(NB, s.nbEnd - zp * NB);
    count = nb;
  }
  let bl = s.offL + zb * s.strideL + zp * s.pstrideL;
  // pad the block to NB×NB with the identity so every loop below has the constant bound NB
  // (the compiler can then unroll it and keep x in registers instead of local memory)
  for (var e = lid; e < NB * NB; e += 64u) {
    let i = e / NB;
    let j = e % NB;
    var v = select(0.0, 1.0, i == j);
    if (i < nb && j <= i) { v = ldL(bl + i * s.ldL + j); }
    Ls[e] = v;
  }
  workgroupBarrier();
  let c = wid.x * 64u + lid;
  if (c >= count) { return; }
  let bx = s.offX + zb * s.strideX + zp * s.pstrideX + c * s.sc;
  var x: array<f32, NB>;
  for (var j = 0u; j < NB; j++) {
    x[j] = 0.0;
    if (j < nb) { x[j] = X[bx + j * s.sj]; }
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
    if (j < nb) { X[bx + j * s.sj] = x[j]; }
  }
}
#endif
