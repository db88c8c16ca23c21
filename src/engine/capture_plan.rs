//! Planning a kernel-side capture: which registers and which memory a
//! probe's handler will read at a hit, decided when the probe is set, so a
//! BPF program can copy exactly that while the thread runs on.
//!
//! How: the handler's own reading code (condition, snapshot, logpoint,
//! histogram) is run once on marked values. Every register holds a marker
//! that names it, and every word a read returns is a marker naming that
//! read and the word's offset in it. An address the code then asks for is
//! therefore "register R + k" or "word w of read n + k" (or a fixed address
//! in a module), which is exactly what the program can compute at a hit.
//! An address that is none of these (for example an index computed from
//! data) cannot be planned, and the probe uses a ptrace breakpoint instead.
//! Conditions are run with both sides of `&&` and `||` evaluated, so the
//! plan covers whichever side a real hit takes.

use std::cell::RefCell;

use crate::debuginfo::{MemoryError, MemorySource, ProcessImage, RuntimeAddr};
use crate::eval::{self, FrameContext};
use crate::tracer::{CaptureBase, CapturePlan, CaptureRead, MAX_READS, user_regs_from_slots};
use crate::value::{Limits, Redaction};

use super::frames::registers_from;
use super::probes::{SiteAction, TemplatePart, capture_frames, logpoint_limits};

/// How much one hit's capture may copy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PlanLimits {
    /// Most bytes of memory one hit may copy.
    pub max_bytes: usize,
    /// Most reads.
    pub max_reads: usize,
}

impl PlanLimits {
    /// A kernel-side capture: with registers and bookkeeping this stays
    /// under the BPF record limit, and the program's read loop is bounded.
    pub const BPF: PlanLimits = PlanLimits {
        max_bytes: 16 * 1024,
        max_reads: MAX_READS,
    };
    /// A ptrace breakpoint's copy: batched `process_vm_readv` from user
    /// space, bounded only by how long a thread may be held for it (about
    /// 10 µs per 64 KiB).
    pub const PTRACE: PlanLimits = PlanLimits {
        max_bytes: 256 * 1024,
        max_reads: 1024,
    };
}
/// Registers are in `user_regs_struct` order; the first 21 are captured.
const CAPTURED_REGISTERS: u64 = 21;
/// Longest string a capture plans to copy.
const MAX_STRING_READ: usize = 4096;
/// The marker slot of the thread pointer (`fs_base`), which is not captured.
const THREAD_POINTER_SLOT: u64 = 21;

const REGISTER_TAG: u64 = 0b10 << 62;
const WORD_TAG: u64 = 0b01 << 62;
const REGISTER_MIDDLE: u64 = 0x8000_0000_0000;
const WORD_MIDDLE: u64 = 0x8000_0000;

fn register_marker(slot: u64) -> u64 {
    REGISTER_TAG | (slot << 48) | REGISTER_MIDDLE
}

fn word_marker(read: usize, at: u64) -> u64 {
    WORD_TAG | ((read as u64) << 48) | ((at & 0xffff) << 32) | WORD_MIDDLE
}

/// `at` of a word that is not wholly inside its read: never valid.
const NO_WORD: u64 = 0xffff;
/// Largest offset from a register or a word that is taken as a field or
/// frame offset; anything larger is a number mistaken for an address.
const MAX_OFFSET: i64 = 1 << 20;

/// What a planned address is made of.
fn decode_marker(image: &ProcessImage, addr: u64) -> Option<(CaptureBase, i64)> {
    match addr >> 62 {
        0b10 => {
            let slot = (addr >> 48) & 0x3fff;
            let offset = (addr & 0xffff_ffff_ffff) as i64 - REGISTER_MIDDLE as i64;
            (slot < CAPTURED_REGISTERS && offset.abs() < MAX_OFFSET)
                .then_some((CaptureBase::Register(slot as u8), offset))
        }
        0b01 => {
            let at = (addr >> 32) & 0xffff;
            let offset = (addr & 0xffff_ffff) as i64 - WORD_MIDDLE as i64;
            (at != NO_WORD && offset.abs() < MAX_OFFSET).then_some((
                CaptureBase::Word {
                    read: ((addr >> 48) & 0x3fff) as usize,
                    at: at as u32,
                },
                offset,
            ))
        }
        // A fixed address must be a module's (a global): anything else is a
        // number computed from data.
        0 => image
            .module_for(RuntimeAddr(addr))
            .map(|_| (CaptureBase::Absolute, addr as i64)),
        _ => None,
    }
}

/// Memory for the dry run: records each read as a planned read and answers
/// with markers.
struct PlanningMemory<'a> {
    image: &'a ProcessImage,
    max_reads: usize,
    reads: RefCell<Vec<CaptureRead>>,
    refused: RefCell<Option<String>>,
}

impl PlanningMemory<'_> {
    fn refuse(&self, why: String) {
        let mut refused = self.refused.borrow_mut();
        if refused.is_none() {
            *refused = Some(why);
        }
    }

    /// The planned read covering `len` bytes at `base + offset` (added or
    /// grown as needed), and where those bytes start in it.
    fn plan(&self, base: CaptureBase, offset: i64, len: usize) -> Option<(usize, usize)> {
        let mut reads = self.reads.borrow_mut();
        for (i, read) in reads.iter_mut().enumerate() {
            if read.base != base || offset < read.offset {
                continue;
            }
            let start = (offset - read.offset) as usize;
            let end = start + len;
            if end <= read.len as usize {
                return Some((i, start));
            }
            // Grow a read upwards when the new bytes follow closely (the
            // offsets of words inside it do not move).
            if start <= read.len as usize + 64 && end <= 0xffff {
                read.len = end as u32;
                return Some((i, start));
            }
        }
        if reads.len() >= self.max_reads || len > 0xffff {
            return None;
        }
        reads.push(CaptureRead {
            base,
            offset,
            len: len as u32,
            string: false,
        });
        Some((reads.len() - 1, 0))
    }

    fn total_bytes(&self) -> usize {
        self.reads.borrow().iter().map(|r| r.len as usize).sum()
    }
}

impl MemorySource for PlanningMemory<'_> {
    fn read_memory(&self, addr: u64, buf: &mut [u8]) -> Result<(), MemoryError> {
        if addr >> 62 == 0b10 && (addr >> 48) & 0x3fff == THREAD_POINTER_SLOT {
            self.refuse(
                "it reads a thread-local variable, and the thread pointer is not part of a kernel-side capture"
                    .into(),
            );
            return Err(MemoryError { addr });
        }
        let Some((base, offset)) = decode_marker(self.image, addr) else {
            self.refuse(format!(
                "an address ({addr:#x}) is computed from the target's data (for example an array index), which a kernel-side capture cannot plan"
            ));
            return Err(MemoryError { addr });
        };
        let Some((read, start)) = self.plan(base, offset, buf.len()) else {
            self.refuse(format!(
                "the capture needs more than {} reads or a read over 64 KiB",
                self.max_reads
            ));
            return Err(MemoryError { addr });
        };
        // Markers sit where the target's 8-byte words do (registers and
        // pointers are 8-aligned at run time), so an aligned pointer load
        // sees one whole marker; a word that is not wholly in the read gets
        // a marker that never decodes.
        let read_offset = self.reads.borrow()[read].offset;
        for (i, byte) in buf.iter_mut().enumerate() {
            let absolute = read_offset + (start + i) as i64;
            let word_start = absolute.div_euclid(8) * 8;
            let at = word_start - read_offset;
            // (A word running past the read's end now may still be wholly
            // inside once the read grows; the plan is checked at the end.)
            let at = if (0..NO_WORD as i64).contains(&at) {
                at as u64
            } else {
                NO_WORD
            };
            *byte = word_marker(read, at).to_le_bytes()[(absolute - word_start) as usize];
        }
        Ok(())
    }

    fn wants_exact_reads(&self) -> bool {
        true
    }

    fn read_string(&self, addr: u64, max: usize) -> Result<(Vec<u8>, bool), MemoryError> {
        let Some((base, offset)) = decode_marker(self.image, addr) else {
            self.refuse(format!(
                "a string's address ({addr:#x}) is computed from the target's data, which a kernel-side capture cannot plan"
            ));
            return Err(MemoryError { addr });
        };
        if max > MAX_STRING_READ {
            self.refuse(format!(
                "it reads a string of up to {max} bytes (the length of a C string, say), more than a kernel-side capture copies ({MAX_STRING_READ})"
            ));
            return Err(MemoryError { addr });
        }
        let mut reads = self.reads.borrow_mut();
        if reads.len() >= self.max_reads {
            drop(reads);
            self.refuse(format!(
                "the capture needs more than {} reads",
                self.max_reads
            ));
            return Err(MemoryError { addr });
        }
        // A string read of its own: the kernel copies up to the NUL, so a
        // string ending just before unmapped memory still reads (the
        // program's `bpf_probe_read_user_str`), with room for `max` bytes
        // and the NUL.
        reads.push(CaptureRead {
            base,
            offset,
            len: max as u32 + 1,
            string: true,
        });
        // The content does not matter for planning: an empty string.
        Ok((Vec::new(), true))
    }
}

/// The capture plan of one site, or why there cannot be one (the probe then
/// uses a ptrace breakpoint).
pub fn plan_site(
    image: &ProcessImage,
    address: RuntimeAddr,
    condition: Option<&eval::CompiledExpr>,
    action: &SiteAction,
    redaction: &Redaction,
    limits: PlanLimits,
) -> Result<CapturePlan, String> {
    let reads_frame = condition.is_some()
        || matches!(
            action,
            SiteAction::Snapshot { .. } | SiteAction::Logpoint { .. } | SiteAction::Histogram(_)
        );
    if !reads_frame {
        return Ok(CapturePlan::default());
    }
    if let SiteAction::Snapshot { frames, .. } = action
        && *frames > 1
    {
        return Err(
            "a snapshot of caller frames needs their return addresses, which only a stopped thread gives"
                .into(),
        );
    }
    let mut markers = [0u64; CAPTURED_REGISTERS as usize];
    for (slot, marker) in markers.iter_mut().enumerate() {
        *marker = register_marker(slot as u64);
    }
    let mut marked = user_regs_from_slots(&markers);
    marked.rip = address.0;
    // The thread pointer is not in pt_regs: mark it too, so a thread-local
    // variable is seen (and refused) rather than planned as unavailable.
    let regs = registers_from(&marked, Some(register_marker(THREAD_POINTER_SLOT)));
    let memory = PlanningMemory {
        image,
        max_reads: limits.max_reads,
        reads: RefCell::new(Vec::new()),
        refused: RefCell::new(None),
    };
    let cfa = image.unwind(&regs, &memory, 1).first().and_then(|f| f.cfa);
    let ctx = FrameContext {
        image,
        pc: address,
        regs: &regs,
        cfa,
        is_caller: false,
        memory: &memory,
        inline_depth: 0,
    };
    // Reads at addresses computed from data cannot be planned: refuse them
    // up front (the dry run below could not tell them from field offsets).
    let expressions: Vec<&eval::CompiledExpr> = condition
        .into_iter()
        .chain(match action {
            SiteAction::Snapshot { expressions, .. } => {
                expressions.iter().map(|(_, e)| e).collect()
            }
            SiteAction::Logpoint { parts } => parts
                .iter()
                .filter_map(|p| match p {
                    TemplatePart::Expr(_, e) => Some(&**e),
                    TemplatePart::Text(_) => None,
                })
                .collect(),
            SiteAction::Histogram(e) => vec![&**e],
            _ => Vec::new(),
        })
        .collect();
    if let Some(why) = expressions.iter().find_map(|e| e.data_dependent_address()) {
        return Err(why);
    }
    let ((), refused) = crate::value::planning::plan(|| {
        if let Some(condition) = condition {
            let _ = eval::exercise_condition(condition, &ctx);
        }
        match action {
            SiteAction::Snapshot {
                frames,
                expressions,
                limits,
            } => {
                capture_frames(image, &regs, &memory, *frames, limits, redaction);
                for (_, e) in expressions {
                    eval::evaluate(e, &ctx, limits, redaction);
                }
            }
            SiteAction::Logpoint { parts } => {
                let limits: Limits = logpoint_limits();
                for part in parts {
                    if let TemplatePart::Expr(_, e) = part {
                        eval::evaluate(e, &ctx, &limits, redaction);
                    }
                }
            }
            SiteAction::Histogram(e) => {
                let _ = eval::evaluate_number(e, &ctx);
            }
            SiteAction::Count | SiteAction::DurationStart | SiteAction::DurationEnd => {}
        }
    });
    if let Some(why) = refused {
        return Err(why);
    }
    let total = memory.total_bytes();
    if let Some(why) = memory.refused.into_inner() {
        return Err(why);
    }
    if total > limits.max_bytes {
        return Err(format!(
            "the capture would copy {total} bytes per hit, more than {}; narrow it with smaller limits or fewer expressions",
            limits.max_bytes
        ));
    }
    let reads = memory.reads.into_inner();
    // A word an address was taken from must lie wholly in its read, and
    // that read must come first (the program runs reads in order).
    for (i, read) in reads.iter().enumerate() {
        if let CaptureBase::Word { read: from, at } = read.base {
            let fits = from < i && reads[from].len >= at + 8;
            if !fits {
                return Err(
                    "a pointer is read from memory in a way the kernel-side capture cannot follow"
                        .into(),
                );
            }
        }
    }
    Ok(CapturePlan {
        registers: true,
        reads,
    })
}
