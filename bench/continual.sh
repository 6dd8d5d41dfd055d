#!/usr/bin/env bash
# Continual learning on Fashion-MNIST (issue 19): split:5 (5 tasks of 2 classes) learned one after
# another, 2 epochs per task, seeds 0-2. Every rule on the holistic study's network and with the
# settings its search chose there on a validation split (plans/tuned/holistic-all.toml: lr,
# weight decay and the rule's own searched settings; the network from plans/holistic-all.toml,
# mlp:256,256 unless the rule has its own); the rate re-searched for this condition with FACTORS
# (below), not otherwise. Writes OUT/RULE.json
# (accuracy matrices, class- and task-incremental metrics with 95% t intervals), OUT/RULE.toml (the
# settings used) and OUT/summary.txt.
# An arm is RULE or RULE:PRESET (pc:equilibrium: prospective configuration, with pc's searched
# lr and weight decay and the preset's inference settings), written OUT/RULE-PRESET.*.
# FACTORS (environment): search the rate for this condition, the same grid for every arm: the
# searched lr times each factor (FACTORS="0.001,0.003,0.01,0.03,0.1,0.3,1,3"), each candidate learning the
# sequence on the tasks' training examples less a 10% validation split, the best
# task-incremental validation accuracy kept (the test examples are not seen). The rate searched
# is the arm's own where lr is not it (Activation Learning: hebb_lr).
# FLAGS (environment) adds flags to every run: FLAGS="--momentum 0" is the plain-SGD variant.
# BIN (environment): a biolearn binary to use instead of building one.
# Needs: apt-get install -y dataset-fashion-mnist. Usage: [FLAGS=...] bench/continual.sh OUT [ARMS...]
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:?usage: bench/continual.sh OUT [ARMS...]}
shift
rules=("$@")
[ ${#rules[@]} -gt 0 ] || rules=(bp fa dfa ddfa drtp tpsgd pal pc ep softhebb)
bin=${BIN:-target/release/biolearn}
[ -n "${BIN:-}" ] || cargo build --release -q
mkdir -p "$out"
for arm in "${rules[@]}"; do
  r=${arm%%:*}
  preset=()
  [ "$r" = "$arm" ] || preset=(--preset "${arm#*:}")
  name=${arm//:/-}
  [ -f "$out/$name.json" ] && continue
  python3 bench/holistic_settings.py "$r" > "$out/$name.toml"
  search=()
  key=lr
  [ "$r" != activation-learning ] || key=hebb_lr
  [ -z "${FACTORS:-}" ] || search=(--search-key "$key" --search-factors "$FACTORS")
  # shellcheck disable=SC2086 # FLAGS is a list of flags
  $bin continual --rule "$r" "${preset[@]}" "${search[@]}" --data fashion-mnist --config "$out/$name.toml" --tasks split:5 \
    --epochs-per-task 2 --seeds 3 --threads 1 ${FLAGS:-} --json "$out/$name.json" 2> "$out/$name.log" \
    | tee -a "$out/summary.txt"
done
