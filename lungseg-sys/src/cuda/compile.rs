//! NVRTC compilation of the kernel files, the ptxas report, the on-disk cache and the prebuilt
//! fallback.
//!
//! Kernels are compiled straight to a **cubin** for the device's real architecture
//! (`--gpu-architecture=sm_XX`), through the raw `cudarc::nvrtc::{result, sys}` calls, because
//! cudarc's `compile_ptx_with_opts` returns PTX only and drops the program log on success. A
//! cubin (a) needs no PTX JIT in the driver, so a driver older than the NVRTC still loads it,
//! and (b) makes NVRTC run ptxas, whose `-v` report (registers, spill stores/loads) lands in
//! the program log, which `scripts/nvrtc-check.sh` checks for spills.
//!
//! Cache: `$LUNGSEG_CUDA_CACHE`, else `$XDG_CACHE_HOME/lungseg/cuda`, else
//! `$HOME/.cache/lungseg/cuda`; one file per kernel named by an FNV-1a-64 hash of (full source,
//! architecture, NVRTC version, driver version, options). A corrupt or stale entry is simply
//! not found (the key changes) or fails to load and is recompiled.
//!
//! Prebuilt fallback, for hosts with a driver but no libnvrtc: `$LUNGSEG_CUDA_PREBUILT` names a
//! folder with `<kernel>.sm_<XY>.cubin` files (written by `nvrtc_check --emit DIR` in CI with a
//! pinned NVRTC wheel); they are used when NVRTC is not loadable.

use std::ffi::{CStr, CString};
use std::path::PathBuf;

use super::KernelSource;

/// Options every kernel is compiled with (besides the architecture).
pub const BASE_OPTIONS: &[&str] = &["--std=c++17", "--fmad=true", "-default-device"];

/// The result of one NVRTC compilation.
#[derive(Clone, Debug)]
pub struct Compiled {
    pub cubin: Vec<u8>,
    /// The full program log (warnings, ptxas report when `verbose`).
    pub log: String,
}

/// `nvrtcVersion()` — call only when [`super::probe::libnvrtc_present`] is true.
pub fn nvrtc_version() -> Result<(i32, i32), String> {
    let (mut a, mut b) = (0, 0);
    // SAFETY: writes two ints; the library is loaded (caller's contract).
    unsafe { cudarc::nvrtc::sys::nvrtcVersion(&mut a, &mut b) }
        .result()
        .map_err(|e| format!("nvrtcVersion failed: {e:?}"))?;
    Ok((a, b))
}

/// Compiles one kernel file to a cubin for `sm_<arch>` (e.g. 80, 90). `verbose` adds
/// `--ptxas-options=-v`. Errors carry the NVRTC log.
pub fn compile_kernel(k: &KernelSource, arch: u32, verbose: bool) -> Result<Compiled, String> {
    use cudarc::nvrtc::{result, sys};
    let src = CString::new(k.full_source()).map_err(|_| "NUL in kernel source".to_string())?;
    let name = CString::new(format!("{}.cu", k.name)).expect("no NUL");
    let mut opts: Vec<String> = BASE_OPTIONS.iter().map(|s| s.to_string()).collect();
    opts.push(format!("--gpu-architecture=sm_{arch}"));
    opts.extend(k.define_options());
    if verbose {
        opts.push("--ptxas-options=-v".into());
    }
    let prog = result::create_program(&src, Some(&name))
        .map_err(|e| format!("{}: nvrtcCreateProgram: {e:?}", k.name))?;
    // SAFETY: `prog` is live until destroy_program below; src/name outlive it.
    let out = unsafe {
        let compiled = result::compile_program(prog, &opts);
        let log = result::get_program_log(prog)
            .map(|l| CStr::from_ptr(l.as_ptr()).to_string_lossy().into_owned())
            .unwrap_or_default();
        let r = match compiled {
            Err(e) => Err(format!(
                "{} (sm_{arch}): compile failed ({e:?}), options {opts:?}:\n{log}",
                k.name
            )),
            Ok(()) => {
                let mut size = 0usize;
                let mut cubin = Vec::new();
                let got = sys::nvrtcGetCUBINSize(prog, &mut size)
                    .result()
                    .and_then(|()| {
                        cubin.resize(size, 0u8);
                        sys::nvrtcGetCUBIN(prog, cubin.as_mut_ptr().cast()).result()
                    });
                match got {
                    Ok(()) if size > 0 => Ok(Compiled { cubin, log }),
                    Ok(()) => Err(format!("{}: NVRTC returned an empty cubin", k.name)),
                    Err(e) => Err(format!("{}: nvrtcGetCUBIN: {e:?}", k.name)),
                }
            }
        };
        let _ = result::destroy_program(prog);
        r
    };
    out
}

/// Per-function numbers from ptxas's `-v` report.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FunctionReport {
    pub name: String,
    pub registers: u32,
    pub stack_frame: u32,
    pub spill_stores: u32,
    pub spill_loads: u32,
}

/// Parses ptxas's verbose report:
/// `ptxas info    : Compiling entry function 'ls_conv3' for 'sm_80'`,
/// `ptxas info    : Function properties for ls_conv3`,
/// `    0 bytes stack frame, 0 bytes spill stores, 0 bytes spill loads`,
/// `ptxas info    : Used 96 registers, used 0 barriers, 400 bytes cmem[0]`.
pub fn parse_ptxas_report(log: &str) -> Vec<FunctionReport> {
    let mut out: Vec<FunctionReport> = Vec::new();
    let num_before = |line: &str, what: &str| -> Option<u32> {
        let i = line.find(what)?;
        line[..i].split_whitespace().last()?.parse().ok()
    };
    for line in log.lines() {
        if let Some(rest) = line.split("Compiling entry function '").nth(1) {
            let name = rest.split('\'').next().unwrap_or("").to_string();
            out.push(FunctionReport {
                name,
                ..Default::default()
            });
        } else if let Some(f) = out.last_mut() {
            if let Some(v) = num_before(line, "bytes stack frame") {
                f.stack_frame = v;
            }
            if let Some(v) = num_before(line, "bytes spill stores") {
                f.spill_stores = v;
            }
            if let Some(v) = num_before(line, "bytes spill loads") {
                f.spill_loads = v;
            }
            if let Some(rest) = line.split("Used ").nth(1) {
                if let Some(v) = rest.split_whitespace().next().and_then(|s| s.parse().ok()) {
                    if rest.split_whitespace().nth(1) == Some("registers,") {
                        f.registers = v;
                    }
                }
            }
        }
    }
    out
}

/// FNV-1a, 64 bit: a stable hash for cache keys (std's hasher may change between releases).
pub fn fnv1a64(parts: &[&[u8]]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for p in parts {
        for &b in *p {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0000_0100_0000_01b3);
        }
        h ^= 0xff;
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

/// The cache folder (not created here).
pub fn cache_dir() -> Option<PathBuf> {
    let env = |k: &str| {
        std::env::var_os(k)
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
    };
    env("LUNGSEG_CUDA_CACHE")
        .or_else(|| env("XDG_CACHE_HOME").map(|p| p.join("lungseg/cuda")))
        .or_else(|| env("HOME").map(|p| p.join(".cache/lungseg/cuda")))
}

/// The prebuilt-kernel folder, if configured.
pub fn prebuilt_dir() -> Option<PathBuf> {
    std::env::var_os("LUNGSEG_CUDA_PREBUILT")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
}

/// File name of a prebuilt cubin.
pub fn prebuilt_name(k: &KernelSource, arch: u32) -> String {
    format!("{}.sm_{arch}.cubin", k.name)
}

/// Whether every kernel has a prebuilt cubin for this compute capability.
pub fn prebuilt_available(compute: (i32, i32)) -> bool {
    let arch = (compute.0 * 10 + compute.1) as u32;
    prebuilt_dir().is_some_and(|d| {
        super::KERNELS
            .iter()
            .all(|k| d.join(prebuilt_name(k, arch)).is_file())
    })
}

/// The cache key of one kernel for one device.
pub fn cache_key(k: &KernelSource, arch: u32, nvrtc: (i32, i32), driver: i32) -> String {
    let h = fnv1a64(&[
        k.full_source().as_bytes(),
        &arch.to_le_bytes(),
        &nvrtc.0.to_le_bytes(),
        &nvrtc.1.to_le_bytes(),
        &driver.to_le_bytes(),
        BASE_OPTIONS.join(" ").as_bytes(),
        k.define_options().join(" ").as_bytes(),
    ]);
    format!("{}.sm_{arch}.{h:016x}.cubin", k.name)
}

/// A cubin for `k` on this device: cache hit, else NVRTC (and store), else prebuilt.
pub fn cubin_for(
    k: &KernelSource,
    compute: (i32, i32),
    driver: i32,
    nvrtc: bool,
) -> Result<Vec<u8>, String> {
    let arch = (compute.0 * 10 + compute.1) as u32;
    if nvrtc {
        let ver = nvrtc_version()?;
        let path = cache_dir().map(|d| d.join(cache_key(k, arch, ver, driver)));
        let cached = path
            .as_ref()
            .and_then(|p| crate::fsio::read_bounded(p, MAX_CUBIN_BYTES, "cached kernel").ok());
        if let Some(bytes) = cached {
            if !bytes.is_empty() {
                return Ok(bytes);
            }
        }
        let c = compile_kernel(k, arch, false)?;
        if let Some(p) = path {
            // Best effort: a read-only home only costs a recompile next time. Write to a
            // temporary name and rename so a concurrent reader never sees half a file.
            if let Some(dir) = p.parent() {
                let _ = std::fs::create_dir_all(dir);
            }
            let tmp = p.with_extension(format!("tmp{}", std::process::id()));
            if std::fs::write(&tmp, &c.cubin).is_ok() {
                let _ = std::fs::rename(&tmp, &p);
            }
        }
        return Ok(c.cubin);
    }
    let dir = prebuilt_dir().ok_or("no libnvrtc and LUNGSEG_CUDA_PREBUILT is not set")?;
    let p = dir.join(prebuilt_name(k, arch));
    crate::fsio::read_bounded(&p, MAX_CUBIN_BYTES, "prebuilt kernel")
        .map_err(|e| format!("prebuilt kernel: {e}"))
}

/// Largest cubin read from the cache or the prebuilt folder (ours are well under 1 MiB).
const MAX_CUBIN_BYTES: u64 = 64 << 20;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_a_ptxas_report() {
        let log = "ptxas info    : 0 bytes gmem\n\
ptxas info    : Compiling entry function 'ls_conv3' for 'sm_80'\n\
ptxas info    : Function properties for ls_conv3\n\
    0 bytes stack frame, 8 bytes spill stores, 12 bytes spill loads\n\
ptxas info    : Used 96 registers, used 0 barriers, 400 bytes cmem[0]\n\
ptxas info    : Compiling entry function 'ls_maxpool2' for 'sm_80'\n\
ptxas info    : Function properties for ls_maxpool2\n\
    0 bytes stack frame, 0 bytes spill stores, 0 bytes spill loads\n\
ptxas info    : Used 20 registers, 384 bytes cmem[0]\n";
        let r = parse_ptxas_report(log);
        assert_eq!(r.len(), 2);
        assert_eq!(
            r[0],
            FunctionReport {
                name: "ls_conv3".into(),
                registers: 96,
                stack_frame: 0,
                spill_stores: 8,
                spill_loads: 12
            }
        );
        assert_eq!((r[1].registers, r[1].spill_stores), (20, 0));
    }

    #[test]
    fn cache_keys_depend_on_everything() {
        let k = &super::super::KERNELS[0];
        let a = cache_key(k, 80, (12, 8), 12080);
        assert_ne!(a, cache_key(k, 90, (12, 8), 12080));
        assert_ne!(a, cache_key(k, 80, (12, 9), 12080));
        assert_ne!(a, cache_key(k, 80, (12, 8), 12090));
        assert_ne!(a, cache_key(&super::super::KERNELS[1], 80, (12, 8), 12080));
        assert_eq!(a, cache_key(k, 80, (12, 8), 12080));
    }
}
