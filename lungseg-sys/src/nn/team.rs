//! One process-wide team of helper threads that every caller's parallel loops share.
//!
//! - **Bounded:** at most [`max_helpers`] (= cores − 1) helper threads per process, whatever
//!   the number of calling threads; they are spawned on first need and live until exit.
//! - **Shared, never blocking:** one caller at a time owns the team for one parallel loop; a
//!   caller that finds it busy (another host thread's loop, or a nested loop) runs all shares
//!   itself. Nobody waits for another caller, so there is no deadlock.
//! - **Deterministic:** share `k` of `n` is a fixed piece of work; shares go to workers
//!   round-robin by index, never stolen, so results do not depend on which thread or how many
//!   threads ran them.
//! - **Fork-safe:** the team records the pid that created it; in a forked child (where its
//!   threads do not exist) the first parallel loop leaves it behind and starts a new team.
//! - **Allocation-free in the steady state:** publishing a job, waking helpers and waiting
//!   use a mutex and two condition variables only; memory is allocated when a helper is
//!   spawned.

use std::panic::{catch_unwind, resume_unwind, AssertUnwindSafe};
use std::ptr::null_mut;
use std::sync::atomic::{AtomicBool, AtomicPtr, AtomicUsize, Ordering};
use std::sync::{Condvar, Mutex, MutexGuard, OnceLock};

type Job = dyn Fn(usize) + Sync;

/// A borrowed job with its lifetime erased; valid while its caller waits in [`run`].
#[derive(Clone, Copy)]
struct JobPtr(*const Job);
// SAFETY: the pointee is `Sync` and outlives every use (the caller blocks until all helpers
// have finished with it).
unsafe impl Send for JobPtr {}

/// The job being run: shares `0..shares`, worker `w` runs `w, w + workers, ...`.
#[derive(Clone, Copy)]
struct Dispatch {
    job: JobPtr,
    workers: usize,
    shares: usize,
}

#[derive(Default)]
struct State {
    current: Option<Dispatch>,
    epoch: u64,
    pending: usize,
    panicked: bool,
}

struct Team {
    pid: u32,
    /// Held by the caller that owns the team for one parallel loop.
    busy: AtomicBool,
    /// Helpers spawned so far (changed only by the owner).
    helpers: AtomicUsize,
    state: Mutex<State>,
    start: Condvar,
    done: Condvar,
}

static TEAM: AtomicPtr<Team> = AtomicPtr::new(null_mut());

/// Cores available to this process, read once (the query itself allocates).
pub fn available_cores() -> usize {
    static CORES: OnceLock<usize> = OnceLock::new();
    *CORES.get_or_init(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
}

/// Most helper threads the library runs in one process: one per core besides a caller.
pub fn max_helpers() -> usize {
    available_cores() - 1
}

impl Team {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// This process's team (a new one in a forked child; the parent's is left behind, leaked:
/// its threads are not in this process and its lock may be held forever).
fn team() -> &'static Team {
    let pid = std::process::id();
    loop {
        let cur = TEAM.load(Ordering::Acquire);
        // SAFETY: teams are leaked, never freed, once published.
        if let Some(t) = unsafe { cur.as_ref() }.filter(|t| t.pid == pid) {
            return t;
        }
        let fresh = Box::into_raw(Box::new(Team {
            pid,
            busy: AtomicBool::new(false),
            helpers: AtomicUsize::new(0),
            state: Mutex::new(State::default()),
            start: Condvar::new(),
            done: Condvar::new(),
        }));
        if TEAM
            .compare_exchange(cur, fresh, Ordering::AcqRel, Ordering::Acquire)
            .is_err()
        {
            // SAFETY: never published, no thread knows it.
            drop(unsafe { Box::from_raw(fresh) });
        }
    }
}

/// Ownership of the team for one parallel loop.
struct Turn(&'static Team);

impl Drop for Turn {
    fn drop(&mut self) {
        self.0.busy.store(false, Ordering::Release);
    }
}

fn take_turn(team: &'static Team) -> Option<Turn> {
    team.busy
        .compare_exchange(false, true, Ordering::Acquire, Ordering::Relaxed)
        .ok()
        .map(|_| Turn(team))
}

/// Spawns helpers up to `want` (fewer if the system refuses threads); returns how many exist.
fn ensure_helpers(turn: &Turn, want: usize) -> usize {
    let team = turn.0;
    let mut have = team.helpers.load(Ordering::Relaxed);
    while have < want {
        let epoch = team.lock().epoch;
        let spawned = std::thread::Builder::new()
            .name(format!("lungseg-{have}"))
            .spawn(move || helper(team, have, epoch));
        if spawned.is_err() {
            break;
        }
        have += 1;
        team.helpers.store(have, Ordering::Relaxed);
    }
    have.min(want)
}

fn run_shares(f: &(dyn Fn(usize) + Sync), worker: usize, workers: usize, shares: usize) {
    (worker..shares).step_by(workers).for_each(f);
}

/// Helper `k`'s loop; it reacts only to epochs after `seen` (the one current at its spawn).
fn helper(team: &'static Team, k: usize, mut seen: u64) {
    loop {
        let d = {
            let mut st = team.lock();
            loop {
                if st.epoch != seen {
                    seen = st.epoch;
                    if let Some(d) = st.current.filter(|d| k + 1 < d.workers) {
                        break d;
                    }
                }
                st = team.start.wait(st).unwrap_or_else(|e| e.into_inner());
            }
        };
        // SAFETY: see `JobPtr`.
        let f = unsafe { &*d.job.0 };
        let ok = catch_unwind(AssertUnwindSafe(|| run_shares(f, k, d.workers, d.shares))).is_ok();
        let mut st = team.lock();
        st.panicked |= !ok;
        st.pending -= 1;
        if st.pending == 0 {
            team.done.notify_all();
        }
    }
}

/// Runs `f(k)` for every `k in 0..n`, on the calling thread and up to `min(n, cores) − 1`
/// helpers of the process-wide team (or on the caller alone when the team is busy).
pub(crate) fn run(n: usize, f: &(dyn Fn(usize) + Sync)) {
    if n <= 1 {
        (0..n).for_each(f);
        return;
    }
    let Some(turn) = take_turn(team()) else {
        (0..n).for_each(f);
        return;
    };
    let helpers = ensure_helpers(&turn, (n - 1).min(max_helpers()));
    if helpers == 0 {
        (0..n).for_each(f);
        return;
    }
    dispatch(&turn, helpers, n, f);
}

/// Publishes `f` to `helpers` helpers, runs the caller's shares (worker `helpers`), waits.
fn dispatch(turn: &Turn, helpers: usize, n: usize, f: &(dyn Fn(usize) + Sync)) {
    let team = turn.0;
    let workers = helpers + 1;
    // SAFETY: only the lifetime is erased; we wait below until no helper uses it.
    let short: *const (dyn Fn(usize) + Sync + '_) = f;
    let job = JobPtr(unsafe {
        std::mem::transmute::<*const (dyn Fn(usize) + Sync + '_), *const Job>(short)
    });
    {
        let mut st = team.lock();
        st.current = Some(Dispatch {
            job,
            workers,
            shares: n,
        });
        st.pending = helpers;
        st.panicked = false;
        st.epoch += 1;
    }
    team.start.notify_all();
    let mine = catch_unwind(AssertUnwindSafe(|| run_shares(f, helpers, workers, n)));
    let mut st = team.lock();
    while st.pending > 0 {
        st = team.done.wait(st).unwrap_or_else(|e| e.into_inner());
    }
    st.current = None;
    let panicked = st.panicked;
    drop(st);
    if let Err(p) = mine {
        resume_unwind(p);
    }
    assert!(!panicked, "a worker thread panicked");
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    #[test]
    fn every_share_runs_once_and_helpers_are_bounded() {
        for n in [1, 2, 3, 5, 2, 40] {
            let hits: Vec<AtomicUsize> = (0..n).map(|_| AtomicUsize::new(0)).collect();
            run(n, &|k| {
                hits[k].fetch_add(1, Ordering::Relaxed);
            });
            assert!(hits.iter().all(|h| h.load(Ordering::Relaxed) == 1));
        }
        assert!(team().helpers.load(Ordering::Relaxed) <= max_helpers());
        for i in 0..300 {
            let n = 1 + (i * 7) % 9;
            let hits = AtomicUsize::new(0);
            run(n, &|_| {
                hits.fetch_add(1, Ordering::Relaxed);
            });
            assert_eq!(hits.load(Ordering::Relaxed), n);
        }
    }

    #[test]
    fn nested_and_concurrent_loops_finish() {
        std::thread::scope(|s| {
            for _ in 0..8 {
                s.spawn(|| {
                    for _ in 0..50 {
                        let hits = AtomicUsize::new(0);
                        run(4, &|_| {
                            run(3, &|_| {
                                hits.fetch_add(1, Ordering::Relaxed);
                            })
                        });
                        assert_eq!(hits.load(Ordering::Relaxed), 12);
                    }
                });
            }
        });
    }

    #[test]
    fn a_panicking_share_reaches_the_caller() {
        let r = catch_unwind(|| run(3, &|k| assert_ne!(k, 0, "share 0 fails")));
        assert!(r.is_err());
        // The team still works afterwards.
        let hits = AtomicUsize::new(0);
        run(3, &|_| {
            hits.fetch_add(1, Ordering::Relaxed);
        });
        assert_eq!(hits.load(Ordering::Relaxed), 3);
    }
}
