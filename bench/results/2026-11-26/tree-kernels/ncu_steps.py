# per-step, per-kernel durations from an ncu --csv with gpu__time_duration.sum; a step starts at each tree_norm
import csv, sys, collections
rows = list(csv.reader(open(sys.argv[1])))
hdr = next(i for i, r in enumerate(rows) if r and r[0] == "ID")
h = rows[hdr]; ki, mi, vi, ui = h.index("Kernel Name"), h.index("Metric Name"), h.index("Metric Value"), h.index("Metric Unit")
steps = []
for r in rows[hdr + 1:]:
    if len(r) <= vi or r[mi] != "gpu__time_duration.sum": continue
    name = r[ki].split("(")[0]
    v = float(r[vi].replace(",", "")); v = v / 1000 if r[ui] in ("nsecond", "ns") else v
    if name == "tree_norm": steps.append(collections.OrderedDict())
    if not steps: continue
    c = steps[-1].setdefault(name, [0, 0.0]); c[0] += 1; c[1] += v
for i, s in enumerate(steps):
    tot = sum(v[1] for v in s.values())
    print(f"step {i}: total {tot:.1f} (units as ncu reports)")
    for n, (c, t) in sorted(s.items(), key=lambda x: -x[1][1]):
        print(f"   {n:26s} {c:4d} x {t/c:9.2f} = {t:10.1f}")
