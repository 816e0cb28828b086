//! Bodies of the model and C-API fuzz targets, shared with the stable seed-replay test so that
//! CI runs every seed and saved crash exactly as the fuzzer did. (MetaImage targets live in
//! [`crate::mhd::fuzzing`].)
#![doc(hidden)]

use crate::error::try_vec;
use crate::ffi::*;
use crate::mc::{self, McOptions, UncertaintyMaps};
use crate::model::Model;
use std::ptr::{null, null_mut};

/// Largest patch a fuzzed model also runs the (slower) Monte-Carlo pass on. The first,
/// deterministic pass always runs: it allocates the workspace a caller's first prediction
/// would, so a model whose workspace is too big for its host is found (under the fuzzer's
/// memory cap), not skipped.
const MAX_MC_VOXELS: usize = 16 * 16 * 16;

/// `model_load`: any bytes either load into a model that can run, or give an error; never a
/// panic, never an allocation the file did not pay for.
pub fn model_load(data: &[u8]) {
    if let Ok(model) = Model::from_bytes(data) {
        run_model(&model);
    }
}

/// Splits `model_config` inputs: the `config` JSON, then optionally bytes written over the
/// start of the tensor data (weights, BN statistics: non-finite and extreme values).
pub const WEIGHTS_MARKER: &[u8] = b"\n@@WEIGHTS\n";

/// `model_config`: the valid model `model_bytes` with its `config` metadata replaced by the
/// input (and optionally its first weight bytes overwritten): hostile patch sizes, channels,
/// `bn_eps`, windows, dropout, mask threshold, flips and minimum components on real tensors,
/// through the library's default limits. The file says the newest `format_version`, so that
/// every key is read (`model_load` fuzzes the version checks).
pub fn model_config(model_bytes: &[u8], data: &[u8]) {
    let Some(bytes) = with_config(model_bytes, data) else {
        return;
    };
    model_load(&bytes);
}

/// Rebuilds a safetensors file with `data`'s config (and weight bytes); `None` when the fixture
/// itself does not parse.
pub fn with_config(model_bytes: &[u8], data: &[u8]) -> Option<Vec<u8>> {
    let (config, weights) = match data
        .windows(WEIGHTS_MARKER.len())
        .position(|w| w == WEIGHTS_MARKER)
    {
        Some(i) => (&data[..i], &data[i + WEIGHTS_MARKER.len()..]),
        None => (data, &[][..]),
    };
    let n = u64::from_le_bytes(model_bytes.get(..8)?.try_into().ok()?) as usize;
    let header = model_bytes.get(8..8usize.checked_add(n)?)?;
    let mut json: serde_json::Value = serde_json::from_slice(header).ok()?;
    let meta = json.get_mut("__metadata__")?.as_object_mut()?;
    meta.insert(
        "config".into(),
        String::from_utf8_lossy(config).into_owned().into(),
    );
    meta.insert("format_version".into(), crate::model::FORMAT_VERSION.into());
    let header = serde_json::to_vec(&json).ok()?;
    let mut tensors = model_bytes[8 + n..].to_vec();
    let k = weights.len().min(tensors.len());
    tensors[..k].copy_from_slice(&weights[..k]);
    let mut out = (header.len() as u64).to_le_bytes().to_vec();
    out.extend_from_slice(&header);
    out.extend_from_slice(&tensors);
    Some(out)
}

/// Runs a loaded model once deterministically (any patch size) and, on small patches, once
/// with Monte-Carlo dropout and the model's probability map; outputs must be probabilities.
fn run_model(model: &Model) {
    let n = model.config().patch_voxels();
    let (Ok(mut hu), Ok(mut prob)) = (try_vec(n, "hu"), try_vec(n, "prob")) else {
        return;
    };
    hu.fill(-400.0f32);
    if mc::predict(model, &hu, &mut prob, 1).is_ok() {
        assert!(
            prob.iter().all(|p| (0.0..=1.0).contains(p)),
            "probability out of [0, 1]"
        );
    }
    if n == 0 || n > MAX_MC_VOXELS {
        return;
    }
    let mut mean = vec![0.0f32; n];
    let maps = UncertaintyMaps {
        mean: Some(&mut mean),
        ..Default::default()
    };
    let opts = McOptions {
        n_samples: 2,
        seed: 1,
        threads: 1,
        review_threshold: None,
        review_score: None,
    };
    if mc::predict_uncertainty(model, &hu, &opts, maps).is_err() {
        return;
    }
    let mut calibrated = vec![0.0f32; n];
    if crate::probability_map::calibrated_probability(model.config(), &mean, &mut calibrated)
        .is_ok()
    {
        assert!(
            calibrated.iter().all(|p| (0.0..=1.0).contains(p)),
            "calibrated probability out of [0, 1]"
        );
    }
    run_point(model, &hu, &opts);
}

/// A point of a thin scan with its final mask, so a model's second look (when it has one) runs
/// on a half-spacing patch of its own; the mask must be 0/1 and counted by the summary.
fn run_point(model: &Model, hu: &[f32], opts: &McOptions) {
    let mut mask = vec![0u8; hu.len()];
    let mut second_patch = |p: &mut [f32]| {
        p.fill(-300.0);
        Ok(())
    };
    let point = mc::point::Point {
        patch_hu: hu,
        scan: Some(mc::point::Scan {
            resolution_mm: [0.7, 0.7, 1.0],
            second_patch: &mut second_patch,
        }),
    };
    let ctl = &mut mc::RunControl::default();
    let maps = UncertaintyMaps::default();
    if let Ok((s, _)) = mc::point::predict_point(model, point, opts, maps, &mut mask, ctl) {
        assert!(mask.iter().all(|&b| b <= 1), "a mask byte other than 0/1");
        let on = mask.iter().filter(|&&b| b == 1).count() as u64;
        assert_eq!(on, s.foreground_voxels, "the summary counts another mask");
    }
}

/// A little-endian reader over the fuzz input that yields zeros once exhausted.
struct Bytes<'a>(&'a [u8]);

impl Bytes<'_> {
    fn take<const N: usize>(&mut self) -> [u8; N] {
        let mut out = [0u8; N];
        let n = N.min(self.0.len());
        out[..n].copy_from_slice(&self.0[..n]);
        self.0 = &self.0[n..];
        out
    }
    fn u8(&mut self) -> u8 {
        self.take::<1>()[0]
    }
    fn u32(&mut self) -> u32 {
        u32::from_le_bytes(self.take())
    }
    fn u64(&mut self) -> u64 {
        u64::from_le_bytes(self.take())
    }
    fn f32(&mut self) -> f32 {
        f32::from_le_bytes(self.take())
    }
    fn f64(&mut self) -> f64 {
        f64::from_le_bytes(self.take())
    }
}

/// A versioned struct followed by room a caller built against a newer header would fill: the
/// fuzzed `struct_size` (below 64) may claim more than the struct, which the library then reads.
#[repr(C)]
struct Grown<T> {
    v: T,
    newer_fields: [u8; 64],
}

impl<T> Grown<T> {
    fn new(v: T) -> Self {
        Grown {
            v,
            newer_fields: [0; 64],
        }
    }

    /// Points at the whole allocation, so reading past `v` stays inside it.
    fn ptr(&self) -> *const T {
        (self as *const Self).cast()
    }
}

/// `c_api`: drives the model and patch entry points with fuzzed sizes, options and values on
/// `model_bytes` (a small valid model). Every call must return a status, never crash; buffers
/// are always as long as the lengths claim (that part of the contract is the caller's).
///
/// The input is read in a fixed order (model options, the MC call, the patch spec, then HU
/// values from what is left), so the committed seeds keep their meaning.
pub fn c_api(model_bytes: &[u8], data: &[u8]) {
    let Ok(model) = Model::from_bytes(model_bytes) else {
        return;
    };
    let n = model.config().patch_voxels();
    drop(model);
    let Some(cpath) = model_path(model_bytes) else {
        return;
    };
    let mut b = Bytes(data);
    let Some(m) = open_model(&cpath, &mut b) else {
        return;
    };
    // Scalars first (so short inputs still steer every option), HU from what is left.
    let cap = n + 8;
    let call = McChoice::read(&mut b, n, cap);
    let spec = SpecChoice::read(&mut b);
    let hu: Vec<f32> = (0..cap)
        .map(|_| if b.0.len() >= 4 { b.f32() } else { -500.0 })
        .collect();
    check_mc(m, &call, &hu, cap);
    let mut prob = vec![0f32; cap];
    let _ = unsafe { lungseg_predict(m, hu.as_ptr(), call.len, prob.as_mut_ptr(), call.plen) };
    check_spec_calls(&spec, &hu, call.len);
    unsafe { lungseg_model_free(m) };
}

/// The model written once per process where `lungseg_model_open` can read it.
fn model_path(model_bytes: &[u8]) -> Option<std::ffi::CString> {
    let dir = std::env::temp_dir().join(format!("lungseg-fuzz-{}", std::process::id()));
    let _ = std::fs::create_dir_all(&dir);
    let path = dir.join("model.safetensors");
    if !path.exists() && std::fs::write(&path, model_bytes).is_err() {
        return None;
    }
    Some(std::ffi::CString::new(path.to_str().unwrap_or_default()).unwrap_or_default())
}

/// Opens the model with fuzzed options; `None` (after checking the failure's contract) when
/// the open fails.
fn open_model(cpath: &std::ffi::CStr, b: &mut Bytes<'_>) -> Option<*mut lungseg_model> {
    let struct_size = b.u32() % 64;
    // The kernel comes from the device word's high half, so the committed seeds keep their
    // byte layout.
    let device = b.u32();
    let mopts = Grown::new(lungseg_model_options {
        struct_size,
        device: device % 4,
        threads: b.u32() % 4,
        max_workspace_bytes: 0,
        cpu_kernel: (device >> 16) % 6,
        reserved0: 0,
        device_index: (device >> 8) % 2,
    });
    let mut m = null_mut();
    let use_opts = b.u8() & 1 == 1;
    let opts = if use_opts { mopts.ptr() } else { null() };
    let st = unsafe { lungseg_model_open(cpath.as_ptr(), opts, &mut m) };
    if st == lungseg_status::LUNGSEG_OK {
        return Some(m);
    }
    assert!(m.is_null());
    assert_failure_has_message();
    None
}

fn assert_failure_has_message() {
    assert!(
        unsafe { lungseg_last_error(null_mut(), 0) } > 0,
        "failure without a message"
    );
}

/// The fuzzed MC call: buffer lengths, which outputs and options are passed, and their values.
struct McChoice {
    /// HU values passed (mostly the model's patch voxel count).
    len: usize,
    /// Bits 0–3: which maps are passed; 0x10: a fuzzed map length; 0x20: NULL options;
    /// 0x40: a fuzzed `lungseg_predict` length; 0x80: ask for the structure measures.
    sel: u8,
    out_len: usize,
    raw_samples: u32,
    measures_size: u32,
    opts_size: u32,
    /// Low bits: the review score; bits 8–13: the run hooks (see [`McChoice::run_options`]);
    /// bit 14: a final mask (`out_len` bytes), bit 15: its source; high half: the run
    /// options' `struct_size`.
    score_word: u32,
    seed: u64,
    override_review_threshold: u32,
    review_threshold: f32,
    plen: usize,
}

impl McChoice {
    fn read(b: &mut Bytes<'_>, n: usize, cap: usize) -> McChoice {
        let len = match b.u8() % 4 {
            1 => (b.u32() as usize) % cap,
            _ => n,
        };
        let sel = b.u8();
        let out_len = if sel & 0x10 != 0 {
            (b.u32() as usize) % cap
        } else {
            n
        };
        let (raw_samples, measures_size) = (b.u32(), b.u32() % 80);
        let (opts_size, score_word) = (b.u32() % 64, b.u32());
        // 63 (no version's size) stands for the whole struct, so the newest fields are reached.
        let opts_size = match opts_size {
            63 => size_of::<lungseg_mc_options>() as u32,
            s => s,
        };
        let (seed, override_review_threshold, review_threshold) = (b.u64(), b.u32() % 3, b.f32());
        let plen = if sel & 0x40 != 0 {
            (b.u32() as usize) % cap
        } else {
            len
        };
        McChoice {
            len,
            sel,
            out_len,
            raw_samples,
            measures_size,
            opts_size,
            score_word,
            seed,
            override_review_threshold,
            review_threshold,
            plen,
        }
    }

    fn cancelled(&self) -> bool {
        self.score_word >> 9 & 1 == 1
    }

    fn want_run(&self) -> bool {
        self.score_word >> 8 & 1 == 1
    }

    fn want_measures(&self) -> bool {
        self.sel & 0x80 != 0
    }

    fn want_mask(&self) -> bool {
        self.score_word >> 14 & 1 == 1
    }

    fn want_mask_source(&self) -> bool {
        self.score_word >> 15 & 1 == 1
    }

    /// The run options come from the score word's high bits, so the committed seeds keep
    /// their byte layout.
    fn run_options(&self, cancel: &i32) -> Grown<lungseg_run_options> {
        let w = self.score_word;
        Grown::new(lungseg_run_options {
            struct_size: if w >> 13 & 1 == 1 {
                std::mem::size_of::<lungseg_run_options>() as u32
            } else {
                (w >> 16) % 64
            },
            log_level: (w >> 10) % 6,
            cancel,
            progress: Some(check_progress),
            log: Some(check_log),
            user: null_mut(),
        })
    }

    fn options(
        &self,
        measures: *mut lungseg_structure_measures,
        run: *const lungseg_run_options,
        mask: (*mut u8, *mut u32),
    ) -> Grown<lungseg_mc_options> {
        let raw = self.raw_samples;
        Grown::new(lungseg_mc_options {
            struct_size: self.opts_size,
            // Mostly small valid counts (fast), sometimes anything (range checks).
            n_samples: if raw & 0x8000_0000 != 0 {
                raw & 0x7fff_ffff
            } else {
                raw % 5
            },
            seed: self.seed,
            override_review_threshold: self.override_review_threshold,
            review_threshold: self.review_threshold,
            structure_measures: if self.want_measures() {
                measures
            } else {
                null_mut()
            },
            review_score: self.score_word % 10,
            run: if self.want_run() { run } else { null() },
            scan_resolution_mm: self.scan_resolution(),
            final_mask: if self.want_mask() { mask.0 } else { null_mut() },
            final_mask_len: self.out_len,
            mask_source: if self.want_mask_source() {
                mask.1
            } else {
                null_mut()
            },
        })
    }

    /// From the seed's top bits: not stated, a thick scan, a thin one, or an invalid one.
    fn scan_resolution(&self) -> [f64; 3] {
        match self.seed >> 62 {
            0 => [0.0; 3],
            1 => [0.7, 0.7, 5.0],
            2 => [1.0; 3],
            _ => [f64::NAN, 1.0, -2.0],
        }
    }

    /// The options struct is passed and its `struct_size` covers `field` (at `offset`).
    fn reaches(&self, offset: usize) -> bool {
        self.sel & 0x20 == 0 && self.opts_size as usize >= offset + size_of::<*const u8>()
    }
}

/// `lungseg_predict_uncertainty` with the fuzzed call; checks what a result or a failure
/// promises.
fn check_mc(m: *mut lungseg_model, call: &McChoice, hu: &[f32], cap: usize) {
    let mut measures = lungseg_structure_measures {
        struct_size: call.measures_size,
        ..Default::default()
    };
    let cancel_flag = i32::from(call.cancelled());
    let run = call.run_options(&cancel_flag);
    let mut mask = vec![7u8; cap];
    let mut source = 0u32;
    let opts = call.options(&mut measures, run.ptr(), (mask.as_mut_ptr(), &mut source));
    let mut maps = [
        vec![0f32; cap],
        vec![0f32; cap],
        vec![0f32; cap],
        vec![0f32; cap],
    ];
    let mut ptrs = [null_mut(); 4];
    for (i, (p, m)) in ptrs.iter_mut().zip(maps.iter_mut()).enumerate() {
        if call.sel & (1 << i) != 0 {
            *p = m.as_mut_ptr();
        }
    }
    let mut out = lungseg_uncertainty {
        mean: ptrs[0],
        variance: ptrs[1],
        entropy: ptrs[2],
        mutual_info: ptrs[3],
        len: call.out_len,
        ..Default::default()
    };
    let opts_ptr = if call.sel & 0x20 != 0 {
        null()
    } else {
        opts.ptr()
    };
    let st = unsafe { lungseg_predict_uncertainty(m, hu.as_ptr(), call.len, opts_ptr, &mut out) };
    let reaches_run = call.reaches(std::mem::offset_of!(lungseg_mc_options, run));
    if call.want_run() && reaches_run && call.cancelled() {
        assert_ne!(
            st,
            lungseg_status::LUNGSEG_OK,
            "a cancelled call gave a result"
        );
    }
    if st != lungseg_status::LUNGSEG_OK {
        assert_failure_has_message();
        return;
    }
    let s = out.summary;
    assert!(s.n_samples >= 1 && s.n_samples <= 1024);
    assert!((0.0..=1.0).contains(&s.mean_probability));
    // Written only when the options reach the pointer (NULL options or an older struct_size
    // leave it out).
    let reaches = call.reaches(std::mem::offset_of!(lungseg_mc_options, structure_measures));
    if call.want_measures() && reaches {
        let m = measures;
        assert!(m.struct_size >= 56 && (0.0..=1.0).contains(&m.dice_agreement));
        assert!((0.0..=1.0).contains(&m.iou) && m.volume_cv >= 0.0);
    }
    if call.want_mask() && call.reaches(std::mem::offset_of!(lungseg_mc_options, final_mask)) {
        let mask = &mask[..call.out_len];
        assert!(mask.iter().all(|&b| b <= 1), "a mask byte other than 0/1");
        let on = mask.iter().filter(|&&b| b == 1).count() as u64;
        assert_eq!(on, s.foreground_voxels, "the summary counts another mask");
        if call.want_mask_source()
            && call.reaches(std::mem::offset_of!(lungseg_mc_options, mask_source))
        {
            // A patch from memory has no scan to look at again.
            let known = [
                lungseg_mask_source::LUNGSEG_MASK_MODEL as u32,
                lungseg_mask_source::LUNGSEG_MASK_NO_SCAN as u32,
            ];
            assert!(known.contains(&source), "mask source {source}");
        }
    }
}

/// The fuzzed patch spec and the arguments of the sphere-mask and normalisation calls.
struct SpecChoice {
    spec: Grown<lungseg_patch_spec>,
    centre: [f64; 3],
    diameter: f64,
    mask_len: usize,
    window: (f32, f32),
}

impl SpecChoice {
    fn read(b: &mut Bytes<'_>) -> SpecChoice {
        let spec = Grown::new(lungseg_patch_spec {
            struct_size: b.u32() % 64,
            size: [b.u32() % 24, b.u32() % 24, b.u32() % 24],
            spacing_mm: [b.f64(), b.f64(), b.f64()],
            outside_hu: b.f32(),
        });
        SpecChoice {
            spec,
            centre: [b.f64(), b.f64(), b.f64()],
            diameter: b.f64(),
            mask_len: b.u32() as usize,
            window: (b.f32(), b.f32()),
        }
    }
}

/// Patch-spec parsing and masks with fuzzed specs, and HU normalisation with a fuzzed window.
fn check_spec_calls(c: &SpecChoice, hu: &[f32], len: usize) {
    let mut mask = vec![0u8; 24 * 24 * 24];
    let mask_len = c.mask_len % mask.len();
    let _ = unsafe {
        lungseg_sphere_mask(
            c.spec.ptr(),
            c.centre.as_ptr(),
            c.centre.as_ptr(),
            c.diameter,
            mask.as_mut_ptr(),
            mask_len,
            null_mut(),
        )
    };
    let mut norm = hu.to_vec();
    let (lo, hi) = c.window;
    let _ = unsafe { lungseg_normalize_hu(hu.as_ptr(), len, lo, hi, norm.as_mut_ptr()) };
}

/// Progress never runs backwards past its total.
unsafe extern "C" fn check_progress(_user: *mut std::ffi::c_void, done: u64, total: u64) {
    assert!(done >= 1 && done <= total, "progress {done} of {total}");
}

/// Log lines are NUL-terminated UTF-8 at a known level.
unsafe extern "C" fn check_log(
    _user: *mut std::ffi::c_void,
    level: u32,
    message: *const libc::c_char,
) {
    assert!((1..=4).contains(&level), "log level {level}");
    assert!(!message.is_null());
    assert!(std::ffi::CStr::from_ptr(message).to_str().is_ok());
}
