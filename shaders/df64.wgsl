// Double-float ("df64": value = hi + lo, two f32) residuals and the gated refinement steps of spd.ts.
// WGSL has no f64 and no guaranteed fma; everything here is built so that neither fma contraction
// nor its absence changes a result. WGSL lets compilers reassociate float adds, which destroys
// TwoSum; see twoSum for the guard, and df64SelfTest (spd.ts) for the on-device check.
//
// RESIDUAL section — residual: R = B − M·X (or I − M·X when identity = 1), M [n,n], X and B [n,k].
//   Each product M_il·X_lj is split exactly: a = ah + al with ah = a with the low 12 mantissa bits
//   cleared (bit mask, no multiplication that a compiler could fuse), so ah·bh, ah·bl, al·bh,
//   al·bl are all exact in f32. The three large partial products are added to the df accumulator
//   with Knuth's TwoSum (6 adds + 4 multiplications by one; exact); al·bl (< 2⁻²² |ab|) goes into
//   lo directly. Error of R: O(n·u²·|M||X|) instead of O(n·u·|M||X|) for f32 — what iterative refinement needs.
//   Mapping like the GEMM of trsm.wgsl: 16×16 threads, 64×64 output tile, 4×4 df accumulators per
//   thread, K slices of 16 in workgroup memory (8 KiB). Grid (ceil(k/64), ceil(n/64), batch).
//   The whole workgroup returns at once when the batch's gate mode is not 0 (converged/frozen).
//
// GATE section (state gs[b·4 ..]: 0 = best ‖r‖², 1 = current ‖r‖², 2 = mode) — modes:
//   0 active, 1 revert to the previous iterate now, 2 frozen, 3 apply this step then freeze.
//   sumsq: gs[b·4+1] = Σ t² (one workgroup per matrix; t = R for the inverse, d for solves).
//   gate:  one thread per matrix; inverse kind (kind 0): Newton–Schulz X ← X + X·R converges
//          (R_next = R²) iff ρ(R) < 1: apply only when ‖R‖_F < 1, freeze after ‖R‖_F < tol.
//          solve kind (kind 1): classical refinement, gs[1] = ‖d‖² of the new correction: revert
//          (to the iterate before the previous correction) and freeze once ‖d‖ does not shrink.
//   apply: elementwise: mode 1 → x = xprev; mode 0 or 3 → xprev = x.
//   addGated: elementwise: mode 0 or 3 → x += d (sym = 1: X[i][j] += D[max(i,j)][min(i,j)], the
//          lower triangle of a symmetric correction).

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
struct Params { size: u32, n: u32, kind: u32, sym: u32, tol: f32, batch: u32, first: u32, _p: u32 }

@group(0) @binding(0) var<storage, read_write> Xs: array<f32>;
@group(0) @binding(1) var<storage, read_write> Ys: array<f32>;
@group(0) @binding(2) var<storage, read_write> gs: array<f32>;
@group(0) @binding(3) var<uniform> p: Params;

var<workgroup> partial: array<f32, 256>;

// sumsq: Xs = r [batch, size]; gs[b*4+1] = Σ r²
@compute @workgroup_size(256)
fn sumsq(@builtin(local_invocation_index) lid: u32, @builtin(workgroup_id) wid: vec3<u32>) {
  let b = wid.x;
  var acc = 0.0;
  for (var e = lid; e < p.size; e += 256u) { let v = Xs[b * p.size + e]; acc += v * v; }
  partial[lid] = acc;
  workgroupBarrier();
  for (var w = 128u; w > 0u; w /= 2u) {
    if (lid < w) { partial[lid] += partial[lid + w]; }
    workgroupBarrier();
  }
  if (lid == 0u && gs[b * 4u + 2u] == 0.0) { gs[b * 4u + 1u] = partial[0]; }
}

@compute @workgroup_size(64)
fn gate(@builtin(global_invocation_id) gid: vec3<u32>) {
  let b = gid.x;
  if (b >= p.batch) { return; }
  let o = b * 4u;
  let mode = gs[o + 2u];
  if (mode == 1.0 || mode == 3.0) { gs[o + 2u] = 2.0; return; }
  if (mode != 0.0) { return; }
  let cur = gs[o + 1u];
  if (p.kind == 0u) {
    // ‖R‖_F² < 1 ⇒ ρ(R) < 1 ⇒ Newton–Schulz contracts; NaN fails the test too
    if (!(cur < 1.0)) { gs[o + 2u] = 2.0; } else if (cur < p.tol) { gs[o + 2u] = 3.0; }
  } else {
    if (p.first != 0u) { gs[o] = cur; return; }
    if (!(cur < gs[o])) { gs[o + 2u] = 1.0; } else { gs[o] = cur; }
  }
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

// addGated: Xs += Ys (sym: Ys read from the lower triangle of an n×n matrix)
@compute @workgroup_size(256)
fn addGated(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let e = elem(gid, nwg);
  if (e >= p.size * p.batch) { return; }
  let mode = gs[(e / p.size) * 4u + 2u];
  if (mode != 0.0 && mode != 3.0) { return; }
  var src = e;
  if (p.sym != 0u) {
    let r = e % p.size;
    let i = r / p.n;
    let j = r % p.n;
    src = e - r + max(i, j) * p.n + min(i, j);
  }
  Xs[e] += Ys[src];
}

#endif
