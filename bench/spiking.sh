#!/usr/bin/env bash
# The spiking rules' training speed beside BP's on a network of the same size (issue 15): samples/s
# of one full Fashion-MNIST epoch (`biolearn bench`), 1 thread (desire backpropagation updates after
# every sample, so it cannot use more) and 2 for BP and IDE-FSNN. desire and BP on 784-1000-100-10
# (no biases), IDE-FSNN and BP on 784-400(bn)-10, STDP's unsupervised epoch on 784-400-10.
# Needs: apt-get install -y dataset-fashion-mnist. Run on a quiet machine.
# Usage: bench/spiking.sh
set -euo pipefail
cd "$(dirname "$0")/.."
bin=target/release/biolearn
cargo build --release -q
$bin bench --data fashion-mnist --rules desire,bp --archs 'mlp:1000,100/nobias' --threads 1,2 --batch 128
$bin bench --data fashion-mnist --rules ide-fsnn,bp --archs 'mlp:400/bn' --threads 1,2 --batch 128
$bin bench --data fashion-mnist --rules stdp --archs 'mlp:400' --threads 1 --batch 64
