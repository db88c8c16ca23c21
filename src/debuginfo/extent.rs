//! The extent of one function and where it returns: what a duration metric
//! "to the function's return" needs. Code bytes come from the ELF file, never
//! from the live process, where probes may have written `int3` bytes.

use iced_x86::{Decoder, DecoderOptions, FlowControl, Mnemonic};
use object::{Object, ObjectSection};

use super::addr::{FileAddr, RuntimeAddr};
use super::image::ProcessImage;

/// Longest function body decoded (a guard against a bogus symbol size).
const MAX_FUNCTION_BYTES: u64 = 1 << 20;

/// Where one function's code is, and the addresses of its `ret` instructions.
#[derive(Debug, Clone)]
pub struct FunctionReturns {
    /// The function's symbol name as the symbol table has it (mangled).
    pub symbol: String,
    /// First byte of the function.
    pub start: RuntimeAddr,
    /// Bytes of code.
    pub size: u64,
    /// Every `ret` in the function, in address order.
    pub returns: Vec<RuntimeAddr>,
}

impl ProcessImage {
    /// The function containing `pc` (from the symbol table) and every `ret`
    /// instruction in it. `None` when `pc` is in no sized function symbol or
    /// its code cannot be read from the file.
    pub fn function_returns(&self, pc: RuntimeAddr) -> Option<FunctionReturns> {
        let module = self.module_for(pc)?;
        let file_pc = module.to_file(pc);
        let table = module.symbol_table();
        let hit = table.lookup(file_pc.0)?;
        if hit.size == 0 || hit.size > MAX_FUNCTION_BYTES {
            return None;
        }
        let (symbol, start, size) = (hit.name.to_string(), hit.addr, hit.size);
        let file = module.elf.parse().ok()?;
        let bytes = file
            .sections()
            .find_map(|s| s.data_range(start, size).ok().flatten())?;
        let mut decoder = Decoder::with_ip(64, bytes, start, DecoderOptions::NONE);
        let mut returns = Vec::new();
        for insn in &mut decoder {
            if insn.is_invalid() {
                break;
            }
            if insn.flow_control() == FlowControl::Return && insn.mnemonic() == Mnemonic::Ret {
                returns.push(module.to_runtime(FileAddr(insn.ip())));
            }
        }
        Some(FunctionReturns {
            symbol,
            start: module.to_runtime(FileAddr(start)),
            size,
            returns,
        })
    }
}
