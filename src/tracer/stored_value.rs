//! What a store wrote: the bytes a plain `mov` to memory put at a watched
//! address, known from the writer's registers (or the instruction's
//! immediate) rather than read back from memory, where a racing writer may
//! already have replaced them.
//!
//! Owns: finding the instruction that ends at the trap's rip (a data
//! watchpoint traps just after the write) by decoding forward from the start
//! of its function, and turning a plain store into its bytes.
//!
//! Must never: guess. Anything but a plain store of a general register or an
//! immediate that covers the watched bytes (read-modify-write, exchanges,
//! string moves, vector stores, fs/gs-relative addresses, undecodable code)
//! gives `None`, and the caller keeps the bytes it read.

use iced_x86::{Code, Decoder, DecoderOptions, Instruction, OpKind, Register};

/// The bytes the instruction ending at `after` stored at `[watched, watched
/// + len)`, when it is a plain store covering them all.
///
/// `code` holds the original code from `code_start` (a function's first
/// instruction, at its runtime address) up to at least `after`; `regs` are
/// the writer's registers just after the store (a store changes none of
/// them).
pub fn stored_bytes(
    code: &[u8],
    code_start: u64,
    after: u64,
    regs: &libc::user_regs_struct,
    watched: u64,
    len: usize,
) -> Option<Vec<u8>> {
    let store = instruction_ending_at(code, code_start, after)?;
    let (source, size) = store_source(&store)?;
    // fs/gs bases are not in the captured registers; the other segments are flat.
    if matches!(store.memory_segment(), Register::FS | Register::GS) {
        return None;
    }
    let at = store.virtual_address(0, 0, |reg, _, _| match reg {
        Register::ES | Register::CS | Register::SS | Register::DS => Some(0),
        _ => register_value(regs, reg),
    })?;
    let bytes = match source {
        StoreSource::Register(reg) => {
            let full = register_value(regs, reg.full_register())?.to_le_bytes();
            // ah/bh/ch/dh are the second byte of their register.
            let skip = usize::from(matches!(
                reg,
                Register::AH | Register::BH | Register::CH | Register::DH
            ));
            full.get(skip..skip + size)?.to_vec()
        }
        StoreSource::Immediate(value) => value.to_le_bytes().get(..size)?.to_vec(),
    };
    // The store must cover every watched byte.
    let from = usize::try_from(watched.checked_sub(at)?).ok()?;
    bytes.get(from..from.checked_add(len)?).map(<[u8]>::to_vec)
}

enum StoreSource {
    Register(Register),
    /// Already extended to the store's size.
    Immediate(u64),
}

/// The instruction of `code` (decoded from `code_start`) whose end is `after`.
fn instruction_ending_at(code: &[u8], code_start: u64, after: u64) -> Option<Instruction> {
    let end = usize::try_from(after.checked_sub(code_start)?).ok()?;
    let mut decoder = Decoder::with_ip(64, code.get(..end)?, code_start, DecoderOptions::NONE);
    let mut instruction = Instruction::default();
    while decoder.can_decode() {
        decoder.decode_out(&mut instruction);
        if instruction.is_invalid() {
            return None;
        }
        if instruction.next_ip() == after {
            return Some(instruction);
        }
    }
    None
}

/// What a plain store writes and how many bytes, or `None` for anything else.
fn store_source(instruction: &Instruction) -> Option<(StoreSource, usize)> {
    if instruction.op_count() != 2
        || instruction.op0_kind() != OpKind::Memory
        || instruction.has_lock_prefix()
        || instruction.has_xacquire_prefix()
        || instruction.has_xrelease_prefix()
    {
        return None;
    }
    let size = match instruction.code() {
        Code::Mov_rm64_r64
        | Code::Mov_rm64_imm32
        | Code::Movnti_m64_r64
        | Code::Mov_moffs64_RAX => 8,
        Code::Mov_rm32_r32
        | Code::Mov_rm32_imm32
        | Code::Movnti_m32_r32
        | Code::Mov_moffs32_EAX => 4,
        Code::Mov_rm16_r16 | Code::Mov_rm16_imm16 | Code::Mov_moffs16_AX => 2,
        Code::Mov_rm8_r8 | Code::Mov_rm8_imm8 | Code::Mov_moffs8_AL => 1,
        _ => return None,
    };
    let source = match instruction.op1_kind() {
        OpKind::Register => StoreSource::Register(instruction.op1_register()),
        OpKind::Immediate8 | OpKind::Immediate16 | OpKind::Immediate32 => {
            StoreSource::Immediate(instruction.immediate(1))
        }
        OpKind::Immediate32to64 => StoreSource::Immediate(instruction.immediate(1)),
        _ => return None,
    };
    Some((source, size))
}

/// A 64-bit general register's value (`None` for any other register).
fn register_value(regs: &libc::user_regs_struct, reg: Register) -> Option<u64> {
    Some(match reg.full_register() {
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
    })
}

#[cfg(test)]
mod tests {
    use super::stored_bytes;

    fn regs() -> libc::user_regs_struct {
        // SAFETY: user_regs_struct is plain integers; all-zero is valid.
        let mut regs: libc::user_regs_struct = unsafe { std::mem::zeroed() };
        regs.rax = 0x1122_3344_5566_7788;
        regs.rdx = 0x5000;
        regs.rcx = 0xaabb;
        regs
    }

    /// `code` at `start`, a store ending `after` its start; the trap's rip is
    /// the end of the code.
    fn stored(code: &[u8], start: u64, watched: u64, len: usize) -> Option<Vec<u8>> {
        let mut r = regs();
        let after = start + code.len() as u64;
        r.rip = after;
        stored_bytes(code, start, after, &r, watched, len)
    }

    #[test]
    fn a_register_stored_rip_relative_gives_the_register() {
        // push %rbp; mov %rsp,%rbp; mov %rax,0x10(%rip)
        let code = [
            0x55, 0x48, 0x89, 0xe5, 0x48, 0x89, 0x05, 0x10, 0x00, 0x00, 0x00,
        ];
        let start = 0x40_1000;
        let global = start + code.len() as u64 + 0x10;
        assert_eq!(
            stored(&code, start, global, 8),
            Some(0x1122_3344_5566_7788u64.to_le_bytes().to_vec())
        );
        // The low half of the same store, when only 4 bytes are watched.
        assert_eq!(
            stored(&code, start, global, 4),
            Some(vec![0x88, 0x77, 0x66, 0x55])
        );
        // A watched address the store does not cover.
        assert_eq!(stored(&code, start, global + 8, 8), None);
    }

    #[test]
    fn an_immediate_stored_through_a_register_gives_the_immediate() {
        // movl $5,(%rdx)
        let code = [0xc7, 0x02, 0x05, 0x00, 0x00, 0x00];
        assert_eq!(stored(&code, 0x1000, 0x5000, 4), Some(vec![5, 0, 0, 0]));
        // movq $-1,0x8(%rdx): the imm32 is sign-extended to 8 bytes.
        let code = [0x48, 0xc7, 0x42, 0x08, 0xff, 0xff, 0xff, 0xff];
        assert_eq!(stored(&code, 0x1000, 0x5008, 8), Some(vec![0xff; 8]));
    }

    #[test]
    fn a_two_byte_store_of_a_low_half_gives_those_two_bytes() {
        // mov %cx,(%rdx)
        let code = [0x66, 0x89, 0x0a];
        assert_eq!(stored(&code, 0x1000, 0x5000, 2), Some(vec![0xbb, 0xaa]));
        // A 4-byte watch it covers only half of: not known.
        assert_eq!(stored(&code, 0x1000, 0x5000, 4), None);
        // mov %ah,(%rdx): the second byte of rax.
        let code = [0x88, 0x22];
        assert_eq!(stored(&code, 0x1000, 0x5000, 1), Some(vec![0x77]));
    }

    #[test]
    fn indexed_absolute_and_non_temporal_stores_are_plain_stores() {
        // mov %rax,(%rdx,%rcx,8): 0x5000 + 0xaabb * 8.
        let code = [0x48, 0x89, 0x04, 0xca];
        assert_eq!(
            stored(&code, 0x1000, 0x5000 + 0xaabb * 8, 8),
            Some(0x1122_3344_5566_7788u64.to_le_bytes().to_vec())
        );
        // movabs %eax,0x5000
        let code = [0xa3, 0x00, 0x50, 0, 0, 0, 0, 0, 0];
        assert_eq!(
            stored(&code, 0x1000, 0x5000, 4),
            Some(vec![0x88, 0x77, 0x66, 0x55])
        );
        // movnti %rax,(%rdx)
        let code = [0x48, 0x0f, 0xc3, 0x02];
        assert_eq!(
            stored(&code, 0x1000, 0x5000, 8),
            Some(0x1122_3344_5566_7788u64.to_le_bytes().to_vec())
        );
    }

    #[test]
    fn read_modify_write_and_exchanges_are_not_plain_stores() {
        // addq $1,(%rax)
        assert_eq!(stored(&[0x48, 0x83, 0x00, 0x01], 0x1000, 0x5000, 8), None);
        // lock xadd %rax,(%rdx)
        assert_eq!(
            stored(&[0xf0, 0x48, 0x0f, 0xc1, 0x02], 0x1000, 0x5000, 8),
            None
        );
        // mov (%rdx),%rax: a load (an access watch's read)
        assert_eq!(stored(&[0x48, 0x8b, 0x02], 0x1000, 0x5000, 8), None);
        // xchg %rax,(%rdx)
        assert_eq!(stored(&[0x48, 0x87, 0x02], 0x1000, 0x5000, 8), None);
        // rep movsb
        assert_eq!(stored(&[0xf3, 0xa4], 0x1000, 0x5000, 1), None);
        // mov %eax,%fs:0x10 (a TLS store: fs's base is not captured)
        assert_eq!(
            stored(&[0x64, 0x89, 0x04, 0x25, 0x10, 0, 0, 0], 0x1000, 0x10, 4),
            None
        );
    }

    #[test]
    fn a_rip_inside_an_instruction_or_undecodable_code_gives_nothing() {
        // movl $5,(%rdx) with the trap's rip one byte short of its end.
        let code = [0xc7, 0x02, 0x05, 0x00, 0x00, 0x00];
        let mut r = regs();
        r.rip = 0x1005;
        assert_eq!(stored_bytes(&code, 0x1000, 0x1005, &r, 0x5000, 4), None);
        // rip before the code.
        assert_eq!(stored_bytes(&code, 0x1000, 0xfff, &r, 0x5000, 4), None);
        // Code shorter than the distance to rip.
        assert_eq!(stored_bytes(&code, 0x1000, 0x1010, &r, 0x5000, 4), None);
        // Invalid bytes.
        assert_eq!(stored(&[0x06], 0x1000, 0x5000, 4), None);
    }
}
