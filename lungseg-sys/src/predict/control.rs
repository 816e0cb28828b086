//! How a host follows and stops a running prediction: a cancel check, a progress report and a
//! log sink, all called on the thread that made the call (never on a pool thread), so a host
//! callback needs no locking of its own.
//!
//! On the CPU, cancellation is checked before every sample and between the levels of each
//! forward pass, so a cancelled call returns within one level's work; it writes no maps or
//! summary for the patch it stopped in. Progress counts forward passes: `done` of `total`, once
//! per finished sample. On a device that runs its samples in batch chunks (CUDA), both happen
//! per chunk: cancellation is checked before each chunk (a cancelled call returns within one
//! chunk's work) and progress is reported once after each, counting its samples.

use crate::ffi::lungseg_log_level;

/// How much a log message matters; the values are `lungseg_log_level`'s.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
#[repr(u32)]
pub enum LogLevel {
    Error = lungseg_log_level::LUNGSEG_LOG_ERROR as u32,
    Warn = lungseg_log_level::LUNGSEG_LOG_WARN as u32,
    Info = lungseg_log_level::LUNGSEG_LOG_INFO as u32,
    Debug = lungseg_log_level::LUNGSEG_LOG_DEBUG as u32,
}

/// Forward passes finished of those the call (or batch) will run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Progress {
    pub done: u64,
    pub total: u64,
}

/// Where log messages go.
pub type LogSink<'a> = &'a dyn Fn(LogLevel, &str);

/// The host's hooks into one call; every hook is optional ([`RunControl::default`] has none).
#[derive(Default)]
pub struct RunControl<'a> {
    cancel: Option<&'a dyn Fn() -> bool>,
    progress: Option<&'a mut dyn FnMut(Progress)>,
    log: Option<LogSink<'a>>,
    log_level: Option<LogLevel>,
    /// Forward passes counted so far, and the total announced by [`RunControl::expect`]
    /// (0: each call announces its own).
    done: u64,
    total: u64,
}

impl<'a> RunControl<'a> {
    /// The level delivered when the host names none.
    pub const DEFAULT_LOG_LEVEL: LogLevel = LogLevel::Info;

    /// `cancel` returns true once the host wants the call stopped.
    pub fn with_cancel(mut self, cancel: &'a dyn Fn() -> bool) -> Self {
        self.cancel = Some(cancel);
        self
    }

    /// `progress` is called after every finished forward pass.
    pub fn with_progress(mut self, progress: &'a mut dyn FnMut(Progress)) -> Self {
        self.progress = Some(progress);
        self
    }

    /// `log` receives the messages at `level` and more severe.
    pub fn with_log(mut self, log: LogSink<'a>, level: LogLevel) -> Self {
        self.log = Some(log);
        self.log_level = Some(level);
        self
    }

    /// The cancel check, for code that runs while `self` is borrowed mutably.
    pub(crate) fn cancel_check(&self) -> Option<&'a dyn Fn() -> bool> {
        self.cancel
    }

    /// Announces the forward passes of a whole batch, so progress runs once from 0 to `total`
    /// across its calls.
    pub fn expect(&mut self, total: u64) {
        self.done = 0;
        self.total = total;
    }

    /// Announces one call's passes unless a batch total is set.
    pub(crate) fn begin_call(&mut self, passes: u64) {
        if self.total == 0 {
            self.done = 0;
            self.total = passes;
        }
    }

    /// Adds `passes` to the total: work the call decided on after it began (a second look).
    pub(crate) fn expect_more(&mut self, passes: u64) {
        self.total = self.total.max(self.done) + passes;
    }

    /// Counts a finished forward pass and reports it.
    pub(crate) fn pass_done(&mut self) {
        self.passes_done(1);
    }

    /// Counts `k` forward passes finished together (a device's batch) and reports them once.
    pub(crate) fn passes_done(&mut self, k: u64) {
        self.done += k;
        let p = Progress {
            done: self.done,
            total: self.total.max(self.done),
        };
        if let Some(f) = self.progress.as_mut() {
            f(p);
        }
    }

    /// Passes counted so far.
    pub fn done(&self) -> u64 {
        self.done
    }

    /// Whether a message at `level` reaches the host; build costly messages only when true.
    pub fn logs(&self, level: LogLevel) -> bool {
        self.log.is_some() && level <= self.log_level.unwrap_or(Self::DEFAULT_LOG_LEVEL)
    }

    /// Sends `message` to the host's log if its level is wanted.
    pub fn log(&self, level: LogLevel, message: impl FnOnce() -> String) {
        if let (true, Some(log)) = (self.logs(level), self.log) {
            log(level, &message());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::RefCell;

    #[test]
    fn progress_spans_a_batch_and_each_call_alone() {
        let seen = RefCell::new(Vec::new());
        let mut rec = |p: Progress| seen.borrow_mut().push((p.done, p.total));
        let mut ctl = RunControl::default().with_progress(&mut rec);
        ctl.begin_call(2);
        ctl.pass_done();
        ctl.pass_done();
        ctl.expect(4);
        for _ in 0..2 {
            ctl.begin_call(2);
            ctl.pass_done();
            ctl.pass_done();
        }
        assert_eq!(
            seen.into_inner(),
            [(1, 2), (2, 2), (1, 4), (2, 4), (3, 4), (4, 4)]
        );
    }

    #[test]
    fn log_level_filters_and_defaults_to_info() {
        let got = RefCell::new(Vec::new());
        let sink = |l: LogLevel, m: &str| got.borrow_mut().push((l, m.to_string()));
        let ctl = RunControl::default().with_log(&sink, RunControl::DEFAULT_LOG_LEVEL);
        ctl.log(LogLevel::Debug, || "hidden".into());
        ctl.log(LogLevel::Info, || "shown".into());
        let ctl = RunControl::default().with_log(&sink, LogLevel::Error);
        ctl.log(LogLevel::Warn, || "hidden too".into());
        ctl.log(LogLevel::Error, || "error".into());
        assert_eq!(
            got.into_inner(),
            [
                (LogLevel::Info, "shown".to_string()),
                (LogLevel::Error, "error".to_string())
            ]
        );
    }
}
