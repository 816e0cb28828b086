//! Airways: trachea, main bronchi and bronchial trees with walls. The lumen is air; the wall
//! is soft tissue about a fifth of the lumen radius thick (wall thickness / outer diameter
//! ≈ 0.1–0.2 in healthy bronchi), so small bronchi show as rings and air-filled bronchi cross
//! consolidations as air bronchograms.

use super::anatomy::{Anatomy, AIR};
use super::canvas::{soft_edge, Canvas, Mode, Stroke};
use super::vessels::{grow_tree, normalize, Segment, TreeSpec};
use rand::RngExt;

const WALL_HU: f32 = 30.0;

/// A scan's airways: the central ones (outside the lung mask) and the intrapulmonary trees.
pub struct Airways {
    central: Vec<Segment>,
    trees: Vec<Segment>,
}

/// Draws the airways: a trachea down to the carina a little above the hila, main bronchi to
/// each hilum, and 3–4 lobar trees per lung.
pub fn grow(rng: &mut impl rand::Rng, anatomy: &Anatomy, top_mm: f64) -> Airways {
    let f = anatomy.lung_frame();
    let s = f.ca / 120.0; // 1 for an adult-sized cavity
    let hila = [anatomy.hilum(-1.0), anatomy.hilum(1.0)];
    let carina = [
        0.0,
        f.lung_y + 0.12 * f.cb,
        hila[0][2] + rng.random_range(10.0..20.0),
    ];
    let trachea_r = s * rng.random_range(7.0..9.5);
    let mut central = vec![Segment {
        a: [carina[0], carina[1], top_mm + 10.0],
        b: carina,
        r0: trachea_r,
        r1: trachea_r,
    }];
    let mut trees = Vec::new();
    for (h, side) in hila.iter().zip([-1.0, 1.0]) {
        let r = s * rng.random_range(5.0..6.5);
        let end = [h[0] - side * 4.0, h[1], h[2]];
        central.push(Segment {
            a: carina,
            b: end,
            r0: r,
            r1: r * 0.9,
        });
        let count = rng.random_range(3..=4);
        for k in 0..count {
            let elev = -1.0 + 2.0 * (k as f64 + rng.random_range(0.2..0.8)) / count as f64;
            let dir = normalize([
                side * rng.random_range(0.6..1.0),
                rng.random_range(-0.5..0.5),
                elev,
            ]);
            let spec = TreeSpec {
                root: end,
                dir,
                radius: s * rng.random_range(3.0..4.0),
                min_radius: 0.6,
                max_depth: 8,
                away_from: carina,
            };
            grow_tree(rng, anatomy, &spec, &mut trees);
        }
    }
    Airways { central, trees }
}

impl Airways {
    pub fn paint(&self, canvas: &mut Canvas) {
        for s in &self.central {
            paint_airway(s, canvas, false);
        }
        for s in &self.trees {
            paint_airway(s, canvas, true);
        }
    }

    /// Lumen segments of the intrapulmonary trees (for keeping nodules out of them).
    pub fn trees(&self) -> &[Segment] {
        &self.trees
    }
}

fn wall_mm(r: f64) -> f64 {
    0.25 + 0.2 * r
}

/// Paints wall and lumen as one partial-volume mixture: what a voxel sees is air for the part
/// of it inside the lumen and wall for the part between lumen and outer surface.
fn paint_airway(seg: &Segment, canvas: &mut Canvas, lung_only: bool) {
    let edge = canvas.edge_mm();
    let (lo, hi) = seg.bounds(wall_mm(seg.r0.max(seg.r1)) + edge);
    let stroke = Stroke {
        lo,
        hi,
        lung_only,
        mode: Mode::Set,
    };
    canvas.paint(stroke, |p| {
        let (d, t) = seg.distance(p);
        let r = seg.radius_at(t);
        let outer = soft_edge(r + wall_mm(r) - d, edge);
        if outer <= 0.0 {
            return (0.0, 0.0);
        }
        let lumen = soft_edge(r - d, edge);
        (outer, (lumen * AIR + (outer - lumen) * WALL_HU) / outer)
    });
}
