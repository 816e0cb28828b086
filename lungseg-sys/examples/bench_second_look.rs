//! What the second look costs a point call: the point of a thin synthetic scan at a 9 mm
//! nodule, MC dropout on the model's patch (what `lungseg_predict_uncertainty_at` does without
//! a mask buffer) against the same call asking for the final mask, which with a model's second
//! look (`config.second_look`) runs a second MC pass on the half-spacing patch.
//!
//! `cargo run --release -p lungseg-sys --example bench_second_look -- MODEL [--runs N]
//! [--samples N] [--point nodule|beside]`: the two cases interleaved run by run after one
//! warm-up each, medians in seconds and their ratio. At `beside` (27 mm from the nodule, which
//! lies in the patch but outside the central half the second look covers) the first mean
//! reaches the support nowhere the second look covers, so no second pass runs.

use std::time::Instant;

use lungseg::geometry::Geometry;
use lungseg::mc::point::{predict_point, MaskSource, Point, Scan};
use lungseg::mc::{predict_uncertainty_with, McOptions, RunControl, UncertaintyMaps};
use lungseg::model::Model;
use lungseg::patch::{extract_hu, PatchSpec};
use lungseg::second_look::SecondLook;
use lungseg::volume::{PixelData, Volume};

const SPACING: [f64; 3] = [0.7, 0.7, 1.25];
const DIMS: [usize; 3] = [160, 160, 96];

/// Lung (−850 HU) with a 9 mm soft-tissue nodule at the centre; world origin at the centre.
fn scan() -> Volume {
    let origin = std::array::from_fn(|a| -(DIMS[a] as f64) / 2.0 * SPACING[a]);
    let identity = [[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]];
    let g = Geometry::new(DIMS, SPACING, origin, identity).unwrap();
    let [nx, ny, _] = DIMS;
    let px: Vec<i16> = (0..g.voxel_count())
        .map(|i| {
            let idx = [i % nx, i / nx % ny, i / (nx * ny)];
            let w = g.index_to_world(idx.map(|v| v as f64));
            let r2: f64 = w.iter().map(|v| v * v).sum();
            if r2 < 4.5 * 4.5 {
                40
            } else {
                -850
            }
        })
        .collect();
    Volume::new(g, PixelData::I16(px)).unwrap()
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

struct Args {
    model: String,
    runs: usize,
    samples: u32,
    point: [f64; 3],
}

fn args() -> Args {
    let a: Vec<String> = std::env::args().skip(1).collect();
    let value = |flag: &str| a.iter().position(|x| x == flag).map(|i| a[i + 1].clone());
    let point = match value("--point").as_deref() {
        Some("beside") => [20.0, -18.0, 0.0],
        _ => [0.0; 3],
    };
    Args {
        model: a.first().cloned().expect("usage: bench_second_look MODEL"),
        runs: value("--runs").map_or(5, |v| v.parse().unwrap()),
        samples: value("--samples").map_or(20, |v| v.parse().unwrap()),
        point,
    }
}

/// One point's inputs and buffers.
struct Bench {
    model: Model,
    volume: Volume,
    point: [f64; 3],
    spec: PatchSpec,
    opts: McOptions,
    hu: Vec<f32>,
    mean: Vec<f32>,
    mask: Vec<u8>,
}

impl Bench {
    /// Extract + MC on the model's patch, seconds.
    fn plain(&mut self) -> f64 {
        let t = Instant::now();
        extract_hu(&self.volume, self.point, &self.spec, &mut self.hu).unwrap();
        let maps = UncertaintyMaps {
            mean: Some(&mut self.mean),
            ..UncertaintyMaps::default()
        };
        let ctl = &mut RunControl::default();
        predict_uncertainty_with(&self.model, &self.hu, &self.opts, maps, ctl).unwrap();
        t.elapsed().as_secs_f64()
    }

    /// The same with the final mask (the second look where it applies): seconds, the mask's
    /// source and voxel count.
    fn with_mask(&mut self) -> (f64, MaskSource, u64) {
        let t = Instant::now();
        let (volume, point) = (&self.volume, self.point);
        extract_hu(volume, point, &self.spec, &mut self.hu).unwrap();
        let second_spec = SecondLook::patch_spec(&self.spec);
        let mut second = |p: &mut [f32]| extract_hu(volume, point, &second_spec, p);
        let point = Point {
            patch_hu: &self.hu,
            scan: Some(Scan {
                resolution_mm: volume.resolution_mm(),
                second_patch: &mut second,
            }),
        };
        let maps = UncertaintyMaps {
            mean: Some(&mut self.mean),
            ..UncertaintyMaps::default()
        };
        let ctl = &mut RunControl::default();
        let (s, source) =
            predict_point(&self.model, point, &self.opts, maps, &mut self.mask, ctl).unwrap();
        (t.elapsed().as_secs_f64(), source, s.foreground_voxels)
    }
}

fn main() {
    let a = args();
    let model = Model::open(std::path::Path::new(&a.model)).unwrap();
    let look = model
        .config()
        .second_look
        .expect("the model has no second look");
    let spec = PatchSpec {
        size: model.config().patch_size,
        spacing_mm: model.config().spacing_mm,
        outside_hu: -1000.0,
    };
    let n = spec.len();
    let mut b = Bench {
        model,
        volume: scan(),
        point: a.point,
        spec,
        opts: McOptions {
            n_samples: a.samples,
            ..McOptions::default()
        },
        hu: vec![0f32; n],
        mean: vec![0f32; n],
        mask: vec![0u8; n],
    };
    b.plain();
    let (_, source, voxels) = b.with_mask();
    let (mut p, mut w) = (Vec::new(), Vec::new());
    for _ in 0..a.runs {
        p.push(b.plain());
        w.push(b.with_mask().0);
    }
    let (mp, mw) = (median(p), median(w));
    println!(
        "second look {look:?}; point {:?}: mask {} ({voxels} voxels)",
        a.point,
        match source {
            MaskSource::Joined => "joined",
            MaskSource::FirstLookOnly => "first look only",
            _ => "the model's",
        }
    );
    println!(
        "MC-{} at a point, median of {} runs: plain {mp:.3} s, with the final mask {mw:.3} s, \
         ratio {:.2}",
        a.samples,
        a.runs,
        mw / mp
    );
}
