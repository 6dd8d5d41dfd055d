#!/usr/bin/env python3
"""The learning curve a run's checkpoint holds (its per-epoch records so far), for a run still in
progress: `biolearn compare` writes a run's record only when the run ends, and a 600-epoch run
spans sessions. Reads the safetensors header only (no dependencies).

Usage: bench/checkpoint_curve.py CHECKPOINT.safetensors [--every N]
Prints: epoch, test accuracy %, train accuracy %, seconds of the epoch, spikes per test sample.
"""
import json
import struct
import sys


def history(path):
    with open(path, "rb") as f:
        (n,) = struct.unpack("<Q", f.read(8))
        header = json.loads(f.read(n))
    meta = header.get("__metadata__", {})
    if "history" not in meta:
        sys.exit(f"{path}: no training history in its metadata (not a biolearn checkpoint?)")
    return json.loads(meta["history"])["epochs"]


def main():
    if len(sys.argv) < 2:
        sys.exit(__doc__)
    every = int(sys.argv[sys.argv.index("--every") + 1]) if "--every" in sys.argv else 1
    epochs = history(sys.argv[1])
    print("| epoch | test % | train % | seconds | spikes / test sample |")
    print("|---:|---:|---:|---:|---:|")
    for e in epochs:
        if e["epoch"] % every and e is not epochs[-1] and e["epoch"] != 1:
            continue
        spikes = e.get("spikes_per_sample")
        print(
            f"| {e['epoch']} | {100 * e['test_accuracy']:.2f} | {100 * e['train_accuracy']:.2f} | "
            f"{e['seconds']:.1f} | {'' if spikes is None else f'{spikes:.0f}'} |"
        )
    best = max(epochs, key=lambda e: e["test_accuracy"])
    first85 = next((e["epoch"] for e in epochs if e["test_accuracy"] >= 0.85), None)
    print(
        f"\n{len(epochs)} epochs, {sum(e['seconds'] for e in epochs) / 3600:.2f} h of training; "
        f"best test epoch {best['epoch']} ({100 * best['test_accuracy']:.2f}%, chosen on the test set); "
        f"first epoch at >= 85%: {first85}"
    )


if __name__ == "__main__":
    main()
