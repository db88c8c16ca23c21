//! The instruction under a breakpoint: how a thread that hit the breakpoint
//! gets past it without the `int3` ever leaving the code.
//!
//! Owns: decoding the displaced instruction (iced-x86), choosing between
//! running a relocated copy out of line (a trampoline `[copy][jmp back]` in
//! the scratch page) and emulating it in the tracer (every instruction that
//! changes control flow: `jmp`, `jcc`, `loop`, `call`, `ret`), encoding and
//! verifying trampolines, and applying emulations to a stopped thread's
//! registers.
//!
//! Why control flow is emulated rather than relocated: a relocated `call`
//! would push a return address inside the scratch page, so unwinders (C++
//! exceptions, Rust panics, our own stack traces) would meet a frame with no
//! CFI; and a trampoline that only ever holds one straight-line instruction
//! and one `jmp` back has exactly two places a thread can be in it, which
//! makes translating an interrupted thread's pc back to the original code
//! exact. Emulating a branch costs nothing extra: the registers are written
//! on every hit anyway.
//!
//! Must never: let a `call` run from the scratch page, accept an instruction
//! it cannot run correctly elsewhere (it refuses with the instruction's
//! name), or touch the target itself (callers pass memory in).

use iced_x86::{
    Code, ConditionCode, Decoder, DecoderOptions, Encoder, FlowControl, Instruction, Mnemonic,
    OpKind, Register,
};

/// Longest x86 instruction.
pub(super) const MAX_INSTRUCTION_LEN: usize = 15;
/// Length of the `jmp rel32` that ends every trampoline.
const JMP_REL32_LEN: usize = 5;
/// Bytes reserved per trampoline in a scratch page: a copy that grew by a
/// byte when re-encoded plus the jump back fits in 32.
pub(super) const TRAMPOLINE_SLOT: u64 = 32;

/// The x86 `int3` opcode.
pub(super) const INT3: u8 = 0xcc;

/// The instruction at a breakpoint address and how to get past it.
#[derive(Debug, Clone)]
pub(super) struct DisplacedInstruction {
    /// Where it is in the target.
    pub address: u64,
    /// Its original bytes (`len` of them).
    pub bytes: Vec<u8>,
    /// How a thread that hit the breakpoint is moved past it.
    pub step: Step,
    /// The decoded instruction.
    instruction: Instruction,
}

/// How a thread that hit the breakpoint executes the displaced instruction.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Step {
    /// A relocated copy runs in a trampoline, which jumps back to
    /// `address + len`.
    OutOfLine,
    /// The tracer performs the instruction's effect on the registers (and,
    /// for a call, the stack).
    Emulate(Emulation),
}

/// Control-flow instructions the tracer performs itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Emulation {
    /// `jmp rel8/rel32`.
    Jump { target: u64 },
    /// `jcc rel8/rel32`.
    ConditionalJump {
        condition: ConditionCode,
        target: u64,
    },
    /// `loop`, `loope`, `loopne` (decrement rcx, then test).
    Loop {
        condition: ConditionCode,
        target: u64,
    },
    /// `jrcxz`.
    JumpIfRcxZero { target: u64 },
    /// `jmp r/m64`.
    IndirectJump,
    /// `call rel32`.
    Call { target: u64 },
    /// `call r/m64`.
    IndirectCall,
    /// `ret` / `ret imm16`: pop the return address, then `extra` more bytes.
    Return { extra: u64 },
}

/// Why an address cannot take a breakpoint, in words for the user.
pub(super) type Refusal = String;

/// Reads and writes an emulation needs, against the stopped thread's process.
pub(super) trait EmulationMemory {
    /// Read 8 bytes.
    fn read_u64(&self, addr: u64) -> Option<u64>;
    /// Write 8 bytes (a pushed return address).
    fn write_u64(&self, addr: u64, value: u64) -> bool;
}

/// Why an emulation could not complete; the original instruction would have
/// faulted in the same place.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct EmulationFault {
    /// The address that could not be read or written (0 when unknown).
    pub addr: u64,
}

fn mnemonic_text(instruction: &Instruction) -> String {
    format!("{:?}", instruction.mnemonic()).to_lowercase()
}

impl DisplacedInstruction {
    /// Decode the instruction at `address` from `code` (its original bytes,
    /// up to 15, fewer when the mapping ends) and decide how to step over it.
    pub(super) fn analyze(address: u64, code: &[u8]) -> Result<DisplacedInstruction, Refusal> {
        let mut decoder = Decoder::with_ip(64, code, address, DecoderOptions::NONE);
        let instruction = decoder.decode();
        if instruction.is_invalid() {
            return Err(format!(
                "the bytes at {address:#x} are not a valid x86-64 instruction ({}); is the address an instruction boundary? Use a source line or a function name instead of a raw address",
                hex(&code[..code.len().min(MAX_INSTRUCTION_LEN)])
            ));
        }
        let len = instruction.len();
        let bytes = code[..len].to_vec();
        if bytes.first() == Some(&INT3) {
            return Err(format!(
                "the program itself has an int3 instruction at {address:#x}; a probe cannot go there"
            ));
        }
        let name = mnemonic_text(&instruction);
        let refuse = |why: &str| -> Result<DisplacedInstruction, Refusal> {
            Err(format!(
                "the instruction at {address:#x} is `{name}`, which {why}; put the probe on the next line (or the next instruction)"
            ))
        };
        match instruction.mnemonic() {
            Mnemonic::Syscall | Mnemonic::Sysenter | Mnemonic::Sysexit | Mnemonic::Sysret => {
                return refuse("enters the kernel and cannot be executed out of line");
            }
            Mnemonic::Int
            | Mnemonic::Int1
            | Mnemonic::Int3
            | Mnemonic::Into
            | Mnemonic::Iret
            | Mnemonic::Iretd
            | Mnemonic::Iretq
            | Mnemonic::Hlt
            | Mnemonic::Ud0
            | Mnemonic::Ud1
            | Mnemonic::Ud2 => {
                return refuse("traps on purpose and cannot be executed out of line");
            }
            Mnemonic::Xbegin | Mnemonic::Xabort | Mnemonic::Xend => {
                return refuse("is part of a hardware transaction that a trap would abort");
            }
            _ => {}
        }
        let step = match instruction.flow_control() {
            FlowControl::Next => Step::OutOfLine,
            FlowControl::UnconditionalBranch => match instruction.code() {
                Code::Jmp_rel8_64 | Code::Jmp_rel32_64 => Step::Emulate(Emulation::Jump {
                    target: instruction.near_branch_target(),
                }),
                _ => return refuse("is a far or 16/32-bit jump that liveprobe does not emulate"),
            },
            FlowControl::ConditionalBranch => match instruction.code() {
                Code::Loop_rel8_64_RCX => Step::Emulate(Emulation::Loop {
                    condition: ConditionCode::None,
                    target: instruction.near_branch_target(),
                }),
                Code::Loope_rel8_64_RCX => Step::Emulate(Emulation::Loop {
                    condition: ConditionCode::e,
                    target: instruction.near_branch_target(),
                }),
                Code::Loopne_rel8_64_RCX => Step::Emulate(Emulation::Loop {
                    condition: ConditionCode::ne,
                    target: instruction.near_branch_target(),
                }),
                Code::Jrcxz_rel8_64 => Step::Emulate(Emulation::JumpIfRcxZero {
                    target: instruction.near_branch_target(),
                }),
                _ if instruction.is_jcc_short_or_near()
                    && instruction.op0_kind() == OpKind::NearBranch64
                    && instruction.condition_code() != ConditionCode::None =>
                {
                    Step::Emulate(Emulation::ConditionalJump {
                        condition: instruction.condition_code(),
                        target: instruction.near_branch_target(),
                    })
                }
                _ => {
                    return refuse(
                        "is a conditional branch form (32-bit counter or 16-bit target) that liveprobe does not emulate",
                    );
                }
            },
            FlowControl::IndirectBranch if instruction.code() == Code::Jmp_rm64 => {
                Step::Emulate(Emulation::IndirectJump)
            }
            FlowControl::Call if instruction.code() == Code::Call_rel32_64 => {
                Step::Emulate(Emulation::Call {
                    target: instruction.near_branch_target(),
                })
            }
            FlowControl::IndirectCall if instruction.code() == Code::Call_rm64 => {
                Step::Emulate(Emulation::IndirectCall)
            }
            FlowControl::Return => match instruction.code() {
                Code::Retnq => Step::Emulate(Emulation::Return { extra: 0 }),
                Code::Retnq_imm16 => Step::Emulate(Emulation::Return {
                    extra: u64::from(instruction.immediate16()),
                }),
                _ => return refuse("is a far or 16-bit return that liveprobe does not emulate"),
            },
            FlowControl::Interrupt | FlowControl::Exception | FlowControl::XbeginXabortXend => {
                return refuse("traps or aborts on purpose and cannot be executed out of line");
            }
            _ => return refuse("changes control flow in a way liveprobe does not emulate"),
        };
        Ok(DisplacedInstruction {
            address,
            bytes,
            step,
            instruction,
        })
    }

    /// Length of the instruction.
    pub(super) fn len(&self) -> usize {
        self.bytes.len()
    }

    /// The instruction's name ("mov", "call").
    pub(super) fn name(&self) -> String {
        mnemonic_text(&self.instruction)
    }

    /// The trampoline for this instruction placed at `at`: the instruction
    /// (relocated when it addresses memory relative to rip) followed by
    /// `jmp address+len`. Returns the bytes and the offset of the jump.
    /// Fails when `at` is too far from the code or the data it addresses.
    pub(super) fn trampoline(&self, at: u64) -> Result<(Vec<u8>, usize), Refusal> {
        let mut bytes = if self.instruction.is_ip_rel_memory_operand() {
            let mut encoder = Encoder::new(64);
            encoder.encode(&self.instruction, at).map_err(|error| {
                format!(
                    "cannot relocate `{}` at {:#x} to the scratch page at {at:#x}: {error}",
                    self.name(),
                    self.address
                )
            })?;
            encoder.take_buffer()
        } else {
            // Position-independent: the original bytes are exactly right.
            self.bytes.clone()
        };
        let jump_at = bytes.len();
        let back = self.address + self.len() as u64;
        let next = at + (jump_at + JMP_REL32_LEN) as u64;
        let displacement = back.wrapping_sub(next) as i64;
        let Ok(rel32) = i32::try_from(displacement) else {
            return Err(format!(
                "the scratch page at {at:#x} is more than 2 GiB away from {:#x}",
                self.address
            ));
        };
        bytes.push(0xe9);
        bytes.extend_from_slice(&rel32.to_le_bytes());
        if bytes.len() as u64 > TRAMPOLINE_SLOT {
            return Err(format!(
                "the relocated copy of `{}` at {:#x} does not fit a trampoline",
                self.name(),
                self.address
            ));
        }
        self.verify_trampoline(at, &bytes, jump_at)?;
        Ok((bytes, jump_at))
    }

    /// Decode a trampoline back and check that it does what the original did.
    fn verify_trampoline(&self, at: u64, bytes: &[u8], jump_at: usize) -> Result<(), Refusal> {
        let mut decoder = Decoder::with_ip(64, bytes, at, DecoderOptions::NONE);
        let copy = decoder.decode();
        let jump = decoder.decode();
        let same_operand = !self.instruction.is_ip_rel_memory_operand()
            || copy.ip_rel_memory_address() == self.instruction.ip_rel_memory_address();
        let back = self.address + self.len() as u64;
        if copy.code() != self.instruction.code()
            || copy.len() != jump_at
            || !same_operand
            || jump.code() != Code::Jmp_rel32_64
            || jump.near_branch_target() != back
            || jump_at + jump.len() != bytes.len()
        {
            return Err(format!(
                "relocating `{}` at {:#x} produced different code; a probe cannot go there",
                self.name(),
                self.address
            ));
        }
        Ok(())
    }

    /// Perform an emulated instruction on the registers of a thread stopped
    /// at it (`regs.rip == address`).
    pub(super) fn emulate(
        &self,
        emulation: Emulation,
        regs: &mut libc::user_regs_struct,
        memory: &dyn EmulationMemory,
    ) -> Result<(), EmulationFault> {
        let next = self.address + self.len() as u64;
        match emulation {
            Emulation::Jump { target } => regs.rip = target,
            Emulation::ConditionalJump { condition, target } => {
                regs.rip = if condition_holds(condition, regs.eflags) {
                    target
                } else {
                    next
                };
            }
            Emulation::Loop { condition, target } => {
                regs.rcx = regs.rcx.wrapping_sub(1);
                let flags_ok =
                    condition == ConditionCode::None || condition_holds(condition, regs.eflags);
                regs.rip = if regs.rcx != 0 && flags_ok {
                    target
                } else {
                    next
                };
            }
            Emulation::JumpIfRcxZero { target } => {
                regs.rip = if regs.rcx == 0 { target } else { next };
            }
            Emulation::IndirectJump => {
                regs.rip = self.operand_value(regs, memory)?;
            }
            Emulation::Call { target } => {
                push(regs, next, memory)?;
                regs.rip = target;
            }
            Emulation::IndirectCall => {
                // The operand is read before the push: `call [rsp+8]` reads
                // relative to the old rsp.
                let target = self.operand_value(regs, memory)?;
                push(regs, next, memory)?;
                regs.rip = target;
            }
            Emulation::Return { extra } => {
                let target = memory
                    .read_u64(regs.rsp)
                    .ok_or(EmulationFault { addr: regs.rsp })?;
                regs.rsp = regs.rsp.wrapping_add(8).wrapping_add(extra);
                regs.rip = target;
            }
        }
        Ok(())
    }

    /// The value of operand 0 of `jmp/call r/m64`.
    fn operand_value(
        &self,
        regs: &libc::user_regs_struct,
        memory: &dyn EmulationMemory,
    ) -> Result<u64, EmulationFault> {
        match self.instruction.op0_kind() {
            OpKind::Register => register_value(regs, self.instruction.op0_register())
                .ok_or(EmulationFault { addr: 0 }),
            OpKind::Memory => {
                let addr = self
                    .instruction
                    .virtual_address(0, 0, |register, _, _| register_value(regs, register))
                    .ok_or(EmulationFault { addr: 0 })?;
                memory.read_u64(addr).ok_or(EmulationFault { addr })
            }
            _ => Err(EmulationFault { addr: 0 }),
        }
    }
}

fn push(
    regs: &mut libc::user_regs_struct,
    value: u64,
    memory: &dyn EmulationMemory,
) -> Result<(), EmulationFault> {
    let slot = regs.rsp.wrapping_sub(8);
    if !memory.write_u64(slot, value) {
        return Err(EmulationFault { addr: slot });
    }
    regs.rsp = slot;
    Ok(())
}

const CF: u64 = 1 << 0;
const PF: u64 = 1 << 2;
const ZF: u64 = 1 << 6;
const SF: u64 = 1 << 7;
const OF: u64 = 1 << 11;

/// Whether a jcc with `condition` is taken under `flags`.
pub(super) fn condition_holds(condition: ConditionCode, flags: u64) -> bool {
    let set = |bit: u64| flags & bit != 0;
    match condition {
        ConditionCode::None => true,
        ConditionCode::o => set(OF),
        ConditionCode::no => !set(OF),
        ConditionCode::b => set(CF),
        ConditionCode::ae => !set(CF),
        ConditionCode::e => set(ZF),
        ConditionCode::ne => !set(ZF),
        ConditionCode::be => set(CF) || set(ZF),
        ConditionCode::a => !set(CF) && !set(ZF),
        ConditionCode::s => set(SF),
        ConditionCode::ns => !set(SF),
        ConditionCode::p => set(PF),
        ConditionCode::np => !set(PF),
        ConditionCode::l => set(SF) != set(OF),
        ConditionCode::ge => set(SF) == set(OF),
        ConditionCode::le => set(ZF) || set(SF) != set(OF),
        ConditionCode::g => !set(ZF) && set(SF) == set(OF),
    }
}

/// A general register's value (any width), or a segment base, from a
/// thread's registers. None for registers an address cannot use.
fn register_value(regs: &libc::user_regs_struct, register: Register) -> Option<u64> {
    match register {
        // In 64-bit mode only fs and gs have a base.
        Register::ES | Register::CS | Register::SS | Register::DS => return Some(0),
        Register::FS => return Some(regs.fs_base),
        Register::GS => return Some(regs.gs_base),
        _ => {}
    }
    if !register.is_gpr() {
        return None;
    }
    let full = match register.full_register() {
        Register::RAX => regs.rax,
        Register::RBX => regs.rbx,
        Register::RCX => regs.rcx,
        Register::RDX => regs.rdx,
        Register::RSI => regs.rsi,
        Register::RDI => regs.rdi,
        Register::RBP => regs.rbp,
        Register::RSP => regs.rsp,
        Register::R8 => regs.r8,
        Register::R9 => regs.r9,
        Register::R10 => regs.r10,
        Register::R11 => regs.r11,
        Register::R12 => regs.r12,
        Register::R13 => regs.r13,
        Register::R14 => regs.r14,
        Register::R15 => regs.r15,
        _ => return None,
    };
    Some(match register {
        Register::AH | Register::BH | Register::CH | Register::DH => (full >> 8) & 0xff,
        _ => match register.size() {
            1 => full & 0xff,
            2 => full & 0xffff,
            4 => full & 0xffff_ffff,
            _ => full,
        },
    })
}

fn hex(bytes: &[u8]) -> String {
    bytes
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::RefCell;
    use std::collections::HashMap;

    struct FakeMemory(RefCell<HashMap<u64, u64>>);

    impl EmulationMemory for FakeMemory {
        fn read_u64(&self, addr: u64) -> Option<u64> {
            self.0.borrow().get(&addr).copied()
        }
        fn write_u64(&self, addr: u64, value: u64) -> bool {
            self.0.borrow_mut().insert(addr, value);
            true
        }
    }

    fn regs() -> libc::user_regs_struct {
        // SAFETY: plain integers; zero is valid.
        unsafe { std::mem::zeroed() }
    }

    const AT: u64 = 0x5555_5555_1000;

    #[test]
    fn straight_line_instructions_run_out_of_line() {
        // mov eax, [rbp-4]
        let insn = DisplacedInstruction::analyze(AT, &[0x8b, 0x45, 0xfc, 0x90]).expect("mov");
        assert_eq!(insn.step, Step::OutOfLine);
        assert_eq!(insn.len(), 3);
        let (bytes, jump_at) = insn.trampoline(AT + 0x10_0000).expect("trampoline");
        assert_eq!(&bytes[..3], &[0x8b, 0x45, 0xfc]);
        assert_eq!(jump_at, 3);
        assert_eq!(bytes[3], 0xe9);
    }

    #[test]
    fn rip_relative_operands_are_relocated() {
        // mov rax, [rip+0x2000]  -> reads AT + 7 + 0x2000
        let code = [0x48, 0x8b, 0x05, 0x00, 0x20, 0x00, 0x00];
        let insn = DisplacedInstruction::analyze(AT, &code).expect("mov rip");
        let at = AT - 0x40_0000;
        let (bytes, jump_at) = insn.trampoline(at).expect("trampoline");
        let mut decoder = Decoder::with_ip(64, &bytes, at, DecoderOptions::NONE);
        let copy = decoder.decode();
        assert_eq!(copy.ip_rel_memory_address(), AT + 7 + 0x2000);
        assert_eq!(jump_at, copy.len());
        let jump = decoder.decode();
        assert_eq!(jump.near_branch_target(), AT + 7);
        // Too far away: refused, not mis-encoded.
        assert!(insn.trampoline(AT + (3u64 << 30)).is_err());
    }

    #[test]
    fn calls_are_emulated_with_the_return_address_in_original_code() {
        // call rel32 +0x100
        let insn =
            DisplacedInstruction::analyze(AT, &[0xe8, 0x00, 0x01, 0x00, 0x00]).expect("call");
        let Step::Emulate(emulation) = insn.step else {
            panic!("call must be emulated")
        };
        let memory = FakeMemory(RefCell::new(HashMap::new()));
        let mut r = regs();
        r.rip = AT;
        r.rsp = 0x7fff_0000;
        insn.emulate(emulation, &mut r, &memory).expect("emulate");
        assert_eq!(r.rip, AT + 5 + 0x100);
        assert_eq!(r.rsp, 0x7fff_0000 - 8);
        assert_eq!(memory.read_u64(r.rsp), Some(AT + 5));
    }

    #[test]
    fn indirect_call_reads_its_operand_before_pushing() {
        // call [rsp+8]
        let insn = DisplacedInstruction::analyze(AT, &[0xff, 0x54, 0x24, 0x08]).expect("call");
        let Step::Emulate(emulation) = insn.step else {
            panic!("call must be emulated")
        };
        let memory = FakeMemory(RefCell::new(HashMap::new()));
        memory.write_u64(0x7fff_0008, 0x1234_5678);
        let mut r = regs();
        r.rsp = 0x7fff_0000;
        insn.emulate(emulation, &mut r, &memory).expect("emulate");
        assert_eq!(r.rip, 0x1234_5678);
        assert_eq!(memory.read_u64(0x7fff_0000 - 8), Some(AT + 4));
    }

    #[test]
    fn branches_and_returns_are_emulated() {
        // je +0x10 (short)
        let je = DisplacedInstruction::analyze(AT, &[0x74, 0x10]).expect("je");
        let Step::Emulate(emulation) = je.step else {
            panic!("jcc must be emulated")
        };
        let memory = FakeMemory(RefCell::new(HashMap::new()));
        let mut r = regs();
        r.eflags = ZF;
        je.emulate(emulation, &mut r, &memory).expect("taken");
        assert_eq!(r.rip, AT + 2 + 0x10);
        r.eflags = 0;
        je.emulate(emulation, &mut r, &memory).expect("not taken");
        assert_eq!(r.rip, AT + 2);

        // ret 8
        let ret = DisplacedInstruction::analyze(AT, &[0xc2, 0x08, 0x00]).expect("ret");
        let Step::Emulate(emulation) = ret.step else {
            panic!("ret must be emulated")
        };
        memory.write_u64(0x1000, 0xabcd);
        let mut r = regs();
        r.rsp = 0x1000;
        ret.emulate(emulation, &mut r, &memory).expect("ret");
        assert_eq!((r.rip, r.rsp), (0xabcd, 0x1000 + 16));

        // jmp rax
        let jmp = DisplacedInstruction::analyze(AT, &[0xff, 0xe0]).expect("jmp rax");
        let Step::Emulate(emulation) = jmp.step else {
            panic!("jmp must be emulated")
        };
        let mut r = regs();
        r.rax = 0x4242;
        jmp.emulate(emulation, &mut r, &memory).expect("jmp");
        assert_eq!(r.rip, 0x4242);
    }

    #[test]
    fn conditions_follow_the_flags() {
        assert!(condition_holds(ConditionCode::l, SF));
        assert!(!condition_holds(ConditionCode::l, SF | OF));
        assert!(condition_holds(ConditionCode::g, 0));
        assert!(!condition_holds(ConditionCode::g, ZF));
        assert!(condition_holds(ConditionCode::be, CF));
        assert!(condition_holds(ConditionCode::a, 0));
    }

    #[test]
    fn kernel_entries_and_traps_are_refused_by_name() {
        let syscall = DisplacedInstruction::analyze(AT, &[0x0f, 0x05]).expect_err("syscall");
        assert!(syscall.contains("`syscall`"), "{syscall}");
        let ud2 = DisplacedInstruction::analyze(AT, &[0x0f, 0x0b]).expect_err("ud2");
        assert!(ud2.contains("`ud2`"), "{ud2}");
        let int3 = DisplacedInstruction::analyze(AT, &[0xcc]).expect_err("int3");
        assert!(int3.contains("int3"), "{int3}");
        let bad = DisplacedInstruction::analyze(AT, &[0x0f, 0xff]).expect_err("invalid");
        assert!(bad.contains("not a valid"), "{bad}");
    }
}
