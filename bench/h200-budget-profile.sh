#!/usr/bin/env bash
# Issue 13, where a budgeted shot's extra time goes: our CLI prune of the random OPT-125m-shaped model of
# bench/h200-authors.sh (structured, 32 × 2048, SHOTS shots) once under each of BUDGETS, each under
# node --cpu-prof; prints the report's per-shot phases and the main thread's time by function
# (bench/cpuprof_summary.py: '(idle)' = waiting on the GPU or a readback; JavaScript copies, GC and
# Dawn API calls by name). Needs .gpu/ as for h200-authors.sh (no harness, no text beyond calib).
#   [SHOTS=2] [BUDGETS="2GiB none"] [CLI=dist-node/cli.mjs] [TAG=] bash bench/h200-budget-profile.sh
#   (profiles in $OUT/prof-<budget><TAG>/; CLI: another build, e.g. of the previous commit, for an A/B in one call)
OUT=${OUT:-/tmp/out}; mkdir -p "$OUT"
AUTHORS=0 BUDGETS= bash "$(dirname "$0")/h200-authors.sh" >/dev/null 2>&1 || true   # builds /tmp/opt-125m-shape, /tmp/calib.txt
source .gpu/setup.sh
M=/tmp/opt-125m-shape SHOTS=${SHOTS:-2} CLI=${CLI:-dist-node/cli.mjs} TAG=${TAG:-}
for b in ${BUDGETS:-2GiB none}; do
  flag=(--memory-budget "$b"); [ "$b" = none ] && flag=()
  rm -rf "$OUT/prof-$b$TAG"; t0=$(date +%s)
  node --cpu-prof --cpu-prof-interval 2000 --cpu-prof-dir "$OUT/prof-$b$TAG" "$CLI" prune --model "$M" --calib /tmp/calib.txt \
    --structure rows-cols --sparsity "$(python3 -c "print(0.025*$SHOTS)")" --shots "$SHOTS" --nsamples 32 --seqlen 2048 "${flag[@]}" \
    --out "/tmp/prof-125m-$b$TAG" 2>&1 | grep -v "curvature pass\|update L" | tail -n 6
  echo "ours ($b$TAG, $CLI): $(( $(date +%s) - t0 )) s wall"
  python3 - "/tmp/prof-125m-$b$TAG/report.json" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
for s in r['shots']: print('shot', s['shot'], {k: round(v, 3) for k, v in s['seconds'].items()})
print('memory', {k: r['memory'][k] for k in ('estimatedPeakBytes', 'measuredPeakBytes')}, 'plan', r['memory'].get('plan'))
PY
  python3 bench/cpuprof_summary.py "$OUT"/prof-$b$TAG/*.cpuprofile 30
done
