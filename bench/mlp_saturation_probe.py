"""Is a trained MLP's softmax saturated, so that its input gradient is zero (gradient masking)?

A PyTorch copy of a saved ReLU MLP (`biolearn train --arch mlp:... --save` on Fashion-MNIST)
evaluated on the first 500 test images (the protocol's `attack_samples = 500`): accuracy, the
mean spread of the logits (max - min), the share of images whose largest softmax probability is
exactly 1 in f32, and the share whose cross-entropy input gradient is exactly zero (FGSM and PGD
cannot move those images).

    python3 bench/mlp_saturation_probe.py RUN_DIR [RUN_DIR ...]

Needs torch and numpy, and /usr/share/datasets/fashion-mnist (`apt-get install
dataset-fashion-mnist`). Assumes biolearn's MLP layout (dense layers `layers.I.weight/bias`, the
run's hidden activation between them: relu, tanh or sigmoid, read from the model file) and inputs
standardised by the training set's mean and std.
"""
import gzip
import json
import struct
import sys

import numpy as np
import torch


def load(path):
    b = open(path, "rb").read()
    n = struct.unpack("<Q", b[:8])[0]
    head = json.loads(b[8 : 8 + n])
    data = b[8 + n :]
    tensors = {
        k: torch.tensor(np.frombuffer(data[v["data_offsets"][0] : v["data_offsets"][1]], dtype=np.float32).reshape(v["shape"]).copy())
        for k, v in head.items()
        if k != "__metadata__"
    }
    config = json.loads(head.get("__metadata__", {}).get("config", "{}"))
    return tensors, config


def idx(path):
    b = gzip.open(path).read()
    return np.frombuffer(b[16:], dtype=np.uint8).reshape(-1, 784) if b[3] == 3 else np.frombuffer(b[8:], dtype=np.uint8)


D = "/usr/share/datasets/fashion-mnist/"
xtr = idx(D + "train-images-idx3-ubyte.gz").astype(np.float32) / 255
xte = idx(D + "t10k-images-idx3-ubyte.gz")[:500].astype(np.float32) / 255
y = torch.tensor(idx(D + "t10k-labels-idx1-ubyte.gz")[:500].astype(np.int64))
x = torch.tensor((xte - xtr.mean()) / xtr.std()).requires_grad_(True)

for run in sys.argv[1:]:
    m, config = load(run.rstrip("/") + "/model.safetensors")
    act = {"relu": torch.relu, "tanh": torch.tanh, "sigmoid": torch.sigmoid}[config.get("activation", "relu")]
    weights = sorted((k for k in m if k.startswith("layers.") and k.endswith(".weight")), key=lambda k: int(k.split(".")[1]))
    h = x
    for i, k in enumerate(weights):
        h = h @ m[k].T + m[k.replace("weight", "bias")]
        if i < len(weights) - 1:
            h = act(h)
    (g,) = torch.autograd.grad(torch.nn.functional.cross_entropy(h, y, reduction="sum"), x)
    h = h.detach()
    p = torch.softmax(h, 1)
    print(
        "%s: accuracy %.3f, logit spread %.3g, softmax max exactly 1: %.3f, input gradient exactly 0: %.3f"
        % (
            run,
            (h.argmax(1) == y).float().mean().item(),
            (h.max(1).values - h.min(1).values).mean().item(),
            (p.max(1).values == 1.0).float().mean().item(),
            (g.abs().sum(1) == 0).float().mean().item(),
        )
    )
