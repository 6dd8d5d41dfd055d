"""SoftHebb single layer (SoftHebb repo `hebblinear.py::HebbSoftLinear`, preset `2SoftMlpMNIST`)
re-implemented in PyTorch from the reference code, on Fashion-MNIST: a numerical reference for
biolearn's `softhebb` rule. Usage: python3 bench/softhebb_reference.py [HEBB_EPOCHS] [READOUT_EPOCHS] [SEED] [READOUT_LR] [T1,T2,..]
(the read-out sees softmax(t u); one read-out per temperature t, default 5 as in the reference)"""
import gzip, sys, time
import numpy as np
import torch

torch.set_num_threads(1)
hebb_epochs = int(sys.argv[1]) if len(sys.argv) > 1 else 1
ro_epochs = int(sys.argv[2]) if len(sys.argv) > 2 else 10
seed = int(sys.argv[3]) if len(sys.argv) > 3 else 0
ro_lr = float(sys.argv[4]) if len(sys.argv) > 4 else 1e-3
temps = [float(t) for t in sys.argv[5].split(',')] if len(sys.argv) > 5 else [5.0]
torch.manual_seed(seed)
d = "/usr/share/datasets/fashion-mnist/"
def images(f):
    return torch.tensor(np.frombuffer(gzip.open(d + f).read(), np.uint8, offset=16).reshape(-1, 784).astype(np.float32) / 255.0)
def labels(f):
    return torch.tensor(np.frombuffer(gzip.open(d + f).read(), np.uint8, offset=8).astype(np.int64))
xtr, ytr = images("train-images-idx3-ubyte.gz"), labels("train-labels-idx1-ubyte.gz")
xte, yte = images("t10k-images-idx3-ubyte.gz"), labels("t10k-labels-idx1-ubyte.gz")

K, t_inv, lr, power, r = 2000, 12.0, 0.045, 0.2, 35.0
a = (3 * r * r / 784) ** 0.5
W = torch.rand(K, 784) * a
def rates(W):
    return lr * ((W.norm(dim=1) - 1).abs() + 1e-10) ** power
eta = rates(W)
t0 = time.time()
with torch.no_grad():
    for e in range(hebb_epochs):
        perm = torch.randperm(60000)
        for i in range(0, 60000, 32):
            x = xtr[perm[i:i + 32]]
            u = x @ W.t()
            y = torch.softmax(t_inv * u, dim=1)
            dW = y.t() @ x - (y * u).sum(0)[:, None] * W
            dW /= dW.abs().amax() + 1e-30
            W += eta[:, None] * dW
            eta = rates(W)
        n = W.norm(dim=1)
        print(f"hebb epoch {e + 1}: norms min/median/max {n.min():.2f}/{n.median():.2f}/{n.max():.2f}, {time.time() - t0:.1f}s", flush=True)
for t in temps:
    torch.manual_seed(seed)
    with torch.no_grad():
        ftr, fte = torch.softmax(t * xtr @ W.t(), 1), torch.softmax(t * xte @ W.t(), 1)
    lin = torch.nn.Linear(K, 10)
    opt = torch.optim.Adam(lin.parameters(), ro_lr)
    for e in range(ro_epochs):
        perm = torch.randperm(60000)
        for i in range(0, 60000, 32):
            idx = perm[i:i + 32]
            loss = torch.nn.functional.cross_entropy(lin(ftr[idx]), ytr[idx])
            opt.zero_grad(); loss.backward(); opt.step()
        with torch.no_grad():
            acc = (lin(fte).argmax(1) == yte).float().mean().item()
        print(f"t = {t}: read-out epoch {e + 1}: test accuracy {acc:.4f}", flush=True)
