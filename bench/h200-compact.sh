#!/usr/bin/env bash
# One GPU-machine call for issue 14's speed targets (after gpu-pack.sh; .gpu/models must hold opt-mini and
# llama-mini packed by pack-models.py, .gpu/data and .gpu/data-llama their token ids): compact vs dense at
# 50% structured on opt-mini, llama-mini (a quick LLM Surgeon rows-cols prune and the deterministic units
# plan) and the OPT-125m shape (random weights, units plan): decode 512 tokens (KV cache), prefill 2048,
# FLOP and byte ratios, perplexity zeroed vs compact (bench/compact-speed.ts).
#   bash bench/h200-compact.sh [TARGETS] [EXTRA ARGS...]     (outputs in $OUT: h200-compact.json)
OUT=${OUT:-/tmp/out}; mkdir -p "$OUT"
source bench/gpu-prep.sh
node dist-node/compact-speed.mjs --models /tmp/models --data /tmp/data --data-llama /tmp/data-llama \
  --targets "${1:-opt-mini,llama-mini,opt-125m}" --out "$OUT/h200-compact.json" "${@:2}" 2>&1 | tail -n 40
