#!/usr/bin/env python3
"""BioTorch's LeNet (biotorch/models/le_net.py, with relu4) trained by BP, FA or uSF with BioTorch's
layer mechanics (bench/biotorch_step.py's autograd functions, checked against biolearn by
rules::tests::biotorch_step), in PyTorch, on Fashion-MNIST: does FA diverge at a learning rate
where BP trains in the reference too? (issue 13). BioTorch's init "xavier": W and B
Xavier-uniform, biases 0; uSF's B = Xavier std * sign(W). 28x28 inputs padded by 2 in conv1 (as
biolearn's `lenet`), normalised with BioTorch's mean 0.2859 and std 0.3530.

  python3 bench/biotorch_lenet.py --rule fa --lr 0.05 --epochs 1 [--batch 64 --momentum 0.9
      --wd 0 --subset 1.0 --seed 0 --threads 2]

Prints one line per epoch: mean train loss, test accuracy. Needs: pip install torch numpy.
"""
import argparse
import gzip
import math
import os
import sys

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from biotorch_step import FaConv, FaLinear  # noqa: E402

torch.set_default_dtype(torch.float32)  # (biotorch_step checks in float64)

DATA = "/usr/share/datasets/fashion-mnist"


def idx(path):
    with gzip.open(path) as f:
        b = f.read()
    dims = b[3]
    shape = [int.from_bytes(b[4 + 4 * i:8 + 4 * i], "big") for i in range(dims)]
    return np.frombuffer(b, dtype=np.uint8, offset=4 + 4 * dims).reshape(shape)


def load(kind):
    x = idx(f"{DATA}/{kind}-images-idx3-ubyte.gz").astype(np.float32) / 255.0
    y = idx(f"{DATA}/{kind}-labels-idx1-ubyte.gz").astype(np.int64)
    x = (x - 0.2859) / 0.3530
    return torch.from_numpy(x[:, None]), torch.from_numpy(y)


# (name, shape, kind, padding): conv1 6 k5 pad 2, conv2 16 k5, conv3 120 k5, fc1 84, fc2 10.
LAYERS = [("conv1", (6, 1, 5, 5), 2), ("conv2", (16, 6, 5, 5), 0), ("conv3", (120, 16, 5, 5), 0),
          ("fc1", (84, 120), None), ("fc2", (10, 84), None)]


def fans(shape):
    rf = math.prod(shape[2:]) if len(shape) > 2 else 1
    return shape[1] * rf, shape[0] * rf


def xavier(shape, g):
    fi, fo = fans(shape)
    bound = math.sqrt(6.0 / (fi + fo))
    return (torch.rand(shape, generator=g) * 2 - 1) * bound


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--rule", default="fa", choices=["bp", "fa", "usf"])
    ap.add_argument("--lr", type=float, default=0.05)
    ap.add_argument("--epochs", type=int, default=1)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--momentum", type=float, default=0.9)
    ap.add_argument("--wd", type=float, default=0.0)
    ap.add_argument("--subset", type=float, default=1.0)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=2)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    g = torch.Generator().manual_seed(a.seed)
    xtr, ytr = load("train")
    xte, yte = load("t10k")
    if a.subset < 1.0:
        keep = torch.randperm(len(ytr), generator=g)[: int(a.subset * len(ytr))]
        xtr, ytr = xtr[keep], ytr[keep]
    w = {n: xavier(s, g).requires_grad_(True) for n, s, _ in LAYERS}
    b = {n: torch.zeros(s[0], requires_grad=True) for n, s, _ in LAYERS}
    fb = {n: xavier(s, g) for n, s, _ in LAYERS}
    opt = torch.optim.SGD(list(w.values()) + list(b.values()), lr=a.lr, momentum=a.momentum, weight_decay=a.wd)

    def forward(x):
        h = x
        for i, (n, s, pad) in enumerate(LAYERS):
            if a.rule == "bp" or i == 0:
                bw = w[n].detach()
            elif a.rule == "fa":
                bw = fb[n]
            else:
                fi, fo = fans(s)
                bw = math.sqrt(2.0 / (fi + fo)) * torch.sign(w[n].detach())
            if pad is not None:
                h = FaConv.apply(h, w[n], bw, b[n], pad)
                h = F.relu(h)
                if n != "conv3":
                    h = F.max_pool2d(h, 2)
            else:
                h = FaLinear.apply(h.flatten(1), w[n], bw, b[n])
                if n != "fc2":
                    h = F.relu(h)
        return h

    for epoch in range(1, a.epochs + 1):
        perm = torch.randperm(len(ytr), generator=g)
        total, count = 0.0, 0
        for k in range(0, len(perm), a.batch):
            i = perm[k:k + a.batch]
            loss = F.cross_entropy(forward(xtr[i]), ytr[i])
            opt.zero_grad()
            loss.backward()
            opt.step()
            total += loss.item() * len(i)
            count += len(i)
        with torch.no_grad():
            acc = sum((forward(xte[k:k + 1000]).argmax(1) == yte[k:k + 1000]).sum().item()
                      for k in range(0, len(yte), 1000)) / len(yte)
        print(f"{a.rule} lr {a.lr} epoch {epoch}: train_loss {total / count:.4g} test_acc {acc:.4f}", flush=True)


if __name__ == "__main__":
    main()
