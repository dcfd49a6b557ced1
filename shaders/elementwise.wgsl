// Elementwise kernels: one thread per element, 256 threads per workgroup, 1-D grid folded into y
// (linear element index = gid.x + gid.y * nwg.x * 256). No workgroup memory, no barriers.
//  scale:      Out = alpha * X
//  add / mul:  Out = A + B / A * B
//  axpy:       Y += alpha * X                (in place)
//  fill:       Y = bits                      (in place; raw 32-bit pattern, so -0, NaN and ints are exact)
//  apply_mask: W = M != 0 ? (M == 1 ? W : W * M) : +0   (in place; pruned entries become exactly +0, never -0)
//  cast_f16 / cast_bf16: Out[i] = f32 bits of half i of the packed words P (half 2w is the low 16 bits of
//              word w, little-endian like a safetensors buffer). Pure integer decode: exact for every bit
//              pattern (subnormals, ±inf, NaN payloads) and independent of shader-f16 and of denormal flushing.
// Bindings: entry points reuse binding numbers with different types/access; no entry point touches two
// variables with the same binding (WGSL allows this), so every KernelSpec lists only what its entry uses.

struct Params { n: u32, alpha: f32, bits: u32, _pad: u32 }

@group(0) @binding(0) var<storage, read> X: array<f32>;
@group(0) @binding(1) var<storage, read_write> Out: array<f32>;

@group(0) @binding(0) var<storage, read> A: array<f32>;
@group(0) @binding(1) var<storage, read> B: array<f32>;
@group(0) @binding(2) var<storage, read_write> AB: array<f32>;

@group(0) @binding(0) var<storage, read_write> Y: array<f32>;
@group(0) @binding(1) var<storage, read> Xin: array<f32>;

@group(0) @binding(0) var<storage, read_write> Wbits: array<u32>;
@group(0) @binding(1) var<storage, read> Mask: array<f32>;

@group(0) @binding(0) var<storage, read_write> Fill: array<u32>;

@group(0) @binding(0) var<storage, read> P: array<u32>;
@group(0) @binding(1) var<storage, read_write> OutBits: array<u32>;

@group(0) @binding(2) var<uniform> p2: Params; // entries with 2 storage bindings
@group(0) @binding(3) var<uniform> p3: Params; // entries with 3 storage bindings
@group(0) @binding(1) var<uniform> p1: Params; // entries with 1 storage binding

const WG: u32 = 256u; // 256 threads: the WebGPU default maximum, full warps/wavefronts everywhere

fn linear(gid: vec3<u32>, nwg: vec3<u32>) -> u32 { return gid.x + gid.y * nwg.x * WG; }

@compute @workgroup_size(256)
fn scale(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let i = linear(gid, nwg);
  if (i >= p2.n) { return; }
  Out[i] = p2.alpha * X[i];
}

@compute @workgroup_size(256)
fn add(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let i = linear(gid, nwg);
  if (i >= p3.n) { return; }
  AB[i] = A[i] + B[i];
}

@compute @workgroup_size(256)
fn mul(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let i = linear(gid, nwg);
  if (i >= p3.n) { return; }
  AB[i] = A[i] * B[i];
}

@compute @workgroup_size(256)
fn axpy(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let i = linear(gid, nwg);
  if (i >= p2.n) { return; }
  Y[i] = Y[i] + p2.alpha * Xin[i];
}

@compute @workgroup_size(256)
fn fill(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let i = linear(gid, nwg);
  if (i >= p1.n) { return; }
  Fill[i] = p1.bits;
}

@compute @workgroup_size(256)
fn apply_mask(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let i = linear(gid, nwg);
  if (i >= p2.n) { return; }
  let m = Mask[i];
  if (m == 0.0) {
    Wbits[i] = 0u;
  } else if (m != 1.0) {
    Wbits[i] = bitcast<u32>(bitcast<f32>(Wbits[i]) * m);
  }
}

// f16 → f32 bits. Normal: rebias exponent 15 → 127; subnormal m·2^-24: normalise the mantissa by its
// leading bit p (value 2^(p-24)·1.f → biased exponent p + 103); exponent 31: inf/NaN keeps its payload.
fn half_to_f32_bits(h: u32) -> u32 {
  let s = (h & 0x8000u) << 16u;
  let e = (h >> 10u) & 0x1fu;
  let m = h & 0x3ffu;
  if (e == 0u) {
    if (m == 0u) { return s; }
    let lead = firstLeadingBit(m);        // 0..9
    let mn = (m << (10u - lead)) & 0x3ffu; // drop the implicit leading one
    return s | ((lead + 103u) << 23u) | (mn << 13u);
  }
  if (e == 31u) { return s | 0x7f800000u | (m << 13u); }
  return s | ((e + 112u) << 23u) | (m << 13u);
}

@compute @workgroup_size(256)
fn cast_f16(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let i = linear(gid, nwg);
  if (i >= p2.n) { return; }
  let h = (P[i >> 1u] >> ((i & 1u) * 16u)) & 0xffffu;
  OutBits[i] = half_to_f32_bits(h);
}

@compute @workgroup_size(256)
fn cast_bf16(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let i = linear(gid, nwg);
  if (i >= p2.n) { return; }
  let h = (P[i >> 1u] >> ((i & 1u) * 16u)) & 0xffffu;
  OutBits[i] = h << 16u; // bf16 is the top half of an f32
}
