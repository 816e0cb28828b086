#!/usr/bin/env python3
"""PyTorch peer of `lungseg-train train` on the same patch dataset: the same U-Net
(scripts/make_model_fixtures.py), the same loss (mean BCE on logits + 1 - soft Dice pooled over
the batch, smooth 1), Adam with linear warmup + cosine decay, per-step learning rate.

Two uses: a side-by-side training-throughput peer for BENCHMARKS.md (`--bench`), and a quick
place to check that a training recipe learns at all, independently of Burn.

Usage: python3 scripts/train_torch.py DATA [--epochs 12] [--batch 8] [--lr 3e-3]
       [--channels 8,16,32,64] [--threads 2] [--prior 0.01]
       python3 scripts/train_torch.py --bench STEPS --size 64 --batch 2 --channels 16,32,64,128,256
       (random data, like lungseg-train/examples/train_throughput.rs)
"""
import argparse
import json
import math
import os
import sys
import time

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(__file__))
from make_model_fixtures import Block, Dec  # noqa: E402


class UNet(nn.Module):
    def __init__(self, ch, p):
        super().__init__()
        self.enc = nn.ModuleList(Block(1 if l == 0 else ch[l - 1], c) for l, c in enumerate(ch))
        self.dec = nn.ModuleList(Dec(ch[l + 1], ch[l]) for l in range(len(ch) - 1))
        self.head = nn.Conv3d(ch[0], 1, 1)
        self.drop = nn.Dropout3d(p)

    def forward(self, x):
        skips = []
        for l, b in enumerate(self.enc):
            if l > 0:
                x = F.max_pool3d(x, 2)
            x = self.drop(F.relu(b.bn1(b.conv1(x))))
            x = self.drop(F.relu(b.bn2(b.conv2(x))))
            skips.append(x)
        skips.pop()
        for l in reversed(range(len(self.dec))):
            b = self.dec[l]
            x = torch.cat([skips[l], b.up(x)], 1)
            x = self.drop(F.relu(b.bn1(b.conv1(x))))
            x = self.drop(F.relu(b.bn2(b.conv2(x))))
        return self.head(x)


def load(data, split, lo=-1000.0, hi=400.0):
    recs = [json.loads(l) for l in open(os.path.join(data, "manifest.jsonl"))]
    recs = [r for r in recs if r["split"] == split]
    xs, ys = [], []
    for r in recs:
        shape = r["shape"]
        h = np.fromfile(os.path.join(data, r["hu"]), dtype="<f4").reshape(shape)
        m = np.fromfile(os.path.join(data, r["mask"]), dtype=np.uint8).reshape(shape)
        xs.append(np.clip((h - lo) / (hi - lo), 0, 1))
        ys.append(m.astype(np.float32))
    return torch.from_numpy(np.stack(xs)[:, None]), torch.from_numpy(np.stack(ys)[:, None])


def loss_fn(z, y):
    bce = F.binary_cross_entropy_with_logits(z, y)
    p = torch.sigmoid(z)
    dice = 1 - (2 * (p * y).sum() + 1) / (p.sum() + y.sum() + 1)
    return bce + dice, bce


def dice_per_patch(z, y):
    p = z > 0
    g = y > 0.5
    out = []
    for i in range(z.shape[0]):
        if g[i].any():
            out.append(2 * (p[i] & g[i]).sum().item() / (p[i].sum() + g[i].sum()).item())
    return out


def lr_at(step, total, warmup, lr, min_lr):
    if step < warmup:
        return lr * (step + 1) / warmup
    t = min(1.0, (step - warmup) / max(1, total - warmup))
    return min_lr + 0.5 * (lr - min_lr) * (1 + math.cos(math.pi * t))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("data", nargs="?")
    ap.add_argument("--epochs", type=int, default=12)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--lr", type=float, default=3e-3)
    ap.add_argument("--min-lr", type=float, default=1e-4)
    ap.add_argument("--warmup", type=int, default=1, help="warmup epochs")
    ap.add_argument("--channels", default="8,16,32,64")
    ap.add_argument("--dropout", type=float, default=0.1)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--prior", type=float, default=0.0,
                    help="initialise the head bias to logit(prior); 0 keeps PyTorch's init")
    ap.add_argument("--bench", type=int, default=0, help="time this many steps and exit")
    ap.add_argument("--size", type=int, default=64, help="patch edge of --bench")
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    torch.manual_seed(a.seed)
    ch = [int(c) for c in a.channels.split(",")]
    net = UNet(ch, a.dropout)
    if a.prior > 0:
        with torch.no_grad():
            net.head.bias.fill_(math.log(a.prior / (1 - a.prior)))
    opt = torch.optim.Adam(net.parameters(), lr=a.lr, eps=1e-8)
    if a.bench:
        shape = (a.batch, 1, a.size, a.size, a.size)
        x = torch.rand(shape)
        y = (torch.rand(shape) < 0.05).float()
        net.train()
        times, cpu = [], []
        for i in range(a.bench + 1):
            t0, c0 = time.perf_counter(), time.process_time()
            opt.zero_grad()
            loss, _ = loss_fn(net(x), y)
            loss.backward()
            opt.step()
            if i > 0:  # the first step is warm-up
                times.append(time.perf_counter() - t0)
                cpu.append(time.process_time() - c0)
        med = sorted(times)[len(times) // 2]
        cmed = sorted(cpu)[len(cpu) // 2]
        print(f"pytorch {torch.__version__}: channels {ch}, {a.size}^3, batch {a.batch}: median "
              f"{med:.3f} s/step = {a.batch / med:.3f} patches/s, cpu {cmed:.2f} s/step "
              f"({cmed / med:.2f} cores busy; threads: {a.threads})")
        return
    xtr, ytr = load(a.data, "train")
    xva, yva = load(a.data, "val")
    n = xtr.shape[0]
    per_epoch = math.ceil(n / a.batch)
    total, warm = a.epochs * per_epoch, a.warmup * per_epoch
    g = torch.Generator().manual_seed(a.seed)
    step = 0
    for ep in range(1, a.epochs + 1):
        t0 = time.perf_counter()
        net.train()
        perm = torch.randperm(n, generator=g)
        ls, bs = 0.0, 0.0
        for k in range(per_epoch):
            idx = perm[k * a.batch:(k + 1) * a.batch]
            for grp in opt.param_groups:
                grp["lr"] = lr_at(step, total, warm, a.lr, a.min_lr)
            opt.zero_grad()
            loss, bce = loss_fn(net(xtr[idx]), ytr[idx])
            loss.backward()
            opt.step()
            step += 1
            ls += loss.item() * len(idx)
            bs += bce.item() * len(idx)
        net.eval()
        with torch.no_grad():
            d, vl = [], 0.0
            for k in range(0, xva.shape[0], a.batch):
                z = net(xva[k:k + a.batch])
                vl += loss_fn(z, yva[k:k + a.batch])[0].item() * z.shape[0]
                d += dice_per_patch(z, yva[k:k + a.batch])
        print(f"epoch {ep}: loss {ls / n:.4f} bce {bs / n:.4f} val loss {vl / xva.shape[0]:.4f} "
              f"val dice {np.mean(d):.3f} ({time.perf_counter() - t0:.1f}s)", flush=True)


if __name__ == "__main__":
    main()
