//! Persistent helper threads, one team per calling thread (thread-local), so that after the
//! first call on a thread a layer's parallel loop spawns and allocates nothing: the caller
//! publishes a job pointer, helpers `0..n-1` run their share, the caller runs the last share
//! and waits. Shares are fixed by index, never stolen, so results do not depend on timing.

use std::cell::RefCell;
use std::panic::{catch_unwind, resume_unwind, AssertUnwindSafe};
use std::sync::{Arc, Condvar, Mutex};

type Job = dyn Fn(usize) + Sync;

/// A borrowed job with its lifetime erased; valid while the caller waits in [`run`].
#[derive(Clone, Copy)]
struct JobPtr(*const Job);
// SAFETY: the pointee is `Sync` and outlives every use (the caller blocks until all helpers
// have finished with it).
unsafe impl Send for JobPtr {}

#[derive(Default)]
struct State {
    job: Option<JobPtr>,
    epoch: u64,
    active: usize,
    pending: usize,
    panicked: bool,
    quit: bool,
}

#[derive(Default)]
struct Shared {
    state: Mutex<State>,
    start: Condvar,
    done: Condvar,
}

impl Shared {
    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

#[derive(Default)]
struct Team {
    shared: Arc<Shared>,
    helpers: usize,
}

impl Drop for Team {
    fn drop(&mut self) {
        self.shared.lock().quit = true;
        self.shared.start.notify_all();
    }
}

thread_local! {
    static TEAM: RefCell<Team> = RefCell::new(Team::default());
}

fn helper(shared: Arc<Shared>, k: usize) {
    let mut seen = 0;
    loop {
        let job = {
            let mut st = shared.lock();
            loop {
                if st.quit {
                    return;
                }
                if st.epoch != seen {
                    seen = st.epoch;
                    if k < st.active {
                        break st.job;
                    }
                }
                st = shared.start.wait(st).unwrap_or_else(|e| e.into_inner());
            }
        };
        // SAFETY: see `JobPtr`.
        let ok =
            job.is_some_and(|j| catch_unwind(AssertUnwindSafe(|| unsafe { (*j.0)(k) })).is_ok());
        let mut st = shared.lock();
        st.panicked |= !ok;
        st.pending -= 1;
        if st.pending == 0 {
            shared.done.notify_all();
        }
    }
}

/// Runs `f(k)` for `k in 0..n`: `0..n-1` on this thread's helpers, `n-1` on the caller.
/// Helpers are spawned on first need and then reused by every later call on this thread.
pub(crate) fn run(n: usize, f: &(dyn Fn(usize) + Sync)) {
    if n <= 1 {
        if n == 1 {
            f(0);
        }
        return;
    }
    TEAM.with(|team| {
        let Ok(mut team) = team.try_borrow_mut() else {
            // Nested use (not done by the engine): run serially.
            (0..n).for_each(f);
            return;
        };
        while team.helpers < n - 1 {
            let (shared, k) = (Arc::clone(&team.shared), team.helpers);
            let spawned = std::thread::Builder::new()
                .name(format!("lungseg-{k}"))
                .spawn(move || helper(shared, k));
            if spawned.is_err() {
                // Out of threads: same shares, same results, one thread.
                (0..n).for_each(f);
                return;
            }
            team.helpers += 1;
        }
        let shared = &team.shared;
        // SAFETY: only the lifetime is erased; we wait below until no helper uses it.
        let short: *const (dyn Fn(usize) + Sync + '_) = f;
        let job = JobPtr(unsafe {
            std::mem::transmute::<*const (dyn Fn(usize) + Sync + '_), *const Job>(short)
        });
        {
            let mut st = shared.lock();
            st.job = Some(job);
            st.active = n - 1;
            st.pending = n - 1;
            st.panicked = false;
            st.epoch += 1;
        }
        shared.start.notify_all();
        let mine = catch_unwind(AssertUnwindSafe(|| f(n - 1)));
        let mut st = shared.lock();
        while st.pending > 0 {
            st = shared.done.wait(st).unwrap_or_else(|e| e.into_inner());
        }
        st.job = None;
        let panicked = st.panicked;
        drop(st);
        if let Err(p) = mine {
            resume_unwind(p);
        }
        assert!(!panicked, "a worker thread panicked");
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    #[test]
    fn every_share_runs_once_and_helpers_are_reused() {
        for n in [1, 2, 3, 5, 2] {
            let hits: Vec<AtomicUsize> = (0..n).map(|_| AtomicUsize::new(0)).collect();
            run(n, &|k| {
                hits[k].fetch_add(1, Ordering::Relaxed);
            });
            assert!(hits.iter().all(|h| h.load(Ordering::Relaxed) == 1));
        }
        assert_eq!(TEAM.with(|t| t.borrow().helpers), 4);
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
