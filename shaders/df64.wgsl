// Double-float ("df64": value = hi + lo, two f32) residuals and the gated steps of spd.ts.
// WGSL has no f64 and no guaranteed fma; everything here is built so that neither fma contraction
// nor its absence changes a result. WGSL lets compilers reassociate float adds, which destroys
// TwoSum; see twoSum for the guard, and df64SelfTest (spd.ts) for the on-device check.
//
// RESIDUAL section — residual: R = B − M·X (or I − M·X when identity = 1), M [n,n], X and B [n,k]
//   (the residual of spdSolve's refinement, O(n²k)).
//   Each product M_il·X_lj is split exactly: a = ah + al with ah = a with the low 12 mantissa bits
//   cleared (bit mask, no multiplication that a compiler could fuse), so ah·bh, ah·bl, al·bh,
//   al·bl are all exact in f32. The three large partial products are added to the df accumulator
//   with Knuth's TwoSum (6 adds + 4 multiplications by one; exact); al·bl (< 2⁻²² |ab|) goes into
//   lo directly. Error of R: O(n·u²·|M||X|) instead of O(n·u·|M||X|) for f32 — what iterative refinement needs.
//   Mapping: 16×16 threads, 64×64 output tile, 4×4 df accumulators per thread, K slices of 16 in
//   workgroup memory (8 KiB). Grid (ceil(k/64), ceil(n/64), batch).
//   The whole workgroup returns at once when the batch's gate mode is not 0 (converged/frozen).
//
// CHOLRES section — cholResidual: E = M − L·Lᵀ (the backward error of the f32 Cholesky, spd.ts),
//   lower 64×64 tiles only, K loop up to the tile's last column (L_jk = 0 for k > j). Cheaper than
//   RESIDUAL's three TwoSums per product, and accurate enough for spd.ts (~1e-11 of |L||Lᵀ| measured
//   in a float32 emulation, where 1e-10 would cost the 1e-5 target at κ = 1e6):
//   - a = ah + al with ah the 12-bit head rounded to nearest (bit add + mask): |al| ≤ 2⁻¹²|a|, al of
//     either sign, so the cross terms below do not drift one way; ah·bh is exact;
//   - the heads' products go through one TwoSum each into (hi, lo);
//   - the cross terms ah·bl + al·b (≤ 2⁻¹¹|ab|) are summed in plain f32 over one K slice of 16 and
//     then folded into (hi, lo) with a TwoSum, which also renormalises lo (without it lo's own
//     rounding grows with the coherent sum on the diagonal: 1e-10 measured).
//   ~12 f32 operations per multiply-add (RESIDUAL: ~35). Workgroup memory: heads and tails of both
//   K slices, 16 KiB. Grid (ceil(n/64), ceil(n/64), batch).
//
// GATE section (state gs[b·4 ..]: 0 = best / previous ‖t‖², 1 = current ‖t‖², 2 = mode, 3 = ‖S‖²):
//   modes 0 active, 1 revert (solve: to the previous iterate; series: P = I) now, 2 frozen,
//   3 apply this step then freeze.
//   sumsq: partial sums of t² (t = d for solves, a term T_j of spd.ts's series), `parts` workgroups
//          per matrix into Ys[b·parts + w]; nothing while the mode is not 0.
//   gate:  one workgroup per matrix adds the partials (cur = ‖t‖²) and decides:
//          solve kind (kind 1): classical refinement, t = the new correction d: revert (to the
//          iterate before the previous correction) and freeze once ‖d‖ does not shrink.
//          series kind (kind 2): P = I + S + S² + … (spd.ts), t = S^j: a term that does not shrink
//          (or a first term that is NaN/huge) means no convergence: P back to I (the f32 inverse).
//          Otherwise the term is added; once the bound ‖S^{j+1}‖_F ≤ ‖S^j‖_F·‖S‖_F on the next term is
//          below tol, this is the last one (mode 3).
//   apply: elementwise: mode 1 → x = xprev; mode 0 or 3 → xprev = x.
//   addGated: elementwise: mode 0 or 3 → x += d (sym = 1: X[i][j] += D[max(i,j)][min(i,j)], the
//          lower triangle of a symmetric term); kind 2 and mode 1 → X = I.

#if RESIDUAL
struct Params {
  n: u32, k: u32, identity: u32, one: f32,  // one = 1.0, unknown to the compiler (see twoSum)
  strideM: u32, strideX: u32, strideB: u32, strideR: u32,
}

@group(0) @binding(0) var<storage, read> Mm: array<f32>;
@group(0) @binding(1) var<storage, read> X: array<f32>;
@group(0) @binding(2) var<storage, read> Bm: array<f32>;
@group(0) @binding(3) var<storage, read_write> R: array<f32>;
@group(0) @binding(4) var<storage, read> gs: array<f32>;
@group(0) @binding(5) var<uniform> p: Params;

const TM: u32 = 64u;  // output tile (16 threads × 4)
const TK: u32 = 16u;  // K slice (8 KiB smem)
var<workgroup> As: array<f32, 1024>;
var<workgroup> Bs: array<f32, 1024>;

fn hiPart(a: f32) -> f32 { return bitcast<f32>(bitcast<u32>(a) & 0xFFFFF000u); }

// Knuth's TwoSum: (s, e) with s + e = a + b exactly. WGSL allows reassociation (§15.7.5), which
// would fold e to 0; multiplying by the uniform p.one (= 1, exact) hides the algebraic identities
// from the optimiser (the luma.gl/deck.gl fp64 workaround, needed on NVIDIA drivers).
fn twoSum(a: f32, b: f32) -> vec2<f32> {
  let s = a + b;
  let v = (s * p.one - a) * p.one;
  let e = (a - (s - v) * p.one) * p.one + (b - v);
  return vec2<f32>(s, e);
}

@compute @workgroup_size(16, 16)
fn residual(@builtin(local_invocation_id) lid: vec3<u32>, @builtin(workgroup_id) wid: vec3<u32>) {
  if (gs[wid.z * 4u + 2u] != 0.0) { return; }
  let tx = lid.x;
  let ty = lid.y;
  let t = ty * 16u + tx;
  let row0 = wid.y * TM;
  let col0 = wid.x * TM;
  let bM = wid.z * p.strideM;
  let bX = wid.z * p.strideX;
  var hi: array<f32, 16>;
  var lo: array<f32, 16>;
  for (var r = 0u; r < 4u; r++) {
    for (var c = 0u; c < 4u; c++) {
      let i = row0 + ty + 16u * r;
      let j = col0 + tx + 16u * c;
      var v = 0.0;
      if (p.identity != 0u) { v = select(0.0, 1.0, i == j); }
      else if (i < p.n && j < p.k) { v = Bm[wid.z * p.strideB + i * p.k + j]; }
      hi[r * 4u + c] = v;
      lo[r * 4u + c] = 0.0;
    }
  }
  for (var kt = 0u; kt < p.n; kt += TK) {
    for (var q = 0u; q < 4u; q++) {
      let e = t + q * 256u;
      let kk = e % TK;
      let ii = e / TK;
      var v = 0.0;
      if (row0 + ii < p.n && kt + kk < p.n) { v = Mm[bM + (row0 + ii) * p.n + kt + kk]; }
      As[kk * TM + ii] = v;
      let jj = e % TM;
      let kb = e / TM;
      var w = 0.0;
      if (col0 + jj < p.k && kt + kb < p.n) { w = X[bX + (kt + kb) * p.k + col0 + jj]; }
      Bs[kb * TM + jj] = w;
    }
    workgroupBarrier();
    for (var kk = 0u; kk < TK; kk++) {
      var ah: array<f32, 4>;
      var al: array<f32, 4>;
      var bh: array<f32, 4>;
      var bl: array<f32, 4>;
      for (var r = 0u; r < 4u; r++) {
        let v = As[kk * TM + ty + 16u * r];
        ah[r] = hiPart(v);
        al[r] = v - ah[r];
        let w = Bs[kk * TM + tx + 16u * r];
        bh[r] = hiPart(w);
        bl[r] = w - bh[r];
      }
      for (var r = 0u; r < 4u; r++) {
        for (var c = 0u; c < 4u; c++) {
          let q = r * 4u + c;
          var s = hi[q];
          var err = lo[q] - al[r] * bl[c];
          // three exact partial products, each subtracted with TwoSum
          var w = twoSum(s, -(ah[r] * bh[c]));
          err += w.y;
          w = twoSum(w.x, -(ah[r] * bl[c]));
          err += w.y;
          w = twoSum(w.x, -(al[r] * bh[c]));
          hi[q] = w.x;
          lo[q] = err + w.y;
        }
      }
    }
    workgroupBarrier();
  }
  for (var r = 0u; r < 4u; r++) {
    let i = row0 + ty + 16u * r;
    if (i >= p.n) { continue; }
    for (var c = 0u; c < 4u; c++) {
      let j = col0 + tx + 16u * c;
      if (j < p.k) { R[wid.z * p.strideR + i * p.k + j] = hi[r * 4u + c] + lo[r * 4u + c]; }
    }
  }
}
#else
#if CHOLRES
struct Params { n: u32, one: f32, stride: u32, _p: u32 }  // one = 1.0, unknown to the compiler (twoSum)

@group(0) @binding(0) var<storage, read> Mm: array<f32>;
@group(0) @binding(1) var<storage, read> Lf: array<f32>;
@group(0) @binding(2) var<storage, read_write> E: array<f32>;
@group(0) @binding(3) var<uniform> p: Params;

const TM: u32 = 64u;  // output tile (16 threads × 4)
const TK: u32 = 16u;  // K slice = one block of cross-term sums
var<workgroup> Ah: array<vec4<f32>, 256>;  // [TK][TM/4] heads of L rows i (A operand)
var<workgroup> Al: array<vec4<f32>, 256>;  // tails
var<workgroup> Bh: array<vec4<f32>, 256>;  // heads of L rows j (B = Lᵀ)
var<workgroup> Bl: array<vec4<f32>, 256>;

struct DF4 { s: vec4<f32>, e: vec4<f32> }

// TwoSum on four lanes, guarded like twoSum in RESIDUAL.
fn twoSum4(a: vec4<f32>, b: vec4<f32>) -> DF4 {
  let s = a + b;
  let v = (s * p.one - a) * p.one;
  let e = (a - (s - v) * p.one) * p.one + (b - v);
  return DF4(s, e);
}

// 12-bit head rounded to nearest (adding half of the cut-off part carries into the exponent when needed).
fn head(v: f32) -> f32 { return bitcast<f32>((bitcast<u32>(v) + 0x800u) & 0xFFFFF000u); }

@compute @workgroup_size(16, 16)
fn cholResidual(@builtin(local_invocation_id) lid: vec3<u32>, @builtin(workgroup_id) wid: vec3<u32>) {
  let tx = lid.x;
  let ty = lid.y;
  let t = ty * 16u + tx;
  let row0 = wid.y * TM;
  let col0 = wid.x * TM;
  if (col0 > row0) { return; }
  let n = p.n;
  let base = wid.z * p.stride;
  let kHi = min(n, col0 + TM);
  var hi: array<vec4<f32>, 4>;
  var lo: array<vec4<f32>, 4>;
  var cr: array<vec4<f32>, 4>;
  for (var r = 0u; r < 4u; r++) {
    let i = row0 + 4u * ty + r;
    var v = vec4<f32>(0.0);
    for (var c = 0u; c < 4u; c++) {
      let j = col0 + 4u * tx + c;
      if (i < n && j < n) { v[c] = Mm[base + i * n + j]; }
    }
    hi[r] = v;
    lo[r] = vec4<f32>(0.0);
    cr[r] = vec4<f32>(0.0);
  }
  for (var kt = 0u; kt < kHi; kt += TK) {
    for (var q = 0u; q < 4u; q++) {
      let e = t + q * 256u;
      let kk = e % TK;
      let ii = e / TK;
      let gk = kt + kk;
      var v = 0.0;
      if (row0 + ii < n && gk < kHi) { v = Lf[base + (row0 + ii) * n + gk]; }
      var w = 0.0;
      if (col0 + ii < n && gk < kHi) { w = Lf[base + (col0 + ii) * n + gk]; }
      let vh = head(v);
      let wh = head(w);
      let s = kk * (TM / 4u) + ii / 4u;
      Ah[s][ii % 4u] = vh;
      Al[s][ii % 4u] = v - vh;
      Bh[s][ii % 4u] = wh;
      Bl[s][ii % 4u] = w - wh;
    }
    workgroupBarrier();
    for (var kk = 0u; kk < TK; kk++) {
      let ah = Ah[kk * (TM / 4u) + ty];
      let al = Al[kk * (TM / 4u) + ty];
      let bh = Bh[kk * (TM / 4u) + tx];
      let bl = Bl[kk * (TM / 4u) + tx];
      let b = bh + bl;
      for (var r = 0u; r < 4u; r++) {
        let d = twoSum4(hi[r], -(ah[r] * bh));
        hi[r] = d.s;
        lo[r] += d.e;
        cr[r] = fma(vec4<f32>(ah[r]), bl, cr[r]);
        cr[r] = fma(vec4<f32>(al[r]), b, cr[r]);
      }
    }
    workgroupBarrier();
    for (var r = 0u; r < 4u; r++) {
      let d = twoSum4(hi[r], lo[r] - cr[r]);
      hi[r] = d.s;
      lo[r] = d.e;
      cr[r] = vec4<f32>(0.0);
    }
  }
  for (var r = 0u; r < 4u; r++) {
    let i = row0 + 4u * ty + r;
    if (i >= n) { continue; }
    let v = hi[r] + lo[r];
    for (var c = 0u; c < 4u; c++) {
      let j = col0 + 4u * tx + c;
      if (j < n) { E[base + i * n + j] = v[c]; }
    }
  }
}
#else
struct Params { size: u32, n: u32, kind: u32, sym: u32, tol: f32, batch: u32, first: u32, parts: u32 }

var<workgroup> partial: array<f32, 256>;

fn sum256(lid: u32, v: f32) -> f32 {
  partial[lid] = v;
  workgroupBarrier();
  for (var w = 128u; w > 0u; w /= 2u) {
    if (lid < w) { partial[lid] += partial[lid + w]; }
    workgroupBarrier();
  }
  return partial[0];
}

@group(0) @binding(0) var<storage, read_write> Xs: array<f32>;
@group(0) @binding(1) var<storage, read_write> Ys: array<f32>;
@group(0) @binding(2) var<storage, read_write> gs: array<f32>;
@group(0) @binding(3) var<uniform> p: Params;

// sumsq: Xs = t [batch, size]; Ys[b·P + w] = Σ t² over workgroup w's share (grid (P, batch)),
// written only in mode 0 (the mode is read after the barriers: gs is read_write, not uniform).
@compute @workgroup_size(256)
fn sumsq(@builtin(local_invocation_index) lid: u32, @builtin(workgroup_id) wid: vec3<u32>) {
  let b = wid.y;
  var acc = 0.0;
  for (var e = wid.x * 256u + lid; e < p.size; e += 256u * p.parts) { let v = Xs[b * p.size + e]; acc += v * v; }
  let total = sum256(lid, acc);
  if (lid == 0u && gs[b * 4u + 2u] == 0.0) { Ys[b * p.parts + wid.x] = total; }
}

// One workgroup per matrix; Ys = the partial sums of sumsq.
@compute @workgroup_size(256)
fn gate(@builtin(local_invocation_index) lid: u32, @builtin(workgroup_id) wid: vec3<u32>) {
  let b = wid.x;
  var acc = 0.0;
  for (var w = lid; w < p.parts; w += 256u) { acc += Ys[b * p.parts + w]; }
  let cur = sum256(lid, acc);
  if (lid != 0u) { return; }
  let o = b * 4u;
  let mode = gs[o + 2u];
  if (mode == 1.0 || mode == 3.0) { gs[o + 2u] = 2.0; return; }
  if (mode != 0.0) { return; }
  gs[o + 1u] = cur;
  if (p.kind == 1u) {
    if (p.first != 0u) { gs[o] = cur; return; }
    if (!(cur < gs[o])) { gs[o + 2u] = 1.0; } else { gs[o] = cur; }
    return;
  }
  if (p.first != 0u) {
    if (!(cur < 1e30)) { gs[o + 2u] = 2.0; return; }
    gs[o + 3u] = cur;
  } else if (!(cur < gs[o])) {
    gs[o + 2u] = 1.0;
    return;
  }
  gs[o] = cur;
  if (cur * gs[o + 3u] < p.tol) { gs[o + 2u] = 3.0; }
}

fn elem(gid: vec3<u32>, nwg: vec3<u32>) -> u32 { return gid.x + gid.y * nwg.x * 256u; }

// apply: Xs = x, Ys = xprev, both [batch, size]
@compute @workgroup_size(256)
fn apply(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let e = elem(gid, nwg);
  if (e >= p.size * p.batch) { return; }
  let mode = gs[(e / p.size) * 4u + 2u];
  if (mode == 1.0) { Xs[e] = Ys[e]; } else if (mode == 0.0 || mode == 3.0) { Ys[e] = Xs[e]; }
}

// addGated: Xs += Ys (sym: Ys read from the lower triangle of an n×n matrix); series reset: Xs = I
@compute @workgroup_size(256)
fn addGated(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let e = elem(gid, nwg);
  if (e >= p.size * p.batch) { return; }
  let mode = gs[(e / p.size) * 4u + 2u];
  let r = e % p.size;
  if (p.kind == 2u && mode == 1.0) { Xs[e] = select(0.0, 1.0, r / p.n == r % p.n); return; }
  if (mode != 0.0 && mode != 3.0) { return; }
  var src = e;
  if (p.sym != 0u) {
    let i = r / p.n;
    let j = r % p.n;
    src = e - r + max(i, j) * p.n + min(i, j);
  }
  Xs[e] += Ys[src];
}
#endif
#endif
