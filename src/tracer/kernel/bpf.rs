//! The `bpf(2)` system call, as far as liveprobe uses it: an array map, a
//! ring buffer map, loading a kprobe-type program, and reading a map entry.
//! Programs are generated at run time (see `program`), so no compiler, no
//! object file and no libbpf are needed on the target's machine.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

const BPF_MAP_CREATE: libc::c_long = 0;
const BPF_MAP_LOOKUP_ELEM: libc::c_long = 1;
const BPF_PROG_LOAD: libc::c_long = 5;

/// `BPF_MAP_TYPE_ARRAY`.
pub const MAP_TYPE_ARRAY: u32 = 2;
/// `BPF_MAP_TYPE_RINGBUF` (Linux 5.8).
pub const MAP_TYPE_RINGBUF: u32 = 27;
/// `BPF_PROG_TYPE_KPROBE`: also the type of programs attached to uprobes.
const PROG_TYPE_KPROBE: u32 = 2;
/// `BPF_PROG_TYPE_PERF_EVENT`: programs attached to perf events (hardware
/// breakpoints).
pub const PROG_TYPE_PERF_EVENT: u32 = 7;

/// Room for the largest `union bpf_attr` member we fill; the kernel wants
/// the unused tail zeroed.
#[repr(C, align(8))]
struct Attr([u8; 128]);

impl Attr {
    fn new() -> Attr {
        Attr([0; 128])
    }
    fn u32(&mut self, at: usize, v: u32) -> &mut Attr {
        self.0[at..at + 4].copy_from_slice(&v.to_ne_bytes());
        self
    }
    fn u64(&mut self, at: usize, v: u64) -> &mut Attr {
        self.0[at..at + 8].copy_from_slice(&v.to_ne_bytes());
        self
    }
    fn name(&mut self, at: usize, name: &str) -> &mut Attr {
        let bytes = name.as_bytes();
        let n = bytes.len().min(15);
        self.0[at..at + n].copy_from_slice(&bytes[..n]);
        self
    }
}

fn bpf(cmd: libc::c_long, attr: &mut Attr) -> io::Result<libc::c_long> {
    // SAFETY: `attr` is a zero-initialised buffer as large as the kernel's
    // `union bpf_attr` prefix we describe, and lives across the call.
    let r = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            cmd,
            attr.0.as_mut_ptr(),
            attr.0.len() as libc::c_uint,
        )
    };
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(r)
    }
}

fn fd_from(r: libc::c_long) -> OwnedFd {
    // SAFETY: the kernel just returned this new descriptor to us.
    unsafe { OwnedFd::from_raw_fd(r as i32) }
}

/// Creates a map.
pub fn create_map(
    map_type: u32,
    key_size: u32,
    value_size: u32,
    max_entries: u32,
    name: &str,
) -> io::Result<OwnedFd> {
    let mut attr = Attr::new();
    attr.u32(0, map_type)
        .u32(4, key_size)
        .u32(8, value_size)
        .u32(12, max_entries)
        .name(28, name);
    bpf(BPF_MAP_CREATE, &mut attr).map(fd_from)
}

/// Reads the u64 at `index` of an array map.
pub fn array_get_u64(map: &OwnedFd, index: u32) -> io::Result<u64> {
    let key = index;
    let mut value = 0u64;
    let mut attr = Attr::new();
    attr.u32(0, map.as_raw_fd() as u32)
        .u64(8, &key as *const u32 as u64)
        .u64(16, &mut value as *mut u64 as u64);
    bpf(BPF_MAP_LOOKUP_ELEM, &mut attr)?;
    Ok(value)
}

/// A program the verifier refused, with its log.
#[derive(Debug)]
pub struct LoadError {
    /// The `bpf(2)` error.
    pub error: io::Error,
    /// The verifier's log (empty when it did not get that far).
    pub log: String,
}

/// Loads a kprobe-type program (`insns` as encoded by `program::Asm`).
pub fn load_kprobe_program(insns: &[u64], name: &str) -> Result<OwnedFd, LoadError> {
    load_program(PROG_TYPE_KPROBE, insns, name)
}

/// How many times a load the verifier gave up on (EAGAIN) is tried.
const LOAD_ATTEMPTS: u32 = 5;

/// Loads a program of type `prog_type`.
pub fn load_program(prog_type: u32, insns: &[u64], name: &str) -> Result<OwnedFd, LoadError> {
    let license = c"GPL";
    let mut attr = Attr::new();
    let load = |attr: &mut Attr, log: &mut [u8], level: u32| {
        attr.u32(0, prog_type)
            .u32(4, insns.len() as u32)
            .u64(8, insns.as_ptr() as u64)
            .u64(16, license.as_ptr() as u64)
            .u32(24, level)
            .u32(28, log.len() as u32)
            .u64(32, log.as_mut_ptr() as u64)
            .u32(40, kernel_version_code())
            .name(48, name);
        // The verifier gives up with EAGAIN when a signal is pending (a
        // SIGCHLD of a busy tracee): again, as libbpf does.
        let mut attempt = 1;
        loop {
            match bpf(BPF_PROG_LOAD, attr) {
                Err(error)
                    if error.raw_os_error() == Some(libc::EAGAIN) && attempt < LOAD_ATTEMPTS =>
                {
                    attempt += 1;
                }
                result => return result,
            }
        }
    };
    match load(&mut attr, &mut [], 0) {
        Ok(fd) => Ok(fd_from(fd)),
        Err(_) => {
            // Again with the verifier's log, to say why.
            let mut log = vec![0u8; 64 * 1024];
            let mut attr = Attr::new();
            match load(&mut attr, &mut log, 1) {
                Ok(fd) => Ok(fd_from(fd)),
                Err(error) => {
                    let end = log.iter().position(|&b| b == 0).unwrap_or(log.len());
                    let text = String::from_utf8_lossy(&log[..end]);
                    // The end of the log says what failed.
                    let tail: Vec<&str> = text.lines().rev().take(12).collect();
                    Err(LoadError {
                        error,
                        log: tail.into_iter().rev().collect::<Vec<_>>().join("\n"),
                    })
                }
            }
        }
    }
}

/// `LINUX_VERSION_CODE` of the running kernel (only kernels before 5.0
/// check it for kprobe programs).
fn kernel_version_code() -> u32 {
    let Ok(release) = std::fs::read_to_string("/proc/sys/kernel/osrelease") else {
        return 0;
    };
    let mut parts = release
        .trim()
        .split(|c: char| !c.is_ascii_digit())
        .filter_map(|p| p.parse::<u32>().ok());
    let major = parts.next().unwrap_or(0);
    let minor = parts.next().unwrap_or(0);
    let patch = parts.next().unwrap_or(0).min(255);
    (major << 16) | (minor << 8) | patch
}
