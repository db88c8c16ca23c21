//! One frame made ready for reading values: its module, the variables in
//! scope at its pc, its frame base, and the environment location
//! expressions are evaluated in. Also how addresses are named for pointers.
//! Pure: reads through the frame's memory and registers only.

use std::sync::Arc;

use crate::debuginfo::scope::{FrameScope, GlobalIndex, frame_scope};
use crate::debuginfo::types::TypeTable;
use crate::debuginfo::{CallSiteCallee, DwarfReader, FileAddr, Module, ProcessImage, RuntimeAddr};
use crate::value::{
    CallSiteValue, EntryValueProblem, NotYetInitialized, OptimizedOut, Unavailable,
};

use super::location::{EntryValues, LocationEnv, frame_base_of};
use super::{EvalError, FrameContext};

/// A frame's module, scope and unit.
pub(crate) struct ResolvedFrame {
    pub module: Arc<Module>,
    pub unit: Arc<gimli::Unit<DwarfReader>>,
    pub scope: FrameScope,
    pub lookup_pc: FileAddr,
}

/// The pc used for scope and location-list lookups: a caller frame's pc is a
/// return address, which may already belong to the next line or block.
pub(crate) fn lookup_pc(ctx: &FrameContext<'_>) -> RuntimeAddr {
    if ctx.is_caller {
        RuntimeAddr(ctx.pc.0.saturating_sub(1))
    } else {
        ctx.pc
    }
}

/// The module holding a frame's code.
pub(crate) fn module_of<'a>(ctx: &FrameContext<'a>) -> Result<&'a Arc<Module>, EvalError> {
    let pc = lookup_pc(ctx);
    ctx.image
        .module_for(pc)
        .ok_or_else(|| EvalError::NoDebugInfo {
            pc: pc.0,
            detail: "the address is not inside any loaded module".to_string(),
        })
}

/// Finds the module, unit and scope of a frame.
pub(crate) fn resolve(
    ctx: &FrameContext<'_>,
    types: &mut TypeTable,
) -> Result<ResolvedFrame, EvalError> {
    let pc = lookup_pc(ctx);
    let module = ctx
        .image
        .module_for(pc)
        .ok_or_else(|| EvalError::NoDebugInfo {
            pc: pc.0,
            detail: "the address is not inside any loaded module".to_string(),
        })?;
    let file_pc = module.to_file(pc);
    let scope = frame_scope(module, types, file_pc, ctx.inline_depth).map_err(|error| match error {
        crate::debuginfo::scope::ScopeError::NoDebugInfo { module, .. } => EvalError::NoDebugInfo {
            pc: pc.0,
            detail: format!("{module} has no DWARF for this code; rebuild it with -g or install its debug symbols"),
        },
        crate::debuginfo::scope::ScopeError::NoFunction { module: name, .. } => EvalError::NoDebugInfo {
            pc: pc.0,
            detail: match module.missing_split_dwarf(file_pc) {
                Some(file) => format!(
                    "{name} keeps this code's DWARF in a split file (-gsplit-dwarf) that was not found: {file}; \
                     put the .dwo files back where they were built, or a package of them next to the \
                     executable as <executable>.dwp"
                ),
                None => format!("no function in the debug info of {name} contains this address"),
            },
        },
        other => EvalError::Dwarf(other.to_string()),
    })?;
    let unit = module
        .unit_at(gimli::DebugInfoOffset(scope.unit))
        .ok_or_else(|| {
            EvalError::Dwarf("the unit of the frame's function could not be read".to_string())
        })?;
    Ok(ResolvedFrame {
        module: module.clone(),
        unit,
        scope,
        lookup_pc: file_pc,
    })
}

/// The location environment of a resolved frame, with its frame base
/// evaluated.
pub(crate) fn location_env<'a>(
    ctx: &'a FrameContext<'a>,
    frame: &'a ResolvedFrame,
    entry_values: Option<&'a dyn EntryValues>,
) -> LocationEnv<'a> {
    let mut env = LocationEnv {
        module: &frame.module,
        unit: frame.unit.clone(),
        regs: Some(ctx.regs),
        cfa: ctx.cfa,
        frame_base: None,
        memory: ctx.memory,
        entry_values,
        tls: ctx.regs.fs_base().map(|fs_base| (ctx.image, fs_base)),
    };
    env.frame_base = Some(frame_base_of(&env, &frame.scope.frame_base));
    env
}

/// Largest offset into a function symbol shown as `name+offset`.
const MAX_SYMBOL_OFFSET: u64 = 4096;

/// Names an address for a pointer: a global (`counter`, `table+16`) or a
/// function (`main`), else nothing.
pub(crate) fn symbolize(image: &ProcessImage, address: u64) -> Option<String> {
    if address == 0 {
        return None;
    }
    let module = image.module_for(RuntimeAddr(address))?;
    let file = module.to_file(RuntimeAddr(address));
    // Indexing a big library's globals takes seconds: only the executable's
    // index is built for naming pointers; others are used once built.
    let is_main = image
        .main_module()
        .is_some_and(|main| Arc::ptr_eq(main, module));
    let index = if is_main {
        Some(GlobalIndex::of(module))
    } else {
        GlobalIndex::if_built(module)
    };
    if let Some((global, offset)) = index.as_ref().and_then(|index| index.containing(file)) {
        return Some(if offset == 0 {
            global.name.clone()
        } else {
            format!("{}+{offset}", global.name)
        });
    }
    let (name, start) = module.symbol_for(file)?;
    let offset = file.0.wrapping_sub(start.0);
    // A symbol without a size "covers" everything up to the next one, which
    // can be far into data; only name addresses plausibly inside code.
    if offset > MAX_SYMBOL_OFFSET {
        return None;
    }
    Some(if offset == 0 {
        name
    } else {
        format!("{name}+{offset}")
    })
}

/// Recovers `DW_OP_entry_value` operands for a frame, only from what can be
/// proven: a callee-saved register's value at entry is the caller's, when
/// the unwinder restored it from CFI; any other register's is what the
/// caller's call site recorded passing in it, when that call site returns
/// to the caller frame's pc, calls this very function (so no tail call from
/// another function came between) and its value can be computed from the
/// caller's reliably recovered registers (callee-saved ones, the CFA) and
/// memory. Anything else is unavailable with the reason, never guessed.
pub(crate) struct CallerEntryValues<'a> {
    pub ctx: &'a FrameContext<'a>,
}

/// Why an entry value is not known, as a value's `unavailable`.
fn not_provable(why: EntryValueProblem) -> Unavailable {
    Unavailable::OptimizedOut(OptimizedOut::EntryValueNotProvable(why))
}

/// A value computed by a call site expression: an "address" result is the
/// number itself, a register location its contents.
fn call_site_word(place: crate::value::Place) -> Result<u64, CallSiteValue> {
    match place {
        crate::value::Place::Memory(value) => Ok(value),
        crate::value::Place::Bytes { bytes, missing }
            if missing.is_empty() && !bytes.is_empty() =>
        {
            let mut word = [0u8; 8];
            let n = bytes.len().min(8);
            word[..n].copy_from_slice(&bytes[..n]);
            Ok(u64::from_le_bytes(word))
        }
        crate::value::Place::Bytes { .. } => Err(CallSiteValue::Incomplete),
        crate::value::Place::Unavailable(reason) => {
            Err(CallSiteValue::Unavailable(Box::new(reason)))
        }
    }
}

impl EntryValues for CallerEntryValues<'_> {
    fn entry_value(
        &self,
        expression: &crate::debuginfo::scope::LocationExpression,
        unit: &gimli::Unit<DwarfReader>,
    ) -> Result<u64, Unavailable> {
        let mut operations = expression.clone().operations(unit.encoding());
        let register = match (operations.next(), operations.next()) {
            (Ok(Some(gimli::Operation::Register { register })), Ok(None)) => register.0,
            _ => return Err(not_provable(EntryValueProblem::NotAPlainRegister)),
        };
        let ctx = self.ctx;
        let caller = ctx
            .image
            .caller_of(ctx.pc, ctx.regs, ctx.is_caller, ctx.memory)
            .ok_or_else(|| not_provable(EntryValueProblem::CallerNotUnwound))?;
        // Registers guessed from the rbp chain, or a frame the kernel
        // entered (a signal), prove nothing about a call.
        if caller.method != crate::debuginfo::UnwindMethod::Cfi {
            return Err(not_provable(EntryValueProblem::CallerRegistersGuessed));
        }
        if !caller.is_caller {
            return Err(not_provable(EntryValueProblem::EnteredBySignal));
        }
        if crate::debuginfo::reg::CALLEE_SAVED.contains(&register)
            && let Some(value) = caller.regs.get(register)
        {
            return Ok(value);
        }
        let caller_module = ctx
            .image
            .module_for(RuntimeAddr(caller.pc.0.saturating_sub(1)))
            .ok_or_else(|| not_provable(EntryValueProblem::CallerOutsideModules))?;
        let mut types = TypeTable::new();
        let site = crate::debuginfo::call_site_value(
            caller_module,
            &mut types,
            caller_module.to_file(caller.pc),
            register,
        )
        .ok_or_else(|| not_provable(EntryValueProblem::ArgumentNotRecorded))?;
        if site.tail_call {
            return Err(not_provable(EntryValueProblem::TailCallSite));
        }
        let caller_unit = caller_module
            .unit_at(gimli::DebugInfoOffset(site.unit))
            .ok_or_else(|| not_provable(EntryValueProblem::CallerUnitUnreadable))?;
        let mut env = LocationEnv {
            module: caller_module,
            unit: caller_unit,
            regs: Some(&caller.regs),
            cfa: caller.cfa,
            frame_base: None,
            memory: ctx.memory,
            // One level only: a caller's entry values would need its caller.
            entry_values: None,
            tls: caller.regs.fs_base().map(|fs_base| (ctx.image, fs_base)),
        };
        env.frame_base = Some(super::location::frame_base_of(&env, &site.frame_base));
        let callee = self.callee_entry()?;
        let called = match &site.callee {
            CallSiteCallee::Defined(entry) => caller_module.to_runtime(*entry) == callee.0,
            CallSiteCallee::Named(names) => callee_has_name(ctx.image, callee.0, names),
            CallSiteCallee::Computed(target) => {
                let target = call_site_word(super::location::evaluate(&env, target))
                    .map_err(|why| not_provable(EntryValueProblem::CalledAddress(why)))?;
                target == callee.0.0
            }
            CallSiteCallee::Unknown => {
                return Err(not_provable(EntryValueProblem::CalleeNotRecorded));
            }
        };
        if !called {
            return Err(not_provable(EntryValueProblem::CallsAnother {
                callee: callee.1,
            }));
        }
        call_site_word(super::location::evaluate(&env, &site.value))
            .map_err(|why| not_provable(EntryValueProblem::Value(why)))
    }
}

impl CallerEntryValues<'_> {
    /// The entry address (runtime) and name of the out-of-line function this
    /// frame runs in.
    fn callee_entry(&self) -> Result<(RuntimeAddr, String), Unavailable> {
        let pc = lookup_pc(self.ctx);
        let module = self
            .ctx
            .image
            .module_for(pc)
            .ok_or_else(|| not_provable(EntryValueProblem::FrameOutsideModules))?;
        let (entry, name) = module
            .function_entry(module.to_file(pc))
            .ok_or_else(|| not_provable(EntryValueProblem::FunctionWithoutSymbol))?;
        Ok((module.to_runtime(entry), name))
    }
}

/// Whether the function entered at `entry` is known by one of `names`
/// (aliases included) in its module.
fn callee_has_name(image: &ProcessImage, entry: RuntimeAddr, names: &[String]) -> bool {
    let Some(module) = image.module_for(entry) else {
        return false;
    };
    let file = module.to_file(entry);
    names.iter().any(|name| module.has_symbol_at(name, file))
}

/// Why a local is not yet initialized at this frame, if it is not: the
/// frame's line comes before the variable's declaration line, in the same
/// file, and the variable belongs to the innermost block holding the pc (an
/// outer block's later declaration may sit past a loop that already ran).
/// Parameters and statics are always initialized; only stack slots are
/// judged.
///
/// A caller frame (`is_caller`: its pc is a return address) on the
/// declaration's own line is inside the initializer's call (`int status =
/// run(L);` still running), so the variable is not initialized yet either,
/// unless the line may hold more than that one initialization: the
/// variable's block begins on that line (`for (int i = 0; i < f(); i++)`
/// assigns `i` before calling `f`), or another variable of the block is
/// declared on it (`int a = 1, b = f();`); and only when the code after the
/// return address, still on that line, stores into the variable's slot
/// (so `g`'s frame in `int s = f(); g(s);` does not mark `s`).
pub(crate) fn not_yet_initialized(
    ctx: &FrameContext<'_>,
    frame: &ResolvedFrame,
    variable: &crate::debuginfo::scope::ScopeVariable,
) -> Option<Unavailable> {
    let (inline_depth, is_caller) = (ctx.inline_depth, ctx.is_caller);
    if variable.is_parameter || variable.artificial || !variable.in_innermost_block {
        return None;
    }
    // Only a stack slot (`DW_OP_fbreg`, as -O0 code keeps locals) holds
    // garbage before its declaration runs; optimized code's registers and
    // location lists already say where a value lives, and its line order
    // is too shuffled to compare.
    if !is_stack_slot(&variable.location) {
        return None;
    }
    let decl_line = variable.decl_line?;
    let source = frame.module.symbolize_file(frame.lookup_pc);
    let here = source.get(inline_depth)?;
    let line = u64::from(here.line?);
    let running_declaration = line == decl_line && is_caller;
    if line == 0 || line > decl_line || (line == decl_line && !is_caller) {
        return None;
    }
    let dwarf = frame.module.dwarf()?;
    let decl_path = crate::debuginfo::file_path(dwarf, &frame.unit, variable.decl_file?)?;
    let here_path = here.file.as_deref()?;
    if !same_file(&decl_path, here_path) {
        return None;
    }
    if !running_declaration {
        return Some(Unavailable::NotYetInitialized(
            NotYetInitialized::BeforeDeclaration {
                declared: decl_line,
                frame: line,
            },
        ));
    }
    if !declaration_alone_on_its_line(frame, inline_depth, variable, decl_line)
        || !initializer_store_ahead(ctx, frame, variable, decl_line)
    {
        return None;
    }
    Some(Unavailable::NotYetInitialized(
        NotYetInitialized::InitializerRunning {
            declared: decl_line,
        },
    ))
}

/// True when `variable`'s declaration line holds no other initialization
/// the variable's block could run before the frame's call: the block does
/// not begin on that line (a `for` or `if` declaring it there), and no
/// other variable of the block is declared on it.
fn declaration_alone_on_its_line(
    frame: &ResolvedFrame,
    inline_depth: usize,
    variable: &crate::debuginfo::scope::ScopeVariable,
    decl_line: u64,
) -> bool {
    let Some(block_start) = variable.block_start else {
        return false;
    };
    let block_source = frame.module.symbolize_file(block_start);
    let Some(block_line) = block_source.get(inline_depth).and_then(|s| s.line) else {
        return false;
    };
    if u64::from(block_line) == decl_line {
        return false;
    }
    !frame.scope.variables.iter().any(|other| {
        other.name != variable.name
            && other.block_start == variable.block_start
            && other.block_depth == variable.block_depth
            && other.decl_line == Some(decl_line)
            && other.decl_file == variable.decl_file
            && !other.capture
    })
}

/// True for a location relative to the frame base (`DW_OP_fbreg`): a
/// stack slot. Statics (`DW_OP_addr`) are initialized before the function
/// ever runs and never qualify.
fn is_stack_slot(location: &crate::debuginfo::scope::VariableLocation) -> bool {
    use crate::debuginfo::scope::VariableLocation;
    use gimli::Reader;
    let VariableLocation::Expression(expression) = location else {
        return false;
    };
    let mut bytes = expression.0.clone();
    matches!(
        bytes.read_u8().map(gimli::DwOp),
        Ok(gimli::constants::DW_OP_fbreg)
    )
}

fn same_file(a: &str, b: &str) -> bool {
    let (a, b) = (
        crate::debuginfo::normalize_path(a),
        crate::debuginfo::normalize_path(b),
    );
    a == b || a.ends_with(&format!("/{b}")) || b.ends_with(&format!("/{a}"))
}

/// Most instructions followed from a return address looking for the
/// store that completes a declaration.
const MAX_STORE_SCAN: usize = 64;

/// True when some path of the code from the frame's return address, before
/// it leaves `decl_line` (or the function), writes the variable's stack
/// slot: the declaration's initializing store has not run yet. Code bytes
/// come from the ELF file (the live code may hold probes' `int3`s); a store
/// whose address needs a register the unwinder did not recover is not
/// counted, so anything unknown answers false.
fn initializer_store_ahead(
    ctx: &FrameContext<'_>,
    frame: &ResolvedFrame,
    variable: &crate::debuginfo::scope::ScopeVariable,
    decl_line: u64,
) -> bool {
    use iced_x86::{
        Decoder, DecoderOptions, FlowControl, InstructionInfoFactory, OpAccess, OpKind, Register,
    };
    use object::{Object, ObjectSection};
    let crate::debuginfo::scope::VariableLocation::Expression(expression) = &variable.location
    else {
        return false;
    };
    let env = location_env(ctx, frame, None);
    let crate::value::Place::Memory(slot) = super::location::evaluate(&env, expression) else {
        return false;
    };
    // The caller holds the module's shared type table; a private one is
    // enough for one size.
    let mut types = TypeTable::new();
    let slot_size = variable
        .ty
        .and_then(|ty| types.size_of(&frame.module, ty))
        .unwrap_or(1)
        .max(1);
    let module = &frame.module;
    let start = module.to_file(ctx.pc).0;
    let Some(hit) = module.symbol_table().lookup(start) else {
        return false;
    };
    let end = hit.addr.saturating_add(hit.size);
    if hit.size == 0 || end <= start || end - start > 1 << 16 {
        return false;
    }
    let Ok(file) = module.elf.parse() else {
        return false;
    };
    let Some(code) = file
        .sections()
        .find_map(|section| section.data_range(start, end - start).ok().flatten())
    else {
        return false;
    };
    let register = |register: Register| match register {
        Register::RBP => ctx.regs.get(crate::debuginfo::reg::RBP),
        Register::RSP => ctx.regs.get(crate::debuginfo::reg::RSP),
        // iced asks for the segment's base too: flat in 64-bit mode.
        Register::ES | Register::CS | Register::SS | Register::DS => Some(0),
        _ => None,
    };
    let on_line = |address: u64| {
        module
            .symbolize_file(FileAddr(address))
            .get(ctx.inline_depth)
            .and_then(|s| s.line)
            .is_some_and(|line| u64::from(line) == decl_line)
    };
    let mut pending = vec![start];
    let mut seen = std::collections::HashSet::new();
    let mut info = InstructionInfoFactory::new();
    while let Some(address) = pending.pop() {
        if seen.len() >= MAX_STORE_SCAN || !seen.insert(address) {
            continue;
        }
        if address < start || address >= end || !on_line(address) {
            continue;
        }
        let Some(bytes) = code.get((address - start) as usize..) else {
            continue;
        };
        let mut decoder = Decoder::with_ip(64, bytes, address, DecoderOptions::NONE);
        let instruction = decoder.decode();
        if instruction.is_invalid() {
            continue;
        }
        let writes_slot = info.info(&instruction).used_memory().iter().any(|used| {
            matches!(
                used.access(),
                OpAccess::Write
                    | OpAccess::CondWrite
                    | OpAccess::ReadWrite
                    | OpAccess::ReadCondWrite
            ) && used
                .virtual_address(0, |reg, _, _| register(reg))
                .is_some_and(|at| {
                    let size = used.memory_size().size().max(1) as u64;
                    at < slot.saturating_add(slot_size) && slot < at.saturating_add(size)
                })
        });
        if writes_slot {
            return true;
        }
        match instruction.flow_control() {
            FlowControl::Next | FlowControl::Call => pending.push(instruction.next_ip()),
            FlowControl::UnconditionalBranch if instruction.op0_kind() == OpKind::NearBranch64 => {
                pending.push(instruction.near_branch_target());
            }
            FlowControl::ConditionalBranch => {
                pending.push(instruction.next_ip());
                pending.push(instruction.near_branch_target());
            }
            _ => {}
        }
    }
    false
}
