#!/usr/bin/env python3
"""PyTorch reference for predictive coding's speed (issue 18, item 4): supervised PC on an MLP,
the algorithm of biolearn's `pc` (value nodes at every weight layer's output, T inference steps
of SGD with momentum on the hidden nodes, then the local weight gradients and an SGD-momentum
step), written the fastest way we know in PyTorch: by hand, no autograd graph, one GEMM per
product. Its defaults are PcSettings' own (Gaussian output energy, the output clamped to the
one-hot label, state rate 0.1, state momentum 0.1); `--energy ce --beta 0.1 --gamma 0.3
--state-momentum 0.5` is biolearn's `pc` preset (beta x cross-entropy at a categorical output
node, the weight update divided by beta). Per inference step: the predictions of the nodes above
the first (L - 1 GEMMs; none at the first step, whose nodes are the feed-forward pass's own
predictions) and the backprojected errors (L - 1 GEMMs); after the last step the predictions
once more and the weight gradients (L GEMMs).

Training samples/s of one full Fashion-MNIST epoch (60,000 samples), best of --epochs, after 20
warm-up steps, data in memory, as bench/pytorch_bench.py measures.
Usage: python3 bench/pc_torch.py --hidden 128,128,128 --steps 5 --threads 1
Its biolearn counterpart (`bench` applies the pc preset unless told otherwise, so the settings
are spelled out): biolearn bench --data fashion-mnist --rules pc --archs mlp:128,128,128
  --threads 1 --set pc_steps=5 --set pc_tol=0 --set pc_energy=gaussian --set pc_beta=1
  --set pc_gamma=0.1 --set pc_momentum=0.1
and of the preset (`python3 bench/pc_torch.py --energy ce --beta 0.1 --gamma 0.3
--state-momentum 0.5`): the same without the last four settings.
"""
import argparse
import gzip
import json
import math
import os
import time

import numpy as np


def parse_args():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--hidden", default="128,128,128")
    p.add_argument("--steps", type=int, default=5)
    p.add_argument("--gamma", type=float, default=0.1)
    p.add_argument("--state-momentum", type=float, default=0.1)
    p.add_argument("--energy", choices=["gaussian", "ce"], default="gaussian",
                   help="output energy: gaussian (output clamped to the one-hot label, times beta) or ce "
                        "(beta x cross-entropy: a categorical output node, as biolearn's pc preset)")
    p.add_argument("--beta", type=float, default=1.0, help="output nudge; the weight update is divided by it")
    p.add_argument("--lr", type=float, default=0.01)
    p.add_argument("--momentum", type=float, default=0.9)
    p.add_argument("--batch", type=int, default=128)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--epochs", type=int, default=2)
    p.add_argument("--data-dir", default="/usr/share/datasets/fashion-mnist")
    return p.parse_args()


args = parse_args()
import torch  # noqa: E402

torch.set_num_threads(args.threads)
try:
    torch.set_num_interop_threads(1)
except RuntimeError:
    pass


def read_idx(path):
    with gzip.open(path, "rb") as f:
        data = f.read()
    ndim = data[3]
    dims = [int.from_bytes(data[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim)]
    arr = np.frombuffer(data, dtype=np.uint8, count=int(np.prod(dims)), offset=4 + 4 * ndim)
    return arr.reshape(dims[0], -1) if ndim > 1 else arr


def main():
    torch.manual_seed(0)
    x = read_idx(os.path.join(args.data_dir, "train-images-idx3-ubyte.gz")).astype(np.float32) / 255.0
    y = read_idx(os.path.join(args.data_dir, "train-labels-idx1-ubyte.gz")).astype(np.int64)
    x = torch.from_numpy((x - 0.2860) / 0.3530)
    y = torch.from_numpy(y)
    n = len(y)
    sizes = [784] + [int(h) for h in args.hidden.split(",")] + [10]
    L = len(sizes) - 1
    ws = [(torch.rand(b, a) * 2 - 1) / math.sqrt(a) for a, b in zip(sizes[:-1], sizes[1:])]
    bs = [torch.zeros(b) for b in sizes[1:]]
    vw = [torch.zeros_like(w) for w in ws]
    vb = [torch.zeros_like(b) for b in bs]
    eye = torch.eye(10)

    def step(xb, yb):
        m = len(yb)
        # Feed-forward initialisation: nodes x_k = pre-activations; mu_0 is fixed (input fixed).
        xs = []
        h = xb
        for k in range(L):
            a = torch.addmm(bs[k], h, ws[k].t())
            xs.append(a)
            h = torch.relu(a)
        mu0 = xs[0].clone()
        target = eye[yb]
        vel = [torch.zeros_like(v) for v in xs[:-1]]

        def top_error(mu):
            if args.energy == "ce":
                return args.beta * (target - torch.softmax(mu, dim=1))
            return args.beta * (target - mu)

        def errors():
            es = [xs[0] - mu0]
            for k in range(1, L):
                mu = torch.addmm(bs[k], torch.relu(xs[k - 1]), ws[k].t())
                es.append(top_error(mu) if k == L - 1 else xs[k] - mu)
            return es

        for t in range(args.steps):
            # At the feed-forward nodes every hidden error is zero (the predictions are the
            # nodes): the first step needs the output's error alone, as biolearn computes it.
            es = [torch.zeros_like(v) for v in xs[:-1]] + [top_error(xs[-1])] if t == 0 else errors()
            for k in range(L - 1):
                # dF/dx_k = e_k - relu'(x_k) * W_{k+1}^T e_{k+1}
                g = es[k] - es[k + 1].mm(ws[k + 1]) * (xs[k] > 0)
                vel[k].mul_(args.state_momentum).add_(g)
                xs[k].sub_(args.gamma * vel[k])
        es = errors()
        for k in range(L):
            inp = xb if k == 0 else torch.relu(xs[k - 1])
            gw = -es[k].t().mm(inp) / (m * args.beta)
            gb = -es[k].sum(0) / (m * args.beta)
            vw[k].mul_(args.momentum).add_(gw)
            vb[k].mul_(args.momentum).add_(gb)
            ws[k].sub_(args.lr * vw[k])
            bs[k].sub_(args.lr * vb[k])

    bsz = args.batch
    perm = torch.randperm(n)
    for i in range(20):
        idx = perm[i * bsz:(i + 1) * bsz]
        step(x[idx], y[idx])
    times = []
    for _ in range(args.epochs):
        perm = torch.randperm(n)
        xs_, ys_ = x[perm].contiguous(), y[perm].contiguous()
        t0 = time.perf_counter()
        for s in range(0, n, bsz):
            step(xs_[s:s + bsz], ys_[s:s + bsz])
        times.append(time.perf_counter() - t0)
    print(json.dumps({"hidden": args.hidden, "steps": args.steps, "energy": args.energy, "beta": args.beta, "threads": args.threads, "batch": bsz,
                      "samples_per_s": round(n / min(times), 1), "epoch_seconds": [round(t, 3) for t in times],
                      "torch_version": torch.__version__}))


if __name__ == "__main__":
    main()
