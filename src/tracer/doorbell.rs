//! The tracer thread's doorbell: one eventfd that is rung both when a
//! command is queued and when any tracee changes state (SIGCHLD).
//!
//! Why not a signalfd alone: SIGCHLD is a process-directed signal. Blocking
//! it only in the tracer thread (the rest of the process must not be
//! affected) lets any other thread dequeue it first, and a signalfd in the
//! tracer thread would then miss the wakeup. Instead a process-wide SIGCHLD
//! handler (installed once, chaining to any handler that was there before)
//! rings the doorbell of every live tracer, whichever thread it runs on; the
//! tracer thread itself keeps SIGCHLD unblocked so the signal can never stay
//! pending with nobody to take it. The handler only touches atomics and
//! `write(2)`, which are async-signal-safe.
//!
//! Must never: close an eventfd a signal handler may be writing to (see
//! `Drop`), or set SA_NOCLDSTOP (ptrace stops would no longer raise SIGCHLD).

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::sync::Once;
use std::sync::atomic::{AtomicI32, AtomicUsize, Ordering};

/// Most tracers that can be woken by SIGCHLD at once in one process.
const SLOTS: usize = 64;

static DOORBELL_FDS: [AtomicI32; SLOTS] = [const { AtomicI32::new(-1) }; SLOTS];
/// Number of SIGCHLD handlers executing right now (any thread).
static HANDLERS_RUNNING: AtomicUsize = AtomicUsize::new(0);
/// The SIGCHLD disposition that was in place before ours (a `sigaction`
/// stored field by field, as statics of libc structs are not `Sync`).
static PREVIOUS_HANDLER: AtomicUsize = AtomicUsize::new(libc::SIG_DFL);
static PREVIOUS_FLAGS: AtomicI32 = AtomicI32::new(0);
static INSTALL: Once = Once::new();

extern "C" fn on_sigchld(
    signal: libc::c_int,
    info: *mut libc::siginfo_t,
    context: *mut libc::c_void,
) {
    HANDLERS_RUNNING.fetch_add(1, Ordering::SeqCst);
    // SAFETY: errno is thread-local; saving and restoring it keeps the
    // interrupted code's view of errno intact.
    let saved_errno = unsafe { *libc::__errno_location() };
    let one: u64 = 1;
    for slot in &DOORBELL_FDS {
        let fd = slot.load(Ordering::SeqCst);
        if fd >= 0 {
            // SAFETY: `fd` stays open while registered and while any handler
            // runs (Doorbell::drop waits for HANDLERS_RUNNING to reach 0).
            unsafe { libc::write(fd, (&one as *const u64).cast(), 8) };
        }
    }
    let previous = PREVIOUS_HANDLER.load(Ordering::SeqCst);
    if previous != libc::SIG_DFL && previous != libc::SIG_IGN {
        if PREVIOUS_FLAGS.load(Ordering::SeqCst) & libc::SA_SIGINFO != 0 {
            // SAFETY: the previous handler was installed with SA_SIGINFO, so it
            // has this signature.
            let handler: extern "C" fn(libc::c_int, *mut libc::siginfo_t, *mut libc::c_void) =
                unsafe { std::mem::transmute(previous) };
            handler(signal, info, context);
        } else {
            // SAFETY: a handler installed without SA_SIGINFO takes only the signal.
            let handler: extern "C" fn(libc::c_int) = unsafe { std::mem::transmute(previous) };
            handler(signal);
        }
    }
    // SAFETY: see above.
    unsafe { *libc::__errno_location() = saved_errno };
    HANDLERS_RUNNING.fetch_sub(1, Ordering::SeqCst);
}

fn install_sigchld_handler() {
    INSTALL.call_once(|| {
        // SAFETY: sigaction with a zeroed struct filled in below; the handler
        // is async-signal-safe.
        unsafe {
            let mut previous: libc::sigaction = std::mem::zeroed();
            if libc::sigaction(libc::SIGCHLD, std::ptr::null(), &mut previous) == 0 {
                PREVIOUS_HANDLER.store(previous.sa_sigaction, Ordering::SeqCst);
                PREVIOUS_FLAGS.store(previous.sa_flags, Ordering::SeqCst);
                if previous.sa_sigaction == libc::SIG_IGN {
                    // Ignoring SIGCHLD also changes how this process's own
                    // children are reaped; keep that, and rely on the tracer's
                    // periodic wakeup instead.
                    tracing::warn!(
                        "SIGCHLD is ignored in this process; tracee events will be noticed with a delay"
                    );
                    return;
                }
            }
            let mut action: libc::sigaction = std::mem::zeroed();
            action.sa_sigaction = on_sigchld as *const () as usize;
            action.sa_flags = libc::SA_SIGINFO | libc::SA_RESTART;
            libc::sigemptyset(&mut action.sa_mask);
            if libc::sigaction(libc::SIGCHLD, &action, std::ptr::null_mut()) != 0 {
                tracing::warn!(
                    "cannot install the SIGCHLD handler ({}); tracee events will be noticed with a delay",
                    io::Error::last_os_error()
                );
            }
        }
    });
}

/// Let the calling thread (the tracer) take SIGCHLD even if its creator
/// blocked it, so the signal never stays pending with nobody to handle it.
pub(super) fn unblock_sigchld_in_this_thread() {
    // SAFETY: plain signal-mask manipulation of the calling thread only.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, libc::SIGCHLD);
        libc::pthread_sigmask(libc::SIG_UNBLOCK, &set, std::ptr::null_mut());
    }
}

/// An eventfd rung by command senders and by SIGCHLD.
#[derive(Debug)]
pub(super) struct Doorbell {
    fd: OwnedFd,
    slot: Option<usize>,
}

impl Doorbell {
    /// Create the eventfd and register it with the SIGCHLD handler.
    pub(super) fn new() -> io::Result<Doorbell> {
        // SAFETY: eventfd has no memory-safety preconditions.
        let raw = unsafe { libc::eventfd(0, libc::EFD_CLOEXEC | libc::EFD_NONBLOCK) };
        if raw < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `raw` is a fresh descriptor we own.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };
        install_sigchld_handler();
        let slot = DOORBELL_FDS.iter().position(|slot| {
            slot.compare_exchange(-1, raw, Ordering::SeqCst, Ordering::SeqCst)
                .is_ok()
        });
        if slot.is_none() {
            tracing::warn!(
                "more than {SLOTS} tracers in one process; this one notices tracee events with a delay"
            );
        }
        Ok(Doorbell { fd, slot })
    }

    /// Wake the tracer thread.
    pub(super) fn ring(&self) {
        let one: u64 = 1;
        // SAFETY: writing 8 bytes from a local to our own eventfd.
        unsafe { libc::write(self.fd.as_raw_fd(), (&one as *const u64).cast(), 8) };
    }

    /// Reset the doorbell after waking.
    pub(super) fn clear(&self) {
        let mut count: u64 = 0;
        // SAFETY: reading 8 bytes into a local from our own non-blocking eventfd.
        unsafe { libc::read(self.fd.as_raw_fd(), (&mut count as *mut u64).cast(), 8) };
    }

    /// The descriptor to poll.
    pub(super) fn raw_fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }
}

impl Drop for Doorbell {
    fn drop(&mut self) {
        if let Some(slot) = self.slot {
            DOORBELL_FDS[slot].store(-1, Ordering::SeqCst);
            // A handler that loaded our fd before the store above has already
            // counted itself in; wait for it so the fd is not closed (and its
            // number reused) under its write.
            while HANDLERS_RUNNING.load(Ordering::SeqCst) != 0 {
                std::thread::yield_now();
            }
        }
    }
}
