//! The host's hooks into a running call (`lungseg_run_options`): a cancel flag another thread
//! sets, a progress callback and a log callback, turned into the engine's [`RunControl`].
//!
//! Callbacks run on the thread that made the call, never on a pool thread, and never after the
//! call returns. They must return normally: a C++ exception or a `longjmp` out of a callback
//! cannot cross the library's frames (the process aborts).

use std::ffi::{c_void, CString};
use std::sync::atomic::{AtomicI32, Ordering};

use super::{arg_options, lungseg_log_level, versioned};
use crate::error::{Error, Result};
use crate::mc::{LogLevel, Progress, RunControl};

/// Progress of a call: `done` of `total` forward passes (a batch counts all its points).
pub type lungseg_progress_fn =
    Option<unsafe extern "C" fn(user: *mut c_void, done: u64, total: u64)>;

/// A log message: `level` is a `lungseg_log_level`, `message` a NUL-terminated UTF-8 line
/// valid only during the callback.
pub type lungseg_log_fn =
    Option<unsafe extern "C" fn(user: *mut c_void, level: u32, message: *const libc::c_char)>;

/// How the host follows and stops a call (`lungseg_mc_options.run`; NULL = no hooks).
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct lungseg_run_options {
    /// `sizeof(lungseg_run_options)`.
    pub struct_size: u32,
    /// The most verbose `lungseg_log_level` delivered to `log`; 0 = INFO.
    pub log_level: u32,
    /// NULL, or a 4-byte aligned flag the host sets non-zero from any thread to cancel (a C11
    /// `atomic_int` or C++ `std::atomic<int32_t>` stored to, e.g. `atomic_store(&flag, 1)`).
    /// Read before every MC sample and between the levels of each forward pass (on a GPU:
    /// before each batch chunk of samples); the call then returns `LUNGSEG_CANCELLED`. Must
    /// stay valid until the call returns.
    pub cancel: *const i32,
    /// NULL, or called after every finished forward pass (on a GPU: once after each batch
    /// chunk, `done` counting its passes).
    pub progress: lungseg_progress_fn,
    /// NULL, or receives the call's log messages (ERROR repeats the failure's message).
    pub log: lungseg_log_fn,
    /// Passed to both callbacks as it is.
    pub user: *mut c_void,
}
versioned!(lungseg_run_options, v1 = 40, v1_last = user);

/// A caller's hooks, checked: build a [`RunControl`] from them with [`Hooks::control`].
pub(crate) struct Hooks {
    cancel: Option<*const i32>,
    progress: lungseg_progress_fn,
    log: lungseg_log_fn,
    user: *mut c_void,
    level: LogLevel,
}

impl Hooks {
    /// Reads and checks `lungseg_run_options` (NULL = no hooks).
    pub(crate) unsafe fn from_c(p: *const lungseg_run_options, name: &str) -> Result<Hooks> {
        let o = arg_options(p, name)?.unwrap_or_default();
        let level = match o.log_level {
            0 => RunControl::DEFAULT_LOG_LEVEL,
            raw => lungseg_log_level::try_from(raw)
                .map_err(|e| Error::from(e).context(format!("{name}->log_level")))?
                .into(),
        };
        let cancel = (!o.cancel.is_null()).then_some(o.cancel);
        if cancel.is_some_and(|c| !(c as usize).is_multiple_of(align_of::<AtomicI32>())) {
            return Err(Error::invalid(format!(
                "{name}->cancel is not aligned to 4 bytes"
            )));
        }
        Ok(Hooks {
            cancel,
            progress: o.progress,
            log: o.log,
            user: o.user,
            level,
        })
    }

    /// Runs `f` with a [`RunControl`] that calls the host's hooks.
    pub(crate) fn control<R>(&self, f: impl FnOnce(&mut RunControl<'_>) -> R) -> R {
        // SAFETY (all three closures): the caller promised the flag and callbacks stay valid
        // for the call; the flag is aligned (checked) and only read atomically here.
        let cancel = self.cancel.map(|p| {
            move || unsafe { AtomicI32::from_ptr(p.cast_mut()) }.load(Ordering::Relaxed) != 0
        });
        let (user, progress_fn, log_fn) = (self.user, self.progress, self.log);
        let mut progress =
            progress_fn.map(|cb| move |p: Progress| unsafe { cb(user, p.done, p.total) });
        let log = log_fn.map(|cb| {
            move |level: LogLevel, message: &str| {
                let line = CString::new(message.replace('\0', " ")).unwrap_or_default();
                unsafe { cb(user, level as u32, line.as_ptr()) }
            }
        });
        let mut ctl = RunControl::default();
        if let Some(c) = cancel.as_ref() {
            ctl = ctl.with_cancel(c);
        }
        if let Some(p) = progress.as_mut() {
            ctl = ctl.with_progress(p);
        }
        if let Some(l) = log.as_ref() {
            ctl = ctl.with_log(l, self.level);
        }
        f(&mut ctl)
    }
}

/// Logs a failed call's message at ERROR before it becomes the status.
pub(crate) fn log_failure<T>(ctl: &RunControl<'_>, r: Result<T>) -> Result<T> {
    if let Err(e) = &r {
        ctl.log(LogLevel::Error, || e.message.clone());
    }
    r
}
