//! The process-wide worker pool: a forked child can predict, many host threads share one
//! bounded set of library threads, and results stay bit-identical.

mod common;

use std::sync::Barrier;
use std::time::{Duration, Instant};

use common::*;
use lungseg::mc::{predict, predict_uncertainty, McOptions, UncertaintyMaps};
use lungseg::model::Model;

const CFG: &str = r#"{"channels":[4,8,16],"patch_size":[32,32,32]}"#;

fn input(n: usize) -> Vec<f32> {
    (0..n).map(|i| (i % 29) as f32 * 50.0 - 900.0).collect()
}

fn mc_mean(m: &Model, x: &[f32], threads: usize) -> Vec<f32> {
    let mut mean = vec![0.0; x.len()];
    let opts = McOptions {
        n_samples: 2,
        seed: 11,
        threads,
        review_threshold: None,
        review_score: None,
    };
    let maps = UncertaintyMaps {
        mean: Some(&mut mean),
        ..Default::default()
    };
    predict_uncertainty(m, x, &opts, maps).unwrap();
    mean
}

/// Library threads alive now (names `lungseg-*`; comm is truncated to 15 bytes).
fn library_threads() -> usize {
    std::fs::read_dir("/proc/self/task")
        .unwrap()
        .filter_map(|e| std::fs::read_to_string(e.ok()?.path().join("comm")).ok())
        .filter(|c| c.starts_with("lungseg"))
        .count()
}

/// Waits for `pid` up to `limit`; kills it when it overruns. Its exit status, or None on a hang.
fn wait_with_timeout(pid: libc::pid_t, limit: Duration) -> Option<i32> {
    let t = Instant::now();
    loop {
        let mut status = 0;
        let r = unsafe { libc::waitpid(pid, &mut status, libc::WNOHANG) };
        if r == pid {
            return libc::WIFEXITED(status).then(|| libc::WEXITSTATUS(status));
        }
        assert!(r == 0, "waitpid failed");
        if t.elapsed() > limit {
            unsafe {
                libc::kill(pid, libc::SIGKILL);
                libc::waitpid(pid, &mut status, 0);
            }
            return None;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn a_forked_child_can_predict() {
    let m = Model::from_bytes(&synth_model_bytes(CFG)).unwrap();
    let x = input(m.config().patch_voxels());
    // Multi-threaded predictions in the parent start the library's helper threads.
    let want = mc_mean(&m, &x, 2);
    let mut prob = vec![0.0; x.len()];
    predict(&m, &x, &mut prob, 2).unwrap();
    let pid = unsafe { libc::fork() };
    assert!(pid >= 0, "fork failed");
    if pid == 0 {
        // Child: no unwinding, no test-harness output; the exit code is the verdict.
        let ok = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            let mut p = vec![0.0; x.len()];
            predict(&m, &x, &mut p, 2).unwrap();
            p == prob && mc_mean(&m, &x, 2) == want && mc_mean(&m, &x, 0) == want
        }));
        unsafe { libc::_exit(if matches!(ok, Ok(true)) { 0 } else { 3 }) };
    }
    let status = wait_with_timeout(pid, Duration::from_secs(60));
    assert_eq!(status, Some(0), "the child hung (None) or failed");
    // The parent's pool still works.
    assert_eq!(mc_mean(&m, &x, 2), want);
}

#[test]
fn many_host_threads_share_one_bounded_pool() {
    let m = Model::from_bytes(&synth_model_bytes(CFG)).unwrap();
    let x = input(m.config().patch_voxels());
    let want = mc_mean(&m, &x, 1);
    const HOSTS: usize = 16;
    let parked = Barrier::new(HOSTS + 1);
    let release = Barrier::new(HOSTS + 1);
    let counted = std::thread::scope(|s| {
        for _ in 0..HOSTS {
            s.spawn(|| {
                for threads in [0, 2, 3] {
                    assert_eq!(mc_mean(&m, &x, threads), want, "threads {threads}");
                }
                parked.wait();
                release.wait();
            });
        }
        // Every host thread has predicted and is still alive.
        parked.wait();
        let n = library_threads();
        release.wait();
        n
    });
    // At most one helper per core besides a caller, whatever the number of callers.
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    assert!(
        counted < cores.max(2),
        "{counted} library threads for {HOSTS} host threads on {cores} cores"
    );
}
