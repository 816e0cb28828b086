#!/usr/bin/env python3
"""What test-time flips cost: MC-20 on one 64³ patch with the shipped default model at
`config.test_time_flips` 1, 4 and 8 (BENCHMARKS.md, "Test-time flips").

The three models are the shipped file with only that config key changed (header rewritten,
tensor bytes copied); each case is a separate `examples/bench_mc --json` process, the cases
interleaved round by round so machine noise hits all of them alike; medians are reported, the
process CPU time next to the wall time (the steadier figure on a shared machine).

Usage: python3 scripts/bench_flips.py [--rounds 7] [--threads 2] [--runs 3]
       [--model models/lungseg-default.safetensors] [--out /tmp/lungseg-bench-flips]
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
FLIPS = (1, 4, 8)


def with_flips(src: str, dst: str, flips: int) -> None:
    """Copies a safetensors model with `config.test_time_flips = flips`."""
    with open(src, "rb") as f:
        data = f.read()
    (n,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8 : 8 + n])
    meta = header["__metadata__"]
    config = json.loads(meta["config"])
    config["test_time_flips"] = flips
    meta["config"] = json.dumps(config, separators=(",", ":"))
    # A model naming test_time_flips declares format_version 4 or later.
    meta["format_version"] = str(max(int(meta.get("format_version", "1")), 4))
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
    models = {}
    for k in FLIPS:
        models[k] = os.path.join(a.out, f"flips{k}.safetensors")
        with_flips(a.model, models[k], k)
    rows = {k: [] for k in FLIPS}
    for r in range(a.rounds):
        for k in FLIPS:
            rows[k].append(run_case(exe, models[k], patch, a.threads, a.runs))
        print(f"round {r + 1}/{a.rounds}", flush=True)
    med = {k: {key: statistics.median(x[key] for x in rows[k])
               for key in ("mc_s", "mc_cpu_s", "peak_rss_mib")} for k in FLIPS}
    base = med[FLIPS[0]]
    print(f"kernel {rows[FLIPS[0]][0]['kernel']}, threads {a.threads}, {a.rounds} rounds × {a.runs} runs")
    print("| test-time flips | MC-20 wall | MC-20 CPU time | ratio to no flips (CPU; wall) | peak RSS |")
    print("|---|---|---|---|---|")
    for k in FLIPS:
        m = med[k]
        print(f"| {k} | {m['mc_s']:.3f} s | {m['mc_cpu_s']:.3f} s | "
              f"{m['mc_cpu_s'] / base['mc_cpu_s']:.2f}; {m['mc_s'] / base['mc_s']:.2f} | "
              f"{m['peak_rss_mib']:.1f} MiB |")
    with open(os.path.join(a.out, "results.json"), "w") as f:
        json.dump({"rounds": rows, "medians": med}, f, indent=1)


if __name__ == "__main__":
    main()
