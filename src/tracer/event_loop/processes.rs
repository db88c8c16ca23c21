//! The owner of every traced process's family: its threads, the children
//! its forks, vforks and clones announce, the processes we follow only to
//! clean them (strays), and its detach state.
//!
//! This is the pure half of the tracer loop: it takes wait events (and
//! what `/proc` and `PTRACE_GETEVENTMSG` said about them, through
//! `Lookups`) and answers with the `Step`s the loop must perform: resume a
//! thread, hand a signal stop to the site table, let a child go, clean a
//! fork child, forget a thread... It makes no system call itself, so the
//! transitions are tested on recorded sequences of wait events (see the
//! tests below) without a live process.
//!
//! `S` is what the loop keeps per address space (memory, site table); the
//! family only asks it whether breakpoints are in its memory.

use std::collections::{HashMap, HashSet};
use std::time::Instant;

use super::super::ptrace::{PtraceEvent, WaitEvent};

/// How to let a thread go after a stop.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Resume {
    /// PTRACE_CONT delivering this signal (0 = none).
    Continue(i32),
    /// PTRACE_LISTEN: stay in the group-stop.
    Listen,
}

/// What we know about one traced thread.
#[derive(Debug, Default)]
pub(super) struct TracedThread {
    /// When we sent the PTRACE_INTERRUPT that a pending capture waits for.
    pub interrupt_sent: Option<Instant>,
    /// Capture operations waiting for this thread's next stop.
    pub capture_ops: Vec<u64>,
    /// Reported PTRACE_EVENT_EXIT: about to disappear.
    pub exiting: bool,
    /// Kept in a job-control stop with PTRACE_LISTEN.
    pub group_stopped: bool,
    /// Not a thread of the target but the child of a vfork, which shares
    /// the target's memory (and so its breakpoints) until it execs or
    /// exits: followed so it never dies of a breakpoint, never reported.
    pub guest: bool,
    /// Its next trap at this address only steps over the instruction: a
    /// signal moved it from the start of the trampoline back onto the
    /// breakpoint, which it already hit once.
    pub skip_hit_at: Option<u64>,
    /// The stop it is in (or was last in).
    pub last_stop: Option<WaitEvent>,
}

/// What the per-address-space part of a process tells the family.
pub(super) trait Space {
    /// Whether int3s of ours may be in its memory (or were just removed).
    fn has_breakpoints(&self) -> bool;
}

/// Ids of a task as `/proc/TID/status` gives them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct TaskIds {
    pub tgid: i32,
    pub ppid: i32,
}

/// What the family needs to learn from the system about an event; the
/// loop reads `/proc` and ptrace, a test answers from a recording.
pub(super) trait Lookups {
    /// Ids of a task (None: gone or unreadable).
    fn task_ids(&self, tid: i32) -> Option<TaskIds>;
    /// PTRACE_GETEVENTMSG of a thread in an event stop: the new thread or
    /// child of a clone/fork/vfork, the former id of an exec'ing thread.
    fn event_message(&self, tid: i32) -> Option<u64>;
}

/// A detach in progress; the loop answers `waiters` when it completes.
pub(super) struct DetachOp<W> {
    pub waiters: Vec<W>,
    pub deadline: Option<Instant>,
}

/// One traced process: its threads (and vfork guests), its children in
/// flight, its detach state, and the loop's per-address-space state `S`.
pub(super) struct Process<S, W> {
    pub threads: HashMap<i32, TracedThread>,
    pub detach: Option<DetachOp<W>>,
    /// How the most recently reaped thread ended; the process's fate if the
    /// leader itself is not our tracee (it had exited before we attached).
    pub last_exit: Option<WaitEvent>,
    /// Fork/vfork children announced by an event, awaiting their first
    /// stop: child -> whether it is a vfork child.
    announced_children: HashMap<i32, bool>,
    /// Fork children whose first stop came before the fork event, held
    /// stopped (the process has breakpoints) until the event says whether
    /// they share its memory: child -> its first stop.
    held_children: HashMap<i32, WaitEvent>,
    /// New threads whose first stop came before the clone event: that
    /// event must not register them again (they may be gone by then).
    threads_seen_before_clone_event: HashSet<i32>,
    pub space: S,
}

impl<S, W> Process<S, W> {
    pub(super) fn new(space: S) -> Process<S, W> {
        Process {
            threads: HashMap::new(),
            detach: None,
            last_exit: None,
            announced_children: HashMap::new(),
            held_children: HashMap::new(),
            threads_seen_before_clone_event: HashSet::new(),
            space,
        }
    }
}

/// A process the table no longer follows, and the fork children it held
/// at their first stop (the caller lets them go).
pub(super) struct Removed<S, W> {
    pub process: Process<S, W>,
    pub held_children: Vec<(i32, WaitEvent)>,
}

/// Processes that copied or share the memory of a process that is leaving
/// it (exit, exec): they keep its int3s until cleaned.
#[derive(Debug, Default, PartialEq, Eq)]
pub(super) struct Dependants {
    /// Fork children held at their first stop: clean and let go now.
    pub held: Vec<(i32, WaitEvent)>,
    /// Fork children announced but not stopped yet: strays from now on.
    pub announced: Vec<i32>,
    /// Vfork children still in the old memory: no longer followed as
    /// threads; strays from now on.
    pub guests: Vec<i32>,
}

/// What the loop must do for an event, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Step {
    /// A signal-delivery-stop of a traced thread: the site table decides
    /// (a hit of ours, or the target's signal to re-deliver), then as
    /// `Resume`.
    SignalStop { pid: i32, tid: i32, signal: i32 },
    /// Copy the thread for waiting captures, then resume it (or detach it,
    /// the process being detached).
    Resume { pid: i32, tid: i32, resume: Resume },
    /// A thread (or guest) of `pid` is gone: forget it in captures and see
    /// whether a detach is complete.
    ThreadGone { pid: i32, tid: i32 },
    /// The whole process is gone (its leader, or its last thread): end its
    /// breakpoints, release its dependants, forget it.
    ProcessGone { pid: i32, tid: i32, how: WaitEvent },
    /// The thread ran execve (the family already forgot `gone` threads and
    /// renamed `former` to `tid`): new memory, breakpoints ended.
    Exec {
        pid: i32,
        tid: i32,
        former: i32,
        gone: Vec<i32>,
    },
    /// A fork child of `parent` (which has breakpoints) at its first
    /// stop: remove the parent's int3s from its copy, then let it go.
    CleanForkChild {
        parent: i32,
        child: i32,
        event: WaitEvent,
    },
    /// Let a child that is none of our business go, delivering the signal
    /// it stopped for.
    LetGo { tid: i32, event: WaitEvent },
    /// A stop of a stray (see `ProcessTable::strays`): restore its bytes
    /// and let it go.
    ReleaseStray {
        tid: i32,
        originals: Vec<(u64, u8)>,
        event: WaitEvent,
    },
    /// Forget the thread in pending captures (it is no longer followed).
    Forget { tid: i32 },
    /// PTRACE_DETACH delivering `signal`, nothing else.
    Detach { tid: i32, signal: i32 },
}

/// Every traced process, and the tasks we follow without them being a
/// process's thread.
pub(super) struct ProcessTable<S, W> {
    processes: HashMap<i32, Process<S, W>>,
    /// Traced thread id -> its process.
    owner_of: HashMap<i32, i32>,
    /// Processes whose memory may still hold our int3s but that are no
    /// longer any target's (a vfork child whose parent exec'd or died, a
    /// fork child announced by a process that left its memory): at their
    /// next stop the bytes are restored and they are let go.
    strays: HashMap<i32, Vec<(u64, u8)>>,
    /// Fork children whose first stop came before the fork event, already
    /// let go (their parent had no breakpoints).
    children_let_go_early: HashSet<i32>,
    /// Children announced by a process that is gone (detached): let go at
    /// their first stop.
    orphans: HashSet<i32>,
}

impl<S: Space, W> Default for ProcessTable<S, W> {
    fn default() -> Self {
        ProcessTable {
            processes: HashMap::new(),
            owner_of: HashMap::new(),
            strays: HashMap::new(),
            children_let_go_early: HashSet::new(),
            orphans: HashSet::new(),
        }
    }
}

fn signal_of(event: WaitEvent) -> i32 {
    match event {
        WaitEvent::Signal(signal) => signal,
        _ => 0,
    }
}

impl<S: Space, W> ProcessTable<S, W> {
    // ----- the table ---------------------------------------------------

    pub(super) fn get(&self, pid: i32) -> Option<&Process<S, W>> {
        self.processes.get(&pid)
    }

    pub(super) fn get_mut(&mut self, pid: i32) -> Option<&mut Process<S, W>> {
        self.processes.get_mut(&pid)
    }

    pub(super) fn contains(&self, pid: i32) -> bool {
        self.processes.contains_key(&pid)
    }

    pub(super) fn is_empty(&self) -> bool {
        self.processes.is_empty()
    }

    pub(super) fn pids(&self) -> Vec<i32> {
        self.processes.keys().copied().collect()
    }

    pub(super) fn iter(&self) -> impl Iterator<Item = (&i32, &Process<S, W>)> {
        self.processes.iter()
    }

    pub(super) fn iter_mut(&mut self) -> impl Iterator<Item = (&i32, &mut Process<S, W>)> {
        self.processes.iter_mut()
    }

    pub(super) fn thread_mut(&mut self, pid: i32, tid: i32) -> Option<&mut TracedThread> {
        self.processes.get_mut(&pid)?.threads.get_mut(&tid)
    }

    pub(super) fn is_detaching(&self, pid: i32) -> bool {
        self.processes.get(&pid).is_some_and(|p| p.detach.is_some())
    }

    /// A newly attached process and the threads seized in it.
    pub(super) fn insert(&mut self, pid: i32, mut process: Process<S, W>, threads: &[i32]) {
        for &tid in threads {
            process.threads.insert(tid, TracedThread::default());
            self.owner_of.insert(tid, pid);
        }
        self.processes.insert(pid, process);
    }

    /// Forget a process (exited, or detached). Children it announced that
    /// have not stopped yet are let go at their first stop; children held
    /// at their first stop come back, for the caller to let go.
    pub(super) fn remove(&mut self, pid: i32) -> Option<Removed<S, W>> {
        let mut process = self.processes.remove(&pid)?;
        for tid in process.threads.keys() {
            if self.owner_of.get(tid) == Some(&pid) {
                self.owner_of.remove(tid);
            }
        }
        self.orphans
            .extend(process.announced_children.drain().map(|(child, _)| child));
        let held_children = process.held_children.drain().collect();
        Some(Removed {
            process,
            held_children,
        })
    }

    fn register_thread(&mut self, pid: i32, tid: i32) {
        if let Some(process) = self.processes.get_mut(&pid) {
            process.threads.entry(tid).or_default();
            self.owner_of.insert(tid, pid);
        }
    }

    /// Stop following a thread (detached, or a guest that left).
    pub(super) fn forget_thread(&mut self, pid: i32, tid: i32) {
        if let Some(process) = self.processes.get_mut(&pid) {
            process.threads.remove(&tid);
        }
        self.owner_of.remove(&tid);
    }

    /// Follow `tid` as a stray: clean its memory and let it go at its next
    /// stop.
    pub(super) fn add_stray(&mut self, tid: i32, originals: Vec<(u64, u8)>) {
        self.strays.insert(tid, originals);
    }

    // ----- detach ------------------------------------------------------

    /// Start (or join) a detach of `pid`: whether it is a new one (its
    /// threads are then to be interrupted). The waiter comes back when
    /// `pid` is not traced.
    pub(super) fn begin_detach(
        &mut self,
        pid: i32,
        waiter: Option<W>,
        deadline: Instant,
    ) -> Result<bool, Option<W>> {
        let Some(process) = self.processes.get_mut(&pid) else {
            return Err(waiter);
        };
        let fresh = process.detach.is_none();
        let detach = process.detach.get_or_insert_with(|| DetachOp {
            waiters: Vec::new(),
            deadline: Some(deadline),
        });
        if let Some(waiter) = waiter {
            detach.waiters.push(waiter);
        }
        Ok(fresh)
    }

    /// The process, removed, when its detach is complete (no thread left).
    pub(super) fn take_if_detached(&mut self, pid: i32) -> Option<Removed<S, W>> {
        let process = self.processes.get(&pid)?;
        if process.detach.is_none() || !process.threads.is_empty() {
            return None;
        }
        self.remove(pid)
    }

    // ----- events ------------------------------------------------------

    /// What to do for one reaped wait event of `tid`.
    pub(super) fn on_wait(
        &mut self,
        tid: i32,
        event: WaitEvent,
        lookups: &impl Lookups,
    ) -> Vec<Step> {
        let mut steps = Vec::new();
        match self.owner_of.get(&tid) {
            Some(&pid) => match event {
                WaitEvent::Exited(_) | WaitEvent::Killed(_) => {
                    self.on_thread_gone(pid, tid, event, &mut steps)
                }
                _ => self.on_traced_stop(pid, tid, event, lookups, &mut steps),
            },
            None => self.on_unknown_tracee(tid, event, lookups, &mut steps),
        }
        steps
    }

    /// A stop of a thread we have not registered: a new thread whose clone
    /// event is still queued, a fork child, a stray, or a leftover of a
    /// failed attach.
    fn on_unknown_tracee(
        &mut self,
        tid: i32,
        event: WaitEvent,
        lookups: &impl Lookups,
        steps: &mut Vec<Step>,
    ) {
        if matches!(event, WaitEvent::Exited(_) | WaitEvent::Killed(_)) {
            // Exit of a thread we already forgot (exec, detach), or of one
            // of this thread's own children: nothing to do but forget it.
            self.strays.remove(&tid);
            self.orphans.remove(&tid);
            return;
        }
        let announced = self.processes.iter_mut().find_map(|(pid, process)| {
            let vfork = process.announced_children.remove(&tid)?;
            Some((*pid, vfork))
        });
        if let Some((pid, vfork)) = announced {
            self.on_fork_child_stopped(pid, tid, vfork, event, lookups, steps);
            return;
        }
        if self.orphans.remove(&tid) {
            steps.push(Step::LetGo { tid, event });
            return;
        }
        if let Some(originals) = self.strays.remove(&tid) {
            steps.push(Step::ReleaseStray {
                tid,
                originals,
                event,
            });
            return;
        }
        match lookups.task_ids(tid) {
            Some(ids) if ids.tgid != tid && self.processes.contains_key(&ids.tgid) => {
                if let Some(process) = self.processes.get_mut(&ids.tgid) {
                    process.threads_seen_before_clone_event.insert(tid);
                }
                self.register_thread(ids.tgid, tid);
                self.on_traced_stop(ids.tgid, tid, event, lookups, steps);
            }
            Some(ids)
                if ids.tgid == tid
                    && self
                        .processes
                        .get(&ids.ppid)
                        .is_some_and(|p| p.space.has_breakpoints()) =>
            {
                // The child of a fork/vfork whose event we have not reaped
                // yet, from a target with breakpoints: whether it shares the
                // target's memory decides what to do, and only the event
                // tells. Keep it stopped until then.
                if let Some(parent) = self.processes.get_mut(&ids.ppid) {
                    parent.held_children.insert(tid, event);
                }
            }
            Some(ids) if ids.tgid == tid => {
                // A new process: the child of a fork/vfork whose event we
                // have not reaped yet; its parent has no breakpoints.
                self.children_let_go_early.insert(tid);
                steps.push(Step::LetGo { tid, event });
            }
            _ => steps.push(Step::Detach {
                tid,
                signal: signal_of(event),
            }),
        }
    }

    fn on_traced_stop(
        &mut self,
        pid: i32,
        tid: i32,
        event: WaitEvent,
        lookups: &impl Lookups,
        steps: &mut Vec<Step>,
    ) {
        let guest = match self.thread_mut(pid, tid) {
            Some(thread) => {
                thread.group_stopped = matches!(event, WaitEvent::GroupStop(_));
                thread.last_stop = Some(event);
                thread.guest
            }
            None => false,
        };
        let resume = match event {
            WaitEvent::Signal(signal) => {
                steps.push(Step::SignalStop { pid, tid, signal });
                return;
            }
            WaitEvent::GroupStop(_) => Resume::Listen,
            WaitEvent::InterruptStop | WaitEvent::Other(_) | WaitEvent::SyscallStop => {
                Resume::Continue(0)
            }
            WaitEvent::Event(PtraceEvent::Clone) => {
                if let Some(new_tid) = lookups.event_message(tid) {
                    let new_tid = new_tid as i32;
                    let seen = self
                        .processes
                        .get_mut(&pid)
                        .is_some_and(|p| p.threads_seen_before_clone_event.remove(&new_tid));
                    if !seen {
                        self.register_thread(pid, new_tid);
                    }
                    if guest && let Some(thread) = self.thread_mut(pid, new_tid) {
                        thread.guest = true;
                    }
                }
                Resume::Continue(0)
            }
            WaitEvent::Event(kind @ (PtraceEvent::Fork | PtraceEvent::Vfork)) => {
                if let Some(child) = lookups.event_message(tid) {
                    let child = child as i32;
                    let vfork = kind == PtraceEvent::Vfork;
                    let held = self
                        .processes
                        .get_mut(&pid)
                        .and_then(|p| p.held_children.remove(&child));
                    if let Some(first_stop) = held {
                        self.on_fork_child_stopped(pid, child, vfork, first_stop, lookups, steps);
                    } else if !self.children_let_go_early.remove(&child)
                        && let Some(process) = self.processes.get_mut(&pid)
                    {
                        process.announced_children.insert(child, vfork);
                    }
                }
                Resume::Continue(0)
            }
            WaitEvent::Event(PtraceEvent::Exec) if guest => {
                // A vfork child ran a new program: it no longer shares the
                // target's memory and has no breakpoints. Let it go.
                self.forget_thread(pid, tid);
                steps.push(Step::Forget { tid });
                steps.push(Step::Detach { tid, signal: 0 });
                return;
            }
            WaitEvent::Event(PtraceEvent::Exec) => {
                let former = lookups.event_message(tid).map(|t| t as i32).unwrap_or(tid);
                let gone = self.on_exec(pid, tid, former);
                steps.push(Step::Exec {
                    pid,
                    tid,
                    former,
                    gone,
                });
                Resume::Continue(0)
            }
            WaitEvent::Event(PtraceEvent::Exit) => {
                if let Some(thread) = self.thread_mut(pid, tid) {
                    thread.exiting = true;
                }
                Resume::Continue(0)
            }
            WaitEvent::Event(PtraceEvent::VforkDone) => Resume::Continue(0),
            WaitEvent::Exited(_) | WaitEvent::Killed(_) => return,
        };
        steps.push(Step::Resume { pid, tid, resume });
    }

    /// The exec'ing thread now has the leader's id; every other thread is
    /// gone (their exits may or may not still be reported). Returns the
    /// threads forgotten.
    fn on_exec(&mut self, pid: i32, tid: i32, former: i32) -> Vec<i32> {
        let Some(process) = self.processes.get_mut(&pid) else {
            return Vec::new();
        };
        let survivor = process
            .threads
            .remove(&former)
            .or_else(|| process.threads.remove(&tid))
            .unwrap_or_default();
        let mut gone = Vec::new();
        let mut guests = Vec::new();
        for (thread, state) in process.threads.drain() {
            if state.guest {
                guests.push((thread, state));
            } else {
                gone.push(thread);
            }
        }
        process.threads.insert(tid, survivor);
        // A vfork child lives on in the old address space.
        process.threads.extend(guests);
        for thread in &gone {
            self.owner_of.remove(thread);
        }
        if former != tid {
            self.owner_of.remove(&former);
            gone.push(former);
        }
        self.owner_of.insert(tid, pid);
        gone.sort_unstable();
        gone.dedup();
        gone
    }

    fn on_thread_gone(&mut self, pid: i32, tid: i32, how: WaitEvent, steps: &mut Vec<Step>) {
        self.owner_of.remove(&tid);
        let Some(process) = self.processes.get_mut(&pid) else {
            return;
        };
        let was_guest = process.threads.remove(&tid).is_some_and(|t| t.guest);
        if was_guest {
            steps.push(Step::ThreadGone { pid, tid });
            return;
        }
        process.last_exit = Some(how);
        let process_gone = tid == pid || process.threads.values().all(|t| t.guest);
        if process_gone {
            steps.push(Step::ProcessGone { pid, tid, how });
        } else {
            steps.push(Step::ThreadGone { pid, tid });
        }
    }

    /// A fork/vfork child of `pid` at its first stop. A fork child has a
    /// copy of the target's memory, int3s included: they are removed from
    /// the copy and the child is let go. A vfork child shares the target's
    /// memory (and so needs the breakpoints to stay): it is followed as a
    /// guest until it execs or exits, its hits stepped over without calling
    /// handlers.
    fn on_fork_child_stopped(
        &mut self,
        pid: i32,
        child: i32,
        vfork: bool,
        event: WaitEvent,
        lookups: &impl Lookups,
        steps: &mut Vec<Step>,
    ) {
        if matches!(event, WaitEvent::Exited(_) | WaitEvent::Killed(_)) {
            return;
        }
        let in_use = self
            .processes
            .get(&pid)
            .is_some_and(|p| p.space.has_breakpoints());
        if !in_use {
            steps.push(Step::LetGo { tid: child, event });
            return;
        }
        if vfork {
            if let Some(process) = self.processes.get_mut(&pid) {
                process.threads.insert(
                    child,
                    TracedThread {
                        guest: true,
                        ..TracedThread::default()
                    },
                );
                self.owner_of.insert(child, pid);
            }
            self.on_traced_stop(pid, child, event, lookups, steps);
            return;
        }
        steps.push(Step::CleanForkChild {
            parent: pid,
            child,
            event,
        });
    }

    /// Processes that still share (vfork children) or copied (fork
    /// children not settled yet) the address space `pid` is leaving. The
    /// guests are no longer followed as threads; with `become_strays`
    /// (int3s of ours are in that memory) announced children and guests
    /// become strays with `originals`.
    pub(super) fn release_dependants(&mut self, pid: i32, originals: &[(u64, u8)]) -> Dependants {
        let mut dependants = Dependants::default();
        let Some(process) = self.processes.get_mut(&pid) else {
            return dependants;
        };
        dependants.held = process.held_children.drain().collect();
        dependants.held.sort_unstable_by_key(|(child, _)| *child);
        if originals.is_empty() {
            return dependants;
        }
        dependants.announced = process.announced_children.drain().map(|(c, _)| c).collect();
        dependants.announced.sort_unstable();
        dependants.guests = process
            .threads
            .iter()
            .filter(|(_, thread)| thread.guest)
            .map(|(tid, _)| *tid)
            .collect();
        dependants.guests.sort_unstable();
        for &child in &dependants.announced {
            self.strays.insert(child, originals.to_vec());
        }
        for &guest in &dependants.guests {
            self.forget_thread(pid, guest);
            self.strays.insert(guest, originals.to_vec());
        }
        dependants
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The per-address-space state of a test: whether breakpoints are in.
    struct FakeSpace {
        breakpoints: bool,
    }

    impl Space for FakeSpace {
        fn has_breakpoints(&self) -> bool {
            self.breakpoints
        }
    }

    /// What `/proc` and PTRACE_GETEVENTMSG said while the sequence was
    /// recorded.
    #[derive(Default)]
    struct Recorded {
        tasks: HashMap<i32, TaskIds>,
        messages: HashMap<i32, u64>,
    }

    impl Lookups for Recorded {
        fn task_ids(&self, tid: i32) -> Option<TaskIds> {
            self.tasks.get(&tid).copied()
        }
        fn event_message(&self, tid: i32) -> Option<u64> {
            self.messages.get(&tid).copied()
        }
    }

    type Table = ProcessTable<FakeSpace, ()>;

    const PID: i32 = 100;

    fn table(threads: &[i32], breakpoints: bool) -> Table {
        let mut table = Table::default();
        table.insert(PID, Process::new(FakeSpace { breakpoints }), threads);
        table
    }

    fn threads_of(table: &Table, pid: i32) -> Vec<i32> {
        let mut tids: Vec<i32> = table
            .get(pid)
            .map(|p| p.threads.keys().copied().collect())
            .unwrap_or_default();
        tids.sort_unstable();
        tids
    }

    fn cont(pid: i32, tid: i32) -> Step {
        Step::Resume {
            pid,
            tid,
            resume: Resume::Continue(0),
        }
    }

    const CLONE: WaitEvent = WaitEvent::Event(PtraceEvent::Clone);
    const FORK: WaitEvent = WaitEvent::Event(PtraceEvent::Fork);
    const VFORK: WaitEvent = WaitEvent::Event(PtraceEvent::Vfork);
    const EXEC: WaitEvent = WaitEvent::Event(PtraceEvent::Exec);

    /// The clone event is reaped first, then the new thread's first stop.
    #[test]
    fn a_clone_event_before_the_first_stop_registers_the_thread_once() {
        let mut table = table(&[PID], false);
        let mut lookups = Recorded::default();
        lookups.messages.insert(PID, 101);
        assert_eq!(table.on_wait(PID, CLONE, &lookups), vec![cont(PID, PID)]);
        assert_eq!(threads_of(&table, PID), vec![PID, 101]);
        // Its first stop is a stop of a known thread: no /proc read needed.
        assert_eq!(
            table.on_wait(101, WaitEvent::InterruptStop, &Recorded::default()),
            vec![cont(PID, 101)]
        );
        assert_eq!(threads_of(&table, PID), vec![PID, 101]);
    }

    /// The new thread's first stop is reaped before its parent's clone
    /// event; then it exits before the event: the event must not bring the
    /// dead thread back.
    #[test]
    fn a_clone_event_after_the_first_stop_does_not_register_the_thread_again() {
        let mut table = table(&[PID], false);
        let mut lookups = Recorded::default();
        lookups.tasks.insert(101, TaskIds { tgid: PID, ppid: 1 });
        lookups.messages.insert(PID, 101);
        assert_eq!(
            table.on_wait(101, WaitEvent::InterruptStop, &lookups),
            vec![cont(PID, 101)]
        );
        assert_eq!(threads_of(&table, PID), vec![PID, 101]);
        assert_eq!(
            table.on_wait(101, WaitEvent::Exited(0), &lookups),
            vec![Step::ThreadGone { pid: PID, tid: 101 }]
        );
        assert_eq!(table.on_wait(PID, CLONE, &lookups), vec![cont(PID, PID)]);
        assert_eq!(threads_of(&table, PID), vec![PID]);
    }

    /// A thread cloned by a vfork guest is a guest too.
    #[test]
    fn threads_of_a_vfork_guest_are_guests() {
        let mut table = table(&[PID], true);
        let mut lookups = Recorded::default();
        lookups.messages.insert(PID, 200);
        lookups.messages.insert(200, 201);
        table.on_wait(PID, VFORK, &lookups);
        table.on_wait(200, WaitEvent::InterruptStop, &lookups);
        table.on_wait(200, CLONE, &lookups);
        let process = table.get(PID).expect("traced");
        assert!(process.threads.get(&201).is_some_and(|t| t.guest));
    }

    /// A fork child of a process with breakpoints, announced first: cleaned
    /// and let go at its first stop; never a thread of the target.
    #[test]
    fn a_fork_child_of_a_process_with_breakpoints_is_cleaned_and_let_go() {
        let mut table = table(&[PID], true);
        let mut lookups = Recorded::default();
        lookups.messages.insert(PID, 300);
        assert_eq!(table.on_wait(PID, FORK, &lookups), vec![cont(PID, PID)]);
        assert_eq!(
            table.on_wait(300, WaitEvent::InterruptStop, &lookups),
            vec![Step::CleanForkChild {
                parent: PID,
                child: 300,
                event: WaitEvent::InterruptStop,
            }]
        );
        assert_eq!(threads_of(&table, PID), vec![PID]);
    }

    /// The fork child stops before the fork event: held until the event
    /// tells fork (clean it) from vfork (follow it).
    #[test]
    fn a_fork_child_stopping_before_the_event_is_held_until_the_event() {
        for (event, vfork) in [(FORK, false), (VFORK, true)] {
            let mut table = table(&[PID], true);
            let mut lookups = Recorded::default();
            lookups.tasks.insert(
                300,
                TaskIds {
                    tgid: 300,
                    ppid: PID,
                },
            );
            lookups.messages.insert(PID, 300);
            assert_eq!(
                table.on_wait(300, WaitEvent::InterruptStop, &lookups),
                vec![],
                "held: neither resumed nor let go"
            );
            let steps = table.on_wait(PID, event, &lookups);
            if vfork {
                assert_eq!(steps, vec![cont(PID, 300), cont(PID, PID)]);
                assert!(table.get(PID).expect("traced").threads[&300].guest);
            } else {
                assert_eq!(
                    steps,
                    vec![
                        Step::CleanForkChild {
                            parent: PID,
                            child: 300,
                            event: WaitEvent::InterruptStop,
                        },
                        cont(PID, PID),
                    ]
                );
                assert_eq!(threads_of(&table, PID), vec![PID]);
            }
        }
    }

    /// Without breakpoints, a fork child stopping before its event is let
    /// go at once, and the event later does not wait for it.
    #[test]
    fn a_fork_child_of_a_process_without_breakpoints_is_let_go_at_once() {
        let mut table = table(&[PID], false);
        let mut lookups = Recorded::default();
        lookups.tasks.insert(
            300,
            TaskIds {
                tgid: 300,
                ppid: PID,
            },
        );
        lookups.messages.insert(PID, 300);
        let first = WaitEvent::Signal(libc::SIGSTOP);
        assert_eq!(
            table.on_wait(300, first, &lookups),
            vec![Step::LetGo {
                tid: 300,
                event: first
            }]
        );
        assert_eq!(table.on_wait(PID, FORK, &lookups), vec![cont(PID, PID)]);
        assert!(
            table
                .get(PID)
                .expect("traced")
                .announced_children
                .is_empty()
        );
    }

    /// A vfork child shares the memory: it is a guest while it runs in it;
    /// when its parent execs, it becomes a stray, cleaned and let go at its
    /// next stop; its own exec would just let it go.
    #[test]
    fn a_vfork_child_outlives_its_parents_exec_as_a_stray() {
        let mut table = table(&[PID, 101], true);
        let mut lookups = Recorded::default();
        lookups.messages.insert(PID, 200);
        table.on_wait(PID, VFORK, &lookups);
        assert_eq!(
            table.on_wait(200, WaitEvent::InterruptStop, &lookups),
            vec![cont(PID, 200)]
        );
        assert!(table.get(PID).expect("traced").threads[&200].guest);
        // Thread 101 execs: it becomes the leader; the guest stays.
        lookups.messages.insert(PID, 101);
        assert_eq!(
            table.on_wait(PID, EXEC, &lookups),
            vec![
                Step::Exec {
                    pid: PID,
                    tid: PID,
                    former: 101,
                    gone: vec![PID, 101],
                },
                cont(PID, PID),
            ]
        );
        assert_eq!(threads_of(&table, PID), vec![PID, 200]);
        // The loop leaves the old memory: the guest is a stray now.
        let originals = [(0x1000, 0x55)];
        let dependants = table.release_dependants(PID, &originals);
        assert_eq!(dependants.guests, vec![200]);
        assert_eq!(threads_of(&table, PID), vec![PID]);
        assert_eq!(
            table.on_wait(200, WaitEvent::InterruptStop, &lookups),
            vec![Step::ReleaseStray {
                tid: 200,
                originals: originals.to_vec(),
                event: WaitEvent::InterruptStop,
            }]
        );
    }

    /// A guest's own exec lets it go without touching the target.
    #[test]
    fn a_vfork_guest_that_execs_is_detached() {
        let mut table = table(&[PID], true);
        let mut lookups = Recorded::default();
        lookups.messages.insert(PID, 200);
        table.on_wait(PID, VFORK, &lookups);
        table.on_wait(200, WaitEvent::InterruptStop, &lookups);
        assert_eq!(
            table.on_wait(200, EXEC, &lookups),
            vec![
                Step::Forget { tid: 200 },
                Step::Detach {
                    tid: 200,
                    signal: 0
                }
            ]
        );
        assert_eq!(threads_of(&table, PID), vec![PID]);
        assert!(table.get(PID).is_some_and(|p| p.detach.is_none()));
    }

    /// A guest exiting is not the target's end, even when it is the only
    /// other "thread".
    #[test]
    fn the_exit_of_a_vfork_guest_is_not_the_targets() {
        let mut table = table(&[PID], true);
        let mut lookups = Recorded::default();
        lookups.messages.insert(PID, 200);
        table.on_wait(PID, VFORK, &lookups);
        table.on_wait(200, WaitEvent::InterruptStop, &lookups);
        assert_eq!(
            table.on_wait(200, WaitEvent::Exited(0), &lookups),
            vec![Step::ThreadGone { pid: PID, tid: 200 }]
        );
        assert!(table.get(PID).is_some_and(|p| p.last_exit.is_none()));
    }

    /// A thread exits while a detach waits for every thread to stop: the
    /// detach completes when the last remaining thread is detached, not
    /// before.
    #[test]
    fn a_thread_exit_during_detach_leaves_the_detach_to_the_others() {
        let mut table = table(&[PID, 101, 102], false);
        let lookups = Recorded::default();
        assert_eq!(table.begin_detach(PID, Some(()), Instant::now()), Ok(true));
        // Joining it interrupts nothing more.
        assert_eq!(table.begin_detach(PID, Some(()), Instant::now()), Ok(false));
        assert_eq!(
            table.begin_detach(999, Some(()), Instant::now()),
            Err(Some(()))
        );
        assert_eq!(
            table.on_wait(102, WaitEvent::Event(PtraceEvent::Exit), &lookups),
            vec![cont(PID, 102)]
        );
        assert_eq!(
            table.on_wait(102, WaitEvent::Exited(0), &lookups),
            vec![Step::ThreadGone { pid: PID, tid: 102 }]
        );
        assert!(table.take_if_detached(PID).is_none());
        for tid in [101, PID] {
            assert_eq!(
                table.on_wait(tid, WaitEvent::InterruptStop, &lookups),
                vec![cont(PID, tid)]
            );
            table.forget_thread(PID, tid);
        }
        let removed = table.take_if_detached(PID).expect("detach complete");
        assert_eq!(removed.process.detach.map(|d| d.waiters.len()), Some(2));
        assert!(removed.held_children.is_empty());
        assert!(!table.contains(PID));
        // A late exit report of a detached thread is nobody's.
        assert_eq!(table.on_wait(101, WaitEvent::Exited(0), &lookups), vec![]);
    }

    /// A SIGSTOP group-stop during a detach keeps the thread in its stop
    /// (PTRACE_LISTEN): the detach then leaves it stopped as job control
    /// wants, and the loop's detach of it completes the detach.
    #[test]
    fn a_group_stop_during_detach_is_listened_to_and_remembered() {
        let mut table = table(&[PID], false);
        let lookups = Recorded::default();
        assert_eq!(table.begin_detach(PID, None, Instant::now()), Ok(true));
        assert_eq!(
            table.on_wait(PID, WaitEvent::Signal(libc::SIGSTOP), &lookups),
            vec![Step::SignalStop {
                pid: PID,
                tid: PID,
                signal: libc::SIGSTOP,
            }]
        );
        assert_eq!(
            table.on_wait(PID, WaitEvent::GroupStop(libc::SIGSTOP), &lookups),
            vec![Step::Resume {
                pid: PID,
                tid: PID,
                resume: Resume::Listen,
            }]
        );
        let thread = &table.get(PID).expect("traced").threads[&PID];
        assert!(thread.group_stopped);
        assert_eq!(thread.last_stop, Some(WaitEvent::GroupStop(libc::SIGSTOP)));
        assert!(table.is_detaching(PID));
        table.forget_thread(PID, PID);
        assert!(table.take_if_detached(PID).is_some());
    }

    /// The leader's exit ends the process; a fork child announced before
    /// and not stopped yet is let go at its first stop.
    #[test]
    fn an_announced_child_of_a_process_gone_is_let_go() {
        let mut table = table(&[PID, 101], false);
        let mut lookups = Recorded::default();
        lookups.messages.insert(101, 300);
        table.on_wait(101, FORK, &lookups);
        assert_eq!(
            table.on_wait(PID, WaitEvent::Killed(libc::SIGKILL), &lookups),
            vec![Step::ProcessGone {
                pid: PID,
                tid: PID,
                how: WaitEvent::Killed(libc::SIGKILL),
            }]
        );
        let removed = table.remove(PID).expect("traced");
        assert!(removed.held_children.is_empty());
        assert_eq!(
            table.on_wait(300, WaitEvent::InterruptStop, &lookups),
            vec![Step::LetGo {
                tid: 300,
                event: WaitEvent::InterruptStop,
            }]
        );
    }

    /// A stop of a task nobody knows (a leftover of a failed attach) is
    /// detached with its signal.
    #[test]
    fn an_unknown_tracee_is_detached_with_its_signal() {
        let mut table = table(&[PID], false);
        assert_eq!(
            table.on_wait(999, WaitEvent::Signal(libc::SIGUSR1), &Recorded::default()),
            vec![Step::Detach {
                tid: 999,
                signal: libc::SIGUSR1,
            }]
        );
    }

    /// The last non-guest thread's exit ends the process even when the
    /// leader is not a tracee (it exited before the attach).
    #[test]
    fn the_last_thread_ends_a_process_whose_leader_is_gone() {
        let mut table = table(&[101], true);
        let mut lookups = Recorded::default();
        lookups.messages.insert(101, 200);
        table.on_wait(101, VFORK, &lookups);
        table.on_wait(200, WaitEvent::InterruptStop, &lookups);
        assert_eq!(
            table.on_wait(101, WaitEvent::Exited(3), &lookups),
            vec![Step::ProcessGone {
                pid: PID,
                tid: 101,
                how: WaitEvent::Exited(3),
            }]
        );
    }

    // ----- replays of sequences recorded from live runs -------------------

    /// One answer the live loop got from `/proc` or PTRACE_GETEVENTMSG.
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    enum Answer {
        Task(i32, Option<TaskIds>),
        Message(i32, Option<u64>),
    }

    /// Gives the recorded answers of one event, in order, and fails on a
    /// question the live loop did not ask.
    #[derive(Default)]
    struct Replayed {
        answers: std::cell::RefCell<std::collections::VecDeque<Answer>>,
    }

    impl Lookups for Replayed {
        fn task_ids(&self, tid: i32) -> Option<TaskIds> {
            match self.answers.borrow_mut().pop_front() {
                Some(Answer::Task(asked, ids)) if asked == tid => ids,
                other => panic!("the recording has {other:?} where /proc was read for {tid}"),
            }
        }
        fn event_message(&self, tid: i32) -> Option<u64> {
            match self.answers.borrow_mut().pop_front() {
                Some(Answer::Message(asked, message)) if asked == tid => message,
                other => panic!("the recording has {other:?} where the event of {tid} was read"),
            }
        }
    }

    #[derive(Debug)]
    enum Line {
        Attach(i32, Vec<i32>),
        Detach(i32),
        Wait(i32, WaitEvent),
        Answer(Answer),
    }

    fn number(text: &str) -> i64 {
        text.trim()
            .parse()
            .unwrap_or_else(|_| panic!("not a number: {text:?}"))
    }

    /// `Name(n)` -> n.
    fn inner<'a>(text: &'a str, name: &str) -> Option<&'a str> {
        text.strip_prefix(name)?
            .strip_prefix('(')?
            .strip_suffix(')')
    }

    fn parse_event(text: &str) -> WaitEvent {
        let event = |kind| WaitEvent::Event(kind);
        match text {
            "InterruptStop" => return WaitEvent::InterruptStop,
            "SyscallStop" => return WaitEvent::SyscallStop,
            "Event(Clone)" => return event(PtraceEvent::Clone),
            "Event(Fork)" => return event(PtraceEvent::Fork),
            "Event(Vfork)" => return event(PtraceEvent::Vfork),
            "Event(VforkDone)" => return event(PtraceEvent::VforkDone),
            "Event(Exec)" => return event(PtraceEvent::Exec),
            "Event(Exit)" => return event(PtraceEvent::Exit),
            _ => {}
        }
        type Make = fn(i32) -> WaitEvent;
        let kinds: [(&str, Make); 5] = [
            ("Signal", WaitEvent::Signal),
            ("GroupStop", WaitEvent::GroupStop),
            ("Exited", WaitEvent::Exited),
            ("Killed", WaitEvent::Killed),
            ("Other", WaitEvent::Other),
        ];
        for (name, make) in kinds {
            if let Some(n) = inner(text, name) {
                return make(number(n) as i32);
            }
        }
        panic!("unknown wait event {text:?}")
    }

    fn parse_recording(text: &str) -> Vec<Line> {
        let mut lines = Vec::new();
        for line in text
            .lines()
            .filter(|l| !l.starts_with('#') && !l.is_empty())
        {
            let mut words = line.splitn(3, ' ');
            let (kind, tid, rest) = (
                words.next().unwrap_or(""),
                number(words.next().unwrap_or("")) as i32,
                words.next().unwrap_or(""),
            );
            lines.push(match kind {
                "attach" => Line::Attach(
                    tid,
                    rest.trim_matches(['[', ']'])
                        .split(", ")
                        .map(|t| number(t) as i32)
                        .collect(),
                ),
                "detach" => Line::Detach(tid),
                "wait" => Line::Wait(tid, parse_event(rest)),
                "task" => Line::Answer(Answer::Task(
                    tid,
                    inner(rest, "Some").map(|pair| {
                        let pair = pair.trim_matches(['(', ')']);
                        let (tgid, ppid) = pair.split_once(", ").expect("tgid, ppid");
                        TaskIds {
                            tgid: number(tgid) as i32,
                            ppid: number(ppid) as i32,
                        }
                    }),
                )),
                "msg" => Line::Answer(Answer::Message(
                    tid,
                    inner(rest, "Ok").map(|n| number(n) as u64),
                )),
                other => panic!("unknown recording line {other:?}"),
            });
        }
        lines
    }

    /// One replayed event and the steps the table answered.
    struct Replay {
        table: Table,
        events: Vec<(i32, WaitEvent, Vec<Step>)>,
    }

    impl Replay {
        /// The steps of the `nth` event `event` of `tid`.
        fn steps(&self, tid: i32, event: WaitEvent, nth: usize) -> &[Step] {
            self.events
                .iter()
                .filter(|(t, e, _)| *t == tid && *e == event)
                .nth(nth)
                .map(|(_, _, steps)| steps.as_slice())
                .unwrap_or_else(|| panic!("no {event:?} #{nth} of {tid} in the recording"))
        }
    }

    /// Replays a recording: each wait event goes to the table with the
    /// answers the live loop got, and the loop's part is done the way
    /// `TracerLoop::perform` does it to the table (a stop of a detaching
    /// process detaches the thread; a process gone leaves the table; exec
    /// and exit release the dependants, with int3s of ours when the
    /// process has breakpoints).
    fn replay(text: &str, breakpoints: bool) -> Replay {
        let originals: Vec<(u64, u8)> = if breakpoints {
            vec![(0x1000, 0x55)]
        } else {
            Vec::new()
        };
        let mut table = Table::default();
        let mut events = Vec::new();
        let lines = parse_recording(text);
        let mut index = 0;
        while let Some(line) = lines.get(index) {
            index += 1;
            match line {
                Line::Attach(pid, threads) => {
                    table.insert(*pid, Process::new(FakeSpace { breakpoints }), threads)
                }
                Line::Detach(pid) => {
                    assert_eq!(table.begin_detach(*pid, Some(()), Instant::now()), Ok(true));
                }
                Line::Answer(answer) => panic!("{answer:?} answers no event"),
                Line::Wait(tid, event) => {
                    let lookups = Replayed::default();
                    while let Some(Line::Answer(answer)) = lines.get(index) {
                        lookups.answers.borrow_mut().push_back(*answer);
                        index += 1;
                    }
                    let steps = table.on_wait(*tid, *event, &lookups);
                    assert!(
                        lookups.answers.borrow().is_empty(),
                        "the live loop asked more about {tid} {event:?} than the table did"
                    );
                    for step in &steps {
                        match *step {
                            Step::Resume { pid, tid, .. } | Step::SignalStop { pid, tid, .. }
                                if table.is_detaching(pid) =>
                            {
                                table.forget_thread(pid, tid);
                                table.take_if_detached(pid);
                            }
                            Step::ThreadGone { pid, .. } => {
                                table.take_if_detached(pid);
                            }
                            Step::ProcessGone { pid, .. } => {
                                table.release_dependants(pid, &originals);
                                table.remove(pid);
                            }
                            Step::Exec { pid, .. } => {
                                table.release_dependants(pid, &originals);
                            }
                            _ => {}
                        }
                    }
                    events.push((*tid, *event, steps));
                }
            }
        }
        Replay { table, events }
    }

    /// Recorded: a fork child stopping after the fork event, a vfork child
    /// stopping after its event, hitting breakpoints as a guest and
    /// exiting, a vfork child stopping before its event and exec'ing, then
    /// a detach.
    #[test]
    fn recorded_fork_and_vfork_children_of_a_process_with_breakpoints() {
        let replay = replay(
            include_str!("../../../tests/recordings/tracer/fork_vfork_with_breakpoints.txt"),
            true,
        );
        let stop = WaitEvent::InterruptStop;
        assert_eq!(
            replay.steps(7843, stop, 0),
            [Step::CleanForkChild {
                parent: 7837,
                child: 7843,
                event: stop,
            }]
        );
        assert_eq!(replay.steps(7848, stop, 0), [cont(7837, 7848)]);
        assert_eq!(
            replay.steps(7848, WaitEvent::Signal(libc::SIGTRAP), 0),
            [Step::SignalStop {
                pid: 7837,
                tid: 7848,
                signal: libc::SIGTRAP,
            }],
            "a guest's hits go to the site table, which steps them over"
        );
        assert_eq!(
            replay.steps(7848, WaitEvent::Exited(42), 0),
            [Step::ThreadGone {
                pid: 7837,
                tid: 7848
            }],
            "a vfork guest's exit is not the target's"
        );
        assert_eq!(replay.steps(7849, stop, 0), [], "held until its event");
        assert_eq!(
            replay.steps(7837, VFORK, 1),
            [cont(7837, 7849), cont(7837, 7837)]
        );
        assert_eq!(
            replay.steps(7849, EXEC, 0),
            [
                Step::Forget { tid: 7849 },
                Step::Detach {
                    tid: 7849,
                    signal: 0
                }
            ]
        );
        assert!(replay.table.is_empty(), "the detach completed");
    }

    /// Recorded: threads cloned, one of them seen before its clone event,
    /// the leader exits (pthread_exit), the late thread execs and takes the
    /// leader's id, the new program exits.
    #[test]
    fn recorded_exec_from_a_thread_that_is_not_the_leader() {
        let replay = replay(
            include_str!("../../../tests/recordings/tracer/exec_from_a_thread_not_the_leader.txt"),
            false,
        );
        assert_eq!(
            replay.steps(7881, WaitEvent::InterruptStop, 0),
            [cont(7877, 7881)]
        );
        assert_eq!(
            replay.steps(7880, WaitEvent::Exited(0), 0),
            [Step::ThreadGone {
                pid: 7877,
                tid: 7880
            }]
        );
        assert_eq!(
            replay.steps(7877, EXEC, 0),
            [
                Step::Exec {
                    pid: 7877,
                    tid: 7877,
                    former: 7881,
                    gone: vec![7877, 7881],
                },
                cont(7877, 7877),
            ]
        );
        assert_eq!(
            replay.steps(7877, WaitEvent::Exited(3), 0),
            [Step::ProcessGone {
                pid: 7877,
                tid: 7877,
                how: WaitEvent::Exited(3),
            }]
        );
        assert!(replay.table.is_empty());
    }

    /// Recorded: two threads seen before their clone events, SIGSTOP
    /// group-stops, a capture's interrupts, SIGCONT, SIGSTOP again, and a
    /// detach while every thread is in the group-stop.
    #[test]
    fn recorded_group_stop_then_detach() {
        let text = include_str!("../../../tests/recordings/tracer/group_stop_then_detach.txt");
        let before_detach = text.split("\ndetach ").next().unwrap_or(text);
        let stopped = replay(before_detach, false);
        let process = stopped.table.get(7899).expect("traced");
        assert_eq!(threads_of(&stopped.table, 7899), vec![7899, 7900, 7901]);
        assert!(
            process.threads.values().all(|t| t.group_stopped),
            "every thread is kept in its group-stop"
        );
        assert_eq!(
            stopped.steps(7900, WaitEvent::GroupStop(libc::SIGSTOP), 0),
            [Step::Resume {
                pid: 7899,
                tid: 7900,
                resume: Resume::Listen,
            }]
        );
        let detached = replay(text, false);
        assert!(detached.table.is_empty(), "the detach completed");
    }
}
