#!/usr/bin/env bash
# The README's results table: every rule of the feedback-alignment family on full Fashion-MNIST,
# MLP 784-1024-10 ReLU, 20 epochs, batch 128, SGD momentum 0.9 lr 0.05 cosine, 3 seeds, plus
# LeNet with BP. Runs 2 one-thread runs at a time; ~15 minutes on 2 cores.
# Usage: bench/fmnist_rules.sh [OUT_DIR]   then   python3 bench/summarize.py OUT_DIR
set -euo pipefail
out=${1:-runs/fmnist-rules}
bin=${BIOLEARN:-target/release/biolearn}
[ -x "$bin" ] || cargo build --release
mkdir -p "$out"
jobs=()
for seed in 0 1 2; do
  for rule in bp fa usf brsf frsf dfa; do
    jobs+=("--rule $rule --arch mlp:1024 --seed $seed --out $out/mlp1024-$rule-s$seed")
  done
  jobs+=("--rule bp --arch lenet --seed $seed --out $out/lenet-bp-s$seed")
done
printf '%s\n' "${jobs[@]}" | xargs -P "${PARALLEL:-2}" -I{} sh -c \
  "[ -f \$(echo '{}' | sed 's/.*--out //')/result.json ] || $bin train --data fashion-mnist --epochs 20 --batch 128 --threads 1 -q {}"
