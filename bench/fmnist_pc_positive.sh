#!/usr/bin/env bash
# Positive-rate PC with one-way synapses (Alonso & Neftci 2021) on full Fashion-MNIST with the
# rule's preset (784-300-300-10 sigmoid, Adam 1e-3, batch 64, T = 7, gamma 0.025), 15 epochs:
# learned (Kolen-Pollack) feedback for seeds 0..SEEDS-1; at batch 16, learned feedback for the
# same seeds, fixed random feedback and B = W^T for seed 0, and BP on the same network.
# Usage: bench/fmnist_pc_positive.sh [OUT_DIR] [SEEDS]   then   python3 bench/summarize.py OUT_DIR
set -euo pipefail
out=${1:-runs/fmnist-pc-positive}
seeds=${2:-3}
bin=${BIOLEARN:-target/release/biolearn}
[ -x "$bin" ] || cargo build --release
common="--data fashion-mnist --epochs 15 --threads 1 -q"
jobs=()
for seed in $(seq 0 $((seeds - 1))); do
  jobs+=("--rule pc-positive --set pc_feedback=learned --seed $seed --out $out/pcpos-learned-b64-s$seed")
  jobs+=("--rule pc-positive --batch 16 --set pc_feedback=learned --seed $seed --out $out/pcpos-learned-s$seed")
done
jobs+=("--rule pc-positive --batch 16 --set pc_feedback=random --seed 0 --out $out/pcpos-random-s0")
jobs+=("--rule pc-positive --batch 16 --set pc_feedback=transpose --seed 0 --out $out/pcpos-transpose-s0")
jobs+=("--rule bp --arch mlp:300,300 --activation sigmoid --optimizer adam --lr 1e-3 --batch 64 --schedule constant --seed 0 --out $out/bp-b64-s0")
jobs+=("--rule bp --arch mlp:300,300 --activation sigmoid --optimizer adam --lr 1e-3 --batch 16 --schedule constant --seed 0 --out $out/bp-s0")
printf '%s\n' "${jobs[@]}" | xargs -P "${PARALLEL:-1}" -I{} sh -c \
  "[ -f \$(echo '{}' | sed 's/.*--out //')/result.json ] || $bin train $common {}"
