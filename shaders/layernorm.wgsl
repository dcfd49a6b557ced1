// LayerNorm over rows of length d (HF OPT: eps 1e-5, affine), forward and backward.
//
//  fwd:    one workgroup (256 threads) per row. Two passes over the row (mean, then Σ(x−mean)² — the
//          two-pass form avoids the cancellation of E[x²]−mean²); each thread strides the row by 256,
//          sums are tree-reduced in workgroup memory (2 KiB). Writes y, mean[r], rstd[r].
//  bwd:    one workgroup per row: with g = dy·γ and x̂ = (x−mean)·rstd,
//          dx = rstd·(g − mean(g) − x̂·mean(g·x̂)); both means in one vec2 reduction.
//  params: dγ = Σ_r dy·x̂, dβ = Σ_r dy as per-block partial sums: workgroup = 64 columns × 4 row
//          lanes over a block of ROWS rows, grid (ceil(d/64), ceil(n/ROWS)); writes part[nb, 2d]
//          (per block: d dγ partials, then d dβ partials), summed by colsum (activation.wgsl).
// Grid: rows are folded into (x, y) when n > 65535. Preconditions: d ≥ 1, mean/rstd from fwd.

struct Params { n: u32, d: u32, eps: f32, nb: u32 }

@group(0) @binding(0) var<storage, read> x: array<f32>;
@group(0) @binding(1) var<storage, read> gamma: array<f32>;
@group(0) @binding(2) var<storage, read> beta_or_dy: array<f32>;
@group(0) @binding(3) var<storage, read_write> y_or_dx: array<f32>;
@group(0) @binding(4) var<storage, read_write> mean: array<f32>;
@group(0) @binding(5) var<storage, read_write> rstd: array<f32>;
@group(0) @binding(6) var<uniform> p: Params;

const WG: u32 = 256u;
// Rows per workgroup of the parameter-gradient kernel: long enough to amortise the reduction,
// short enough that n = 2048 rows still gives ≥ 8 blocks per column strip.
const ROWS: u32 = 256u;
var<workgroup> red: array<vec2<f32>, 256>;

fn reduce2(lid: u32, v: vec2<f32>) -> vec2<f32> {
  red[lid] = v;
  workgroupBarrier();
  for (var w = WG / 2u; w > 0u; w /= 2u) {
    if (lid < w) { red[lid] += red[lid + w]; }
    workgroupBarrier();
  }
  let r = red[0];
  workgroupBarrier(); // red is reused by the next reduction
  return r;
}

@compute @workgroup_size(256)
fn fwd(@builtin(local_invocation_index) lid: u32, @builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let row = wid.x + wid.y * nwg.x;
  if (row >= p.n) { return; } // uniform per workgroup: barriers stay in uniform control flow
  let base = row * p.d;
  var s = 0.0;
  for (var j = lid; j < p.d; j += WG) { s += x[base + j]; }
  let m = reduce2(lid, vec2<f32>(s, 0.0)).x / f32(p.d);
  var v = 0.0;
  for (var j = lid; j < p.d; j += WG) { let c = x[base + j] - m; v += c * c; }
  let rs = inverseSqrt(reduce2(lid, vec2<f32>(v, 0.0)).x / f32(p.d) + p.eps);
  for (var j = lid; j < p.d; j += WG) {
    y_or_dx[base + j] = (x[base + j] - m) * rs * gamma[j] + beta_or_dy[j];
  }
  if (lid == 0u) { mean[row] = m; rstd[row] = rs; }
}

@compute @workgroup_size(256)
fn bwd(@builtin(local_invocation_index) lid: u32, @builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let row = wid.x + wid.y * nwg.x;
  if (row >= p.n) { return; }
  let base = row * p.d;
  let m = mean[row];
  let rs = rstd[row];
  var acc = vec2<f32>(0.0);
  for (var j = lid; j < p.d; j += WG) {
    let g = beta_or_dy[base + j] * gamma[j];
    acc += vec2<f32>(g, g * (x[base + j] - m) * rs);
  }
  let t = reduce2(lid, acc) / f32(p.d);
  for (var j = lid; j < p.d; j += WG) {
    let g = beta_or_dy[base + j] * gamma[j];
    y_or_dx[base + j] = rs * (g - t.x - (x[base + j] - m) * rs * t.y);
  }
}

// Bindings as in bwd; y_or_dx receives the partials [nb, 2d].
@compute @workgroup_size(64, 4)
fn params(@builtin(local_invocation_id) lid: vec3<u32>, @builtin(workgroup_id) wid: vec3<u32>) {
  let c = wid.x * 64u + lid.x;
  let r0 = wid.y * ROWS;
  let r1 = min(r0 + ROWS, p.n);
  var acc = vec2<f32>(0.0);
  if (c < p.d) {
    for (var r = r0 + lid.y; r < r1; r += 4u) {
      let g = beta_or_dy[r * p.d + c];
      acc += vec2<f32>(g * (x[r * p.d + c] - mean[r]) * rstd[r], g);
    }
  }
  let li = lid.y * 64u + lid.x;
  red[li] = acc;
  workgroupBarrier();
  if (lid.y == 0u && c < p.d) {
    let t = red[lid.x] + red[64u + lid.x] + red[128u + lid.x] + red[192u + lid.x];
    y_or_dx[wid.y * 2u * p.d + c] = t.x;
    y_or_dx[wid.y * 2u * p.d + p.d + c] = t.y;
  }
}
