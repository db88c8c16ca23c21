//! The copy a ptrace breakpoint makes of a hit: run a capture plan (the
//! same symbolic plan a kernel-side site runs in BPF) against the stopped
//! thread's registers and memory with batched `process_vm_readv`, so the
//! thread is held only for the copy. The handler gets the copy after the
//! thread went on (`HitMemory::Captured`), exactly as a kernel-side hit.
//!
//! Reads whose address comes from a register or is fixed go in the first
//! batch; a read whose address is a word of an earlier read goes in the
//! batch after that read's. A plan of depth 1 is one system call.
//!
//! A hit whose capture could not be planned is not copied: the thread stays
//! stopped (`HeldStop`) while its handler reads it live on another thread
//! (`HeldThread`), and is resumed when every such handler released it or
//! `HELD_HIT_DEADLINE` passed. A read that ends after the thread was let go
//! fails, so nothing read late is ever shown as the hit's.
//!
//! Must never: read anything the plan does not name (beyond the stack
//! window it asks for), or touch the thread (it only reads memory).

use std::sync::Arc;
use std::sync::atomic::{AtomicU8, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use nix::errno::Errno;

use super::doorbell::Doorbell;
use super::error::{MemoryReadCause, MemoryReadError};
use super::kernel::{CaptureBase, CapturePlan, CapturedMemory};
use super::memory::ProcessMemory;

/// The x86-64 red zone below `rsp`, where leaf functions keep locals.
const RED_ZONE: u64 = 128;
/// Stack window bytes are read in pieces of this size, so an unmapped page
/// above the stack's top ends the window instead of failing all of it.
const WINDOW_PIECE: u64 = 4096;

/// What a ptrace breakpoint copies at each hit, decided when it is set.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HitCopyPlan {
    /// The planned reads (registers are always copied).
    pub capture: CapturePlan,
    /// Bytes of stack copied from `rsp - 128` upwards besides the plan:
    /// for captures that could not be planned, so the unwinder and the
    /// frame reads find the stack as it was at the hit. 0: none.
    pub stack_window: u32,
    /// Bytes below the thread pointer (`fs_base`) copied, plus 64 above it:
    /// where x86-64 keeps the static thread-local blocks of the program and
    /// its first libraries, for captures that could not be planned (the
    /// planner refuses thread-locals). 0: none.
    pub tls_window: u32,
}

/// Longest a hit whose capture could not be planned holds its thread while
/// another thread reads it: a thread is never kept from running longer
/// than this by a probe, even when the reader waits on a lock a client
/// request holds (a decode of a huge value) or falls behind. The thread is
/// then let go and that hit's values are unavailable, never read late.
pub const HELD_HIT_DEADLINE: Duration = Duration::from_secs(1);

const HELD: u8 = 0;
const RELEASED: u8 = 1;
const LET_GO_LATE: u8 = 2;
const LET_GO_GONE: u8 = 3;

/// Why a held thread was let go before its reader released it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LetGo {
    /// `HELD_HIT_DEADLINE` passed.
    TookTooLong,
    /// The thread or its process went away (killed, exec, exit).
    ThreadGone,
}

impl std::fmt::Display for LetGo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            LetGo::TookTooLong => write!(
                f,
                "capture took too long: the thread was let go after {} ms, before this was read",
                HELD_HIT_DEADLINE.as_millis()
            ),
            LetGo::ThreadGone => f.write_str(
                "the thread exited while its capture was being read, before this was read",
            ),
        }
    }
}

/// The shared state of one held hit between the tracer thread (which
/// resumes the thread) and the reader (which releases it).
#[derive(Debug)]
pub(super) struct HeldToken {
    state: AtomicU8,
    /// When the stop was seen.
    stopped: Instant,
    /// Stop seen to released or let go, in ns (0 while held).
    held_ns: AtomicU64,
    doorbell: Arc<Doorbell>,
}

impl HeldToken {
    pub(super) fn new(stopped: Instant, doorbell: Arc<Doorbell>) -> Arc<HeldToken> {
        Arc::new(HeldToken {
            state: AtomicU8::new(HELD),
            stopped,
            held_ns: AtomicU64::new(0),
            doorbell,
        })
    }

    /// Whether the reader released it.
    pub(super) fn is_released(&self) -> bool {
        self.state.load(Ordering::Acquire) == RELEASED
    }

    /// The tracer takes the thread back (the reader did not release it in
    /// time, or the thread is gone); false when the reader released it first.
    pub(super) fn let_go(&self, why: LetGo) -> bool {
        let to = match why {
            LetGo::TookTooLong => LET_GO_LATE,
            LetGo::ThreadGone => LET_GO_GONE,
        };
        let taken = self
            .state
            .compare_exchange(HELD, to, Ordering::AcqRel, Ordering::Acquire)
            .is_ok();
        if taken {
            self.record_held();
        }
        taken
    }

    fn record_held(&self) {
        let ns = self.stopped.elapsed().as_nanos().min(u64::MAX as u128) as u64;
        self.held_ns.store(ns.max(1), Ordering::Release);
    }

    fn held(&self) -> Duration {
        match self.held_ns.load(Ordering::Acquire) {
            0 => self.stopped.elapsed(),
            ns => Duration::from_nanos(ns),
        }
    }

    fn let_go_reason(&self) -> Option<LetGo> {
        match self.state.load(Ordering::Acquire) {
            LET_GO_LATE => Some(LetGo::TookTooLong),
            LET_GO_GONE => Some(LetGo::ThreadGone),
            _ => None,
        }
    }
}

/// A stopped thread lent to a hit handler's reader, on any thread: reads of
/// its process's memory are the hit's only while the thread is still held,
/// so a read that ends after the thread was let go (or released) fails.
/// Dropping it releases the thread.
#[derive(Debug)]
pub struct HeldThread {
    memory: ProcessMemory,
    token: Arc<HeldToken>,
}

impl HeldThread {
    pub(super) fn new(memory: ProcessMemory, token: Arc<HeldToken>) -> HeldThread {
        HeldThread { memory, token }
    }

    /// Reads the process's memory as at the hit: fails (ETIMEDOUT) when the
    /// thread was let go before the read ended.
    pub fn read(&self, addr: u64, buf: &mut [u8]) -> Result<(), MemoryReadError> {
        let read = self.memory.read(addr, buf);
        // Checked after the read: the tracer resumes the thread only after
        // it changed the state, so "still held" now means "held throughout".
        if self.token.state.load(Ordering::Acquire) != HELD {
            return Err(MemoryReadError {
                pid: self.memory.pid(),
                addr,
                cause: MemoryReadCause::Os(Errno::ETIMEDOUT),
            });
        }
        read
    }

    /// Lets the thread go on: Ok with how long it was held when every read
    /// before this was made while it was stopped, Err when the tracer had
    /// let it go first (reads after that failed). Idempotent.
    pub fn release(&self) -> Result<Duration, (LetGo, Duration)> {
        let released = self
            .token
            .state
            .compare_exchange(HELD, RELEASED, Ordering::AcqRel, Ordering::Acquire)
            .is_ok();
        if released {
            self.token.record_held();
            self.token.doorbell.ring();
        }
        match self.token.let_go_reason() {
            Some(why) => Err((why, self.token.held())),
            None => Ok(self.token.held()),
        }
    }
}

impl Drop for HeldThread {
    fn drop(&mut self) {
        // A reader that ended without releasing (a panic, a dropped job).
        let _ = self.release();
    }
}

/// The value of a register by its slot in `pt_regs` order (the order of
/// the first 21 fields of `user_regs_struct`; see `user_regs_from_slots`).
fn register_slot(regs: &libc::user_regs_struct, slot: u8) -> Option<u64> {
    Some(match slot {
        0 => regs.r15,
        1 => regs.r14,
        2 => regs.r13,
        3 => regs.r12,
        4 => regs.rbp,
        5 => regs.rbx,
        6 => regs.r11,
        7 => regs.r10,
        8 => regs.r9,
        9 => regs.r8,
        10 => regs.rax,
        11 => regs.rcx,
        12 => regs.rdx,
        13 => regs.rsi,
        14 => regs.rdi,
        15 => regs.orig_rax,
        16 => regs.rip,
        17 => regs.cs,
        18 => regs.eflags,
        19 => regs.rsp,
        20 => regs.ss,
        _ => return None,
    })
}

/// Runs `plan` against the stopped thread: its registers `regs` and the
/// memory of its process.
pub(super) fn copy_hit(
    memory: &ProcessMemory,
    regs: &libc::user_regs_struct,
    plan: &HitCopyPlan,
) -> CapturedMemory {
    let mut copy = CapturedMemory::default();
    let reads = &plan.capture.reads;
    // Each read's batch: one after the read its address comes from.
    let mut level: Vec<Option<usize>> = Vec::with_capacity(reads.len());
    for read in reads {
        let this = match read.base {
            CaptureBase::Register(_) | CaptureBase::Absolute => Some(0),
            // A plan names only earlier reads; anything else is never read.
            CaptureBase::Word { read: from, .. } => {
                level.get(from).copied().flatten().map(|source| source + 1)
            }
        };
        level.push(this);
    }
    let mut data: Vec<Option<(u64, Vec<u8>, usize)>> = vec![None; reads.len()];
    let depth = level.iter().flatten().max().map_or(0, |d| d + 1);
    let mut window = Vec::new();
    for batch in 0..depth {
        // (read index, address, buffer)
        let mut requests: Vec<(usize, u64, Vec<u8>)> = Vec::new();
        for (index, read) in reads.iter().enumerate() {
            if level[index] != Some(batch) {
                continue;
            }
            let base = match read.base {
                CaptureBase::Register(slot) => register_slot(regs, slot),
                CaptureBase::Absolute => Some(0),
                CaptureBase::Word { read: from, at } => data
                    .get(from)
                    .and_then(Option::as_ref)
                    .and_then(|(_, bytes, valid)| {
                        let at = at as usize;
                        let word = bytes.get(at..at + 8).filter(|_| at + 8 <= *valid)?;
                        Some(u64::from_le_bytes(word.try_into().ok()?))
                    }),
            };
            // The word it depends on was not readable: that failure is
            // already in the copy, and a reader stops there.
            let Some(base) = base else { continue };
            let address = base.wrapping_add_signed(read.offset);
            requests.push((index, address, vec![0u8; read.len as usize]));
        }
        if batch == 0 {
            window = windows(regs, plan);
        }
        let mut iov: Vec<(u64, &mut [u8])> = requests
            .iter_mut()
            .map(|(_, address, buf)| (*address, buf.as_mut_slice()))
            .chain(
                window
                    .iter_mut()
                    .filter(|_| batch == 0)
                    .map(|(address, buf)| (*address, buf.as_mut_slice())),
            )
            .collect();
        let results = memory.read_many(&mut iov);
        drop(iov);
        let (planned, windowed) = results.split_at(requests.len().min(results.len()));
        for ((index, address, buf), result) in requests.into_iter().zip(planned) {
            // Bytes before the first unreadable one were copied (reads go
            // page by page), as the kernel's copy stops at a page's end.
            let valid = match result {
                Ok(()) => buf.len(),
                Err(e) => e.addr.saturating_sub(address).min(buf.len() as u64) as usize,
            };
            data[index] = Some((address, buf, valid));
        }
        if batch == 0 {
            add_window(&mut copy, std::mem::take(&mut window), windowed);
        }
    }
    if depth == 0 && (plan.stack_window > 0 || plan.tls_window > 0) {
        let mut window = windows(regs, plan);
        let mut iov: Vec<(u64, &mut [u8])> = window
            .iter_mut()
            .map(|(address, buf)| (*address, buf.as_mut_slice()))
            .collect();
        let results = memory.read_many(&mut iov);
        drop(iov);
        add_window(&mut copy, window, &results);
    }
    for (read, entry) in reads.iter().zip(data) {
        let Some((address, mut bytes, valid)) = entry else {
            continue;
        };
        if read.string {
            bytes.truncate(valid);
            if valid == 0 {
                copy.add_failed(address, read.len as u64);
            } else {
                copy.add_string(address, bytes);
            }
            continue;
        }
        if valid < bytes.len() {
            copy.add_failed(address + valid as u64, (bytes.len() - valid) as u64);
            bytes.truncate(valid);
        }
        if !bytes.is_empty() {
            copy.add_range(address, bytes);
        }
    }
    copy
}

/// The stack and thread-local windows of a plan as page-sized requests.
fn windows(regs: &libc::user_regs_struct, plan: &HitCopyPlan) -> Vec<(u64, Vec<u8>)> {
    let mut out = Vec::new();
    if plan.stack_window > 0 {
        let start = regs.rsp.saturating_sub(RED_ZONE);
        out.extend(window_requests(
            start,
            regs.rsp.saturating_add(plan.stack_window as u64),
        ));
    }
    if plan.tls_window > 0 && regs.fs_base != 0 {
        let start = regs.fs_base.saturating_sub(plan.tls_window as u64);
        out.extend(window_requests(start, regs.fs_base.saturating_add(64)));
    }
    out
}

/// `[start, end)` as page-sized requests, lowest first.
fn window_requests(start: u64, end: u64) -> Vec<(u64, Vec<u8>)> {
    let mut out = Vec::new();
    let mut at = start;
    while at < end {
        // Pieces end at page boundaries, so one bad page fails one piece.
        let piece_end = ((at / WINDOW_PIECE) + 1) * WINDOW_PIECE;
        let len = piece_end.min(end) - at;
        out.push((at, vec![0u8; len as usize]));
        at += len;
    }
    out
}

/// Adds the windows' readable pieces, each run of adjacent ones as one
/// range (a read may then cross a page boundary inside the copy).
fn add_window(
    copy: &mut CapturedMemory,
    window: Vec<(u64, Vec<u8>)>,
    results: &[Result<(), super::error::MemoryReadError>],
) {
    let mut run: Option<(u64, Vec<u8>)> = None;
    for ((address, piece), result) in window.into_iter().zip(results) {
        if result.is_err() {
            if let Some((start, bytes)) = run.take() {
                copy.add_range(start, bytes);
            }
            continue;
        }
        match &mut run {
            Some((start, bytes)) if *start + bytes.len() as u64 == address => {
                bytes.extend_from_slice(&piece);
            }
            _ => {
                if let Some((start, bytes)) = run.take() {
                    copy.add_range(start, bytes);
                }
                run = Some((address, piece));
            }
        }
    }
    if let Some((start, bytes)) = run {
        copy.add_range(start, bytes);
    }
}

#[cfg(test)]
mod tests {
    use super::super::kernel::CaptureRead;
    use super::super::sites::HeldStop;
    use super::*;

    fn held_over_own_memory() -> (HeldThread, Arc<HeldToken>) {
        let doorbell = Arc::new(Doorbell::new().expect("eventfd"));
        let token = HeldToken::new(Instant::now(), doorbell);
        let memory = ProcessMemory::new(std::process::id() as i32);
        (HeldThread::new(memory, Arc::clone(&token)), token)
    }

    #[test]
    fn a_release_before_the_tracer_lets_go_keeps_every_read() {
        let (thread, token) = held_over_own_memory();
        let value = 0x1122_3344_5566_7788u64;
        let mut word = [0u8; 8];
        thread
            .read(&value as *const u64 as u64, &mut word)
            .expect("read while held");
        assert_eq!(u64::from_le_bytes(word), value);
        assert!(thread.release().is_ok());
        assert!(token.is_released());
        // The tracer comes too late: the reader's release stands.
        assert!(!token.let_go(LetGo::TookTooLong));
        assert!(thread.release().is_ok());
        // A read after the release is not the hit's.
        assert!(thread.read(&value as *const u64 as u64, &mut word).is_err());
    }

    #[test]
    fn reads_after_the_tracer_let_go_fail_and_say_why() {
        let (thread, token) = held_over_own_memory();
        assert!(token.let_go(LetGo::TookTooLong));
        let value = 7u64;
        let mut word = [0u8; 8];
        assert!(thread.read(&value as *const u64 as u64, &mut word).is_err());
        assert!(matches!(thread.release(), Err((LetGo::TookTooLong, _))));
        assert!(!token.is_released());
    }

    #[test]
    fn a_held_stop_dropped_unreleased_lets_its_readers_go() {
        let (thread, token) = held_over_own_memory();
        // SAFETY: user_regs_struct is plain integers.
        let regs: libc::user_regs_struct = unsafe { std::mem::zeroed() };
        let stop = HeldStop {
            tid: 1,
            address: 0,
            as_read: regs,
            tokens: vec![token],
            deadline: Instant::now(),
            copied: None,
        };
        assert!(!stop.released());
        drop(stop);
        assert!(matches!(thread.release(), Err((LetGo::ThreadGone, _))));
    }

    #[test]
    fn a_reader_dropped_without_releasing_releases() {
        let (thread, token) = held_over_own_memory();
        drop(thread);
        assert!(token.is_released());
    }

    #[test]
    fn a_plan_follows_pointers_in_batches_and_keeps_what_failed() {
        // Data in our own process: a struct with a pointer to a string.
        let text = b"hello\0".to_vec();
        let target: [u64; 2] = [text.as_ptr() as u64, 42];
        // SAFETY: user_regs_struct is plain integers.
        let mut regs: libc::user_regs_struct = unsafe { std::mem::zeroed() };
        regs.rdi = target.as_ptr() as u64;
        let local = [7u64; 4];
        regs.rsp = local.as_ptr() as u64 + 128;
        let plan = HitCopyPlan {
            capture: CapturePlan {
                registers: true,
                reads: vec![
                    CaptureRead {
                        base: CaptureBase::Register(14),
                        offset: 0,
                        len: 16,
                        string: false,
                    },
                    CaptureRead {
                        base: CaptureBase::Word { read: 0, at: 0 },
                        offset: 0,
                        len: 16,
                        string: true,
                    },
                    // Unmapped: recorded as failed, not as data.
                    CaptureRead {
                        base: CaptureBase::Absolute,
                        offset: 8,
                        len: 8,
                        string: false,
                    },
                ],
            },
            stack_window: 64,
            tls_window: 0,
        };
        let memory = ProcessMemory::new(std::process::id() as i32);
        let copy = copy_hit(&memory, &regs, &plan);
        let mut word = [0u8; 8];
        copy.read(target.as_ptr() as u64 + 8, &mut word)
            .expect("first read copied");
        assert_eq!(u64::from_le_bytes(word), 42);
        let (string, terminated) = copy
            .read_string(text.as_ptr() as u64, 16)
            .expect("string copied");
        assert_eq!(string, b"hello");
        assert!(terminated);
        assert!(copy.was_planned(8));
        assert!(copy.read(8, &mut word).is_err());
        // The window covers the red zone below rsp.
        copy.read(local.as_ptr() as u64, &mut word)
            .expect("window copied");
        assert_eq!(u64::from_le_bytes(word), 7);
    }
}
