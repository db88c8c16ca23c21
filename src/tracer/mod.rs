//! Linux process control: seizing running processes, following their
//! threads, forks, execs and exits, looking at a thread for a moment
//! (registers and a copy of its stack), and reading memory without stopping
//! anything.
//!
//! One dedicated task, the tracer thread (`event_loop`; a process of its own
//! that shares liveprobe's memory, see `guardian`), owns every
//! ptrace request and every wait, for all targets: Linux accepts ptrace
//! requests only from the thread that attached, and a wait can reap another
//! thread's tracee events. It sleeps on a doorbell that both command senders
//! and SIGCHLD ring (see `doorbell`), so it never spins and never blocks
//! command handling behind a wait. The async side talks to it only through
//! messages answered on `tokio::sync::oneshot` channels.
//!
//! This room knows no DWARF and depends on no other room of the crate but
//! the shared low-level types (`crate::addr`, `crate::procmaps`,
//! `crate::own_tasks`).
//! It must never: stop a whole process to look at one thread, keep a thread
//! stopped longer than the copy of its state takes, swallow a signal that
//! belongs to the target, change the target's job-control state, or print to
//! stdout (stdout is the MCP protocol).
//!
//! Non-breaking breakpoints (`insert_breakpoint`, `remove_group`): an `int3`
//! stays in the code while armed; a thread that hits it is the only one
//! held, its handlers run on the tracer thread, and it resumes by running
//! the displaced instruction out of line in a scratch page mapped into the
//! target (`code`, `scratch`, `inject`), or by the tracer emulating it when
//! it is a branch. Hits are never lost and no thread is single-stepped.
//! A copying breakpoint (`insert_copying_breakpoint`) holds the thread only
//! to copy what its plan names (`hit_copy`); its handler runs after the
//! thread was resumed, on the copy. A plain breakpoint's handler may take
//! the stopped thread to another thread (`HitHandler::on_held_hit`): it
//! stays stopped until released, at most `HELD_HIT_DEADLINE`, while the
//! tracer thread goes on.
//! What the target may see of us: `int3` bytes in its code, one or more
//! anonymous r-x pages (`/proc/PID/maps` shows them without a name) while
//! probes exist, and nothing else; every byte is restored at detach, and the
//! pages are unmapped when the last thread is detached.
//!
//! Kernel-side sites (`insert_kernel_breakpoint`, `kernel`): a uprobe
//! running a generated BPF program that copies what a capture plan says
//! into a ring buffer; the thread is not stopped at all, and the tracer
//! thread hands each record to the site's handler later, as a hit on
//! captured memory. The kernel owns that `int3` and removes it when our
//! descriptor closes, whichever way liveprobe ends (SIGKILL included).
//!
//! Debug-register watches (`insert_debug_watch`, the ptrace engine of
//! write/access watches; `event_loop/debug_watches.rs`): DR0-3/DR7 of
//! every thread, set at a stop of that thread (existing threads are
//! interrupted for it, new ones at their first stop); a write traps its
//! thread, which is held only while its registers, stack window and the
//! watched bytes are copied. Every detach below writes DR7 = 0 on each
//! thread before PTRACE_DETACH; a SIGKILLed liveprobe leaves them armed
//! (the kernel keeps them), and the target then dies of SIGTRAP at its next
//! watched write.
//!
//! How each way of ending treats a target with (ptrace) breakpoints:
//! - `detach`, `detach_all`, dropping the last `Tracer`: every original byte
//!   is written back first (from the tracer thread, before any thread is let
//!   go), threads with a trap of ours still pending pass through one more
//!   stop, threads inside a trampoline are moved to the original code, the
//!   scratch pages are unmapped through the last thread, then all detach.
//! - `detach_all_blocking` (panic hooks, signal paths): the same; if the
//!   tracer thread does not answer in time, the calling thread writes every
//!   original byte back itself (`PatchRegistry`).
//! - A panic in a hit handler: caught; that handler's group is removed. A
//!   panic in the tracer's own code: caught; every byte is restored and
//!   every target detached.
//! - SIGKILL or a crash of liveprobe: its code runs no more, but the tracer
//!   "thread" is a tracer task of its own (`guardian`) that outlives
//!   liveprobe's process, notices the death and detaches every target as
//!   above (a thread held for a hit whose capture could not be planned is
//!   let go as at its deadline), calling no handler, then exits.
//! - The OOM killer (it kills every process sharing liveprobe's memory, the
//!   tracer task too), or a SIGKILL of the tracer task's own pid: nothing
//!   can run. The kernel detaches every thread; a thread held at a hit at
//!   that moment receives the SIGTRAP (and the target dies of it), and any
//!   thread that later executes a remaining `int3` dies the same way. What
//!   limits the damage: a thread is held only for the microseconds of its
//!   hit (a hit whose capture could not be planned: while it is read, at
//!   most `HELD_HIT_DEADLINE`), probes expire and have hit limits (engine),
//!   and every catchable way of ending restores the bytes. Prefer
//!   SIGTERM/SIGINT to stop liveprobe.

mod breakpoints;
mod code;
mod debug_regs;
mod doorbell;
mod error;
mod event_loop;
mod guardian;
mod hit_copy;
mod inject;
mod kernel;
mod memory;
mod procfs;
mod ptrace;
mod scratch;
mod sites;
mod stored_value;

use std::collections::HashMap;
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::oneshot;

use crate::addr::RuntimeAddr;

pub use breakpoints::{
    BreakpointEnd, BreakpointId, CopiedHitContext, HeldHit, HitContext, HitHandler, HitMemory,
    HitVerdict, monotonic_ns,
};
pub use debug_regs::DebugWatch;
pub use error::{MemoryReadCause, MemoryReadError, TraceError};
pub use hit_copy::{HELD_HIT_DEADLINE, HeldThread, HitCopyPlan, LetGo};
pub use kernel::hw_breakpoint::{HwWatch, HwWatchKind, STACK_WINDOW, WatchRecord};
pub use kernel::{
    CaptureBase, CapturePlan, CaptureRead, CapturedMemory, DEFAULT_RING_BYTES, MAX_READS,
    user_regs_from_slots,
};
pub use memory::ProcessMemory;
pub use procfs::{ProcessEntry, ThreadStatus, list_processes};
pub use stored_value::stored_bytes;

use breakpoints::PatchRegistry;
use doorbell::Doorbell;
use event_loop::{Command, HandlerBox, Reply};

/// A handler that does nothing (stands in for one lost with the tracer thread).
struct NoHandler;

impl HitHandler for NoHandler {
    fn on_hit(&mut self, _hit: &HitContext<'_>) -> HitVerdict {
        HitVerdict::RemoveGroup
    }
}

/// What `attach` found and did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AttachReport {
    /// The process.
    pub pid: i32,
    /// Its threads at attach time (or now, when attaching again).
    pub threads: Vec<i32>,
    /// Total time any thread of the target was stopped by attaching. Zero:
    /// PTRACE_SEIZE does not stop threads.
    pub held: Duration,
}

/// A copy of target memory taken at one moment.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct MemoryCopy {
    /// Address of `bytes[0]` in the target.
    pub start: u64,
    /// The bytes.
    pub bytes: Vec<u8>,
}

impl MemoryCopy {
    /// The copied bytes at `[addr, addr + len)`, if all of them were copied.
    pub fn slice(&self, addr: u64, len: usize) -> Option<&[u8]> {
        let offset = usize::try_from(addr.checked_sub(self.start)?).ok()?;
        self.bytes.get(offset..offset.checked_add(len)?)
    }
}

/// The state of one thread, copied while it was briefly stopped.
#[derive(Debug, Clone)]
pub struct ThreadCapture {
    /// The thread.
    pub tid: i32,
    /// General registers at the stop. A thread stopped inside a blocking
    /// system call shows `rax == -ERESTARTSYS` (or similar) and `orig_rax`
    /// the call number; it restarts transparently when resumed.
    pub regs: libc::user_regs_struct,
    /// The thread pointer (`%fs` base), for thread-local storage.
    pub fs_base: u64,
    /// The stack from 128 bytes below `rsp` (the x86-64 red zone, where leaf
    /// functions keep locals) up to `rsp + stack_bytes`, clamped to the
    /// mapping that contains `rsp`.
    pub stack: MemoryCopy,
    /// How long the thread was kept from running: from our interrupt request
    /// to its resumption (an upper bound).
    pub held: Duration,
}

/// What happened to a target since it was attached.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TargetState {
    /// Running (threads may be sleeping or job-control stopped).
    Running,
    /// Exited with this code.
    Exited {
        /// The exit code.
        code: i32,
    },
    /// Killed by a signal ("SIGKILL", "SIGSEGV", ...).
    Killed {
        /// The signal's name.
        signal: String,
    },
    /// Ran a new program (execve); still attached and followed, but every
    /// address and all debug info of the old program are void.
    Execed,
    /// Detached by us; no longer traced.
    Detached,
}

/// Target states shared between the tracer thread and the handles, so that
/// cheap questions need no round trip.
#[derive(Debug, Default)]
pub(crate) struct SharedStates {
    states: Mutex<HashMap<i32, TargetState>>,
}

impl SharedStates {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<i32, TargetState>> {
        // A panic while holding this lock cannot leave the map inconsistent
        // (single inserts/removes), so a poisoned lock is still usable.
        self.states
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    pub(crate) fn set(&self, pid: i32, state: TargetState) {
        self.lock().insert(pid, state);
    }

    pub(crate) fn get(&self, pid: i32) -> Option<TargetState> {
        self.lock().get(&pid).cloned()
    }
}

/// Which kind of site a check is about (`Tracer::check_site`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SiteEngine {
    /// An int3 written by this tracer.
    Ptrace,
    /// A kernel uprobe running a generated BPF program.
    Kernel,
}

/// Handle to the tracer thread; `Send + Sync`, cheap to clone. When the last
/// clone is dropped, every target is detached and the thread ends.
#[derive(Clone, Debug)]
pub struct Tracer {
    inner: Arc<TracerHandle>,
}

#[derive(Debug)]
struct TracerHandle {
    commands: mpsc::Sender<Command>,
    doorbell: Arc<Doorbell>,
    states: Arc<SharedStates>,
    registry: Arc<PatchRegistry>,
    finished: Mutex<mpsc::Receiver<()>>,
}

impl Drop for TracerHandle {
    fn drop(&mut self) {
        if self.commands.send(Command::Shutdown).is_ok() {
            self.doorbell.ring();
        }
        // Wait (boundedly) so that targets are detached before the process
        // can exit and leave them to the kernel's implicit detach.
        let finished = self
            .finished
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if finished.recv_timeout(Duration::from_secs(10)).is_err() {
            // At least no int3 of ours may stay behind.
            self.registry.restore_everything();
        }
    }
}

impl Tracer {
    /// Start the tracer thread.
    pub fn start() -> Result<Tracer, TraceError> {
        Tracer::start_with_ring(kernel::DEFAULT_RING_BYTES)
    }

    /// Start the tracer thread; kernel-side probes share a ring buffer of
    /// `ring_bytes` (rounded up to a power of two of at least a page).
    pub fn start_with_ring(ring_bytes: usize) -> Result<Tracer, TraceError> {
        let ring_bytes = ring_bytes.max(4096).next_power_of_two();
        let doorbell =
            Arc::new(Doorbell::new().map_err(|e| TraceError::Start(format!("eventfd: {e}")))?);
        let states = Arc::new(SharedStates::default());
        let registry = Arc::new(PatchRegistry::default());
        let (commands, receiver) = mpsc::channel();
        let (finished_sender, finished) = mpsc::channel();
        event_loop::spawn(
            receiver,
            Arc::clone(&doorbell),
            Arc::clone(&states),
            Arc::clone(&registry),
            finished_sender,
            ring_bytes,
        )
        .map_err(|e| TraceError::Start(e.to_string()))?;
        Ok(Tracer {
            inner: Arc::new(TracerHandle {
                commands,
                doorbell,
                states,
                registry,
                finished: Mutex::new(finished),
            }),
        })
    }

    fn send(&self, command: Command) -> Result<(), TraceError> {
        self.inner
            .commands
            .send(command)
            .map_err(|_| TraceError::TracerGone)?;
        self.inner.doorbell.ring();
        Ok(())
    }

    async fn ask<T>(&self, make: impl FnOnce(Reply<T>) -> Command) -> Result<T, TraceError> {
        let (sender, receiver) = oneshot::channel();
        self.send(make(Reply::Async(sender)))?;
        receiver.await.map_err(|_| TraceError::TracerGone)
    }

    /// Seize every thread of `pid` without stopping it, and follow new
    /// threads, forks and execs from now on. Attaching again is harmless and
    /// returns the same report (with the current threads).
    ///
    /// A process that is a child of this very process can be attached: the
    /// tracer is a process of its own (`guardian`), so Linux reports the
    /// child's exit to the tracer first and, once the tracer has reaped that
    /// report, to its real parent (`wait_task_zombie`, `ptrace_reparented`).
    pub async fn attach(&self, pid: i32) -> Result<AttachReport, TraceError> {
        self.ask(|reply| Command::Attach { pid, reply }).await?
    }

    /// Detach from every thread of `pid`. The target is left as it was:
    /// threads resume, a signal caught in transit is delivered, and a process
    /// stopped by job control stays stopped. Every breakpoint is removed
    /// first (its handler's `on_end(Detached)` is called) and the scratch
    /// pages are unmapped.
    pub async fn detach(&self, pid: i32) -> Result<(), TraceError> {
        self.ask(|reply| Command::Detach { pid, reply }).await?
    }

    /// Detach from all targets (used at shutdown).
    pub async fn detach_all(&self) {
        let _ = self.ask(|reply| Command::DetachAll { reply }).await;
    }

    /// Detach from all targets, blocking the calling thread for at most
    /// `timeout`. For paths that cannot `.await`: a panic hook, a signal
    /// handling thread, `Drop`. Returns whether every detach completed.
    ///
    /// If the tracer thread does not answer in time (or is gone), every
    /// breakpoint byte is written back from the calling thread, so that no
    /// target is left with an `int3` nobody handles. Called on the tracer
    /// thread itself (a panic hook running for a panic in a hit handler,
    /// which the tracer catches: that handler's group is removed), it does
    /// nothing and returns false: the tracer thread cannot wait for itself.
    pub fn detach_all_blocking(&self, timeout: Duration) -> bool {
        if event_loop::on_tracer_thread() {
            return false;
        }
        let (sender, receiver) = mpsc::channel();
        let answered = self
            .send(Command::DetachAll {
                reply: Reply::Blocking(sender),
            })
            .is_ok()
            && receiver.recv_timeout(timeout).is_ok();
        if !answered {
            self.inner.registry.restore_everything();
        }
        answered
    }

    /// Arm a breakpoint at `address` (an instruction boundary in the
    /// target's code, from the line table) for `group` (the engine's probe
    /// id). Several breakpoints, from the same or different groups, may share
    /// an address: one `int3`, several handlers, called in insertion order.
    ///
    /// The first breakpoint whose instruction runs out of line maps a
    /// scratch page into the target (one thread is stopped for the few
    /// microseconds of an injected `mmap`). Refused, with the reason: an
    /// address that is not executable code or not an instruction boundary,
    /// an instruction that cannot run out of line (`syscall`, `int`, ...), a
    /// process stopped by job control, a kernel that forbids writing code.
    pub async fn insert_breakpoint(
        &self,
        pid: i32,
        address: RuntimeAddr,
        group: u64,
        handler: Box<dyn HitHandler>,
    ) -> Result<BreakpointId, TraceError> {
        self.ask(|reply| Command::InsertBreakpoint {
            pid,
            address: address.0,
            group,
            handler: HandlerBox(handler),
            copy: None,
            reply,
        })
        .await?
    }

    /// Arm a breakpoint like `insert_breakpoint`, whose hits only copy: while
    /// the thread is held, its registers and what `plan` names are copied
    /// (batched `process_vm_readv`); the thread is resumed, and only then is
    /// `handler` called, with the copy (`HitMemory::Captured`) and the time
    /// the thread was held (`HitContext::held`).
    pub async fn insert_copying_breakpoint(
        &self,
        pid: i32,
        address: RuntimeAddr,
        group: u64,
        handler: Box<dyn HitHandler>,
        plan: HitCopyPlan,
    ) -> Result<BreakpointId, TraceError> {
        self.ask(|reply| Command::InsertBreakpoint {
            pid,
            address: address.0,
            group,
            handler: HandlerBox(handler),
            copy: Some(plan),
            reply,
        })
        .await?
    }

    /// Whether a site of `engine` at `address` would be refused, and why:
    /// every refusal known before the target or the kernel is asked to arm
    /// it (not what only the kernel's verifier or uprobe code can say).
    /// Writes nothing into the target: dry runs answer with it.
    pub async fn check_site(
        &self,
        pid: i32,
        address: RuntimeAddr,
        engine: SiteEngine,
    ) -> Result<(), TraceError> {
        self.ask(|reply| Command::CheckSite {
            pid,
            address: address.0,
            engine,
            reply,
        })
        .await?
    }

    /// Arm a kernel-side site at `address`: a uprobe whose generated BPF
    /// program copies what `plan` says into a ring buffer at each hit, without
    /// stopping the thread; `handler` is called later on the tracer thread
    /// with that copy (`HitMemory::Captured`; it must only queue the hit:
    /// see `HitHandler`). Fails, giving the handler
    /// back, where the kernel or our privileges do not allow it or a ptrace
    /// breakpoint is at the address: the caller can then use
    /// `insert_breakpoint` instead.
    pub async fn insert_kernel_breakpoint(
        &self,
        pid: i32,
        address: RuntimeAddr,
        group: u64,
        handler: Box<dyn HitHandler>,
        plan: CapturePlan,
    ) -> Result<BreakpointId, (TraceError, Box<dyn HitHandler>)> {
        let (sender, receiver) = oneshot::channel();
        let command = Command::InsertKernelBreakpoint {
            pid,
            address: address.0,
            group,
            handler: HandlerBox(handler),
            plan,
            reply: Reply::Async(sender),
        };
        if let Err(mpsc::SendError(command)) = self.inner.commands.send(command) {
            return match command {
                Command::InsertKernelBreakpoint { handler, .. } => {
                    Err((TraceError::TracerGone, handler.0))
                }
                _ => unreachable!("the command sent is the command returned"),
            };
        }
        self.inner.doorbell.ring();
        match receiver.await {
            Ok(result) => result.map_err(|(e, h)| (e, h.0)),
            // The tracer thread ended with the handler: nothing to give back,
            // and nothing could be armed anywhere else either.
            Err(_) => Err((TraceError::TracerGone, Box::new(NoHandler))),
        }
    }

    /// Arms a write (or access) watch on `pieces` (aligned address, length
    /// 1/2/4/8) in the debug registers of every thread of `pid`, and of
    /// every thread it creates later (at its first stop, before it runs).
    /// Answers once every existing thread has them; each thread is held
    /// only for its POKEUSERs. A write stops its thread only while its
    /// registers, `stack_bytes` of stack and the piece's bytes are copied
    /// into the returned watch's records. `group` is the engine's probe id:
    /// `remove_group` clears the registers (and answers once every thread
    /// has them clear), and so does every detach, before each thread is
    /// let go. A SIGKILLed liveprobe leaves them armed (see `debug_regs`).
    pub async fn insert_debug_watch(
        &self,
        pid: i32,
        group: u64,
        pieces: Vec<(u64, usize)>,
        kind: HwWatchKind,
        stack_bytes: usize,
    ) -> Result<DebugWatch, TraceError> {
        self.ask(|reply| Command::InsertDebugWatch {
            pid,
            group,
            pieces,
            kind,
            stack_bytes,
            reply,
        })
        .await?
    }

    /// Hands every kernel-side hit recorded so far to its handler before
    /// returning (and handles pending process events first), so that an
    /// answer about probes includes every hit that happened before it.
    pub async fn flush_kernel_hits(&self) -> Result<(), TraceError> {
        self.ask(|reply| Command::FlushKernelHits { reply }).await
    }

    /// Remove every breakpoint of `group` in `pid`; returns how many. The
    /// `int3` bytes leave the target at once (where no other group uses the
    /// address); each handler's `on_end(Removed)` is called. A debug-register
    /// watch of `group` is removed too: the answer comes once every thread
    /// has its slots clear. A process that
    /// has exited, exec'd or been detached has none left: `Ok(0)`.
    pub async fn remove_group(&self, pid: i32, group: u64) -> Result<usize, TraceError> {
        self.ask(|reply| Command::RemoveGroup { pid, group, reply })
            .await?
    }

    /// Threads of an attached target with their names and kernel states.
    pub async fn threads(&self, pid: i32) -> Result<Vec<ThreadStatus>, TraceError> {
        self.check_live(pid)?;
        let tids = procfs::thread_ids(pid)?;
        Ok(tids
            .into_iter()
            .filter_map(|tid| procfs::thread_status(pid, tid))
            .collect())
    }

    /// Interrupt the given threads (`None` = all) one moment each: copy their
    /// registers and `stack_bytes` of stack, and resume them at once
    /// (re-delivering any signal they were stopping for).
    pub async fn capture_threads(
        &self,
        pid: i32,
        tids: Option<Vec<i32>>,
        stack_bytes: usize,
    ) -> Result<Vec<ThreadCapture>, TraceError> {
        self.ask(|reply| Command::Capture {
            pid,
            tids,
            stack_bytes,
            reply,
        })
        .await?
    }

    /// What happened to the target since attach.
    pub async fn process_state(&self, pid: i32) -> Result<TargetState, TraceError> {
        self.inner
            .states
            .get(pid)
            .ok_or(TraceError::NotAttached { pid })
    }

    /// Whether `pid` is attached and still traced (no round trip).
    pub fn is_attached(&self, pid: i32) -> bool {
        matches!(
            self.inner.states.get(pid),
            Some(TargetState::Running | TargetState::Execed)
        )
    }

    fn check_live(&self, pid: i32) -> Result<(), TraceError> {
        match self.inner.states.get(pid) {
            None | Some(TargetState::Detached) => Err(TraceError::NotAttached { pid }),
            Some(TargetState::Exited { code }) => Err(TraceError::TargetExited {
                pid,
                how: format!("exited with code {code}"),
            }),
            Some(TargetState::Killed { signal }) => Err(TraceError::TargetExited {
                pid,
                how: format!("been killed by {signal}"),
            }),
            Some(TargetState::Running | TargetState::Execed) => Ok(()),
        }
    }
}
