// Diagonal utilities for square row-major n×n matrices (batched over `batch` matrices, stride n*n).
//  extract: out[b*n + i] = M[b][i][i]                   one thread per diagonal entry
//  damp:    M[b] += lambda * mean(diag M[b]) * I        one workgroup (256 threads) per matrix:
//           tree-reduce the diagonal sum in workgroup memory (1 KiB), then every thread updates
//           its strided share of the diagonal. Reads the diagonal only once per entry in each phase.

struct Params { n: u32, batch: u32, lambda: f32, _pad: u32 }

@group(0) @binding(0) var<storage, read_write> M: array<f32>;
@group(0) @binding(1) var<storage, read_write> outDiag: array<f32>;
@group(0) @binding(2) var<uniform> p: Params;

const WG: u32 = 256u;
var<workgroup> partial: array<f32, 256>;

@compute @workgroup_size(256)
fn extract(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let idx = gid.x + gid.y * nwg.x * WG;
  if (idx >= p.n * p.batch) { return; }
  let b = idx / p.n;
  let i = idx % p.n;
  outDiag[idx] = M[b * p.n * p.n + i * p.n + i];
}

@compute @workgroup_size(256)
fn damp(@builtin(local_invocation_index) lid: u32, @builtin(workgroup_id) wid: vec3<u32>) {
  let b = wid.x;
  let base = b * p.n * p.n;
  var s = 0.0;
  for (var i = lid; i < p.n; i += WG) { s += M[base + i * p.n + i]; }
  partial[lid] = s;
  workgroupBarrier();
  for (var w = WG / 2u; w > 0u; w /= 2u) {
    if (lid < w) { partial[lid] += partial[lid + w]; }
    workgroupBarrier();
  }
  let add = p.lambda * partial[0] / f32(p.n);
  for (var i = lid; i < p.n; i += WG) { M[base + i * p.n + i] += add; }
  if (lid == 0u) { outDiag[b] = add; }
}
