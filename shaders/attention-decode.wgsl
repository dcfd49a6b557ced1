// Attention of ONE new query row against a KV cache (generation, batch 1), split over key chunks
// (flash-decoding), grouped-query as attention.wgsl: query head h reads kv head h / G.
// Layout: q and out [1, H·hd] (head h = columns h·hd … h·hd+hd−1); kcache, vcache [capacity, KH·hd],
// rows 0 … L−1 valid (the new token's k/v already written at row L−1; rows ≥ L are never read).
// scores s_j = scale·q·k_j for j < L (the query is the newest position: it sees every cached key).
//
// Two entry points (one per compiled variant, each declaring only its own bindings):
//  PARTIAL (grid [nchunks, H]): workgroup (c, h) streams keys [c·chunk, min(L, (c+1)·chunk)) in tiles of
//    64: thread t scores key tile+t (a dot over hd), then every thread reads the tile's 64 scores /
//    weights from workgroup memory (broadcast) for the online softmax, and thread t accumulates output
//    dims t and t+64 (v rows read coalesced). Writes the unnormalised (m, l, acc[hd]) of its chunk.
//  COMBINE (grid [H]): merges the chunks of head h: M = max m_c, l = Σ l_c·e^(m_c−M),
//    out = Σ acc_c·e^(m_c−M) / l, lse = M + log l (the same lse as attention.wgsl's).
// Workgroup memory: q row (128 f32) + scores and weights of one tile (2 × 64 f32) = 1 KiB.
// Preconditions (checked by the wrapper): 1 ≤ hd ≤ 128, 1 ≤ L ≤ capacity, G = H / KH,
// nchunks·chunk ≥ L > (nchunks−1)·chunk (no empty chunk), part holds H·nchunks·(hd+2) f32.

struct Params { L: u32, H: u32, hd: u32, scale: f32, G: u32, DK: u32, chunk: u32, nchunks: u32 }

#if PARTIAL
@group(0) @binding(0) var<storage, read> bq: array<f32>;
@group(0) @binding(1) var<storage, read> bk: array<f32>;
@group(0) @binding(2) var<storage, read> bv: array<f32>;
@group(0) @binding(3) var<storage, read_write> part: array<f32>;
@group(0) @binding(4) var<uniform> p: Params;
#else
@group(0) @binding(0) var<storage, read> part: array<f32>;
@group(0) @binding(1) var<storage, read_write> bo: array<f32>;
@group(0) @binding(2) var<storage, read_write> blse: array<f32>;
@group(0) @binding(3) var<uniform> p: Params;
#endif

const WG: u32 = 64u;
// Below any finite score, so e^(NEG − m) = 0 without infinities (WGSL has no -inf literal).
const NEG: f32 = -3.0e38;

#if PARTIAL
var<workgroup> qs: array<f32, 128>;
var<workgroup> ss: array<f32, 64>;
var<workgroup> es: array<f32, 64>;

@compute @workgroup_size(64)
fn partial(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
  let c = wid.x;
  let h = wid.y;
  let t = lid.x;
  let koff = (h / p.G) * p.hd;
  for (var d = t; d < p.hd; d += WG) { qs[d] = bq[h * p.hd + d]; }
  workgroupBarrier();
  let j0 = c * p.chunk;
  let j1 = min(p.L, j0 + p.chunk);
  var m = NEG;
  var l = 0.0;
  var a0 = 0.0;
  var a1 = 0.0;
  for (var base = j0; base < j1; base += WG) {
    let j = base + t;
    var s = NEG;
    if (j < j1) {
      var dot = 0.0;
      let kr = j * p.DK + koff;
      for (var d = 0u; d < p.hd; d++) { dot += qs[d] * bk[kr + d]; }
      s = p.scale * dot;
    }
    ss[t] = s;
    workgroupBarrier();
    let n = min(WG, j1 - base);
    var tm = m;
    for (var i = 0u; i < n; i++) { tm = max(tm, ss[i]); }
    // Every thread computed the same tm: one weight per key, then a rescale of the running sums.
    es[t] = select(0.0, exp(s - tm), j < j1);
    workgroupBarrier();
    let alpha = exp(m - tm);
    l *= alpha;
    a0 *= alpha;
    a1 *= alpha;
    for (var i = 0u; i < n; i++) {
      let e = es[i];
      l += e;
      let vr = (base + i) * p.DK + koff;
      if (t < p.hd) { a0 += e * bv[vr + t]; }
      if (t + WG < p.hd) { a1 += e * bv[vr + t + WG]; }
    }
    m = tm;
    // No third barrier: the next tile writes ss only after every thread passed the second one (done
    // reading ss), and es only after its first one (done reading es).
  }
  let o = (h * p.nchunks + c) * (p.hd + 2u);
  if (t == 0u) {
    part[o] = m;
    part[o + 1u] = l;
  }
  if (t < p.hd) { part[o + 2u + t] = a0; }
  if (t + WG < p.hd) { part[o + 2u + t + WG] = a1; }
}
#else
@compute @workgroup_size(64)
fn combine(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
  let h = wid.x;
  let t = lid.x;
  let S = p.hd + 2u;
  var M = NEG;
  for (var c = 0u; c < p.nchunks; c++) { M = max(M, part[(h * p.nchunks + c) * S]); }
  var l = 0.0;
  var a0 = 0.0;
  var a1 = 0.0;
  for (var c = 0u; c < p.nchunks; c++) {
    let o = (h * p.nchunks + c) * S;
    let w = exp(part[o] - M);
    l += w * part[o + 1u];
    if (t < p.hd) { a0 += w * part[o + 2u + t]; }
    if (t + WG < p.hd) { a1 += w * part[o + 2u + t + WG]; }
  }
  if (t < p.hd) { bo[h * p.hd + t] = a0 / l; }
  if (t + WG < p.hd) { bo[h * p.hd + t + WG] = a1 / l; }
  if (t == 0u) { blse[h] = M + log(l); }
}
#endif
