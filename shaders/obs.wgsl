// LLM Surgeon kernels (ALGORITHM.md §3–§6): dead-unit flags, costs, N:M groups, masks, and the pieces
// of the chunked OBS update. Row-major f32 matrices, u32 index lists. 1-D grids of 256-thread
// workgroups folded into y (idx = gid.x + gid.y·nwg.x·256) unless noted; no workgroup memory.
// Each entry point has its own bindings, switched by `#if <ENTRY>`.
//
//  nzflags:   out[offR + r] = 1 if row r of W' (R×C1) has a nonzero, out[offC + c] likewise per column.
//             Threads 0..R-1 scan a row, threads R..R+C1-1 scan a column (≤ a few thousand reads each).
//  elemcost:  cost[r,c] = 0 if rf[r] = 0 or cf[c] = 0 (dead unit), else mode 0: (½w²)/(rf·cf) (surgeon,
//             rf/cf = diagonals of G⁻¹/A⁻¹), mode 1: ((½w²)·rf)·cf (K-OBD, L-OBD, magnitude). NaN → 0.
//  rcfinal:   out[off + idx[i]] = f(q[i], M[i,i]): 0 (½q)/M_ii, 1 (½q)·M_ii, 2 ½q, 3 √q. NaN → 0.
//  diagscat:  out[idx[i]] = M[i,i].
//  zerosel:   W'[r,c] = 0 where rowSel[r] ≠ 0, colSel[c] ≠ 0 or (flag) mask[r,c] ≠ 0.
//  groupcost: per (row, group g of m input columns g·m..g·m+m-1): pick the n cheapest (ties → lower
//             column), gcost = their sum in pick order, pick = bit set of the picked columns. m ≤ 32.
//  groupmask: mask[r, g·m + k] = 1 for the picked k of every group with gcost ≤ τ (τ = Tau[0]).
//  builds:    S[a,b] = G⁻¹[qr[e0+a], qr[e0+b]] · A⁻¹[qc[e0+a], qc[e0+b]] (n×n; 16×16 threads per tile).
//  gatherq:   rhs[a] = W[qr,qc] + E[qr,qc] (flag bit0: E used); flag bit1 (independent OBS): divided by
//             G⁻¹[qr,qr]·A⁻¹[qc,qc].
//  scatterq:  X[(qr[e0+a] − r0)·nc + qc[e0+a]] = x[a]  (X pre-zeroed).
//  divrows:   X[a,j] = B[a,j] / M[a,a]   (independent structured OBS).

const WG: u32 = 256u;

fn flat(gid: vec3<u32>, nwg: vec3<u32>) -> u32 { return gid.x + gid.y * nwg.x * WG; }
// §4: NaN costs become 0. Tested on the bits: WGSL lets compilers assume x == x for floats.
fn fin(x: f32) -> f32 { if ((bitcast<u32>(x) & 0x7fffffffu) > 0x7f800000u) { return 0.0; } return x; }

#if NZFLAGS
struct NzP { R: u32, C1: u32, offR: u32, offC: u32 }
@group(0) @binding(0) var<storage, read> Wp: array<f32>;
@group(0) @binding(1) var<storage, read_write> Out: array<f32>;
@group(0) @binding(2) var<uniform> p: NzP;
@compute @workgroup_size(256)
fn nzflags(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let t = flat(gid, nwg);
  if (t < p.R) {
    var nz = 0.0;
    for (var c = 0u; c < p.C1; c++) { if (Wp[t * p.C1 + c] != 0.0) { nz = 1.0; break; } }
    Out[p.offR + t] = nz;
  } else if (t < p.R + p.C1) {
    let c = t - p.R;
    var nz = 0.0;
    for (var r = 0u; r < p.R; r++) { if (Wp[r * p.C1 + c] != 0.0) { nz = 1.0; break; } }
    Out[p.offC + c] = nz;
  }
}
#endif

#if ELEMCOST
struct EcP { R: u32, C1: u32, mode: u32, _a: u32 }
@group(0) @binding(0) var<storage, read> Wp: array<f32>;
@group(0) @binding(1) var<storage, read> RF: array<f32>;
@group(0) @binding(2) var<storage, read> CF: array<f32>;
@group(0) @binding(3) var<storage, read_write> Cost: array<f32>;
@group(0) @binding(4) var<uniform> p: EcP;
@compute @workgroup_size(256)
fn elemcost(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let i = flat(gid, nwg);
  if (i >= p.R * p.C1) { return; }
  let rf = RF[i / p.C1];
  let cf = CF[i % p.C1];
  let w = Wp[i];
  let h = 0.5 * (w * w);
  var v = 0.0;
  if (rf != 0.0 && cf != 0.0) {
    if (p.mode == 0u) { v = h / (rf * cf); } else { v = (h * rf) * cf; }
  }
  Cost[i] = fin(v);
}
#endif

#if RCFINAL
struct RcP { n: u32, off: u32, mode: u32, _a: u32 }
@group(0) @binding(0) var<storage, read> Q: array<f32>;
@group(0) @binding(1) var<storage, read> M: array<f32>;
@group(0) @binding(2) var<storage, read> Idx: array<u32>;
@group(0) @binding(3) var<storage, read_write> Out: array<f32>;
@group(0) @binding(4) var<uniform> p: RcP;
@compute @workgroup_size(256)
fn rcfinal(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let i = flat(gid, nwg);
  if (i >= p.n) { return; }
  let q = Q[i];
  var v: f32;
  switch p.mode {
    case 0u: { v = (0.5 * q) / M[i * p.n + i]; }
    case 1u: { v = (0.5 * q) * M[i * p.n + i]; }
    case 2u: { v = 0.5 * q; }
    default: { v = sqrt(q); }
  }
  Out[p.off + Idx[i]] = fin(v);
}
#endif

#if DIAGSCAT
struct DsP { n: u32, _a: u32, _b: u32, _c: u32 }
@group(0) @binding(0) var<storage, read> M: array<f32>;
@group(0) @binding(1) var<storage, read> Idx: array<u32>;
@group(0) @binding(2) var<storage, read_write> Out: array<f32>;
@group(0) @binding(3) var<uniform> p: DsP;
@compute @workgroup_size(256)
fn diagscat(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let i = flat(gid, nwg);
  if (i >= p.n) { return; }
  Out[Idx[i]] = M[i * p.n + i];
}
#endif

#if ZEROSEL
struct ZsP { R: u32, C1: u32, useMask: u32, _a: u32 }
@group(0) @binding(0) var<storage, read_write> Wp: array<f32>;
@group(0) @binding(1) var<storage, read> RowSel: array<f32>;
@group(0) @binding(2) var<storage, read> ColSel: array<f32>;
@group(0) @binding(3) var<storage, read> Mask: array<f32>;
@group(0) @binding(4) var<uniform> p: ZsP;
@compute @workgroup_size(256)
fn zerosel(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let i = flat(gid, nwg);
  if (i >= p.R * p.C1) { return; }
  var z = RowSel[i / p.C1] != 0.0 || ColSel[i % p.C1] != 0.0;
  if (p.useMask != 0u) { z = z || Mask[i] != 0.0; }
  if (z) { Wp[i] = 0.0; }
}
#endif

#if GROUPCOST
struct GcP { R: u32, C1: u32, groups: u32, n: u32, m: u32, _a: u32, _b: u32, _c: u32 }
@group(0) @binding(0) var<storage, read> Cost: array<f32>;
@group(0) @binding(1) var<storage, read_write> GCost: array<f32>;
@group(0) @binding(2) var<storage, read_write> Pick: array<u32>;
@group(0) @binding(3) var<uniform> p: GcP;
@compute @workgroup_size(256)
fn groupcost(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let t = flat(gid, nwg);
  if (t >= p.R * p.groups) { return; }
  let r = t / p.groups;
  let base = r * p.C1 + (t % p.groups) * p.m;
  var picked = 0u;
  var s = 0.0;
  for (var k = 0u; k < p.n; k++) {
    var best = 0u;
    var bv = 0.0;
    var found = false;
    for (var j = 0u; j < p.m; j++) {
      if ((picked & (1u << j)) != 0u) { continue; }
      let v = Cost[base + j];
      if (!found || v < bv) { best = j; bv = v; found = true; } // strict <: ties keep the lower column
    }
    picked |= 1u << best;
    s += bv;
  }
  GCost[t] = s;
  Pick[t] = picked;
}
#endif

#if GROUPMASK
struct GmP { R: u32, C1: u32, groups: u32, m: u32 }
@group(0) @binding(0) var<storage, read> GCost: array<f32>;
@group(0) @binding(1) var<storage, read> Pick: array<u32>;
@group(0) @binding(2) var<storage, read> Tau: array<f32>;
@group(0) @binding(3) var<storage, read_write> Mask: array<f32>;
@group(0) @binding(4) var<uniform> p: GmP;
@compute @workgroup_size(256)
fn groupmask(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let t = flat(gid, nwg);
  if (t >= p.R * p.groups) { return; }
  let take = GCost[t] <= Tau[0];
  let bits = Pick[t];
  let base = (t / p.groups) * p.C1 + (t % p.groups) * p.m;
  for (var j = 0u; j < p.m; j++) {
    var v = 0.0;
    if (take && (bits & (1u << j)) != 0u) { v = 1.0; }
    Mask[base + j] = v;
  }
}
#endif

#if BUILDS
struct BsP { n: u32, e0: u32, nr: u32, nc: u32 }
@group(0) @binding(0) var<storage, read> Gi: array<f32>;
@group(0) @binding(1) var<storage, read> Ai: array<f32>;
@group(0) @binding(2) var<storage, read> QR: array<u32>;
@group(0) @binding(3) var<storage, read> QC: array<u32>;
@group(0) @binding(4) var<storage, read_write> S: array<f32>;
@group(0) @binding(5) var<uniform> p: BsP;
// 16×16 threads per 16×16 tile of S; grid (⌈n/16⌉, ⌈n/16⌉).
@compute @workgroup_size(16, 16)
fn builds(@builtin(global_invocation_id) gid: vec3<u32>) {
  let b = gid.x;
  let a = gid.y;
  if (a >= p.n || b >= p.n) { return; }
  let ra = QR[p.e0 + a];
  let rb = QR[p.e0 + b];
  let ca = QC[p.e0 + a];
  let cb = QC[p.e0 + b];
  S[a * p.n + b] = Gi[ra * p.nr + rb] * Ai[ca * p.nc + cb];
}
#endif

#if GATHERQ
struct GqP { n: u32, e0: u32, nr: u32, nc: u32, flags: u32, _a: u32, _b: u32, _c: u32 }
@group(0) @binding(0) var<storage, read> Wl: array<f32>;
@group(0) @binding(1) var<storage, read> E: array<f32>;
@group(0) @binding(2) var<storage, read> Gi: array<f32>;
@group(0) @binding(3) var<storage, read> Ai: array<f32>;
@group(0) @binding(4) var<storage, read> QR: array<u32>;
@group(0) @binding(5) var<storage, read> QC: array<u32>;
@group(0) @binding(6) var<storage, read_write> Rhs: array<f32>;
@group(0) @binding(7) var<uniform> p: GqP;
@compute @workgroup_size(256)
fn gatherq(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let a = flat(gid, nwg);
  if (a >= p.n) { return; }
  let r = QR[p.e0 + a];
  let c = QC[p.e0 + a];
  var v = Wl[r * p.nc + c];
  if ((p.flags & 1u) != 0u) { v += E[r * p.nc + c]; }
  if ((p.flags & 2u) != 0u) { v = v / (Gi[r * p.nr + r] * Ai[c * p.nc + c]); }
  Rhs[a] = v;
}
#endif

#if SCATTERQ
struct SqP { n: u32, e0: u32, r0: u32, nc: u32 }
@group(0) @binding(0) var<storage, read> Xv: array<f32>;
@group(0) @binding(1) var<storage, read> QR: array<u32>;
@group(0) @binding(2) var<storage, read> QC: array<u32>;
@group(0) @binding(3) var<storage, read_write> X: array<f32>;
@group(0) @binding(4) var<uniform> p: SqP;
@compute @workgroup_size(256)
fn scatterq(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let a = flat(gid, nwg);
  if (a >= p.n) { return; }
  X[(QR[p.e0 + a] - p.r0) * p.nc + QC[p.e0 + a]] = Xv[a];
}
#endif

#if DIVROWS
struct DrP { k: u32, nc: u32, _a: u32, _b: u32 }
@group(0) @binding(0) var<storage, read> B: array<f32>;
@group(0) @binding(1) var<storage, read> M: array<f32>;
@group(0) @binding(2) var<storage, read_write> X: array<f32>;
@group(0) @binding(3) var<uniform> p: DrP;
@compute @workgroup_size(256)
fn divrows(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let e = flat(gid, nwg);
  if (e >= p.k * p.nc) { return; }
  let a = e / p.nc;
  X[e] = B[e] / M[a * p.k + a];
}
#endif
