#!/usr/bin/env bash
# Equilibrium propagation and CHL on full Fashion-MNIST, the paper's network 784-500-10 (hard
# sigmoid), batch 20, plain SGD lr 0.05 (the paper's alpha), beta 0.5 with random sign,
# 40 free / 4 nudged steps, 25 epochs; DTP and FW-DTP on 6 x 256 tanh, batch 256, Adam lr 1e-3,
# 30 epochs. Seeds 0..SEEDS-1 (default 3).
# Usage: bench/fmnist_energy.sh [OUT_DIR] [SEEDS]   then   python3 bench/summarize.py OUT_DIR
set -euo pipefail
out=${1:-runs/fmnist-energy}
seeds=${2:-3}
bin=${BIOLEARN:-target/release/biolearn}
[ -x "$bin" ] || cargo build --release
ep="--arch mlp:500 --activation sigmoid --batch 20 --optimizer sgd --momentum 0 --lr 0.05 --schedule constant --epochs 25"
tp="--arch mlp:256,256,256,256,256,256 --activation tanh --batch 256 --optimizer adam --lr 1e-3 --schedule constant --epochs 30"
jobs=()
for seed in $(seq 0 $((seeds - 1))); do
  jobs+=("$ep --rule ep --seed $seed --out $out/ep-s$seed")
  # 4 clamped steps, as when the README's figures were made (chl's preset now settles 40).
  jobs+=("$ep --rule chl --set ep_nudged_steps=4 --seed $seed --out $out/chl-s$seed")
  jobs+=("$tp --rule fw-dtp --seed $seed --out $out/fwdtp-s$seed")
  jobs+=("$tp --rule dtp --seed $seed --out $out/dtp-s$seed")
done
printf '%s\n' "${jobs[@]}" | xargs -P "${PARALLEL:-1}" -I{} sh -c \
  "[ -f \$(echo '{}' | sed 's/.*--out //')/result.json ] || $bin train --data fashion-mnist --threads 1 -q {}"
