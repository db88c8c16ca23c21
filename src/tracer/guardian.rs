//! The tracer task: the owner of every ptrace request is a task that shares
//! liveprobe's memory and descriptors but is NOT in liveprobe's thread group,
//! so that whatever kills liveprobe's process (SIGKILL, a crash, an exit
//! without detach) leaves it running, and it puts every target back as a
//! normal detach would before it exits itself.
//!
//! Why a task of its own: the kernel detaches a tracer's tracees when that
//! task exits, and a thread that then meets one of our `int3`s gets a
//! SIGTRAP nobody handles. A guardian attaching after liveprobe's death is
//! too late under a hit storm (threads meet the int3 within microseconds).
//! The tracer task never dies with liveprobe, so the tracees stay traced
//! until it has taken the int3s out and moved every thread off them.
//!
//! How (`spawn_task`): a helper thread H of liveprobe blocks every signal
//! and `clone`s a child with `CLONE_VM | CLONE_FS | CLONE_FILES |
//! CLONE_SYSVSEM` and SIGCHLD as exit signal, without `CLONE_THREAD`,
//! `CLONE_SIGHAND` or `CLONE_SETTLS`: a process of its own (own pid, own
//! signal dispositions, H's mask: everything blocked) sharing the heap and
//! the descriptors, running on H's thread-local storage, so the allocator
//! (mimalloc: no lock a killed thread could hold, see `lib.rs`), errno and
//! Rust thread-locals work there. H then only waits for the task
//! with `waitpid`: it must run no code that touches thread-local state while
//! the task lives, since the two share it.
//!
//! How the task knows liveprobe is gone (`LiveprobeWatch`): a pidfd of
//! liveprobe's process in the tracer's `poll` wakes it, and `getppid()`
//! (liveprobe's pid while any of its threads lives; the reaper's after)
//! decides. The loop then runs orphaned (`orphaned()`): it calls no handler,
//! answers no caller, takes no lock that liveprobe's threads take (one may
//! have died holding it), logs nothing, detaches every target through the
//! normal detach path, and exits with `exit_orphaned_task` without running
//! any destructor (their code may take locks a dead thread held).
//!
//! Not covered, by construction: the OOM killer kills every process that
//! shares the victim's memory, the tracer task included; a SIGKILL sent to
//! the tracer task's own pid kills it like any tracer.

use std::ffi::c_void;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::sync::atomic::{AtomicBool, AtomicI32, Ordering};
use std::sync::{Arc, mpsc};
use std::time::Duration;

use crate::own_tasks;

/// The tracer task's stack. The tracer keeps no large buffers on its stack,
/// but hit handlers run there too; the pages are only touched when used.
const STACK_BYTES: usize = 16 << 20;
/// An inaccessible page below the stack: an overflow faults instead of
/// writing into whatever is mapped below.
const GUARD_BYTES: usize = 4096;
/// How long `spawn_task` waits for the task to say it runs.
const START_DEADLINE: Duration = Duration::from_secs(10);

/// Set when a tracer task found liveprobe's process gone. Process-wide on
/// purpose: liveprobe is gone for every tracer task at once.
static ORPHANED: AtomicBool = AtomicBool::new(false);

/// Whether liveprobe's process is gone and the tracer works on alone.
pub(super) fn orphaned() -> bool {
    ORPHANED.load(Ordering::SeqCst)
}

fn declare_orphaned() {
    ORPHANED.store(true, Ordering::SeqCst);
}

/// What the tracer task runs; it tells `spawn_task` it started by sending
/// on the channel it is given.
pub(super) type TaskBody = Box<dyn FnOnce(mpsc::Sender<io::Result<()>>) + Send + 'static>;

/// What `task_entry` receives: the body with its channel.
type TaskMain = Box<dyn FnOnce() + Send + 'static>;

/// Run `body` in a new tracer task (see the module comment); `after` runs on
/// the helper thread once the task has exited (never if liveprobe's process
/// dies first: the task then ends on its own). Returns once the task runs.
pub(super) fn spawn_task(
    name: &str,
    body: TaskBody,
    after: Box<dyn FnOnce() + Send + 'static>,
) -> io::Result<()> {
    // In the task getpid() is the task's own pid: remember liveprobe's now.
    own_tasks::remember_liveprobe_pid();
    let (started, start_result) = mpsc::channel::<io::Result<()>>();
    let clone_errno = Arc::new(AtomicI32::new(0));
    let helper_errno = Arc::clone(&clone_errno);
    let task_started = started.clone();
    std::thread::Builder::new()
        .name(name.to_string())
        .spawn(move || {
            block_every_signal();
            let stack = match TaskStack::map() {
                Ok(stack) => stack,
                Err(error) => {
                    let _ = started.send(Err(error));
                    return;
                }
            };
            // The body travels as a thin pointer; the task owns it from here.
            let main: TaskMain = Box::new(move || {
                // Before anything else, so that no attach can see this task
                // as a stranger.
                // SAFETY: gettid has no preconditions.
                let tid = unsafe { libc::syscall(libc::SYS_gettid) } as i32;
                own_tasks::register_tracer_task(tid);
                body(task_started)
            });
            let argument: Box<TaskMain> = Box::new(main);
            let argument = Box::into_raw(argument);
            let flags = libc::CLONE_VM
                | libc::CLONE_FS
                | libc::CLONE_FILES
                | libc::CLONE_SYSVSEM
                | libc::SIGCHLD;
            // SAFETY: the stack is a fresh mapping of STACK_BYTES above a
            // guard page, `top` is 16-byte aligned, and `task_entry` takes
            // ownership of `argument` (a leaked Box) in the child.
            let pid = unsafe { libc::clone(task_entry, stack.top(), flags, argument.cast()) };
            if pid < 0 {
                let error = io::Error::last_os_error();
                // SAFETY: no child exists, so the Box is still ours.
                drop(unsafe { Box::from_raw(argument) });
                helper_errno.store(error.raw_os_error().unwrap_or(libc::EIO), Ordering::SeqCst);
                let _ = started.send(Err(error));
                return;
            }
            // From here until the task is gone this thread runs only the
            // raw system calls below: the task uses this thread's TLS.
            wait_for_exit(pid);
            own_tasks::unregister_tracer_task(pid);
            drop(stack);
            // A task that died before saying it started; ignored otherwise.
            let _ = started.send(Err(io::Error::other(
                "the tracer task ended before it started",
            )));
            after();
        })?;
    match start_result.recv_timeout(START_DEADLINE) {
        Ok(result) => result,
        Err(_) => Err(io::Error::other(format!(
            "the tracer task did not start in time (clone errno {})",
            clone_errno.load(Ordering::SeqCst)
        ))),
    }
}

/// The first code of the tracer task.
extern "C" fn task_entry(argument: *mut c_void) -> libc::c_int {
    // SAFETY: `argument` is the Box leaked by `spawn_task` for this task.
    let main = unsafe { Box::from_raw(argument.cast::<TaskMain>()) };
    // A panic must not unwind out of an extern "C" function.
    let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(main));
    // glibc's clone wrapper ends the task (SYS_exit, this task only).
    0
}

/// Block every signal in the calling thread (what a cloned task inherits).
fn block_every_signal() {
    // SAFETY: plain signal-mask manipulation of the calling thread only.
    unsafe {
        let mut all: libc::sigset_t = std::mem::zeroed();
        libc::sigfillset(&mut all);
        libc::pthread_sigmask(libc::SIG_BLOCK, &all, std::ptr::null_mut());
    }
}

/// Reap the task. Signals are blocked here, so the only early return is
/// ECHILD (another waiter of this process reaped it).
fn wait_for_exit(pid: i32) {
    loop {
        let mut status = 0;
        // SAFETY: waitpid into a local.
        let reaped = unsafe { libc::waitpid(pid, &mut status, libc::__WALL) };
        if reaped == pid
            || reaped < 0 && io::Error::last_os_error().raw_os_error() != Some(libc::EINTR)
        {
            return;
        }
    }
}

/// End the tracer task at once, running no destructor: used when
/// liveprobe is gone, whose dead threads may hold locks that freeing
/// memory or flushing a log would wait for. `exit_group`: a thread that
/// code running in the task started is a thread of the task's own group,
/// and would otherwise keep the task (and liveprobe's descriptors) alive.
pub(super) fn exit_orphaned_task() -> ! {
    loop {
        // SAFETY: SYS_exit_group ends the tracer task's thread group (not
        // liveprobe's, already gone); it does not return.
        unsafe { libc::syscall(libc::SYS_exit_group, 0) };
    }
}

/// The mapping the tracer task runs on.
struct TaskStack {
    base: *mut c_void,
    len: usize,
}

// SAFETY: a plain address range; only its owner unmaps it.
unsafe impl Send for TaskStack {}

impl TaskStack {
    fn map() -> io::Result<TaskStack> {
        let len = STACK_BYTES + GUARD_BYTES;
        // SAFETY: a fresh anonymous private mapping; nothing aliases it.
        let base = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_STACK | libc::MAP_NORESERVE,
                -1,
                0,
            )
        };
        if base == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        let stack = TaskStack { base, len };
        // SAFETY: the lowest page of our own mapping.
        if unsafe { libc::mprotect(base, GUARD_BYTES, libc::PROT_NONE) } != 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(stack)
    }

    fn top(&self) -> *mut c_void {
        // SAFETY: one past the end of our mapping; mmap returns page-aligned
        // addresses and the length is a multiple of the page size.
        unsafe { self.base.cast::<u8>().add(self.len).cast() }
    }
}

impl Drop for TaskStack {
    fn drop(&mut self) {
        // SAFETY: our own mapping, unused since the task exited.
        unsafe { libc::munmap(self.base, self.len) };
    }
}

/// The tracer task's view of liveprobe's process.
#[derive(Debug)]
pub(super) struct LiveprobeWatch {
    liveprobe: i32,
    /// Readable once liveprobe's thread group is gone; None where the
    /// kernel has no pidfd (then the loop's periodic wakeup notices).
    pidfd: Option<OwnedFd>,
}

impl LiveprobeWatch {
    /// Called in the tracer task.
    pub(super) fn new() -> LiveprobeWatch {
        let liveprobe = own_tasks::liveprobe_pid();
        // SAFETY: pidfd_open takes a pid and flags and returns a new fd.
        let raw = unsafe { libc::syscall(libc::SYS_pidfd_open, liveprobe, 0) };
        let pidfd = (raw >= 0).then(|| {
            // SAFETY: a fresh descriptor we own.
            unsafe { OwnedFd::from_raw_fd(raw as RawFd) }
        });
        if pidfd.is_none() {
            tracing::debug!(
                "no pidfd for liveprobe's process; its end is noticed at the tracer's periodic wakeup"
            );
        }
        LiveprobeWatch { liveprobe, pidfd }
    }

    /// The descriptor to poll beside the doorbell, while liveprobe lives.
    pub(super) fn poll_fd(&self) -> Option<RawFd> {
        if orphaned() {
            // Readable for good now: polling it would never sleep.
            return None;
        }
        self.pidfd.as_ref().map(|fd| fd.as_raw_fd())
    }

    /// Whether liveprobe's process is gone (checked each turn; cheap). A
    /// tracer started in a process that is not a tracer task (no parent
    /// relation) never calls this.
    pub(super) fn check(&self) -> bool {
        if orphaned() {
            return true;
        }
        // SAFETY: getppid cannot fail.
        let parent = unsafe { libc::getppid() };
        if parent != self.liveprobe {
            declare_orphaned();
            return true;
        }
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The task is a process of its own (its own pid, liveprobe's parent
    /// relation), shares this process's memory, is known as liveprobe's
    /// while it runs, and `after` runs once it has exited.
    #[test]
    fn a_tracer_task_is_a_process_sharing_our_memory() {
        let seen = Arc::new(AtomicI32::new(0));
        let seen_in_task = Arc::clone(&seen);
        let (ended, after_ran) = mpsc::channel();
        let body: TaskBody = Box::new(move |started| {
            // SAFETY: getpid/getppid have no preconditions.
            let (pid, parent) = unsafe { (libc::getpid(), libc::getppid()) };
            let registered = own_tasks::is_tracer_task(pid);
            // Written into memory this process reads: CLONE_VM.
            seen_in_task.store(
                if parent == own_tasks::liveprobe_pid() && registered {
                    pid
                } else {
                    -1
                },
                Ordering::SeqCst,
            );
            let _ = started.send(Ok(()));
        });
        spawn_task(
            "guardian-test",
            body,
            Box::new(move || {
                let _ = ended.send(());
            }),
        )
        .expect("start a tracer task");
        after_ran
            .recv_timeout(Duration::from_secs(60))
            .expect("`after` runs once the task has exited");
        let task = seen.load(Ordering::SeqCst);
        assert!(task > 0, "the task saw itself registered, child of us");
        assert_ne!(task, std::process::id() as i32, "a pid of its own");
        assert!(!own_tasks::is_tracer_task(task), "unregistered at its exit");
        assert!(!orphaned());
    }
}
