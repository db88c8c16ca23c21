//! The namespaces and classes around each function DIE of a unit (`std`, `ns::Class`), as gdb qualifies a
//! function that DWARF names only by `DW_AT_name`: the function-name index (names.rs) and symbolization
//! (symbolize.rs) both qualify names by them, and each module caches them per unit.
//!
//! Reads DIEs of the loaded object only; never target memory.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use gimli::{Reader as _, constants};

use super::bytes::DwarfReader;
use super::object::LoadedObject;

/// Per unit (`.debug_info` offset): function DIE offset -> the namespaces and classes around it.
pub(crate) type QualifierCache = Mutex<HashMap<usize, Arc<HashMap<usize, String>>>>;

/// Most units whose qualifiers are kept per module before the cache starts over.
pub(crate) const QUALIFIER_CACHE_LIMIT: usize = 32;

/// For every subprogram DIE of a unit, the names of the namespaces and
/// classes around it (`std`, `ns::Class`), as gdb qualifies a function
/// DWARF names only by `DW_AT_name`. Stops at an enclosing function: a
/// local class's method is `Scaler::scaled`, as gdb shows it.
pub(crate) fn function_qualifiers(
    object: &LoadedObject,
    unit: &gimli::Unit<DwarfReader>,
) -> HashMap<usize, String> {
    let mut out = HashMap::new();
    let Some(dwarf) = object.dwarf_of(unit) else {
        return out;
    };
    let unit_ref = unit.unit_ref(dwarf);
    let mut entries = unit.entries();
    // (depth, name if a named scope, is a function)
    let mut stack: Vec<(isize, Option<String>, bool)> = Vec::new();
    while let Ok(Some(entry)) = entries.next_dfs() {
        let depth = entry.depth();
        while stack.last().is_some_and(|(d, _, _)| *d >= depth) {
            stack.pop();
        }
        let tag = entry.tag();
        let name = || {
            let value = entry.attr_value(constants::DW_AT_name)?;
            let text = unit_ref.attr_string(value).ok()?;
            text.to_string_lossy().ok().map(|s| s.into_owned())
        };
        match tag {
            constants::DW_TAG_subprogram => {
                let mut parts = Vec::new();
                for (_, name, is_function) in stack.iter().rev() {
                    if *is_function {
                        break;
                    }
                    if let Some(name) = name {
                        parts.push(name.clone());
                    }
                }
                if !parts.is_empty() {
                    parts.reverse();
                    out.insert(entry.offset().0, parts.join("::"));
                }
                if entry.has_children() {
                    stack.push((depth, None, true));
                }
            }
            constants::DW_TAG_namespace
            | constants::DW_TAG_structure_type
            | constants::DW_TAG_class_type
            | constants::DW_TAG_union_type
            | constants::DW_TAG_interface_type
                if entry.has_children() =>
            {
                stack.push((depth, name(), false));
            }
            constants::DW_TAG_lexical_block if entry.has_children() => {
                stack.push((depth, None, true));
            }
            _ if entry.has_children() => stack.push((depth, None, false)),
            _ => {}
        }
    }
    out
}
