// Optimiser and masked-merge kernels of the low-rank corrections (ALGORITHM.md §8). One thread per
// element, 256 threads per workgroup, 1-D grid folded into y (index = gid.x + gid.y * nwg.x * 256).
// No workgroup memory, no barriers.
//  adam:      bias-corrected Adam, in place on the parameter P and its moments M, V (gradient Gr):
//               m = b1·m + c1·g;  v = b2·v + c2·g²;  p −= lr·(m/bc1) / (sqrt(v/bc2) + eps)
//             with c1 = 1 − b1, c2 = 1 − b2, bc1 = 1 − b1^t, bc2 = 1 − b2^t computed in float64 on the host
//             (1 − f32(0.999) in f32 is off by 1.3e-5 relative, which showed in every step).
//  merge:     W = W0 != 0 ? W0 + D : W0      (in place on W). The keep-mask is "W0 is not zero": pruned
//             entries, removed rows and removed columns of W0 are zero and stay bit-identical (±0 kept),
//             so the zero pattern never changes. A kept entry whose sum rounds to exactly 0 keeps W0
//             instead, so no merge can add a zero either.
//  mask_grad: X = W0 != 0 ? X : 0            (in place; the chain rule through the mask: ∂L/∂(BA) = M∘∂L/∂W)
// Bindings: entry points reuse binding numbers with different types (WGSL allows it as long as no entry
// point touches two variables of one binding); each KernelSpec lists only what its entry uses.

struct Params { n: u32, lr: f32, b1: f32, b2: f32, c1: f32, c2: f32, bc1: f32, bc2: f32, eps: f32 }

@group(0) @binding(0) var<storage, read_write> P: array<f32>;
@group(0) @binding(1) var<storage, read> Gr: array<f32>;
@group(0) @binding(2) var<storage, read_write> M: array<f32>;
@group(0) @binding(3) var<storage, read_write> V: array<f32>;
@group(0) @binding(4) var<uniform> p4: Params; // adam (4 storage bindings)

@group(0) @binding(0) var<storage, read_write> W: array<f32>;
@group(0) @binding(1) var<storage, read> W0: array<f32>;
@group(0) @binding(2) var<storage, read> D: array<f32>;
@group(0) @binding(3) var<uniform> p3: Params; // merge (3 storage bindings)

@group(0) @binding(0) var<storage, read_write> X: array<f32>;
@group(0) @binding(1) var<storage, read> Ref: array<f32>;
@group(0) @binding(2) var<uniform> p2: Params; // mask_grad (2 storage bindings)

const WG: u32 = 256u; // 256 threads: the WebGPU default maximum, full warps/wavefronts everywhere

fn linear(gid: vec3<u32>, nwg: vec3<u32>) -> u32 { return gid.x + gid.y * nwg.x * WG; }

@compute @workgroup_size(256)
fn adam(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let i = linear(gid, nwg);
  if (i >= p4.n) { return; }
  let g = Gr[i];
  let m = p4.b1 * M[i] + p4.c1 * g;
  let v = p4.b2 * V[i] + p4.c2 * g * g;
  M[i] = m;
  V[i] = v;
  P[i] = P[i] - p4.lr * (m / p4.bc1) / (sqrt(v / p4.bc2) + p4.eps);
}

@compute @workgroup_size(256)
fn merge(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let i = linear(gid, nwg);
  if (i >= p3.n) { return; }
  let w0 = W0[i];
  var w = w0;
  if (w0 != 0.0) {
    let s = w0 + D[i];
    if (s != 0.0) { w = s; }
  }
  W[i] = w;
}

@compute @workgroup_size(256)
fn mask_grad(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let i = linear(gid, nwg);
  if (i >= p2.n) { return; }
  if (Ref[i] == 0.0) { X[i] = 0.0; }
}
