//! Generates the eBPF program that runs at a uprobe hit, from a capture
//! plan: check the process, reserve a ring buffer record, copy the
//! registers, run the plan's reads (each address from a register or from a
//! word an earlier read brought, plus an offset), submit. Straight-line
//! code with constant offsets only, so the verifier accepts it without
//! loops or bounds tricks.

use super::{CaptureBase, CapturePlan, RECORD_HEADER, REGS_BYTES, read_layout};

// Opcodes (see the kernel's Documentation/bpf/standardization/instruction-set.rst).
const MOV64_REG: u8 = 0xbf;
const MOV64_IMM: u8 = 0xb7;
const ADD64_IMM: u8 = 0x07;
const ADD64_REG: u8 = 0x0f;
const RSH64_IMM: u8 = 0x77;
const LDX_DW: u8 = 0x79;
const STX_DW: u8 = 0x7b;
const ST_W: u8 = 0x62;
const LD_IMM64: u8 = 0x18;
const JEQ_IMM: u8 = 0x15;
const JNE_IMM: u8 = 0x55;
const JLE_IMM: u8 = 0xb5;
const AND64_IMM: u8 = 0x57;
const SUB64_REG: u8 = 0x1f;
const JA: u8 = 0x05;
const CALL: u8 = 0x85;
const EXIT: u8 = 0x95;
const ATOMIC_ADD_DW: u8 = 0xdb;
/// `src_reg` of a `LD_IMM64` whose immediate is a map file descriptor.
const PSEUDO_MAP_FD: u8 = 1;

// Helper function ids (include/uapi/linux/bpf.h).
const MAP_LOOKUP_ELEM: i32 = 1;
const KTIME_GET_NS: i32 = 5;
const GET_CURRENT_PID_TGID: i32 = 14;
const GET_NS_CURRENT_PID_TGID: i32 = 120;
const PROBE_READ_USER: i32 = 112;
const PROBE_READ_USER_STR: i32 = 114;
const RINGBUF_RESERVE: i32 = 131;
const RINGBUF_SUBMIT: i32 = 132;
/// `bpf_ringbuf_submit` flag: do not wake the reader.
const RB_NO_WAKEUP: i32 = 1;

const R0: u8 = 0;
const R1: u8 = 1;
const R2: u8 = 2;
const R3: u8 = 3;
const R4: u8 = 4;
const R6: u8 = 6;
const R7: u8 = 7;
const R8: u8 = 8;
const R9: u8 = 9;
const R10: u8 = 10;

/// A tiny assembler with forward labels.
#[derive(Default)]
struct Asm {
    insns: Vec<u64>,
    /// (instruction index, label) of jumps to patch.
    fixups: Vec<(usize, usize)>,
    labels: Vec<Option<usize>>,
}

fn encode(code: u8, dst: u8, src: u8, off: i16, imm: i32) -> u64 {
    (code as u64)
        | (((dst & 0xf) as u64) << 8)
        | (((src & 0xf) as u64) << 12)
        | ((off as u16 as u64) << 16)
        | ((imm as u32 as u64) << 32)
}

impl Asm {
    fn op(&mut self, code: u8, dst: u8, src: u8, off: i16, imm: i32) {
        self.insns.push(encode(code, dst, src, off, imm));
    }
    fn mov_reg(&mut self, dst: u8, src: u8) {
        self.op(MOV64_REG, dst, src, 0, 0);
    }
    fn mov_imm(&mut self, dst: u8, imm: i32) {
        self.op(MOV64_IMM, dst, 0, 0, imm);
    }
    fn ld_imm64(&mut self, dst: u8, src: u8, value: u64) {
        self.op(LD_IMM64, dst, src, 0, value as u32 as i32);
        self.op(0, 0, 0, 0, (value >> 32) as u32 as i32);
    }
    fn add_imm(&mut self, dst: u8, value: i64) {
        if value == 0 {
            return;
        }
        match i32::try_from(value) {
            Ok(imm) => self.op(ADD64_IMM, dst, 0, 0, imm),
            Err(_) => {
                self.ld_imm64(R2, 0, value as u64);
                self.op(ADD64_REG, dst, R2, 0, 0);
            }
        }
    }
    fn load(&mut self, dst: u8, base: u8, off: i16) {
        self.op(LDX_DW, dst, base, off, 0);
    }
    fn store(&mut self, base: u8, off: i16, src: u8) {
        self.op(STX_DW, base, src, off, 0);
    }
    fn call(&mut self, helper: i32) {
        self.op(CALL, 0, 0, 0, helper);
    }
    fn label(&mut self) -> usize {
        self.labels.push(None);
        self.labels.len() - 1
    }
    fn bind(&mut self, label: usize) {
        self.labels[label] = Some(self.insns.len());
    }
    fn jump(&mut self, code: u8, dst: u8, imm: i32, label: usize) {
        self.fixups.push((self.insns.len(), label));
        self.op(code, dst, 0, 0, imm);
    }
    fn finish(mut self) -> Vec<u64> {
        for (at, label) in std::mem::take(&mut self.fixups) {
            let target = self.labels[label].unwrap_or(self.insns.len());
            let off = (target as i64 - at as i64 - 1) as i16;
            let insn = self.insns[at];
            self.insns[at] = (insn & !(0xffff << 16)) | ((off as u16 as u64) << 16);
        }
        self.insns
    }
}

/// Offsets into a record must fit the instruction's 16-bit offset field.
pub const MAX_RECORD_BYTES: usize = i16::MAX as usize;

/// Everything one program needs besides its plan.
pub struct ProgramParams {
    /// Only hits of this process are recorded.
    pub tgid: u32,
    /// Written at the start of every record, to find the site again.
    pub site_id: u64,
    /// The ring buffer map.
    pub ring_fd: i32,
    /// The array map of lost-record counters, and this site's slot in it.
    pub lost_fd: i32,
    /// Slot in the lost counters.
    pub lost_slot: u32,
    /// The PID namespace liveprobe sees pids in (device, inode of
    /// /proc/self/ns/pid), when it is not the initial one: thread ids are
    /// then taken in it.
    pub pid_namespace: Option<(u64, u64)>,
}

/// The program for `plan`, and the size of its records.
pub fn generate(plan: &CapturePlan, params: &ProgramParams) -> Result<(Vec<u64>, usize), String> {
    let layout = read_layout(plan);
    let size = layout.record_bytes;
    if size > MAX_RECORD_BYTES {
        return Err(format!(
            "the capture needs {size} bytes per hit, more than the {MAX_RECORD_BYTES} a kernel-side capture allows"
        ));
    }
    let mut a = Asm::default();
    let out = a.label();
    let lost = a.label();
    a.mov_reg(R6, R1); // r6 = struct pt_regs *
    match params.pid_namespace {
        None => {
            a.call(GET_CURRENT_PID_TGID);
            a.mov_reg(R7, R0);
        }
        Some((dev, ino)) => {
            // struct bpf_pidns_info { u32 pid; u32 tgid; } read as one u64
            // is laid out like bpf_get_current_pid_tgid's answer.
            a.ld_imm64(R1, 0, dev);
            a.ld_imm64(R2, 0, ino);
            a.mov_reg(R3, R10);
            a.add_imm(R3, -16);
            a.mov_imm(R4, 8);
            a.call(GET_NS_CURRENT_PID_TGID);
            a.jump(JNE_IMM, R0, 0, out);
            a.load(R7, R10, -16);
        }
    }
    a.mov_reg(R0, R7);
    a.op(RSH64_IMM, R0, 0, 0, 32);
    a.jump(JNE_IMM, R0, params.tgid as i32, out);
    a.ld_imm64(R1, PSEUDO_MAP_FD, params.ring_fd as u32 as u64);
    a.mov_imm(R2, size as i32);
    a.mov_imm(R3, 0);
    a.call(RINGBUF_RESERVE);
    a.jump(JEQ_IMM, R0, 0, lost);
    a.mov_reg(R8, R0);
    a.ld_imm64(R1, 0, params.site_id);
    a.store(R8, 0, R1);
    a.store(R8, 8, R7);
    a.call(KTIME_GET_NS);
    a.store(R8, 16, R0);
    if plan.registers {
        for i in 0..(REGS_BYTES / 8) {
            a.load(R1, R6, (i * 8) as i16);
            a.store(R8, (RECORD_HEADER + i * 8) as i16, R1);
        }
    }
    for (read, slot) in plan.reads.iter().zip(&layout.reads) {
        match read.base {
            CaptureBase::Register(r) => a.load(R3, R6, (r as usize * 8) as i16),
            CaptureBase::Word { read, at } => {
                let from = layout.reads[read].data + at as usize;
                a.load(R3, R8, from as i16);
            }
            CaptureBase::Absolute => a.mov_imm(R3, 0),
        }
        a.add_imm(R3, read.offset);
        a.store(R8, slot.address as i16, R3);
        a.mov_reg(R1, R8);
        a.add_imm(R1, slot.data as i64);
        a.mov_imm(R2, read.len as i32);
        if read.string {
            // Copies up to the NUL; the status is the bytes copied.
            a.call(PROBE_READ_USER_STR);
            a.store(R8, slot.status as i16, R0);
            continue;
        }
        // The status is the bytes copied. A read that fails whole (it runs
        // into unmapped memory) is tried again up to the end of its first
        // page, as a debugger reading page by page would get those bytes.
        let done = a.label();
        let failed = a.label();
        let short = a.label();
        a.call(PROBE_READ_USER);
        a.jump(JNE_IMM, R0, 0, failed);
        a.mov_imm(R0, read.len as i32);
        a.store(R8, slot.status as i16, R0);
        a.jump(JA, 0, 0, done);
        a.bind(failed);
        a.load(R3, R8, slot.address as i16);
        a.mov_reg(R2, R3);
        a.op(AND64_IMM, R2, 0, 0, 4095);
        a.mov_imm(R9, 4096);
        a.op(SUB64_REG, R9, R2, 0, 0);
        a.jump(JLE_IMM, R9, read.len as i32, short);
        a.mov_imm(R9, read.len as i32);
        a.bind(short);
        a.mov_reg(R2, R9);
        a.mov_reg(R1, R8);
        a.add_imm(R1, slot.data as i64);
        a.call(PROBE_READ_USER);
        let kept = a.label();
        a.jump(JNE_IMM, R0, 0, kept);
        a.mov_reg(R0, R9);
        a.bind(kept);
        a.store(R8, slot.status as i16, R0);
        a.bind(done);
    }
    // Waking the reader at every record would cost the hitting thread a
    // cross-CPU wake-up per hit; the reader reads the ring on a short timer
    // instead (at any realistic hit rate the ring holds far more than that).
    a.mov_reg(R1, R8);
    a.mov_imm(R2, RB_NO_WAKEUP);
    a.call(RINGBUF_SUBMIT);
    a.jump(JA, 0, 0, out);
    // No room in the ring: count the loss so the probe can say so.
    a.bind(lost);
    a.op(ST_W, R10, 0, -8, params.lost_slot as i32);
    a.ld_imm64(R1, PSEUDO_MAP_FD, params.lost_fd as u32 as u64);
    a.mov_reg(R2, R10);
    a.add_imm(R2, -8);
    a.call(MAP_LOOKUP_ELEM);
    a.jump(JEQ_IMM, R0, 0, out);
    a.mov_imm(R1, 1);
    a.op(ATOMIC_ADD_DW, R0, R1, 0, 0);
    a.bind(out);
    a.mov_imm(R0, 0);
    a.op(EXIT, 0, 0, 0, 0);
    Ok((a.finish(), size))
}
