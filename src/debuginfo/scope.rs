//! Which variables are visible at a pc, and where each one lives there.
//!
//! Owns the walk from a compilation unit down to the subprogram, lexical
//! blocks and inlined subroutines that contain a pc; splitting that chain into
//! source-level frames (an inlined call is a frame of its own); shadowing;
//! choosing the location-list entry that covers the pc; and the index of
//! global and static variables by qualified name and by address.
//!
//! It never reads target memory or registers: a [`VariableLocation`] is the
//! DWARF expression to evaluate, not a value. It never trusts the DIE tree:
//! malformed or unexpected shapes make a variable `unsupported`, not a panic.

use std::collections::HashMap;
use std::sync::{Arc, OnceLock};

use gimli::{AttributeValue, Reader, constants};

use super::addr::FileAddr;
use super::bytes::DwarfReader;
use super::function_ranges::{FUNCTION_RANGE_CACHE_LIMIT, FunctionRanges};
use super::module::{Module, PerModule};
use super::types::{Language, MemberOffset, TypeKey, TypeKind, TypeTable, unit_key, unit_language};

pub use super::frame_scope::{
    ClosureObjectShape, FrameScope, LocationExpression, LocationProblem, ScopeVariable,
    VariableLocation,
};

/// Why the variables at a pc could not be listed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ScopeError {
    /// The module has no DWARF, or no unit covers the pc.
    #[error(
        "no debug info covers file address {pc:#x} in {module}; rebuild with -g or install the debug symbols"
    )]
    NoDebugInfo {
        /// The file address looked up.
        pc: u64,
        /// The module's path.
        module: String,
    },
    /// A unit covers the pc but no function in it does.
    #[error("no function in the debug info contains file address {pc:#x} in {module}")]
    NoFunction {
        /// The file address looked up.
        pc: u64,
        /// The module's path.
        module: String,
    },
    /// The inline depth asked for is deeper than the inlined calls at the pc.
    #[error(
        "inline depth {asked} does not exist at this pc: it has {available} source-level frame(s)"
    )]
    NoSuchInlineFrame {
        /// The depth asked for.
        asked: usize,
        /// How many source-level frames the pc has.
        available: usize,
    },
    /// The DIE tree could not be read.
    #[error("malformed debug info: {0}")]
    Malformed(String),
}

/// How many `DW_AT_abstract_origin`/`DW_AT_specification` hops are followed;
/// longer chains are malformed.
const MAX_ORIGIN_HOPS: usize = 8;

/// How deep the DIE tree is descended (namespaces, blocks, inlines).
const MAX_TREE_DEPTH: usize = 64;

/// Reads a DIE's attribute, following `DW_AT_abstract_origin` and
/// `DW_AT_specification` to the DIE that declares it; returns the unit the
/// value belongs to (references are relative to it) and the value.
pub(crate) fn inherited_attr(
    module: &Module,
    types: &mut TypeTable,
    unit: &Arc<gimli::Unit<DwarfReader>>,
    entry: &gimli::DebuggingInformationEntry<DwarfReader>,
    name: constants::DwAt,
) -> Option<(Arc<gimli::Unit<DwarfReader>>, AttributeValue<DwarfReader>)> {
    if let Some(value) = entry.attr_value(name) {
        return Some((unit.clone(), value));
    }
    let mut current_unit = unit.clone();
    let mut origin = entry
        .attr_value(constants::DW_AT_abstract_origin)
        .or_else(|| entry.attr_value(constants::DW_AT_specification));
    for _ in 0..MAX_ORIGIN_HOPS {
        let key = types.reference(module, &current_unit, origin?)?;
        let next_unit = if Some(key.unit) == unit_key(&current_unit) {
            current_unit.clone()
        } else {
            module.unit_at(gimli::DebugInfoOffset(key.unit))?
        };
        let next = next_unit.entry(gimli::UnitOffset(key.entry)).ok()?;
        if let Some(value) = next.attr_value(name) {
            return Some((next_unit, value));
        }
        origin = next
            .attr_value(constants::DW_AT_abstract_origin)
            .or_else(|| next.attr_value(constants::DW_AT_specification));
        current_unit = next_unit;
    }
    None
}

/// A DIE's name, through origins and specifications.
fn die_name(
    module: &Module,
    types: &mut TypeTable,
    unit: &Arc<gimli::Unit<DwarfReader>>,
    entry: &gimli::DebuggingInformationEntry<DwarfReader>,
) -> Option<String> {
    let (name_unit, value) = inherited_attr(module, types, unit, entry, constants::DW_AT_name)?;
    let dwarf = module.dwarf_for(unit_key(&name_unit)?)?;
    let text = name_unit.unit_ref(dwarf).attr_string(value).ok()?;
    text.to_string_lossy().ok().map(|s| s.into_owned())
}

/// A DIE's type, through origins and specifications.
fn die_type(
    module: &Module,
    types: &mut TypeTable,
    unit: &Arc<gimli::Unit<DwarfReader>>,
    entry: &gimli::DebuggingInformationEntry<DwarfReader>,
) -> Option<TypeKey> {
    let (type_unit, value) = inherited_attr(module, types, unit, entry, constants::DW_AT_type)?;
    types.reference(module, &type_unit, value)
}

fn flag(entry: &gimli::DebuggingInformationEntry<DwarfReader>, name: constants::DwAt) -> bool {
    matches!(entry.attr_value(name), Some(AttributeValue::Flag(true)))
}

/// Whether a DIE's address ranges contain `pc`; a DIE with no ranges at all
/// (a lexical block without addresses) contains every pc of its parent.
fn contains_pc(
    unit_ref: gimli::UnitRef<'_, DwarfReader>,
    entry: &gimli::DebuggingInformationEntry<DwarfReader>,
    pc: u64,
    no_ranges_means: bool,
) -> bool {
    if !entry.has_attr(constants::DW_AT_low_pc) && !entry.has_attr(constants::DW_AT_ranges) {
        return no_ranges_means;
    }
    let Ok(mut ranges) = unit_ref.die_ranges(entry) else {
        return false;
    };
    while let Ok(Some(range)) = ranges.next() {
        if range.begin <= pc && pc < range.end {
            return true;
        }
    }
    false
}

/// The lowest address a DIE's `DW_AT_low_pc` or `DW_AT_ranges` covers.
fn lowest_pc(
    unit_ref: gimli::UnitRef<'_, DwarfReader>,
    entry: &gimli::DebuggingInformationEntry<DwarfReader>,
) -> Option<u64> {
    if !entry.has_attr(constants::DW_AT_low_pc) && !entry.has_attr(constants::DW_AT_ranges) {
        return None;
    }
    let mut ranges = unit_ref.die_ranges(entry).ok()?;
    let mut lowest: Option<u64> = None;
    while let Ok(Some(range)) = ranges.next() {
        if range.begin < range.end {
            lowest = Some(lowest.map_or(range.begin, |l| l.min(range.begin)));
        }
    }
    lowest
}

/// The location of a variable or frame base at `pc`: a single expression,
/// the location-list entry covering `pc`, a constant, or nothing.
pub(crate) fn location_at(
    unit_ref: gimli::UnitRef<'_, DwarfReader>,
    entry: &gimli::DebuggingInformationEntry<DwarfReader>,
    attribute: constants::DwAt,
    pc: u64,
) -> VariableLocation {
    if attribute == constants::DW_AT_location
        && let Some(value) = entry.attr_value(constants::DW_AT_const_value)
    {
        return constant_location(unit_ref, value);
    }
    let Some(value) = entry.attr_value(attribute) else {
        return VariableLocation::OptimizedOut;
    };
    match value {
        AttributeValue::Exprloc(expression) => VariableLocation::Expression(expression),
        AttributeValue::Block(bytes) => VariableLocation::Expression(gimli::Expression(bytes)),
        other => match unit_ref.attr_locations(other) {
            Ok(Some(mut entries)) => loop {
                match entries.next() {
                    Ok(Some(item)) if item.range.begin <= pc && pc < item.range.end => {
                        return VariableLocation::Expression(item.data);
                    }
                    Ok(Some(_)) => continue,
                    Ok(None) => return VariableLocation::OptimizedOut,
                    Err(error) => {
                        return VariableLocation::Unsupported(
                            LocationProblem::UnreadableLocationList(error),
                        );
                    }
                }
            },
            Ok(None) => VariableLocation::Unsupported(LocationProblem::UnknownAttributeForm),
            Err(error) => {
                VariableLocation::Unsupported(LocationProblem::UnreadableLocationList(error))
            }
        },
    }
}

fn constant_location(
    unit_ref: gimli::UnitRef<'_, DwarfReader>,
    value: AttributeValue<DwarfReader>,
) -> VariableLocation {
    use gimli::Reader;
    let bytes = match value {
        AttributeValue::Sdata(s) => s.to_le_bytes().to_vec(),
        AttributeValue::Udata(u) => u.to_le_bytes().to_vec(),
        AttributeValue::Data1(d) => u64::from(d).to_le_bytes().to_vec(),
        AttributeValue::Data2(d) => u64::from(d).to_le_bytes().to_vec(),
        AttributeValue::Data4(d) => u64::from(d).to_le_bytes().to_vec(),
        AttributeValue::Data8(d) => d.to_le_bytes().to_vec(),
        AttributeValue::Data16(d) => d.to_le_bytes().to_vec(),
        AttributeValue::Block(block) => match block.to_slice() {
            Ok(slice) => slice.into_owned(),
            Err(error) => {
                return VariableLocation::Unsupported(LocationProblem::UnreadableConstant(error));
            }
        },
        other => match unit_ref.attr_string(other) {
            Ok(text) => match text.to_slice() {
                Ok(slice) => {
                    let mut bytes = slice.into_owned();
                    bytes.push(0);
                    bytes
                }
                Err(error) => {
                    return VariableLocation::Unsupported(LocationProblem::UnreadableConstant(
                        error,
                    ));
                }
            },
            Err(_) => {
                return VariableLocation::Unsupported(LocationProblem::UnknownConstantForm);
            }
        },
    };
    VariableLocation::Constant(bytes)
}

/// One level of the chain of scopes that contain the pc.
struct ScopeLevel {
    /// True for the subprogram and for each inlined subroutine: they start a
    /// new source-level frame.
    starts_frame: bool,
    /// The function's name, for levels that start a frame.
    function: Option<String>,
    /// The lowest address of the level's DIE.
    start: Option<u64>,
    variables: Vec<ScopeVariable>,
}

/// The source-level frame at `pc` (a file address; for a caller frame pass
/// the return address minus one), `inline_depth` 0 being the innermost
/// inlined call and the last the out-of-line function.
pub fn frame_scope(
    module: &Module,
    types: &mut TypeTable,
    pc: FileAddr,
    inline_depth: usize,
) -> Result<FrameScope, ScopeError> {
    if let Some(scope) = types.scopes.get(&(pc.0, inline_depth)) {
        return Ok(FrameScope::clone(scope));
    }
    let scope = walk_frame_scope(module, types, pc, inline_depth)?;
    if types.scopes.len() >= MAX_CACHED_SCOPES {
        types.scopes.clear();
    }
    types
        .scopes
        .insert((pc.0, inline_depth), Arc::new(scope.clone()));
    Ok(scope)
}

/// Most scopes kept per module.
const MAX_CACHED_SCOPES: usize = 4096;

fn walk_frame_scope(
    module: &Module,
    types: &mut TypeTable,
    pc: FileAddr,
    inline_depth: usize,
) -> Result<FrameScope, ScopeError> {
    let module_name = module.path().display().to_string();
    let no_debug_info = || ScopeError::NoDebugInfo {
        pc: pc.0,
        module: module_name.clone(),
    };
    let unit = module.unit_for(pc).ok_or_else(no_debug_info)?;
    let unit_offset = unit_key(&unit).ok_or_else(no_debug_info)?;
    let dwarf = module.dwarf_for(unit_offset).ok_or_else(no_debug_info)?;
    let unit_ref = unit.unit_ref(dwarf);
    let language = unit_language(&unit);
    let mut found = None;
    // The unit's function index finds the subprogram without walking the
    // unit; a nested function (static link) needs the path to its parent,
    // which only the walk from the root gives.
    let indexed = subprogram_at(module, &unit, pc.0).filter(|offset| {
        unit.entry(gimli::UnitOffset(*offset))
            .is_ok_and(|entry| !entry.has_attr(constants::DW_AT_static_link))
    });
    if let Some(offset) = indexed {
        let mut tree = unit
            .entries_tree(Some(gimli::UnitOffset(offset)))
            .map_err(|e| ScopeError::Malformed(e.to_string()))?;
        let node = tree
            .root()
            .map_err(|e| ScopeError::Malformed(e.to_string()))?;
        let entry = node.entry();
        let frame_base = location_at(unit_ref, entry, constants::DW_AT_frame_base, pc.0);
        let function = die_name(module, types, &unit, entry);
        let mut levels = Vec::new();
        collect_levels(
            module,
            types,
            &unit,
            unit_ref,
            node,
            pc.0,
            true,
            function,
            0,
            &mut levels,
        )?;
        found = Some(Found {
            subprogram: offset,
            frame_base,
            levels,
            enclosing: Vec::new(),
        });
    } else {
        let mut tree = unit
            .entries_tree(None)
            .map_err(|e| ScopeError::Malformed(e.to_string()))?;
        let root = tree
            .root()
            .map_err(|e| ScopeError::Malformed(e.to_string()))?;
        let mut path = Vec::new();
        find_subprogram(
            module, types, &unit, unit_ref, root, pc.0, &mut path, &mut found,
        )?;
    }
    let Some(Found {
        subprogram: subprogram_offset,
        frame_base,
        mut levels,
        enclosing,
    }) = found
    else {
        return Err(ScopeError::NoFunction {
            pc: pc.0,
            module: module_name,
        });
    };
    if let Ok(subprogram) = unit.entry(gimli::UnitOffset(subprogram_offset))
        && let Some(AttributeValue::Exprloc(link)) =
            subprogram.attr_value(constants::DW_AT_static_link)
        && let Some(level) = levels.first_mut()
    {
        let mut outer = static_link_variables(module, types, &unit, &link, &enclosing);
        outer.retain(|v| !level.variables.iter().any(|own| own.name == v.name));
        outer.append(&mut level.variables);
        level.variables = outer;
    }
    // Split the chain into frames: each level that starts a frame begins one.
    let mut frames: Vec<Vec<ScopeLevel>> = Vec::new();
    for level in levels {
        if level.starts_frame || frames.is_empty() {
            frames.push(Vec::new());
        }
        if let Some(frame) = frames.last_mut() {
            frame.push(level);
        }
    }
    let available = frames.len();
    let index = available
        .checked_sub(1 + inline_depth)
        .ok_or(ScopeError::NoSuchInlineFrame {
            asked: inline_depth,
            available,
        })?;
    let frame = frames.swap_remove(index);
    let function = frame
        .first()
        .and_then(|level| level.function.clone())
        .unwrap_or_else(|| "??".to_string());
    let mut parameters = Vec::new();
    let mut locals = Vec::new();
    let innermost = frame.len().saturating_sub(1);
    for (depth, level) in frame.into_iter().enumerate() {
        for mut variable in level.variables {
            variable.block_depth = depth;
            variable.in_innermost_block = depth == innermost;
            variable.block_start = level.start.map(FileAddr);
            if variable.is_parameter {
                parameters.push(variable);
            } else {
                locals.push(variable);
            }
        }
    }
    let mut variables = parameters;
    variables.extend(locals);
    // After every block's variables are known: gcc describes captures as
    // variables of the body's outermost block, not of the function.
    add_closure_captures(module, types, unit.encoding(), &mut variables);
    mark_shadowed(&mut variables);
    Ok(FrameScope {
        function,
        unit: unit_offset,
        language,
        subprogram: TypeKey {
            unit: unit_offset,
            entry: subprogram_offset,
        },
        frame_base,
        variables,
        inline_frames: available,
    })
}

/// Makes a closure's captures visible by their names in its body. gcc and
/// rustc describe each capture as a variable of the body already (gcc marks
/// them artificial); clang only describes the closure class, whose members
/// are reached through `this`. A capture becomes a variable located at
/// `object + member offset`; one the compiler described is only marked.
fn add_closure_captures(
    module: &Module,
    types: &mut TypeTable,
    encoding: gimli::Encoding,
    variables: &mut Vec<ScopeVariable>,
) {
    let Some(object) = variables.iter().find(|v| {
        v.is_parameter && (v.artificial || matches!(v.name.as_str(), "this" | "__closure" | "self"))
    }) else {
        return;
    };
    let Some((closure, through_pointer)) = closure_type(module, types, object.ty) else {
        return;
    };
    let object_location = object.location.clone();
    let Some(aggregate) = types.get(module, closure).aggregate().cloned() else {
        return;
    };
    for member in &aggregate.members {
        let (Some(raw_name), MemberOffset::Bytes(offset)) = (&member.name, &member.offset) else {
            continue;
        };
        if member.is_base {
            continue;
        }
        // gcc names the member of a capture `x` `__x`.
        let name = raw_name
            .strip_prefix("__")
            .filter(|rest| !rest.is_empty())
            .unwrap_or(raw_name);
        if let Some(described) = variables
            .iter_mut()
            .find(|v| !v.is_parameter && v.name == name)
        {
            described.capture = true;
            continue;
        }
        variables.push(ScopeVariable {
            name: name.to_string(),
            ty: member.ty,
            is_parameter: false,
            artificial: true,
            capture: true,
            shadowed: false,
            block_depth: 0,
            location: member_location(&object_location, encoding, through_pointer, *offset),
            // A capture was initialized when its closure was made.
            decl_line: None,
            decl_file: None,
            in_innermost_block: false,
            block_start: None,
        });
    }
}

/// The closure class an object parameter points to (or is), and whether it
/// is reached through a pointer. A closure is a C++ lambda's class (unnamed,
/// or `<lambda(...)>`) or a Rust closure's environment (`{closure_env#N}`).
fn closure_type(
    module: &Module,
    types: &mut TypeTable,
    object_type: Option<TypeKey>,
) -> Option<(TypeKey, bool)> {
    let (key, ty) = types.strip(module, object_type?)?;
    let (key, ty, through_pointer) = match ty.kind {
        TypeKind::Pointer(Some(target))
        | TypeKind::Reference {
            target: Some(target),
            ..
        } => {
            let (key, ty) = types.strip(module, target)?;
            (key, ty, true)
        }
        _ => (key, ty, false),
    };
    let aggregate = ty.aggregate()?;
    if aggregate.declaration {
        return None;
    }
    let name = ty.short_name.as_str();
    let is_closure = match ty.language {
        Language::Rust => name.starts_with("{closure_env#"),
        _ => name.is_empty() || name.starts_with("<lambda"),
    };
    is_closure.then_some((key, through_pointer))
}

/// True when the aggregate at `key` is a closure class (a C++ lambda's, a
/// Rust closure's environment): its members are captures, not fields the
/// source names through `this`.
pub(crate) fn is_closure_class(module: &Module, types: &mut TypeTable, key: TypeKey) -> bool {
    closure_type(module, types, Some(key)).is_some()
}

/// The location of the member at `offset` of the object whose pointer (or,
/// with `through_pointer` false, whose storage) `object` locates.
fn member_location(
    object: &VariableLocation,
    encoding: gimli::Encoding,
    through_pointer: bool,
    offset: u64,
) -> VariableLocation {
    let expression = match object {
        VariableLocation::Expression(expression) => expression,
        VariableLocation::OptimizedOut => return VariableLocation::OptimizedOut,
        VariableLocation::Constant(_) => {
            return VariableLocation::Unsupported(LocationProblem::ClosureObjectConstant);
        }
        VariableLocation::Unsupported(reason) => {
            return VariableLocation::Unsupported(reason.clone());
        }
    };
    let unsupported = |shape: ClosureObjectShape| {
        VariableLocation::Unsupported(LocationProblem::ClosureObject(shape))
    };
    let Ok(bytes) = expression.0.to_slice() else {
        return unsupported(ClosureObjectShape::Unreadable);
    };
    let mut operations = expression.clone().operations(encoding);
    let mut ops = Vec::new();
    loop {
        match operations.next() {
            Ok(Some(op)) => ops.push(op),
            Ok(None) => break,
            Err(_) => return unsupported(ClosureObjectShape::Unreadable),
        }
    }
    let mut out: Vec<u8> = Vec::with_capacity(bytes.len() + 12);
    if ops
        .iter()
        .any(|op| matches!(op, gimli::Operation::Piece { .. }))
    {
        return unsupported(ClosureObjectShape::Pieces);
    }
    if ops.iter().any(|op| {
        matches!(
            op,
            gimli::Operation::ImplicitPointer { .. } | gimli::Operation::ImplicitValue { .. }
        )
    }) {
        return unsupported(ClosureObjectShape::OptimizedIntoUses);
    }
    match ops.as_slice() {
        // The pointer is in a register: its value is the object's address.
        [gimli::Operation::Register { register }] if through_pointer => {
            out.push(constants::DW_OP_bregx.0);
            push_uleb(&mut out, u64::from(register.0));
            out.push(0); // SLEB 0
        }
        [gimli::Operation::Register { .. }] => {
            return unsupported(ClosureObjectShape::InRegister);
        }
        [.., gimli::Operation::StackValue] if through_pointer => {
            // The expression computes the pointer's value.
            out.extend_from_slice(&bytes[..bytes.len() - 1]);
        }
        [.., gimli::Operation::StackValue] => {
            return unsupported(ClosureObjectShape::Computed);
        }
        _ => {
            out.extend_from_slice(&bytes);
            if through_pointer {
                out.push(constants::DW_OP_deref.0);
            }
        }
    }
    if offset != 0 {
        out.push(constants::DW_OP_plus_uconst.0);
        push_uleb(&mut out, offset);
    }
    VariableLocation::Expression(gimli::Expression(super::bytes::reader(
        super::bytes::SectionBytes::owned(out),
    )))
}

fn push_uleb(out: &mut Vec<u8>, mut value: u64) {
    loop {
        let byte = (value & 0x7f) as u8;
        value >>= 7;
        if value == 0 {
            out.push(byte);
            return;
        }
        out.push(byte | 0x80);
    }
}

/// A variable is shadowed when a later one (deeper block, or declared later
/// in the same block, as Rust's `let x = x;` is) has the same name.
fn mark_shadowed(variables: &mut [ScopeVariable]) {
    let mut last_index: HashMap<&str, usize> = HashMap::new();
    for (i, variable) in variables.iter().enumerate() {
        let better = match last_index.get(variable.name.as_str()) {
            Some(&previous) => variables[previous].block_depth <= variable.block_depth,
            None => true,
        };
        if better {
            last_index.insert(variable.name.as_str(), i);
        }
    }
    let winners: Vec<usize> = last_index.into_values().collect();
    let mut shadowed = vec![true; variables.len()];
    for i in winners {
        shadowed[i] = false;
    }
    for (variable, hidden) in variables.iter_mut().zip(shadowed) {
        variable.shadowed = hidden;
    }
}

/// The subprogram containing a pc, its frame base there, the chain of
/// scopes down to the pc, and the DIEs (functions and blocks) that enclose
/// the subprogram's own DIE, outermost first.
struct Found {
    subprogram: usize,
    frame_base: VariableLocation,
    levels: Vec<ScopeLevel>,
    enclosing: Vec<usize>,
}

#[allow(clippy::too_many_arguments)]
fn find_subprogram(
    module: &Module,
    types: &mut TypeTable,
    unit: &Arc<gimli::Unit<DwarfReader>>,
    unit_ref: gimli::UnitRef<'_, DwarfReader>,
    node: gimli::EntriesTreeNode<'_, '_, DwarfReader>,
    pc: u64,
    path: &mut Vec<(usize, bool)>,
    found: &mut Option<Found>,
) -> Result<(), ScopeError> {
    if path.len() > MAX_TREE_DEPTH {
        return Ok(());
    }
    let mut children = node.children();
    while let Some(child) = children
        .next()
        .map_err(|e| ScopeError::Malformed(e.to_string()))?
    {
        let entry = child.entry();
        match entry.tag() {
            constants::DW_TAG_subprogram if contains_pc(unit_ref, entry, pc, false) => {
                let frame_base = location_at(unit_ref, entry, constants::DW_AT_frame_base, pc);
                let offset = entry.offset().0;
                let function = die_name(module, types, unit, entry);
                let mut levels = Vec::new();
                collect_levels(
                    module,
                    types,
                    unit,
                    unit_ref,
                    child,
                    pc,
                    true,
                    function,
                    0,
                    &mut levels,
                )?;
                *found = Some(Found {
                    subprogram: offset,
                    frame_base,
                    levels,
                    enclosing: enclosing_scopes(path),
                });
            }
            // A function can be defined inside another DIE of any of these
            // kinds, whatever that DIE's own addresses: Rust closures inside
            // a namespace named after their function, GNU C nested functions
            // inside their parent, C++ lambdas' `operator()` (gcc) and local
            // classes' methods inside a class inside a block of the function
            // that defines them.
            constants::DW_TAG_subprogram
            | constants::DW_TAG_lexical_block
            | constants::DW_TAG_namespace
            | constants::DW_TAG_module
            | constants::DW_TAG_structure_type
            | constants::DW_TAG_class_type
            | constants::DW_TAG_union_type
            | constants::DW_TAG_interface_type
                if entry.has_children() =>
            {
                let is_scope = matches!(
                    entry.tag(),
                    constants::DW_TAG_subprogram | constants::DW_TAG_lexical_block
                );
                path.push((entry.offset().0, is_scope));
                let result = find_subprogram(module, types, unit, unit_ref, child, pc, path, found);
                path.pop();
                result?;
            }
            _ => {}
        }
        if found.is_some() {
            return Ok(());
        }
    }
    Ok(())
}

/// The functions and blocks on `path` (DIE offset, whether it is a function
/// or block) from the innermost enclosing function down: the scopes a nested
/// function sees through its static link.
fn enclosing_scopes(path: &[(usize, bool)]) -> Vec<usize> {
    // A class between the nested function and its parent (a C++ local class)
    // ends the chain: its methods have no static link.
    let inner: Vec<usize> = path
        .iter()
        .rev()
        .take_while(|(_, is_scope)| *is_scope)
        .map(|(offset, _)| *offset)
        .collect();
    inner.into_iter().rev().collect()
}

/// The variables of the scopes enclosing a GNU C nested function (its
/// parent function and the parent's blocks around it), located through the
/// nested function's `DW_AT_static_link`, which computes the parent's frame
/// base. Only variables addressed from the frame base are reachable so.
fn static_link_variables(
    module: &Module,
    types: &mut TypeTable,
    unit: &Arc<gimli::Unit<DwarfReader>>,
    static_link: &LocationExpression,
    enclosing: &[usize],
) -> Vec<ScopeVariable> {
    let mut variables = Vec::new();
    let Ok(link) = static_link.0.to_slice() else {
        return variables;
    };
    let encoding = unit.encoding();
    let Some(dwarf) = module.dwarf_of(unit) else {
        return variables;
    };
    let unit_ref = unit.unit_ref(dwarf);
    for offset in enclosing {
        let Ok(mut tree) = unit.entries_tree(Some(gimli::UnitOffset(*offset))) else {
            continue;
        };
        let Ok(root) = tree.root() else { continue };
        let mut children = root.children();
        while let Ok(Some(child)) = children.next() {
            let entry = child.entry();
            let tag = entry.tag();
            if !matches!(
                tag,
                constants::DW_TAG_variable | constants::DW_TAG_formal_parameter
            ) || flag(entry, constants::DW_AT_declaration)
            {
                continue;
            }
            let Some(name) = die_name(module, types, unit, entry) else {
                continue;
            };
            let ty = die_type(module, types, unit, entry);
            let location = match location_at(unit_ref, entry, constants::DW_AT_location, 0) {
                VariableLocation::Expression(expression) => {
                    through_static_link(&link, &expression, encoding)
                }
                other => other,
            };
            variables.push(ScopeVariable {
                name,
                ty,
                is_parameter: false,
                artificial: false,
                capture: false,
                shadowed: false,
                block_depth: 0,
                location,
                // The parent's frame is at another line: no claim about
                // its declarations' order is made here.
                decl_line: None,
                decl_file: None,
                in_innermost_block: false,
                block_start: None,
            });
        }
    }
    variables
}

/// `expression` (a parent's variable) with its leading `DW_OP_fbreg N`
/// replaced by `link` (the parent's frame base) `+ N`.
fn through_static_link(
    link: &[u8],
    expression: &LocationExpression,
    encoding: gimli::Encoding,
) -> VariableLocation {
    let mut rest = expression.0.clone();
    let Ok(gimli::Operation::FrameOffset { offset }) = gimli::Operation::parse(&mut rest, encoding)
    else {
        return VariableLocation::Unsupported(LocationProblem::ParentVariableNotInFrame);
    };
    let Ok(rest) = rest.to_slice() else {
        return VariableLocation::Unsupported(LocationProblem::UnreadableExpression);
    };
    let mut out = link.to_vec();
    out.push(constants::DW_OP_consts.0);
    push_sleb(&mut out, offset);
    out.push(constants::DW_OP_plus.0);
    out.extend_from_slice(&rest);
    VariableLocation::Expression(gimli::Expression(super::bytes::reader(
        super::bytes::SectionBytes::owned(out),
    )))
}

fn push_sleb(out: &mut Vec<u8>, mut value: i64) {
    loop {
        let byte = (value & 0x7f) as u8;
        value >>= 7;
        let done = (value == 0 && byte & 0x40 == 0) || (value == -1 && byte & 0x40 != 0);
        if done {
            out.push(byte);
            return;
        }
        out.push(byte | 0x80);
    }
}

#[allow(clippy::too_many_arguments)]
fn collect_levels(
    module: &Module,
    types: &mut TypeTable,
    unit: &Arc<gimli::Unit<DwarfReader>>,
    unit_ref: gimli::UnitRef<'_, DwarfReader>,
    node: gimli::EntriesTreeNode<'_, '_, DwarfReader>,
    pc: u64,
    starts_frame: bool,
    function: Option<String>,
    depth: usize,
    levels: &mut Vec<ScopeLevel>,
) -> Result<(), ScopeError> {
    let level_index = levels.len();
    levels.push(ScopeLevel {
        starts_frame,
        function,
        start: lowest_pc(unit_ref, node.entry()),
        variables: Vec::new(),
    });
    if depth > MAX_TREE_DEPTH {
        return Ok(());
    }
    let mut descended = false;
    let mut children = node.children();
    while let Some(child) = children
        .next()
        .map_err(|e| ScopeError::Malformed(e.to_string()))?
    {
        let entry = child.entry();
        match entry.tag() {
            tag @ (constants::DW_TAG_formal_parameter | constants::DW_TAG_variable) => {
                if flag(entry, constants::DW_AT_declaration) {
                    continue;
                }
                let Some(name) = die_name(module, types, unit, entry) else {
                    continue;
                };
                let ty = die_type(module, types, unit, entry);
                let location = location_at(unit_ref, entry, constants::DW_AT_location, pc);
                let artificial = flag(entry, constants::DW_AT_artificial);
                levels[level_index].variables.push(ScopeVariable {
                    name,
                    ty,
                    is_parameter: tag == constants::DW_TAG_formal_parameter,
                    artificial,
                    capture: false,
                    shadowed: false,
                    block_depth: 0,
                    location,
                    decl_line: entry
                        .attr_value(constants::DW_AT_decl_line)
                        .and_then(|v| v.udata_value()),
                    decl_file: match entry.attr_value(constants::DW_AT_decl_file) {
                        Some(AttributeValue::FileIndex(index)) => Some(index),
                        other => other.and_then(|v| v.udata_value()),
                    },
                    in_innermost_block: false,
                    block_start: None,
                });
            }
            constants::DW_TAG_lexical_block
                if !descended && contains_pc(unit_ref, entry, pc, true) && entry.has_children() =>
            {
                // A block without addresses does not rule out its siblings
                // (the symbolizer's chain looks on past it too).
                descended = entry.has_attr(constants::DW_AT_low_pc)
                    || entry.has_attr(constants::DW_AT_ranges);
                collect_levels(
                    module,
                    types,
                    unit,
                    unit_ref,
                    child,
                    pc,
                    false,
                    None,
                    depth + 1,
                    levels,
                )?;
            }
            constants::DW_TAG_inlined_subroutine
                if !descended && contains_pc(unit_ref, entry, pc, false) =>
            {
                descended = true;
                let function = die_name(module, types, unit, entry);
                collect_levels(
                    module,
                    types,
                    unit,
                    unit_ref,
                    child,
                    pc,
                    true,
                    function,
                    depth + 1,
                    levels,
                )?;
            }
            _ => {}
        }
    }
    Ok(())
}

/// A global or static variable known to the debug info.
#[derive(Clone, Debug)]
pub struct GlobalVariable {
    /// Qualified name (`ns::Class::member`, `my_crate::COUNTER`,
    /// `function::local_static`); plain for C globals.
    pub name: String,
    /// `.debug_info` offset of its unit.
    pub unit: usize,
    /// The unit's language.
    pub language: Language,
    /// Its type.
    pub ty: Option<TypeKey>,
    /// Its location expression (usually `DW_OP_addr`; thread-locals use TLS
    /// operations).
    pub location: VariableLocation,
    /// Its file address, when the location is a plain `DW_OP_addr`.
    pub address: Option<FileAddr>,
    /// Its size in bytes, when known from the type.
    pub size: Option<u64>,
    /// True for a `static` inside a function (`function::name`): found by
    /// a bare name only from inside that function's frame.
    pub in_function: bool,
}

/// The global and static variables of one module, by name and by address.
/// Built once per module on first use (see [`GlobalIndex::of`]).
#[derive(Debug, Default)]
pub struct GlobalIndex {
    globals: Vec<GlobalVariable>,
    by_address: Vec<(u64, usize)>,
}

/// Most globals indexed per module; a binary with more keeps the first ones
/// (the rest are still reachable through pointers and their own units).
const MAX_GLOBALS: usize = 2_000_000;

/// One module's index, built at most once: the slot is made under the
/// registry's lock, the index is built outside it.
type IndexSlot = Arc<OnceLock<Arc<GlobalIndex>>>;

/// The slot of `module`'s index, made empty on first use. The registry
/// (per module, held weakly, so that a detached target's index goes away
/// with its modules) is locked only for this look-up: a build (seconds for
/// a big library) must not hold up readers of other modules' indexes (a
/// probe's hit naming a pointer asks [`GlobalIndex::if_built`]).
fn index_slot(module: &Arc<Module>) -> IndexSlot {
    static REGISTRY: OnceLock<PerModule<IndexSlot>> = OnceLock::new();
    REGISTRY.get_or_init(PerModule::default).get(module)
}

impl GlobalIndex {
    /// The index of `module`, built on first use and shared afterwards.
    /// Callers asking for the same module while it is built wait for it;
    /// no one else does.
    pub fn of(module: &Arc<Module>) -> Arc<GlobalIndex> {
        index_slot(module)
            .get_or_init(|| Arc::new(GlobalIndex::build(module)))
            .clone()
    }

    /// The index of `module` if it has been built already (never builds,
    /// never waits for a build: for callers on a hot path).
    pub fn if_built(module: &Arc<Module>) -> Option<Arc<GlobalIndex>> {
        index_slot(module).get().cloned()
    }

    /// Walks every unit of `module` for variables with a static location.
    pub fn build(module: &Module) -> GlobalIndex {
        let mut index = GlobalIndex::default();
        let Some(dwarf) = module.dwarf() else {
            return index;
        };
        let mut types = TypeTable::new();
        let mut headers = dwarf.units();
        while let Ok(Some(header)) = headers.next() {
            let Some(offset) = header.debug_info_offset() else {
                continue;
            };
            let Some(unit) = module.unit_at(offset) else {
                continue;
            };
            let language = unit_language(&unit);
            let Some(unit_dwarf) = module.dwarf_for(offset.0) else {
                continue;
            };
            let unit_ref = unit.unit_ref(unit_dwarf);
            let Ok(mut tree) = unit.entries_tree(None) else {
                continue;
            };
            let Ok(root) = tree.root() else { continue };
            let mut declarations = HashMap::new();
            let mut definitions = Vec::new();
            let mut path = Vec::new();
            walk_globals(
                &GlobalWalk {
                    module,
                    unit: &unit,
                    unit_ref,
                },
                &mut types,
                root,
                &mut path,
                0,
                &mut declarations,
                &mut definitions,
                false,
            );
            for definition in definitions {
                let name = match definition.specification.and_then(|s| declarations.get(&s)) {
                    Some(qualified) => qualified.clone(),
                    None => definition.name,
                };
                let Ok(entry) = unit.entry(gimli::UnitOffset(definition.entry)) else {
                    continue;
                };
                let ty = die_type(module, &mut types, &unit, &entry);
                let location = location_at(unit_ref, &entry, constants::DW_AT_location, 0);
                let address = match &location {
                    VariableLocation::Expression(expression) => {
                        static_address(unit_ref, expression)
                    }
                    _ => None,
                };
                let size = ty.and_then(|ty| types.size_of(module, ty));
                if index.globals.len() >= MAX_GLOBALS {
                    break;
                }
                index.globals.push(GlobalVariable {
                    name,
                    unit: offset.0,
                    language,
                    ty,
                    location,
                    address,
                    size,
                    in_function: definition.in_function,
                });
            }
        }
        index.by_address = index
            .globals
            .iter()
            .enumerate()
            .filter_map(|(i, g)| g.address.map(|a| (a.0, i)))
            .collect();
        index.by_address.sort_unstable();
        index
    }

    /// Globals whose qualified name ends with `segments` (`["COUNTER"]`
    /// matches `my_crate::COUNTER`); an exact match of the whole path first.
    pub fn lookup(&self, segments: &[String]) -> Vec<&GlobalVariable> {
        let wanted = segments.join("::");
        let suffix = format!("::{wanted}");
        let mut exact: Vec<&GlobalVariable> =
            self.globals.iter().filter(|g| g.name == wanted).collect();
        if exact.is_empty() {
            // `COUNTER` finds `my_crate::COUNTER`; a function's static needs
            // at least `function::name` (otherwise every `count` in libc
            // would answer).
            exact = self
                .globals
                .iter()
                .filter(|g| g.name.ends_with(&suffix) && (!g.in_function || segments.len() > 1))
                .collect();
        }
        exact
    }

    /// The global containing file address `address`, and the offset into it.
    pub fn containing(&self, address: FileAddr) -> Option<(&GlobalVariable, u64)> {
        let i = self
            .by_address
            .partition_point(|(a, _)| *a <= address.0)
            .checked_sub(1)?;
        let (start, index) = self.by_address[i];
        let global = self.globals.get(index)?;
        let offset = address.0 - start;
        if offset < global.size.unwrap_or(1).max(1) {
            Some((global, offset))
        } else {
            None
        }
    }

    /// All global names (for "did you mean" suggestions).
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.globals.iter().map(|g| g.name.as_str())
    }
}

struct GlobalWalk<'a, 'u> {
    module: &'a Module,
    unit: &'a Arc<gimli::Unit<DwarfReader>>,
    unit_ref: gimli::UnitRef<'u, DwarfReader>,
}

/// Collects, in one unit: declarations inside namespaces/classes (for the
/// qualified names of out-of-class definitions) and definitions with a
/// location (name, specification offset, DIE offset).
/// A global's definition found in a unit, before its name is qualified
/// through its specification.
struct GlobalDefinition {
    name: String,
    specification: Option<usize>,
    entry: usize,
    in_function: bool,
}

#[allow(clippy::too_many_arguments)]
fn walk_globals(
    walk: &GlobalWalk<'_, '_>,
    types: &mut TypeTable,
    node: gimli::EntriesTreeNode<'_, '_, DwarfReader>,
    path: &mut Vec<String>,
    depth: usize,
    declarations: &mut HashMap<usize, String>,
    definitions: &mut Vec<GlobalDefinition>,
    in_function: bool,
) {
    if depth > MAX_TREE_DEPTH {
        return;
    }
    let mut children = node.children();
    while let Ok(Some(child)) = children.next() {
        let entry = child.entry();
        let own_name = || {
            let value = entry.attr_value(constants::DW_AT_name)?;
            let text = walk.unit_ref.attr_string(value).ok()?;
            text.to_string_lossy().ok().map(|s| s.into_owned())
        };
        match entry.tag() {
            constants::DW_TAG_variable | constants::DW_TAG_member => {
                let name = own_name();
                if flag(entry, constants::DW_AT_declaration)
                    || entry.tag() == constants::DW_TAG_member
                {
                    if let Some(name) = name {
                        let mut qualified = path.clone();
                        qualified.push(name);
                        declarations.insert(entry.offset().0, qualified.join("::"));
                    }
                    continue;
                }
                if !entry.has_attr(constants::DW_AT_location) {
                    continue;
                }
                let spec = match entry.attr_value(constants::DW_AT_specification) {
                    Some(AttributeValue::UnitRef(offset)) => Some(offset.0),
                    _ => None,
                };
                let name = name.or_else(|| die_name(walk.module, types, walk.unit, entry));
                if let Some(name) = name {
                    let mut qualified = path.clone();
                    qualified.push(name);
                    definitions.push(GlobalDefinition {
                        name: qualified.join("::"),
                        specification: spec,
                        entry: entry.offset().0,
                        in_function,
                    });
                }
            }
            constants::DW_TAG_namespace
            | constants::DW_TAG_module
            | constants::DW_TAG_structure_type
            | constants::DW_TAG_class_type
            | constants::DW_TAG_union_type
            | constants::DW_TAG_subprogram
            | constants::DW_TAG_lexical_block => {
                if !entry.has_children() {
                    continue;
                }
                let name = own_name().or_else(|| {
                    if entry.tag() == constants::DW_TAG_subprogram {
                        die_name(walk.module, types, walk.unit, entry)
                    } else {
                        None
                    }
                });
                let pushed = match name {
                    Some(name) if entry.tag() != constants::DW_TAG_lexical_block => {
                        path.push(name);
                        true
                    }
                    _ => false,
                };
                let inside = in_function || entry.tag() == constants::DW_TAG_subprogram;
                walk_globals(
                    walk,
                    types,
                    child,
                    path,
                    depth + 1,
                    declarations,
                    definitions,
                    inside,
                );
                if pushed {
                    path.pop();
                }
            }
            _ => {}
        }
    }
}

/// The address of a location expression that is exactly `DW_OP_addr A` (or
/// `DW_OP_addrx i`).
fn static_address(
    unit_ref: gimli::UnitRef<'_, DwarfReader>,
    expression: &LocationExpression,
) -> Option<FileAddr> {
    let mut operations = expression.clone().operations(unit_ref.unit.encoding());
    let first = operations.next().ok()??;
    if operations.next().ok()?.is_some() {
        return None;
    }
    match first {
        gimli::Operation::Address { address } => Some(FileAddr(address)),
        gimli::Operation::AddressIndex { index } => unit_ref.address(index).ok().map(FileAddr),
        _ => None,
    }
}

/// One function of the chain of calls at a pc, outermost (the out-of-line
/// subprogram) first: its DIE, and where its caller called it (for an
/// inlined call).
#[derive(Clone, Debug)]
pub(crate) struct ChainLevel {
    /// The subprogram's or inlined subroutine's DIE offset in its unit.
    pub(crate) entry: usize,
    /// `DW_AT_call_file` (an index into the unit's line program) of an
    /// inlined call.
    pub(crate) call_file: Option<u64>,
    /// `DW_AT_call_line` of an inlined call.
    pub(crate) call_line: Option<u32>,
    /// `DW_AT_call_column` of an inlined call.
    pub(crate) call_column: Option<u32>,
}

/// The subprogram containing `pc` in `unit` and the inlined calls inside it
/// that contain `pc` (whatever form their addresses take: low/high pc,
/// `.debug_ranges`, `.debug_rnglists`, `DW_FORM_rnglistx`), outermost first.
/// Reads no variable: cheap enough to symbolize every frame of a stack.
pub(crate) fn inline_chain(
    module: &Module,
    unit: &Arc<gimli::Unit<DwarfReader>>,
    pc: u64,
) -> Option<Vec<ChainLevel>> {
    let dwarf = module.dwarf_of(unit)?;
    let unit_ref = unit.unit_ref(dwarf);
    let mut chain = Vec::new();
    if let Some(offset) = subprogram_at(module, unit, pc) {
        let mut tree = unit.entries_tree(Some(gimli::UnitOffset(offset))).ok()?;
        let node = tree.root().ok()?;
        chain.push(ChainLevel {
            entry: offset,
            call_file: None,
            call_line: None,
            call_column: None,
        });
        inlined_in(unit_ref, node, pc, 1, &mut chain);
        return Some(chain);
    }
    let mut tree = unit.entries_tree(None).ok()?;
    let root = tree.root().ok()?;
    if chain_in(unit_ref, root, pc, 0, &mut chain) {
        Some(chain)
    } else {
        None
    }
}

/// The DIE offset of the subprogram whose code holds `pc` in `unit`, from
/// the unit's function index (built on first use, one walk of the unit).
pub(crate) fn subprogram_at(
    module: &Module,
    unit: &Arc<gimli::Unit<DwarfReader>>,
    pc: u64,
) -> Option<usize> {
    let key = unit_key(unit)?;
    let cached = module
        .function_ranges
        .lock()
        .ok()
        .and_then(|cache| cache.get(&key).cloned());
    let ranges = match cached {
        Some(ranges) => ranges,
        None => {
            let built = Arc::new(FunctionRanges::build(module, unit));
            if let Ok(mut cache) = module.function_ranges.lock() {
                if cache.len() >= FUNCTION_RANGE_CACHE_LIMIT {
                    cache.clear();
                }
                cache.insert(key, built.clone());
            }
            built
        }
    };
    ranges.lookup(pc)
}

/// Finds the subprogram containing `pc` below `node` (as `find_subprogram`
/// does) and fills `chain` from it; true when found.
fn chain_in(
    unit_ref: gimli::UnitRef<'_, DwarfReader>,
    node: gimli::EntriesTreeNode<'_, '_, DwarfReader>,
    pc: u64,
    depth: usize,
    chain: &mut Vec<ChainLevel>,
) -> bool {
    if depth > MAX_TREE_DEPTH {
        return false;
    }
    let mut children = node.children();
    while let Ok(Some(child)) = children.next() {
        let entry = child.entry();
        match entry.tag() {
            constants::DW_TAG_subprogram if contains_pc(unit_ref, entry, pc, false) => {
                chain.push(ChainLevel {
                    entry: entry.offset().0,
                    call_file: None,
                    call_line: None,
                    call_column: None,
                });
                inlined_in(unit_ref, child, pc, depth + 1, chain);
                return true;
            }
            constants::DW_TAG_subprogram
            | constants::DW_TAG_lexical_block
            | constants::DW_TAG_namespace
            | constants::DW_TAG_module
            | constants::DW_TAG_structure_type
            | constants::DW_TAG_class_type
            | constants::DW_TAG_union_type
            | constants::DW_TAG_interface_type
                if entry.has_children() =>
            {
                // Not a match guard: the node is moved into the call.
                let found = chain_in(unit_ref, child, pc, depth + 1, chain);
                if found {
                    return true;
                }
            }
            _ => {}
        }
    }
    false
}

fn inlined_in(
    unit_ref: gimli::UnitRef<'_, DwarfReader>,
    node: gimli::EntriesTreeNode<'_, '_, DwarfReader>,
    pc: u64,
    depth: usize,
    chain: &mut Vec<ChainLevel>,
) {
    if depth > MAX_TREE_DEPTH {
        return;
    }
    let mut children = node.children();
    while let Ok(Some(child)) = children.next() {
        let entry = child.entry();
        match entry.tag() {
            constants::DW_TAG_lexical_block
                if entry.has_children() && contains_pc(unit_ref, entry, pc, true) =>
            {
                // A block without addresses holds the pc only if something inside it does.
                let ranged = entry.has_attr(constants::DW_AT_low_pc)
                    || entry.has_attr(constants::DW_AT_ranges);
                let before = chain.len();
                inlined_in(unit_ref, child, pc, depth + 1, chain);
                if ranged || chain.len() > before {
                    return;
                }
            }
            constants::DW_TAG_inlined_subroutine if contains_pc(unit_ref, entry, pc, false) => {
                let number = |name| match entry.attr_value(name) {
                    Some(AttributeValue::FileIndex(index)) => Some(index),
                    Some(value) => value.udata_value(),
                    None => None,
                };
                chain.push(ChainLevel {
                    entry: entry.offset().0,
                    call_file: number(constants::DW_AT_call_file),
                    call_line: number(constants::DW_AT_call_line).map(|l| l as u32),
                    call_column: number(constants::DW_AT_call_column).map(|c| c as u32),
                });
                inlined_in(unit_ref, child, pc, depth + 1, chain);
                return;
            }
            _ => {}
        }
    }
}

/// The DIE that names `entry` (itself, or where its `DW_AT_abstract_origin`
/// and `DW_AT_specification` lead, across units), with its unit.
pub(crate) fn naming_die(
    module: &Module,
    types: &mut TypeTable,
    unit: &Arc<gimli::Unit<DwarfReader>>,
    entry: usize,
) -> Option<(Arc<gimli::Unit<DwarfReader>>, usize)> {
    let mut current_unit = unit.clone();
    let mut current = entry;
    for _ in 0..MAX_ORIGIN_HOPS {
        let die = current_unit.entry(gimli::UnitOffset(current)).ok()?;
        if die.has_attr(constants::DW_AT_name) {
            return Some((current_unit, current));
        }
        let origin = die
            .attr_value(constants::DW_AT_abstract_origin)
            .or_else(|| die.attr_value(constants::DW_AT_specification))?;
        let key = types.reference(module, &current_unit, origin)?;
        if Some(key.unit) != unit_key(&current_unit) {
            current_unit = module.unit_at(gimli::DebugInfoOffset(key.unit))?;
        }
        current = key.entry;
    }
    None
}

/// A function DIE's linkage (mangled) name, through origins and
/// specifications.
pub(crate) fn linkage_name(
    module: &Module,
    types: &mut TypeTable,
    unit: &Arc<gimli::Unit<DwarfReader>>,
    entry: usize,
) -> Option<String> {
    let dwarf = module.dwarf_of(unit)?;
    let die = unit.entry(gimli::UnitOffset(entry)).ok()?;
    let (name_unit, value) =
        inherited_attr(module, types, unit, &die, constants::DW_AT_linkage_name).or_else(|| {
            inherited_attr(
                module,
                types,
                unit,
                &die,
                constants::DW_AT_MIPS_linkage_name,
            )
        })?;
    let text = name_unit.unit_ref(dwarf).attr_string(value).ok()?;
    text.to_string_lossy().ok().map(|s| s.into_owned())
}

/// A DIE's own `DW_AT_name`.
pub(crate) fn own_name(
    module: &Module,
    unit: &gimli::Unit<DwarfReader>,
    entry: usize,
) -> Option<String> {
    let dwarf = module.dwarf_of(unit)?;
    let die = unit.entry(gimli::UnitOffset(entry)).ok()?;
    let value = die.attr_value(constants::DW_AT_name)?;
    let text = unit.unit_ref(dwarf).attr_string(value).ok()?;
    text.to_string_lossy().ok().map(|s| s.into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A module's index is built once, by `of`; `if_built` never builds,
    /// and a module's index goes away with it.
    #[test]
    fn a_global_index_is_built_once_and_only_by_of() {
        let program = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/recordings/c_values_O0/program");
        let module = Arc::new(Module::open_file(&program, 0x1000).expect("program"));
        assert!(GlobalIndex::if_built(&module).is_none());
        let built = GlobalIndex::of(&module);
        assert!(built.names().count() > 0, "the fixture has globals");
        let again = GlobalIndex::if_built(&module).expect("built");
        assert!(Arc::ptr_eq(&built, &again));
        assert!(Arc::ptr_eq(&built, &GlobalIndex::of(&module)));
        let weak = Arc::downgrade(&module);
        drop(module);
        assert!(
            weak.upgrade().is_none(),
            "the registry does not keep the module"
        );
    }

    #[test]
    fn leb128_encodings() {
        let mut out = Vec::new();
        push_uleb(&mut out, 624_485);
        assert_eq!(out, [0xe5, 0x8e, 0x26]);
        out.clear();
        push_sleb(&mut out, -123_456);
        assert_eq!(out, [0xc0, 0xbb, 0x78]);
        out.clear();
        push_sleb(&mut out, -40);
        assert_eq!(out, [0x58]);
        out.clear();
        push_sleb(&mut out, 64);
        assert_eq!(out, [0xc0, 0x00]);
    }

    fn expression(bytes: &[u8]) -> VariableLocation {
        VariableLocation::Expression(gimli::Expression(super::super::bytes::reader(
            super::super::bytes::SectionBytes::owned(bytes.to_vec()),
        )))
    }

    fn bytes_of(location: &VariableLocation) -> Vec<u8> {
        match location {
            VariableLocation::Expression(e) => e.0.to_slice().expect("bytes").into_owned(),
            other => panic!("not an expression: {other:?}"),
        }
    }

    const ENCODING: gimli::Encoding = gimli::Encoding {
        format: gimli::Format::Dwarf32,
        version: 5,
        address_size: 8,
    };

    #[test]
    fn captures_are_located_through_the_closure_object() {
        // `this` in memory at fbreg -8 (clang -O0): load it, add the member's offset.
        let at = member_location(&expression(&[0x91, 0x78]), ENCODING, true, 16);
        assert_eq!(bytes_of(&at), [0x91, 0x78, 0x06, 0x23, 0x10]);
        // `this` in rdi (reg5): its value is the object's address.
        let at = member_location(&expression(&[0x55]), ENCODING, true, 8);
        assert_eq!(bytes_of(&at), [0x92, 0x05, 0x00, 0x23, 0x08]);
        // A computed pointer value: the value is the address.
        let at = member_location(&expression(&[0x75, 0x10, 0x9f]), ENCODING, true, 0);
        assert_eq!(bytes_of(&at), [0x75, 0x10]);
        // The closure object itself in memory (a Rust env by value).
        let at = member_location(&expression(&[0x91, 0x20]), ENCODING, false, 4);
        assert_eq!(bytes_of(&at), [0x91, 0x20, 0x23, 0x04]);
        // Split in pieces or held in a register by value: said, not guessed.
        let pieces = member_location(&expression(&[0x50, 0x93, 0x08]), ENCODING, true, 0);
        assert!(
            matches!(
                pieces,
                VariableLocation::Unsupported(LocationProblem::ClosureObject(
                    ClosureObjectShape::Pieces
                ))
            ),
            "{pieces:?}"
        );
        let implicit = member_location(
            &expression(&[0xa0, 0x10, 0x00, 0x00, 0x00, 0x00]),
            ENCODING,
            true,
            0,
        );
        assert!(
            matches!(
                implicit,
                VariableLocation::Unsupported(LocationProblem::ClosureObject(
                    ClosureObjectShape::OptimizedIntoUses
                ))
            ),
            "{implicit:?}"
        );
        let by_value = member_location(&expression(&[0x50]), ENCODING, false, 0);
        assert!(
            matches!(
                by_value,
                VariableLocation::Unsupported(LocationProblem::ClosureObject(
                    ClosureObjectShape::InRegister
                ))
            ),
            "{by_value:?}"
        );
        assert!(matches!(
            member_location(&VariableLocation::OptimizedOut, ENCODING, true, 0),
            VariableLocation::OptimizedOut
        ));
    }

    #[test]
    fn parent_variables_through_the_static_link() {
        // Static link: fbreg -48; deref; plus_uconst 32; deref (gcc). Parent's `total` at fbreg -20.
        let link = [0x91, 0x50, 0x06, 0x23, 0x20, 0x06];
        let parent = gimli::Expression(super::super::bytes::reader(
            super::super::bytes::SectionBytes::owned(vec![0x91, 0x6c]),
        ));
        let at = through_static_link(&link, &parent, ENCODING);
        assert_eq!(
            bytes_of(&at),
            [0x91, 0x50, 0x06, 0x23, 0x20, 0x06, 0x11, 0x6c, 0x22]
        );
        let in_register = gimli::Expression(super::super::bytes::reader(
            super::super::bytes::SectionBytes::owned(vec![0x53]),
        ));
        assert!(matches!(
            through_static_link(&link, &in_register, ENCODING),
            VariableLocation::Unsupported(LocationProblem::ParentVariableNotInFrame)
        ));
    }
}
