"""Speed reference for multilayer SoftHebb: SoftHebb's `demo.py` (the DeepSoftHebb model and its
SoftHebbConv2d update, written out here in plain PyTorch) on Fashion-MNIST 28x28 at biolearn's
`softhebb-cnn28` widths, one thread. Times one unsupervised pass over N training images at batch
10 (the reference's unsupervised loop: forward in training mode, every layer's update, the
weight-norm-dependent rates) and one evaluation-mode forward pass over the same images (what
biolearn's first epoch adds for the read-out, and what its feature cache computes once).
Usage: python3 bench/softhebb_deep_speed.py [N] [W1,W2,W3] [THREADS]
Compare: biolearn train --data fashion-mnist --rule softhebb-deep --epochs 1 --threads 1
(epoch 1's seconds in result.json, for all 60000 images)."""
import gzip, math, sys, time
import numpy as np
import torch
import torch.nn.functional as F

n = int(sys.argv[1]) if len(sys.argv) > 1 else 6000
widths = [int(w) for w in sys.argv[2].split(',')] if len(sys.argv) > 2 else [32, 128, 512]
torch.set_num_threads(int(sys.argv[3]) if len(sys.argv) > 3 else 1)
torch.manual_seed(0)
d = "/usr/share/datasets/fashion-mnist/"
x = torch.tensor(np.frombuffer(gzip.open(d + "train-images-idx3-ubyte.gz").read(), np.uint8, offset=16)
                 .reshape(-1, 1, 28, 28)[:n].astype(np.float32) / 255.0)

class Conv:
    def __init__(self, cin, cout, k, pad, t_inv, lr):
        self.w = 25 / math.sqrt(cin * k * k) * torch.randn(cout, cin, k, k)
        self.pad, self.t, self.lr = pad, t_inv, lr
    def __call__(self, x, learn):
        x = F.pad(x, (self.pad,) * 4, 'reflect')
        u = F.conv2d(x, self.w)
        if learn:
            b, c, h, w = u.shape
            fu = u.transpose(0, 1).reshape(c, -1)
            y = -torch.softmax(self.t * fu, dim=0)
            win = fu.argmax(0)
            idx = torch.arange(fu.shape[1])
            y[win, idx] = -y[win, idx]
            y = y.view(c, b, h, w).transpose(0, 1)
            yx = F.conv2d(x.transpose(0, 1), y.transpose(0, 1)).transpose(0, 1)
            yu = (y * u).sum((0, 2, 3))
            dw = yx - yu.view(-1, 1, 1, 1) * self.w
            dw /= dw.abs().amax() + 1e-30
            norm = self.w.view(c, -1).norm(dim=1)
            self.w += (self.lr * ((norm - 1).abs() + 1e-10) ** 0.5).view(-1, 1, 1, 1) * dw
        return u

def triangle(u, p):
    return F.relu(u - u.mean(1, keepdim=True)) ** p

w1, w2, w3 = widths
convs = [Conv(1, w1, 5, 2, 1.0, 0.08), Conv(w1, w2, 3, 1, 0.65, 0.005), Conv(w2, w3, 3, 1, 0.25, 0.01)]
bns = [torch.nn.BatchNorm2d(c, affine=False) for c in (1, w1, w2)]
def forward(x, learn):
    o = F.max_pool2d(triangle(convs[0](bns[0](x), learn), 0.7), 4, 2, 1)
    o = F.max_pool2d(triangle(convs[1](bns[1](o), learn), 1.4), 4, 2, 1)
    return F.avg_pool2d(triangle(convs[2](bns[2](o), learn), 1.0), 2, 2)

with torch.no_grad():
    t0 = time.time()
    for m in bns: m.train()
    for i in range(0, n, 10):
        forward(x[i:i + 10], True)
    t1 = time.time()
    for m in bns: m.eval()
    for i in range(0, n, 1000):
        f = forward(x[i:i + 1000], False)
    t2 = time.time()
print(f"widths {widths}, {n} images, {torch.get_num_threads()} thread(s): unsupervised pass {t1 - t0:.1f} s "
      f"({n / (t1 - t0):.0f} images/s), evaluation forward {t2 - t1:.1f} s ({n / (t2 - t1):.0f} images/s); "
      f"features {tuple(f.shape[1:])}")
