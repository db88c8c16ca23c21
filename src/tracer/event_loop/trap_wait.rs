//! How the loop waits while traps come often: blocked in `waitpid` rather
//! than in `poll` on its doorbell. The stopping thread (a ptrace watch's
//! writer, a thread at an int3 of a probe) then wakes the tracer directly:
//! a synchronous wake-up, which the scheduler answers by running the
//! tracer on that thread's CPU, not through a SIGCHLD handler ringing the
//! doorbell from another CPU. On a VM each cross-CPU wake-up is an IPI
//! with a VM exit, and that path is most of a ptrace trap's cost. SIGCHLD is
//! blocked meanwhile and a 1 ms SIGALRM ends each wait, so commands,
//! deadlines and liveprobe's end are seen within a millisecond; a tick with
//! no trap ends the mode. A thread held at a hit is released through the
//! doorbell: while one is held the loop sleeps in poll as usual.

use std::time::Duration;

use nix::errno::Errno;

use super::super::doorbell;
use super::super::ptrace;
use super::TracerLoop;

/// The period of the alarm that ends a blocking wait for a watch's next
/// trap: the longest a command or a deadline waits while a watch is busy,
/// and how long without a trap ends the blocking waits.
const TRAP_WAIT_TICK: Duration = Duration::from_millis(1);

/// The tracer's blocking waits for the traps of busy sites (see the
/// module's doc).
#[derive(Default)]
pub(super) struct TrapWait {
    /// A trap (a watch's or an int3's) since the last alarm.
    trapped: bool,
    /// Waiting blocked in waitpid: SIGCHLD blocked, the alarm ticking.
    active: bool,
    /// The SIGALRM handler is installed and SIGALRM unblocked in this task.
    alarm_ready: bool,
}

/// Does nothing: SIGALRM only has to interrupt the blocking waitpid (it is
/// installed without SA_RESTART).
extern "C" fn on_trap_wait_alarm(_: libc::c_int) {}

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
    /// A trap of ours was just handled: traps come, wait for the next one
    /// in waitpid.
    pub(super) fn trapped(&mut self) {
        self.trapped = true;
    }

    /// Enters the blocking waits: false (and nothing changed) if this task
    /// cannot have its alarm.
    fn begin(&mut self) -> bool {
        if !self.alarm_ready {
            // SAFETY: sigaction with a zeroed struct filled in below; the
            // handler does nothing. The tracer task has a signal handler
            // table of its own (it is cloned without CLONE_SIGHAND), so
            // liveprobe's SIGALRM is untouched.
            let installed = unsafe {
                let mut action: libc::sigaction = std::mem::zeroed();
                action.sa_sigaction = on_trap_wait_alarm as *const () as usize;
                action.sa_flags = 0;
                libc::sigemptyset(&mut action.sa_mask);
                libc::sigaction(libc::SIGALRM, &action, std::ptr::null_mut()) == 0
            };
            if !installed || !mask_signal(libc::SIG_UNBLOCK, libc::SIGALRM) {
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
            doorbell::unblock_sigchld_in_this_thread();
            self.active = false;
        }
    }
}

impl TracerLoop {
    /// Instead of the loop's poll: while traps come often, blocks in
    /// waitpid for the next tracee event (at most until the next alarm
    /// tick) and handles it. False: not now (no recent trap, a deadline
    /// nearer than a tick, a thread held at a hit), sleep as usual.
    pub(super) fn wait_for_next_trap(&mut self, timeout: Duration) -> bool {
        if timeout < TRAP_WAIT_TICK || self.held_deadline().is_some() {
            self.trap_wait.end();
            return false;
        }
        // Entered at a trap; left at a tick with no trap since the last.
        if !self.trap_wait.active {
            if !self.trap_wait.trapped {
                return false;
            }
            if !self.trap_wait.begin() {
                // Not this time; the next trap tries again.
                self.trap_wait.trapped = false;
                return false;
            }
        }
        let mut status = 0;
        // SAFETY: plain waitpid into a local.
        let tid = unsafe { libc::waitpid(-1, &mut status, libc::__WALL | libc::__WNOTHREAD) };
        if tid > 0 {
            self.on_wait_status(tid, ptrace::decode(status));
            return true;
        }
        // The alarm (EINTR), or no tracee left (ECHILD): a tick with no
        // trap since the last one ends the blocking waits.
        if Errno::last() == Errno::EINTR && std::mem::take(&mut self.trap_wait.trapped) {
            return true;
        }
        self.trap_wait.trapped = false;
        self.trap_wait.end();
        true
    }
}
