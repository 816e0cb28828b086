//! Which reads are the same nodule: pylidc's `Scan.cluster_annotations()` with its defaults
//! (metric `'min'`, `tol = slice_thickness`, `factor = 0.9`, `min_tol = 0.1`).
//!
//! The distance of two reads is the smallest Euclidean distance between their contour points
//! in *index* units `(i, j, k)` (pylidc compares it with a tolerance in mm all the same); reads
//! at most `tol` apart are linked, clusters are the connected components, and while a cluster
//! has more than 4 reads (LIDC has 4 readers) `tol` shrinks by `factor` until it falls below
//! `min_tol`. Clusters come out in pylidc's order: components numbered by their first read,
//! then stably sorted by the mean of their reads' centroid `k`.

use anyhow::{ensure, Result};

use super::outline::Outline;

/// pylidc's defaults.
pub const FACTOR: f64 = 0.9;
pub const MIN_TOL: f64 = 0.1;
/// More reads than this in a cluster make pylidc shrink `tol`.
pub const MAX_READS: usize = 4;
/// Largest number of point pairs compared: bounds the work a hostile file can ask for.
pub const MAX_PAIR_WORK: u64 = 1_000_000_000;

/// Clusters of `outlines` (indices into it), `tol` being pylidc's `slice_thickness`.
pub fn cluster(outlines: &[Outline], tol: f64) -> Result<Vec<Vec<usize>>> {
    ensure!(tol >= 0.0, "cluster tolerance {tol} must be >= 0");
    let n = outlines.len();
    if n <= 1 {
        return Ok((0..n).map(|i| vec![i]).collect());
    }
    let d = distances(outlines, tol)?;
    let mut tol = tol;
    let mut labels = components(n, |a, b| d[a * n + b] <= tol);
    while count_per_label(&labels).iter().any(|&c| c > MAX_READS) {
        tol *= FACTOR;
        if tol < MIN_TOL {
            break;
        }
        labels = components(n, |a, b| d[a * n + b] <= tol);
    }
    let count = labels.iter().max().map_or(0, |&m| m + 1);
    let mut clusters: Vec<Vec<usize>> = vec![Vec::new(); count];
    for (i, &l) in labels.iter().enumerate() {
        clusters[l].push(i);
    }
    let mean_k =
        |c: &Vec<usize>| c.iter().map(|&i| outlines[i].centroid()[2]).sum::<f64>() / c.len() as f64;
    clusters.sort_by(|a, b| mean_k(a).total_cmp(&mean_k(b)));
    Ok(clusters)
}

/// The symmetric distance matrix (row-major, zero diagonal). Only comparisons with `tol` (or
/// a smaller one) matter, so a pair whose point boxes are already farther apart than `tol` gets
/// the box gap, a lower bound of its distance, instead of the point-by-point minimum.
fn distances(outlines: &[Outline], tol: f64) -> Result<Vec<f64>> {
    let n = outlines.len();
    let pts: Vec<Vec<[i64; 3]>> = outlines.iter().map(|o| o.points().collect()).collect();
    let boxes: Vec<([i64; 3], [i64; 3])> = pts.iter().map(|p| point_box(p)).collect();
    let mut d = vec![0.0; n * n];
    let mut exact = Vec::new();
    let mut work: u64 = 0;
    for a in 0..n {
        for b in a + 1..n {
            let gap = box_gap(boxes[a], boxes[b]);
            if gap > tol {
                d[a * n + b] = gap;
                d[b * n + a] = gap;
            } else {
                work = work.saturating_add(pts[a].len() as u64 * pts[b].len() as u64);
                exact.push((a, b));
            }
        }
    }
    ensure!(
        work <= MAX_PAIR_WORK,
        "{n} outlines with {} points in all are too many to cluster ({work} point pairs, at most {MAX_PAIR_WORK})",
        pts.iter().map(Vec::len).sum::<usize>()
    );
    for (a, b) in exact {
        let v = min_distance(&pts[a], &pts[b]);
        d[a * n + b] = v;
        d[b * n + a] = v;
    }
    Ok(d)
}

fn point_box(p: &[[i64; 3]]) -> ([i64; 3], [i64; 3]) {
    p.iter()
        .fold(([i64::MAX; 3], [i64::MIN; 3]), |(lo, hi), q| {
            (
                std::array::from_fn(|a| lo[a].min(q[a])),
                std::array::from_fn(|a| hi[a].max(q[a])),
            )
        })
}

/// Euclidean gap between two boxes (0 when they overlap): no two points are closer.
fn box_gap(a: ([i64; 3], [i64; 3]), b: ([i64; 3], [i64; 3])) -> f64 {
    (0..3)
        .map(|k| {
            let g = (b.0[k] - a.1[k]).max(a.0[k] - b.1[k]).max(0) as f64;
            g * g
        })
        .sum::<f64>()
        .sqrt()
}

fn min_distance(a: &[[i64; 3]], b: &[[i64; 3]]) -> f64 {
    let mut best = i64::MAX;
    for p in a {
        for q in b {
            let s = (0..3).map(|k| (p[k] - q[k]).pow(2)).sum::<i64>();
            best = best.min(s);
        }
    }
    (best as f64).sqrt()
}

/// Connected components numbered in order of their smallest member (scipy's
/// `connected_components` on an undirected graph).
fn components(n: usize, linked: impl Fn(usize, usize) -> bool) -> Vec<usize> {
    let mut label = vec![usize::MAX; n];
    let mut next = 0;
    for start in 0..n {
        if label[start] != usize::MAX {
            continue;
        }
        let mut stack = vec![start];
        label[start] = next;
        while let Some(v) = stack.pop() {
            for (w, l) in label.iter_mut().enumerate() {
                if *l == usize::MAX && w != v && linked(v, w) {
                    *l = next;
                    stack.push(w);
                }
            }
        }
        next += 1;
    }
    label
}

fn count_per_label(labels: &[usize]) -> Vec<usize> {
    let mut c = vec![0; labels.iter().max().map_or(0, |&m| m + 1)];
    for &l in labels {
        c[l] += 1;
    }
    c
}
