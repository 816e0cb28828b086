#!/usr/bin/env python3
"""Benchmarks lungseg's CPU engine against ONNX Runtime and PyTorch on one 64³ patch.

Same weights (the fixture formula of make_model_fixtures.py, default 16-32-64-128-256 net) and
the same synthetic nodule patch for everyone; 2 threads; each case runs in its own process
(warm-up, then timed runs) so peak RSS is per case; the cases are interleaved round by round
so machine noise hits all of them alike; medians are reported.

Cases
  lungseg          examples/bench_mc (Rust API): deterministic and MC-20 (channel dropout)
  ort_det          ONNX Runtime, dropout removed (eval export)
  ort_mc_b20       ONNX Runtime, MC-20 as one batch of 20, live channel dropout
  ort_mc_20x1      ONNX Runtime, MC-20 as 20 runs of batch 1
  torch_mc_b20     PyTorch channels_last_3d, dropout modules in train mode (BN eval), batch 20
  torch_det        PyTorch channels_last_3d, eval, batch 1 (child case only: scripts/bench_kernels.py)

ORT traps (shared/notes/peer-benchmarks.md): its optimizer deletes Dropout nodes, so channel
dropout is exported as explicit RandomUniformLike + compare + Mul, the session also disables
EliminateDropout, and the script checks that two MC samples differ.

Usage: python3 scripts/bench_mc.py [--rounds 5] [--threads 2] [--out /tmp/lungseg-bench-engine]
       (build first: cargo build --release -p lungseg-sys --example bench_mc)
Per kernel path, with an FMA ceiling, PyTorch restricted to AVX2 and a 32-point batch study:
scripts/bench_kernels.py (it reuses this file's cases).
"""
import argparse
import json
import os
import subprocess
import sys
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, HERE)
P, N = 0.2, 20


def peak_rss_mib():
    """This process's own peak RSS (VmHWM). Not ru_maxrss: that keeps the high-water mark of
    the parent it was forked from (the parent that exported the ONNX files holds ~1 GiB)."""
    with open("/proc/self/status") as f:
        kb = next(l.split()[1] for l in f if l.startswith("VmHWM:"))
    return int(kb) / 1024.0


def build_torch(mc: bool):
    import torch
    import torch.nn.functional as F
    from make_model_fixtures import UNet3D, synth_tensor, tensor_shapes

    ch = [16, 32, 64, 128, 256]
    net = UNet3D(ch, 1e-5).eval()
    sd = {k: torch.from_numpy(synth_tensor(k, s)) for k, s in tensor_shapes(ch).items()}
    net.load_state_dict(sd, strict=False)

    class Wrapped(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.net = net

        def forward(self, x):
            if not mc:
                return self.net(x)

            def drop(_layer, t):  # channel dropout written out so ORT keeps it
                keep = (torch.rand_like(t[:, :, :1, :1, :1]) >= P).to(t.dtype)
                return t * keep * (1.0 / (1.0 - P))

            return self.net(x, drop)

    return Wrapped().eval()


def patch(out):
    """The patch write_inputs() stored (read back so ORT cases never import torch)."""
    return np.fromfile(os.path.join(out, "patch.f32"), dtype="<f4").reshape(64, 64, 64)


def norm(hu):
    return np.clip((hu + 1000.0) / 1400.0, 0, 1).astype(np.float32)[None, None]


def timed(fn, runs):
    fn()
    ts = []
    for _ in range(runs):
        t = time.perf_counter()
        fn()
        ts.append(time.perf_counter() - t)
    return float(np.median(ts))


def case_ort(kind, runs, out, threads=2):
    import onnxruntime as ort

    path = os.path.join(out, f"unet_{'det' if kind == 'ort_det' else 'mc'}.onnx")
    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1
    sess = ort.InferenceSession(path, so, providers=["CPUExecutionProvider"],
                                disabled_optimizers=["EliminateDropout"])
    x1 = norm(patch(out))
    if kind == "ort_det":
        return timed(lambda: sess.run(None, {"x": x1}), runs)
    if kind == "ort_mc_b20":
        xb = np.repeat(x1, N, axis=0)
        a = sess.run(None, {"x": xb})[0]
        assert np.abs(a[0] - a[1]).max() > 0, "ORT dropped the dropout"
        return timed(lambda: sess.run(None, {"x": xb}), runs)
    a, b = sess.run(None, {"x": x1})[0], sess.run(None, {"x": x1})[0]
    assert np.abs(a - b).max() > 0, "ORT dropped the dropout"
    return timed(lambda: [sess.run(None, {"x": x1}) for _ in range(N)], runs)


def case_torch(runs, out, threads=2, mc=True):
    import torch

    torch.set_num_threads(threads)
    m = build_torch(mc=mc).to(memory_format=torch.channels_last_3d)
    x = np.repeat(norm(patch(out)), N if mc else 1, axis=0)
    xb = torch.from_numpy(x).to(memory_format=torch.channels_last_3d)
    with torch.no_grad():
        return timed(lambda: m(xb), runs)


def run_case(case, runs, out, threads):
    """One child case: its median seconds, with what the peer ran on."""
    if case.startswith("torch_"):
        import torch

        s = case_torch(runs, out, threads, mc=case == "torch_mc_b20")
        return {"s": s, "torch": torch.__version__, "cpu_capability": torch.backends.cpu.get_cpu_capability()}
    import onnxruntime

    return {"s": case_ort(case, runs, out, threads), "onnxruntime": onnxruntime.__version__}


def export(out):
    import torch

    for mc in (False, True):
        path = os.path.join(out, f"unet_{'mc' if mc else 'det'}.onnx")
        if os.path.exists(path):
            continue
        m = build_torch(mc)
        x = torch.zeros(1, 1, 64, 64, 64)
        torch.onnx.export(m, (x,), path, input_names=["x"], output_names=["prob"], opset_version=17,
                          dynamic_axes={"x": {0: "n"}, "prob": {0: "n"}}, dynamo=False)


def write_inputs(out):
    from make_model_fixtures import synth_tensor, tensor_shapes
    from safetensors.numpy import save_file

    model = os.path.join(out, "model.safetensors")
    if not os.path.exists(model):
        t = {k: synth_tensor(k, s) for k, s in tensor_shapes([16, 32, 64, 128, 256]).items()}
        save_file(t, model, metadata={"format": "lungseg-unet3d", "format_version": "1"})
    from make_model_fixtures import nodule
    nodule(64, 64, 64, 9.0, 3).astype("<f4").tofile(os.path.join(out, "patch.f32"))
    return model


def run_child(case, runs, out, threads=2, env=None):
    r = subprocess.run([sys.executable, __file__, "--case", case, "--runs", str(runs), "--out", out,
                        "--threads", str(threads)],
                       capture_output=True, text=True, check=True, env=env)
    return json.loads(r.stdout.strip().splitlines()[-1])


def run_lungseg(runs, out, exe, threads=2, extra=(), env=None):
    r = subprocess.run([exe, os.path.join(out, "model.safetensors"), os.path.join(out, "patch.f32"),
                        "--threads", str(threads), "--runs", str(runs), "--samples", str(N), "--json",
                        *extra],
                       capture_output=True, text=True, check=True, env=env)
    return json.loads(r.stdout.strip().splitlines()[-1])


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--runs", type=int, default=1, help="timed runs per case per round")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", default="/tmp/lungseg-bench-engine")
    ap.add_argument("--case")
    ap.add_argument("--skip", default="", help="comma-separated cases to skip")
    ap.add_argument("--exe", default=os.path.join(os.environ.get("CARGO_TARGET_DIR", os.path.join(ROOT, "target")),
                                                  "release", "examples", "bench_mc"))
    a = ap.parse_args()
    os.makedirs(a.out, exist_ok=True)
    if a.case:
        r = run_case(a.case, a.runs, a.out, a.threads)
        print(json.dumps({"case": a.case, **r, "peak_rss_mib": peak_rss_mib()}))
        return
    write_inputs(a.out)
    export(a.out)
    skip = set(filter(None, a.skip.split(",")))
    cases = [c for c in ["ort_det", "ort_mc_b20", "ort_mc_20x1", "torch_mc_b20"] if c not in skip]
    res = {c: [] for c in cases + ["lungseg_det", "lungseg_mc"]}
    rss = {}
    load = []
    for rnd in range(a.rounds):
        load.append(os.getloadavg()[0])
        l = run_lungseg(a.runs, a.out, a.exe, a.threads)
        res["lungseg_det"].append(l["deterministic_s"])
        res["lungseg_mc"].append(l["mc_s"])
        rss["lungseg_det"] = rss["lungseg_mc"] = l["peak_rss_mib"]
        for c in cases:
            r = run_child(c, a.runs, a.out, a.threads)
            res[c].append(r["s"])
            rss[c] = max(rss.get(c, 0), r["peak_rss_mib"])
        print(f"round {rnd}: " + ", ".join(f"{k} {v[-1]:.3f}s" for k, v in res.items()), file=sys.stderr, flush=True)
    med = {k: float(np.median(v)) for k, v in res.items() if v}
    print(json.dumps({"median_s": med, "runs": res, "peak_rss_mib": rss, "load_avg_1min": load,
                      "cpu": open("/proc/cpuinfo").read().split("model name")[1].split("\n")[0].strip(" \t:")},
                     indent=1))


if __name__ == "__main__":
    main()
