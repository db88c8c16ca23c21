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
use std::sync::{Arc, Mutex, OnceLock, Weak};

use gimli::{AttributeValue, Reader, constants};

use super::addr::FileAddr;
use super::bytes::DwarfReader;
use super::module::Module;
use super::types::{Language, TypeKey, TypeTable, unit_key, unit_language};

/// A DWARF location expression, as stored in the debug info.
pub type LocationExpression = gimli::Expression<DwarfReader>;

/// Where a variable lives at one pc, before any register or memory is read.
#[derive(Clone, Debug)]
pub enum VariableLocation {
    /// Evaluate this expression (with the unit's encoding).
    Expression(LocationExpression),
    /// The value is a constant baked into the debug info, as little-endian
    /// bytes (numbers are sign- or zero-extended to 8 bytes).
    Constant(Vec<u8>),
    /// The compiler kept no location for this pc.
    OptimizedOut,
    /// The debug info describes the location in a way liveprobe cannot use.
    Unsupported(String),
}

/// One argument or local variable visible at a pc.
#[derive(Clone, Debug)]
pub struct ScopeVariable {
    /// The name as written in the source.
    pub name: String,
    /// Its type.
    pub ty: Option<TypeKey>,
    /// True for a function argument.
    pub is_parameter: bool,
    /// True for a compiler-made variable (`this`, closures' environments).
    pub artificial: bool,
    /// True when an inner variable with the same name hides this one.
    pub shadowed: bool,
    /// How far in the variable's block is: 0 = the function itself.
    pub block_depth: usize,
    /// Where it lives at this pc.
    pub location: VariableLocation,
}

/// Everything about one source-level frame at a pc that needs no register:
/// the function, its frame base, and the variables in scope.
#[derive(Clone, Debug)]
pub struct FrameScope {
    /// The function's name (the inlined callee's, for an inlined frame).
    pub function: String,
    /// `.debug_info` offset of the unit holding the function.
    pub unit: usize,
    /// The unit's language.
    pub language: Language,
    /// The concrete (out-of-line) subprogram's DIE, which owns the frame base
    /// and the call sites.
    pub subprogram: TypeKey,
    /// The frame base expression at this pc (`DW_AT_frame_base`).
    pub frame_base: VariableLocation,
    /// Arguments first, then locals from the outermost block inwards; a
    /// shadowed variable stays in the list with `shadowed` set.
    pub variables: Vec<ScopeVariable>,
    /// How many source-level frames share this pc (1 + inlined calls).
    pub inline_frames: usize,
}

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
                        return VariableLocation::Unsupported(format!(
                            "unreadable location list: {error}"
                        ));
                    }
                }
            },
            Ok(None) => {
                VariableLocation::Unsupported("location attribute of an unknown form".to_string())
            }
            Err(error) => {
                VariableLocation::Unsupported(format!("unreadable location list: {error}"))
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
                return VariableLocation::Unsupported(format!("unreadable constant: {error}"));
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
                    return VariableLocation::Unsupported(format!("unreadable constant: {error}"));
                }
            },
            Err(_) => {
                return VariableLocation::Unsupported("constant of an unknown form".to_string());
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
    let mut tree = unit
        .entries_tree(None)
        .map_err(|e| ScopeError::Malformed(e.to_string()))?;
    let root = tree
        .root()
        .map_err(|e| ScopeError::Malformed(e.to_string()))?;
    let mut found = None;
    find_subprogram(module, types, &unit, unit_ref, root, pc.0, 0, &mut found)?;
    let Some((subprogram_offset, frame_base, levels)) = found else {
        return Err(ScopeError::NoFunction {
            pc: pc.0,
            module: module_name,
        });
    };
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
    for (depth, level) in frame.into_iter().enumerate() {
        for mut variable in level.variables {
            variable.block_depth = depth;
            if variable.is_parameter {
                parameters.push(variable);
            } else {
                locals.push(variable);
            }
        }
    }
    let mut variables = parameters;
    variables.extend(locals);
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

type Found = Option<(usize, VariableLocation, Vec<ScopeLevel>)>;

#[allow(clippy::too_many_arguments)]
fn find_subprogram(
    module: &Module,
    types: &mut TypeTable,
    unit: &Arc<gimli::Unit<DwarfReader>>,
    unit_ref: gimli::UnitRef<'_, DwarfReader>,
    node: gimli::EntriesTreeNode<'_, '_, DwarfReader>,
    pc: u64,
    depth: usize,
    found: &mut Found,
) -> Result<(), ScopeError> {
    if depth > MAX_TREE_DEPTH {
        return Ok(());
    }
    let mut children = node.children();
    while let Some(child) = children
        .next()
        .map_err(|e| ScopeError::Malformed(e.to_string()))?
    {
        let entry = child.entry();
        match entry.tag() {
            constants::DW_TAG_subprogram => {
                if !contains_pc(unit_ref, entry, pc, false) {
                    // Nested functions (Rust closures live inside namespaces,
                    // C nested functions inside their parent) are found below.
                    if entry.has_children()
                        && !entry.has_attr(constants::DW_AT_low_pc)
                        && !entry.has_attr(constants::DW_AT_ranges)
                    {
                        find_subprogram(
                            module,
                            types,
                            unit,
                            unit_ref,
                            child,
                            pc,
                            depth + 1,
                            found,
                        )?;
                    }
                } else {
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
                    *found = Some((offset, frame_base, levels));
                }
            }
            constants::DW_TAG_namespace
            | constants::DW_TAG_module
            | constants::DW_TAG_structure_type
            | constants::DW_TAG_class_type
            | constants::DW_TAG_union_type
            | constants::DW_TAG_enumeration_type
                if entry.has_children() =>
            {
                find_subprogram(module, types, unit, unit_ref, child, pc, depth + 1, found)?;
            }
            _ => {}
        }
        if found.is_some() {
            return Ok(());
        }
    }
    Ok(())
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
                    shadowed: false,
                    block_depth: 0,
                    location,
                });
            }
            constants::DW_TAG_lexical_block
                if !descended && contains_pc(unit_ref, entry, pc, true) && entry.has_children() =>
            {
                descended = true;
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

type IndexRegistry = Mutex<Vec<(Weak<Module>, Arc<GlobalIndex>)>>;

/// Per-module indexes, held weakly by module so that a detached target's
/// index goes away with its modules.
fn registry() -> &'static IndexRegistry {
    static REGISTRY: OnceLock<IndexRegistry> = OnceLock::new();
    REGISTRY.get_or_init(|| Mutex::new(Vec::new()))
}

impl GlobalIndex {
    /// The index of `module`, built on first use and shared afterwards.
    pub fn of(module: &Arc<Module>) -> Arc<GlobalIndex> {
        let mut registry = match registry().lock() {
            Ok(guard) => guard,
            Err(poisoned) => poisoned.into_inner(),
        };
        registry.retain(|(weak, _)| weak.strong_count() > 0);
        if let Some((_, index)) = registry
            .iter()
            .find(|(weak, _)| std::ptr::eq(weak.as_ptr(), Arc::as_ptr(module)))
        {
            return index.clone();
        }
        let index = Arc::new(GlobalIndex::build(module));
        registry.push((Arc::downgrade(module), index.clone()));
        index
    }

    /// The index of `module` if it has been built already (never builds:
    /// for callers on a hot path).
    pub fn if_built(module: &Arc<Module>) -> Option<Arc<GlobalIndex>> {
        let registry = match registry().lock() {
            Ok(guard) => guard,
            Err(poisoned) => poisoned.into_inner(),
        };
        registry
            .iter()
            .find(|(weak, _)| std::ptr::eq(weak.as_ptr(), Arc::as_ptr(module)))
            .map(|(_, index)| index.clone())
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

/// What a caller passed in one register at one call: the
/// `DW_AT_call_value` of the matching `DW_TAG_call_site_parameter`.
#[derive(Clone, Debug)]
pub struct CallSiteValue {
    /// The expression computing the value, in the caller's frame.
    pub value: LocationExpression,
    /// `.debug_info` offset of the caller's unit.
    pub unit: usize,
    /// The caller's frame base at the call.
    pub frame_base: VariableLocation,
}

/// The value the caller passed in DWARF register `register` at the call
/// that returns to `return_pc` (a file address in `module`), when the
/// compiler recorded it (DWARF 5 `DW_TAG_call_site` or GNU's DWARF 4
/// extension).
pub fn call_site_value(
    module: &Module,
    types: &mut TypeTable,
    return_pc: FileAddr,
    register: u16,
) -> Option<CallSiteValue> {
    let scope = frame_scope(module, types, FileAddr(return_pc.0.checked_sub(1)?), 0).ok()?;
    let dwarf = module.dwarf_for(scope.subprogram.unit)?;
    let unit = module.unit_at(gimli::DebugInfoOffset(scope.subprogram.unit))?;
    let unit_ref = unit.unit_ref(dwarf);
    let mut tree = unit
        .entries_tree(Some(gimli::UnitOffset(scope.subprogram.entry)))
        .ok()?;
    let root = tree.root().ok()?;
    let value = find_call_site(unit_ref, root, return_pc.0, register, 0)?;
    Some(CallSiteValue {
        value,
        unit: scope.subprogram.unit,
        frame_base: scope.frame_base,
    })
}

fn find_call_site(
    unit_ref: gimli::UnitRef<'_, DwarfReader>,
    node: gimli::EntriesTreeNode<'_, '_, DwarfReader>,
    return_pc: u64,
    register: u16,
    depth: usize,
) -> Option<LocationExpression> {
    if depth > MAX_TREE_DEPTH {
        return None;
    }
    let mut children = node.children();
    while let Ok(Some(child)) = children.next() {
        let entry = child.entry();
        match entry.tag() {
            constants::DW_TAG_call_site | constants::DW_TAG_GNU_call_site => {
                let site_pc = entry
                    .attr_value(constants::DW_AT_call_return_pc)
                    .or_else(|| entry.attr_value(constants::DW_AT_low_pc))
                    .and_then(|value| unit_ref.attr_address(value).ok().flatten());
                if site_pc == Some(return_pc) {
                    return call_site_parameter(unit_ref, child, register);
                }
            }
            constants::DW_TAG_lexical_block | constants::DW_TAG_inlined_subroutine
                if entry.has_children() =>
            {
                if let Some(found) = find_call_site(unit_ref, child, return_pc, register, depth + 1)
                {
                    return Some(found);
                }
            }
            _ => {}
        }
    }
    None
}

fn call_site_parameter(
    unit_ref: gimli::UnitRef<'_, DwarfReader>,
    site: gimli::EntriesTreeNode<'_, '_, DwarfReader>,
    register: u16,
) -> Option<LocationExpression> {
    let encoding = unit_ref.unit.encoding();
    let mut children = site.children();
    while let Ok(Some(child)) = children.next() {
        let entry = child.entry();
        if !matches!(
            entry.tag(),
            constants::DW_TAG_call_site_parameter | constants::DW_TAG_GNU_call_site_parameter
        ) {
            continue;
        }
        let Some(AttributeValue::Exprloc(location)) = entry.attr_value(constants::DW_AT_location)
        else {
            continue;
        };
        let mut operations = location.operations(encoding);
        let is_register = matches!(
            operations.next(),
            Ok(Some(gimli::Operation::Register { register: r })) if r.0 == register
        ) && matches!(operations.next(), Ok(None));
        if !is_register {
            continue;
        }
        let value = entry
            .attr_value(constants::DW_AT_call_value)
            .or_else(|| entry.attr_value(constants::DW_AT_GNU_call_site_value));
        if let Some(AttributeValue::Exprloc(value)) = value {
            return Some(value);
        }
    }
    None
}
