#!/usr/bin/env python3
"""Reading a 512x512x300 int16 CT: lungseg::mhd::read vs SimpleITK.ReadImage, interleaved in one
run on the same files (.mhd/.raw and .mhd/.zraw written by SimpleITK itself), medians of N runs.

Usage: scripts/bench_mhd_read.py [runs=7] [workdir]
Needs: pip install SimpleITK numpy; builds the example with cargo --release.
"""
import os, platform, statistics, subprocess, sys, tempfile, time

import numpy as np
import SimpleITK as sitk

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def synthetic_ct(shape=(300, 512, 512), seed=0):
    """Air outside, a soft-tissue body with fat, two lungs with texture, a spine; CT noise."""
    rng = np.random.default_rng(seed)
    z, y, x = shape
    yy, xx = np.mgrid[0:y, 0:x].astype(np.float32)
    cy, cx = y / 2, x / 2
    body = ((xx - cx) / 220) ** 2 + ((yy - cy) / 160) ** 2 < 1
    fat = body & (((xx - cx) / 205) ** 2 + ((yy - cy) / 145) ** 2 >= 1)
    lung_l = ((xx - cx + 95) / 70) ** 2 + ((yy - cy + 10) / 105) ** 2 < 1
    lung_r = ((xx - cx - 95) / 70) ** 2 + ((yy - cy + 10) / 105) ** 2 < 1
    spine = ((xx - cx) / 25) ** 2 + ((yy - cy - 110) / 25) ** 2 < 1
    base = np.full((y, x), -1000, np.float32)
    base[body] = 40
    base[fat] = -100
    base[lung_l | lung_r] = -850
    base[spine] = 700
    vol = np.empty(shape, np.int16)
    for k in range(z):
        noise = rng.normal(0, 18, size=(y, x)).astype(np.float32)
        texture = np.where(lung_l | lung_r, rng.normal(0, 40, size=(y, x)), 0).astype(np.float32)
        sl = base + noise + texture
        sl[~body] = -1000 + np.abs(noise[~body]) * 0.2  # scanner air: nearly constant
        vol[k] = np.clip(sl, -1024, 3071).astype(np.int16)
    img = sitk.GetImageFromArray(vol)
    img.SetSpacing((0.7, 0.7, 1.25))
    img.SetOrigin((-179.2, -179.2, -350.0))
    return img


def main():
    runs = int(sys.argv[1]) if len(sys.argv) > 1 else 7
    work = sys.argv[2] if len(sys.argv) > 2 else tempfile.mkdtemp(prefix="lungseg-bench-")
    os.makedirs(work, exist_ok=True)
    raw, zraw = os.path.join(work, "ct.mhd"), os.path.join(work, "ctz.mhd")
    if not (os.path.exists(raw) and os.path.exists(zraw)):
        img = synthetic_ct()
        sitk.WriteImage(img, raw)
        sitk.WriteImage(img, zraw, True)
    zsize = os.path.getsize(os.path.join(work, "ctz.zraw"))
    rsize = os.path.getsize(os.path.join(work, "ct.raw"))

    subprocess.run(["cargo", "build", "--release", "-q", "-p", "lungseg-sys", "--example", "bench_read"],
                   cwd=ROOT, check=True)
    target = os.environ.get("CARGO_TARGET_DIR", os.path.join(ROOT, "target"))
    ours = subprocess.Popen([os.path.join(target, "release", "examples", "bench_read")],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)

    def ours_ms(path):
        ours.stdin.write(path + "\n")
        ours.stdin.flush()
        reply = ours.stdout.readline().strip()
        if reply.startswith("error"):
            raise SystemExit(reply)
        wall, cpu = reply.split()
        return float(wall), float(cpu)

    def sitk_ms(path):
        t, c = time.perf_counter(), time.process_time()
        im = sitk.ReadImage(path)
        ms, cpu = (time.perf_counter() - t) * 1e3, (time.process_time() - c) * 1e3
        del im
        return ms, cpu

    # Warm the page cache and both code paths once, then interleave.
    for p in (raw, zraw):
        sitk_ms(p), ours_ms(p)
    load_before = os.getloadavg()
    times = {k: [] for k in ("raw_ours", "raw_sitk", "zraw_ours", "zraw_sitk")}
    for _ in range(runs):
        for name, p in (("raw", raw), ("zraw", zraw)):
            times[f"{name}_sitk"].append(sitk_ms(p))
            times[f"{name}_ours"].append(ours_ms(p))
    load_after = os.getloadavg()
    ours.stdin.close()
    ours.wait()

    print(f"files: {raw} ({rsize / 1e6:.1f} MB raw), {zraw} ({zsize / 1e6:.1f} MB zraw, ratio {rsize / zsize:.2f})")
    print(f"SimpleITK {sitk.Version.VersionString()}, {platform.processor() or platform.machine()}, "
          f"{os.cpu_count()} CPUs, runs={runs}, load avg before {load_before[0]:.2f} after {load_after[0]:.2f}")
    print("| file | lungseg wall | SimpleITK wall | ratio | lungseg CPU | SimpleITK CPU | ratio |")
    print("|---|---|---|---|---|---|---|")
    for name in ("raw", "zraw"):
        med = lambda who, i: statistics.median(t[i] for t in times[f"{name}_{who}"])
        ow, sw, oc, sc = med("ours", 0), med("sitk", 0), med("ours", 1), med("sitk", 1)
        print(f"| .mhd/.{name} | {ow:.1f} ms | {sw:.1f} ms | {ow / sw:.2f} | {oc:.1f} ms | {sc:.1f} ms | {oc / sc:.2f} |")
    for k, v in times.items():
        print(f"  {k} wall/cpu ms: " + " ".join(f"{w:.1f}/{c:.1f}" for w, c in v))


if __name__ == "__main__":
    main()
