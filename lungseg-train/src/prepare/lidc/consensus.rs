//! Each read's mask and the 50 % consensus of a nodule's reads, voxel for voxel as pylidc's
//! `utils.consensus(anns, clevel=0.5)` (no padding) computes them:
//!
//! - The consensus box is the union of the reads' boxes, each the min/max `(i, j, k)` of all
//!   its contour points (exclusion contours included); no padding, so no clipping.
//! - A read's mask (`Annotation.boolean_mask(bbox=…)`): inclusion contours first, in the XML's
//!   order, each filling its polygon (OR) and then clearing its own points; then exclusion
//!   contours, each clearing its polygon and its points.
//! - A polygon is filled by matplotlib's `Path.contains_points` (radius 0), whose rule decides
//!   the many pixel centres lying exactly on an edge or a vertex: see [`inside`].
//! - A voxel is in the consensus when the share of reads containing it is `>= clevel`.

use anyhow::{ensure, Result};

use super::outline::{Contour, Outline};

/// Largest consensus box (voxels): a nodule is at most a few cm across.
pub const MAX_BOX_VOXELS: u64 = 16 << 20;
/// Largest polygon-test work for one read (box pixels × polygon edges, summed).
pub const MAX_FILL_WORK: u64 = 2_000_000_000;

/// An inclusive box `(i, j, k)`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Bbox {
    pub lo: [i64; 3],
    pub hi: [i64; 3],
}

impl Bbox {
    pub fn shape(&self) -> [usize; 3] {
        std::array::from_fn(|a| (self.hi[a] - self.lo[a] + 1) as usize)
    }

    pub fn contains(&self, p: [i64; 3]) -> bool {
        (0..3).all(|a| p[a] >= self.lo[a] && p[a] <= self.hi[a])
    }

    fn union(&self, o: &Bbox) -> Bbox {
        Bbox {
            lo: std::array::from_fn(|a| self.lo[a].min(o.lo[a])),
            hi: std::array::from_fn(|a| self.hi[a].max(o.hi[a])),
        }
    }

    /// Offset of `p` in the C-order `(i, j, k)` array over the box.
    pub fn offset(&self, p: [i64; 3]) -> usize {
        let [_, nj, nk] = self.shape();
        let r: [usize; 3] = std::array::from_fn(|a| (p[a] - self.lo[a]) as usize);
        (r[0] * nj + r[1]) * nk + r[2]
    }
}

/// A boolean volume over a box, C-order `(i, j, k)` as pylidc's arrays.
#[derive(Clone, Debug, PartialEq)]
pub struct BoxMask {
    pub bbox: Bbox,
    pub bits: Vec<bool>,
}

impl BoxMask {
    pub fn get(&self, p: [i64; 3]) -> bool {
        self.bbox.contains(p) && self.bits[self.bbox.offset(p)]
    }

    pub fn count(&self) -> usize {
        self.bits.iter().filter(|&&b| b).count()
    }
}

/// The box of a read's contour points (pylidc's `bbox_matrix()`); `None` for no points.
pub fn outline_bbox(o: &Outline) -> Option<Bbox> {
    let mut it = o.points();
    let first = it.next()?;
    Some(it.fold(
        Bbox {
            lo: first,
            hi: first,
        },
        |b, p| Bbox {
            lo: std::array::from_fn(|a| b.lo[a].min(p[a])),
            hi: std::array::from_fn(|a| b.hi[a].max(p[a])),
        },
    ))
}

/// matplotlib's point-in-polygon rule (`_path.h`, `point_in_path_impl`: Haines' crossings
/// test along +x, x being `i` here) for the closed path pylidc builds from `points`: the first
/// point appended when the contour is open, the last vertex a CLOSEPOLY whose coordinates are
/// ignored. Paths of fewer than 3 vertices contain nothing.
pub fn inside(points: &[[i64; 2]], t: [i64; 2]) -> bool {
    let verts = polygon(points);
    if verts.is_empty() {
        return false;
    }
    let [tx, ty] = t;
    let mut odd = false;
    // Edges (V0,V1) … (V_{L-1},V0); the crossing parity does not depend on their order.
    let mut a = verts[verts.len() - 1];
    for &b in verts {
        let (yflag0, yflag1) = (a[1] >= ty, b[1] >= ty);
        if yflag0 != yflag1
            && (((b[1] - ty) * (a[0] - b[0]) >= (b[0] - tx) * (a[1] - b[1])) == yflag1)
        {
            odd = !odd;
        }
        a = b;
    }
    odd
}

/// The vertices matplotlib walks: pylidc's closed `C` minus its CLOSEPOLY vertex; empty when
/// the path has fewer than 3 vertices.
fn polygon(points: &[[i64; 2]]) -> &[[i64; 2]] {
    let (Some(f), Some(l)) = (points.first(), points.last()) else {
        return &[];
    };
    // Path length: the points plus the appended first one when open.
    let path_len = points.len() + usize::from(f != l);
    if path_len < 3 {
        return &[];
    }
    if f != l {
        points
    } else {
        &points[..points.len() - 1]
    }
}

/// The polygon's own pixels box (`(i, j)` inclusive), clipped to `bb`; outside it the rule
/// never says inside.
fn fill_box(c: &Contour, bb: &Bbox) -> Option<([i64; 2], [i64; 2])> {
    let verts = polygon(&c.points);
    let first = *verts.first()?;
    let (mut lo, mut hi) = (first, first);
    for p in verts {
        for a in 0..2 {
            lo[a] = lo[a].min(p[a]);
            hi[a] = hi[a].max(p[a]);
        }
    }
    let lo = [lo[0].max(bb.lo[0]), lo[1].max(bb.lo[1])];
    let hi = [hi[0].min(bb.hi[0]), hi[1].min(bb.hi[1])];
    (lo[0] <= hi[0] && lo[1] <= hi[1]).then_some((lo, hi))
}

fn fill_work(o: &Outline, bb: &Bbox) -> u64 {
    o.contours
        .iter()
        .filter_map(|c| fill_box(c, bb).map(|(lo, hi)| (c, lo, hi)))
        .map(|(c, lo, hi)| {
            ((hi[0] - lo[0] + 1) * (hi[1] - lo[1] + 1)) as u64 * c.points.len() as u64
        })
        .fold(0u64, u64::saturating_add)
}

/// A read's mask over `bb` (pylidc's `boolean_mask(bbox=bb)`, contour points not included).
pub fn boolean_mask(o: &Outline, bb: &Bbox) -> Result<Vec<bool>> {
    let [ni, nj, nk] = bb.shape();
    let n = ni * nj * nk;
    let work = fill_work(o, bb);
    ensure!(
        work <= MAX_FILL_WORK,
        "the outline of nodule '{}' is too complex to fill ({work} point tests, at most {MAX_FILL_WORK})",
        o.nodule_id
    );
    let mut bits = Vec::new();
    bits.try_reserve_exact(n)?;
    bits.resize(n, false);
    for c in o.contours.iter().filter(|c| c.inclusion) {
        paint(c, bb, &mut bits, true);
    }
    for c in o.contours.iter().filter(|c| !c.inclusion) {
        paint(c, bb, &mut bits, false);
    }
    Ok(bits)
}

/// One contour: inclusion ORs its polygon in, exclusion clears it; both then clear their points.
fn paint(c: &Contour, bb: &Bbox, bits: &mut [bool], inclusion: bool) {
    let k = c.k as i64;
    if let Some((lo, hi)) = fill_box(c, bb) {
        for i in lo[0]..=hi[0] {
            for j in lo[1]..=hi[1] {
                if inside(&c.points, [i, j]) {
                    bits[bb.offset([i, j, k])] = inclusion;
                }
            }
        }
    }
    for p in &c.points {
        let q = [p[0], p[1], k];
        if bb.contains(q) {
            bits[bb.offset(q)] = false;
        }
    }
}

/// A nodule's consensus: the box, the consensus mask, and each read's mask over the box.
#[derive(Clone, Debug, PartialEq)]
pub struct Consensus {
    pub mask: BoxMask,
    pub reads: Vec<Vec<bool>>,
}

/// pylidc's `consensus(reads, clevel)`.
pub fn consensus(reads: &[&Outline], clevel: f64) -> Result<Consensus> {
    ensure!(!reads.is_empty(), "consensus of no reads");
    let mut bbox: Option<Bbox> = None;
    for r in reads {
        let b = outline_bbox(r)
            .ok_or_else(|| anyhow::anyhow!("nodule '{}' has no contour points", r.nodule_id))?;
        bbox = Some(bbox.map_or(b, |u| u.union(&b)));
    }
    let bbox = bbox.expect("at least one read");
    let voxels = bbox.shape().iter().map(|&s| s as u64).product::<u64>();
    ensure!(
        voxels <= MAX_BOX_VOXELS,
        "the nodule's box {:?}..{:?} has {voxels} voxels, more than {MAX_BOX_VOXELS}",
        bbox.lo,
        bbox.hi
    );
    let masks = reads
        .iter()
        .map(|r| boolean_mask(r, &bbox))
        .collect::<Result<Vec<_>>>()?;
    let n = masks.len() as f64;
    let bits = (0..masks[0].len())
        .map(|v| masks.iter().filter(|m| m[v]).count() as f64 / n >= clevel)
        .collect();
    Ok(Consensus {
        mask: BoxMask { bbox, bits },
        reads: masks,
    })
}
