#!/usr/bin/env python3
"""How far could any monotone map of the MC mean probability move the ROI and whole-patch ECE?

    python3 scripts/calibration_map_bound.py REPORT.json

REPORT.json is an `evaluate` report of calibration scans. Its two reliability diagrams (15
bins of the MC mean: ROI and whole patch) are all the script reads. For each region it fits
the isotonic regression of observed frequency on mean probability over the bins (pool
adjacent violators, weighted by voxel count; between bin means the map is linear) and prints
both ECEs with that map applied to each bin's mean. The fit is judged on its own bins, so the
numbers are a best case for a map fitted there: if no map reaches both goals in-sample, none
will on new scans. (A map applied to each voxel moves voxels within a bin too; bin-level
application ignores that spread, which a finer map could only use on the data it saw.)
"""
import json
import sys

import numpy as np


def bins(report, region):
    diagram = report['metrics'][region]
    rows = [(b['count'], b['mean_prob'], b['observed_freq']) for b in diagram['bins'] if b['count']]
    return np.array(rows, dtype=float), diagram['ece']


def isotonic(y, w):
    """Pool adjacent violators: the non-decreasing fit of y with weights w."""
    blocks = []  # [value, weight, length]
    for yi, wi in zip(y, w):
        blocks.append([yi, wi, 1])
        while len(blocks) > 1 and blocks[-2][0] > blocks[-1][0]:
            v2, w2, n2 = blocks.pop()
            v1, w1, n1 = blocks.pop()
            blocks.append([(v1 * w1 + v2 * w2) / (w1 + w2), w1 + w2, n1 + n2])
    return np.concatenate([np.full(n, v) for v, _, n in blocks])


def ece(rows, mapped_prob):
    count, _, freq = rows.T
    return float(np.sum(count / count.sum() * np.abs(freq - mapped_prob)))


def main():
    report = json.load(open(sys.argv[1]))
    regions = {'ROI': 'calibration_roi', 'whole patch': 'calibration_all'}
    diagrams = {name: bins(report, key) for name, key in regions.items()}
    print('map fitted on | ROI ECE | whole-patch ECE')
    print('none | %.4f | %.4f' % (diagrams['ROI'][1], diagrams['whole patch'][1]))
    for fitted_on, (rows, _) in diagrams.items():
        count, prob, freq = rows.T
        fit = isotonic(freq, count)
        mapped = {name: np.interp(r[:, 1], prob, fit) for name, (r, _) in diagrams.items()}
        print('%s | %.4f | %.4f' % (fitted_on, ece(diagrams['ROI'][0], mapped['ROI']),
                                    ece(diagrams['whole patch'][0], mapped['whole patch'])))


if __name__ == '__main__':
    main()
