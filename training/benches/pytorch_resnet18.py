# SPDX-License-Identifier: MPL-2.0
# The training step of the `train` bench in PyTorch eager: the crate's ResNet-18 multi-task
# network (src/model/backbone.rs: 7x7/2 stem with batch norm and ReLU, 3x3/2 max pool, basic
# blocks 2-2-2-2 with 1x1 projection shortcuts, global average pool, linear embedding; heads
# valence/arousal with tanh, 12 AU logits, 8 expression logits), the masked multi-task loss of
# src/loss.rs (1 - CCC + MSE, BCE, CE) and AdamW with decoupled weight decay on matrices and
# kernels only, gradient norm clipped. Prints images/s.
#
# usage: python pytorch_resnet18.py SIZE BATCH STEPS THREADS WIDTH EMBEDDING
import sys
import time

import torch
from torch import nn
import torch.nn.functional as F

size, batch, steps, threads, width, embedding = (int(v) for v in sys.argv[1:7])
torch.set_num_threads(threads)
torch.manual_seed(0)


def conv_bn(cin, cout, k, stride, pad, relu):
    layers = [nn.Conv2d(cin, cout, k, stride, pad, bias=False), nn.BatchNorm2d(cout)]
    if relu:
        layers.append(nn.ReLU(inplace=True))
    return nn.Sequential(*layers)


class Basic(nn.Module):
    def __init__(self, cin, cout, stride):
        super().__init__()
        self.c1 = conv_bn(cin, cout, 3, stride, 1, True)
        self.c2 = conv_bn(cout, cout, 3, 1, 1, False)
        self.shortcut = (
            conv_bn(cin, cout, 1, stride, 0, False) if stride != 1 or cin != cout else None
        )

    def forward(self, x):
        s = x if self.shortcut is None else self.shortcut(x)
        return F.relu(self.c2(self.c1(x)) + s)


class Net(nn.Module):
    def __init__(self, w, emb):
        super().__init__()
        layers = [conv_bn(3, w, 7, 2, 3, True), nn.MaxPool2d(3, 2, 1)]
        cin = w
        for stage in range(4):
            cout = w << stage
            for b in range(2):
                layers.append(Basic(cin, cout, 2 if b == 0 and stage > 0 else 1))
                cin = cout
        self.face = nn.Sequential(*layers)
        self.embedding = nn.Linear(cin, emb)
        self.va = nn.Linear(emb, 2)
        self.au = nn.Linear(emb, 12)
        self.expr = nn.Linear(emb, 8)

    def forward(self, x):
        e = self.embedding(torch.flatten(F.adaptive_avg_pool2d(self.face(x), 1), 1))
        return torch.tanh(self.va(e)), self.au(e), self.expr(e)


def ccc_loss(pred, gold, mask):
    n = mask.sum(0)
    nc = n.clamp_min(1.0)
    mp = (pred * mask).sum(0) / nc
    mg = (gold * mask).sum(0) / nc
    dp = (pred - mp) * mask
    dg = (gold - mg) * mask
    vp = (dp * dp).sum(0) / nc
    vg = (dg * dg).sum(0) / nc
    cov = (dp * dg).sum(0) / nc
    ccc = 2 * cov / (vp + vg + (mp - mg) ** 2 + 1e-8)
    valid = (n >= 2).float()
    return ((1 - ccc) * valid).sum() / valid.sum().clamp_min(1.0)


def loss_fn(out, va_t, au_t, ex_t):
    va, au_logits, ex_logits = out
    va_mask = (va_t >= -1.5).float()
    err = (va - va_t) * va_mask
    mse = (err * err).sum() / va_mask.sum().clamp_min(1.0)
    au_mask = (au_t >= 0).float()
    bce = F.binary_cross_entropy_with_logits(au_logits, au_t.clamp(0, 1), reduction="none")
    au = (bce * au_mask).sum() / au_mask.sum().clamp_min(1.0)
    ex_mask = (ex_t >= 0).float()
    nll = -F.log_softmax(ex_logits, 1).gather(1, ex_t.clamp_min(0).unsqueeze(1)).squeeze(1)
    ex = (nll * ex_mask).sum() / ex_mask.sum().clamp_min(1.0)
    return ccc_loss(va, va_t, va_mask) + mse + au + ex


net = Net(width, embedding).train()
decay = [p for p in net.parameters() if p.dim() > 1]
no_decay = [p for p in net.parameters() if p.dim() <= 1]
opt = torch.optim.AdamW(
    [{"params": decay, "weight_decay": 0.05}, {"params": no_decay, "weight_decay": 0.0}],
    lr=1e-4,
    betas=(0.9, 0.999),
    eps=1e-8,
)
face = torch.randn(batch, 3, size, size)
va_t = torch.rand(batch, 2) * 2 - 1
ex_t = torch.randint(0, 8, (batch,))
au_t = torch.randint(0, 2, (batch, 12)).float()


def step():
    loss = loss_fn(net(face), va_t, au_t, ex_t)
    opt.zero_grad()
    loss.backward()
    torch.nn.utils.clip_grad_norm_(net.parameters(), 5.0)
    opt.step()


step()  # warm-up, as the Rust side
t = time.perf_counter()
for _ in range(steps):
    step()
print(batch * steps / (time.perf_counter() - t))
