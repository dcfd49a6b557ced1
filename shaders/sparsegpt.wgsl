// Peer pruning methods (ALGORITHM.md §9): SparseGPT's sequential column loop and the exact mask
// selections shared with Wanda. One entry point per `#if NAME` section; the wrapper
// (src/surgeon/peers/kernels.ts) compiles exactly one section per pipeline.
//
// Key order used by every selection (as shaders/select.wgsl): NaN last, -0 == +0; ties between equal
// keys are broken by the lower index, so every selection is deterministic and selects exactly k.
//
// PREPARE  (SparseGPT dead inputs): thread i < C: if H[i,i] == 0 then H[i,i] = 1 and W[:, i] = 0.
// REVERSE  Out[i, j] = In[n−1−i, n−1−j] (index reversal J·M·J of an n×n matrix; one thread per entry).
//          SparseGPT's U (upper, H⁻¹ = UᵀU) is J·P⁻¹·J with P = chol(J·H·J) lower: H = U⁻¹U⁻ᵀ and
//          J·U⁻¹·J is lower, so one Cholesky and one triangular inverse replace inverse + Cholesky.
// SCORES   S[r·count + j] = W[r, c0 + j]² / U_jj²  with U_jj = U[(c0+j)·C + c0+j] (SparseGPT, block
//          columns c0..c0+count), or with WANDA: |W[r, c0 + j]| · sqrt(N2[c0 + j]). One thread per entry.
// SELECT   Exact k smallest of each segment (segment s = S[s·stride .. s·stride + len)), one
//          256-thread workgroup per segment: 3 radix passes (11/11/10-bit digits, 2048-bin workgroup
//          histogram = 8 KiB) find the key τ of the k-th smallest and the rank `need` among entries equal
//          to τ; 3 more passes over the indices of those ties find the index ι of the need-th tie; then
//          Flags[e] = key < τ || (key == τ && e ≤ ι). Thread 0 walks the 256 partial bin sums serially
//          (cheaper than a tree scan on CPU adapters, negligible on GPUs). k ≥ 1, k ≤ len.
// RANK     SELECT for short segments (len ≤ 1024), one thread per entry and no workgroup memory or
//          barrier: entry j of its segment is selected iff fewer than k entries precede it in the
//          (key, index) order (len compares per thread). Also the n:m selection (len = m, k = n).
//          (The radix path costs 6 histogram passes of 2048 bins per segment: 256 rows of 64 took
//          2.0 s on SwiftShader; a workgroup-per-row rank kernel still 0.8 s.)
// ZERO     W[e] = +0 where Flags[e] != 0.
// BLOCK    SparseGPT's column loop over one block of `count` ≤ 128 columns starting at c0. One thread
//          per output row r (rows are independent given U): the row's block lives in a private array;
//          for column i: q = pruned ? 0 : w_i, err = (w_i − q)/U_ii, w_j −= err·U_ij for j > i,
//          Err[r, i] = err, and the block is written back as the quantised Q. U is row-major [C, C]
//          (every thread reads the same U entry at the same time, a broadcast). Unstructured: the mask comes from Flags (SELECT over the block); NM:
//          at every group start the n smallest scores w²/U_jj² of the m columns, from the CURRENT
//          (already updated) row, are pruned. Preconditions: count ≤ 128, m divides c0 and count.
//          The lazy update of the columns right of the block is a separate GEMM (Err · U[block, rest]).

#if PREPARE
struct P { R: u32, C: u32, _a: u32, _b: u32 }
@group(0) @binding(0) var<storage, read_write> H: array<f32>;
@group(0) @binding(1) var<storage, read_write> W: array<f32>;
@group(0) @binding(2) var<uniform> p: P;

@compute @workgroup_size(64)
fn prepareDead(@builtin(global_invocation_id) gid: vec3<u32>) {
  let i = gid.x;
  if (i >= p.C) { return; }
  if (H[i * p.C + i] != 0.0) { return; }
  H[i * p.C + i] = 1.0;
  for (var r = 0u; r < p.R; r++) { W[r * p.C + i] = 0.0; }
}
#endif

#if REVERSE
struct P { n: u32, _a: u32, _b: u32, _c: u32 }
@group(0) @binding(0) var<storage, read> In: array<f32>;
@group(0) @binding(1) var<storage, read_write> Out: array<f32>;
@group(0) @binding(2) var<uniform> p: P;

@compute @workgroup_size(256)
fn reverseSquare(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let e = gid.x + gid.y * nwg.x * 256u;
  if (e >= p.n * p.n) { return; }
  Out[e] = In[p.n * p.n - 1u - e];  // (n−1−i)·n + (n−1−j) = n² − 1 − e
}
#endif

#if SCORES
struct P { R: u32, C: u32, c0: u32, count: u32 }
@group(0) @binding(0) var<storage, read> W: array<f32>;
@group(0) @binding(1) var<storage, read> V: array<f32>;   // U (SparseGPT) or N2 = Σ_t x_j² (Wanda)
@group(0) @binding(2) var<storage, read_write> S: array<f32>;
@group(0) @binding(3) var<uniform> p: P;

@compute @workgroup_size(256)
fn blockScores(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let e = gid.x + gid.y * nwg.x * 256u;
  if (e >= p.R * p.count) { return; }
  let r = e / p.count;
  let c = p.c0 + e % p.count;
  let w = W[r * p.C + c];
#if WANDA
  S[e] = abs(w) * sqrt(V[c]);
#else
  let d = V[c * p.C + c];
  S[e] = (w * w) / (d * d);
#endif
}
#endif

// Order-preserving key (NaN last, ±0 equal), as in select.wgsl.
fn key(v: f32) -> u32 {
  let b = bitcast<u32>(v);
  let a = b & 0x7fffffffu;
  if (a > 0x7f800000u) { return 0xffffffffu; }
  if (a == 0u) { return 0x80000000u; }
  if (a != b) { return ~b; }
  return b | 0x80000000u;
}

#if SELECT
struct P { len: u32, stride: u32, k: u32, segments: u32 }
@group(0) @binding(0) var<storage, read> S: array<f32>;
@group(0) @binding(1) var<storage, read_write> Flags: array<u32>;
@group(0) @binding(2) var<uniform> p: P;

const WG: u32 = 256u;     // threads per workgroup (WebGPU default maximum)
const BINS: u32 = 2048u;  // 11-bit digits: 3 passes per 32-bit key
var<workgroup> hist: array<atomic<u32>, 2048>;
var<workgroup> part: array<u32, 256>;
var<workgroup> state: array<u32, 2>;  // [decided key bits, rank still to find]

// One radix pass: histogram the digit of the candidates' keys, then thread 0 picks the bucket.
// mode 0: candidates = every entry, key = key(S); mode 1: candidates = entries with key == tau, key = index.
fn radixPass(lid: u32, base: u32, shift: u32, bits: u32, hiMask: u32, mode: u32, tau: u32) {
  for (var b = lid; b < BINS; b += WG) { atomicStore(&hist[b], 0u); }
  workgroupBarrier();
  let prefix = state[0];
  let dmask = (1u << bits) - 1u;
  for (var e = lid; e < p.len; e += WG) {
    var kk = key(S[base + e]);
    if (mode == 1u) {
      if (kk != tau) { continue; }
      kk = e;
    }
    if ((kk & hiMask) == prefix) { atomicAdd(&hist[(kk >> shift) & dmask], 1u); }
  }
  workgroupBarrier();
  var s = 0u;
  for (var b = lid * 8u; b < lid * 8u + 8u; b++) { s += atomicLoad(&hist[b]); }
  part[lid] = s;
  workgroupBarrier();
  if (lid == 0u) {
    var rank = state[1];
    var t = 0u;
    loop {
      if (t >= WG - 1u || rank < part[t]) { break; }
      rank -= part[t];
      t++;
    }
    var b = t * 8u;
    loop {
      let c = atomicLoad(&hist[b]);
      if (b >= t * 8u + 7u || rank < c) { break; }
      rank -= c;
      b++;
    }
    state[0] = prefix | (b << shift);
    state[1] = rank;
  }
  workgroupBarrier();
}

@compute @workgroup_size(256)
fn selectK(@builtin(local_invocation_id) l: vec3<u32>, @builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let seg = wid.x + wid.y * nwg.x;
  if (seg >= p.segments) { return; }  // uniform per workgroup
  let lid = l.x;
  let base = seg * p.stride;
  if (lid == 0u) { state[0] = 0u; state[1] = p.k - 1u; }
  workgroupBarrier();
  radixPass(lid, base, 21u, 11u, 0u, 0u, 0u);
  radixPass(lid, base, 10u, 11u, 0xffe00000u, 0u, 0u);
  radixPass(lid, base, 0u, 10u, 0xfffffc00u, 0u, 0u);
  let tau = workgroupUniformLoad(&state[0]);
  workgroupBarrier();  // every thread has read τ before thread 0 resets the prefix
  if (lid == 0u) { state[0] = 0u; }  // state[1] = rank of the wanted tie among the ties
  workgroupBarrier();
  radixPass(lid, base, 21u, 11u, 0u, 1u, tau);
  radixPass(lid, base, 10u, 11u, 0xffe00000u, 1u, tau);
  radixPass(lid, base, 0u, 10u, 0xfffffc00u, 1u, tau);
  let iota = workgroupUniformLoad(&state[0]);
  for (var e = lid; e < p.len; e += WG) {
    let kk = key(S[base + e]);
    Flags[base + e] = select(0u, 1u, kk < tau || (kk == tau && e <= iota));
  }
}
#endif

#if RANK
struct P { len: u32, stride: u32, k: u32, segments: u32 }
@group(0) @binding(0) var<storage, read> S: array<f32>;
@group(0) @binding(1) var<storage, read_write> Flags: array<u32>;
@group(0) @binding(2) var<uniform> p: P;

@compute @workgroup_size(256)
fn rankSelect(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let e = gid.x + gid.y * nwg.x * 256u;
  if (e >= p.len * p.segments) { return; }
  let base = (e / p.len) * p.len;
  let j = e % p.len;
  let kj = key(S[e]);
  var before = 0u;
  for (var i = 0u; i < p.len; i++) {
    let ki = key(S[base + i]);
    before += select(0u, 1u, ki < kj || (ki == kj && i < j));
  }
  Flags[e] = select(0u, 1u, before < p.k);
}
#endif

#if ZERO
struct P { n: u32, _a: u32, _b: u32, _c: u32 }
@group(0) @binding(0) var<storage, read> Flags: array<u32>;
@group(0) @binding(1) var<storage, read_write> W: array<f32>;
@group(0) @binding(2) var<uniform> p: P;

@compute @workgroup_size(256)
fn zeroFlagged(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let e = gid.x + gid.y * nwg.x * 256u;
  if (e >= p.n) { return; }
  if (Flags[e] != 0u) { W[e] = 0.0; }
}
#endif

#if BLOCK
struct P { R: u32, C: u32, c0: u32, count: u32, n: u32, m: u32, _a: u32, _b: u32 }
@group(0) @binding(0) var<storage, read_write> W: array<f32>;
@group(0) @binding(1) var<storage, read> U: array<f32>;
@group(0) @binding(2) var<storage, read> Flags: array<u32>;  // [R·count] (unstructured; unused with NM)
@group(0) @binding(3) var<storage, read_write> Err: array<f32>;  // [R, 128]
@group(0) @binding(4) var<uniform> p: P;

const BS: u32 = 128u;  // largest block (SparseGPT's default blocksize); the row block is 512 B of private memory

fn u(i: u32, j: u32) -> f32 { return U[(p.c0 + i) * p.C + p.c0 + j]; }  // U_ij of the block

// 64 threads per workgroup: a 768-row layer still spreads over 12 workgroups.
@compute @workgroup_size(64)
fn obsBlock(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let r = gid.x + gid.y * nwg.x * 64u;
  if (r >= p.R) { return; }
  var w: array<f32, 128>;
  var pruned: array<u32, 4>;  // bit j % 32 of word j / 32: column j of the block is pruned
  for (var j = 0u; j < 4u; j++) { pruned[j] = 0u; }
  let row = r * p.C + p.c0;
  for (var j = 0u; j < p.count; j++) {
    w[j] = W[row + j];
#if !BLOCK_NM
    if (Flags[r * p.count + j] != 0u) { pruned[j / 32u] |= 1u << (j % 32u); }
#endif
  }
  for (var i = 0u; i < p.count; i++) {
#if BLOCK_NM
    if (i % p.m == 0u) {
      for (var j = i; j < i + p.m; j++) {
        let dj = u(j, j);
        let kj = key(w[j] * w[j] / (dj * dj));
        var before = 0u;
        for (var t = i; t < i + p.m; t++) {
          let dt = u(t, t);
          let kt = key(w[t] * w[t] / (dt * dt));
          if (kt < kj || (kt == kj && t < j)) { before++; }
        }
        if (before < p.n) { pruned[j / 32u] |= 1u << (j % 32u); }
      }
    }
#endif
    let wi = w[i];
    var err = 0.0;
    if ((pruned[i / 32u] & (1u << (i % 32u))) != 0u) {
      err = wi / u(i, i);
      w[i] = 0.0;
      for (var j = i + 1u; j < p.count; j++) { w[j] -= err * u(i, j); }
    }
    Err[r * BS + i] = err;
  }
  for (var j = 0u; j < p.count; j++) { W[row + j] = w[j]; }
}
#endif
