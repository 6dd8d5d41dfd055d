#!/usr/bin/env bash
# Equal-budget tuning, then the tuned runs (issue 11's protocol, first use). By default on the
# digits: every rule on the same MLP 64-128-128-10 (ReLU; two hidden layers, so FA and DFA
# differ) gets the same search: 24 trials x 10 epochs on the whole training set minus a
# stratified 10% validation split (search seed 0), lr log-uniform 1e-4..1 and weight_decay
# 1e-6..1e-2, SGD momentum 0.9, batch 64, cosine. Each rule's preset is then trained for 30
# epochs (fixed in advance: 3 x the trial length) with its own 10% validation split, seeds 0, 1,
# 2. The test set is read only by those final runs. Seconds on one core.
# Usage: bench/tune_digits.sh [OUT_DIR] [RULES...]   (default rules: bp fa dfa drtp usf)
# The same protocol elsewhere through the environment: DATA, ARCH, ACTIVATION (default relu, the
# README tables': it overrides a rule's preset activation, e.g. DRTP's tanh), BATCH, TRIAL_EPOCHS, SUBSET
# (share of the training set a trial trains on), FINAL_EPOCHS; the README's Fashion-MNIST table:
#   DATA=fashion-mnist ARCH=mlp:1024,1024 BATCH=128 TRIAL_EPOCHS=3 SUBSET=0.2 FINAL_EPOCHS=20 \
#     bench/tune_digits.sh runs/tune-fmnist bp fa dfa        (about 35 minutes on one core)
set -euo pipefail
out=${1:-runs/tune-digits}
shift || true
rules=${*:-bp fa dfa drtp usf}
bin=${BIOLEARN:-target/release/biolearn}
[ -x "$bin" ] || cargo build --release
data=${DATA:-digits}; arch=${ARCH:-mlp:128,128}; batch=${BATCH:-64}
trial_epochs=${TRIAL_EPOCHS:-10}; subset=${SUBSET:-1}; final_epochs=${FINAL_EPOCHS:-30}
act=${ACTIVATION:-relu}
shared="--data $data --arch $arch --activation $act --optimizer sgd --momentum 0.9 --batch $batch --schedule cosine --threads 1"
for rule in $rules; do
  "$bin" tune --rule "$rule" $shared --trials 24 --epochs "$trial_epochs" --subset "$subset" \
    --val-fraction 0.1 --tune-seed 0 --quiet --out "$out/tune-$rule"
  for seed in 0 1 2; do
    d="$out/final-$rule-s$seed"
    [ -f "$d/result.json" ] || "$bin" train --config "$out/tune-$rule/preset.toml" $shared \
      --epochs "$final_epochs" --val-fraction 0.1 --seed "$seed" --no-checkpoint --quiet --out "$d" > /dev/null
  done
done
python3 - "$out" $rules <<'PY'
import json, statistics as st, sys, tomllib
out, rules = sys.argv[1], sys.argv[2:]
print("| rule | tuned lr | tuned weight decay | best trial val % | final val % | final test % |")
print("|---|---|---|---|---|---|")
for r in rules:
    p = tomllib.load(open(f"{out}/tune-{r}/preset.toml", "rb"))
    trials = [json.loads(l) for l in open(f"{out}/tune-{r}/trials.jsonl")]
    best = max(t["val_accuracy"] for t in trials)
    res = [json.load(open(f"{out}/final-{r}-s{s}/result.json")) for s in range(3)]
    val = [100 * x["epochs"][-1]["val_accuracy"] for x in res]
    test = [100 * x["test_accuracy"] for x in res]
    f = lambda v: f"{st.mean(v):.2f} ± {st.stdev(v):.2f}"
    print(f"| {r} | {p['lr']:.3g} | {p['weight_decay']:.2g} | {100*best:.2f} | {f(val)} | {f(test)} |")
PY
