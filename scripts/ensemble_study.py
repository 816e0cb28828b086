#!/usr/bin/env python3
"""Scores `examples/ensemble_study.rs`'s CSV: per variant (a20: model A with 20 samples; a10,
b10: each model with 10; ens: the mean of a10's and b10's means) and mask threshold, the mean
Dice over nodule patches, bad negatives and mean false-positive volume on negatives, as
`evaluate` counts them (metrics::patch_class, review_scores::DEFAULT_BAD_FP_MM3); then each
variant's paired mean-Dice difference from a20 at A's own threshold with a by-scan bootstrap
interval (2000 resamples, as compare-reports).

usage: scripts/ensemble_study.py e.csv [A's threshold, default 0.55]
"""
import csv
import math
import random
import sys
from collections import defaultdict

BAD_FP_MM3 = 4.0 / 3.0 * math.pi * 1.5**3  # a 3 mm ball: review_scores::DEFAULT_BAD_FP_MM3


def load(path):
    rows = defaultdict(dict)  # (variant, threshold) -> id -> row
    for r in csv.DictReader(open(path)):
        tp, fp, fn = int(r["tp"]), int(r["fp"]), int(r["fn"])
        gt = int(r["gt_voxels"])
        centred = r["centred_on_nodule"] == "true"
        cls = "negative" if gt == 0 else ("nodule" if centred else "partial")
        dice = 2 * tp / (2 * tp + fp + fn) if tp + fp + fn else 1.0
        rows[(r["variant"], float(r["threshold"]))][r["id"]] = {
            "scan": r["scan"], "class": cls, "dice": dice,
            "fp_mm3": fp * float(r["voxel_mm3"]),
        }
    return rows


def summary(patches):
    nod = [p["dice"] for p in patches.values() if p["class"] == "nodule"]
    neg = [p["fp_mm3"] for p in patches.values() if p["class"] == "negative"]
    return (sum(nod) / len(nod), sum(f > BAD_FP_MM3 for f in neg), sum(neg) / len(neg), len(nod))


def paired(cand, base, resamples=2000, seed=0):
    by_scan = defaultdict(list)
    for i, p in base.items():
        if p["class"] == "nodule":
            by_scan[p["scan"]].append(cand[i]["dice"] - p["dice"])
    scans = list(by_scan)
    est = sum(sum(v) for v in by_scan.values()) / sum(len(v) for v in by_scan.values())
    rng = random.Random(seed)
    stats = []
    for _ in range(resamples):
        pick = [by_scan[rng.choice(scans)] for _ in scans]
        stats.append(sum(sum(v) for v in pick) / sum(len(v) for v in pick))
    stats.sort()
    return est, stats[int(0.025 * resamples)], stats[int(0.975 * resamples) - 1], len(scans)


def main():
    rows = load(sys.argv[1])
    t0 = float(sys.argv[2]) if len(sys.argv) > 2 else 0.55
    print("variant  threshold  mean Dice  bad negatives  mean FP mm³")
    for (v, t), patches in sorted(rows.items()):
        d, bad, fp, n = summary(patches)
        print(f"{v:7s}  {t:9.2f}  {d:9.4f}  {bad:13d}  {fp:11.1f}")
    base = rows[("a20", t0)]
    print(f"\npaired mean-Dice difference from a20 at {t0} ({summary(base)[3]} nodule patches):")
    for (v, t), patches in sorted(rows.items()):
        if v == "a20" and t == t0:
            continue
        est, lo, hi, n = paired(patches, base)
        print(f"  {v:4s} at {t:.2f}: {est:+.4f} [{lo:+.4f}, {hi:+.4f}] ({n} scans)")


if __name__ == "__main__":
    main()
