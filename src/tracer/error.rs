//! Errors of the tracer room. Every message says what went wrong in words a
//! user of the MCP tools understands, and what to do next.

use nix::errno::Errno;

/// Why a tracer operation failed.
#[derive(Debug, thiserror::Error)]
pub enum TraceError {
    /// No process with this pid exists (or it vanished while we looked).
    #[error(
        "no process with pid {pid} exists; it may have exited. Use list_processes to find the current pid"
    )]
    NoSuchProcess {
        /// The pid asked for.
        pid: i32,
    },
    /// The id names a thread, not a process.
    #[error("{tid} is a thread of process {pid}, not a process; attach to process {pid}")]
    ThreadNotProcess {
        /// The id asked for.
        tid: i32,
        /// The process the thread belongs to.
        pid: i32,
    },
    /// The thread id is not a thread of the process.
    #[error(
        "process {pid} has no thread {tid}; its threads are {known:?}. Use list_threads to see them"
    )]
    NoSuchThread {
        /// The process.
        pid: i32,
        /// The thread asked for.
        tid: i32,
        /// The threads the process has now.
        known: Vec<i32>,
    },
    /// Another debugger or tracer already traces the process.
    #[error(
        "process {pid} is already traced by {tracer_name} (pid {tracer_pid}); detach {tracer_name} first (in gdb: `detach`) or choose another process"
    )]
    AlreadyTraced {
        /// The process asked for.
        pid: i32,
        /// The thread that traces it (as /proc/PID/status `TracerPid` shows it).
        tracer_pid: i32,
        /// Name of the tracer (its /proc/TPID/comm).
        tracer_name: String,
    },
    /// The kernel refused to let us trace the process.
    #[error("not permitted to trace process {pid}: {reason}")]
    PermissionDenied {
        /// The process asked for.
        pid: i32,
        /// Why the kernel most likely refused, and how to allow it.
        reason: String,
    },
    /// The process has exited and waits for its parent to collect it.
    #[error(
        "process {pid} is a zombie: it has already exited and only waits for its parent to collect its exit status; there is nothing left to inspect"
    )]
    Zombie {
        /// The process asked for.
        pid: i32,
    },
    /// The pid names a kernel thread, which has no user-space to inspect.
    #[error(
        "process {pid} ({name}) is a kernel thread; only user-space processes can be inspected"
    )]
    KernelThread {
        /// The pid asked for.
        pid: i32,
        /// Its name (comm).
        name: String,
    },
    /// The pid is this liveprobe process itself.
    #[error(
        "process {pid} is this liveprobe server itself; it cannot trace itself. Choose another process"
    )]
    Ourselves {
        /// Our own pid.
        pid: i32,
    },
    /// The pid is a parent (or grand-parent...) of this liveprobe process.
    #[error(
        "process {pid} ({name}) is an ancestor of this liveprobe server (it started us, directly or indirectly); tracing it could freeze the session that drives liveprobe. Choose another process"
    )]
    Ancestor {
        /// The pid asked for.
        pid: i32,
        /// Its name (comm).
        name: String,
    },
    /// An operation needs an attached process.
    #[error("process {pid} is not attached; call attach with pid {pid} first")]
    NotAttached {
        /// The process asked for.
        pid: i32,
    },
    /// The target exited (or was killed) since we attached.
    #[error(
        "process {pid} has {how} since it was attached; detach it and attach to the new process"
    )]
    TargetExited {
        /// The process.
        pid: i32,
        /// "exited with code 3", "been killed by SIGSEGV".
        how: String,
    },
    /// A detach of this process is still in progress.
    #[error("process {pid} is being detached right now; try again in a moment")]
    DetachInProgress {
        /// The process.
        pid: i32,
    },
    /// Some threads did not stop in time to be detached (they are detached
    /// as soon as they stop).
    #[error(
        "threads {tids:?} of process {pid} did not stop within seconds (uninterruptible sleep, e.g. stuck I/O?); they will be detached as soon as they stop"
    )]
    ThreadsDidNotStop {
        /// The process.
        pid: i32,
        /// Threads still traced.
        tids: Vec<i32>,
    },
    /// A breakpoint cannot go at this address.
    #[error("cannot put a probe at {address:#x} in process {pid}: {reason}")]
    BreakpointRefused {
        /// The process.
        pid: i32,
        /// The address asked for.
        address: u64,
        /// Why, and what to do instead.
        reason: String,
    },
    /// The debug registers of a watch cannot be set (ptrace engine).
    #[error("cannot set the debug registers of process {pid} for a watch: {reason}")]
    DebugRegisters {
        /// The process.
        pid: i32,
        /// Why.
        reason: String,
    },
    /// Writing a breakpoint (or a trampoline) into the target failed.
    #[error(
        "cannot write into the code of process {pid} at {address:#x}: {errno}. The kernel may forbid writing another process's memory (boot parameter proc_mem.force_override=never, or a security module); probes cannot be used on this system until that is allowed"
    )]
    CodeWrite {
        /// The process.
        pid: i32,
        /// Where the write went.
        address: u64,
        /// The kernel's error.
        errno: Errno,
    },
    /// No page for out-of-line execution could be mapped into the target.
    #[error("cannot map a page for probes into process {pid} (needed near {address:#x}): {reason}")]
    ScratchUnavailable {
        /// The process.
        pid: i32,
        /// The code address the page was for (0 when not known).
        address: u64,
        /// Why.
        reason: String,
    },
    /// Every thread of the target is stopped by job control.
    #[error(
        "process {pid} is stopped by job control (SIGSTOP/SIGTSTP), so no thread can prepare it for probes; continue it (`kill -CONT {pid}`) and set the probe again"
    )]
    JobControlStopped {
        /// The process.
        pid: i32,
    },
    /// A ptrace request failed unexpectedly.
    #[error("ptrace {op} on thread {tid} failed: {errno}")]
    Ptrace {
        /// The request (SEIZE, INTERRUPT, GETREGS, ...).
        op: &'static str,
        /// The thread it was made on.
        tid: i32,
        /// The kernel's error.
        errno: Errno,
    },
    /// Reading a /proc file failed.
    #[error("cannot read {path}: {source}")]
    Proc {
        /// The file.
        path: String,
        /// The error.
        #[source]
        source: std::io::Error,
    },
    /// The tracer thread could not be started.
    #[error("cannot start the tracer thread: {0}")]
    Start(String),
    /// The tracer thread has stopped; no further requests can be served.
    #[error("the tracer thread has stopped; restart liveprobe")]
    TracerGone,
}

/// Why bytes of target memory could not be read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MemoryReadCause {
    /// No readable mapping at the address (unmapped, or a guard page).
    Unmapped,
    /// The process no longer exists.
    ProcessGone,
    /// The kernel refused access to the process's memory.
    PermissionDenied,
    /// Any other error from the kernel.
    Os(Errno),
}

impl std::fmt::Display for MemoryReadCause {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            MemoryReadCause::Unmapped => f.write_str("no readable memory is mapped there"),
            MemoryReadCause::ProcessGone => f.write_str("the process no longer exists"),
            MemoryReadCause::PermissionDenied => {
                f.write_str("permission denied (liveprobe needs ptrace rights over the process)")
            }
            MemoryReadCause::Os(errno) => write!(f, "{errno}"),
        }
    }
}

/// A read of target memory failed; `addr` is the first byte that could not be read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("cannot read memory of process {pid} at {addr:#x}: {cause}")]
pub struct MemoryReadError {
    /// The process.
    pub pid: i32,
    /// First address that could not be read.
    pub addr: u64,
    /// Why.
    pub cause: MemoryReadCause,
}
