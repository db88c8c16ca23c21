//! The ptrace engine of write/access watches: the x86 debug registers of
//! every thread of a process, set from this thread (see `debug_regs`).
//!
//! The wanted state is per process (which slot watches what, and a
//! generation that changes with it); each thread is brought to it at a
//! stop of its own: existing threads are interrupted (held only for the
//! POKEUSERs), a new thread at its first stop, before it runs a single
//! instruction (the kernel does not copy debug registers into a clone).
//! An arm or a removal answers once every thread has the new state.
//!
//! A write (or access) of a watched piece stops its thread with a SIGTRAP
//! whose DR6 names the slot: the thread is held only while its registers,
//! a stack window and the watched bytes are copied (the trap comes after
//! the write), DR6 is cleared, and it goes on with the SIGTRAP suppressed.
//! A SIGTRAP whose DR6 names no slot is not ours and is delivered.
//!
//! While a watch traps often the loop waits for the next trap blocked in
//! `waitpid` (see `trap_wait`).
//!
//! Every detach writes DR7 = 0 on each thread before PTRACE_DETACH (the
//! kernel keeps them after a detach, and a thread whose slot fires with no
//! tracer dies of SIGTRAP): `clear_before_detach`, called from the loop's
//! detach path, whatever started the detach.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use nix::errno::Errno;

use super::super::debug_regs::{
    self, DebugRegError, DebugRegKind, DebugWatch, DebugWatchShared, SLOTS,
};
use super::super::error::TraceError;
use super::super::kernel::hw_breakpoint::{HwWatchKind, WatchRecord};
use super::super::ptrace::{self, WaitEvent};
use super::super::{MemoryCopy, breakpoints::monotonic_ns};
use super::TracerLoop;
use super::captures::RED_ZONE;
use super::hits::sigtrap_pending;

/// How long an arm or a removal waits for every thread to stop once.
const SYNC_DEADLINE: Duration = Duration::from_secs(5);

/// What one slot watches, and for which group.
struct SlotOwner {
    group: u64,
    address: u64,
    length: usize,
    kind: DebugRegKind,
    stack_bytes: usize,
    shared: Arc<DebugWatchShared>,
}

/// The slots as last written on one thread: (group, address, length) of
/// each armed slot.
#[derive(Default, Clone, Copy)]
struct Applied {
    generation: u64,
    slots: [Option<(u64, u64, usize)>; SLOTS],
}

/// Called when an arm or a removal is complete: `Err` names the threads
/// that could not be set and why.
type SyncDone = Box<dyn FnOnce(Result<(), String>)>;

/// An arm or a removal waiting for threads to take the state of
/// `generation`.
struct PendingSync {
    generation: u64,
    /// The group armed (a failure on its slots fails the arm).
    arming: Option<u64>,
    waiting: HashSet<i32>,
    failures: Vec<String>,
    deadline: Instant,
    done: SyncDone,
}

/// The debug-register watches of one process.
#[derive(Default)]
pub(super) struct DebugWatchState {
    slots: [Option<SlotOwner>; SLOTS],
    generation: u64,
    applied: HashMap<i32, Applied>,
    /// Thread names, read at a thread's first trap (the thread may be gone
    /// by the time the engine reads the record). A rename after that
    /// first trap is not seen.
    names: HashMap<i32, String>,
    /// Set once any slot was written: from then on each thread gets DR7 = 0
    /// before it is detached.
    ever_armed: bool,
    pending: Vec<PendingSync>,
}

impl Drop for DebugWatchState {
    fn drop(&mut self) {
        // The process is gone or detached: nothing is left armed to wait
        // for, and an arm in flight armed nothing that lasts.
        end_pending(
            &mut self.pending,
            "the process exited or was detached before every thread was armed",
        );
    }
}

/// Answers every pending arm (refused, saying `why`) and removal (done).
fn end_pending(pending: &mut Vec<PendingSync>, why: &str) {
    for op in pending.drain(..) {
        let outcome = match op.arming {
            Some(_) => Err(why.to_string()),
            None => Ok(()),
        };
        (op.done)(outcome);
    }
}

impl DebugWatchState {
    fn slots_wanted(&self) -> Vec<(usize, u64, usize, DebugRegKind)> {
        self.slots
            .iter()
            .enumerate()
            .filter_map(|(slot, owner)| {
                let o = owner.as_ref()?;
                Some((slot, o.address, o.length, o.kind))
            })
            .collect()
    }

    /// Whether thread `tid` has yet to take the current state.
    fn behind(&self, tid: i32) -> bool {
        self.ever_armed && self.applied.get(&tid).map_or(0, |a| a.generation) != self.generation
    }

    /// The process's address space was replaced (exec): the kernel cleared
    /// every thread's registers and the watched addresses mean nothing.
    pub(super) fn end_at_exec(&mut self) {
        self.slots = Default::default();
        self.applied.clear();
        self.generation += 1;
        end_pending(
            &mut self.pending,
            "the process ran execve before every thread was armed",
        );
    }

    /// The earliest deadline of a pending arm or removal.
    pub(super) fn next_deadline(&self) -> Option<Instant> {
        self.pending.iter().map(|op| op.deadline).min()
    }
}

fn kind_of(kind: HwWatchKind) -> DebugRegKind {
    match kind {
        HwWatchKind::Write => DebugRegKind::Write,
        HwWatchKind::Access => DebugRegKind::Access,
    }
}

impl TracerLoop {
    /// Arms `pieces` (aligned, 1/2/4/8 bytes) for `group` on every thread of
    /// `pid`; `reply` is answered once every thread has them.
    pub(super) fn insert_debug_watch(
        &mut self,
        pid: i32,
        group: u64,
        pieces: Vec<(u64, usize)>,
        kind: HwWatchKind,
        stack_bytes: usize,
        reply: super::Reply<Result<DebugWatch, TraceError>>,
    ) {
        let refused = move |reason: String| TraceError::DebugRegisters { pid, reason };
        if self.processes.is_detaching(pid) {
            return reply.send(Err(TraceError::DetachInProgress { pid }));
        }
        let Some(target) = self.processes.get_mut(pid) else {
            return reply.send(Err(self.not_live_error(pid)));
        };
        let kind = kind_of(kind);
        for &(address, length) in &pieces {
            if let Err(e) = debug_regs::dr7_with(0, 0, kind, length) {
                return reply.send(Err(refused(e.to_string())));
            }
            if !address.is_multiple_of(length as u64) {
                return reply.send(Err(refused(
                    DebugRegError::Unaligned { address, length }.to_string(),
                )));
            }
        }
        let state = &mut target.space.debug;
        let free: Vec<usize> = (0..SLOTS).filter(|&s| state.slots[s].is_none()).collect();
        if free.len() < pieces.len() {
            let holders: Vec<String> = state
                .slots
                .iter()
                .flatten()
                .map(|o| format!("group {}", o.group))
                .collect();
            return reply.send(Err(refused(format!(
                "{} debug register(s) needed, {} free (held by {})",
                pieces.len(),
                free.len(),
                holders.join(", ")
            ))));
        }
        let shared = Arc::new(DebugWatchShared::default());
        for (&slot, &(address, length)) in free.iter().zip(&pieces) {
            state.slots[slot] = Some(SlotOwner {
                group,
                address,
                length,
                kind,
                stack_bytes,
                shared: Arc::clone(&shared),
            });
        }
        let watch = DebugWatch { shared, pieces };
        let done: SyncDone = Box::new(move |outcome: Result<(), String>| {
            reply.send(outcome.map(|()| watch).map_err(refused));
        });
        self.begin_debug_sync(pid, Some(group), done);
    }

    /// Frees the slots of `group` in `pid` and calls `done` once every
    /// thread has them cleared (at once when the group holds none).
    pub(super) fn remove_debug_watch(&mut self, pid: i32, group: u64, done: SyncDone) {
        let Some(target) = self.processes.get_mut(pid) else {
            return done(Ok(()));
        };
        let state = &mut target.space.debug;
        let mut freed = false;
        for slot in state.slots.iter_mut() {
            if slot.as_ref().is_some_and(|o| o.group == group) {
                *slot = None;
                freed = true;
            }
        }
        if !freed {
            return done(Ok(()));
        }
        if self.processes.is_detaching(pid) {
            // The detach clears every register anyway.
            return done(Ok(()));
        }
        self.begin_debug_sync(pid, None, done);
    }

    /// A new state for `pid`: every thread is interrupted and takes it at
    /// its stop (`sync_debug_registers`).
    fn begin_debug_sync(&mut self, pid: i32, arming: Option<u64>, done: SyncDone) {
        let Some(target) = self.processes.get_mut(pid) else {
            return done(Ok(()));
        };
        let tids: Vec<i32> = target
            .threads
            .iter()
            .filter(|(_, t)| !t.guest && !t.exiting)
            .map(|(tid, _)| *tid)
            .collect();
        let state = &mut target.space.debug;
        state.generation += 1;
        state.ever_armed = true;
        let mut waiting = HashSet::new();
        for tid in tids {
            match ptrace::interrupt(tid) {
                Ok(()) => {
                    waiting.insert(tid);
                }
                // Exiting: its exit will be reaped.
                Err(Errno::ESRCH) => {}
                Err(errno) => {
                    tracing::warn!(tid, %errno, "cannot interrupt a thread to set its debug registers")
                }
            }
        }
        state.pending.push(PendingSync {
            generation: state.generation,
            arming,
            waiting,
            failures: Vec::new(),
            deadline: Instant::now() + SYNC_DEADLINE,
            done,
        });
        self.complete_debug_syncs(pid);
    }

    /// Thread `tid` of `pid` is stopped (any stop): brings its debug
    /// registers to the process's state if they are behind. Called before
    /// the thread is resumed, never for a thread being detached.
    pub(super) fn sync_debug_registers(&mut self, pid: i32, tid: i32) {
        let Some(target) = self.processes.get_mut(pid) else {
            return;
        };
        let (guest, exiting) = target
            .threads
            .get(&tid)
            .map_or((true, true), |t| (t.guest, t.exiting));
        let state = &mut target.space.debug;
        if guest || !state.behind(tid) {
            return;
        }
        let wanted = state.slots_wanted();
        let mut applied = Applied {
            generation: state.generation,
            slots: [None; SLOTS],
        };
        let mut failures: Vec<(Option<u64>, String)> = Vec::new();
        if exiting {
            // Its registers go with it.
        } else {
            match debug_regs::set_slots(tid, &wanted) {
                Ok(outcome) => {
                    for (&(slot, address, length, _), result) in wanted.iter().zip(outcome) {
                        let group = state.slots[slot].as_ref().map(|o| o.group);
                        match result {
                            Ok(()) => {
                                applied.slots[slot] = group.map(|g| (g, address, length));
                            }
                            Err(e) => failures.push((group, format!("thread {tid}: {e}"))),
                        }
                    }
                }
                // Gone meanwhile: its exit will be reaped.
                Err(DebugRegError::Ptrace {
                    errno: Errno::ESRCH,
                    ..
                }) => {}
                Err(e) => failures.push((None, format!("thread {tid}: {e}"))),
            }
        }
        for (group, why) in &failures {
            tracing::warn!(pid, tid, ?group, %why, "a debug register could not be set");
        }
        state.applied.insert(tid, applied);
        for op in state.pending.iter_mut() {
            if op.generation <= applied.generation && op.waiting.remove(&tid) {
                op.failures.extend(
                    failures
                        .iter()
                        .filter(|(group, _)| group.is_none() || *group == op.arming)
                        .map(|(_, why)| why.clone()),
                );
            }
        }
        self.complete_debug_syncs(pid);
    }

    /// Thread `tid` of `pid` is gone: no arm or removal waits for it.
    pub(super) fn debug_thread_gone(&mut self, pid: i32, tid: i32) {
        let Some(target) = self.processes.get_mut(pid) else {
            return;
        };
        let state = &mut target.space.debug;
        state.applied.remove(&tid);
        state.names.remove(&tid);
        let mut any = false;
        for op in state.pending.iter_mut() {
            any |= op.waiting.remove(&tid);
        }
        if any {
            self.complete_debug_syncs(pid);
        }
    }

    /// Answers the arms and removals of `pid` no thread is left to wait for.
    fn complete_debug_syncs(&mut self, pid: i32) {
        let Some(target) = self.processes.get_mut(pid) else {
            return;
        };
        let state = &mut target.space.debug;
        let (complete, pending): (Vec<PendingSync>, Vec<PendingSync>) = state
            .pending
            .drain(..)
            .partition(|op| op.waiting.is_empty());
        state.pending = pending;
        let mut roll_back = Vec::new();
        for op in complete {
            if op.failures.is_empty() {
                (op.done)(Ok(()));
            } else {
                roll_back.extend(op.arming);
                (op.done)(Err(op.failures.join("; ")));
            }
        }
        for group in roll_back {
            self.remove_debug_watch(pid, group, Box::new(|_| {}));
        }
    }

    /// Fails the arms (and gives up waiting in removals) whose threads did
    /// not all stop in time.
    pub(super) fn expire_debug_syncs(&mut self, now: Instant) {
        for pid in self.processes.pids() {
            let Some(target) = self.processes.get_mut(pid) else {
                continue;
            };
            let mut late = false;
            for op in target.space.debug.pending.iter_mut() {
                if op.deadline <= now {
                    let mut tids: Vec<i32> = op.waiting.drain().collect();
                    tids.sort_unstable();
                    if op.arming.is_some() {
                        op.failures.push(format!(
                            "threads {tids:?} did not stop within {} s to have their debug registers set \
                             (uninterruptible sleep?)",
                            SYNC_DEADLINE.as_secs()
                        ));
                    } else {
                        tracing::warn!(pid, threads = ?tids, "threads did not stop in time to have a watch's debug registers cleared; they are cleared at their next stop");
                    }
                    late = true;
                }
            }
            if late {
                self.complete_debug_syncs(pid);
            }
        }
    }

    /// Thread `tid` of `pid` stopped with a SIGTRAP: whether it is the trap
    /// of one of our debug registers (then recorded, and not to be
    /// delivered).
    pub(super) fn on_debug_trap(&mut self, pid: i32, tid: i32) -> bool {
        let Some(target) = self.processes.get_mut(pid) else {
            return false;
        };
        if !target.space.debug.ever_armed {
            return false;
        }
        let stopped_ns = monotonic_ns();
        let fired = match debug_regs::take_fired(tid) {
            Ok(fired) if !fired.is_empty() => fired,
            _ => return false,
        };
        self.trap_wait.trapped();
        // Only we set debug registers through ptrace (we are the tracer):
        // every fired slot is ours, even one of a watch just removed.
        let Ok(regs) = ptrace::registers(tid) else {
            return true;
        };
        let state = &mut target.space.debug;
        let thread_name = state
            .names
            .entry(tid)
            .or_insert_with(|| {
                std::fs::read_to_string(format!("/proc/{pid}/task/{tid}/comm"))
                    .map(|s| s.trim_end().to_string())
                    .unwrap_or_default()
            })
            .clone();
        let state = &target.space.debug;
        let applied = state.applied.get(&tid).copied().unwrap_or_default();
        let memory = &target.space.memory;
        for slot in fired {
            let Some((group, address, length)) = applied.slots[slot] else {
                continue;
            };
            let Some(owner) = state.slots[slot]
                .as_ref()
                .filter(|o| o.group == group && o.address == address)
            else {
                continue;
            };
            let stack_start = regs.rsp.saturating_sub(RED_ZONE);
            let mut value = vec![0u8; length];
            let mut stack = vec![0u8; owner.stack_bytes + RED_ZONE as usize];
            let results = {
                let mut reqs: [(u64, &mut [u8]); 2] =
                    [(address, &mut value), (stack_start, &mut stack)];
                memory.read_many(&mut reqs)
            };
            let value = results.first().is_some_and(|r| r.is_ok()).then_some(value);
            if let Some(Err(e)) = results.get(1) {
                stack.truncate(e.addr.saturating_sub(stack_start) as usize);
            }
            owner.shared.push(
                address,
                length,
                WatchRecord {
                    tid,
                    time_ns: stopped_ns,
                    regs,
                    thread_name: thread_name.clone(),
                    value,
                    stack: MemoryCopy {
                        start: stack_start,
                        bytes: stack,
                    },
                },
            );
        }
        true
    }

    /// Called for each thread of a detaching process before PTRACE_DETACH:
    /// writes DR7 = 0 if a watch ever armed a slot here; false if the
    /// thread must pass through one more stop first (a trap of a slot is
    /// pending for it: detached now, it would die of it).
    pub(super) fn clear_debug_registers_before_detach(
        &mut self,
        pid: i32,
        tid: i32,
        signal: i32,
    ) -> bool {
        let Some(target) = self.processes.get_mut(pid) else {
            return true;
        };
        if !target.space.debug.ever_armed {
            return true;
        }
        let (exiting, last_stop) = target
            .threads
            .get(&tid)
            .map_or((false, None), |t| (t.exiting, t.last_stop));
        match debug_regs::disarm_all(tid) {
            Ok(())
            | Err(DebugRegError::Ptrace {
                errno: Errno::ESRCH,
                ..
            }) => {}
            Err(e) => {
                tracing::warn!(pid, tid, %e, "cannot clear the debug registers of a thread before detaching it")
            }
        }
        target.space.debug.applied.remove(&tid);
        let group_stopped = matches!(last_stop, Some(WaitEvent::GroupStop(_)));
        if !exiting
            && !group_stopped
            && last_stop != Some(WaitEvent::Signal(libc::SIGTRAP))
            && sigtrap_pending(tid)
        {
            // A slot fired just before DR7 was cleared: let it report the
            // trap (`on_debug_trap` takes it) and come back.
            if ptrace::cont(tid, signal).is_ok() {
                let _ = ptrace::interrupt(tid);
                return false;
            }
        }
        true
    }
}
