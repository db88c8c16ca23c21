//! Thin, typed wrappers over the ptrace requests the tracer thread makes, and
//! the decoding of wait statuses. Only the tracer thread may call these
//! (ptrace requests must come from the thread that attached).

use nix::errno::Errno;

/// Options set on every seized thread. TRACEVFORKDONE is not needed: a
/// vfork child is followed until it execs or exits instead (it shares the
/// parent's memory and breakpoints). TRACESYSGOOD marks the syscall-stops
/// of a system call we inject (the only syscall-stops we ever ask for).
/// EXITKILL is never set: we attach to production processes that must
/// outlive us.
pub(super) const SEIZE_OPTIONS: libc::c_int = libc::PTRACE_O_TRACECLONE
    | libc::PTRACE_O_TRACEEXEC
    | libc::PTRACE_O_TRACEEXIT
    | libc::PTRACE_O_TRACEFORK
    | libc::PTRACE_O_TRACEVFORK
    | libc::PTRACE_O_TRACESYSGOOD;

/// `si_code` of a SIGTRAP raised by an `int3` on x86-64.
pub(super) const SI_KERNEL: i32 = 0x80;
/// `si_code` of a SIGTRAP raised by a software breakpoint (other kernels).
pub(super) const TRAP_BRKPT: i32 = 1;

fn request(
    request: libc::c_uint,
    tid: i32,
    addr: usize,
    data: usize,
) -> Result<libc::c_long, Errno> {
    Errno::clear();
    // SAFETY: the requests used in this module either take no pointers or
    // take a pointer to a properly sized, writable local (see callers).
    let result = unsafe {
        libc::ptrace(
            request,
            tid as libc::pid_t,
            addr as *mut libc::c_void,
            data as *mut libc::c_void,
        )
    };
    if result == -1 {
        let errno = Errno::last();
        // PEEK-style requests may legitimately return -1; none are used here.
        if errno != Errno::UnknownErrno {
            return Err(errno);
        }
    }
    Ok(result)
}

/// PTRACE_SEIZE with our options: attaches without stopping the thread.
pub(super) fn seize(tid: i32) -> Result<(), Errno> {
    request(libc::PTRACE_SEIZE, tid, 0, SEIZE_OPTIONS as usize).map(drop)
}

/// PTRACE_INTERRUPT: ask a running (or listening) thread to stop; the stop
/// is reported later through wait as a PTRACE_EVENT_STOP.
pub(super) fn interrupt(tid: i32) -> Result<(), Errno> {
    request(libc::PTRACE_INTERRUPT, tid, 0, 0).map(drop)
}

/// PTRACE_CONT, delivering `signal` (0 for none).
pub(super) fn cont(tid: i32, signal: i32) -> Result<(), Errno> {
    request(libc::PTRACE_CONT, tid, 0, signal as usize).map(drop)
}

/// PTRACE_LISTEN: leave a thread in its group-stop (job control) while still
/// letting it report the next event, e.g. SIGCONT.
pub(super) fn listen(tid: i32) -> Result<(), Errno> {
    request(libc::PTRACE_LISTEN, tid, 0, 0).map(drop)
}

/// PTRACE_DETACH, delivering `signal` (0 for none). The thread must be in a
/// ptrace-stop.
pub(super) fn detach(tid: i32, signal: i32) -> Result<(), Errno> {
    request(libc::PTRACE_DETACH, tid, 0, signal as usize).map(drop)
}

/// PTRACE_GETEVENTMSG: the new tid for clone/fork, the former tid for exec,
/// the exit status for exit.
pub(super) fn event_message(tid: i32) -> Result<u64, Errno> {
    let mut message: libc::c_ulong = 0;
    request(
        libc::PTRACE_GETEVENTMSG,
        tid,
        0,
        &mut message as *mut libc::c_ulong as usize,
    )?;
    Ok(message)
}

/// PTRACE_GETREGS: all general registers, including fs_base and gs_base.
pub(super) fn registers(tid: i32) -> Result<libc::user_regs_struct, Errno> {
    // SAFETY: user_regs_struct is plain integers; all-zero is a valid value.
    let mut regs: libc::user_regs_struct = unsafe { std::mem::zeroed() };
    request(
        libc::PTRACE_GETREGS,
        tid,
        0,
        &mut regs as *mut libc::user_regs_struct as usize,
    )?;
    Ok(regs)
}

/// PTRACE_SETREGS: write all general registers.
pub(super) fn set_registers(tid: i32, regs: &libc::user_regs_struct) -> Result<(), Errno> {
    request(
        libc::PTRACE_SETREGS,
        tid,
        0,
        regs as *const libc::user_regs_struct as usize,
    )
    .map(drop)
}

/// PTRACE_POKEUSER of one general register (`offset` into user_regs_struct).
fn set_register(tid: i32, offset: usize, value: u64) -> Result<(), Errno> {
    request(libc::PTRACE_POKEUSER, tid, offset, value as usize).map(drop)
}

/// Write the registers of a stopped thread that differ between `before`
/// (as read) and `after`. A hit changes only rip (and rsp or rcx for an
/// emulated call, return or loop): one PTRACE_POKEUSER each is much cheaper
/// than PTRACE_SETREGS, which copies all 27 registers in one by one.
pub(super) fn write_changed_registers(
    tid: i32,
    before: &libc::user_regs_struct,
    after: &libc::user_regs_struct,
) -> Result<(), Errno> {
    let mut only_pokable = *after;
    only_pokable.rip = before.rip;
    only_pokable.rsp = before.rsp;
    only_pokable.rcx = before.rcx;
    if !same_registers(&only_pokable, before) {
        return set_registers(tid, after);
    }
    if after.rcx != before.rcx {
        set_register(
            tid,
            std::mem::offset_of!(libc::user_regs_struct, rcx),
            after.rcx,
        )?;
    }
    if after.rsp != before.rsp {
        set_register(
            tid,
            std::mem::offset_of!(libc::user_regs_struct, rsp),
            after.rsp,
        )?;
    }
    if after.rip != before.rip {
        set_register(
            tid,
            std::mem::offset_of!(libc::user_regs_struct, rip),
            after.rip,
        )?;
    }
    Ok(())
}

fn same_registers(a: &libc::user_regs_struct, b: &libc::user_regs_struct) -> bool {
    let words = |r: &libc::user_regs_struct| {
        [
            r.r15, r.r14, r.r13, r.r12, r.rbp, r.rbx, r.r11, r.r10, r.r9, r.r8, r.rax, r.rcx,
            r.rdx, r.rsi, r.rdi, r.orig_rax, r.rip, r.cs, r.eflags, r.rsp, r.ss, r.fs_base,
            r.gs_base, r.ds, r.es, r.fs, r.gs,
        ]
    };
    words(a) == words(b)
}

/// PTRACE_SYSCALL: resume until the next system-call entry or exit.
pub(super) fn resume_to_syscall(tid: i32, signal: i32) -> Result<(), Errno> {
    request(libc::PTRACE_SYSCALL, tid, 0, signal as usize).map(drop)
}

/// PTRACE_GETSIGINFO: `si_code` of the signal a thread is stopped for.
pub(super) fn signal_code(tid: i32) -> Result<i32, Errno> {
    // SAFETY: siginfo_t is plain data; all-zero is a valid value.
    let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
    request(
        libc::PTRACE_GETSIGINFO,
        tid,
        0,
        &mut info as *mut libc::siginfo_t as usize,
    )?;
    Ok(info.si_code)
}

/// A wait status, decoded for a seized tracee.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum WaitEvent {
    /// The thread exited with this code.
    Exited(i32),
    /// The thread was killed by this signal.
    Killed(i32),
    /// Signal-delivery-stop: the thread is about to receive `signal`.
    Signal(i32),
    /// Group-stop (job control) under SEIZE: PTRACE_EVENT_STOP with a stopping signal.
    GroupStop(i32),
    /// PTRACE_EVENT_STOP with SIGTRAP: our PTRACE_INTERRUPT, or the first stop
    /// of a freshly auto-attached thread or process.
    InterruptStop,
    /// PTRACE_EVENT_CLONE / FORK / VFORK / EXEC / EXIT / VFORK_DONE.
    Event(PtraceEvent),
    /// Syscall-entry or -exit stop (PTRACE_SYSCALL with TRACESYSGOOD): only
    /// while we inject a system call.
    SyscallStop,
    /// Anything else (not expected with our options).
    Other(i32),
}

/// The ptrace events we ask for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum PtraceEvent {
    Clone,
    Fork,
    Vfork,
    VforkDone,
    Exec,
    Exit,
}

/// Decode a status returned by waitpid.
pub(super) fn decode(status: i32) -> WaitEvent {
    if libc::WIFEXITED(status) {
        return WaitEvent::Exited(libc::WEXITSTATUS(status));
    }
    if libc::WIFSIGNALED(status) {
        return WaitEvent::Killed(libc::WTERMSIG(status));
    }
    if !libc::WIFSTOPPED(status) {
        return WaitEvent::Other(status);
    }
    let signal = libc::WSTOPSIG(status);
    let event = status >> 16;
    match event {
        0 if signal == libc::SIGTRAP | 0x80 => WaitEvent::SyscallStop,
        0 => WaitEvent::Signal(signal),
        libc::PTRACE_EVENT_STOP => match signal {
            libc::SIGSTOP | libc::SIGTSTP | libc::SIGTTIN | libc::SIGTTOU => {
                WaitEvent::GroupStop(signal)
            }
            _ => WaitEvent::InterruptStop,
        },
        libc::PTRACE_EVENT_CLONE => WaitEvent::Event(PtraceEvent::Clone),
        libc::PTRACE_EVENT_FORK => WaitEvent::Event(PtraceEvent::Fork),
        libc::PTRACE_EVENT_VFORK => WaitEvent::Event(PtraceEvent::Vfork),
        libc::PTRACE_EVENT_VFORK_DONE => WaitEvent::Event(PtraceEvent::VforkDone),
        libc::PTRACE_EVENT_EXEC => WaitEvent::Event(PtraceEvent::Exec),
        libc::PTRACE_EVENT_EXIT => WaitEvent::Event(PtraceEvent::Exit),
        _ => WaitEvent::Other(status),
    }
}

/// A signal's name ("SIGSEGV"), or "signal N" for numbers without one.
pub(super) fn signal_name(signal: i32) -> String {
    match nix::sys::signal::Signal::try_from(signal) {
        Ok(known) => known.as_str().to_string(),
        Err(_) => format!("signal {signal}"),
    }
}
