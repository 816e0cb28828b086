#!/usr/bin/env python3
"""PyTorch oracle for one Burn training step: loss, logits and every parameter gradient of the
U-Net of docs/model-format.md in training mode (BatchNorm on batch statistics), with the loss of
lungseg-train (mean BCE on logits + 1 - soft Dice pooled over the batch, smooth 1).

Three fixtures: no dropout (grad_step), and dropout p = 0.2 of each kind (grad_step_channel,
grad_step_element) with the keep masks stored as `dropmask.<layer>` (layers numbered in
execution order, docs/model-format.md; `[b, c]` for channel dropout, the activation's shape for
element dropout), which the Burn side replays through `model::DropoutMasks`.

Weights come from the formula of scripts/make_model_fixtures.py; the input is a batch of two
normalised patches (one with a sphere, one without) and their masks. Everything runs in float64;
the fixture stores f32 values. Written to lungseg-train/tests/fixtures/grad_step*.safetensors and
read by lungseg-train/tests/train/train_grad.rs.

Usage: pip install torch numpy safetensors; python3 scripts/make_grad_fixture.py
"""
import json
import os

import numpy as np
import torch
import torch.nn.functional as F
from safetensors.numpy import save_file

from make_model_fixtures import UNet3D, synth_tensor, tensor_shapes, uniform

OUT = os.path.join(os.path.dirname(__file__), "..", "lungseg-train", "tests", "fixtures")
CH = [3, 4, 6]
N = 8
EPS = 1e-5
SMOOTH = 1.0
P_DROP = 0.2


def batch():
    z, y, x = np.meshgrid(*(np.arange(N, dtype=np.float64) for _ in range(3)), indexing="ij")
    r2 = (z - 3.5) ** 2 + (y - 4.0) ** 2 + (x - 3.0) ** 2
    sphere = (r2 < 2.6**2).astype(np.float64)
    noise = uniform("grad-input", 2 * N**3).reshape(2, N, N, N).astype(np.float64)
    img = np.stack([0.1 + 0.6 * sphere, 0.1 + 0.0 * sphere]) + 0.2 * (noise - 0.5)
    mask = np.stack([sphere, 0.0 * sphere])
    # Stored as f32 and read back so both sides start from the same numbers.
    return img.astype(np.float32)[:, None], mask.astype(np.float32)[:, None]


class MaskedDropout:
    """Dropout of kind `kind` with deterministic keep masks, recorded per layer."""

    def __init__(self, kind):
        self.kind, self.masks = kind, {}

    def __call__(self, layer, t):
        b, c = t.shape[:2]
        shape = (b, c) if self.kind == "channel" else tuple(t.shape)
        n = int(np.prod(shape))
        keep = (uniform(f"grad-drop-{self.kind}-{layer}", n) >= P_DROP).reshape(shape)
        self.masks[layer] = keep.astype(np.float32)
        m = torch.from_numpy(keep.astype(np.float64))
        if self.kind == "channel":
            m = m[:, :, None, None, None]
        return t * m / (1.0 - P_DROP)


def fixture(kind):
    tensors = {k: synth_tensor(k, s) for k, s in tensor_shapes(CH).items()}
    net = UNet3D(CH, EPS).double().train()
    net.load_state_dict({k: torch.from_numpy(v.astype(np.float64)) for k, v in tensors.items()},
                        strict=False)
    img, mask = batch()
    x, y = torch.from_numpy(img.astype(np.float64)), torch.from_numpy(mask.astype(np.float64))
    # UNet3D.forward ends in a sigmoid; the loss needs the logits: catch the head's output.
    feats = {}
    net.head.register_forward_hook(lambda m, i, o: feats.__setitem__("logits", o))
    drop = MaskedDropout(kind) if kind else None
    if drop:
        net(x, drop)
    else:
        net(x)
    z = feats["logits"]
    bce = -(y * F.logsigmoid(z) + (1 - y) * F.logsigmoid(-z)).mean()
    p = torch.sigmoid(z)
    dice = 1 - (2 * (p * y).sum() + SMOOTH) / (p.sum() + y.sum() + SMOOTH)
    loss = bce + dice
    loss.backward()
    out = {"input": img, "mask": mask, "logits": z.detach().numpy().astype(np.float32),
           "loss": np.array([loss.item(), bce.item(), dice.item()], dtype=np.float32)}
    for name, prm in net.named_parameters():
        out[f"param.{name}"] = tensors[name]
        out[f"grad.{name}"] = prm.grad.numpy().astype(np.float32)
    for name in tensors:
        if "running" in name:
            out[f"param.{name}"] = tensors[name]
    meta = {"channels": json.dumps(CH), "bn_eps": str(EPS), "torch": torch.__version__,
            "made_by": "scripts/make_grad_fixture.py"}
    if drop:
        for layer, m in drop.masks.items():
            out[f"dropmask.{layer}"] = m
        meta.update(dropout_p=str(P_DROP), dropout_kind=kind)
    name = f"grad_step_{kind}" if kind else "grad_step"
    save_file(out, os.path.join(OUT, f"{name}.safetensors"), metadata=meta)
    print(name, "loss", loss.item(), "bce", bce.item(), "dice", dice.item(),
          "max |grad|", max(float(np.abs(v).max()) for k, v in out.items() if k.startswith("grad.")))


def main():
    os.makedirs(OUT, exist_ok=True)
    torch.set_num_threads(2)
    for kind in (None, "channel", "element"):
        fixture(kind)


if __name__ == "__main__":
    main()
