#!/usr/bin/env python3
"""64³ 1 mm patch extraction from an int16 512×512×300 scan: lungseg (bench_patch example)
and SimpleITK's Resample (sitkLinear, the same output grid) side by side in one run.

Usage: scripts/bench_patch.py [runs]   (prints a markdown table; medians, ms)
"""
import math, os, statistics, subprocess, sys, time

import numpy as np
import SimpleITK as sitk

runs = int(sys.argv[1]) if len(sys.argv) > 1 else 200
root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
subprocess.run(["cargo", "build", "--release", "-q", "-p", "lungseg-sys", "--example", "bench_patch"],
               cwd=root, check=True)
target = os.environ.get("CARGO_TARGET_DIR", os.path.join(root, "target"))


def sitk_case(direction):
    n = 512 * 512 * 300
    data = ((np.arange(n, dtype=np.uint64) * 2654435761) % 2000).astype(np.int16) - 1000
    img = sitk.GetImageFromArray(data.reshape(300, 512, 512))
    img.SetSpacing((0.703125, 0.703125, 1.25))
    img.SetOrigin((180.0, 180.0, -350.0))
    img.SetDirection(direction)
    times = []
    for r in range(runs):
        f = r / runs
        fz = ((r * 7) % runs) / runs
        c = img.TransformContinuousIndexToPhysicalPoint((60.3 + 390 * f, 450.7 - 380 * f, 40.2 + 220 * fz))
        t = time.perf_counter()
        out = sitk.Resample(img, [64, 64, 64], sitk.Transform(), sitk.sitkLinear,
                            [c[i] - 32.0 for i in range(3)], [1.0, 1.0, 1.0], [1, 0, 0, 0, 1, 0, 0, 0, 1],
                            -1000.0, sitk.sitkFloat32)
        sitk.GetArrayViewFromImage(out)
        times.append((time.perf_counter() - t) * 1e3)
    return statistics.median(times)


rows = []
s, c = math.sin(math.radians(20)), math.cos(math.radians(20))
cases = [("flipped (LUNA16)", (-1, 0, 0, 0, -1, 0, 0, 0, 1)), ("rotated 20° about z", (c, -s, 0, s, c, 0, 0, 0, 1))]
cpu0 = time.process_time(); wall0 = time.perf_counter()
ours = subprocess.run([os.path.join(target, "release", "examples", "bench_patch")], capture_output=True, text=True,
                      check=True).stdout.splitlines()
peer = [sitk_case(d) for _, d in cases]
load = os.getloadavg()[0]
print(f"| case | lungseg median | SimpleITK Resample median | ratio |")
print(f"|---|---|---|---|")
for (name, _), line, p in zip(cases, ours, peer):
    ms = float(line.split("median ")[1].split(" ms")[0])
    print(f"| {name} | {ms:.2f} ms | {p:.2f} ms | {ms / p:.2f} |")
print(f"\n(load average {load:.1f}; {runs} patches per case)")
