#!/usr/bin/env python3
"""Scores `examples/ensemble_study.rs`'s CSV: per variant (a20: model A with 20 samples; a10,
b10: each model with 10; ens: the mean of a10's and b10's means) and mask threshold, the mean
Dice over nodule patches, bad negatives and mean false-positive volume on negatives, as
`evaluate` counts them (metrics::patch_class, review_scores::DEFAULT_BAD_FP_MM3); then each
variant's paired mean-Dice difference from a20 at A's own threshold with a by-scan bootstrap
interval (2000 resamples, as compare-reports).

usage: scripts/ensemble_study.py e.csv [A's threshold, default 0.55]
"""
import sys

from study_csv import load, print_paired, summary


def main():
    rows = load(sys.argv[1])
    t0 = float(sys.argv[2]) if len(sys.argv) > 2 else 0.55
    print("variant  threshold  mean Dice  bad negatives  mean FP mm³")
    for (v, t), patches in sorted(rows.items()):
        d, bad, fp, n = summary(patches)
        print(f"{v:7s}  {t:9.2f}  {d:9.4f}  {bad:13d}  {fp:11.1f}")
    print_paired(rows, "a20", t0, 4)


if __name__ == "__main__":
    main()
