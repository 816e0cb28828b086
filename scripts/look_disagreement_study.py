#!/usr/bin/env python3
"""Scores the disagreement of a model's two looks (`examples/zoom_study.rs looks`) as a
detector of bad patches, next to the review scores of the `evaluate --second-look-patches`
report of the same model, patches and seed (bad patches as the engine's final masks make
them). A study on calibration patches; never a test seed.

    python3 scripts/look_disagreement_study.py REPORT_DIR LOOKS.csv [--budget 0.15]

Candidates (no fitted weights):
- the report's review scores (`mask_mean_entropy`, the shipped one, and the rest);
- `disagreement`, `weighted`: the looks' masks' 1 − Dice on the voxels both see, and the same
  scaled by the masks' size (zoom_study's LOOKS_FULL_VOXELS), wherever the study ran the
  second look;
- `engine_weighted`: `weighted` only where the engine runs the second look (the first mean
  reaches the support on a covered voxel), 0 elsewhere: what a library flag could use without
  a second MC pass at every point;
- `max_rank(mask_mean_entropy, x)`: the larger of the two percentile ranks.

For each: bad patches caught when the highest-scoring `budget` of patches is referred (ties at
the cut are not referred, as `threshold_for_refer_fraction` does), how many patches share the
score at the cut, and the AUROC.
"""
import argparse
import csv
import json
import os


def caught(scores, bad, budget):
    """Bad patches above the cut that refers at most `budget` of the patches; patches tied at
    the cut (not referred)."""
    ranked = sorted(scores.values(), reverse=True)
    k = int(budget * len(ranked))
    cut = ranked[k] if k < len(ranked) else float("-inf")
    referred = {i for i, s in scores.items() if s > cut}
    tied = sum(1 for s in scores.values() if s == cut)
    return len(referred & bad), len(referred), tied


def auroc(scores, bad):
    b = [scores[i] for i in bad]
    g = [s for i, s in scores.items() if i not in bad]
    wins = sum((x > y) + 0.5 * (x == y) for x in b for y in g)
    return wins / (len(b) * len(g))


def ranks(scores):
    """Percentile rank with ties sharing their lowest rank."""
    order = sorted(scores.values())
    first = {}
    for k, s in enumerate(order):
        first.setdefault(s, k / len(order))
    return {i: first[s] for i, s in scores.items()}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("report")
    ap.add_argument("looks")
    ap.add_argument("--budget", type=float, default=0.15)
    a = ap.parse_args()
    path = a.report if a.report.endswith(".json") else os.path.join(a.report, "report.json")
    rep = {p["id"]: p for p in json.load(open(path))["metrics"]["patches"]}
    looks = {r["id"]: r for r in csv.DictReader(open(a.looks))}
    ids = [i for i, p in rep.items() if p["class"] in ("nodule", "negative")]
    bad = {i for i in ids if rep[i]["bad"]}
    scores = {k: {i: rep[i]["scores"][k] for i in ids} for k in rep[ids[0]]["scores"]}
    for k in ("disagreement", "weighted"):
        scores[k] = {i: float(looks[i][k]) for i in ids}
    scores["engine_weighted"] = {
        i: float(looks[i]["weighted"]) if looks[i]["engine_runs"] == "true" else 0.0 for i in ids}
    base = ranks(scores["mask_mean_entropy"])
    for k in ("disagreement", "weighted", "engine_weighted"):
        r = ranks(scores[k])
        scores[f"max_rank(mask_mean_entropy, {k})"] = {i: max(base[i], r[i]) for i in ids}
    print(f"{len(ids)} nodule and negative patches, {len(bad)} bad; budget {a.budget:.0%}")
    print(f"{'score':48s} caught  referred  tied at cut  AUROC")
    for k, s in scores.items():
        c, n, tied = caught(s, bad, a.budget)
        print(f"{k:48s} {c:2d}/{len(bad):<3d} {n:5d}     {tied:5d}      {auroc(s, bad):.3f}")


if __name__ == "__main__":
    main()
