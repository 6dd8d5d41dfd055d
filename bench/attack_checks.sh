#!/usr/bin/env bash
# The single-seed attack checks beside plans/attack-blackbox.toml (issue 11): seed-0 models of the
# rules concerned, trained exactly as plans/holistic-all.toml trains them (the settings read from
# plans/tuned/holistic-all.toml; 20 epochs, full Fashion-MNIST less a 10% validation split), then
# attacked by `biolearn eval` on the first 500 test images: FGSM/PGD on the cross-entropy (the
# study's), on the margin (whose gradient survives a saturated softmax), the black-box Square
# attack, and transfer attacks crafted on BP's model (BP on the same network, or its twin on
# IDE-FSNN's). Also whether each MLP's softmax saturates (bench/mlp_saturation_probe.py, needs
# torch). About 35 minutes on one core.
# Usage: bench/attack_checks.sh [OUT_DIR]   (default runs/attack-checks)
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release -q
bin=target/release/biolearn
out=${1:-runs/attack-checks}
mkdir -p "$out"
# name rule arch [tuned entry, default: the rule] [seed]
models=(
  "bp bp mlp:256,256"
  "bp-s1 bp mlp:256,256 rule.bp 1"
  "fa fa mlp:256,256"
  "align-ada align-ada mlp:256,256"
  "ddfa ddfa mlp:256,256"
  "drtp drtp mlp:256,256"
  "ep ep mlp:256,256"
  "ide-fsnn ide-fsnn mlp:400/bn"
  "bp-ide bp mlp:400/bn arm.bp-ide-fsnn-mlp"
  "softhebb-deep softhebb-deep softhebb-cnn28"
)
for m in "${models[@]}"; do
  read -r name rule arch entry seed <<< "$m"
  entry=${entry:-rule.$rule}
  [ -f "$out/$name/model.safetensors" ] && continue
  # The entry's searched settings as --set flags.
  mapfile -t sets < <(python3 - "$entry" <<'PY'
import sys, tomllib
section, name = sys.argv[1].split(".", 1)
for k, v in tomllib.load(open("plans/tuned/holistic-all.toml", "rb"))[section][name].items():
    print(f"{k}={v}")
PY
  )
  args=()
  for s in "${sets[@]}"; do args+=(--set "$s"); done
  "$bin" train --data fashion-mnist --rule "$rule" --arch "$arch" --epochs 20 --val-fraction 0.1 \
    --threads 1 --seed "${seed:-0}" --save -q --out "$out/$name" "${args[@]}"
done
atk=(--attack-samples 500 --threads 1)
for name in bp fa align-ada ddfa drtp ide-fsnn bp-ide; do
  echo "== $name"
  "$bin" eval "$out/$name" --fgsm 0.05,0.1 --pgd 0.05 --square 0.05,0.1 "${atk[@]}" | tail -n +3
  "$bin" eval "$out/$name" --fgsm 0.05,0.1 --pgd 0.05 --attack-loss margin "${atk[@]}" | tail -n +3 | head -n 3
done
echo "== softhebb-deep (through its dropout layer; Square on 200 images, 300 queries: a conv net)"
"$bin" eval "$out/softhebb-deep" --fgsm 0.05,0.1 --pgd 0.05 "${atk[@]}" | tail -n +3
"$bin" eval "$out/softhebb-deep" --fgsm 0.05,0.1 --pgd 0.05 --attack-loss margin "${atk[@]}" | tail -n +3 | head -n 3
"$bin" eval "$out/softhebb-deep" --square 0.05,0.1 --square-queries 300 --attack-samples 200 --threads 1 | tail -n +3
echo "== ep (no input gradient)"
"$bin" eval "$out/ep" --square 0.05,0.1 "${atk[@]}" | tail -n +3
for name in bp-s1 fa align-ada ddfa drtp ep; do
  echo "== $name, attacked from bp"
  "$bin" eval "$out/$name" --fgsm 0.05,0.1 --pgd 0.05 --attack-from "$out/bp" "${atk[@]}" | tail -n +3 | head -n 3
done
echo "== ide-fsnn, attacked from bp-ide"
"$bin" eval "$out/ide-fsnn" --fgsm 0.05,0.1 --pgd 0.05 --attack-from "$out/bp-ide" "${atk[@]}" | tail -n +3 | head -n 3
if python3 -c "import torch" 2>/dev/null; then
  python3 bench/mlp_saturation_probe.py "$out"/{bp,fa,align-ada,ddfa,drtp}
fi
