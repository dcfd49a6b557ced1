// Causal multi-head self-attention, flash-attention style (scores never stored), forward + backward,
// with grouped-query attention (GQA/MQA) and an optional sliding window.
// Layout: q, out, dOut, dq are [B·T, H·hd] row-major (head h = columns h·hd … h·hd+hd−1); k, v, dk, dv
// are [B·T, KH·hd] with KH = H / G key/value heads: query head h reads kv head h / G (G = 1: plain MHA).
// lse and delta are [B·T, H]. scores s_ij = scale·q_i·k_j for visible j (same sequence, j ≤ i, and
// i − j < win in the WINDOW variant), P = softmax_j(s).
//
// Thread mapping (all kernels): a workgroup of BQ = 64 threads owns 64 consecutive rows (queries in
// fwd/dq, keys in dkv) of one (b, h) = workgroup_id.y (dkv: of one (b, kv head)); each thread keeps
// its row and its accumulators in registers as HD4 vec4s (head dim zero-padded to 4·HD4), and the
// workgroup streams tiles of the other side through workgroup memory; every thread then reads each
// tile row as a broadcast.
//  fwd: per key tile, scores of the tile → tile max → one rescale of (m, l, acc) → acc += p·v
//       (online softmax). Writes out = acc / l and lse = m + log l.
//  delta: D_i = dOut_i · out_i (one thread per (row, head)).
//  dq:  dq_i = scale · Σ_j p_ij (dOut_i·v_j − D_i) k_j, p_ij = exp(s_ij − lse_i); streams K, V tiles.
//  dkv: dv_j = Σ_i p_ij dOut_i,  dk_j = scale · Σ_i p_ij (dOut_i·v_j − D_i) q_i; streams Q, dOut tiles
//       of each of the G query heads of its kv head in turn, so the group sum stays in registers.
// Splitting dq from dkv recomputes P once more but needs no atomics and no T×T storage.
// Causality: blocks skip tiles entirely above the diagonal (and, with a window, entirely outside it:
// the bounds use p.win, which is T without a window, so they are then the plain causal ones); fwd/dq
// start with the heaviest (last) query blocks, dkv with the heaviest (first) key blocks, to balance the
// tail of the grid.
// Workgroup memory: two tiles of BK·HD4 vec4 (fwd 16 KiB at hd 64/128; bwd ≤ 12.3 KiB) — within the
// 16 KiB every adapter provides. Preconditions: 1 ≤ hd ≤ 4·HD4, B·H ≤ 65535 (grid y), G = H / KH,
// 1 ≤ win ≤ T.

// D = H·hd (q row stride), DK = KH·hd (k/v row stride), G = H / KH, win = sliding window (T if none).
struct Params { B: u32, T: u32, H: u32, hd: u32, scale: f32, nblk: u32, D: u32, KH: u32, G: u32, DK: u32, win: u32, _pad: u32 }

// One entry point per compiled variant (FWD | DELTA | DQ | DKV): each declares only its own bindings,
// so no pipeline needs more than 8 storage buffers (the WebGPU default limit).
#if !DELTA
@group(0) @binding(0) var<storage, read> bq: array<f32>;
@group(0) @binding(1) var<storage, read> bk: array<f32>;
@group(0) @binding(2) var<storage, read> bv: array<f32>;
#endif
#if FWD
@group(0) @binding(3) var<storage, read_write> bo: array<f32>;
@group(0) @binding(4) var<storage, read_write> blse: array<f32>;
@group(0) @binding(5) var<uniform> p: Params;
#endif
#if DELTA
@group(0) @binding(0) var<storage, read> bdo: array<f32>;
@group(0) @binding(1) var<storage, read> bo: array<f32>;
@group(0) @binding(2) var<storage, read_write> bdel: array<f32>;
@group(0) @binding(3) var<uniform> p: Params;
#endif
#if DQ
@group(0) @binding(3) var<storage, read> bdo: array<f32>;
@group(0) @binding(4) var<storage, read> blse: array<f32>;
@group(0) @binding(5) var<storage, read> bdel: array<f32>;
@group(0) @binding(6) var<storage, read_write> bg1: array<f32>; // dq
@group(0) @binding(7) var<uniform> p: Params;
#endif
#if DKV
@group(0) @binding(3) var<storage, read> bdo: array<f32>;
@group(0) @binding(4) var<storage, read> blse: array<f32>;
@group(0) @binding(5) var<storage, read> bdel: array<f32>;
@group(0) @binding(6) var<storage, read_write> bg1: array<f32>; // dk
@group(0) @binding(7) var<storage, read_write> bg2: array<f32>; // dv
@group(0) @binding(8) var<uniform> p: Params;
#endif

// HD4 = padded head dim / 4 (a private array length must be a constant). BKF / BKB = key (query)
// rows per streamed tile in fwd / bwd: as many as fit in 16 KiB (fwd, 2 tiles) or ~12 KiB (bwd,
// 2 tiles + lse/delta), capped at 32 because each thread keeps BKF scores in registers.
#if HD16
const HD4: u32 = 4u;
const BKF: u32 = 32u;
const BKB: u32 = 32u;
#endif
#if HD32
const HD4: u32 = 8u;
const BKF: u32 = 32u;
const BKB: u32 = 32u;
#endif
#if HD64
const HD4: u32 = 16u;
const BKF: u32 = 32u;
const BKB: u32 = 24u;
#endif
#if HD128
const HD4: u32 = 32u;
const BKF: u32 = 16u;
const BKB: u32 = 12u;
#endif
// Rows per workgroup (= threads): 64 keeps ≥ 2 warps' worth of rows per block and ~T/64·B·H blocks.
const BQ: u32 = 64u;
const NEG: f32 = -3.0e38; // "minus infinity" that keeps m − m_new finite

var<workgroup> ta: array<vec4<f32>, BKF * HD4>;
var<workgroup> tb: array<vec4<f32>, BKF * HD4>;
var<workgroup> tl: array<f32, BKB>;
var<workgroup> td: array<f32, BKB>;

fn base(row: u32, h: u32) -> u32 { return row * p.D + h * p.hd; }
fn kbase(row: u32, kh: u32) -> u32 { return row * p.DK + kh * p.hd; }

// Whether query i sees key j. The window test is compiled only into the WINDOW variant, so the plain
// causal kernels run exactly the causal mask.
fn vis(i: u32, j: u32) -> bool {
#if WINDOW
  return j <= i && i - j < p.win;
#else
  return j <= i;
#endif
}

// First key any query row ≥ q0 sees (0 without a window).
fn kfirst(q0: u32) -> u32 { return select(0u, q0 + 1u - p.win, q0 + 1u > p.win); }

// Element c4·4 … c4·4+3 of a head row, zero beyond hd. One helper per buffer (no pointer parameters).
#if !DELTA
fn ldq(b0: u32, c4: u32) -> vec4<f32> {
  var r = vec4<f32>(0.0);
  for (var e = 0u; e < 4u; e++) { let c = c4 * 4u + e; if (c < p.hd) { r[e] = bq[b0 + c]; } }
  return r;
}
fn ldk(b0: u32, c4: u32) -> vec4<f32> {
  var r = vec4<f32>(0.0);
  for (var e = 0u; e < 4u; e++) { let c = c4 * 4u + e; if (c < p.hd) { r[e] = bk[b0 + c]; } }
  return r;
}
fn ldv(b0: u32, c4: u32) -> vec4<f32> {
  var r = vec4<f32>(0.0);
  for (var e = 0u; e < 4u; e++) { let c = c4 * 4u + e; if (c < p.hd) { r[e] = bv[b0 + c]; } }
  return r;
}
#endif
#if !FWD
fn lddo(b0: u32, c4: u32) -> vec4<f32> {
  var r = vec4<f32>(0.0);
  for (var e = 0u; e < 4u; e++) { let c = c4 * 4u + e; if (c < p.hd) { r[e] = bdo[b0 + c]; } }
  return r;
}

#endif

#if FWD
@compute @workgroup_size(64)
fn fwd(@builtin(local_invocation_index) lid: u32, @builtin(workgroup_id) wid: vec3<u32>) {
  let b = wid.y / p.H;
  let h = wid.y % p.H;
  let kh = h / p.G;
  let qb = p.nblk - 1u - wid.x;
  let i = qb * BQ + lid;
  let ic = min(i, p.T - 1u);
  let rb = b * p.T;
  var q: array<vec4<f32>, HD4>;
  var acc: array<vec4<f32>, HD4>;
  for (var c = 0u; c < HD4; c++) { q[c] = ldq(base(rb + ic, h), c) * p.scale; acc[c] = vec4<f32>(0.0); }
  var m = NEG;
  var l = 0.0;
  var s: array<f32, BKF>;
  let kend = min(p.T, qb * BQ + BQ);
  for (var k0 = kfirst(qb * BQ); k0 < kend; k0 += BKF) {
    for (var e = lid; e < BKF * HD4; e += BQ) {
      let j = k0 + e / HD4;
      var kv = vec4<f32>(0.0);
      var vv = vec4<f32>(0.0);
      if (j < p.T) { kv = ldk(kbase(rb + j, kh), e % HD4); vv = ldv(kbase(rb + j, kh), e % HD4); }
      ta[e] = kv;
      tb[e] = vv;
    }
    workgroupBarrier();
    var tmax = NEG;
    for (var jr = 0u; jr < BKF; jr++) {
      var dt = 0.0;
      for (var c = 0u; c < HD4; c++) { dt += dot(q[c], ta[jr * HD4 + c]); }
      s[jr] = select(NEG, dt, vis(ic, k0 + jr));
      tmax = max(tmax, s[jr]);
    }
    let mn = max(m, tmax);
    let alpha = exp(m - mn);
    l *= alpha;
    for (var c = 0u; c < HD4; c++) { acc[c] *= alpha; }
    for (var jr = 0u; jr < BKF; jr++) {
      let pr = select(0.0, exp(s[jr] - mn), vis(ic, k0 + jr));
      l += pr;
      for (var c = 0u; c < HD4; c++) { acc[c] += pr * tb[jr * HD4 + c]; }
    }
    m = mn;
    workgroupBarrier();
  }
  if (i < p.T) {
    let o0 = base(rb + i, h);
    let inv = 1.0 / l;
    for (var c = 0u; c < p.hd; c++) { bo[o0 + c] = acc[c / 4u][c % 4u] * inv; }
    blse[(rb + i) * p.H + h] = m + log(l);
  }
}

#endif

#if DELTA
@compute @workgroup_size(256)
fn delta(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let idx = gid.x + gid.y * nwg.x * 256u;
  if (idx >= p.B * p.T * p.H) { return; }
  let o0 = base(idx / p.H, idx % p.H);
  var s = 0.0;
  for (var c = 0u; c < p.hd; c++) { s += bdo[o0 + c] * bo[o0 + c]; }
  bdel[idx] = s;
}

#endif

#if DQ
@compute @workgroup_size(64)
fn dq(@builtin(local_invocation_index) lid: u32, @builtin(workgroup_id) wid: vec3<u32>) {
  let b = wid.y / p.H;
  let h = wid.y % p.H;
  let kh = h / p.G;
  let qb = p.nblk - 1u - wid.x;
  let i = qb * BQ + lid;
  let ic = min(i, p.T - 1u);
  let rb = b * p.T;
  var q: array<vec4<f32>, HD4>;
  var g: array<vec4<f32>, HD4>;
  var acc: array<vec4<f32>, HD4>;
  let r0 = base(rb + ic, h);
  for (var c = 0u; c < HD4; c++) { q[c] = ldq(r0, c) * p.scale; g[c] = lddo(r0, c); acc[c] = vec4<f32>(0.0); }
  let li = blse[(rb + ic) * p.H + h];
  let di = bdel[(rb + ic) * p.H + h];
  let kend = min(p.T, qb * BQ + BQ);
  for (var k0 = kfirst(qb * BQ); k0 < kend; k0 += BKB) {
    for (var e = lid; e < BKB * HD4; e += BQ) {
      let j = k0 + e / HD4;
      var kv = vec4<f32>(0.0);
      var vv = vec4<f32>(0.0);
      if (j < p.T) { kv = ldk(kbase(rb + j, kh), e % HD4); vv = ldv(kbase(rb + j, kh), e % HD4); }
      ta[e] = kv;
      tb[e] = vv;
    }
    workgroupBarrier();
    for (var jr = 0u; jr < BKB; jr++) {
      var st = 0.0;
      var dp = 0.0;
      for (var c = 0u; c < HD4; c++) { st += dot(q[c], ta[jr * HD4 + c]); dp += dot(g[c], tb[jr * HD4 + c]); }
      let pr = select(0.0, exp(st - li), vis(ic, k0 + jr));
      let ds = pr * (dp - di);
      for (var c = 0u; c < HD4; c++) { acc[c] += ds * ta[jr * HD4 + c]; }
    }
    workgroupBarrier();
  }
  if (i < p.T) {
    let o0 = base(rb + i, h);
    for (var c = 0u; c < p.hd; c++) { bg1[o0 + c] = acc[c / 4u][c % 4u] * p.scale; }
  }
}

#endif

#if DKV
// Grid: (key block, b·KH + kv head). Each thread accumulates its key row's dk, dv over the query rows
// of all G query heads that read this kv head, one head after the other (G = 1: the plain MHA loop).
@compute @workgroup_size(64)
fn dkv(@builtin(local_invocation_index) lid: u32, @builtin(workgroup_id) wid: vec3<u32>) {
  let b = wid.y / p.KH;
  let kh = wid.y % p.KH;
  let kb = wid.x;
  let j = kb * BQ + lid;
  let jc = min(j, p.T - 1u);
  let rb = b * p.T;
  var kr: array<vec4<f32>, HD4>;
  var vr: array<vec4<f32>, HD4>;
  var dk: array<vec4<f32>, HD4>;
  var dv: array<vec4<f32>, HD4>;
  let r0 = kbase(rb + jc, kh);
  for (var c = 0u; c < HD4; c++) { kr[c] = ldk(r0, c); vr[c] = ldv(r0, c); dk[c] = vec4<f32>(0.0); dv[c] = vec4<f32>(0.0); }
  // Queries that see some key of this block: up to the last key + win − 1 (T without a window).
  let jl = min(kb * BQ + BQ, p.T) - 1u;
  let qend = min(p.T, jl + p.win);
  for (var h = kh * p.G; h < kh * p.G + p.G; h++) {
    for (var q0 = kb * BQ; q0 < qend; q0 += BKB) {
      for (var e = lid; e < BKB * HD4; e += BQ) {
        let i = q0 + e / HD4;
        var qv = vec4<f32>(0.0);
        var gv = vec4<f32>(0.0);
        if (i < p.T) { qv = ldq(base(rb + i, h), e % HD4) * p.scale; gv = lddo(base(rb + i, h), e % HD4); }
        ta[e] = qv;
        tb[e] = gv;
      }
      if (lid < BKB) {
        let i = q0 + lid;
        let ok = i < p.T;
        let ii = (rb + min(i, p.T - 1u)) * p.H + h;
        tl[lid] = select(0.0, blse[ii], ok);
        td[lid] = select(0.0, bdel[ii], ok);
      }
      workgroupBarrier();
      for (var ir = 0u; ir < BKB; ir++) {
        let i = q0 + ir;
        var st = 0.0;
        var dp = 0.0;
        for (var c = 0u; c < HD4; c++) { st += dot(ta[ir * HD4 + c], kr[c]); dp += dot(tb[ir * HD4 + c], vr[c]); }
        let pr = select(0.0, exp(st - tl[ir]), vis(i, jc) && i < p.T);
        let ds = pr * (dp - td[ir]);
        for (var c = 0u; c < HD4; c++) { dv[c] += pr * tb[ir * HD4 + c]; dk[c] += ds * ta[ir * HD4 + c]; }
      }
      workgroupBarrier();
    }
  }
  if (j < p.T) {
    let o0 = kbase(rb + j, kh);
    for (var c = 0u; c < p.hd; c++) { bg1[o0 + c] = dk[c / 4u][c % 4u]; bg2[o0 + c] = dv[c / 4u][c % 4u]; }
  }
}
#endif
