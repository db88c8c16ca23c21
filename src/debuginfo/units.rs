//! Which compilation unit covers an address: a sorted range table built from `.debug_aranges` (plus the root
//! DIE ranges of units the aranges leave out), and one small `addr2line` context per unit, built when a pc in
//! that unit is first symbolized.
//!
//! This replaces one process-wide `addr2line::Context`, which parses every unit's root DIE and line-program
//! header up front and keeps them all: on a binary with a thousand units that costs tens of megabytes before
//! the first stack is printed. Owns no target memory access.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};

use gimli::{Reader as _, Section as _};

use super::bytes::DwarfReader;
use super::lines::RELEASE_EVERY_UNITS;
use super::module::Module;

/// Sorted, non-overlapping-in-practice address ranges (file addresses) -> unit header offset.
pub(crate) struct UnitRanges {
    ranges: Vec<(u64, u64, usize)>,
}

impl UnitRanges {
    fn build(module: &Module) -> UnitRanges {
        let mut ranges = Vec::new();
        let Some(dwarf) = module.dwarf() else {
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
                module.release_dwarf_pages();
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
        module.release_dwarf_pages();
        ranges.sort_unstable();
        ranges.shrink_to_fit();
        UnitRanges { ranges }
    }

    fn lookup(&self, addr: u64) -> Option<usize> {
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
const CONTEXT_CACHE_LIMIT: usize = 64;

/// Per-unit addr2line contexts of one module (each behind its own mutex: a Context is not Sync).
pub(crate) type UnitContexts = Mutex<HashMap<usize, Arc<Mutex<addr2line::Context<DwarfReader>>>>>;

impl Module {
    /// The `.debug_info` offset of the compilation unit covering a file address.
    pub(crate) fn unit_offset_for(
        &self,
        a: super::addr::FileAddr,
    ) -> Option<gimli::DebugInfoOffset<usize>> {
        let table = self.unit_ranges.get_or_init(|| UnitRanges::build(self));
        table.lookup(a.0).map(gimli::DebugInfoOffset)
    }

    /// A Dwarf whose `.debug_info` is just the unit at `offset` (every other section shared), so that an
    /// addr2line context over it indexes one unit. References into other units (DW_FORM_ref_addr, LTO) do not
    /// resolve through it; names then fall back to the unit's own data or the symbol table.
    fn single_unit_dwarf(&self, offset: usize) -> Option<gimli::Dwarf<DwarfReader>> {
        let d = self.dwarf()?;
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
            debug_aranges: gimli::DebugAranges::from(super::bytes::reader(
                super::bytes::SectionBytes::empty(),
            )),
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

    /// Runs `f` with the addr2line context of the unit at `offset` (built on first use, cached).
    pub(crate) fn with_unit_context<T>(
        &self,
        offset: usize,
        f: impl FnOnce(&addr2line::Context<DwarfReader>) -> T,
    ) -> Option<T> {
        let cached = self
            .unit_contexts
            .lock()
            .ok()
            .and_then(|c| c.get(&offset).cloned());
        let ctx = match cached {
            Some(ctx) => ctx,
            None => {
                let dwarf = self.single_unit_dwarf(offset)?;
                let ctx = match addr2line::Context::from_dwarf(dwarf) {
                    Ok(c) => Arc::new(Mutex::new(c)),
                    Err(e) => {
                        tracing::debug!(module = %self.path().display(), error = %e, "cannot index unit");
                        return None;
                    }
                };
                if let Ok(mut cache) = self.unit_contexts.lock() {
                    if cache.len() >= CONTEXT_CACHE_LIMIT {
                        cache.clear();
                    }
                    cache.insert(offset, ctx.clone());
                }
                ctx
            }
        };
        let guard = match ctx.lock() {
            Ok(g) => g,
            Err(poisoned) => poisoned.into_inner(),
        };
        Some(f(&guard))
    }
}
