//! The tables a module keeps about its compilation units, and the rules to build them from its DWARF: which
//! unit covers an address (a sorted range table built from `.debug_aranges`, plus the root DIE ranges of units
//! the aranges leave out), the per-unit `addr2line` contexts, and the split halves of skeleton units.
//!
//! A table here knows DWARF sections, never the module that holds it: object.rs owns the tables and
//! units.rs answers questions with them. Owns no target memory access.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, OnceLock};

use gimli::{Reader as _, Section as _};

use super::bytes::{DwarfReader, SectionBytes, reader};

/// How many units a scan visits before releasing the pages it touched (bounds resident memory on huge files).
pub(crate) const RELEASE_EVERY_UNITS: usize = 32;

/// The `.debug_info` offset of a unit's header.
pub fn unit_key(unit: &gimli::Unit<DwarfReader>) -> Option<usize> {
    unit.header.debug_info_offset().map(|offset| offset.0)
}

/// Sorted, non-overlapping-in-practice address ranges (file addresses) -> unit header offset.
pub(crate) struct UnitRanges {
    ranges: Vec<(u64, u64, usize)>,
}

impl UnitRanges {
    /// Builds the table from `dwarf`; `release_pages` is called every [`RELEASE_EVERY_UNITS`] units read
    /// and at the end (reading headers touches a page per unit).
    pub(crate) fn build(
        dwarf: Option<&gimli::Dwarf<DwarfReader>>,
        release_pages: impl Fn(),
    ) -> UnitRanges {
        let mut ranges = Vec::new();
        let Some(dwarf) = dwarf else {
            return UnitRanges { ranges };
        };
        let mut covered: HashSet<usize> = HashSet::new();
        let mut headers = dwarf.debug_aranges.headers();
        while let Ok(Some(header)) = headers.next() {
            let unit = header.debug_info_offset().0;
            let mut entries = header.entries();
            loop {
                match entries.next() {
                    Ok(Some(e)) => {
                        let r = e.range();
                        if r.end > r.begin {
                            ranges.push((r.begin, r.end, unit));
                            covered.insert(unit);
                        }
                    }
                    Ok(None) => break,
                    // An overflowing entry (seen with rustc for zero-sized statics) does not end the set.
                    Err(_) => continue,
                }
            }
        }
        // Units the aranges do not mention (clang emits none by default): their root DIE ranges.
        let mut units = dwarf.units();
        let mut visited = 0usize;
        loop {
            let header = match units.next() {
                Ok(Some(h)) => h,
                Ok(None) => break,
                Err(e) => {
                    tracing::debug!(error = %e, "stopped reading unit headers");
                    break;
                }
            };
            let Some(offset) = header.offset().to_debug_info_offset(&header) else {
                continue;
            };
            if covered.contains(&offset.0) {
                continue;
            }
            visited += 1;
            if visited.is_multiple_of(RELEASE_EVERY_UNITS) {
                release_pages();
            }
            let Ok(unit) = dwarf.unit(header) else {
                continue;
            };
            let Ok(mut iter) = dwarf.unit_ranges(&unit) else {
                continue;
            };
            while let Ok(Some(r)) = iter.next() {
                if r.end > r.begin {
                    ranges.push((r.begin, r.end, offset.0));
                }
            }
        }
        release_pages();
        ranges.sort_unstable();
        ranges.shrink_to_fit();
        UnitRanges { ranges }
    }

    pub(crate) fn lookup(&self, addr: u64) -> Option<usize> {
        let i = self.ranges.partition_point(|r| r.0 <= addr);
        // Ranges of different units may nest in broken DWARF: look back a little for one that contains addr.
        self.ranges[..i]
            .iter()
            .rev()
            .take(8)
            .find(|r| addr < r.1)
            .map(|r| r.2)
    }
}

/// Most per-unit symbolization contexts kept per module before the cache starts over.
pub(crate) const CONTEXT_CACHE_LIMIT: usize = 64;

/// Per-unit addr2line contexts of one module (each behind its own mutex: a Context is not Sync).
pub(crate) type UnitContexts = Mutex<HashMap<usize, Arc<Mutex<addr2line::Context<DwarfReader>>>>>;

/// A Dwarf whose `.debug_info` is just the unit at `offset` (every other section shared), so that an
/// addr2line context over it indexes one unit. References into other units (DW_FORM_ref_addr, LTO) do not
/// resolve through it; names then fall back to the unit's own data or the symbol table.
pub(crate) fn single_unit_dwarf(
    d: &gimli::Dwarf<DwarfReader>,
    offset: usize,
) -> Option<gimli::Dwarf<DwarfReader>> {
    let header = d
        .debug_info
        .header_from_offset(gimli::DebugInfoOffset(offset))
        .ok()?;
    let mut info = d.debug_info.reader().clone();
    info.skip(offset).ok()?;
    info.truncate(header.length_including_self()).ok()?;
    Some(gimli::Dwarf {
        debug_abbrev: d.debug_abbrev.clone(),
        debug_addr: d.debug_addr.clone(),
        debug_aranges: gimli::DebugAranges::from(reader(SectionBytes::empty())),
        debug_info: gimli::DebugInfo::from(info),
        debug_line: d.debug_line.clone(),
        debug_line_str: d.debug_line_str.clone(),
        debug_macinfo: d.debug_macinfo.clone(),
        debug_macro: d.debug_macro.clone(),
        debug_names: d.debug_names.clone(),
        debug_str: d.debug_str.clone(),
        debug_str_offsets: d.debug_str_offsets.clone(),
        debug_types: d.debug_types.clone(),
        locations: d.locations.clone(),
        ranges: d.ranges.clone(),
        file_type: d.file_type,
        sup: d.sup.clone(),
        abbreviations_cache: Default::default(),
    })
}

/// The split half of a skeleton unit (`-gsplit-dwarf`): its DWARF (a `.dwo` file, or its contribution to a
/// `.dwp` package, with `.debug_addr` and `.debug_ranges` taken from the executable) and the unit itself, with
/// the skeleton's relocated attributes (low pc, address base) and line table.
pub(crate) struct SplitUnit {
    pub(crate) dwarf: Arc<gimli::Dwarf<DwarfReader>>,
    pub(crate) unit: Arc<gimli::Unit<DwarfReader>>,
    /// Offset of the split unit's header in the split DWARF's `.debug_info`.
    pub(crate) header_offset: gimli::DebugInfoOffset<usize>,
    pub(crate) from_skeleton: FromSkeleton,
}

/// What a split unit takes from its skeleton besides the relocated attributes: the line table (the split
/// unit's `.debug_line.dwo` holds only a copy of the file names; the rows are in the executable), and its
/// name and compilation directory when the split unit lacks them.
pub(crate) struct FromSkeleton {
    pub(crate) line_program: Option<gimli::IncompleteLineProgram<DwarfReader>>,
    pub(crate) name: Option<DwarfReader>,
    pub(crate) comp_dir: Option<DwarfReader>,
}

impl FromSkeleton {
    pub(crate) fn apply(&self, unit: &mut gimli::Unit<DwarfReader>) {
        if self.line_program.is_some() {
            unit.line_program = self.line_program.clone();
        }
        if unit.name.is_none() {
            unit.name = self.name.clone();
        }
        if unit.comp_dir.is_none() {
            unit.comp_dir = self.comp_dir.clone();
        }
    }
}

/// The split units of a module, by skeleton unit offset, each resolved on first use (`None`: not a skeleton,
/// or its split half was not found).
pub(crate) struct SplitUnits {
    offsets: Vec<usize>,
    slots: Vec<OnceLock<Option<SplitUnit>>>,
    /// Skeletons whose split half was not found -> the file looked for.
    missing: Mutex<HashMap<usize, String>>,
}

/// The split unit's header, placed at its skeleton's offset: everything that names a unit by its
/// `.debug_info` offset (type and scope keys, unit caches, `unit_at`) then names the skeleton, whose offset is
/// what address lookups return. DIE offsets inside the unit are relative to its start, so they do not change;
/// split units refer to no other unit by section offset.
pub(crate) fn at_skeleton_offset(
    header: gimli::UnitHeader<DwarfReader>,
    skeleton: usize,
) -> Option<gimli::UnitHeader<DwarfReader>> {
    let entries = header.range_from(header.root_offset()..).ok()?;
    Some(gimli::UnitHeader::new(
        header.encoding(),
        header.unit_length(),
        header.type_(),
        header.debug_abbrev_offset(),
        header.section(),
        gimli::UnitSectionOffset(skeleton),
        entries,
    ))
}

impl SplitUnits {
    /// Lists the units of `dwarf` that can be skeletons; `release_pages` is called once their headers are read.
    pub(crate) fn build(
        dwarf: Option<&gimli::Dwarf<DwarfReader>>,
        release_pages: impl Fn(),
    ) -> SplitUnits {
        let mut offsets = Vec::new();
        if let Some(dwarf) = dwarf {
            // A GNU (DWARF 4) skeleton indexes its addresses in `.debug_addr`, which DWARF 4 without split
            // units never has: without one, no DWARF 4 unit needs its root looked at.
            let gnu_split_possible = !dwarf.debug_addr.reader().is_empty();
            let mut units = dwarf.units();
            while let Ok(Some(header)) = units.next() {
                // Only units that can be skeletons: DWARF 5 skeleton units, and DWARF 4 compile units (the GNU
                // extension marks them with DW_AT_GNU_dwo_id on the root, seen when the unit is first asked for).
                let candidate = match header.type_() {
                    gimli::UnitType::Skeleton(_) => true,
                    gimli::UnitType::Compilation => header.version() < 5 && gnu_split_possible,
                    _ => false,
                };
                if candidate && let Some(o) = header.offset().to_debug_info_offset(&header) {
                    offsets.push(o.0);
                }
            }
        }
        // Reading every unit header touched a page per unit: do not keep them resident.
        release_pages();
        offsets.shrink_to_fit();
        let slots = offsets.iter().map(|_| OnceLock::new()).collect();
        SplitUnits {
            offsets,
            slots,
            missing: Mutex::new(HashMap::new()),
        }
    }

    /// The slot of the skeleton unit at `offset`, filled on first use; None when the unit is no skeleton.
    pub(crate) fn slot(&self, offset: usize) -> Option<&OnceLock<Option<SplitUnit>>> {
        let i = self.offsets.binary_search(&offset).ok()?;
        self.slots.get(i)
    }

    /// Remembers that the split half of the skeleton at `skeleton` was not found, and what was looked for.
    pub(crate) fn note_missing(&self, skeleton: usize, what: &str) {
        if let Ok(mut missing) = self.missing.lock() {
            missing.insert(skeleton, what.to_string());
        }
    }

    /// What was looked for and not found for the skeleton at `skeleton`, if anything.
    pub(crate) fn missing_for(&self, skeleton: usize) -> Option<String> {
        self.missing.lock().ok()?.get(&skeleton).cloned()
    }
}
