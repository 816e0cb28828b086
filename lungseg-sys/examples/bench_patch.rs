//! Patch extraction benchmark: a 64³ 1 mm patch from an int16 512×512×300 scan with LUNA16-like
//! anisotropic spacing, for a flipped axis-aligned direction (LUNA16; separable fast path) and an
//! oblique rotation (general path). Run with
//! `cargo run --release -p lungseg-sys --example bench_patch`; prints the median of the runs.

use lungseg::geometry::Geometry;
use lungseg::patch::{extract_hu, PatchSpec};
use lungseg::volume::{PixelData, Volume};
use std::time::Instant;

fn bench(name: &str, direction: [[f64; 3]; 3], data: &[i16]) {
    let dims = [512, 512, 300];
    let g = Geometry::new(
        dims,
        [0.703125, 0.703125, 1.25],
        [180.0, 180.0, -350.0],
        direction,
    )
    .unwrap();
    let vol = Volume::new(g, PixelData::I16(data.to_vec())).unwrap();
    let spec = PatchSpec::default();
    let mut dst = vec![0f32; spec.len()];
    let runs = 200;
    let mut times = Vec::with_capacity(runs);
    let mut checksum = 0.0f64;
    for r in 0..runs {
        // Off-grid centres spread over the scan (cold caches, like a candidate sweep).
        let f = r as f64 / runs as f64;
        let fz = ((r * 7) % runs) as f64 / runs as f64;
        let c = g.index_to_world([60.3 + 390.0 * f, 450.7 - 380.0 * f, 40.2 + 220.0 * fz]);
        let t = Instant::now();
        extract_hu(&vol, c, &spec, &mut dst).unwrap();
        times.push(t.elapsed().as_secs_f64() * 1e3);
        checksum += dst[dst.len() / 2] as f64;
    }
    times.sort_by(f64::total_cmp);
    println!(
        "extract_hu 64³ @ 1 mm, int16 512×512×300, {name}: median {:.3} ms (min {:.3}, p90 {:.3}) over {runs} runs [checksum {checksum:.1}]",
        times[runs / 2],
        times[0],
        times[runs * 9 / 10]
    );
}

fn main() {
    let n = 512 * 512 * 300;
    let data: Vec<i16> = (0..n)
        .map(|i: usize| (i.wrapping_mul(2_654_435_761) % 2000) as i16 - 1000)
        .collect();
    bench(
        "flipped (LUNA16, separable path)",
        [[-1.0, 0.0, 0.0], [0.0, -1.0, 0.0], [0.0, 0.0, 1.0]],
        &data,
    );
    let (s, c) = 20f64.to_radians().sin_cos();
    bench(
        "rotated 20° about z (general path)",
        [[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]],
        &data,
    );
}
