#!/usr/bin/env python3
"""PyTorch oracle for the lungseg engine: builds the U-Net of docs/model-format.md in PyTorch
from a safetensors file and writes golden outputs to lungseg-sys/tests/fixtures/.

Weights come from a formula that lungseg-sys/tests/common/mod.rs re-implements, so the 5.6 M
parameter default model need not be committed:
    h    = FNV-1a-64(tensor name)
    x_i  = splitmix64(h + i * 0x9E3779B97F4A7C15)        (u64, wrapping)
    u_i  = (x_i >> 40) / 2^24   (f32, in [0, 1));   s_i = 2 u_i - 1   (f32)
    conv weight  s * f32(sqrt(6 / (cin * 27)))   conv bias 0.05 s
    up weight    s * f32(sqrt(3 / cin))          up bias   0.05 s
    head weight  s * f32(sqrt(3 / C0))           head bias 0.1 s - 0.4
    bn weight 0.8 + 0.4 u, bn bias 0.1 s, running_mean 0.1 s, running_var 0.5 + u
all in f32 arithmetic (then rounded to F16 for the F16 fixture). Inputs are committed as raw
little-endian f32; the forward pass runs in float64 so the oracle adds no error of its own.
MC goldens apply the Philox masks (implemented here in numpy, independently of the Rust code)
with the dropout-layer numbering and counter layout of docs/model-format.md.

Usage: pip install torch numpy safetensors; python3 scripts/make_model_fixtures.py
"""
import json
import math
import os
import sys

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from safetensors.numpy import save_file

OUT = os.path.join(os.path.dirname(__file__), "..", "lungseg-sys", "tests", "fixtures")
M64 = (1 << 64) - 1


def fnv1a(name: str) -> int:
    h = 0xCBF29CE484222325
    for b in name.encode():
        h = ((h ^ b) * 0x100000001B3) & M64
    return h


def uniform(name: str, n: int) -> np.ndarray:
    with np.errstate(over="ignore"):
        i = np.arange(n, dtype=np.uint64)
        z = np.uint64(fnv1a(name)) + i * np.uint64(0x9E3779B97F4A7C15)
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        z = z ^ (z >> np.uint64(31))
    return (z >> np.uint64(40)).astype(np.float32) / np.float32(16777216.0)


def synth_tensor(name: str, shape) -> np.ndarray:
    n = int(np.prod(shape))
    u = uniform(name, n)
    s = np.float32(2.0) * u - np.float32(1.0)
    f = lambda x: np.float32(x)
    if name.endswith("num_batches_tracked"):
        return np.array(7, dtype=np.int64)
    if ".bn" in name:
        kind = name.rsplit(".", 1)[1]
        v = {"weight": f(0.8) + f(0.4) * u, "bias": f(0.1) * s, "running_mean": f(0.1) * s,
             "running_var": f(0.5) + u}[kind]
    elif name == "head.weight":
        v = s * f(math.sqrt(3.0 / shape[1]))
    elif name == "head.bias":
        v = f(0.1) * s - f(0.4)
    elif ".up." in name:
        v = s * f(math.sqrt(3.0 / shape[0])) if name.endswith("weight") else f(0.05) * s
    else:  # conv
        v = s * f(math.sqrt(6.0 / (shape[1] * 27))) if name.endswith("weight") else f(0.05) * s
    return v.reshape(shape).astype(np.float32)


def tensor_shapes(ch):
    shapes = {}
    def block(p, cin, cout):
        for i, ci in ((1, cin), (2, cout)):
            shapes[f"{p}.conv{i}.weight"] = (cout, ci, 3, 3, 3)
            shapes[f"{p}.conv{i}.bias"] = (cout,)
            for k in ("weight", "bias", "running_mean", "running_var"):
                shapes[f"{p}.bn{i}.{k}"] = (cout,)
    for l, c in enumerate(ch):
        block(f"enc.{l}", 1 if l == 0 else ch[l - 1], c)
    for l in range(len(ch) - 1):
        shapes[f"dec.{l}.up.weight"] = (ch[l + 1], ch[l], 2, 2, 2)
        shapes[f"dec.{l}.up.bias"] = (ch[l],)
        block(f"dec.{l}", 2 * ch[l], ch[l])
    shapes["head.weight"] = (1, ch[0], 1, 1, 1)
    shapes["head.bias"] = (1,)
    return shapes


# ---- Philox4x32-10 and dropout masks (docs/model-format.md) ----
def philox_word0(c0, c1, c2, c3, seed):
    M = np.uint64(0xFFFFFFFF)
    k0, k1 = np.uint64(seed & 0xFFFFFFFF), np.uint64(seed >> 32)
    c = [np.asarray(x, dtype=np.uint64) for x in (c0, c1, c2, c3)]
    c = np.broadcast_arrays(*c)
    c0, c1, c2, c3 = [x.copy() for x in c]
    for r in range(10):
        if r > 0:
            k0 = (k0 + np.uint64(0x9E3779B9)) & M
            k1 = (k1 + np.uint64(0xBB67AE85)) & M
        p0 = c0 * np.uint64(0xD2511F53)
        p1 = c2 * np.uint64(0xCD9E8D57)
        c0, c1, c2, c3 = (p1 >> np.uint64(32)) ^ c1 ^ k0, p1 & M, (p0 >> np.uint64(32)) ^ c3 ^ k1, p0 & M
    return c0


def keep_threshold(p):
    return math.floor(float(np.float32(p)) * 2.0**32 + 0.5)


def dropout_mask(seed, sample, layer, shape, p, kind):
    """Keep mask (float64) for one sample's tensor of shape [C, D, H, W]."""
    C, D, H, W = shape
    if kind == "channel":
        idx = np.arange(C, dtype=np.uint64)
        m = philox_word0(sample, layer, idx, 0, seed) >= keep_threshold(p)
        return np.broadcast_to(m[:, None, None, None], shape).astype(np.float64)
    idx = np.arange(C * D * H * W, dtype=np.uint64)
    m = philox_word0(sample, layer, idx & np.uint64(0xFFFFFFFF), idx >> np.uint64(32), seed) >= keep_threshold(p)
    return m.reshape(shape).astype(np.float64)


# ---- the network ----
class Block(nn.Module):
    def __init__(self, cin, cout):
        super().__init__()
        self.conv1, self.bn1 = nn.Conv3d(cin, cout, 3, padding=1), nn.BatchNorm3d(cout)
        self.conv2, self.bn2 = nn.Conv3d(cout, cout, 3, padding=1), nn.BatchNorm3d(cout)


class Dec(Block):
    def __init__(self, cin, cout):
        super().__init__(2 * cout, cout)
        self.up = nn.ConvTranspose3d(cin, cout, 2, stride=2)


class UNet3D(nn.Module):
    def __init__(self, ch, eps):
        super().__init__()
        self.ch = ch
        self.enc = nn.ModuleList(Block(1 if l == 0 else ch[l - 1], c) for l, c in enumerate(ch))
        self.dec = nn.ModuleList(Dec(ch[l + 1], ch[l]) for l in range(len(ch) - 1))
        self.head = nn.Conv3d(ch[0], 1, 1)
        for m in self.modules():
            if isinstance(m, nn.BatchNorm3d):
                m.eps = eps

    def forward(self, x, drop=lambda layer, t: t):
        L = len(self.ch)
        skips = []
        for l, b in enumerate(self.enc):
            if l > 0:
                x = F.max_pool3d(x, 2)
            x = drop(2 * l, F.relu(b.bn1(b.conv1(x))))
            x = drop(2 * l + 1, F.relu(b.bn2(b.conv2(x))))
            skips.append(x)
        for l in reversed(range(L - 1)):
            b = self.dec[l]
            x = torch.cat([skips[l], b.up(x)], 1)
            k = 2 * L + 2 * (L - 2 - l)
            x = drop(k, F.relu(b.bn1(b.conv1(x))))
            x = drop(k + 1, F.relu(b.bn2(b.conv2(x))))
        return torch.sigmoid(self.head(x))


def layer_level(levels, k):
    """The U-Net level of dropout layer k (docs/model-format.md)."""
    return k // 2 if k < 2 * levels else levels - 2 - (k - 2 * levels) // 2


def entropy_bits(p):
    p = np.clip(p, 0.0, 1.0)
    xlx = lambda x: np.where(x > 0, x * np.log2(np.where(x > 0, x, 1.0)), 0.0)
    return -(xlx(p) + xlx(1.0 - p))


def make(name, cfg, dtype, input_hu, seed=None, n_samples=0, commit_model=False):
    ch = cfg["channels"]
    tensors = {k: synth_tensor(k, s) for k, s in tensor_shapes(ch).items()}
    if dtype == "F16":
        tensors = {k: v.astype(np.float16) for k, v in tensors.items()}
    net = UNet3D(ch, cfg.get("bn_eps", 1e-5)).double().eval()
    missing, unexpected = net.load_state_dict({k: torch.from_numpy(v.astype(np.float64)) for k, v in tensors.items()}, strict=False)
    assert not unexpected and all(m.endswith("num_batches_tracked") for m in missing), (missing, unexpected)
    lo, hi = cfg.get("hu_window", [-1000.0, 400.0])
    x = np.clip((input_hu - np.float32(lo)) / (np.float32(hi) - np.float32(lo)), 0, 1).astype(np.float64)
    xt = torch.from_numpy(x)[None, None]
    side = {"config": cfg, "dtype": dtype, "weights": "formula in scripts/make_model_fixtures.py",
            "input": f"{name}.input.f32", "prob": f"{name}.prob.f32", "torch": torch.__version__}
    with torch.no_grad():
        prob = net(xt)[0, 0].numpy()
        prob.astype("<f4").tofile(os.path.join(OUT, f"{name}.input.f32".replace("input", "prob")))
        if n_samples:
            p, kind = cfg["dropout"]["p"], cfg["dropout"]["kind"]
            levels = cfg["dropout"].get("levels", range(len(ch)))
            def drop_for(s):
                def d(layer, t):
                    if layer_level(len(ch), layer) not in levels:
                        return t
                    m = dropout_mask(seed, s, layer, tuple(t.shape[1:]), p, kind)
                    return t * torch.from_numpy(m)[None] / (1.0 - float(np.float32(p)))
                return d
            ps = np.stack([net(xt, drop_for(s))[0, 0].numpy() for s in range(n_samples)])
            mean = ps.mean(0)
            maps = {"mc_mean": mean, "mc_variance": ps.var(0), "mc_entropy": entropy_bits(mean),
                    "mc_mutual_info": entropy_bits(mean) - entropy_bits(ps).mean(0)}
            for k, v in maps.items():
                v.astype("<f4").tofile(os.path.join(OUT, f"{name}.{k}.f32"))
            side.update(seed=seed, n_samples=n_samples, maps={k: f"{name}.{k}.f32" for k in maps},
                        any_foreground_voxels=int((ps >= 0.5).any(0).sum()),
                        foreground_voxels=int((mean >= 0.5).sum()))
    input_hu.astype("<f4").tofile(os.path.join(OUT, f"{name}.input.f32"))
    if commit_model:
        tensors["enc.0.bn1.num_batches_tracked"] = np.array(7, dtype=np.int64)
        version = "2" if "levels" in cfg.get("dropout", {}) else "1"
        meta = {"format": "lungseg-unet3d", "format_version": version, "config": json.dumps(cfg),
                "review": json.dumps({"score": "mean_mutual_info", "threshold": 0.05}),
                "provenance": json.dumps({"data": "synthetic", "note": "test fixture"})}
        save_file(tensors, os.path.join(OUT, f"{name}.safetensors"), metadata=meta)
        side["model"] = f"{name}.safetensors"
    with open(os.path.join(OUT, f"{name}.json"), "w") as f:
        json.dump(side, f, indent=1)
    print(name, "prob range", float(prob.min()), float(prob.max()), "fg", int((prob >= 0.5).sum()))


def nodule(d, h, w, radius, seed):
    """Synthetic CT patch: lung background, a solid sphere, noise (f32 HU, z-major)."""
    z, y, x = np.meshgrid(*(np.arange(n, dtype=np.float32) for n in (d, h, w)), indexing="ij")
    r2 = (z - d / 2 + 0.5) ** 2 + (y - h / 2 - 1.5) ** 2 + (x - w / 2 + 0.5) ** 2
    u = uniform(f"input{seed}", d * h * w).reshape(d, h, w)
    hu = np.float32(-850.0) + np.float32(900.0) * (r2 < radius**2) + np.float32(120.0) * (u - np.float32(0.5))
    return hu.astype(np.float32)


def main():
    os.makedirs(OUT, exist_ok=True)
    torch.set_num_threads(2)
    small = {"channels": [4, 8, 16], "patch_size": [16, 16, 16], "dropout": {"p": 0.2, "kind": "channel"}}
    make("small", small, "F32", nodule(16, 16, 16, 4.5, 1), seed=0x1234_5678_9ABC_DEF0, n_samples=4)
    elem = {"channels": [8, 16], "patch_size": [16, 12, 8], "dropout": {"p": 0.3, "kind": "element"},
            "hu_window": [-1200.0, 600.0], "bn_eps": 1e-3}
    make("small_f16_element", elem, "F16", nodule(8, 12, 16, 3.0, 2), seed=42, n_samples=3, commit_model=True)
    # Dropout in some levels only (format_version 2): channel in the deeper two, element in
    # a non-contiguous pair.
    levels = {"channels": [4, 8, 16], "patch_size": [16, 16, 16],
              "dropout": {"p": 0.3, "kind": "channel", "levels": [1, 2]}}
    make("small_levels", levels, "F32", nodule(16, 16, 16, 4.5, 4), seed=0xC0FFEE, n_samples=4)
    elem_levels = {"channels": [4, 8, 16], "patch_size": [16, 12, 8],
                   "dropout": {"p": 0.25, "kind": "element", "levels": [0, 2]}}
    make("small_element_levels", elem_levels, "F32", nodule(8, 12, 16, 3.0, 5), seed=7, n_samples=3)
    if "--no-default" not in sys.argv:
        make("default", {"channels": [16, 32, 64, 128, 256], "patch_size": [64, 64, 64]}, "F32",
             nodule(64, 64, 64, 9.0, 3))


if __name__ == "__main__":
    main()
