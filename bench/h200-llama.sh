#!/usr/bin/env bash
# One GPU-machine call for the Llama issue (after gpu-pack.sh; .gpu/models holds llama-mini and
# llama-micro packed by pack-models.py, .gpu/data-llama the Mistral-tokenizer ids from prepare-data.ts):
# dense perplexity and K-FAC factors vs transformers (bench/model.ts --set llama --torch), an export of
# llama-mini structured 30% checked with transformers (bench/verify_export.py), then the job list
# bench/jobs/llama-mini.txt until LIMIT seconds after the start. Everything lands in $OUT.
#   [PARALLEL=P] [SKIP_MODEL=1] [SKIP_CHECKS=1] bash bench/h200-llama.sh [LIMIT] [JOBS]
START=$(date +%s)
LIMIT=${1:-560}; JOBS=${2:-bench/jobs/llama-mini.txt}
OUT=${OUT:-/tmp/out}; mkdir -p "$OUT"
source bench/gpu-prep.sh
export PYTHONUNBUFFERED=1
if [ -z "$SKIP_CHECKS" ]; then
  [ -n "$SKIP_MODEL" ] || node dist-node/model.mjs --set llama --models /tmp/models --data /tmp/data-llama --torch --out "$OUT/h200-llama-model.json" 2>&1 | tail -n 40
  node dist-node/cli.mjs prune --model /tmp/models/llama-mini --calib /tmp/data-llama/calib.json --eval /tmp/data-llama/test.json \
    --structure rows-cols --sparsity 0.3 --shots 8 --nsamples 32 --seqlen 4096 --batch 8 --out /tmp/exp30 2>&1 | tail -n 8
  python3 bench/verify_export.py --folder /tmp/exp30 --text /tmp/data-llama/test.json --dense /tmp/models/llama-mini --json "$OUT/h200-llama-export-verify.json" | tail -n 25
fi
python3 bench/prune_queue.py --deadline $((START + LIMIT - $(date +%s))) --jobs "$JOBS" --outdir /tmp/runs --est 80 ${PARALLEL:+--parallel $PARALLEL}
grep -h "ppl " /tmp/runs/*.log
python3 -c "
import glob, json, os
json.dump({os.path.basename(f): json.load(open(f)) for f in glob.glob('/tmp/runs/*.json')}, open('$OUT/runs.json', 'w'))"
tail -n 30 /tmp/runs/*.log > "$OUT/logs.txt"; cp /tmp/runs/queue.json "$OUT/"
