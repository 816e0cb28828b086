//! Figures of generated scans for `docs/synth.md`: whole axial slices through a nodule and a
//! gallery of nodule crops, in the lung window, the label outlined in red. Drawn straight into
//! RGB (no text: the doc says what each tile is), written as PNG.

use super::{consolidation_points, generate_scan, Scan, SynthConfig};
use crate::report::figures::write_png;
use lungseg::volume::PixelData;
use lungseg::{Error, Result};
use std::path::Path;

/// Lung window (HU): level −600, width 1500.
const WINDOW: (f32, f32) = (-1350.0, 150.0);

/// A tile: `size`² pixels of a scan's axial slice `k`, `mm_per_px` around `centre` (voxel x, y).
struct Tile {
    size: usize,
    mm_per_px: f64,
    centre: [f64; 2],
    k: usize,
}

impl Tile {
    /// The whole axial slice of `scan` through the world point `p`, in `size` pixels.
    fn whole_slice(scan: &Scan, size: usize, p: [f64; 3]) -> Self {
        let g = &scan.volume.geometry;
        let idx = g.world_to_index(p);
        Tile {
            size,
            mm_per_px: g.spacing[0] * g.dims[0] as f64 / size as f64,
            centre: [
                (g.dims[0] as f64 - 1.0) / 2.0,
                (g.dims[1] as f64 - 1.0) / 2.0,
            ],
            k: idx[2].round().clamp(0.0, (g.dims[2] - 1) as f64) as usize,
        }
    }
}

fn slices(scan: &Scan) -> Result<(&[i16], &[u8])> {
    match (&scan.volume.data, &scan.labels.data) {
        (PixelData::I16(v), PixelData::U8(l)) => Ok((v, l)),
        _ => Err(Error::invalid("synthetic scans are int16 with u8 labels")),
    }
}

/// Renders a tile (nearest neighbour, label outline in red) into `rgb` at pixel (x0, y0).
fn draw(scan: &Scan, t: &Tile, rgb: &mut [u8], width: usize, x0: usize, y0: usize) -> Result<()> {
    let (hu, lab) = slices(scan)?;
    let [nx, ny, _] = scan.volume.geometry.dims;
    let sp = scan.volume.geometry.spacing[0];
    let at = |px: usize, py: usize| -> Option<usize> {
        let x = t.centre[0] + (px as f64 - t.size as f64 / 2.0) * t.mm_per_px / sp;
        let y = t.centre[1] + (py as f64 - t.size as f64 / 2.0) * t.mm_per_px / sp;
        let (xi, yi) = (x.round(), y.round());
        (xi >= 0.0 && yi >= 0.0 && (xi as usize) < nx && (yi as usize) < ny)
            .then(|| (t.k * ny + yi as usize) * nx + xi as usize)
    };
    for py in 0..t.size {
        for px in 0..t.size {
            let o = ((y0 + py) * width + x0 + px) * 3;
            let Some(i) = at(px, py) else {
                rgb[o..o + 3].copy_from_slice(&[0, 0, 0]);
                continue;
            };
            let g = ((hu[i] as f32 - WINDOW.0) / (WINDOW.1 - WINDOW.0)).clamp(0.0, 1.0);
            let g = (g * 255.0) as u8;
            let l = lab[i];
            let edge = l != 0
                && [(1, 0), (0, 1), (-1, 0), (0, -1)].iter().any(|(dx, dy)| {
                    let (qx, qy) = (px as isize + dx, py as isize + dy);
                    qx < 0 || qy < 0 || at(qx as usize, qy as usize).is_none_or(|j| lab[j] != l)
                });
            let c = if edge { [230, 30, 30] } else { [g, g, g] };
            rgb[o..o + 3].copy_from_slice(&c);
        }
    }
    Ok(())
}

/// Writes `synth-slices.png` (whole axial slices through the first nodule of the first scans
/// that have one), `synth-nodules.png` (64 mm crops around nodules) and
/// `synth-consolidation.png` (whole axial slices through consolidated segments) into `dir`.
pub fn write_figures(dir: &Path, cfg: &SynthConfig, seed: u64) -> Result<()> {
    std::fs::create_dir_all(dir).map_err(|e| Error::from_io(dir.display(), e))?;
    let (cols, whole) = (4usize, 320usize);
    let (crop_cols, crop_rows, crop) = (8usize, 3usize, 128usize);
    let mut scans = Vec::new();
    let mut crops = 0;
    for i in 0..200u64 {
        if scans.len() >= 2 * cols && crops >= crop_cols * crop_rows {
            break;
        }
        let s = generate_scan(cfg, seed, i)?;
        crops += s.annotations.len();
        scans.push(s);
    }
    let gap = 4;
    let pane = |n: usize, size: usize| n * size + (n + 1) * gap;
    // Whole slices: two rows.
    let (w, h) = (pane(cols, whole), pane(2, whole));
    let mut rgb = vec![255u8; w * h * 3];
    let with_nodule: Vec<&Scan> = scans.iter().filter(|s| !s.annotations.is_empty()).collect();
    for (t, s) in with_nodule.iter().take(2 * cols).enumerate() {
        let tile = Tile::whole_slice(s, whole, s.annotations[0].world);
        let (x0, y0) = (
            gap + (t % cols) * (whole + gap),
            gap + (t / cols) * (whole + gap),
        );
        draw(s, &tile, &mut rgb, w, x0, y0)?;
    }
    let png = |name: &str, w: usize, h: usize, rgb: &[u8]| {
        let p = dir.join(name);
        write_png(&p, w as u32, h as u32, rgb).map_err(|e| Error::invalid(e.to_string()))
    };
    png("synth-slices.png", w, h, &rgb)?;
    // Nodule gallery: 64 mm crops.
    let (w, h) = (pane(crop_cols, crop), pane(crop_rows, crop));
    let mut rgb = vec![255u8; w * h * 3];
    let all = scans
        .iter()
        .flat_map(|s| s.annotations.iter().map(move |a| (s, a)));
    for (t, (s, a)) in all.take(crop_cols * crop_rows).enumerate() {
        let idx = s.volume.geometry.world_to_index(a.world);
        let tile = Tile {
            size: crop,
            mm_per_px: (64f64).max(1.6 * a.nodule.diameter_mm) / crop as f64,
            centre: [idx[0], idx[1]],
            k: idx[2]
                .round()
                .clamp(0.0, (s.volume.geometry.dims[2] - 1) as f64) as usize,
        };
        let (x0, y0) = (
            gap + (t % crop_cols) * (crop + gap),
            gap + (t / crop_cols) * (crop + gap),
        );
        draw(s, &tile, &mut rgb, w, x0, y0)?;
    }
    png("synth-nodules.png", w, h, &rgb)?;
    consolidation_figure(dir, cfg, seed, cols, whole)
}

/// Whole axial slices through the middle of the first `cols` consolidated segments.
fn consolidation_figure(
    dir: &Path,
    cfg: &SynthConfig,
    seed: u64,
    cols: usize,
    whole: usize,
) -> Result<()> {
    let gap = 4;
    let (w, h) = (cols * whole + (cols + 1) * gap, whole + 2 * gap);
    let mut rgb = vec![255u8; w * h * 3];
    let mut drawn = 0;
    for i in 0..400u64 {
        if drawn == cols {
            break;
        }
        let Some(&point) = consolidation_points(cfg, seed, i)?.first() else {
            continue;
        };
        let s = generate_scan(cfg, seed, i)?;
        let tile = Tile::whole_slice(&s, whole, point);
        draw(&s, &tile, &mut rgb, w, gap + drawn * (whole + gap), gap)?;
        drawn += 1;
    }
    let p = dir.join("synth-consolidation.png");
    write_png(&p, w as u32, h as u32, &rgb).map_err(|e| Error::invalid(e.to_string()))
}
