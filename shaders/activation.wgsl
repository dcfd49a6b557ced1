// ReLU forward/backward (elementwise) and column sums (bias gradient).
//  relu:     y[i] = max(x[i], 0)                     one thread per element, grid folded into y
//  relu_bwd: dx[i] = dy[i] if y[i] > 0 else 0         (mask from the forward OUTPUT, as OPT's fc1→relu)
//  colsum:   part[rb, c] (+)= Σ_{r in block rb} x[r, c]
//            workgroup = 64 columns × 4 row lanes; the grid is (ceil(d/64), ceil(n/ROWS)). Each lane walks
//            its block's rows with stride 4 (64 consecutive floats per row read = coalesced), then the
//            4 lanes are summed in workgroup memory (1 KiB). The wrapper repeats it on `part` until one
//            row is left, so the result does not depend on atomics and is deterministic.
// INPLACE variants bind the in/out tensor once (WebGPU forbids aliasing a writable binding):
//  relu: [x, y] or INPLACE [x];  relu_bwd: [dy, y, dx] or INPLACE [dy, y];  colsum: [x, part].

struct Params { n: u32, d: u32, accumulate: u32, _pad: u32 }

#if INPLACE
@group(0) @binding(0) var<storage, read_write> o: array<f32>;
#if RELU
@group(0) @binding(1) var<uniform> p: Params;
#else
@group(0) @binding(1) var<storage, read> b: array<f32>;
@group(0) @binding(2) var<uniform> p: Params;
#endif
#else
@group(0) @binding(0) var<storage, read> a: array<f32>;
#if RELU_BWD
@group(0) @binding(1) var<storage, read> b: array<f32>;
@group(0) @binding(2) var<storage, read_write> o: array<f32>;
@group(0) @binding(3) var<uniform> p: Params;
#else
@group(0) @binding(1) var<storage, read_write> o: array<f32>;
@group(0) @binding(2) var<uniform> p: Params;
#endif
#endif

const WG: u32 = 256u;
// Rows summed by one workgroup of colsum: 256 → 3 levels cover 16M rows; fewer rows = more passes.
const ROWS: u32 = 256u;
var<workgroup> red: array<f32, 256>;

fn input(i: u32) -> f32 {
#if INPLACE
  return o[i];
#else
  return a[i];
#endif
}

#if RELU
@compute @workgroup_size(256)
fn relu(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let i = gid.x + gid.y * nwg.x * WG;
  if (i >= p.n) { return; }
  o[i] = max(input(i), 0.0);
}
#endif

#if RELU_BWD
@compute @workgroup_size(256)
fn relu_bwd(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let i = gid.x + gid.y * nwg.x * WG;
  if (i >= p.n) { return; }
  o[i] = select(0.0, input(i), b[i] > 0.0);
}
#endif

#if COLSUM
@compute @workgroup_size(64, 4)
fn colsum(@builtin(local_invocation_id) lid: vec3<u32>, @builtin(workgroup_id) wid: vec3<u32>) {
  let c = wid.x * 64u + lid.x;
  let r0 = wid.y * ROWS;
  let r1 = min(r0 + ROWS, p.n);
  var s = 0.0;
  if (c < p.d) {
    for (var r = r0 + lid.y; r < r1; r += 4u) { s += a[r * p.d + c]; }
  }
  red[lid.y * 64u + lid.x] = s;
  workgroupBarrier();
  if (lid.y == 0u && c < p.d) {
    let t = red[lid.x] + red[64u + lid.x] + red[128u + lid.x] + red[192u + lid.x];
    let k = wid.y * p.d + c;
    if (p.accumulate != 0u) { o[k] += t; } else { o[k] = t; }
  }
}
#endif
