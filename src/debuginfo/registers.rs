//! The x86-64 register file in DWARF numbering, each register possibly unknown (after unwinding).
//!
//! Owns only the value type; it never reads registers from a process (the tracer fills it in).

/// DWARF register numbers for x86-64 (System V psABI, figure 3.36).
pub mod reg {
    /// rax
    pub const RAX: u16 = 0;
    /// rdx
    pub const RDX: u16 = 1;
    /// rcx
    pub const RCX: u16 = 2;
    /// rbx
    pub const RBX: u16 = 3;
    /// rsi
    pub const RSI: u16 = 4;
    /// rdi
    pub const RDI: u16 = 5;
    /// rbp
    pub const RBP: u16 = 6;
    /// rsp
    pub const RSP: u16 = 7;
    /// r8
    pub const R8: u16 = 8;
    /// r9
    pub const R9: u16 = 9;
    /// r10
    pub const R10: u16 = 10;
    /// r11
    pub const R11: u16 = 11;
    /// r12
    pub const R12: u16 = 12;
    /// r13
    pub const R13: u16 = 13;
    /// r14
    pub const R14: u16 = 14;
    /// r15
    pub const R15: u16 = 15;
    /// The return address column; the program counter (rip) of a frame.
    pub const RIP: u16 = 16;
    /// Number of general registers tracked (0..=16).
    pub const COUNT: usize = 17;
    /// Registers a callee must preserve (System V): rbx, rbp, r12..r15 (rsp is recovered as the CFA).
    pub const CALLEE_SAVED: [u16; 6] = [RBX, RBP, R12, R13, R14, R15];
    /// Conventional names, indexed by DWARF number.
    pub const NAMES: [&str; COUNT] = [
        "rax", "rdx", "rcx", "rbx", "rsi", "rdi", "rbp", "rsp", "r8", "r9", "r10", "r11", "r12",
        "r13", "r14", "r15", "rip",
    ];
}

/// x86-64 register file in DWARF numbering (0 rax, 1 rdx, 2 rcx, 3 rbx, 4 rsi, 5 rdi, 6 rbp, 7 rsp, 8..15
/// r8..r15, 16 = return address/rip), each possibly unknown (after unwinding), plus fs_base (for TLS).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Registers {
    values: [Option<u64>; reg::COUNT],
    fs_base: Option<u64>,
}

impl Registers {
    /// An empty register file (every register unknown).
    pub fn new() -> Registers {
        Registers::default()
    }

    /// The value of DWARF register `dwarf_reg`, or None if it is unknown or not tracked.
    pub fn get(&self, dwarf_reg: u16) -> Option<u64> {
        self.values.get(usize::from(dwarf_reg)).copied().flatten()
    }

    /// Sets DWARF register `dwarf_reg` (registers outside 0..=16 are ignored).
    pub fn set(&mut self, dwarf_reg: u16, value: Option<u64>) {
        if let Some(slot) = self.values.get_mut(usize::from(dwarf_reg)) {
            *slot = value;
        }
    }

    /// The program counter (register 16).
    pub fn pc(&self) -> Option<u64> {
        self.get(reg::RIP)
    }

    /// The stack pointer (register 7).
    pub fn sp(&self) -> Option<u64> {
        self.get(reg::RSP)
    }

    /// The thread's fs base (x86-64 TLS pointer), if known.
    pub fn fs_base(&self) -> Option<u64> {
        self.fs_base
    }

    /// Sets the fs base.
    pub fn set_fs_base(&mut self, v: Option<u64>) {
        self.fs_base = v;
    }

    /// Builds a register file from the kernel's `user_regs_struct` (all registers known).
    pub fn from_user_regs(r: &libc::user_regs_struct) -> Registers {
        let mut regs = Registers::new();
        let pairs = [
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
        ];
        for (n, v) in pairs {
            regs.set(n, Some(v));
        }
        regs.fs_base = Some(r.fs_base);
        regs
    }
}
