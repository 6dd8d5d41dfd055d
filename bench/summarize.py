#!/usr/bin/env python3
"""Mean +- std of final test accuracy over seeds, per (arch, rule), from DIR/*/result.json, and
epochs to stable accuracy (the protocol's definition: the first epoch after which every later test
accuracy stays within 0.5 points of the final one)."""
import json, sys, glob, statistics, collections
d = sys.argv[1]
groups = collections.defaultdict(list)
for f in sorted(glob.glob(f"{d}/*/result.json")):
    r = json.load(open(f))
    c = r["config"]
    rule = c["rule"]
    own = c.get("settings", c)  # the rule's own settings (top level in records before schema 2)
    if rule in ("pc", "ipc"):
        rule += f' ({own["pc_energy"]} energy)'
    elif rule == "pc-positive":
        rule += f' ({own["pc_feedback"]} feedback)'
    groups[(c["arch"], c.get("activation", ""), rule, c["data"], c["epochs"], c["batch"])].append(r)

def stable(curve, tol=0.005):
    e = len(curve)
    while e > 0 and abs(curve[e - 1] - curve[-1]) <= tol:
        e -= 1
    return e + 1

print("| data | arch | activation | rule | epochs | batch | seeds | test accuracy % (mean +- std) | epochs to stable | diverged |")
print("|---|---|---|---|---|---|---|---|---|---|")
for (arch, act, rule, data, ep, batch), rs in sorted(groups.items()):
    acc = [100 * r["test_accuracy"] for r in rs]
    sd = statistics.stdev(acc) if len(acc) > 1 else 0.0
    st = [stable([e["test_accuracy"] for e in r["epochs"]]) for r in rs]
    div = sum(r["diverged"] is not None for r in rs)
    print(f"| {data} | {arch} | {act} | {rule} | {ep} | {batch} | {len(rs)} | {statistics.mean(acc):.2f} +- {sd:.2f} | "
          f"{statistics.mean(st):.1f} | {div} |")
