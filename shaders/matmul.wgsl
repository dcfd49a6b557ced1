// Batched matmul  C[b] = alpha · op(A[b]) · op(B[b]) (+ bias[n]) (+ C[b] if ACCUM)
//   op(A) is M×K (A stored [M,K], or [K,M] when TRANS_A); op(B) is K×N (B stored [K,N], or [N,K] when TRANS_B).
// Three programs in this file, chosen by `#if`:
//   main (default): the tiled workgroup-memory kernel below (GPUs).
//   reg  (#if REG): register-tiled, no workgroup memory or barriers (CPU adapters); see its own comment.
//   reduce (#if REDUCE): split-K epilogue.
// Split-K (#if SPLITK, main and reg): grid z = splits·nb; workgroup z sums K range [s·kSplit, (s+1)·kSplit)
//   sequentially and writes its raw partial tile to C = scratch [S][nb][M][N]; `reduce` adds the S partials
//   pairwise and applies alpha/bias/accumulate. Rounding error (u = 2⁻²⁴): ≲ (kSplit + 2⌈log2 S⌉ + 2)·u·Σ|ab|
//   worst case instead of K·u; without SPLITK the preprocessed main is the unchanged tiled kernel.
//
// main — algorithm: classic shared-memory tiling with register blocking.
//   Workgroup = WX×WY threads computes a BM×BN output tile (BM = 8·WY, BN = 8·WX), stepping over K
//   in slices of BK. Each slice of op(A) is stored k-major in workgroup memory as As[k][m] and op(B)
//   as Bs[k][n] (vec4 granules), so the inner product step reads two vec4 of A and two of B and does
//   64 FMAs per thread (8×8 register block).
//   Thread (tx,ty) owns rows {4ty..4ty+3} ∪ {BM/2+4ty..+3} and cols {4tx..4tx+3} ∪ {BN/2+4tx..+3}:
//   the split halves make neighbouring threads read neighbouring vec4 (no bank conflicts on reads).
//   Global loads of the next K slice are issued into registers before the current slice's FMAs
//   (register prefetch), so their latency hides behind the arithmetic; one smem buffer, 2 barriers/slice,
//   or with DB two smem buffers (the prefetched slice is stored into the idle one) and 1 barrier/slice.
//   Loads are bounds-checked only in tiles that cross an edge (M, N or the last K slice); out-of-range
//   elements are zero-filled so the inner loop is branch-free.
// Workgroup memory: (BM + BN)·BK·4 bytes (×2 with DB): 8 KiB for 128×128×8, 16 KiB for 128×128×16.
// Preconditions: VEC4 only if the contiguous dimension of both stored operands is a multiple of 4
//   (then a "unit" is one vec4 along that dimension); WX·WY ≤ 256; BK a multiple of 4;
//   grid = (ceil(N/BN), ceil(M/BM), batch). strideA/strideB are 0 for a broadcast 2-D operand.

#if REDUCE
// ---- reduce (split-K epilogue) ----
// C[e] = alpha · Σ_s P[s][e] (+ bias[e % N]) (+ C[e] if ACCUM) for e < total = nb·M·N; one thread per
// element, grid folded into y. The S ≤ 64 partials are added pairwise (pairwise.wgsl, appended by the
// wrapper), so this pass adds ≲ 2·⌈log2 S⌉·u to the error bound instead of S·u.
struct RP { total: u32, N: u32, splits: u32, alpha: f32 }
@group(0) @binding(0) var<storage, read> P: array<f32>;
@group(0) @binding(1) var<storage, read> bias: array<f32>;
@group(0) @binding(2) var<storage, read_write> C: array<f32>;
@group(0) @binding(3) var<uniform> rp: RP;
override HAS_BIAS: bool = false;
override ACCUM: bool = false;

fn partial(j: u32, e: u32) -> f32 { return P[j * rp.total + e]; }

@compute @workgroup_size(256)
fn reduce(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let e = gid.x + gid.y * nwg.x * 256u;
  if (e >= rp.total) { return; }
  var x = rp.alpha * pairwiseSum(rp.splits, e);
  if (HAS_BIAS) { x += bias[e % rp.N]; }
  if (ACCUM) { x += C[e]; }
  C[e] = x;
}
#else

// Params and bindings 0–4: matmul-bindings.wgsl, prepended by the wrapper.
#if VEC4
const VW: u32 = 4u;
#else
const VW: u32 = 1u;
#endif

#if REG
// ---- REG: register-tiled kernel without workgroup memory (CPU / fallback adapters) ----
// Each thread owns a 4×4 block of C (rows m0..m0+3, cols n0..n0+3; m0 = 4·gid.y, n0 = 4·gid.x) and reads
// op(A) and op(B) straight from storage, four k at a time: 4 + 4 vec4 loads per 64 FMAs, as two 4×4
// matrices Am (column c = op(A)[m0.., k+c]) and Bm (column j = op(B)[k.., n0+j]); Cm += Am·Bm, so
// Cm[j][i] = C[m0+i][n0+j]. No barriers: on CPU backends (SwiftShader) a barrier costs more than the
// arithmetic of a whole tile slice. Rows/cols past M/N are clamped (loads stay in bounds, results are
// dropped at the store), so the k loop is branch-free; the < 4 leftover k of a split run a scalar tail.
// Workgroup memory: none. Preconditions: as the tiled kernel (VEC4 only when both stored contiguous
// dimensions are multiples of 4); grid = (ceil(N/4WX), ceil(M/4WY), nb·splits); kSplit a multiple of 4.
override WX: u32 = 8u;         // threads along N per workgroup
override WY: u32 = 8u;         // threads along M per workgroup
override RM: u32 = 1u;         // 4×4 sub-blocks per thread along M (1 or 2)
override RN: u32 = 1u;         // 4×4 sub-blocks per thread along N (1 or 2)
override TRANS_A: bool = false;
override TRANS_B: bool = false;
override HAS_BIAS: bool = false;
override ACCUM: bool = false;

// Four consecutive stored elements from flat index i (a multiple of 4 with VEC4), unchecked.
fn a4(i: u32) -> vec4<f32> {
#if VEC4
  return A[i / 4u];
#else
  return vec4<f32>(A[i], A[i + 1u], A[i + 2u], A[i + 3u]);
#endif
}
fn b4(i: u32) -> vec4<f32> {
#if VEC4
  return B[i / 4u];
#else
  return vec4<f32>(B[i], B[i + 1u], B[i + 2u], B[i + 3u]);
#endif
}
// Four stored elements of row base `rb` at columns c..c+3, each clamped to < lim (lim ≥ 4 and c % 4 == 0 with VEC4).
fn a4c(rb: u32, c: u32, lim: u32) -> vec4<f32> {
#if VEC4
  return A[(rb + min(c, lim - 4u)) / 4u];
#else
  return vec4<f32>(A[rb + min(c, lim - 1u)], A[rb + min(c + 1u, lim - 1u)], A[rb + min(c + 2u, lim - 1u)], A[rb + min(c + 3u, lim - 1u)]);
#endif
}
fn b4c(rb: u32, c: u32, lim: u32) -> vec4<f32> {
#if VEC4
  return B[(rb + min(c, lim - 4u)) / 4u];
#else
  return vec4<f32>(B[rb + min(c, lim - 1u)], B[rb + min(c + 1u, lim - 1u)], B[rb + min(c + 2u, lim - 1u)], B[rb + min(c + 3u, lim - 1u)]);
#endif
}
fn a1(i: u32) -> f32 {
#if VEC4
  return A[i / 4u][i % 4u];
#else
  return A[i];
#endif
}
fn b1(i: u32) -> f32 {
#if VEC4
  return B[i / 4u][i % 4u];
#else
  return B[i];
#endif
}

// op(A)[m..m+3, k..k+3] as a matrix whose column c is op(A)[m.., k+c]; ra = stored row bases (!TRANS_A).
fn loadA(offA: u32, ra: vec4<u32>, m: u32, k: u32) -> mat4x4<f32> {
  if (TRANS_A) {   // A stored [K, M]: 4 rows k..k+3, contiguous along m
    let M = p.M;
    return mat4x4<f32>(a4c(offA + k * M, m, M), a4c(offA + (k + 1u) * M, m, M), a4c(offA + (k + 2u) * M, m, M), a4c(offA + (k + 3u) * M, m, M));
  }
  // A stored [M, K]: 4 rows m.., contiguous along k
  return transpose(mat4x4<f32>(a4(ra[0] + k), a4(ra[1] + k), a4(ra[2] + k), a4(ra[3] + k)));
}
// op(B)[k..k+3, n..n+3] as a matrix whose column j is op(B)[k.., n+j]; rb = stored row bases (TRANS_B).
fn loadB(offB: u32, rb: vec4<u32>, n: u32, k: u32) -> mat4x4<f32> {
  if (TRANS_B) {   // B stored [N, K]: 4 rows n.., contiguous along k
    return mat4x4<f32>(b4(rb[0] + k), b4(rb[1] + k), b4(rb[2] + k), b4(rb[3] + k));
  }
  let N = p.N;     // B stored [K, N]: 4 rows k..k+3, contiguous along n
  return transpose(mat4x4<f32>(b4c(offB + k * N, n, N), b4c(offB + (k + 1u) * N, n, N), b4c(offB + (k + 2u) * N, n, N), b4c(offB + (k + 3u) * N, n, N)));
}
// Column k of op(A) at rows m..m+3 and row k of op(B) at cols n..n+3 (scalar tail).
fn colA(offA: u32, ra: vec4<u32>, m: u32, k: u32) -> vec4<f32> {
  var v: vec4<f32>;
  for (var i = 0u; i < 4u; i++) { v[i] = select(a1(ra[i] + k), a1(offA + k * p.M + min(m + i, p.M - 1u)), TRANS_A); }
  return v;
}
fn rowB(offB: u32, rb: vec4<u32>, n: u32, k: u32) -> vec4<f32> {
  var v: vec4<f32>;
  for (var j = 0u; j < 4u; j++) { v[j] = select(b1(offB + k * p.N + min(n + j, p.N - 1u)), b1(rb[j] + k), TRANS_B); }
  return v;
}
fn outer(a: vec4<f32>, b: vec4<f32>) -> mat4x4<f32> {
  return mat4x4<f32>(a * b.x, a * b.y, a * b.z, a * b.w);
}
fn store(offC: u32, m: u32, n: u32, cm: mat4x4<f32>) {
  for (var i = 0u; i < 4u; i++) {
    let row = m + i;
    if (row >= p.M) { break; }
    for (var j = 0u; j < 4u; j++) {
      let col = n + j;
      if (col >= p.N) { break; }
#if SPLITK
      C[offC + row * p.N + col] = cm[j][i];
#else
      var x = p.alpha * cm[j][i];
      if (HAS_BIAS) { x += bias[col]; }
      let idx = offC + row * p.N + col;
      if (ACCUM) { x += C[idx]; }
      C[idx] = x;
#endif
    }
  }
}

@compute @workgroup_size(WX, WY, 1)
fn reg(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(workgroup_id) wid: vec3<u32>) {
  let M = p.M;
  let N = p.N;
  let K = p.K;
  let m0 = gid.y * 4u * RM;
  let n0 = gid.x * 4u * RN;
  if (m0 >= M || n0 >= N) { return; }
#if SPLITK
  let zb = wid.z % p.nb;
  let kBeg = (wid.z / p.nb) * p.kSplit;
  let kEnd = min(kBeg + p.kSplit, K);
#else
  let zb = wid.z;
  let kBeg = 0u;
  let kEnd = K;
#endif
  let offA = zb * p.strideA;
  let offB = zb * p.strideB;
  let q = vec4<u32>(0u, 1u, 2u, 3u);
  // Stored row bases along the non-k dimension (clamped into range): rows of A [M, K], rows of B [N, K].
  let ra0 = offA + min(vec4<u32>(m0) + q, vec4<u32>(M - 1u)) * K;
  let ra1 = offA + min(vec4<u32>(m0 + 4u) + q, vec4<u32>(M - 1u)) * K;
  let rb0 = offB + min(vec4<u32>(n0) + q, vec4<u32>(N - 1u)) * K;
  let rb1 = offB + min(vec4<u32>(n0 + 4u) + q, vec4<u32>(N - 1u)) * K;
  var c00 = mat4x4<f32>();
  var c01 = mat4x4<f32>();
  var c10 = mat4x4<f32>();
  var c11 = mat4x4<f32>();
  let kFull = kBeg + (kEnd - kBeg) / 4u * 4u;
  for (var k = kBeg; k < kFull; k += 4u) {
    let a0 = loadA(offA, ra0, m0, k);
    let b0 = loadB(offB, rb0, n0, k);
    c00 += a0 * b0;
    if (RN > 1u) { c01 += a0 * loadB(offB, rb1, n0 + 4u, k); }
    if (RM > 1u) {
      let a1 = loadA(offA, ra1, m0 + 4u, k);
      c10 += a1 * b0;
      if (RN > 1u) { c11 += a1 * loadB(offB, rb1, n0 + 4u, k); }
    }
  }
  for (var k = kFull; k < kEnd; k++) {   // scalar tail (< 4 k)
    let a0 = colA(offA, ra0, m0, k);
    let a1 = colA(offA, ra1, m0 + 4u, k);
    let b0 = rowB(offB, rb0, n0, k);
    let b1 = rowB(offB, rb1, n0 + 4u, k);
    c00 += outer(a0, b0);
    c01 += outer(a0, b1);
    c10 += outer(a1, b0);
    c11 += outer(a1, b1);
  }
  let offC = wid.z * M * N;   // split-K: partial slice wid.z = split·nb + batch
  store(offC, m0, n0, c00);
  if (RN > 1u && n0 + 4u < N) { store(offC, m0, n0 + 4u, c01); }
  if (RM > 1u && m0 + 4u < M) {
    store(offC, m0 + 4u, n0, c10);
    if (RN > 1u && n0 + 4u < N) { store(offC, m0 + 4u, n0 + 4u, c11); }
  }
}
#else
override WX: u32 = 16u;        // threads along N (BN = 8·WX)
override WY: u32 = 16u;        // threads along M (BM = 8·WY)
override BK: u32 = 16u;        // K slice per smem tile
override TRANS_A: bool = false;
override TRANS_B: bool = false;
override HAS_BIAS: bool = false;
override ACCUM: bool = false;

const LMAX: u32 = 32u;         // register staging bound: BM·BK/VW/(WX·WY) ≤ 32 for every listed variant


// One unit of a stored row-major matrix (rows×cols, batch offset off) at (r, c), c a multiple of VW.
fn fetchA(off: u32, r: u32, c: u32, rows: u32, cols: u32, check: bool) -> vec4<f32> {
  if (check && (r >= rows || c >= cols)) { return vec4<f32>(0.0); }
#if VEC4
  return A[(off + r * cols + c) / 4u];
#else
  return vec4<f32>(A[off + r * cols + c], 0.0, 0.0, 0.0);
#endif
}

fn fetchB(off: u32, r: u32, c: u32, rows: u32, cols: u32, check: bool) -> vec4<f32> {
  if (check && (r >= rows || c >= cols)) { return vec4<f32>(0.0); }
#if VEC4
  return B[(off + r * cols + c) / 4u];
#else
  return vec4<f32>(B[off + r * cols + c], 0.0, 0.0, 0.0);
#endif
}

#if DB
const NBUF: u32 = 2u;          // double-buffered workgroup memory: one barrier per K slice
#else
const NBUF: u32 = 1u;
#endif

var<workgroup> As: array<vec4<f32>, NBUF * BK * WY * 2u>;   // [NBUF][BK][BM/4]
var<workgroup> Bs: array<vec4<f32>, NBUF * BK * WX * 2u>;   // [NBUF][BK][BN/4]

var<private> ra: array<vec4<f32>, LMAX>;
var<private> rb: array<vec4<f32>, LMAX>;
var<private> acc: array<vec4<f32>, 16>;   // acc[2r + h]: row r of the 8-row block, column half h

// Global → registers: this thread's units of the K slice starting at k0.
fn loadSlice(lid: u32, k0: u32, m0: u32, n0: u32, offA: u32, offB: u32, check: bool) {
  let BM = WY * 8u; let BN = WX * 8u; let NT = WX * WY;
  let M = p.M; let N = p.N; let K = p.K;
  let unitsA = BM * BK / VW;
  let unitsB = BN * BK / VW;
  for (var i = 0u; i < (unitsA + NT - 1u) / NT; i++) {
    let e = lid + i * NT;
    if (e < unitsA) {
      if (TRANS_A) { let w = BM / VW; ra[i] = fetchA(offA, k0 + e / w, m0 + (e % w) * VW, K, M, check); }
      else { let w = BK / VW; ra[i] = fetchA(offA, m0 + e / w, k0 + (e % w) * VW, M, K, check); }
    }
  }
  for (var i = 0u; i < (unitsB + NT - 1u) / NT; i++) {
    let e = lid + i * NT;
    if (e < unitsB) {
      if (TRANS_B) { let w = BK / VW; rb[i] = fetchB(offB, n0 + e / w, k0 + (e % w) * VW, N, K, check); }
      else { let w = BN / VW; rb[i] = fetchB(offB, k0 + e / w, n0 + (e % w) * VW, K, N, check); }
    }
  }
}

// Registers → workgroup buffer `buf`, k-major.
fn storeSlice(lid: u32, buf: u32) {
  let BM = WY * 8u; let BN = WX * 8u; let NT = WX * WY;
  let unitsA = BM * BK / VW;
  let unitsB = BN * BK / VW;
  let sa = buf * BK * (BM / 4u);
  let sb = buf * BK * (BN / 4u);
  for (var i = 0u; i < (unitsA + NT - 1u) / NT; i++) {
    let e = lid + i * NT;
    if (e < unitsA) {
      if (TRANS_A) {
        let w = BM / VW; let kk = e / w; let mm = (e % w) * VW;
#if VEC4
        As[sa + kk * (BM / 4u) + mm / 4u] = ra[i];
#else
        As[sa + kk * (BM / 4u) + mm / 4u][mm % 4u] = ra[i].x;
#endif
      } else {
        let w = BK / VW; let mm = e / w; let kk = (e % w) * VW;
        for (var j = 0u; j < VW; j++) { As[sa + (kk + j) * (BM / 4u) + mm / 4u][mm % 4u] = ra[i][j]; }
      }
    }
  }
  for (var i = 0u; i < (unitsB + NT - 1u) / NT; i++) {
    let e = lid + i * NT;
    if (e < unitsB) {
      if (TRANS_B) {
        let w = BK / VW; let nn = e / w; let kk = (e % w) * VW;
        for (var j = 0u; j < VW; j++) { Bs[sb + (kk + j) * (BN / 4u) + nn / 4u][nn % 4u] = rb[i][j]; }
      } else {
        let w = BN / VW; let kk = e / w; let nn = (e % w) * VW;
#if VEC4
        Bs[sb + kk * (BN / 4u) + nn / 4u] = rb[i];
#else
        Bs[sb + kk * (BN / 4u) + nn / 4u][nn % 4u] = rb[i].x;
#endif
      }
    }
  }
}

// 8×8 register block FMAs over the slice in workgroup buffer `buf`.
fn computeSlice(tx: u32, ty: u32, buf: u32) {
  let BM = WY * 8u; let BN = WX * 8u;
  let sa = buf * BK * (BM / 4u);
  let sb = buf * BK * (BN / 4u);
  for (var kk = 0u; kk < BK; kk++) {
    let a0 = As[sa + kk * (BM / 4u) + ty];
    let a1 = As[sa + kk * (BM / 4u) + WY + ty];
    let b0 = Bs[sb + kk * (BN / 4u) + tx];
    let b1 = Bs[sb + kk * (BN / 4u) + WX + tx];
    for (var r = 0u; r < 4u; r++) {
      acc[2u * r] = fma(vec4<f32>(a0[r]), b0, acc[2u * r]);
      acc[2u * r + 1u] = fma(vec4<f32>(a0[r]), b1, acc[2u * r + 1u]);
      acc[8u + 2u * r] = fma(vec4<f32>(a1[r]), b0, acc[8u + 2u * r]);
      acc[8u + 2u * r + 1u] = fma(vec4<f32>(a1[r]), b1, acc[8u + 2u * r + 1u]);
    }
  }
}

#if EPI_UNROLL
// One output row's two 4-column groups (columns c0.., c1..): v0, v1 = its accumulators (main's EPI_UNROLL).
fn storeRow(offC: u32, row: u32, c0: u32, c1: u32, v0: vec4<f32>, v1: vec4<f32>) {
  if (row >= p.M) { return; }
  storeQuad(offC + row * p.N, c0, v0);
  storeQuad(offC + row * p.N, c1, v1);
}
fn storeQuad(rowBase: u32, cbase: u32, v: vec4<f32>) {
  for (var j = 0u; j < 4u; j++) {
    let col = cbase + j;
    if (col < p.N) { C[rowBase + col] = p.alpha * v[j] + bias[col] + C[rowBase + col]; }
  }
}
#endif

@compute @workgroup_size(WX, WY, 1)
fn main(@builtin(local_invocation_id) lid3: vec3<u32>, @builtin(workgroup_id) wid: vec3<u32>) {
  let BM = WY * 8u;
  let BN = WX * 8u;
  let tx = lid3.x;
  let ty = lid3.y;
  let lid = ty * WX + tx;
  let m0 = wid.y * BM;
  let n0 = wid.x * BN;
#if SPLITK
  // Split-K: wid.z = split·nb + batch; this workgroup sums K range [kBeg, kEnd) (kSplit a multiple of BK,
  // so only the last split's last slice crosses K and the global bound checks stay exact).
  let offA = (wid.z % p.nb) * p.strideA;
  let offB = (wid.z % p.nb) * p.strideB;
  let kBeg = (wid.z / p.nb) * p.kSplit;
#else
  let offA = wid.z * p.strideA;
  let offB = wid.z * p.strideB;
#endif
  let M = p.M;
  let N = p.N;
  let K = p.K;
  let interiorMN = m0 + BM <= M && n0 + BN <= N;
#if SPLITK
  let nk = (min(kBeg + p.kSplit, K) - kBeg + BK - 1u) / BK;
  loadSlice(lid, kBeg, m0, n0, offA, offB, !(interiorMN && kBeg + BK <= K));
#else
  let nk = (K + BK - 1u) / BK;

  loadSlice(lid, 0u, m0, n0, offA, offB, !(interiorMN && BK <= K));
#endif
#if DB
  // Double buffer: the next slice is fetched before, and stored into the other buffer after, the FMAs.
  storeSlice(lid, 0u);
  workgroupBarrier();
  for (var t = 0u; t < nk; t++) {
#if SPLITK
    let k0 = kBeg + (t + 1u) * BK;
#else
    let k0 = (t + 1u) * BK;
#endif
    let more = t + 1u < nk;
    if (more) { loadSlice(lid, k0, m0, n0, offA, offB, !(interiorMN && k0 + BK <= K)); }
    computeSlice(tx, ty, t % 2u);
    if (more) { storeSlice(lid, (t + 1u) % 2u); }
    workgroupBarrier();
  }
#else
  for (var t = 0u; t < nk; t++) {
    storeSlice(lid, 0u);
    workgroupBarrier();
#if SPLITK
    let k0 = kBeg + (t + 1u) * BK;
#else
    let k0 = (t + 1u) * BK;
#endif
    if (t + 1u < nk) { loadSlice(lid, k0, m0, n0, offA, offB, !(interiorMN && k0 + BK <= K)); }
    computeSlice(tx, ty, 0u);
    workgroupBarrier();
  }
#endif

  // ---- epilogue: alpha, bias, accumulate; bounds-checked scalar stores ----
  let offC = wid.z * M * N;
#if EPI_UNROLL
  // Bias and accumulate both on (the forward's residual linears): constant acc indices. With the loop below
  // that case alone ran 7–13× slower on the H200 (K-proportional: acc apparently kept in local memory for
  // the whole K loop); unrolled it is as fast as the others (bench/kernels.ts --only epilogue,kfac). The
  // other cases keep the loop they were measured with.
  let r0 = m0 + 4u * ty;
  let r1 = m0 + BM / 2u + 4u * ty;
  let c0 = n0 + 4u * tx;
  let c1 = n0 + BN / 2u + 4u * tx;
  storeRow(offC, r0, c0, c1, acc[0], acc[1]);
  storeRow(offC, r0 + 1u, c0, c1, acc[2], acc[3]);
  storeRow(offC, r0 + 2u, c0, c1, acc[4], acc[5]);
  storeRow(offC, r0 + 3u, c0, c1, acc[6], acc[7]);
  storeRow(offC, r1, c0, c1, acc[8], acc[9]);
  storeRow(offC, r1 + 1u, c0, c1, acc[10], acc[11]);
  storeRow(offC, r1 + 2u, c0, c1, acc[12], acc[13]);
  storeRow(offC, r1 + 3u, c0, c1, acc[14], acc[15]);
#else
  for (var r = 0u; r < 8u; r++) {
    let row = m0 + select(4u * ty + r, BM / 2u + 4u * ty + r - 4u, r >= 4u);
    if (row >= M) { continue; }
    for (var h = 0u; h < 2u; h++) {
      let v = acc[2u * r + h];
      let cbase = n0 + h * (BN / 2u) + 4u * tx;
      for (var j = 0u; j < 4u; j++) {
        let col = cbase + j;
        if (col < N) {
#if SPLITK
          C[offC + row * N + col] = v[j];   // raw partial of split wid.z / nb; `reduce` applies the epilogue
#else
          var x = p.alpha * v[j];
          if (HAS_BIAS) { x += bias[col]; }
          let idx = offC + row * N + col;
          if (ACCUM) { x += C[idx]; }
          C[idx] = x;
#endif
        }
      }
    }
  }
#endif
}
#endif
#endif
