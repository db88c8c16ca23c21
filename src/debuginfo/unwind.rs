//! Stack unwinding from call frame information: `.eh_frame` through the `.eh_frame_hdr` binary-search table,
//! else `.eh_frame` or `.debug_frame` through a lazily built sorted FDE index. Frame pointers are used only as
//! an explicit, marked last resort when a pc has no CFI.
//!
//! Owns the register-rule evaluation over the rows cfi.rs finds in each module. Reads the target stack only
//! through [`MemorySource`]; never calls ptrace.

use gimli::{CfaRule, RegisterRule};

use super::addr::RuntimeAddr;
use super::bytes::DwarfReader;
use super::cfi::expression_of;
use super::image::ProcessImage;
use super::memory::{MemorySource, read_u64};
use super::module::Module;
use super::registers::{Registers, reg};

/// How a frame's registers were obtained.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum UnwindMethod {
    /// Frame 0: the registers as given.
    Initial,
    /// Recovered from DWARF call frame information.
    Cfi,
    /// Guessed by following the rbp chain because the callee had no CFI (may be wrong).
    FramePointer,
}

/// One frame of an unwound stack.
#[derive(Clone, Debug)]
pub struct UnwoundFrame {
    /// The frame's pc: for caller frames, the return address.
    pub pc: RuntimeAddr,
    /// Registers of this frame: callee-saved ones restored by CFI, others unknown (None).
    pub regs: Registers,
    /// This frame's canonical frame address (the caller's sp before the call), when CFI gives it.
    pub cfa: Option<u64>,
    /// True when `pc` is a return address (look up `pc - 1` for line, scope and CFI); false for frame 0 and for
    /// frames interrupted by a signal.
    pub is_caller: bool,
    /// How the registers of this frame were recovered.
    pub method: UnwindMethod,
    /// This frame is the kernel's signal trampoline (`__restore_rt`): gdb shows it as
    /// `<signal handler called>`; the next frame is the code the signal interrupted.
    pub is_signal_trampoline: bool,
}

/// What CFI says about one frame: its CFA, and the caller's registers.
struct Step {
    cfa: u64,
    caller: Registers,
    /// The frame is a signal trampoline: the caller's pc is the interrupted pc, not a return address.
    signal_frame: bool,
}

/// An evaluation environment for CFI expressions.
struct ExprEnv<'a> {
    regs: &'a Registers,
    mem: &'a dyn MemorySource,
    bias: u64,
}

fn eval_expression(
    expr: gimli::Expression<DwarfReader>,
    encoding: gimli::Encoding,
    env: &ExprEnv<'_>,
    initial: Option<u64>,
) -> Option<u64> {
    let mut eval = expr.evaluation(encoding);
    eval.set_max_iterations(10_000);
    if let Some(v) = initial {
        eval.set_initial_value(v);
    }
    let mut result = eval.evaluate().ok()?;
    loop {
        result = match result {
            gimli::EvaluationResult::Complete => break,
            gimli::EvaluationResult::RequiresRegister { register, .. } => {
                let v = env.regs.get(register.0)?;
                eval.resume_with_register(gimli::Value::Generic(v)).ok()?
            }
            gimli::EvaluationResult::RequiresMemory { address, size, .. } => {
                let mut buf = [0u8; 8];
                let n = usize::from(size).min(8);
                env.mem.read_memory(address, &mut buf[..n]).ok()?;
                eval.resume_with_memory(gimli::Value::Generic(u64::from_le_bytes(buf)))
                    .ok()?
            }
            gimli::EvaluationResult::RequiresRelocatedAddress(a) => eval
                .resume_with_relocated_address(a.wrapping_add(env.bias))
                .ok()?,
            _ => return None,
        };
    }
    let pieces = eval.result();
    match pieces.first().map(|p| &p.location) {
        Some(gimli::Location::Address { address }) => Some(*address),
        Some(gimli::Location::Value { value }) => value.to_u64(u64::MAX).ok(),
        Some(gimli::Location::Register { register }) => env.regs.get(register.0),
        _ => None,
    }
}

/// How a site's frame is unwound, from its CFI row.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SiteUnwindRule {
    /// The CFA is this DWARF register ...
    pub cfa_register: u16,
    /// ... plus this offset.
    pub cfa_offset: i64,
    /// CFA-relative offsets of the 8-byte slots the unwinder reads (saved
    /// registers and the return address).
    pub saved_at: Vec<i64>,
}

impl Module {
    /// The unwind rule at a file address, when the unwind info gives the
    /// CFA as a register plus an offset (otherwise what it is instead): a
    /// capture planned before a hit decides the CFA from this, and copies the
    /// slots the unwinder reads (saved registers, the return address).
    pub fn site_unwind_rule(&self, file_pc: u64) -> Result<SiteUnwindRule, &'static str> {
        let cached = self
            .cfi
            .row_for(file_pc)
            .ok_or("no unwind info covers the site")?;
        let (register, offset) = match cached.row.cfa() {
            CfaRule::RegisterAndOffset { register, offset } => (register.0, *offset),
            CfaRule::Expression(_) => return Err("the CFA is a DWARF expression"),
        };
        let saved_at = (0..=reg::RIP)
            .filter_map(|r| match cached.row.register(gimli::Register(r)) {
                Some(RegisterRule::Offset(off)) => Some(off),
                _ => None,
            })
            .collect();
        Ok(SiteUnwindRule {
            cfa_register: register,
            cfa_offset: offset,
            saved_at,
        })
    }

    /// Finds the unwind row for a file address and applies it to `regs`.
    fn cfi_step(&self, file_pc: u64, regs: &Registers, mem: &dyn MemorySource) -> Option<Step> {
        let cached = self.cfi.row_for(file_pc)?;
        let row = &cached.row;
        let encoding = cached.encoding;
        let env = ExprEnv {
            regs,
            mem,
            bias: self.bias,
        };
        let cfa = match row.cfa() {
            CfaRule::RegisterAndOffset { register, offset } => {
                regs.get(register.0)?.checked_add_signed(*offset)?
            }
            CfaRule::Expression(expr) => eval_expression(
                expression_of(&self.cfi, &cached, expr)?,
                encoding,
                &env,
                None,
            )?,
        };
        let mut caller = Registers::new();
        caller.set_fs_base(regs.fs_base());
        for r in 0..=reg::RIP {
            let rule = row.register(gimli::Register(r));
            let value = match rule {
                None | Some(RegisterRule::SameValue) if r == reg::RSP => Some(cfa),
                None if r == reg::RIP => None,
                None => reg::CALLEE_SAVED
                    .contains(&r)
                    .then(|| regs.get(r))
                    .flatten(),
                Some(RegisterRule::Undefined) => None,
                Some(RegisterRule::SameValue) => regs.get(r),
                Some(RegisterRule::Offset(off)) => read_u64(mem, cfa.checked_add_signed(off)?).ok(),
                Some(RegisterRule::ValOffset(off)) => cfa.checked_add_signed(off),
                Some(RegisterRule::Register(other)) => regs.get(other.0),
                Some(RegisterRule::Expression(expr)) => {
                    let addr = eval_expression(
                        expression_of(&self.cfi, &cached, &expr)?,
                        encoding,
                        &env,
                        Some(cfa),
                    );
                    addr.and_then(|a| read_u64(mem, a).ok())
                }
                Some(RegisterRule::ValExpression(expr)) => eval_expression(
                    expression_of(&self.cfi, &cached, &expr)?,
                    encoding,
                    &env,
                    Some(cfa),
                ),
                Some(RegisterRule::Constant(v)) => Some(v),
                Some(_) => None,
            };
            caller.set(r, value);
        }
        Some(Step {
            cfa,
            caller,
            signal_frame: cached.signal_frame,
        })
    }
}

/// The rbp-chain guess for a frame without CFI: [rbp] = caller's rbp, [rbp+8] = return address; the
/// caller's other registers are unknown.
fn frame_pointer_step(regs: &Registers, mem: &dyn MemorySource) -> Option<Step> {
    let rbp = regs.get(reg::RBP)?;
    if rbp == 0 || rbp % 8 != 0 || regs.sp().is_some_and(|sp| rbp < sp) {
        return None;
    }
    let saved_rbp = read_u64(mem, rbp).ok()?;
    let ra = read_u64(mem, rbp.checked_add(8)?).ok()?;
    let cfa = rbp.checked_add(16)?;
    let mut caller = Registers::new();
    caller.set_fs_base(regs.fs_base());
    caller.set(reg::RBP, Some(saved_rbp));
    caller.set(reg::RSP, Some(cfa));
    caller.set(reg::RIP, Some(ra));
    // The other callee-saved registers stay unknown: a function without CFI
    // may have saved and reused them, and where it saved them is not known.
    // Showing the inner frame's values as the caller's would be a guess.
    Some(Step {
        cfa,
        caller,
        signal_frame: false,
    })
}

impl ProcessImage {
    /// CFI unwind (.eh_frame via .eh_frame_hdr binary search, else .debug_frame), not relying on frame
    /// pointers (the rbp chain is used only when a pc has no CFI at all, and such frames are marked
    /// [`UnwindMethod::FramePointer`]). Frame 0 = `regs` as given; each caller frame carries the registers
    /// recovered by CFI (callee-saved restored, others unknown), its CFA, and pc = return address. Stops at
    /// `max_frames`, pc 0, an undefined return address, a non-increasing CFA, or a read error.
    pub fn unwind(
        &self,
        regs: &Registers,
        mem: &dyn MemorySource,
        max_frames: usize,
    ) -> Vec<UnwoundFrame> {
        self.unwind_iter(regs, mem).take(max_frames).collect()
    }

    /// The same frames as [`ProcessImage::unwind`], computed one at a time: a caller that needs frame N
    /// stops there instead of unwinding the whole stack.
    pub fn unwind_iter<'a>(&'a self, regs: &Registers, mem: &'a dyn MemorySource) -> FrameIter<'a> {
        let pending = regs.pc().map(|pc| UnwoundFrame {
            pc: RuntimeAddr(pc),
            regs: regs.clone(),
            cfa: None,
            is_caller: false,
            method: UnwindMethod::Initial,
            is_signal_trampoline: false,
        });
        FrameIter {
            image: self,
            mem,
            pending,
            prev_cfa: None,
        }
    }
}

impl ProcessImage {
    /// The caller of one frame (`pc`, `regs` and `is_caller` as that frame has them), or None when it cannot
    /// be unwound. Its `method` says how its registers were recovered: only [`UnwindMethod::Cfi`] frames have
    /// registers one may rely on.
    pub fn caller_of(
        &self,
        pc: RuntimeAddr,
        regs: &Registers,
        is_caller: bool,
        mem: &dyn MemorySource,
    ) -> Option<UnwoundFrame> {
        let mut regs = regs.clone();
        regs.set(reg::RIP, Some(pc.0));
        let mut frames = FrameIter {
            image: self,
            mem,
            pending: Some(UnwoundFrame {
                pc,
                regs,
                cfa: None,
                is_caller,
                method: UnwindMethod::Initial,
                is_signal_trampoline: false,
            }),
            prev_cfa: None,
        };
        frames.next()?;
        frames.next()
    }
}

/// Lazily unwound frames (see [`ProcessImage::unwind_iter`]).
pub struct FrameIter<'a> {
    image: &'a ProcessImage,
    mem: &'a dyn MemorySource,
    /// The next frame to return; its CFA and its caller are computed when it is returned.
    pending: Option<UnwoundFrame>,
    prev_cfa: Option<u64>,
}

impl Iterator for FrameIter<'_> {
    type Item = UnwoundFrame;

    fn next(&mut self) -> Option<UnwoundFrame> {
        let mut cur = self.pending.take()?;
        let lookup = if cur.is_caller {
            cur.pc.0.saturating_sub(1)
        } else {
            cur.pc.0
        };
        let cfi = self
            .image
            .module_for(RuntimeAddr(lookup))
            .and_then(|m| m.cfi_step(m.to_file(RuntimeAddr(lookup)).0, &cur.regs, self.mem));
        let (step, method) = match cfi {
            Some(step) => (step, UnwindMethod::Cfi),
            None => match frame_pointer_step(&cur.regs, self.mem) {
                Some(step) => (step, UnwindMethod::FramePointer),
                None => return Some(cur),
            },
        };
        if method == UnwindMethod::Cfi {
            cur.cfa = Some(step.cfa);
        }
        if step.signal_frame {
            // A signal trampoline (__restore_rt) is entered by the kernel, not called: its pc is not a
            // return address, so it is looked up as is (its FDE starts a byte early for the pc-1 CFI lookup).
            cur.is_caller = false;
            cur.is_signal_trampoline = true;
        }
        let caller_pc = step.caller.pc().filter(|&p| p != 0);
        let increasing = self.prev_cfa.is_none_or(|p| step.cfa > p) && step.caller.sp().is_some();
        if let Some(caller_pc) = caller_pc.filter(|_| increasing) {
            self.prev_cfa = Some(step.cfa);
            self.pending = Some(UnwoundFrame {
                pc: RuntimeAddr(caller_pc),
                regs: step.caller,
                cfa: None,
                is_caller: !step.signal_frame,
                method,
                is_signal_trampoline: false,
            });
        } else if caller_pc.is_some() {
            tracing::debug!(cfa = step.cfa, "unwinding stopped: CFA did not increase");
        }
        Some(cur)
    }
}
