#!/usr/bin/env bash
# Sweep throughput (issue 18): the grid of plans/sweep-bench.toml (BP, FA, DFA x 4 training
# fractions x 3 seeds, MLP 784-1024-10, 5 epochs, test accuracy every epoch: 36 runs) by
# `biolearn compare` and by bench/pytorch_sweep.py, each at every split of the machine's cores
# into parallel runs x threads per run; wall time from the command's start (data loading
# included) to its last record, and runs per hour. Needs: pip install torch numpy;
# apt-get install -y dataset-fashion-mnist. Run on a quiet machine.
# Usage: bench/sweep.sh [OUT]   (records under OUT, default runs/sweep-bench)
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:-runs/sweep-bench}
bin=target/release/biolearn
cargo build --release -q
cores=$(nproc)
mkdir -p "$out"
printf '| side | parallel runs x threads each | runs | wall s | runs per hour |\n|---|---|---|---|---|\n'
for t in $(seq 1 "$cores"); do
  [ $((cores % t)) -eq 0 ] || continue
  p=$((cores / t))
  dir="$out/biolearn-${p}x$t"
  rm -rf "$dir"
  mkdir -p "$dir"
  sed "s/^threads_per_run = .*/threads_per_run = $t/" plans/sweep-bench.toml > "$dir/plan.toml"
  s=$(date +%s.%N)
  $bin compare "$dir/plan.toml" --out "$dir" --parallel "$p" --quiet > "$dir/log.txt" 2>&1
  e=$(date +%s.%N)
  runs=$(wc -l < "$dir/results.jsonl")
  python3 -c "w=$e-$s; print(f'| biolearn | ${p} x ${t} | $runs | {w:.1f} | {3600*$runs/w:.0f} |')"
  python3 bench/pytorch_sweep.py --processes "$p" --threads "$t" > "$out/pytorch-${p}x$t.jsonl"
  python3 - "$out/pytorch-${p}x$t.jsonl" <<'PY'
import json, sys
s = [json.loads(l) for l in open(sys.argv[1])][-1]
print(f"| PyTorch {s['torch_version']} | {s['processes']} x {s['threads']} | {s['runs']} | {s['wall_seconds']:.1f} | {s['runs_per_hour']:.0f} |")
PY
done
