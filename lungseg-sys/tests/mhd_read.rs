//! Data decoding and every class of bad input, through the in-memory source (and the disk for
//! path handling). Each error test asserts the kind and what the message names.

mod mhd_common;

use lungseg::mhd::{self, ReadOptions};
use lungseg::{ElementType, ErrorKind, PixelData};
use mhd_common::*;

fn hdr(extra: &str, data_file: &str) -> String {
    BASIC.replace(
        "ElementDataFile = d.raw\n",
        &format!("{extra}ElementDataFile = {data_file}\n"),
    )
}

fn values(r: lungseg::Result<lungseg::Volume>) -> Vec<i16> {
    match r.unwrap_or_else(|e| panic!("{e}")).data {
        PixelData::I16(v) => v,
        other => panic!("expected i16, got {:?}", other.element_type()),
    }
}

#[test]
fn raw_little_endian() {
    let v = mem_read(BASIC.as_bytes(), &[("d.raw", &le_bytes(&basic_values()))]).unwrap();
    assert_eq!(v.data, PixelData::I16(basic_values()));
    assert_eq!(v.geometry.dims, [4, 3, 2]);
    assert_eq!(v.geometry.origin, [-198.100006, -195.0, -335.209991]);
    assert_eq!(v.anatomical_orientation.as_deref(), Some("RAI"));
    assert_eq!(v.channels, 1);
}

#[test]
fn big_endian_both_keys() {
    let be: Vec<u8> = basic_values()
        .iter()
        .flat_map(|x| x.to_be_bytes())
        .collect();
    for keys in [
        "BinaryDataByteOrderMSB = True\n",
        "ElementByteOrderMSB = True\n",
        "ElementByteOrderMSB = False\nBinaryDataByteOrderMSB = True\n",
    ] {
        let h = BASIC.replace("BinaryDataByteOrderMSB = False\n", keys);
        assert_eq!(
            values(mem_read(h.as_bytes(), &[("d.raw", &be)])),
            basic_values(),
            "{keys}"
        );
    }
    let h = BASIC.replace(
        "BinaryDataByteOrderMSB = False\n",
        "ElementByteOrderMSB = True\nBinaryDataByteOrderMSB = False\n",
    );
    assert_eq!(
        values(mem_read(
            h.as_bytes(),
            &[("d.raw", &le_bytes(&basic_values()))]
        )),
        basic_values()
    );
}

#[test]
fn big_endian_wide_types() {
    let h = BASIC.replace("MET_SHORT", "MET_DOUBLE").replace(
        "BinaryDataByteOrderMSB = False",
        "BinaryDataByteOrderMSB = True",
    );
    let vals: Vec<f64> = (0..24).map(|i| i as f64 * -1.25).collect();
    let be: Vec<u8> = vals.iter().flat_map(|x| x.to_be_bytes()).collect();
    assert_eq!(
        mem_read(h.as_bytes(), &[("d.raw", &be)]).unwrap().data,
        PixelData::F64(vals)
    );
}

#[test]
fn met_long_is_four_bytes() {
    let h = BASIC.replace("MET_SHORT", "MET_LONG");
    let vals: Vec<i32> = (0..24).map(|i| i * -100_000).collect();
    let le: Vec<u8> = vals.iter().flat_map(|x| x.to_le_bytes()).collect();
    let v = mem_read(h.as_bytes(), &[("d.raw", &le)]).unwrap();
    assert_eq!(v.element_type, ElementType::Long);
    assert_eq!(v.data, PixelData::I32(vals));
}

#[test]
fn ascii_data() {
    let h = hdr("", "d.txt").replace("BinaryData = True", "BinaryData = False");
    let text: String = basic_values().iter().map(|v| format!("{v}\n")).collect();
    assert_eq!(
        values(mem_read(h.as_bytes(), &[("d.txt", text.as_bytes())])),
        basic_values()
    );
    // Through a double, truncated, as MetaIO.
    let text = format!("1.9 -2.5e1 {}", "0 ".repeat(22));
    assert_eq!(
        values(mem_read(h.as_bytes(), &[("d.txt", text.as_bytes())]))[..2],
        [1, -25]
    );
    assert_err(
        mem_read(h.as_bytes(), &[("d.txt", b"1 2 3")]),
        ErrorKind::Format,
        &["d.txt", "ASCII data has 3 values, expected 24"],
    );
    let text = format!("40000 {}", "0 ".repeat(23));
    assert_err(
        mem_read(h.as_bytes(), &[("d.txt", text.as_bytes())]),
        ErrorKind::Format,
        &["\"40000\"", "MET_SHORT"],
    );
    let text = format!("abc {}", "0 ".repeat(23));
    assert_err(
        mem_read(h.as_bytes(), &[("d.txt", text.as_bytes())]),
        ErrorKind::Format,
        &["\"abc\""],
    );
    let opts = ReadOptions {
        max_bytes: 100,
        ..Default::default()
    };
    let text = "0 ".repeat(100);
    assert_err(
        mem_read_opts(h.as_bytes(), &[("d.txt", text.as_bytes())], &opts),
        ErrorKind::Limit,
        &["ASCII", "limit of 100"],
    );
}

fn compressed(size: Option<usize>) -> String {
    let size = size
        .map(|n| format!("CompressedDataSize = {n}\n"))
        .unwrap_or_default();
    hdr("", "d.zraw").replace(
        "CompressedData = False\n",
        &format!("CompressedData = True\n{size}"),
    )
}

#[test]
fn zlib_and_gzip_with_and_without_size() {
    let raw = le_bytes(&basic_values());
    for stream in [zlib(&raw), gzip(&raw)] {
        assert_eq!(
            values(mem_read(
                compressed(Some(stream.len())).as_bytes(),
                &[("d.zraw", &stream)]
            )),
            basic_values()
        );
        assert_eq!(
            values(mem_read(
                compressed(None).as_bytes(),
                &[("d.zraw", &stream)]
            )),
            basic_values()
        );
        // CompressedDataSize = 0 means "to the end of the file".
        assert_eq!(
            values(mem_read(
                compressed(Some(0)).as_bytes(),
                &[("d.zraw", &stream)]
            )),
            basic_values()
        );
        // Trailing bytes after the size are ignored.
        let mut padded = stream.clone();
        padded.extend_from_slice(b"junk");
        assert_eq!(
            values(mem_read(
                compressed(Some(stream.len())).as_bytes(),
                &[("d.zraw", &padded)]
            )),
            basic_values()
        );
    }
}

#[test]
fn compressed_stream_must_inflate_to_exactly_the_size() {
    let raw = le_bytes(&basic_values());
    let short = zlib(&raw[..40]);
    assert_err(
        mem_read(compressed(None).as_bytes(), &[("d.zraw", &short)]),
        ErrorKind::Format,
        &["d.zraw", "zlib stream inflates to 40 bytes, expected 48"],
    );
    let long = zlib(&[raw.clone(), vec![0; 2]].concat());
    assert_err(
        mem_read(compressed(None).as_bytes(), &[("d.zraw", &long)]),
        ErrorKind::Format,
        &["d.zraw", "more than the expected 48"],
    );
    let glong = gzip(&[raw.clone(), vec![0; 2]].concat());
    assert_err(
        mem_read(compressed(None).as_bytes(), &[("d.zraw", &glong)]),
        ErrorKind::Format,
        &["gzip", "more than the expected 48"],
    );
    let mut corrupt = zlib(&raw);
    let n = corrupt.len();
    corrupt[n - 2] ^= 0xff; // adler32
    assert_err(
        mem_read(compressed(None).as_bytes(), &[("d.zraw", &corrupt)]),
        ErrorKind::Format,
        &["d.zraw", "corrupt zlib"],
    );
    let mut corrupt = gzip(&raw);
    let n = corrupt.len();
    corrupt[n - 6] ^= 0xff; // crc32
    assert_err(
        mem_read(compressed(None).as_bytes(), &[("d.zraw", &corrupt)]),
        ErrorKind::Format,
        &["d.zraw", "corrupt gzip"],
    );
    assert_err(
        mem_read(compressed(None).as_bytes(), &[("d.zraw", &raw)]),
        ErrorKind::Format,
        &["corrupt zlib"],
    );
    // A truncated stream.
    let z = zlib(&raw);
    assert_err(
        mem_read(
            compressed(None).as_bytes(),
            &[("d.zraw", &z[..z.len() / 2])],
        ),
        ErrorKind::Format,
        &["d.zraw"],
    );
    // Raw deflate is not accepted (MetaIO neither).
    let mut e = flate2::write::DeflateEncoder::new(Vec::new(), flate2::Compression::new(6));
    std::io::Write::write_all(&mut e, &raw).unwrap();
    let deflate = e.finish().unwrap();
    assert_err(
        mem_read(compressed(None).as_bytes(), &[("d.zraw", &deflate)]),
        ErrorKind::Format,
        &["corrupt zlib"],
    );
    assert_err(
        mem_read(compressed(None).as_bytes(), &[("d.zraw", b"")]),
        ErrorKind::Format,
        &["d.zraw"],
    );
}

#[test]
fn compressed_data_size_beyond_the_file() {
    let z = zlib(&le_bytes(&basic_values()));
    let h = compressed(Some(z.len() + 1));
    assert_err(
        mem_read(h.as_bytes(), &[("d.zraw", &z)]),
        ErrorKind::Format,
        &[
            "d.zraw",
            &format!("CompressedDataSize = {}", z.len() + 1),
            "past the end",
        ],
    );
    let h = compressed(Some(1 << 62));
    assert_err(
        mem_read(h.as_bytes(), &[("d.zraw", &z)]),
        ErrorKind::Format,
        &["CompressedDataSize", "past the end"],
    );
}

#[test]
fn decompression_bomb_does_not_allocate() {
    // 10 MB of zeros in a 10 KB stream: a 48-byte image must stop after 48 bytes.
    let bomb = zlib(&vec![0u8; 10 << 20]);
    assert_err(
        mem_read(compressed(None).as_bytes(), &[("d.zraw", &bomb)]),
        ErrorKind::Format,
        &["more than the expected 48"],
    );
}

#[test]
fn header_size_positive_and_minus_one() {
    let raw = le_bytes(&basic_values());
    let padded = [vec![0xAB; 17], raw.clone()].concat();
    assert_eq!(
        values(mem_read(
            hdr("HeaderSize = 17\n", "d.raw").as_bytes(),
            &[("d.raw", &padded)]
        )),
        basic_values()
    );
    assert_eq!(
        values(mem_read(
            hdr("HeaderSize = -1\n", "d.raw").as_bytes(),
            &[("d.raw", &padded)]
        )),
        basic_values()
    );
    // Other negatives behave as 0.
    assert_eq!(
        values(mem_read(
            hdr("HeaderSize = -7\n", "d.raw").as_bytes(),
            &[("d.raw", &raw)]
        )),
        basic_values()
    );
    assert_err(
        mem_read(
            hdr("HeaderSize = 1000\n", "d.raw").as_bytes(),
            &[("d.raw", &raw)],
        ),
        ErrorKind::Format,
        &["d.raw", "HeaderSize = 1000", "48 bytes"],
    );
    assert_err(
        mem_read(
            hdr("HeaderSize = -1\n", "d.raw").as_bytes(),
            &[("d.raw", &raw[..40])],
        ),
        ErrorKind::Format,
        &["d.raw", "HeaderSize = -1", "40 bytes"],
    );
    // Compressed with -1 needs CompressedDataSize.
    let z = zlib(&raw);
    let zpadded = [vec![1u8; 9], z.clone()].concat();
    let h = compressed(Some(z.len())).replace("DimSize", "HeaderSize = -1\nDimSize");
    assert_eq!(
        values(mem_read(h.as_bytes(), &[("d.zraw", &zpadded)])),
        basic_values()
    );
    let h = compressed(None).replace("DimSize", "HeaderSize = -1\nDimSize");
    assert_err(
        mem_read(h.as_bytes(), &[("d.zraw", &zpadded)]),
        ErrorKind::Format,
        &["HeaderSize = -1", "CompressedDataSize"],
    );
}

#[test]
fn local_data_and_header_size_from_file_start() {
    let raw = le_bytes(&basic_values());
    let h = hdr("", "LOCAL");
    let mha = [h.as_bytes(), &raw].concat();
    assert_eq!(values(mem_read(&mha, &[])), basic_values());
    let crlf = [h.replace('\n', "\r\n").as_bytes(), &raw].concat();
    assert_eq!(values(mem_read(&crlf, &[])), basic_values());
    // HeaderSize counts from the start of the .mha, not from the end of the header.
    let h = hdr("HeaderSize = 1024\n", "LOCAL");
    let mut mha = h.clone().into_bytes();
    mha.resize(1024, b' ');
    mha.extend_from_slice(&raw);
    assert_eq!(values(mem_read(&mha, &[])), basic_values());
    let h = hdr("", "LOCAL");
    assert_err(
        mem_read([h.as_bytes(), &raw[..47]].concat().as_slice(), &[]),
        ErrorKind::Format,
        &["h.mhd", "too short", "48 bytes"],
    );
}

#[test]
fn list_files() {
    let raw = le_bytes(&basic_values());
    let (a, b) = raw.split_at(24);
    let h = hdr("", "LIST\nz0.raw\nz1.raw");
    assert_eq!(
        values(mem_read(h.as_bytes(), &[("z0.raw", a), ("z1.raw", b)])),
        basic_values()
    );
    let h = hdr("", "LIST 2D\nz0.raw\nz1.raw");
    assert_eq!(
        values(mem_read(h.as_bytes(), &[("z0.raw", a), ("z1.raw", b)])),
        basic_values()
    );
    let h = hdr("", "LIST 3D\nall.raw");
    assert_eq!(
        values(mem_read(h.as_bytes(), &[("all.raw", &raw)])),
        basic_values()
    );
    let rows: Vec<(String, &[u8])> = raw
        .chunks(8)
        .enumerate()
        .map(|(i, c)| (format!("r{i}"), c))
        .collect();
    let h = hdr(
        "",
        &format!(
            "LIST 1D\n{}",
            rows.iter()
                .map(|r| r.0.clone())
                .collect::<Vec<_>>()
                .join("\n")
        ),
    );
    let files: Vec<(&str, &[u8])> = rows.iter().map(|(n, c)| (n.as_str(), *c)).collect();
    assert_eq!(values(mem_read(h.as_bytes(), &files)), basic_values());
    // Missing and short files are errors, never zeros.
    let h = hdr("", "LIST\nz0.raw\nz1.raw");
    assert_err(
        mem_read(h.as_bytes(), &[("z0.raw", a)]),
        ErrorKind::Io,
        &["z1.raw"],
    );
    assert_err(
        mem_read(h.as_bytes(), &[("z0.raw", a), ("z1.raw", &b[..10])]),
        ErrorKind::Format,
        &["z1.raw", "too short"],
    );
    let h = hdr("", "LIST\nz0.raw");
    assert_err(
        mem_read(h.as_bytes(), &[("z0.raw", a)]),
        ErrorKind::Format,
        &["lists 1 files", "needs 2"],
    );
    // Per-file compression.
    let h = compressed(None).replace("ElementDataFile = d.zraw", "ElementDataFile = LIST\nz0\nz1");
    assert_eq!(
        values(mem_read(
            h.as_bytes(),
            &[("z0", &zlib(a)), ("z1", &gzip(b))]
        )),
        basic_values()
    );
}

#[test]
fn pattern_files() {
    let raw = le_bytes(&basic_values());
    let (a, b) = raw.split_at(24);
    let h = hdr("", "s%03d.raw");
    assert_eq!(
        values(mem_read(h.as_bytes(), &[("s001.raw", a), ("s002.raw", b)])),
        basic_values()
    );
    let h = hdr("", "s%d.raw 0 10 10");
    assert_eq!(
        values(mem_read(h.as_bytes(), &[("s0.raw", a), ("s10.raw", b)])),
        basic_values()
    );
    let h = hdr("", "s%2d.raw 8");
    assert_eq!(
        values(mem_read(
            h.as_bytes(),
            &[(" 8.raw".replace(' ', "s ").as_str(), a), ("s 9.raw", b)]
        )),
        basic_values()
    );
    let h = hdr("", "s%03d.raw");
    assert_err(
        mem_read(h.as_bytes(), &[("s001.raw", a)]),
        ErrorKind::Io,
        &["s002.raw"],
    );
    let h = hdr("", "s%d.raw 1 3 1");
    assert_err(
        mem_read(h.as_bytes(), &[]),
        ErrorKind::Format,
        &["more than the 2 slices"],
    );
    let h = hdr("", "s%d.raw 1 1 1");
    assert_err(
        mem_read(h.as_bytes(), &[]),
        ErrorKind::Format,
        &["names 1 files", "needs 2"],
    );
    let h = hdr("", "s%d.raw 1 1000000000000 1");
    assert_err(
        mem_read(h.as_bytes(), &[]),
        ErrorKind::Format,
        &["more than the 2 slices"],
    );
    let h = hdr("", "../s%d.raw");
    assert_err(
        mem_read(h.as_bytes(), &[]),
        ErrorKind::Format,
        &["../s1.raw", "'..'"],
    );
    let h = hdr("", "s%s.raw");
    assert_err(
        mem_read(h.as_bytes(), &[]),
        ErrorKind::Unsupported,
        &["s%s.raw"],
    );
}

#[test]
fn unsafe_paths_are_refused() {
    let raw = le_bytes(&basic_values());
    for (name, why) in [
        ("/etc/passwd", "absolute"),
        ("\\\\server\\share", "absolute"),
        ("C:\\x.raw", "absolute"),
        ("~/x.raw", "'~'"),
        ("../x.raw", "'..'"),
        ("a/../../x.raw", "'..'"),
        ("LIST\n../x.raw\n../y.raw", "'..'"),
    ] {
        let h = hdr("", name);
        assert_err(
            mem_read(h.as_bytes(), &[("x.raw", &raw)]),
            ErrorKind::Format,
            &[why, "allow_outside_paths"],
        );
    }
    // `..` is refused even when it stays inside textually: on disk it applies to a symlink's target.
    assert_err(
        mem_read(hdr("", "a/../d.raw").as_bytes(), &[("a/../d.raw", &raw)]),
        ErrorKind::Format,
        &["'..'", "allow_outside_paths"],
    );
    let h = hdr("", "d\0.raw");
    assert_err(
        mem_read(h.as_bytes(), &[("d\0.raw", &raw)]),
        ErrorKind::Format,
        &["NUL"],
    );
}

#[test]
fn outside_paths_on_disk_need_the_opt_in() {
    let dir = scratch("outside");
    std::fs::create_dir_all(dir.join("sub")).unwrap();
    std::fs::write(dir.join("d.raw"), le_bytes(&basic_values())).unwrap();
    let header = dir.join("sub/h.mhd");
    std::fs::write(&header, hdr("", "../d.raw")).unwrap();
    assert_err(
        mhd::read(&header, &ReadOptions::default()),
        ErrorKind::Format,
        &["../d.raw", "allow_outside_paths"],
    );
    let opts = ReadOptions {
        allow_outside_paths: true,
        ..Default::default()
    };
    assert_eq!(values(mhd::read(&header, &opts)), basic_values());
    let abs = dir.join("d.raw");
    std::fs::write(&header, hdr("", abs.to_str().unwrap())).unwrap();
    assert_err(
        mhd::read(&header, &ReadOptions::default()),
        ErrorKind::Format,
        &["absolute"],
    );
    assert_eq!(values(mhd::read(&header, &opts)), basic_values());
}

#[test]
fn missing_files_are_io_errors() {
    let dir = scratch("missing");
    let e = mhd::read(&dir.join("nope.mhd"), &ReadOptions::default());
    assert_err(e, ErrorKind::Io, &["nope.mhd"]);
    std::fs::write(dir.join("h.mhd"), BASIC).unwrap();
    assert_err(
        mhd::read(&dir.join("h.mhd"), &ReadOptions::default()),
        ErrorKind::Io,
        &["d.raw"],
    );
    assert_err(mem_read(BASIC.as_bytes(), &[]), ErrorKind::Io, &["d.raw"]);
}

#[test]
fn short_raw_file() {
    assert_err(
        mem_read(BASIC.as_bytes(), &[("d.raw", &[0; 47])]),
        ErrorKind::Format,
        &["d.raw", "too short for 48 bytes of MET_SHORT"],
    );
}

#[test]
fn limits_before_allocation() {
    let h = BASIC.replace("DimSize = 4 3 2", "DimSize = 100000 100000 100000");
    assert_err(
        mem_read(h.as_bytes(), &[]),
        ErrorKind::Limit,
        &["DimSize [100000, 100000, 100000]", "voxels"],
    );
    let h = BASIC.replace("DimSize = 4 3 2", "DimSize = 18446744073709551615 2 2");
    assert_err(
        mem_read(h.as_bytes(), &[]),
        ErrorKind::Limit,
        &["DimSize", "voxels"],
    );
    let h = BASIC
        .replace("DimSize = 4 3 2", "DimSize = 1024 1024 2000")
        .replace("MET_SHORT", "MET_DOUBLE");
    let h = h.replace("ElementType", "ElementNumberOfChannels = 2\nElementType");
    assert_err(
        mem_read(h.as_bytes(), &[]),
        ErrorKind::Limit,
        &["2 channels", "MET_DOUBLE", "bytes"],
    );
    let opts = ReadOptions {
        max_voxels: 23,
        ..Default::default()
    };
    assert_err(
        mem_read_opts(BASIC.as_bytes(), &[], &opts),
        ErrorKind::Limit,
        &["limit of 23 voxels"],
    );
    let opts = ReadOptions {
        max_bytes: 47,
        ..Default::default()
    };
    assert_err(
        mem_read_opts(BASIC.as_bytes(), &[], &opts),
        ErrorKind::Limit,
        &["limit of 47 bytes"],
    );
    // The default is generous enough for a 1024×1024×2000 int16 scan.
    let d = ReadOptions::default();
    assert!(d.max_voxels >= 1024 * 1024 * 2000 && d.max_bytes >= 1024 * 1024 * 2000 * 2);
}

#[test]
fn bad_geometry() {
    let raw = le_bytes(&basic_values());
    let files: &[(&str, &[u8])] = &[("d.raw", &raw)];
    let e = mem_read(
        BASIC
            .replace("DimSize = 4 3 2", "DimSize = 4 0 2")
            .as_bytes(),
        files,
    );
    assert_err(e, ErrorKind::Format, &["DimSize [4, 0, 2]", "zero"]);
    for sp in ["0 1 1", "-1 1 1", "nan 1 1", "inf 1 1"] {
        let h = BASIC.replace(
            "ElementSpacing = 0.7617189884185791 0.7617189884185791 2.5",
            &format!("ElementSpacing = {sp}"),
        );
        assert_err(
            mem_read(h.as_bytes(), files),
            ErrorKind::Format,
            &["ElementSpacing", "finite and positive"],
        );
    }
    let h = BASIC.replace(
        "TransformMatrix = 1 0 0 0 1 0 0 0 1",
        "TransformMatrix = 1 0 0 1 0 0 0 0 1",
    );
    assert_err(
        mem_read(h.as_bytes(), files),
        ErrorKind::Format,
        &["direction", "singular"],
    );
    let h = BASIC.replace(
        "Offset = -198.10000600000001 -195 -335.209991",
        "Offset = nan 0 0",
    );
    assert_err(
        mem_read(h.as_bytes(), files),
        ErrorKind::Format,
        &["origin", "finite"],
    );
}

#[test]
fn direction_follows_itk_convention() {
    // Row i of TransformMatrix is the direction of axis i: D[r][c] = TM[c*3 + r].
    let h = BASIC.replace(
        "TransformMatrix = 1 0 0 0 1 0 0 0 1",
        "TransformMatrix = 0 1 0 -1 0 0 0 0 1",
    );
    let v = mem_read(h.as_bytes(), &[("d.raw", &le_bytes(&basic_values()))]).unwrap();
    assert_eq!(
        v.geometry.direction,
        [[0.0, -1.0, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, 1.0]]
    );
}

#[test]
fn only_3d_volumes() {
    let h = "NDims = 2\nDimSize = 4 3\nElementType = MET_SHORT\nElementDataFile = d.raw\n";
    assert_err(
        mem_read(h.as_bytes(), &[]),
        ErrorKind::Unsupported,
        &["NDims = 2", "3-D"],
    );
    let h = "NDims = 4\nDimSize = 4 3 2 1\nElementType = MET_SHORT\nElementDataFile = d.raw\n";
    assert_err(
        mem_read(h.as_bytes(), &[]),
        ErrorKind::Unsupported,
        &["NDims = 4"],
    );
}

#[test]
fn multi_channel_is_read_and_reported() {
    let h = BASIC.replace("ElementType", "ElementNumberOfChannels = 2\nElementType");
    let raw: Vec<u8> = (0..48i16).flat_map(|x| x.to_le_bytes()).collect();
    let v = mem_read(h.as_bytes(), &[("d.raw", &raw)]).unwrap();
    assert_eq!(v.channels, 2);
    assert_eq!(v.data.len(), 48);
    assert_eq!(v.value(1, 0, 0), 2.0);
    assert_err(
        v.require_scalar(),
        ErrorKind::Unsupported,
        &["1 channel", "has 2"],
    );
}

#[test]
fn unknown_keys_are_kept() {
    let h = hdr(
        "Modality = MET_MOD_CT\nSeriesDescription = chest: lung window\n",
        "d.raw",
    );
    let v = mem_read(h.as_bytes(), &[("d.raw", &le_bytes(&basic_values()))]).unwrap();
    assert_eq!(
        v.extra,
        vec![
            ("Modality".into(), "MET_MOD_CT".into()),
            ("SeriesDescription".into(), "chest: lung window".into())
        ]
    );
}

#[test]
fn writer_rejects_bad_input() {
    let dir = scratch("writer_bad");
    let mut v = sample_volume(ElementType::Short, 1, lungseg::geometry::IDENTITY);
    assert_err(
        mhd::write(&dir.join("x.nii"), &v, &Default::default()),
        ErrorKind::InvalidArgument,
        &["x.nii", ".mhd or .mha"],
    );
    v.element_type = ElementType::Float;
    assert_err(
        mhd::write(&dir.join("x.mhd"), &v, &Default::default()),
        ErrorKind::InvalidArgument,
        &["MET_FLOAT", "MET_SHORT"],
    );
    v.element_type = ElementType::Short;
    v.channels = 2;
    assert_err(
        mhd::write(&dir.join("x.mhd"), &v, &Default::default()),
        ErrorKind::InvalidArgument,
        &["2 channels"],
    );
    v.channels = 1;
    assert_err(
        mhd::write(&dir.join("no/such/dir/x.mhd"), &v, &Default::default()),
        ErrorKind::Io,
        &["x.raw"],
    );
}

#[test]
fn writer_keeps_orientation_and_extra_keys() {
    let dir = scratch("writer_extra");
    let mut v = sample_volume(ElementType::Short, 1, lungseg::geometry::IDENTITY);
    v.anatomical_orientation = Some("LPS".into());
    v.extra = vec![
        ("Modality".into(), "MET_MOD_CT".into()),
        ("NDims".into(), "2".into()),
        ("Bad\nKey".into(), "x".into()),
        ("Evil".into(), "x\nElementDataFile = /etc/passwd".into()),
    ];
    mhd::write(&dir.join("x.mhd"), &v, &Default::default()).unwrap();
    let text = std::fs::read_to_string(dir.join("x.mhd")).unwrap();
    assert!(text.contains("AnatomicalOrientation = LPS\n"), "{text}");
    assert!(text.contains("Modality = MET_MOD_CT\n"), "{text}");
    assert!(
        !text.contains("NDims = 2") && !text.contains("Evil") && !text.contains("Bad"),
        "{text}"
    );
    let back = mhd::read(&dir.join("x.mhd"), &ReadOptions::default()).unwrap();
    assert_eq!(back.anatomical_orientation.as_deref(), Some("LPS"));
    assert_eq!(back.extra, vec![("Modality".into(), "MET_MOD_CT".into())]);
}

/// `link/../x.raw` with `link` pointing elsewhere: the OS resolves `..` against the link's
/// target, so a textual depth check would let the header read beside the target.
#[cfg(unix)]
#[test]
fn dot_dot_through_a_symlink_cannot_leave_the_folder() {
    let dir = scratch("symlink_dotdot");
    let secret = dir.join("secret");
    std::fs::create_dir_all(secret.join("deep")).unwrap();
    std::fs::write(secret.join("x.raw"), le_bytes(&basic_values())).unwrap();
    let scan = dir.join("scan");
    std::fs::create_dir_all(&scan).unwrap();
    std::os::unix::fs::symlink(secret.join("deep"), scan.join("link")).unwrap();
    let header = scan.join("h.mhd");
    std::fs::write(&header, hdr("", "link/../x.raw")).unwrap();
    assert_err(
        mhd::read(&header, &ReadOptions::default()),
        ErrorKind::Format,
        &["link/../x.raw", "'..'", "allow_outside_paths"],
    );
    // A symlink farm (links placed by the folder's owner) is still followed.
    std::os::unix::fs::symlink(secret.join("x.raw"), scan.join("d.raw")).unwrap();
    std::fs::write(&header, BASIC).unwrap();
    assert_eq!(
        values(mhd::read(&header, &ReadOptions::default())),
        basic_values()
    );
}

/// A `%d` pattern over a million slices is refused before one name is built (each name
/// costs memory and an open), not after a million names when the first file is missing.
#[test]
fn pattern_naming_too_many_files_is_a_limit() {
    let h =
        "NDims = 3\nDimSize = 1 1 1000000\nElementType = MET_UCHAR\nElementDataFile = f%d.raw\n";
    assert_err(
        mem_read(h.as_bytes(), &[]),
        ErrorKind::Limit,
        &["1000000 data files", "65536", "max_data_files"],
    );
    // The 2·10⁹-file header of the issue runs only in a memory-capped child: tests/hostile_inputs.rs.
}

/// `LIST` is checked against the cap from DimSize, before any name is read.
#[test]
fn list_naming_too_many_files_is_a_limit() {
    let mut h = String::from(
        "NDims = 3\nDimSize = 1 1 100000\nElementType = MET_UCHAR\nElementDataFile = LIST\n",
    );
    for i in 0..100000 {
        h.push_str(&format!("s{i}.raw\n"));
    }
    assert_err(
        mem_read(h.as_bytes(), &[]),
        ErrorKind::Limit,
        &["100000 data files", "max_data_files"],
    );
}

/// The cap is an option; under it, names are built one at a time and the first missing
/// file ends the read.
#[test]
fn max_data_files_is_settable_and_the_first_missing_file_fails() {
    let h = "NDims = 3\nDimSize = 1 1 3\nElementType = MET_UCHAR\nElementDataFile = f%d.raw\n";
    let opts = ReadOptions {
        max_data_files: 2,
        ..Default::default()
    };
    assert_err(
        mem_read_opts(h.as_bytes(), &[], &opts),
        ErrorKind::Limit,
        &["3 data files", "limit of 2"],
    );
    let opts = ReadOptions {
        max_data_files: 3,
        ..Default::default()
    };
    assert_err(
        mem_read_opts(h.as_bytes(), &[("f1.raw", &[7])], &opts),
        ErrorKind::Io,
        &["f2.raw"],
    );
    let v = mem_read_opts(
        h.as_bytes(),
        &[("f1.raw", &[7]), ("f2.raw", &[8]), ("f3.raw", &[9])],
        &opts,
    )
    .unwrap();
    assert_eq!(v.data, PixelData::U8(vec![7, 8, 9]));
}

/// ASCII data is streamed: a run of non-blank bytes is refused as soon as it is longer than
/// any number, without collecting it (or the whole file) first.
#[test]
fn ascii_data_with_an_endless_token_is_refused() {
    let h = "NDims = 3\nDimSize = 2 2 2\nElementType = MET_UCHAR\nBinaryData = False\nElementDataFile = a.txt\n";
    let text = vec![b'7'; 300];
    assert_err(
        mem_read(h.as_bytes(), &[("a.txt", &text)]),
        ErrorKind::Format,
        &["a.txt", "longer than 256 bytes"],
    );
    let v = mem_read(h.as_bytes(), &[("a.txt", b" 1 2\n3\t4 5 6 7 8 9")]).unwrap();
    assert_eq!(v.data, PixelData::U8(vec![1, 2, 3, 4, 5, 6, 7, 8]));
}

/// Runs `f` on a thread and fails the test if it has not returned within 10 s (a FIFO opened
/// for reading blocks until a writer appears; the stuck thread is left behind).
#[cfg(unix)]
fn within_10s<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(f());
    });
    rx.recv_timeout(std::time::Duration::from_secs(10))
        .expect("hung on a FIFO")
}

#[cfg(unix)]
fn mkfifo(p: &std::path::Path) {
    use std::os::unix::ffi::OsStrExt;
    let c = std::ffi::CString::new(p.as_os_str().as_bytes()).unwrap();
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
}

/// FIFOs (as the header or as a data file) and devices are refused without blocking.
#[cfg(unix)]
#[test]
fn fifos_and_devices_are_refused_without_blocking() {
    let dir = scratch("fifo");
    mkfifo(&dir.join("h.mhd"));
    let header = dir.join("h.mhd");
    let r = within_10s(move || mhd::read(&header, &ReadOptions::default()));
    assert_err(r, ErrorKind::Io, &["h.mhd", "not a regular file", "FIFO"]);

    let sub = dir.join("data");
    std::fs::create_dir_all(&sub).unwrap();
    mkfifo(&sub.join("d.raw"));
    std::fs::write(sub.join("h.mhd"), BASIC).unwrap();
    let header = sub.join("h.mhd");
    let r = within_10s(move || mhd::read(&header, &ReadOptions::default()));
    assert_err(r, ErrorKind::Io, &["d.raw", "not a regular file"]);

    std::os::unix::fs::symlink("/dev/zero", dir.join("zero.mhd")).unwrap();
    let header = dir.join("zero.mhd");
    let r = within_10s(move || mhd::read(&header, &ReadOptions::default()));
    assert_err(r, ErrorKind::Io, &["zero.mhd", "character device"]);
}
