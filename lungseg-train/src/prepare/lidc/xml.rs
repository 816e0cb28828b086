//! The LIDC-IDRI reader XML (`LidcReadMessage`): every radiologist's reading session with the
//! outlines of the nodules ≥ 3 mm (`unblindedReadNodule` → `roi` → `edgeMap`), the centre points
//! of nodules < 3 mm and of non-nodules.
//!
//! The file comes from outside, so it is bounded before and while it is parsed: a size cap, a
//! node cap (roxmltree's `nodes_limit`), no DTD (no entity expansion), and caps on the points a
//! file and one outline may hold. Elements are matched by local name: LIDC's files use the
//! `http://www.nih.gov` namespace, some none. Unknown elements (the radiologists'
//! `characteristics`, extra header fields) are ignored.
//!
//! This file depends on `std` and `roxmltree` only, so the fuzz target compiles it on its own
//! (`fuzz/fuzz_targets/lidc_xml.rs`).

use std::fmt;

use roxmltree::{Document, Node, ParsingOptions};

/// Bounds on one XML file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Largest file accepted (bytes). LIDC's largest files are a few MB.
    pub max_bytes: usize,
    /// Largest XML node count (elements, text, attributes' owners).
    pub max_nodes: u32,
    /// Largest number of outline points (`edgeMap`) in one `roi`.
    pub max_roi_points: usize,
    /// Largest number of outline points in the whole file.
    pub max_file_points: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_bytes: 64 << 20,
            max_nodes: 4_000_000,
            max_roi_points: 20_000,
            max_file_points: 400_000,
        }
    }
}

/// Largest pixel coordinate accepted (CT slices are at most a few thousand pixels wide).
pub const MAX_COORD: u32 = 65_535;

/// What is wrong with a file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum XmlErrorKind {
    /// Well-formed XML whose root is not `LidcReadMessage` (LIDC's chest X-ray reads are
    /// `IdriReadMessage`): skipped when a folder is read.
    NotCtRead,
    /// Anything else: not XML, too large, a missing or bad field.
    Invalid,
}

/// One clear error per bad file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct XmlError {
    pub kind: XmlErrorKind,
    pub message: String,
}

impl fmt::Display for XmlError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for XmlError {}

fn invalid(message: impl Into<String>) -> XmlError {
    XmlError {
        kind: XmlErrorKind::Invalid,
        message: message.into(),
    }
}

type Result<T> = std::result::Result<T, XmlError>;

/// One outline (or point) on one slice: pixel `(x, y)` = (DICOM column, row).
#[derive(Clone, Debug, PartialEq)]
pub struct Roi {
    /// `imageZposition`: the slice's z (mm, DICOM Image Position Patient).
    pub z: f64,
    /// `imageSOP_UID`: the slice's DICOM SOP Instance UID (empty when absent).
    pub sop_uid: String,
    /// `FALSE` marks a hole cut out of the nodule on this slice.
    pub inclusion: bool,
    pub points: Vec<[u32; 2]>,
}

/// One radiologist's marking of one nodule (`unblindedReadNodule`).
#[derive(Clone, Debug, PartialEq)]
pub struct NoduleRead {
    pub id: String,
    pub rois: Vec<Roi>,
}

impl NoduleRead {
    /// A nodule < 3 mm: LIDC marks only its centre, one point per roi, no outline.
    pub fn is_point(&self) -> bool {
        self.rois.iter().all(|r| r.points.len() <= 1)
    }
}

/// A non-nodule (`nonNodule`): one point.
#[derive(Clone, Debug, PartialEq)]
pub struct NonNodule {
    pub id: String,
    pub z: f64,
    pub sop_uid: String,
    pub point: [u32; 2],
}

/// One radiologist's `readingSession`.
#[derive(Clone, Debug, PartialEq)]
pub struct Session {
    /// `servicingRadiologistID` (empty when absent).
    pub radiologist: String,
    pub nodules: Vec<NoduleRead>,
    pub non_nodules: Vec<NonNodule>,
}

/// A parsed `LidcReadMessage`.
#[derive(Clone, Debug, PartialEq)]
pub struct LidcFile {
    /// `ResponseHeader/SeriesInstanceUid`: the CT series, LUNA16's `seriesuid`.
    pub series_uid: String,
    pub sessions: Vec<Session>,
}

/// Parses one LIDC XML file.
pub fn parse(bytes: &[u8], limits: &Limits) -> Result<LidcFile> {
    if bytes.len() > limits.max_bytes {
        return Err(invalid(format!(
            "{} bytes, more than the {} accepted",
            bytes.len(),
            limits.max_bytes
        )));
    }
    let text = std::str::from_utf8(bytes).map_err(|e| invalid(format!("not UTF-8 text ({e})")))?;
    let opts = ParsingOptions {
        allow_dtd: false,
        nodes_limit: limits.max_nodes,
        ..Default::default()
    };
    let doc = Document::parse_with_options(text, opts).map_err(|e| match e {
        roxmltree::Error::NodesLimitReached => {
            invalid(format!("more than {} XML nodes", limits.max_nodes))
        }
        e => invalid(format!("not well-formed XML: {e}")),
    })?;
    let root = doc.root_element();
    if root.tag_name().name() != "LidcReadMessage" {
        return Err(XmlError {
            kind: XmlErrorKind::NotCtRead,
            message: format!(
                "root element is <{}>, not <LidcReadMessage> (not a CT read)",
                root.tag_name().name()
            ),
        });
    }
    let header = child(root, "ResponseHeader")
        .ok_or_else(|| invalid("<LidcReadMessage> has no <ResponseHeader>"))?;
    let series_uid = uid(header, "SeriesInstanceUid")?;
    let mut budget = limits.max_file_points;
    let sessions = children(root, "readingSession")
        .map(|s| session(s, limits, &mut budget))
        .collect::<Result<_>>()?;
    Ok(LidcFile {
        series_uid,
        sessions,
    })
}

fn child<'a, 'i>(node: Node<'a, 'i>, name: &'static str) -> Option<Node<'a, 'i>> {
    children(node, name).next()
}

fn children<'a, 'i>(
    node: Node<'a, 'i>,
    name: &'static str,
) -> impl Iterator<Item = Node<'a, 'i>> + use<'a, 'i> {
    node.children()
        .filter(move |c| c.is_element() && c.tag_name().name() == name)
}

/// Where a node is, for messages: the 1-based line of its start.
fn line(node: Node<'_, '_>) -> u32 {
    node.document().text_pos_at(node.range().start).row
}

fn text<'a>(node: Node<'a, '_>, name: &'static str) -> Result<&'a str> {
    let c = child(node, name).ok_or_else(|| {
        invalid(format!(
            "line {}: <{}> has no <{name}>",
            line(node),
            node.tag_name().name()
        ))
    })?;
    Ok(c.text().unwrap_or("").trim())
}

fn optional_text<'a>(node: Node<'a, '_>, name: &'static str) -> String {
    child(node, name)
        .and_then(|c| c.text())
        .unwrap_or("")
        .trim()
        .to_string()
}

/// A DICOM UID: digits and dots, 1 to 64 characters.
fn uid(node: Node<'_, '_>, name: &'static str) -> Result<String> {
    let s = text(node, name)?;
    let ok = (1..=64).contains(&s.len()) && s.bytes().all(|b| b.is_ascii_digit() || b == b'.');
    if !ok {
        return Err(invalid(format!(
            "line {}: <{name}> '{}' is not a DICOM UID",
            line(node),
            s.chars().take(80).collect::<String>()
        )));
    }
    Ok(s.to_string())
}

fn session(node: Node<'_, '_>, limits: &Limits, budget: &mut usize) -> Result<Session> {
    let nodules = children(node, "unblindedReadNodule")
        .map(|n| nodule(n, limits, budget))
        .collect::<Result<_>>()?;
    let non_nodules = children(node, "nonNodule")
        .map(non_nodule)
        .collect::<Result<_>>()?;
    Ok(Session {
        radiologist: optional_text(node, "servicingRadiologistID"),
        nodules,
        non_nodules,
    })
}

fn nodule(node: Node<'_, '_>, limits: &Limits, budget: &mut usize) -> Result<NoduleRead> {
    let id = text(node, "noduleID")?.to_string();
    let rois: Vec<Roi> = children(node, "roi")
        .map(|r| roi(r, limits, budget))
        .collect::<Result<_>>()?;
    if rois.is_empty() {
        return Err(invalid(format!(
            "line {}: nodule '{id}' has no <roi>",
            line(node)
        )));
    }
    Ok(NoduleRead { id, rois })
}

fn roi(node: Node<'_, '_>, limits: &Limits, budget: &mut usize) -> Result<Roi> {
    let z = number(node, "imageZposition")?;
    let inclusion = match text(node, "inclusion")? {
        s if s.eq_ignore_ascii_case("true") => true,
        s if s.eq_ignore_ascii_case("false") => false,
        s => {
            return Err(invalid(format!(
                "line {}: <inclusion> is '{}', expected TRUE or FALSE",
                line(node),
                s.chars().take(40).collect::<String>()
            )))
        }
    };
    let mut points = Vec::new();
    for e in children(node, "edgeMap") {
        if points.len() == limits.max_roi_points {
            return Err(invalid(format!(
                "line {}: a <roi> with more than {} points",
                line(node),
                limits.max_roi_points
            )));
        }
        *budget = budget.checked_sub(1).ok_or_else(|| {
            invalid(format!(
                "line {}: more than {} outline points in the file",
                line(e),
                limits.max_file_points
            ))
        })?;
        points.push(point(e)?);
    }
    if points.is_empty() {
        return Err(invalid(format!(
            "line {}: <roi> has no <edgeMap>",
            line(node)
        )));
    }
    Ok(Roi {
        z,
        sop_uid: optional_text(node, "imageSOP_UID"),
        inclusion,
        points,
    })
}

fn non_nodule(node: Node<'_, '_>) -> Result<NonNodule> {
    let locus = child(node, "locus")
        .ok_or_else(|| invalid(format!("line {}: <nonNodule> has no <locus>", line(node))))?;
    Ok(NonNodule {
        id: text(node, "nonNoduleID")?.to_string(),
        z: number(node, "imageZposition")?,
        sop_uid: optional_text(node, "imageSOP_UID"),
        point: point(locus)?,
    })
}

fn number(node: Node<'_, '_>, name: &'static str) -> Result<f64> {
    let s = text(node, name)?;
    match s.parse::<f64>() {
        Ok(v) if v.is_finite() => Ok(v),
        _ => Err(invalid(format!(
            "line {}: <{name}> is '{}', not a finite number",
            line(node),
            s.chars().take(40).collect::<String>()
        ))),
    }
}

/// `xCoord`, `yCoord`: non-negative integer pixels (pylidc reads them with `int()`).
fn point(node: Node<'_, '_>) -> Result<[u32; 2]> {
    let coord = |name: &'static str| -> Result<u32> {
        let s = text(node, name)?;
        match s.parse::<u32>() {
            Ok(v) if v <= MAX_COORD => Ok(v),
            _ => Err(invalid(format!(
                "line {}: <{name}> is '{}', not a pixel index in 0..={MAX_COORD}",
                line(node),
                s.chars().take(40).collect::<String>()
            ))),
        }
    };
    Ok([coord("xCoord")?, coord("yCoord")?])
}

/// The fuzz target body: any bytes give a parse or one error, and a parse respects the limits.
pub fn fuzz_one(data: &[u8]) {
    let limits = Limits {
        max_bytes: 1 << 20,
        max_nodes: 100_000,
        max_roi_points: 1_000,
        max_file_points: 5_000,
    };
    if let Ok(f) = parse(data, &limits) {
        let mut total = 0;
        for s in &f.sessions {
            for n in &s.nodules {
                for r in &n.rois {
                    assert!(!r.points.is_empty() && r.points.len() <= limits.max_roi_points);
                    assert!(r.z.is_finite());
                    total += r.points.len();
                }
            }
        }
        assert!(total <= limits.max_file_points);
        assert!(!f.series_uid.is_empty());
    }
}
