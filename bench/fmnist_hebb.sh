#!/usr/bin/env bash
# The Hebbian nets on full Fashion-MNIST with their presets (`biolearn rules`): single-layer
# SoftHebb (2000 neurons, t_inv 80, 3 unsupervised epochs, 20 epochs; ~5 min per run); multilayer
# SoftHebb on the 28x28-sized blocks (softhebb-cnn28: 32/128/512 channels, padded pools; one
# unsupervised epoch, then the read-out on cached features), 10 and 30 epochs; winner-take-all
# instar on hebb-conv3 (5 unsupervised epochs with the read-out trained alongside), 5 epochs.
# Seeds 0..SEEDS-1 (default 3). On one core: ~10 min per softhebb-deep run (7 min unsupervised
# epoch, 2 min caching the features, 3 s per read-out epoch), ~25 min per hebb-wta run.
# Usage: bench/fmnist_hebb.sh [OUT_DIR] [SEEDS] [WTA_SEEDS]   then   python3 bench/summarize.py OUT_DIR
# PARALLEL=2 runs two at once.
set -euo pipefail
out=${1:-runs/fmnist-hebb}
seeds=${2:-3}
wta_seeds=${3:-1}
bin=${BIOLEARN:-target/release/biolearn}
[ -x "$bin" ] || cargo build --release
jobs=()
for seed in $(seq 0 $((seeds - 1))); do
  jobs+=("--rule softhebb --epochs 20 --seed $seed --out $out/softhebb-s$seed")
  jobs+=("--rule softhebb-deep --epochs 10 --seed $seed --out $out/softhebb-deep-cnn28-s$seed")
  jobs+=("--rule softhebb-deep --epochs 30 --seed $seed --out $out/softhebb-deep-cnn28-e30-s$seed")
done
for seed in $(seq 0 $((wta_seeds - 1))); do
  jobs+=("--rule hebb-wta --epochs 5 --seed $seed --out $out/hebb-wta-s$seed")
done
printf '%s\n' "${jobs[@]}" | xargs -P "${PARALLEL:-1}" -I{} sh -c \
  "[ -f \$(echo '{}' | sed 's/.*--out //')/result.json ] || $bin train --data fashion-mnist --threads 1 -q {}"
