//! `prepare` on small synthetic LUNA16 folders: counts, by-scan splits, labels, determinism,
//! and a clear message for every kind of bad input.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Path, PathBuf};

use lungseg_train::dataset::PatchDataset;
use lungseg_train::prepare::{self, luna, PrepareConfig, SplitRule};
use lungseg_train::synth::{self, SynthConfig};

fn small_synth() -> SynthConfig {
    SynthConfig {
        dims_xy: 128,
        z_extent_mm: 60.0,
        ..Default::default()
    }
}

/// A synthetic LUNA16 folder of `scans` scans, `subset_size` per subset folder.
fn luna(dir: &Path, scans: usize, subset_size: Option<usize>) -> PathBuf {
    let root = dir.join("luna");
    synth::write_dataset(&root, &small_synth(), scans, 5, subset_size, |_| {}).unwrap();
    root
}

/// The `.mhd` of a series anywhere below the LUNA16 folder.
fn scan_path(root: &Path, seriesuid: &str) -> PathBuf {
    let name = format!("{seriesuid}.mhd");
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for e in std::fs::read_dir(&dir).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else if p.file_name().is_some_and(|f| f == name.as_str()) {
                return p;
            }
        }
    }
    panic!("no {name} below {}", root.display())
}

fn cfg() -> PrepareConfig {
    PrepareConfig {
        patch_size: [16, 16, 16],
        jitter_mm: 3.0,
        positives_per_nodule: 2,
        neg_ratio: 2.0,
        seed: 9,
        ..Default::default()
    }
}

fn run(
    input: &Path,
    out: &Path,
    cfg: &PrepareConfig,
) -> anyhow::Result<(prepare::PrepareSummary, Vec<String>)> {
    let mut warnings = Vec::new();
    let s = prepare::prepare(input, out, cfg, |e| {
        if let prepare::Event::Warning(w) = e {
            warnings.push(w.to_string());
        }
    })?;
    Ok((s, warnings))
}

fn files(root: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    let mut out = BTreeMap::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for e in std::fs::read_dir(&dir).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else if p.file_name().unwrap() != prepare::REPORT {
                out.insert(
                    p.strip_prefix(root).unwrap().to_path_buf(),
                    std::fs::read(&p).unwrap(),
                );
            }
        }
    }
    out
}

#[test]
fn counts_splits_labels_and_determinism() {
    let tmp = tempfile::tempdir().unwrap();
    let input = luna(tmp.path(), 7, None);
    let annotations = luna::read_annotations(&input.join("annotations.csv")).unwrap();
    assert!(
        annotations.len() >= 3,
        "the synthetic set should have nodules"
    );
    let out = tmp.path().join("ds");
    let c = cfg();
    let (s, warnings) = run(&input, &out, &c).unwrap();
    assert!(warnings.is_empty(), "{warnings:?}");
    assert_eq!((s.scans_found, s.scans_ok), (7, 7));
    assert_eq!(s.positives(), annotations.len() * 2);
    // Lung points are plentiful here, so the global ratio is exact.
    assert_eq!(s.negatives(), s.positives() * 2);
    assert_eq!(
        s.splits["train"].scans + s.splits["val"].scans + s.splits["test"].scans,
        7
    );
    assert_eq!(
        [
            s.splits["train"].scans,
            s.splits["val"].scans,
            s.splits["test"].scans
        ],
        [5, 1, 1]
    );

    let ds = PatchDataset::open(&out).unwrap();
    assert_eq!(ds.records.len(), s.positives() + s.negatives());
    let mut split_of: HashMap<&str, &str> = HashMap::new();
    let mut spacing_of: HashMap<&str, [f64; 3]> = HashMap::new();
    for r in &ds.records {
        // Each patch carries its scan's voxel spacing (what the model's intended use is
        // judged on), as the scan's header gives it.
        let want = *spacing_of.entry(&r.seriesuid).or_insert_with(|| {
            let path = scan_path(&input, &r.seriesuid);
            lungseg::mhd::read(&path, &Default::default())
                .unwrap()
                .geometry
                .spacing
        });
        // To 1e-12: the manifest's went through serde_json (see the diameters below).
        let got = r.scan_spacing_mm.expect("a scan spacing");
        assert!(
            got.iter().zip(want).all(|(a, b)| (a - b).abs() < 1e-12),
            "{}: {got:?} against {want:?}",
            r.id
        );
        let prev = split_of.insert(&r.seriesuid, &r.split);
        assert!(
            prev.is_none_or(|p| p == r.split),
            "{} is in two splits",
            r.seriesuid
        );
        assert_eq!(r.shape, [16, 16, 16]);
    }
    let by_uid: HashMap<&str, Vec<&luna::Annotation>> =
        annotations.iter().fold(HashMap::new(), |mut m, a| {
            m.entry(a.seriesuid.as_str()).or_default().push(a);
            m
        });
    for (i, r) in ds.records.iter().enumerate() {
        let p = ds.load(i).unwrap();
        let fg: Vec<[f64; 3]> = (0..p.mask.len())
            .filter(|&v| p.mask[v] == 1)
            .map(|v| [(v % 16) as f64, (v / 16 % 16) as f64, (v / 256) as f64])
            .collect();
        let c = r.center_world.unwrap();
        if r.label == 1 {
            assert!(!fg.is_empty(), "positive {} has an empty mask", r.id);
            let d = r.diameter_mm.unwrap();
            // The nodule this patch was cut around is within the jitter of the centre, and the
            // mask voxel nearest it is set. Diameters are compared to 1e-9: the manifest's went
            // through serde_json, which may round the last bit (no `float_roundtrip` here).
            let a = by_uid[r.seriesuid.as_str()]
                .iter()
                .find(|a| {
                    (a.diameter_mm - d).abs() <= 1e-9 * d
                        && (0..3).all(|k| (a.world[k] - c[k]).abs() <= 3.0 + 1e-9)
                })
                .unwrap_or_else(|| {
                    panic!(
                        "{}: no annotation within the jitter: centre {c:?} d {d} of {:?}",
                        r.id,
                        by_uid[r.seriesuid.as_str()]
                            .iter()
                            .map(|a| (a.world, a.diameter_mm))
                            .collect::<Vec<_>>()
                    )
                });
            let idx: Vec<usize> = (0..3)
                .map(|k| (a.world[k] - c[k] + 8.0).round() as usize)
                .collect();
            assert_eq!(p.mask[(idx[2] * 16 + idx[1]) * 16 + idx[0]], 1, "{}", r.id);
            // The HU file is the scan cut at the recorded centre (not a lung mask, not another
            // place of the scan: "some voxel above −300 HU" would hold on any chest wall).
            let scan = scan_path(&input, &r.seriesuid);
            let volume = lungseg::mhd::read(&scan, &Default::default()).unwrap();
            let spec = lungseg::patch::PatchSpec {
                size: [16; 3],
                spacing_mm: r.spacing_mm.unwrap(),
                outside_hu: -1000.0,
            };
            let direct = lungseg::patch::extract_patch(&volume, c, &spec).unwrap();
            assert_eq!(p.hu, direct, "{}: HU is not the scan at its centre", r.id);
        } else {
            // Negatives are clear of nodules (the clearance exceeds the patch half-size here
            // only for small nodules, so just check the centre voxel).
            assert_eq!(p.mask[(8 * 16 + 8) * 16 + 8], 0, "{}", r.id);
        }
    }

    // Same input and seed: byte-identical dataset.
    let out2 = tmp.path().join("ds2");
    run(&input, &out2, &c).unwrap();
    assert_eq!(files(&out), files(&out2));
    // The report says what happened.
    let rep: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join(prepare::REPORT)).unwrap()).unwrap();
    assert_eq!(rep["scans_ok"], 7);
    assert_eq!(rep["splits"]["train"]["scans"], 5);
}

/// `--border-fraction` cuts that share of each scan's negatives on the lung's border, all
/// clear of nodules, without touching the positives; the other negatives are cut as before.
#[test]
fn border_negatives_take_their_share_of_the_negatives() {
    let tmp = tempfile::tempdir().unwrap();
    let input = luna(tmp.path(), 4, None);
    let plain = tmp.path().join("plain");
    let border = tmp.path().join("border");
    let (s0, _) = run(&input, &plain, &cfg()).unwrap();
    let c = PrepareConfig {
        border_fraction: 0.5,
        ..cfg()
    };
    let (s1, _) = run(&input, &border, &c).unwrap();
    assert_eq!(s1.positives(), s0.positives());
    let tags = |dir: &Path| -> BTreeMap<char, usize> {
        let ds = PatchDataset::open(dir).unwrap();
        ds.records.iter().fold(BTreeMap::new(), |mut m, r| {
            *m.entry(r.id.chars().rev().nth(3).unwrap()).or_default() += 1;
            m
        })
    };
    let (t0, t1) = (tags(&plain), tags(&border));
    assert_eq!(t0.get(&'b'), None);
    let b = t1[&'b'];
    assert!(
        b * 2 >= s1.negatives() - 4 && b * 2 <= s1.negatives() + 4,
        "{b} border negatives of {}",
        s1.negatives()
    );
    assert_eq!(t1[&'p'], t0[&'p']);
    let ds = PatchDataset::open(&border).unwrap();
    for (i, r) in ds
        .records
        .iter()
        .enumerate()
        .filter(|(_, r)| r.id.contains("_b"))
    {
        let p = ds.load(i).unwrap();
        assert_eq!((r.label, p.mask[(8 * 16 + 8) * 16 + 8]), (0, 0), "{}", r.id);
        // On the border: the patch holds both lung and thick tissue.
        let lung = p.hu.iter().filter(|&&h| h < -700.0).count();
        let tissue = p.hu.iter().filter(|&&h| h > -300.0).count();
        assert!(
            lung > 100 && tissue > 100,
            "{}: {lung} lung, {tissue} tissue voxels",
            r.id
        );
    }
}

#[test]
fn unjittered_positive_masks_are_centred() {
    let tmp = tempfile::tempdir().unwrap();
    let input = luna(tmp.path(), 4, None);
    let out = tmp.path().join("ds");
    let c = PrepareConfig {
        jitter_mm: 0.0,
        positives_per_nodule: 1,
        patch_size: [24, 24, 24],
        ..cfg()
    };
    run(&input, &out, &c).unwrap();
    let ds = PatchDataset::open(&out).unwrap();
    let mut checked = 0;
    for (i, r) in ds.records.iter().enumerate().filter(|(_, r)| r.label == 1) {
        let m = ds.load(i).unwrap().mask;
        let (mut s, mut n) = ([0.0; 3], 0.0);
        for (v, _) in m.iter().enumerate().filter(|(_, &x)| x == 1) {
            s[0] += (v % 24) as f64;
            s[1] += (v / 24 % 24) as f64;
            s[2] += (v / 576) as f64;
            n += 1.0;
        }
        assert!(n > 0.0, "{}", r.id);
        if r.diameter_mm.unwrap() < 20.0 {
            for (k, sk) in s.iter().enumerate() {
                assert!(
                    (sk / n - 12.0).abs() <= 1.0,
                    "{} axis {k}: centroid {}",
                    r.id,
                    sk / n
                );
            }
            checked += 1;
        }
    }
    assert!(checked > 0);
}

#[test]
fn split_by_subset_folds() {
    let tmp = tempfile::tempdir().unwrap();
    let input = luna(tmp.path(), 5, Some(2)); // subset0: 2, subset1: 2, subset2: 1
    let scans = luna::find_scans(&input).unwrap();
    let out = tmp.path().join("ds");
    let c = PrepareConfig {
        split: SplitRule::parse_subsets("train=0,val=1").unwrap(),
        ..cfg()
    };
    let (s, _) = run(&input, &out, &c).unwrap();
    assert_eq!(s.scans_left_out, 1);
    assert_eq!(
        (
            s.splits["train"].scans,
            s.splits["val"].scans,
            s.splits["test"].scans
        ),
        (2, 2, 0)
    );
    let subset: HashMap<&str, u32> = scans
        .iter()
        .map(|s| (s.seriesuid.as_str(), s.subset.unwrap()))
        .collect();
    for r in PatchDataset::open(&out).unwrap().records {
        let want = ["train", "val"][subset[r.seriesuid.as_str()] as usize];
        assert_eq!(r.split, want, "{}", r.id);
    }
}

/// Rewrites a CSV of the LUNA16 folder with `f` applied to its text.
fn edit(input: &Path, name: &str, f: impl FnOnce(String) -> String) {
    let p = input.join(name);
    let text = std::fs::read_to_string(&p).unwrap();
    std::fs::write(&p, f(text)).unwrap();
}

#[test]
fn bad_csv_input_gives_clear_messages() {
    let tmp = tempfile::tempdir().unwrap();
    let input = luna(tmp.path(), 3, None);
    let pristine = (
        std::fs::read_to_string(input.join("annotations.csv")).unwrap(),
        std::fs::read_to_string(input.join("candidates.csv")).unwrap(),
    );
    let reset = || {
        std::fs::write(input.join("annotations.csv"), &pristine.0).unwrap();
        std::fs::write(input.join("candidates.csv"), &pristine.1).unwrap();
    };
    let err = |name: &str, f: &dyn Fn(String) -> String| {
        reset();
        edit(&input, name, f);
        let e = run(&input, &tmp.path().join("ds"), &cfg()).unwrap_err();
        format!("{e:#}")
    };

    let e = err("annotations.csv", &|t| {
        t.replacen(",diameter_mm", ",diam", 1)
    });
    assert!(
        e.contains("annotations.csv: missing column 'diameter_mm'"),
        "{e}"
    );
    let e = err("candidates.csv", &|t| t.replacen(",class", ",label", 1));
    assert!(e.contains("candidates.csv: missing column 'class'"), "{e}");

    let uid = pristine
        .0
        .lines()
        .nth(1)
        .unwrap()
        .split(',')
        .next()
        .unwrap()
        .to_string();
    let e = err("annotations.csv", &|t| {
        t + &format!("{uid},1.0,nan,3.0,5.0\n")
    });
    let line = pristine.0.lines().count() + 1;
    assert!(
        e.contains(&format!(
            "annotations.csv line {line}: column 'coordY' is 'nan', not a finite number"
        )),
        "{e}"
    );
    let e = err("annotations.csv", &|t| {
        t + &format!("{uid},abc,2.0,3.0,5.0\n")
    });
    assert!(
        e.contains("column 'coordX' is 'abc', not a finite number"),
        "{e}"
    );
    let e = err("annotations.csv", &|t| {
        t + &format!("{uid},1.0,2.0,3.0,-4\n")
    });
    assert!(e.contains("diameter_mm is -4, must be >= 0"), "{e}");
    let e = err("candidates.csv", &|t| t + &format!("{uid},1.0,2.0,3.0,2\n"));
    assert!(e.contains("class is '2', expected 0 or 1"), "{e}");

    // An annotation for a scan that is not on disk: warned about, counted, not fatal.
    reset();
    edit(&input, "annotations.csv", |t| {
        t + "1.2.3.999,1.0,2.0,3.0,5.0\n"
    });
    let (s, warnings) = run(&input, &tmp.path().join("ds"), &cfg()).unwrap();
    assert_eq!(s.unknown_annotations, 1);
    assert_eq!(s.unknown_seriesuids, ["1.2.3.999"]);
    assert!(
        warnings.iter().any(
            |w| w.contains("1 annotation(s) name 1 seriesuid(s) with no scan")
                && w.contains("1.2.3.999")
        ),
        "{warnings:?}"
    );
}

#[test]
fn damaged_scans_are_reported_and_skipped() {
    let tmp = tempfile::tempdir().unwrap();
    let input = luna(tmp.path(), 4, None);
    let scans = luna::find_scans(&input).unwrap();
    // A header with a bad DimSize, and a scan whose data file is cut short.
    std::fs::write(
        &scans[0].path,
        "ObjectType = Image\nNDims = 3\nDimSize = 10 x 10\n",
    )
    .unwrap();
    let raw = scans[1].path.with_extension("raw");
    let bytes = std::fs::read(&raw).unwrap();
    std::fs::write(&raw, &bytes[..bytes.len() / 2]).unwrap();
    let out = tmp.path().join("ds");
    let (s, warnings) = run(&input, &out, &cfg()).unwrap();
    assert_eq!((s.scans_ok, s.scans_skipped.len()), (2, 2));
    let skipped: HashSet<&str> = s
        .scans_skipped
        .iter()
        .map(|k| k.seriesuid.as_str())
        .collect();
    assert!(
        skipped.contains(scans[0].seriesuid.as_str())
            && skipped.contains(scans[1].seriesuid.as_str())
    );
    for k in &s.scans_skipped {
        assert!(!k.reason.is_empty());
        assert!(
            warnings
                .iter()
                .any(|w| w.starts_with("skipping") && w.contains(&k.seriesuid)),
            "{warnings:?}"
        );
    }
    let rep = std::fs::read_to_string(out.join(prepare::REPORT)).unwrap();
    assert!(
        rep.contains(&scans[0].seriesuid) && rep.contains("DimSize"),
        "{rep}"
    );
    // No patch of a skipped scan made it into the dataset.
    let ds = PatchDataset::open(&out).unwrap();
    assert!(ds
        .records
        .iter()
        .all(|r| !skipped.contains(r.seriesuid.as_str())));
}

#[test]
fn empty_folder_and_missing_annotations() {
    let tmp = tempfile::tempdir().unwrap();
    let e = format!(
        "{:#}",
        run(tmp.path(), &tmp.path().join("ds"), &cfg()).unwrap_err()
    );
    assert!(e.contains("annotations.csv"), "{e}");
    std::fs::write(
        tmp.path().join("annotations.csv"),
        "seriesuid,coordX,coordY,coordZ,diameter_mm\n",
    )
    .unwrap();
    let e = format!(
        "{:#}",
        run(tmp.path(), &tmp.path().join("ds"), &cfg()).unwrap_err()
    );
    assert!(e.contains("no subset*/<seriesuid>.mhd"), "{e}");
}

/// `--label-masks` labels every patch voxel by the label volume at its nearest scan voxel (all
/// nodules of the scan), not by spheres: the same sites get other labels than without it; a
/// label volume off its scan's grid or with a value no annotation has skips that scan.
#[test]
fn label_masks_label_each_nodule_by_its_painted_shape() {
    let tmp = tempfile::tempdir().unwrap();
    let input = luna(tmp.path(), 4, None);
    let seg = input.join("seg-nodules");
    let c = PrepareConfig {
        label_masks: Some(seg.clone()),
        patch_size: [24, 24, 24],
        ..cfg()
    };
    let (painted, spheres) = (tmp.path().join("painted"), tmp.path().join("spheres"));
    let (s, warnings) = run(&input, &painted, &c).unwrap();
    assert!(
        s.scans_skipped.is_empty() && warnings.is_empty(),
        "{warnings:?}"
    );
    run(
        &input,
        &spheres,
        &PrepareConfig {
            label_masks: None,
            ..c.clone()
        },
    )
    .unwrap();
    let (a, b) = (
        PatchDataset::open(&painted).unwrap(),
        PatchDataset::open(&spheres).unwrap(),
    );
    assert_eq!(a.records.len(), b.records.len());
    let spec = c.spec();
    let (mut differ, mut nodule_voxels) = (0, 0);
    for (i, r) in a.records.iter().enumerate() {
        assert_eq!(r.id, b.records[i].id);
        let mask = a.load(i).unwrap().mask;
        let vol = lungseg::mhd::read(
            &seg.join(format!("{}.mhd", r.seriesuid)),
            &Default::default(),
        )
        .unwrap();
        let g = vol.geometry;
        let mut want = vec![0u8; mask.len()];
        for (v, w) in want.iter_mut().enumerate() {
            let (x, y, z) = (v % 24, v / 24 % 24, v / 576);
            let idx = g.world_to_index(spec.voxel_world(r.center_world.unwrap(), [x, y, z]));
            let [i, j, k] = idx.map(|c| c.round());
            if [i, j, k]
                .iter()
                .zip(g.dims)
                .all(|(&c, n)| c >= 0.0 && c < n as f64)
            {
                *w = u8::from(vol.value(i as usize, j as usize, k as usize) > 0.0);
            }
        }
        assert_eq!(mask, want, "{}", r.id);
        nodule_voxels += mask.iter().filter(|&&m| m == 1).count();
        differ += usize::from(mask != b.load(i).unwrap().mask);
    }
    assert!(nodule_voxels > 0 && differ > 0, "{nodule_voxels} {differ}");

    // A label volume with a value beyond the scan's annotations, and one on another grid.
    let uids: Vec<String> = luna::find_scans(&input)
        .unwrap()
        .into_iter()
        .map(|s| s.seriesuid)
        .collect();
    let path = seg.join(format!("{}.mhd", uids[0]));
    let mut v = lungseg::mhd::read(&path, &Default::default()).unwrap();
    v.data = lungseg::volume::PixelData::U8(vec![200; v.geometry.dims.iter().product()]);
    lungseg::mhd::write(&path, &v, &Default::default()).unwrap();
    let path = seg.join(format!("{}.mhd", uids[1]));
    let mut v = lungseg::mhd::read(&path, &Default::default()).unwrap();
    v.geometry.origin[0] += 1.0;
    lungseg::mhd::write(&path, &v, &Default::default()).unwrap();
    let (s, _) = run(&input, &tmp.path().join("bad"), &c).unwrap();
    let reasons: HashMap<&str, &str> = s
        .scans_skipped
        .iter()
        .map(|k| (k.seriesuid.as_str(), k.reason.as_str()))
        .collect();
    assert!(
        reasons[uids[0].as_str()].contains("value 200"),
        "{reasons:?}"
    );
    assert!(reasons[uids[1].as_str()].contains("grid"), "{reasons:?}");
}

/// A re-export that quotes every field, ends lines with CRLF, starts with a byte-order mark
/// and ends with a blank line (as spreadsheets and pandas may write it) reads exactly like
/// LUNA16's plain file. A comma splitter keeps the quotes: the seriesuid then names no scan and
/// `"1.0"` is not a number.
#[test]
fn quoted_crlf_csv_reads_like_the_plain_file() {
    let tmp = tempfile::tempdir().unwrap();
    let input = luna(tmp.path(), 2, None);
    let plain = std::fs::read_to_string(input.join("annotations.csv")).unwrap();
    let quoted: String = plain
        .lines()
        .map(|l| {
            let fields: Vec<String> = l.split(',').map(|f| format!("\"{f}\"")).collect();
            fields.join(",") + "\r\n"
        })
        .collect();
    let quoted_path = tmp.path().join("quoted.csv");
    std::fs::write(&quoted_path, format!("\u{feff}{quoted}\r\n")).unwrap();
    let want = luna::read_annotations(&input.join("annotations.csv")).unwrap();
    assert!(!want.is_empty());
    assert_eq!(luna::read_annotations(&quoted_path).unwrap(), want);
}

/// A table far larger than any LUNA16 file is refused from its size, before it is read (a
/// sparse file: nothing is written).
#[test]
fn a_csv_over_the_size_limit_is_refused_before_reading() {
    let tmp = tempfile::tempdir().unwrap();
    let p = tmp.path().join("annotations.csv");
    let f = std::fs::File::create(&p).unwrap();
    f.set_len(luna::MAX_CSV_BYTES + 1).unwrap();
    let e = format!("{:#}", luna::read_annotations(&p).unwrap_err());
    assert!(
        e.contains("annotations.csv") && e.contains("more than the"),
        "{e}"
    );
}

/// Every committed `luna_csv` fuzz seed and saved finding runs through the fuzz target's body;
/// the seeds are real tables, so most of them must read as annotations or candidates.
#[test]
fn luna_csv_fuzz_seeds_and_regressions_replay() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz");
    let (mut n, mut read) = (0, 0);
    for kind in ["seeds", "regressions"] {
        let dir = root.join(kind).join("luna_csv");
        for e in std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
            let p = e.unwrap().path();
            if p.file_name().unwrap() == "README.md" {
                continue;
            }
            luna::fuzz_one(&std::fs::read(&p).unwrap());
            n += 1;
            let ok = luna::read_excluded(&p).is_ok() || luna::read_candidates(&p).is_ok();
            read += usize::from(kind == "seeds" && ok);
        }
    }
    assert!(n >= 5, "only {n} luna_csv fuzz inputs");
    assert!(read >= 5, "seeds should read as LUNA16 tables, {read} did");
}

/// `--small-nodule-positives D:K` cuts K positives around each nodule below D mm and
/// `--positives-per-nodule` around the others; the negatives follow the positives' total
/// through `--neg-ratio`.
#[test]
fn small_nodules_get_their_own_positive_count() {
    let tmp = tempfile::tempdir().unwrap();
    let input = luna(tmp.path(), 4, None);
    let (plain, small) = (tmp.path().join("plain"), tmp.path().join("small"));
    let (s0, _) = run(&input, &plain, &cfg()).unwrap();
    // Per nodule (scan, diameter) the number of positives cut around it.
    let per_nodule = |dir: &Path| -> BTreeMap<(String, u64), usize> {
        let ds = PatchDataset::open(dir).unwrap();
        ds.records
            .iter()
            .filter(|r| r.label == 1)
            .fold(BTreeMap::new(), |mut m, r| {
                let d = r.diameter_mm.unwrap();
                *m.entry((r.seriesuid.clone(), d.to_bits())).or_default() += 1;
                m
            })
    };
    let before = per_nodule(&plain);
    let mut diameters: Vec<f64> = before.keys().map(|k| f64::from_bits(k.1)).collect();
    diameters.sort_by(f64::total_cmp);
    // A cut between two drawn sizes, so that both kinds occur.
    let below_mm = diameters[diameters.len() / 2];
    assert!(diameters[0] < below_mm, "{diameters:?}");
    let c = PrepareConfig {
        small_nodule_positives: Some(prepare::SmallNodulePositives {
            below_mm,
            per_nodule: 5,
        }),
        ..cfg()
    };
    let (s1, _) = run(&input, &small, &c).unwrap();
    let after = per_nodule(&small);
    assert_eq!(
        after.keys().collect::<Vec<_>>(),
        before.keys().collect::<Vec<_>>()
    );
    for ((uid, bits), n) in &after {
        let d = f64::from_bits(*bits);
        let want = if d < below_mm { 5 } else { 2 };
        assert_eq!(*n, want, "{uid}: {d} mm nodule");
    }
    let n_small = diameters.iter().filter(|&&d| d < below_mm).count();
    assert_eq!(s1.positives(), s0.positives() + 3 * n_small);
    let ratio = s1.negatives() as f64 / s1.positives() as f64;
    assert!((ratio - 2.0).abs() < 0.1, "{} negatives", s1.negatives());
}

#[test]
fn small_nodule_positives_parse_as_diameter_and_count() {
    let p: prepare::SmallNodulePositives = "10:8".parse().unwrap();
    assert_eq!((p.below_mm, p.per_nodule), (10.0, 8));
    for bad in ["10", "x:8", "10:-1", "0:4", "nan:4", "10:"] {
        assert!(
            bad.parse::<prepare::SmallNodulePositives>().is_err(),
            "{bad:?} accepted"
        );
    }
}
