#!/usr/bin/env python3
"""(Not named queue.py: that would shadow the standard library module for scripts in bench/.)
Runs a priority-ordered list of bench/prune benchmarks one at a time (clean timings) until a deadline.

  python3 bench/prune_queue.py --deadline SECONDS --jobs FILE --outdir DIR [--est-from DIR/solo.json]

FILE: one job per line, `name  factor  args…` (factor × the solo run's seconds estimates the job's time;
a job starts only when that estimate fits before the deadline). Each job writes DIR/name.json and
DIR/name.log; the summary (done, skipped, failed) goes to DIR/queue.json. Lines starting with # are skipped."""
import argparse, json, os, shlex, subprocess, sys, time

ap = argparse.ArgumentParser()
ap.add_argument('--deadline', type=float, required=True, help='seconds from now')
ap.add_argument('--jobs', required=True)
ap.add_argument('--outdir', required=True)
ap.add_argument('--est-from', help='a prune JSON whose run.seconds scales the factors')
ap.add_argument('--est', type=float, default=120.0, help='seconds per factor 1 when --est-from is missing')
a = ap.parse_args()

end = time.time() + a.deadline
unit = a.est
if a.est_from and os.path.exists(a.est_from):
    unit = json.load(open(a.est_from))['run']['seconds'] + 6  # + load and two evaluations
summary = {'unit_seconds': unit, 'done': [], 'skipped': [], 'failed': []}
for line in open(a.jobs):
    if not line.strip() or line.startswith('#'):
        continue
    name, factor, *args = shlex.split(line)
    est = float(factor) * unit
    left = end - time.time()
    if est > left:
        summary['skipped'].append({'name': name, 'estimate': est, 'left': left})
        continue
    out = os.path.join(a.outdir, name + '.json')
    t0 = time.time()
    with open(os.path.join(a.outdir, name + '.log'), 'w') as log:
        try:
            rc = subprocess.run(['node', 'dist-node/prune.mjs', *args, '--out', out], stdout=log, stderr=subprocess.STDOUT,
                                timeout=max(1.0, end - time.time())).returncode
        except subprocess.TimeoutExpired:
            rc = 'timeout'
    entry = {'name': name, 'rc': rc, 'wall': time.time() - t0}
    (summary['done'] if rc == 0 else summary['failed']).append(entry)
    print(json.dumps(entry), flush=True)
json.dump(summary, open(os.path.join(a.outdir, 'queue.json'), 'w'), indent=1)
print(json.dumps({k: [e['name'] for e in v] if isinstance(v, list) else v for k, v in summary.items()}))
