//! insta snapshots of parsed headers and of volume summaries: any change in what we parse or
//! how we interpret it shows up as a reviewable diff.

mod mhd_common;

use lungseg::mhd::parse_header;
use lungseg::Volume;
use mhd_common::*;

/// What a reader of the volume cares about, without dumping every voxel.
fn summary(v: &Volume) -> serde_json::Value {
    let n = v.data.len();
    let vals: Vec<f64> = (0..n).map(|i| v.data.get_f32(i) as f64).collect();
    serde_json::json!({
        "dims": v.geometry.dims,
        "spacing": v.geometry.spacing,
        "origin": v.geometry.origin,
        "direction": v.geometry.direction,
        "element_type": v.element_type.met_name(),
        "channels": v.channels,
        "samples": n,
        "first": &vals[..n.min(6)],
        "sum": vals.iter().sum::<f64>(),
        "min": vals.iter().cloned().fold(f64::INFINITY, f64::min),
        "max": vals.iter().cloned().fold(f64::NEG_INFINITY, f64::max),
        "anatomical_orientation": v.anatomical_orientation,
        "extra": v.extra,
    })
}

#[test]
fn header_luna16() {
    insta::assert_debug_snapshot!(parse_header(BASIC.as_bytes()).unwrap());
}

#[test]
fn header_everything() {
    let h = "ObjectType: Image\r\nNDims: 3\r\nDimSize: 4\r\n 3 2\r\nElementSize = 2 2 2\r\nPosition = 1 2 3\r\n\
Orientation = 0 1 0 1 0 0 0 0 -1\r\nElementByteOrderMSB = True\r\nCompressedData = True\r\nCompressedDataSize = 99\r\n\
HeaderSize = -1\r\nElementNumberOfChannels = 2\r\nModality = MET_MOD_CT\r\nElementType = MET_ULONG_ARRAY\r\n\
ElementDataFile = LIST 2D\r\na.raw\r\nb.raw\r\n";
    insta::assert_debug_snapshot!(parse_header(h.as_bytes()).unwrap());
}

#[test]
fn header_pattern() {
    let h = BASIC.replace("d.raw", "slice%03d.raw 0 2 2");
    insta::assert_debug_snapshot!(parse_header(h.as_bytes()).unwrap());
}

#[test]
fn volume_luna16_raw() {
    let v = mem_read(BASIC.as_bytes(), &[("d.raw", &le_bytes(&basic_values()))]).unwrap();
    insta::assert_yaml_snapshot!(summary(&v));
}

#[test]
fn volume_flipped_compressed_mha() {
    let raw = le_bytes(&basic_values());
    let z = gzip(&raw);
    let h = BASIC
        .replace(
            "TransformMatrix = 1 0 0 0 1 0 0 0 1",
            "TransformMatrix = -1 0 0 0 -1 0 0 0 1",
        )
        .replace(
            "CompressedData = False",
            &format!("CompressedData = True\nCompressedDataSize = {}", z.len()),
        )
        .replace("d.raw", "LOCAL");
    let v = mem_read(&[h.as_bytes(), &z].concat(), &[]).unwrap();
    insta::assert_yaml_snapshot!(summary(&v));
}
