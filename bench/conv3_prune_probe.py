"""A PyTorch copy of a saved conv3 model (`biolearn train --arch conv3:... --save`) on Fashion-MNIST,
to look inside global magnitude pruning: for each sparsity, the test accuracy (it reproduces
`biolearn eval MODEL --sparsity ...`), the share of positive units after each conv block, the
share of last-block units positive for some test image, and the output's spread across images
(its std per class, averaged: 0 when the output no longer depends on the image).

    python3 bench/conv3_prune_probe.py RUN_DIR [RUN_DIR ...]

Needs torch and numpy, and the data set at /usr/share/datasets/fashion-mnist
(`apt-get install dataset-fashion-mnist`). Assumes biolearn's conv3 layout (conv k5 -> relu ->
avgpool 2 -> conv k3 -> relu -> avgpool 2 -> conv k3 -> relu -> avgpool 2 -> linear), the ReLU
activation and inputs standardised by the training set's mean and std.
"""
import gzip
import json
import struct
import sys

import numpy as np
import torch
import torch.nn.functional as F


def load(path):
    b = open(path, "rb").read()
    n = struct.unpack("<Q", b[:8])[0]
    head = json.loads(b[8 : 8 + n])
    data = b[8 + n :]
    return {
        k: torch.tensor(np.frombuffer(data[v["data_offsets"][0] : v["data_offsets"][1]], dtype=np.float32).reshape(v["shape"]).copy())
        for k, v in head.items()
        if k != "__metadata__"
    }


def idx(path):
    b = gzip.open(path).read()
    if b[3] == 3:
        return np.frombuffer(b[16:], dtype=np.uint8).reshape(-1, 28, 28)
    return np.frombuffer(b[8:], dtype=np.uint8)


D = "/usr/share/datasets/fashion-mnist/"
xtr = idx(D + "train-images-idx3-ubyte.gz").astype(np.float32) / 255
xte = idx(D + "t10k-images-idx3-ubyte.gz").astype(np.float32) / 255
yte = torch.tensor(idx(D + "t10k-labels-idx1-ubyte.gz").astype(np.int64))
x = torch.tensor((xte - xtr.mean()) / xtr.std()).unsqueeze(1)


def forward(m):
    h = F.avg_pool2d(F.relu(F.conv2d(x, m["layers.0.weight"], m["layers.0.bias"])), 2)
    a0 = (h > 0).float().mean().item()
    h = F.avg_pool2d(F.relu(F.conv2d(h, m["layers.3.weight"], m["layers.3.bias"])), 2)
    a1 = (h > 0).float().mean().item()
    h = F.avg_pool2d(F.relu(F.conv2d(h, m["layers.6.weight"], m["layers.6.bias"])), 2).flatten(1)
    a2 = (h > 0).float().mean().item()
    alive = (h > 0).any(0).float().mean().item()
    o = h @ m["layers.9.weight"].T + m["layers.9.bias"]
    return (o.argmax(1) == yte).float().mean().item(), a0, a1, a2, alive, o.std(0).mean().item()


for run in sys.argv[1:]:
    m = load(run.rstrip("/") + "/model.safetensors")
    weights = [k for k in m if k.startswith("layers") and k.endswith("weight")]
    pool = torch.cat([m[k].abs().flatten() for k in weights])
    for s in (0.0, 0.5, 0.9, 0.95):
        mm = dict(m)
        if s > 0:
            thr = pool.kthvalue(int(s * len(pool))).values
            for k in weights:
                mm[k] = m[k] * (m[k].abs() > thr)
        print(
            "%s sparsity %.2f: accuracy %.4f, units positive %.3f / %.3f / %.3f, last-block units alive %.3f, output std across images %.4f"
            % ((run, s) + forward(mm))
        )
