//! PNG figures with plotters' bitmap backend.
//!
//! Text goes through plotters' `ab_glyph` feature with DejaVu Sans embedded from the
//! `dejavu` crate (Bitstream Vera/DejaVu licence, permissive), registered as
//! "sans-serif": no fontconfig, no system fonts. PNGs are encoded with the `png` crate.

use std::io::BufWriter;
use std::path::Path;
use std::sync::OnceLock;

use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::{register_font, FontStyle};

use crate::metrics::calibration::CalibrationSummary;
use crate::metrics::referral::ReferralCurve;
use crate::metrics::uncertainty::HistogramDensity;

const FONT: &str = "sans-serif";

/// A figure could not be drawn or written.
#[derive(Debug, Clone, PartialEq)]
pub struct FigureError(pub String);

impl std::fmt::Display for FigureError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "figure: {}", self.0)
    }
}

impl std::error::Error for FigureError {}

impl<E: std::error::Error + Send + Sync> From<DrawingAreaErrorKind<E>> for FigureError {
    fn from(e: DrawingAreaErrorKind<E>) -> Self {
        FigureError(e.to_string())
    }
}

fn err(e: impl std::fmt::Display) -> FigureError {
    FigureError(e.to_string())
}

/// Registers the embedded font once; every figure function calls it.
pub fn ensure_font() -> Result<(), FigureError> {
    static DONE: OnceLock<bool> = OnceLock::new();
    let ok = *DONE
        .get_or_init(|| register_font(FONT, FontStyle::Normal, dejavu::sans::regular()).is_ok());
    if ok {
        Ok(())
    } else {
        Err(FigureError("embedded font failed to load".into()))
    }
}

type Area<'a> = DrawingArea<BitMapBackend<'a>, Shift>;

/// Encodes an RGB8 buffer as PNG.
pub fn write_png(path: &Path, width: u32, height: u32, rgb: &[u8]) -> Result<(), FigureError> {
    let file = std::fs::File::create(path).map_err(|e| err(format!("{}: {e}", path.display())))?;
    let mut enc = png::Encoder::new(BufWriter::new(file), width, height);
    enc.set_color(png::ColorType::Rgb);
    enc.set_depth(png::BitDepth::Eight);
    let mut w = enc.write_header().map_err(err)?;
    w.write_image_data(rgb).map_err(err)?;
    w.finish().map_err(err)
}

/// White canvas, `draw` on it, then PNG.
fn render(
    path: &Path,
    (w, h): (u32, u32),
    draw: impl FnOnce(&Area<'_>) -> Result<(), FigureError>,
) -> Result<(), FigureError> {
    ensure_font()?;
    let mut buf = vec![255u8; (w * h * 3) as usize];
    {
        let root = BitMapBackend::with_buffer(&mut buf, (w, h)).into_drawing_area();
        draw(&root)?;
        root.present()?;
    }
    write_png(path, w, h, &buf)
}

/// Reliability diagram: observed nodule frequency per probability bin (bars), the
/// bins' mean probability (points) and the diagonal of perfect calibration.
pub fn reliability_diagram(
    path: &Path,
    cal: &CalibrationSummary,
    title: &str,
) -> Result<(), FigureError> {
    render(path, (640, 560), |root| {
        let caption = match cal.ece {
            Some(e) => format!("{title} (ECE {e:.3})"),
            None => title.to_string(),
        };
        let mut chart = ChartBuilder::on(root)
            .caption(caption, (FONT, 20))
            .margin(12)
            .x_label_area_size(40)
            .y_label_area_size(50)
            .build_cartesian_2d(0f64..1f64, 0f64..1f64)?;
        chart
            .configure_mesh()
            .x_desc("predicted nodule probability")
            .y_desc("observed nodule fraction")
            .label_style((FONT, 13))
            .draw()?;
        chart.draw_series(cal.bins.iter().filter_map(|b| {
            b.observed_freq
                .map(|f| Rectangle::new([(b.lower, 0.0), (b.upper, f)], BLUE.mix(0.35).filled()))
        }))?;
        chart
            .draw_series(LineSeries::new(
                [(0.0, 0.0), (1.0, 1.0)],
                BLACK.stroke_width(1),
            ))?
            .label("perfect calibration")
            .legend(|(x, y)| PathElement::new([(x, y), (x + 20, y)], BLACK));
        chart
            .draw_series(cal.bins.iter().filter_map(|b| {
                Some(Circle::new(
                    (b.mean_prob?, b.observed_freq?),
                    4,
                    RED.filled(),
                ))
            }))?
            .label("bin: mean p vs observed")
            .legend(|(x, y)| Circle::new((x + 10, y), 4, RED.filled()));
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::UpperLeft)
            .label_font((FONT, 13))
            .background_style(WHITE.mix(0.8))
            .border_style(BLACK)
            .draw()?;
        Ok(())
    })
}

/// Retained Dice against fraction referred: model, oracle and random referral.
pub fn referral_curve(path: &Path, rc: &ReferralCurve) -> Result<(), FigureError> {
    render(path, (640, 480), |root| {
        let ymin = rc
            .points
            .iter()
            .chain(&rc.oracle)
            .map(|p| p.retained_dice)
            .fold(1.0f64, f64::min)
            .min(rc.auc_random);
        let ymin = (ymin - 0.05).clamp(0.0, 0.95);
        let mut chart = ChartBuilder::on(root)
            .caption(format!("Referral (area {:.3})", rc.auc), (FONT, 20))
            .margin(12)
            .x_label_area_size(40)
            .y_label_area_size(55)
            .build_cartesian_2d(0f64..1f64, ymin..1f64)?;
        chart
            .configure_mesh()
            .x_desc("fraction of patches referred (most uncertain first)")
            .y_desc("mean Dice of retained patches")
            .label_style((FONT, 13))
            .draw()?;
        let line = |pts: &[crate::metrics::referral::ReferralPoint]| {
            pts.iter()
                .map(|p| (p.fraction_referred, p.retained_dice))
                .collect::<Vec<_>>()
        };
        chart
            .draw_series(LineSeries::new(line(&rc.points), BLUE.stroke_width(2)))?
            .label(format!("uncertainty ({:.3})", rc.auc))
            .legend(|(x, y)| PathElement::new([(x, y), (x + 20, y)], BLUE.stroke_width(2)));
        chart
            .draw_series(LineSeries::new(line(&rc.oracle), GREEN.stroke_width(1)))?
            .label(format!("oracle ({:.3})", rc.auc_oracle))
            .legend(|(x, y)| PathElement::new([(x, y), (x + 20, y)], GREEN));
        chart
            .draw_series(LineSeries::new(
                [(0.0, rc.auc_random), (1.0, rc.auc_random)],
                BLACK,
            ))?
            .label(format!("random ({:.3})", rc.auc_random))
            .legend(|(x, y)| PathElement::new([(x, y), (x + 20, y)], BLACK));
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::LowerRight)
            .label_font((FONT, 13))
            .background_style(WHITE.mix(0.8))
            .border_style(BLACK)
            .draw()?;
        Ok(())
    })
}

/// One panel per measure: normalised histograms of the uncertainty on correct and on
/// error voxels.
pub fn uncertainty_histograms(
    path: &Path,
    hists: &[HistogramDensity],
    title: &str,
) -> Result<(), FigureError> {
    let n = hists.len().max(1) as u32;
    render(path, (420 * n, 400), |root| {
        let root = root.titled(title, (FONT, 20))?;
        for (area, h) in root.split_evenly((1, n as usize)).iter().zip(hists) {
            let (lo, hi) = (
                f64::from(*h.edges.first().unwrap_or(&0.0)),
                f64::from(*h.edges.last().unwrap_or(&1.0)),
            );
            let ymax = h
                .correct
                .iter()
                .chain(&h.incorrect)
                .fold(0.0f64, |a, &b| a.max(b))
                .max(1e-6)
                * 1.05;
            let mut chart = ChartBuilder::on(area)
                .caption(h.measure.label(), (FONT, 15))
                .margin(10)
                .x_label_area_size(35)
                .y_label_area_size(50)
                .build_cartesian_2d(lo..hi.max(lo + 1e-9), 0f64..ymax)?;
            chart
                .configure_mesh()
                .y_desc("fraction of voxels")
                .label_style((FONT, 11))
                .x_labels(5)
                .draw()?;
            let step = |v: &[f64]| {
                let mut pts = Vec::with_capacity(2 * v.len());
                for (k, &y) in v.iter().enumerate() {
                    pts.push((f64::from(h.edges[k]), y));
                    pts.push((f64::from(h.edges[k + 1]), y));
                }
                pts
            };
            chart
                .draw_series(LineSeries::new(step(&h.correct), BLUE.stroke_width(2)))?
                .label("correct")
                .legend(|(x, y)| PathElement::new([(x, y), (x + 20, y)], BLUE.stroke_width(2)));
            chart
                .draw_series(LineSeries::new(step(&h.incorrect), RED.stroke_width(2)))?
                .label("error")
                .legend(|(x, y)| PathElement::new([(x, y), (x + 20, y)], RED.stroke_width(2)));
            chart
                .configure_series_labels()
                .position(SeriesLabelPosition::UpperRight)
                .label_font((FONT, 12))
                .background_style(WHITE.mix(0.8))
                .border_style(BLACK)
                .draw()?;
        }
        Ok(())
    })
}

/// One row of `metrics.csv`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct EpochRow {
    pub epoch: f64,
    pub loss: f64,
    pub train_dice: f64,
    pub val_dice: f64,
    pub lr: f64,
    pub seconds: f64,
}

/// Parses `metrics.csv` with header `epoch,loss,train_dice,val_dice,lr,seconds` (any
/// column order, extra columns ignored; an empty field reads as NaN and is not drawn). Read
/// with the `csv` crate; messages name the file's line.
pub fn parse_metrics_csv(text: &str) -> Result<Vec<EpochRow>, FigureError> {
    let mut reader = csv::ReaderBuilder::new()
        .flexible(true)
        .trim(csv::Trim::All)
        .from_reader(text.as_bytes());
    let header = reader
        .headers()
        .map_err(|e| err(format!("metrics.csv: {e}")))?
        .clone();
    if header.iter().all(str::is_empty) {
        return Err(err("metrics.csv is empty"));
    }
    let col = |name: &str| {
        header.iter().position(|h| h == name).ok_or_else(|| {
            err(format!(
                "metrics.csv has no '{name}' column (header: {})",
                header.iter().collect::<Vec<_>>().join(",")
            ))
        })
    };
    let idx = [
        col("epoch")?,
        col("loss")?,
        col("train_dice")?,
        col("val_dice")?,
        col("lr")?,
        col("seconds")?,
    ];
    let mut rows = Vec::new();
    for record in reader.records() {
        let record = record.map_err(|e| err(format!("metrics.csv: {e}")))?;
        if record.iter().all(str::is_empty) {
            continue;
        }
        let line = record.position().map_or(0, |p| p.line());
        let v = |k: usize| -> Result<f64, FigureError> {
            match record.get(idx[k]) {
                None | Some("") => Ok(f64::NAN),
                Some(s) => s
                    .parse()
                    .map_err(|_| err(format!("metrics.csv line {line}: bad number '{s}'"))),
            }
        };
        rows.push(EpochRow {
            epoch: v(0)?,
            loss: v(1)?,
            train_dice: v(2)?,
            val_dice: v(3)?,
            lr: v(4)?,
            seconds: v(5)?,
        });
    }
    Ok(rows)
}

fn finite_range(vals: impl Iterator<Item = f64>) -> (f64, f64) {
    let (lo, hi) = vals
        .filter(|v| v.is_finite())
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), v| {
            (a.min(v), b.max(v))
        });
    if !lo.is_finite() {
        (0.0, 1.0)
    } else if hi - lo < 1e-12 {
        (lo - 0.5 * lo.abs().max(1e-3), hi + 0.5 * hi.abs().max(1e-3))
    } else {
        let pad = 0.05 * (hi - lo);
        (lo - pad, hi + pad)
    }
}

/// One line of a training-curve panel: legend label, value getter, colour.
type Series = (&'static str, fn(&EpochRow) -> f64, RGBColor);

/// Training curves: loss, train/validation Dice, and learning rate against epoch.
pub fn training_curves(path: &Path, rows: &[EpochRow]) -> Result<(), FigureError> {
    if rows.is_empty() {
        return Err(err("no training epochs to plot"));
    }
    render(path, (1260, 400), |root| {
        let root = root.titled("Training", (FONT, 20))?;
        let areas = root.split_evenly((1, 3));
        let (x0, x1) = finite_range(rows.iter().map(|r| r.epoch));
        let panels: [(&str, Vec<Series>); 3] = [
            ("loss", vec![("loss", |r| r.loss, RED)]),
            (
                "Dice",
                vec![
                    ("train", |r| r.train_dice, BLUE),
                    ("validation", |r| r.val_dice, GREEN),
                ],
            ),
            ("learning rate", vec![("lr", |r| r.lr, BLACK)]),
        ];
        for (area, (name, series)) in areas.iter().zip(panels) {
            let (y0, y1) = finite_range(series.iter().flat_map(|(_, g, _)| rows.iter().map(g)));
            let mut chart = ChartBuilder::on(area)
                .caption(name, (FONT, 15))
                .margin(10)
                .x_label_area_size(35)
                .y_label_area_size(65)
                .build_cartesian_2d(x0..x1, y0..y1)?;
            chart
                .configure_mesh()
                .x_desc("epoch")
                .label_style((FONT, 11))
                .draw()?;
            for (label, get, color) in series {
                let pts: Vec<(f64, f64)> = rows
                    .iter()
                    .map(|r| (r.epoch, get(r)))
                    .filter(|p| p.0.is_finite() && p.1.is_finite())
                    .collect();
                chart
                    .draw_series(LineSeries::new(pts, color.stroke_width(2)))?
                    .label(label)
                    .legend(move |(x, y)| {
                        PathElement::new([(x, y), (x + 20, y)], color.stroke_width(2))
                    });
            }
            chart
                .configure_series_labels()
                .label_font((FONT, 12))
                .background_style(WHITE.mix(0.8))
                .border_style(BLACK)
                .draw()?;
        }
        Ok(())
    })
}

/// Reads `metrics.csv` and draws [`training_curves`].
pub fn training_curves_from_csv(csv: &Path, png: &Path) -> Result<(), FigureError> {
    let text = std::fs::read_to_string(csv).map_err(|e| err(format!("{}: {e}", csv.display())))?;
    training_curves(png, &parse_metrics_csv(&text)?)
}

pub use super::panel::{sample_panel, PanelInput};
