//! Values as the SEG writes them: decimal strings (DS) that fit their 16 bytes, new UIDs, the
//! content date and time, and the data elements the data set is built from.

use dicom_core::value::{DataSetSequence, PrimitiveValue};
use dicom_core::{DataElement, Tag, VR};
use dicom_object::mem::{InMemDicomObject, InMemElement};
use std::time::{SystemTime, UNIX_EPOCH};

/// DS values are at most this many bytes.
const DS_MAX_BYTES: usize = 16;

/// A finite number as a DS: the shortest text that reads back as the same `f64` when it fits
/// 16 bytes (every value read from a DS does), else the closest text that fits.
pub fn ds(v: f64) -> String {
    let shortest = format!("{v}");
    if shortest.len() <= DS_MAX_BYTES {
        return shortest;
    }
    // The most digits that fit, in fixed and in exponent notation.
    let fixed = (0..DS_MAX_BYTES)
        .rev()
        .map(|p| format!("{v:.p$}"))
        .find(|s| s.len() <= DS_MAX_BYTES);
    let exp = (0..DS_MAX_BYTES)
        .rev()
        .map(|p| format!("{v:.p$e}"))
        .find(|s| s.len() <= DS_MAX_BYTES);
    let error = |s: &String| (s.parse::<f64>().unwrap_or(f64::INFINITY) - v).abs();
    [fixed, exp]
        .into_iter()
        .flatten()
        .min_by(|a, b| error(a).total_cmp(&error(b)))
        .unwrap_or_else(|| "0".into())
}

/// A new UID under the 2.25 root (ITU-T X.667): a random (version 4) UUID as one integer.
/// The bits come from std's `RandomState`, whose keys the OS's random source seeds: no extra
/// dependency, and hashing a per-process counter and the time makes every call distinct.
pub fn new_uid() -> String {
    use std::hash::{BuildHasher, Hasher};
    use std::sync::atomic::{AtomicU64, Ordering};
    static CALLS: AtomicU64 = AtomicU64::new(0);
    let call = CALLS.fetch_add(1, Ordering::Relaxed);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    let half = |salt: u8| {
        let mut h = std::collections::hash_map::RandomState::new().build_hasher();
        h.write_u128(nanos);
        h.write_u64(call);
        h.write_u32(std::process::id());
        h.write_u8(salt);
        u128::from(h.finish())
    };
    let mut u = (half(0) << 64) | half(1);
    // Version 4 and the RFC 4122 variant, as a UUID of random bits says.
    u = (u & !(0xF << 76)) | (0x4 << 76);
    u = (u & !(0x3 << 62)) | (0x2 << 62);
    format!("2.25.{u}")
}

/// The current UTC date (DA, YYYYMMDD) and time (TM, HHMMSS).
pub fn now_date_time() -> (String, String) {
    let secs = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let (days, rem) = (secs / 86_400, secs % 86_400);
    let (y, m, d) = civil_from_days(days as i64);
    (
        format!("{y:04}{m:02}{d:02}"),
        format!("{:02}{:02}{:02}", rem / 3600, rem / 60 % 60, rem % 60),
    )
}

/// Days since 1970-01-01 to a proleptic Gregorian (year, month, day): H. Hinnant's
/// `civil_from_days`.
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

pub type Item = InMemDicomObject;

/// A text element; empty text is an empty (type 2) value.
pub fn text(tag: Tag, vr: VR, value: &str) -> InMemElement {
    if value.is_empty() {
        return DataElement::new(tag, vr, PrimitiveValue::Empty);
    }
    DataElement::new(tag, vr, PrimitiveValue::from(value))
}

/// A multi-valued text element.
pub fn texts<S: Into<String>>(
    tag: Tag,
    vr: VR,
    values: impl IntoIterator<Item = S>,
) -> InMemElement {
    let v: Vec<String> = values.into_iter().map(Into::into).collect();
    DataElement::new(tag, vr, PrimitiveValue::Strs(v.into()))
}

/// Decimal strings.
pub fn decimals(tag: Tag, values: &[f64]) -> InMemElement {
    texts(tag, VR::DS, values.iter().map(|&v| ds(v)))
}

pub fn us(tag: Tag, v: u16) -> InMemElement {
    DataElement::new(tag, VR::US, PrimitiveValue::from(v))
}

pub fn ul(tag: Tag, values: &[u32]) -> InMemElement {
    DataElement::new(
        tag,
        VR::UL,
        PrimitiveValue::U32(values.iter().copied().collect()),
    )
}

/// An attribute tag value (AT).
pub fn at(tag: Tag, value: Tag) -> InMemElement {
    DataElement::new(
        tag,
        VR::AT,
        PrimitiveValue::Tags([value].into_iter().collect()),
    )
}

pub fn sequence(tag: Tag, items: Vec<Item>) -> InMemElement {
    DataElement::new(tag, VR::SQ, DataSetSequence::from(items))
}

pub fn item(elements: impl IntoIterator<Item = InMemElement>) -> Item {
    InMemDicomObject::from_element_iter(elements)
}

/// A sequence of one item holding `elements` (most of a SEG's functional groups).
pub fn single(tag: Tag, elements: impl IntoIterator<Item = InMemElement>) -> InMemElement {
    sequence(tag, vec![item(elements)])
}

/// A coded concept: Code Value, Coding Scheme Designator, Code Meaning.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Code {
    pub value: &'static str,
    pub scheme: &'static str,
    pub meaning: &'static str,
}

/// A code sequence of one item.
pub fn code_sequence(tag: Tag, code: Code) -> InMemElement {
    use dicom_dictionary_std::tags;
    single(
        tag,
        [
            text(tags::CODE_VALUE, VR::SH, code.value),
            text(tags::CODING_SCHEME_DESIGNATOR, VR::SH, code.scheme),
            text(tags::CODE_MEANING, VR::LO, code.meaning),
        ],
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ds_reads_back_as_the_same_number_when_it_can_and_fits_16_bytes() {
        for v in [
            0.0,
            -0.5,
            1.0 / 3.0,
            -125.0,
            0.703125,
            -1.2345678901234e-5,
            1e300,
            97.123456789,
        ] {
            let s = ds(v);
            assert!(s.len() <= DS_MAX_BYTES, "{v}: {s}");
            let back: f64 = s.parse().unwrap();
            assert!((back - v).abs() <= v.abs() * 1e-9, "{v}: {s}");
        }
        assert_eq!(ds(-125.0), "-125");
        assert_eq!(ds(0.703125), "0.703125");
        assert_eq!(ds(1.0 / 3.0), "0.33333333333333");
        let v: f64 = "-1.23456789e-5".parse().unwrap();
        assert_eq!(ds(v).parse::<f64>().unwrap(), v);
    }

    #[test]
    fn uids_are_2_25_integers_distinct_per_call_and_at_most_64_bytes() {
        let a = new_uid();
        let b = new_uid();
        assert_ne!(a, b);
        for u in [&a, &b] {
            assert!(u.len() <= 64, "{u}");
            let n: u128 = u.strip_prefix("2.25.").unwrap().parse().unwrap();
            assert_eq!((n >> 76) & 0xF, 4, "version 4");
            assert_eq!((n >> 62) & 0x3, 2, "RFC 4122 variant");
            assert!(!u[5..].starts_with('0'));
        }
    }

    #[test]
    fn civil_dates() {
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        assert_eq!(civil_from_days(11_016), (2000, 2, 29));
        assert_eq!(civil_from_days(20_786), (2026, 11, 29));
    }
}
