//! One test per MetaImage header rule (see shared/notes/metaimage.md), through `parse_header`.

mod mhd_common;

use lungseg::mhd::{parse_header, DataFile};
use lungseg::{ElementType, ErrorKind};
use mhd_common::*;

fn parse(s: &str) -> lungseg::mhd::Header {
    parse_header(s.as_bytes()).unwrap_or_else(|e| panic!("{e}\n{s}"))
}

const MIN: &str = "NDims = 3\nDimSize = 4 3 2\nElementType = MET_SHORT\n";

#[test]
fn luna16_header() {
    let h = parse(BASIC);
    assert_eq!(h.ndims, 3);
    assert_eq!(h.dim_size, vec![4, 3, 2]);
    assert_eq!(h.element_type, ElementType::Short);
    assert_eq!(h.origin(), vec![-198.100006, -195.0, -335.209991]);
    assert_eq!(
        h.spacing(),
        vec![0.7617189884185791, 0.7617189884185791, 2.5]
    );
    assert_eq!(h.anatomical_orientation.as_deref(), Some("RAI"));
    assert_eq!(h.element_data_file, DataFile::Path("d.raw".into()));
    assert!(h.binary_data && !h.compressed_data && !h.msb());
    assert!(h.extra.is_empty());
}

#[test]
fn colon_separator_and_no_spaces() {
    let h =
        parse("NDims:3\nDimSize: 4 3 2\nElementType=MET_UCHAR\nElementDataFile :my file.raw  \n");
    assert_eq!(h.dim_size, vec![4, 3, 2]);
    assert_eq!(h.element_type, ElementType::UChar);
    // Inner spaces kept, trailing whitespace stripped.
    assert_eq!(h.element_data_file, DataFile::Path("my file.raw".into()));
}

#[test]
fn crlf_line_endings() {
    let h = parse(&BASIC.replace('\n', "\r\n"));
    assert_eq!(h, parse(BASIC).clone_with_offset(h.data_offset));
    assert_eq!(h.element_data_file, DataFile::Path("d.raw".into()));
}

trait WithOffset {
    fn clone_with_offset(self, o: usize) -> Self;
}
impl WithOffset for lungseg::mhd::Header {
    fn clone_with_offset(mut self, o: usize) -> Self {
        self.data_offset = o;
        self
    }
}

#[test]
fn lists_continue_on_next_lines() {
    let h = parse("NDims = 3\nDimSize = 4\n 3\n2\nTransformMatrix = 1 0 0\n0 1 0\n0 0 1\nElementType = MET_SHORT\nElementDataFile = x\n");
    assert_eq!(h.dim_size, vec![4, 3, 2]);
    assert_eq!(
        h.transform_matrix,
        Some(vec![1., 0., 0., 0., 1., 0., 0., 0., 1.])
    );
}

#[test]
fn duplicate_keys_last_wins() {
    let h = parse(&format!("{MIN}DimSize = 9 9 9\nElementType = MET_FLOAT\nFoo = 1\nBar = 2\nFoo = 3\nElementDataFile = x\n"));
    assert_eq!(h.dim_size, vec![9, 9, 9]);
    assert_eq!(h.element_type, ElementType::Float);
    assert_eq!(
        h.extra,
        vec![("Foo".into(), "3".into()), ("Bar".into(), "2".into())]
    );
}

#[test]
fn keys_are_case_sensitive() {
    let h = parse(&format!(
        "{MIN}elementspacing = 2 2 2\nElementDataFile = x\n"
    ));
    assert_eq!(h.element_spacing, None);
    assert_eq!(h.extra, vec![("elementspacing".into(), "2 2 2".into())]);
    assert_err(
        parse_header(b"ndims = 3\nDimSize = 1 1 1\n"),
        ErrorKind::Format,
        &["DimSize", "before NDims"],
    );
}

#[test]
fn nothing_after_element_data_file_is_a_key() {
    let s = format!("{MIN}ElementDataFile = LOCAL\nNDims = 2\nElementType = MET_FLOAT\n");
    let h = parse(&s);
    assert_eq!(h.ndims, 3);
    assert_eq!(h.element_type, ElementType::Short);
    assert_eq!(h.element_data_file, DataFile::Local);
    assert_eq!(h.data_offset, s.find("NDims = 2").unwrap());
}

#[test]
fn origin_precedence() {
    let all =
        format!("{MIN}Offset = 1 1 1\nOrigin = 3 3 3\nPosition = 2 2 2\nElementDataFile = x\n");
    assert_eq!(parse(&all).origin(), vec![3.0; 3]);
    let no_origin = format!("{MIN}Offset = 1 1 1\nPosition = 2 2 2\nElementDataFile = x\n");
    assert_eq!(parse(&no_origin).origin(), vec![2.0; 3]);
    assert_eq!(
        parse(&format!("{MIN}Offset = 1 1 1\nElementDataFile = x\n")).origin(),
        vec![1.0; 3]
    );
    assert_eq!(
        parse(&format!("{MIN}ElementDataFile = x\n")).origin(),
        vec![0.0; 3]
    );
}

#[test]
fn direction_precedence() {
    let tm = "TransformMatrix = -1 0 0 0 -1 0 0 0 1\n";
    let rot = "Rotation = 0 1 0 1 0 0 0 0 1\n";
    let ori = "Orientation = 1 0 0 0 0 1 0 1 0\n";
    let h = parse(&format!("{MIN}{ori}{tm}{rot}ElementDataFile = x\n"));
    assert_eq!(
        h.direction_values(),
        vec![-1., 0., 0., 0., -1., 0., 0., 0., 1.]
    );
    let h = parse(&format!("{MIN}{ori}{rot}ElementDataFile = x\n"));
    assert_eq!(
        h.direction_values(),
        vec![0., 1., 0., 1., 0., 0., 0., 0., 1.]
    );
    let h = parse(&format!("{MIN}{ori}ElementDataFile = x\n"));
    assert_eq!(
        h.direction_values(),
        vec![1., 0., 0., 0., 0., 1., 0., 1., 0.]
    );
}

#[test]
fn element_size_is_the_spacing_fallback() {
    let h = parse(&format!("{MIN}ElementSize = 2 3 4\nElementDataFile = x\n"));
    assert_eq!(h.spacing(), vec![2.0, 3.0, 4.0]);
    let h = parse(&format!(
        "{MIN}ElementSize = 2 3 4\nElementSpacing = 5 6 7\nElementDataFile = x\n"
    ));
    assert_eq!(h.spacing(), vec![5.0, 6.0, 7.0]);
}

#[test]
fn byte_order_keys() {
    let msb = |keys: &str| parse(&format!("{MIN}{keys}ElementDataFile = x\n")).msb();
    assert!(!msb(""));
    assert!(msb("ElementByteOrderMSB = True\n"));
    assert!(msb("BinaryDataByteOrderMSB = true\n"));
    assert!(!msb(
        "ElementByteOrderMSB = True\nBinaryDataByteOrderMSB = False\n"
    ));
    assert!(msb(
        "BinaryDataByteOrderMSB = 1\nElementByteOrderMSB = False\n"
    ));
}

#[test]
fn booleans_look_at_the_first_character() {
    let b = |v: &str| {
        parse(&format!("{MIN}CompressedData = {v}\nElementDataFile = x\n")).compressed_data
    };
    assert!(b("True") && b("true") && b("1") && b("Tx"));
    assert!(!b("False") && !b("0") && !b("yes") && !b(""));
}

#[test]
fn element_types_and_array_variants() {
    for t in ElementType::ALL {
        let h = parse(&format!(
            "NDims = 3\nDimSize = 1 1 1\nElementType = {}\nElementDataFile = x\n",
            t.met_name()
        ));
        assert_eq!(h.element_type, t);
        let h = parse(&format!(
            "NDims = 3\nDimSize = 1 1 1\nElementType = {}_ARRAY\nElementDataFile = x\n",
            t.met_name()
        ));
        assert_eq!(h.element_type, t);
    }
    assert_eq!(ElementType::Long.size(), 4);
    assert_eq!(ElementType::ULong.size(), 4);
}

#[test]
fn bad_element_types() {
    let t = |v: &str| {
        parse_header(
            format!("NDims = 3\nDimSize = 1 1 1\nElementType = {v}\nElementDataFile = x\n")
                .as_bytes(),
        )
    };
    assert_err(
        t("MET_STRING"),
        ErrorKind::Unsupported,
        &["MET_STRING", "numeric"],
    );
    assert_err(
        t("MET_FLOAT_MATRIX"),
        ErrorKind::Unsupported,
        &["MET_FLOAT_MATRIX"],
    );
    assert_err(t("MET_NONE"), ErrorKind::Unsupported, &["MET_NONE"]);
    assert_err(
        t("met_short"),
        ErrorKind::Format,
        &["ElementType", "met_short"],
    );
    assert_err(
        t("MET_HALF"),
        ErrorKind::Format,
        &["ElementType", "MET_HALF"],
    );
}

#[test]
fn bad_ndims() {
    let n = |v: &str| {
        parse_header(
            format!("NDims = {v}\nDimSize = 1\nElementType = MET_SHORT\nElementDataFile = x\n")
                .as_bytes(),
        )
    };
    assert_err(n("0"), ErrorKind::Format, &["NDims = 0"]);
    assert_err(n("-1"), ErrorKind::Format, &["NDims = -1"]);
    assert_err(n("three"), ErrorKind::Format, &["NDims", "three"]);
    assert_err(
        n("11"),
        ErrorKind::Unsupported,
        &["NDims = 11", "at most 10"],
    );
    assert_err(n("99999999999999999999"), ErrorKind::Format, &["NDims"]);
    // NDims = 1 parses (MetaIO allows it); the reader refuses it (see mhd_read).
    assert_eq!(n("1").unwrap().ndims, 1);
}

#[test]
fn list_lengths_must_match_ndims() {
    let p = |body: &str| parse_header(format!("NDims = 3\n{body}").as_bytes());
    assert_err(
        p("DimSize = 1 2 3 4\n"),
        ErrorKind::Format,
        &["DimSize has 4 values", "needs 3"],
    );
    assert_err(
        p("DimSize = 1 2"),
        ErrorKind::Format,
        &["DimSize has 2 values", "needs 3"],
    );
    assert_err(
        p("TransformMatrix = 1 0 0 1\nElementType = MET_SHORT\n"),
        ErrorKind::Format,
        &["TransformMatrix", "ElementType"],
    );
    assert_err(
        p("ElementSpacing = 1 x 1\n"),
        ErrorKind::Format,
        &["ElementSpacing", "\"x\""],
    );
    assert_err(
        p("DimSize = 1 -2 3\n"),
        ErrorKind::Format,
        &["DimSize", "-2", "negative"],
    );
    assert_err(
        p("DimSize = 1 2.5 3\n"),
        ErrorKind::Format,
        &["DimSize", "2.5"],
    );
    assert_err(
        parse_header(b"DimSize = 1 2 3\nNDims = 3\n"),
        ErrorKind::Format,
        &["DimSize appears before NDims"],
    );
    let changed =
        "NDims = 2\nDimSize = 1 2\nNDims = 3\nElementType = MET_SHORT\nElementDataFile = x\n";
    assert_err(
        parse_header(changed.as_bytes()),
        ErrorKind::Format,
        &["DimSize has 2 values", "final NDims = 3"],
    );
    let changed = "NDims = 3\nDimSize = 1 2 3\nTransformMatrix = 1 0 0 0 1 0 0 0 1\nNDims = 2\nDimSize = 1 2\nElementType = MET_SHORT\nElementDataFile = x\n";
    assert_err(
        parse_header(changed.as_bytes()),
        ErrorKind::Format,
        &["TransformMatrix has 9 values", "needs 4"],
    );
}

#[test]
fn required_keys() {
    assert_err(
        parse_header(b"NDims = 3\nDimSize = 1 1 1\nElementType = MET_SHORT\n"),
        ErrorKind::Format,
        &["no ElementDataFile"],
    );
    assert_err(
        parse_header(b"NDims = 3\nElementType = MET_SHORT\nElementDataFile = x\n"),
        ErrorKind::Format,
        &["no DimSize"],
    );
    assert_err(
        parse_header(b"NDims = 3\nDimSize = 1 1 1\nElementDataFile = x\n"),
        ErrorKind::Format,
        &["no ElementType"],
    );
    assert_err(
        parse_header(b"ElementDataFile = x\n"),
        ErrorKind::Format,
        &["no NDims"],
    );
    assert_err(
        parse_header(format!("{MIN}ElementDataFile =\n").as_bytes()),
        ErrorKind::Format,
        &["ElementDataFile is empty"],
    );
}

#[test]
fn malformed_lines() {
    assert_err(
        parse_header(b"NDims = 3\nthis line has no separator\n"),
        ErrorKind::Format,
        &["line 2", "no '=' or ':'"],
    );
    assert_err(
        parse_header(b"= 3\n"),
        ErrorKind::Format,
        &["line 1", "empty key"],
    );
    assert_err(
        parse_header(format!("{MIN}HeaderSize = big\n").as_bytes()),
        ErrorKind::Format,
        &["HeaderSize", "big"],
    );
    assert_err(
        parse_header(format!("{MIN}CompressedDataSize = -5\n").as_bytes()),
        ErrorKind::Format,
        &["CompressedDataSize = -5"],
    );
    assert_err(
        parse_header(format!("{MIN}ElementNumberOfChannels = 0\n").as_bytes()),
        ErrorKind::Format,
        &["ElementNumberOfChannels = 0"],
    );
    // Non-UTF-8 in an unknown key's value is tolerated; in the data file name it is not.
    let mut b = format!("{MIN}Comment = ").into_bytes();
    b.extend_from_slice(b"caf\xe9\nElementDataFile = x\n");
    assert!(parse_header(&b).is_ok());
    let mut b = format!("{MIN}ElementDataFile = ").into_bytes();
    b.extend_from_slice(b"caf\xe9.raw\n");
    assert_err(
        parse_header(&b),
        ErrorKind::Format,
        &["ElementDataFile", "UTF-8"],
    );
    let long = format!("{MIN}ElementDataFile = {}\n", "a".repeat(5000));
    assert_err(
        parse_header(long.as_bytes()),
        ErrorKind::Format,
        &["ElementDataFile is 5000 bytes"],
    );
}

#[test]
fn local_data_offset() {
    let s = format!("{MIN}ElementDataFile = LOCAL\r\n\x01\x02");
    let h = parse(&s);
    assert_eq!(h.element_data_file, DataFile::Local);
    assert_eq!(h.data_offset, s.len() - 2);
}

#[test]
fn list_forms() {
    let h = parse(&format!("{MIN}ElementDataFile = LIST\na.raw\n\nb.raw\n"));
    assert_eq!(
        h.element_data_file,
        DataFile::List {
            file_ndims: 2,
            files: vec!["a.raw".into(), "b.raw".into()]
        }
    );
    let h = parse(&format!(
        "{MIN}ElementDataFile = LIST 3D\nall.raw\nignored\n"
    ));
    assert_eq!(
        h.element_data_file,
        DataFile::List {
            file_ndims: 3,
            files: vec!["all.raw".into()]
        }
    );
    let h = parse(&format!(
        "{MIN}ElementDataFile = LIST 1D\n{}",
        "r.raw\n".repeat(6)
    ));
    assert!(
        matches!(h.element_data_file, DataFile::List { file_ndims: 1, ref files } if files.len() == 6)
    );
    assert_err(
        parse_header(format!("{MIN}ElementDataFile = LIST\na.raw\n").as_bytes()),
        ErrorKind::Format,
        &["lists 1 files", "needs 2"],
    );
    assert_err(
        parse_header(format!("{MIN}ElementDataFile = LIST 4D\na\n").as_bytes()),
        ErrorKind::Format,
        &["LIST 4D", "NDims = 3"],
    );
    assert_err(
        parse_header(format!("{MIN}ElementDataFile = LISTx\na\n").as_bytes()),
        ErrorKind::Format,
        &["LISTx"],
    );
}

#[test]
fn patterns() {
    let p = |v: &str| parse_header(format!("{MIN}ElementDataFile = {v}\n").as_bytes());
    let pat = |pattern: &str, min, max, step| DataFile::Pattern {
        pattern: pattern.into(),
        min,
        max,
        step,
    };
    assert_eq!(
        p("s%03d.raw").unwrap().element_data_file,
        pat("s%03d.raw", 1, 2, 1)
    );
    assert_eq!(
        p("s%d.raw 5").unwrap().element_data_file,
        pat("s%d.raw", 5, 6, 1)
    );
    assert_eq!(
        p("s%d.raw 0 4").unwrap().element_data_file,
        pat("s%d.raw", 0, 4, 2)
    );
    assert_eq!(
        p("s%d.raw 10 30 20").unwrap().element_data_file,
        pat("s%d.raw", 10, 30, 20)
    );
    // (max - min) / last DimSize = 0: ITK divides forever, we refuse.
    assert_err(p("s%d.raw 1 2"), ErrorKind::Format, &["step 0", "positive"]);
    assert_err(p("s%d.raw 1 2 0"), ErrorKind::Format, &["step 0"]);
    assert_err(p("s%d.raw 5 1 -1"), ErrorKind::Format, &["step -1"]);
    assert_err(p("s%d.raw one"), ErrorKind::Format, &["min", "one"]);
    assert_err(
        p("s%d.raw 1 2 1 4"),
        ErrorKind::Format,
        &["more than 3 numbers"],
    );
    for bad in [
        "s%s.raw",
        "s%x.raw",
        "%d_%d.raw",
        "s%n.raw",
        "s%.3d",
        "s%-3d",
        "s%999d",
        "s%",
    ] {
        assert_err(p(bad), ErrorKind::Unsupported, &[bad, "integer conversion"]);
    }
    assert!(p("100%%_%d.raw").is_ok());
}

/// ~1 MiB of unique unknown keys parses in linear time. Each key was once searched for
/// linearly among the earlier ones (quadratic: many seconds for this input).
#[test]
fn a_megabyte_of_unique_keys_parses_quickly() {
    let mut h = String::from("NDims = 3\nDimSize = 1 1 1\nElementType = MET_UCHAR\n");
    let mut i = 0;
    while h.len() < 1 << 20 {
        h.push_str(&format!("Key{i} = v\n"));
        i += 1;
    }
    h.push_str("ElementDataFile = d.raw\n");
    let start = std::time::Instant::now();
    let parsed = parse_header(h.as_bytes()).unwrap();
    let took = start.elapsed();
    assert_eq!(parsed.extra.len(), i);
    assert_eq!(
        parsed.extra[i - 1],
        (format!("Key{}", i - 1), "v".to_string())
    );
    assert!(took.as_secs_f64() < 1.0, "{i} keys took {took:?}");
}
