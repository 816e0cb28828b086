//! Times `lungseg::mhd::read`, driven by `scripts/bench_mhd_read.py`: reads one path per stdin
//! line and answers with the milliseconds the read took (the process stays warm, as SimpleITK's
//! Python process does, so neither side pays start-up costs).
//!
//! `cargo run --release -p lungseg-sys --example bench_read` then type paths; or pass paths as
//! arguments to time each once.

use lungseg::mhd::{read, ReadOptions};
use std::io::{BufRead, Write};
use std::path::Path;
use std::time::Instant;

fn time_read(path: &str) -> Result<f64, String> {
    let t = Instant::now();
    let v = read(Path::new(path), &ReadOptions::default()).map_err(|e| e.to_string())?;
    let ms = t.elapsed().as_secs_f64() * 1e3;
    std::hint::black_box(&v);
    drop(v); // freeing is not part of the read
    Ok(ms)
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if !args.is_empty() {
        for p in &args {
            match time_read(p) {
                Ok(ms) => println!("{p}: {ms:.2} ms"),
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
            Ok(ms) => format!("{ms:.4}"),
            Err(e) => format!("error {e}"),
        };
        writeln!(out, "{reply}").and_then(|_| out.flush()).expect("stdout");
    }
}
