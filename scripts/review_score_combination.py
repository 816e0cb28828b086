#!/usr/bin/env python3
"""Would a combination of the engine's review scores catch more bad patches than one score?
And can any score see the nodules a model misses with an empty mask?

    python3 scripts/review_score_combination.py REPORT.json

REPORT.json is an `evaluate` report of calibration scans (never of a test seed: this is a
choice). Features, fixed before looking: ln(1e-4 + s) of each of the eight engine scores and
ln(1 + mask voxels); an L2-regularised (lambda = 1 on the standardised weights) logistic
regression for "bad", scored by scan-grouped 5-fold cross-validation, 20 fold draws. The catch
rate at the report's budget follows `metrics::review_scores::referred_at_budget` (the top
ceil(budget * n) scores, ties in patch order). Needs numpy (scripts/torch_env.sh's venv has it).
"""
import json
import sys

import numpy as np

ENGINE = ['mean_mutual_info', 'mean_entropy', 'mean_variance', 'volume_disagreement',
          'dice_disagreement', 'iou_disagreement', 'volume_cv', 'mask_mean_entropy']


def mask_voxels(p):
    return p['confusion']['tp'] + p['confusion']['fp']


def catch_rate(score, bad, budget):
    n = len(score)
    k = min(n, int(np.ceil(budget * n - 1e-9)))
    order = sorted(range(n), key=lambda i: (-score[i], i))
    referred = np.zeros(n, bool)
    referred[order[:k]] = True
    return (referred & bad).sum() / max(1, bad.sum())


def fit(x, y, lam=1.0):
    mu, sd = x.mean(0), x.std(0) + 1e-9
    z = np.c_[np.ones(len(x)), (x - mu) / sd]
    w = np.zeros(z.shape[1])
    reg = lam * np.eye(z.shape[1])
    reg[0, 0] = 0.0
    for _ in range(50):  # Newton steps
        p = 1.0 / (1.0 + np.exp(-z @ w))
        hess = z.T @ (z * (p * (1 - p))[:, None]) + reg
        w -= np.linalg.solve(hess, z.T @ (p - y) + reg @ w)
    return lambda xs: np.c_[np.ones(len(xs)), (xs - mu) / sd] @ w


def main(path):
    report = json.load(open(path))['metrics']
    patches, budget = report['patches'], report['config']['refer_budget']
    x = np.array([[np.log(1e-4 + p['scores'][k]) for k in ENGINE] + [np.log1p(mask_voxels(p))]
                  for p in patches])
    bad = np.array([p['bad'] for p in patches])
    scans = sorted({p['scan'] for p in patches})
    group = np.array([scans.index(p['scan']) for p in patches])
    print(f"{len(patches)} patches of {len(scans)} scans, {bad.sum()} bad; budget {budget}")
    for k, name in enumerate(ENGINE):
        print(f"  {name:20s} catches {catch_rate(x[:, k], bad, budget):.3f}")
    rng = np.random.default_rng(0)
    cv = []
    for _ in range(20):
        fold = rng.permutation(len(scans)) % 5
        out_of_fold = np.zeros(len(patches))
        for f in range(5):
            held = fold[group] == f
            out_of_fold[held] = fit(x[~held], bad[~held].astype(float))(x[held])
        cv.append(catch_rate(out_of_fold, bad, budget))
    print(f"  logistic combination, cross-validated: {np.mean(cv):.3f} "
          f"(fold draws {min(cv):.3f}–{max(cv):.3f}); in-sample "
          f"{catch_rate(fit(x, bad.astype(float))(x), bad, budget):.3f}")

    empty = [p for p in patches if mask_voxels(p) == 0]
    missed = [p for p in empty if p['class'] == 'nodule']
    negatives = [p for p in empty if p['class'] == 'negative']
    print(f"empty masks: {len(empty)} ({len(missed)} nodule patches, {len(negatives)} negatives)")
    print("  missed nodules (mm):", sorted(round(p['diameter_mm'], 1) for p in missed))
    for k in ['volume_disagreement', 'mean_entropy', 'dice_disagreement']:
        q = np.quantile([p['scores'][k] for p in negatives], [0.5, 0.9])
        m = sorted(round(p['scores'][k], 3) for p in missed)
        print(f"  {k}: missed {m}; empty negatives median {q[0]:.3f}, 90th pct {q[1]:.3f}")


if __name__ == '__main__':
    main(sys.argv[1])
