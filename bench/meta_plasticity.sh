#!/usr/bin/env bash
# Meta-learned plasticity on Fashion-MNIST (issue 14): meta-train on classes 0-4 (training split),
# meta-test on classes 5-9 (test split), 5-way 50-shot online episodes (batch 1, one pass),
# 20 queries per class, the preset's MLP 784-256-128-5 (ReLU). Every arm gets the same evolution
# strategy budget (ITERS iterations x 8 antithetic pairs, seed 0; sigma 0.001 and Adam steps of
# 0.0005 on the coefficients, 0.1 and 0.05 on BP's log rate) over its own settings, then 100
# meta-test episodes:
#   start      meta-plasticity at the reference's starting rule theta = (1e-3, 0, 0), not trained
#   mp3        meta-plasticity, all three coefficients learned
#   mp-rate    the pseudo-gradient term alone (feedback alignment), its rate learned
#   bp-rate    backprop at batch 1, its learning rate learned (plain SGD)
# Needs: apt-get install -y dataset-fashion-mnist. Usage: bench/meta_plasticity.sh OUT [ITERS]
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:?usage: bench/meta_plasticity.sh OUT [ITERS]}
iters=${2:-150}
bin=target/release/biolearn
cargo build --release -q
mkdir -p "$out"
ep=(--data fashion-mnist --arch mlp:256,128 --activation relu --shots 50 --queries 20 --ways 5 --threads 1)
train=(--classes 0-4 --split train --iterations "$iters" --pairs 8 --es-seed 0)
test=(--classes 5-9 --split test --episodes 100 --episode-seed 1000)
learn() {  # NAME ARGS...: meta-train into $out/NAME unless done
  local name=$1; shift
  [ -f "$out/$name/theta.toml" ] || "$bin" meta-train "${ep[@]}" "$@" --out "$out/$name" 2> "$out/$name.log"
}
learn mp3 --rule meta-plasticity "${train[@]}" --sigma 0.001 --es-lr 0.0005
learn mp-rate --rule meta-plasticity "${train[@]}" --sigma 0.001 --es-lr 0.0005 --keys mp_pseudo_grad
# BP's rate on a log scale (a rate must stay positive): sigma 0.1 and steps of 0.05 in ln(lr).
learn bp-rate --rule bp --optimizer sgd --momentum 0 --schedule constant --lr 0.001 "${train[@]}" \
  --sigma 0.1 --es-lr 0.05 --keys log:lr
$bin episodes --rule meta-plasticity "${ep[@]}" "${test[@]}" --json "$out/start.json"
$bin episodes --rule meta-plasticity "${ep[@]}" "${test[@]}" --config "$out/mp3/theta.toml" --json "$out/mp3.json"
$bin episodes --rule meta-plasticity "${ep[@]}" "${test[@]}" --config "$out/mp-rate/theta.toml" --json "$out/mp-rate.json"
$bin episodes --rule bp --optimizer sgd --momentum 0 --schedule constant "${ep[@]}" "${test[@]}" \
  --config "$out/bp-rate/theta.toml" --json "$out/bp-rate.json"
