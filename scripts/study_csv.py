"""Shared scoring of the per-patch confusion CSVs the study examples write
(`examples/ensemble_study.rs`, `examples/zoom_study.rs`): one row per patch, variant and mask
threshold with `id, scan, centred_on_nodule, gt_voxels, voxel_mm3, variant, threshold, tp, fp,
fn` (and `diameter_mm` where the study writes it). Patches are classed and counted as
`evaluate` counts them (metrics::patch_class, review_scores::DEFAULT_BAD_FP_MM3); intervals are
by-scan bootstraps of 2000 resamples, as `compare-reports`.
"""
import csv
import math
import random
from collections import defaultdict

BAD_FP_MM3 = 4.0 / 3.0 * math.pi * 1.5**3  # a 3 mm ball: review_scores::DEFAULT_BAD_FP_MM3
# Lower edges of evaluate's Dice-by-size bins (metrics::accumulate::SIZE_BINS_MM), mm.
SIZE_CLASSES = [(0, 6), (6, 10), (10, 20), (20, 30), (30, math.inf)]


def load(path):
    """(variant, threshold) -> patch id -> {scan, class, dice, fp_mm3, diameter_mm}."""
    rows = defaultdict(dict)
    for r in csv.DictReader(open(path)):
        tp, fp, fn = int(r["tp"]), int(r["fp"]), int(r["fn"])
        gt = int(r["gt_voxels"])
        centred = r["centred_on_nodule"] == "true"
        cls = "negative" if gt == 0 else ("nodule" if centred else "partial")
        dice = 2 * tp / (2 * tp + fp + fn) if tp + fp + fn else 1.0
        rows[(r["variant"], float(r["threshold"]))][r["id"]] = {
            "scan": r["scan"], "class": cls, "dice": dice,
            "fp_mm3": fp * float(r["voxel_mm3"]),
            "diameter_mm": float(r.get("diameter_mm") or 0.0),
        }
    return rows


def summary(patches):
    """Mean Dice over nodule patches, bad negatives, mean FP volume on negatives, nodule count."""
    nod = [p["dice"] for p in patches.values() if p["class"] == "nodule"]
    neg = [p["fp_mm3"] for p in patches.values() if p["class"] == "negative"]
    return (sum(nod) / len(nod), sum(f > BAD_FP_MM3 for f in neg), sum(neg) / len(neg), len(nod))


def by_size(patches):
    """Mean Dice of the nodule patches in each of SIZE_CLASSES (None where a class is empty)."""
    out = []
    for lo, hi in SIZE_CLASSES:
        d = [p["dice"] for p in patches.values()
             if p["class"] == "nodule" and lo <= p["diameter_mm"] < hi]
        out.append(sum(d) / len(d) if d else None)
    return out


def paired(cand, base, resamples=2000, seed=0):
    """Paired mean-Dice difference over nodule patches with its by-scan 95 % interval."""
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


def print_paired(rows, base_variant, t0, width):
    """Every other (variant, threshold)'s paired difference from `base_variant` at `t0`."""
    base = rows[(base_variant, t0)]
    print(f"\npaired mean-Dice difference from {base_variant} at {t0} "
          f"({summary(base)[3]} nodule patches):")
    for (v, t), patches in sorted(rows.items()):
        if v == base_variant and t == t0:
            continue
        est, lo, hi, n = paired(patches, base)
        print(f"  {v:{width}s} at {t:.2f}: {est:+.4f} [{lo:+.4f}, {hi:+.4f}] ({n} scans)")
