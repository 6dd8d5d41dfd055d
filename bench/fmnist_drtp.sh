#!/usr/bin/env bash
# The README's DRTP table: DRTP beside BP and DFA on full Fashion-MNIST, MLPs 784-1024-10 and
# 784-1024-1024-10, 20 epochs, batch 128, SGD momentum 0.9 lr 0.05 cosine (the shared settings,
# as the feedback-alignment table), 3 seeds; ReLU hidden units (the table's), and tanh (DRTP's
# paper and reference code). 36 one-thread runs, 2 at a time: about 2.5 hours on 2 cores.
# Usage: bench/fmnist_drtp.sh [OUT_DIR]   then   python3 bench/summarize.py OUT_DIR
set -euo pipefail
out=${1:-runs/fmnist-drtp}
bin=${BIOLEARN:-target/release/biolearn}
[ -x "$bin" ] || cargo build --release
mkdir -p "$out"
jobs=()
for seed in 0 1 2; do
  for act in relu tanh; do
    for arch in mlp:1024 mlp:1024,1024; do
      for rule in bp dfa drtp; do
        tag=$(echo "$arch" | tr ':,' '_x')
        jobs+=("--rule $rule --arch $arch --activation $act --seed $seed --out $out/$tag-$act-$rule-s$seed")
      done
    done
  done
done
printf '%s\n' "${jobs[@]}" | xargs -P "${PARALLEL:-2}" -I{} sh -c \
  "[ -f \$(echo '{}' | sed 's/.*--out //')/result.json ] || $bin train --data fashion-mnist --epochs 20 --batch 128 --threads 1 -q {}"
