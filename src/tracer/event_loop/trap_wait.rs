//! How the loop waits while traps come often: blocked in `waitpid` rather
//! than in `poll` on its doorbell. The stopping thread (a ptrace watch's
//! writer, a thread at an int3 of a probe) then wakes the tracer directly:
//! a synchronous wake-up, which the scheduler answers by running the
//! tracer on that thread's CPU, not through a SIGCHLD handler ringing the
//! doorbell from another CPU. On a VM each cross-CPU wake-up is an IPI
//! with a VM exit, and that path is most of a ptrace trap's cost. SIGCHLD is
//! blocked meanwhile and a 1 ms SIGALRM ends each wait, so commands,
//! deadlines and liveprobe's end are seen within a millisecond or two; a
//! tick with no trap ends the mode, and two traps within a tick start it.
//! SIGALRM is unblocked only around the blocking waitpid: nothing else the
//! tracer calls ever sees the alarm (no EINTR, no EAGAIN of the BPF
//! verifier, which gives up when a signal is pending). A thread held at a
//! hit is released through the doorbell: while one is held the loop sleeps
//! in poll as usual.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use nix::errno::Errno;

use super::super::doorbell;
use super::super::ptrace;
use super::TracerLoop;

/// The period of the alarm that ends a blocking wait for the next trap:
/// about the longest a command or a deadline waits while traps come, and
/// how long without a trap ends the blocking waits.
const TRAP_WAIT_TICK: Duration = Duration::from_millis(1);

/// Set by the alarm's handler; taken by the wait.
static TICKED: AtomicBool = AtomicBool::new(false);

/// The tracer's blocking waits for the traps of busy sites (see the
/// module's doc).
#[derive(Default)]
pub(super) struct TrapWait {
    /// A trap (a watch's or an int3's) since the last tick, while waiting
    /// blocked (or a second trap within a tick, to start).
    trapped: bool,
    /// When the last trap was handled.
    last_trap: Option<Instant>,
    /// Waiting blocked in waitpid: SIGCHLD blocked, the alarm ticking.
    active: bool,
    /// The SIGALRM handler is installed in this task (SIGALRM blocked but
    /// around the wait).
    alarm_ready: bool,
}

/// Only marks the tick: its delivery interrupts the blocking waitpid (it is
/// installed without SA_RESTART).
extern "C" fn on_trap_wait_alarm(_: libc::c_int) {
    TICKED.store(true, Ordering::Relaxed);
}

/// Sets the calling task's ITIMER_REAL to `period` (zero: stopped). The
/// tracer is a process of its own, so the alarm is its alone.
fn set_alarm(period: Duration) -> bool {
    let tick = libc::timeval {
        tv_sec: period.as_secs() as libc::time_t,
        tv_usec: period.subsec_micros() as libc::suseconds_t,
    };
    let timer = libc::itimerval {
        it_interval: tick,
        it_value: tick,
    };
    // SAFETY: a valid itimerval on the stack; no old value asked for.
    unsafe { libc::setitimer(libc::ITIMER_REAL, &timer, std::ptr::null_mut()) == 0 }
}

/// Blocks (`how` = SIG_BLOCK) or unblocks `signal` in the calling task.
fn mask_signal(how: libc::c_int, signal: libc::c_int) -> bool {
    // SAFETY: plain signal-mask manipulation of the calling task only.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, signal);
        libc::pthread_sigmask(how, &set, std::ptr::null_mut()) == 0
    }
}

impl TrapWait {
    /// A trap of ours was just handled. One alone does not make traps come
    /// often (a probe hit every few ms would only add alarm wake-ups): a
    /// second within a tick starts the blocking waits, and any trap while
    /// they last keeps them.
    pub(super) fn trapped(&mut self) {
        let now = Instant::now();
        if self.active
            || self
                .last_trap
                .is_some_and(|last| now.duration_since(last) <= TRAP_WAIT_TICK)
        {
            self.trapped = true;
        }
        self.last_trap = Some(now);
    }

    /// Enters the blocking waits: false (and nothing changed) if this task
    /// cannot have its alarm.
    fn begin(&mut self) -> bool {
        if !self.alarm_ready {
            // Blocked first: the alarm must never reach anything but the wait.
            if !mask_signal(libc::SIG_BLOCK, libc::SIGALRM) {
                return false;
            }
            // SAFETY: sigaction with a zeroed struct filled in below; the
            // handler only stores to an atomic. The tracer task has a
            // signal handler table of its own (it is cloned without
            // CLONE_SIGHAND), so liveprobe's SIGALRM is untouched.
            let installed = unsafe {
                let mut action: libc::sigaction = std::mem::zeroed();
                action.sa_sigaction = on_trap_wait_alarm as *const () as usize;
                action.sa_flags = 0;
                libc::sigemptyset(&mut action.sa_mask);
                libc::sigaction(libc::SIGALRM, &action, std::ptr::null_mut()) == 0
            };
            if !installed {
                return false;
            }
            self.alarm_ready = true;
        }
        if !set_alarm(TRAP_WAIT_TICK) {
            return false;
        }
        // A stop must wake the blocked waitpid, not a signal handler first.
        if !mask_signal(libc::SIG_BLOCK, libc::SIGCHLD) {
            set_alarm(Duration::ZERO);
            return false;
        }
        self.active = true;
        true
    }

    /// Back to sleeping in poll: the alarm stops, and a SIGCHLD that came
    /// meanwhile is handled now (it rings the doorbell, so the poll that
    /// follows sees the event at once).
    pub(super) fn end(&mut self) {
        if self.active {
            set_alarm(Duration::ZERO);
            TICKED.store(false, Ordering::Relaxed);
            doorbell::unblock_sigchld_in_this_thread();
            self.active = false;
        }
    }
}

impl Drop for TrapWait {
    fn drop(&mut self) {
        self.end();
    }
}

/// One blocking `waitpid` for any tracee, interruptible by the alarm only
/// for its own duration. None: the alarm ticked (or no tracee is left,
/// `ECHILD`, then Some(Err)).
fn wait_until_tick() -> Option<Result<(i32, i32), Errno>> {
    mask_signal(libc::SIG_UNBLOCK, libc::SIGALRM);
    // A tick while SIGALRM was blocked was handled just now: no waiting.
    let outcome = if TICKED.swap(false, Ordering::Relaxed) {
        None
    } else {
        let mut status = 0;
        // SAFETY: plain waitpid into a local.
        let tid = unsafe { libc::waitpid(-1, &mut status, libc::__WALL | libc::__WNOTHREAD) };
        match tid {
            tid if tid > 0 => Some(Ok((tid, status))),
            _ => match Errno::last() {
                Errno::EINTR => None,
                errno => Some(Err(errno)),
            },
        }
    };
    mask_signal(libc::SIG_BLOCK, libc::SIGALRM);
    if outcome.is_none() {
        TICKED.store(false, Ordering::Relaxed);
    }
    outcome
}

impl TracerLoop {
    /// Instead of the loop's poll: while traps come often, blocks in
    /// waitpid for the next tracee event (at most until the next alarm
    /// tick) and handles it. False: not now (no recent traps, a deadline
    /// nearer than a tick, a thread held at a hit), sleep as usual.
    pub(super) fn wait_for_next_trap(&mut self, timeout: Duration) -> bool {
        if timeout < TRAP_WAIT_TICK || self.held_deadline().is_some() {
            self.trap_wait.end();
            return false;
        }
        // Entered at a trap; left at a tick with no trap since the last.
        if !self.trap_wait.active
            && (!std::mem::take(&mut self.trap_wait.trapped) || !self.trap_wait.begin())
        {
            return false;
        }
        match wait_until_tick() {
            Some(Ok((tid, status))) => {
                self.on_wait_status(tid, ptrace::decode(status));
                return true;
            }
            // The alarm: a tick with a trap since the last one goes on.
            None if std::mem::take(&mut self.trap_wait.trapped) => return true,
            // A tick with no trap, or no tracee left (ECHILD).
            _ => {}
        }
        self.trap_wait.end();
        true
    }
}
