"""PyTorch reference for biolearn's language model (`--arch gpt:2,128,4 --data devil`): the same
network (token + learned position embedding, 2 pre-norm blocks of 4-head causal self-attention
with a fused qkv projection and a GELU(tanh) MLP of width 4d, final layer norm, a biased dense map
to the vocabulary), the same data (The Devil's Dictionary's bytes, first 90% train, windows of 65
bytes at stride 64), batch 32, AdamW (weight decay 0) at the given rate, BP.

Prints one JSON line per epoch: train tokens/s (the epoch's training steps only), the training
loss, the test cross-entropy per token and its perplexity.
Usage: python3 bench/lm_torch.py [--epochs 1] [--threads 1] [--lr 6.1e-4] [--file /usr/share/dictd/devil.dict.dz]
"""
import argparse, gzip, json, math, time
import torch
import torch.nn as nn
import torch.nn.functional as F

p = argparse.ArgumentParser()
p.add_argument("--file", default="/usr/share/dictd/devil.dict.dz")
p.add_argument("--epochs", type=int, default=1)
p.add_argument("--threads", type=int, default=1)
p.add_argument("--lr", type=float, default=6.1e-4)
p.add_argument("--batch", type=int, default=32)
p.add_argument("--ctx", type=int, default=64)
p.add_argument("--d", type=int, default=128)
p.add_argument("--layers", type=int, default=2)
p.add_argument("--heads", type=int, default=4)
p.add_argument("--seed", type=int, default=0)
a = p.parse_args()
torch.set_num_threads(a.threads)
torch.manual_seed(a.seed)

raw = open(a.file, "rb").read()
if raw[:2] == b"\x1f\x8b":
    raw = gzip.decompress(raw)
alphabet = sorted(set(raw))
idx = {b: i for i, b in enumerate(alphabet)}
ids = torch.tensor([idx[b] for b in raw], dtype=torch.long)
cut = int(len(raw) * 0.9)


def windows(t):
    n = (len(t) - 1) // a.ctx if len(t) > a.ctx else 0
    w = torch.stack([t[s * a.ctx: s * a.ctx + a.ctx + 1] for s in range(n)])
    return w[:, :-1].contiguous(), w[:, 1:].contiguous()


xtr, ytr = windows(ids[:cut])
xte, yte = windows(ids[cut:])
V = len(alphabet)


class Block(nn.Module):
    def __init__(s, d, h):
        super().__init__()
        s.ln1, s.ln2 = nn.LayerNorm(d), nn.LayerNorm(d)
        s.qkv, s.proj = nn.Linear(d, 3 * d), nn.Linear(d, d)
        s.fc1, s.fc2 = nn.Linear(d, 4 * d), nn.Linear(4 * d, d)
        s.h = h

    def forward(s, x):
        B, T, D = x.shape
        q, k, v = s.qkv(s.ln1(x)).split(D, dim=2)
        sh = lambda t: t.view(B, T, s.h, D // s.h).transpose(1, 2)
        o = F.scaled_dot_product_attention(sh(q), sh(k), sh(v), is_causal=True)
        x = x + s.proj(o.transpose(1, 2).reshape(B, T, D))
        return x + s.fc2(F.gelu(s.fc1(s.ln2(x)), approximate="tanh"))


class Gpt(nn.Module):
    def __init__(s):
        super().__init__()
        s.tok = nn.Embedding(V, a.d)
        s.pos = nn.Parameter(torch.zeros(a.ctx, a.d))
        s.blocks = nn.ModuleList([Block(a.d, a.heads) for _ in range(a.layers)])
        s.ln = nn.LayerNorm(a.d)
        s.head = nn.Linear(a.d, V)
        for n_, p_ in s.named_parameters():
            if p_.dim() == 2:
                std = 0.02 / math.sqrt(2 * a.layers) if n_.endswith(("proj.weight", "fc2.weight")) else 0.02
                nn.init.normal_(p_, 0.0, std)
            elif n_.endswith("bias"):
                nn.init.zeros_(p_)

    def forward(s, x):
        h = s.tok(x) + s.pos
        for b in s.blocks:
            h = b(h)
        return s.head(s.ln(h))


m = Gpt()
opt = torch.optim.AdamW(m.parameters(), lr=a.lr, weight_decay=0.0)
for e in range(a.epochs):
    perm = torch.randperm(len(xtr))
    m.train()
    t0, tot, seen = time.perf_counter(), 0.0, 0
    for i in range(0, len(xtr), a.batch):
        b = perm[i: i + a.batch]
        loss = F.cross_entropy(m(xtr[b]).view(-1, V), ytr[b].view(-1))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        tot += loss.item() * len(b)
        seen += len(b)
    dt = time.perf_counter() - t0
    m.eval()
    with torch.no_grad():
        te = F.cross_entropy(m(xte).view(-1, V), yte.view(-1)).item()
    print(json.dumps({"epoch": e + 1, "threads": a.threads, "train_tokens_per_s": round(seen * a.ctx / dt),
                      "train_loss": tot / seen, "test_loss": te, "test_ppl": math.exp(te), "seconds": dt}), flush=True)
