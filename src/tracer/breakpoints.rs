//! Non-breaking breakpoints: the public contract with the engine (a
//! handler per breakpoint, called on the tracer thread while only the
//! hitting thread is stopped) and the per-process state behind it.
//!
//! Owns: the writer of a target's code, and the registry of patched bytes
//! that any thread can use to restore a target when the tracer thread
//! cannot. The sites themselves are in each process's site table
//! (`sites`).
//! Must never: write anything into a target but `int3` bytes, their
//! originals, trampolines and a pushed return address; forget an original
//! byte while an `int3` of ours may still be in some address space.

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::os::unix::fs::FileExt;
use std::sync::Mutex;

use nix::errno::Errno;

use super::code::{EmulationMemory, INT3};
use super::hit_copy::HeldThread;
use super::memory::ProcessMemory;

/// Runs on the tracer thread when a thread executes a breakpoint of this
/// handler, while ONLY that thread is stopped (for a copying breakpoint:
/// just after that thread was resumed, on the copy). Must be quick and
/// never wait (no lock another thread may hold): every other thread's trap
/// waits for it. A handler with real work hands it to a thread of its own.
pub trait HitHandler: Send + 'static {
    /// A thread hit the breakpoint (a copying breakpoint or a kernel-side
    /// site: on the copy; a plain breakpoint: see `on_held_hit`).
    fn on_hit(&mut self, hit: &HitContext<'_>) -> HitVerdict;
    /// A thread hit a breakpoint without a copy plan: the thread stays
    /// stopped until `hit` (its `HeldThread`) is released or dropped, or
    /// `HELD_HIT_DEADLINE` passed, so a handler may move `hit` to another
    /// thread and read it there while the tracer thread goes on. Default:
    /// `on_hit` here, on live memory, then the thread goes on.
    fn on_held_hit(&mut self, hit: HeldHit) -> HitVerdict {
        self.on_hit(&hit.context())
    }
    /// A hit on a copy (a copying breakpoint after its thread went on, a
    /// kernel-side record), owned, so that a handler can move it to another
    /// thread without copying it again. Default: `on_hit` on it here.
    fn on_copied_hit(&mut self, hit: CopiedHitContext) -> HitVerdict {
        self.on_hit(&hit.context())
    }
    /// The breakpoint ends: removed, target exited or exec'd, detached.
    /// Called once, on the tracer thread. Default: nothing.
    fn on_end(&mut self, _why: &BreakpointEnd) {}
    /// Hits of a kernel-side site that were lost (its ring was full), as
    /// they are noticed. Default: nothing.
    fn on_lost(&mut self, _count: u64) {}
}

/// What a handler sees of a hit.
pub struct HitContext<'a> {
    /// The process.
    pub pid: i32,
    /// The thread that hit the breakpoint (stopped while the handler runs).
    pub tid: i32,
    /// The breakpoint address.
    pub address: u64,
    /// The thread's registers as at the breakpoint (`rip == address`).
    pub regs: &'a libc::user_regs_struct,
    /// The thread pointer (`%fs` base), for thread-local storage, when known
    /// (kernel-side captures do not have it).
    pub fs_base: Option<u64>,
    /// The target's memory as the handler may read it.
    pub memory: HitMemory<'a>,
    /// When the hit happened, in `CLOCK_MONOTONIC` nanoseconds.
    pub monotonic_ns: u64,
    /// When the hit happened, in wall-clock time.
    pub time: std::time::SystemTime,
    /// How long the thread was held for this hit, when its handler runs
    /// after it went on (a ptrace breakpoint that copies: stop seen to
    /// resumed). None when the handler runs while the thread is held, or
    /// for a kernel-side hit.
    pub held: Option<std::time::Duration>,
    /// Of `held`, the time spent copying what the handler's plan names:
    /// the part of the hold that is the probe's own work (the trap and the
    /// resume are the same for every breakpoint).
    pub copying: Option<std::time::Duration>,
}

/// The memory a handler reads at a hit.
#[derive(Clone, Copy)]
pub enum HitMemory<'a> {
    /// Live reads of the target (a ptrace breakpoint: the hitting thread is
    /// stopped, other threads run, so data they share may change meanwhile).
    Live(&'a ProcessMemory),
    /// What the kernel copied at the hit (a kernel-side site): the thread
    /// has moved on, and memory the capture plan did not cover is not there.
    Captured(&'a super::kernel::CapturedMemory),
    /// Live reads of a thread held at its hit while its handler reads on
    /// another thread; reads after it was let go fail.
    Held(&'a HeldThread),
}

/// A hit on copied memory, owned (see `HitHandler::on_copied_hit`); its
/// fields are those of `HitContext`.
pub struct CopiedHitContext {
    /// The process.
    pub pid: i32,
    /// The thread that hit (running on by now).
    pub tid: i32,
    /// The breakpoint address.
    pub address: u64,
    /// Its registers as at the breakpoint (`rip == address`).
    pub regs: libc::user_regs_struct,
    /// The thread pointer, when known (not for kernel-side hits).
    pub fs_base: Option<u64>,
    /// What was copied at the hit.
    pub memory: super::kernel::CapturedMemory,
    /// When the hit happened, in `CLOCK_MONOTONIC` nanoseconds.
    pub monotonic_ns: u64,
    /// When the hit happened, in wall-clock time.
    pub time: std::time::SystemTime,
    /// How long a ptrace hit held its thread (None: kernel-side).
    pub held: Option<std::time::Duration>,
    /// Of `held`, the time spent copying.
    pub copying: Option<std::time::Duration>,
}

impl CopiedHitContext {
    /// The hit as a handler reads it.
    pub fn context(&self) -> HitContext<'_> {
        HitContext {
            pid: self.pid,
            tid: self.tid,
            address: self.address,
            regs: &self.regs,
            fs_base: self.fs_base,
            memory: HitMemory::Captured(&self.memory),
            monotonic_ns: self.monotonic_ns,
            time: self.time,
            held: self.held,
            copying: self.copying,
        }
    }
}

/// A hit of a breakpoint without a copy plan, owned, so that a handler can
/// read it on another thread: its thread stays stopped until `thread` is
/// released or dropped (or `HELD_HIT_DEADLINE`).
pub struct HeldHit {
    /// The process.
    pub pid: i32,
    /// The thread, stopped at the breakpoint.
    pub tid: i32,
    /// The breakpoint address.
    pub address: u64,
    /// Its registers as at the breakpoint (`rip == address`).
    pub regs: libc::user_regs_struct,
    /// When the hit happened, in `CLOCK_MONOTONIC` nanoseconds.
    pub monotonic_ns: u64,
    /// When the hit happened, in wall-clock time.
    pub time: std::time::SystemTime,
    /// The stopped thread's memory, and its release.
    pub thread: HeldThread,
}

impl HeldHit {
    /// The hit as a handler reads it.
    pub fn context(&self) -> HitContext<'_> {
        HitContext {
            pid: self.pid,
            tid: self.tid,
            address: self.address,
            regs: &self.regs,
            fs_base: Some(self.regs.fs_base),
            memory: HitMemory::Held(&self.thread),
            monotonic_ns: self.monotonic_ns,
            time: self.time,
            held: None,
            copying: None,
        }
    }
}

/// `CLOCK_MONOTONIC` now, in nanoseconds (the clock of kernel-side hits).
pub fn monotonic_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes one timespec.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// What a handler wants after a hit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HitVerdict {
    /// Stay armed.
    Keep,
    /// Remove every breakpoint of this handler's group now (the probe is
    /// done or throttled), before the thread resumes.
    RemoveGroup,
}

/// Why a breakpoint ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BreakpointEnd {
    /// Removed by `remove_group` or by a `RemoveGroup` verdict.
    Removed,
    /// The process exited (`code`) or was killed (`signal`, e.g. "SIGSEGV").
    TargetExited {
        /// Exit code, when it exited.
        code: Option<i32>,
        /// Name of the signal that killed it, when it was killed.
        signal: Option<String>,
    },
    /// The process ran a new program: its code is gone.
    Execed,
    /// The process was detached.
    Detached,
}

/// Identifies one inserted breakpoint.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct BreakpointId(pub u64);

/// Writes into a target's memory through `/proc/PID/mem` (which works on
/// read-only code pages). Kept open; a new one is needed after exec.
#[derive(Debug)]
pub(super) struct CodeWriter {
    file: File,
}

impl CodeWriter {
    pub(super) fn open(pid: i32) -> Result<CodeWriter, Errno> {
        OpenOptions::new()
            .read(true)
            .write(true)
            .open(format!("/proc/{pid}/mem"))
            .map(|file| CodeWriter { file })
            .map_err(|error| Errno::from_raw(error.raw_os_error().unwrap_or(libc::EIO)))
    }

    pub(super) fn write(&self, addr: u64, bytes: &[u8]) -> Result<(), Errno> {
        let mut done = 0;
        while done < bytes.len() {
            match self.file.write_at(&bytes[done..], addr + done as u64) {
                Ok(0) => return Err(Errno::EIO),
                Ok(n) => done += n,
                Err(error) if error.kind() == std::io::ErrorKind::Interrupted => {}
                Err(error) => {
                    return Err(Errno::from_raw(error.raw_os_error().unwrap_or(libc::EIO)));
                }
            }
        }
        Ok(())
    }

    /// Put `original` back at `addr` if our int3 is still there. Anything
    /// else there (the code was unmapped, or other code mapped in its place
    /// after a dlclose) is left alone.
    pub(super) fn restore(&self, addr: u64, original: u8) -> Result<(), Errno> {
        match self.read_byte(addr) {
            Some(INT3) => self.write(addr, &[original]),
            _ => Ok(()),
        }
    }

    pub(super) fn read_byte(&self, addr: u64) -> Option<u8> {
        let mut byte = [0u8; 1];
        self.file
            .read_at(&mut byte, addr)
            .ok()
            .filter(|n| *n == 1)?;
        Some(byte[0])
    }
}

/// Memory access for emulating a call or return in a stopped thread.
pub(super) struct ThreadMemory<'a> {
    pub memory: &'a ProcessMemory,
    pub writer: Option<&'a CodeWriter>,
}

impl EmulationMemory for ThreadMemory<'_> {
    fn read_u64(&self, addr: u64) -> Option<u64> {
        let mut bytes = [0u8; 8];
        self.memory.read(addr, &mut bytes).ok()?;
        Some(u64::from_le_bytes(bytes))
    }

    fn write_u64(&self, addr: u64, value: u64) -> bool {
        self.writer
            .is_some_and(|writer| writer.write(addr, &value.to_le_bytes()).is_ok())
    }
}

/// Every `int3` of ours in every target, with the byte it hides, readable
/// from any thread: the last line of defence when the tracer thread cannot
/// detach (it panicked, or does not answer in time), so that a target
/// never meets an `int3` nobody handles.
#[derive(Debug, Default)]
pub(super) struct PatchRegistry {
    patches: Mutex<HashMap<i32, HashMap<u64, u8>>>,
}

impl PatchRegistry {
    /// The map, or None when liveprobe is gone and another (dead) thread
    /// holds the lock: the tracer task's site tables have the same bytes.
    fn lock(&self) -> Option<std::sync::MutexGuard<'_, HashMap<i32, HashMap<u64, u8>>>> {
        // Single inserts/removes: a poisoned map is still consistent.
        if !super::guardian::orphaned() {
            return Some(self.patches.lock().unwrap_or_else(|e| e.into_inner()));
        }
        match self.patches.try_lock() {
            Ok(patches) => Some(patches),
            Err(std::sync::TryLockError::Poisoned(poisoned)) => Some(poisoned.into_inner()),
            Err(std::sync::TryLockError::WouldBlock) => None,
        }
    }

    pub(super) fn patched(&self, pid: i32, address: u64, original: u8) {
        if let Some(mut patches) = self.lock() {
            patches.entry(pid).or_default().insert(address, original);
        }
    }

    pub(super) fn restored(&self, pid: i32, address: u64) {
        let Some(mut patches) = self.lock() else {
            return;
        };
        if let Some(of_pid) = patches.get_mut(&pid) {
            of_pid.remove(&address);
            if of_pid.is_empty() {
                patches.remove(&pid);
            }
        }
    }

    pub(super) fn forget_process(&self, pid: i32) {
        if let Some(mut patches) = self.lock() {
            patches.remove(&pid);
        }
    }

    /// Write every original byte back, from whatever thread calls this.
    /// Returns how many could not be written.
    pub(super) fn restore_everything(&self) -> usize {
        let Some(mut locked) = self.lock() else {
            return 0;
        };
        let patches = std::mem::take(&mut *locked);
        drop(locked);
        let mut failed = 0;
        for (pid, of_pid) in patches {
            let writer = match CodeWriter::open(pid) {
                Ok(writer) => writer,
                Err(_) => {
                    failed += of_pid.len();
                    continue;
                }
            };
            for (address, original) in of_pid {
                if writer.restore(address, original).is_err() {
                    failed += 1;
                }
            }
        }
        if failed > 0 {
            tracing::error!(
                failed,
                "could not restore every breakpoint byte; affected targets may die of SIGTRAP"
            );
        }
        failed
    }
}
