#!/usr/bin/env python3
"""PyTorch side of the sweep-throughput benchmark (bench/sweep.sh; issue 18).

Runs the grid of plans/sweep-bench.toml: rules (bp, fa, dfa) x training fractions x seeds, an
MLP 784-H-...-10 (ReLU) on Fashion-MNIST, Adam, batch 128, E epochs each, the test accuracy on
the 10,000 test images after every epoch (what a `biolearn compare` run records), spread over
P worker processes of T threads each (`--processes P --threads T`), the fastest way this
script knows: data loaded once per worker, gradients written by hand (no autograd graph): one
GEMM per product, the three rules differing only in the matrix that carries the error down
(W for BP, a fixed random B of W's shape for FA, a fixed random B from the output for DFA).

Prints one JSON line per run and a summary line {"runs", "wall_seconds", "runs_per_hour", ...}.
Usage: python3 bench/pytorch_sweep.py --processes 2 --threads 1
"""
import argparse
import gzip
import json
import math
import multiprocessing as mp
import os
import sys
import time

import numpy as np


def parse_args():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--rules", default="bp,fa,dfa")
    p.add_argument("--fractions", default="0.1,0.2,0.5,1.0")
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--epochs", type=int, default=5)
    p.add_argument("--hidden", default="1024")
    p.add_argument("--batch", type=int, default=128)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--processes", type=int, default=2)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--data-dir", default="/usr/share/datasets/fashion-mnist")
    return p.parse_args()


def read_idx(path):
    with gzip.open(path, "rb") as f:
        data = f.read()
    ndim = data[3]
    dims = [int.from_bytes(data[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim)]
    arr = np.frombuffer(data, dtype=np.uint8, count=int(np.prod(dims)), offset=4 + 4 * ndim)
    return arr.reshape(dims[0], -1) if ndim > 1 else arr


def load(data_dir):
    out = []
    for split in ("train", "t10k"):
        x = read_idx(os.path.join(data_dir, f"{split}-images-idx3-ubyte.gz")).astype(np.float32) / 255.0
        y = read_idx(os.path.join(data_dir, f"{split}-labels-idx1-ubyte.gz")).astype(np.int64)
        out.append(((x - 0.2860) / 0.3530, y))
    return out


WORKER = {}


def init_worker(threads, data_dir):
    import torch
    torch.set_num_threads(threads)
    try:
        torch.set_num_interop_threads(1)
    except RuntimeError:
        pass
    (xtr, ytr), (xte, yte) = load(data_dir)
    WORKER.update(torch=torch, xtr=torch.from_numpy(xtr), ytr=torch.from_numpy(ytr),
                  xte=torch.from_numpy(xte), yte=torch.from_numpy(yte))


def stratified(y, fraction, gen, torch):
    if fraction >= 1.0:
        return torch.arange(len(y))
    idx = []
    for c in range(10):
        members = (y == c).nonzero().flatten()
        keep = max(1, round(fraction * len(members)))
        idx.append(members[torch.randperm(len(members), generator=gen)[:keep]])
    return torch.cat(idx)


def run(job):
    rule, fraction, seed, epochs, hidden, batch, lr = job
    torch = WORKER["torch"]
    t0 = time.perf_counter()
    gen = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    idx = stratified(WORKER["ytr"], fraction, gen, torch)
    x, y = WORKER["xtr"][idx].contiguous(), WORKER["ytr"][idx].contiguous()
    sizes = [784] + hidden + [10]
    ws, bs, fb = [], [], []
    for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
        bound = 1.0 / math.sqrt(a)  # PyTorch's nn.Linear default
        ws.append((torch.rand(b, a) * 2 - 1) * bound)
        bs.append((torch.rand(b) * 2 - 1) * bound)
        if i > 0 and rule == "fa":
            fb.append((torch.rand(b, a) * 2 - 1) * bound)
        elif i > 0 and rule == "dfa":
            # DFA: the output error straight to hidden layer i-1 (10 x width).
            fb.append((torch.rand(10, a) * 2 - 1) / math.sqrt(10))
        else:
            fb.append(None)
    params = ws + bs
    opt = torch.optim.Adam(params, lr=lr)
    n, L = len(y), len(ws)
    curve = []
    for _ in range(epochs):
        perm = torch.randperm(n, generator=gen)
        for s in range(0, n, batch):
            bi = perm[s:s + batch]
            xb, yb = x[bi], y[bi]
            hs, pre = [xb], []
            for i in range(L):
                a = torch.addmm(bs[i], hs[-1], ws[i].t())
                pre.append(a)
                hs.append(torch.relu(a) if i < L - 1 else a)
            e = torch.softmax(hs[-1], 1)
            e[torch.arange(len(yb)), yb] -= 1.0
            e /= len(yb)
            delta = e
            for i in reversed(range(L)):
                ws[i].grad = delta.t().mm(hs[i])
                bs[i].grad = delta.sum(0)
                if i == 0:
                    break
                if rule == "bp":
                    up = delta.mm(ws[i])
                elif rule == "fa":
                    up = delta.mm(fb[i])
                else:
                    up = e.mm(fb[i])
                delta = up * (pre[i - 1] > 0)
            opt.step()
        with torch.no_grad():
            h = WORKER["xte"]
            for i in range(L):
                h = torch.addmm(bs[i], h, ws[i].t())
                if i < L - 1:
                    h = torch.relu(h)
            curve.append(float((h.argmax(1) == WORKER["yte"]).float().mean()))
    return {"rule": rule, "fraction": fraction, "seed": seed, "epochs": epochs,
            "train_samples": n, "test_accuracy": curve[-1], "curve": curve,
            "seconds": round(time.perf_counter() - t0, 3)}


def main():
    args = parse_args()
    hidden = [int(h) for h in args.hidden.split(",")]
    jobs = [(r, float(f), s, args.epochs, hidden, args.batch, args.lr)
            for r in args.rules.split(",") for f in args.fractions.split(",") for s in range(args.seeds)]
    ctx = mp.get_context("spawn")
    t0 = time.perf_counter()
    with ctx.Pool(args.processes, initializer=init_worker, initargs=(args.threads, args.data_dir)) as pool:
        for r in pool.imap_unordered(run, jobs):
            print(json.dumps(r))
            sys.stdout.flush()
    wall = time.perf_counter() - t0
    import torch
    print(json.dumps({"summary": True, "runs": len(jobs), "processes": args.processes, "threads": args.threads,
                      "wall_seconds": round(wall, 2), "runs_per_hour": round(3600 * len(jobs) / wall, 1),
                      "torch_version": torch.__version__}))


if __name__ == "__main__":
    main()
