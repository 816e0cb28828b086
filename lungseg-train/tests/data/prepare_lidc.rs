//! `prepare --lidc-xml`: the LIDC reader-XML parser (and what it refuses), the slice match,
//! pylidc's clustering and 50 % consensus replayed voxel for voxel from the committed fixture
//! (`tests/fixtures/lidc/make_lidc_fixture.py` wrote it with pylidc), LUNA16's excluded
//! findings kept out of the negatives, and `prepare` end to end giving outline labels.

use std::path::{Path, PathBuf};

use lungseg::geometry::Geometry;
use lungseg::volume::{PixelData, Volume};
use lungseg_train::dataset::PatchDataset;
use lungseg_train::prepare::lidc::cluster::cluster;
use lungseg_train::prepare::lidc::consensus::{consensus, inside, Bbox};
use lungseg_train::prepare::lidc::outline::{Contour, Outline};
use lungseg_train::prepare::lidc::slices::SliceIndex;
use lungseg_train::prepare::lidc::xml::{self, Limits, XmlErrorKind};
use lungseg_train::prepare::{self, PrepareConfig, SplitRule};
use serde_json::Value;

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/lidc")
        .join(name)
}

fn expected() -> Value {
    serde_json::from_str(&std::fs::read_to_string(fixture("pylidc_expected.json")).unwrap())
        .unwrap()
}

fn triple(v: &Value) -> [f64; 3] {
    std::array::from_fn(|a| v[a].as_f64().unwrap())
}

/// The scan geometry pylidc was given.
fn geometry(e: &Value) -> Geometry {
    let d = triple(&e["dims_xyz"]).map(|v| v as usize);
    Geometry::axis_aligned(d, triple(&e["spacing_xyz"]), triple(&e["origin_xyz"])).unwrap()
}

fn rle_decode(runs: &Value) -> Vec<bool> {
    let mut out = Vec::new();
    for (n, r) in runs.as_array().unwrap().iter().enumerate() {
        out.extend(std::iter::repeat_n(
            n % 2 == 1,
            r.as_u64().unwrap() as usize,
        ));
    }
    out
}

fn bbox(v: &Value) -> Bbox {
    Bbox {
        lo: std::array::from_fn(|a| v[a][0].as_i64().unwrap()),
        hi: std::array::from_fn(|a| v[a][1].as_i64().unwrap()),
    }
}

/// The fixture's outlines in pylidc's annotation order (point nodules left out).
fn fixture_outlines(geom: &Geometry) -> Vec<Outline> {
    let file = xml::parse(
        &std::fs::read(fixture("lidc_fixture.xml")).unwrap(),
        &Limits::default(),
    )
    .unwrap();
    let slices = SliceIndex::new(geom, 0.25).unwrap();
    let mut out = Vec::new();
    for (r, s) in file.sessions.iter().enumerate() {
        for n in s.nodules.iter().filter(|n| !n.is_point()) {
            out.push(Outline::new(r, n, &slices, geom.dims).unwrap());
        }
    }
    out
}

#[test]
fn parser_reads_the_fixture() {
    let f = xml::parse(
        &std::fs::read(fixture("lidc_fixture.xml")).unwrap(),
        &Limits::default(),
    )
    .unwrap();
    let e = expected();
    assert_eq!(f.series_uid, e["series_uid"].as_str().unwrap());
    assert_eq!(f.sessions.len(), 4);
    assert_eq!(f.sessions[2].radiologist, "reader-2");
    let counts: Vec<usize> = f.sessions.iter().map(|s| s.nodules.len()).collect();
    assert_eq!(counts, [2, 3, 2, 2]);
    let small = &f.sessions[1].nodules[2];
    assert_eq!(small.id, "small");
    assert!(small.is_point() && !f.sessions[1].nodules[0].is_point());
    let hole = &f.sessions[1].nodules[0].rois[2];
    assert!(!hole.inclusion);
    assert_eq!(hole.points, [[13, 11], [15, 11], [15, 13], [13, 13]]);
    assert_eq!(hole.z, -95.0);
    assert_eq!(hole.sop_uid, "1.3.6.1.4.1.14519.5.2.1.6279.6001.304");
    assert_eq!(f.sessions[1].nodules[0].rois[0].z, -96.26);
    let nn = &f.sessions[3].non_nodules;
    assert_eq!(
        (nn.len(), nn[0].point, nn[0].id.as_str()),
        (1, [20, 35], "nn-1")
    );
    let annotations = f
        .sessions
        .iter()
        .flat_map(|s| &s.nodules)
        .filter(|n| !n.is_point())
        .count();
    assert_eq!(annotations, e["annotations"].as_array().unwrap().len());
}

/// A minimal valid file around `body` (the inside of one readingSession).
fn doc(header: &str, body: &str) -> String {
    format!(
        "<?xml version=\"1.0\"?>\n<LidcReadMessage xmlns=\"http://www.nih.gov\">\
         <ResponseHeader>{header}</ResponseHeader><readingSession>{body}</readingSession></LidcReadMessage>"
    )
}

const UID: &str = "<SeriesInstanceUid>1.2.3</SeriesInstanceUid>";

fn roi(z: &str, inc: &str, pts: &str) -> String {
    format!("<unblindedReadNodule><noduleID>n</noduleID><roi><imageZposition>{z}</imageZposition><inclusion>{inc}</inclusion>{pts}</roi></unblindedReadNodule>")
}

const PT: &str = "<edgeMap><xCoord>1</xCoord><yCoord>2</yCoord></edgeMap>";

fn err(text: &[u8], limits: &Limits) -> (XmlErrorKind, String) {
    let e = xml::parse(text, limits).unwrap_err();
    (e.kind, e.message)
}

#[test]
fn parser_refuses_bad_and_hostile_input_with_one_clear_error() {
    let l = Limits::default();
    let ok = doc(UID, &roi("1.5", "TRUE", PT));
    assert!(xml::parse(ok.as_bytes(), &l).is_ok());
    // Without a namespace, and `nonNodule` reads.
    let plain = ok.replace(" xmlns=\"http://www.nih.gov\"", "");
    assert_eq!(
        xml::parse(plain.as_bytes(), &l).unwrap().sessions[0]
            .nodules
            .len(),
        1
    );

    let cases: Vec<(String, &str)> = vec![
        ("not xml at all".into(), "not well-formed XML"),
        (ok[..ok.len() - 20].into(), "not well-formed XML"),
        (doc("", &roi("1", "TRUE", PT)), "has no <SeriesInstanceUid>"),
        (
            doc("<SeriesInstanceUid>1.2.x</SeriesInstanceUid>", ""),
            "is not a DICOM UID",
        ),
        (doc(UID, &roi("nan", "TRUE", PT)), "<imageZposition> is 'nan', not a finite number"),
        (doc(UID, &roi("1e999", "TRUE", PT)), "not a finite number"),
        (doc(UID, &roi("abc", "TRUE", PT)), "not a finite number"),
        (doc(UID, &roi("1", "MAYBE", PT)), "<inclusion> is 'MAYBE'"),
        (doc(UID, &roi("1", "TRUE", "")), "<roi> has no <edgeMap>"),
        (
            doc(UID, &roi("1", "TRUE", "<edgeMap><xCoord>-1</xCoord><yCoord>2</yCoord></edgeMap>")),
            "<xCoord> is '-1', not a pixel index",
        ),
        (
            doc(UID, &roi("1", "TRUE", "<edgeMap><xCoord>1</xCoord><yCoord>99999999999</yCoord></edgeMap>")),
            "<yCoord> is '99999999999'",
        ),
        (
            doc(UID, &roi("1", "TRUE", "<edgeMap><xCoord>1.5</xCoord><yCoord>2</yCoord></edgeMap>")),
            "<xCoord> is '1.5'",
        ),
        (
            doc(UID, &roi("1", "TRUE", "<edgeMap><yCoord>2</yCoord></edgeMap>")),
            "<edgeMap> has no <xCoord>",
        ),
        (
            doc(UID, "<unblindedReadNodule><noduleID>x</noduleID></unblindedReadNodule>"),
            "nodule 'x' has no <roi>",
        ),
        (
            doc(UID, "<nonNodule><nonNoduleID>q</nonNoduleID><imageZposition>1</imageZposition></nonNodule>"),
            "<nonNodule> has no <locus>",
        ),
        // Entity expansion ("billion laughs") needs a DTD, which is refused.
        (
            "<?xml version=\"1.0\"?><!DOCTYPE a [<!ENTITY a \"aaaaaaaaaa\"><!ENTITY b \"&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;\">]><LidcReadMessage>&b;</LidcReadMessage>".into(),
            "not well-formed XML",
        ),
    ];
    for (text, want) in &cases {
        let (kind, msg) = err(text.as_bytes(), &l);
        assert_eq!(kind, XmlErrorKind::Invalid, "{msg}");
        assert!(msg.contains(want), "expected '{want}' in: {msg}");
    }
    // Line numbers point at the element.
    let (_, msg) = err(doc(UID, &roi("1", "TRUE", "\n\n")).as_bytes(), &l);
    assert!(msg.starts_with("line 2:"), "{msg}");

    // A chest X-ray read is recognised as such (skipped in a folder, not an error there).
    let (kind, msg) = err(b"<IdriReadMessage><x/></IdriReadMessage>", &l);
    assert_eq!(kind, XmlErrorKind::NotCtRead);
    assert!(msg.contains("<IdriReadMessage>"), "{msg}");
    let (_, msg) = err(&[0xff, 0xfe, b'<'], &l);
    assert!(msg.contains("not UTF-8"), "{msg}");

    // Limits: size, nodes, points per roi, points per file.
    let small = Limits {
        max_bytes: 100,
        ..l
    };
    assert!(err(ok.as_bytes(), &small)
        .1
        .contains("more than the 100 accepted"));
    let nested = format!("{}{}", "<a>".repeat(50_000), "</a>".repeat(50_000));
    let few_nodes = Limits {
        max_nodes: 1000,
        ..l
    };
    assert!(err(nested.as_bytes(), &few_nodes)
        .1
        .contains("more than 1000 XML nodes"));
    let many = doc(UID, &roi("1", "TRUE", &PT.repeat(11)));
    let per_roi = Limits {
        max_roi_points: 10,
        ..l
    };
    assert!(err(many.as_bytes(), &per_roi)
        .1
        .contains("a <roi> with more than 10 points"));
    let two = doc(
        UID,
        &(roi("1", "TRUE", &PT.repeat(6)) + &roi("2", "TRUE", &PT.repeat(6))),
    );
    let per_file = Limits {
        max_file_points: 10,
        ..l
    };
    assert!(err(two.as_bytes(), &per_file)
        .1
        .contains("more than 10 outline points in the file"));
    // Deep nesting within the node limit: an error or a parse, never a crash.
    let deep = format!("{}{}", "<a>".repeat(200_000), "</a>".repeat(200_000));
    assert!(xml::parse(deep.as_bytes(), &l).is_err());
}

#[test]
fn fuzz_seeds_and_regressions_replay() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz");
    let mut parsed = 0;
    let mut n = 0;
    for kind in ["seeds", "regressions"] {
        let dir = root.join(kind).join("lidc_xml");
        for e in std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
            let p = e.unwrap().path();
            if p.file_name().unwrap() == "README.md" {
                continue;
            }
            let data = std::fs::read(&p).unwrap();
            xml::fuzz_one(&data);
            n += 1;
            parsed += usize::from(kind == "seeds" && xml::parse(&data, &Limits::default()).is_ok());
        }
    }
    assert!(n >= 5, "only {n} lidc_xml fuzz inputs");
    assert!(parsed >= 3, "seeds should mostly parse, {parsed} did");
}

#[test]
fn slices_are_matched_by_z_within_the_tolerance() {
    let g = Geometry::axis_aligned([4, 4, 10], [0.7, 0.7, 1.25], [0.0, 0.0, -100.0]).unwrap();
    let s = SliceIndex::new(&g, 0.25).unwrap();
    assert_eq!(s.slice_of(-100.0 + 3.0 * 1.25), Some(3));
    assert_eq!(s.slice_of(-100.0 + 3.0 * 1.25 + 0.3), Some(3));
    assert_eq!(s.slice_of(-100.0 + 3.0 * 1.25 - 0.3), Some(3));
    assert_eq!(
        s.slice_of(-100.0 + 3.0 * 1.25 + 0.32),
        None,
        "beyond 0.3125 mm"
    );
    assert_eq!(s.slice_of(-100.0 - 0.2), Some(0));
    assert_eq!(s.slice_of(-100.0 + 9.0 * 1.25 + 0.2), Some(9));
    assert_eq!(
        s.slice_of(-100.0 + 10.0 * 1.25),
        None,
        "past the last slice"
    );
    // Slices stored head-first (z decreasing with k).
    let flipped = Geometry::new(
        [4, 4, 10],
        [0.7, 0.7, 1.25],
        [0.0, 0.0, -100.0],
        [[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, -1.0]],
    )
    .unwrap();
    let s = SliceIndex::new(&flipped, 0.25).unwrap();
    assert_eq!(s.slice_of(-100.0 - 2.0 * 1.25), Some(2));
    assert_eq!(s.slice_of(-100.0 + 1.25), None);
    let tilted = Geometry::new(
        [4, 4, 10],
        [1.0; 3],
        [0.0; 3],
        [[1.0, 0.0, 0.0], [0.0, 0.8, 0.6], [0.0, -0.6, 0.8]],
    )
    .unwrap();
    let e = SliceIndex::new(&tilted, 0.25).unwrap_err().to_string();
    assert!(e.contains("not axial"), "{e}");
    assert!(SliceIndex::new(&g, 0.0).is_err() && SliceIndex::new(&g, 0.6).is_err());
}

#[test]
fn clusters_match_pylidc() {
    let e = expected();
    let g = geometry(&e);
    let outlines = fixture_outlines(&g);
    let got = cluster(&outlines, e["slice_thickness"].as_f64().unwrap()).unwrap();
    let want: Vec<Vec<usize>> = e["clusters"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            c["annotations"]
                .as_array()
                .unwrap()
                .iter()
                .map(|v| v.as_u64().unwrap() as usize)
                .collect()
        })
        .collect();
    assert_eq!(got, want);
}

/// A one-point-per-slice outline at `(i, j)` on slice `k`.
fn dot(i: i64, j: i64, k: usize) -> Outline {
    Outline {
        reader: 0,
        nodule_id: format!("{i},{j},{k}"),
        contours: vec![Contour {
            k,
            inclusion: true,
            points: vec![[i, j]],
        }],
    }
}

#[test]
fn clusters_of_more_than_four_reads_shrink_the_tolerance() {
    // Chain 0–1 (1), 1–2 (√2), 2–3 (1), 3–4 (1), other pairs ≥ 2: one cluster of 5 at tol
    // 1.5; pylidc shrinks tol to 1.35, which cuts 1–2. Clusters sort by mean k.
    let o = vec![
        dot(0, 0, 0),
        dot(0, 1, 0),
        dot(0, 2, 1),
        dot(0, 3, 1),
        dot(0, 4, 1),
    ];
    // Without the shrink this would be one cluster of all five.
    assert_eq!(cluster(&o, 1.5).unwrap(), vec![vec![0, 1], vec![2, 3, 4]]);
    assert_eq!(cluster(&o, 1.0).unwrap(), vec![vec![0, 1], vec![2, 3, 4]]);
    assert_eq!(
        cluster(&o, 0.5).unwrap(),
        vec![vec![0], vec![1], vec![2], vec![3], vec![4]]
    );
    // Order: by mean centroid k, components first numbered by their first read.
    let o = vec![dot(0, 0, 9), dot(20, 0, 1), dot(0, 1, 9)];
    assert_eq!(cluster(&o, 1.25).unwrap(), vec![vec![1], vec![0, 2]]);
    assert_eq!(cluster(&[], 1.0).unwrap(), Vec::<Vec<usize>>::new());
}

#[test]
fn polygon_rule_matches_matplotlib() {
    for case in expected()["polygon_rule"].as_array().unwrap() {
        let poly: Vec<[i64; 2]> = case["polygon_ij"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| [p[0].as_i64().unwrap(), p[1].as_i64().unwrap()])
            .collect();
        let got: Vec<String> = (0..6)
            .map(|i| {
                (0..6)
                    .map(|j| if inside(&poly, [i, j]) { '1' } else { '0' })
                    .collect()
            })
            .collect();
        let want: Vec<&str> = case["inside_6x6"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r.as_str().unwrap())
            .collect();
        assert_eq!(got, want, "{poly:?}");
    }
}

#[test]
fn consensus_matches_pylidc_voxel_for_voxel() {
    let e = expected();
    let g = geometry(&e);
    let outlines = fixture_outlines(&g);
    for c in e["clusters"].as_array().unwrap() {
        let members: Vec<&Outline> = c["annotations"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| &outlines[v.as_u64().unwrap() as usize])
            .collect();
        let got = consensus(&members, 0.5).unwrap();
        assert_eq!(
            got.mask.bbox,
            bbox(&c["bbox_ijk"]),
            "{:?}",
            c["annotations"]
        );
        for (r, (mine, theirs)) in got
            .reads
            .iter()
            .zip(c["masks_rle"].as_array().unwrap())
            .enumerate()
        {
            let theirs = rle_decode(theirs);
            assert_eq!(mine.len(), theirs.len());
            let diff = mine.iter().zip(&theirs).filter(|(a, b)| a != b).count();
            assert_eq!(
                diff, 0,
                "read {r} of cluster {:?}: {diff} voxels differ",
                c["annotations"]
            );
        }
        let want = rle_decode(&c["consensus_rle"]);
        assert_eq!(got.mask.bits, want, "consensus of {:?}", c["annotations"]);
        assert_eq!(
            got.mask.count() as u64,
            c["consensus_voxels"].as_u64().unwrap()
        );
    }
}

/// Writes a scan with the fixture's geometry and uniform HU `hu` under `root/subset0/`.
fn write_scan(root: &Path, uid: &str, g: &Geometry, hu: i16) {
    let dir = root.join("subset0");
    std::fs::create_dir_all(&dir).unwrap();
    let v = Volume::new(*g, PixelData::I16(vec![hu; g.voxel_count()])).unwrap();
    lungseg::mhd::write(&dir.join(format!("{uid}.mhd")), &v, &Default::default()).unwrap();
}

fn run(input: &Path, out: &Path, cfg: &PrepareConfig) -> (prepare::PrepareSummary, Vec<String>) {
    let mut warnings = Vec::new();
    let s = prepare::prepare(input, out, cfg, |e| {
        if let prepare::Event::Warning(w) = e {
            warnings.push(w.to_string());
        }
    })
    .unwrap();
    (s, warnings)
}

#[test]
fn prepare_with_lidc_xml_labels_patches_with_the_consensus_outline() {
    let e = expected();
    let g = geometry(&e);
    let uid = e["series_uid"].as_str().unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let luna = tmp.path().join("luna");
    write_scan(&luna, uid, &g, 0);
    // Nodules A (4 readers) and B (3 readers) are LUNA16 annotations, centred on the voxel
    // nearest their consensus centre; C (1 reader) is not.
    let clusters = e["clusters"].as_array().unwrap();
    let centre = |c: &Value| -> [i64; 3] {
        let b = bbox(&c["bbox_ijk"]);
        let bits = rle_decode(&c["consensus_rle"]);
        let [_, nj, nk] = b.shape();
        let (mut s, mut n) = ([0.0; 3], 0.0);
        for (v, _) in bits.iter().enumerate().filter(|(_, &x)| x) {
            let ijk = [v / (nj * nk), v / nk % nj, v % nk];
            for ((sa, lo), d) in s.iter_mut().zip(b.lo).zip(ijk) {
                *sa += (lo + d as i64) as f64;
            }
            n += 1.0;
        }
        // (x, y, z) = (j, i, k)
        [
            (s[1] / n).round() as i64,
            (s[0] / n).round() as i64,
            (s[2] / n).round() as i64,
        ]
    };
    let mut csv = String::from("seriesuid,coordX,coordY,coordZ,diameter_mm\n");
    let mut centres = Vec::new();
    for c in &clusters[1..] {
        let v = centre(c);
        let w = g.index_to_world(v.map(|x| x as f64));
        csv += &format!("{uid},{},{},{},6.0\n", w[0], w[1], w[2]);
        centres.push((v, c));
    }
    std::fs::write(luna.join("annotations.csv"), csv).unwrap();
    // The reader files, with a chest X-ray read and a broken file beside them.
    let xml_dir = tmp.path().join("LIDC-XML-only/tcia-lidc-xml/185");
    std::fs::create_dir_all(&xml_dir).unwrap();
    std::fs::copy(fixture("lidc_fixture.xml"), xml_dir.join("069.xml")).unwrap();
    std::fs::write(xml_dir.join("cxr.xml"), "<IdriReadMessage/>").unwrap();
    std::fs::write(xml_dir.join("broken.xml"), "<LidcReadMessage><Resp").unwrap();

    let cfg = PrepareConfig {
        patch_size: [16, 16, 8],
        spacing_mm: [0.7, 0.7, 1.25],
        jitter_mm: 0.0,
        positives_per_nodule: 1,
        neg_ratio: 0.0,
        split: SplitRule::Fractions([1.0, 0.0, 0.0]),
        lidc_xml: Some(tmp.path().join("LIDC-XML-only")),
        ..Default::default()
    };
    let out = tmp.path().join("ds");
    let (s, warnings) = run(&luna, &out, &cfg);
    let l = s.lidc.as_ref().unwrap();
    assert_eq!((l.xml_files, l.not_ct_files, l.bad_files.len()), (3, 1, 1));
    assert!(
        warnings
            .iter()
            .any(|w| w.contains("broken.xml") && w.contains("not well-formed")),
        "{warnings:?}"
    );
    assert_eq!((l.scans_with_xml, l.scans_without_xml), (1, 0));
    assert_eq!((l.annotations_outlined, l.annotations_sphere), (2, 0));
    assert_eq!(
        (l.clusters_unmatched, l.point_findings, l.reads_skipped),
        (1, 2, 0)
    );

    let ds = PatchDataset::open(&out).unwrap();
    assert_eq!(ds.records.len(), 2);
    for (idx, r) in ds.records.iter().enumerate() {
        let mask = ds.load(idx).unwrap().mask;
        let cw = r.center_world.unwrap();
        let (v, c) = centres
            .iter()
            .find(|(v, _)| {
                let w = g.index_to_world(v.map(|x| x as f64));
                (0..3).all(|a| (w[a] - cw[a]).abs() < 1e-6)
            })
            .expect("a positive at an annotation");
        // Patch voxel (x, y, z) is scan voxel v + (x − 8, y − 8, z − 4): the label is pylidc's
        // consensus there.
        let b = bbox(&c["bbox_ijk"]);
        let bits = rle_decode(&c["consensus_rle"]);
        let mut want = vec![0u8; 16 * 16 * 8];
        for z in 0..8i64 {
            for y in 0..16i64 {
                for x in 0..16i64 {
                    let p = [v[1] + y - 8, v[0] + x - 8, v[2] + z - 4];
                    if b.contains(p) && bits[b.offset(p)] {
                        want[((z * 16 + y) * 16 + x) as usize] = 1;
                    }
                }
            }
        }
        assert_eq!(mask, want, "{}", r.id);
        let n = want.iter().filter(|&&m| m == 1).count();
        assert!(n > 20, "{}: {n} voxels", r.id);
        // Not the 6 mm sphere the annotation alone would give.
        let mut ball = vec![0u8; want.len()];
        let balls = lungseg::patch::sphere_mask(&cfg.spec(), cw, cw, 6.0, &mut ball).unwrap();
        assert_ne!(
            mask, ball,
            "{}: the label is the sphere ({balls} voxels)",
            r.id
        );
    }

    // Without --lidc-xml the same folder gives spheres.
    let out2 = tmp.path().join("ds-sphere");
    let (s2, _) = run(
        &luna,
        &out2,
        &PrepareConfig {
            lidc_xml: None,
            ..cfg.clone()
        },
    );
    assert!(s2.lidc.is_none());
    let ds2 = PatchDataset::open(&out2).unwrap();
    assert_ne!(ds2.load(0).unwrap().mask, ds.load(0).unwrap().mask);
}

#[test]
fn lidc_reads_that_miss_the_scan_are_skipped_and_reported() {
    let e = expected();
    let g = geometry(&e);
    let uid = e["series_uid"].as_str().unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let luna = tmp.path().join("luna");
    write_scan(&luna, uid, &g, 0);
    std::fs::write(
        luna.join("annotations.csv"),
        format!("seriesuid,coordX,coordY,coordZ,diameter_mm\n{uid},0,0,-90,5\n"),
    )
    .unwrap();
    // Reader 1's nodule A moved 0.5 mm off its slice: beyond 0.25 × 1.25 mm.
    let text = std::fs::read_to_string(fixture("lidc_fixture.xml"))
        .unwrap()
        .replacen(
            "<imageZposition>-96.260</imageZposition>",
            "<imageZposition>-95.760</imageZposition>",
            1,
        );
    let xml_dir = tmp.path().join("xml");
    std::fs::create_dir_all(&xml_dir).unwrap();
    std::fs::write(xml_dir.join("a.xml"), text).unwrap();
    let cfg = PrepareConfig {
        patch_size: [8, 8, 4],
        neg_ratio: 0.0,
        lidc_xml: Some(xml_dir),
        split: SplitRule::Fractions([1.0, 0.0, 0.0]),
        ..Default::default()
    };
    let (s, warnings) = run(&luna, &tmp.path().join("ds"), &cfg);
    let l = s.lidc.unwrap();
    assert_eq!(l.reads_skipped, 1);
    assert!(
        warnings.iter().any(|w| w.contains("reader 1 nodule 'n-A'")
            && w.contains("imageZposition -95.76 is on no slice")),
        "{warnings:?}"
    );
    // The annotation is far from every cluster: it keeps its sphere, and says so.
    assert_eq!((l.annotations_outlined, l.annotations_sphere), (0, 1));
    assert!(
        warnings.iter().any(|w| w.contains("sphere label")),
        "{warnings:?}"
    );
}

/// A scan of soft tissue (no random lung points) with class-0 candidates on a grid; some of
/// them listed in `annotations_excluded.csv`.
#[test]
fn excluded_findings_are_never_negatives() {
    let tmp = tempfile::tempdir().unwrap();
    let luna = tmp.path().join("luna");
    let uid = "1.2.840.1";
    let g = Geometry::axis_aligned([64, 64, 32], [1.0; 3], [0.0; 3]).unwrap();
    write_scan(&luna, uid, &g, 20);
    std::fs::write(
        luna.join("annotations.csv"),
        format!("seriesuid,coordX,coordY,coordZ,diameter_mm\n{uid},32,32,16,4\n"),
    )
    .unwrap();
    let mut cand = String::from("seriesuid,coordX,coordY,coordZ,class\n");
    let mut excl = String::from("seriesuid,coordX,coordY,coordZ,diameter_mm\n");
    let mut excluded = Vec::new();
    for (n, (x, y)) in [(8, 8), (8, 56), (56, 8), (56, 56), (8, 32), (56, 32)]
        .into_iter()
        .enumerate()
    {
        cand += &format!("{uid},{x},{y},16,0\n");
        if n % 2 == 0 {
            excl += &format!("{uid},{x},{y},16,{}\n", if n == 0 { "-1" } else { "3.5" });
            excluded.push([x as f64, y as f64, 16.0]);
        }
    }
    std::fs::write(luna.join("candidates.csv"), cand).unwrap();
    let cfg = PrepareConfig {
        patch_size: [8, 8, 8],
        neg_ratio: 6.0,
        candidate_fraction: 1.0,
        split: SplitRule::Fractions([1.0, 0.0, 0.0]),
        ..Default::default()
    };
    let near_excluded = |out: &Path| -> usize {
        PatchDataset::open(out)
            .unwrap()
            .records
            .iter()
            .filter(|r| r.label == 0)
            .filter(|r| {
                let c = r.center_world.unwrap();
                excluded
                    .iter()
                    .any(|e| (0..3).map(|a| (e[a] - c[a]).powi(2)).sum::<f64>().sqrt() < 10.0)
            })
            .count()
    };
    // Without the file, the excluded points are candidates like the others.
    let (s, _) = run(&luna, &tmp.path().join("ds0"), &cfg);
    assert_eq!((s.negatives(), s.excluded), (6, 0));
    assert_eq!(near_excluded(&tmp.path().join("ds0")), 3);
    // With it (at LUNA16's evaluation-script path), none of them is a negative.
    let at = luna.join("evaluationScript/annotations");
    std::fs::create_dir_all(&at).unwrap();
    std::fs::write(at.join("annotations_excluded.csv"), &excl).unwrap();
    let (s, warnings) = run(&luna, &tmp.path().join("ds1"), &cfg);
    assert_eq!(s.excluded, 3);
    assert_eq!(
        s.excluded_file.as_deref(),
        Some(at.join("annotations_excluded.csv").as_path())
    );
    assert_eq!(near_excluded(&tmp.path().join("ds1")), 0);
    assert_eq!(s.negatives(), 3, "only the 3 candidates not excluded");
    assert_eq!(s.positives(), 1);
    assert!(
        warnings.iter().any(|w| w.contains("only 3 of 6 negatives")),
        "{warnings:?}"
    );
    // A negative diameter other than −1 is refused with its line.
    std::fs::write(
        at.join("annotations_excluded.csv"),
        excl.replacen(",-1\n", ",-2\n", 1),
    )
    .unwrap();
    let e = prepare::prepare(&luna, &tmp.path().join("ds2"), &cfg, |_| {}).unwrap_err();
    assert!(
        format!("{e:#}")
            .contains("annotations_excluded.csv line 2: diameter_mm is -2, must be >= 0 or -1"),
        "{e:#}"
    );
}

#[test]
fn hostile_outlines_cost_one_error() {
    // A "nodule" spanning a huge box.
    let far = Outline {
        reader: 0,
        nodule_id: "wide".into(),
        contours: vec![
            Contour {
                k: 0,
                inclusion: true,
                points: vec![[0, 0], [0, 5000], [5000, 0]],
            },
            Contour {
                k: 900,
                inclusion: true,
                points: vec![[0, 0]],
            },
        ],
    };
    let e = consensus(&[&far], 0.5).unwrap_err().to_string();
    assert!(e.contains("more than 16777216"), "{e}");
    // Outlines with too many points to compare pairwise.
    let many = |k: usize| Outline {
        reader: 0,
        nodule_id: "many".into(),
        contours: vec![Contour {
            k,
            inclusion: true,
            points: (0..40_000).map(|i| [i % 500, i / 500]).collect(),
        }],
    };
    let e = cluster(&[many(0), many(1)], 1.0).unwrap_err().to_string();
    assert!(e.contains("too many to cluster"), "{e}");
    // A polygon with many vertices over a large box: too much fill work.
    let spiky = Outline {
        reader: 0,
        nodule_id: "spiky".into(),
        contours: vec![Contour {
            k: 0,
            inclusion: true,
            points: (0..20_000).map(|i| [(i % 2) * 2000, i / 10]).collect(),
        }],
    };
    let e = consensus(&[&spiky], 0.5).unwrap_err().to_string();
    assert!(e.contains("too complex to fill"), "{e}");
}
