//! The MetaImage header: `Key = Value` lines as MetaIO reads them, into a [`Header`] with every
//! field ITK understands plus the keys it does not (kept in file order, last duplicate wins).
//!
//! Rules (see the MetaImage notes): `=` or `:` separates; keys are case-sensitive; LF or CRLF;
//! numeric lists may continue on the following lines; `ElementDataFile` ends the header (for
//! `LIST` the file names follow it, one per line).

use crate::error::{Error, Result};
use crate::volume::ElementType;
use std::collections::HashMap;

/// MetaIO refuses more axes than this; it also bounds the `n × n` matrix keys.
pub const MAX_NDIMS: usize = 10;

/// Longest pattern or file name accepted in `ElementDataFile` (ITK overflows at 80 bytes).
pub const MAX_NAME_LEN: usize = 4096;

/// Where the voxel bytes live, as `ElementDataFile` says.
#[derive(Debug, Clone, PartialEq)]
pub enum DataFile {
    /// Right after the header (`.mha`), from byte [`Header::data_offset`] of the header file.
    Local,
    /// One file, relative to the header's folder.
    Path(String),
    /// `LIST [kD]`: files of `file_ndims` axes each, names on the lines after the header.
    List {
        file_ndims: usize,
        files: Vec<String>,
    },
    /// `name%03d.raw min max step`: one file per slice of the last axis.
    Pattern {
        pattern: String,
        min: i64,
        max: i64,
        step: i64,
    },
}

/// Every header field MetaIO/ITK interprets, plus the unknown keys.
///
/// Lists are kept as written; precedence between synonyms is applied by the accessors
/// ([`Header::origin`], [`Header::direction_values`], [`Header::spacing`], [`Header::msb`]).
#[derive(Debug, Clone, PartialEq)]
pub struct Header {
    pub object_type: Option<String>,
    pub ndims: usize,
    pub dim_size: Vec<u64>,
    pub element_spacing: Option<Vec<f64>>,
    pub element_size: Option<Vec<f64>>,
    pub offset: Option<Vec<f64>>,
    pub position: Option<Vec<f64>>,
    pub origin: Option<Vec<f64>>,
    pub transform_matrix: Option<Vec<f64>>,
    pub rotation: Option<Vec<f64>>,
    pub orientation: Option<Vec<f64>>,
    pub center_of_rotation: Option<Vec<f64>>,
    pub anatomical_orientation: Option<String>,
    pub binary_data: bool,
    pub binary_data_byte_order_msb: Option<bool>,
    pub element_byte_order_msb: Option<bool>,
    pub compressed_data: bool,
    pub compressed_data_size: Option<u64>,
    pub header_size: i64,
    pub element_number_of_channels: usize,
    pub element_type: ElementType,
    pub element_data_file: DataFile,
    /// Byte offset just past the `ElementDataFile` line: where `LOCAL` data starts.
    pub data_offset: usize,
    /// Keys not interpreted here (informational MetaIO keys included), in file order.
    pub extra: Vec<(String, String)>,
}

impl Header {
    /// Origin with MetaIO's precedence: `Origin` > `Position` > `Offset`; zeros if absent.
    pub fn origin(&self) -> Vec<f64> {
        self.origin
            .clone()
            .or_else(|| self.position.clone())
            .or_else(|| self.offset.clone())
            .unwrap_or_else(|| vec![0.0; self.ndims])
    }

    /// Direction values as in the file (`TransformMatrix` > `Rotation` > `Orientation`), identity if
    /// absent. Row `i` of the file's matrix is the direction of axis `i` (ITK `D[r][c] = TM[c*N + r]`).
    pub fn direction_values(&self) -> Vec<f64> {
        let n = self.ndims;
        self.transform_matrix
            .clone()
            .or_else(|| self.rotation.clone())
            .or_else(|| self.orientation.clone())
            .unwrap_or_else(|| {
                (0..n * n)
                    .map(|i| if i % (n + 1) == 0 { 1.0 } else { 0.0 })
                    .collect()
            })
    }

    /// `ElementSpacing`, else `ElementSize`, else ones.
    pub fn spacing(&self) -> Vec<f64> {
        self.element_spacing
            .clone()
            .or_else(|| self.element_size.clone())
            .unwrap_or_else(|| vec![1.0; self.ndims])
    }

    /// How many data files `ElementDataFile` names (a pattern's range, whatever DimSize says).
    pub fn data_file_count(&self) -> u64 {
        match &self.element_data_file {
            DataFile::Local | DataFile::Path(_) => 1,
            DataFile::List { files, .. } => files.len() as u64,
            // |min|, |max| < 2^40 and step > 0 (checked when parsed): no overflow.
            DataFile::Pattern { min, max, step, .. } if max >= min => {
                ((max - min) / step + 1) as u64
            }
            DataFile::Pattern { .. } => 0,
        }
    }

    /// Big-endian data? `BinaryDataByteOrderMSB` wins over `ElementByteOrderMSB`; default little.
    pub fn msb(&self) -> bool {
        self.binary_data_byte_order_msb
            .or(self.element_byte_order_msb)
            .unwrap_or(false)
    }
}

/// Parses a header. `bytes` may continue past the header (a whole `.mha`): parsing stops at the
/// `ElementDataFile` line (after the `LIST` names). A `LIST` of more than
/// [`super::DEFAULT_MAX_DATA_FILES`] files is refused.
pub fn parse_header(bytes: &[u8]) -> Result<Header> {
    parse_header_with(bytes, super::DEFAULT_MAX_DATA_FILES)
}

/// [`parse_header`], refusing (`Limit`) a `LIST` of more than `max_data_files` names before
/// reading any of them.
pub fn parse_header_with(bytes: &[u8], max_data_files: u64) -> Result<Header> {
    let mut p = Parser {
        lines: Lines {
            bytes,
            pos: 0,
            line_no: 0,
        },
        fields: Fields::default(),
        max_data_files,
    };
    p.run()
}

/// Header fields while parsing; `None` = not given.
#[derive(Default)]
struct Fields {
    object_type: Option<String>,
    ndims: Option<usize>,
    dim_size: Option<Vec<u64>>,
    element_spacing: Option<Vec<f64>>,
    element_size: Option<Vec<f64>>,
    offset: Option<Vec<f64>>,
    position: Option<Vec<f64>>,
    origin: Option<Vec<f64>>,
    transform_matrix: Option<Vec<f64>>,
    rotation: Option<Vec<f64>>,
    orientation: Option<Vec<f64>>,
    center_of_rotation: Option<Vec<f64>>,
    anatomical_orientation: Option<String>,
    binary_data: Option<bool>,
    binary_data_byte_order_msb: Option<bool>,
    element_byte_order_msb: Option<bool>,
    compressed_data: Option<bool>,
    compressed_data_size: Option<u64>,
    header_size: Option<i64>,
    element_number_of_channels: Option<usize>,
    element_type: Option<ElementType>,
    extra: Vec<(String, String)>,
    /// Position of each key in `extra`: duplicates are found without a scan per key.
    extra_index: HashMap<String, usize>,
}

impl Fields {
    /// NDims may have changed after a list was read: every list must fit the final NDims.
    fn check_list_lengths(&self, ndims: usize, dim_len: usize) -> Result<()> {
        let lists = [
            ("DimSize", Some(dim_len), ndims),
            (
                "ElementSpacing",
                self.element_spacing.as_ref().map(Vec::len),
                ndims,
            ),
            (
                "ElementSize",
                self.element_size.as_ref().map(Vec::len),
                ndims,
            ),
            ("Offset", self.offset.as_ref().map(Vec::len), ndims),
            ("Position", self.position.as_ref().map(Vec::len), ndims),
            ("Origin", self.origin.as_ref().map(Vec::len), ndims),
            (
                "CenterOfRotation",
                self.center_of_rotation.as_ref().map(Vec::len),
                ndims,
            ),
            (
                "TransformMatrix",
                self.transform_matrix.as_ref().map(Vec::len),
                ndims * ndims,
            ),
            (
                "Rotation",
                self.rotation.as_ref().map(Vec::len),
                ndims * ndims,
            ),
            (
                "Orientation",
                self.orientation.as_ref().map(Vec::len),
                ndims * ndims,
            ),
        ];
        for (key, len, want) in lists {
            if let Some(len) = len.filter(|&l| l != want) {
                return Err(Error::format(format!(
                    "{key} has {len} values but the final NDims = {ndims} needs {want}"
                )));
            }
        }
        Ok(())
    }
}

/// Splits the input into lines (LF or CRLF), remembering byte positions and line numbers.
struct Lines<'a> {
    bytes: &'a [u8],
    pos: usize,
    line_no: usize,
}

impl<'a> Lines<'a> {
    fn next_line(&mut self) -> Option<&'a [u8]> {
        if self.pos >= self.bytes.len() {
            return None;
        }
        let rest = &self.bytes[self.pos..];
        let (line, advance) = match rest.iter().position(|&b| b == b'\n') {
            Some(i) => (&rest[..i], i + 1),
            None => (rest, rest.len()),
        };
        self.pos += advance;
        self.line_no += 1;
        Some(line.strip_suffix(b"\r").unwrap_or(line))
    }
}

struct Parser<'a> {
    lines: Lines<'a>,
    fields: Fields,
    max_data_files: u64,
}

/// Which numbers a list key holds and how many, relative to NDims.
#[derive(Clone, Copy)]
enum ListLen {
    N,
    NxN,
}

impl<'a> Parser<'a> {
    fn run(&mut self) -> Result<Header> {
        while let Some(raw) = self.lines.next_line() {
            let line_no = self.lines.line_no;
            let line = String::from_utf8_lossy(raw);
            if line.trim().is_empty() {
                continue;
            }
            let Some(sep) = line.find(['=', ':']) else {
                return Err(Error::format(format!(
                    "MetaImage header line {line_no} has no '=' or ':': {:?}",
                    truncate(&line)
                )));
            };
            let key = line[..sep].trim();
            let value = line[sep + 1..].trim();
            if key.is_empty() {
                return Err(Error::format(format!(
                    "MetaImage header line {line_no} has an empty key"
                )));
            }
            if key == "ElementDataFile" {
                // A file name must be exact bytes: refuse what lossy decoding would change.
                let value = std::str::from_utf8(raw)
                    .map_err(|_| Error::format("ElementDataFile is not valid UTF-8"))?;
                let value = value[value.find(['=', ':']).unwrap_or(0) + 1..].trim();
                return self.finish(value);
            }
            self.field(key, value, line_no)?;
        }
        Err(Error::format(
            "MetaImage header has no ElementDataFile line",
        ))
    }

    fn field(&mut self, key: &str, value: &str, line_no: usize) -> Result<()> {
        let f = &mut self.fields;
        match key {
            "ObjectType" => f.object_type = Some(value.to_string()),
            "NDims" => {
                let n: i64 = value.parse().map_err(|_| {
                    Error::format(format!(
                        "NDims = {:?} is not an integer (line {line_no})",
                        truncate(value)
                    ))
                })?;
                if n <= 0 {
                    return Err(Error::format(format!("NDims = {n} must be positive")));
                }
                if n as u64 > MAX_NDIMS as u64 {
                    return Err(Error::unsupported(format!(
                        "NDims = {n}: MetaImage allows at most {MAX_NDIMS}"
                    )));
                }
                f.ndims = Some(n as usize);
            }
            "DimSize" => {
                let v = self.list(key, value, ListLen::N)?;
                let mut dims = Vec::with_capacity(v.len());
                for t in v {
                    if t.starts_with('-') && t[1..].bytes().all(|b| b.is_ascii_digit()) {
                        return Err(Error::format(format!(
                            "DimSize value {} is negative",
                            truncate(&t)
                        )));
                    }
                    dims.push(t.parse().map_err(|_| {
                        Error::format(format!(
                            "DimSize value {:?} is not an integer",
                            truncate(&t)
                        ))
                    })?);
                }
                self.fields.dim_size = Some(dims);
            }
            "ElementSpacing" => {
                self.fields.element_spacing = Some(self.floats(key, value, ListLen::N)?)
            }
            "ElementSize" => {
                self.fields.element_size = Some(self.floats(key, value, ListLen::N)?)
            }
            "Offset" => self.fields.offset = Some(self.floats(key, value, ListLen::N)?),
            "Position" => self.fields.position = Some(self.floats(key, value, ListLen::N)?),
            "Origin" => self.fields.origin = Some(self.floats(key, value, ListLen::N)?),
            "CenterOfRotation" => {
                self.fields.center_of_rotation = Some(self.floats(key, value, ListLen::N)?)
            }
            "TransformMatrix" => {
                self.fields.transform_matrix = Some(self.floats(key, value, ListLen::NxN)?)
            }
            "Rotation" => self.fields.rotation = Some(self.floats(key, value, ListLen::NxN)?),
            "Orientation" => {
                self.fields.orientation = Some(self.floats(key, value, ListLen::NxN)?)
            }
            "AnatomicalOrientation" => f.anatomical_orientation = Some(value.to_string()),
            "BinaryData" => f.binary_data = Some(boolean(value)),
            "BinaryDataByteOrderMSB" => f.binary_data_byte_order_msb = Some(boolean(value)),
            "ElementByteOrderMSB" => f.element_byte_order_msb = Some(boolean(value)),
            "CompressedData" => f.compressed_data = Some(boolean(value)),
            "CompressedDataSize" => {
                let n: i64 = value.parse().map_err(|_| {
                    Error::format(format!(
                        "CompressedDataSize = {:?} is not an integer",
                        truncate(value)
                    ))
                })?;
                if n < 0 {
                    return Err(Error::format(format!(
                        "CompressedDataSize = {n} is negative"
                    )));
                }
                // 0 means "to the end of the file", as in MetaIO.
                f.compressed_data_size = (n > 0).then_some(n as u64);
            }
            "HeaderSize" => {
                let n: i64 = value.parse().map_err(|_| {
                    Error::format(format!(
                        "HeaderSize = {:?} is not an integer",
                        truncate(value)
                    ))
                })?;
                f.header_size = Some(n);
            }
            "ElementNumberOfChannels" => {
                let n: i64 = value.parse().map_err(|_| {
                    Error::format(format!(
                        "ElementNumberOfChannels = {:?} is not an integer",
                        truncate(value)
                    ))
                })?;
                if n < 1 {
                    return Err(Error::format(format!(
                        "ElementNumberOfChannels = {n} must be at least 1"
                    )));
                }
                f.element_number_of_channels = Some(usize::try_from(n).map_err(|_| {
                    Error::limit(format!("ElementNumberOfChannels = {n} is too large"))
                })?);
            }
            "ElementType" => f.element_type = Some(element_type(value)?),
            _ => {
                // Duplicates: the last value wins but the first position is kept.
                match f.extra_index.get(key) {
                    Some(&i) => f.extra[i].1 = value.to_string(),
                    None => {
                        f.extra_index.insert(key.to_string(), f.extra.len());
                        f.extra.push((key.to_string(), value.to_string()));
                    }
                }
            }
        }
        Ok(())
    }

    /// The tokens of a list key; reads further lines until NDims (or NDims²) values are found.
    fn list(&mut self, key: &str, value: &str, len: ListLen) -> Result<Vec<String>> {
        let n = self
            .fields
            .ndims
            .ok_or_else(|| Error::format(format!("{key} appears before NDims")))?;
        let want = match len {
            ListLen::N => n,
            ListLen::NxN => n * n,
        };
        let mut tokens: Vec<String> = value.split_whitespace().map(str::to_string).collect();
        while tokens.len() < want {
            let Some(raw) = self.lines.next_line() else {
                return Err(Error::format(format!(
                    "{key} has {} values, NDims = {n} needs {want}",
                    tokens.len()
                )));
            };
            let line = String::from_utf8_lossy(raw);
            if line.contains(['=', ':']) {
                return Err(Error::format(format!(
                    "{key} has {} values, NDims = {n} needs {want} (line {} is {:?})",
                    tokens.len(),
                    self.lines.line_no,
                    truncate(&line)
                )));
            }
            tokens.extend(line.split_whitespace().map(str::to_string));
        }
        if tokens.len() > want {
            return Err(Error::format(format!(
                "{key} has {} values, NDims = {n} needs {want}",
                tokens.len()
            )));
        }
        Ok(tokens)
    }

    fn floats(&mut self, key: &str, value: &str, len: ListLen) -> Result<Vec<f64>> {
        self.list(key, value, len)?
            .iter()
            .map(|t| {
                t.parse::<f64>().map_err(|_| {
                    Error::format(format!("{key} value {:?} is not a number", truncate(t)))
                })
            })
            .collect()
    }

    /// Validates what is required and reads what follows `ElementDataFile` (LIST names).
    fn finish(&mut self, value: &str) -> Result<Header> {
        let mut f = std::mem::take(&mut self.fields);
        let ndims = f
            .ndims
            .ok_or_else(|| Error::format("MetaImage header has no NDims"))?;
        let dim_size = f
            .dim_size
            .take()
            .ok_or_else(|| Error::format("MetaImage header has no DimSize"))?;
        let element_type = f
            .element_type
            .ok_or_else(|| Error::format("MetaImage header has no ElementType"))?;
        f.check_list_lengths(ndims, dim_size.len())?;
        let element_data_file = self.element_data_file(value, ndims, &dim_size)?;
        let data_offset = if element_data_file == DataFile::Local {
            self.lines.pos
        } else {
            0
        };
        Ok(Header {
            object_type: f.object_type,
            ndims,
            dim_size,
            element_spacing: f.element_spacing,
            element_size: f.element_size,
            offset: f.offset,
            position: f.position,
            origin: f.origin,
            transform_matrix: f.transform_matrix,
            rotation: f.rotation,
            orientation: f.orientation,
            center_of_rotation: f.center_of_rotation,
            anatomical_orientation: f.anatomical_orientation,
            binary_data: f.binary_data.unwrap_or(true),
            binary_data_byte_order_msb: f.binary_data_byte_order_msb,
            element_byte_order_msb: f.element_byte_order_msb,
            compressed_data: f.compressed_data.unwrap_or(false),
            compressed_data_size: f.compressed_data_size,
            header_size: f.header_size.unwrap_or(0),
            element_number_of_channels: f.element_number_of_channels.unwrap_or(1),
            element_type,
            element_data_file,
            data_offset,
            extra: f.extra,
        })
    }

    /// The `ElementDataFile` value (the header's last key): `LOCAL`, a `LIST`, a `%d` pattern or
    /// one file name.
    fn element_data_file(
        &mut self,
        value: &str,
        ndims: usize,
        dim_size: &[u64],
    ) -> Result<DataFile> {
        if value.is_empty() {
            return Err(Error::format("ElementDataFile is empty"));
        }
        if value.len() > MAX_NAME_LEN {
            return Err(Error::format(format!(
                "ElementDataFile is {} bytes long (at most {MAX_NAME_LEN})",
                value.len()
            )));
        }
        Ok(if matches!(value, "LOCAL" | "Local" | "local") {
            DataFile::Local
        } else if value.starts_with("LIST") {
            self.list_files(value, ndims, dim_size)?
        } else if value.contains('%') {
            pattern(value, dim_size)?
        } else {
            DataFile::Path(value.to_string())
        })
    }

    /// `LIST` or `LIST kD`: as many names as the axes above `k` hold slices, one per line.
    fn list_files(&mut self, value: &str, ndims: usize, dims: &[u64]) -> Result<DataFile> {
        let spec = value["LIST".len()..].trim();
        let file_ndims = if spec.is_empty() {
            ndims.saturating_sub(1).max(1)
        } else {
            spec.strip_suffix(['D', 'd'])
                .and_then(|k| k.trim().parse::<usize>().ok())
                .filter(|k| (1..=ndims).contains(k))
                .ok_or_else(|| {
                    Error::format(format!(
                        "ElementDataFile = {value:?}: expected LIST or LIST kD with 1 <= k <= NDims = {ndims}"
                    ))
                })?
        };
        let count = dims[file_ndims..]
            .iter()
            .try_fold(1u64, |a, &d| a.checked_mul(d));
        let count = count.ok_or_else(|| {
            Error::limit(format!("DimSize {dims:?} overflows the LIST file count"))
        })?;
        if count > self.max_data_files {
            return Err(Error::limit(format!(
                "ElementDataFile = {value}: DimSize {dims:?} needs {count} data files, more than the limit of {} (max_data_files)",
                self.max_data_files
            )));
        }
        let mut files = Vec::new();
        while (files.len() as u64) < count {
            let Some(raw) = self.lines.next_line() else {
                break;
            };
            let name = std::str::from_utf8(raw)
                .map_err(|_| {
                    Error::format(format!(
                        "LIST file name {} is not valid UTF-8",
                        files.len() + 1
                    ))
                })?
                .trim();
            if name.is_empty() {
                continue;
            }
            if name.len() > MAX_NAME_LEN {
                return Err(Error::format(format!(
                    "LIST file name {} is too long",
                    files.len() + 1
                )));
            }
            files.push(name.to_string());
        }
        if (files.len() as u64) < count {
            return Err(Error::format(format!(
                "ElementDataFile = {value}: lists {} files, DimSize {dims:?} needs {count}",
                files.len()
            )));
        }
        Ok(DataFile::List { file_ndims, files })
    }
}

/// `name%03d.raw [min [max [step]]]` with MetaIO's defaults; only one `%[0][width]d`.
fn pattern(value: &str, dims: &[u64]) -> Result<DataFile> {
    let words: Vec<&str> = value.split_whitespace().collect();
    let pattern = words[0].to_string();
    check_pattern(&pattern)?;
    if words.len() > 4 {
        return Err(Error::format(format!(
            "ElementDataFile pattern {value:?} has more than 3 numbers"
        )));
    }
    let last = i64::try_from(*dims.last().unwrap_or(&0)).unwrap_or(i64::MAX);
    let num = |i: usize, what: &str| -> Result<i64> {
        words[i]
            .parse::<i64>()
            .ok()
            .filter(|v| v.unsigned_abs() < 1 << 40)
            .ok_or_else(|| {
                Error::format(format!(
                    "ElementDataFile pattern {what} {:?} is not an integer",
                    words[i]
                ))
            })
    };
    let min = if words.len() > 1 { num(1, "min")? } else { 1 };
    let mut max = min.saturating_add(last).saturating_sub(1);
    let mut step = 1;
    if words.len() > 2 {
        max = num(2, "max")?;
        step = if last > 0 { (max - min) / last } else { 0 };
    }
    if words.len() > 3 {
        step = num(3, "step")?;
    }
    if step <= 0 {
        return Err(Error::format(format!(
            "ElementDataFile pattern {value:?} has step {step}: it must be positive"
        )));
    }
    Ok(DataFile::Pattern {
        pattern,
        min,
        max,
        step,
    })
}

/// Exactly one integer conversion, `%d`/`%i` with optional `0` flag and width; `%%` is a literal.
pub(crate) fn check_pattern(pattern: &str) -> Result<()> {
    let bad = || {
        Error::unsupported(format!(
            "ElementDataFile pattern {pattern:?}: only one integer conversion like %d or %03d is supported"
        ))
    };
    let mut conversions = 0;
    let mut it = pattern.chars().peekable();
    while let Some(c) = it.next() {
        if c != '%' {
            continue;
        }
        if it.peek() == Some(&'%') {
            it.next();
            continue;
        }
        let mut width = String::new();
        while let Some(&d) = it.peek().filter(|d| d.is_ascii_digit()) {
            width.push(d);
            it.next();
        }
        if width.len() > 2 || !matches!(it.next(), Some('d' | 'i')) {
            return Err(bad());
        }
        conversions += 1;
    }
    if conversions != 1 {
        return Err(bad());
    }
    Ok(())
}

/// Expands a pattern checked by [`check_pattern`] for index `i`.
pub(crate) fn format_pattern(pattern: &str, i: i64) -> String {
    let mut out = String::with_capacity(pattern.len() + 8);
    let mut it = pattern.chars().peekable();
    while let Some(c) = it.next() {
        if c != '%' {
            out.push(c);
            continue;
        }
        if it.peek() == Some(&'%') {
            it.next();
            out.push('%');
            continue;
        }
        let mut spec = String::new();
        while let Some(&d) = it.peek().filter(|d| d.is_ascii_digit()) {
            spec.push(d);
            it.next();
        }
        it.next(); // the d/i
        let zero = spec.starts_with('0');
        let width: usize = spec.parse().unwrap_or(0);
        if zero {
            // printf pads after the sign: -01
            let digits = i.unsigned_abs().to_string();
            let sign = if i < 0 { "-" } else { "" };
            let pad = width.saturating_sub(digits.len() + sign.len());
            out.push_str(sign);
            out.extend(std::iter::repeat_n('0', pad));
            out.push_str(&digits);
        } else {
            out.push_str(&format!("{i:>width$}"));
        }
    }
    out
}

fn boolean(value: &str) -> bool {
    matches!(value.as_bytes().first(), Some(b'T' | b't' | b'1'))
}

fn element_type(value: &str) -> Result<ElementType> {
    if let Some(t) = ElementType::from_met_name(value) {
        return Ok(t);
    }
    const NON_NUMERIC: [&str; 5] = [
        "MET_NONE",
        "MET_ASCII_CHAR",
        "MET_STRING",
        "MET_FLOAT_MATRIX",
        "MET_OTHER",
    ];
    if NON_NUMERIC.contains(&value)
        || value
            .strip_suffix("_ARRAY")
            .is_some_and(|b| NON_NUMERIC.contains(&b))
    {
        return Err(Error::unsupported(format!(
            "ElementType = {value} is not a numeric voxel type"
        )));
    }
    Err(Error::format(format!(
        "ElementType = {:?} is not a MetaImage type",
        truncate(value)
    )))
}

/// Keeps error messages short when a fuzzer or a broken file hands us megabyte lines.
fn truncate(s: &str) -> String {
    match s.char_indices().nth(64) {
        Some((i, _)) => format!("{}…", &s[..i]),
        None => s.to_string(),
    }
}
