// Batched matmul  C[b] = alpha · op(A[b]) · op(B[b]) (+ bias[n]) (+ C[b] if ACCUM)
//   op(A) is M×K (A stored [M,K], or [K,M] when TRANS_A); op(B) is K×N (B stored [K,N], or [N,K] when TRANS_B).
//
// Algorithm: classic shared-memory tiling with register blocking.
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

struct Params {
  M: u32, N: u32, K: u32, strideA: u32,
  strideB: u32, alpha: f32, _p0: u32, _p1: u32,
}

#if VEC4
@group(0) @binding(0) var<storage, read> A: array<vec4<f32>>;
@group(0) @binding(1) var<storage, read> B: array<vec4<f32>>;
const VW: u32 = 4u;
#else
@group(0) @binding(0) var<storage, read> A: array<f32>;
@group(0) @binding(1) var<storage, read> B: array<f32>;
const VW: u32 = 1u;
#endif
@group(0) @binding(2) var<storage, read> bias: array<f32>;
@group(0) @binding(3) var<storage, read_write> C: array<f32>;
@group(0) @binding(4) var<uniform> p: Params;

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

@compute @workgroup_size(WX, WY, 1)
fn main(@builtin(local_invocation_id) lid3: vec3<u32>, @builtin(workgroup_id) wid: vec3<u32>) {
  let BM = WY * 8u;
  let BN = WX * 8u;
  let tx = lid3.x;
  let ty = lid3.y;
  let lid = ty * WX + tx;
  let m0 = wid.y * BM;
  let n0 = wid.x * BN;
  let offA = wid.z * p.strideA;
  let offB = wid.z * p.strideB;
  let M = p.M;
  let N = p.N;
  let K = p.K;
  let interiorMN = m0 + BM <= M && n0 + BN <= N;
  let nk = (K + BK - 1u) / BK;

  loadSlice(lid, 0u, m0, n0, offA, offB, !(interiorMN && BK <= K));
#if DB
  // Double buffer: the next slice is fetched before, and stored into the other buffer after, the FMAs.
  storeSlice(lid, 0u);
  workgroupBarrier();
  for (var t = 0u; t < nk; t++) {
    let k0 = (t + 1u) * BK;
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
    let k0 = (t + 1u) * BK;
    if (t + 1u < nk) { loadSlice(lid, k0, m0, n0, offA, offB, !(interiorMN && k0 + BK <= K)); }
    computeSlice(tx, ty, 0u);
    workgroupBarrier();
  }
#endif

  // ---- epilogue: alpha, bias, accumulate; bounds-checked scalar stores ----
  let offC = wid.z * M * N;
  for (var r = 0u; r < 8u; r++) {
    let row = m0 + select(4u * ty + r, BM / 2u + 4u * ty + r - 4u, r >= 4u);
    if (row >= M) { continue; }
    for (var h = 0u; h < 2u; h++) {
      let v = acc[2u * r + h];
      let cbase = n0 + h * (BN / 2u) + 4u * tx;
      for (var j = 0u; j < 4u; j++) {
        let col = cbase + j;
        if (col < N) {
          var x = p.alpha * v[j];
          if (HAS_BIAS) { x += bias[col]; }
          let idx = offC + row * N + col;
          if (ACCUM) { x += C[idx]; }
          C[idx] = x;
        }
      }
    }
  }
}
