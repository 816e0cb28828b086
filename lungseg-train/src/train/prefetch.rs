//! Producing batches ahead of the training step on a loader thread.
//!
//! Reading, normalising and augmenting a batch needs only the CPU while the step waits for it;
//! on a GPU (or a CPU backend that leaves a core idle in its serial phases) a loader thread
//! hides that time. The loader runs the same producer in the same order, so a seeded run draws
//! the same batches with or without it.

use std::sync::mpsc::sync_channel;
use std::thread;

use anyhow::{anyhow, Result};

/// Runs `consume` on the items of `produce`, which a scoped loader thread yields up to `depth`
/// items ahead; `depth == 0` yields each item on the calling thread when `consume` asks.
///
/// When `consume` returns early (an error), the channel closes and the loader stops at its next
/// item; the loader is joined before this returns either way. Errs only when the loader
/// thread cannot be started.
pub fn prefetched<T: Send, R>(
    depth: usize,
    produce: impl Iterator<Item = T> + Send,
    consume: impl FnOnce(&mut dyn Iterator<Item = T>) -> R,
) -> Result<R> {
    if depth == 0 {
        let mut items = produce;
        return Ok(consume(&mut items));
    }
    thread::scope(|scope| {
        let (tx, rx) = sync_channel(depth);
        thread::Builder::new()
            .name("lungseg-train-loader".into())
            .spawn_scoped(scope, move || {
                for item in produce {
                    if tx.send(item).is_err() {
                        break;
                    }
                }
            })
            .map_err(|e| anyhow!("cannot start the batch loader thread: {e}"))?;
        // `items` owns the receiver and drops it when `consume` returns, which ends the loader.
        let mut items = rx.into_iter();
        Ok(consume(&mut items))
    })
}
