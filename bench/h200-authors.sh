#!/usr/bin/env bash
# One GPU-machine call for issue 13's "speed under a budget": the authors' LLM Surgeon code (official harness,
# --quick = structured 8 shots to 20%) and our CLI prune on the same random-weight OPT-125m-shaped model
# (transformers' own init, saved once in float32, so both sides compute in fp32), same calibration text,
# N × 2048 calibration; ours under --memory-budget 2GiB. Needs in .gpu/: harness/ (run.sh, run_official.py and
# official/{llm-surgeon,sparsegpt} extracted with git archive), text/ (wiki.valid.near_raw.xz, wiki.test.raw.xz),
# tok-opt/ (an OPT tokenizer: vocab.json, merges.txt, tokenizer*.json, special_tokens_map.json).
#   bash bench/h200-authors.sh [N]      (outputs in $OUT: official_results.json, run_official.log, ours-report.json)
# Where our time goes under the budget: AUTHORS=0 BUDGETS="none 2GiB 8GiB" SHOTS=2 runs only ours, once per
# budget ("none": unbudgeted, all layers' factors at once), reports in $OUT/ours-report-<budget>.json;
# BATCHES="auto 4 6" also runs each budget at those explicit K-FAC batches (ours-report-<budget>-b<k>.json).
OUT=${OUT:-/tmp/out}; mkdir -p "$OUT"
N=${1:-32}
mkdir -p node_modules/webgpu && cp .gpu/nm/index.js .gpu/nm/package.json node_modules/webgpu/
source .gpu/setup.sh
M=/tmp/opt-125m-shape
python3 - "$M" <<'EOF'
import sys, torch
from transformers import OPTConfig, OPTForCausalLM
torch.manual_seed(0)
cfg = OPTConfig(hidden_size=768, num_hidden_layers=12, num_attention_heads=12, ffn_dim=3072, vocab_size=50272,
                max_position_embeddings=2048, word_embed_proj_dim=768, enable_bias=True)
OPTForCausalLM(cfg).to(torch.float32).save_pretrained(sys.argv[1], safe_serialization=True)
print('saved', sys.argv[1])
EOF
cp .gpu/tok-opt/* "$M/"
xz -dc .gpu/text/wiki.valid.near_raw.xz > /tmp/calib.txt
xz -dc .gpu/text/wiki.test.raw.xz > /tmp/test.txt
if [ "${AUTHORS:-1}" = 1 ]; then
  t0=$(date +%s)
  timeout 330 bash .gpu/harness/run.sh --model "$M" --tokenizer "$M" --calib /tmp/calib.txt --test /tmp/test.txt \
    --quick --nsamples "$N" --methods surgeon-structured --out "$OUT/official_results.json" 2>&1 | grep -v "^\s*$" | tail -n 25
  echo "authors: $(( $(date +%s) - t0 )) s wall"
fi
SHOTS=${SHOTS:-8}
for b in ${BUDGETS-2GiB}; do   # BUDGETS="" (set, empty): only build the model and the text
  for k in ${BATCHES:-auto}; do
    t0=$(date +%s)
    flag=(--memory-budget "$b"); [ "$b" = none ] && flag=()
    tag=$b; [ "$k" != auto ] && { flag+=(--batch "$k"); tag=$b-b$k; }
    timeout 240 node dist-node/cli.mjs prune --model "$M" --calib /tmp/calib.txt --structure rows-cols --sparsity $(python3 -c "print(0.025*$SHOTS)") \
      --shots "$SHOTS" --nsamples "$N" --seqlen 2048 "${flag[@]}" --out "/tmp/ours-125m-$tag" 2>&1 | grep -v "curvature pass\|update L" | tail -n 12
    echo "ours ($tag): $(( $(date +%s) - t0 )) s wall"
    cp "/tmp/ours-125m-$tag/report.json" "$OUT/ours-report-$tag.json" 2>/dev/null
  done
done
[ -f "$OUT/ours-report-2GiB.json" ] && cp "$OUT/ours-report-2GiB.json" "$OUT/ours-report.json"
