#!/usr/bin/env bash
# One GPU-machine call: opt-mini structured 40 shots to 50% after the architecture refactor (to compare
# with bench/results/h200-opt-mini-quality.json: 518.7734 in 63.4 s at commit fb8e0a6), then a llama-micro
# export (structured 30%) loaded by transformers (bench/verify_export.py). .gpu/models: opt-mini, llama-micro.
OUT=${OUT:-/tmp/out}; mkdir -p "$OUT"
source bench/gpu-prep.sh
node dist-node/prune.mjs --model /tmp/models/opt-mini --data /tmp/data --batch 16 --structure rows-cols --sparsity 0.5 --out "$OUT/h200-opt-mini-rc50-rerun.json" 2>&1 | tail -n 4
node dist-node/cli.mjs prune --model /tmp/models/llama-micro --calib /tmp/data-llama/calib.json --eval /tmp/data-llama/test.json \
  --structure rows-cols --sparsity 0.3 --shots 8 --nsamples 32 --seqlen 2048 --out /tmp/exp30 2>&1 | tail -n 4
python3 bench/verify_export.py --folder /tmp/exp30 --text /tmp/data-llama/test.json --dense /tmp/models/llama-micro --json "$OUT/h200-llama-export-verify.json" | tail -n 30
