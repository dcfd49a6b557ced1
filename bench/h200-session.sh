#!/usr/bin/env bash
# One GPU-machine call that measures what is still open, in order:
#  1. matmul, covariance (gram) and Cholesky+inverse kernels vs PyTorch (the README's kernel table predates split-K),
#     and the matmul shapes of opt-mini's K-FAC pass (kfac group) vs cuBLAS
#  2. bench/jobs/opt-mini-open.txt through bench/h200-queue.sh until LIMIT seconds after the start (default 570)
# Run from the project root on the GPU machine after gpu-pack.sh / pack-models.py filled .gpu/:
#   bash bench/h200-session.sh [LIMIT]      (outputs in $OUT: kernels.json, runs.json, logs.txt)
START=$(date +%s)
LIMIT=${1:-570}
source bench/gpu-prep.sh
OUT=${OUT:-/tmp/out}; mkdir -p "$OUT"
timeout 180 node dist-node/kernels.mjs --only matmul,gram,cholinv,kfac --torch --out "$OUT/kernels.json" 2>&1 | tail -40
bash bench/h200-queue.sh bench/jobs/opt-mini-open.txt $((LIMIT - $(date +%s) + START))
