//! Scratch pages: the pages liveprobe maps into a target to hold
//! trampolines (`[relocated instruction][jmp back]`), and where to put them.
//!
//! Owns: reading the target's memory map with permissions, choosing a free
//! page within reach (±1 GiB, well inside rel32's reach) of the probed code, the slots of each
//! page, and translating a pc inside a trampoline back to the original code.
//! Must never: place a page where the target's heap (brk) or stack grows,
//! reuse a slot that a thread may still be executing (a slot belongs to one
//! code address for the life of the address space), or talk to the kernel
//! about the target beyond reading /proc.

use std::collections::HashMap;

use super::code::TRAMPOLINE_SLOT;

/// Size of one scratch page.
pub(super) const SCRATCH_PAGE_SIZE: u64 = 4096;
/// Farthest a scratch page is placed from the code it serves, leaving room
/// for rip-relative data within the same module.
const MAX_SCRATCH_DISTANCE: u64 = 1 << 30;
/// Lowest address a page may go (vm.mmap_min_addr is at most this on
/// common systems).
const LOWEST_ADDRESS: u64 = 0x10_0000;
/// Room left free above the brk heap and below the main stack, which grow
/// into the gap next to them.
const GROWTH_ROOM: u64 = 4 << 30;
/// Top of the x86-64 user address space (47 bits, 4-level paging).
const USER_SPACE_END: u64 = 0x7fff_ffff_f000;

pub(crate) use crate::procmaps::{FilePlace, Mapping, mapping_at};

/// The memory map of `pid`, sorted by address (empty if unreadable: a
/// process that is gone has no room for scratch pages either).
pub(super) fn read_maps(pid: i32) -> Vec<Mapping> {
    crate::procmaps::read_maps(pid).unwrap_or_default()
}

/// A free, page-aligned place for a `size`-byte scratch mapping as close as
/// possible to `near`, or None if nothing is free within reach. `exe` is the
/// path of the main executable: the gap just above its last mapping is
/// where the brk heap grows, as is the space just above `[heap]` and just
/// below `[stack]`: those gaps are only used `GROWTH_ROOM` away.
pub(super) fn find_gap(maps: &[Mapping], near: u64, size: u64, exe: Option<&str>) -> Option<u64> {
    let last_exe_index = exe.and_then(|exe| maps.iter().rposition(|m| m.path == exe));
    let mut best: Option<(u64, u64)> = None; // (distance, address)
    let mut consider = |candidate: u64| {
        let distance = candidate.abs_diff(near);
        if distance <= MAX_SCRATCH_DISTANCE && best.is_none_or(|(d, _)| distance < d) {
            best = Some((distance, candidate));
        }
    };
    for index in 0..=maps.len() {
        let below = index.checked_sub(1).and_then(|i| maps.get(i));
        let above = maps.get(index);
        let gap_start = below.map_or(LOWEST_ADDRESS, |m| m.end).max(LOWEST_ADDRESS);
        let gap_end = above
            .map_or(USER_SPACE_END, |m| m.start)
            .min(USER_SPACE_END);
        if gap_end <= gap_start || gap_end - gap_start < size {
            continue;
        }
        let grows_up_into_gap = below.is_some_and(|m| m.path == "[heap]")
            || (index > 0 && last_exe_index == Some(index - 1));
        let grows_down_into_gap = above.is_some_and(|m| m.path == "[stack]");
        let gap_start = if grows_up_into_gap {
            gap_start.saturating_add(GROWTH_ROOM)
        } else {
            gap_start
        };
        let gap_end = if grows_down_into_gap {
            gap_end.saturating_sub(GROWTH_ROOM)
        } else {
            gap_end
        };
        if gap_end <= gap_start || gap_end - gap_start < size {
            continue;
        }
        // The end of the gap nearest to `near`.
        let highest = (gap_end - size) & !(SCRATCH_PAGE_SIZE - 1);
        let lowest = gap_start.div_ceil(SCRATCH_PAGE_SIZE) * SCRATCH_PAGE_SIZE;
        if highest < lowest {
            continue;
        }
        let candidate = near.clamp(lowest, highest) & !(SCRATCH_PAGE_SIZE - 1);
        consider(candidate.clamp(lowest, highest));
    }
    best.map(|(_, address)| address)
}

/// One scratch page mapped into a target.
#[derive(Debug)]
pub(super) struct ScratchPage {
    pub start: u64,
    /// Code address served by each used slot, in slot order, with the
    /// offset of the trampoline's jump back and the instruction's length.
    slots: Vec<TrampolineSlot>,
}

#[derive(Debug, Clone, Copy)]
struct TrampolineSlot {
    address: u64,
    jump_at: u64,
    len: u64,
}

impl ScratchPage {
    pub(super) fn new(start: u64) -> ScratchPage {
        ScratchPage {
            start,
            slots: Vec::new(),
        }
    }

    /// Address of the next free slot, if any.
    pub(super) fn next_free(&self) -> Option<u64> {
        let used = self.slots.len() as u64 * TRAMPOLINE_SLOT;
        (used + TRAMPOLINE_SLOT <= SCRATCH_PAGE_SIZE).then_some(self.start + used)
    }

    /// Record that the next free slot now holds the trampoline of `address`.
    pub(super) fn take_slot(&mut self, address: u64, jump_at: usize, len: usize) {
        self.slots.push(TrampolineSlot {
            address,
            jump_at: jump_at as u64,
            len: len as u64,
        });
    }

    pub(super) fn contains(&self, pc: u64) -> bool {
        self.start <= pc && pc < self.start + SCRATCH_PAGE_SIZE
    }

    /// The original-code pc equivalent to `pc` in this page: the start of a
    /// trampoline is the instruction's own address (nothing has run yet); its
    /// jump back is the address after the instruction (the copy has run).
    pub(super) fn translate(&self, pc: u64) -> Option<Translated> {
        if !self.contains(pc) {
            return None;
        }
        let slot = self
            .slots
            .get(((pc - self.start) / TRAMPOLINE_SLOT) as usize)?;
        let offset = (pc - self.start) % TRAMPOLINE_SLOT;
        if offset == 0 {
            Some(Translated::Before(slot.address))
        } else if offset == slot.jump_at {
            Some(Translated::After(slot.address + slot.len))
        } else {
            None
        }
    }
}

/// Where a pc inside a trampoline stands in the original code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Translated {
    /// About to execute the instruction at this address.
    Before(u64),
    /// The instruction has run; continue at this address.
    After(u64),
}

impl Translated {
    pub(super) fn pc(self) -> u64 {
        match self {
            Translated::Before(pc) | Translated::After(pc) => pc,
        }
    }
}

/// All scratch pages of one address space and the trampoline of each
/// code address.
#[derive(Debug, Default)]
pub(super) struct ScratchSpace {
    pub pages: Vec<ScratchPage>,
    /// Code address -> (trampoline address, original bytes it was built
    /// from). Kept for the life of the address space: a thread may be in a
    /// trampoline long after its breakpoint was removed.
    pub trampolines: HashMap<u64, (u64, Vec<u8>)>,
}

impl ScratchSpace {
    /// Translate a pc inside any trampoline back to the original code.
    pub(super) fn translate(&self, pc: u64) -> Option<Translated> {
        self.pages.iter().find_map(|page| page.translate(pc))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MAPS: &str = "\
555555554000-555555555000 r--p 00000000 08:01 123 /usr/bin/app with space
555555555000-555555556000 r-xp 00001000 08:01 123 /usr/bin/app with space
555555557000-555555559000 rw-p 00002000 08:01 123 /usr/bin/app with space
555555559000-55555557a000 rw-p 00000000 00:00 0 [heap]
7ffff7d80000-7ffff7da8000 r--p 00000000 08:01 456 /usr/lib/libc.so.6
7ffff7da8000-7ffff7f3d000 r-xp 00028000 08:01 456 /usr/lib/libc.so.6
7ffffffde000-7ffffffff000 rw-p 00000000 00:00 0 [stack]
";

    #[test]
    fn gaps_are_near_the_code_and_away_from_heap_and_stack() {
        let maps = crate::procmaps::parse_maps(MAPS);
        let exe = Some("/usr/bin/app with space");
        // For the executable: the hole between its text and data is nearest.
        let gap = find_gap(&maps, 0x5555_5555_5100, 4096, exe).expect("gap near exe");
        assert_eq!(gap, 0x5555_5555_6000);
        // Below the executable when that is nearer.
        let gap = find_gap(&maps, 0x5555_5555_4010, 4096, exe).expect("below exe");
        assert_eq!(gap, 0x5555_5555_3000);
        // For libc: just below it, in the gap above the heap but far from it.
        let gap = find_gap(&maps, 0x7fff_f7da_9000, 4096, exe).expect("gap near libc");
        assert_eq!(gap, 0x7fff_f7d7_f000);
        // Nothing right above the heap, however near.
        let gap = find_gap(&maps, 0x5555_5557_b000, 4096, exe).expect("some gap");
        assert!(!(0x5555_5555_9000..0x5555_5557_a000 + GROWTH_ROOM).contains(&gap));
    }

    #[test]
    fn trampoline_pcs_translate_to_original_code() {
        let mut page = ScratchPage::new(0x1000_0000);
        assert_eq!(page.next_free(), Some(0x1000_0000));
        page.take_slot(0x5000, 4, 4);
        assert_eq!(page.next_free(), Some(0x1000_0000 + TRAMPOLINE_SLOT));
        assert_eq!(
            page.translate(0x1000_0000),
            Some(Translated::Before(0x5000))
        );
        assert_eq!(page.translate(0x1000_0004), Some(Translated::After(0x5004)));
        assert_eq!(page.translate(0x1000_0002), None);
        assert_eq!(page.translate(0x1000_0000 + TRAMPOLINE_SLOT), None);
    }
}
