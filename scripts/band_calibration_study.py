#!/usr/bin/env python3
"""Recalibration maps of the MC mean by distance band from the returned mask, cross-fitted by scan.

Input: the JSON that `cargo run -p lungseg-train --example band_calibration_study` writes (per
scan, per distance band from the final mask, a 100-bin histogram of voxel count, summed
probability and foreground count, for the whole patch and for the ROI). For each way of fitting
a map it prints the ECE (15 equal-width bins, as `metrics::calibration`) of the ROI and of the
whole patch:

- in-sample (fitted and judged on every scan: the best case, as `calibration_map_bound.py`);
- cross-fitted (the scans split at random into K folds; each fold judged with the map fitted
  on the others; the judged histograms pooled; repeated over several random splits, since a
  few scans with large lesions hold much of the ROI): what a fresh scan would see.

Maps: `none`; `p only` (one isotonic map of p over all voxels, bands pooled); `by band` (one
isotonic map per band, fitted on all voxels of the band: what an engine could apply, since it
knows the band and not the ROI); each also fitted on the ROI's voxels only. The masks do not change: only the probabilities do.

With `--rings N` the histogram's bands are (mask band, ring around the requested point) pairs,
band `b * N + r` (the example's `RINGS_MM` argument with N - 1 radii), and the maps are by mask
band alone (rings pooled), by mask band and ring, and by ring only where the mask is 4 or more
voxels away (where a missed nodule lies).

    python3 scripts/band_calibration_study.py hist.json [--folds 2,5] [--repeats 10] [--rings N]
"""
import argparse
import json

import numpy as np

from calibration_map_bound import isotonic

ECE_BINS = 15


def load(path):
    scans = json.load(open(path))
    def arr(region, key):
        return np.array([s[region][key] for s in scans], dtype=np.float64)  # [scan, band, bin]
    # `BandHistogram`'s fields under the short names used below.
    keys = {"n": "voxels", "pos": "foreground", "sum_p": "sum_p"}
    return {r: {k: arr(r, v) for k, v in keys.items()} for r in ("whole", "roi")}


def fit_isotonic(n, pos, sum_p):
    """Isotonic map over the fine bins; empty bins keep their centre's value after the fit."""
    centre = (np.arange(n.size) + 0.5) / n.size
    has = n > 0
    if not has.any():
        return centre
    fitted = isotonic(pos[has] / n[has], n[has])
    out = np.interp(centre, centre[has], fitted)
    return out


def fit(h, scans, how):
    """A map [band, bin] -> probability, fitted on `scans` (whole-patch voxels, or the ROI's
    for the `(ROI-fitted)` variant: the labels are known offline, the ROI is not at inference)."""
    region = "roi" if how.endswith("(ROI-fitted)") else "whole"
    how = how.replace(" (ROI-fitted)", "")
    n, pos, sp = (h[region][k][scans].sum(axis=0) for k in ("n", "pos", "sum_p"))
    bands, bins = n.shape
    if how == "none":
        return None
    if how == "p only":
        m = fit_isotonic(n.sum(0), pos.sum(0), sp.sum(0))
        return np.tile(m, (bands, 1))
    if how == "by band":
        return np.stack([fit_isotonic(n[b], pos[b], sp[b]) for b in range(bands)])
    raise ValueError(how)


def judged(h, region, scans, m):
    """15-bin (count, summed confidence, positives) of `region` on `scans` under map `m`."""
    n, pos, sp = (h[region][k][scans].sum(axis=0) for k in ("n", "pos", "sum_p"))
    cnt, conf, ys = (np.zeros(ECE_BINS) for _ in range(3))
    with np.errstate(invalid="ignore", divide="ignore"):
        p = sp / n if m is None else m
    for b in range(n.shape[0]):
        for k in range(n.shape[1]):
            if n[b, k] == 0:
                continue
            j = min(int(p[b, k] * ECE_BINS), ECE_BINS - 1)
            cnt[j] += n[b, k]
            conf[j] += sp[b, k] if m is None else n[b, k] * m[b, k]
            ys[j] += pos[b, k]
    return cnt, conf, ys


def ece(parts):
    cnt, conf, ys = (sum(p[i] for p in parts) for i in range(3))
    has = cnt > 0
    return float(np.sum(np.abs(ys[has] - conf[has])) / cnt.sum())


def grouped(h, groups):
    """The histograms with the bands merged into `groups` (lists of band indices)."""
    return {r: {k: np.stack([a[:, g, :].sum(axis=1) for g in groups], axis=1)
                for k, a in h[r].items()} for r in h}


# (name, map, band groups): the study's six bands, and three (in the mask, 1-3 voxels out, further).
MAPS = [
    ("none", "none", None),
    ("p only", "p only", None),
    ("p only, ROI-fitted", "p only (ROI-fitted)", None),
    ("by band (6)", "by band", None),
    ("by band (in / 1-3 / >= 4)", "by band", [[0], [1, 2, 3], [4, 5]]),
    ("by band (6), ROI-fitted", "by band (ROI-fitted)", None),
]


def ring_maps(rings):
    """MAPS for histograms whose band b * rings + r is mask band b (of 6), ring r."""
    def by_mask_band(bands):
        return [[b * rings + r for r in range(rings)] for b in bands]
    far_split = by_mask_band(range(4)) + [[b * rings + r] for b in (4, 5) for r in range(rings)]
    return [
        ("none", "none", None),
        ("by band (6)", "by band", by_mask_band(range(6))),
        (f"by band (6) x ring ({rings})", "by band", None),
        (f"by band (6), ring ({rings}) where >= 4 voxels out", "by band", far_split),
    ]


def cross_fitted(h, how, k, rng):
    """ROI and whole-patch ECE with each of k random scan folds judged by the others' map."""
    n_scans = h["whole"]["n"].shape[0]
    every = np.arange(n_scans)
    fold = np.empty(n_scans, dtype=int)
    fold[rng.permutation(n_scans)] = every % k
    parts = {"roi": [], "whole": []}
    for f in range(k):
        m = fit(h, every[fold != f], how)
        for region in parts:
            parts[region].append(judged(h, region, every[fold == f], m))
    return ece(parts["roi"]), ece(parts["whole"])


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("hist")
    ap.add_argument("--folds", default="2,5")
    ap.add_argument("--repeats", type=int, default=10, help="random fold assignments per K")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--rings", type=int, default=1, help="rings per mask band in the histogram")
    a = ap.parse_args()
    h = load(a.hist)
    n_scans = h["whole"]["n"].shape[0]
    every = np.arange(n_scans)
    print(f"{n_scans} scans; ROI voxels by band (0 = in the mask, 1, 2, 3, 4-6, >= 7"
          + (f"; x {a.rings} rings" if a.rings > 1 else "") + "):",
          h["roi"]["n"].sum(axis=(0, 2)).astype(int).tolist())
    folds = [int(k) for k in a.folds.split(",")]
    print("| map | in-sample ROI / whole | "
          + " | ".join(f"{k}-fold ROI: mean [min, max] / whole (max)" for k in folds) + " |")
    print("|---" * (2 + len(folds)) + "|")
    for name, how, groups in (MAPS if a.rings == 1 else ring_maps(a.rings)):
        hh = h if groups is None else grouped(h, groups)
        m = fit(hh, every, how)
        row = [f"{ece([judged(hh, 'roi', every, m)]):.3f} / {ece([judged(hh, 'whole', every, m)]):.4f}"]
        for k in folds:
            rng = np.random.default_rng(a.seed)
            runs = np.array([cross_fitted(hh, how, k, rng) for _ in range(a.repeats)])
            roi, whole = runs[:, 0], runs[:, 1]
            row.append(f"{roi.mean():.3f} [{roi.min():.3f}, {roi.max():.3f}] / {whole.max():.4f}")
        print(f"| {name} | " + " | ".join(row) + " |")


if __name__ == "__main__":
    main()
