// Reductions over f32 data. Workgroups of 256 threads; 1-D grids folded into y
// (linear workgroup id = wid.x + wid.y * nwg.x; ids past the work return together, before any barrier).
//
//  sum_flat:  pairwise multi-pass sum. Workgroup g owns the tile [g·1024, (g+1)·1024): thread t adds the
//             4 coalesced entries t, t+256, t+512, t+768 sequentially, then a 256-wide tree in workgroup
//             memory (1 KiB) gives Out[g]. The wrapper repeats on the partials until one value is left,
//             so the rounding depth is ≈ 4 + log2(n) (error ≲ (log2 n + 4)·u·Σ|x|).
//  row_sums:  [R, C] → [R], one workgroup per row: thread t adds columns t, t+256, … then the same tree.
//             Depth ≈ C/256 + 8.
//  row_sums_small: [R, C] → [R] for C ≤ 32, one thread per row, sequential over the C columns.
//  col_sums:  [R, C] → partial [ceil(R/64), C]. A workgroup covers 64 columns × 64 rows: thread
//             (lane = t / 64, col = t % 64) adds rows lane, lane+4, …, lane+60 of its column (16 terms,
//             coalesced across the 64 columns), then a 4-way tree (1 KiB). The wrapper repeats on the
//             partials until one row is left: depth ≈ 18·⌈log64 R⌉.
//  count_flat (#if ZEROS / MAXABS / NONFINITE): exact u32 reductions via atomics. Each thread folds `items` coalesced entries
//             of its tile (tile = 256·items), then one workgroup atomic, then one global atomic per
//             workgroup into Acc[0] (which the wrapper zeroes first). Operates on raw bits, so subnormals,
//             -0 and NaN are classified exactly regardless of denormal flushing or NaN folding:
//               ZEROS:     count of (bits & 0x7fffffff) == 0          (+0 and -0)
//               MAXABS:    max of (bits & 0x7fffffff); as an f32 this is max |x|, and NaN (largest bit
//                          patterns) propagates: any NaN → a NaN result, else any inf → inf
//               NONFINITE: 1 if any (bits & 0x7fffffff) >= 0x7f800000 (inf or NaN)
// `#if SQUARES` squares each input entry before summing (first pass only).

struct Params { n: u32, cols: u32, groups: u32, items: u32 }

@group(0) @binding(0) var<storage, read> X: array<f32>;
@group(0) @binding(1) var<storage, read_write> Out: array<f32>;
@group(0) @binding(2) var<uniform> p: Params;

@group(0) @binding(0) var<storage, read> Xbits: array<u32>;
@group(0) @binding(1) var<storage, read_write> Acc: array<atomic<u32>>;

const WG: u32 = 256u;           // threads per workgroup (WebGPU default maximum)
const ITEMS: u32 = 4u;          // sequential terms per thread in sum_flat: small depth, 1024-fold reduction per pass
const COL_TILE: u32 = 64u;      // columns per col_sums workgroup: 256-byte coalesced row segments
const COL_LANES: u32 = 4u;      // row lanes per col_sums workgroup (COL_TILE·COL_LANES = WG)
const COL_TERMS: u32 = 16u;     // rows per thread in col_sums: 64 rows per workgroup, 64-fold reduction per pass

var<workgroup> partial: array<f32, 256>;
var<workgroup> wacc: atomic<u32>;

fn load(i: u32) -> f32 {
  let v = X[i];
#if SQUARES
  return v * v;
#else
  return v;
#endif
}

// Tree over partial[0..256); result in partial[0]. Must be reached by the whole workgroup.
fn tree256(lid: u32) {
  for (var w = WG / 2u; w > 0u; w /= 2u) {
    workgroupBarrier();
    if (lid < w) { partial[lid] += partial[lid + w]; }
  }
}

@compute @workgroup_size(256)
fn sum_flat(@builtin(local_invocation_index) lid: u32, @builtin(workgroup_id) wid: vec3<u32>,
            @builtin(num_workgroups) nwg: vec3<u32>) {
  let g = wid.x + wid.y * nwg.x;
  if (g >= p.groups) { return; }
  let base = g * WG * ITEMS;
  var acc = 0.0;
  for (var j = 0u; j < ITEMS; j++) {
    let i = base + j * WG + lid;
    if (i < p.n) { acc += load(i); }
  }
  partial[lid] = acc;
  tree256(lid);
  if (lid == 0u) { Out[g] = partial[0]; }
}

@compute @workgroup_size(256)
fn row_sums(@builtin(local_invocation_index) lid: u32, @builtin(workgroup_id) wid: vec3<u32>,
            @builtin(num_workgroups) nwg: vec3<u32>) {
  let r = wid.x + wid.y * nwg.x;
  if (r >= p.n) { return; }
  let base = r * p.cols;
  var acc = 0.0;
  for (var c = lid; c < p.cols; c += WG) { acc += load(base + c); }
  partial[lid] = acc;
  tree256(lid);
  if (lid == 0u) { Out[r] = partial[0]; }
}

@compute @workgroup_size(256)
fn row_sums_small(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let r = gid.x + gid.y * nwg.x * WG;
  if (r >= p.n) { return; }
  var acc = 0.0;
  for (var c = 0u; c < p.cols; c++) { acc += load(r * p.cols + c); }
  Out[r] = acc;
}

// p.n = rows R, p.cols = C, p.groups = column tiles ⌈C/64⌉ · row blocks ⌈R/64⌉, p.items = column tiles.
@compute @workgroup_size(256)
fn col_sums(@builtin(local_invocation_index) lid: u32, @builtin(workgroup_id) wid: vec3<u32>,
            @builtin(num_workgroups) nwg: vec3<u32>) {
  let g = wid.x + wid.y * nwg.x;
  if (g >= p.groups) { return; }
  let tile = g % p.items;
  let block = g / p.items;
  let col = tile * COL_TILE + lid % COL_TILE;
  let lane = lid / COL_TILE;
  var acc = 0.0;
  if (col < p.cols) {
    for (var j = 0u; j < COL_TERMS; j++) {
      let r = block * COL_TILE + lane + j * COL_LANES;
      if (r < p.n) { acc += load(r * p.cols + col); }
    }
  }
  partial[lid] = acc;
  workgroupBarrier();
  if (lid < 2u * COL_TILE) { partial[lid] += partial[lid + 2u * COL_TILE]; }
  workgroupBarrier();
  if (lid < COL_TILE) {
    partial[lid] += partial[lid + COL_TILE];
    if (col < p.cols) { Out[block * p.cols + col] = partial[lid]; }
  }
}

@compute @workgroup_size(256)
fn count_flat(@builtin(local_invocation_index) lid: u32, @builtin(workgroup_id) wid: vec3<u32>,
              @builtin(num_workgroups) nwg: vec3<u32>) {
  let g = wid.x + wid.y * nwg.x;
  if (g >= p.groups) { return; }
  let base = g * WG * p.items;
  var c = 0u;
  for (var j = 0u; j < p.items; j++) {
    let i = base + j * WG + lid;
    if (i < p.n) {
      let a = Xbits[i] & 0x7fffffffu;
#if ZEROS
      c += select(0u, 1u, a == 0u);
#endif
#if MAXABS
      c = max(c, a);
#endif
#if NONFINITE
      c = max(c, select(0u, 1u, a >= 0x7f800000u));
#endif
    }
  }
#if ZEROS
  atomicAdd(&wacc, c);
  workgroupBarrier();
  if (lid == 0u) { atomicAdd(&Acc[0], atomicLoad(&wacc)); }
#else
  atomicMax(&wacc, c);
  workgroupBarrier();
  if (lid == 0u) { atomicMax(&Acc[0], atomicLoad(&wacc)); }
#endif
}
