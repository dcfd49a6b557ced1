#!/usr/bin/env bash
# One GPU-machine call for issue 13's scale targets (after gpu-pack.sh; no models travel: the shapes are
# random-weight models built in memory): OPT-125m under 2 GiB and OPT-1.3B under 8 GiB, structured and
# unstructured, 2 shots each (seconds per shot and per phase), 128 × 2048 calibration.
#   bash bench/h200-scale.sh [SHAPES] [BUDGETS]     (outputs in $OUT: h200-scale.json)
OUT=${OUT:-/tmp/out}; mkdir -p "$OUT"
mkdir -p node_modules/webgpu && cp .gpu/nm/index.js .gpu/nm/package.json node_modules/webgpu/
source .gpu/setup.sh
export BENCH_COMMIT=$(cat .gpu/commit 2>/dev/null || echo unknown)
node dist-node/scale.mjs --shapes "${1:-opt-125m,opt-1.3b}" --budgets "${2:-2GiB,8GiB}" --nsamples 128 --seqlen 2048 --shots 2 --sparsity 0.025 --out "$OUT/h200-scale.json" 2>&1 | tail -n 40
