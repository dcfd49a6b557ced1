#!/usr/bin/env bash
# One GPU-machine call per issue-13 scale target (after gpu-pack.sh; no models travel: the shapes are
# random-weight models built in memory). Each preset is one job list of bench/scale.ts; it prints the
# plan (floor, schedule, estimate, FLOP-model seconds per shot) before each job, then the measured peak
# and seconds per shot and phase, and writes $OUT/h200-scale-<preset>.json.
#   bash bench/h200-scale.sh PRESET
# Presets, with bench/scale-plan.ts's FLOP-model seconds per shot (--plan-only --host-budget 100GiB, 2026-12-04
# at e23e45d: the K-FAC kernels as profiled on the H200 plus the rewritten spdInverse's measured times) and,
# where run, the measured ones (bench/results/h200-scale.json): the model leaves out host transfers and small
# kernels and read 45 s for the 1.3B structured shot measured at 122 s, so size calls at ~3× the model;
# add ~1 min per job for model build, upload and download at 1.3B, ~3 min at 7B:
#   125m            OPT-125m, rows-cols + element, 2 GiB, 128 × 2048, 2 shots   (model 13 s; measured 26.9 / 37.3 s)
#   1.3b-rc-32      OPT-1.3B, rows-cols, 8 GiB, 32 × 2048, 2 shots              (model 45 s; measured 122 s)
#   1.3b-el-32      OPT-1.3B, element,   8 GiB, 32 × 2048, 2 shots              (model 45 s; measured 274 s, 1 shot)
#   1.3b-rc-128     OPT-1.3B, rows-cols, 8 GiB, 128 × 2048, 1 shot              (model 145 s)
#   1.3b-el-128     OPT-1.3B, element,   8 GiB, 128 × 2048, 1 shot              (model 145 s)
#   6.7b-rc-8       OPT-6.7B, rows-cols, 130 GiB, 8 × 2048, 1 shot   (model 140 s, 106 s of it inverses)
#   llama7b-rc-16   Llama-7B, rows-cols, 130 GiB, 16 × 2048, 1 shot  (model 115 s, 57 s of it inverses)
#                   Host memory at 7B: the plan's 82 / 62 GiB, plus ~27 GB per host copy of the f32 weights
#                   (the bench's model and the result at least): at or beyond the one-GPU machine's 128 GiB;
#                   nvidia-h200-x2 has 256 GiB.
#   SHOTS=n         any preset with n shots instead
#   *-kobd          the same job with --method kobd (no inverses): the schedule's passes and peak, not the surgeon's
set -euo pipefail
OUT=${OUT:-/tmp/out}; mkdir -p "$OUT"
mkdir -p node_modules/webgpu && cp .gpu/nm/index.js .gpu/nm/package.json node_modules/webgpu/
source .gpu/setup.sh
export BENCH_COMMIT=$(cat .gpu/commit 2>/dev/null || echo unknown)
preset=${1:-125m}
case "$preset" in
  125m)          a=(--shapes opt-125m --structures rows-cols,element --budgets 2GiB --nsamples 128 --shots 2) ;;
  1.3b-rc-32)    a=(--shapes opt-1.3b --structures rows-cols --budgets 8GiB --nsamples 32 --shots 2) ;;
  1.3b-el-32)    a=(--shapes opt-1.3b --structures element --budgets 8GiB --nsamples 32 --shots 2) ;;
  1.3b-rc-128)   a=(--shapes opt-1.3b --structures rows-cols --budgets 8GiB --nsamples 128 --shots 1) ;;
  1.3b-el-128)   a=(--shapes opt-1.3b --structures element --budgets 8GiB --nsamples 128 --shots 1) ;;
  6.7b-rc-8)     a=(--shapes opt-6.7b --structures rows-cols --budgets 130GiB --nsamples 8 --shots 1) ;;
  llama7b-rc-16) a=(--shapes llama-7b --structures rows-cols --budgets 130GiB --nsamples 16 --shots 1) ;;
  *-kobd)        exec env OUT="$OUT" bash "$0" "${preset%-kobd}" --method kobd ;;
  *) echo "unknown preset $preset (see the header of bench/h200-scale.sh)" >&2; exit 2 ;;
esac
# SHOTS=n overrides the preset's shot count (a shorter measurement of the same job)
if [ -n "${SHOTS:-}" ]; then for i in "${!a[@]}"; do [ "${a[$i]}" = --shots ] && a[$((i + 1))]=$SHOTS; done; fi
free -g | head -2
node --max-old-space-size=8192 dist-node/scale.mjs "${a[@]}" "${@:2}" --seqlen 2048 --sparsity 0.025 --out "$OUT/h200-scale-$preset.json" 2>&1 | tail -n 60
