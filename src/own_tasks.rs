//! Which processes are liveprobe itself: its own process, and the tracer
//! tasks it starts (`tracer/guardian.rs`), which share its memory but have
//! pids of their own, so that they outlive a SIGKILL of liveprobe.
//!
//! Ground floor: the tracer registers its tasks here, and both the tracer
//! (`procfs`: never seize ourselves; whose TracerPid is ours) and the policy
//! ("never liveprobe itself") read it. Lock-free: a tracer task reads it
//! after liveprobe's other threads may have died holding any lock.

use std::sync::atomic::{AtomicI32, Ordering};

/// Most tracer tasks that can be known at once (one per `Tracer`).
const SLOTS: usize = 64;

static LIVEPROBE_PID: AtomicI32 = AtomicI32::new(0);
static TRACER_TASKS: [AtomicI32; SLOTS] = [const { AtomicI32::new(0) }; SLOTS];

/// Record liveprobe's own pid. Called in liveprobe's process before any
/// tracer task starts: inside a tracer task `getpid()` is the task's pid.
pub fn remember_liveprobe_pid() {
    let _ = LIVEPROBE_PID.compare_exchange(
        0,
        std::process::id() as i32,
        Ordering::SeqCst,
        Ordering::SeqCst,
    );
}

/// liveprobe's own pid (its thread group), from whichever task asks.
pub fn liveprobe_pid() -> i32 {
    match LIVEPROBE_PID.load(Ordering::SeqCst) {
        // Only liveprobe's own threads can get here before the first
        // tracer task started, and for them getpid() is the answer.
        0 => std::process::id() as i32,
        pid => pid,
    }
}

/// Note a tracer task's pid. False when every slot is taken (the caller
/// then cannot promise that the task is recognised as ours).
pub fn register_tracer_task(pid: i32) -> bool {
    TRACER_TASKS.iter().any(|slot| {
        slot.compare_exchange(0, pid, Ordering::SeqCst, Ordering::SeqCst)
            .is_ok()
    })
}

/// Forget a tracer task that has exited.
pub fn unregister_tracer_task(pid: i32) {
    for slot in &TRACER_TASKS {
        if slot
            .compare_exchange(pid, 0, Ordering::SeqCst, Ordering::SeqCst)
            .is_ok()
        {
            return;
        }
    }
}

/// Whether `pid` is one of liveprobe's live tracer tasks.
pub fn is_tracer_task(pid: i32) -> bool {
    pid > 0
        && TRACER_TASKS
            .iter()
            .any(|slot| slot.load(Ordering::SeqCst) == pid)
}

/// Whether `pid` is liveprobe itself or one of its tracer tasks.
pub fn is_liveprobe(pid: i32) -> bool {
    pid == liveprobe_pid() || is_tracer_task(pid)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tracer_tasks_are_ours_until_unregistered() {
        // A pid above pid_max (4194304) is never a real task's.
        let fake = 2_000_000_000;
        assert!(!is_liveprobe(fake));
        assert!(register_tracer_task(fake));
        assert!(is_tracer_task(fake) && is_liveprobe(fake));
        unregister_tracer_task(fake);
        assert!(!is_liveprobe(fake));
        assert!(is_liveprobe(std::process::id() as i32));
        assert!(!is_tracer_task(0));
    }
}
