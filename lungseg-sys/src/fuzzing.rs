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
/// `bn_eps`, windows and dropout on real tensors, through the library's default limits.
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
    json.get_mut("__metadata__")?.as_object_mut()?.insert(
        "config".into(),
        String::from_utf8_lossy(config).into_owned().into(),
    );
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
/// with Monte-Carlo dropout; outputs must be probabilities.
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
    let _ = mc::predict_uncertainty(model, &hu, &opts, maps);
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

/// `c_api`: drives the model and patch entry points with fuzzed sizes, options and values on
/// `model_bytes` (a small valid model). Every call must return a status, never crash; buffers
/// are always as long as the lengths claim (that part of the contract is the caller's).
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

pub fn c_api(model_bytes: &[u8], data: &[u8]) {
    let Ok(model) = Model::from_bytes(model_bytes) else {
        return;
    };
    let n = model.config().patch_voxels();
    drop(model);
    let mut b = Bytes(data);
    let dir = std::env::temp_dir().join(format!("lungseg-fuzz-{}", std::process::id()));
    let _ = std::fs::create_dir_all(&dir);
    let path = dir.join("model.safetensors");
    if !path.exists() && std::fs::write(&path, model_bytes).is_err() {
        return;
    }
    let cpath = std::ffi::CString::new(path.to_str().unwrap_or_default()).unwrap_or_default();
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
    let st = unsafe {
        lungseg_model_open(
            cpath.as_ptr(),
            if use_opts { mopts.ptr() } else { null() },
            &mut m,
        )
    };
    if st != lungseg_status::LUNGSEG_OK {
        assert!(m.is_null());
        assert!(
            unsafe { lungseg_last_error(null_mut(), 0) } > 0,
            "failure without a message"
        );
        return;
    }
    // Scalars first (so short inputs still steer every option), HU from what is left.
    let cap = n + 8;
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
    let raw_samples = b.u32();
    let mut measures = lungseg_structure_measures {
        struct_size: b.u32() % 80,
        ..Default::default()
    };
    let want_measures = sel & 0x80 != 0;
    let opts_size = (b.u32() % 64) as usize;
    let score_word = b.u32();
    // The run options come from the score word's high bits, so the committed seeds keep their
    // byte layout.
    let cancel_flag = i32::from(score_word >> 9 & 1 == 1);
    let run = Grown::new(lungseg_run_options {
        struct_size: if score_word >> 13 & 1 == 1 {
            std::mem::size_of::<lungseg_run_options>() as u32
        } else {
            (score_word >> 16) % 64
        },
        log_level: (score_word >> 10) % 6,
        cancel: &cancel_flag,
        progress: Some(check_progress),
        log: Some(check_log),
        user: null_mut(),
    });
    let want_run = score_word >> 8 & 1 == 1;
    let opts = Grown::new(lungseg_mc_options {
        struct_size: opts_size as u32,
        // Mostly small valid counts (fast), sometimes anything (range checks).
        n_samples: if raw_samples & 0x8000_0000 != 0 {
            raw_samples & 0x7fff_ffff
        } else {
            raw_samples % 5
        },
        seed: b.u64(),
        override_review_threshold: b.u32() % 3,
        review_threshold: b.f32(),
        structure_measures: if want_measures {
            &mut measures
        } else {
            null_mut()
        },
        review_score: score_word % 10,
        run: if want_run { run.ptr() } else { null() },
    });
    let plen = if sel & 0x40 != 0 {
        (b.u32() as usize) % cap
    } else {
        len
    };
    let spec = Grown::new(lungseg_patch_spec {
        struct_size: b.u32() % 64,
        size: [b.u32() % 24, b.u32() % 24, b.u32() % 24],
        spacing_mm: [b.f64(), b.f64(), b.f64()],
        outside_hu: b.f32(),
    });
    let centre = [b.f64(), b.f64(), b.f64()];
    let diameter = b.f64();
    let mlen = b.u32() as usize;
    let window = (b.f32(), b.f32());
    let hu: Vec<f32> = (0..cap)
        .map(|_| if b.0.len() >= 4 { b.f32() } else { -500.0 })
        .collect();

    let mut maps = [
        vec![0f32; cap],
        vec![0f32; cap],
        vec![0f32; cap],
        vec![0f32; cap],
    ];
    let mut ptrs = [null_mut(); 4];
    for (i, (p, m)) in ptrs.iter_mut().zip(maps.iter_mut()).enumerate() {
        if sel & (1 << i) != 0 {
            *p = m.as_mut_ptr();
        }
    }
    let mut out = lungseg_uncertainty {
        mean: ptrs[0],
        variance: ptrs[1],
        entropy: ptrs[2],
        mutual_info: ptrs[3],
        len: out_len,
        ..Default::default()
    };
    let opts_ptr = if sel & 0x20 != 0 { null() } else { opts.ptr() };
    let st = unsafe { lungseg_predict_uncertainty(m, hu.as_ptr(), len, opts_ptr, &mut out) };
    let reaches_run = !opts_ptr.is_null()
        && opts_size >= std::mem::offset_of!(lungseg_mc_options, run) + size_of::<*const u8>();
    if want_run && reaches_run && cancel_flag != 0 {
        assert_ne!(
            st,
            lungseg_status::LUNGSEG_OK,
            "a cancelled call gave a result"
        );
    }
    if st == lungseg_status::LUNGSEG_OK {
        let s = out.summary;
        assert!(s.n_samples >= 1 && s.n_samples <= 1024);
        assert!((0.0..=1.0).contains(&s.mean_probability));
        // Written only when the options reach the pointer (NULL options or an older
        // struct_size leave it out).
        let reaches = !opts_ptr.is_null()
            && opts_size
                >= std::mem::offset_of!(lungseg_mc_options, structure_measures)
                    + std::mem::size_of::<*mut lungseg_structure_measures>();
        if want_measures && reaches {
            let m = measures;
            assert!(m.struct_size >= 56 && (0.0..=1.0).contains(&m.dice_agreement));
            assert!((0.0..=1.0).contains(&m.iou) && m.volume_cv >= 0.0);
        }
    } else {
        assert!(
            unsafe { lungseg_last_error(null_mut(), 0) } > 0,
            "failure without a message"
        );
    }
    let mut prob = vec![0f32; cap];
    let _ = unsafe { lungseg_predict(m, hu.as_ptr(), len, prob.as_mut_ptr(), plen) };
    // Patch-spec parsing and masks with fuzzed specs.
    let mut mask = vec![0u8; 24 * 24 * 24];
    let mlen = mlen % mask.len();
    let _ = unsafe {
        lungseg_sphere_mask(
            spec.ptr(),
            centre.as_ptr(),
            centre.as_ptr(),
            diameter,
            mask.as_mut_ptr(),
            mlen,
            null_mut(),
        )
    };
    let mut norm = hu.clone();
    let _ =
        unsafe { lungseg_normalize_hu(hu.as_ptr(), len, window.0, window.1, norm.as_mut_ptr()) };
    unsafe { lungseg_model_free(m) };
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
