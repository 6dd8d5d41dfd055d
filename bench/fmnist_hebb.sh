#!/usr/bin/env bash
# The Hebbian conv nets on full Fashion-MNIST with their presets (`biolearn rules`): multilayer
# SoftHebb on the 28x28-sized blocks (softhebb-cnn28: 32/128/512 channels; one unsupervised epoch,
# then the read-out), 10 and 20 epochs; winner-take-all instar on hebb-conv3 (5 unsupervised
# epochs with the read-out trained alongside), 5 epochs. Seeds 0..SEEDS-1 (default 1: ~15, ~30
# and ~25 min per run on one core).
# Usage: bench/fmnist_hebb.sh [OUT_DIR] [SEEDS]   then   python3 bench/summarize.py OUT_DIR
set -euo pipefail
out=${1:-runs/fmnist-hebb}
seeds=${2:-1}
bin=${BIOLEARN:-target/release/biolearn}
[ -x "$bin" ] || cargo build --release
jobs=()
for seed in $(seq 0 $((seeds - 1))); do
  jobs+=("--rule softhebb-deep --arch softhebb-cnn28 --epochs 10 --seed $seed --out $out/softhebb-deep-cnn28-s$seed")
  jobs+=("--rule softhebb-deep --arch softhebb-cnn28 --epochs 20 --seed $seed --out $out/softhebb-deep-cnn28-e20-s$seed")
  jobs+=("--rule hebb-wta --epochs 5 --seed $seed --out $out/hebb-wta-s$seed")
done
printf '%s\n' "${jobs[@]}" | xargs -P "${PARALLEL:-1}" -I{} sh -c \
  "[ -f \$(echo '{}' | sed 's/.*--out //')/result.json ] || $bin train --data fashion-mnist --threads 1 -q {}"
