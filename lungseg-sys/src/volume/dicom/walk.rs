//! A bounds check of a DICOM file's element structure before dicom-rs parses it.
//!
//! dicom-rs allocates (and zero-fills) each element's declared length before reading it, so a
//! 200-byte file declaring a 4 GB value would touch 4 GB, and it builds nested sequences
//! recursively, so a file of deeply nested sequences could overflow the stack. This walk
//! visits every element header the parser will visit, in the same encoding, and refuses any
//! declared length past the end of its enclosing item, sequence or file, any unknown VR, and
//! nesting deeper than [`MAX_DEPTH`]. It also finds the transfer syntax and the top-level
//! Pixel Data value, which the reader then takes from the bytes itself.

use crate::error::{Error, Result};
use dicom_core::dictionary::{DataDictionary, DataDictionaryEntry};
use dicom_core::{Tag, VR};
use dicom_dictionary_std::StandardDataDictionary;
use std::ops::Range;

/// Bytes before the `DICM` magic of a Part-10 file.
pub const PREAMBLE: usize = 128;
const MAGIC: &[u8; 4] = b"DICM";
/// Sequences nested deeper than this are refused (real files nest a handful).
pub const MAX_DEPTH: usize = 16;

const UNDEFINED: u32 = 0xFFFF_FFFF;
const ITEM: Tag = Tag(0xFFFE, 0xE000);
const ITEM_END: Tag = Tag(0xFFFE, 0xE00D);
const SEQUENCE_END: Tag = Tag(0xFFFE, 0xE0DD);
const PIXEL_DATA: Tag = Tag(0x7FE0, 0x0010);
const TRANSFER_SYNTAX: Tag = Tag(0x0002, 0x0010);
const META_GROUP_LENGTH: Tag = Tag(0x0002, 0x0000);

/// Whether `bytes` start like a DICOM Part-10 file (preamble, then `DICM`).
pub fn is_dicom(bytes: &[u8]) -> bool {
    bytes.get(PREAMBLE..PREAMBLE + 4) == Some(MAGIC)
}

/// How the data set after the file meta group is encoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encoding {
    ExplicitLittle,
    ImplicitLittle,
}

/// What the walk found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Walk {
    /// Transfer Syntax UID, trailing NUL and spaces removed.
    pub transfer_syntax: String,
    /// Byte range of the top-level Pixel Data value when its length is defined.
    pub pixel_data: Option<Range<usize>>,
    /// Pixel Data is present with an undefined length (encapsulated, compressed frames).
    pub encapsulated: bool,
}

/// The encoding of a transfer syntax's data set; `None` for those this reader cannot walk
/// (big endian, deflated).
pub fn encoding_of(ts: &str) -> Option<Encoding> {
    match ts {
        "1.2.840.10008.1.2" => Some(Encoding::ImplicitLittle),
        // Explicit VR Big Endian (retired) and the deflated syntaxes.
        "1.2.840.10008.1.2.2" | "1.2.840.10008.1.2.1.99" | "1.2.840.10008.1.2.4.95" => None,
        // Every other transfer syntax encodes the data set as Explicit VR Little Endian.
        _ => Some(Encoding::ExplicitLittle),
    }
}

/// Walks a Part-10 file (`is_dicom` must hold).
pub fn walk(bytes: &[u8]) -> Result<Walk> {
    let mut w = Walker {
        b: bytes,
        pos: PREAMBLE + MAGIC.len(),
        enc: Encoding::ExplicitLittle,
        depth: 0,
    };
    let transfer_syntax = w.meta_group()?;
    w.enc = encoding_of(&transfer_syntax).ok_or_else(|| {
        Error::unsupported(format!(
            "transfer syntax {transfer_syntax} is not supported (big endian or deflated data set)"
        ))
    })?;
    let mut found = Walk {
        transfer_syntax,
        pixel_data: None,
        encapsulated: false,
    };
    w.data_set(bytes.len(), Some(&mut found))?;
    Ok(found)
}

/// One element header.
struct Header {
    tag: Tag,
    vr: Option<VR>,
    len: u32,
}

struct Walker<'a> {
    b: &'a [u8],
    pos: usize,
    enc: Encoding,
    depth: usize,
}

impl Walker<'_> {
    fn bytes<const N: usize>(&mut self) -> Result<[u8; N]> {
        let s = self
            .b
            .get(self.pos..self.pos + N)
            .ok_or_else(|| Error::format(format!("truncated at byte {}", self.pos)))?;
        self.pos += N;
        Ok(s.try_into().expect("N bytes"))
    }

    fn u16(&mut self) -> Result<u16> {
        Ok(u16::from_le_bytes(self.bytes()?))
    }

    fn u32(&mut self) -> Result<u32> {
        Ok(u32::from_le_bytes(self.bytes()?))
    }

    fn header(&mut self, enc: Encoding) -> Result<Header> {
        let tag = Tag(self.u16()?, self.u16()?);
        if tag.0 == 0xFFFE {
            return Ok(Header {
                tag,
                vr: None,
                len: self.u32()?,
            });
        }
        match enc {
            Encoding::ImplicitLittle => Ok(Header {
                tag,
                vr: Some(implicit_vr(tag)),
                len: self.u32()?,
            }),
            Encoding::ExplicitLittle => {
                let code = self.bytes::<2>()?;
                let vr = VR::from_binary(code).ok_or_else(|| {
                    Error::format(format!(
                        "element {tag} at byte {} has an unknown VR {:?}",
                        self.pos - 6,
                        String::from_utf8_lossy(&code)
                    ))
                })?;
                let len = if short_length(vr) {
                    u32::from(self.u16()?)
                } else {
                    self.bytes::<2>()?;
                    self.u32()?
                };
                Ok(Header {
                    tag,
                    vr: Some(vr),
                    len,
                })
            }
        }
    }

    /// Skips a defined-length value, refusing one that ends past `end`.
    fn value(&mut self, tag: Tag, len: u32, end: usize) -> Result<Range<usize>> {
        let start = self.pos;
        match start.checked_add(len as usize) {
            Some(stop) if stop <= end => {
                self.pos = stop;
                Ok(start..stop)
            }
            _ => Err(Error::format(format!(
                "element {tag} at byte {start} declares {len} bytes, only {} remain",
                end.saturating_sub(start)
            ))),
        }
    }

    /// The file meta group (always Explicit VR Little Endian); returns the transfer syntax.
    /// The group must start with its length and end exactly where that length says, as
    /// dicom-rs reads it by that length.
    fn meta_group(&mut self) -> Result<String> {
        let first = self.header(Encoding::ExplicitLittle)?;
        if first.tag != META_GROUP_LENGTH || first.len != 4 {
            return Err(Error::format(
                "the file meta group does not start with its group length (0002,0000)",
            ));
        }
        let group_len = self.u32()? as usize;
        let end = self
            .pos
            .checked_add(group_len)
            .filter(|&e| e <= self.b.len())
            .ok_or_else(|| {
                Error::format(format!(
                    "file meta group length {group_len} runs past the end of the file"
                ))
            })?;
        let mut ts = None;
        while self.pos < end {
            let h = self.header(Encoding::ExplicitLittle)?;
            if h.tag.0 != 0x0002 || h.len == UNDEFINED {
                return Err(Error::format(format!(
                    "element {} inside the file meta group",
                    h.tag
                )));
            }
            let r = self.value(h.tag, h.len, end)?;
            if h.tag == TRANSFER_SYNTAX {
                ts = Some(trimmed(&self.b[r]));
            }
        }
        ts.ok_or_else(|| {
            Error::format("the file meta group has no Transfer Syntax UID (0002,0010)")
        })
    }

    /// Elements up to `end` or an item delimiter; records top-level Pixel Data in `found`.
    fn data_set(&mut self, end: usize, mut found: Option<&mut Walk>) -> Result<()> {
        while self.pos < end {
            let h = self.header(self.enc)?;
            if h.tag == ITEM_END {
                if found.is_some() {
                    // dicom-rs skips a stray item delimiter at the top level.
                    continue;
                }
                return Ok(());
            }
            if h.tag.0 == 0xFFFE {
                return Err(Error::format(format!(
                    "unexpected {} at byte {} inside a data set",
                    h.tag,
                    self.pos - 8
                )));
            }
            if h.tag == PIXEL_DATA {
                if let Some(f) = found.as_deref_mut() {
                    // dicom-rs stops before Pixel Data (read_until): nothing after it is parsed.
                    if h.len == UNDEFINED {
                        f.encapsulated = true;
                    } else {
                        f.pixel_data = Some(self.value(h.tag, h.len, end)?);
                    }
                    return Ok(());
                }
            }
            if h.vr == Some(VR::SQ) || h.len == UNDEFINED {
                let fragments = h.tag == PIXEL_DATA && h.len == UNDEFINED;
                self.sequence(h.tag, h.len, end, fragments)?;
            } else {
                whole_items(&h)?;
                self.value(h.tag, h.len, end)?;
            }
        }
        Ok(())
    }

    /// Items of a sequence (or Pixel Data fragments) up to its delimiter or defined end.
    fn sequence(&mut self, tag: Tag, len: u32, outer: usize, fragments: bool) -> Result<()> {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            return Err(Error::format(format!(
                "sequence {tag} nests deeper than {MAX_DEPTH} levels"
            )));
        }
        let end = if len == UNDEFINED {
            outer
        } else {
            let r = self.value(tag, len, outer)?;
            self.pos = r.start;
            r.end
        };
        loop {
            if len != UNDEFINED && self.pos >= end {
                break;
            }
            let h = self.header(self.enc)?;
            match h.tag {
                SEQUENCE_END if len == UNDEFINED => break,
                ITEM if fragments || h.len != UNDEFINED => {
                    let item = self.value(h.tag, h.len, end)?;
                    if !fragments {
                        self.pos = item.start;
                        self.data_set(item.end, None)?;
                        self.pos = item.end;
                    }
                }
                ITEM => self.data_set(end, None)?,
                other => {
                    return Err(Error::format(format!(
                        "sequence {tag} holds {other} at byte {} where an item was expected",
                        self.pos - 8
                    )))
                }
            }
        }
        self.depth -= 1;
        Ok(())
    }
}

/// The VR dicom-rs gives an element in Implicit VR Little Endian: Pixel Data and overlay data
/// are OW, others as the standard dictionary says, UN when unknown.
fn implicit_vr(tag: Tag) -> VR {
    if tag == PIXEL_DATA || (tag.0 >> 8 == 0x60 && tag.1 == 0x3000) {
        return VR::OW;
    }
    StandardDataDictionary
        .by_tag(tag)
        .map(|e| e.vr().relaxed())
        .unwrap_or(VR::UN)
}

/// Refuses a binary value whose length is not a whole number of its items: dicom-rs reads
/// `length / item size` items and goes on from there, out of step with the file (a 2-byte
/// `SL` made it read the next header 2 bytes early, as a 4 GB `UN`).
fn whole_items(h: &Header) -> Result<()> {
    use VR::*;
    let size = match h.vr {
        Some(SS | US | OW) => 2,
        Some(AT | FL | OF | OL | SL | UL) => 4,
        Some(FD | OD | OV | SV | UV) => 8,
        _ => 1,
    };
    if h.len % size != 0 {
        return Err(Error::format(format!(
            "element {} ({}) has {} bytes, not a multiple of {size}",
            h.tag,
            h.vr.map_or("?", |v| v.to_string()),
            h.len
        )));
    }
    Ok(())
}

/// VRs with a 16-bit length field in explicit VR (PS3.5 7.1.2).
fn short_length(vr: VR) -> bool {
    use VR::*;
    matches!(
        vr,
        AE | AS
            | AT
            | CS
            | DA
            | DS
            | DT
            | FL
            | FD
            | IS
            | LO
            | LT
            | PN
            | SH
            | SL
            | SS
            | ST
            | TM
            | UI
            | UL
            | US
    )
}

/// A UI/CS value as text: NUL and space padding removed.
pub fn trimmed(b: &[u8]) -> String {
    String::from_utf8_lossy(b)
        .trim_end_matches(['\0', ' '])
        .trim_start()
        .to_string()
}
