// SwiGLU (Llama MLP): y = silu(g)·u = g·σ(g)·u, elementwise, and its backward
//   dU = dy·silu(g),   dG = dy·u·σ(g)·(1 + g·σ(−g))        (1 − σ(g) = σ(−g), computed directly).
// σ is evaluated from e = exp(−|g|) ∈ (0, 1]: σ(|g|) = 1/(1+e), σ(−|g|) = e/(1+e). exp never overflows,
// so no inf/NaN for any finite g (WGSL does not promise IEEE inf arithmetic), and σ(−g) keeps full
// relative accuracy for large g instead of the cancellation of 1 − σ(g).
// Thread mapping: one thread per element, 256 per workgroup, 1-D grid folded into y (index =
// gid.x + gid.y·nwg.x·256). No workgroup memory.
// Bindings:
//  fwd: [g, u, y] or INPLACE [o (g or u in, y out), other]: `outIsUp` says which input o holds.
//  bwd: [dy, g, u, dG, dU] or INPLACE [dy, g → dG, u → dU] (each thread reads before it writes).

struct Params { n: u32, outIsUp: u32, _p0: u32, _p1: u32 }

#if FWD
#if INPLACE
@group(0) @binding(0) var<storage, read_write> o: array<f32>;
@group(0) @binding(1) var<storage, read> other: array<f32>;
@group(0) @binding(2) var<uniform> p: Params;
#else
@group(0) @binding(0) var<storage, read> gate: array<f32>;
@group(0) @binding(1) var<storage, read> up: array<f32>;
@group(0) @binding(2) var<storage, read_write> o: array<f32>;
@group(0) @binding(3) var<uniform> p: Params;
#endif
#else
@group(0) @binding(0) var<storage, read> dy: array<f32>;
#if INPLACE
@group(0) @binding(1) var<storage, read_write> gate: array<f32>;
@group(0) @binding(2) var<storage, read_write> up: array<f32>;
@group(0) @binding(3) var<uniform> p: Params;
#else
@group(0) @binding(1) var<storage, read> gate: array<f32>;
@group(0) @binding(2) var<storage, read> up: array<f32>;
@group(0) @binding(3) var<storage, read_write> dGate: array<f32>;
@group(0) @binding(4) var<storage, read_write> dUp: array<f32>;
@group(0) @binding(5) var<uniform> p: Params;
#endif
#endif

const WG: u32 = 256u;

// (σ(g), σ(−g)) without overflow.
fn sigmoids(g: f32) -> vec2<f32> {
  let e = exp(-abs(g));
  let a = 1.0 / (1.0 + e);
  let b = e * a;
  return select(vec2<f32>(b, a), vec2<f32>(a, b), g >= 0.0);
}

#if FWD
@compute @workgroup_size(256)
fn fwd(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let i = gid.x + gid.y * nwg.x * WG;
  if (i >= p.n) { return; }
#if INPLACE
  var g = o[i];
  var u = other[i];
  if (p.outIsUp != 0u) { u = o[i]; g = other[i]; }
#else
  let g = gate[i];
  let u = up[i];
#endif
  o[i] = g * sigmoids(g).x * u;
}
#endif

#if BWD
@compute @workgroup_size(256)
fn bwd(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let i = gid.x + gid.y * nwg.x * WG;
  if (i >= p.n) { return; }
  let g = gate[i];
  let u = up[i];
  let d = dy[i];
  let s = sigmoids(g);
  let dg = d * u * s.x * (1.0 + g * s.y);
  let du = d * g * s.x;
#if INPLACE
  gate[i] = dg;
  up[i] = du;
#else
  dGate[i] = dg;
  dUp[i] = du;
#endif
}
#endif
