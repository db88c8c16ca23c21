//! Captures on the tracer thread: which threads a capture interrupts (one
//! at a time), copying a stopped thread's registers and the top of its
//! stack, and answering when every thread is copied or skipped.

use std::collections::{HashSet, VecDeque};
use std::time::{Duration, Instant};

use nix::errno::Errno;

use super::super::error::TraceError;
use super::super::procfs;
use super::super::ptrace::{self, WaitEvent};
use super::super::{MemoryCopy, ThreadCapture};
use super::{Reply, TracerLoop, hits};

/// How long a capture waits for one thread to stop before giving up on it
/// (a thread in uninterruptible sleep stops late) and moving on.
const CAPTURE_DEADLINE: Duration = Duration::from_secs(3);
/// Threads of one capture interrupted at a time. One: each thread is then
/// held only for its own copy (~15 µs) instead of also waiting while the
/// tracer copies the others; the call takes a little longer in total.
const CAPTURES_IN_FLIGHT: usize = 1;
/// Longest the tracer polls for the stop of a thread it interrupted for a
/// capture before it goes to sleep (see `spin_for_capture_stops`).
const CAPTURE_SPIN: Duration = Duration::from_micros(200);
/// The x86-64 System V red zone below `rsp`, where leaf functions keep data.
pub(super) const RED_ZONE: u64 = 128;

/// One capture in progress: its threads queued, in flight and copied.
pub(super) struct CaptureOp {
    pub pid: i32,
    pub stack_bytes: usize,
    pub order: Vec<i32>,
    /// Threads not interrupted yet.
    pub queue: VecDeque<i32>,
    /// Threads interrupted, whose stop has not been reaped yet.
    pub waiting: HashSet<i32>,
    pub captured: Vec<ThreadCapture>,
    pub reply: Reply<Result<Vec<ThreadCapture>, TraceError>>,
    pub deadline: Instant,
}

impl TracerLoop {
    /// While a capture waits for a thread it interrupted, reap for a short
    /// while instead of sleeping: the stop usually comes within tens of µs,
    /// and going to sleep and being woken by SIGCHLD would add a cross-CPU
    /// wake-up to the time the thread is held and the caller waits. True
    /// when an event came.
    pub(super) fn spin_for_capture_stops(&mut self) -> bool {
        if !self.captures.values().any(|op| !op.waiting.is_empty()) {
            return false;
        }
        let started = Instant::now();
        while started.elapsed() < CAPTURE_SPIN {
            if self.reap_events() > 0 {
                return true;
            }
            std::hint::spin_loop();
        }
        false
    }

    pub(super) fn begin_capture(
        &mut self,
        pid: i32,
        tids: Option<Vec<i32>>,
        stack_bytes: usize,
        reply: Reply<Result<Vec<ThreadCapture>, TraceError>>,
    ) {
        let not_live = self.not_live_error(pid);
        let Some(target) = self.processes.get_mut(pid) else {
            reply.send(Err(not_live));
            return;
        };
        if target.detach.is_some() {
            reply.send(Err(TraceError::NotAttached { pid }));
            return;
        }
        let mut known: Vec<i32> = target
            .threads
            .iter()
            .filter(|(_, thread)| !thread.guest)
            .map(|(tid, _)| *tid)
            .collect();
        known.sort_unstable();
        let wanted = match tids {
            None => known.clone(),
            Some(tids) => {
                let mut unique = Vec::with_capacity(tids.len());
                for tid in tids {
                    if !target.threads.contains_key(&tid) {
                        reply.send(Err(TraceError::NoSuchThread { pid, tid, known }));
                        return;
                    }
                    if !unique.contains(&tid) {
                        unique.push(tid);
                    }
                }
                unique
            }
        };
        // Read the memory map while every thread still runs, so the stops
        // themselves need no /proc read; once read it is kept (a stack that
        // is not in it makes the capture read it again, and a stale bound
        // only shortens a copy, whose read stops at the first bad page).
        if target.space.mappings.is_empty() {
            target.space.mappings = procfs::read_mappings(pid);
        }
        let op_id = self.next_op;
        self.next_op += 1;
        self.captures.insert(
            op_id,
            CaptureOp {
                pid,
                stack_bytes,
                queue: wanted.iter().copied().collect(),
                order: wanted,
                waiting: HashSet::new(),
                captured: Vec::new(),
                reply,
                deadline: Instant::now() + CAPTURE_DEADLINE,
            },
        );
        self.advance_capture(op_id);
    }

    /// Interrupt the next queued threads of a capture, or answer it when
    /// nothing is queued or in flight any more.
    pub(super) fn advance_capture(&mut self, op_id: u64) {
        loop {
            let Some(op) = self.captures.get_mut(&op_id) else {
                return;
            };
            if op.waiting.len() >= CAPTURES_IN_FLIGHT {
                return;
            }
            let Some(tid) = op.queue.pop_front() else {
                if op.waiting.is_empty()
                    && let Some(op) = self.captures.remove(&op_id)
                {
                    reply_capture(op);
                }
                return;
            };
            let pid = op.pid;
            let Some(thread) = self.thread_mut(pid, tid) else {
                continue;
            };
            if thread.exiting {
                continue;
            }
            match ptrace::interrupt(tid) {
                Ok(()) => {
                    let now = Instant::now();
                    thread.interrupt_sent.get_or_insert(now);
                    thread.capture_ops.push(op_id);
                    if let Some(op) = self.captures.get_mut(&op_id) {
                        op.waiting.insert(tid);
                        op.deadline = now + CAPTURE_DEADLINE;
                    }
                }
                Err(Errno::ESRCH) => {}
                Err(errno) => tracing::warn!(tid, %errno, "cannot interrupt thread for capture"),
            }
        }
    }

    /// Registers and stack of a stopped thread.
    pub(super) fn copy_thread_state(
        &mut self,
        pid: i32,
        tid: i32,
        stack_bytes: usize,
    ) -> Option<(libc::user_regs_struct, MemoryCopy)> {
        let mut regs = match ptrace::registers(tid) {
            Ok(regs) => regs,
            Err(errno) => {
                tracing::debug!(tid, %errno, "cannot read registers of a stopped thread");
                return None;
            }
        };
        let target = self.processes.get_mut(pid)?;
        // A thread inside a trampoline is shown where it stands in the
        // original code: stacks never show the scratch page.
        if let Some(translated) = target.space.breakpoints.scratch.translate(regs.rip) {
            regs.rip = translated.pc();
        }
        // A thread that just executed one of our int3s but was stopped for
        // the capture before its trap was reported stands at the breakpoint.
        let trapped_at = regs.rip.wrapping_sub(1);
        if target.space.breakpoints.is_ours(trapped_at)
            && target.threads.get(&tid).and_then(|t| t.last_stop) == Some(WaitEvent::InterruptStop)
            && hits::sigtrap_pending(tid)
        {
            regs.rip = trapped_at;
        }
        let rsp = regs.rsp;
        let mut mapping = find_mapping(&target.space.mappings, rsp);
        if mapping.is_none() && stack_bytes > 0 {
            // A stack created after the map was read (a new thread).
            target.space.mappings = procfs::read_mappings(pid);
            mapping = find_mapping(&target.space.mappings, rsp);
        }
        let stack = match mapping {
            Some((map_start, map_end)) if stack_bytes > 0 => {
                let start = rsp.saturating_sub(RED_ZONE).max(map_start);
                let end = rsp.saturating_add(stack_bytes as u64).min(map_end);
                let mut bytes = vec![0u8; end.saturating_sub(start) as usize];
                if let Err(error) = target.space.memory.read(start, &mut bytes) {
                    bytes.truncate(error.addr.saturating_sub(start) as usize);
                }
                MemoryCopy { start, bytes }
            }
            _ => MemoryCopy {
                start: rsp,
                bytes: Vec::new(),
            },
        };
        Some((regs, stack))
    }

    pub(super) fn forget_in_captures(&mut self, tid: i32) {
        let ops: Vec<u64> = self
            .captures
            .iter()
            .filter(|(_, op)| op.waiting.contains(&tid) || op.queue.contains(&tid))
            .map(|(id, _)| *id)
            .collect();
        for op_id in ops {
            if let Some(op) = self.captures.get_mut(&op_id) {
                op.waiting.remove(&tid);
                op.queue.retain(|queued| *queued != tid);
            }
            self.advance_capture(op_id);
        }
    }

    /// Captures past their deadline skip the threads that did not stop.
    pub(super) fn expire_captures(&mut self, now: Instant) {
        let late: Vec<u64> = self
            .captures
            .iter()
            .filter(|(_, op)| op.deadline <= now)
            .map(|(id, _)| *id)
            .collect();
        for op_id in late {
            let Some(op) = self.captures.get_mut(&op_id) else {
                continue;
            };
            let pid = op.pid;
            let stuck: Vec<i32> = op.waiting.drain().collect();
            op.deadline = now + CAPTURE_DEADLINE;
            tracing::warn!(pid, threads = ?stuck, "threads did not stop in time to be captured (uninterruptible sleep?); skipping them");
            for tid in stuck {
                if let Some(thread) = self.thread_mut(pid, tid) {
                    thread.capture_ops.retain(|id| *id != op_id);
                }
            }
            self.advance_capture(op_id);
        }
    }
}

fn reply_capture(op: CaptureOp) {
    let CaptureOp {
        order,
        mut captured,
        reply,
        ..
    } = op;
    captured.sort_by_key(|capture| {
        order
            .iter()
            .position(|tid| *tid == capture.tid)
            .unwrap_or(usize::MAX)
    });
    reply.send(Ok(captured));
}

fn find_mapping(mappings: &[(u64, u64)], addr: u64) -> Option<(u64, u64)> {
    mappings
        .iter()
        .copied()
        .find(|&(start, end)| start <= addr && addr < end)
}
