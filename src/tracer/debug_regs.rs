//! The x86-64 debug registers of one thread through ptrace: the ptrace
//! engine of write/access watches (the preferred engine is a perf hardware
//! breakpoint, `kernel::hw_breakpoint`; the tracer loop's `debug_watches`
//! sets these on every thread and turns their traps into records).
//!
//! DR0-DR3 hold the watched addresses; DR7 enables each slot with its
//! length and kind (write, or read/write); DR6 says which slot fired. Each
//! is one `PTRACE_PEEKUSER`/`PTRACE_POKEUSER` at
//! `offsetof(struct user, u_debugreg[n])`, only from the tracer thread, on
//! a stopped thread. The kernel validates every DR7 write (it turns each
//! enabled slot into a perf breakpoint of the thread) and refuses an
//! address not aligned to its length.
//!
//! What the kernel does with these registers (tested in
//! `tests/e2e_watch.rs`, `ptrace_debug_registers_outlive_a_sigkilled_tracer`):
//! a clone does not inherit them, and neither PTRACE_DETACH nor the
//! tracer's death (SIGKILL included) clears them; a thread whose armed slot
//! fires with no tracer dies of SIGTRAP. So every way of ending that can
//! run writes DR7 = 0 on every thread before it detaches (the tracer loop's
//! detach path), and a SIGKILLed liveprobe leaves them armed.

use std::collections::VecDeque;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use super::kernel::hw_breakpoint::WatchRecord;
use nix::errno::Errno;

/// Records a watch keeps before the engine reads them; beyond, a write
/// is counted as lost (each record holds a stack window of ~8 KiB).
const MAX_QUEUED: usize = 2048;

/// Debug address registers per thread.
pub(super) const SLOTS: usize = 4;
/// `offsetof(struct user, u_debugreg)` on x86-64.
const U_DEBUGREG_OFFSET: usize = std::mem::offset_of!(libc::user, u_debugreg);
/// The slot bits of DR6 (B0-B3).
const DR6_SLOT_BITS: u64 = 0xf;

/// What a slot reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum DebugRegKind {
    /// Writes only (RW = 01).
    Write,
    /// Reads or writes (RW = 11; x86 has no read-only data breakpoint).
    Access,
}

/// Why a slot cannot be set as asked.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(super) enum DebugRegError {
    #[error("debug register slot {0} does not exist (x86-64 has slots 0-3)")]
    NoSuchSlot(usize),
    #[error("a debug register watches 1, 2, 4 or 8 bytes, not {0}")]
    BadLength(usize),
    #[error("address {address:#x} is not aligned to its length {length}")]
    Unaligned { address: u64, length: usize },
    #[error("ptrace on thread {tid}: {errno}")]
    Ptrace { tid: i32, errno: Errno },
}

/// DR7 with `slot` enabled locally (Ln) for `length` bytes of `kind`,
/// every other slot as in `dr7`.
pub(super) fn dr7_with(
    dr7: u64,
    slot: usize,
    kind: DebugRegKind,
    length: usize,
) -> Result<u64, DebugRegError> {
    if slot >= SLOTS {
        return Err(DebugRegError::NoSuchSlot(slot));
    }
    let rw: u64 = match kind {
        DebugRegKind::Write => 0b01,
        DebugRegKind::Access => 0b11,
    };
    // LEN encoding: 1 -> 00, 2 -> 01, 8 -> 10, 4 -> 11.
    let len: u64 = match length {
        1 => 0b00,
        2 => 0b01,
        4 => 0b11,
        8 => 0b10,
        other => return Err(DebugRegError::BadLength(other)),
    };
    let control = (rw | (len << 2)) << (16 + 4 * slot);
    Ok(dr7_without(dr7, slot) | control | (1 << (2 * slot)))
}

/// DR7 with `slot` disabled and its kind and length bits zero.
pub(super) fn dr7_without(dr7: u64, slot: usize) -> u64 {
    if slot >= SLOTS {
        return dr7;
    }
    dr7 & !(0b11 << (2 * slot)) & !(0b1111 << (16 + 4 * slot))
}

/// The slots a DR6 value says fired.
pub(super) fn dr6_fired(dr6: u64) -> Vec<usize> {
    (0..SLOTS)
        .filter(|slot| dr6 & DR6_SLOT_BITS & (1 << slot) != 0)
        .collect()
}

fn register_offset(n: usize) -> usize {
    U_DEBUGREG_OFFSET + n * std::mem::size_of::<u64>()
}

fn peek(tid: i32, n: usize) -> Result<u64, DebugRegError> {
    Errno::clear();
    // SAFETY: PTRACE_PEEKUSER takes no pointer; it returns the word.
    let word = unsafe {
        libc::ptrace(
            libc::PTRACE_PEEKUSER,
            tid as libc::pid_t,
            register_offset(n) as *mut libc::c_void,
            std::ptr::null_mut::<libc::c_void>(),
        )
    };
    // -1 is also a valid word: only errno tells.
    let errno = Errno::last();
    if word == -1 && errno != Errno::UnknownErrno {
        return Err(DebugRegError::Ptrace { tid, errno });
    }
    Ok(word as u64)
}

fn poke(tid: i32, n: usize, value: u64) -> Result<(), DebugRegError> {
    // SAFETY: PTRACE_POKEUSER takes the word as data, no pointer.
    let result = unsafe {
        libc::ptrace(
            libc::PTRACE_POKEUSER,
            tid as libc::pid_t,
            register_offset(n) as *mut libc::c_void,
            value as usize as *mut libc::c_void,
        )
    };
    if result == -1 {
        return Err(DebugRegError::Ptrace {
            tid,
            errno: Errno::last(),
        });
    }
    Ok(())
}

/// DR7 of stopped thread `tid`.
#[cfg(test)]
fn read_dr7(tid: i32) -> Result<u64, DebugRegError> {
    peek(tid, 7)
}

/// Arms `slot` of stopped thread `tid` on `length` bytes at `address`.
/// The slot is disabled while its address changes, so it never fires on a
/// half-set pair.
#[cfg(test)]
fn arm(
    tid: i32,
    slot: usize,
    address: u64,
    length: usize,
    kind: DebugRegKind,
) -> Result<(), DebugRegError> {
    let dr7 = read_dr7(tid)?;
    let armed = dr7_with(dr7, slot, kind, length)?;
    if !address.is_multiple_of(length as u64) {
        return Err(DebugRegError::Unaligned { address, length });
    }
    poke(tid, 7, dr7_without(dr7, slot))?;
    poke(tid, slot, address)?;
    poke(tid, 7, armed)
}

/// Disables `slot` of stopped thread `tid`; the other slots stay armed.
#[cfg(test)]
fn disarm(tid: i32, slot: usize) -> Result<(), DebugRegError> {
    let dr7 = read_dr7(tid)?;
    poke(tid, 7, dr7_without(dr7, slot))
}

/// Sets the slots of stopped thread `tid` to exactly `wanted` (slot,
/// address, length, kind), every other slot disabled. Each slot is enabled
/// on its own, so one the kernel refuses (ENOSPC: perf breakpoints already
/// hold the thread's registers) leaves the others armed. The outer error:
/// the thread cannot be written at all (gone); else, per wanted slot,
/// whether it is armed.
pub(super) fn set_slots(
    tid: i32,
    wanted: &[(usize, u64, usize, DebugRegKind)],
) -> Result<Vec<Result<(), DebugRegError>>, DebugRegError> {
    poke(tid, 7, 0)?;
    let mut dr7 = 0;
    let mut outcome = Vec::with_capacity(wanted.len());
    for &(slot, address, length, kind) in wanted {
        let result = (|| {
            let armed = dr7_with(dr7, slot, kind, length)?;
            if !address.is_multiple_of(length as u64) {
                return Err(DebugRegError::Unaligned { address, length });
            }
            poke(tid, slot, address)?;
            poke(tid, 7, armed)?;
            Ok(armed)
        })();
        outcome.push(result.map(|armed| dr7 = armed));
    }
    Ok(outcome)
}

/// Disables every slot of stopped thread `tid` (before a detach).
pub(super) fn disarm_all(tid: i32) -> Result<(), DebugRegError> {
    poke(tid, 7, 0)
}

/// The slots that fired on stopped thread `tid` since the last take; DR6 is
/// cleared so the next trap says only its own.
pub(super) fn take_fired(tid: i32) -> Result<Vec<usize>, DebugRegError> {
    let dr6 = peek(tid, 6)?;
    poke(tid, 6, 0)?;
    Ok(dr6_fired(dr6))
}

/// What the tracer thread hands over from the traps of one ptrace-engine
/// watch; the engine drains it.
#[derive(Default)]
pub(super) struct DebugWatchShared {
    records: Mutex<VecDeque<(u64, usize, WatchRecord)>>,
    lost: AtomicU64,
}

impl DebugWatchShared {
    /// One trap of the piece `(address, length)`.
    pub(super) fn push(&self, address: u64, length: usize, record: WatchRecord) {
        let mut records = self.records.lock().unwrap_or_else(|e| e.into_inner());
        if records.len() >= MAX_QUEUED {
            self.lost.fetch_add(1, Ordering::Relaxed);
            return;
        }
        records.push_back((address, length, record));
    }
}

/// A write/access watch armed through the debug registers of every thread
/// of a process (see `Tracer::insert_debug_watch`). Dropping it does not
/// clear the registers: `Tracer::remove_group` with the watch's group does,
/// and so does every detach.
pub struct DebugWatch {
    pub(super) shared: std::sync::Arc<DebugWatchShared>,
    pub(super) pieces: Vec<(u64, usize)>,
}

impl DebugWatch {
    /// The records of the traps so far, oldest first: (address of the
    /// piece that fired, its length, the record).
    pub fn drain(&self) -> Vec<(u64, usize, WatchRecord)> {
        let mut records = self
            .shared
            .records
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        // The queue's buffer becomes the answer (no copy); the tracer
        // thread gets a new one sized for a batch like this one, so it does
        // not grow it record by record while a writer waits. An empty or
        // small batch keeps the buffer (an idle poll must not shrink it).
        if records.len() < records.capacity() / 2 {
            return records.drain(..).collect();
        }
        let batch = records.len().min(MAX_QUEUED);
        Vec::from(std::mem::replace(
            &mut *records,
            VecDeque::with_capacity(batch),
        ))
    }

    /// Traps whose record was dropped because the engine read too slowly.
    pub fn lost(&self) -> u64 {
        self.shared.lost.load(Ordering::Relaxed)
    }

    /// The aligned pieces watched, one debug register each.
    pub fn pieces(&self) -> &[(u64, usize)] {
        &self.pieces
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dr7_encodes_enable_kind_and_length_per_slot() {
        // Slot 0, write, 8 bytes: L0, RW0 = 01, LEN0 = 10.
        assert_eq!(dr7_with(0, 0, DebugRegKind::Write, 8), Ok(0x0009_0001));
        // Slot 3, access, 4 bytes: L3 (bit 6), RW3 = 11, LEN3 = 11 at 28.
        assert_eq!(dr7_with(0, 3, DebugRegKind::Access, 4), Ok(0xf000_0040));
        // Slot 1, write, 1 and 2 bytes.
        assert_eq!(dr7_with(0, 1, DebugRegKind::Write, 1), Ok(0x0010_0004));
        assert_eq!(dr7_with(0, 1, DebugRegKind::Write, 2), Ok(0x0050_0004));
        // Re-arming a slot replaces its bits and keeps the others.
        let two = dr7_with(0x0009_0001, 1, DebugRegKind::Access, 4).expect("slot 1");
        assert_eq!(two, 0x00f9_0005);
        let replaced = dr7_with(two, 0, DebugRegKind::Write, 1).expect("slot 0");
        assert_eq!(replaced, 0x00f1_0005);
        assert_eq!(dr7_without(two, 0), 0x00f0_0004);
        assert_eq!(dr7_without(two, 1), 0x0009_0001);
        assert_eq!(dr7_without(two, 9), two);
    }

    #[test]
    fn bad_slots_and_lengths_are_refused() {
        assert_eq!(
            dr7_with(0, 4, DebugRegKind::Write, 8),
            Err(DebugRegError::NoSuchSlot(4))
        );
        for length in [0, 3, 5, 16] {
            assert_eq!(
                dr7_with(0, 0, DebugRegKind::Write, length),
                Err(DebugRegError::BadLength(length))
            );
        }
    }

    #[test]
    fn dr6_names_the_fired_slots() {
        // Reserved bits (as the kernel reports them) are ignored.
        assert_eq!(dr6_fired(0xffff_0ff0), Vec::<usize>::new());
        assert_eq!(dr6_fired(0xffff_0ff1), vec![0]);
        assert_eq!(dr6_fired(0x0000_000a), vec![1, 3]);
    }

    /// A stopped, traced `sleep`, killed when dropped.
    struct StoppedChild(std::process::Child);

    impl StoppedChild {
        fn start() -> StoppedChild {
            let child = std::process::Command::new("sleep")
                .arg("60")
                .spawn()
                .expect("start sleep");
            let tid = child.id() as i32;
            let stopped = StoppedChild(child);
            // SAFETY: plain ptrace requests and a waitpid into a local.
            unsafe {
                assert_eq!(
                    libc::ptrace(libc::PTRACE_SEIZE, tid, 0usize, 0usize),
                    0,
                    "seize"
                );
                assert_eq!(
                    libc::ptrace(libc::PTRACE_INTERRUPT, tid, 0usize, 0usize),
                    0,
                    "interrupt"
                );
                let mut status = 0;
                assert_eq!(libc::waitpid(tid, &mut status, libc::__WALL), tid);
            }
            stopped
        }

        fn tid(&self) -> i32 {
            self.0.id() as i32
        }
    }

    impl Drop for StoppedChild {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }

    /// On a real stopped thread: the kernel takes what `arm` writes (it
    /// validates DR7), reads it back the same, keeps the other slots when
    /// one is disarmed, and DR6 starts clear.
    #[test]
    fn slots_arm_and_disarm_on_a_real_thread() {
        let child = StoppedChild::start();
        let tid = child.tid();
        assert_eq!(read_dr7(tid), Ok(0));
        arm(tid, 0, 0x7000_0000_1000, 8, DebugRegKind::Write).expect("arm 0");
        arm(tid, 2, 0x7000_0000_2002, 2, DebugRegKind::Access).expect("arm 2");
        let both = dr7_with(
            dr7_with(0, 0, DebugRegKind::Write, 8).expect("0"),
            2,
            DebugRegKind::Access,
            2,
        )
        .expect("2");
        assert_eq!(read_dr7(tid), Ok(both));
        assert_eq!(peek(tid, 0), Ok(0x7000_0000_1000));
        assert_eq!(peek(tid, 2), Ok(0x7000_0000_2002));
        assert_eq!(
            arm(tid, 1, 0x7000_0000_1004, 8, DebugRegKind::Write),
            Err(DebugRegError::Unaligned {
                address: 0x7000_0000_1004,
                length: 8
            })
        );
        disarm(tid, 0).expect("disarm 0");
        assert_eq!(read_dr7(tid), Ok(dr7_without(both, 0)));
        assert_eq!(take_fired(tid), Ok(Vec::new()));
        disarm_all(tid).expect("disarm all");
        assert_eq!(read_dr7(tid), Ok(0));
    }

    /// `set_slots` leaves exactly the wanted slots armed (others off),
    /// and a slot it cannot set (unaligned) leaves the others armed.
    #[test]
    fn set_slots_sets_exactly_the_wanted_slots() {
        let child = StoppedChild::start();
        let tid = child.tid();
        arm(tid, 0, 0x7000_0000_1000, 8, DebugRegKind::Write).expect("arm 0");
        let outcome = set_slots(
            tid,
            &[
                (1, 0x7000_0000_2000, 4, DebugRegKind::Access),
                (2, 0x7000_0000_3001, 4, DebugRegKind::Write),
                (3, 0x7000_0000_4000, 1, DebugRegKind::Write),
            ],
        )
        .expect("thread stopped");
        assert!(outcome[0].is_ok() && outcome[2].is_ok(), "{outcome:?}");
        assert_eq!(
            outcome[1],
            Err(DebugRegError::Unaligned {
                address: 0x7000_0000_3001,
                length: 4
            })
        );
        let want = dr7_with(
            dr7_with(0, 1, DebugRegKind::Access, 4).expect("1"),
            3,
            DebugRegKind::Write,
            1,
        )
        .expect("3");
        assert_eq!(read_dr7(tid), Ok(want));
        assert_eq!(peek(tid, 1), Ok(0x7000_0000_2000));
        assert_eq!(peek(tid, 3), Ok(0x7000_0000_4000));
        assert_eq!(set_slots(tid, &[]).map(|o| o.len()), Ok(0));
        assert_eq!(read_dr7(tid), Ok(0));
    }
}
