// Batched matmul, warp-tiled ("w…" variants in src/kernels/matmul.ts), aimed at NVIDIA through Dawn/Vulkan:
//   C[b] = alpha · op(A[b]) · op(B[b]) (+ bias[n]) (+ C[b] if ACCUM), the same bindings, uniforms and split-K
//   contract as matmul.wgsl's main (its `reduce` pass finishes a split-K product).
//
// Algorithm: NT = WX·WY threads compute a BM×BN tile, BM = TM·WY, BN = TN·WX, where each thread owns a TM×TN
//   block (8×8, 8×16 with TN16, 16×8 with TM16) made of 4×4 blocks in mat4x4 registers (column r of block
//   c_ij = output row r; named variables, not an array: the old kernel's accumulator array, indexed at run
//   time in its epilogue, was kept in local memory on the H200). K is walked in slices of BK: op(A)'s slice
//   is stored k-major in workgroup memory (As[k][m]: transposed when A is stored [M, K]), op(B)'s as Bs[k][n],
//   so one k step reads TM/4 + TN/4 vec4 of workgroup memory for TM·TN FMAs.
// Thread → data: thread (tx, ty) owns the 4×4 blocks at rows 4ty + i·4WY and cols 4tx + j·4WX, so the
//   threads of a row read neighbouring vec4 (no bank conflicts) and A reads are broadcasts.
//   Lanes: every 32 consecutive invocations (an NVIDIA subgroup) form an LX × 32/LX patch of (tx, ty), so a
//   warp reads 32/LX distinct A vec4 and LX distinct B vec4 per k step (LX = WX: row-major, 2 and 16 at WX 16).
//   On other subgroup sizes this is only a permutation of threads: results are the same.
// Pipelining: the next slice is loaded global → registers before the current slice's FMAs; with DB it is then
//   stored into the other of two workgroup buffers (one barrier per slice), without DB into the one buffer
//   between two barriers.
// Global loads: units of 4 consecutive stored elements (one vec4 with VEC4, else 4 scalars), zero-filled past
//   the matrix edges; bounds are checked only in tiles that cross M or N and in the slice that crosses K.
//   Rows of As and Bs are padded by PAD vec4: the transposing scalar stores (A stored [M, K], B stored [N, K])
//   of the lanes that share a row then fall in different banks.
// Workgroup memory: (BM/4 + BN/4 + 2·PAD)·BK·16 bytes, ×2 with DB (w128x128x8: 16.5 KiB).
// Preconditions (matmul.ts checks them): BM·BK/4 and BN·BK/4 multiples of NT, at most UMAX units per thread;
//   32 % LX == 0, WX % LX == 0, WY % (32/LX) == 0 when NT ≥ 32; kSplit a multiple of BK (split-K); VEC4 only
//   when the contiguous dimension of both stored operands is a multiple of 4; VEC4C (vec4 C, one quad per row
//   store) only when N % 4 == 0; not both TM16 and TN16.

// Params and bindings 0–4 (C as vec4 with VEC4C): matmul-bindings.wgsl, prepended by the wrapper.

override WX: u32 = 16u;        // threads along N
override WY: u32 = 16u;        // threads along M
override BK: u32 = 8u;         // K slice per workgroup tile
override LX: u32 = 8u;         // lanes along N in a 32-lane patch
override PAD: u32 = 1u;        // vec4 of padding per workgroup-memory row
override TRANS_A: bool = false;
override TRANS_B: bool = false;
override HAS_BIAS: bool = false;
override ACCUM: bool = false;

#if TM16
const TM: u32 = 16u;
#else
const TM: u32 = 8u;
#endif
#if TN16
const TN: u32 = 16u;
#else
const TN: u32 = 8u;
#endif
const UMAX: u32 = 8u;          // staging registers per operand: BM·BK/4/NT ≤ 8 for every listed variant
#if DB
const NBUF: u32 = 2u;
#else
const NBUF: u32 = 1u;
#endif

var<workgroup> As: array<vec4<f32>, NBUF * BK * (TM * WY / 4u + PAD)>;   // [NBUF][BK][BM/4 + PAD]
var<workgroup> Bs: array<vec4<f32>, NBUF * BK * (TN * WX / 4u + PAD)>;   // [NBUF][BK][BN/4 + PAD]

var<private> sa: array<vec4<f32>, UMAX>;   // the next slice's units, global → registers
var<private> sb: array<vec4<f32>, UMAX>;
// Accumulators: c_ij = the 4×4 block at row group i, column group j (c_i2, c_i3 with TN16; c2j, c3j with TM16).
var<private> c00: mat4x4<f32>;
var<private> c01: mat4x4<f32>;
var<private> c10: mat4x4<f32>;
var<private> c11: mat4x4<f32>;
#if TN16
var<private> c02: mat4x4<f32>;
var<private> c03: mat4x4<f32>;
var<private> c12: mat4x4<f32>;
var<private> c13: mat4x4<f32>;
#endif
#if TM16
var<private> c20: mat4x4<f32>;
var<private> c21: mat4x4<f32>;
var<private> c30: mat4x4<f32>;
var<private> c31: mat4x4<f32>;
#endif

// Operand access by a flag (constant at every call, so each call folds to one array): `fromA` reads A, else B.
fn quad(fromA: bool, i: u32) -> vec4<f32> {   // stored elements i..i+3, i % 4 == 0 with VEC4
#if VEC4
  if (fromA) { return A[i / 4u]; }
  return B[i / 4u];
#else
  if (fromA) { return vec4<f32>(A[i], A[i + 1u], A[i + 2u], A[i + 3u]); }
  return vec4<f32>(B[i], B[i + 1u], B[i + 2u], B[i + 3u]);
#endif
}

// Four consecutive stored elements at (r, c..c+3) of a stored rows×cols matrix at offset off; zeros outside
// when check (with VEC4, c % 4 == 0 and cols % 4 == 0: a unit is wholly in or out).
fn unit(fromA: bool, off: u32, r: u32, c: u32, rows: u32, cols: u32, check: bool) -> vec4<f32> {
  let i = off + r * cols + c;
#if VEC4
  if (check && (r >= rows || c >= cols)) { return vec4<f32>(0.0); }
  return quad(fromA, i);
#else
  if (!check) { return quad(fromA, i); }
  var v = vec4<f32>(0.0);
  if (r < rows) {
    for (var j = 0u; j < 4u; j++) {
      if (c + j < cols) {
        if (fromA) { v[j] = A[i + j]; } else { v[j] = B[i + j]; }
      }
    }
  }
  return v;
#endif
}

// Global → registers: this thread's units of operand A (isA) or B in the slice at k0; x0 = m0 or n0. Units walk
// the stored contiguous dimension fastest (coalesced): along m / n when it is stored [K, ·] ("direct": A with
// TRANS_A, B without TRANS_B), else along k.
fn loadOperand(isA: bool, lid: u32, k0: u32, x0: u32, off: u32, check: bool) {
  let NT = WX * WY;
  let T = select(TN * WX, TM * WY, isA);   // BM or BN
  let X = select(p.N, p.M, isA);
  let direct = select(!TRANS_B, TRANS_A, isA);
  for (var u = 0u; u < T * BK / 4u / NT; u++) {
    let e = lid + u * NT;
    var v: vec4<f32>;
    if (direct) { let w = T / 4u; v = unit(isA, off, k0 + e / w, x0 + 4u * (e % w), p.K, X, check); }
    else { let w = BK / 4u; v = unit(isA, off, x0 + e / w, k0 + 4u * (e % w), X, p.K, check); }
    if (isA) { sa[u] = v; } else { sb[u] = v; }
  }
}

fn loadSlice(lid: u32, k0: u32, m0: u32, n0: u32, offA: u32, offB: u32, check: bool) {
  loadOperand(true, lid, k0, m0, offA, check);
  loadOperand(false, lid, k0, n0, offB, check);
}

// Registers → workgroup buffer `buf` of As (isA) or Bs, k-major: a direct unit is one vec4 store, a unit along k
// four scalar stores (the transpose).
fn storeOperand(isA: bool, lid: u32, buf: u32) {
  let NT = WX * WY;
  let T = select(TN * WX, TM * WY, isA);
  let S = T / 4u + PAD;
  let base = buf * BK * S;
  let direct = select(!TRANS_B, TRANS_A, isA);
  for (var u = 0u; u < T * BK / 4u / NT; u++) {
    let e = lid + u * NT;
    let v = select(sb[u], sa[u], isA);
    if (direct) {
      let w = T / 4u;
      let i = base + (e / w) * S + e % w;
      if (isA) { As[i] = v; } else { Bs[i] = v; }
    } else {
      let w = BK / 4u;
      let x = e / w;
      let i = base + 4u * (e % w) * S + x / 4u;
      for (var j = 0u; j < 4u; j++) {
        if (isA) { As[i + j * S][x % 4u] = v[j]; } else { Bs[i + j * S][x % 4u] = v[j]; }
      }
    }
  }
}

fn storeSlice(lid: u32, buf: u32) {
  storeOperand(true, lid, buf);
  storeOperand(false, lid, buf);
}

// c + a ⊗ b for a 4×4 block: column r (output row r) gains a[r]·b.
fn outer(c: mat4x4<f32>, a: vec4<f32>, b: vec4<f32>) -> mat4x4<f32> {
  return mat4x4<f32>(fma(vec4<f32>(a.x), b, c[0]), fma(vec4<f32>(a.y), b, c[1]), fma(vec4<f32>(a.z), b, c[2]), fma(vec4<f32>(a.w), b, c[3]));
}

// The register-block FMAs over the slice in workgroup buffer `buf`.
fn computeSlice(tx: u32, ty: u32, buf: u32) {
  let AS = TM * WY / 4u + PAD;
  let BS = TN * WX / 4u + PAD;
  // Indices written from the loop counter (not stepped): lets Dawn's optional integer range analysis
  // prove them in bounds and drop the robustness clamps (bench/kernels.ts --dawn-features measures that).
  for (var kk = 0u; kk < BK; kk++) {
    let ia = (buf * BK + kk) * AS + ty;
    let ib = (buf * BK + kk) * BS + tx;
    let a0 = As[ia];
    let a1 = As[ia + WY];
    let b0 = Bs[ib];
    let b1 = Bs[ib + WX];
    c00 = outer(c00, a0, b0);
    c01 = outer(c01, a0, b1);
    c10 = outer(c10, a1, b0);
    c11 = outer(c11, a1, b1);
#if TN16
    let b2 = Bs[ib + 2u * WX];
    let b3 = Bs[ib + 3u * WX];
    c02 = outer(c02, a0, b2);
    c03 = outer(c03, a0, b3);
    c12 = outer(c12, a1, b2);
    c13 = outer(c13, a1, b3);
#endif
#if TM16
    let a2 = As[ia + 2u * WY];
    let a3 = As[ia + 3u * WY];
    c20 = outer(c20, a2, b0);
    c21 = outer(c21, a2, b1);
    c30 = outer(c30, a3, b0);
    c31 = outer(c31, a3, b1);
#endif
  }
}

// One output row quad (row, col..col+3) of accumulator row v: raw partial with SPLITK, else alpha, bias, accumulate.
fn storeRow(offC: u32, row: u32, col: u32, v: vec4<f32>) {
  if (row >= p.M || col >= p.N) { return; }
  let idx = offC + row * p.N + col;
#if SPLITK
  var x = v;
#else
  var x = p.alpha * v;
#endif
#if VEC4C
#if !SPLITK
  if (HAS_BIAS) { x += vec4<f32>(bias[col], bias[col + 1u], bias[col + 2u], bias[col + 3u]); }
  if (ACCUM) { x += C[idx / 4u]; }
#endif
  C[idx / 4u] = x;
#else
  for (var j = 0u; j < 4u; j++) {
    if (col + j < p.N) {
      var y = x[j];
#if !SPLITK
      if (HAS_BIAS) { y += bias[col + j]; }
      if (ACCUM) { y += C[idx + j]; }
#endif
      C[idx + j] = y;
    }
  }
#endif
}

fn storeBlock(offC: u32, row: u32, col: u32, c: mat4x4<f32>) {
  storeRow(offC, row, col, c[0]);
  storeRow(offC, row + 1u, col, c[1]);
  storeRow(offC, row + 2u, col, c[2]);
  storeRow(offC, row + 3u, col, c[3]);
}

@compute @workgroup_size(WX * WY)
fn main(@builtin(local_invocation_index) lid: u32, @builtin(workgroup_id) wid: vec3<u32>) {
  let BM = TM * WY;
  let BN = TN * WX;
  // Lane patch (header): patch w of 32 invocations covers LX × LY threads; patches tile (tx, ty) row-major.
  let LY = 32u / LX;
  let w = lid / 32u;
  let l = lid % 32u;
  let tx = (w % (WX / LX)) * LX + l % LX;
  let ty = (w / (WX / LX)) * LY + l / LX;
  let m0 = wid.y * BM;
  let n0 = wid.x * BN;
#if SPLITK
  // wid.z = split·nb + batch; this workgroup sums K range [kBeg, kEnd) (kSplit a multiple of BK).
  let zb = wid.z % p.nb;
  let kBeg = (wid.z / p.nb) * p.kSplit;
  let kEnd = min(kBeg + p.kSplit, p.K);
#else
  let zb = wid.z;
  let kBeg = 0u;
  let kEnd = p.K;
#endif
  let offA = zb * p.strideA;
  let offB = zb * p.strideB;
  let interior = m0 + BM <= p.M && n0 + BN <= p.N;
  let nk = (kEnd - kBeg + BK - 1u) / BK;
  loadSlice(lid, kBeg, m0, n0, offA, offB, !(interior && kBeg + BK <= p.K));
  storeSlice(lid, 0u);
  workgroupBarrier();
  for (var t = 0u; t < nk; t++) {
    let k0 = kBeg + (t + 1u) * BK;
    let more = t + 1u < nk;
    if (more) { loadSlice(lid, k0, m0, n0, offA, offB, !(interior && k0 + BK <= p.K)); }
#if DB
    computeSlice(tx, ty, t % 2u);
    if (more) { storeSlice(lid, (t + 1u) % 2u); }
    workgroupBarrier();
#else
    computeSlice(tx, ty, 0u);
    workgroupBarrier();
    if (more) { storeSlice(lid, 0u); }
    workgroupBarrier();
#endif
  }

  // ---- epilogue: block (i, j) at rows r0 + i·4WY, cols c0 + j·4WX ----
  let offC = wid.z * p.M * p.N;   // split-K: partial slice wid.z = split·nb + batch
  let r0 = m0 + 4u * ty;
  let c0 = n0 + 4u * tx;
  let RS = 4u * WY;
  let CS = 4u * WX;
  storeBlock(offC, r0, c0, c00);
  storeBlock(offC, r0, c0 + CS, c01);
  storeBlock(offC, r0 + RS, c0, c10);
  storeBlock(offC, r0 + RS, c0 + CS, c11);
#if TN16
  storeBlock(offC, r0, c0 + 2u * CS, c02);
  storeBlock(offC, r0, c0 + 3u * CS, c03);
  storeBlock(offC, r0 + RS, c0 + 2u * CS, c12);
  storeBlock(offC, r0 + RS, c0 + 3u * CS, c13);
#endif
#if TM16
  storeBlock(offC, r0 + 2u * RS, c0, c20);
  storeBlock(offC, r0 + 2u * RS, c0 + CS, c21);
  storeBlock(offC, r0 + 3u * RS, c0, c30);
  storeBlock(offC, r0 + 3u * RS, c0 + CS, c31);
#endif
}
