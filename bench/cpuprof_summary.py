"""Where a Node process spent its main-thread time, from a V8 .cpuprofile (node --cpu-prof):
self time by function and inclusive time by function, top N each. '(idle)' is the thread waiting
(here: on the GPU or on a readback); the rest is JavaScript, GC and native calls (Dawn's API).
  python3 bench/cpuprof_summary.py FILE.cpuprofile [N]"""
import collections, json, sys

p = json.load(open(sys.argv[1]))
top = int(sys.argv[2]) if len(sys.argv) > 2 else 25
nodes = {n['id']: n for n in p['nodes']}
parent = {c: n['id'] for n in p['nodes'] for c in n.get('children', [])}
own = collections.Counter()
for s, d in zip(p['samples'], p['timeDeltas']):
    own[s] += d
key = lambda cf: f"{cf['functionName'] or '(anonymous)'} {cf['url'].split('/')[-1]}:{cf['lineNumber'] + 1}"
selft, inc = collections.Counter(), collections.Counter()
for nid, t in own.items():
    selft[key(nodes[nid]['callFrame'])] += t
    seen, x = set(), nid
    while x is not None:
        k = key(nodes[x]['callFrame'])
        if k not in seen:
            inc[k] += t
            seen.add(k)
        x = parent.get(x)
total = sum(own.values()) / 1e6
print(f'{sys.argv[1]}: {total:.2f} s sampled')
for title, c in (('self', selft), ('inclusive', inc)):
    print(f'-- {title} time')
    for k, v in c.most_common(top):
        print(f'{v / 1e6:9.2f} s {100 * v / 1e6 / total:5.1f}%  {k}')
