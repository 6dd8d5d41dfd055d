#!/usr/bin/env bash
# Online learning on Fashion-MNIST (issue 19): one pass over a stream of STREAM (default 10000)
# training samples, batch 1, no epochs, a constant rate; test accuracy at 0, 1, 2, 5, 10, ...
# samples seen; seeds 0-2. Each arm is RULE or RULE:PRESET (pc:equilibrium: prospective
# configuration) on the holistic study's network for the rule (plans/holistic-all.toml:
# mlp:256,256 unless the rule has its own) with the settings that study's search chose
# (plans/tuned/holistic-all.toml: the rule's lr, weight decay and searched settings), its own
# optimiser. The rate is then searched for this condition, the same grid for every arm: the
# tuned lr (for batch 128 over epochs) times 0.001, 0.003, 0.01, 0.03, 0.1, 0.3, 1 and 3, each candidate one stream on the training set less a
# 10% validation split, the best mean validation accuracy kept (the test set is not seen). The
# rate searched is the arm's own where lr is not it: Activation Learning's hebb_lr (its label
# read-out has no lr), meta-plasticity's pseudo-gradient coefficient mp_pseudo_grad (its other
# two coefficients as meta-learned on training-split episodes of classes 0-4,
# results/meta-plasticity-fmnist/mp3, its network the preset's). Writes OUT/ARM.json (search trials, every seed's curve, summary with 95% t
# intervals), OUT/ARM.toml (the settings used), OUT/ARM.log and OUT/summary.txt.
# Needs: apt-get install -y dataset-fashion-mnist.
# BIN (environment): a biolearn binary to use instead of building one.
# Usage: [STREAM=N] [BIN=PATH] bench/online.sh OUT [ARMS...]
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:?usage: bench/online.sh OUT [ARMS...]}
shift
arms=("$@")
[ ${#arms[@]} -gt 0 ] || arms=(bp fa dfa pc pc:equilibrium softhebb activation-learning meta-plasticity)
stream=${STREAM:-10000}
bin=${BIN:-target/release/biolearn}
[ -n "${BIN:-}" ] || cargo build --release -q
mkdir -p "$out"
for arm in "${arms[@]}"; do
  rule=${arm%%:*}
  preset=""
  [ "$rule" = "$arm" ] || preset=${arm#*:}
  name=${arm//:/-}
  [ -f "$out/$name.json" ] && continue
  factors="0.001,0.003,0.01,0.03,0.1,0.3,1,3"
  key=lr
  case $rule in
    meta-plasticity)
      # Its preset's network, its coefficients meta-learned (mp3), not the holistic ones.
      key=mp_pseudo_grad
      grep -v '^#' results/meta-plasticity-fmnist/mp3/theta.toml > "$out/$name.toml" ;;
    *)
      [ "$rule" != activation-learning ] || key=hebb_lr
      python3 bench/holistic_settings.py "$rule" > "$out/$name.toml" ;;
  esac
  extra=(--config "$out/$name.toml" --search-key "$key" --search-factors "$factors")
  [ -z "$preset" ] || extra+=(--preset "$preset")
  $bin online --rule "$rule" --data fashion-mnist "${extra[@]}" --samples "$stream" --seeds 3 --threads 1 \
    --json "$out/$name.json" 2> "$out/$name.log" | tee -a "$out/summary.txt"
done
