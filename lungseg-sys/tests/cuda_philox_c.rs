//! The dropout mask code the kernels run (`src/cuda/kernels/common.cuh`, plain C outside
//! `__CUDACC__`) compiled with the host C compiler and compared with `lungseg::philox` for many
//! (seed, sample, layer, index) and thresholds: the GPU masks are the CPU engine's function.
#![cfg(feature = "cuda")]

use std::io::Write;
use std::process::Command;

use lungseg::philox::{keep_threshold, philox4x32_10};

const DRIVER: &str = r#"
#include <stdio.h>
#include "common.cuh"
int main(void) {
    unsigned long long seed, index, thr;
    unsigned int sample, layer;
    while (scanf("%llu %u %u %llu %llu", &seed, &sample, &layer, &index, &thr) == 5) {
        ls_u32 w = ls_philox_w0(sample, layer, (ls_u32)index, (ls_u32)(index >> 32),
                                (ls_u32)seed, (ls_u32)(seed >> 32));
        printf("%u %d\n", w, ls_keep(seed, sample, layer, index, thr));
    }
    return 0;
}
"#;

#[test]
fn c_mask_code_matches_philox_rs() {
    let dir = std::env::temp_dir().join(format!("lungseg-philox-c-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let kernels = concat!(env!("CARGO_MANIFEST_DIR"), "/src/cuda/kernels");
    std::fs::write(dir.join("main.c"), DRIVER).unwrap();
    let exe = dir.join("philox_c");
    let cc = std::env::var("CC").unwrap_or_else(|_| "cc".into());
    let st = Command::new(&cc)
        .args(["-std=c99", "-O1", "-Wall", "-Werror", "-I", kernels, "-o"])
        .arg(&exe)
        .arg(dir.join("main.c"))
        .status()
        .unwrap_or_else(|e| panic!("the C compiler `{cc}` is needed for this test: {e}"));
    assert!(st.success(), "compiling common.cuh as C failed");

    // Random123 known answer through the C code too (counter 0, key 0 → word 0 0x6627e8d5).
    let mut cases: Vec<(u64, u32, u32, u64, u64)> = vec![(0, 0, 0, 0, 0)];
    let mut x = 0x9E37_79B9_7F4A_7C15u64;
    let mut next = || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    for i in 0..20_000u64 {
        let seed = if i % 7 == 0 { i } else { next() };
        let sample = (next() % 1024) as u32;
        let layer = (next() % 30) as u32;
        let index = match i % 3 {
            0 => next() % 256,             // channel dropout
            1 => next() % (256 * 262_144), // element dropout at 64³
            _ => next(),                   // high word non-zero
        };
        let p = [0.0f32, 0.1, 0.2, 0.5, 0.9, 1.0][(i % 6) as usize];
        cases.push((seed, sample, layer, index, keep_threshold(p)));
    }
    let mut input = String::new();
    for c in &cases {
        input.push_str(&format!("{} {} {} {} {}\n", c.0, c.1, c.2, c.3, c.4));
    }
    let mut child = Command::new(&exe)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // Feed stdin from a thread: the child's output would otherwise fill its pipe and block.
    let mut stdin = child.stdin.take().unwrap();
    let feeder = std::thread::spawn(move || stdin.write_all(input.as_bytes()));
    let out = child.wait_with_output().unwrap();
    feeder.join().unwrap().unwrap();
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), cases.len());
    assert_eq!(lines[0], format!("{} 1", 0x6627_e8d5u32));
    let mut kept = 0;
    for (c, line) in cases.iter().zip(&lines) {
        let (seed, sample, layer, index, thr) = *c;
        let w = philox4x32_10(
            [sample, layer, index as u32, (index >> 32) as u32],
            [seed as u32, (seed >> 32) as u32],
        )[0];
        let keep = u64::from(w) >= thr;
        kept += usize::from(keep);
        assert_eq!(*line, format!("{w} {}", i32::from(keep)), "case {c:?}");
    }
    assert!(kept > 0 && kept < cases.len());
    let _ = std::fs::remove_dir_all(&dir);
}
