// Covariance ("gram") kernels for K-FAC factors: acc += scale · X'ᵀX' on the lower triangle, where
// X is [T, d] row-major (token rows, only the first `rows` used) and X' = [X | 1] when ONES (the bias
// feature is the last index, n = d + 1; otherwise n = d).
//
// main: one workgroup per (lower-triangle output tile, token split s).
//   Tiles: BT×BT with BT = 8·WT, WT×WT threads, 8×8 register block per thread, same thread mapping and
//   register prefetch as matmul.wgsl (rows {4ty..+3} ∪ {BT/2+4ty..+3}, cols likewise with tx).
//   Both operands are column ranges of the same X rows, stored token-major, so both slices are copied
//   into workgroup memory without a transpose (Xi[k][i], Xj[k][j], vec4 granules).
//   Only tiles with tj ≤ ti are dispatched (wid.x = ti(ti+1)/2 + tj); in diagonal tiles only j ≤ i is
//   written, so the upper triangle is never touched.
//   Split-K inside the kernel: the split's tokens are summed in registers in chunks of `chunk` tokens
//   (≈ √tokens); after each chunk the register block is added (× scale) into dst, then cleared.
//   Blocked summation ⇒ rounding error ≲ (chunk + #chunks + 2⌈log2 S⌉)·eps·Σ_t|x_ti x_tj| worst case
//   (S partials added pairwise by `reduce`), ≤ 2√T·eps instead of T·eps (typical errors are the square
//   root of that). Short splits (≥ 256 tokens when tiles are few, for occupancy) only lower this bound.
//   mode 0: dst = acc (S = 1). mode 1: dst = partials [S, n, n], split s overwrites its slice on its
//   first chunk; `reduce` then adds Σ_s partials into acc (lower triangle only).
//   Workgroup memory: 2·BT·BK·4 bytes (16 KiB for BT = 128, BK = 16).
//   Preconditions: VEC4 only if d % 4 == 0; chunk and tokensPerSplit multiples of BK.
// mirror (#if MIRROR): 16×16 tiles on/above the diagonal; each workgroup reads the transposed lower
//   tile coalesced into workgroup memory (16×17 floats, padded against bank conflicts) and writes the
//   strictly upper elements.

#if MIRROR
struct MP { n: u32, tiles: u32, _p0: u32, _p1: u32 }
@group(0) @binding(0) var<storage, read_write> M: array<f32>;
@group(0) @binding(1) var<uniform> mp: MP;
var<workgroup> tile: array<f32, 272>;   // 16 × 17

fn triDecode(id: u32) -> vec2<u32> {
  var i = u32((sqrt(8.0 * f32(id) + 1.0) - 1.0) * 0.5);
  while (i * (i + 1u) / 2u > id) { i -= 1u; }
  while ((i + 1u) * (i + 2u) / 2u <= id) { i += 1u; }
  return vec2<u32>(i, id - i * (i + 1u) / 2u);
}

@compute @workgroup_size(16, 16)
fn mirror(@builtin(local_invocation_id) l: vec3<u32>, @builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let id = wid.x + wid.y * nwg.x;
  if (id >= mp.tiles) { return; }
  let tc = triDecode(id);            // tc.x ≥ tc.y: lower source tile (row block tc.x, col block tc.y)
  let n = mp.n;
  let sr = tc.x * 16u + l.y;
  let sc = tc.y * 16u + l.x;
  if (sr < n && sc < n) { tile[l.y * 17u + l.x] = M[sr * n + sc]; }
  workgroupBarrier();
  let r = tc.y * 16u + l.y;          // destination (upper): row block tc.y, col block tc.x
  let c = tc.x * 16u + l.x;
  if (r < n && c < n && c > r) { M[r * n + c] = tile[l.x * 17u + l.y]; }
}
#else

struct Params {
  d: u32, n: u32, rows: u32, tokensPerSplit: u32,
  chunk: u32, mode: u32, tiles: u32, splits: u32,
  scale: f32, _p0: u32, _p1: u32, _p2: u32,
}

#if VEC4
@group(0) @binding(0) var<storage, read> X: array<vec4<f32>>;
const VW: u32 = 4u;
#else
@group(0) @binding(0) var<storage, read> X: array<f32>;
const VW: u32 = 1u;
#endif
@group(0) @binding(1) var<storage, read_write> D: array<f32>;
@group(0) @binding(2) var<uniform> p: Params;

override WT: u32 = 16u;      // threads per tile side (BT = 8·WT)
override BK: u32 = 16u;      // tokens per smem slice
override ONES: bool = false;

const LMAX: u32 = 32u;       // register staging bound: BT·BK/VW/WT² ≤ 32 for every listed variant

var<workgroup> Xi: array<vec4<f32>, BK * WT * 2u>;   // [BK][BT/4], output rows
var<workgroup> Xj: array<vec4<f32>, BK * WT * 2u>;   // [BK][BT/4], output cols

fn triDecode(id: u32) -> vec2<u32> {
  var i = u32((sqrt(8.0 * f32(id) + 1.0) - 1.0) * 0.5);
  while (i * (i + 1u) / 2u > id) { i -= 1u; }
  while ((i + 1u) * (i + 2u) / 2u <= id) { i += 1u; }
  return vec2<u32>(i, id - i * (i + 1u) / 2u);
}

// Unit of X' at token t, column c (c a multiple of VW); zero outside [0,tEnd)×[0,n).
fn fetch(t: u32, c: u32, tEnd: u32, check: bool) -> vec4<f32> {
  if (check) {
    if (t >= tEnd || c >= p.n) { return vec4<f32>(0.0); }
    if (ONES && c >= p.d) { return vec4<f32>(1.0, 0.0, 0.0, 0.0); }
  }
#if VEC4
  return X[(t * p.d + c) / 4u];
#else
  return vec4<f32>(X[t * p.d + c], 0.0, 0.0, 0.0);
#endif
}

@compute @workgroup_size(WT, WT, 1)
fn main(@builtin(local_invocation_id) lid3: vec3<u32>, @builtin(workgroup_id) wid: vec3<u32>) {
  let BT = WT * 8u;
  let NT = WT * WT;
  let tx = lid3.x;
  let ty = lid3.y;
  let lid = ty * WT + tx;
  let tij = triDecode(wid.x);
  let i0 = tij.x * BT;
  let j0 = tij.y * BT;
  let s = wid.y;
  let tBeg = s * p.tokensPerSplit;
  let tEnd = min(tBeg + p.tokensPerSplit, p.rows);
  if (tBeg >= tEnd) { return; }
  let interiorIJ = i0 + BT <= p.d && j0 + BT <= p.d;   // real X columns only (not the ones column)
  let dstOff = select(0u, s * p.n * p.n, p.mode == 1u);
  let units = BT * BK / VW;
  let per = (units + NT - 1u) / NT;
  let w = BT / VW;                                        // units per token row of a tile
  var ri: array<vec4<f32>, LMAX>;
  var rj: array<vec4<f32>, LMAX>;
  var acc: array<vec4<f32>, 16>;
  for (var q = 0u; q < 16u; q++) { acc[q] = vec4<f32>(0.0); }

  let nk = (tEnd - tBeg + BK - 1u) / BK;
  let perChunk = p.chunk / BK;
  var first = true;
  var k0 = tBeg;
  {
    let check = !(interiorIJ && k0 + BK <= tEnd);
    for (var q = 0u; q < per; q++) {
      let e = lid + q * NT;
      if (e < units) {
        ri[q] = fetch(k0 + e / w, i0 + (e % w) * VW, tEnd, check);
        rj[q] = fetch(k0 + e / w, j0 + (e % w) * VW, tEnd, check);
      }
    }
  }
  for (var t = 0u; t < nk; t++) {
    for (var q = 0u; q < per; q++) {
      let e = lid + q * NT;
      if (e < units) {
        let kk = e / w; let cc = (e % w) * VW;
#if VEC4
        Xi[kk * (BT / 4u) + cc / 4u] = ri[q];
        Xj[kk * (BT / 4u) + cc / 4u] = rj[q];
#else
        Xi[kk * (BT / 4u) + cc / 4u][cc % 4u] = ri[q].x;
        Xj[kk * (BT / 4u) + cc / 4u][cc % 4u] = rj[q].x;
#endif
      }
    }
    workgroupBarrier();
    k0 = tBeg + (t + 1u) * BK;
    if (t + 1u < nk) {
      let check = !(interiorIJ && k0 + BK <= tEnd);
      for (var q = 0u; q < per; q++) {
        let e = lid + q * NT;
        if (e < units) {
          ri[q] = fetch(k0 + e / w, i0 + (e % w) * VW, tEnd, check);
          rj[q] = fetch(k0 + e / w, j0 + (e % w) * VW, tEnd, check);
        }
      }
    }
    for (var kk = 0u; kk < BK; kk++) {
      let a0 = Xi[kk * (BT / 4u) + ty];
      let a1 = Xi[kk * (BT / 4u) + WT + ty];
      let b0 = Xj[kk * (BT / 4u) + tx];
      let b1 = Xj[kk * (BT / 4u) + WT + tx];
      for (var r = 0u; r < 4u; r++) {
        acc[2u * r] = fma(vec4<f32>(a0[r]), b0, acc[2u * r]);
        acc[2u * r + 1u] = fma(vec4<f32>(a0[r]), b1, acc[2u * r + 1u]);
        acc[8u + 2u * r] = fma(vec4<f32>(a1[r]), b0, acc[8u + 2u * r]);
        acc[8u + 2u * r + 1u] = fma(vec4<f32>(a1[r]), b1, acc[8u + 2u * r + 1u]);
      }
    }
    workgroupBarrier();

    // ---- end of a chunk: fold the register block into dst (lower triangle, in range) ----
    if ((t + 1u) % perChunk == 0u || t + 1u == nk) {
      let overwrite = first && p.mode == 1u;
      for (var r = 0u; r < 8u; r++) {
        let row = i0 + select(4u * ty + r, BT / 2u + 4u * ty + r - 4u, r >= 4u);
        for (var h = 0u; h < 2u; h++) {
          let cb = j0 + h * (BT / 2u) + 4u * tx;
          for (var j = 0u; j < 4u; j++) {
            let col = cb + j;
            if (row < p.n && col <= row) {
              let idx = dstOff + row * p.n + col;
              let old = select(D[idx], 0.0, overwrite);
              D[idx] = old + p.scale * acc[2u * r + h][j];
            }
          }
          acc[2u * r + h] = vec4<f32>(0.0);
        }
      }
      first = false;
    }
  }
}

// acc[i][j] += Σ_s partials[s][i][j] for j ≤ i; one thread per element, grid folded into y. The S ≤ 64
// partials are added pairwise (pairwise.wgsl, appended by the wrapper: ≲ 2⌈log2 S⌉·u instead of S·u).
// Compiled with REDUCE and without VEC4 (X = scalar partials).
#if REDUCE
fn partial(s: u32, idx: u32) -> f32 { return X[s * p.n * p.n + idx]; }

@compute @workgroup_size(256)
fn reduce(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let idx = gid.x + gid.y * nwg.x * 256u;
  let nn = p.n * p.n;
  if (idx >= nn) { return; }
  if (idx % p.n > idx / p.n) { return; }
  D[idx] += pairwiseSum(p.splits, idx);
}
#endif
#endif
