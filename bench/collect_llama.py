#!/usr/bin/env python3
"""Folds the runs.json of bench/h200-llama.sh calls into bench/results/h200-llama-mini-quality.json:
one row per run (method, structure, target, perplexity, seconds, commit) plus the per-shot perplexities
of runs made with --eval-every (K-OBD and magnitude trajectories at intermediate sparsities).
  python3 bench/collect_llama.py [--concurrent a,b] RUNS.json [RUNS.json ...] > bench/results/h200-llama-mini-quality.json
--concurrent: jobs that shared the GPU with another (prune_queue.py --parallel): marked, their seconds are not solo times."""
import json, sys

args = sys.argv[1:]
shared = set()
if args[:1] == ['--concurrent']:
    shared, args = set(args[1].split(',')), args[2:]

rows, traj = [], []
for path in args:
    for name, r in sorted(json.load(open(path)).items()):
        if 'run' not in r:
            continue
        run = r['run']
        rows.append({'job': name[:-5], 'method': run['method'], 'structure': run['structure'], 'sparsity': run['sparsity'],
                     'shots': run['shots'], 'ppl': run['ppl'], 'dense_ppl': run['dense_ppl'], 'achieved': run['achieved'],
                     'prune_seconds': run['seconds'], 'nsamples': run['nsamples'], 'seqlen': run['seqlen'], 'seed': run['seed'],
                     'batch': run['batch'], 'concurrent': name[:-5] in shared, 'commit': r['commit'], 'date': r['date'], 'adapter': r['adapter']['description']})
        for s in r['shots']:
            if s.get('ppl') is not None:
                traj.append({'job': name[:-5], 'method': run['method'], 'shot': s['shot'], 'target': s['target'], 'achieved': s['achieved'], 'ppl': s['ppl']})
json.dump({'model': 'llama-mini', 'protocol': 'calibration 128 x 4096 from wiki.valid.near_raw (seed 100), WikiText-2 test at 4096',
           'runs': rows, 'per_shot': traj}, sys.stdout, indent=1)
print()
