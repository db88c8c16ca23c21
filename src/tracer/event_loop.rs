//! The tracer thread: every ptrace request and every wait of this room
//! happen here, for all targets.
//!
//! The loop sleeps in `poll` on the doorbell, then reaps all pending tracee
//! events with `waitpid(-1, __WALL | __WNOTHREAD | WNOHANG)` (only this
//! thread's tracees: never the process's other children, never another
//! tracer thread's tracees) and serves queued commands. Nothing here blocks
//! on one tracee: work that needs a thread to stop (capture, detach) sends
//! PTRACE_INTERRUPT and finishes when the stop is reaped, with a deadline.
//!
//! A thread is stopped only while something is copied from it; every stop
//! is answered at once: signals are re-delivered unchanged, group-stops are
//! kept with PTRACE_LISTEN, events are resumed with no signal.
//!
//! The loop is a dispatcher over owners: the process table (`processes`,
//! pure: which wait event in which state leads to which step), the site
//! table of each address space (`sites`, with the hit path in `hits`), the
//! uprobes and their ring (`kernel_hits`), and the captures (`captures`).

use std::collections::HashMap;
use std::io;
use std::sync::Arc;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use nix::errno::Errno;
use tokio::sync::oneshot;

use super::breakpoints::{BreakpointId, HitHandler, PatchRegistry};
use super::doorbell::{self, Doorbell};
use super::error::TraceError;
use super::guardian::{self, LiveprobeWatch};
use super::kernel::CapturePlan;
use super::memory::ProcessMemory;
use super::procfs;
use super::ptrace::{self, WaitEvent};
use super::sites::SiteTable;
use super::{AttachReport, SharedStates, TargetState, ThreadCapture};

mod captures;
mod debug_watches;
mod hits;
mod kernel_hits;
mod processes;
mod trap_wait;

use captures::{CaptureOp, RED_ZONE};

use processes::{
    Lookups, Process, ProcessTable, Removed, Resume, Space, Step, TaskIds, TracedThread,
};

thread_local! {
    /// Set on the tracer thread, so that a blocking request made from it
    /// (a panic hook running there) does not wait for itself.
    static ON_TRACER_THREAD: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Whether the calling thread is a tracer thread.
pub(super) fn on_tracer_thread() -> bool {
    ON_TRACER_THREAD.with(|flag| flag.get())
}

/// How long a detach waits for every thread to stop before reporting it.
const DETACH_DEADLINE: Duration = Duration::from_secs(5);
/// How long a tracer task whose liveprobe is gone keeps trying to detach
/// every target before it exits anyway (nobody waits for it; a thread in
/// uninterruptible sleep stops only when it wakes).
const ORPHANED_DETACH_DEADLINE: Duration = Duration::from_secs(60);
/// Longest sleep without a doorbell ring: a safety net, should SIGCHLD be
/// ignored or stolen by code outside our control.
const MAX_SLEEP: Duration = Duration::from_millis(500);
/// Where the answer to a command goes.
pub(super) enum Reply<T> {
    /// An awaiting async caller.
    Async(oneshot::Sender<T>),
    /// A blocked synchronous caller (panic hook, signal path, drop).
    Blocking(mpsc::Sender<T>),
}

impl<T> Reply<T> {
    fn send(self, value: T) {
        if guardian::orphaned() {
            // The caller died with liveprobe. Sending (or dropping the
            // sender) would wake its runtime, whose locks a dead thread may
            // hold, and free memory a dead thread allocated.
            std::mem::forget(self);
            std::mem::forget(value);
            return;
        }
        // A caller that stopped waiting is not an error.
        match self {
            Reply::Async(sender) => drop(sender.send(value)),
            Reply::Blocking(sender) => drop(sender.send(value)),
        }
    }
}

impl<T> std::fmt::Debug for Reply<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Reply")
    }
}

/// Requests to the tracer thread.
#[derive(Debug)]
pub(super) enum Command {
    Attach {
        pid: i32,
        reply: Reply<Result<AttachReport, TraceError>>,
    },
    Detach {
        pid: i32,
        reply: Reply<Result<(), TraceError>>,
    },
    DetachAll {
        reply: Reply<()>,
    },
    Capture {
        pid: i32,
        tids: Option<Vec<i32>>,
        stack_bytes: usize,
        reply: Reply<Result<Vec<ThreadCapture>, TraceError>>,
    },
    InsertBreakpoint {
        pid: i32,
        address: u64,
        group: u64,
        handler: HandlerBox,
        copy: Option<super::hit_copy::HitCopyPlan>,
        reply: Reply<Result<BreakpointId, TraceError>>,
    },
    InsertKernelBreakpoint {
        pid: i32,
        address: u64,
        group: u64,
        handler: HandlerBox,
        plan: CapturePlan,
        reply: Reply<Result<BreakpointId, (TraceError, HandlerBox)>>,
    },
    /// Would a site at `address` be refused, and why (dry runs).
    CheckSite {
        pid: i32,
        address: u64,
        engine: super::SiteEngine,
        reply: Reply<Result<(), TraceError>>,
    },
    RemoveGroup {
        pid: i32,
        group: u64,
        reply: Reply<Result<usize, TraceError>>,
    },
    InsertDebugWatch {
        pid: i32,
        group: u64,
        pieces: Vec<(u64, usize)>,
        kind: super::HwWatchKind,
        stack_bytes: usize,
        reply: Reply<Result<super::DebugWatch, TraceError>>,
    },
    FlushKernelHits {
        reply: Reply<()>,
    },
    Shutdown,
}

/// A hit handler in transit to the tracer thread.
pub(super) struct HandlerBox(pub Box<dyn HitHandler>);

impl std::fmt::Debug for HandlerBox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("HitHandler")
    }
}

/// Start the tracer in a tracer task of its own (`guardian`), which
/// outlives liveprobe's process and then detaches every target itself.
/// `finished` is signalled when it has ended (after detaching everything).
pub(super) fn spawn(
    commands: mpsc::Receiver<Command>,
    doorbell: Arc<Doorbell>,
    states: Arc<SharedStates>,
    registry: Arc<PatchRegistry>,
    finished: mpsc::Sender<()>,
    ring_bytes: usize,
) -> io::Result<()> {
    let body: guardian::TaskBody = Box::new(move |started| {
        ON_TRACER_THREAD.with(|flag| flag.set(true));
        // The task inherits a mask that blocks every signal (so that a
        // Ctrl-C or SIGTERM meant for liveprobe's process group cannot end
        // it); tracee events need SIGCHLD.
        doorbell::unblock_sigchld_in_this_thread();
        let mut tracer = TracerLoop::new(
            commands,
            doorbell,
            states,
            Arc::clone(&registry),
            ring_bytes,
            LiveprobeWatch::new(),
        );
        let _ = started.send(Ok(()));
        tracer.run();
        // Whatever could not be detached properly must at least not
        // meet an int3 that nobody handles once this task is gone.
        registry.restore_everything();
        if guardian::orphaned() {
            // Nothing of liveprobe is left to clean up for: drop nothing.
            guardian::exit_orphaned_task();
        }
    });
    let after = Box::new(move || {
        let _ = finished.send(());
    });
    guardian::spawn_task("liveprobe-tracer", body, after)
}

/// What the loop keeps per traced address space: its memory, its site
/// table (ptrace breakpoints and trampolines), and its memory map.
struct AddressSpace {
    memory: ProcessMemory,
    breakpoints: SiteTable,
    /// `/proc/PID/maps` ranges, refreshed per capture, for clamping stack copies.
    mappings: Vec<(u64, u64)>,
    /// Write/access watches on the threads' debug registers.
    debug: debug_watches::DebugWatchState,
}

impl Space for AddressSpace {
    fn has_breakpoints(&self) -> bool {
        self.breakpoints.in_use()
    }
}

/// Who waits for a detach to complete.
type DetachWaiter = Reply<Result<(), TraceError>>;

/// An attached process: its family (threads, children, detach state) and
/// its address space.
type Target = Process<AddressSpace, DetachWaiter>;

/// What the family asks of the system, read for real.
struct LiveLookups;

impl Lookups for LiveLookups {
    fn task_ids(&self, tid: i32) -> Option<TaskIds> {
        let status = procfs::read_status(tid).ok()?;
        Some(TaskIds {
            tgid: status.tgid,
            ppid: status.ppid,
        })
    }

    fn event_message(&self, tid: i32) -> Option<u64> {
        match ptrace::event_message(tid) {
            Ok(message) => Some(message),
            Err(errno) => {
                tracing::warn!(tid, %errno, "cannot read the message of a ptrace event");
                None
            }
        }
    }
}

struct TracerLoop {
    commands: mpsc::Receiver<Command>,
    doorbell: Arc<Doorbell>,
    states: Arc<SharedStates>,
    my_tid: i32,
    /// Every traced process: its family and its address space.
    processes: ProcessTable<AddressSpace, DetachWaiter>,
    /// Every int3 in every target, for restoring from any thread.
    registry: Arc<PatchRegistry>,
    next_breakpoint: u64,
    captures: HashMap<u64, CaptureOp>,
    next_op: u64,
    detach_all_waiters: Vec<Reply<()>>,
    shutdown_deadline: Option<Instant>,
    /// Kernel-side (uprobe + BPF) sites.
    kernel: kernel_hits::KernelState,
    /// Whether liveprobe's process is still there.
    liveprobe: LiveprobeWatch,
    /// liveprobe is gone: detach everything, touching nothing of its.
    orphaned: bool,
    /// Blocking waits for the next trap while traps come often.
    trap_wait: trap_wait::TrapWait,
    /// (tid, wait status) of the events one `reap_events` took.
    reaped: Vec<(i32, i32)>,
}

fn current_tid() -> i32 {
    // SAFETY: gettid has no preconditions.
    unsafe { libc::syscall(libc::SYS_gettid) as i32 }
}

impl TracerLoop {
    fn new(
        commands: mpsc::Receiver<Command>,
        doorbell: Arc<Doorbell>,
        states: Arc<SharedStates>,
        registry: Arc<PatchRegistry>,
        ring_bytes: usize,
        liveprobe: LiveprobeWatch,
    ) -> TracerLoop {
        TracerLoop {
            commands,
            doorbell,
            states,
            my_tid: current_tid(),
            processes: ProcessTable::default(),
            registry,
            next_breakpoint: 1,
            captures: HashMap::new(),
            next_op: 0,
            detach_all_waiters: Vec::new(),
            shutdown_deadline: None,
            kernel: kernel_hits::KernelState::new(ring_bytes),
            liveprobe,
            orphaned: false,
            trap_wait: Default::default(),
            reaped: Vec::new(),
        }
    }

    fn run(&mut self) {
        let mut panics = 0;
        loop {
            let turn = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| self.turn()));
            match turn {
                Ok(true) => {}
                Ok(false) => return,
                Err(_) if panics >= 16 => return,
                Err(_) => {
                    panics += 1;
                    // A bug in the tracer: its tables may be inconsistent.
                    // Put every original byte back and release everything
                    // rather than risk a target meeting an unhandled int3.
                    tracing::error!(
                        "the tracer thread panicked; restoring and detaching every target"
                    );
                    self.registry.restore_everything();
                    self.begin_shutdown();
                }
            }
        }
    }

    /// One turn of the loop; false when the loop must end.
    fn turn(&mut self) -> bool {
        {
            if !self.orphaned && self.liveprobe.check() {
                self.enter_orphaned_mode();
            }
            self.reap_events();
            self.serve_held_stops(Instant::now());
            if self.orphaned {
                // Handlers are liveprobe's; the kernel drops records of a
                // full ring, and the uprobes go when this task exits.
                return self.orphaned_turn();
            }
            self.drain_kernel_hits();
            loop {
                match self.commands.try_recv() {
                    Ok(command) => self.on_command(command),
                    Err(mpsc::TryRecvError::Empty) => break,
                    Err(mpsc::TryRecvError::Disconnected) => {
                        self.begin_shutdown();
                        break;
                    }
                }
            }
            let now = Instant::now();
            self.expire(now);
            if let Some(deadline) = self.shutdown_deadline {
                if self.processes.is_empty() {
                    return false;
                }
                if now >= deadline {
                    tracing::warn!(
                        targets = ?self.processes.pids(),
                        "tracer shutting down before every target could be detached; the kernel detaches them when this process exits"
                    );
                    return false;
                }
            }
            if self.spin_for_capture_stops() {
                return true;
            }
            self.sleep(now);
        }
        true
    }

    /// liveprobe's process is gone (SIGKILL, a crash, an exit that did not
    /// detach): from now on every target is detached through the normal
    /// path, with no handler called, no caller answered, no log line (the
    /// log writer's lock may be held by a dead thread), and no lock taken
    /// that liveprobe's threads take.
    fn enter_orphaned_mode(&mut self) {
        self.orphaned = true;
        std::mem::forget(tracing::subscriber::set_default(
            tracing::subscriber::NoSubscriber::default(),
        ));
        self.shutdown_deadline = None;
        self.begin_shutdown();
        self.shutdown_deadline = Some(Instant::now() + ORPHANED_DETACH_DEADLINE);
    }

    /// A turn without liveprobe: events only (commands stay unread: a
    /// sender that died mid-send can leave the queue waiting forever).
    fn orphaned_turn(&mut self) -> bool {
        let now = Instant::now();
        self.expire(now);
        if self.processes.is_empty() || self.shutdown_deadline.is_some_and(|d| now >= d) {
            return false;
        }
        if self.spin_for_capture_stops() {
            return true;
        }
        self.sleep(now);
        true
    }

    /// Record a target's state for the handles, unless nobody is left to
    /// read it (the map's lock may be held by a dead thread).
    fn set_state(&self, pid: i32, state: TargetState) {
        if !self.orphaned {
            self.states.set(pid, state);
        }
    }

    fn sleep(&mut self, now: Instant) {
        let mut timeout = self.kernel.max_sleep().unwrap_or(MAX_SLEEP);
        let deadlines = self
            .captures
            .values()
            .map(|op| op.deadline)
            .chain(
                self.processes
                    .iter()
                    .filter_map(|(_, t)| t.detach.as_ref()?.deadline),
            )
            .chain(
                self.processes
                    .iter()
                    .filter_map(|(_, t)| t.space.debug.next_deadline()),
            )
            .chain(self.shutdown_deadline)
            .chain(self.held_deadline());
        for deadline in deadlines {
            timeout = timeout.min(deadline.saturating_duration_since(now));
        }
        if self.wait_for_next_trap(timeout) {
            return;
        }
        let mut fds = [
            libc::pollfd {
                fd: self.doorbell.raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            },
            // Readable when liveprobe's process is gone.
            libc::pollfd {
                fd: self.liveprobe.poll_fd().unwrap_or(-1),
                events: libc::POLLIN,
                revents: 0,
            },
        ];
        // Round up so a deadline 0.4 ms away does not become a busy loop.
        let millis = timeout.as_micros().div_ceil(1000).min(i32::MAX as u128) as i32;
        // SAFETY: two valid pollfds on the stack (poll skips a negative fd).
        // EINTR (our own SIGCHLD handler ran on this task) just means "look
        // again".
        unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, millis) };
        self.doorbell.clear();
    }

    // ----- events ------------------------------------------------------

    /// Handle every pending tracee event; returns how many there were.
    /// All are reaped before any is handled: waitpid returns the first
    /// ready tracee in a fixed order, so resuming each at once would let a
    /// few hot threads that stop again at once be reaped over and over,
    /// and a thread later in that order wait behind them.
    fn reap_events(&mut self) -> usize {
        // The buffer is kept between turns: no allocation before a resume.
        let mut events = std::mem::take(&mut self.reaped);
        events.clear();
        loop {
            let mut status = 0;
            // SAFETY: plain waitpid into a local.
            let tid = unsafe {
                libc::waitpid(
                    -1,
                    &mut status,
                    libc::WNOHANG | libc::__WALL | libc::__WNOTHREAD,
                )
            };
            if tid > 0 {
                events.push((tid, status));
                continue;
            }
            if tid < 0 && Errno::last() == Errno::EINTR {
                continue;
            }
            if tid < 0 && !matches!(Errno::last(), Errno::ECHILD) {
                tracing::warn!(errno = %Errno::last(), "waitpid failed");
            }
            break;
        }
        let reaped = events.len();
        for &(tid, status) in &events {
            self.on_wait_status(tid, ptrace::decode(status));
        }
        self.reaped = events;
        reaped
    }

    fn on_wait_status(&mut self, tid: i32, event: WaitEvent) {
        tracing::trace!(tid, ?event, "tracee event");
        self.forget_held_stop(tid);
        for step in self.processes.on_wait(tid, event, &LiveLookups) {
            self.perform(step);
        }
    }

    /// Carry out what the family decided for an event.
    fn perform(&mut self, step: Step) {
        match step {
            Step::SignalStop { pid, tid, signal } => {
                // None: held at a hit, resumed by `serve_held_stops`.
                if let Some(resume) = self.on_signal_stop(pid, tid, signal) {
                    self.finish_stop(pid, tid, resume);
                }
            }
            Step::Resume { pid, tid, resume } => self.finish_stop(pid, tid, resume),
            Step::ThreadGone { pid, tid } => {
                self.forget_in_captures(tid);
                self.debug_thread_gone(pid, tid);
                self.check_detach_complete(pid);
            }
            Step::ProcessGone { pid, tid, how } => {
                self.forget_in_captures(tid);
                self.on_target_gone(pid, how);
            }
            Step::Exec {
                pid,
                tid,
                former,
                gone,
            } => self.on_exec(pid, tid, former, &gone),
            Step::CleanForkChild {
                parent,
                child,
                event,
            } => self.clean_fork_child(parent, child, event),
            Step::LetGo { tid, event } => hits::let_child_go(tid, event),
            Step::ReleaseStray {
                tid,
                originals,
                event,
            } => self.release_stray(tid, originals, event),
            Step::Forget { tid } => self.forget_in_captures(tid),
            Step::Detach { tid, signal } => match ptrace::detach(tid, signal) {
                Ok(()) | Err(Errno::ESRCH) => {}
                Err(errno) => tracing::debug!(tid, %errno, "cannot detach a task we do not follow"),
            },
        }
    }

    /// The end of a stop of a traced thread: copy it for the captures that
    /// wait for it, then resume it (or detach it).
    fn finish_stop(&mut self, pid: i32, tid: i32, resume: Resume) {
        // Copy the thread's state now if a capture waits for it. Every stop
        // counts (not only our interrupt's): the thread is stopped either way.
        let exiting = self.thread_mut(pid, tid).is_some_and(|t| t.exiting);
        let waiting_ops = match self.thread_mut(pid, tid) {
            Some(thread) if !thread.capture_ops.is_empty() => {
                std::mem::take(&mut thread.capture_ops)
            }
            _ => Vec::new(),
        };
        let mut copied = None;
        if !waiting_ops.is_empty() && !exiting {
            let stack_bytes = waiting_ops
                .iter()
                .filter_map(|id| self.captures.get(id))
                .map(|op| op.stack_bytes)
                .max()
                .unwrap_or(0);
            copied = self.copy_thread_state(pid, tid, stack_bytes);
        }
        let interrupt_sent = self
            .thread_mut(pid, tid)
            .and_then(|t| t.interrupt_sent.take());
        if !self.processes.is_detaching(pid) {
            self.sync_debug_registers(pid, tid);
        }

        self.resume(pid, tid, resume);
        // Handlers of hits copied at this stop run now that it went on.
        self.deliver_copied_hits(pid);

        let resumed = Instant::now();
        for op_id in waiting_ops {
            let Some(op) = self.captures.get_mut(&op_id) else {
                continue;
            };
            if let Some((regs, stack)) = &copied {
                let held = interrupt_sent
                    .map(|sent| resumed.duration_since(sent))
                    .unwrap_or_default();
                let mut stack = stack.clone();
                if stack.bytes.len() > op.stack_bytes + RED_ZONE as usize {
                    stack.bytes.truncate(op.stack_bytes + RED_ZONE as usize);
                }
                op.captured.push(ThreadCapture {
                    tid,
                    regs: *regs,
                    fs_base: regs.fs_base,
                    stack,
                    held,
                });
            }
            op.waiting.remove(&tid);
            self.advance_capture(op_id);
        }
    }

    /// Signal-delivery-stop. A SIGTRAP from one of our int3s is a hit (see
    /// `hits`); every other signal belongs to the target and is
    /// re-delivered unchanged.
    fn on_signal_stop(&mut self, pid: i32, tid: i32, signal: i32) -> Option<Resume> {
        if signal == libc::SIGTRAP && self.on_debug_trap(pid, tid) {
            return Some(Resume::Continue(0));
        }
        let in_use = self
            .processes
            .get(pid)
            .is_some_and(|t| t.space.has_breakpoints());
        if !in_use {
            return Some(Resume::Continue(signal));
        }
        self.on_signal_with_breakpoints(pid, tid, signal)
    }

    /// The family already renamed the exec'ing thread and forgot `gone`.
    fn on_exec(&mut self, pid: i32, tid: i32, former: i32, gone: &[i32]) {
        let Some(target) = self.processes.get_mut(pid) else {
            return;
        };
        target.space.memory = ProcessMemory::new(pid);
        target.space.mappings.clear();
        target.space.debug.end_at_exec();
        for &thread in gone {
            self.forget_in_captures(thread);
        }
        // The old code, its int3s and trampolines are gone with the old
        // address space (but for vfork children still in it).
        self.end_breakpoints_at_exec(pid);
        if self.processes.get(pid).is_some_and(|t| t.detach.is_none()) {
            self.set_state(pid, TargetState::Execed);
        }
        tracing::debug!(pid, former, tid, "target ran execve");
    }

    /// The whole process has exited (its leader was reaped, or its last thread).
    fn on_target_gone(&mut self, pid: i32, how: WaitEvent) {
        self.end_breakpoints_at_exit(pid, how);
        let Some(Removed {
            process: target,
            held_children,
        }) = self.processes.remove(pid)
        else {
            return;
        };
        for (child, first_stop) in held_children {
            hits::let_child_go(child, first_stop);
        }
        let state = match how {
            WaitEvent::Killed(signal) => TargetState::Killed {
                signal: ptrace::signal_name(signal),
            },
            WaitEvent::Exited(code) => TargetState::Exited { code },
            _ => TargetState::Exited { code: 0 },
        };
        tracing::debug!(pid, ?state, "target ended");
        let how_words = match &state {
            TargetState::Killed { signal } => format!("been killed by {signal}"),
            TargetState::Exited { code } => format!("exited with code {code}"),
            _ => "ended".to_string(),
        };
        if let Some(detach) = target.detach {
            // Nothing is left to detach from.
            self.set_state(pid, TargetState::Detached);
            for waiter in detach.waiters {
                waiter.send(Ok(()));
            }
        } else {
            self.set_state(pid, state);
        }
        let ops: Vec<u64> = self
            .captures
            .iter()
            .filter(|(_, op)| op.pid == pid)
            .map(|(id, _)| *id)
            .collect();
        for op_id in ops {
            if let Some(op) = self.captures.remove(&op_id) {
                op.reply.send(Err(TraceError::TargetExited {
                    pid,
                    how: how_words.clone(),
                }));
            }
        }
        self.answer_detach_all_if_done();
    }

    fn thread_mut(&mut self, pid: i32, tid: i32) -> Option<&mut TracedThread> {
        self.processes.thread_mut(pid, tid)
    }

    fn resume(&mut self, pid: i32, tid: i32, resume: Resume) {
        let detaching = self.processes.is_detaching(pid);
        if detaching {
            // Deliver a signal caught in transit; a group-stopped thread stays
            // stopped after detach (the kernel re-instates the job-control stop).
            let signal = match resume {
                Resume::Continue(signal) => signal,
                Resume::Listen => 0,
            };
            if !self.clear_debug_registers_before_detach(pid, tid, signal)
                || !self.ready_to_detach(pid, tid, signal)
            {
                // It has to pass through one more stop of ours first.
                return;
            }
            match ptrace::detach(tid, signal) {
                Ok(()) | Err(Errno::ESRCH) => {}
                Err(errno) => tracing::warn!(tid, %errno, "PTRACE_DETACH failed"),
            }
            self.processes.forget_thread(pid, tid);
            self.forget_in_captures(tid);
            self.check_detach_complete(pid);
            return;
        }
        let result = match resume {
            Resume::Continue(signal) => ptrace::cont(tid, signal),
            Resume::Listen => ptrace::listen(tid),
        };
        match result {
            // ESRCH: killed meanwhile (SIGKILL); its exit will be reaped.
            Ok(()) | Err(Errno::ESRCH) => {}
            Err(errno) => tracing::warn!(tid, %errno, ?resume, "cannot resume thread"),
        }
    }

    // ----- commands ----------------------------------------------------

    fn on_command(&mut self, command: Command) {
        if self.shutdown_deadline.is_some() {
            // Dropping the reply tells the caller the tracer is gone.
            return;
        }
        match command {
            Command::Attach { pid, reply } => reply.send(self.attach(pid)),
            Command::Detach { pid, reply } => self.begin_detach(pid, Some(reply)),
            Command::DetachAll { reply } => {
                self.detach_all_waiters.push(reply);
                let pids = self.processes.pids();
                for pid in pids {
                    self.begin_detach(pid, None);
                }
                self.answer_detach_all_if_done();
            }
            Command::Capture {
                pid,
                tids,
                stack_bytes,
                reply,
            } => self.begin_capture(pid, tids, stack_bytes, reply),
            Command::InsertBreakpoint {
                pid,
                address,
                group,
                handler,
                copy,
                reply,
            } => reply.send(self.insert_breakpoint(pid, address, group, handler.0, copy)),
            Command::InsertKernelBreakpoint {
                pid,
                address,
                group,
                handler,
                plan,
                reply,
            } => reply.send(
                self.insert_kernel_breakpoint(pid, address, group, handler.0, plan)
                    .map_err(|(e, h)| (e, HandlerBox(h))),
            ),
            Command::CheckSite {
                pid,
                address,
                engine,
                reply,
            } => reply.send(match engine {
                super::SiteEngine::Ptrace => self.ptrace_site_plan(pid, address).map(|_| ()),
                super::SiteEngine::Kernel => self.kernel_site_place(pid, address).map(|_| ()),
            }),
            Command::RemoveGroup { pid, group, reply } => {
                let removed = self.remove_group_command(pid, group);
                // Answered once the group's debug registers (if any) are
                // clear on every thread.
                self.remove_debug_watch(pid, group, Box::new(move |_| reply.send(removed)));
            }
            Command::InsertDebugWatch {
                pid,
                group,
                pieces,
                kind,
                stack_bytes,
                reply,
            } => self.insert_debug_watch(pid, group, pieces, kind, stack_bytes, reply),
            Command::FlushKernelHits { reply } => {
                self.flush_kernel_hits();
                reply.send(());
            }
            Command::Shutdown => self.begin_shutdown(),
        }
    }

    fn begin_shutdown(&mut self) {
        if self.shutdown_deadline.is_some() {
            return;
        }
        self.shutdown_deadline = Some(Instant::now() + DETACH_DEADLINE);
        let pids = self.processes.pids();
        for pid in pids {
            self.begin_detach(pid, None);
        }
    }

    fn not_live_error(&self, pid: i32) -> TraceError {
        match self.states.get(pid) {
            Some(TargetState::Exited { code }) => TraceError::TargetExited {
                pid,
                how: format!("exited with code {code}"),
            },
            Some(TargetState::Killed { signal }) => TraceError::TargetExited {
                pid,
                how: format!("been killed by {signal}"),
            },
            _ => TraceError::NotAttached { pid },
        }
    }

    fn attach(&mut self, pid: i32) -> Result<AttachReport, TraceError> {
        if let Some(target) = self.processes.get(pid) {
            if target.detach.is_some() {
                return Err(TraceError::DetachInProgress { pid });
            }
            let mut threads: Vec<i32> = target.threads.keys().copied().collect();
            threads.sort_unstable();
            return Ok(AttachReport {
                pid,
                threads,
                held: Duration::ZERO,
            });
        }
        let status = procfs::check_attachable(pid)?;
        if status.tracer_pid != 0 {
            return Err(procfs::already_traced(pid, status.tracer_pid));
        }
        let mut seized = Vec::new();
        if let Err(error) = self.seize_all(pid, &mut seized) {
            for tid in seized {
                release_now(tid);
            }
            return Err(error);
        }
        if seized.is_empty() {
            return Err(TraceError::Zombie { pid });
        }
        let target = Target::new(AddressSpace {
            memory: ProcessMemory::new(pid),
            breakpoints: SiteTable::default(),
            mappings: Vec::new(),
            debug: Default::default(),
        });
        self.processes.insert(pid, target, &seized);
        self.set_state(pid, TargetState::Running);
        seized.sort_unstable();
        tracing::debug!(pid, threads = ?seized, "attached");
        Ok(AttachReport {
            pid,
            threads: seized,
            held: Duration::ZERO,
        })
    }

    /// PTRACE_SEIZE every thread, rescanning /proc/PID/task until a pass
    /// finds none new (threads may be created while we seize).
    fn seize_all(&mut self, pid: i32, seized: &mut Vec<i32>) -> Result<(), TraceError> {
        for _pass in 0..1000 {
            let fresh: Vec<i32> = procfs::thread_ids(pid)?
                .into_iter()
                .filter(|tid| !seized.contains(tid))
                .collect();
            if fresh.is_empty() {
                return Ok(());
            }
            let mut progressed = false;
            for tid in fresh {
                match ptrace::seize(tid) {
                    Ok(()) => {
                        seized.push(tid);
                        progressed = true;
                    }
                    Err(Errno::ESRCH) => {
                        if tid == pid && seized.is_empty() {
                            return Err(TraceError::NoSuchProcess { pid });
                        }
                    }
                    Err(Errno::EPERM) => match procfs::read_status(tid) {
                        // Auto-attached already: a thread we seized cloned it.
                        Ok(status) if status.tracer_pid == self.my_tid => {
                            seized.push(tid);
                            progressed = true;
                        }
                        // An exited thread (e.g. a leader that called
                        // pthread_exit) cannot be seized and need not be.
                        Ok(status) if status.state == 'Z' || status.state == 'X' => {}
                        Ok(status) if status.tracer_pid != 0 => {
                            return Err(procfs::already_traced(pid, status.tracer_pid));
                        }
                        Ok(_) => {
                            return Err(TraceError::PermissionDenied {
                                pid,
                                reason: procfs::permission_reason(pid),
                            });
                        }
                        Err(_) if tid == pid && seized.is_empty() => {
                            return Err(TraceError::NoSuchProcess { pid });
                        }
                        Err(_) => {}
                    },
                    Err(errno) => {
                        return Err(TraceError::Ptrace {
                            op: "SEIZE",
                            tid,
                            errno,
                        });
                    }
                }
            }
            if !progressed {
                // Only unseizable (exited) threads are left.
                return Ok(());
            }
        }
        Ok(())
    }

    fn begin_detach(&mut self, pid: i32, reply: Option<DetachWaiter>) {
        let deadline = Instant::now() + DETACH_DEADLINE;
        let fresh = match self.processes.begin_detach(pid, reply, deadline) {
            Ok(fresh) => fresh,
            Err(reply) => {
                if self.orphaned {
                    std::mem::forget(reply);
                    return;
                }
                let outcome = match self.states.get(pid) {
                    Some(
                        TargetState::Exited { .. }
                        | TargetState::Killed { .. }
                        | TargetState::Detached,
                    ) => {
                        self.set_state(pid, TargetState::Detached);
                        Ok(())
                    }
                    _ => Err(TraceError::NotAttached { pid }),
                };
                if let Some(reply) = reply {
                    reply.send(outcome);
                }
                return;
            }
        };
        if fresh {
            // Every int3 leaves the target before any thread is let go: a
            // thread detached while one is still there would die of it.
            self.disarm_all(pid, &super::BreakpointEnd::Detached);
            let Some(target) = self.processes.get_mut(pid) else {
                return;
            };
            // Each thread is detached at its next stop (PTRACE_DETACH needs a
            // stopped tracee); a thread in group-stop is woken into a trap by
            // the interrupt as well.
            let tids: Vec<i32> = target.threads.keys().copied().collect();
            for tid in tids {
                match ptrace::interrupt(tid) {
                    Ok(()) | Err(Errno::ESRCH) => {}
                    Err(errno) => tracing::warn!(tid, %errno, "cannot interrupt thread for detach"),
                }
            }
        }
        self.check_detach_complete(pid);
    }

    fn check_detach_complete(&mut self, pid: i32) {
        let Some(Removed {
            process: target,
            held_children,
        }) = self.processes.take_if_detached(pid)
        else {
            return;
        };
        for (child, first_stop) in held_children {
            hits::let_child_go(child, first_stop);
        }
        self.set_state(pid, TargetState::Detached);
        tracing::debug!(pid, "detached");
        if let Some(detach) = target.detach {
            for waiter in detach.waiters {
                waiter.send(Ok(()));
            }
        }
        let ops: Vec<u64> = self
            .captures
            .iter()
            .filter(|(_, op)| op.pid == pid)
            .map(|(id, _)| *id)
            .collect();
        for op_id in ops {
            if let Some(op) = self.captures.remove(&op_id) {
                op.reply.send(Err(TraceError::NotAttached { pid }));
            }
        }
        self.answer_detach_all_if_done();
    }

    fn answer_detach_all_if_done(&mut self) {
        if self.processes.is_empty() {
            for waiter in self.detach_all_waiters.drain(..) {
                waiter.send(());
            }
        }
    }

    fn expire(&mut self, now: Instant) {
        self.expire_captures(now);
        self.expire_debug_syncs(now);
        for (&pid, target) in self.processes.iter_mut() {
            let Some(detach) = target.detach.as_mut() else {
                continue;
            };
            if detach.deadline.is_some_and(|deadline| deadline <= now) {
                detach.deadline = None;
                let mut tids: Vec<i32> = target.threads.keys().copied().collect();
                tids.sort_unstable();
                tracing::warn!(pid, threads = ?tids, "threads did not stop in time to be detached; still trying");
                for waiter in detach.waiters.drain(..) {
                    waiter.send(Err(TraceError::ThreadsDidNotStop {
                        pid,
                        tids: tids.clone(),
                    }));
                }
            }
        }
    }
}

/// Undo a seize right away (failed attach): stop the thread, then detach it,
/// delivering a signal it was stopping for. Blocks on this one thread; used
/// only on the rare error path.
fn release_now(tid: i32) {
    if ptrace::interrupt(tid).is_err() {
        return;
    }
    for _ in 0..64 {
        let mut status = 0;
        // SAFETY: plain waitpid into a local.
        let reaped = unsafe { libc::waitpid(tid, &mut status, libc::__WALL) };
        if reaped < 0 {
            if Errno::last() == Errno::EINTR {
                continue;
            }
            return;
        }
        match ptrace::decode(status) {
            WaitEvent::Exited(_) | WaitEvent::Killed(_) => return,
            WaitEvent::Signal(signal) => {
                let _ = ptrace::detach(tid, signal);
                return;
            }
            _ => {
                let _ = ptrace::detach(tid, 0);
                return;
            }
        }
    }
}
