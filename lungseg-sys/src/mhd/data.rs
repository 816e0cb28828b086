//! Voxel data: which bytes of which files hold it (LOCAL, one file, LIST, pattern; HeaderSize),
//! and decoding them (raw, byte order, zlib/gzip, ASCII) straight into the typed buffer.
//!
//! The output buffer is allocated once, zeroed by the OS, after the size limits have been checked;
//! raw data is read directly into it and inflation writes into it, so a decompression bomb can
//! never make us allocate more than the header's (limited) voxel count.

use super::header::{format_pattern, DataFile, Header};
use super::source::{DataReader, DataSource};
use super::ReadOptions;
use crate::error::{Error, Result};
use crate::volume::{ElementType, PixelData};
use std::io::{BufRead, BufReader, Read};

/// One data file and the part of the output it fills.
struct Chunk {
    name: String,
    /// Where the data starts when it follows the header in the same file (LOCAL).
    local_offset: Option<u64>,
    /// Output byte range.
    out: std::ops::Range<usize>,
}

/// Reads and decodes all voxel data described by `header` (whose file is `header_name`).
/// `samples` was checked against the limits by the caller; the data file count is checked
/// here, before anything is allocated, and the files are named and opened one at a time.
pub(crate) fn read_pixels(
    header: &Header,
    header_name: &str,
    source: &dyn DataSource,
    samples: usize,
    opts: &ReadOptions,
) -> Result<PixelData> {
    let count = data_file_count(header, opts)?;
    let width = header.element_type.size();
    let mut data = alloc_pixels(header.element_type, samples)?;
    let total = samples * width;
    let single = count == 1;
    let out = bytes_mut(&mut data);
    for i in 0..count {
        let chunk = chunk(header, header_name, total, count, i);
        let mut reader = source.open(&chunk.name)?;
        let dst = &mut out[chunk.out.clone()];
        let ctx = || chunk.name.clone();
        if !header.binary_data {
            if header.compressed_data {
                return Err(Error::unsupported(
                    "compressed ASCII data (BinaryData = False, CompressedData = True)",
                ));
            }
            let start = region_start(header, &chunk, reader.len(), None)?;
            let len = reader.len() - start;
            // Generous for any number formatting, but bounded by the voxel count, not the file.
            let cap = opts.max_bytes.min((dst.len() / width) as u64 * 64 + 4096);
            if len > cap {
                return Err(Error::limit(format!(
                    "{}: {len} bytes of ASCII data exceed the limit of {cap}",
                    ctx()
                )));
            }
            // Streamed: memory stays at one buffer however long the text is.
            let text = BufReader::with_capacity(
                1 << 16,
                Region {
                    reader: reader.as_mut(),
                    pos: start,
                    end: start + len,
                },
            );
            decode_ascii(text, header.element_type, dst).map_err(|e| e.context(ctx()))?;
        } else if header.compressed_data {
            let size = if single {
                header.compressed_data_size
            } else {
                None
            };
            let start = region_start(header, &chunk, reader.len(), size)?;
            let available = reader.len() - start;
            let len = match size {
                Some(n) if n > available => {
                    return Err(Error::format(format!(
                        "{}: CompressedDataSize = {n} goes past the end of the file ({available} bytes after the data start)",
                        ctx()
                    )))
                }
                Some(n) => n,
                None => available,
            };
            inflate(reader.as_mut(), start, len, dst).map_err(|e| e.context(ctx()))?;
        } else {
            let start = region_start(header, &chunk, reader.len(), Some(dst.len() as u64))?;
            reader.read_at(start, dst).map_err(|e| {
                Error::format(format!(
                    "{}: too short for {} bytes of {} data from byte {start} ({})",
                    ctx(),
                    dst.len(),
                    header.element_type.met_name(),
                    e.message
                ))
            })?;
        }
    }
    if header.binary_data && header.msb() != cfg!(target_endian = "big") {
        swap_bytes(out, width);
    }
    Ok(data)
}

/// How many data files `header` names, refused before any of them is named or opened when
/// over `opts.max_data_files` (each costs an open and a name) or, for a pattern, when it does
/// not match the slices of DimSize.
fn data_file_count(header: &Header, opts: &ReadOptions) -> Result<usize> {
    let count = header.data_file_count();
    if let DataFile::Pattern {
        pattern,
        min,
        max,
        step,
    } = &header.element_data_file
    {
        let slices = *header.dim_size.last().unwrap_or(&1);
        if count > slices {
            return Err(Error::format(format!(
                "ElementDataFile pattern {pattern} {min} {max} {step} names more than the {slices} slices of DimSize"
            )));
        }
        if count != slices {
            return Err(Error::format(format!(
                "ElementDataFile pattern {pattern} {min} {max} {step} names {count} files, DimSize needs {slices}"
            )));
        }
    }
    match usize::try_from(count) {
        Ok(n) if count <= opts.max_data_files => Ok(n),
        _ => Err(Error::limit(format!(
            "ElementDataFile names {count} data files, more than the limit of {} (max_data_files)",
            opts.max_data_files
        ))),
    }
}

/// Data file `i` of `count` and the output bytes it fills, named only when it is read.
fn chunk(header: &Header, header_name: &str, total: usize, count: usize, i: usize) -> Chunk {
    let each = total / count.max(1);
    let out = i * each..(i + 1) * each;
    let (name, local_offset) = match &header.element_data_file {
        DataFile::Local => (header_name.to_string(), Some(header.data_offset as u64)),
        DataFile::Path(p) => (p.clone(), None),
        DataFile::List { files, .. } => (files[i].clone(), None),
        DataFile::Pattern {
            pattern, min, step, ..
        } => (format_pattern(pattern, min + i as i64 * step), None),
    };
    Chunk {
        name,
        local_offset,
        out,
    }
}

/// Where the data starts in a file of `file_len` bytes. `tail` is the data's byte count when
/// known, needed for `HeaderSize = -1` (data is the last `tail` bytes).
fn region_start(header: &Header, chunk: &Chunk, file_len: u64, tail: Option<u64>) -> Result<u64> {
    let start = match header.header_size {
        // For LOCAL too, HeaderSize counts from the start of the file (MetaIO).
        n if n > 0 => n as u64,
        -1 => {
            let need = tail.ok_or_else(|| {
                Error::format(format!(
                    "{}: HeaderSize = -1 needs the data size, but compressed data has no CompressedDataSize",
                    chunk.name
                ))
            })?;
            file_len.checked_sub(need).ok_or_else(|| {
                Error::format(format!(
                    "{}: HeaderSize = -1 but the file has {file_len} bytes, fewer than the {need} of data",
                    chunk.name
                ))
            })?
        }
        _ => chunk.local_offset.unwrap_or(0),
    };
    if start > file_len {
        return Err(Error::format(format!(
            "{}: data starts at byte {start} (HeaderSize = {}) but the file has {file_len} bytes",
            chunk.name, header.header_size
        )));
    }
    Ok(start)
}

/// Sequential reads of `[pos, end)` of a data file, for the decompressors.
struct Region<'a> {
    reader: &'a mut dyn DataReader,
    pos: u64,
    end: u64,
}

impl Read for Region<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = (self.end - self.pos).min(buf.len() as u64) as usize;
        self.reader
            .read_at(self.pos, &mut buf[..n])
            .map_err(|e| std::io::Error::other(e.message))?;
        self.pos += n as u64;
        Ok(n)
    }
}

/// Inflates a zlib or gzip stream (auto-detected) into exactly `dst`: a stream that is shorter,
/// longer, or fails its checksum is an error.
fn inflate(reader: &mut dyn DataReader, start: u64, len: u64, dst: &mut [u8]) -> Result<()> {
    let mut magic = [0u8; 2];
    if len >= 2 {
        reader.read_at(start, &mut magic)?;
    }
    if magic == [0x1f, 0x8b] {
        let region = BufReader::with_capacity(
            1 << 20,
            Region {
                reader,
                pos: start,
                end: start + len,
            },
        );
        fill(flate2::bufread::GzDecoder::new(region), dst, "gzip")
    } else {
        inflate_zlib(reader, start, len, dst)
    }
}

/// zlib straight through `Decompress` into `dst`: no `Read` layering, large input chunks.
fn inflate_zlib(reader: &mut dyn DataReader, start: u64, len: u64, dst: &mut [u8]) -> Result<()> {
    use flate2::{Decompress, FlushDecompress, Status};
    let corrupt = |e: flate2::DecompressError| Error::format(format!("corrupt zlib stream: {e}"));
    let mut z = Decompress::new(true);
    let mut buf = vec![0u8; len.min(4 << 20) as usize];
    let (mut pos, end) = (start, start + len);
    let mut spare = [0u8; 1];
    loop {
        let n = (end - pos).min(buf.len() as u64) as usize;
        reader.read_at(pos, &mut buf[..n])?;
        pos += n as u64;
        let mut input = &buf[..n];
        loop {
            let (in0, out0) = (z.total_in(), z.total_out() as usize);
            // Once `dst` is full, decode into a 1-byte spare: any output there means "too long".
            let out: &mut [u8] = if out0 < dst.len() {
                &mut dst[out0..]
            } else {
                &mut spare
            };
            let status = z
                .decompress(input, out, FlushDecompress::None)
                .map_err(corrupt)?;
            input = &input[(z.total_in() - in0) as usize..];
            if z.total_out() as usize > dst.len() {
                return Err(Error::format(format!(
                    "zlib stream inflates to more than the expected {} bytes",
                    dst.len()
                )));
            }
            if status == Status::StreamEnd {
                let got = z.total_out() as usize;
                if got < dst.len() {
                    return Err(Error::format(format!(
                        "zlib stream inflates to {got} bytes, expected {}",
                        dst.len()
                    )));
                }
                return Ok(());
            }
            if input.is_empty() {
                break;
            }
            if z.total_in() == in0 && z.total_out() as usize == out0 {
                return Err(Error::format(
                    "corrupt zlib stream: inflation makes no progress",
                ));
            }
        }
        if pos == end {
            let got = z.total_out() as usize;
            return Err(Error::format(format!(
                "zlib stream ends early: inflated {got} bytes of the expected {}",
                dst.len()
            )));
        }
    }
}

fn fill(mut decoder: impl Read, dst: &mut [u8], kind: &str) -> Result<()> {
    let corrupt = |e: std::io::Error| Error::format(format!("corrupt {kind} stream: {e}"));
    let mut filled = 0;
    while filled < dst.len() {
        match decoder.read(&mut dst[filled..]) {
            Ok(0) => {
                return Err(Error::format(format!(
                    "{kind} stream inflates to {filled} bytes, expected {}",
                    dst.len()
                )))
            }
            Ok(n) => filled += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(corrupt(e)),
        }
    }
    // Drive the decoder to the end of the stream so the checksum is verified and extra data noticed.
    let mut extra = [0u8; 1];
    loop {
        match decoder.read(&mut extra) {
            Ok(0) => return Ok(()),
            Ok(_) => {
                return Err(Error::format(format!(
                    "{kind} stream inflates to more than the expected {} bytes",
                    dst.len()
                )))
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(corrupt(e)),
        }
    }
}

/// Longest ASCII value accepted: far more than any number formatting needs, so a file of
/// non-blank bytes is refused at once instead of being collected.
const MAX_ASCII_TOKEN: usize = 256;

/// Whitespace-separated tokens from a stream, one bounded buffer at a time.
struct Tokens<R> {
    input: R,
    token: Vec<u8>,
}

impl<R: BufRead> Tokens<R> {
    /// The next token, `None` at end of input.
    fn next(&mut self, index: usize) -> Result<Option<&[u8]>> {
        self.token.clear();
        loop {
            let avail = self
                .input
                .fill_buf()
                .map_err(|e| Error::io(e.to_string()))?;
            if avail.is_empty() {
                return Ok((!self.token.is_empty()).then_some(&self.token[..]));
            }
            let mut used = 0;
            let mut done = false;
            for &b in avail {
                used += 1;
                if !b.is_ascii_whitespace() {
                    if self.token.len() == MAX_ASCII_TOKEN {
                        return Err(Error::format(format!(
                            "ASCII value {index} is longer than {MAX_ASCII_TOKEN} bytes"
                        )));
                    }
                    self.token.push(b);
                } else if !self.token.is_empty() {
                    done = true;
                    break;
                }
            }
            self.input.consume(used);
            if done {
                return Ok(Some(&self.token[..]));
            }
        }
    }
}

/// `BinaryData = False`: whitespace-separated numbers, converted like MetaIO (through a double,
/// truncated for integer types) but out-of-range values are errors instead of wrapping.
fn decode_ascii(text: impl BufRead, t: ElementType, dst: &mut [u8]) -> Result<()> {
    let width = t.size();
    let want = dst.len() / width;
    let mut tokens = Tokens {
        input: text,
        token: Vec::with_capacity(MAX_ASCII_TOKEN),
    };
    for (i, out) in dst.chunks_exact_mut(width).enumerate() {
        let tok = tokens
            .next(i)?
            .ok_or_else(|| Error::format(format!("ASCII data has {i} values, expected {want}")))?;
        let s = std::str::from_utf8(tok).unwrap_or("");
        let bad = || {
            Error::format(format!(
                "ASCII value {i} {:?} is not a valid {}",
                String::from_utf8_lossy(&tok[..tok.len().min(32)]),
                t.met_name()
            ))
        };
        macro_rules! int {
            ($ty:ty) => {{
                let v: $ty = match s.parse::<$ty>() {
                    Ok(v) => v,
                    Err(_) => {
                        let f: f64 = s.parse().map_err(|_| bad())?;
                        let f = f.trunc();
                        if !(f >= <$ty>::MIN as f64 && f <= <$ty>::MAX as f64) {
                            return Err(bad());
                        }
                        f as $ty
                    }
                };
                out.copy_from_slice(&v.to_ne_bytes());
            }};
        }
        match t {
            ElementType::Char => int!(i8),
            ElementType::UChar => int!(u8),
            ElementType::Short => int!(i16),
            ElementType::UShort => int!(u16),
            ElementType::Int | ElementType::Long => int!(i32),
            ElementType::UInt | ElementType::ULong => int!(u32),
            ElementType::LongLong => int!(i64),
            ElementType::ULongLong => int!(u64),
            ElementType::Float => {
                out.copy_from_slice(&(s.parse::<f64>().map_err(|_| bad())? as f32).to_ne_bytes())
            }
            ElementType::Double => {
                out.copy_from_slice(&s.parse::<f64>().map_err(|_| bad())?.to_ne_bytes())
            }
        }
    }
    Ok(())
}

/// Big-endian to native, in place, a whole word at a time (vectorises).
fn swap_bytes(bytes: &mut [u8], width: usize) {
    match width {
        2 => bytemuck::cast_slice_mut::<u8, u16>(bytes)
            .iter_mut()
            .for_each(|v| *v = v.swap_bytes()),
        4 => bytemuck::cast_slice_mut::<u8, u32>(bytes)
            .iter_mut()
            .for_each(|v| *v = v.swap_bytes()),
        8 => bytemuck::cast_slice_mut::<u8, u64>(bytes)
            .iter_mut()
            .for_each(|v| *v = v.swap_bytes()),
        _ => {}
    }
}

/// A zeroed buffer in the storage type of `t` (MET_LONG → i32), without aborting on OOM.
pub(crate) fn alloc_pixels(t: ElementType, n: usize) -> Result<PixelData> {
    Ok(match t {
        ElementType::Char => PixelData::I8(zeroed(n)?),
        ElementType::UChar => PixelData::U8(zeroed(n)?),
        ElementType::Short => PixelData::I16(zeroed(n)?),
        ElementType::UShort => PixelData::U16(zeroed(n)?),
        ElementType::Int | ElementType::Long => PixelData::I32(zeroed(n)?),
        ElementType::UInt | ElementType::ULong => PixelData::U32(zeroed(n)?),
        ElementType::LongLong => PixelData::I64(zeroed(n)?),
        ElementType::ULongLong => PixelData::U64(zeroed(n)?),
        ElementType::Float => PixelData::F32(zeroed(n)?),
        ElementType::Double => PixelData::F64(zeroed(n)?),
    })
}

/// A zeroed buffer of `n` voxels as fresh pages ([`crate::error::zeroed_vec`]), reporting OOM.
fn zeroed<T: bytemuck::Zeroable>(n: usize) -> Result<Vec<T>> {
    let mut v = crate::error::zeroed_vec::<T>(n)
        .ok_or_else(|| Error::oom(format!("cannot allocate {n} voxels")))?;
    advise_huge_pages(v.as_mut_ptr().cast(), std::mem::size_of_val(v.as_slice()));
    Ok(v)
}

/// Asks Linux for transparent huge pages on a large, not yet touched buffer: filling a 150 MB
/// scan then costs ~75 page faults instead of ~38 000, a third of a raw read's time. Only a hint.
#[cfg(target_os = "linux")]
fn advise_huge_pages(ptr: *mut u8, len: usize) {
    const HUGE: usize = 2 << 20;
    if len < 4 * HUGE {
        return;
    }
    let start = (ptr as usize).next_multiple_of(HUGE);
    let end = (ptr as usize + len) / HUGE * HUGE;
    // SAFETY: [start, end) lies inside the allocation we own; MADV_HUGEPAGE changes no contents.
    unsafe {
        libc::madvise(start as *mut libc::c_void, end - start, libc::MADV_HUGEPAGE);
    }
}

#[cfg(not(target_os = "linux"))]
fn advise_huge_pages(_ptr: *mut u8, _len: usize) {}

fn bytes_mut(data: &mut PixelData) -> &mut [u8] {
    match data {
        PixelData::I8(v) => bytemuck::cast_slice_mut(v),
        PixelData::U8(v) => bytemuck::cast_slice_mut(v),
        PixelData::I16(v) => bytemuck::cast_slice_mut(v),
        PixelData::U16(v) => bytemuck::cast_slice_mut(v),
        PixelData::I32(v) => bytemuck::cast_slice_mut(v),
        PixelData::U32(v) => bytemuck::cast_slice_mut(v),
        PixelData::I64(v) => bytemuck::cast_slice_mut(v),
        PixelData::U64(v) => bytemuck::cast_slice_mut(v),
        PixelData::F32(v) => bytemuck::cast_slice_mut(v),
        PixelData::F64(v) => bytemuck::cast_slice_mut(v),
        PixelData::Borrowed(_) => unreachable!("the reader fills samples it allocated"),
    }
}
