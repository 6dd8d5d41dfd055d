#!/usr/bin/env bash
# Few-shot online learning on Fashion-MNIST (issue 19): predictive coding in prospective
# configuration beside near-BP PC, BP, FA and the Hebbian rules, on the episodes of
# bench/meta_plasticity.sh: 5-way 50-shot, every example seen once at batch 1 by a freshly
# initialised network, 20 query examples per class. Every arm's learning rate is learned by the
# same evolution strategy (log scale from 0.001: sigma 0.1, Adam steps of 0.05, ITERS iterations x
# 8 antithetic pairs, seed 0; Activation Learning's hebb_lr from its preset's value instead, its
# label read-out having no lr) on episodes of classes 0-4 from the training split; the figure is
# 100 episodes of classes 5-9 from the test split (query accuracy, mean and 95% interval).
# Plain SGD at a constant rate for the rules the driver's optimiser updates (the rule's preset
# otherwise: its inference settings, its network for the Hebbian rules).
#   bp, fa                 MLP 784-256-128-5 (ReLU), as bench/meta_plasticity.sh
#   pc                     near-BP predictive coding (pc's default preset), same MLP
#   pc-equilibrium         prospective configuration (pc --preset equilibrium), same MLP
#   softhebb               softhebb-mlp:2000 (Hebbian layer and read-out learn together in the
#                          one pass: the concurrent phase of a one-epoch run)
#   activation-learning    al-mlp:400
# meta-plasticity's own row (its coefficients learned by the same strategy) is in
# results/meta-plasticity-fmnist (bench/meta_plasticity.sh).
# BIN (environment): a biolearn binary to use instead of building one.
# Needs: apt-get install -y dataset-fashion-mnist. Usage: [BIN=PATH] bench/fewshot.sh OUT [ITERS] [ARMS...]
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:?usage: bench/fewshot.sh OUT [ITERS] [ARMS...]}
iters=${2:-150}
shift $(( $# >= 2 ? 2 : 1 ))
arms=("$@")
[ ${#arms[@]} -gt 0 ] || arms=(bp fa pc pc-equilibrium softhebb activation-learning)
bin=${BIN:-target/release/biolearn}
[ -n "${BIN:-}" ] || cargo build --release -q
mkdir -p "$out"
ep=(--data fashion-mnist --shots 50 --queries 20 --ways 5 --threads 1)
train=(--classes 0-4 --split train --iterations "$iters" --pairs 8 --es-seed 0 --sigma 0.1 --es-lr 0.05)
test=(--classes 5-9 --split test --episodes 100 --episode-seed 1000)
mlp="mlp:256,128"
sgd=(--optimizer sgd --momentum 0 --weight-decay 0 --schedule constant)
for arm in "${arms[@]}"; do
  case $arm in
    bp | fa) flags=(--rule "$arm" --arch "$mlp" --activation relu "${sgd[@]}") ;;
    pc) flags=(--rule pc --arch "$mlp" --activation relu "${sgd[@]}") ;;
    pc-equilibrium) flags=(--rule pc --preset equilibrium --arch "$mlp" --activation relu "${sgd[@]}") ;;
    softhebb) flags=(--rule softhebb) ;;
    activation-learning) flags=(--rule activation-learning) ;;
    *) echo "unknown arm $arm" >&2; exit 2 ;;
  esac
  # The rate learned: lr from 0.001, or Activation Learning's hebb_lr from its preset's (its label
  # read-out has no lr).
  learn=(--lr 0.001 --keys log:lr)
  [ "$arm" != activation-learning ] || learn=(--keys "log:hebb_lr[0]")
  [ -f "$out/$arm/theta.toml" ] || "$bin" meta-train "${ep[@]}" "${flags[@]}" "${learn[@]}" "${train[@]}" --out "$out/$arm" 2> "$out/$arm.log"
  [ -f "$out/$arm.json" ] || "$bin" episodes "${ep[@]}" "${flags[@]}" "${test[@]}" --config "$out/$arm/theta.toml" \
    --json "$out/$arm.json" | tee -a "$out/summary.txt"
done
