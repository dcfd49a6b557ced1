// Uniforms and bindings of the matmul product kernels (matmul.wgsl's main and reg, matmul-warp.wgsl), prepended
// to their sources by src/kernels/matmul.ts (WGSL has no include). strideA/strideB: batch strides (0 for a
// broadcast 2-D operand). VEC4: A and B as vec4 (their stored contiguous dimensions are multiples of 4);
// VEC4C: C as vec4 (N % 4 == 0; matmul-warp.wgsl only).
struct Params {
  M: u32, N: u32, K: u32, strideA: u32,
  strideB: u32, alpha: f32, kSplit: u32, nb: u32,   // kSplit, nb: split-K only (K per split, batch count)
}

#if VEC4
@group(0) @binding(0) var<storage, read> A: array<vec4<f32>>;
@group(0) @binding(1) var<storage, read> B: array<vec4<f32>>;
#else
@group(0) @binding(0) var<storage, read> A: array<f32>;
@group(0) @binding(1) var<storage, read> B: array<f32>;
#endif
@group(0) @binding(2) var<storage, read> bias: array<f32>;
#if VEC4C
@group(0) @binding(3) var<storage, read_write> C: array<vec4<f32>>;
#else
@group(0) @binding(3) var<storage, read_write> C: array<f32>;
#endif
@group(0) @binding(4) var<uniform> p: Params;
