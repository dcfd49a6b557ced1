// In-place moves between a row-major n×n matrix and its lower triangle packed row by row
// (row i at tri(i) = i(i+1)/2, entries 0..i), for host spills at half the bytes (kernels/triangle.ts).
// One dispatch per block of rows [r0, r0 + gridY): pack moves each row down to its packed place,
// unpack moves it back up. The host picks blocks whose reads and writes are disjoint (tri(r1) ≤ r0·n),
// so threads of one dispatch never read what another writes; dispatches are ordered.
struct Params { n: u32, r0: u32, _p0: u32, _p1: u32 }
@group(0) @binding(0) var<storage, read_write> M: array<f32>;
@group(0) @binding(1) var<uniform> p: Params;

@compute @workgroup_size(256)
fn pack(@builtin(global_invocation_id) g: vec3<u32>) {
  let i = p.r0 + g.y;
  let j = g.x;
  if (i >= p.n || j > i) { return; }
  M[i * (i + 1u) / 2u + j] = M[i * p.n + j];
}

@compute @workgroup_size(256)
fn unpack(@builtin(global_invocation_id) g: vec3<u32>) {
  let i = p.r0 + g.y;
  let j = g.x;
  if (i >= p.n || j > i) { return; }
  M[i * p.n + j] = M[i * (i + 1u) / 2u + j];
}
