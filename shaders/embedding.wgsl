// Input embedding: x[r, j] = Etok[ids[r], j] + Epos[(r mod T) + 2 + posOffset, j] (OPT's learned
// positions with HF's offset of 2), or with NOPOS just Etok[ids[r], j] (Llama: positions enter through
// RoPE; the epos binding is then bound to Etok and never read). Rows are B sequences of T tokens, ids are u32.
// One thread per output element (memory bound; rows of d ≥ 768 floats read coalesced), grid folded
// into y. An id ≥ vocab or a position ≥ maxPos writes NaN so that the error cannot go unnoticed
// (ids live on the GPU; checking them on the host would need a readback).

struct Params { n: u32, d: u32, T: u32, posOffset: u32, vocab: u32, maxPos: u32, _p0: u32, _p1: u32 }

@group(0) @binding(0) var<storage, read> ids: array<u32>;
@group(0) @binding(1) var<storage, read> etok: array<f32>;
@group(0) @binding(2) var<storage, read> epos: array<f32>;
@group(0) @binding(3) var<storage, read_write> x: array<f32>;
@group(0) @binding(4) var<uniform> p: Params;

const WG: u32 = 256u;

@compute @workgroup_size(256)
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let i = gid.x + gid.y * nwg.x * WG;
  if (i >= p.n * p.d) { return; }
  let r = i / p.d;
  let j = i - r * p.d;
  let id = ids[r];
  let pos = r % p.T + 2u + p.posOffset;
#if NOPOS
  if (id >= p.vocab) {
    x[i] = bitcast<f32>(0x7fc00000u | p._p0);
    return;
  }
  x[i] = etok[id * p.d + j];
#else
  if (id >= p.vocab || pos >= p.maxPos) {
    x[i] = bitcast<f32>(0x7fc00000u | p._p0); // _p0 = 0; a runtime value, a constant NaN does not compile
    return;
  }
  x[i] = etok[id * p.d + j] + epos[pos * p.d + j];
#endif
}
