#!/usr/bin/env python3
"""Mean +- std of final test accuracy over seeds, per (arch, rule), from DIR/*/result.json."""
import json, sys, glob, statistics, collections
d = sys.argv[1]
groups = collections.defaultdict(list)
for f in sorted(glob.glob(f"{d}/*/result.json")):
    r = json.load(open(f))
    c = r["config"]
    rule = c["rule"] + (f' ({c["pc_energy"]} energy)' if c["rule"].startswith("pc") else "")
    groups[(c["arch"], rule, c["data"], c["epochs"])].append(r)
print("| data | arch | rule | epochs | seeds | test accuracy % (mean +- std) | diverged |")
print("|---|---|---|---|---|---|---|")
for (arch, rule, data, ep), rs in sorted(groups.items()):
    acc = [100 * r["test_accuracy"] for r in rs]
    sd = statistics.stdev(acc) if len(acc) > 1 else 0.0
    div = sum(r["diverged"] is not None for r in rs)
    print(f"| {data} | {arch} | {rule} | {ep} | {len(rs)} | {statistics.mean(acc):.2f} +- {sd:.2f} | {div} |")
