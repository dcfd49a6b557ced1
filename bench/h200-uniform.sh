#!/usr/bin/env bash
# Issue 14, uniform shapes, in one GPU-machine call (after gpu-pack.sh; .gpu/ as for h200-llama.sh):
# the CLI prunes of bench/jobs/uniform.txt (free allocation vs --uniform at 20/30/50% structured on
# opt-mini and llama-mini, FIXTURES protocol, every run --compact) one after the other (PARALLEL=1: two
# llama-mini prunes sharing the H200 took 2.4× as long each, bench/results/h200-llama-mini-quality.json)
# until LIMIT − CHECK seconds after the start, then transformers on the exports, 30% first: the uniform (stock config)
# folders with AutoModelForCausalLM.from_pretrained (bench/verify_export.py: ours within 1e-4), the free
# (compact_layers) ones with bench/compact_loader.py; bench/compact_collect.py turns the reports and
# checks into rows of bench/results/h200-compact.json's schema: $OUT/h200-uniform.json.
# Finished runs stay in /tmp/uniform (skipped by a later call on the same machine), so the job list can
# be spread over calls by PATTERN (an awk regex on job names); about 90 s per opt-mini run and 160 s
# per llama-mini run on the H200 (prune seconds of issue 12's runs plus three evaluations), so e.g.
#   bash bench/h200-uniform.sh 570 '30[fu]$'        # the 30% pairs, then their transformers checks
#   bash bench/h200-uniform.sh 570 '^opt(20|50)'    bash bench/h200-uniform.sh 570 '^llama50'
#   bash bench/h200-uniform.sh 570 '^llama(20|30uh)'
#   [PARALLEL=1] [CHECK=90] bash bench/h200-uniform.sh [LIMIT] [PATTERN] [JOBS]
START=$(date +%s)
LIMIT=${1:-570}; PATTERN=${2:-.}; JOBS=${3:-bench/jobs/uniform.txt}
OUT=${OUT:-/tmp/out}; mkdir -p "$OUT/reports" /tmp/uniform
source bench/gpu-prep.sh
export PYTHONUNBUFFERED=1
export END=$((START + LIMIT - ${CHECK:-90}))

run() {
  local name=$1; shift
  local dir=/tmp/uniform/$name t0=$(date +%s)
  if [ -f "$dir/report.json" ]; then echo "$name: done in an earlier call"; return; fi
  local left=$((END - t0))
  if (( left < 60 )); then echo "$name: skipped (${left} s left)"; return; fi
  rm -rf "$dir"
  timeout "$left" node dist-node/cli.mjs prune "$@" --out "$dir" > "/tmp/uniform/$name.log" 2>&1
  echo "$name: rc $? after $(( $(date +%s) - t0 )) s"
}
export -f run
grep -Ev '^\s*(#|$)' "$JOBS" | awk -v p="$PATTERN" '$1 ~ p' | xargs -P "${PARALLEL:-1}" -L1 bash -c 'run "$@"' _

# ---- transformers on the exports (30% first), each within what is left of LIMIT ----
check() {
  local dir=$1 name; name=$(basename "$dir")
  local left=$((START + LIMIT - 10 - $(date +%s)))
  [ -f "$dir/report.json" ] && [ ! -f "$OUT/check-$name.json" ] && (( left > 20 )) || return 0
  read -r uniform ids < <(python3 -c "import json,sys; r=json.load(open(sys.argv[1])); print(int(r['options']['uniform']), r['perplexity']['file'])" "$dir/report.json")
  if [ "$uniform" = 1 ]; then
    timeout "$left" python3 bench/verify_export.py --folder "$dir" --text "$ids" --json "$OUT/check-$name.json" > "/tmp/uniform/$name.check.log" 2>&1
  else
    timeout "$left" python3 bench/compact_loader.py --folder "$dir" --ids "$ids" --json "$OUT/check-$name.json" > "/tmp/uniform/$name.check.log" 2>&1
  fi
  echo "$name: check rc $? ($( [ "$uniform" = 1 ] && echo from_pretrained || echo compact_loader ))"
}
for d in /tmp/uniform/*30*/ /tmp/uniform/*/; do check "${d%/}"; done

for d in /tmp/uniform/*/; do n=$(basename "$d"); [ -f "$d/report.json" ] && cp "$d/report.json" "$OUT/reports/$n.json"; done
python3 bench/compact_collect.py collect --runs /tmp/uniform --checks "$OUT" --out "$OUT/h200-uniform.json"
tail -n 6 /tmp/uniform/*.log > "$OUT/logs.txt" 2>/dev/null
