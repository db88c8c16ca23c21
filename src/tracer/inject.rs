//! System calls made *by* a target thread on liveprobe's behalf: `mmap` of a
//! scratch page when the first breakpoint needs one, `munmap` of it when
//! the last breakpoint is gone at detach.
//!
//! How: the thread is already in a ptrace-stop; its registers are saved, set
//! up for the call with `rip` at a `syscall` instruction found in the
//! target's own code (the vDSO has one), and it is resumed with
//! PTRACE_SYSCALL until the call's exit stop; then its registers are put
//! back. `orig_rax = -1` keeps the kernel from applying system-call restart
//! logic to our registers; if the thread had been interrupted inside a
//! system call that must restart, the restart is done by hand when the
//! registers are put back (the kernel would have done it on the way out of
//! the stop we borrowed).
//!
//! Must never: leave a thread with our registers, swallow a signal that
//! arrives meanwhile (it is re-sent when we are done), or be used for
//! anything but memory mappings of our own.

use std::thread;
use std::time::{Duration, Instant};

use nix::errno::Errno;

use super::memory::ProcessMemory;
use super::ptrace::{self, PtraceEvent, WaitEvent};
use super::scratch::Mapping;

const ERESTARTSYS: i64 = 512;
const ERESTARTNOINTR: i64 = 513;
const ERESTARTNOHAND: i64 = 514;
const ERESTART_RESTARTBLOCK: i64 = 516;

/// Why an injected system call did not complete.
#[derive(Debug)]
pub(super) enum InjectError {
    /// It could not be made; the thread is in a ptrace-stop with its own
    /// registers back and must be resumed without a signal.
    Failed(String),
    /// The thread stopped for something that must be handled normally
    /// (exit, or an event); its registers are back when it still exists.
    Interrupted(WaitEvent),
}

/// Make system call `nr` with `args` in `tid` (of process `pid`), which must
/// be in a ptrace-stop (an interrupt stop is best). Returns the call's
/// result (negative errno on failure). The thread is left in a ptrace-stop
/// with its own registers.
pub(super) fn remote_syscall(
    pid: i32,
    tid: i32,
    syscall_instruction: u64,
    nr: i64,
    args: [u64; 6],
) -> Result<i64, InjectError> {
    let saved = ptrace::registers(tid)
        .map_err(|errno| InjectError::Failed(format!("cannot read registers: {errno}")))?;
    let mut regs = saved;
    regs.rip = syscall_instruction;
    regs.rax = nr as u64;
    regs.orig_rax = u64::MAX;
    regs.rdi = args[0];
    regs.rsi = args[1];
    regs.rdx = args[2];
    regs.r10 = args[3];
    regs.r8 = args[4];
    regs.r9 = args[5];
    ptrace::set_registers(tid, &regs)
        .map_err(|errno| InjectError::Failed(format!("cannot set registers: {errno}")))?;
    let restore = |tid: i32| {
        let _ = ptrace::set_registers(tid, &restored_registers(&saved));
    };
    let mut deferred_signals = Vec::new();
    let mut entered = false;
    let mut resume_signal_check = ptrace::resume_to_syscall(tid, 0);
    let result = loop {
        if let Err(errno) = resume_signal_check {
            restore(tid);
            return Err(InjectError::Failed(format!(
                "cannot resume the thread: {errno}"
            )));
        }
        let event = match wait_blocking(tid) {
            Ok(event) => event,
            Err(errno) => {
                restore(tid);
                return Err(InjectError::Failed(format!(
                    "waiting for the thread: {errno}"
                )));
            }
        };
        match event {
            WaitEvent::SyscallStop if !entered => {
                entered = true;
                resume_signal_check = ptrace::resume_to_syscall(tid, 0);
            }
            WaitEvent::SyscallStop => match ptrace::registers(tid) {
                Ok(after) => break after.rax as i64,
                Err(errno) => {
                    restore(tid);
                    return Err(InjectError::Failed(format!(
                        "cannot read the result: {errno}"
                    )));
                }
            },
            WaitEvent::Signal(
                signal @ (libc::SIGSEGV | libc::SIGBUS | libc::SIGILL | libc::SIGFPE),
            ) => {
                // A fault of our own making: the thread sits in the signal
                // stop; resuming it with no signal discards the fault.
                restore(tid);
                return Err(InjectError::Failed(format!(
                    "the injected system call faulted ({})",
                    ptrace::signal_name(signal)
                )));
            }
            WaitEvent::Signal(signal) => {
                deferred_signals.push(signal);
                resume_signal_check = ptrace::resume_to_syscall(tid, 0);
            }
            WaitEvent::InterruptStop | WaitEvent::GroupStop(_) | WaitEvent::Other(_) => {
                resume_signal_check = ptrace::resume_to_syscall(tid, 0);
            }
            WaitEvent::Exited(_) | WaitEvent::Killed(_) => {
                return Err(InjectError::Interrupted(event));
            }
            WaitEvent::Event(_) => {
                restore(tid);
                return Err(InjectError::Interrupted(event));
            }
        }
    };
    restore(tid);
    for signal in deferred_signals {
        // SAFETY: tgkill has no memory-safety preconditions.
        unsafe { libc::syscall(libc::SYS_tgkill, pid, tid, signal) };
    }
    Ok(result)
}

/// The thread's own registers, with an interrupted system call set up to
/// restart the way the kernel would have restarted it had we not borrowed
/// the stop.
fn restored_registers(saved: &libc::user_regs_struct) -> libc::user_regs_struct {
    let mut regs = *saved;
    if (saved.orig_rax as i64) >= 0 {
        match -(saved.rax as i64) {
            ERESTARTSYS | ERESTARTNOINTR | ERESTARTNOHAND => {
                regs.rax = saved.orig_rax;
                regs.rip = saved.rip.wrapping_sub(2);
                regs.orig_rax = u64::MAX;
            }
            ERESTART_RESTARTBLOCK => {
                regs.rax = libc::SYS_restart_syscall as u64;
                regs.rip = saved.rip.wrapping_sub(2);
                regs.orig_rax = u64::MAX;
            }
            _ => {}
        }
    }
    regs
}

/// Wait for the next stop of `tid`. Blocking: used only while the thread
/// runs our injected call, which never blocks for long, and must not be
/// abandoned with our registers in it.
fn wait_blocking(tid: i32) -> Result<WaitEvent, Errno> {
    loop {
        let mut status = 0;
        // SAFETY: plain waitpid into a local.
        let reaped = unsafe { libc::waitpid(tid, &mut status, libc::__WALL) };
        if reaped == tid {
            return Ok(ptrace::decode(status));
        }
        match Errno::last() {
            Errno::EINTR => continue,
            errno => return Err(errno),
        }
    }
}

/// Wait up to `deadline` for the next stop of `tid`, without blocking the
/// tracer for long on a thread that does not stop (uninterruptible sleep).
pub(super) fn wait_until(tid: i32, deadline: Instant) -> Result<Option<WaitEvent>, Errno> {
    let mut pause = Duration::from_micros(5);
    loop {
        let mut status = 0;
        // SAFETY: plain waitpid into a local.
        let reaped = unsafe { libc::waitpid(tid, &mut status, libc::__WALL | libc::WNOHANG) };
        if reaped == tid {
            return Ok(Some(ptrace::decode(status)));
        }
        if reaped < 0 {
            match Errno::last() {
                Errno::EINTR => continue,
                errno => return Err(errno),
            }
        }
        if Instant::now() >= deadline {
            return Ok(None);
        }
        thread::sleep(pause);
        pause = (pause * 2).min(Duration::from_millis(1));
    }
}

/// Whether an event ends the thread's ability to make a call for us.
pub(super) fn is_exit(event: &WaitEvent) -> bool {
    matches!(
        event,
        WaitEvent::Exited(_) | WaitEvent::Killed(_) | WaitEvent::Event(PtraceEvent::Exit)
    )
}

/// The address of a `syscall` instruction (`0f 05`) in the target's code:
/// in the vDSO if there is one, else in any executable mapping.
pub(super) fn find_syscall_instruction(memory: &ProcessMemory, maps: &[Mapping]) -> Option<u64> {
    let vdso_first = maps
        .iter()
        .filter(|m| m.executable && m.path == "[vdso]")
        .chain(maps.iter().filter(|m| m.executable && m.path != "[vdso]"));
    for mapping in vdso_first {
        // The first 64 KiB of a mapping is plenty to find one.
        let len = (mapping.end - mapping.start).min(64 * 1024) as usize;
        let mut bytes = vec![0u8; len];
        if memory.read(mapping.start, &mut bytes).is_err() {
            continue;
        }
        if let Some(offset) = bytes.windows(2).position(|w| w == [0x0f, 0x05]) {
            return Some(mapping.start + offset as u64);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn interrupted_system_calls_restart_when_registers_are_restored() {
        // SAFETY: plain integers; zero is valid.
        let mut saved: libc::user_regs_struct = unsafe { std::mem::zeroed() };
        saved.orig_rax = 0; // read
        saved.rax = (-ERESTARTSYS) as u64;
        saved.rip = 0x1002;
        let regs = restored_registers(&saved);
        assert_eq!((regs.rax, regs.rip), (0, 0x1000));

        saved.orig_rax = libc::SYS_nanosleep as u64;
        saved.rax = (-ERESTART_RESTARTBLOCK) as u64;
        let regs = restored_registers(&saved);
        assert_eq!(regs.rax, libc::SYS_restart_syscall as u64);

        // Not in a system call: exactly as saved.
        saved.orig_rax = u64::MAX;
        saved.rax = 42;
        let regs = restored_registers(&saved);
        assert_eq!((regs.rax, regs.rip), (42, 0x1002));
    }
}
