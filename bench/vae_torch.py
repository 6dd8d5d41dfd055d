"""PyTorch reference for biolearn's VAE (`--arch vae:512,20 --data fashion-mnist`): the same
network (784 -> 512 ReLU -> 2x20 (mean, log-variance) -> reparameterised sample of 20 -> 512 ReLU
-> 784 Bernoulli logits, PyTorch's default init, as biolearn's `torch` init), the same loss (the
decoder's Bernoulli cross-entropy against the pixel intensities in [0, 1] + the KL divergence from
N(0, I), as a mean per pixel like biolearn's), the same data (Fashion-MNIST, inputs standardised
by the training set's mean and std, targets the raw intensities), batch 128, Adam at the given
rate, BP.

Prints one JSON line per epoch: train images/s (the epoch's training steps only), the training
loss per pixel and the test negative ELBO per image (one latent sample per image).
Usage: python3 bench/vae_torch.py [--epochs 1] [--threads 1] [--lr 3.4e-3]
       [--dir /usr/share/datasets/fashion-mnist]
"""
import argparse, gzip, json, time
import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

p = argparse.ArgumentParser()
p.add_argument("--dir", default="/usr/share/datasets/fashion-mnist")
p.add_argument("--epochs", type=int, default=1)
p.add_argument("--threads", type=int, default=1)
p.add_argument("--lr", type=float, default=3.4e-3)
p.add_argument("--batch", type=int, default=128)
p.add_argument("--hidden", type=int, default=512)
p.add_argument("--z", type=int, default=20)
p.add_argument("--seed", type=int, default=0)
a = p.parse_args()
torch.set_num_threads(a.threads)
torch.manual_seed(a.seed)


def images(name):
    with gzip.open(f"{a.dir}/{name}", "rb") as f:
        raw = f.read()
    return torch.from_numpy(np.frombuffer(raw[16:], dtype=np.uint8).reshape(-1, 784).astype(np.float32) / 255.0)


train = images("train-images-idx3-ubyte.gz")
test = images("t10k-images-idx3-ubyte.gz")
mean, std = train.mean(), train.std(unbiased=False)


class Vae(nn.Module):
    def __init__(self, h, z):
        super().__init__()
        self.enc, self.head = nn.Linear(784, h), nn.Linear(h, 2 * z)
        self.dec, self.out = nn.Linear(z, h), nn.Linear(h, 784)
        self.z = z

    def forward(self, x):
        mu, lv = self.head(F.relu(self.enc(x))).split(self.z, dim=1)
        zs = mu + torch.exp(0.5 * lv) * torch.randn_like(mu)
        kl = 0.5 * (mu * mu + lv.exp() - 1 - lv).sum()
        return self.out(F.relu(self.dec(zs))), kl


net = Vae(a.hidden, a.z)
opt = torch.optim.Adam(net.parameters(), lr=a.lr)
for epoch in range(1, a.epochs + 1):
    order = torch.randperm(len(train))
    t0, total = time.perf_counter(), 0.0
    for i in range(0, len(train), a.batch):
        t = train[order[i : i + a.batch]]
        logits, kl = net((t - mean) / std)
        loss = (F.binary_cross_entropy_with_logits(logits, t, reduction="sum") + kl) / t.numel()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        total += loss.item() * len(t)
    secs = time.perf_counter() - t0
    with torch.no_grad():
        logits, kl = net((test - mean) / std)
        nelbo = (F.binary_cross_entropy_with_logits(logits, test, reduction="sum") + kl).item() / len(test)
    print(json.dumps({"epoch": epoch, "images_per_s": round(len(train) / secs), "threads": a.threads,
                      "train_loss": total / len(train), "test_neg_elbo": nelbo}), flush=True)
