// Cross-entropy over the vocabulary, one chunk of rows at a time (logits chunk [rows, V] from
// matmul(hidden_chunk, E, transB)); global row = rowOffset + chunk row, so loss/lse/labels are the
// full-N tensors and chunks never need copies of them. Label 0xFFFFFFFF = no label (loss 0, grad 0).
//  LSE:    one workgroup (256 threads) per row: each thread keeps an online (max, Σexp) over columns
//          j ≡ lid (mod 256) (coalesced), pairs are merged by a tree in workgroup memory (2 KiB).
//          lse[g] = m + log s; loss[g] = lse − z[label].
//  GRAD:   in place, one thread per logit: z ← gradScale·(exp(z − lse[g]) − [j = label]).
//  ARGMAX: one workgroup per row, (value, index) tree, lowest index on ties. With GUMBEL, value =
//          z + Gumbel(hash(seed, g, j)): the argmax is then an exact sample of softmax(z) (Gumbel-max),
//          independent of the chunking. With `useMask`, rows whose label is NO_LABEL output NO_LABEL.
// Rows are folded into (x, y) workgroups when rows > 65535.

struct Params { rows: u32, V: u32, rowOffset: u32, seed: u32, gradScale: f32, useMask: u32, _p0: u32, _p1: u32 }

const NO_LABEL: u32 = 0xffffffffu;
const WG: u32 = 256u;
const NEG: f32 = -3.0e38;

#if LSE
@group(0) @binding(0) var<storage, read> z: array<f32>;
@group(0) @binding(1) var<storage, read> labels: array<u32>;
@group(0) @binding(2) var<storage, read_write> loss: array<f32>;
@group(0) @binding(3) var<storage, read_write> lse: array<f32>;
@group(0) @binding(4) var<uniform> p: Params;
var<workgroup> rm: array<f32, 256>;
var<workgroup> rs: array<f32, 256>;

@compute @workgroup_size(256)
fn lse_rows(@builtin(local_invocation_index) lid: u32, @builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let r = wid.x + wid.y * nwg.x;
  if (r >= p.rows) { return; } // uniform per workgroup
  let base = r * p.V;
  var m = NEG;
  var s = 0.0;
  for (var j = lid; j < p.V; j += WG) {
    let v = z[base + j];
    if (v > m) { s = s * exp(m - v) + 1.0; m = v; } else { s += exp(v - m); }
  }
  rm[lid] = m;
  rs[lid] = s;
  workgroupBarrier();
  for (var w = WG / 2u; w > 0u; w /= 2u) {
    if (lid < w) {
      let m2 = rm[lid + w];
      let mm = max(rm[lid], m2);
      rs[lid] = rs[lid] * exp(rm[lid] - mm) + rs[lid + w] * exp(m2 - mm);
      rm[lid] = mm;
    }
    workgroupBarrier();
  }
  if (lid == 0u) {
    let g = p.rowOffset + r;
    let l = rm[0] + log(rs[0]);
    lse[g] = l;
    let lab = labels[g];
    loss[g] = select(l - z[base + min(lab, p.V - 1u)], 0.0, lab >= p.V);
  }
}
#endif

#if GRAD
@group(0) @binding(0) var<storage, read_write> z: array<f32>;
@group(0) @binding(1) var<storage, read> labels: array<u32>;
@group(0) @binding(2) var<storage, read> lse: array<f32>;
@group(0) @binding(3) var<uniform> p: Params;

@compute @workgroup_size(256)
fn grad(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let i = gid.x + gid.y * nwg.x * WG;
  if (i >= p.rows * p.V) { return; }
  let r = i / p.V;
  let j = i - r * p.V;
  let g = p.rowOffset + r;
  let lab = labels[g];
  let pr = exp(z[i] - lse[g]) - select(0.0, 1.0, j == lab);
  z[i] = select(p.gradScale * pr, 0.0, lab >= p.V);
}
#endif

#if ARGMAX
@group(0) @binding(0) var<storage, read> z: array<f32>;
@group(0) @binding(1) var<storage, read> labels: array<u32>;
@group(0) @binding(2) var<storage, read_write> outIdx: array<u32>;
@group(0) @binding(3) var<uniform> p: Params;
var<workgroup> bv: array<f32, 256>;
var<workgroup> bi: array<u32, 256>;

// PCG hash (also in src/reference/layers.ts: hash32).
fn hash(x: u32) -> u32 {
  let s = x * 747796405u + 2891336453u;
  let w = ((s >> ((s >> 28u) + 4u)) ^ s) * 277803737u;
  return (w >> 22u) ^ w;
}

@compute @workgroup_size(256)
fn argmax(@builtin(local_invocation_index) lid: u32, @builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let r = wid.x + wid.y * nwg.x;
  if (r >= p.rows) { return; }
  let g = p.rowOffset + r;
  let base = r * p.V;
  var best = NEG;
  var arg = NO_LABEL;
#if GUMBEL
  let hr = hash(hash(p.seed) ^ g);
#endif
  for (var j = lid; j < p.V; j += WG) {
    var v = z[base + j];
#if GUMBEL
    // u ∈ (0, 1): 23 random bits + ½ is exact in f32, so u never rounds to 0 or 1.
    let u = (f32(hash(hr ^ j) >> 9u) + 0.5) * (1.0 / 8388608.0);
    v += -log(-log(u));
#endif
    if (v > best || arg == NO_LABEL) { best = v; arg = j; }
  }
  bv[lid] = best;
  bi[lid] = arg;
  workgroupBarrier();
  for (var w = WG / 2u; w > 0u; w /= 2u) {
    if (lid < w) {
      let v2 = bv[lid + w];
      let i2 = bi[lid + w];
      if (i2 != NO_LABEL && (bi[lid] == NO_LABEL || v2 > bv[lid] || (v2 == bv[lid] && i2 < bi[lid]))) { bv[lid] = v2; bi[lid] = i2; }
    }
    workgroupBarrier();
  }
  if (lid == 0u) {
    let masked = p.useMask != 0u && labels[g] == NO_LABEL;
    outIdx[g] = select(bi[0], NO_LABEL, masked);
  }
}
#endif
