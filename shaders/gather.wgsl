// Index gathers/scatters for the LLM Surgeon's live sub-problems (ALGORITHM.md §3, §6).
// Row-major f32 matrices; index lists are u32. One thread per output entry (1-D grid of 256-thread
// workgroups folded into y: idx = gid.x + gid.y·nwg.x·256), except `compact` (one thread per row).
// No workgroup memory. Every entry point has its own bindings, switched by `#if <ENTRY>`.
//  pack:      W' = [W | b]  (R×C1, C1 = C+1)                    bindings W, b, W'
//  unpack:    W, b ← W'                                          bindings W', W, b
//  gather2d:  dst[i,j] = scale·src[off + ri[i]·ld + ci[j]]       (flag bit0/bit1: ri/ci identity)
//  scatter2d: dst[ri[i]·ld + ci[j]] = src[i,j]                   (same flags)
//  compact:   row i of the 0/1 mask M (n_r×n_c) → (qr, qc) pairs of its ones in column order, starting
//             at offsets[i] (row-major order of the selected entries, the order of the OBS chunks).

const WG: u32 = 256u;

fn flat(gid: vec3<u32>, nwg: vec3<u32>) -> u32 { return gid.x + gid.y * nwg.x * WG; }

#if PACK
struct PackP { R: u32, C: u32, _a: u32, _b: u32 }
@group(0) @binding(0) var<storage, read> W: array<f32>;
@group(0) @binding(1) var<storage, read> B: array<f32>;
@group(0) @binding(2) var<storage, read_write> Wp: array<f32>;
@group(0) @binding(3) var<uniform> p: PackP;
@compute @workgroup_size(256)
fn pack(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let i = flat(gid, nwg);
  let C1 = p.C + 1u;
  if (i >= p.R * C1) { return; }
  let r = i / C1;
  let c = i % C1;
  if (c == p.C) { Wp[i] = B[r]; } else { Wp[i] = W[r * p.C + c]; }
}
#endif

#if UNPACK
struct PackP { R: u32, C: u32, _a: u32, _b: u32 }
@group(0) @binding(0) var<storage, read> Wp: array<f32>;
@group(0) @binding(1) var<storage, read_write> W: array<f32>;
@group(0) @binding(2) var<storage, read_write> B: array<f32>;
@group(0) @binding(3) var<uniform> p: PackP;
@compute @workgroup_size(256)
fn unpack(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let i = flat(gid, nwg);
  let C1 = p.C + 1u;
  if (i >= p.R * C1) { return; }
  let r = i / C1;
  let c = i % C1;
  if (c == p.C) { B[r] = Wp[i]; } else { W[r * p.C + c] = Wp[i]; }
}
#endif

#if MOVE
struct MoveP { nR: u32, nC: u32, ld: u32, off: u32, flags: u32, _a: u32, _b: u32, scale: f32 }
@group(0) @binding(0) var<storage, read> Src: array<f32>;
@group(0) @binding(1) var<storage, read> RI: array<u32>;
@group(0) @binding(2) var<storage, read> CI: array<u32>;
@group(0) @binding(3) var<storage, read_write> Dst: array<f32>;
@group(0) @binding(4) var<uniform> p: MoveP;
fn rowOf(i: u32) -> u32 { if ((p.flags & 1u) != 0u) { return i; } return RI[i]; }
fn colOf(j: u32) -> u32 { if ((p.flags & 2u) != 0u) { return j; } return CI[j]; }
@compute @workgroup_size(256)
fn gather2d(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let e = flat(gid, nwg);
  if (e >= p.nR * p.nC) { return; }
  let i = e / p.nC;
  let j = e % p.nC;
  Dst[e] = p.scale * Src[p.off + rowOf(i) * p.ld + colOf(j)];
}
@compute @workgroup_size(256)
fn scatter2d(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let e = flat(gid, nwg);
  if (e >= p.nR * p.nC) { return; }
  let i = e / p.nC;
  let j = e % p.nC;
  Dst[p.off + rowOf(i) * p.ld + colOf(j)] = Src[e];
}
#endif

#if COMPACT
struct CompactP { nR: u32, nC: u32, _a: u32, _b: u32 }
@group(0) @binding(0) var<storage, read> M: array<f32>;
@group(0) @binding(1) var<storage, read> Offsets: array<u32>;
@group(0) @binding(2) var<storage, read_write> QR: array<u32>;
@group(0) @binding(3) var<storage, read_write> QC: array<u32>;
@group(0) @binding(4) var<uniform> p: CompactP;
// One thread per row: a serial scan of n_c ≤ a few thousand columns keeps the row-major order without
// a second prefix-sum pass (one dispatch per layer per shot; the OBS solves dominate).
@compute @workgroup_size(256)
fn compact(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let i = flat(gid, nwg);
  if (i >= p.nR) { return; }
  var o = Offsets[i];
  for (var j = 0u; j < p.nC; j++) {
    if (M[i * p.nC + j] != 0.0) { QR[o] = i; QC[o] = j; o++; }
  }
}
#endif
