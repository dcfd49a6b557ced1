// Exact k-th smallest of f32 data by radix select on order-preserving u32 keys, with the selection
// state on the GPU (no readback between passes).
//
// Key (total order; NaN last, -0 == +0):  NaN (any payload/sign) → 0xffffffff; ±0 → 0x80000000;
//   x < 0 → ~bits; x > 0 → bits | 0x80000000.  Inputs are read as raw u32 bits, so subnormals and NaNs
//   are never flushed or canonicalised by float loads.
// Digits: 3 passes of 11, 11, 10 bits (shifts 21, 10, 0); the wrapper passes shift, digit mask and
//   the mask of the bits already decided (hiMask) as uniforms.
// State (4 u32): [prefix = decided key bits, k = rank still to find inside the prefix's bucket, 0, 0].
//
//  hist:  up to 6 input tensors per dispatch (X0..X5; kthSmallestMany batches its tensors by 6, since
//         per-dispatch overhead dominated with many small tensors). Workgroup w belongs to the slot s
//         with g[s] ≤ w < g[s+1] and covers the tile of 256·items entries of X_s starting at
//         (w − g[s])·256·items (coalesced: entry base + j·256 + t). Each thread computes the key of its
//         entries; keys whose decided bits equal the prefix increment a 2048-bin workgroup histogram
//         with workgroup atomics (8 KiB of workgroup memory); then every non-zero bin is added to the
//         global histogram Hist[offset + bin] with one global atomic.
//  scan:  one workgroup: threads sum 8 bins each, thread 0 walks the 256 partial sums and then the 8
//         bins to the bucket b containing rank k; prefix |= b << shift, k -= count below b. On the last
//         pass the prefix is the full key of the answer and its f32 bits are written to Out[0].
//  count_le (#if TAU_BUFFER: τ is Tau[0] on the GPU, else its key is a uniform): Acc[0] += #{key ≤ key(τ)}
//         per-thread counts → one workgroup atomic → one global atomic (Acc zeroed by the wrapper).
//  mask_le: Mask[i] = key(x_i) ≤ key(τ) ? 1.0 : 0.0.
// Grids are 1-D, folded into y (linear workgroup id = wid.x + wid.y * nwg.x).
// Measured on the H200 (Dawn/Vulkan, Node): k-th of 5e7 costs 2.5 ms (3 passes; a plain counting pass
// takes 0.7 ms there); 72 tensors totalling 5e7: 4.1 ms (11.3 ms with one hist dispatch per tensor).

struct Params { n: u32, items: u32, shift: u32, digitMask: u32, hiMask: u32, histOffset: u32, last: u32, tauKey: u32 }

struct HistParams {
  items: u32, shift: u32, digitMask: u32, hiMask: u32, histOffset: u32, _p0: u32, _p1: u32, _p2: u32,
  n: array<vec4<u32>, 2>,  // entries of slot s: n[s / 4][s % 4] (slots 6, 7 unused)
  g: array<vec4<u32>, 2>,  // first workgroup of slot s; g[6] = total workgroups
}

@group(0) @binding(0) var<storage, read> X0: array<u32>;
@group(0) @binding(1) var<storage, read> X1: array<u32>;
@group(0) @binding(2) var<storage, read> X2: array<u32>;
@group(0) @binding(3) var<storage, read> X3: array<u32>;
@group(0) @binding(4) var<storage, read> X4: array<u32>;
@group(0) @binding(5) var<storage, read> X5: array<u32>;
@group(0) @binding(6) var<storage, read_write> Hist: array<atomic<u32>>;
@group(0) @binding(7) var<storage, read> StateIn: array<u32>;
@group(0) @binding(8) var<uniform> ph: HistParams;

@group(0) @binding(0) var<storage, read> X: array<u32>;

@group(0) @binding(0) var<storage, read> HistIn: array<u32>;
@group(0) @binding(1) var<storage, read_write> State: array<u32>;
@group(0) @binding(2) var<storage, read_write> Out: array<u32>;

@group(0) @binding(1) var<storage, read_write> Acc: array<atomic<u32>>;
@group(0) @binding(1) var<storage, read_write> Mask: array<f32>;
@group(0) @binding(2) var<storage, read> Tau: array<u32>;

@group(0) @binding(3) var<uniform> p3: Params; // scan, count_le/mask_le with TAU_BUFFER
@group(0) @binding(2) var<uniform> p2: Params; // count_le/mask_le with τ as a uniform

const WG: u32 = 256u;      // threads per workgroup (WebGPU default maximum)
const BINS: u32 = 2048u;   // 11-bit digits: 3 passes over the data instead of 4 with 8-bit digits
const PER_THREAD: u32 = 8u; // BINS / WG bins summed per thread in scan

var<workgroup> lh: array<atomic<u32>, 2048>;
var<workgroup> sums: array<u32, 256>;
var<workgroup> wacc: atomic<u32>;
var<private> hist_prefix: u32; // decided key bits, read once per thread in hist

fn f32_key(b: u32) -> u32 {
  let a = b & 0x7fffffffu;
  if (a > 0x7f800000u) { return 0xffffffffu; }
  if (a == 0u) { return 0x80000000u; }
  if (a != b) { return ~b; }
  return b | 0x80000000u;
}

fn key_bits(k: u32) -> u32 {
  if (k == 0xffffffffu) { return 0x7fc00000u; }
  if ((k & 0x80000000u) != 0u) { return k & 0x7fffffffu; }
  return ~k;
}

fn slot_param(a: array<vec4<u32>, 2>, s: u32) -> u32 { return a[s / 4u][s % 4u]; }

fn tally(bits: u32) {
  let k = f32_key(bits);
  if ((k & ph.hiMask) == hist_prefix) { atomicAdd(&lh[(k >> ph.shift) & ph.digitMask], 1u); }
}

@compute @workgroup_size(256)
fn hist(@builtin(local_invocation_index) lid: u32, @builtin(workgroup_id) wid: vec3<u32>,
        @builtin(num_workgroups) nwg: vec3<u32>) {
  let w = wid.x + wid.y * nwg.x;
  var s = 0u;
  for (var t = 1u; t < 6u; t++) { if (w >= slot_param(ph.g, t)) { s = t; } }
  let n = select(0u, slot_param(ph.n, s), w < slot_param(ph.g, 6u)); // folded-grid padding: no entries
  let base = (w - slot_param(ph.g, s)) * WG * ph.items;
  hist_prefix = StateIn[0];
  // The slot is uniform per workgroup: branch once, not per entry (binding arrays cannot be indexed).
  switch s {
    case 0u: { for (var j = 0u; j < ph.items; j++) { let i = base + j * WG + lid; if (i < n) { tally(X0[i]); } } }
    case 1u: { for (var j = 0u; j < ph.items; j++) { let i = base + j * WG + lid; if (i < n) { tally(X1[i]); } } }
    case 2u: { for (var j = 0u; j < ph.items; j++) { let i = base + j * WG + lid; if (i < n) { tally(X2[i]); } } }
    case 3u: { for (var j = 0u; j < ph.items; j++) { let i = base + j * WG + lid; if (i < n) { tally(X3[i]); } } }
    case 4u: { for (var j = 0u; j < ph.items; j++) { let i = base + j * WG + lid; if (i < n) { tally(X4[i]); } } }
    default: { for (var j = 0u; j < ph.items; j++) { let i = base + j * WG + lid; if (i < n) { tally(X5[i]); } } }
  }
  workgroupBarrier();
  for (var b = lid; b < BINS; b += WG) {
    let c = atomicLoad(&lh[b]);
    if (c != 0u) { atomicAdd(&Hist[ph.histOffset + b], c); }
  }
}

@compute @workgroup_size(256)
fn scan(@builtin(local_invocation_index) lid: u32) {
  var s = 0u;
  for (var j = 0u; j < PER_THREAD; j++) { s += HistIn[p3.histOffset + lid * PER_THREAD + j]; }
  sums[lid] = s;
  workgroupBarrier();
  if (lid == 0u) {
    var k = State[1];
    var t = 0u;
    for (; t < WG - 1u; t++) {
      if (k < sums[t]) { break; }
      k -= sums[t];
    }
    var b = t * PER_THREAD;
    for (; b < t * PER_THREAD + PER_THREAD - 1u; b++) {
      let c = HistIn[p3.histOffset + b];
      if (k < c) { break; }
      k -= c;
    }
    let prefix = State[0] | (b << p3.shift);
    State[0] = prefix;
    State[1] = k;
    if (p3.last != 0u) { Out[0] = key_bits(prefix); }
  }
}

fn tau_key() -> u32 {
#if TAU_BUFFER
  return f32_key(Tau[0]);
#else
  return p2.tauKey;
#endif
}

fn n_le() -> u32 {
#if TAU_BUFFER
  return p3.n;
#else
  return p2.n;
#endif
}

fn items_le() -> u32 {
#if TAU_BUFFER
  return p3.items;
#else
  return p2.items;
#endif
}

@compute @workgroup_size(256)
fn count_le(@builtin(local_invocation_index) lid: u32, @builtin(workgroup_id) wid: vec3<u32>,
            @builtin(num_workgroups) nwg: vec3<u32>) {
  let items = items_le();
  let base = (wid.x + wid.y * nwg.x) * WG * items;
  let tk = tau_key();
  var c = 0u;
  for (var j = 0u; j < items; j++) {
    let i = base + j * WG + lid;
    if (i < n_le() && f32_key(X[i]) <= tk) { c++; }
  }
  atomicAdd(&wacc, c);
  workgroupBarrier();
  if (lid == 0u) {
    let w = atomicLoad(&wacc);
    if (w != 0u) { atomicAdd(&Acc[0], w); }
  }
}

@compute @workgroup_size(256)
fn mask_le(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let i = gid.x + gid.y * nwg.x * WG;
  if (i >= n_le()) { return; }
  Mask[i] = select(0.0, 1.0, f32_key(X[i]) <= tau_key());
}
