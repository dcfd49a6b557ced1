#!/usr/bin/env python3
"""(Not named queue.py: that would shadow the standard library module for scripts in bench/.)
Runs a priority-ordered list of bench/prune benchmarks until a deadline, one at a time (clean timings) or
--parallel P at once (quality-only runs: their seconds are not solo times; queue.json lists them under
'concurrent' for collect_results.py --concurrent).

  python3 bench/prune_queue.py --deadline SECONDS --jobs FILE --outdir DIR [--est-from DIR/solo.json]
                               [--parallel P --slowdown S]

FILE: one job per line, `name  factor  args…` (factor × the solo run's seconds estimates the job's time,
× S when P > 1; a job starts only when that estimate fits before the deadline). Each job writes
DIR/name.json and DIR/name.log; the summary (done, skipped, failed) goes to DIR/queue.json. Lines starting
with # are skipped."""
import argparse, json, os, shlex, subprocess, time

ap = argparse.ArgumentParser()
ap.add_argument('--deadline', type=float, required=True, help='seconds from now')
ap.add_argument('--jobs', required=True)
ap.add_argument('--outdir', required=True)
ap.add_argument('--est-from', help='a prune JSON whose run.seconds scales the factors')
ap.add_argument('--est', type=float, default=120.0, help='seconds per factor 1 when --est-from is missing')
ap.add_argument('--parallel', type=int, default=1, help='jobs sharing the GPU at once')
ap.add_argument('--slowdown', type=float, default=None, help='wall-time factor of a shared job (default 0.75 × P)')
a = ap.parse_args()

end = time.time() + a.deadline
unit = a.est
if a.est_from and os.path.exists(a.est_from):
    unit = json.load(open(a.est_from))['run']['seconds'] + 6  # + load and two evaluations
slow = 1.0 if a.parallel <= 1 else (a.slowdown or 0.75 * a.parallel)
summary = {'unit_seconds': unit, 'parallel': a.parallel, 'done': [], 'skipped': [], 'failed': [], 'concurrent': []}
jobs = []
for line in open(a.jobs):
    if line.strip() and not line.startswith('#'):
        name, factor, *args = shlex.split(line)
        jobs.append((name, float(factor) * unit * slow, args))

running = {}  # name → (Popen, start, log file)


def reap(block):
    while running:
        for name, (p, t0, log) in list(running.items()):
            left = end - time.time()
            if p.poll() is None and left <= 0:
                p.kill()
            if p.poll() is not None:
                log.close()
                rc = p.returncode if left > 0 else 'timeout'
                entry = {'name': name, 'rc': rc, 'wall': time.time() - t0}
                (summary['done'] if rc == 0 else summary['failed']).append(entry)
                print(json.dumps(entry), flush=True)
                del running[name]
                return
        if not block:
            return
        time.sleep(0.5)


for name, est, args in jobs:
    while len(running) >= a.parallel:
        reap(True)
    left = end - time.time()
    if est > left:
        summary['skipped'].append({'name': name, 'estimate': est, 'left': left})
        continue
    log = open(os.path.join(a.outdir, name + '.log'), 'w')
    p = subprocess.Popen(['node', 'dist-node/prune.mjs', *args, '--out', os.path.join(a.outdir, name + '.json')],
                         stdout=log, stderr=subprocess.STDOUT)
    running[name] = (p, time.time(), log)
    if a.parallel > 1:
        summary['concurrent'].append(name)
while running:
    reap(True)
json.dump(summary, open(os.path.join(a.outdir, 'queue.json'), 'w'), indent=1)
print(json.dumps({k: [e['name'] if isinstance(e, dict) else e for e in v] if isinstance(v, list) else v for k, v in summary.items()}))
