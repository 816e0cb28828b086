#!/usr/bin/env python3
"""What a model setting costs: MC-20 on one 64³ patch with the shipped default model at
several values of one config key — by default `config.test_time_flips` 1, 4 and 8
(BENCHMARKS.md, "Test-time flips"); `--vary min_component_mm3=0,256` times the final mask's
component filter against none.

The models are the shipped file with only that config key changed (header rewritten, tensor
bytes copied); each case is a separate `examples/bench_mc --json` process, the cases
interleaved round by round so machine noise hits all of them alike; medians are reported, the
process CPU time next to the wall time (the steadier figure on a shared machine).

Usage: python3 scripts/bench_flips.py [--vary test_time_flips=1,4,8] [--rounds 7] [--threads 2]
       [--runs 3] [--model models/lungseg-default.safetensors] [--out /tmp/lungseg-bench-flips]
       (build first: cargo build --release -p lungseg-sys --example bench_mc)
"""
import argparse
import json
import os
import statistics
import struct
import subprocess

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
# The format version a non-default value of each key needs (docs/model-format.md).
MIN_VERSION = {"test_time_flips": 4, "min_component_mm3": 5, "min_component_spare_radius_mm": 6}


def with_config(src: str, dst: str, key: str, value: float) -> None:
    """Copies a safetensors model with `config[key] = value`."""
    with open(src, "rb") as f:
        data = f.read()
    (n,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8 : 8 + n])
    meta = header["__metadata__"]
    config = json.loads(meta["config"])
    config[key] = value
    meta["config"] = json.dumps(config, separators=(",", ":"))
    meta["format_version"] = str(max(int(meta.get("format_version", "1")), MIN_VERSION.get(key, 1)))
    raw = json.dumps(header, separators=(",", ":")).encode()
    raw += b" " * (-len(raw) % 8)  # keep the tensor data 8-byte aligned
    with open(dst, "wb") as f:
        f.write(struct.pack("<Q", len(raw)) + raw + data[8 + n :])


def run_case(exe: str, model: str, patch: str, threads: int, runs: int) -> dict:
    out = subprocess.run(
        [exe, model, patch, "--threads", str(threads), "--runs", str(runs), "--json"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    return json.loads(out.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--vary", default="test_time_flips=1,4,8",
                    help="KEY=V1,V2,...: the config key and its values, the first the reference")
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--model", default=os.path.join(ROOT, "models/lungseg-default.safetensors"))
    ap.add_argument("--out", default="/tmp/lungseg-bench-flips")
    a = ap.parse_args()
    exe = os.path.join(ROOT, "target/release/examples/bench_mc")
    patch = os.path.join(ROOT, "lungseg-sys/tests/fixtures/default.input.f32")
    if not os.access(exe, os.X_OK):
        raise SystemExit(f"{exe} missing: cargo build --release -p lungseg-sys --example bench_mc")
    os.makedirs(a.out, exist_ok=True)
    key, values = a.vary.split("=", 1)
    cases = [float(v) if "." in v else int(v) for v in values.split(",")]
    models = {}
    for v in cases:
        models[v] = os.path.join(a.out, f"{key}-{v}.safetensors")
        with_config(a.model, models[v], key, v)
    rows = {v: [] for v in cases}
    for r in range(a.rounds):
        for v in cases:
            rows[v].append(run_case(exe, models[v], patch, a.threads, a.runs))
        print(f"round {r + 1}/{a.rounds}", flush=True)
    med = {v: {k: statistics.median(x[k] for x in rows[v])
               for k in ("mc_s", "mc_cpu_s", "peak_rss_mib")} for v in cases}
    base = med[cases[0]]
    print(f"kernel {rows[cases[0]][0]['kernel']}, threads {a.threads}, {a.rounds} rounds × {a.runs} runs")
    print(f"| {key} | MC-20 wall | MC-20 CPU time | ratio to {cases[0]} (CPU; wall) | peak RSS |")
    print("|---|---|---|---|---|")
    for v in cases:
        m = med[v]
        print(f"| {v} | {m['mc_s']:.3f} s | {m['mc_cpu_s']:.3f} s | "
              f"{m['mc_cpu_s'] / base['mc_cpu_s']:.2f}; {m['mc_s'] / base['mc_s']:.2f} | "
              f"{m['peak_rss_mib']:.1f} MiB |")
    with open(os.path.join(a.out, "results.json"), "w") as f:
        json.dump({"rounds": rows, "medians": med}, f, indent=1)


if __name__ == "__main__":
    main()
