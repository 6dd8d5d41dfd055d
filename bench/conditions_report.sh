#!/usr/bin/env bash
# The report of the conditions run outside plans (issue 19): online learning, continual learning
# with its rate searched, few-shot online episodes and the interference experiments, each arm
# against BP's (paired differences, 95% CIs, Holm), into results/conditions-report/ and
# results/conditions-report/report.md (bench/results.sh puts the same sections into RESULTS.md,
# after the holistic study). Reads the committed result directories (made by bench/online.sh (and
# the two 10-seed online runs whose commands README.md gives),
# FACTORS=... bench/continual.sh, bench/fewshot.sh, bench/meta_plasticity.sh and
# `biolearn interference --out results/interference`). Usage: bench/conditions_report.sh
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release -q
mkdir -p results/conditions-report
target/release/biolearn report results/conditions-report --out results/conditions-report \
  --conditions results/online-fmnist --conditions results/online-fmnist-10seeds \
  --conditions results/continual-fmnist-searched \
  --conditions results/fewshot-fmnist --conditions results/meta-plasticity-fmnist \
  --conditions results/interference
