#!/usr/bin/env python3
"""One training step of FA, uSF and DFA on a tiny conv net, computed the way BioTorch computes it,
for the number-for-number test `rules::tests::biotorch_step` (issue 13).

BioTorch's mechanics, re-implemented here from its public code (not copied):
- FA / uSF conv and linear layers (`biotorch/autograd/fa/conv.py`, `.../fa/linear.py`): the forward
  pass is the ordinary one; the gradient w.r.t. the layer's input uses `weight_backward` in place
  of the weight (`conv2d_input(weight=weight_backward)`, `grad_output.mm(weight_backward)`); the
  weight and bias gradients are the ordinary ones.
- uSF (`biotorch/layers/fa_constructor/conv.py`, init "xavier"): weight_backward =
  sqrt(2 / (fan_in + fan_out)) * sign(W), recomputed at every forward.
- DFA (`biotorch/layers/dfa/conv.py`, `.../dfa/linear.py`): every DFA layer's gradient w.r.t. its
  input is replaced by the output error projected through its own fixed matrix: for a linear
  layer e @ B (B: K x D_in); for a conv layer conv2d_input(e broadcast over the layer's output
  positions, kernel B of K x C_in x k x k). Weight and bias gradients are the ordinary ones of
  the layer's own output gradient.
- Loss: cross-entropy, mean over the batch (e = (softmax - onehot) / N).

Weights, feedback and inputs come from closed formulas that the Rust test evaluates too, so no
random stream is shared. Writes tests/fixtures/biotorch-step.json. Needs: pip install torch.
Run: python3 bench/biotorch_step.py
"""
import json
import math
import os

import torch
import torch.nn.functional as F

torch.set_default_dtype(torch.float64)

N, K = 2, 3
LABELS = [0, 2]
# The net: 1x6x6 -> conv 3 k3 pad 1 -> relu -> maxpool 2 -> conv 4 k2 -> relu -> dense 3.
SHAPES = {
    "conv0.w": (3, 1, 3, 3), "conv0.b": (3,),
    "conv1.w": (4, 3, 2, 2), "conv1.b": (4,),
    "dense.w": (K, 16), "dense.b": (K,),
}
ORDER = ["conv0.w", "conv0.b", "conv1.w", "conv1.b", "dense.w", "dense.b"]


def formula(shape, phase, scale):
    """value j (row-major) = scale * sin(0.37 j + phase)."""
    n = math.prod(shape)
    return torch.tensor([scale * math.sin(0.37 * j + phase) for j in range(n)]).reshape(shape)


def params():
    p = {}
    for i, name in enumerate(ORDER):
        p[name] = formula(SHAPES[name], 0.5 * i, 0.4).requires_grad_(True)
    return p


def inputs():
    n = N * 36
    return torch.tensor([0.5 + 0.5 * math.sin(0.11 * j) for j in range(n)]).reshape(N, 1, 6, 6)


class FaConv(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, w, wb, b, padding):
        ctx.save_for_backward(x, w, wb)
        ctx.padding = padding
        return F.conv2d(x, w, b, padding=padding)

    @staticmethod
    def backward(ctx, g):
        x, w, wb = ctx.saved_tensors
        gx = torch.nn.grad.conv2d_input(x.shape, wb, g, padding=ctx.padding)
        gw = torch.nn.grad.conv2d_weight(x, w.shape, g, padding=ctx.padding)
        return gx, gw, None, g.sum((0, 2, 3)), None


class FaLinear(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, w, wb, b):
        ctx.save_for_backward(x, wb)
        return x @ w.t() + b

    @staticmethod
    def backward(ctx, g):
        x, wb = ctx.saved_tensors
        return g @ wb, g.t() @ x, None, g.sum(0)


def feedback_fa():
    """FA's B for the layers after the first (W's shape): 0.3 * cos(0.53 j + phase)."""
    out = {}
    for i, name in [(2, "conv1.w"), (4, "dense.w")]:
        shape = SHAPES[name]
        n = math.prod(shape)
        out[name] = torch.tensor([0.3 * math.cos(0.53 * j + 0.25 * i) for j in range(n)]).reshape(shape)
    return out


def fans(shape):
    rf = math.prod(shape[2:]) if len(shape) > 2 else 1
    return shape[1] * rf, shape[0] * rf


def step_fa(mode):
    p, x = params(), inputs()
    if mode == "fa":
        fb = feedback_fa()
    else:  # usf: sqrt(2 / (fan_in + fan_out)) * sign(W)
        fb = {}
        for name in ["conv1.w", "dense.w"]:
            fi, fo = fans(SHAPES[name])
            fb[name] = math.sqrt(2.0 / (fi + fo)) * torch.sign(p[name].detach())
    h = F.conv2d(x, p["conv0.w"], p["conv0.b"], padding=1)
    h = F.max_pool2d(F.relu(h), 2)
    h = F.relu(FaConv.apply(h, p["conv1.w"], fb["conv1.w"], p["conv1.b"], 0))
    out = FaLinear.apply(h.flatten(1), p["dense.w"], fb["dense.w"], p["dense.b"])
    F.cross_entropy(out, torch.tensor(LABELS)).backward()
    return [p[n].grad.flatten().tolist() for n in ORDER]


def feedback_dfa():
    """DFA's B (BioTorch's shapes): conv1's kernel K x 3 x 2 x 2, dense's K x 16."""
    out = {}
    for i, (name, shape) in enumerate([("conv1", (K, 3, 2, 2)), ("dense", (K, 16))]):
        n = math.prod(shape)
        out[name] = torch.tensor([0.3 * math.cos(0.71 * j + 0.4 * i) for j in range(n)]).reshape(shape)
    return out


def step_dfa():
    p, x = params(), inputs()
    fb = feedback_dfa()
    # Forward, keeping each DFA layer's input as a leaf so its input gradient can be replaced.
    a0 = F.conv2d(x, p["conv0.w"], p["conv0.b"], padding=1)
    h0 = F.max_pool2d(F.relu(a0), 2)
    h0d = h0.detach().requires_grad_(True)
    a1 = F.conv2d(h0d, p["conv1.w"], p["conv1.b"])
    h1 = F.relu(a1)
    h1d = h1.detach().requires_grad_(True)
    out = h1d.flatten(1) @ p["dense.w"].t() + p["dense.b"]
    loss = F.cross_entropy(out, torch.tensor(LABELS))
    e = torch.autograd.grad(loss, out, retain_graph=True)[0]  # (softmax - onehot) / N
    # The output layer: ordinary weight gradients.
    loss.backward()
    # conv1's output block: its input gradient replaced by e @ B_dense (BioTorch's dense hook on
    # the output layer), back through relu to conv1's weights.
    h1.backward((e @ fb["dense"]).reshape(h1.shape))
    # conv0's block: conv1's input gradient replaced by conv2d_input(e broadcast, B_conv1).
    g = e[:, :, None, None].expand(N, K, a1.shape[2], a1.shape[3])
    h0.backward(torch.nn.grad.conv2d_input(h0.shape, fb["conv1"], g))
    return [p[n].grad.flatten().tolist() for n in ORDER]


def main():
    fixture = {
        "about": "bench/biotorch_step.py: one step of BioTorch's FA, uSF and DFA (conv-shaped B) "
                 "on a tiny conv net, float64",
        "params": ORDER,
        "fa": step_fa("fa"),
        "usf": step_fa("usf"),
        "dfa": step_dfa(),
    }
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    path = os.path.join(root, "tests", "fixtures", "biotorch-step.json")
    with open(path, "w") as f:
        json.dump(fixture, f, indent=1)
    print("wrote", path)


if __name__ == "__main__":
    main()
