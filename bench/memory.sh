#!/usr/bin/env bash
# The README's training-memory table: per rule, the memory training takes on a 10-layer MLP
# (10 hidden layers of 1024 ReLU units, Fashion-MNIST, batch 128, one thread), from
# `biolearn bench`'s memory columns: model_MB (parameters, feedback, optimiser moments, update
# buffers), train_MB (the most heap training held above that: activations, their gradients,
# the rule's scratch), rss_MB (the process's peak resident set, the data set included; each
# rule in its own process, so that no freed memory of another run counts).
# DRTP and TPSGD keep one block at a time (layer streaming); PEPITA keeps both passes unless
# pepita_recompute = true (a third forward pass instead). One learning rate for every rule,
# 1e-4, so that none diverges (PEPITA does at 1e-3 on ten layers); memory does not depend on it.
# Needs: apt-get install -y dataset-fashion-mnist.
# Usage: bench/memory.sh [OUT.jsonl]
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:-/tmp/biolearn-memory.jsonl}
bin=target/release/biolearn
cargo build --release -q
arch=mlp:$(printf '1024,%.0s' $(seq 10) | sed 's/,$//')
tmp=$(mktemp)
: > "$out"
for variant in bp dfa drtp tpsgd pepita pepita-recompute; do
  rule=${variant%-recompute}
  extra=()
  [ "$variant" = pepita-recompute ] && extra=(--set pepita_recompute=true)
  $bin bench --data fashion-mnist --rules "$rule" --archs "$arch" --threads 1 --batch 128 \
    --set lr=0.0001 "${extra[@]}" --json "$tmp" >&2
  sed "s/\"rule\":\"$rule\"/\"rule\":\"$variant\"/" "$tmp" >> "$out"
done
rm -f "$tmp"
python3 - "$out" <<'PY'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
mb = lambda b: "-" if b is None else f"{b / 1048576:.1f}"
print("| rule | model MB | training MB (activations, scratch) | peak RSS MB |")
print("|---|---|---|---|")
for r in rows:
    d = " (diverged)" if r.get("diverged_at_batch") else ""
    print(f"| {r['rule']}{d} | {mb(r['model_bytes'])} | {mb(r['train_bytes'])} | {mb(r['peak_rss_bytes'])} |")
PY
