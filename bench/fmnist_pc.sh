#!/usr/bin/env bash
# Predictive coding on full Fashion-MNIST with PCX's MLP settings (784-128-128-128-10 GELU,
# AdamW lr 3e-4 wd 1.8e-3, batch 128, T = 5), 25 epochs, 3 seeds; Gaussian and categorical (ce)
# output energies, incremental PC (ipc: a weight step at every inference step) with the same
# settings, and BP on the same network and optimiser for reference.
# Usage: bench/fmnist_pc.sh [OUT_DIR]   then   python3 bench/summarize.py OUT_DIR
set -euo pipefail
out=${1:-runs/fmnist-pc}
bin=${BIOLEARN:-target/release/biolearn}
[ -x "$bin" ] || cargo build --release
common="--data fashion-mnist --arch mlp:128,128,128 --activation gelu --optimizer adamw --lr 3e-4 --weight-decay 1.8e-3 --schedule constant --epochs 25 --batch 128 --threads 1 -q"
jobs=()
for seed in 0 1 2; do
  # --preset pcx: PCX's inference (T 5, state rate 0.1, momentum 0.1, output clamped), not the
  # rule's default near-BP preset.
  jobs+=("--rule pc --preset pcx --set pc_energy=gaussian --seed $seed --out $out/pc-gauss-s$seed")
  jobs+=("--rule pc --preset pcx --set pc_energy=ce --seed $seed --out $out/pc-ce-s$seed")
  jobs+=("--rule ipc --seed $seed --out $out/ipc-s$seed")
  jobs+=("--rule bp --seed $seed --out $out/bp-s$seed")
done
printf '%s\n' "${jobs[@]}" | xargs -P "${PARALLEL:-1}" -I{} sh -c \
  "[ -f \$(echo '{}' | sed 's/.*--out //')/result.json ] || $bin train $common {}"
