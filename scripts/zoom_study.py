#!/usr/bin/env python3
"""Scores `examples/zoom_study.rs`'s CSV: per variant (base: the model's own 1 mm mean; the
others: the 0.5 mm look at the point merged into the central region, as the example's doc
names them) and mask threshold, the mean Dice over nodule patches with its size classes, bad
negatives and mean false-positive volume on negatives; then each variant's paired mean-Dice
difference from base at the model's own threshold with a by-scan bootstrap interval.

usage: scripts/zoom_study.py z.csv [the model's threshold, default 0.55]
"""
import sys

from study_csv import SIZE_CLASSES, by_size, load, print_paired, summary


def fmt(x):
    return "   —  " if x is None else f"{x:6.3f}"


def main():
    rows = load(sys.argv[1])
    t0 = float(sys.argv[2]) if len(sys.argv) > 2 else 0.55
    sizes = " ".join(f"{lo:g}–{hi:g}" for lo, hi in SIZE_CLASSES)
    print(f"variant    threshold  mean Dice  bad neg  FP mm³   by size ({sizes} mm)")
    for (v, t), patches in sorted(rows.items()):
        d, bad, fp, _ = summary(patches)
        print(f"{v:10s} {t:9.2f}  {d:9.4f}  {bad:7d}  {fp:6.1f}   "
              + " ".join(fmt(x) for x in by_size(patches)))
    print_paired(rows, "base", t0, 10)


if __name__ == "__main__":
    main()
