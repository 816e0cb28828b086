#!/usr/bin/env python3
"""Would a combination of the engine's review scores catch more bad patches than one score?
And can any score see the nodules a model misses with an empty mask, and would a second rule
for empty masks (their own score and threshold) catch more within the budget?

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


def auroc(pos, neg):
    """P(a positive scores above a negative), ties counted half."""
    pos, neg = np.asarray(pos)[:, None], np.asarray(neg)[None, :]
    return float(((pos > neg) + 0.5 * (pos == neg)).mean())


def best_two_part(first, second, empty, bad, k):
    """Thresholds (t1, t2) flagging `first > t1` on non-empty masks and `second > t2` on empty
    ones that catch the most bad patches with at most k flagged (fewest flagged on a tie)."""
    best = (-1, 0, (np.inf, np.inf))
    for t1 in np.r_[np.unique(first[~empty]), np.inf]:
        f1 = (first > t1) & ~empty
        for t2 in np.r_[np.unique(second[empty]), np.inf]:
            f = f1 | ((second > t2) & empty)
            if f.sum() <= k and ((f & bad).sum(), -f.sum()) > best[:2]:
                best = ((f & bad).sum(), -f.sum(), (t1, t2))
    return best[2]


def two_part(patches, bad, group, n_scans, budget, first='mask_mean_entropy'):
    """A non-empty mask is flagged by `first`, an empty one by each engine score in turn:
    in-sample best thresholds at the budget and scan-grouped 5-fold cross-validation."""
    empty = np.array([mask_voxels(p) == 0 for p in patches])
    a = np.array([p['scores'][first] for p in patches])
    k = min(len(patches), int(np.ceil(budget * len(patches) - 1e-9)))
    print(f"two-part rule: {first} on non-empty masks, a second score on empty ones "
          f"(at most {k} of {len(patches)} flagged)")
    for name in ENGINE:
        b = np.array([p['scores'][name] for p in patches])
        t1, t2 = best_two_part(a, b, empty, bad, k)
        flags = np.where(empty, b > t2, a > t1)
        rng = np.random.default_rng(0)
        cv = []
        for _ in range(5):
            fold = rng.permutation(n_scans) % 5
            out = np.zeros(len(patches), bool)
            for f in range(5):
                held = fold[group] == f
                kk = int(np.floor(k * (~held).sum() / len(patches)))
                u1, u2 = best_two_part(a[~held], b[~held], empty[~held], bad[~held], kk)
                out[held] = np.where(empty[held], b[held] > u2, a[held] > u1)
            cv.append((out & bad).sum() / bad.sum())
        print(f"  {name:20s} in-sample {(flags & bad).sum() / bad.sum():.3f} "
              f"(empty masks flagged: {(flags & empty).sum()}); cross-validated "
              f"{np.mean(cv):.3f} ({min(cv):.3f}–{max(cv):.3f})")


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
    for k in ENGINE:
        q = np.quantile([p['scores'][k] for p in negatives], [0.5, 0.9])
        m = [p['scores'][k] for p in missed]
        print(f"  {k}: missed {sorted(round(v, 3) for v in m)}; empty negatives median "
              f"{q[0]:.3f}, 90th pct {q[1]:.3f}; AUROC "
              f"{auroc(m, [p['scores'][k] for p in negatives]):.2f}")
    two_part(patches, bad, group, len(scans), budget)


if __name__ == '__main__':
    main(sys.argv[1])
