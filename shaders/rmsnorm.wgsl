// RMSNorm over rows of length d (Llama: y = x·rstd·γ, rstd = 1/sqrt(mean(x²) + eps), no mean, no bias).
//
//  fwd:    one workgroup (256 threads) per row; each thread strides the row by 256 summing x², the
//          partials are tree-reduced in workgroup memory (1 KiB). Writes y and rstd[r].
//          No cancellation to avoid (every term ≥ 0), so one pass is as accurate as two.
//  bwd:    one workgroup per row: with g = dy·γ and x̂ = x·rstd, dx = rstd·(g − x̂·mean(g·x̂)).
//  params: dγ = Σ_r dy·x̂ as per-block partial sums: workgroup = 64 columns × 4 row lanes over a block of
//          ROWS rows, grid (ceil(d/64), ceil(n/ROWS)); writes part[nb, d], summed by colsum (activation.wgsl).
// Grid: rows are folded into (x, y) when n > 65535. Preconditions: d ≥ 1, rstd from fwd.
// Bindings (one #if block per entry point, so each spec lists only what its entry uses):
//  FWD [x, γ, y, rstd]   BWD [x, γ, dy, rstd, dx]   PARAMS [x, dy, rstd, part]

struct Params { n: u32, d: u32, eps: f32, _pad: u32 }

@group(0) @binding(0) var<storage, read> x: array<f32>;
#if FWD
@group(0) @binding(1) var<storage, read> gamma: array<f32>;
@group(0) @binding(2) var<storage, read_write> y: array<f32>;
@group(0) @binding(3) var<storage, read_write> rstd_out: array<f32>;
@group(0) @binding(4) var<uniform> p: Params;
#endif
#if BWD
@group(0) @binding(1) var<storage, read> gamma: array<f32>;
@group(0) @binding(2) var<storage, read> dy: array<f32>;
@group(0) @binding(3) var<storage, read> rstd: array<f32>;
@group(0) @binding(4) var<storage, read_write> dx: array<f32>;
@group(0) @binding(5) var<uniform> p: Params;
#endif
#if PARAMS
@group(0) @binding(1) var<storage, read> dy: array<f32>;
@group(0) @binding(2) var<storage, read> rstd: array<f32>;
@group(0) @binding(3) var<storage, read_write> part: array<f32>;
@group(0) @binding(4) var<uniform> p: Params;
#endif

const WG: u32 = 256u;
// Rows per workgroup of the parameter-gradient kernel (as layernorm.wgsl): amortises the reduction,
// still ≥ 8 blocks per column strip at n = 2048.
const ROWS: u32 = 256u;
var<workgroup> red: array<f32, 256>;

fn reduce(lid: u32, v: f32) -> f32 {
  red[lid] = v;
  workgroupBarrier();
  for (var w = WG / 2u; w > 0u; w /= 2u) {
    if (lid < w) { red[lid] += red[lid + w]; }
    workgroupBarrier();
  }
  return red[0];
}

#if FWD
@compute @workgroup_size(256)
fn fwd(@builtin(local_invocation_index) lid: u32, @builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let row = wid.x + wid.y * nwg.x;
  if (row >= p.n) { return; } // uniform per workgroup: barriers stay in uniform control flow
  let base = row * p.d;
  var s = 0.0;
  for (var j = lid; j < p.d; j += WG) { let v = x[base + j]; s += v * v; }
  let rs = inverseSqrt(reduce(lid, s) / f32(p.d) + p.eps);
  // (x·rstd)·γ in this order, as HF (normalise in fp32, then scale by the weight).
  for (var j = lid; j < p.d; j += WG) { y[base + j] = (x[base + j] * rs) * gamma[j]; }
  if (lid == 0u) { rstd_out[row] = rs; }
}
#endif

#if BWD
@compute @workgroup_size(256)
fn bwd(@builtin(local_invocation_index) lid: u32, @builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let row = wid.x + wid.y * nwg.x;
  if (row >= p.n) { return; }
  let base = row * p.d;
  let rs = rstd[row];
  var acc = 0.0;
  for (var j = lid; j < p.d; j += WG) { acc += dy[base + j] * gamma[j] * x[base + j]; }
  let t = reduce(lid, acc) * rs / f32(p.d); // mean(g·x̂)
  for (var j = lid; j < p.d; j += WG) {
    dx[base + j] = rs * (dy[base + j] * gamma[j] - x[base + j] * rs * t);
  }
}
#endif

#if PARAMS
@compute @workgroup_size(64, 4)
fn params(@builtin(local_invocation_id) lid: vec3<u32>, @builtin(workgroup_id) wid: vec3<u32>) {
  let c = wid.x * 64u + lid.x;
  let r0 = wid.y * ROWS;
  let r1 = min(r0 + ROWS, p.n);
  var acc = 0.0;
  if (c < p.d) {
    for (var r = r0 + lid.y; r < r1; r += 4u) { acc += dy[r * p.d + c] * x[r * p.d + c] * rstd[r]; }
  }
  red[lid.y * 64u + lid.x] = acc;
  workgroupBarrier();
  if (lid.y == 0u && c < p.d) {
    part[wid.y * p.d + c] = red[lid.x] + red[64u + lid.x] + red[128u + lid.x] + red[192u + lid.x];
  }
}
#endif
