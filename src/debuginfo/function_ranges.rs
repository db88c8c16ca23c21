//! Per unit, the address ranges of every subprogram with code, from one walk of its raw DIEs: which
//! function DIE holds a pc without walking the DIE tree at every question. Each module caches them per unit
//! (module.rs); scope.rs asks.
//!
//! Reads DIEs of the loaded object only; never target memory.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use gimli::constants;

use super::bytes::DwarfReader;
use super::object::LoadedObject;

/// Per unit (`.debug_info` offset): its subprograms' address ranges.
pub(crate) type FunctionRangeCache = Mutex<HashMap<usize, Arc<FunctionRanges>>>;

/// Most units whose function ranges are kept per module before the cache
/// starts over.
pub(crate) const FUNCTION_RANGE_CACHE_LIMIT: usize = 64;

/// The address ranges of every subprogram of one unit with code, wherever
/// DWARF nests it: (begin, end, DIE offset), sorted by begin.
pub(crate) struct FunctionRanges {
    ranges: Vec<(u64, u64, usize)>,
}

impl FunctionRanges {
    pub(crate) fn build(object: &LoadedObject, unit: &gimli::Unit<DwarfReader>) -> FunctionRanges {
        let mut ranges = Vec::new();
        let Some(dwarf) = object.dwarf_of(unit) else {
            return FunctionRanges { ranges };
        };
        let unit_ref = unit.unit_ref(dwarf);
        // Raw entries: the attributes of every DIE but a function's are skipped, not decoded.
        let Ok(mut raw) = unit.entries_raw(None) else {
            return FunctionRanges { ranges };
        };
        while !raw.is_empty() {
            let offset = raw.next_offset();
            let abbreviation = match raw.read_abbreviation() {
                Ok(Some(abbreviation)) => abbreviation,
                Ok(None) => continue,
                Err(_) => break,
            };
            if raw.skip_attributes(abbreviation.attributes()).is_err() {
                break;
            }
            if abbreviation.tag() != constants::DW_TAG_subprogram
                || !abbreviation.attributes().iter().any(|spec| {
                    matches!(
                        spec.name(),
                        constants::DW_AT_low_pc | constants::DW_AT_ranges
                    )
                })
            {
                continue;
            }
            let Ok(entry) = unit.entry(offset) else {
                continue;
            };
            let Ok(mut iter) = unit_ref.die_ranges(&entry) else {
                continue;
            };
            while let Ok(Some(range)) = iter.next() {
                // A function the linker discarded keeps its DIE with low_pc 0 (DWARF 4 has no tombstone
                // value); no code of a loaded ELF is at address 0.
                if range.begin != 0 && range.begin < range.end {
                    ranges.push((range.begin, range.end, offset.0));
                }
            }
        }
        ranges.sort_unstable();
        ranges.shrink_to_fit();
        FunctionRanges { ranges }
    }

    /// The smallest subprogram range containing `pc` (a nested function's
    /// rather than its parent's, should they overlap).
    pub(crate) fn lookup(&self, pc: u64) -> Option<usize> {
        let end = self.ranges.partition_point(|r| r.0 <= pc);
        self.ranges[..end]
            .iter()
            .rev()
            .take(64)
            .filter(|r| pc < r.1)
            .min_by_key(|r| r.1 - r.0)
            .map(|r| r.2)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn function_ranges_pick_the_innermost_holder() {
        let index = FunctionRanges {
            ranges: vec![
                (0x1000, 0x1100, 1),
                (0x1100, 0x1400, 2),
                // A function nested in 2's range (should one ever be).
                (0x1200, 0x1240, 3),
                // 2's cold part.
                (0x2000, 0x2010, 2),
            ],
        };
        assert_eq!(index.lookup(0x1000), Some(1));
        assert_eq!(index.lookup(0x10ff), Some(1));
        assert_eq!(index.lookup(0x1100), Some(2));
        assert_eq!(index.lookup(0x1220), Some(3));
        assert_eq!(index.lookup(0x1240), Some(2));
        assert_eq!(index.lookup(0x2008), Some(2));
        assert_eq!(index.lookup(0x1800), None);
        assert_eq!(index.lookup(0xfff), None);
    }
}
