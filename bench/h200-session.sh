#!/usr/bin/env bash
# One GPU-machine call that measures what is still open (see bench/jobs/opt-mini-open.txt), in order:
#  1. attention kernels, rows vs tiled vs PyTorch SDPA (opt-mini and OPT-125m shapes)
#  2. opt-mini K-FAC pass at batch 16 with each impl (profile with tiled)
#  3. structured 40 shots to 50% alone on the GPU with the faster impl (the 95 s target)
#  4. the open jobs with that impl until LIMIT seconds after the start (default 570)
# Run from the project root on the GPU machine after gpu-pack.sh / pack-models.py filled .gpu/:
#   bash bench/h200-session.sh [LIMIT]      (outputs in $OUT: kernels, kfac, runs.json, logs.txt)
START=$(date +%s)
LIMIT=${1:-570}
source bench/gpu-prep.sh
OUT=${OUT:-/tmp/out}; mkdir -p "$OUT"
timeout 120 node dist-node/kernels.mjs --only attention --torch --out "$OUT/kernels-attention.json" 2>&1 | tail -20
for impl in rows tiled; do
  prof=$([ $impl = tiled ] && echo --profile)
  timeout 90 node dist-node/model.mjs --only kfac-time --kfac-batches 16 --attention $impl $prof \
    --models /tmp/models --data /tmp/data --out "$OUT/kfac-$impl.json" 2>&1 | grep -E "kfac-time|GPU time" 
done
best=$(python3 -c "
import json
t = {i: json.load(open('$OUT/kfac-%s.json' % i))['results'][0]['ours_s'] for i in ('rows', 'tiled')}
print(min(t, key=t.get))" 2>/dev/null || echo rows)
echo "attention impl for the prune runs: $best"
C="--model /tmp/models/opt-mini --data /tmp/data --batch 16 --attention $best"
timeout 200 node dist-node/prune.mjs $C --structure rows-cols --sparsity 0.5 --out /tmp/runs/rc50-$best.json > /tmp/runs/rc50-$best.log 2>&1
grep -h "ppl \|phase" /tmp/runs/rc50-$best.log
sed "s/--batch 16/--batch 16 --attention $best/" bench/jobs/opt-mini-open.txt > /tmp/jobs.txt
python3 bench/prune_queue.py --deadline $((START + LIMIT - $(date +%s))) --jobs /tmp/jobs.txt --outdir /tmp/runs --est-from /tmp/runs/rc50-$best.json
python3 -c "
import glob, json, os
json.dump({os.path.basename(f): json.load(open(f)) for f in glob.glob('/tmp/runs/*.json')}, open('$OUT/runs.json', 'w'))"
tail -n 30 /tmp/runs/*.log > "$OUT/logs.txt"
