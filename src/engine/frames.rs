//! From a thread's copied registers and stack to symbolized frames. The
//! thread is already running again when this code runs: it works on the copy
//! (and on live memory for anything beyond it).

use crate::debuginfo::{MemoryError, MemorySource, ProcessImage, Registers, reg};
use crate::tracer::{HitMemory, MemoryCopy, ProcessMemory, ThreadCapture};

use super::format_addr;
use super::report::FrameRow;

/// One thread's state as copied while it was held.
pub struct CapturedThread {
    /// Thread id.
    pub tid: i32,
    /// Registers at the moment it was held, in DWARF numbering.
    pub regs: Registers,
    /// The stack bytes from its stack pointer upwards, plus live memory beyond.
    pub memory: CapturedMemory,
    /// How long it was held, in microseconds.
    pub held_us: u64,
}

impl CapturedThread {
    /// Converts the tracer's raw capture.
    pub fn new(capture: ThreadCapture, live: ProcessMemory) -> CapturedThread {
        let mut regs = registers_from(&capture.regs, Some(capture.fs_base));
        if syscall_will_restart(&capture.regs) {
            regs.set(reg::RAX, None);
        }
        CapturedThread {
            tid: capture.tid,
            regs,
            memory: CapturedMemory::new(capture.stack, live),
            held_us: capture.held.as_micros() as u64,
        }
    }
}

/// A thread held inside a system call the kernel will restart: rax holds a
/// kernel-internal code (-ERESTARTSYS, -ERESTARTNOINTR, -ERESTARTNOHAND,
/// -ERESTART_RESTARTBLOCK) that the program never sees; when it runs on, the
/// kernel rewinds rip by 2 and makes the call again. Every other register
/// and the stack are the program's at that moment; rax has no value of the
/// program's yet.
fn syscall_will_restart(r: &libc::user_regs_struct) -> bool {
    (r.orig_rax as i64) >= 0 && [-512, -513, -514, -516].contains(&(r.rax as i64))
}

/// The tracer's raw registers in DWARF numbering.
pub fn registers_from(r: &libc::user_regs_struct, fs_base: Option<u64>) -> Registers {
    let mut regs = Registers::default();
    for (num, value) in [
        (reg::RAX, r.rax),
        (reg::RDX, r.rdx),
        (reg::RCX, r.rcx),
        (reg::RBX, r.rbx),
        (reg::RSI, r.rsi),
        (reg::RDI, r.rdi),
        (reg::RBP, r.rbp),
        (reg::RSP, r.rsp),
        (reg::R8, r.r8),
        (reg::R9, r.r9),
        (reg::R10, r.r10),
        (reg::R11, r.r11),
        (reg::R12, r.r12),
        (reg::R13, r.r13),
        (reg::R14, r.r14),
        (reg::R15, r.r15),
        (reg::RIP, r.rip),
    ] {
        regs.set(num, Some(value));
    }
    regs.set_fs_base(fs_base);
    regs
}

/// Memory as seen from a captured thread: its stack as it was when held,
/// everything else read live.
pub struct CapturedMemory {
    stack: MemoryCopy,
    live: ProcessMemory,
}

impl CapturedMemory {
    /// A view of `stack` (copied while the thread was held) over `live`.
    pub fn new(stack: MemoryCopy, live: ProcessMemory) -> CapturedMemory {
        CapturedMemory { stack, live }
    }

    fn read_live(&self, addr: u64, buf: &mut [u8]) -> Result<(), MemoryError> {
        if buf.is_empty() {
            return Ok(());
        }
        self.live
            .read(addr, buf)
            .map_err(|e| MemoryError { addr: e.addr })
    }
}

impl MemorySource for CapturedMemory {
    /// Every copied byte is answered from the copy, also when a read only
    /// overlaps it: the value decoder reads whole pages, and the copy starts
    /// at `rsp - 128`, never on a page boundary, so a read "not wholly
    /// inside" would otherwise take frame 0's slots from live memory, where
    /// the thread has run on since (values from two moments). Only the bytes
    /// outside the copy are read live.
    fn read_memory(&self, addr: u64, buf: &mut [u8]) -> Result<(), MemoryError> {
        let len = buf.len() as u64;
        let read_end = addr.checked_add(len).ok_or(MemoryError { addr })?;
        let start = self.stack.start;
        let end = start.saturating_add(self.stack.bytes.len() as u64);
        if read_end <= start || addr >= end {
            return self.read_live(addr, buf);
        }
        let from = addr.max(start);
        let to = read_end.min(end);
        let (below, rest) = buf.split_at_mut((from - addr) as usize);
        let (copied, above) = rest.split_at_mut((to - from) as usize);
        let offset = (from - start) as usize;
        copied.copy_from_slice(&self.stack.bytes[offset..offset + copied.len()]);
        self.read_live(addr, below)?;
        self.read_live(to, above)
    }
}

/// Live memory of the target: reads go straight to the process. Used where
/// the thread that matters is stopped (a probe hit) or for globals.
pub struct LiveMemory<'a>(pub &'a ProcessMemory);

impl MemorySource for LiveMemory<'_> {
    fn read_memory(&self, addr: u64, buf: &mut [u8]) -> Result<(), MemoryError> {
        self.0
            .read(addr, buf)
            .map_err(|e| MemoryError { addr: e.addr })
    }
}

/// The memory a probe handler reads: live, or what the kernel copied at
/// the hit (then anything else was not captured, and the first such read
/// is remembered so the item can say so).
pub struct HitMemorySource<'a> {
    memory: HitMemory<'a>,
    first_miss: std::cell::Cell<Option<u64>>,
}

impl<'a> HitMemorySource<'a> {
    /// Reads through `memory`.
    pub fn new(memory: HitMemory<'a>) -> HitMemorySource<'a> {
        HitMemorySource {
            memory,
            first_miss: std::cell::Cell::new(None),
        }
    }

    /// The first address a read wanted that the kernel's copy did not hold.
    pub fn first_miss(&self) -> Option<u64> {
        self.first_miss.get()
    }
}

impl MemorySource for HitMemorySource<'_> {
    fn read_memory(&self, addr: u64, buf: &mut [u8]) -> Result<(), MemoryError> {
        match self.memory {
            HitMemory::Live(live) => live
                .read(addr, buf)
                .map_err(|e| MemoryError { addr: e.addr }),
            // Fails once the thread was let go: nothing is read late.
            HitMemory::Held(held) => held
                .read(addr, buf)
                .map_err(|e| MemoryError { addr: e.addr }),
            HitMemory::Captured(copy) => copy.read(addr, buf).map_err(|addr| {
                if self.first_miss.get().is_none() && !copy.was_planned(addr) {
                    self.first_miss.set(Some(addr));
                }
                MemoryError { addr }
            }),
        }
    }

    fn wants_exact_reads(&self) -> bool {
        // A copy holds exactly the planned reads: reading whole pages of it
        // would only fail and fall back.
        matches!(self.memory, HitMemory::Captured(_))
    }

    fn read_string(&self, addr: u64, max: usize) -> Result<(Vec<u8>, bool), MemoryError> {
        if let HitMemory::Captured(copy) = self.memory
            && let Some(found) = copy.read_string(addr, max)
        {
            return Ok(found);
        }
        crate::debuginfo::read_string_by_pages(self, addr, max)
    }
}

/// Unwinds a captured thread and expands each physical frame into its
/// inlined calls, innermost first, numbering them as gdb does.
pub fn symbolized_frames(
    image: &ProcessImage,
    thread: &CapturedThread,
    max_frames: usize,
) -> Vec<FrameRow> {
    symbolized_frames_in(image, &thread.regs, &thread.memory, max_frames)
}

/// As [`symbolized_frames`], from registers over any memory (a write
/// watch's record: its stack copy alone).
pub fn symbolized_frames_in(
    image: &ProcessImage,
    regs: &Registers,
    memory: &dyn MemorySource,
    max_frames: usize,
) -> Vec<FrameRow> {
    let mut rows = Vec::new();
    for frame in image.unwind_iter(regs, memory).take(max_frames) {
        let module_of_pc = image.module_for(frame.pc);
        let own_code = module_of_pc.is_some_and(|m| !is_system_library(m.path()));
        let module = module_of_pc.and_then(|m| {
            m.path()
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
        });
        let symbols = image.symbolize(frame.pc, frame.is_caller);
        if symbols.is_empty() {
            rows.push(FrameRow {
                index: rows.len(),
                pc: format_addr(frame.pc),
                function: None,
                file: None,
                line: None,
                inlined: false,
                module,
                own_code,
            });
        } else {
            for s in symbols {
                rows.push(FrameRow {
                    index: rows.len(),
                    pc: format_addr(frame.pc),
                    function: s.function,
                    file: s.file,
                    line: s.line,
                    inlined: s.inlined,
                    module: module.clone(),
                    own_code,
                });
            }
        }
        if rows.len() >= max_frames {
            break;
        }
    }
    rows.truncate(max_frames);
    rows
}

/// Libraries installed by the system (libc, libstdc++, ...): not the
/// program's own code, even when their debug info is installed.
pub(super) fn is_system_library(path: &std::path::Path) -> bool {
    [
        "/lib/",
        "/lib64/",
        "/usr/lib/",
        "/usr/lib64/",
        "/usr/libexec/",
    ]
    .iter()
    .any(|dir| path.starts_with(dir))
        || path.as_os_str().is_empty()
        || path.to_string_lossy().starts_with('[')
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::value::PageCache;

    /// This process's own memory stands in for a thread's stack: a copy is
    /// taken, then the "thread runs on" (the live bytes change).
    struct RunOn {
        live: Vec<u8>,
        memory: CapturedMemory,
        copy_start: u64,
    }

    fn copied_then_changed(copy_from: usize, copy_len: usize) -> RunOn {
        let mut live: Vec<u8> = (0..3 * 4096).map(|i| (i % 251) as u8).collect();
        let base = live.as_ptr() as u64;
        let copy = MemoryCopy {
            start: base + copy_from as u64,
            bytes: live[copy_from..copy_from + copy_len].to_vec(),
        };
        live.iter_mut().for_each(|b| *b = 0xee);
        let memory = CapturedMemory::new(copy, ProcessMemory::new(std::process::id() as i32));
        RunOn {
            copy_start: base + copy_from as u64,
            live,
            memory,
        }
    }

    #[test]
    fn a_page_read_takes_the_copied_bytes_from_the_copy() {
        // The copy begins mid-page, as a stack copy from rsp - 128 does.
        let run = copied_then_changed(4096 + 200, 4000);
        let cache = PageCache::new(&run.memory);
        let mut word = [0u8; 8];
        cache
            .read_memory(run.copy_start + 36, &mut word)
            .expect("read inside the copy");
        let expected: Vec<u8> = (4096 + 236..4096 + 244).map(|i| (i % 251) as u8).collect();
        assert_eq!(
            word.to_vec(),
            expected,
            "a copied slot must not be read live"
        );
        assert!(run.live.iter().all(|b| *b == 0xee));
    }

    #[test]
    fn a_restarting_system_call_has_no_result_yet() {
        // SAFETY: user_regs_struct is plain integers; all zeroes is valid.
        let mut regs: libc::user_regs_struct = unsafe { std::mem::zeroed() };
        regs.orig_rax = 232;
        for code in [-512i64, -513, -514, -516] {
            regs.rax = code as u64;
            assert!(syscall_will_restart(&regs), "{code}");
        }
        regs.rax = (-4i64) as u64; // EINTR: the program sees it
        assert!(!syscall_will_restart(&regs));
        regs.rax = 2; // completed
        assert!(!syscall_will_restart(&regs));
        regs.orig_rax = u64::MAX; // not in a system call (e.g. at an int3)
        regs.rax = (-512i64) as u64;
        assert!(!syscall_will_restart(&regs));
    }

    #[test]
    fn a_read_across_the_copy_edges_is_split() {
        let run = copied_then_changed(100, 50);
        let mut bytes = [0u8; 70];
        run.memory
            .read_memory(run.copy_start - 10, &mut bytes)
            .expect("read across the copy");
        assert!(bytes[..10].iter().all(|b| *b == 0xee), "{bytes:?}");
        let copied: Vec<u8> = (100..150).map(|i| (i % 251) as u8).collect();
        assert_eq!(bytes[10..60].to_vec(), copied);
        assert!(bytes[60..].iter().all(|b| *b == 0xee), "{bytes:?}");
    }
}
