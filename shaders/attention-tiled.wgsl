// Causal multi-head self-attention, FlashAttention-2 style tiling: the alternative to attention.wgsl
// ('tiled' impl), same semantics, bindings, uniforms and layouts (see the header there): q, out, dOut,
// dq are [B·T, H·hd]; k, v, dk, dv [B·T, KH·hd], query head h reading kv head h / G (grouped-query
// attention); lse, delta are [B·T, H]; s_ij = scale·q_i·k_j for visible j (j ≤ i, and i − j < win in
// the WINDOW variant), P = softmax_j(s). The delta kernel is shared with attention.wgsl.
//
// A workgroup of 256 threads owns BM = 64 rows (queries in fwd/dq, keys in dkv) of one (b, h) =
// workgroup_id.y (dkv: of one (b, kv head), looping over its G query heads so that dk, dv sum the
// group in registers) and streams 64-row tiles of the other side. Thread (ty, tx) = (lid / 16, lid % 16)
// owns the 4×4 score block rows 4ty … 4ty+3 × columns 4tx … 4tx+3 of each 64×64 tile, and the output
// block rows 4ty … 4ty+3 × columns 64j + 4tx … 64j + 4tx+3 (j < NJ, NJ = padded head dim / 64):
//  S = Q·Kᵀ (and dP = dO·Vᵀ) is a tiled matmul over the head dim in chunks of DK = 32, both operands
//    staged transposed ([k][row quad] vec4s), so one k step is 2 vec4 loads and 16 FMAs;
//  row statistics (max for the online softmax, the final sum) go through a 16-way reduction in
//    workgroup memory, done by 16 threads (one per row quad);
//  O += P·V (dq += dS·K, dv += Pᵀ·dO, dk += dSᵀ·Q) stages P (dS) in chunks of PK key (query) rows,
//    transposed to [k][row quad], next to the matching PK rows of V (K, dO, Q) as [k][column quad].
// Registers per thread (floats): fwd 16 scores + 16·NJ accumulators + 12 row statistics; dq 32 + 16·NJ
// + 8; dkv 32 + 32·NJ + 8 (vs up to 256 in attention.wgsl's one-row-per-thread kernels).
// Workgroup memory: one 1024-vec4 (16 KiB) array reused by the phases (S staging 2·DK·64 floats;
// reduction 64·16 + 128; P/V staging PK·64 + PK·64·NJ), separated by barriers.
// Causality: fwd/dq visit key tiles 0 … qb (only tile qb needs a mask), heaviest query blocks first;
// dkv visits query tiles kb … nblk−1, heaviest key blocks first. A window raises the first key tile
// (fwd/dq) or lowers the last query tile (dkv) and masks the tiles crossing its edge as well; without
// one, p.win = T and the bounds are the causal ones. Preconditions: 1 ≤ hd ≤ 64·NJ, B·H ≤ 65535
// (grid y), G = H / KH, 1 ≤ win ≤ T. Rows past T are loaded as zeros and never written.
// Phases: scores() (staging + S or dP) and accumulate() (P chunk + rows of V/K/dO/Q → output block).
// Barriers per 64×64 tile at hd 64 (128): fwd 11 (19), dq 12 (20), dkv 16 (24).
// On an H200 fwd+bwd is 4.3× faster than attention.wgsl and 0.43× PyTorch SDPA (bench/results/
// h200-kernels-attention.json). Tuning points left: stageT's global loads (consecutive threads take
// consecutive row quads: conflict-free stores, but each load instruction touches 16 rows), DK/PK, and
// 128 threads with 8×4 blocks instead of 256 with 4×4.

struct Params { B: u32, T: u32, H: u32, hd: u32, scale: f32, nblk: u32, D: u32, KH: u32, G: u32, DK: u32, win: u32, _pad: u32 }

@group(0) @binding(0) var<storage, read> bq: array<f32>;
@group(0) @binding(1) var<storage, read> bk: array<f32>;
@group(0) @binding(2) var<storage, read> bv: array<f32>;
#if FWD
@group(0) @binding(3) var<storage, read_write> bo: array<f32>;
@group(0) @binding(4) var<storage, read_write> blse: array<f32>;
@group(0) @binding(5) var<uniform> p: Params;
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

// NJ = output column quads per thread / 4 (head dim padded to 64·NJ); PK = P rows per staged chunk,
// so that PK·64 (P) + PK·64·NJ (V) floats fit the 4096-float array.
#if HD64
const NJ: u32 = 1u;
const PK: u32 = 32u;
#endif
#if HD128
const NJ: u32 = 2u;
const PK: u32 = 16u;
#endif
const BM: u32 = 64u;       // rows per workgroup and per streamed tile (attention.ts: BQ)
const DK: u32 = 32u;       // head-dim chunk of the score matmuls
const OB: u32 = DK * 16u;  // vec4 offset of the second staged score operand
const OV: u32 = PK * 16u;  // vec4 offset of the row-major tile next to the staged P chunk
const RED: u32 = 256u;     // vec4 offset of the two row-statistic vectors after the 16×16 reduction
const NEG: f32 = -3.0e38;  // "minus infinity" that keeps differences finite

var<workgroup> sm: array<vec4<f32>, 1024>;

// Element c of row r (within the sequence starting at row rb) of buffer w (0 q·scale, 1 k, 2 v,
// 3 dOut): of query head hh.x for q and dOut, of kv head hh.y for k and v; zero past T or hd.
fn g(w: u32, rb: u32, r: u32, hh: vec2<u32>, c: u32) -> f32 {
  if (r >= p.T || c >= p.hd) { return 0.0; }
  switch w {
    case 0u: { return bq[(rb + r) * p.D + hh.x * p.hd + c] * p.scale; }
    case 1u: { return bk[(rb + r) * p.DK + hh.y * p.hd + c]; }
    case 2u: { return bv[(rb + r) * p.DK + hh.y * p.hd + c]; }
#if FWD
    default: { return 0.0; }
#else
    default: { return bdo[(rb + r) * p.D + hh.x * p.hd + c]; }
#endif
  }
}

// Which of keys j query i sees (elementwise). The window test is compiled only into the WINDOW
// variant, so the plain causal kernels run exactly the causal mask.
fn vis4(i: vec4<u32>, j: vec4<u32>) -> vec4<bool> {
#if WINDOW
  return (j <= i) & (i - j < vec4<u32>(p.win));
#else
  return j <= i;
#endif
}

// First key any query row ≥ q0 sees (0 without a window).
fn kfirst(q0: u32) -> u32 { return select(0u, q0 + 1u - p.win, q0 + 1u > p.win); }

// Score operand, transposed: sm[off + kk·16 + rq] = rows r0 + 4rq … r0 + 4rq + 3 at column c0 + kk.
// Consecutive threads take consecutive row quads, so the stores are conflict-free.
fn stageT(w: u32, off: u32, rb: u32, r0: u32, hh: vec2<u32>, c0: u32, lid: u32) {
  for (var e = lid; e < DK * 16u; e += 256u) {
    let rq = e % 16u;
    let c = c0 + e / 16u;
    let r = r0 + 4u * rq;
    sm[off + e] = vec4<f32>(g(w, rb, r, hh, c), g(w, rb, r + 1u, hh, c), g(w, rb, r + 2u, hh, c), g(w, rb, r + 3u, hh, c));
  }
}

// Output operand, row-major: sm[OV + k·16NJ + cq] = row r0 + k, columns 4cq … 4cq+3, k < PK.
fn stageR(w: u32, rb: u32, r0: u32, hh: vec2<u32>, lid: u32) {
  for (var e = lid; e < PK * 16u * NJ; e += 256u) {
    let r = r0 + e / (16u * NJ);
    let c = 4u * (e % (16u * NJ));
    sm[OV + e] = vec4<f32>(g(w, rb, r, hh, c), g(w, rb, r, hh, c + 1u), g(w, rb, r, hh, c + 2u), g(w, rb, r, hh, c + 3u));
  }
}

// Maximum of each row of a 4×4 block (rows = array index).
fn rowmax(s: array<vec4<f32>, 4>) -> vec4<f32> {
  var m: vec4<f32>;
  for (var a = 0u; a < 4u; a++) { m[a] = max(max(s[a].x, s[a].y), max(s[a].z, s[a].w)); }
  return m;
}

// Column b of a 4×4 block, i.e. that key's (query's) values for the thread's 4 rows.
fn col(s: array<vec4<f32>, 4>, b: u32) -> vec4<f32> {
  return vec4<f32>(s[0][b], s[1][b], s[2][b], s[3][b]);
}

// The thread's 4×4 block of A·Bᵀ over the head dim: rows ra0 + 4ty + a of buffer wa against rows
// rb0 + 4tx + e of buffer wb (see g for w and hh). Call from uniform control flow (barriers).
fn scores(wa: u32, ra0: u32, wb: u32, rb0: u32, rb: u32, hh: vec2<u32>, lid: u32) -> array<vec4<f32>, 4> {
  let ty = lid / 16u;
  let tx = lid % 16u;
  // Explicit initialiser: on SwiftShader a bare `var s: array<…>;` in a loop body kept the previous
  // iteration's values (seen 2026-11, Dawn/Tint; WGSL zero-initialises each time the declaration runs).
  var s = array<vec4<f32>, 4>();
  for (var c0 = 0u; c0 < p.hd; c0 += DK) {
    workgroupBarrier();
    stageT(wa, 0u, rb, ra0, hh, c0, lid);
    stageT(wb, OB, rb, rb0, hh, c0, lid);
    workgroupBarrier();
    for (var kk = 0u; kk < DK; kk++) {
      let x = sm[kk * 16u + ty];
      let y = sm[OB + kk * 16u + tx];
      s[0] += x.x * y; s[1] += x.y * y; s[2] += x.z * y; s[3] += x.w * y;
    }
  }
  return s;
}

// acc[4j + a] += Σ_k pb[a][k] · R[k][64j + 4tx …] over the PK block columns kc … kc+PK−1, R = rows
// r0 … r0+PK−1 of buffer w: stages that P chunk (transposed) and R, then accumulates. Uniform control flow.
fn accumulate(acc: ptr<function, array<vec4<f32>, 4u * NJ>>, pb: array<vec4<f32>, 4>, kc: u32, w: u32, rb: u32, r0: u32, hh: vec2<u32>, lid: u32) {
  let ty = lid / 16u;
  let tx = lid % 16u;
  workgroupBarrier();
  if (4u * tx >= kc && 4u * tx < kc + PK) {
    for (var e = 0u; e < 4u; e++) { sm[(4u * tx + e - kc) * 16u + ty] = col(pb, e); }
  }
  stageR(w, rb, r0, hh, lid);
  workgroupBarrier();
  for (var kk = 0u; kk < PK; kk++) {
    let x = sm[kk * 16u + ty];
    for (var j = 0u; j < NJ; j++) {
      let y = sm[OV + kk * 16u * NJ + j * 16u + tx];
      (*acc)[4u * j] += x.x * y; (*acc)[4u * j + 1u] += x.y * y; (*acc)[4u * j + 2u] += x.z * y; (*acc)[4u * j + 3u] += x.w * y;
    }
  }
}

#if FWD
@compute @workgroup_size(256)
fn fwd(@builtin(local_invocation_index) lid: u32, @builtin(workgroup_id) wid: vec3<u32>) {
  let b = wid.y / p.H;
  let h = wid.y % p.H;
  let hh = vec2<u32>(h, h / p.G);
  let qb = p.nblk - 1u - wid.x;
  let q0 = qb * BM;
  let rb = b * p.T;
  let ty = lid / 16u;
  let tx = lid % 16u;
  var acc = array<vec4<f32>, 4u * NJ>(); // acc[4j + a] = out row 4ty+a, columns 64j + 4tx …
  var lp = vec4<f32>(0.0);            // partial softmax sums of rows 4ty+a over this thread's columns
  var mrun = vec4<f32>(NEG);          // running max of rows 4lid+a (threads lid < 16 only)
  for (var kt = kfirst(q0) / BM; kt <= qb; kt++) {
    let k0 = kt * BM;
    let jv = k0 + 4u * tx + vec4<u32>(0u, 1u, 2u, 3u); // this thread's 4 keys
    var s = scores(0u, q0, 1u, k0, rb, hh, lid);
    // Tiles holding hidden keys: the diagonal one, and with a window those crossing its lower edge.
#if WINDOW
    let edge = kt == qb || q0 + BM - 1u - k0 >= p.win;
#else
    let edge = kt == qb;
#endif
    if (edge) {
      for (var a = 0u; a < 4u; a++) { s[a] = select(vec4<f32>(NEG), s[a], vis4(vec4<u32>(q0 + 4u * ty + a), jv)); }
    }
    workgroupBarrier();
    sm[tx * 16u + ty] = rowmax(s);
    workgroupBarrier();
    if (lid < 16u) {
      var m = mrun;
      for (var t = 0u; t < 16u; t++) { m = max(m, sm[t * 16u + lid]); }
      sm[RED + lid] = m;
      sm[RED + 16u + lid] = exp(mrun - m);
      mrun = m;
    }
    workgroupBarrier();
    let mn = sm[RED + ty];
    let al = sm[RED + 16u + ty];
    for (var a = 0u; a < 4u; a++) {
      s[a] = exp(s[a] - mn[a]); // masked entries: exp(NEG − finite) = 0 (key 0 is in every row)
#if WINDOW
      // … but a row may have no key in the window yet: then mn = NEG and exp(NEG − NEG) = 1.
      if (edge) { s[a] = select(vec4<f32>(0.0), s[a], vis4(vec4<u32>(q0 + 4u * ty + a), jv)); }
#endif
      lp[a] = lp[a] * al[a] + (s[a].x + s[a].y + s[a].z + s[a].w);
      for (var j = 0u; j < NJ; j++) { acc[4u * j + a] *= al[a]; }
    }
    for (var kc = 0u; kc < BM; kc += PK) { accumulate(&acc, s, kc, 2u, rb, k0 + kc, hh, lid); }
  }
  workgroupBarrier();
  sm[tx * 16u + ty] = lp;
  workgroupBarrier();
  if (lid < 16u) {
    var l = vec4<f32>(0.0);
    for (var t = 0u; t < 16u; t++) { l += sm[t * 16u + lid]; }
    for (var a = 0u; a < 4u; a++) {
      let i = q0 + 4u * lid + a;
      if (i < p.T) { blse[(rb + i) * p.H + h] = mrun[a] + log(l[a]); }
    }
    sm[RED + lid] = 1.0 / l;
  }
  workgroupBarrier();
  let inv = sm[RED + ty];
  for (var a = 0u; a < 4u; a++) {
    let i = q0 + 4u * ty + a;
    if (i < p.T) {
      let o0 = (rb + i) * p.D + h * p.hd;
      for (var j = 0u; j < NJ; j++) {
        for (var e = 0u; e < 4u; e++) {
          let c = 64u * j + 4u * tx + e;
          if (c < p.hd) { bo[o0 + c] = acc[4u * j + a][e] * inv[a]; }
        }
      }
    }
  }
}
#endif

#if DQ
@compute @workgroup_size(256)
fn dq(@builtin(local_invocation_index) lid: u32, @builtin(workgroup_id) wid: vec3<u32>) {
  let b = wid.y / p.H;
  let h = wid.y % p.H;
  let hh = vec2<u32>(h, h / p.G);
  let qb = p.nblk - 1u - wid.x;
  let q0 = qb * BM;
  let rb = b * p.T;
  let ty = lid / 16u;
  let tx = lid % 16u;
  var li: vec4<f32>;
  var di: vec4<f32>;
  for (var a = 0u; a < 4u; a++) {
    let ii = (rb + min(q0 + 4u * ty + a, p.T - 1u)) * p.H + h;
    li[a] = blse[ii];
    di[a] = bdel[ii];
  }
  var acc = array<vec4<f32>, 4u * NJ>();
  for (var kt = kfirst(q0) / BM; kt <= qb; kt++) {
    let k0 = kt * BM;
    let jv = k0 + 4u * tx + vec4<u32>(0u, 1u, 2u, 3u); // this thread's 4 keys
    let s = scores(0u, q0, 1u, k0, rb, hh, lid);
    var ds = scores(3u, q0, 2u, k0, rb, hh, lid); // dP = dO·Vᵀ, then dS = P ∘ (dP − D)
    for (var a = 0u; a < 4u; a++) {
      // Masked entries select 0 before any product (exp may overflow there).
      let ok = vis4(vec4<u32>(q0 + 4u * ty + a), jv);
      ds[a] = select(vec4<f32>(0.0), exp(s[a] - li[a]), ok) * (ds[a] - di[a]);
    }
    for (var kc = 0u; kc < BM; kc += PK) { accumulate(&acc, ds, kc, 1u, rb, k0 + kc, hh, lid); }
  }
  for (var a = 0u; a < 4u; a++) {
    let i = q0 + 4u * ty + a;
    if (i < p.T) {
      let o0 = (rb + i) * p.D + h * p.hd;
      for (var j = 0u; j < NJ; j++) {
        for (var e = 0u; e < 4u; e++) {
          let c = 64u * j + 4u * tx + e;
          if (c < p.hd) { bg1[o0 + c] = acc[4u * j + a][e] * p.scale; }
        }
      }
    }
  }
}
#endif

#if DKV
@compute @workgroup_size(256)
fn dkv(@builtin(local_invocation_index) lid: u32, @builtin(workgroup_id) wid: vec3<u32>) {
  let b = wid.y / p.KH;
  let kh = wid.y % p.KH;
  let kb = wid.x;
  let j0 = kb * BM;
  let rb = b * p.T;
  let ty = lid / 16u; // key rows 4ty … 4ty+3
  let tx = lid % 16u; // query columns 4tx … 4tx+3 of each tile
  var dk = array<vec4<f32>, 4u * NJ>();
  var dv = array<vec4<f32>, 4u * NJ>();
  // Query tiles that see some key of this block: up to the last key + win − 1 (nblk without a window).
  let qtend = (min(p.T, min(j0 + BM, p.T) - 1u + p.win) + BM - 1u) / BM;
  for (var h = kh * p.G; h < kh * p.G + p.G; h++) {
    let hh = vec2<u32>(h, kh);
    for (var qt = kb; qt < qtend; qt++) {
      let q0 = qt * BM;
      // Transposed blocks: s[a][e] = score of query q0+4tx+e against key j0+4ty+a, dp likewise.
      var s = scores(1u, j0, 0u, q0, rb, hh, lid);
      var dp = scores(2u, j0, 3u, q0, rb, hh, lid);
      var lq: vec4<f32>;
      var dq4: vec4<f32>;
      let iv = q0 + 4u * tx + vec4<u32>(0u, 1u, 2u, 3u);
      for (var e = 0u; e < 4u; e++) {
        let ii = (rb + min(iv[e], p.T - 1u)) * p.H + h;
        lq[e] = blse[ii];
        dq4[e] = bdel[ii];
      }
      // P in s, dS in dp; masked (hidden, or query past T) entries select 0 first.
      for (var a = 0u; a < 4u; a++) {
        let ok = vis4(iv, vec4<u32>(j0 + 4u * ty + a)) & (iv < vec4<u32>(p.T));
        s[a] = select(vec4<f32>(0.0), exp(s[a] - lq), ok);
        dp[a] = s[a] * (dp[a] - dq4);
      }
      for (var kc = 0u; kc < BM; kc += PK) {
        accumulate(&dv, s, kc, 3u, rb, q0 + kc, hh, lid);  // dv += Pᵀ·dO
        accumulate(&dk, dp, kc, 0u, rb, q0 + kc, hh, lid); // dk += dSᵀ·(scale·q)
      }
    }
  }
  for (var a = 0u; a < 4u; a++) {
    let jr = j0 + 4u * ty + a;
    if (jr < p.T) {
      let o0 = (rb + jr) * p.DK + kh * p.hd;
      for (var j = 0u; j < NJ; j++) {
        for (var e = 0u; e < 4u; e++) {
          let c = 64u * j + 4u * tx + e;
          if (c < p.hd) { bg1[o0 + c] = dk[4u * j + a][e]; bg2[o0 + c] = dv[4u * j + a][e]; }
        }
      }
    }
  }
}
#endif
