//! The blocks of one compilation unit as gdb sees them: functions, inlined instances and the lexical blocks
//! that declare something, each with its address ranges. Used to choose the sites of a line (one per innermost
//! block, as gdb's `decode_line_full` does) and to keep a function probe out of an inlined callee.
//!
//! Also what gdb's prologue skipping asks of a unit: its producer, and whether any variable of it has a
//! location list (gdb's `locations_valid`). Never reads target memory.

use gimli::Reader as _;

use super::bytes::DwarfReader;
use super::lines::file_path;
use super::module::Module;

/// What a block is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum BlockKind {
    /// An out-of-line function (`DW_TAG_subprogram`).
    Function,
    /// An inlined copy (`DW_TAG_inlined_subroutine`).
    Inlined,
    /// A lexical block that declares something (gdb makes no block of one that declares nothing).
    Lexical,
}

/// One block with code.
#[derive(Clone, Debug)]
pub(crate) struct Block {
    /// Offset of its DIE in the unit.
    pub(crate) die: usize,
    pub(crate) kind: BlockKind,
    /// Address ranges (file addresses), non-empty.
    pub(crate) ranges: Vec<(u64, u64)>,
    /// Nesting depth (0 for a unit-level function).
    pub(crate) depth: usize,
    /// For an inlined copy: the file and line of the call.
    pub(crate) call: Option<(String, u32)>,
}

impl Block {
    pub(crate) fn contains(&self, addr: u64) -> bool {
        self.ranges.iter().any(|&(b, e)| addr >= b && addr < e)
    }
}

/// The blocks of a unit and what prologue skipping needs to know of it.
pub(crate) struct UnitBlocks {
    pub(crate) blocks: Vec<Block>,
    /// DW_AT_producer of the unit.
    pub(crate) producer: Option<String>,
    /// Some variable or frame base of the unit has a location list.
    pub(crate) has_location_lists: bool,
}

/// DIE tags that put a symbol in their enclosing block (what makes gdb keep a lexical block).
fn declares_symbol(tag: gimli::DwTag) -> bool {
    matches!(
        tag,
        gimli::DW_TAG_variable
            | gimli::DW_TAG_constant
            | gimli::DW_TAG_typedef
            | gimli::DW_TAG_label
            | gimli::DW_TAG_structure_type
            | gimli::DW_TAG_class_type
            | gimli::DW_TAG_union_type
            | gimli::DW_TAG_enumeration_type
            | gimli::DW_TAG_subprogram
            | gimli::DW_TAG_imported_module
            | gimli::DW_TAG_imported_declaration
    )
}

const MAX_DEPTH: usize = 256;

impl UnitBlocks {
    /// Walks unit `cu` (index in the module's line index) once.
    pub(crate) fn of_unit(module: &Module, cu: u32) -> Option<UnitBlocks> {
        let info = module.line_index().cus.get(cu as usize)?;
        let unit = module.parse_unit(info.unit_offset)?;
        let dwarf = module.dwarf_for(info.unit_offset.0)?;
        let mut out = UnitBlocks {
            blocks: Vec::new(),
            producer: None,
            has_location_lists: false,
        };
        let mut tree = unit.entries_tree(None).ok()?;
        let root = tree.root().ok()?;
        if let Some(v) = root.entry().attr_value(gimli::DW_AT_producer)
            && let Ok(s) = dwarf.attr_string(&unit, v)
            && let Ok(s) = s.to_string_lossy()
        {
            out.producer = Some(s.into_owned());
        }
        walk(dwarf, &unit, root, 0, &mut out);
        Some(out)
    }

    /// The innermost block containing `addr`.
    pub(crate) fn innermost(&self, addr: u64) -> Option<&Block> {
        self.blocks
            .iter()
            .filter(|b| b.contains(addr))
            .max_by_key(|b| b.depth)
    }

    /// The innermost out-of-line function containing `addr`.
    pub(crate) fn function_at(&self, addr: u64) -> Option<&Block> {
        self.blocks
            .iter()
            .filter(|b| b.kind == BlockKind::Function && b.contains(addr))
            .max_by_key(|b| b.depth)
    }

    /// The function or inlined copy whose DIE is at `die`.
    pub(crate) fn by_die(&self, die: usize) -> Option<&Block> {
        self.blocks.iter().find(|b| b.die == die)
    }

    /// Whether `addr` lies in an inlined copy nested in the block `outer`.
    pub(crate) fn in_nested_inline(&self, outer: &Block, addr: u64) -> bool {
        self.blocks.iter().any(|b| {
            b.kind == BlockKind::Inlined
                && b.depth > outer.depth
                && b.contains(addr)
                && b.ranges
                    .iter()
                    .all(|&(s, e)| outer.ranges.iter().any(|&(os, oe)| s >= os && e <= oe))
        })
    }

    /// gdb's `producer_is_llvm`: clang, rustc and flang units.
    pub(crate) fn producer_is_llvm(&self) -> bool {
        self.producer
            .as_deref()
            .is_some_and(|p| p.starts_with("clang ") || p.starts_with(" F90 Flang "))
    }

    /// gdb's `locations_valid`: a GCC unit whose variables have location lists (gdb then trusts the entry
    /// address of a function and does not skip its prologue).
    pub(crate) fn locations_valid(&self) -> bool {
        self.has_location_lists
            && self
                .producer
                .as_deref()
                .is_some_and(|p| p.starts_with("GNU "))
    }
}

fn ranges_of(
    dwarf: &gimli::Dwarf<DwarfReader>,
    unit: &gimli::Unit<DwarfReader>,
    entry: &gimli::DebuggingInformationEntry<DwarfReader>,
) -> Vec<(u64, u64)> {
    let mut out = Vec::new();
    if let Ok(mut ranges) = dwarf.die_ranges(unit, entry) {
        while let Ok(Some(r)) = ranges.next() {
            if r.begin < r.end {
                out.push((r.begin, r.end));
            }
        }
    }
    out
}

/// Walks the children of `node`, collecting blocks; returns whether a direct child declares a symbol.
fn walk(
    dwarf: &gimli::Dwarf<DwarfReader>,
    unit: &gimli::Unit<DwarfReader>,
    node: gimli::EntriesTreeNode<'_, '_, DwarfReader>,
    depth: usize,
    out: &mut UnitBlocks,
) -> bool {
    let mut declares = false;
    if depth > MAX_DEPTH {
        return declares;
    }
    let mut children = node.children();
    while let Ok(Some(child)) = children.next() {
        let entry = child.entry();
        declares |= declares_symbol(entry.tag());
        if !out.has_location_lists {
            for name in [gimli::DW_AT_location, gimli::DW_AT_frame_base] {
                if matches!(
                    entry.attr_value(name),
                    Some(
                        gimli::AttributeValue::LocationListsRef(_)
                            | gimli::AttributeValue::DebugLocListsIndex(_)
                            | gimli::AttributeValue::SecOffset(_)
                    )
                ) {
                    out.has_location_lists = true;
                }
            }
        }
        let tag = entry.tag();
        let kind = match tag {
            gimli::DW_TAG_subprogram if entry.attr_value(gimli::DW_AT_declaration).is_none() => {
                Some(BlockKind::Function)
            }
            gimli::DW_TAG_inlined_subroutine => Some(BlockKind::Inlined),
            gimli::DW_TAG_lexical_block => Some(BlockKind::Lexical),
            _ => None,
        };
        let Some(kind) = kind else {
            // Namespaces, types and the unit hold functions; variables and the like hold nothing with code.
            if entry.has_children()
                && matches!(
                    tag,
                    gimli::DW_TAG_namespace
                        | gimli::DW_TAG_module
                        | gimli::DW_TAG_structure_type
                        | gimli::DW_TAG_class_type
                        | gimli::DW_TAG_union_type
                )
            {
                walk(dwarf, unit, child, depth, out);
            }
            continue;
        };
        let ranges = ranges_of(dwarf, unit, entry);
        let die = entry.offset().0;
        let call = if kind == BlockKind::Inlined {
            let file = match entry.attr_value(gimli::DW_AT_call_file) {
                Some(gimli::AttributeValue::FileIndex(f)) => file_path(dwarf, unit, f),
                Some(gimli::AttributeValue::Udata(f)) => file_path(dwarf, unit, f),
                _ => None,
            };
            let line = entry
                .attr_value(gimli::DW_AT_call_line)
                .and_then(|v| v.udata_value())
                .map(|l| l as u32);
            file.zip(line)
        } else {
            None
        };
        if ranges.is_empty() {
            // gdb reads a lexical block without addresses as if its children were in the parent; a function
            // without addresses (declaration, discarded by the linker) holds no code.
            if kind == BlockKind::Lexical && entry.has_children() {
                declares |= walk(dwarf, unit, child, depth, out);
            }
            continue;
        }
        if kind == BlockKind::Lexical {
            // Kept only when it declares something; either way its nested blocks count.
            let index = out.blocks.len();
            out.blocks.push(Block {
                die,
                kind,
                ranges,
                depth,
                call,
            });
            let has_children = entry.has_children();
            if !(has_children && walk(dwarf, unit, child, depth + 1, out)) {
                out.blocks.remove(index);
            }
            continue;
        }
        out.blocks.push(Block {
            die,
            kind,
            ranges,
            depth,
            call,
        });
        if entry.has_children() {
            walk(dwarf, unit, child, depth + 1, out);
        }
    }
    declares
}
