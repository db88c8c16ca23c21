//! Hardware watchpoints through `perf_event_open(2)` (`PERF_TYPE_BREAKPOINT`)
//! with a generated eBPF program attached: at every write (or access) of the
//! watched bytes by any thread of the target, the CPU's debug exception runs
//! the program, which copies the registers, the watched value and a window
//! of the stack into a ring buffer; the writer goes on at once, never
//! stopped by liveprobe.
//!
//! One event per thread that exists when the watch is set, each with
//! `inherit`, so threads created later (by any watched thread) get it too.
//! The kernel holds the debug registers: closing the descriptors (drop, or
//! liveprobe's death, SIGKILL included) clears them everywhere.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

use super::bpf;
use super::ringbuf::RingBuffer;
use super::{REGS_BYTES, user_regs_from_slots};

const PERF_TYPE_BREAKPOINT: u64 = 5;
const PERF_FLAG_FD_CLOEXEC: libc::c_ulong = 8;
/// `_IOW('$', 8, __u32)`.
const PERF_EVENT_IOC_SET_BPF: libc::c_ulong = 0x4004_2408;
/// `PERF_ATTR_SIZE_VER5`.
const ATTR_SIZE: u64 = 112;
/// `HW_BREAKPOINT_W`.
const HW_BREAKPOINT_W: u64 = 2;
/// `HW_BREAKPOINT_RW` (x86 has no read-only data breakpoint).
const HW_BREAKPOINT_RW: u64 = 3;
/// perf_event_attr flag bits.
const FLAG_INHERIT: u64 = 1 << 1;
const FLAG_EXCLUDE_KERNEL: u64 = 1 << 5;
const FLAG_EXCLUDE_HV: u64 = 1 << 6;

/// Stack bytes copied per write, from the writer's stack pointer up: the
/// writer's frame and its nearest callers' (at -O0, C frames are tens of
/// bytes, C++/Rust ones a few hundred). Frames beyond it are reported as
/// not copied, never read live: the writer has moved on by the time the
/// record is read. 1 KiB keeps a record at ~1.2 KiB, so a ring holds
/// thousands of them (an 8 KiB window held ~500 and lost most writes at
/// 100k writes/s), while copying it costs the writer a fraction of the
/// debug trap itself.
pub const STACK_WINDOW: usize = 1024;
/// Record layout: pid_tgid, time, registers, value, value status, stack
/// status, stack.
const OFF_PID_TGID: usize = 0;
const OFF_TIME: usize = 8;
const OFF_REGS: usize = 16;
const OFF_VALUE: usize = OFF_REGS + REGS_BYTES;
const OFF_VALUE_STATUS: usize = OFF_VALUE + 8;
const OFF_STACK_STATUS: usize = OFF_VALUE_STATUS + 8;
const OFF_COMM: usize = OFF_STACK_STATUS + 8;
/// `TASK_COMM_LEN`.
const COMM_BYTES: usize = 16;
const OFF_STACK: usize = OFF_COMM + COMM_BYTES;
const RECORD_BYTES: usize = OFF_STACK + STACK_WINDOW;
/// `pt_regs` slot of the stack pointer.
const SLOT_RSP: usize = 19;
/// Smallest ring per watch piece.
const MIN_RING_BYTES: usize = 256 * 1024;
/// Largest ring per watch piece: ~13k records, 130 ms of writes at 100k
/// writes/s, for the reader to fall behind by before a write is lost.
const MAX_RING_BYTES: usize = 16 * 1024 * 1024;
/// A record's room in the ring: its 8-byte header and the record, rounded
/// to 8 bytes as the kernel does.
const RING_RECORD_BYTES: usize = 8 + RECORD_BYTES.next_multiple_of(8);

/// The ring for a watch that will keep at most `records` records: room for
/// all of them when that is small, else the largest ring (a power of two,
/// as the kernel wants).
pub fn ring_bytes_for(records: u64) -> usize {
    let wanted = usize::try_from(records)
        .unwrap_or(usize::MAX)
        .saturating_mul(RING_RECORD_BYTES);
    wanted
        .clamp(MIN_RING_BYTES, MAX_RING_BYTES)
        .next_power_of_two()
}

/// What a watch reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HwWatchKind {
    /// Writes only.
    Write,
    /// Reads and writes.
    Access,
}

/// One reported write (or access), as the program copied it.
#[derive(Debug, Clone)]
pub struct WatchRecord {
    /// The writing thread.
    pub tid: i32,
    /// CLOCK_MONOTONIC ns of the write.
    pub time_ns: u64,
    /// Its registers just after the writing instruction.
    pub regs: libc::user_regs_struct,
    /// The writer's thread name at the write (it may be gone by the time
    /// the record is read).
    pub thread_name: String,
    /// The watched bytes just after the write (`None`: unreadable).
    pub value: Option<Vec<u8>>,
    /// The stack window, from the stack pointer up.
    pub stack: crate::tracer::MemoryCopy,
}

/// An armed hardware watchpoint; dropping it clears it on every thread.
pub struct HwWatch {
    events: Vec<OwnedFd>,
    _program: OwnedFd,
    ring: RingBuffer,
    /// One u64: records the ring had no room for.
    lost: OwnedFd,
    len: usize,
}

fn encode(code: u8, dst: u8, src: u8, off: i16, imm: i32) -> u64 {
    (code as u64)
        | (((dst & 0xf) as u64) << 8)
        | (((src & 0xf) as u64) << 12)
        | ((off as u16 as u64) << 16)
        | ((imm as u32 as u64) << 32)
}

/// The program: keep only the target's threads, reserve a record, copy
/// pid/tid, time, registers, the watched value and the stack window.
fn program(tgid: u32, ring_fd: i32, lost_fd: i32, addr: u64, len: usize) -> Vec<u64> {
    const ST_W: u8 = 0x62;
    const JA: u8 = 0x05;
    const ATOMIC_ADD_DW: u8 = 0xdb;
    const MAP_LOOKUP_ELEM: i32 = 1;
    const MOV_REG: u8 = 0xbf;
    const MOV_IMM: u8 = 0xb7;
    const ADD_IMM: u8 = 0x07;
    const AND_IMM: u8 = 0x57;
    const SUB_REG: u8 = 0x1f;
    const RSH_IMM: u8 = 0x77;
    const LDX_DW: u8 = 0x79;
    const STX_DW: u8 = 0x7b;
    const LD_IMM64: u8 = 0x18;
    const JEQ_IMM: u8 = 0x15;
    const JNE_IMM: u8 = 0x55;
    const JLE_IMM: u8 = 0xb5;
    const CALL: u8 = 0x85;
    const EXIT: u8 = 0x95;
    const KTIME_GET_NS: i32 = 5;
    const GET_CURRENT_PID_TGID: i32 = 14;
    const GET_CURRENT_COMM: i32 = 16;
    const PROBE_READ_USER: i32 = 112;
    const RINGBUF_RESERVE: i32 = 131;
    const RINGBUF_SUBMIT: i32 = 132;
    const PSEUDO_MAP_FD: u8 = 1;
    const RB_NO_WAKEUP: i32 = 1;
    let e = encode;
    // Straight code with jump offsets counted here: short enough to check
    // by eye, and the verifier checks it again.
    let prefix = [
        e(MOV_REG, 6, 1, 0, 0), // r6 = ctx (struct bpf_perf_event_data: regs first)
        e(CALL, 0, 0, 0, GET_CURRENT_PID_TGID),
        e(MOV_REG, 7, 0, 0, 0), // r7 = pid_tgid
        e(MOV_REG, 0, 7, 0, 0),
        e(RSH_IMM, 0, 0, 0, 32),
    ];
    let reserve = [
        e(LD_IMM64, 1, PSEUDO_MAP_FD, 0, ring_fd),
        e(0, 0, 0, 0, 0),
        e(MOV_IMM, 2, 0, 0, RECORD_BYTES as i32),
        e(MOV_IMM, 3, 0, 0, 0),
        e(CALL, 0, 0, 0, RINGBUF_RESERVE),
    ];
    let mut fill = vec![
        e(MOV_REG, 8, 0, 0, 0), // r8 = record
        e(STX_DW, 8, 7, OFF_PID_TGID as i16, 0),
        e(CALL, 0, 0, 0, KTIME_GET_NS),
        e(STX_DW, 8, 0, OFF_TIME as i16, 0),
        e(MOV_REG, 1, 8, 0, 0),
        e(ADD_IMM, 1, 0, 0, OFF_COMM as i32),
        e(MOV_IMM, 2, 0, 0, COMM_BYTES as i32),
        e(CALL, 0, 0, 0, GET_CURRENT_COMM),
    ];
    for i in 0..(REGS_BYTES / 8) {
        fill.push(e(LDX_DW, 1, 6, (i * 8) as i16, 0));
        fill.push(e(STX_DW, 8, 1, (OFF_REGS + i * 8) as i16, 0));
    }
    fill.extend([
        // The value: bpf_probe_read_user(record + OFF_VALUE, len, addr).
        e(MOV_REG, 1, 8, 0, 0),
        e(ADD_IMM, 1, 0, 0, OFF_VALUE as i32),
        e(MOV_IMM, 2, 0, 0, len as i32),
        e(LD_IMM64, 3, 0, 0, addr as u32 as i32),
        e(0, 0, 0, 0, (addr >> 32) as u32 as i32),
        e(CALL, 0, 0, 0, PROBE_READ_USER),
        e(STX_DW, 8, 0, OFF_VALUE_STATUS as i16, 0),
        // The stack window from rsp; when it runs past the stack's end,
        // again up to the end of rsp's page.
        e(LDX_DW, 3, 8, (OFF_REGS + SLOT_RSP * 8) as i16, 0),
        e(MOV_REG, 1, 8, 0, 0),
        e(ADD_IMM, 1, 0, 0, OFF_STACK as i32),
        e(MOV_IMM, 2, 0, 0, STACK_WINDOW as i32),
        e(CALL, 0, 0, 0, PROBE_READ_USER),
        e(MOV_IMM, 9, 0, 0, STACK_WINDOW as i32),
    ]);
    let retry = [
        e(LDX_DW, 3, 8, (OFF_REGS + SLOT_RSP * 8) as i16, 0),
        e(MOV_REG, 2, 3, 0, 0),
        e(AND_IMM, 2, 0, 0, 4095),
        e(MOV_IMM, 9, 0, 0, 4096),
        e(SUB_REG, 9, 2, 0, 0), // r9 = bytes to the end of rsp's page
        // At most the window (the verifier checks that bound too).
        e(JLE_IMM, 9, 0, 1, STACK_WINDOW as i32),
        e(MOV_IMM, 9, 0, 0, STACK_WINDOW as i32),
        e(MOV_REG, 2, 9, 0, 0),
        e(MOV_REG, 1, 8, 0, 0),
        e(ADD_IMM, 1, 0, 0, OFF_STACK as i32),
        e(CALL, 0, 0, 0, PROBE_READ_USER),
        // Status: the bytes copied (r9), or 0 when even that failed.
        e(JEQ_IMM, 0, 0, 1, 0),
        e(MOV_IMM, 9, 0, 0, 0),
    ];
    // Read whole: skip the retry.
    fill.push(e(JEQ_IMM, 0, 0, retry.len() as i16, 0));
    fill.extend(retry);
    fill.extend([
        e(STX_DW, 8, 9, OFF_STACK_STATUS as i16, 0),
        e(MOV_REG, 1, 8, 0, 0),
        e(MOV_IMM, 2, 0, 0, RB_NO_WAKEUP),
        e(CALL, 0, 0, 0, RINGBUF_SUBMIT),
    ]);
    // No room in the ring: count the loss, so the watch can say so.
    let lost = [
        e(ST_W, 10, 0, -8, 0),
        e(LD_IMM64, 1, PSEUDO_MAP_FD, 0, lost_fd),
        e(0, 0, 0, 0, 0),
        e(MOV_REG, 2, 10, 0, 0),
        e(ADD_IMM, 2, 0, 0, -8),
        e(CALL, 0, 0, 0, MAP_LOOKUP_ELEM),
        e(JEQ_IMM, 0, 0, 2, 0),
        e(MOV_IMM, 1, 0, 0, 1),
        e(ATOMIC_ADD_DW, 0, 1, 0, 0),
    ];
    let mut p: Vec<u64> = prefix.to_vec();
    // Another process (a forked child inherits the event): out.
    p.push(e(
        JNE_IMM,
        0,
        0,
        (reserve.len() + 1 + fill.len() + 1 + lost.len()) as i16,
        tgid as i32,
    ));
    p.extend(reserve);
    p.push(e(JEQ_IMM, 0, 0, (fill.len() + 1) as i16, 0));
    p.extend(fill);
    p.push(e(JA, 0, 0, lost.len() as i16, 0));
    p.extend(lost);
    p.push(e(MOV_IMM, 0, 0, 0, 0));
    p.push(e(EXIT, 0, 0, 0, 0));
    p
}

/// Thread ids of `pid` now.
fn threads_of(pid: i32) -> io::Result<Vec<i32>> {
    let mut tids: Vec<i32> = std::fs::read_dir(format!("/proc/{pid}/task"))?
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
        .collect();
    tids.sort_unstable();
    Ok(tids)
}

impl HwWatch {
    /// Arms a watchpoint on `[addr, addr + len)` (len 1, 2, 4 or 8, aligned)
    /// on every thread of `pid`, and on the threads they create later, with
    /// the largest ring.
    pub fn arm(pid: i32, addr: u64, len: usize, kind: HwWatchKind) -> Result<HwWatch, String> {
        HwWatch::arm_for(pid, addr, len, kind, u64::MAX)
    }

    /// As [`HwWatch::arm`], with a ring sized for `records` records (the
    /// most the watch will keep; `u64::MAX` when unknown, e.g. a condition
    /// filters the writes).
    pub fn arm_for(
        pid: i32,
        addr: u64,
        len: usize,
        kind: HwWatchKind,
        records: u64,
    ) -> Result<HwWatch, String> {
        if !matches!(len, 1 | 2 | 4 | 8) || !addr.is_multiple_of(len as u64) {
            return Err(format!(
                "a hardware watchpoint covers 1, 2, 4 or 8 bytes at an address aligned to its size; \
                 {len} byte(s) at {addr:#x} is not that"
            ));
        }
        // The program tells the target's threads apart by their ids in the
        // initial PID namespace: liveprobe must see those.
        if super::pid_namespace_of(pid).map_err(|e| e.0)?.is_some() {
            return Err(
                "liveprobe runs in a PID namespace of its own, and the watch program tells threads \
                 apart only in the initial one"
                    .to_string(),
            );
        }
        let ring = RingBuffer::new(ring_bytes_for(records))
            .map_err(|e| format!("cannot create the BPF ring buffer: {e}"))?;
        let lost = bpf::create_map(bpf::MAP_TYPE_ARRAY, 4, 8, 1, "lp_wlost")
            .map_err(|e| format!("cannot create the BPF loss counter: {e}"))?;
        let insns = program(pid as u32, ring.fd(), lost.as_raw_fd(), addr, len);
        let prog =
            bpf::load_program(bpf::PROG_TYPE_PERF_EVENT, &insns, "lp_watch").map_err(|e| {
                format!(
                    "the kernel refused the watch program: {} {}",
                    e.error, e.log
                )
            })?;
        let mut watch = HwWatch {
            events: Vec::new(),
            _program: prog,
            ring,
            lost,
            len,
        };
        let bp_type = match kind {
            HwWatchKind::Write => HW_BREAKPOINT_W,
            HwWatchKind::Access => HW_BREAKPOINT_RW,
        };
        let mut armed: Vec<i32> = Vec::new();
        // A thread created while the first ones are armed, by a thread not
        // armed yet, inherits nothing: list again until no new one shows.
        for _ in 0..4 {
            let tids =
                threads_of(pid).map_err(|e| format!("cannot list the threads of {pid}: {e}"))?;
            let new: Vec<i32> = tids.into_iter().filter(|t| !armed.contains(t)).collect();
            if new.is_empty() {
                break;
            }
            for tid in new {
                match watch.open_on(tid, addr, len, bp_type) {
                    Ok(()) => armed.push(tid),
                    // A thread that exited meanwhile needs no watch.
                    Err(e) if e.raw_os_error() == Some(libc::ESRCH) => {}
                    Err(e) if e.raw_os_error() == Some(libc::ENOSPC) => {
                        return Err(format!(
                            "thread {tid} has no free debug register (x86-64 has 4 per thread, \
                             and a debugger or another watch holds them)"
                        ));
                    }
                    Err(e) => {
                        return Err(format!(
                            "perf_event_open of a hardware breakpoint on thread {tid}: {e}"
                        ));
                    }
                }
            }
        }
        Ok(watch)
    }

    fn open_on(&mut self, tid: i32, addr: u64, len: usize, bp_type: u64) -> io::Result<()> {
        let mut attr = [0u64; 16];
        attr[0] = PERF_TYPE_BREAKPOINT | (ATTR_SIZE << 32);
        attr[2] = 1; // sample_period: every write
        attr[5] = FLAG_INHERIT | FLAG_EXCLUDE_KERNEL | FLAG_EXCLUDE_HV;
        attr[6] = bp_type << 32; // wakeup_events = 0, bp_type
        attr[7] = addr; // bp_addr
        attr[8] = len as u64; // bp_len
        // SAFETY: `attr` is a zeroed perf_event_attr of ATTR_SIZE bytes
        // (plus a zero tail) that lives across the call.
        let fd = unsafe {
            libc::syscall(
                libc::SYS_perf_event_open,
                attr.as_ptr(),
                tid,
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
        // SAFETY: an ioctl on our own perf event descriptor.
        if unsafe {
            libc::ioctl(
                event.as_raw_fd(),
                PERF_EVENT_IOC_SET_BPF,
                self._program.as_raw_fd(),
            )
        } < 0
        {
            return Err(io::Error::last_os_error());
        }
        self.events.push(event);
        Ok(())
    }

    /// Bytes watched (1, 2, 4 or 8).
    pub fn watched_len(&self) -> usize {
        self.len
    }

    /// Threads armed explicitly (threads created later inherit).
    pub fn threads_armed(&self) -> usize {
        self.events.len()
    }

    /// Writes not recorded because the ring was full (liveprobe fell behind).
    pub fn lost(&self) -> u64 {
        bpf::array_get_u64(&self.lost, 0).unwrap_or(0)
    }

    /// Every record written since the last call, oldest first.
    pub fn drain(&self) -> Vec<WatchRecord> {
        let mut out = Vec::new();
        let len = self.len;
        self.ring.drain(usize::MAX, |record| {
            if let Some(r) = decode(record, len) {
                out.push(r);
            }
        });
        out
    }
}

fn u64_at(record: &[u8], at: usize) -> Option<u64> {
    Some(u64::from_ne_bytes(record.get(at..at + 8)?.try_into().ok()?))
}

fn decode(record: &[u8], len: usize) -> Option<WatchRecord> {
    let pid_tgid = u64_at(record, OFF_PID_TGID)?;
    let time_ns = u64_at(record, OFF_TIME)?;
    let mut slots = [0u64; 21];
    for (i, slot) in slots.iter_mut().enumerate() {
        *slot = u64_at(record, OFF_REGS + i * 8)?;
    }
    let value_ok = u64_at(record, OFF_VALUE_STATUS)? == 0;
    let value = if value_ok {
        record.get(OFF_VALUE..OFF_VALUE + len).map(<[u8]>::to_vec)
    } else {
        None
    };
    let stack_len = (u64_at(record, OFF_STACK_STATUS)? as usize).min(STACK_WINDOW);
    let stack = record.get(OFF_STACK..OFF_STACK + stack_len)?.to_vec();
    let comm = record.get(OFF_COMM..OFF_COMM + COMM_BYTES)?;
    let comm_len = comm.iter().position(|&b| b == 0).unwrap_or(COMM_BYTES);
    Some(WatchRecord {
        thread_name: String::from_utf8_lossy(&comm[..comm_len]).into_owned(),
        tid: (pid_tgid & 0xffff_ffff) as i32,
        time_ns,
        regs: user_regs_from_slots(&slots),
        value,
        stack: crate::tracer::MemoryCopy {
            start: slots[SLOT_RSP],
            bytes: stack,
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_ring_holds_every_record_of_a_small_watch_and_is_bounded() {
        for records in [0, 1, 100, 1000, 50_000, u64::MAX] {
            let bytes = ring_bytes_for(records);
            assert!(bytes.is_power_of_two(), "{records}: {bytes}");
            assert!(
                (MIN_RING_BYTES..=MAX_RING_BYTES).contains(&bytes),
                "{records}: {bytes}"
            );
            let fits = (records as u128) * RING_RECORD_BYTES as u128 <= bytes as u128;
            assert!(fits || bytes == MAX_RING_BYTES, "{records}: {bytes}");
        }
        // The default max_events (100) needs no more than the smallest ring.
        assert_eq!(ring_bytes_for(100), MIN_RING_BYTES);
        assert_eq!(ring_bytes_for(u64::MAX), MAX_RING_BYTES);
        // The largest ring holds thousands of records, not hundreds.
        const { assert!(MAX_RING_BYTES / RING_RECORD_BYTES > 10_000) };
    }

    #[test]
    fn a_record_decodes_with_only_the_stack_bytes_copied() {
        let mut record = vec![0u8; RECORD_BYTES];
        let pid_tgid: u64 = (4321u64 << 32) | 4322;
        record[OFF_PID_TGID..OFF_PID_TGID + 8].copy_from_slice(&pid_tgid.to_ne_bytes());
        record[OFF_TIME..OFF_TIME + 8].copy_from_slice(&77u64.to_ne_bytes());
        let rsp: u64 = 0x7ffd_0000_1000;
        let at = OFF_REGS + SLOT_RSP * 8;
        record[at..at + 8].copy_from_slice(&rsp.to_ne_bytes());
        record[OFF_VALUE..OFF_VALUE + 8].copy_from_slice(&5u64.to_ne_bytes());
        // The stack read stopped after 100 bytes (the end of the stack).
        record[OFF_STACK_STATUS..OFF_STACK_STATUS + 8].copy_from_slice(&100u64.to_ne_bytes());
        record[OFF_COMM..OFF_COMM + 4].copy_from_slice(b"wr-1");
        record[OFF_STACK] = 0xab;
        let decoded = decode(&record, 8).expect("a whole record decodes");
        assert_eq!(decoded.tid, 4322);
        assert_eq!(decoded.time_ns, 77);
        assert_eq!(decoded.thread_name, "wr-1");
        assert_eq!(decoded.value, Some(5u64.to_ne_bytes().to_vec()));
        assert_eq!(decoded.stack.start, rsp);
        assert_eq!(decoded.stack.bytes.len(), 100);
        assert_eq!(decoded.stack.bytes[0], 0xab);
        // A short record is refused, not read past.
        assert!(decode(&record[..OFF_STACK - 1], 8).is_none());
    }
}
