// Rotary position embeddings, Hugging Face rotate-half convention, on x [rows, heads·hd].
//  Row r holds position pos = (r mod seqLen) + offset (rows are B stacked sequences of seqLen tokens;
//  offset > 0 for generation with a cache). Within each head, dims i and i + hd/2 (i < hd/2) rotate:
//    out_i = x_i·cos − x_{i+hd/2}·sin,   out_{i+hd/2} = x_{i+hd/2}·cos + x_i·sin,   angle = pos·invFreq[i]
//  sgn = −1 uses sin → −sin: the transpose (inverse) rotation, which is the exact backward.
// Table [maxT, hd]: row t = [cos(t·f_0) … cos(t·f_{hd/2−1}), sin(t·f_0) … sin(t·f_{hd/2−1})], f32 values of
//  float64 angles computed on the host (WGSL sin/cos of large angles are inaccurate).
// Thread mapping: one thread per rotated pair (r, head, i), i fastest: a warp reads consecutive x and table
//  entries; 1-D grid folded into y (pair index = gid.x + gid.y·nwg.x·256). No workgroup memory.
// Each thread reads its two elements before writing them, so the INPLACE variant (one read_write
//  binding: WebGPU forbids aliasing it with another binding) is race-free.
// Bindings: [x, table, out] or INPLACE [x (in/out), table].
// Preconditions (checked by the wrapper): hd even, offset + seqLen ≤ maxT, table has hd columns.

struct Params { pairs: u32, half: u32, heads: u32, seqLen: u32, offset: u32, sgn: f32, _p0: u32, _p1: u32 }

#if INPLACE
@group(0) @binding(0) var<storage, read_write> o: array<f32>;
@group(0) @binding(1) var<storage, read> table: array<f32>;
@group(0) @binding(2) var<uniform> p: Params;
#else
@group(0) @binding(0) var<storage, read> x: array<f32>;
@group(0) @binding(1) var<storage, read> table: array<f32>;
@group(0) @binding(2) var<storage, read_write> o: array<f32>;
@group(0) @binding(3) var<uniform> p: Params;
#endif

const WG: u32 = 256u;

fn input(k: u32) -> f32 {
#if INPLACE
  return o[k];
#else
  return x[k];
#endif
}

@compute @workgroup_size(256)
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let q = gid.x + gid.y * nwg.x * WG;
  if (q >= p.pairs) { return; }
  let i = q % p.half;
  let rh = q / p.half; // = r·heads + head
  let r = rh / p.heads;
  let pos = r % p.seqLen + p.offset;
  let k1 = rh * 2u * p.half + i; // head base (rh·hd) + i
  let k2 = k1 + p.half;
  let c = table[pos * 2u * p.half + i];
  let s = p.sgn * table[pos * 2u * p.half + p.half + i];
  let x1 = input(k1);
  let x2 = input(k2);
  o[k1] = x1 * c - x2 * s;
  o[k2] = x2 * c + x1 * s;
}
