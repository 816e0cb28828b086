#!/usr/bin/env python3
"""Scores the point-evidence candidates of `examples/point_evidence_study.rs` as bad-patch
detectors, next to the review scores of the `evaluate` report of the same model, patches and
seed. A study on calibration patches (it informs a choice; never a test seed).

    python3 scripts/point_evidence_study.py REPORT_DIR POINTS.csv [--budget 0.15]

Candidates (no fitted weights: the only number each has is its referral threshold):
- the report's review scores (the engine's; `mask_mean_entropy` and the rest);
- `point_h_R`: the binary entropy (bits) of the largest MC mean within R mm of the requested
  point: about 0 where the model is sure of a nodule (p near 1) or of nothing (p near 0), high
  where it sees something below the mask threshold;
- `det_point_h_R`: the same from the dropout-off probability (the deterministic baseline);
- `max_rank(a, b)`: the larger of two scores' percentile ranks, so the flag fires on either.

For each: bad patches caught when the highest-scoring `budget` of patches is referred (ties at
the cut are not referred, as `threshold_for_refer_fraction` does), and the AUROC.
"""
import argparse
import csv
import json
import math
import os


def h2(p):
    p = min(max(p, 1e-7), 1 - 1e-7)
    return -(p * math.log2(p) + (1 - p) * math.log2(1 - p))


def ranks(values):
    """Percentile rank in [0, 1] of each value, ties averaged."""
    order = sorted(range(len(values)), key=lambda i: values[i])
    r = [0.0] * len(values)
    i = 0
    while i < len(order):
        j = i
        while j + 1 < len(order) and values[order[j + 1]] == values[order[i]]:
            j += 1
        for k in range(i, j + 1):
            r[order[k]] = (i + j) / 2 / max(len(values) - 1, 1)
        i = j + 1
    return r


def caught(scores, bad, budget):
    """Bad patches referred when at most `budget` of the patches are: strictly above the
    score of the patch at the cut."""
    n = len(scores)
    k = int(math.floor(budget * n))
    if k == 0:
        return 0, 0
    cut = sorted(scores, reverse=True)[k]
    referred = [s > cut for s in scores]
    return sum(r and b for r, b in zip(referred, bad)), sum(referred)


def auroc(scores, bad):
    pos = [s for s, b in zip(scores, bad) if b]
    neg = [s for s, b in zip(scores, bad) if not b]
    if not pos or not neg:
        return float("nan")
    wins = sum((p > q) + 0.5 * (p == q) for p in pos for q in neg)
    return wins / (len(pos) * len(neg))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("report")
    ap.add_argument("points")
    ap.add_argument("--budget", type=float, default=0.15)
    a = ap.parse_args()
    report = json.load(open(os.path.join(a.report, "report.json")))
    patches = {p["id"]: p for p in report["metrics"]["patches"]}
    rows = list(csv.DictReader(open(a.points)))
    missing = [r["id"] for r in rows if r["id"] not in patches]
    if missing or len(rows) != len(patches):
        raise SystemExit(f"{len(missing)} ids not in the report; {len(rows)} rows, {len(patches)} patches")
    bad = [patches[r["id"]]["bad"] for r in rows]
    cands = {}
    for name in patches[rows[0]["id"]]["scores"]:
        cands[name] = [patches[r["id"]]["scores"][name] for r in rows]
    for radius in ("3", "5", "8"):
        cands[f"point_h_{radius}"] = [h2(float(r[f"mean_peak_{radius}"])) for r in rows]
        cands[f"det_point_h_{radius}"] = [h2(float(r[f"det_peak_{radius}"])) for r in rows]
    shipped = report["review_score"]
    for radius in ("3", "5", "8"):
        for other in (f"point_h_{radius}", f"det_point_h_{radius}"):
            ra, rb = ranks(cands[shipped]), ranks(cands[other])
            cands[f"max_rank({shipped}, {other})"] = [max(x, y) for x, y in zip(ra, rb)]
    nb = sum(bad)
    silent = sum(1 for r, b in zip(rows, bad) if b and float(r["mask_mm"]) < 0)
    print(f"{len(rows)} patches, {nb} bad ({silent} with an empty final mask); "
          f"budget {a.budget:.0%}; the report's review score: {shipped}")
    print(f"{'candidate':58s} caught  referred  AUROC")
    for name, s in sorted(cands.items(), key=lambda kv: -caught(kv[1], bad, a.budget)[0]):
        c, n = caught(s, bad, a.budget)
        print(f"{name:58s} {c:3d}/{nb:<3d} {n:4d}     {auroc(s, bad):.3f}")
    print("\nbad patches: class, diameter, Dice, mask_mm, mean peak 3/5/8, det peak 5, shipped score")
    for r, b in zip(rows, bad):
        if b:
            p = patches[r["id"]]
            print(f"  {p['class']:9s} {p['diameter_mm'] or 0:5.1f} {p['overlap']['dice']:.2f} "
                  f"{float(r['mask_mm']):6.1f}  {float(r['mean_peak_3']):.3f} "
                  f"{float(r['mean_peak_5']):.3f} {float(r['mean_peak_8']):.3f}  "
                  f"{float(r['det_peak_5']):.3f}  {p['scores'][shipped]:.3f}")


if __name__ == "__main__":
    main()
