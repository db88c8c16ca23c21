//! The tracer thread's breakpoint work: arming and disarming sites, the
//! hit itself (handlers, then out-of-line execution or emulation), late
//! traps of removed breakpoints, scratch pages, and what forks, vforks,
//! execs, exits and detaches do to breakpoints.
//!
//! A hit holds only the thread that hit: read its registers, confirm the
//! trap is ours (`si_code`), copy what each copying handler's plan names
//! (`hit_copy`), hand the thread to the handlers that read live memory
//! (`HeldHit`), point it at the trampoline (or perform the emulated branch),
//! write its registers, resume it, and only then hand the copies to their
//! handlers. One wait-resume round trip, no single-step, no other thread
//! touched. A handler that keeps its `HeldHit` (to read it on another
//! thread) keeps the thread stopped: the loop goes on, and
//! `serve_held_stops` finishes the hit when it is released, or lets the
//! thread go at `HELD_HIT_DEADLINE`.
//!
//! Must never: resume a thread past one of our int3s without executing the
//! displaced instruction exactly once, detach a thread that still has a
//! SIGTRAP of ours pending, or let a process we stop following keep an
//! int3 of ours.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;
use std::time::{Duration, Instant};

use nix::errno::Errno;

use super::super::breakpoints::{
    BreakpointEnd, BreakpointId, CodeWriter, CopiedHitContext, HeldHit, HitHandler, HitVerdict,
    ThreadMemory, monotonic_ns,
};
use super::super::code::{DisplacedInstruction, INT3, MAX_INSTRUCTION_LEN, Step};
use super::super::error::TraceError;
use super::super::hit_copy::{self, HELD_HIT_DEADLINE, HeldThread, HeldToken, HitCopyPlan, LetGo};
use super::super::inject::{self, InjectError};
use super::super::kernel::CapturedMemory;
use super::super::ptrace::{self, WaitEvent};
use super::super::scratch::{self, FilePlace, SCRATCH_PAGE_SIZE, ScratchPage, Translated};
use super::super::sites::{Armed, Site};
use super::super::sites::{CopiedHit, HeldStop};
use super::{Resume, TracerLoop};

/// Most scratch pages per address space (128 trampolines each).
const MAX_SCRATCH_PAGES: usize = 64;
/// How long to wait for one thread to stop so that it can map a scratch
/// page for us, before trying another.
const BORROW_DEADLINE: Duration = Duration::from_secs(1);

/// What arming a new ptrace site needs, decided before anything is written.
pub(super) struct NewPtraceSite {
    maps: Vec<scratch::Mapping>,
    place: Option<FilePlace>,
    instruction: DisplacedInstruction,
}

fn signal_of(event: WaitEvent) -> i32 {
    match event {
        WaitEvent::Signal(signal) => signal,
        _ => 0,
    }
}

/// Let a child process that is none of our business go, delivering the
/// signal it stopped for.
pub(super) fn let_child_go(child: i32, event: WaitEvent) {
    if matches!(event, WaitEvent::Exited(_) | WaitEvent::Killed(_)) {
        return;
    }
    match ptrace::detach(child, signal_of(event)) {
        Ok(()) | Err(Errno::ESRCH) => {}
        Err(errno) => tracing::warn!(child, %errno, "cannot detach a fork child of a target"),
    }
}

/// Whether a SIGTRAP is pending for the thread (e.g. from an int3 it
/// executed, not yet reported because an interrupt stop came first).
pub(super) fn sigtrap_pending(tid: i32) -> bool {
    let Ok(text) = std::fs::read_to_string(format!("/proc/{tid}/status")) else {
        return false;
    };
    text.lines()
        .find_map(|line| line.strip_prefix("SigPnd:"))
        .and_then(|hex| u64::from_str_radix(hex.trim(), 16).ok())
        .is_some_and(|mask| mask & (1 << (libc::SIGTRAP - 1)) != 0)
}

/// Write original bytes back into an address space through `/proc/PID/mem`
/// wherever one of our int3s still is. Returns how many could not be.
fn restore_bytes(pid: i32, originals: &[(u64, u8)]) -> usize {
    if originals.is_empty() {
        return 0;
    }
    let writer = match CodeWriter::open(pid) {
        Ok(writer) => writer,
        Err(errno) => {
            tracing::warn!(pid, %errno, "cannot open the memory of a process to remove breakpoints");
            return originals.len();
        }
    };
    originals
        .iter()
        .filter(|(addr, original)| writer.restore(*addr, *original).is_err())
        .count()
}

pub(super) fn call_on_end(mut armed: Armed, why: &BreakpointEnd) {
    if super::guardian::orphaned() {
        // liveprobe is gone: its handler is not called, nor freed.
        std::mem::forget(armed);
        return;
    }
    if catch_unwind(AssertUnwindSafe(|| armed.handler.on_end(why))).is_err() {
        tracing::error!(
            group = armed.group,
            breakpoint = armed.id.0,
            "a breakpoint handler panicked in on_end"
        );
    }
}

impl TracerLoop {
    // ----- arming ------------------------------------------------------

    /// What a new ptrace site at `address` of `pid` needs, None where a
    /// site is there to join, or why it cannot be: every refusal known
    /// before the target is written (a dry run asks this too).
    pub(super) fn ptrace_site_plan(
        &mut self,
        pid: i32,
        address: u64,
    ) -> Result<Option<NewPtraceSite>, TraceError> {
        let not_live = self.not_live_error(pid);
        let target = self.processes.get(pid).ok_or(not_live)?;
        if target.detach.is_some() {
            return Err(TraceError::DetachInProgress { pid });
        }
        if let Some(other) = self.kernel_site_at(pid, address) {
            return Err(TraceError::BreakpointRefused {
                pid,
                address,
                reason: format!(
                    "a kernel-side probe (group {other}) is already there; a ptrace breakpoint cannot share its address: remove that probe first"
                ),
            });
        }
        if target.space.breakpoints.sites.contains_key(&address) {
            return Ok(None);
        }
        let refused = |reason: String| TraceError::BreakpointRefused {
            pid,
            address,
            reason,
        };

        // The original instruction, as it is without any int3 of ours.
        let maps = scratch::read_maps(pid);
        let Some(mapping) = scratch::mapping_at(&maps, address).filter(|m| m.executable) else {
            return Err(refused(
                "no executable code is mapped there; use a source line or a function name, or an address from find_functions".into(),
            ));
        };
        // A kernel uprobe is keyed by file and offset: at its int3 in any
        // process that has uprobes, the kernel takes the trap, finds the
        // uprobe, and (the process not being the uprobe's) writes the
        // original instruction back: our int3 would be gone without a word.
        let place = mapping.file_place(address);
        if let Some((other_pid, other)) = place.as_ref().and_then(|p| self.kernel_site_at_place(p))
        {
            return Err(refused(format!(
                "a kernel-side probe (group {other}) is at the same place of {} in process {other_pid}; the kernel's uprobe there would remove a ptrace breakpoint in every process of that file: remove that probe first, or use engine auto or uprobe",
                mapping.path
            )));
        }
        let available = (mapping.end - address).min(MAX_INSTRUCTION_LEN as u64) as usize;
        let Some(target) = self.processes.get(pid) else {
            return Err(self.not_live_error(pid));
        };
        let mut code = vec![0u8; available];
        target
            .space
            .memory
            .read(address, &mut code)
            .map_err(|error| refused(format!("its code cannot be read: {error}")))?;
        target.space.breakpoints.unpatch(address, &mut code);
        let instruction = DisplacedInstruction::analyze(address, &code).map_err(refused)?;
        if let Some(why) = target.space.breakpoints.overlap(&instruction) {
            return Err(refused(why));
        }
        Ok(Some(NewPtraceSite {
            maps,
            place,
            instruction,
        }))
    }

    /// Arm a breakpoint (see `Tracer::insert_breakpoint`).
    pub(super) fn insert_breakpoint(
        &mut self,
        pid: i32,
        address: u64,
        group: u64,
        handler: Box<dyn HitHandler>,
        copy: Option<HitCopyPlan>,
    ) -> Result<BreakpointId, TraceError> {
        let new_site = self.ptrace_site_plan(pid, address)?;
        let Some(target) = self.processes.get_mut(pid) else {
            return Err(self.not_live_error(pid));
        };
        let id = BreakpointId(self.next_breakpoint);
        self.next_breakpoint += 1;
        let armed = Armed {
            id,
            group,
            handler,
            copy,
        };
        let Some(NewPtraceSite {
            maps,
            place,
            instruction,
        }) = new_site
        else {
            // The tracer thread alone changes sites: the one just seen is there.
            return match target.space.breakpoints.join_site(address, armed) {
                Ok(()) => Ok(id),
                Err(_) => Err(TraceError::BreakpointRefused {
                    pid,
                    address,
                    reason: "the breakpoint there went away while it was joined".into(),
                }),
            };
        };
        let Armed { handler, copy, .. } = armed;

        let trampoline = match instruction.step {
            Step::OutOfLine => Some(self.ensure_trampoline(pid, &instruction, &maps)?),
            Step::Emulate(_) => None,
        };

        let Some(target) = self.processes.get_mut(pid) else {
            return Err(self.not_live_error(pid));
        };
        let site = Site {
            instruction,
            trampoline,
            handlers: vec![Armed {
                id,
                group,
                handler,
                copy,
            }],
            place,
        };
        target.space.breakpoints.arm(pid, site, &self.registry)?;
        tracing::debug!(
            pid,
            address = format_args!("{address:#x}"),
            group,
            "breakpoint armed"
        );
        Ok(id)
    }

    /// The trampoline of `instruction`, built in a scratch page (mapped
    /// into the target when none in reach has room).
    fn ensure_trampoline(
        &mut self,
        pid: i32,
        instruction: &DisplacedInstruction,
        maps: &[scratch::Mapping],
    ) -> Result<u64, TraceError> {
        let address = instruction.address;
        let refused = |reason: String| TraceError::BreakpointRefused {
            pid,
            address,
            reason,
        };
        let mut last_problem = None;
        for attempt in 0..2 {
            let Some(target) = self.processes.get_mut(pid) else {
                return Err(self.not_live_error(pid));
            };
            let placed =
                target
                    .space
                    .breakpoints
                    .place_trampoline(pid, instruction, &mut last_problem)?;
            if let Some(at) = placed {
                return Ok(at);
            }
            if attempt == 0 {
                self.map_scratch_page(pid, address, maps)?;
            }
        }
        Err(refused(last_problem.unwrap_or_else(|| {
            "no room for its out-of-line copy in the scratch pages".into()
        })))
    }

    /// Map one more scratch page near `near`, made by a target thread.
    fn map_scratch_page(
        &mut self,
        pid: i32,
        near: u64,
        maps: &[scratch::Mapping],
    ) -> Result<(), TraceError> {
        let unavailable = |reason: String| TraceError::ScratchUnavailable {
            pid,
            address: near,
            reason,
        };
        let Some(target) = self.processes.get_mut(pid) else {
            return Err(self.not_live_error(pid));
        };
        if target.space.breakpoints.scratch.pages.len() >= MAX_SCRATCH_PAGES {
            return Err(unavailable(format!(
                "{MAX_SCRATCH_PAGES} scratch pages are in use already; remove some probes"
            )));
        }
        let exe = std::fs::read_link(format!("/proc/{pid}/exe"))
            .ok()
            .map(|path| path.to_string_lossy().into_owned());
        let Some(gap) = scratch::find_gap(maps, near, SCRATCH_PAGE_SIZE, exe.as_deref()) else {
            return Err(unavailable(
                "no free address range within 1 GiB of the code".into(),
            ));
        };
        let syscall_instruction = match target.space.breakpoints.syscall_instruction {
            Some(at) => at,
            None => {
                let found = inject::find_syscall_instruction(&target.space.memory, maps)
                    .ok_or_else(|| {
                        unavailable("no `syscall` instruction found in its code".into())
                    })?;
                target.space.breakpoints.syscall_instruction = Some(found);
                found
            }
        };
        let tid = self.borrow_stopped_thread(pid)?;
        let result = inject::remote_syscall(
            pid,
            tid,
            syscall_instruction,
            libc::SYS_mmap,
            [
                gap,
                SCRATCH_PAGE_SIZE,
                (libc::PROT_READ | libc::PROT_EXEC) as u64,
                (libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_FIXED_NOREPLACE) as u64,
                u64::MAX,
                0,
            ],
        );
        let mapped = self.give_back_borrowed_thread(tid, result);
        let mapped = mapped.map_err(unavailable)?;
        if mapped < 0 {
            return Err(unavailable(format!(
                "mmap in the target failed: {}",
                Errno::from_raw((-mapped) as i32)
            )));
        }
        let mapped = mapped as u64;
        if mapped != gap {
            // A kernel older than 4.17 treats MAP_FIXED_NOREPLACE as a hint.
            tracing::debug!(pid, gap, mapped, "scratch page placed elsewhere than asked");
        }
        let Some(target) = self.processes.get_mut(pid) else {
            return Err(self.not_live_error(pid));
        };
        target
            .space
            .breakpoints
            .scratch
            .pages
            .push(ScratchPage::new(mapped));
        tracing::debug!(
            pid,
            page = format_args!("{mapped:#x}"),
            "scratch page mapped"
        );
        Ok(())
    }

    /// Stop one thread of `pid` (an interrupt stop) so that it can make a
    /// system call for us. Other stops of that thread meanwhile are handled
    /// as usual.
    fn borrow_stopped_thread(&mut self, pid: i32) -> Result<i32, TraceError> {
        let Some(target) = self.processes.get(pid) else {
            return Err(self.not_live_error(pid));
        };
        // A thread held at a hit cannot stop again until it is resumed.
        let held: Vec<i32> = target
            .space
            .breakpoints
            .held_stops
            .iter()
            .map(|stop| stop.tid)
            .collect();
        let mut candidates: Vec<(i32, bool)> = target
            .threads
            .iter()
            .filter(|(tid, t)| !t.guest && !t.exiting && !held.contains(tid))
            .map(|(tid, t)| (*tid, t.group_stopped))
            .collect();
        if !candidates.is_empty() && candidates.iter().all(|(_, stopped)| *stopped) {
            return Err(TraceError::JobControlStopped { pid });
        }
        // The leader first, then the others; never a job-control stopped one.
        candidates.retain(|(_, stopped)| !stopped);
        candidates.sort_by_key(|(tid, _)| (*tid != pid, *tid));
        let tried = candidates.len();
        let mut found_group_stopped = 0;
        for (tid, _) in candidates {
            if ptrace::interrupt(tid).is_err() {
                continue;
            }
            let deadline = Instant::now() + BORROW_DEADLINE;
            loop {
                match inject::wait_until(tid, deadline) {
                    Ok(Some(WaitEvent::InterruptStop)) => {
                        if let Some(thread) = self.thread_mut(pid, tid) {
                            thread.last_stop = Some(WaitEvent::InterruptStop);
                        }
                        return Ok(tid);
                    }
                    Ok(Some(event)) => {
                        let ends = inject::is_exit(&event);
                        let group_stop = matches!(event, WaitEvent::GroupStop(_));
                        self.on_wait_status(tid, event);
                        if !self.processes.contains(pid) {
                            return Err(self.not_live_error(pid));
                        }
                        if group_stop {
                            // Stopped by job control just now: it stays so.
                            found_group_stopped += 1;
                            break;
                        }
                        if ends {
                            break;
                        }
                    }
                    // Not stopped in time (uninterruptible sleep): our
                    // interrupt stays pending and is handled by the loop.
                    Ok(None) | Err(_) => break,
                }
            }
        }
        if tried > 0 && found_group_stopped == tried {
            return Err(TraceError::JobControlStopped { pid });
        }
        Err(TraceError::ScratchUnavailable {
            pid,
            address: 0,
            reason: "no thread of the process stopped within a second to map it (all in uninterruptible sleep?)".into(),
        })
    }

    /// Resume a thread borrowed for an injected call, handling whatever
    /// stopped it instead. Returns the call's result.
    fn give_back_borrowed_thread(
        &mut self,
        tid: i32,
        result: Result<i64, InjectError>,
    ) -> Result<i64, String> {
        match result {
            Ok(value) => {
                self.on_wait_status(tid, WaitEvent::InterruptStop);
                Ok(value)
            }
            Err(InjectError::Failed(why)) => {
                self.on_wait_status(tid, WaitEvent::InterruptStop);
                Err(why)
            }
            Err(InjectError::Interrupted(event)) => {
                self.on_wait_status(tid, event);
                Err("the thread making the call exited".into())
            }
        }
    }

    // ----- disarming ---------------------------------------------------

    /// `remove_group` for a command: a process that has ended has nothing
    /// left to remove.
    pub(super) fn remove_group_command(
        &mut self,
        pid: i32,
        group: u64,
    ) -> Result<usize, TraceError> {
        if self.processes.contains(pid) {
            return Ok(self.remove_group(pid, group));
        }
        match self.states.get(pid) {
            Some(_) => Ok(0),
            None => Err(TraceError::NotAttached { pid }),
        }
    }

    /// Remove every breakpoint of `group` in `pid`; returns how many.
    pub(super) fn remove_group(&mut self, pid: i32, group: u64) -> usize {
        let kernel_removed = self.remove_kernel_group(pid, group);
        let kernel_count = kernel_removed.len();
        for armed in kernel_removed {
            call_on_end(armed, &BreakpointEnd::Removed);
        }
        let Some(target) = self.processes.get_mut(pid) else {
            return kernel_count;
        };
        let removed = target
            .space
            .breakpoints
            .remove_group(pid, group, &self.registry);
        let count = removed.len() + kernel_count;
        for armed in removed {
            call_on_end(armed, &BreakpointEnd::Removed);
        }
        count
    }

    /// Take every int3 out of `pid` at once and end every handler with
    /// `why`. Trampolines stay: threads may still be running in them.
    pub(super) fn disarm_all(&mut self, pid: i32, why: &BreakpointEnd) {
        self.end_kernel_sites(pid, why);
        let Some(target) = self.processes.get_mut(pid) else {
            return;
        };
        let ended = target.space.breakpoints.disarm_all(pid, &self.registry);
        for armed in ended {
            call_on_end(armed, why);
        }
    }

    /// The target ran execve: its breakpoints went with the old program.
    pub(super) fn end_breakpoints_at_exec(&mut self, pid: i32) {
        self.end_kernel_sites(pid, &BreakpointEnd::Execed);
        let originals = self.release_dependants(pid);
        let Some(target) = self.processes.get_mut(pid) else {
            return;
        };
        let breakpoints = std::mem::take(&mut target.space.breakpoints);
        self.registry.forget_process(pid);
        if !originals.is_empty() {
            tracing::debug!(pid, "breakpoints ended by exec");
        }
        for armed in breakpoints.into_handlers() {
            call_on_end(armed, &BreakpointEnd::Execed);
        }
    }

    /// The target is gone: its breakpoints end with how it ended.
    pub(super) fn end_breakpoints_at_exit(&mut self, pid: i32, how: WaitEvent) {
        self.release_dependants(pid);
        let Some(target) = self.processes.get_mut(pid) else {
            return;
        };
        let breakpoints = std::mem::take(&mut target.space.breakpoints);
        self.registry.forget_process(pid);
        let why = match how {
            WaitEvent::Killed(signal) => BreakpointEnd::TargetExited {
                code: None,
                signal: Some(ptrace::signal_name(signal)),
            },
            WaitEvent::Exited(code) => BreakpointEnd::TargetExited {
                code: Some(code),
                signal: None,
            },
            _ => BreakpointEnd::TargetExited {
                code: None,
                signal: None,
            },
        };
        for armed in breakpoints.into_handlers() {
            call_on_end(armed, &why);
        }
        self.end_kernel_sites(pid, &why);
    }

    /// Processes that still share (vfork children) or copied (fork
    /// children not settled yet) the address space `pid` is leaving: they
    /// keep our int3s, so they are cleaned and let go at their next stop.
    /// Returns the original bytes.
    fn release_dependants(&mut self, pid: i32) -> Vec<(u64, u8)> {
        let originals = match self.processes.get(pid) {
            Some(target) => target.space.breakpoints.originals(),
            None => return Vec::new(),
        };
        let dependants = self.processes.release_dependants(pid, &originals);
        for (child, first_stop) in dependants.held {
            restore_bytes(child, &originals);
            let_child_go(child, first_stop);
        }
        for guest in dependants.guests {
            self.forget_in_captures(guest);
            // Its memory is its own from now on: clean it at once (it may be
            // running) and let it go at its next stop.
            restore_bytes(guest, &originals);
            let _ = ptrace::interrupt(guest);
        }
        originals
    }

    /// A stop of a process we only follow to clean it (see `strays`).
    pub(super) fn release_stray(&mut self, tid: i32, originals: Vec<(u64, u8)>, event: WaitEvent) {
        if matches!(event, WaitEvent::Exited(_) | WaitEvent::Killed(_)) {
            return;
        }
        restore_bytes(tid, &originals);
        let mut signal = signal_of(event);
        if signal == libc::SIGTRAP
            && let Ok(mut regs) = ptrace::registers(tid)
        {
            let at = regs.rip.wrapping_sub(1);
            let code = ptrace::signal_code(tid).unwrap_or(0);
            if originals.iter().any(|(addr, _)| *addr == at)
                && (code == ptrace::SI_KERNEL || code == ptrace::TRAP_BRKPT)
            {
                regs.rip = at;
                let _ = ptrace::set_registers(tid, &regs);
                signal = 0;
            }
        } else if sigtrap_pending(tid) {
            // A trap of ours is still on its way: let it arrive first.
            let _ = ptrace::cont(tid, signal);
            let _ = ptrace::interrupt(tid);
            self.processes.add_stray(tid, originals);
            return;
        }
        let_child_go(tid, WaitEvent::Signal(signal));
    }

    // ----- fork and vfork ----------------------------------------------

    /// A fork child of `parent` (which has breakpoints) at its first stop:
    /// it has a copy of the parent's memory, int3s included: they are
    /// removed from the copy and the child is let go.
    pub(super) fn clean_fork_child(&mut self, parent: i32, child: i32, event: WaitEvent) {
        let originals = self
            .processes
            .get(parent)
            .map(|t| t.space.breakpoints.originals())
            .unwrap_or_default();
        let failed = restore_bytes(child, &originals);
        if failed > 0 {
            tracing::error!(
                child,
                failed,
                "could not remove every breakpoint from a fork child; it may die of SIGTRAP"
            );
        }
        let_child_go(child, event);
    }

    // ----- hits --------------------------------------------------------

    /// A signal stop of a thread whose address space has breakpoint state.
    /// None: the thread stays stopped at a hit (`HeldStop`), resumed later.
    pub(super) fn on_signal_with_breakpoints(
        &mut self,
        pid: i32,
        tid: i32,
        signal: i32,
    ) -> Option<Resume> {
        let stopped = Instant::now();
        let Ok(regs) = ptrace::registers(tid) else {
            return Some(Resume::Continue(signal));
        };
        let Some(target) = self.processes.get_mut(pid) else {
            return Some(Resume::Continue(signal));
        };
        if signal == libc::SIGTRAP {
            let at = regs.rip.wrapping_sub(1);
            // A thread stopped for a signal is at an instruction boundary
            // unless it trapped on an int3; `at + 1` is a boundary only when
            // the instruction there is one byte long (push, pop, ret...).
            // Only then can a SIGTRAP sent by someone (kill, raise) look like
            // ours, and only then is `si_code` needed to tell them apart.
            let mid_instruction = target
                .space
                .breakpoints
                .sites
                .get(&at)
                .is_some_and(|site| site.instruction.len() > 1);
            if mid_instruction
                || target.space.breakpoints.is_ours(at) && {
                    let code = ptrace::signal_code(tid).unwrap_or(0);
                    code == ptrace::SI_KERNEL || code == ptrace::TRAP_BRKPT
                }
            {
                return self.on_breakpoint_trap(pid, tid, regs, at, stopped);
            }
        }
        // A signal for a thread inside a trampoline: it is delivered as if
        // the thread were in the original code, so the signal frame (and
        // whatever a handler does with it) never sees the scratch page.
        if let Some(translated) = target.space.breakpoints.scratch.translate(regs.rip) {
            let mut moved = regs;
            moved.rip = translated.pc();
            if ptrace::write_changed_registers(tid, &regs, &moved).is_ok()
                && let Translated::Before(address) = translated
                && target.space.breakpoints.sites.contains_key(&address)
                && let Some(thread) = target.threads.get_mut(&tid)
            {
                // It will meet the int3 again: that is the same hit.
                thread.skip_hit_at = Some(address);
            }
        }
        Some(Resume::Continue(signal))
    }

    /// `tid` executed our int3 at `at` (its rip is `at + 1`). Copying
    /// handlers get their copy now (delivered once the thread is resumed);
    /// handlers without a plan get the thread itself (`HeldHit`). When one
    /// of them keeps it, the thread stays stopped (None) until released.
    fn on_breakpoint_trap(
        &mut self,
        pid: i32,
        tid: i32,
        as_read: libc::user_regs_struct,
        at: u64,
        stopped: Instant,
    ) -> Option<Resume> {
        let doorbell = Arc::clone(&self.doorbell);
        // The next hit is likely soon: wait for it in waitpid (`trap_wait`).
        self.trap_wait.trapped();
        let Some(target) = self.processes.get_mut(pid) else {
            return Some(Resume::Continue(libc::SIGTRAP));
        };
        let breakpoints = &mut target.space.breakpoints;
        let Some(site) = breakpoints.sites.get_mut(&at) else {
            return Some(self.step_past(pid, tid, &as_read, at));
        };
        let mut regs = as_read;
        regs.rip = at;
        let (guest, skip) = match target.threads.get_mut(&tid) {
            Some(thread) => (thread.guest, thread.skip_hit_at.take() == Some(at)),
            None => (false, false),
        };
        let mut remove_groups: Vec<u64> = Vec::new();
        let mut waiting: Vec<Arc<HeldToken>> = Vec::new();
        let mut copied = None;
        // Without liveprobe (orphaned) a hit is only stepped past. A copy
        // needs no check here (its delivery checks, after the resume); a
        // thread is held only after one getppid says liveprobe is alive: a
        // held one would wait for nobody.
        if !guest && !skip && !self.orphaned {
            let monotonic_ns = monotonic_ns();
            let time = std::time::SystemTime::now();
            // Handlers that copy get their copy now and run once the
            // thread is resumed (`deliver_copied_hits`).
            let copies: Vec<(BreakpointId, CapturedMemory, Duration)> = site
                .handlers
                .iter()
                .filter_map(|armed| {
                    let plan = armed.copy.as_ref()?;
                    let started = Instant::now();
                    let copy = hit_copy::copy_hit(&target.space.memory, &regs, plan);
                    Some((armed.id, copy, started.elapsed()))
                })
                .collect();
            if !copies.is_empty() {
                copied = Some(CopiedHit {
                    tid,
                    address: at,
                    regs,
                    copies,
                    stopped,
                    monotonic_ns,
                    time,
                });
            }
            let holders = site.handlers.iter().any(|a| a.copy.is_none());
            let liveprobe_alive = holders && !self.liveprobe.check();
            for armed in site
                .handlers
                .iter_mut()
                .filter(|a| a.copy.is_none() && liveprobe_alive)
            {
                let token = HeldToken::new(stopped, Arc::clone(&doorbell));
                let hit = HeldHit {
                    pid,
                    tid,
                    address: at,
                    regs,
                    monotonic_ns,
                    time,
                    thread: HeldThread::new(target.space.memory.clone(), Arc::clone(&token)),
                };
                match catch_unwind(AssertUnwindSafe(|| armed.handler.on_held_hit(hit))) {
                    Ok(HitVerdict::Keep) => {}
                    Ok(HitVerdict::RemoveGroup) => remove_groups.push(armed.group),
                    Err(_) => {
                        tracing::error!(
                            group = armed.group,
                            "a breakpoint handler panicked; its group is removed"
                        );
                        remove_groups.push(armed.group);
                    }
                }
                if !token.is_released() {
                    waiting.push(token);
                }
            }
        }
        remove_groups.sort_unstable();
        remove_groups.dedup();
        if !waiting.is_empty() {
            // Stays stopped; `serve_held_stops` moves it past the int3 once
            // its readers are done (or late). Groups to remove leave now:
            // the step past then finds the original instruction in place.
            breakpoints.held_stops.push(HeldStop {
                tid,
                address: at,
                as_read,
                tokens: waiting,
                deadline: stopped + HELD_HIT_DEADLINE,
                copied,
            });
            for group in remove_groups {
                self.remove_group(pid, group);
            }
            return None;
        }
        if let Some(copied) = copied {
            breakpoints.copied_hits.push(copied);
        }
        let resume = self.step_past(pid, tid, &as_read, at);
        for group in remove_groups {
            self.remove_group(pid, group);
        }
        Some(resume)
    }

    /// Moves a thread stopped by our int3 at `at` past it: into the site's
    /// trampoline, or through the emulated branch; where the site is gone
    /// (removed meanwhile: a late trap, or a hit held while its group left),
    /// back onto the original instruction, which is in place again.
    fn step_past(
        &mut self,
        pid: i32,
        tid: i32,
        as_read: &libc::user_regs_struct,
        at: u64,
    ) -> Resume {
        let mut regs = *as_read;
        regs.rip = at;
        let Some(target) = self.processes.get_mut(pid) else {
            return Resume::Continue(0);
        };
        let breakpoints = &mut target.space.breakpoints;
        let Some(site) = breakpoints.sites.get(&at) else {
            // If an int3 is back there that is not ours, the trap is the
            // program's own.
            let mut byte = [0u8; 1];
            if target.space.memory.read(at, &mut byte).is_ok() && byte[0] == INT3 {
                return Resume::Continue(libc::SIGTRAP);
            }
            return match ptrace::write_changed_registers(tid, as_read, &regs) {
                Ok(()) | Err(Errno::ESRCH) => Resume::Continue(0),
                Err(errno) => {
                    tracing::warn!(tid, %errno, "cannot rewind a thread after a late trap");
                    Resume::Continue(0)
                }
            };
        };
        let mut resume = Resume::Continue(0);
        match site.instruction.step {
            Step::OutOfLine => match site.trampoline {
                Some(trampoline) => regs.rip = trampoline,
                None => {
                    // Cannot happen: out-of-line sites always get one.
                    tracing::error!(at, "breakpoint without trampoline");
                }
            },
            Step::Emulate(emulation) => {
                let memory = ThreadMemory {
                    memory: &target.space.memory,
                    writer: breakpoints.writer.as_ref(),
                };
                if let Err(fault) = site.instruction.emulate(emulation, &mut regs, &memory) {
                    // The real instruction would have faulted the same way.
                    tracing::warn!(
                        tid,
                        at,
                        fault = fault.addr,
                        "emulated instruction faults; delivering SIGSEGV as the program would have got"
                    );
                    regs.rip = at;
                    resume = Resume::Continue(libc::SIGSEGV);
                }
            }
        }
        match ptrace::write_changed_registers(tid, as_read, &regs) {
            Ok(()) | Err(Errno::ESRCH) => {}
            Err(errno) => tracing::error!(tid, %errno, "cannot move a thread past a breakpoint"),
        }
        resume
    }

    /// Resumes the threads held at hits whose readers released them, and
    /// lets go of those held past `HELD_HIT_DEADLINE` (their readers' later
    /// reads fail). Called every turn; a release rings the doorbell.
    pub(super) fn serve_held_stops(&mut self, now: Instant) {
        let mut ready: Vec<(i32, HeldStop)> = Vec::new();
        for (&pid, target) in self.processes.iter_mut() {
            let held = &mut target.space.breakpoints.held_stops;
            if held.is_empty() {
                continue;
            }
            let mut index = 0;
            while index < held.len() {
                let stop = &held[index];
                if stop.released() {
                    ready.push((pid, held.swap_remove(index)));
                } else if stop.deadline <= now || self.orphaned {
                    // Orphaned: the reader was liveprobe's and is dead.
                    stop.let_go(LetGo::TookTooLong);
                    tracing::debug!(
                        pid,
                        tid = stop.tid,
                        "a hit's reader did not release its thread in time; it was let go"
                    );
                    ready.push((pid, held.swap_remove(index)));
                } else {
                    index += 1;
                }
            }
        }
        for (pid, mut stop) in ready {
            let resume = self.step_past(pid, stop.tid, &stop.as_read, stop.address);
            let tid = stop.tid;
            if let Some(copied) = stop.copied.take()
                && let Some(target) = self.processes.get_mut(pid)
            {
                target.space.breakpoints.copied_hits.push(copied);
            }
            // Captures waiting for it are served, then it goes on (or is
            // detached, its process being detached).
            self.finish_stop(pid, tid, resume);
        }
    }

    /// The earliest deadline of a held thread, for the loop's sleep.
    pub(super) fn held_deadline(&self) -> Option<Instant> {
        self.processes
            .iter()
            .flat_map(|(_, target)| target.space.breakpoints.held_stops.iter())
            .map(|stop| stop.deadline)
            .min()
    }

    /// A wait event of `tid`: a thread held at a hit reports one only when
    /// it left that stop (killed), so it is no longer ours to resume.
    pub(super) fn forget_held_stop(&mut self, tid: i32) {
        for (_, target) in self.processes.iter_mut() {
            let held = &mut target.space.breakpoints.held_stops;
            // Dropping it lets its readers' tokens go.
            held.retain(|stop| stop.tid != tid);
        }
    }

    /// Calls the handlers of the hits of `pid` copied at a stop whose
    /// thread has been resumed since: they work on the copy while the
    /// thread runs on.
    pub(super) fn deliver_copied_hits(&mut self, pid: i32) {
        let resumed = Instant::now();
        let Some(target) = self.processes.get_mut(pid) else {
            return;
        };
        if target.space.breakpoints.copied_hits.is_empty() {
            return;
        }
        let hits = std::mem::take(&mut target.space.breakpoints.copied_hits);
        if self.orphaned || self.liveprobe.check() {
            std::mem::forget(hits);
            return;
        }
        let mut remove_groups: Vec<u64> = Vec::new();
        for copied in hits {
            let held = copied.held(resumed);
            let Some(site) = target.space.breakpoints.sites.get_mut(&copied.address) else {
                continue;
            };
            for (id, memory, copying) in copied.copies {
                let Some(armed) = site.handlers.iter_mut().find(|a| a.id == id) else {
                    continue;
                };
                let hit = CopiedHitContext {
                    pid,
                    tid: copied.tid,
                    address: copied.address,
                    regs: copied.regs,
                    fs_base: Some(copied.regs.fs_base),
                    memory,
                    monotonic_ns: copied.monotonic_ns,
                    time: copied.time,
                    held: Some(held),
                    copying: Some(copying),
                };
                match catch_unwind(AssertUnwindSafe(|| armed.handler.on_copied_hit(hit))) {
                    Ok(HitVerdict::Keep) => {}
                    Ok(HitVerdict::RemoveGroup) => remove_groups.push(armed.group),
                    Err(_) => {
                        tracing::error!(
                            group = armed.group,
                            "a breakpoint handler panicked; its group is removed"
                        );
                        remove_groups.push(armed.group);
                    }
                }
            }
        }
        remove_groups.sort_unstable();
        remove_groups.dedup();
        for group in remove_groups {
            self.remove_group(pid, group);
        }
    }

    // ----- detach ------------------------------------------------------

    /// Called when a thread of a detaching target stopped, before it is
    /// detached: false if it must pass through another stop first (a trap
    /// of ours is still pending for it). Moves a thread out of a trampoline
    /// and, when it is the last thread, unmaps the scratch pages through it.
    pub(super) fn ready_to_detach(&mut self, pid: i32, tid: i32, signal: i32) -> bool {
        let Some(target) = self.processes.get_mut(pid) else {
            return true;
        };
        if !target.space.breakpoints.in_use() {
            return true;
        }
        let last_stop = target.threads.get(&tid).and_then(|t| t.last_stop);
        let exiting = target.threads.get(&tid).is_some_and(|t| t.exiting);
        // A synchronous SIGTRAP is delivered before any job-control stop,
        // so a group-stopped thread has none pending (and must not be
        // resumed out of its stop).
        let group_stopped = matches!(last_stop, Some(WaitEvent::GroupStop(_)));
        if !exiting
            && !group_stopped
            && last_stop != Some(WaitEvent::Signal(libc::SIGTRAP))
            && sigtrap_pending(tid)
        {
            // Detached now, it would die of that SIGTRAP: let it report it.
            match ptrace::cont(tid, signal) {
                Ok(()) => {
                    let _ = ptrace::interrupt(tid);
                    return false;
                }
                Err(_) => return true,
            }
        }
        if let Ok(mut regs) = ptrace::registers(tid)
            && let Some(translated) = target.space.breakpoints.scratch.translate(regs.rip)
        {
            regs.rip = translated.pc();
            let _ = ptrace::set_registers(tid, &regs);
        }
        let last = target.threads.len() == 1;
        if last
            && !exiting
            && !group_stopped
            && last_stop != Some(WaitEvent::InterruptStop)
            && !target.space.breakpoints.scratch.pages.is_empty()
            && target.space.breakpoints.syscall_instruction.is_some()
        {
            // A syscall can be injected only from an interrupt stop (a
            // capture's or a hit's stop would eat or confuse its signal):
            // let the thread pass through one, delivering what it carried,
            // as the detach itself would.
            match ptrace::cont(tid, signal) {
                Ok(()) => {
                    let _ = ptrace::interrupt(tid);
                    return false;
                }
                Err(_) => return true,
            }
        }
        if last
            && !exiting
            && last_stop == Some(WaitEvent::InterruptStop)
            && !target.space.breakpoints.scratch.pages.is_empty()
            && let Some(syscall_instruction) = target.space.breakpoints.syscall_instruction
        {
            // Every other thread is detached outside the scratch pages and
            // no int3 can send one back: they can go.
            let pages = target.space.breakpoints.take_scratch_pages();
            for page in pages {
                let result = inject::remote_syscall(
                    pid,
                    tid,
                    syscall_instruction,
                    libc::SYS_munmap,
                    [page, SCRATCH_PAGE_SIZE, 0, 0, 0, 0],
                );
                match result {
                    Ok(0) => tracing::debug!(pid, page, "scratch page unmapped"),
                    Ok(error) => {
                        tracing::warn!(
                            pid,
                            page,
                            error,
                            "cannot unmap a scratch page; it stays (harmless)"
                        )
                    }
                    Err(InjectError::Failed(why)) => {
                        tracing::warn!(pid, page, %why, "cannot unmap a scratch page; it stays (harmless)")
                    }
                    Err(InjectError::Interrupted(event)) => {
                        // The thread is going away; handle that normally.
                        self.on_wait_status(tid, event);
                        return false;
                    }
                }
            }
        }
        true
    }
}
