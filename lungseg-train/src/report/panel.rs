//! Sample panel: orthogonal slices through the nodule centre of one patch.

use std::path::Path;

use plotters::prelude::*;

use super::figures::{ensure_font, write_png, FigureError};
use crate::metrics::check_len;

/// One patch to show; all maps have `dims[0] * dims[1] * dims[2]` voxels (z, y, x; x fastest).
#[derive(Clone, Copy, Debug)]
pub struct PanelInput<'a> {
    pub title: &'a str,
    pub dims: [usize; 3],
    /// CT intensities (HU), shown in `ct_window`.
    pub ct: &'a [f32],
    pub gt: &'a [u8],
    /// Mean MC probability of nodule.
    pub prob: &'a [f32],
    /// Uncertainty map (e.g. entropy in bits), coloured over `[0, unc_max]`.
    pub uncertainty: &'a [f32],
    pub unc_max: f32,
    /// Voxels with uncertainty ≥ this are marked in the overlay.
    pub high_unc: f32,
    /// The predicted mask (0/1): the library's final mask of `prob`
    /// (`metrics::predicted_mask`).
    pub pred: &'a [u8],
    /// Display window (HU), e.g. lung window `(-1000, 400)`.
    pub ct_window: (f32, f32),
    /// Slice centre `[z, y, x]`; `None` = centroid of the ground truth, else of the
    /// prediction, else the patch centre.
    pub centre: Option<[usize; 3]>,
}

const LEFT: u32 = 110;
const TOP: u32 = 56;
const GAP: u32 = 6;
const BOTTOM: u32 = 30;

fn centroid(mask: impl Iterator<Item = bool>, dims: [usize; 3]) -> Option<[usize; 3]> {
    let (mut s, mut n) = ([0usize; 3], 0usize);
    for (i, on) in mask.enumerate() {
        if on {
            s[0] += i / (dims[1] * dims[2]);
            s[1] += (i / dims[2]) % dims[1];
            s[2] += i % dims[2];
            n += 1;
        }
    }
    (n > 0).then(|| s.map(|v| (v as f64 / n as f64).round() as usize))
}

/// Voxel indices of a slice, row-major, with its (width, height). Views: 0 axial (rows y,
/// cols x), 1 coronal (rows z top = last slice, cols x), 2 sagittal (rows z, cols y).
fn slice(
    view: usize,
    [nz, ny, nx]: [usize; 3],
    [cz, cy, cx]: [usize; 3],
) -> (usize, usize, Vec<usize>) {
    let idx = |z: usize, y: usize, x: usize| (z * ny + y) * nx + x;
    match view {
        0 => (
            nx,
            ny,
            (0..ny)
                .flat_map(|y| (0..nx).map(move |x| idx(cz, y, x)))
                .collect(),
        ),
        1 => (
            nx,
            nz,
            (0..nz)
                .rev()
                .flat_map(|z| (0..nx).map(move |x| idx(z, cy, x)))
                .collect(),
        ),
        _ => (
            ny,
            nz,
            (0..nz)
                .rev()
                .flat_map(|z| (0..ny).map(move |y| idx(z, y, cx)))
                .collect(),
        ),
    }
}

fn gray(v: f64) -> [u8; 3] {
    let g = (v.clamp(0.0, 1.0) * 255.0).round() as u8;
    [g, g, g]
}

/// Black → red → yellow → white.
fn hot(t: f64) -> [u8; 3] {
    let c = |v: f64| (v.clamp(0.0, 1.0) * 255.0).round() as u8;
    [c(3.0 * t), c(3.0 * t - 1.0), c(3.0 * t - 2.0)]
}

fn blend(a: [u8; 3], b: [u8; 3], alpha: f64) -> [u8; 3] {
    [0, 1, 2].map(|k| (f64::from(a[k]) * (1.0 - alpha) + f64::from(b[k]) * alpha).round() as u8)
}

/// In-slice boundary of a mask: set pixels with a 4-neighbour outside the mask or image.
fn boundary(mask: &[bool], w: usize, h: usize) -> Vec<bool> {
    (0..w * h)
        .map(|i| {
            let (x, y) = (i % w, i / w);
            mask[i]
                && (x == 0
                    || y == 0
                    || x + 1 == w
                    || y + 1 == h
                    || !mask[i - 1]
                    || !mask[i + 1]
                    || !mask[i - w]
                    || !mask[i + w])
        })
        .collect()
}

/// 3 rows (axial, coronal, sagittal) × 5 columns (CT, ground truth, probability,
/// uncertainty heatmap, overlay: CT with ground-truth contour in green, prediction contour
/// in red and voxels with uncertainty ≥ `high_unc` tinted magenta).
pub fn sample_panel(path: &Path, p: &PanelInput<'_>) -> Result<(), FigureError> {
    check_input(p)?;
    ensure_font()?;
    let centre = panel_centre(p);
    let mut canvas = Canvas::new(p.dims);
    for view in 0..3 {
        paint_view(&mut canvas, p, view, centre);
    }
    let (w, h) = (canvas.w, canvas.h);
    label(&mut canvas, p, centre)?;
    write_png(path, w, h, &canvas.buf)
}

fn check_input(p: &PanelInput<'_>) -> Result<(), FigureError> {
    let n: usize = p.dims.iter().product();
    let bad = |e: crate::metrics::MetricsError| FigureError(e.to_string());
    check_len("CT", n, p.ct.len()).map_err(bad)?;
    check_len("ground truth", n, p.gt.len()).map_err(bad)?;
    check_len("probability", n, p.prob.len()).map_err(bad)?;
    check_len("predicted mask", n, p.pred.len()).map_err(bad)?;
    check_len("uncertainty", n, p.uncertainty.len()).map_err(bad)?;
    if n == 0 {
        return Err(FigureError("empty patch".into()));
    }
    Ok(())
}

/// [`PanelInput::centre`], else the ground truth's centroid, else the prediction's, else the
/// patch centre; clamped into the patch.
fn panel_centre(p: &PanelInput<'_>) -> [usize; 3] {
    let centre = p
        .centre
        .or_else(|| centroid(p.gt.iter().map(|&g| g != 0), p.dims))
        .or_else(|| centroid(p.pred.iter().map(|&q| q != 0), p.dims))
        .unwrap_or(p.dims.map(|d| d / 2));
    [0, 1, 2].map(|k| centre[k].min(p.dims[k] - 1))
}

/// The RGB image: 5 columns × 3 rows of square cells, each slice pixel drawn `scale` wide.
struct Canvas {
    w: u32,
    h: u32,
    scale: u32,
    cell: u32,
    buf: Vec<u8>,
}

impl Canvas {
    fn new(dims: [usize; 3]) -> Canvas {
        let maxdim = *dims.iter().max().expect("3 dims") as u32;
        let scale = (192 / maxdim).max(1);
        let cell = maxdim * scale + GAP;
        let (w, h) = (LEFT + 5 * cell, TOP + 3 * cell + BOTTOM);
        Canvas {
            w,
            h,
            scale,
            cell,
            buf: vec![255u8; (w * h * 3) as usize],
        }
    }

    /// Pixel `(x, y)` of the slice in column `col`, row `row`.
    fn put(&mut self, (col, row): (u32, u32), (x, y): (u32, u32), c: [u8; 3]) {
        let (x0, y0) = (
            LEFT + col * self.cell + x * self.scale,
            TOP + row * self.cell + y * self.scale,
        );
        for dy in 0..self.scale {
            for dx in 0..self.scale {
                let o = (((y0 + dy) * self.w + x0 + dx) * 3) as usize;
                self.buf[o..o + 3].copy_from_slice(&c);
            }
        }
    }
}

/// One row of the panel: the five columns of slice `view` through `centre`.
fn paint_view(canvas: &mut Canvas, p: &PanelInput<'_>, view: usize, centre: [usize; 3]) {
    let (sw, sh, ids) = slice(view, p.dims, centre);
    let gt: Vec<bool> = ids.iter().map(|&i| p.gt[i] != 0).collect();
    let pred: Vec<bool> = ids.iter().map(|&i| p.pred[i] != 0).collect();
    let (gt_edge, pred_edge) = (boundary(&gt, sw, sh), boundary(&pred, sw, sh));
    let (lo, hi) = p.ct_window;
    for (k, &i) in ids.iter().enumerate() {
        let ct = gray(f64::from((p.ct[i] - lo) / (hi - lo)));
        let u = p.uncertainty[i];
        let colours = [
            ct,
            gray(f64::from(u8::from(gt[k]))),
            gray(f64::from(p.prob[i])),
            hot(f64::from(u / p.unc_max.max(f32::MIN_POSITIVE))),
            overlay(ct, u >= p.high_unc, gt_edge[k], pred_edge[k]),
        ];
        let xy = ((k % sw) as u32, (k / sw) as u32);
        for (col, &c) in colours.iter().enumerate() {
            canvas.put((col as u32, view as u32), xy, c);
        }
    }
}

/// The overlay column's pixel: CT, tinted magenta where uncertain, then the contours on top
/// (green ground truth, red prediction, yellow where they coincide).
fn overlay(ct: [u8; 3], uncertain: bool, gt_edge: bool, pred_edge: bool) -> [u8; 3] {
    match (gt_edge, pred_edge) {
        (true, true) => [255, 220, 0],
        (false, true) => [255, 0, 0],
        (true, false) => [0, 220, 0],
        (false, false) if uncertain => blend(ct, [255, 0, 255], 0.5),
        (false, false) => ct,
    }
}

/// Title, column and row names and the legend.
fn label(canvas: &mut Canvas, p: &PanelInput<'_>, centre: [usize; 3]) -> Result<(), FigureError> {
    let (w, h, cell) = (canvas.w, canvas.h, canvas.cell);
    let root = BitMapBackend::with_buffer(&mut canvas.buf, (w, h)).into_drawing_area();
    let text = |s: &str, x: u32, y: u32, size: u32| {
        root.draw_text(
            s,
            &("sans-serif", size).into_font().color(&BLACK),
            (x as i32, y as i32),
        )
    };
    text(p.title, 8, 6, 18)?;
    let columns = [
        "CT",
        "ground truth",
        "probability",
        "uncertainty",
        "overlay",
    ];
    for (col, name) in columns.iter().enumerate() {
        text(name, LEFT + col as u32 * cell, TOP - 22, 14)?;
    }
    let [cz, cy, cx] = centre;
    let rows = [
        format!("axial z={cz}"),
        format!("coronal y={cy}"),
        format!("sagittal x={cx}"),
    ];
    for (row, name) in rows.iter().enumerate() {
        text(name, 6, TOP + row as u32 * cell + cell / 2 - 8, 13)?;
    }
    text(
        &format!(
            "overlay: green = ground truth, red = prediction (the returned mask), yellow = both, magenta = uncertainty >= {}; heatmap 0..{}",
            p.high_unc, p.unc_max
        ),
        8,
        h - BOTTOM + 8,
        12,
    )?;
    root.present()?;
    Ok(())
}
