//! Planning a capture: which registers and which memory a probe's handler
//! will read at a hit, decided when the probe is set, so the hit only
//! copies (a BPF program at a kernel uprobe, or a ptrace hit).
//!
//! How: the handler's reading code is not run. Its expressions are
//! interpreted symbolically (`eval::plan_number`, `eval::plan_evaluate`,
//! `eval::plan_locals`), and the values they render are planned from their
//! types and the limits (`value::room`). Each read they need arrives here
//! as a request at a symbolic address (a register plus a constant, the
//! pointer word at an offset of an earlier read plus a constant, or a fixed
//! address in a module), which is exactly what the program can compute at a
//! hit; the site's CFA comes from its unwind rule. What only the data can
//! decide (an index read from memory, a hash table's buckets, which enum
//! variant) is refused with a [`PlanRefusal`] that says why, and the probe
//! uses a ptrace breakpoint instead (or is refused for engine uprobe).

use crate::debuginfo::{ProcessImage, RuntimeAddr, reg};
use crate::eval::{self, PlanSite};
use crate::tracer::{CaptureBase, CapturePlan, CaptureRead, MAX_READS};
use crate::value::Redaction;
use crate::value::room::{PlanRefusal, ReadRequests, SymAddr, SymBase};

use super::probes::{SiteAction, TemplatePart, logpoint_limits};

/// How much one hit may copy. The planner's logic never assumes these
/// numbers: the kernel engine plans with [`PlanLimits::default`], a ptrace
/// engine that only copies may plan with larger ones.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PlanLimits {
    /// Most bytes of memory one hit copies.
    pub max_bytes: usize,
    /// Most reads one hit makes.
    pub max_reads: usize,
    /// Longest NUL-terminated string one read copies.
    pub max_string: usize,
}

impl Default for PlanLimits {
    /// The kernel-side (BPF) limits: a record stays under the ring's record
    /// limit with the registers and bookkeeping.
    fn default() -> Self {
        PlanLimits {
            max_bytes: 16 * 1024,
            max_reads: MAX_READS,
            max_string: 4096,
        }
    }
}

/// Longest single read a plan holds (its length is a `u16` in the program).
const MAX_READ_LEN: u64 = 0xffff;
/// A read grows upwards to take in bytes that follow it this closely.
const MERGE_GAP: u64 = 64;

/// The `pt_regs` slot (as in `user_regs_struct`, see
/// `tracer::user_regs_from_slots`) of a DWARF register.
fn register_slot(dwarf: u16) -> Option<u8> {
    Some(match dwarf {
        reg::RAX => 10,
        reg::RDX => 12,
        reg::RCX => 11,
        reg::RBX => 5,
        reg::RSI => 13,
        reg::RDI => 14,
        reg::RBP => 4,
        reg::RSP => 19,
        reg::R8 => 9,
        reg::R9 => 8,
        reg::R10 => 7,
        reg::R11 => 6,
        reg::R12 => 3,
        reg::R13 => 2,
        reg::R14 => 1,
        reg::R15 => 0,
        reg::RIP => 16,
        _ => return None,
    })
}

/// The plan being built: answers read requests with the reads it holds,
/// adding or growing them.
struct PlanBuilder<'a> {
    image: &'a ProcessImage,
    limits: PlanLimits,
    reads: Vec<CaptureRead>,
}

impl PlanBuilder<'_> {
    fn base_of(&self, address: SymAddr) -> Result<(CaptureBase, i64), PlanRefusal> {
        match address.base {
            SymBase::Register(register) => register_slot(register)
                .map(|slot| (CaptureBase::Register(slot), address.offset))
                .ok_or(PlanRefusal::Register { register }),
            SymBase::Word { read, at } => {
                let at = u32::try_from(at).map_err(|_| PlanRefusal::TooManyBytes {
                    bytes: at,
                    limit: self.limits.max_bytes as u64,
                })?;
                Ok((CaptureBase::Word { read, at }, address.offset))
            }
            // A fixed address must be a module's (a global): anything else
            // is a number the plan cannot vouch for.
            SymBase::Absolute => {
                let fixed = address.offset as u64;
                if self.image.module_for(RuntimeAddr(fixed)).is_some() {
                    Ok((CaptureBase::Absolute, address.offset))
                } else {
                    Err(PlanRefusal::DataDependentAddress {
                        what: format!("a fixed address ({fixed:#x}) outside every module"),
                    })
                }
            }
        }
    }

    fn too_many_reads(&self) -> PlanRefusal {
        PlanRefusal::TooManyReads {
            limit: self.limits.max_reads,
        }
    }

    /// Every word a read takes its address from lies wholly in an earlier
    /// read (the program runs reads in order), and the bytes fit.
    fn finish(self) -> Result<CapturePlan, PlanRefusal> {
        for (i, read) in self.reads.iter().enumerate() {
            if let CaptureBase::Word { read: from, at } = read.base {
                let fits = from < i && self.reads[from].len >= at + 8 && !self.reads[from].string;
                if !fits {
                    return Err(PlanRefusal::Other(format!(
                        "read {i} takes its address from a word outside read {from}, which the capture cannot follow"
                    )));
                }
            }
        }
        let bytes: u64 = self.reads.iter().map(|r| u64::from(r.len)).sum();
        if bytes > self.limits.max_bytes as u64 {
            return Err(PlanRefusal::TooManyBytes {
                bytes,
                limit: self.limits.max_bytes as u64,
            });
        }
        Ok(CapturePlan {
            registers: true,
            reads: self.reads,
        })
    }
}

impl ReadRequests for PlanBuilder<'_> {
    fn read(&mut self, at: SymAddr, len: u64) -> Result<(usize, u64), PlanRefusal> {
        let (base, offset) = self.base_of(at)?;
        if len > MAX_READ_LEN || len > self.limits.max_bytes as u64 {
            return Err(PlanRefusal::TooManyBytes {
                bytes: len,
                limit: (self.limits.max_bytes as u64).min(MAX_READ_LEN),
            });
        }
        for (i, read) in self.reads.iter_mut().enumerate() {
            if read.string || read.base != base || offset < read.offset {
                continue;
            }
            let start = offset.abs_diff(read.offset);
            let end = start + len;
            if end <= u64::from(read.len) {
                return Ok((i, start));
            }
            // Grow a read upwards when the new bytes follow closely (the
            // offsets of words inside it do not move).
            if start <= u64::from(read.len) + MERGE_GAP && end <= MAX_READ_LEN {
                read.len = end as u32;
                return Ok((i, start));
            }
        }
        if self.reads.len() >= self.limits.max_reads {
            return Err(self.too_many_reads());
        }
        self.reads.push(CaptureRead {
            base,
            offset,
            len: len as u32,
            string: false,
        });
        Ok((self.reads.len() - 1, 0))
    }

    fn read_string(&mut self, at: SymAddr, max: u64) -> Result<(), PlanRefusal> {
        let (base, offset) = self.base_of(at)?;
        if max > self.limits.max_string as u64 {
            return Err(PlanRefusal::StringTooLong {
                wanted: max,
                limit: self.limits.max_string as u64,
            });
        }
        if self.reads.len() >= self.limits.max_reads {
            return Err(self.too_many_reads());
        }
        // A string read of its own: the kernel copies up to the NUL, so a
        // string ending just before unmapped memory still reads (the
        // program's `bpf_probe_read_user_str`), with room for `max` bytes
        // and the NUL.
        self.reads.push(CaptureRead {
            base,
            offset,
            len: max as u32 + 1,
            string: true,
        });
        Ok(())
    }
}

/// The site's CFA from its unwind rule (a register plus an offset), and the
/// CFA-relative slots the unwinder reads for frame 0.
fn site_cfa(
    image: &ProcessImage,
    address: RuntimeAddr,
) -> Result<(SymAddr, Vec<i64>), PlanRefusal> {
    let module = image
        .module_for(address)
        .ok_or_else(|| PlanRefusal::NoCfaRule {
            why: "the site is in no loaded module".into(),
        })?;
    let rule = module
        .site_unwind_rule(module.to_file(address).0)
        .map_err(|why| PlanRefusal::NoCfaRule { why: why.into() })?;
    let register = rule.cfa_register;
    register_slot(register)
        .map(|_| (SymAddr::register(register, rule.cfa_offset), rule.saved_at))
        .ok_or(PlanRefusal::Register { register })
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
) -> Result<CapturePlan, PlanRefusal> {
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
        return Err(PlanRefusal::CallerFrames);
    }
    let unwind = site_cfa(image, address);
    let mut builder = PlanBuilder {
        image,
        limits,
        reads: Vec::new(),
    };
    // The renderer unwinds frame 0 for its CFA, reading the slots the CFI
    // names (the return address, saved registers): copy them.
    if let Ok((cfa, saved_at)) = &unwind {
        for offset in saved_at {
            builder.read(cfa.plus(*offset), 8)?;
        }
    }
    let site = PlanSite {
        image,
        pc: address,
        cfa: unwind.map(|(cfa, _)| cfa),
    };
    if let Some(condition) = condition {
        eval::plan_number(condition, &site, &mut builder)?;
    }
    match action {
        SiteAction::Snapshot {
            frames,
            expressions,
            limits: render,
        } => {
            if *frames > 0 {
                eval::plan_locals(&site, render, redaction, &mut builder)?;
            }
            for (_, e) in expressions {
                eval::plan_evaluate(e, &site, render, redaction, &mut builder)?;
            }
        }
        SiteAction::Logpoint { parts } => {
            let render = logpoint_limits();
            for part in parts {
                if let TemplatePart::Expr(_, e) = part {
                    eval::plan_evaluate(e, &site, &render, redaction, &mut builder)?;
                }
            }
        }
        SiteAction::Histogram(e) => eval::plan_number(e, &site, &mut builder)?,
        SiteAction::Count | SiteAction::DurationStart | SiteAction::DurationEnd => {}
    }
    builder.finish()
}
