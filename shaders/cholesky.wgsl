// Cholesky helpers on row-major n×n matrices, batched (matrix b at L[b·n·n]).
//
// potrfPanel: one step of the blocked right-looking Cholesky for block column k (nb ≤ 32 wide):
//   every workgroup loads the nb×nb diagonal block (lower triangle, padded to 32×32 with I) into
//   workgroup memory (4 KiB) and factors it there — right-looking unblocked elimination without
//   scaling (a[i][c] -= a[i][j]·a[c][j]/d_j for j < c ≤ i, one barrier per column), then every
//   column is scaled by 1/√d_j (the pivot becomes √d_j). Factoring the tiny block
//   redundantly in each workgroup saves a dispatch (and its pipeline barrier) per block column.
//   Then thread t solves panel row r = k+nb+256·wid.x+t in registers: L[r,k:k+nb] = A[r,k:k+nb]·L_kk⁻ᵀ
//   (forward substitution with constant bound 32, so the loops unroll).
//   Workgroup 0 writes the factored block to S (not to L: other workgroups may still be reading
//   the unfactored block from L) and, for a pivot that is not > 0 (negative, zero, NaN), sets
//   info[b] = 1 + its global index unless an earlier block column already failed. Grid: (max(1,
//   ceil(rows/256)), batch). The factor is garbage after a failed pivot.
// finalize: L[b][i][j] = 0 for j > i; diagonal blocks (lower part) are copied from S. One thread
//   per element (grid1d over batch·n·n).
// eye: L[b] = I. symmetrize: L[b][i][j] = L[b][j][i] for j > i (copies the lower triangle up).
// Uniforms: n, k, nb, total (= batch·n·n).

struct Params { n: u32, k: u32, nb: u32, total: u32 }

@group(0) @binding(0) var<storage, read_write> L: array<f32>;
@group(0) @binding(1) var<storage, read_write> info: array<u32>;
@group(0) @binding(2) var<storage, read_write> S: array<f32>;  // [batch][ceil(n/32)][32][32]
@group(0) @binding(3) var<uniform> p: Params;

const NB: u32 = 32u;  // block size; must equal NB in cholesky.ts and trsm.wgsl
var<workgroup> a: array<f32, 1024>;  // NB×NB block
var<workgroup> piv: array<f32, NB>;  // √pivots
var<workgroup> bad: u32;

@compute @workgroup_size(256)
fn potrfPanel(@builtin(local_invocation_index) lid: u32, @builtin(workgroup_id) wid: vec3<u32>) {
  let b = wid.y;
  let mat = b * p.n * p.n;
  let base = mat + p.k * p.n + p.k;
  let nb = p.nb;
  for (var e = lid; e < NB * NB; e += 256u) {
    let i = e / NB;
    let j = e % NB;
    var v = select(0.0, 1.0, i == j);
    if (i < nb && j <= i) { v = L[base + i * p.n + j]; }
    a[e] = v;
  }
  if (lid == 0u) { bad = 0u; }
  workgroupBarrier();
  // unscaled right-looking elimination: one barrier per column (column j is only read while the
  // columns c > j are updated); the columns are scaled by 1/√pivot afterwards
  for (var j = 0u; j < nb; j++) {
    let d = a[j * NB + j];
    if (lid == 0u && !(d > 0.0) && bad == 0u) { bad = j + 1u; }
    for (var e = lid; e < NB * NB; e += 256u) {
      let i = e / NB;
      let c = e % NB;
      if (c > j && c <= i && i < nb) { a[e] -= a[i * NB + j] * a[c * NB + j] / d; }
    }
    workgroupBarrier();
  }
  if (lid < nb) { piv[lid] = sqrt(a[lid * NB + lid]); }
  workgroupBarrier();
  for (var e = lid; e < NB * NB; e += 256u) {
    let i = e / NB;
    let j = e % NB;
    if (j < nb && i < nb && j <= i) { a[e] = select(a[e] / piv[j], piv[j], i == j); }
  }
  workgroupBarrier();
  if (wid.x == 0u) {
    let sb = (b * ((p.n + NB - 1u) / NB) + p.k / NB) * NB * NB;
    for (var e = lid; e < NB * NB; e += 256u) { S[sb + e] = a[e]; }
    if (lid == 0u && bad != 0u && info[b] == 0u) { info[b] = p.k + bad; }
  }
  let row = p.k + nb + wid.x * 256u + lid;
  if (row >= p.n) { return; }
  let rb = mat + row * p.n + p.k;
  var x: array<f32, NB>;
  for (var j = 0u; j < NB; j++) {
    x[j] = 0.0;
    if (j < nb) { x[j] = L[rb + j]; }
  }
  for (var j = 0u; j < NB; j++) {
    var acc = x[j];
    for (var l = 0u; l < j; l++) { acc -= a[j * NB + l] * x[l]; }
    x[j] = acc / a[j * NB + j];
  }
  for (var j = 0u; j < NB; j++) {
    if (j < nb) { L[rb + j] = x[j]; }
  }
}

fn elem(gid: vec3<u32>, nwg: vec3<u32>) -> u32 { return gid.x + gid.y * nwg.x * 256u; }

@compute @workgroup_size(256)
fn finalize(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let e = elem(gid, nwg);
  if (e >= p.total) { return; }
  let r = e % (p.n * p.n);
  let i = r / p.n;
  let j = r % p.n;
  if (j > i) { L[e] = 0.0; return; }
  if (i / NB == j / NB) {
    let b = e / (p.n * p.n);
    L[e] = S[(b * ((p.n + NB - 1u) / NB) + i / NB) * NB * NB + (i % NB) * NB + j % NB];
  }
}

@compute @workgroup_size(256)
fn eye(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let e = elem(gid, nwg);
  if (e >= p.total) { return; }
  let r = e % (p.n * p.n);
  L[e] = select(0.0, 1.0, r % p.n == r / p.n);
}

@compute @workgroup_size(256)
fn symmetrize(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let e = elem(gid, nwg);
  if (e >= p.total) { return; }
  let r = e % (p.n * p.n);
  let i = r / p.n;
  let j = r % p.n;
  if (j > i) { L[e] = L[e - r + j * p.n + i]; }
}
