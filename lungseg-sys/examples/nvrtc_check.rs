//! Compiles every CUDA kernel file with NVRTC for sm_80 and sm_90 and fails on a compile error
//! or on any register spill in the ptxas report. Needs libnvrtc only (no GPU, no driver):
//! `scripts/nvrtc-check.sh` installs the PyPI wheel and runs this.
//!
//! `--emit DIR` also writes `<kernel>.sm_<XY>.cubin` for the prebuilt fallback
//! (`LUNGSEG_CUDA_PREBUILT`, docs/cuda.md).

use lungseg::cuda::{compile, probe, CHECK_ARCHS, KERNELS};

fn main() {
    let mut args = std::env::args().skip(1);
    let mut emit = None;
    while let Some(a) = args.next() {
        match a.as_str() {
            "--emit" => emit = args.next().map(std::path::PathBuf::from),
            other => {
                eprintln!("unknown argument {other}; usage: nvrtc_check [--emit DIR]");
                std::process::exit(2);
            }
        }
    }
    if !probe::libnvrtc_present() {
        eprintln!("FAIL: libnvrtc.so.12 is not loadable (put the nvidia-cuda-nvrtc-cu12 wheel's lib on LD_LIBRARY_PATH)");
        std::process::exit(1);
    }
    let (ma, mi) = compile::nvrtc_version().unwrap_or_else(|e| {
        eprintln!("FAIL: {e}");
        std::process::exit(1)
    });
    println!("NVRTC {ma}.{mi}");
    let mut failures = 0;
    println!(
        "{:<12} {:<7} {:<20} {:>5} {:>6} {:>7} {:>7}",
        "file", "arch", "function", "regs", "stack", "spill_s", "spill_l"
    );
    for k in KERNELS {
        for &arch in CHECK_ARCHS {
            match compile::compile_kernel(k, arch, true) {
                Err(e) => {
                    eprintln!("FAIL: {e}");
                    failures += 1;
                }
                Ok(c) => {
                    let rep = compile::parse_ptxas_report(&c.log);
                    for f in k.functions {
                        if !rep.iter().any(|r| r.name == *f) {
                            eprintln!(
                                "FAIL: {} sm_{arch}: no ptxas report for {f}; log:\n{}",
                                k.name, c.log
                            );
                            failures += 1;
                        }
                    }
                    // Each function's report must carry the spill line, or "0 spills" would
                    // only mean "not parsed".
                    if c.log.matches("bytes spill stores").count() < k.functions.len() {
                        eprintln!(
                            "FAIL: {} sm_{arch}: ptxas report lacks spill lines:\n{}",
                            k.name, c.log
                        );
                        failures += 1;
                    }
                    for r in &rep {
                        println!(
                            "{:<12} sm_{:<4} {:<20} {:>5} {:>6} {:>7} {:>7}",
                            k.name,
                            arch,
                            r.name,
                            r.registers,
                            r.stack_frame,
                            r.spill_stores,
                            r.spill_loads
                        );
                        if r.spill_stores > 0 || r.spill_loads > 0 {
                            eprintln!(
                                "FAIL: {} sm_{arch} {}: {} bytes spill stores, {} bytes spill loads",
                                k.name, r.name, r.spill_stores, r.spill_loads
                            );
                            failures += 1;
                        }
                    }
                    if c.log.contains("warning") {
                        println!("  ({} sm_{arch} warnings:)\n{}", k.name, c.log);
                    }
                    if let Some(dir) = &emit {
                        std::fs::create_dir_all(dir).expect("create emit dir");
                        let p = dir.join(compile::prebuilt_name(k, arch));
                        std::fs::write(&p, &c.cubin).expect("write cubin");
                    }
                }
            }
        }
    }
    if failures > 0 {
        eprintln!("nvrtc-check: {failures} failure(s)");
        std::process::exit(1);
    }
    println!(
        "nvrtc-check: {} kernel files x {:?}: compiled, no spills",
        KERNELS.len(),
        CHECK_ARCHS
    );
}
