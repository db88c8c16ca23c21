//! Uprobes through `perf_event_open(2)`: the kernel puts its own `int3` at
//! a file offset of a mapped binary, for one process, and runs our program
//! at each hit. Closing the descriptor removes the probe, so the kernel
//! takes it out even if liveprobe is killed with SIGKILL.

use std::ffi::CString;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

const PERF_FLAG_FD_CLOEXEC: libc::c_ulong = 8;
/// `_IOW('$', 8, __u32)`.
const PERF_EVENT_IOC_SET_BPF: libc::c_ulong = 0x4004_2408;
/// `_IO('$', 0)`.
const PERF_EVENT_IOC_ENABLE: libc::c_ulong = 0x2400;
/// `PERF_ATTR_SIZE_VER5`: every field we set is in it.
const ATTR_SIZE: u32 = 112;

/// The dynamic PMU type of uprobes, from sysfs.
pub fn pmu_type() -> io::Result<u32> {
    let text = std::fs::read_to_string("/sys/bus/event_source/devices/uprobe/type")?;
    text.trim()
        .parse()
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidData, "unreadable uprobe PMU type"))
}

/// An armed uprobe with its program attached; dropping it removes both.
pub struct Uprobe {
    _event: OwnedFd,
    _program: OwnedFd,
}

impl Uprobe {
    /// Places a uprobe at `offset` of the file `path` for process `pid`
    /// only (all its threads) and runs `program` at each hit.
    pub fn attach(
        pmu: u32,
        path: &str,
        offset: u64,
        pid: i32,
        program: OwnedFd,
    ) -> io::Result<Uprobe> {
        let path = CString::new(path)
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "path with a NUL byte"))?;
        let mut attr = [0u64; 16];
        attr[0] = (pmu as u64) | ((ATTR_SIZE as u64) << 32);
        // config = 0: an entry probe, not a return probe.
        attr[2] = 1; // sample_period
        attr[7] = path.as_ptr() as u64; // config1: uprobe_path
        attr[8] = offset; // config2: probe_offset
        // SAFETY: `attr` is a zeroed perf_event_attr of ATTR_SIZE bytes (plus
        // a zero tail); `path` outlives the call.
        let fd = unsafe {
            libc::syscall(
                libc::SYS_perf_event_open,
                attr.as_ptr(),
                pid,
                -1i32,
                -1i32,
                PERF_FLAG_FD_CLOEXEC,
            )
        };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: the kernel just gave us this descriptor.
        let event = unsafe { OwnedFd::from_raw_fd(fd as i32) };
        // SAFETY: plain ioctls on our own perf event descriptor.
        if unsafe {
            libc::ioctl(
                event.as_raw_fd(),
                PERF_EVENT_IOC_SET_BPF,
                program.as_raw_fd(),
            )
        } < 0
        {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: as above.
        if unsafe { libc::ioctl(event.as_raw_fd(), PERF_EVENT_IOC_ENABLE, 0) } < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(Uprobe {
            _event: event,
            _program: program,
        })
    }
}
