#!/usr/bin/env python3
"""AUROC of candidate patch-level review scores for patches with Dice < 0.5.

Input: CSVs from `cargo run --release -p lungseg-train --example patch_scores`.
"""
import csv
import sys


def auroc(scores, bad):
    pos = [s for s, b in zip(scores, bad) if b]
    neg = [s for s, b in zip(scores, bad) if not b]
    if not pos or not neg:
        return float("nan")
    wins = sum(1.0 if p > n else 0.5 if p == n else 0.0 for p in pos for n in neg)
    return wins / (len(pos) * len(neg))


for path in sys.argv[1:]:
    rows = list(csv.DictReader(open(path)))
    bad = [float(r["dice"]) < 0.5 for r in rows]
    col = lambda k: [float(r[k]) for r in rows]
    v50, v10, v02 = col("v50"), col("v10"), col("v02")
    candidates = {
        "mean MI, any-foreground region (current)": col("mi_region"),
        "mean entropy, same region": col("entropy_region"),
        "V(p>=0.1) / V(p>=0.5)": [b / a if a else (1e6 if b else 0.0) for a, b in zip(v50, v10)],
        "V(p>=0.1) - V(p>=0.5)": [b - a for a, b in zip(v50, v10)],
        "V(p>=0.02) - V(p>=0.5)": [b - a for a, b in zip(v50, v02)],
        "total entropy": col("sum_h"),
        "total entropy / (V(p>=0.5) + 10)": [h / (a + 10) for h, a in zip(col("sum_h"), v50)],
        "|sum p - V(p>=0.5)| / (V(p>=0.5) + 10)": [abs(p - a) / (a + 10) for p, a in zip(col("sum_p"), v50)],
        "1 - max p": [1 - x for x in col("max_p")],
        "mean entropy, 4-voxel centre ball": col("center_h"),
    }
    print(f"{path}: {sum(bad)} bad of {len(rows)} patches")
    for name, s in candidates.items():
        print(f"  {name:42s} AUROC {auroc(s, bad):.3f}")
