//! Call sites: what a caller recorded passing at one call (`DW_TAG_call_site`
//! of DWARF 5, `DW_TAG_GNU_call_site` of GNU's DWARF 4 extension), the
//! source of `DW_OP_entry_value` operands.
//!
//! Owns finding the call site whose return address is a caller frame's pc,
//! the value expression of one parameter register, and what the site says
//! it calls (a function defined here, a function known by name, or a target
//! computed at run time), so the evaluator can prove the frame it reads was
//! entered from that very site. Never reads target memory or registers.

use gimli::{AttributeValue, Reader, constants};

use super::addr::FileAddr;
use super::bytes::DwarfReader;
use super::module::Module;
use super::scope::{LocationExpression, VariableLocation, frame_scope};
use super::types::TypeTable;

/// Deepest nesting of blocks and inlined calls searched for a call site.
const MAX_DEPTH: usize = 64;

/// What a call site says it calls.
#[derive(Clone, Debug)]
pub enum CallSiteCallee {
    /// A function defined in the caller's module, entered at this file
    /// address (its `DW_AT_low_pc`).
    Defined(FileAddr),
    /// A function known only by name here (a declaration, e.g. a library
    /// function, or an abstract instance): its linkage name first, then its
    /// plain name.
    Named(Vec<String>),
    /// An indirect call: this expression, evaluated in the caller's frame at
    /// the call, is the address called (`DW_AT_call_target`).
    Computed(LocationExpression),
    /// The site does not say.
    Unknown,
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
    /// What the site calls.
    pub callee: CallSiteCallee,
    /// The site is a tail call (a jump): no frame returns to it.
    pub tail_call: bool,
}

/// The value the caller passed in DWARF register `register` at the call
/// that returns to `return_pc` (a file address in `module`), when the
/// compiler recorded it.
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
    let found = find_call_site(unit_ref, root, return_pc.0, register, 0)?;
    Some(CallSiteValue {
        value: found.value,
        unit: scope.subprogram.unit,
        frame_base: scope.frame_base,
        callee: found.callee,
        tail_call: found.tail_call,
    })
}

struct FoundSite {
    value: LocationExpression,
    callee: CallSiteCallee,
    tail_call: bool,
}

fn find_call_site(
    unit_ref: gimli::UnitRef<'_, DwarfReader>,
    node: gimli::EntriesTreeNode<'_, '_, DwarfReader>,
    return_pc: u64,
    register: u16,
    depth: usize,
) -> Option<FoundSite> {
    if depth > MAX_DEPTH {
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
                    let callee = callee_of(unit_ref, entry);
                    let tail_call = is_flag_set(entry, constants::DW_AT_call_tail_call)
                        || is_flag_set(entry, constants::DW_AT_GNU_tail_call);
                    let value = call_site_parameter(unit_ref, child, register)?;
                    return Some(FoundSite {
                        value,
                        callee,
                        tail_call,
                    });
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

fn is_flag_set(
    entry: &gimli::DebuggingInformationEntry<DwarfReader>,
    name: constants::DwAt,
) -> bool {
    matches!(entry.attr_value(name), Some(AttributeValue::Flag(true)))
}

/// What a call site DIE says it calls.
fn callee_of(
    unit_ref: gimli::UnitRef<'_, DwarfReader>,
    site: &gimli::DebuggingInformationEntry<DwarfReader>,
) -> CallSiteCallee {
    let origin = site
        .attr_value(constants::DW_AT_call_origin)
        .or_else(|| site.attr_value(constants::DW_AT_abstract_origin));
    if let Some(AttributeValue::UnitRef(offset)) = origin {
        return callee_named_by(unit_ref, offset);
    }
    if origin.is_some() {
        // A reference into another unit (LTO, DW_FORM_ref_addr): not followed.
        return CallSiteCallee::Unknown;
    }
    let target = site
        .attr_value(constants::DW_AT_call_target)
        .or_else(|| site.attr_value(constants::DW_AT_GNU_call_site_target));
    match target {
        Some(AttributeValue::Exprloc(expression)) => CallSiteCallee::Computed(expression),
        _ => CallSiteCallee::Unknown,
    }
}

/// The function a `DW_AT_call_origin` names: its entry when it is defined
/// right there, else its names (following a declaration's specification or
/// an abstract origin for the names).
fn callee_named_by(
    unit_ref: gimli::UnitRef<'_, DwarfReader>,
    offset: gimli::UnitOffset,
) -> CallSiteCallee {
    let Ok(entry) = unit_ref.entry(offset) else {
        return CallSiteCallee::Unknown;
    };
    if let Some(low_pc) = entry
        .attr_value(constants::DW_AT_low_pc)
        .and_then(|value| unit_ref.attr_address(value).ok().flatten())
    {
        return CallSiteCallee::Defined(FileAddr(low_pc));
    }
    let mut names = Vec::new();
    let mut current = Some(entry);
    // A declaration or abstract instance may carry its names one or two
    // references further (C++ out-of-line members, inlined functions).
    for _ in 0..3 {
        let Some(entry) = current.take() else { break };
        for attribute in [
            constants::DW_AT_linkage_name,
            constants::DW_AT_MIPS_linkage_name,
            constants::DW_AT_name,
        ] {
            if let Some(value) = entry.attr_value(attribute)
                && let Ok(text) = unit_ref.attr_string(value)
                && let Ok(text) = text.to_string_lossy()
                && !names.iter().any(|n: &String| *n == *text)
            {
                names.push(text.into_owned());
            }
        }
        let next = entry
            .attr_value(constants::DW_AT_specification)
            .or_else(|| entry.attr_value(constants::DW_AT_abstract_origin));
        if let Some(AttributeValue::UnitRef(next)) = next {
            current = unit_ref.entry(next).ok();
        }
    }
    if names.is_empty() {
        CallSiteCallee::Unknown
    } else {
        CallSiteCallee::Named(names)
    }
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
