#!/usr/bin/env python3
import sys, collections, re
path = sys.argv[1]; n = int(sys.argv[2]) if len(sys.argv) > 2 else 25
filt = sys.argv[3] if len(sys.argv) > 3 else None
selfc = collections.Counter(); incl = collections.Counter(); total = 0
for line in open(path):
    line = line.rstrip()
    if not line: continue
    stack, _, cnt = line.rpartition(' ')
    cnt = int(cnt)
    frames = stack.split(';')
    if filt and filt not in stack: continue
    # drop idle frames
    leaf = frames[-1]
    if re.search(r'\b(wait|select|_wait_for_tstate_lock|get) \((threading|selectors|queue)', leaf): continue
    if 'select (' in leaf or 'sleep' in leaf and 'time' in leaf: continue
    total += cnt
    selfc[re.sub(r':\d+\)', ')', leaf)] += cnt
    seen = set()
    for f in frames[1:]:
        g = re.sub(r':\d+\)', ')', f)
        if g in seen: continue
        seen.add(g); incl[g] += cnt
print('busy samples', total)
print('-- self')
for k, v in selfc.most_common(n): print(f'{100*v/total:5.1f}%  {k}')
print('-- inclusive')
for k, v in incl.most_common(n): print(f'{100*v/total:5.1f}%  {k}')
