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

use crate::debuginfo::types::TypeTables;
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

impl PlanLimits {
    /// A kernel-side capture: with registers and bookkeeping a record stays
    /// under the ring's record limit, and the program's read loop is bounded.
    pub const BPF: PlanLimits = PlanLimits {
        max_bytes: 16 * 1024,
        max_reads: MAX_READS,
        max_string: 4096,
    };
    /// A ptrace breakpoint's copy: batched `process_vm_readv` from user
    /// space, bounded only by how long a thread may be held for it (about
    /// 10 µs per 64 KiB).
    pub const PTRACE: PlanLimits = PlanLimits {
        max_bytes: 256 * 1024,
        max_reads: 1024,
        max_string: 4096,
    };
}

impl Default for PlanLimits {
    /// The kernel-side (BPF) limits: a record stays under the ring's record
    /// limit with the registers and bookkeeping.
    fn default() -> Self {
        PlanLimits::BPF
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
    types: &TypeTables,
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
    match &unwind {
        Ok((cfa, saved_at)) => {
            for offset in saved_at {
                builder.read(cfa.plus(*offset), 8)?;
            }
        }
        // Without CFI the unwinder takes the rbp chain: the saved rbp and
        // the return address.
        Err(_) => {
            builder.read(SymAddr::register(reg::RBP, 0), 16)?;
        }
    }
    let site = PlanSite {
        image,
        pc: address,
        cfa: unwind.map(|(cfa, _)| cfa),
        types,
    };
    walk_reads(
        &site,
        condition,
        action,
        redaction,
        &mut builder,
        Walk::Plan,
    )?;
    builder.finish()
}

/// How `walk_reads` takes a refusal.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Walk {
    /// Planning: the first refusal is the answer.
    Plan,
    /// Warming tables: each part on its own, past any refusal.
    Warm,
}

/// Asks `builder` for what a site's condition and action read, in the
/// order a hit renders them.
fn walk_reads(
    site: &PlanSite<'_>,
    condition: Option<&eval::CompiledExpr>,
    action: &SiteAction,
    redaction: &Redaction,
    builder: &mut PlanBuilder<'_>,
    walk: Walk,
) -> Result<(), PlanRefusal> {
    let taken = |result: Result<(), PlanRefusal>| match walk {
        Walk::Plan => result,
        Walk::Warm => Ok(()),
    };
    if let Some(condition) = condition {
        taken(eval::plan_number(condition, site, builder))?;
    }
    match action {
        SiteAction::Snapshot {
            frames,
            expressions,
            limits: render,
        } => {
            if *frames > 0 {
                match walk {
                    Walk::Plan => eval::plan_locals(site, render, redaction, builder)?,
                    Walk::Warm => eval::warm_locals(site, render, redaction, builder),
                }
            }
            for (_, e) in expressions {
                taken(eval::plan_evaluate(e, site, render, redaction, builder))?;
            }
        }
        SiteAction::Logpoint { parts } => {
            let render = logpoint_limits();
            for part in parts {
                if let TemplatePart::Expr(_, e) = part {
                    taken(eval::plan_evaluate(e, site, &render, redaction, builder))?;
                }
            }
        }
        SiteAction::Histogram(e) => taken(eval::plan_number(e, site, builder))?,
        SiteAction::Count | SiteAction::DurationStart | SiteAction::DurationEnd => {}
    }
    Ok(())
}

/// Warms what the hits of a site whose capture cannot be planned read with
/// the thread held: the probe's own type tables (`types`) with everything
/// planning reaches, each local and expression on its own past a refusal,
/// and the module's caches of the site's unwind row and source frames.
pub fn warm_site(
    image: &ProcessImage,
    address: RuntimeAddr,
    condition: Option<&eval::CompiledExpr>,
    action: &SiteAction,
    redaction: &Redaction,
    types: &TypeTables,
) {
    image.symbolize(address, false);
    // Only tables are wanted: the reads asked for are bounded by wide
    // limits and then thrown away.
    let mut builder = PlanBuilder {
        image,
        limits: PlanLimits::PTRACE,
        reads: Vec::new(),
    };
    let site = PlanSite {
        image,
        pc: address,
        cfa: site_cfa(image, address).map(|(cfa, _)| cfa),
        types,
    };
    // Refusals were reported when the site was planned.
    let _ = walk_reads(
        &site,
        condition,
        action,
        redaction,
        &mut builder,
        Walk::Warm,
    );
}

#[cfg(test)]
mod tests {
    //! The planner on its own, on a committed recording (the C values
    //! fixture stopped in `inspect_here`: its program with DWARF, registers
    //! and the memory its reading touched). A plan is checked by running it
    //! the way a hit does (registers, then each read at its base + offset)
    //! and rendering from the copied bytes only: the result must equal the
    //! rendering from the whole recorded memory.

    use std::path::Path;
    use std::sync::Arc;

    use super::*;
    use crate::debuginfo::{MemorySource, Module, RecordedMemory, Registers};
    use crate::eval::{CompiledExpr, FrameContext};
    use crate::value::Limits;

    struct Recording {
        image: ProcessImage,
        memory: RecordedMemory,
        regs: Registers,
        pc: RuntimeAddr,
        cfa: Option<u64>,
        is_caller: bool,
    }

    fn recording(name: &str) -> Recording {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/recordings")
            .join(name);
        let text = std::fs::read_to_string(dir.join("frame.json")).expect("frame.json");
        let frame: serde_json::Value = serde_json::from_str(&text).expect("json");
        let bias = frame["bias"].as_u64().expect("bias");
        let module = Module::open_file(&dir.join("program"), bias).expect("program");
        let image = ProcessImage::from_modules(0, vec![Arc::new(module)], Some(0));
        let mut memory = RecordedMemory::new();
        for range in frame["memory"].as_array().expect("memory") {
            let address = range[0].as_u64().expect("address");
            let hex = range[1].as_str().expect("hex");
            let bytes = (0..hex.len())
                .step_by(2)
                .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).expect("hex"))
                .collect();
            memory.insert(address, bytes);
        }
        let mut regs = Registers::new();
        for (k, value) in frame["registers"]
            .as_array()
            .expect("registers")
            .iter()
            .enumerate()
        {
            regs.set(k as u16, value.as_u64());
        }
        Recording {
            image,
            memory,
            regs,
            pc: RuntimeAddr(frame["pc"].as_u64().expect("pc")),
            cfa: frame["cfa"].as_u64(),
            is_caller: frame["is_caller"].as_bool().unwrap_or(false),
        }
    }

    impl Recording {
        fn ctx<'a>(&'a self, memory: &'a dyn MemorySource) -> FrameContext<'a> {
            self.ctx_in(memory, TypeTables::shared())
        }

        /// The frame as the reader with `types` sees it.
        fn ctx_in<'a>(
            &'a self,
            memory: &'a dyn MemorySource,
            types: &'a TypeTables,
        ) -> FrameContext<'a> {
            FrameContext {
                image: &self.image,
                pc: self.pc,
                regs: &self.regs,
                cfa: self.cfa,
                is_caller: self.is_caller,
                inline_depth: 0,
                memory,
                types,
            }
        }

        fn compile(&self, source: &str) -> CompiledExpr {
            eval::compile(source, &self.ctx(&self.memory)).expect(source)
        }

        fn snapshot(&self, frames: usize, expressions: &[&str], limits: Limits) -> SiteAction {
            SiteAction::Snapshot {
                frames,
                expressions: expressions
                    .iter()
                    .map(|e| (e.to_string(), self.compile(e)))
                    .collect(),
                limits,
            }
        }

        fn plan(
            &self,
            condition: Option<&str>,
            action: &SiteAction,
            limits: PlanLimits,
        ) -> Result<CapturePlan, PlanRefusal> {
            let condition = condition.map(|c| self.compile(c));
            plan_site(
                &self.image,
                self.pc,
                condition.as_ref(),
                action,
                &Redaction::default(),
                limits,
                TypeTables::shared(),
            )
        }

        /// Runs `plan` as a hit would, copying only what it names (byte
        /// by byte where the recording has them).
        fn execute(&self, plan: &CapturePlan) -> Copied {
            let mut copied = RecordedMemory::new();
            let mut data: Vec<Vec<Option<u8>>> = Vec::new();
            for read in &plan.reads {
                let base = match read.base {
                    CaptureBase::Register(slot) => (0..=reg::RIP)
                        .find(|r| register_slot(*r) == Some(slot))
                        .and_then(|r| self.regs.get(r)),
                    CaptureBase::Word { read: from, at } => {
                        let word: Option<Vec<u8>> = data[from]
                            .get(at as usize..at as usize + 8)
                            .and_then(|w| w.iter().copied().collect());
                        word.map(|w| u64::from_le_bytes(w.try_into().expect("8 bytes")))
                    }
                    CaptureBase::Absolute => Some(0),
                };
                let mut bytes = vec![None; read.len as usize];
                if let Some(base) = base {
                    let start = base.wrapping_add(read.offset as u64);
                    for (i, slot) in bytes.iter_mut().enumerate() {
                        let mut byte = [0u8];
                        let address = start.wrapping_add(i as u64);
                        if self.memory.read_memory(address, &mut byte).is_ok() {
                            *slot = Some(byte[0]);
                            copied.insert(address, byte.to_vec());
                        }
                        if read.string && byte[0] == 0 {
                            break;
                        }
                    }
                }
                data.push(bytes);
            }
            Copied(copied)
        }
    }

    /// The bytes a plan copied; a string is answered from the copy (up to
    /// its NUL), as the renderer of a capture does.
    struct Copied(RecordedMemory);

    impl MemorySource for Copied {
        fn read_memory(
            &self,
            addr: u64,
            buf: &mut [u8],
        ) -> Result<(), crate::debuginfo::MemoryError> {
            self.0.read_memory(addr, buf)
        }

        fn wants_exact_reads(&self) -> bool {
            true
        }

        fn read_string(
            &self,
            addr: u64,
            max: usize,
        ) -> Result<(Vec<u8>, bool), crate::debuginfo::MemoryError> {
            let mut bytes = Vec::new();
            while bytes.len() < max {
                let mut byte = [0u8];
                match self
                    .0
                    .read_memory(addr.wrapping_add(bytes.len() as u64), &mut byte)
                {
                    Ok(()) if byte[0] == 0 => return Ok((bytes, true)),
                    Ok(()) => bytes.push(byte[0]),
                    Err(error) if bytes.is_empty() => return Err(error),
                    Err(_) => return Ok((bytes, false)),
                }
            }
            Ok((bytes, false))
        }
    }

    fn wide() -> PlanLimits {
        PlanLimits {
            max_bytes: 1 << 20,
            max_reads: 4096,
            max_string: 4096,
        }
    }

    /// A probe's own type tables are filled when it is set (its compile and
    /// its planning), so its hits decode nothing planning had not; client
    /// requests' tables are never touched by it.
    #[test]
    fn a_probe_decodes_with_its_own_tables_warmed_when_it_is_set() {
        let r = recording("c_values_O0");
        let module = r.image.module_for(r.pc).expect("module").clone();
        let own = TypeTables::new();
        let set_time = r.ctx_in(&r.memory, &own);
        let compile = |source: &str| eval::compile(source, &set_time).expect(source);
        let condition = compile("where->x > 0");
        let limits = Limits::default();
        let action = SiteAction::Snapshot {
            frames: 1,
            expressions: vec![("sh.corners[1].y".to_string(), compile("sh.corners[1].y"))],
            limits: limits.clone(),
        };
        let redaction = Redaction::default();
        let plan = plan_site(
            &r.image,
            r.pc,
            Some(&condition),
            &action,
            &redaction,
            wide(),
            &own,
        )
        .expect("plannable");
        let table = own.table_for(&module);
        let warmed = table.lock().expect("lock").decoded();
        assert!(warmed.0 > 0 && warmed.1 > 0, "{warmed:?}");

        // A hit: condition, locals and expression from the copy.
        let copied = r.execute(&plan);
        let hit = r.ctx_in(&copied, &own);
        assert!(eval::evaluate_condition(&condition, &hit).expect("condition"));
        let locals = eval::read_locals(&hit, &limits, &redaction).expect("locals");
        assert!(locals.iter().any(|v| v.name == "sh"));
        let SiteAction::Snapshot { expressions, .. } = &action else {
            unreachable!("a snapshot");
        };
        let value = eval::evaluate(&expressions[0].1, &hit, &limits, &redaction);
        assert!(value.unavailable.is_none(), "{value:?}");
        assert_eq!(table.lock().expect("lock").decoded(), warmed);
        assert!(
            !TypeTables::shared().has_table_for(&module),
            "the probe used client requests' tables"
        );
    }

    /// A site whose capture cannot be planned (caller frames) is warmed
    /// when it is set: its held hits read frame 0's locals with nothing
    /// left to decode.
    #[test]
    fn a_site_that_cannot_be_planned_is_warmed_for_its_held_hits() {
        let r = recording("c_values_O0");
        let module = r.image.module_for(r.pc).expect("module").clone();
        let own = TypeTables::new();
        let limits = Limits::default();
        let redaction = Redaction::default();
        let action = r.snapshot(2, &[], limits.clone());
        let refusal = plan_site(
            &r.image,
            r.pc,
            None,
            &action,
            &redaction,
            PlanLimits::PTRACE,
            &own,
        )
        .expect_err("caller frames");
        assert_eq!(refusal, PlanRefusal::CallerFrames);
        assert!(!own.has_table_for(&module), "refused before decoding");
        warm_site(&r.image, r.pc, None, &action, &redaction, &own);
        let table = own.table_for(&module);
        let warmed = table.lock().expect("lock").decoded();
        assert!(warmed.0 > 0 && warmed.1 > 0, "{warmed:?}");
        // A probe's hit is frame 0 at the site's pc.
        let hit = FrameContext {
            is_caller: false,
            ..r.ctx_in(&r.memory, &own)
        };
        let locals = eval::read_locals(&hit, &limits, &redaction).expect("locals");
        assert!(locals.iter().any(|v| v.name == "first"));
        assert_eq!(table.lock().expect("lock").decoded(), warmed);
    }

    /// Every local of the frame, rendered from the planned bytes only,
    /// reads as it does from the whole memory: pointers followed, strings,
    /// arrays, nested structs, a linked list and a cycle.
    #[test]
    fn planned_locals_render_as_from_the_whole_memory() {
        let r = recording("c_values_O0");
        let limits = Limits::default();
        let plan = r
            .plan(None, &r.snapshot(1, &[], limits.clone()), wide())
            .expect("plannable");
        assert!(plan.registers);
        let copied = r.execute(&plan);
        let redaction = Redaction::default();
        let whole = eval::read_locals(&r.ctx(&r.memory), &limits, &redaction).expect("locals");
        let planned = eval::read_locals(&r.ctx(&copied), &limits, &redaction).expect("locals");
        assert_eq!(
            serde_json::to_value(&planned).expect("json"),
            serde_json::to_value(&whole).expect("json")
        );
        // Not a plan that copies nothing and an empty frame.
        let text = whole.iter().find(|v| v.name == "text").expect("text");
        assert_eq!(text.value, "\"hi\"");
        let first = whole.iter().find(|v| v.name == "first").expect("first");
        let shown = serde_json::to_string(first).expect("json");
        assert!(shown.contains("\"value\":\"2\""), "followed: {shown}");
    }

    /// Expressions and a condition: what they read is planned, and their
    /// values from the planned bytes equal those from the whole memory.
    #[test]
    fn planned_expressions_and_conditions_read_what_they_need() {
        let r = recording("c_values_O0");
        let limits = Limits::default();
        let expressions = [
            "where->x",
            "first.next->next->value",
            "numbers[2]",
            "sh.corners[1].y",
            "label",
            "*message",
            "acct.name",
            "&p",
            "count * 2 + 1",
        ];
        let condition = "count > 1 && label == \"label\" && where->y != 12345";
        let action = r.snapshot(0, &expressions, limits.clone());
        let plan = r
            .plan(Some(condition), &action, PlanLimits::default())
            .expect("plannable within the BPF limits");
        let copied = r.execute(&plan);
        let redaction = Redaction::default();
        for source in expressions {
            let e = r.compile(source);
            let whole = eval::evaluate(&e, &r.ctx(&r.memory), &limits, &redaction);
            let planned = eval::evaluate(&e, &r.ctx(&copied), &limits, &redaction);
            assert_eq!(planned, whole, "{source}");
            assert!(whole.unavailable.is_none(), "{source}: {whole:?}");
        }
        let c = r.compile(condition);
        let whole = eval::evaluate_condition(&c, &r.ctx(&r.memory)).expect("condition");
        let planned = eval::evaluate_condition(&c, &r.ctx(&copied)).expect("condition");
        assert_eq!(planned, whole);
        assert!(whole, "the fixture's values make it true");
        // The symbolic bases are what a program can compute: a register
        // (the frame's locals), then words of earlier reads (pointers).
        assert!(
            plan.reads
                .iter()
                .any(|read| matches!(read.base, CaptureBase::Register(_)))
        );
        assert!(
            plan.reads
                .iter()
                .any(|read| matches!(read.base, CaptureBase::Word { .. }))
        );
    }

    /// Addresses computed from the target's data are refused with the
    /// reason, in the expression, the condition and the histogram alike.
    #[test]
    fn data_dependent_addresses_are_refused_with_the_reason() {
        let r = recording("c_values_O0");
        for source in [
            "numbers[count]",
            "numbers[count % 4]",
            "(where + count)->x",
            "numbers[numbers[0] - 10]",
        ] {
            let action = r.snapshot(0, &[source], Limits::default());
            let refusal = r.plan(None, &action, wide()).expect_err(source);
            assert!(
                matches!(refusal, PlanRefusal::DataDependentAddress { .. }),
                "{source}: {refusal:?}"
            );
            let text = refusal.to_string();
            assert!(
                text.contains("computed from the target's data") && text.contains(source),
                "{source}: {text}"
            );
            let condition = format!("{source} == 1");
            let refusal = r
                .plan(Some(&condition), &SiteAction::Count, wide())
                .expect_err(&condition);
            assert!(matches!(refusal, PlanRefusal::DataDependentAddress { .. }));
            let histogram = SiteAction::Histogram(Box::new(r.compile(source)));
            assert!(r.plan(None, &histogram, wide()).is_err(), "{source}");
        }
        // A constant index, even one written as arithmetic, is planned.
        let action = r.snapshot(0, &["numbers[4 - 1]", "where[0].y"], Limits::default());
        assert!(r.plan(None, &action, wide()).is_ok());
    }

    /// The other refusals: caller frames, a C string's full length, and a
    /// plan past its limits, each saying what to do instead.
    #[test]
    fn other_refusals_say_why_and_what_to_do() {
        let r = recording("c_values_O0");
        let frames = r.snapshot(2, &[], Limits::default());
        let refusal = r.plan(None, &frames, wide()).expect_err("frames 2");
        assert_eq!(refusal, PlanRefusal::CallerFrames);
        assert!(refusal.to_string().contains("frames 1"), "{refusal}");

        let strlen = r.snapshot(0, &["len(label)"], Limits::default());
        let refusal = r
            .plan(None, &strlen, PlanLimits::default())
            .expect_err("len");
        assert!(
            matches!(refusal, PlanRefusal::StringTooLong { .. }),
            "{refusal:?}"
        );

        let locals = r.snapshot(1, &[], Limits::default());
        let one_read = PlanLimits {
            max_reads: 1,
            ..wide()
        };
        let refusal = r.plan(None, &locals, one_read).expect_err("one read");
        assert_eq!(refusal, PlanRefusal::TooManyReads { limit: 1 });
        let few_bytes = PlanLimits {
            max_bytes: 64,
            ..wide()
        };
        let refusal = r.plan(None, &locals, few_bytes).expect_err("64 bytes");
        assert!(
            matches!(refusal, PlanRefusal::TooManyBytes { .. }),
            "{refusal:?}"
        );
        assert!(refusal.to_string().contains("smaller limits"), "{refusal}");
    }

    /// Probes that read nothing of the frame need no capture at all.
    #[test]
    fn counts_and_durations_plan_nothing() {
        let r = recording("c_values_O0");
        for action in [
            SiteAction::Count,
            SiteAction::DurationStart,
            SiteAction::DurationEnd,
        ] {
            assert_eq!(
                r.plan(None, &action, PlanLimits::default()),
                Ok(CapturePlan::default())
            );
        }
    }
}
