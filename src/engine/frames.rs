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
        let regs = registers_from(&capture.regs, Some(capture.fs_base));
        CapturedThread {
            tid: capture.tid,
            regs,
            memory: CapturedMemory {
                stack: capture.stack,
                live,
            },
            held_us: capture.held.as_micros() as u64,
        }
    }
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

impl MemorySource for CapturedMemory {
    fn read_memory(&self, addr: u64, buf: &mut [u8]) -> Result<(), MemoryError> {
        let start = self.stack.start;
        let end = start + self.stack.bytes.len() as u64;
        if addr >= start && addr.saturating_add(buf.len() as u64) <= end {
            let off = (addr - start) as usize;
            buf.copy_from_slice(&self.stack.bytes[off..off + buf.len()]);
            return Ok(());
        }
        self.live
            .read(addr, buf)
            .map_err(|e| MemoryError { addr: e.addr })
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
    let mut rows = Vec::new();
    for frame in image
        .unwind_iter(&thread.regs, &thread.memory)
        .take(max_frames)
    {
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
