#!/usr/bin/env python3
"""What the number of MC samples buys: `evaluate` reports of one model on the same patches at
several sample counts (`--samples N`, same `--seed`), side by side, each against the first
report given (the model's default count) with a paired by-scan bootstrap of the nodule
patches' Dice (2000 resamples, as compare-reports).

Per report: mean Dice over nodule patches [by-scan 95 %], below 6 mm, bad negatives (false
positives above `metrics.config.bad_fp_mm3`) and mean false-positive volume on negatives, the review
flag at the model's own threshold (bad patches caught, patches referred), bad patches caught
at 15 % referral by `mask_mean_entropy` and by the dropout-off baseline `det_mean_entropy`,
and the ROI ECE of the calibrated probabilities and of the MC mean.

usage: scripts/mc_samples_study.py REPORT_DIR... (the first is the reference)
"""
import json
import random
import sys
from collections import defaultdict


def load(path):
    with open(f"{path}/report.json") as f:
        return json.load(f)


def paired(cand, base, resamples=2000, seed=0):
    """Mean Dice difference over the nodule patches with its by-scan percentile interval."""
    dice = {p["id"]: p["overlap"]["dice"] for p in cand["metrics"]["patches"]}
    by_scan = defaultdict(list)
    for p in base["metrics"]["patches"]:
        if p["class"] == "nodule":
            by_scan[p["scan"]].append(dice[p["id"]] - p["overlap"]["dice"])
    scans = list(by_scan)
    mean = lambda groups: sum(map(sum, groups)) / sum(map(len, groups))
    rng = random.Random(seed)
    stats = sorted(mean([by_scan[rng.choice(scans)] for _ in scans]) for _ in range(resamples))
    return mean(by_scan.values()), stats[int(0.025 * resamples)], stats[int(0.975 * resamples) - 1]


def row(report, base):
    m = report["metrics"]
    h = m["headline"]
    bad_fp = m["config"]["bad_fp_mm3"]
    negatives = [p for p in m["patches"] if p["class"] == "negative"]
    caught = {s["name"]: s["catch_rate"]["estimate"] for s in m["review_scores"]}
    d = h["dice_nodules"]
    diff = "—" if report is base else "{:+.3f} [{:+.3f}, {:+.3f}]".format(*paired(report, base))
    return [
        str(report["mc_samples"]),
        f"{d['estimate']:.3f} [{d['lo']:.3f}, {d['hi']:.3f}]",
        diff,
        f"{h['dice_by_size'][0]['dice']['estimate']:.3f}",
        f"{sum(p['fp_volume_mm3'] > bad_fp for p in negatives)}; "
        f"{h['fp_volume_negatives_mm3']['estimate']:.1f}",
        f"{100 * m['review']['sensitivity']:.0f} % of {h['n_bad']} at "
        f"{100 * m['review']['referred_fraction']:.1f} %",
        f"{100 * caught['mask_mean_entropy']:.0f} %; {100 * caught['det_mean_entropy']:.0f} %",
        f"{h['ece_roi']['estimate']:.3f} / {h['ece_roi_mean']['estimate']:.3f}",
    ]


def main():
    reports = [load(p) for p in sys.argv[1:]]
    base = reports[0]
    ids = lambda r: sorted(p["id"] for p in r["metrics"]["patches"])
    for r in reports[1:]:
        if ids(r) != ids(base):
            sys.exit("the reports are not of the same patches")
    head = ["samples", "mean Dice, nodule patches", f"paired vs {base['mc_samples']}",
            "< 6 mm", "bad negatives; mean FP mm³", "flag at its threshold",
            "caught at 15 %: mask_mean_entropy; det_mean_entropy", "ROI ECE: map / MC mean"]
    print("| " + " | ".join(head) + " |")
    print("|" + "---|" * len(head))
    for r in sorted(reports, key=lambda r: r["mc_samples"]):
        print("| " + " | ".join(row(r, base)) + " |")


if __name__ == "__main__":
    main()
