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

/// Implicit VR Little Endian.
pub const IMPLICIT_LE: &str = "1.2.840.10008.1.2";
/// Explicit VR Little Endian.
pub const EXPLICIT_LE: &str = "1.2.840.10008.1.2.1";
/// Explicit VR Big Endian (retired).
pub const EXPLICIT_BE: &str = "1.2.840.10008.1.2.2";
/// Deflated Explicit VR Little Endian.
pub const DEFLATED_LE: &str = "1.2.840.10008.1.2.1.99";
/// JPIP Referenced Deflate.
const JPIP_DEFLATE: &str = "1.2.840.10008.1.2.4.95";

/// The encoding of a transfer syntax's data set; `None` for those this reader cannot walk
/// (big endian, deflated).
pub fn encoding_of(ts: &str) -> Option<Encoding> {
    match ts {
        IMPLICIT_LE => Some(Encoding::ImplicitLittle),
        EXPLICIT_BE | DEFLATED_LE | JPIP_DEFLATE => None,
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
    w.data_set(bytes.len(), Some(&mut found), false)?;
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

    /// Elements up to `end` (the file's, or a defined-length item's) or, in an item of
    /// undefined length, its delimiter; records top-level Pixel Data in `found`.
    fn data_set(
        &mut self,
        end: usize,
        mut found: Option<&mut Walk>,
        delimited: bool,
    ) -> Result<()> {
        while self.pos < end {
            let h = self.header(self.enc)?;
            if h.tag == ITEM_END {
                if found.is_some() {
                    // dicom-rs skips a stray item delimiter at the top level.
                    continue;
                }
                if delimited {
                    return Ok(());
                }
                return Err(Error::format(format!(
                    "item delimiter at byte {} inside an item of defined length",
                    self.pos - 8
                )));
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
        overrun(self.pos, end)
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
        let mut first = true;
        loop {
            if len != UNDEFINED && self.pos >= end {
                break;
            }
            let h = self.header(self.enc)?;
            match h.tag {
                SEQUENCE_END if len == UNDEFINED => break,
                ITEM if fragments => {
                    // The first fragment is the offset table, which dicom-rs reads as u32s.
                    if first && !h.len.is_multiple_of(4) {
                        return Err(Error::format(format!(
                            "Pixel Data offset table of {} bytes is not a multiple of 4",
                            h.len
                        )));
                    }
                    self.value(h.tag, h.len, end)?;
                }
                ITEM if h.len != UNDEFINED => {
                    let item = self.value(h.tag, h.len, end)?;
                    self.pos = item.start;
                    self.data_set(item.end, None, false)?;
                }
                ITEM => self.data_set(end, None, true)?,
                other => {
                    return Err(Error::format(format!(
                        "sequence {tag} holds {other} at byte {} where an item was expected",
                        self.pos - 8
                    )))
                }
            }
            first = false;
        }
        self.depth -= 1;
        if len == UNDEFINED {
            return Ok(());
        }
        overrun(self.pos, end)
    }
}

/// An element header that began inside an item or sequence of defined length but ended past
/// it: dicom-rs would read on from there, out of step with the walk.
fn overrun(pos: usize, end: usize) -> Result<()> {
    if pos > end {
        return Err(Error::format(format!(
            "an element header runs past byte {end}, the end of its item or sequence"
        )));
    }
    Ok(())
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
    if !h.len.is_multiple_of(size) {
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

#[cfg(test)]
mod tests {
    use super::*;

    /// An explicit VR element with a short length field.
    fn short(group: u16, elem: u16, vr: &[u8; 2], value: &[u8]) -> Vec<u8> {
        let mut v = [group.to_le_bytes(), elem.to_le_bytes()].concat();
        v.extend_from_slice(vr);
        v.extend_from_slice(&(value.len() as u16).to_le_bytes());
        v.extend_from_slice(value);
        v
    }

    /// An explicit VR element with a 32-bit length field.
    fn long(group: u16, elem: u16, vr: &[u8; 2], len: u32, value: &[u8]) -> Vec<u8> {
        let mut v = [group.to_le_bytes(), elem.to_le_bytes()].concat();
        v.extend_from_slice(vr);
        v.extend_from_slice(&[0, 0]);
        v.extend_from_slice(&len.to_le_bytes());
        v.extend_from_slice(value);
        v
    }

    /// An item or delimiter (FFFE,`elem`): no VR.
    fn item(elem: u16, len: u32, value: &[u8]) -> Vec<u8> {
        let mut v = [0xFFFEu16.to_le_bytes(), elem.to_le_bytes()].concat();
        v.extend_from_slice(&len.to_le_bytes());
        v.extend_from_slice(value);
        v
    }

    /// A Part-10 file in Explicit VR Little Endian around `data_set`.
    fn file(data_set: &[u8]) -> Vec<u8> {
        let ts = short(0x0002, 0x0010, b"UI", b"1.2.840.10008.1.2.1\0");
        let mut v = vec![0u8; PREAMBLE];
        v.extend_from_slice(MAGIC);
        v.extend(short(
            0x0002,
            0x0000,
            b"UL",
            &(ts.len() as u32).to_le_bytes(),
        ));
        v.extend(ts);
        v.extend_from_slice(data_set);
        v
    }

    fn refused(data_set: &[u8], words: &str) {
        let e = walk(&file(data_set)).unwrap_err();
        assert!(e.message.contains(words), "{e}");
    }

    #[test]
    fn finds_the_transfer_syntax_and_pixel_data() {
        let mut ds = short(0x0028, 0x0010, b"US", &[2, 0]);
        ds.extend(long(0x7FE0, 0x0010, b"OW", 4, &[1, 2, 3, 4]));
        let bytes = file(&ds);
        let w = walk(&bytes).unwrap();
        assert_eq!(w.transfer_syntax, "1.2.840.10008.1.2.1");
        let px = w.pixel_data.unwrap();
        assert_eq!(&bytes[px], &[1, 2, 3, 4]);
    }

    #[test]
    fn refuses_what_would_put_dicom_rs_out_of_step() {
        refused(
            &long(0x0029, 0x1010, b"OB", 100, &[0; 4]),
            "declares 100 bytes",
        );
        refused(&short(0x0028, 0x0010, b"ZZ", &[2, 0]), "unknown VR");
        refused(
            &short(0x0028, 0x0010, b"US", &[2, 0, 0]),
            "not a multiple of 2",
        );
        // An item of defined length that holds an item delimiter.
        let mut inner = item(0xE00D, 0, &[]);
        inner.extend(short(0x0008, 0x0060, b"CS", b"CT"));
        let mut seq = item(0xE000, inner.len() as u32, &inner);
        seq = long(0x0008, 0x1115, b"SQ", seq.len() as u32, &seq);
        refused(&seq, "inside an item of defined length");
        // An item of 4 bytes: the element header begun inside it ends past it.
        let mut seq = item(0xE000, 4, &[0x08, 0x00, 0x60, 0x00]);
        seq.extend(b"CS\x02\x00CT");
        let seq = long(0x0008, 0x1115, b"SQ", 0xFFFF_FFFF, &seq);
        refused(
            &seq,
            "element (0008,0060) at byte 200 declares 2 bytes, only 0 remain",
        );
        // Encapsulated fragments whose offset table is not whole u32s.
        let mut frags = item(0xE000, 3, &[0; 3]);
        frags.extend(item(0xE0DD, 0, &[]));
        let mut nested = long(0x7FE0, 0x0010, b"OB", 0xFFFF_FFFF, &frags);
        nested.extend(item(0xE00D, 0, &[]));
        let icon = item(0xE000, 0xFFFF_FFFF, &nested);
        let mut seq = long(0x0088, 0x0200, b"SQ", 0xFFFF_FFFF, &icon);
        seq.extend(item(0xE0DD, 0, &[]));
        refused(&seq, "offset table of 3 bytes");
    }

    #[test]
    fn refuses_a_meta_group_without_its_length_and_unwalkable_syntaxes() {
        let mut bytes = vec![0u8; PREAMBLE];
        bytes.extend_from_slice(MAGIC);
        bytes.extend(short(0x0002, 0x0010, b"UI", b"1.2.840.10008.1.2.1\0"));
        let e = walk(&bytes).unwrap_err();
        assert!(e.message.contains("group length"), "{e}");
        let big = file(&[]).into_iter().collect::<Vec<u8>>();
        let at = big
            .windows(19)
            .position(|w| w == b"1.2.840.10008.1.2.1")
            .unwrap();
        let mut be = big.clone();
        be[at + 18] = b'2';
        let e = walk(&be).unwrap_err();
        assert_eq!(e.kind, crate::error::ErrorKind::Unsupported, "{e}");
        assert!(e.message.contains("1.2.840.10008.1.2.2"), "{e}");
    }
}
