#!/usr/bin/env bash
# One GPU-machine call that runs a job list (bench/prune_queue.py format) until LIMIT seconds after the
# start, with the default attention kernels; outputs runs.json and logs.txt in $OUT.
#   bash bench/h200-queue.sh JOBS [LIMIT] [PARALLEL]  (after gpu-pack.sh / pack-models.py filled .gpu/;
#   PARALLEL > 1 shares the GPU between quality-only runs, see prune_queue.py)
START=$(date +%s)
JOBS=${1:?job list}; LIMIT=${2:-570}; PARALLEL=${3:-1}
[ -n "$BENCH_COMMIT" ] || source bench/gpu-prep.sh  # once per call
OUT=${OUT:-/tmp/out}; mkdir -p "$OUT"
# 80 s per factor 1: a solo structured 40-shot opt-mini run at batch 16 (prune 75 s + load and evaluations)
python3 bench/prune_queue.py --deadline $((START + LIMIT - $(date +%s))) --jobs "$JOBS" --outdir /tmp/runs --est 80 --parallel "$PARALLEL"
grep -h "ppl " /tmp/runs/*.log
python3 -c "
import glob, json, os
json.dump({os.path.basename(f): json.load(open(f)) for f in glob.glob('/tmp/runs/*.json')}, open('$OUT/runs.json', 'w'))"
tail -n 30 /tmp/runs/*.log > "$OUT/logs.txt"; cp /tmp/runs/queue.json "$OUT/"
