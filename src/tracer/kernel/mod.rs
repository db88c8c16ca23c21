//! Kernel-side probes: a uprobe with a generated eBPF program, for probes
//! whose capture can be planned when they are set. The hitting thread is
//! never stopped for us: the kernel's uprobe trap runs the program (copy
//! the registers, run the planned reads into a ring buffer record), and the
//! thread goes on. The tracer thread reads the records later and hands
//! each to the site's handler as a hit on captured memory: decoding and
//! rendering happen after the thread has long resumed.
//!
//! What the target sees: the kernel's `int3` at each site while armed (the
//! kernel removes it when the descriptor closes, also if liveprobe is
//! SIGKILLed) and a few microseconds per hit. Nothing is written by us.
//!
//! Must never: attach to another process than the target (programs check
//! the thread group and the uprobe is registered for that process only), or
//! drop a record without counting it (a full ring counts a loss per site).

mod bpf;
pub(crate) mod hw_breakpoint;
mod program;
mod ringbuf;
mod uprobe;

use std::collections::HashMap;
use std::os::fd::{AsRawFd, OwnedFd};

use program::ProgramParams;
use ringbuf::RingBuffer;
use uprobe::Uprobe;

use super::scratch::FilePlace;

/// Bytes of the record header: site id, pid/tgid, monotonic time.
pub(crate) const RECORD_HEADER: usize = 24;
/// Bytes of `struct pt_regs` on x86-64 (21 registers, the same order as
/// the first 21 fields of `user_regs_struct`).
pub(crate) const REGS_BYTES: usize = 21 * 8;
/// Most reads in one plan.
pub const MAX_READS: usize = 64;
/// Default ring buffer size: records wait here until the tracer thread
/// reads them.
pub const DEFAULT_RING_BYTES: usize = 16 * 1024 * 1024;
/// How often the tracer thread reads the ring while kernel-side sites exist.
pub(crate) const RING_POLL_INTERVAL: std::time::Duration = std::time::Duration::from_millis(5);
/// Sites that can be armed at once (slots of the lost-record counters).
const LOST_SLOTS: u32 = 1024;

/// Where the address of a planned read comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CaptureBase {
    /// A register of the hitting thread, by its index in `pt_regs` (the
    /// same as in `user_regs_struct`; see `user_regs_from_slots`).
    Register(u8),
    /// The 8-byte word at byte `at` of an earlier read's data.
    Word {
        /// Index of the earlier read.
        read: usize,
        /// Byte offset of the word in that read.
        at: u32,
    },
    /// A fixed address (`offset` is the address).
    Absolute,
}

/// One read of the capture: `len` bytes at `base + offset`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct CaptureRead {
    /// Where the address comes from.
    pub base: CaptureBase,
    /// Added to the base.
    pub offset: i64,
    /// Bytes read.
    pub len: u32,
    /// Read as a NUL-terminated string (stops at the NUL).
    pub string: bool,
}

/// What the kernel copies at each hit of a site, decided when the probe is
/// set.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CapturePlan {
    /// Copy the general-purpose registers.
    pub registers: bool,
    /// Reads, in order (a read may take its address from an earlier one).
    pub reads: Vec<CaptureRead>,
}

/// Registers from their values in `pt_regs` order (slots 0..21,
/// the first 21 fields of `user_regs_struct`); the others are zero.
pub fn user_regs_from_slots(values: &[u64; 21]) -> libc::user_regs_struct {
    // SAFETY: user_regs_struct is plain integers; all-zero is valid.
    let mut regs: libc::user_regs_struct = unsafe { std::mem::zeroed() };
    let slots: [&mut u64; 21] = [
        &mut regs.r15,
        &mut regs.r14,
        &mut regs.r13,
        &mut regs.r12,
        &mut regs.rbp,
        &mut regs.rbx,
        &mut regs.r11,
        &mut regs.r10,
        &mut regs.r9,
        &mut regs.r8,
        &mut regs.rax,
        &mut regs.rcx,
        &mut regs.rdx,
        &mut regs.rsi,
        &mut regs.rdi,
        &mut regs.orig_rax,
        &mut regs.rip,
        &mut regs.cs,
        &mut regs.eflags,
        &mut regs.rsp,
        &mut regs.ss,
    ];
    for (slot, value) in slots.into_iter().zip(values) {
        *slot = *value;
    }
    regs
}

/// Where a read's address, status and data sit in a record.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ReadSlot {
    pub address: usize,
    pub status: usize,
    pub data: usize,
}

/// The record layout of a plan.
pub(crate) struct ReadLayout {
    pub reads: Vec<ReadSlot>,
    pub record_bytes: usize,
}

pub(crate) fn read_layout(plan: &CapturePlan) -> ReadLayout {
    let mut at = RECORD_HEADER + if plan.registers { REGS_BYTES } else { 0 };
    let mut reads = Vec::with_capacity(plan.reads.len());
    for read in &plan.reads {
        let slot = ReadSlot {
            address: at,
            status: at + 8,
            data: at + 16,
        };
        at += 16 + (read.len as usize).div_ceil(8) * 8;
        reads.push(slot);
    }
    ReadLayout {
        reads,
        record_bytes: at,
    }
}

/// Memory as the kernel copied it at a hit: the planned reads that
/// succeeded. Anything else was not captured.
#[derive(Debug, Default, Clone)]
pub struct CapturedMemory {
    ranges: Vec<(u64, Vec<u8>)>,
    /// Planned reads the target's memory refused at the hit (address, length).
    failed: Vec<(u64, u64)>,
    /// Strings copied up to their NUL (address, bytes with the NUL).
    strings: Vec<(u64, Vec<u8>)>,
}

impl CapturedMemory {
    /// Bytes held (to bound copies waiting to be handled).
    pub fn bytes(&self) -> usize {
        self.ranges
            .iter()
            .chain(&self.strings)
            .map(|(_, b)| b.len())
            .sum::<usize>()
            + 64
    }

    /// Adds bytes copied at `addr` (a ptrace hit's copy, `hit_copy`).
    pub(crate) fn add_range(&mut self, addr: u64, bytes: Vec<u8>) {
        self.ranges.push((addr, bytes));
    }

    /// Adds a planned read the target's memory refused.
    pub(crate) fn add_failed(&mut self, addr: u64, len: u64) {
        self.failed.push((addr, len));
    }

    /// Adds a string copied at `addr` (up to and with its NUL, if seen).
    pub(crate) fn add_string(&mut self, addr: u64, bytes: Vec<u8>) {
        self.strings.push((addr, bytes));
    }

    /// Fills `buf` from the captured bytes at `addr`; the first address not
    /// captured otherwise.
    pub fn read(&self, addr: u64, buf: &mut [u8]) -> Result<(), u64> {
        let end = addr.checked_add(buf.len() as u64).ok_or(addr)?;
        for (start, bytes) in &self.ranges {
            let range_end = start + bytes.len() as u64;
            if *start <= addr && end <= range_end {
                let from = (addr - start) as usize;
                buf.copy_from_slice(&bytes[from..from + buf.len()]);
                return Ok(());
            }
        }
        Err(addr)
    }

    /// The string a planned string read copied at `addr` (at most `max`
    /// bytes, and whether its NUL was seen), if there was one.
    pub fn read_string(&self, addr: u64, max: usize) -> Option<(Vec<u8>, bool)> {
        let (_, bytes) = self.strings.iter().find(|(start, _)| *start == addr)?;
        let end = bytes.iter().position(|b| *b == 0);
        let len = end.unwrap_or(bytes.len()).min(max);
        Some((bytes[..len].to_vec(), end.is_some_and(|e| e <= max)))
    }

    /// Whether `addr` was meant to be captured (a planned read covered it,
    /// and failed at the hit because the target had nothing there), as
    /// opposed to a read the plan did not foresee.
    pub fn was_planned(&self, addr: u64) -> bool {
        self.failed
            .iter()
            .any(|(start, len)| *start <= addr && addr < start.saturating_add(*len))
    }
}

/// One record, decoded.
pub(crate) struct KernelHit {
    pub pid: i32,
    pub tid: i32,
    pub monotonic_ns: u64,
    pub regs: Option<libc::user_regs_struct>,
    pub memory: CapturedMemory,
}

fn word(record: &[u8], at: usize) -> Option<u64> {
    Some(u64::from_ne_bytes(record.get(at..at + 8)?.try_into().ok()?))
}

/// Decodes `record` of a site with `plan`; None when it is malformed.
pub(crate) fn decode_record(record: &[u8], plan: &CapturePlan) -> Option<KernelHit> {
    let layout = read_layout(plan);
    if record.len() < layout.record_bytes {
        return None;
    }
    let pid_tgid = word(record, 8)?;
    let monotonic_ns = word(record, 16)?;
    let regs = if plan.registers {
        let mut values = [0u64; 21];
        for (i, value) in values.iter_mut().enumerate() {
            *value = word(record, RECORD_HEADER + i * 8)?;
        }
        Some(user_regs_from_slots(&values))
    } else {
        None
    };
    let mut memory = CapturedMemory::default();
    for (read, slot) in plan.reads.iter().zip(&layout.reads) {
        let address = word(record, slot.address)?;
        // The bytes copied, or a negative error.
        let status = word(record, slot.status)? as i64;
        if status <= 0 {
            memory.failed.push((address, read.len as u64));
            continue;
        }
        let copied = (status as usize).min(read.len as usize);
        if copied < read.len as usize && !read.string {
            // Only up to the end of a page: the rest was unmapped.
            memory
                .failed
                .push((address + copied as u64, (read.len as usize - copied) as u64));
        }
        let mut bytes = record.get(slot.data..slot.data + copied)?.to_vec();
        if read.string {
            // The kernel copied `status` bytes up to and with the NUL.
            memory.strings.push((address, std::mem::take(&mut bytes)));
            continue;
        }
        memory.ranges.push((address, bytes));
    }
    Some(KernelHit {
        pid: (pid_tgid >> 32) as i32,
        tid: pid_tgid as u32 as i32,
        monotonic_ns,
        regs,
        memory,
    })
}

/// Why a kernel-side probe cannot be used here (the caller falls back to a
/// ptrace breakpoint and can say why).
#[derive(Debug, Clone, thiserror::Error)]
#[error("{0}")]
pub struct KernelUnavailable(pub String);

/// The inode of the initial PID namespace (`PROC_PID_INIT_INO`).
const INITIAL_PID_NAMESPACE: u64 = 0xEFFF_FFFC;

/// The PID namespace the kernel must translate thread ids into for our
/// view of `pid` (None: the initial one, where its ids are the kernel's).
fn pid_namespace_of(pid: i32) -> Result<Option<(u64, u64)>, KernelUnavailable> {
    use std::os::unix::fs::MetadataExt;
    let ours = std::fs::metadata("/proc/self/ns/pid")
        .map_err(|e| KernelUnavailable(format!("cannot read /proc/self/ns/pid: {e}")))?;
    if ours.ino() == INITIAL_PID_NAMESPACE {
        return Ok(None);
    }
    let theirs = std::fs::metadata(format!("/proc/{pid}/ns/pid"))
        .map_err(|e| KernelUnavailable(format!("cannot read /proc/{pid}/ns/pid: {e}")))?;
    if theirs.ino() != ours.ino() {
        return Err(KernelUnavailable(format!(
            "liveprobe runs in a PID namespace and process {pid} in another one below it; a kernel-side capture tells threads apart only in one namespace"
        )));
    }
    Ok(Some((ours.dev(), ours.ino())))
}

/// One armed kernel-side site, with what the tracer keeps for it (`H`:
/// its hit handler), so that one map keyed by the site id holds both.
pub(crate) struct KernelSite<H> {
    pub pid: i32,
    pub address: u64,
    pub group: u64,
    /// Where the uprobe is: every process of that file shares it.
    pub place: FilePlace,
    pub plan: CapturePlan,
    pub lost_slot: u32,
    pub lost_seen: u64,
    /// Who gets the site's records and losses.
    pub handler: H,
    _uprobe: Uprobe,
}

/// Every kernel-side site of the tracer, the ring their records go
/// through, and the lost-record counters: the one owner of the uprobes.
pub(crate) struct KernelProbes<H> {
    pub ring: RingBuffer,
    lost: OwnedFd,
    pmu: u32,
    pub sites: HashMap<u64, KernelSite<H>>,
    free_slots: Vec<u32>,
}

impl<H> KernelProbes<H> {
    /// Sets up the ring and counters; fails (with a reason a user can act
    /// on) where the kernel, its configuration or our privileges do not
    /// allow BPF uprobes.
    pub fn new(ring_bytes: usize) -> Result<KernelProbes<H>, KernelUnavailable> {
        let pmu = uprobe::pmu_type().map_err(|e| {
            KernelUnavailable(format!(
                "this kernel has no uprobe event source (/sys/bus/event_source/devices/uprobe: {e})"
            ))
        })?;
        let ring = RingBuffer::new(ring_bytes).map_err(|e| {
            KernelUnavailable(format!(
                "cannot create a BPF ring buffer ({e}); BPF needs Linux 5.8+ and CAP_BPF + CAP_PERFMON (or root)"
            ))
        })?;
        let lost = bpf::create_map(bpf::MAP_TYPE_ARRAY, 4, 8, LOST_SLOTS, "liveprobe_lost")
            .map_err(|e| KernelUnavailable(format!("cannot create a BPF map ({e})")))?;
        Ok(KernelProbes {
            ring,
            lost,
            pmu,
            sites: HashMap::new(),
            free_slots: (0..LOST_SLOTS).rev().collect(),
        })
    }

    /// Arms a uprobe at `address` of `pid`, which is `place` in the file
    /// reachable at `path`. On failure the handler comes back.
    #[allow(clippy::too_many_arguments)]
    pub fn arm(
        &mut self,
        id: u64,
        pid: i32,
        address: u64,
        group: u64,
        path: &str,
        place: FilePlace,
        plan: CapturePlan,
        handler: H,
    ) -> Result<(), (KernelUnavailable, H)> {
        if plan.reads.len() > MAX_READS {
            return Err((
                KernelUnavailable(format!(
                    "the capture needs {} reads, more than {MAX_READS}",
                    plan.reads.len()
                )),
                handler,
            ));
        }
        let Some(lost_slot) = self.free_slots.pop() else {
            return Err((
                KernelUnavailable(format!("{LOST_SLOTS} kernel-side sites are armed already")),
                handler,
            ));
        };
        let result = self.arm_slot(id, pid, path, place.offset.0, &plan, lost_slot);
        match result {
            Ok(uprobe) => {
                // Counts of a slot's previous user are not this site's.
                let lost_seen = bpf::array_get_u64(&self.lost, lost_slot).unwrap_or(0);
                self.sites.insert(
                    id,
                    KernelSite {
                        pid,
                        address,
                        group,
                        place,
                        plan,
                        lost_slot,
                        lost_seen,
                        handler,
                        _uprobe: uprobe,
                    },
                );
                Ok(())
            }
            Err(e) => {
                self.free_slots.push(lost_slot);
                Err((e, handler))
            }
        }
    }

    fn arm_slot(
        &self,
        id: u64,
        pid: i32,
        path: &str,
        file_offset: u64,
        plan: &CapturePlan,
        lost_slot: u32,
    ) -> Result<Uprobe, KernelUnavailable> {
        let params = ProgramParams {
            tgid: pid as u32,
            site_id: id,
            ring_fd: self.ring.fd(),
            lost_fd: self.lost.as_raw_fd(),
            lost_slot,
            pid_namespace: pid_namespace_of(pid)?,
        };
        let (insns, _) = program::generate(plan, &params).map_err(KernelUnavailable)?;
        let program = bpf::load_kprobe_program(&insns, "liveprobe_site").map_err(|e| {
            KernelUnavailable(if e.log.is_empty() {
                format!("the kernel refused the BPF program ({})", e.error)
            } else {
                format!(
                    "the BPF verifier refused the capture program ({}): {}",
                    e.error, e.log
                )
            })
        })?;
        Uprobe::attach(self.pmu, path, file_offset, pid, program).map_err(|e| {
            KernelUnavailable(format!(
                "cannot place a uprobe at {path}+{file_offset:#x}: {e}"
            ))
        })
    }

    /// Removes a site: the kernel takes its `int3` out now.
    pub fn disarm(&mut self, id: u64) -> Option<KernelSite<H>> {
        let site = self.sites.remove(&id)?;
        self.free_slots.push(site.lost_slot);
        Some(site)
    }

    /// Records lost since the last look, per site with losses.
    pub fn new_losses(&mut self) -> Vec<(u64, u64)> {
        let mut out = Vec::new();
        for (id, site) in self.sites.iter_mut() {
            if let Ok(total) = bpf::array_get_u64(&self.lost, site.lost_slot)
                && total > site.lost_seen
            {
                out.push((*id, total - site.lost_seen));
                site.lost_seen = total;
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `pt_regs` slots of rbp and rsp.
    const SLOT_RBP: u8 = 4;
    const SLOT_RSP: u8 = 19;

    fn plan_with(reads: Vec<CaptureRead>) -> CapturePlan {
        CapturePlan {
            registers: true,
            reads,
        }
    }

    /// The kernel's verifier accepts the programs of plans at the edges of
    /// what the planner makes: every kind of base, offsets too large for an
    /// instruction's immediate, strings, and the most reads allowed.
    #[test]
    fn the_verifier_accepts_generated_capture_programs() {
        let ring =
            RingBuffer::new(4096 * 16).expect("a BPF ring buffer (run as root on Linux 5.8+)");
        let lost = bpf::create_map(bpf::MAP_TYPE_ARRAY, 4, 8, 4, "t_lost").expect("array map");
        let params = ProgramParams {
            tgid: std::process::id(),
            site_id: 7,
            ring_fd: ring.fd(),
            lost_fd: lost.as_raw_fd(),
            lost_slot: 3,
            pid_namespace: None,
        };
        let read = |base, offset, len, string| CaptureRead {
            base,
            offset,
            len,
            string,
        };
        let plans = [
            CapturePlan::default(),
            plan_with(vec![]),
            plan_with(vec![
                read(CaptureBase::Register(SLOT_RBP), -40, 48, false),
                read(CaptureBase::Word { read: 0, at: 8 }, 16, 8, false),
                read(CaptureBase::Word { read: 1, at: 0 }, 0, 257, true),
                read(CaptureBase::Absolute, 0x5555_5555_4000, 16, false),
                read(CaptureBase::Register(SLOT_RSP), 1 << 33, 8, false),
            ]),
            plan_with(
                (0..MAX_READS)
                    .map(|i| read(CaptureBase::Register(SLOT_RSP), i as i64 * 8, 8, false))
                    .collect(),
            ),
        ];
        for plan in &plans {
            let (insns, size) = program::generate(plan, &params).expect("generate");
            assert_eq!(size, read_layout(plan).record_bytes);
            if let Err(e) = bpf::load_kprobe_program(&insns, "t_capture") {
                panic!(
                    "verifier refused a plan of {} reads: {} {}",
                    plan.reads.len(),
                    e.error,
                    e.log
                );
            }
        }
        // Thread ids taken in a PID namespace (liveprobe in a container).
        use std::os::unix::fs::MetadataExt;
        let ns = std::fs::metadata("/proc/self/ns/pid").expect("pid namespace");
        let in_namespace = ProgramParams {
            pid_namespace: Some((ns.dev(), ns.ino())),
            ..params
        };
        let (insns, _) = program::generate(&plans[2], &in_namespace).expect("generate");
        if let Err(e) = bpf::load_kprobe_program(&insns, "t_capture_ns") {
            panic!(
                "verifier refused the namespace variant: {} {}",
                e.error, e.log
            );
        }
        // A plan too large for one record is refused before the kernel sees it.
        let huge = plan_with(vec![read(CaptureBase::Register(0), 0, 40_000, false)]);
        assert!(program::generate(&huge, &params).is_err());
    }

    /// A record decodes into the registers and the reads that succeeded; a
    /// string read keeps only the bytes the kernel copied.
    #[test]
    fn records_decode_into_registers_and_captured_ranges() {
        let plan = plan_with(vec![
            CaptureRead {
                base: CaptureBase::Register(SLOT_RSP),
                offset: 0,
                len: 8,
                string: false,
            },
            CaptureRead {
                base: CaptureBase::Word { read: 0, at: 0 },
                offset: 0,
                len: 6,
                string: true,
            },
            CaptureRead {
                base: CaptureBase::Absolute,
                offset: 0x1000,
                len: 8,
                string: false,
            },
        ]);
        let layout = read_layout(&plan);
        let mut record = vec![0u8; layout.record_bytes];
        let put = |record: &mut Vec<u8>, at: usize, v: u64| {
            record[at..at + 8].copy_from_slice(&v.to_ne_bytes())
        };
        put(&mut record, 0, 9);
        put(&mut record, 8, (1234u64 << 32) | 1240);
        put(&mut record, 16, 555);
        put(&mut record, RECORD_HEADER + 19 * 8, 0x7ffd_0000); // rsp
        let [stack, text, global] = [layout.reads[0], layout.reads[1], layout.reads[2]];
        put(&mut record, stack.address, 0x7ffd_0000);
        put(&mut record, stack.status, 8); // bytes copied
        put(&mut record, stack.data, 0x5000);
        put(&mut record, text.address, 0x5000);
        put(&mut record, text.status, 3); // "hi\0"
        record[text.data..text.data + 6].copy_from_slice(b"hi\0xyz");
        put(&mut record, global.address, 0x1000);
        put(&mut record, global.status, (-14i64) as u64); // -EFAULT
        let hit = decode_record(&record, &plan).expect("decodes");
        assert_eq!((hit.pid, hit.tid, hit.monotonic_ns), (1234, 1240, 555));
        assert_eq!(hit.regs.expect("registers").rsp, 0x7ffd_0000);
        let mut word = [0u8; 8];
        hit.memory.read(0x7ffd_0000, &mut word).expect("stack word");
        assert_eq!(u64::from_ne_bytes(word), 0x5000);
        assert_eq!(
            hit.memory.read_string(0x5000, 100),
            Some((b"hi".to_vec(), true)),
            "a string read holds what the kernel copied, up to its NUL"
        );
        assert_eq!(
            hit.memory.read_string(0x5000, 1),
            Some((b"h".to_vec(), false))
        );
        assert_eq!(
            hit.memory.read_string(0x5001, 10),
            None,
            "strings are found where they start"
        );
        assert_eq!(
            hit.memory.read(0x1000, &mut word),
            Err(0x1000),
            "a failed read is not captured"
        );
        assert!(decode_record(&record[..record.len() - 1], &plan).is_none());
        // A read cut at a page end: what was copied reads, the rest was planned.
        put(&mut record, stack.status, 4);
        let hit = decode_record(&record, &plan).expect("decodes");
        let mut half = [0u8; 4];
        hit.memory
            .read(0x7ffd_0000, &mut half)
            .expect("the copied part");
        assert!(hit.memory.read(0x7ffd_0000, &mut word).is_err());
        assert!(hit.memory.was_planned(0x7ffd_0004));
    }
}
