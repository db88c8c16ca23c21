//! Which watch holds which of a process's four debug registers, and the
//! watchpoints holding them, whichever engine set them: the sampling and
//! the write/access watches (`watch.rs`, `watch_write.rs`) both answer to
//! it, so it sits below both.

use std::sync::{Arc, Mutex};

use crate::tracer::{DebugWatch, HwWatch, WatchRecord};

/// What holds the debug registers of one write watch.
pub(super) enum ArmedWatch {
    /// One perf event per piece (address of the piece, its watchpoint):
    /// dropping them closes the events, which clears the registers of
    /// every thread at once.
    Perf(Vec<(u64, HwWatch)>),
    /// The debug registers of every thread, set through ptrace by the
    /// tracer thread; `None` once the watch ended. The tracer clears the
    /// registers themselves (`Tracer::remove_group`, and every detach).
    Ptrace(Option<DebugWatch>),
}

impl ArmedWatch {
    /// Lets go of the watchpoints (perf: closes them).
    pub(super) fn clear(&mut self) {
        match self {
            ArmedWatch::Perf(watches) => watches.clear(),
            ArmedWatch::Ptrace(watch) => *watch = None,
        }
    }

    pub(super) fn is_empty(&self) -> bool {
        match self {
            ArmedWatch::Perf(watches) => watches.is_empty(),
            ArmedWatch::Ptrace(watch) => watch.is_none(),
        }
    }

    /// The records so far (address of the piece, its length, the record)
    /// and the count of records lost.
    pub(super) fn drain(&self) -> (Vec<(u64, usize, WatchRecord)>, u64) {
        match self {
            ArmedWatch::Perf(watches) => {
                let mut records = Vec::new();
                for (at, watch) in watches {
                    let len = watch.watched_len();
                    records.extend(watch.drain().into_iter().map(|r| (*at, len, r)));
                }
                (records, watches.iter().map(|(_, w)| w.lost()).sum())
            }
            ArmedWatch::Ptrace(Some(watch)) => (watch.drain(), watch.lost()),
            ArmedWatch::Ptrace(None) => (Vec::new(), 0),
        }
    }
}

/// Debug registers one watch holds in one process, and the watchpoints
/// holding them: taking those out closes their events at once, so a
/// removed watch's registers are free when `remove_probe` answers.
#[derive(Clone)]
pub(super) struct DebugRegisters {
    pub(super) pid: i32,
    pub(super) count: usize,
    pub(super) probe: u64,
    pub(super) watchpoints: Arc<Mutex<ArmedWatch>>,
}
