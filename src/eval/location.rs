//! DWARF location expressions evaluated against one frame: registers, the
//! frame base, the CFA, memory, relocation by the module's load bias, TLS,
//! pieces and entry values. The result is a [`Place`] the value decoder reads.
//!
//! It never guesses: a register the frame does not have, an entry value that
//! cannot be recovered or an operation liveprobe does not support gives an
//! unavailable place that says why. Evaluation is bounded by gimli's
//! iteration limit, so a looping expression cannot hang a probe.

use gimli::{EvaluationResult, Location, Value as DwarfValue, ValueType};

use crate::debuginfo::scope::{LocationExpression, VariableLocation};
use crate::debuginfo::{DwarfReader, MemorySource, Module, ProcessImage, Registers, reg};
use crate::value::{DebugInfoPart, OptimizedOut, Place, Unavailable, Unsupported};

/// Most operations one expression may execute.
const MAX_ITERATIONS: u32 = 10_000;

/// Largest value assembled from pieces.
const MAX_PIECES_BYTES: u64 = 64 * 1024;

/// Recovers `DW_OP_entry_value` operands: the value a register (or a small
/// expression over registers) had when the function was entered.
pub(crate) trait EntryValues {
    /// The value of `expression` at function entry, or why it is unknown.
    fn entry_value(
        &self,
        expression: &LocationExpression,
        unit: &gimli::Unit<DwarfReader>,
    ) -> Result<u64, Unavailable>;
}

/// Everything a location expression may ask for, for one frame.
pub(crate) struct LocationEnv<'a> {
    /// The module the expression comes from (load bias, `.debug_addr`).
    pub module: &'a Module,
    /// The unit the expression comes from (encoding, address base).
    pub unit: std::sync::Arc<gimli::Unit<DwarfReader>>,
    /// The frame's registers; `None` for globals read with no thread stopped.
    pub regs: Option<&'a Registers>,
    /// The frame's canonical frame address, when the unwinder knows it.
    pub cfa: Option<u64>,
    /// The frame base (`DW_AT_frame_base`) already evaluated, or why not.
    pub frame_base: Option<Result<u64, Unavailable>>,
    /// Target memory.
    pub memory: &'a dyn MemorySource,
    /// Where `DW_OP_entry_value` operands come from.
    pub entry_values: Option<&'a dyn EntryValues>,
    /// For thread-locals: the process image and the thread's fs base; the
    /// TLS block is found only when an expression asks for it.
    pub tls: Option<(&'a crate::debuginfo::ProcessImage, u64)>,
}

/// Why a register is not available in this frame.
fn missing_register(register: u16, regs: Option<&Registers>) -> Unavailable {
    match regs {
        None => Unsupported::RegisterWithoutThread.into(),
        Some(_) if usize::from(register) < reg::COUNT => OptimizedOut::Register { register }.into(),
        Some(_) => Unsupported::RegisterNotCaptured { register }.into(),
    }
}

/// Evaluates a variable's location at this frame into a place.
pub(crate) fn place_of(env: &LocationEnv<'_>, location: &VariableLocation) -> Place {
    match location {
        VariableLocation::Expression(expression) => evaluate(env, expression),
        VariableLocation::Constant(bytes) => Place::bytes(bytes.clone()),
        VariableLocation::OptimizedOut => Place::Unavailable(Unavailable::OPTIMIZED_OUT),
        VariableLocation::Unsupported(problem) => Place::Unavailable(problem.clone().into()),
    }
}

/// Evaluates a frame base (`DW_AT_frame_base`): its value is the register's
/// contents or the computed address.
pub(crate) fn frame_base_of(
    env: &LocationEnv<'_>,
    location: &VariableLocation,
) -> Result<u64, Unavailable> {
    match location {
        VariableLocation::Expression(expression) => match evaluate(env, expression) {
            Place::Memory(address) => Ok(address),
            Place::Bytes { bytes, missing } if missing.is_empty() && bytes.len() >= 8 => {
                let mut word = [0u8; 8];
                word.copy_from_slice(&bytes[..8]);
                Ok(u64::from_le_bytes(word))
            }
            Place::Bytes { .. } => Err(Unsupported::FrameBaseShape.into()),
            Place::Unavailable(reason) => Err(reason),
        },
        VariableLocation::Constant(_) => Err(Unsupported::ConstantFrameBase.into()),
        VariableLocation::OptimizedOut => Err(OptimizedOut::NoFrameBase.into()),
        VariableLocation::Unsupported(problem) => Err(problem.clone().into()),
    }
}

/// Runs gimli's evaluator to completion, answering its requests from `env`.
/// A register location yields the register's contents as in-hand bytes.
pub(crate) fn evaluate(env: &LocationEnv<'_>, expression: &LocationExpression) -> Place {
    match run(env, expression) {
        Ok(pieces) => assemble(env, pieces),
        Err(reason) => Place::Unavailable(reason),
    }
}

fn run(
    env: &LocationEnv<'_>,
    expression: &LocationExpression,
) -> Result<Vec<gimli::Piece<DwarfReader>>, Unavailable> {
    let encoding = env.unit.encoding();
    let mut evaluation = expression.clone().evaluation(encoding);
    evaluation.set_max_iterations(MAX_ITERATIONS);
    let broken = |e: gimli::Error| Unavailable::from(Unsupported::LocationExpression(e));
    let mut result = evaluation.evaluate().map_err(broken)?;
    loop {
        result = match result {
            EvaluationResult::Complete => break,
            EvaluationResult::RequiresMemory {
                address,
                size,
                space: _,
                base_type,
            } => {
                let size = usize::from(size).clamp(1, 8);
                let mut bytes = [0u8; 8];
                env.memory
                    .read_memory(address, &mut bytes[..size])
                    .map_err(|e| Unavailable::read_failed(e.addr, size))?;
                let raw = u64::from_le_bytes(bytes);
                let value = typed_value(env, base_type, raw)?;
                evaluation.resume_with_memory(value).map_err(broken)?
            }
            EvaluationResult::RequiresRegister {
                register,
                base_type,
            } => {
                let raw = env
                    .regs
                    .and_then(|regs| regs.get(register.0))
                    .ok_or_else(|| missing_register(register.0, env.regs))?;
                let value = typed_value(env, base_type, raw)?;
                evaluation.resume_with_register(value).map_err(broken)?
            }
            EvaluationResult::RequiresFrameBase => {
                let base = match &env.frame_base {
                    Some(Ok(base)) => *base,
                    Some(Err(reason)) => return Err(reason.clone()),
                    None => return Err(Unsupported::FrameBaseOutsideFunction.into()),
                };
                evaluation.resume_with_frame_base(base).map_err(broken)?
            }
            EvaluationResult::RequiresCallFrameCfa => {
                let cfa = env
                    .cfa
                    .ok_or(Unavailable::Unsupported(Unsupported::CfaUnknown))?;
                evaluation.resume_with_call_frame_cfa(cfa).map_err(broken)?
            }
            EvaluationResult::RequiresTls(offset) => {
                let base = env
                    .tls
                    .and_then(|(image, fs_base)| tls_base(image, env.module, Some(fs_base)));
                let base = base.ok_or(Unavailable::Unsupported(Unsupported::ThreadLocal))?;
                evaluation
                    .resume_with_tls(base.wrapping_add(offset))
                    .map_err(broken)?
            }
            EvaluationResult::RequiresRelocatedAddress(address) => evaluation
                .resume_with_relocated_address(address.wrapping_add(env.module.bias()))
                .map_err(broken)?,
            EvaluationResult::RequiresIndexedAddress { index, relocate } => {
                let dwarf = env.module.dwarf().ok_or(Unavailable::Unsupported(
                    Unsupported::IndexedAddressWithoutDwarf,
                ))?;
                let address = dwarf
                    .address(&env.unit, index)
                    .map_err(|e| Unavailable::unreadable(DebugInfoPart::AddressEntry, Some(e)))?;
                let address = if relocate {
                    address.wrapping_add(env.module.bias())
                } else {
                    address
                };
                evaluation
                    .resume_with_indexed_address(address)
                    .map_err(broken)?
            }
            EvaluationResult::RequiresBaseType(offset) => {
                let value_type = base_type(env, offset)?;
                evaluation
                    .resume_with_base_type(value_type)
                    .map_err(broken)?
            }
            EvaluationResult::RequiresEntryValue(operand) => {
                let resolver = env
                    .entry_values
                    .ok_or(Unavailable::OptimizedOut(OptimizedOut::EntryValueNeeded))?;
                let value = resolver.entry_value(&operand, &env.unit)?;
                evaluation
                    .resume_with_entry_value(DwarfValue::Generic(value))
                    .map_err(broken)?
            }
            EvaluationResult::RequiresAtLocation(_) => {
                return Err(Unsupported::CallOperation.into());
            }
            EvaluationResult::RequiresParameterRef(_) => {
                return Err(OptimizedOut::CallSiteParameter.into());
            }
            EvaluationResult::RequiresWasmLocal { .. }
            | EvaluationResult::RequiresWasmGlobal { .. }
            | EvaluationResult::RequiresWasmStack { .. } => {
                return Err(Unsupported::WebAssembly.into());
            }
        };
    }
    Ok(evaluation.result())
}

fn base_type(env: &LocationEnv<'_>, offset: gimli::UnitOffset) -> Result<ValueType, Unavailable> {
    if offset.0 == 0 {
        return Ok(ValueType::Generic);
    }
    let entry = env
        .unit
        .entry(offset)
        .map_err(|e| Unavailable::unreadable(DebugInfoPart::BaseType, Some(e)))?;
    ValueType::from_entry(&entry)
        .ok()
        .flatten()
        .ok_or(Unavailable::Unsupported(Unsupported::UnknownBaseType))
}

fn typed_value(
    env: &LocationEnv<'_>,
    base: gimli::UnitOffset,
    raw: u64,
) -> Result<DwarfValue, Unavailable> {
    let value_type = base_type(env, base)?;
    DwarfValue::from_u64(value_type, raw).map_err(|e| Unsupported::TypedValue(e).into())
}

fn value_bytes(value: DwarfValue) -> Vec<u8> {
    match value {
        DwarfValue::Generic(v) | DwarfValue::U64(v) => v.to_le_bytes().to_vec(),
        DwarfValue::I64(v) => v.to_le_bytes().to_vec(),
        DwarfValue::I8(v) => v.to_le_bytes().to_vec(),
        DwarfValue::U8(v) => v.to_le_bytes().to_vec(),
        DwarfValue::I16(v) => v.to_le_bytes().to_vec(),
        DwarfValue::U16(v) => v.to_le_bytes().to_vec(),
        DwarfValue::I32(v) => v.to_le_bytes().to_vec(),
        DwarfValue::U32(v) => v.to_le_bytes().to_vec(),
        DwarfValue::F32(v) => v.to_le_bytes().to_vec(),
        DwarfValue::F64(v) => v.to_le_bytes().to_vec(),
    }
}

fn register_bytes(env: &LocationEnv<'_>, register: u16) -> Result<Vec<u8>, Unavailable> {
    env.regs
        .and_then(|regs| regs.get(register))
        .map(|v| v.to_le_bytes().to_vec())
        .ok_or_else(|| missing_register(register, env.regs))
}

fn assemble(env: &LocationEnv<'_>, pieces: Vec<gimli::Piece<DwarfReader>>) -> Place {
    use gimli::Reader;
    if let [piece] = pieces.as_slice()
        && piece.size_in_bits.is_none()
    {
        return match &piece.location {
            Location::Address { address } => Place::Memory(*address),
            Location::Register { register } => match register_bytes(env, register.0) {
                Ok(bytes) => Place::bytes(bytes),
                Err(reason) => Place::Unavailable(reason),
            },
            Location::Value { value } => Place::bytes(value_bytes(*value)),
            Location::Bytes { value } => match value.to_slice() {
                Ok(bytes) => Place::bytes(bytes.into_owned()),
                Err(e) => Place::Unavailable(Unavailable::unreadable(
                    DebugInfoPart::ImplicitValue,
                    Some(e),
                )),
            },
            Location::Empty => Place::Unavailable(OptimizedOut::EmptyLocation.into()),
            Location::ImplicitPointer { .. } => {
                Place::Unavailable(Unsupported::ImplicitPointer.into())
            }
        };
    }
    if pieces.is_empty() {
        return Place::Unavailable(OptimizedOut::EmptyLocation.into());
    }
    // Several pieces: lay them end to end into one buffer.
    let total_bits: u64 = pieces.iter().map(|p| p.size_in_bits.unwrap_or(64)).sum();
    let total_bytes = total_bits.div_ceil(8);
    if total_bytes > MAX_PIECES_BYTES {
        return Place::Unavailable(Unsupported::TooManyPieces { bytes: total_bytes }.into());
    }
    let mut bytes = vec![0u8; total_bytes as usize];
    let mut missing = Vec::new();
    let mut bit_cursor = 0u64;
    for piece in &pieces {
        let bits = piece.size_in_bits.unwrap_or(64);
        let start = (bit_cursor / 8) as usize;
        let len = bits.div_ceil(8) as usize;
        if !bit_cursor.is_multiple_of(8) || !bits.is_multiple_of(8) {
            // Sub-byte pieces are rare (packed bools); report rather than misplace bits.
            return Place::Unavailable(Unsupported::BitPieces.into());
        }
        let source: Result<Vec<u8>, Unavailable> = match &piece.location {
            Location::Empty => {
                missing.push(start..start + len);
                bit_cursor += bits;
                continue;
            }
            Location::Register { register } => register_bytes(env, register.0).map(|b| {
                let shift = (piece.bit_offset.unwrap_or(0) / 8) as usize;
                b.into_iter().skip(shift).collect()
            }),
            Location::Address { address } => {
                let mut buffer = vec![0u8; len];
                env.memory
                    .read_memory(*address, &mut buffer)
                    .map(|_| buffer)
                    .map_err(|e| Unavailable::read_failed(e.addr, len))
            }
            Location::Value { value } => Ok(value_bytes(*value)),
            Location::Bytes { value } => value
                .to_slice()
                .map(|b| b.into_owned())
                .map_err(|e| Unavailable::unreadable(DebugInfoPart::ImplicitValue, Some(e))),
            Location::ImplicitPointer { .. } => Err(Unsupported::ImplicitPointerPiece.into()),
        };
        match source {
            Ok(source) => {
                let n = len.min(source.len());
                bytes[start..start + n].copy_from_slice(&source[..n]);
                if n < len {
                    missing.push(start + n..start + len);
                }
            }
            Err(_) => missing.push(start..start + len),
        }
        bit_cursor += bits;
    }
    if missing.iter().map(|r| r.len()).sum::<usize>() >= bytes.len() {
        return Place::Unavailable(OptimizedOut::MissingPieces.into());
    }
    Place::Bytes { bytes, missing }
}

/// The static TLS block of the executable, in x86-64's variant II layout:
/// it ends at the thread pointer (fs base). Shared libraries' TLS blocks need
/// the dynamic linker's module table and are not supported.
fn tls_base(image: &ProcessImage, module: &Module, fs_base: Option<u64>) -> Option<u64> {
    let main = image.main_module()?;
    if !std::ptr::eq(std::sync::Arc::as_ptr(main), module) {
        return None;
    }
    let fs_base = fs_base?;
    let (size, align) = module_tls_segment(module)?;
    let align = align.max(1);
    let block = size.div_ceil(align).checked_mul(align)?;
    fs_base.checked_sub(block)
}

fn module_tls_segment(module: &Module) -> Option<(u64, u64)> {
    use object::read::elf::ProgramHeader;
    let file = module.elf.parse().ok()?;
    let object::File::Elf64(elf) = &file else {
        return None;
    };
    let endian = elf.endian();
    elf.elf_program_headers()
        .iter()
        .find(|header| header.p_type(endian) == object::elf::PT_TLS)
        .map(|header| (header.p_memsz(endian), header.p_align(endian)))
}
