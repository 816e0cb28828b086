#!/usr/bin/env python3
"""PyTorch + cuDNN fp16 side of the CUDA benchmark (scripts/gpu-check.sh run).

The same U-Net (docs/model-format.md) with the same weights (the safetensors file written by
`cuda_bench --write-model`, parsed here without the safetensors package), autocast fp16,
channels_last_3d, dropout active (MC), BN in eval mode, batch = MC samples; eager and CUDA-graph
variants; prints markdown table rows like cuda_bench.

usage: bench_cuda_torch.py MODEL.safetensors [--samples 20] [--iters 10]
"""
import argparse
import json
import struct
import time

import torch
import torch.nn as nn


def load_safetensors(path):
    with open(path, "rb") as f:
        raw = f.read()
    n = struct.unpack("<Q", raw[:8])[0]
    header = json.loads(raw[8:8 + n])
    meta = header.pop("__metadata__", {})
    base = 8 + n
    dt = {"F32": torch.float32, "F16": torch.float16, "BF16": torch.bfloat16}
    tensors = {}
    for name, info in header.items():
        a, b = info["data_offsets"]
        t = torch.frombuffer(bytearray(raw[base + a:base + b]), dtype=dt[info["dtype"]])
        tensors[name] = t.reshape(info["shape"]).float()
    return tensors, meta


class Block(nn.Module):
    def __init__(self, cin, cout, p, drop):
        super().__init__()
        self.conv1 = nn.Conv3d(cin, cout, 3, padding=1)
        self.bn1 = nn.BatchNorm3d(cout)
        self.conv2 = nn.Conv3d(cout, cout, 3, padding=1)
        self.bn2 = nn.BatchNorm3d(cout)
        self.d1, self.d2 = drop(p), drop(p)

    def forward(self, x):
        x = self.d1(torch.relu(self.bn1(self.conv1(x))))
        return self.d2(torch.relu(self.bn2(self.conv2(x))))


class Up(nn.Module):
    def __init__(self, cin, cout, p, drop):
        super().__init__()
        self.up = nn.ConvTranspose3d(cin, cout, 2, stride=2)
        blk = Block(2 * cout, cout, p, drop)
        self.conv1, self.bn1, self.conv2, self.bn2 = blk.conv1, blk.bn1, blk.conv2, blk.bn2
        self.d1, self.d2 = blk.d1, blk.d2


class UNet(nn.Module):
    def __init__(self, ch, p, kind):
        super().__init__()
        drop = nn.Dropout3d if kind == "channel" else nn.Dropout
        self.enc = nn.ModuleList(Block(1 if l == 0 else ch[l - 1], ch[l], p, drop) for l in range(len(ch)))
        self.dec = nn.ModuleList(Up(ch[l + 1], ch[l], p, drop) for l in range(len(ch) - 1))
        self.head = nn.Conv3d(ch[0], 1, 1)

    def forward(self, x):
        skips = []
        for l, b in enumerate(self.enc):
            if l > 0:
                x = nn.functional.max_pool3d(x, 2)
            x = b(x)
            skips.append(x)
        for l in reversed(range(len(self.dec))):
            d = self.dec[l]
            x = torch.cat([skips[l], d.up(x)], 1)
            x = d.d1(torch.relu(d.bn1(d.conv1(x))))
            x = d.d2(torch.relu(d.bn2(d.conv2(x))))
        return torch.sigmoid(self.head(x))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("model")
    ap.add_argument("--samples", type=int, default=20)
    ap.add_argument("--iters", type=int, default=10)
    a = ap.parse_args()
    tensors, meta = load_safetensors(a.model)
    cfg = json.loads(meta.get("config", "{}"))
    ch = cfg.get("channels", [16, 32, 64, 128, 256])
    dp = cfg.get("dropout", {"p": 0.2, "kind": "channel"})
    size = cfg.get("patch_size", [64, 64, 64])
    net = UNet(ch, dp["p"], dp["kind"])
    missing, unexpected = net.load_state_dict(tensors, strict=False)
    missing = [m for m in missing if not m.endswith("num_batches_tracked")]
    assert not unexpected and not missing, (missing, unexpected)
    dev = torch.device("cuda")
    torch.backends.cudnn.benchmark = True
    net = net.to(dev).to(memory_format=torch.channels_last_3d)
    net.eval()
    for m in net.modules():  # MC dropout: dropout on, BN eval
        if isinstance(m, (nn.Dropout, nn.Dropout3d)):
            m.train()
    name = torch.cuda.get_device_name(0)
    x1 = torch.rand(1, 1, size[2], size[1], size[0], device=dev).to(memory_format=torch.channels_last_3d)

    def timed(fn, iters):
        for _ in range(3):
            fn()
        torch.cuda.synchronize()
        ts = []
        for _ in range(iters):
            s, e = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            s.record()
            fn()
            e.record()
            torch.cuda.synchronize()
            ts.append(s.elapsed_time(e))
        ts.sort()
        return ts[len(ts) // 2]

    rows = []
    with torch.no_grad(), torch.autocast("cuda", dtype=torch.float16):
        xb = x1.expand(a.samples, -1, -1, -1, -1).contiguous(memory_format=torch.channels_last_3d)
        eager = timed(lambda: net(xb), a.iters)
        rows.append((f"MC-{a.samples} eager (batch {a.samples})", eager))
        net_det = net
        for m in net_det.modules():
            if isinstance(m, (nn.Dropout, nn.Dropout3d)):
                m.eval()
        rows.append(("deterministic pass eager", timed(lambda: net_det(x1), a.iters)))
        for m in net.modules():
            if isinstance(m, (nn.Dropout, nn.Dropout3d)):
                m.train()
        try:
            g = torch.cuda.CUDAGraph()
            s = torch.cuda.Stream()
            s.wait_stream(torch.cuda.current_stream())
            with torch.cuda.stream(s):
                for _ in range(3):
                    net(xb)
            torch.cuda.current_stream().wait_stream(s)
            with torch.cuda.graph(g):
                yb = net(xb)
            rows.append((f"MC-{a.samples} CUDA graph (batch {a.samples})", timed(g.replay, a.iters)))
        except Exception as e:  # graphs with dropout RNG may be refused on some versions
            rows.append((f"MC-{a.samples} CUDA graph: failed ({type(e).__name__}: {e})", float("nan")))
    torch.cuda.reset_peak_memory_stats()
    with torch.no_grad(), torch.autocast("cuda", dtype=torch.float16):
        net(xb)
    peak = torch.cuda.max_memory_allocated() / 2**20
    for what, ms in rows:
        print(f"| PyTorch {torch.__version__} + cuDNN fp16 | {name} | {what} | {ms:.2f} ms |")
    print(f"| PyTorch {torch.__version__} + cuDNN fp16 | {name} | peak memory MC-{a.samples} | {peak:.0f} MiB |")


if __name__ == "__main__":
    main()
