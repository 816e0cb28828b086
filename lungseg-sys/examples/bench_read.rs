//! Times `lungseg::mhd::read`, driven by `scripts/bench_mhd_read.py`: reads one path per stdin
//! line and answers `wall_ms cpu_ms` for the read (the process stays warm, as SimpleITK's Python
//! process does, so neither side pays start-up costs). CPU time is reported too because the
//! shared benchmark machine is loaded and wall time swings with other people's work.
//!
//! `cargo run --release -p lungseg-sys --example bench_read` then type paths; or pass paths as
//! arguments to time each once.

use lungseg::mhd::{read, ReadOptions};
use std::io::{BufRead, Write};
use std::path::Path;
use std::time::Instant;

/// User + system CPU time of this process, in ms.
fn cpu_ms() -> f64 {
    // SAFETY: getrusage only writes the struct we pass.
    let mut u: libc::rusage = unsafe { std::mem::zeroed() };
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut u) };
    let ms = |t: libc::timeval| t.tv_sec as f64 * 1e3 + t.tv_usec as f64 / 1e3;
    ms(u.ru_utime) + ms(u.ru_stime)
}

fn time_read(path: &str) -> Result<(f64, f64), String> {
    let (t, c) = (Instant::now(), cpu_ms());
    let v = read(Path::new(path), &ReadOptions::default()).map_err(|e| e.to_string())?;
    let (ms, cpu) = (t.elapsed().as_secs_f64() * 1e3, cpu_ms() - c);
    std::hint::black_box(&v);
    drop(v); // freeing is not part of the read
    Ok((ms, cpu))
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if !args.is_empty() {
        for p in &args {
            match time_read(p) {
                Ok((ms, cpu)) => println!("{p}: {ms:.2} ms wall, {cpu:.2} ms CPU"),
                Err(e) => eprintln!("{p}: {e}"),
            }
        }
        return;
    }
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    for line in std::io::stdin().lock().lines() {
        let line = line.expect("stdin");
        let reply = match time_read(line.trim()) {
            Ok((ms, cpu)) => format!("{ms:.4} {cpu:.4}"),
            Err(e) => format!("error {e}"),
        };
        writeln!(out, "{reply}")
            .and_then(|_| out.flush())
            .expect("stdout");
    }
}
