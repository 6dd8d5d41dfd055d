#!/usr/bin/env python3
"""PyTorch CPU reference benchmark: training throughput on Fashion-MNIST.

What is measured
----------------
Samples per second of ONE FULL TRAINING EPOCH (all 60000 training samples,
ceil(60000 / batch) optimizer steps, the last batch partial if batch does not
divide 60000), for a given model, learning rule and thread count.

A timed step is the complete training step:
    forward -> cross-entropy loss -> backward -> SGD(momentum) update
    (optimizer.zero_grad(set_to_none=True); loss.backward(); optimizer.step())

Excluded from timing (done before the timer starts):
  * reading/parsing the IDX files (gzip + numpy), uint8 -> float32 conversion,
    normalisation ((x/255 - 0.2860) / 0.3530, the Fashion-MNIST mean/std that
    BioTorch uses), and, for lenet, the one-off 28x28 -> 32x32 resize;
  * the per-epoch shuffle: each epoch draws a permutation from a seeded
    torch.Generator and materialises the shuffled copy of the whole data
    tensor; the timed loop then only takes contiguous slices (views, no copy);
  * model construction and `--warmup-steps` untimed training steps (default
    20) run before the first timed epoch (allocator, oneDNN/BLAS warm-up).

Each epoch is timed separately with time.perf_counter().  Reported:
  samples_per_s       = 60000 / min(epoch_seconds)   (best epoch)
  samples_per_s_mean  = 60000 / mean(epoch_seconds)
  epoch_seconds       = list of the per-epoch wall times

Threads: torch.set_num_threads(T) (intra-op) and torch.set_num_interop_threads(1),
both called before any tensor work.

Models
------
  mlp   : 784-1024-10, ReLU (Linear, ReLU, Linear).
  conv3 : biolearn's `conv3` (Gupta et al. 2022's net): conv 1->100 5x5, ReLU,
          avgpool 2, conv 100->196 3x3, ReLU, avgpool 2, conv 196->400 3x3,
          ReLU, avgpool 2, linear 400->10; 28x28 inputs, no padding.
  softhebb-cnn28 : biolearn's `softhebb-cnn28` (SoftHebb's demo.py net a third
          as wide: BN, conv 1->32 5x5 reflect pad 2, triangle^0.7, maxpool 4/2/1;
          BN, conv 32->128 3x3 reflect, triangle^1.4, maxpool 4/2/1; BN, conv
          128->512 3x3 reflect, triangle, avgpool 2; dropout 0.5, linear 4608->10;
          no conv bias), BP only (the FA conv function pads with zeros).
  lenet : BioTorch's `LeNetMNIST` (biotorch/models/le_net.py):
          conv1 1->6 k5 s1 p0, ReLU, maxpool2 ; conv2 6->16 k5 s1 p0, ReLU,
          maxpool2 ; conv3 16->120 k5 s1 p0, ReLU ; flatten(120) ;
          fc1 120->84, ReLU ; fc2 84->10.
          It has no padding, so it needs a 32x32 input (BioTorch's dataset
          class applies transforms.Resize((target_size, target_size))).
          --lenet-input resize (default): images resized 28->32 once, bilinear
          (as BioTorch).  --lenet-input pad: raw 28x28 and conv1 padding=2
          (classic LeNet-5).  Both give identical layer shapes/FLOPs
          (conv1 out 6x28x28 ... conv3 out 120x1x1).

Rules
-----
  bp : standard autograd (nn.Linear / nn.Conv2d).
  fa : feedback alignment as in BioTorch's biotorch/autograd/fa/{linear,conv}.py:
       a custom autograd.Function per Linear/Conv2d whose backward computes
       grad_input with a fixed random matrix B (same shape as W, Xavier-uniform
       like BioTorch) instead of W; grad_W and grad_b are the usual ones.
       grad_input is skipped when the input needs no grad (first layer).
Parameters W: Xavier-uniform, bias 0 (BioTorch's init for init="xavier").
Optimiser: SGD lr 0.01, momentum 0.9, no weight decay. Loss: F.cross_entropy.
Note: with these settings lenet+fa diverges (mean train loss ~4e9 in the
verification run); the step cost stays the same, but compare learning
quality at a smaller --lr (BioTorch's FA LeNet configs use lr 0.001).

Output: one JSON line, e.g.
  {"model": "mlp", "rule": "bp", "threads": 1, "batch": 128,
   "samples_per_s": ..., "epoch_seconds": [...], "torch_version": "...", ...}

Usage: python3 bench/pytorch_bench.py --model mlp --rule bp --threads 1
"""

import argparse
import gzip
import json
import math
import os
import sys
import time

import numpy as np


def parse_args():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--model", choices=["mlp", "lenet", "conv3", "softhebb-cnn28"], default="mlp")
    p.add_argument("--rule", choices=["bp", "fa"], default="bp")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--batch", type=int, default=128)
    p.add_argument("--epochs", type=int, default=1)
    p.add_argument("--warmup-steps", type=int, default=20)
    p.add_argument("--lr", type=float, default=0.01)
    p.add_argument("--momentum", type=float, default=0.9)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--lenet-input", choices=["resize", "pad"], default="resize")
    p.add_argument("--data-dir", default="/usr/share/datasets/fashion-mnist")
    return p.parse_args()


args = parse_args()

import torch  # noqa: E402  (imported after arg parsing so --help is fast)
import torch.nn as nn  # noqa: E402
import torch.nn.functional as F  # noqa: E402

# Must happen before any parallel work.
torch.set_num_threads(args.threads)
try:
    torch.set_num_interop_threads(1)
except RuntimeError:
    pass

FMNIST_MEAN = 0.2860
FMNIST_STD = 0.3530


# ----------------------------------------------------------------------------- data
def read_idx(path):
    with gzip.open(path, "rb") as f:
        data = f.read()
    magic = int.from_bytes(data[0:4], "big")
    ndim = magic & 0xFF
    dtype_code = (magic >> 8) & 0xFF
    if dtype_code != 0x08:
        raise ValueError(f"{path}: unsupported IDX dtype 0x{dtype_code:02x}")
    dims = [int.from_bytes(data[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim)]
    off = 4 + 4 * ndim
    arr = np.frombuffer(data, dtype=np.uint8, count=int(np.prod(dims)), offset=off)
    return arr.reshape(dims)


def load_fashion_mnist(data_dir):
    x = read_idx(os.path.join(data_dir, "train-images-idx3-ubyte.gz"))
    y = read_idx(os.path.join(data_dir, "train-labels-idx1-ubyte.gz"))
    x = torch.from_numpy(x.astype(np.float32) / 255.0)
    x = (x - FMNIST_MEAN) / FMNIST_STD
    y = torch.from_numpy(y.astype(np.int64))
    return x.contiguous(), y.contiguous()  # x: (N, 28, 28) float32


# ------------------------------------------------------------ feedback alignment
class FALinearFn(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, weight, weight_b, bias):
        ctx.save_for_backward(x, weight_b)
        ctx.has_bias = bias is not None
        if bias is not None:
            return torch.addmm(bias, x, weight.t())
        return x.mm(weight.t())

    @staticmethod
    def backward(ctx, grad_out):
        x, weight_b = ctx.saved_tensors
        grad_x = grad_w = grad_b = None
        if ctx.needs_input_grad[0]:
            grad_x = grad_out.mm(weight_b)  # B instead of W
        if ctx.needs_input_grad[1]:
            grad_w = grad_out.t().mm(x)
        if ctx.has_bias and ctx.needs_input_grad[3]:
            grad_b = grad_out.sum(0)
        return grad_x, grad_w, None, grad_b


class FAConv2dFn(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, weight, weight_b, bias, stride, padding, dilation, groups):
        ctx.save_for_backward(x, weight_b)
        ctx.conf = (stride, padding, dilation, groups)
        ctx.has_bias = bias is not None
        return F.conv2d(x, weight, bias, stride, padding, dilation, groups)

    @staticmethod
    def backward(ctx, grad_out):
        x, weight_b = ctx.saved_tensors
        stride, padding, dilation, groups = ctx.conf
        need = ctx.needs_input_grad
        # One fused convolution_backward call with B as the weight: grad_input
        # then uses B, and grad_weight does not depend on the weight values.
        gx, gw, gb = torch.ops.aten.convolution_backward(
            grad_out.contiguous(), x, weight_b,
            [weight_b.shape[0]] if ctx.has_bias else None,
            list(stride), list(padding), list(dilation),
            False, [0, 0], groups,
            [bool(need[0]), bool(need[1]), bool(ctx.has_bias and need[3])],
        )
        return gx, gw, None, gb, None, None, None, None


class FALinear(nn.Linear):
    def __init__(self, in_f, out_f, bias=True):
        super().__init__(in_f, out_f, bias)
        self.register_buffer("weight_backward", torch.empty_like(self.weight))
        nn.init.xavier_uniform_(self.weight_backward)

    def forward(self, x):
        return FALinearFn.apply(x, self.weight, self.weight_backward, self.bias)


class FAConv2d(nn.Conv2d):
    def __init__(self, *a, **kw):
        super().__init__(*a, **kw)
        self.register_buffer("weight_backward", torch.empty_like(self.weight))
        nn.init.xavier_uniform_(self.weight_backward)

    def forward(self, x):
        return FAConv2dFn.apply(x, self.weight, self.weight_backward, self.bias,
                                self.stride, self.padding, self.dilation, self.groups)


# ---------------------------------------------------------------------- models
class Triangle(nn.Module):
    """SoftHebb's triangle: relu(x - mean over channels)^power (biolearn's `compete.rs`)."""

    def __init__(self, power):
        super().__init__()
        self.power = power

    def forward(self, x):
        z = F.relu(x - x.mean(dim=1, keepdim=True))
        return z if self.power == 1.0 else z.pow(self.power)


def make_model(model, rule, lenet_input):
    if model == "softhebb-cnn28" and rule != "bp":
        sys.exit("softhebb-cnn28 runs BP only here (FAConv2dFn pads with zeros, not reflections)")
    Lin = FALinear if rule == "fa" else nn.Linear
    Conv = FAConv2d if rule == "fa" else nn.Conv2d
    if model == "mlp":
        net = nn.Sequential(nn.Flatten(), Lin(784, 1024), nn.ReLU(), Lin(1024, 10))
    elif model == "conv3":
        # biolearn's conv3 (Miconi's Hebbian CNN, Gupta et al. 2022): 100/196/400 channels,
        # no padding, 2x2 average pooling, on 28x28 inputs.
        net = nn.Sequential(
            Conv(1, 100, 5), nn.ReLU(), nn.AvgPool2d(2),
            Conv(100, 196, 3), nn.ReLU(), nn.AvgPool2d(2),
            Conv(196, 400, 3), nn.ReLU(), nn.AvgPool2d(2),
            nn.Flatten(),
            Lin(400, 10),
        )
    elif model == "softhebb-cnn28":
        # biolearn's `softhebb-cnn28` trained end to end by BP (the holistic study's
        # bp-softhebb-cnn arm): SoftHebb's demo.py blocks a third as wide, for 28x28 inputs:
        # [BN (no affine) -> conv (reflect pad, no bias) -> triangle -> pool] x 3 -> dropout 0.5
        # -> linear; max pools 4/2 padded by 1, the last pool average 2/2 (512 x 3 x 3 features).
        net = nn.Sequential(
            nn.BatchNorm2d(1, affine=False), Conv(1, 32, 5, padding=2, padding_mode="reflect", bias=False),
            Triangle(0.7), nn.MaxPool2d(4, 2, 1),
            nn.BatchNorm2d(32, affine=False), Conv(32, 128, 3, padding=1, padding_mode="reflect", bias=False),
            Triangle(1.4), nn.MaxPool2d(4, 2, 1),
            nn.BatchNorm2d(128, affine=False), Conv(128, 512, 3, padding=1, padding_mode="reflect", bias=False),
            Triangle(1.0), nn.AvgPool2d(2, 2),
            nn.Dropout(0.5), nn.Flatten(),
            Lin(512 * 3 * 3, 10),
        )
    else:
        pad1 = 2 if lenet_input == "pad" else 0
        net = nn.Sequential(
            Conv(1, 6, 5, stride=1, padding=pad1), nn.ReLU(), nn.MaxPool2d(2),
            Conv(6, 16, 5, stride=1), nn.ReLU(), nn.MaxPool2d(2),
            Conv(16, 120, 5, stride=1), nn.ReLU(),
            nn.Flatten(),
            Lin(120, 84), nn.ReLU(),
            Lin(84, 10),
        )
    for m in net.modules():  # BioTorch init="xavier": W xavier-uniform, b = 0
        if isinstance(m, (nn.Linear, nn.Conv2d)):
            nn.init.xavier_uniform_(m.weight)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
    return net


def prepare_inputs(x, model, lenet_input):
    if model == "mlp":
        return x.reshape(x.shape[0], 784).contiguous()
    x = x.unsqueeze(1)  # (N, 1, 28, 28)
    if model == "lenet" and lenet_input == "resize":
        x = F.interpolate(x, size=(32, 32), mode="bilinear", align_corners=False)
    return x.contiguous()


# ------------------------------------------------------------------------- main
def main():
    torch.manual_seed(args.seed)
    x_all, y_all = load_fashion_mnist(args.data_dir)
    x_all = prepare_inputs(x_all, args.model, args.lenet_input)
    n = x_all.shape[0]
    bs = args.batch
    steps_per_epoch = math.ceil(n / bs)

    net = make_model(args.model, args.rule, args.lenet_input)
    net.train()
    opt = torch.optim.SGD(net.parameters(), lr=args.lr, momentum=args.momentum)
    gen = torch.Generator().manual_seed(args.seed)

    def step(xb, yb):
        opt.zero_grad(set_to_none=True)
        loss = F.cross_entropy(net(xb), yb)
        loss.backward()
        opt.step()
        return loss

    # Untimed warm-up on a seeded permutation.
    if args.warmup_steps > 0:
        perm = torch.randperm(n, generator=gen)
        for i in range(args.warmup_steps):
            idx = perm[(i * bs) % n: (i * bs) % n + bs]
            step(x_all[idx], y_all[idx])

    epoch_seconds, epoch_losses = [], []
    for _ in range(args.epochs):
        perm = torch.randperm(n, generator=gen)
        xs = x_all[perm].contiguous()  # shuffle materialised outside the timer
        ys = y_all[perm].contiguous()
        loss_sum = torch.zeros(())
        t0 = time.perf_counter()
        for s in range(steps_per_epoch):
            lo = s * bs
            hi = min(lo + bs, n)
            loss = step(xs[lo:hi], ys[lo:hi])
            loss_sum += loss.detach() * (hi - lo)
        t1 = time.perf_counter()
        epoch_seconds.append(t1 - t0)
        epoch_losses.append(float(loss_sum) / n)

    best = min(epoch_seconds)
    mean = sum(epoch_seconds) / len(epoch_seconds)
    out = {
        "model": args.model,
        "rule": args.rule,
        "threads": args.threads,
        "batch": bs,
        "samples_per_s": round(n / best, 1),
        "samples_per_s_mean": round(n / mean, 1),
        "epoch_seconds": [round(t, 4) for t in epoch_seconds],
        "torch_version": torch.__version__,
        "epochs": args.epochs,
        "warmup_steps": args.warmup_steps,
        "steps_per_epoch": steps_per_epoch,
        "samples_per_epoch": n,
        "mean_train_loss": [round(l, 4) for l in epoch_losses],
        "lenet_input": args.lenet_input if args.model == "lenet" else None,
        "interop_threads": torch.get_num_interop_threads(),
    }
    print(json.dumps(out))
    sys.stdout.flush()


if __name__ == "__main__":
    main()
