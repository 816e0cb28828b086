//! LUNA16's inputs: `annotations.csv`, `annotations_excluded.csv`, `candidates.csv` /
//! `candidates_V2.csv` and the `subset*/<seriesuid>.mhd` scans.
//!
//! Columns are found by header name (LUNA16's files and re-exports differ in column order and
//! extra columns); every bad value is reported with file, line and column, because a silently
//! dropped or misplaced nodule becomes a wrong label.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};

/// One `annotations.csv` row: a nodule in world mm (LPS, as the `.mhd` origin).
#[derive(Clone, Debug, PartialEq)]
pub struct Annotation {
    pub seriesuid: String,
    pub world: [f64; 3],
    pub diameter_mm: f64,
    /// 1-based line in the file, for messages.
    pub line: usize,
}

/// One candidates row; class 1 = a nodule, 0 = not.
#[derive(Clone, Debug, PartialEq)]
pub struct Candidate {
    pub seriesuid: String,
    pub world: [f64; 3],
    pub class: u8,
}

/// A scan file found under `subset*/`.
#[derive(Clone, Debug, PartialEq)]
pub struct ScanFile {
    pub seriesuid: String,
    pub path: PathBuf,
    /// N of the `subsetN` folder (`None` for a folder without a number).
    pub subset: Option<u32>,
}

/// Largest CSV read: LUNA16's largest file (`candidates_V2.csv`, 754 975 rows) is ~60 MB; a
/// file many times that is not a LUNA16 table and is refused before it is read.
pub const MAX_CSV_BYTES: u64 = 512 << 20;

/// A CSV file split into a header-indexed table of rows: RFC 4180 through the `csv` crate
/// (quoted fields, as spreadsheet and pandas re-exports may write them), fields trimmed, a
/// UTF-8 byte-order mark and blank lines skipped.
struct Table {
    name: String,
    columns: Vec<String>,
    /// (1-based line number, fields)
    rows: Vec<(usize, Vec<String>)>,
}

impl Table {
    fn read(path: &Path) -> Result<Table> {
        let name = path.file_name().map_or_else(
            || path.display().to_string(),
            |n| n.to_string_lossy().into(),
        );
        let size = std::fs::metadata(path)
            .with_context(|| format!("cannot read {}", path.display()))?
            .len();
        if size > MAX_CSV_BYTES {
            bail!("{name}: {size} bytes, more than the {MAX_CSV_BYTES} a LUNA16 table may have");
        }
        let bytes =
            std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
        Table::parse(name, &bytes)
    }

    fn parse(name: String, bytes: &[u8]) -> Result<Table> {
        let bytes = bytes.strip_prefix(b"\xef\xbb\xbf").unwrap_or(bytes);
        let mut reader = csv::ReaderBuilder::new()
            .has_headers(false)
            .flexible(true)
            .trim(csv::Trim::All)
            .from_reader(bytes);
        let mut rows = Vec::new();
        let mut lines = LineCounter::default();
        for record in reader.records() {
            let record = record.map_err(|e| anyhow::anyhow!("{name}: {e}"))?;
            if record.iter().all(str::is_empty) {
                continue;
            }
            let start = record.position().map_or(0, |p| p.byte() as usize);
            rows.push((
                lines.line_at(bytes, start),
                record.iter().map(str::to_string).collect(),
            ));
        }
        if rows.is_empty() {
            bail!("{name}: the file is empty (expected a header line)");
        }
        let (_, columns) = rows.remove(0);
        Ok(Table {
            name,
            columns,
            rows,
        })
    }

    /// Index of a required column; the error names the column, the file and what was found.
    fn column(&self, name: &str) -> Result<usize> {
        self.columns.iter().position(|c| c == name).ok_or_else(|| {
            anyhow::anyhow!(
                "{}: missing column '{name}' (header: {})",
                self.name,
                self.columns.join(",")
            )
        })
    }

    fn field<'a>(&self, line: usize, row: &'a [String], col: usize) -> Result<&'a str> {
        match row.get(col) {
            Some(s) if !s.is_empty() => Ok(s),
            _ => bail!(
                "{} line {line}: column '{}' is empty or missing",
                self.name,
                self.columns[col]
            ),
        }
    }

    /// A finite number; NaN, inf and text are refused with file, line, column and value.
    fn number(&self, line: usize, row: &[String], col: usize) -> Result<f64> {
        let s = self.field(line, row, col)?;
        match s.parse::<f64>() {
            Ok(v) if v.is_finite() => Ok(v),
            _ => bail!(
                "{} line {line}: column '{}' is '{s}', not a finite number",
                self.name,
                self.columns[col]
            ),
        }
    }

    fn world(&self, line: usize, row: &[String], cols: [usize; 3]) -> Result<[f64; 3]> {
        Ok([
            self.number(line, row, cols[0])?,
            self.number(line, row, cols[1])?,
            self.number(line, row, cols[2])?,
        ])
    }

    fn xyz(&self) -> Result<[usize; 3]> {
        Ok([
            self.column("coordX")?,
            self.column("coordY")?,
            self.column("coordZ")?,
        ])
    }
}

/// 1-based line numbers of records met in file order, counted from the bytes rather than
/// taken from `csv::Position::line`, which after a CRLF line end gives the line before.
#[derive(Default)]
struct LineCounter {
    /// Bytes before `pos` hold `newlines` line ends.
    pos: usize,
    newlines: usize,
}

impl LineCounter {
    /// The line of the record starting at byte `start` (at or after the previous one's). A
    /// record's start may sit on the `\n` of the previous line's end, so line ends there are
    /// skipped. Counts each byte once over the whole file.
    fn line_at(&mut self, bytes: &[u8], start: usize) -> usize {
        let start = start.clamp(self.pos, bytes.len());
        let first = bytes[start..]
            .iter()
            .position(|&b| b != b'\r' && b != b'\n')
            .map_or(bytes.len(), |k| start + k);
        self.newlines += bytes[self.pos..first]
            .iter()
            .filter(|&&b| b == b'\n')
            .count();
        self.pos = first;
        1 + self.newlines
    }
}

/// Reads `annotations.csv` (`seriesuid,coordX,coordY,coordZ,diameter_mm`).
pub fn read_annotations(path: &Path) -> Result<Vec<Annotation>> {
    read_nodules(path, false)
}

/// Reads LUNA16's `annotations_excluded.csv` (same columns): findings that are neither
/// positives nor negatives (nodules < 3 mm, non-nodules, nodules fewer than 3 readers
/// marked). Their `diameter_mm` is −1 where no size was given; it is read as 0.
pub fn read_excluded(path: &Path) -> Result<Vec<Annotation>> {
    read_nodules(path, true)
}

/// `annotations_excluded.csv` of a LUNA16 folder: at the top, or where LUNA16's evaluation
/// script ships it.
pub fn find_excluded(root: &Path) -> Option<PathBuf> {
    [
        "annotations_excluded.csv",
        "evaluationScript/annotations/annotations_excluded.csv",
    ]
    .iter()
    .map(|n| root.join(n))
    .find(|p| p.is_file())
}

fn read_nodules(path: &Path, unsized_allowed: bool) -> Result<Vec<Annotation>> {
    nodules_of(&Table::read(path)?, unsized_allowed)
}

fn nodules_of(t: &Table, unsized_allowed: bool) -> Result<Vec<Annotation>> {
    let uid = t.column("seriesuid")?;
    let xyz = t.xyz()?;
    let d = t.column("diameter_mm")?;
    t.rows
        .iter()
        .map(|(line, row)| {
            let mut diameter_mm = t.number(*line, row, d)?;
            if unsized_allowed && diameter_mm == -1.0 {
                diameter_mm = 0.0;
            }
            if diameter_mm < 0.0 {
                bail!(
                    "{} line {line}: diameter_mm is {diameter_mm}, must be >= 0{}",
                    t.name,
                    if unsized_allowed { " or -1" } else { "" }
                );
            }
            Ok(Annotation {
                seriesuid: t.field(*line, row, uid)?.to_string(),
                world: t.world(*line, row, xyz)?,
                diameter_mm,
                line: *line,
            })
        })
        .collect()
}

/// Reads `candidates.csv` / `candidates_V2.csv` (`seriesuid,coordX,coordY,coordZ,class`).
pub fn read_candidates(path: &Path) -> Result<Vec<Candidate>> {
    candidates_of(&Table::read(path)?)
}

fn candidates_of(t: &Table) -> Result<Vec<Candidate>> {
    let uid = t.column("seriesuid")?;
    let xyz = t.xyz()?;
    let c = t.column("class")?;
    t.rows
        .iter()
        .map(|(line, row)| {
            let class = match t.field(*line, row, c)? {
                "0" => 0,
                "1" => 1,
                other => bail!(
                    "{} line {line}: class is '{other}', expected 0 or 1",
                    t.name
                ),
            };
            Ok(Candidate {
                seriesuid: t.field(*line, row, uid)?.to_string(),
                world: t.world(*line, row, xyz)?,
                class,
            })
        })
        .collect()
}

/// A world point of a points file: LUNA16's `seriesuid,coordX,coordY,coordZ` columns (any
/// others, such as `class` or `diameter_mm`, are ignored).
#[derive(Clone, Debug, PartialEq)]
pub struct Point {
    pub seriesuid: String,
    pub world: [f64; 3],
    /// 1-based line in the file, for messages.
    pub line: usize,
}

/// Reads the points of a candidates- or annotations-style CSV.
pub fn read_points(path: &Path) -> Result<Vec<Point>> {
    points_of(&Table::read(path)?)
}

fn points_of(t: &Table) -> Result<Vec<Point>> {
    let uid = t.column("seriesuid")?;
    let xyz = t.xyz()?;
    t.rows
        .iter()
        .map(|(line, row)| {
            Ok(Point {
                seriesuid: t.field(*line, row, uid)?.to_string(),
                world: t.world(*line, row, xyz)?,
                line: *line,
            })
        })
        .collect()
}

/// The candidates file of a LUNA16 folder: `candidates_V2.csv` (also inside
/// `candidates_V2/`, as LUNA16 ships it) is preferred over the older `candidates.csv`.
pub fn find_candidates(root: &Path) -> Option<PathBuf> {
    [
        "candidates_V2.csv",
        "candidates_V2/candidates_V2.csv",
        "candidates.csv",
    ]
    .iter()
    .map(|n| root.join(n))
    .find(|p| p.is_file())
}

/// Every `subset*/<seriesuid>.mhd` under `root`, sorted by seriesuid (the processing order,
/// so runs are reproducible whatever the file system's listing order).
pub fn find_scans(root: &Path) -> Result<Vec<ScanFile>> {
    let mut scans = BTreeMap::new();
    let entries =
        std::fs::read_dir(root).with_context(|| format!("cannot list {}", root.display()))?;
    for e in entries {
        let dir = e?.path();
        let Some(name) = dir.file_name().and_then(|n| n.to_str()) else {
            continue;
        };
        let Some(rest) = name.strip_prefix("subset") else {
            continue;
        };
        if !dir.is_dir() {
            continue;
        }
        let subset = rest.parse::<u32>().ok();
        for f in
            std::fs::read_dir(&dir).with_context(|| format!("cannot list {}", dir.display()))?
        {
            let path = f?.path();
            if path
                .extension()
                .is_some_and(|x| x.eq_ignore_ascii_case("mhd"))
            {
                if let Some(uid) = path.file_stem().and_then(|s| s.to_str()) {
                    let uid = uid.to_string();
                    if let Some(prev) = scans.insert(
                        uid.clone(),
                        ScanFile {
                            seriesuid: uid.clone(),
                            path: path.clone(),
                            subset,
                        },
                    ) {
                        bail!(
                            "seriesuid {uid} appears twice: {} and {}",
                            prev.path.display(),
                            path.display()
                        );
                    }
                }
            }
        }
    }
    Ok(scans.into_values().collect())
}

/// The fuzz target body (`fuzz/fuzz_targets/luna_csv.rs`): any bytes read as each LUNA16 table
/// give rows or one error; rows hold a seriesuid, finite coordinates and a size >= 0.
pub fn fuzz_one(data: &[u8]) {
    let Ok(t) = Table::parse("fuzz.csv".into(), data) else {
        return;
    };
    for unsized_allowed in [false, true] {
        for a in nodules_of(&t, unsized_allowed).unwrap_or_default() {
            assert!(!a.seriesuid.is_empty() && a.line >= 1);
            assert!(a.world.iter().all(|v| v.is_finite()));
            assert!(a.diameter_mm.is_finite() && a.diameter_mm >= 0.0);
        }
    }
    for c in candidates_of(&t).unwrap_or_default() {
        assert!(!c.seriesuid.is_empty() && c.class <= 1);
        assert!(c.world.iter().all(|v| v.is_finite()));
    }
    for p in points_of(&t).unwrap_or_default() {
        assert!(!p.seriesuid.is_empty() && p.world.iter().all(|v| v.is_finite()));
    }
}
