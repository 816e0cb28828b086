//! Host emulation of the CUDA kernels (feature `cuda-emu`; docs/cuda.md, "Emulator").
//!
//! [`build`] compiles every [`KERNELS`](super::KERNELS) translation unit — the same text NVRTC
//! compiles, through [`rewrite::rewrite`] — with g++ against `ls_emu.h` (fibers as threads,
//! `__syncthreads` as a barrier, the inline PTX emulated instruction by instruction) into one
//! executable, by default under AddressSanitizer and UBSan. [`EmuDevice`] runs that executable
//! as an emulated device: buffers (each its own exact-size allocation), launches, read-back.
//! It runs [`Launch`] values, the same ones [`super::engine`] gives the GPU.

pub mod engine;
pub mod rewrite;

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};

use super::launch::{KArg, Launch};
use super::KernelSource;

const HEADER: &str = include_str!("ls_emu.h");
const RT_HEADER: &str = include_str!("ls_emu_rt.h");
const RUNTIME: &str = include_str!("runtime.cpp");
const DRIVER: &str = include_str!("driver.cpp");

/// Kernels that test the emulator itself (compiled like the production kernels).
pub const SELFTEST: KernelSource = KernelSource {
    name: "selftest",
    source: include_str!("selftest.cu"),
    defines: &[],
    layout: &[],
    functions: &[
        "emu_mma_ggml",
        "emu_divergent_mma",
        "emu_exit_before_barrier",
        "emu_race",
        "emu_no_race",
        "emu_dyn_shared",
        "emu_load",
        "emu_f2h",
        "emu_unknown_ptx",
        "emu_ldmatrix",
        "emu_ldsm_mma",
        "emu_cp_async",
        "emu_cp_async_bad",
        "emu_divergent_ldmatrix",
        "emu_swz",
    ],
};

/// How to build the emulator.
#[derive(Clone, Debug)]
pub struct BuildOptions {
    /// The C++ compiler (`$CXX`, else `g++`).
    pub cxx: String,
    /// AddressSanitizer + UBSan (every UB fatal); `LUNGSEG_EMU_SANITIZE=0` turns them off.
    pub sanitize: bool,
}

impl Default for BuildOptions {
    fn default() -> Self {
        BuildOptions {
            cxx: std::env::var("CXX").unwrap_or_else(|_| "g++".into()),
            sanitize: std::env::var("LUNGSEG_EMU_SANITIZE").map_or(true, |v| v != "0"),
        }
    }
}

/// The C++ translation unit for one kernel file: its `-D` constants, the NVRTC source,
/// rewritten, then one registration line per kernel.
pub fn translation_unit(k: &KernelSource) -> Result<String, String> {
    let src = rewrite::rewrite(&k.full_source()).map_err(|e| format!("{}: {e}", k.name))?;
    let mut tu: String = k
        .all_defines()
        .map(|(name, v)| format!("#define {name} {v}\n"))
        .collect();
    tu.push_str(&format!(
        "#line 1 \"common.cuh\"\n{src}\n#include \"ls_emu_rt.h\"\n"
    ));
    for f in k.functions {
        tu.push_str(&format!(
            "static ::ls_emu::Registrar ls_emu_reg_{f}(\"{f}\", &{f});\n"
        ));
    }
    Ok(tu)
}

/// The compiler command line (sources and output appended by [`build`]).
fn compiler_args(opts: &BuildOptions) -> Vec<String> {
    let mut a: Vec<String> = [
        "-std=c++17",
        "-O1",
        "-g",
        "-fno-omit-frame-pointer",
        "-Wall",
        "-Werror",
        // `#pragma unroll` is nvcc's; `threadIdx.x < step` (unsigned vs int) is how CUDA code
        // is written.
        "-Wno-unknown-pragmas",
        "-Wno-unused-function",
        "-Wno-sign-compare",
        "-include",
        "ls_emu.h",
    ]
    .map(String::from)
    .to_vec();
    if opts.sanitize {
        a.push("-fsanitize=address,undefined,float-cast-overflow".into());
        a.push("-fno-sanitize-recover=all".into());
    }
    a
}

/// Writes the sources into `dir` and compiles the emulator there, unless an executable built
/// from identical sources and options is already there; returns the executable.
pub fn build(dir: &Path, opts: &BuildOptions) -> Result<PathBuf, String> {
    std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let mut files: Vec<(String, String)> = vec![
        ("ls_emu.h".into(), HEADER.into()),
        ("ls_emu_rt.h".into(), RT_HEADER.into()),
        ("runtime.cpp".into(), RUNTIME.into()),
        ("driver.cpp".into(), DRIVER.into()),
    ];
    for k in super::KERNELS.iter().chain(std::iter::once(&SELFTEST)) {
        files.push((format!("k_{}.cpp", k.name), translation_unit(k)?));
    }
    let args = compiler_args(opts);
    let mut parts: Vec<&[u8]> = vec![opts.cxx.as_bytes()];
    parts.extend(args.iter().map(|a| a.as_bytes()));
    for (name, text) in &files {
        parts.push(name.as_bytes());
        parts.push(text.as_bytes());
    }
    let hash = super::compile::fnv1a64(&parts);
    let exe = dir.join(format!("ls_emu-{hash:016x}"));
    if exe.is_file() {
        return Ok(exe);
    }
    // Sources in a folder of this process's own: a concurrent build of the same sources
    // writes elsewhere and renames an identical executable over this one.
    let work = dir.join(format!("src-{hash:016x}-{}", std::process::id()));
    std::fs::create_dir_all(&work).map_err(|e| format!("{}: {e}", work.display()))?;
    for (name, text) in &files {
        std::fs::write(work.join(name), text).map_err(|e| format!("{name}: {e}"))?;
    }
    let tmp = work.join("ls_emu");
    let out = Command::new(&opts.cxx)
        .args(&args)
        .arg(format!("-I{}", work.display()))
        .args(
            files
                .iter()
                .filter(|(n, _)| n.ends_with(".cpp"))
                .map(|(n, _)| work.join(n)),
        )
        .arg("-o")
        .arg(&tmp)
        .output()
        .map_err(|e| format!("the C++ compiler `{}` is needed: {e}", opts.cxx))?;
    if !out.status.success() {
        return Err(format!(
            "building the emulator failed:\n{}",
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    std::fs::rename(&tmp, &exe).map_err(|e| format!("{}: {e}", exe.display()))?;
    let _ = std::fs::remove_dir_all(&work);
    Ok(exe)
}

/// Compiles `k`'s translation unit alone (syntax and `static_assert`s only, no code): whether
/// its sources build against its constants, e.g. its parameter structs against their Rust
/// layout. `dir` receives the sources.
pub fn check_compiles(dir: &Path, k: &KernelSource, opts: &BuildOptions) -> Result<(), String> {
    std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    for (name, text) in [("ls_emu.h", HEADER), ("ls_emu_rt.h", RT_HEADER)] {
        std::fs::write(dir.join(name), text).map_err(|e| format!("{name}: {e}"))?;
    }
    let file = dir.join(format!("k_{}.cpp", k.name));
    std::fs::write(&file, translation_unit(k)?).map_err(|e| format!("{}: {e}", file.display()))?;
    let out = Command::new(&opts.cxx)
        .args(compiler_args(&BuildOptions {
            sanitize: false,
            ..opts.clone()
        }))
        .arg(format!("-I{}", dir.display()))
        .arg("-fsyntax-only")
        .arg(&file)
        .output()
        .map_err(|e| format!("the C++ compiler `{}` is needed: {e}", opts.cxx))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).into_owned())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pool() -> KernelSource {
        *crate::cuda::KERNELS
            .iter()
            .find(|k| k.name == "pool")
            .expect("pool.cu")
    }

    /// With one constant of its layout moved, `LsPoolArgs` no longer compiles: the C struct is
    /// checked field by field against the Rust one.
    #[test]
    fn a_parameter_struct_that_drifts_from_rust_does_not_compile() {
        let dir = std::env::temp_dir().join(format!("lungseg-layout-{}", std::process::id()));
        let opts = BuildOptions::default();
        check_compiles(&dir, &pool(), &opts).unwrap();
        for (name, moved_by) in [("LSP_POOL_d", 4), ("LSP_POOL_SIZE", 8), ("LSP_POOL_out", 0)] {
            let layout: Vec<(&'static str, u32)> = pool()
                .layout
                .iter()
                .map(|&(n, v)| match n == name {
                    true if moved_by == 0 => (n, 0),
                    true => (n, v + moved_by),
                    false => (n, v),
                })
                .collect();
            let drifted = KernelSource {
                layout: Box::leak(layout.into_boxed_slice()),
                ..pool()
            };
            let why = check_compiles(&dir, &drifted, &opts).unwrap_err();
            assert!(why.contains("differs from Rust"), "{name}: {why}");
        }
        let _ = std::fs::remove_dir_all(&dir);
    }
}

/// A buffer on the emulated device.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct BufId(pub u32);

/// Thread and block order of an emulated launch (races show up as a difference).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Order {
    Forward,
    Reverse,
}

/// A running emulator process.
pub struct EmuDevice {
    child: Child,
    stdin: ChildStdin,
    stdout: ChildStdout,
    next: u32,
}

impl EmuDevice {
    /// Starts the executable from [`build`].
    pub fn spawn(exe: &Path) -> Result<EmuDevice, String> {
        let mut child = Command::new(exe)
            // Buffers still held at exit are not leaks; fibers switch stacks.
            .env(
                "ASAN_OPTIONS",
                "detect_leaks=0:detect_stack_use_after_return=0:abort_on_error=0",
            )
            .env("UBSAN_OPTIONS", "print_stacktrace=1:halt_on_error=1")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| format!("{}: {e}", exe.display()))?;
        let stdin = child.stdin.take().expect("piped");
        let stdout = child.stdout.take().expect("piped");
        Ok(EmuDevice {
            child,
            stdin,
            stdout,
            next: 0,
        })
    }

    /// The process's death message (stderr) after an I/O failure.
    fn died(&mut self) -> String {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let mut err = String::new();
        if let Some(mut e) = self.child.stderr.take() {
            let _ = e.read_to_string(&mut err);
        }
        format!("emulator failed: {err}")
    }

    fn send(&mut self, bytes: &[u8]) -> Result<(), String> {
        match self
            .stdin
            .write_all(bytes)
            .and_then(|()| self.stdin.flush())
        {
            Ok(()) => Ok(()),
            Err(_) => Err(self.died()),
        }
    }

    fn recv(&mut self, n: usize) -> Result<Vec<u8>, String> {
        let mut v = vec![0u8; n];
        match self.stdout.read_exact(&mut v) {
            Ok(()) => Ok(v),
            Err(_) => Err(self.died()),
        }
    }

    fn alloc_with(&mut self, len: usize, data: Option<&[u8]>) -> Result<BufId, String> {
        let id = self.next;
        self.next += 1;
        let mut m = vec![b'A'];
        m.extend(id.to_le_bytes());
        m.extend((len as u64).to_le_bytes());
        m.push(u8::from(data.is_none()));
        m.extend(data.unwrap_or(&[]));
        self.send(&m)?;
        Ok(BufId(id))
    }

    /// A buffer holding `data`.
    pub fn upload(&mut self, data: &[u8]) -> Result<BufId, String> {
        self.alloc_with(data.len(), Some(data))
    }

    /// A buffer of `len` bytes of 0xFF (NaN as fp16, f32 and f64).
    pub fn poisoned(&mut self, len: usize) -> Result<BufId, String> {
        self.alloc_with(len, None)
    }

    pub fn free(&mut self, b: BufId) -> Result<(), String> {
        let mut m = vec![b'F'];
        m.extend(b.0.to_le_bytes());
        self.send(&m)
    }

    /// The contents of `b`.
    pub fn read(&mut self, b: BufId) -> Result<Vec<u8>, String> {
        let mut m = vec![b'R'];
        m.extend(b.0.to_le_bytes());
        self.send(&m)?;
        let n = u64::from_le_bytes(self.recv(8)?.try_into().expect("8 bytes"));
        self.recv(n as usize)
    }

    /// Runs `l` to completion.
    pub fn launch(&mut self, l: &Launch<BufId>, order: Order) -> Result<(), String> {
        let mut m = vec![b'L'];
        m.extend((l.func.len() as u16).to_le_bytes());
        m.extend(l.func.as_bytes());
        for v in l.grid.iter().chain(&l.block) {
            m.extend(v.to_le_bytes());
        }
        m.extend(l.dyn_smem.to_le_bytes());
        m.push(u8::from(order == Order::Reverse));
        m.extend((l.args.len() as u16).to_le_bytes());
        for a in &l.args {
            match *a {
                KArg::Params(ref p) => {
                    m.push(b'r');
                    m.extend((p.bytes.len() as u16).to_le_bytes());
                    m.extend(&p.bytes);
                    m.extend((p.ptrs.len() as u16).to_le_bytes());
                    for &(offset, buf) in &p.ptrs {
                        m.extend((offset as u32).to_le_bytes());
                        m.extend(buf.map_or(u32::MAX, |b| b.0).to_le_bytes());
                    }
                }
                KArg::Buf(b) => {
                    m.push(b'p');
                    m.extend(b.0.to_le_bytes());
                    m.extend(0u64.to_le_bytes());
                }
                KArg::Null => {
                    m.push(b'p');
                    m.extend(u32::MAX.to_le_bytes());
                    m.extend(0u64.to_le_bytes());
                }
                KArg::I32(v) => {
                    m.push(b'i');
                    m.extend(v.to_le_bytes());
                }
                KArg::U32(v) => {
                    m.push(b'u');
                    m.extend(v.to_le_bytes());
                }
                KArg::U64(v) => {
                    m.push(b'q');
                    m.extend(v.to_le_bytes());
                }
                KArg::F32(v) => {
                    m.push(b'f');
                    m.extend(v.to_le_bytes());
                }
                KArg::Drop(d) => {
                    m.push(b's');
                    m.extend(32u16.to_le_bytes());
                    m.extend(d.seed.to_le_bytes());
                    m.extend(d.threshold.to_le_bytes());
                    m.extend(d.scale.to_le_bytes());
                    m.extend(d.layer.to_le_bytes());
                    m.extend(d.kind.to_le_bytes());
                    m.extend(d.sample0.to_le_bytes());
                }
            }
        }
        self.send(&m)?;
        self.recv(1).map(|_| ())
    }

    /// `cvt.rn.f16.f32` of each value, as the emulator computes it.
    pub fn f32_to_f16(&mut self, xs: &[f32]) -> Result<Vec<u16>, String> {
        let mut m = vec![b'C'];
        m.extend((xs.len() as u64).to_le_bytes());
        for x in xs {
            m.extend(x.to_le_bytes());
        }
        self.send(&m)?;
        let r = self.recv(2 * xs.len())?;
        Ok(r.chunks(2)
            .map(|c| u16::from_le_bytes([c[0], c[1]]))
            .collect())
    }

    /// The fragment-layout self-test (against ggml's table, see driver.cpp).
    pub fn layout_selftest(&mut self) -> Result<(), String> {
        self.send(b"T")?;
        self.recv(1).map(|_| ())
    }
}

impl Drop for EmuDevice {
    fn drop(&mut self) {
        let _ = self.stdin.write_all(b"Q");
        let _ = self.stdin.flush();
        let _ = self.child.wait();
    }
}
