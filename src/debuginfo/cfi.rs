//! The call frame information of one module: its `.eh_frame`, `.eh_frame_hdr` and `.debug_frame` sections,
//! and the unwind row that covers a file pc, found through the `.eh_frame_hdr` binary-search table, else a
//! lazily built sorted FDE index, and cached.
//!
//! Owns finding rows, not applying them: it reads no registers and no target memory (unwind.rs does).

use std::cell::RefCell;
use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};

use gimli::{BaseAddresses, UnwindSection};
use object::{Object, ObjectSection};

use super::bytes::{DwarfReader, SectionBytes, reader};
use super::elf::MappedFile;

/// A sorted FDE index over a CFI section without a binary-search table: (start, end, FDE offset).
type FdeIndex = Vec<(u64, u64, usize)>;

/// The unwind sections of one module (file addresses).
#[derive(Default)]
pub(crate) struct CfiSections {
    pub(crate) eh_frame: Option<(SectionBytes, u64)>,
    pub(crate) eh_frame_hdr: Option<(SectionBytes, u64)>,
    pub(crate) debug_frame: Option<SectionBytes>,
    text: u64,
    got: u64,
    eh_index: OnceLock<FdeIndex>,
    debug_index: OnceLock<FdeIndex>,
    /// Unwind rows already computed, by file pc (bounded): probes and repeated stack traces hit the same pcs.
    rows: Mutex<HashMap<u64, Option<Arc<CachedRow>>>>,
}

/// Most rows kept per module before the cache starts over.
const ROW_CACHE_LIMIT: usize = 4096;

/// The CFI row for one pc, with what is needed to apply it later.
pub(crate) struct CachedRow {
    pub(crate) row: gimli::UnwindTableRow<usize>,
    pub(crate) encoding: gimli::Encoding,
    pub(crate) signal_frame: bool,
    /// The row comes from `.debug_frame` (its expressions point into that section), else `.eh_frame`.
    from_debug_frame: bool,
}

impl CfiSections {
    pub(crate) fn from_file(elf: &MappedFile, file: &object::File<'_>) -> CfiSections {
        let non_empty = |s: Option<(SectionBytes, u64)>| s.filter(|(b, _)| !b.is_empty());
        CfiSections {
            eh_frame: non_empty(elf.section(file, ".eh_frame")),
            eh_frame_hdr: non_empty(elf.section(file, ".eh_frame_hdr")),
            debug_frame: non_empty(elf.section(file, ".debug_frame")).map(|(b, _)| b),
            text: file
                .section_by_name(".text")
                .map(|s| s.address())
                .unwrap_or(0),
            got: file
                .section_by_name(".got")
                .map(|s| s.address())
                .unwrap_or(0),
            eh_index: OnceLock::new(),
            debug_index: OnceLock::new(),
            rows: Mutex::new(HashMap::new()),
        }
    }

    fn eh_bases(&self) -> BaseAddresses {
        let mut bases = BaseAddresses::default()
            .set_text(self.text)
            .set_got(self.got);
        if let Some((_, addr)) = &self.eh_frame {
            bases = bases.set_eh_frame(*addr);
        }
        if let Some((_, addr)) = &self.eh_frame_hdr {
            bases = bases.set_eh_frame_hdr(*addr);
        }
        bases
    }
}

fn build_index<S: UnwindSection<DwarfReader>>(section: &S, bases: &BaseAddresses) -> FdeIndex
where
    S::Offset: gimli::UnwindOffset<usize>,
{
    let mut index = Vec::new();
    let mut entries = section.entries(bases);
    loop {
        match entries.next() {
            Ok(Some(gimli::CieOrFde::Fde(partial))) => {
                if let Ok(fde) = partial.parse(S::cie_from_offset)
                    && fde.len() > 0
                {
                    index.push((fde.initial_address(), fde.end_address(), fde.offset()));
                }
            }
            Ok(Some(gimli::CieOrFde::Cie(_))) => {}
            Ok(None) => break,
            Err(e) => {
                tracing::debug!(error = %e, "stopped indexing CFI section");
                break;
            }
        }
    }
    index.sort_unstable();
    index
}

fn index_lookup(index: &FdeIndex, pc: u64) -> Option<usize> {
    let i = index.partition_point(|e| e.0 <= pc);
    let (start, end, off) = *index.get(i.checked_sub(1)?)?;
    (pc >= start && pc < end).then_some(off)
}

thread_local! {
    // UnwindContext is a large allocation; reuse one per thread, as gimli's documentation advises.
    static UNWIND_CONTEXT: RefCell<gimli::UnwindContext<usize>> = RefCell::new(gimli::UnwindContext::new());
}

impl CfiSections {
    fn eh_frame_section(&self) -> Option<gimli::EhFrame<DwarfReader>> {
        let (bytes, _) = self.eh_frame.as_ref()?;
        let mut eh_frame = gimli::EhFrame::from(reader(bytes.clone()));
        eh_frame.set_address_size(8);
        Some(eh_frame)
    }

    fn debug_frame_section(&self) -> Option<gimli::DebugFrame<DwarfReader>> {
        let bytes = self.debug_frame.as_ref()?;
        let mut debug_frame = gimli::DebugFrame::from(reader(bytes.clone()));
        debug_frame.set_address_size(8);
        Some(debug_frame)
    }

    /// The unwind row for a file pc (cached).
    pub(crate) fn row_for(&self, file_pc: u64) -> Option<Arc<CachedRow>> {
        if let Ok(cache) = self.rows.lock()
            && let Some(hit) = cache.get(&file_pc)
        {
            return hit.clone();
        }
        let row = self.compute_row(file_pc).map(Arc::new);
        if let Ok(mut cache) = self.rows.lock() {
            if cache.len() >= ROW_CACHE_LIMIT {
                cache.clear();
            }
            cache.insert(file_pc, row.clone());
        }
        row
    }

    fn compute_row(&self, file_pc: u64) -> Option<CachedRow> {
        if let Some(eh_frame) = self.eh_frame_section() {
            let bases = self.eh_bases();
            let fde = match &self.eh_frame_hdr {
                Some((hdr_bytes, _)) => gimli::EhFrameHdr::from(reader(hdr_bytes.clone()))
                    .parse(&bases, 8)
                    .ok()
                    .and_then(|hdr| {
                        let table = hdr.table()?;
                        table
                            .fde_for_address(
                                &eh_frame,
                                &bases,
                                file_pc,
                                gimli::EhFrame::cie_from_offset,
                            )
                            .ok()
                    }),
                None => {
                    let index = self.eh_index.get_or_init(|| build_index(&eh_frame, &bases));
                    index_lookup(index, file_pc).and_then(|off| {
                        eh_frame
                            .fde_from_offset(
                                &bases,
                                gimli::EhFrameOffset(off),
                                gimli::EhFrame::cie_from_offset,
                            )
                            .ok()
                    })
                }
            };
            if let Some(fde) = fde {
                return row_of(&eh_frame, &bases, &fde, file_pc, false);
            }
        }
        let debug_frame = self.debug_frame_section()?;
        let bases = BaseAddresses::default();
        let index = self
            .debug_index
            .get_or_init(|| build_index(&debug_frame, &bases));
        let off = index_lookup(index, file_pc)?;
        let fde = debug_frame
            .fde_from_offset(
                &bases,
                gimli::DebugFrameOffset(off),
                gimli::DebugFrame::cie_from_offset,
            )
            .ok()?;
        row_of(&debug_frame, &bases, &fde, file_pc, true)
    }
}

fn row_of<S: UnwindSection<DwarfReader>>(
    section: &S,
    bases: &BaseAddresses,
    fde: &gimli::FrameDescriptionEntry<DwarfReader>,
    file_pc: u64,
    from_debug_frame: bool,
) -> Option<CachedRow> {
    let row = UNWIND_CONTEXT.with(|ctx| {
        let mut ctx = ctx.try_borrow_mut().ok()?;
        fde.unwind_info_for_address(section, bases, &mut ctx, file_pc)
            .ok()
            .cloned()
    })?;
    Some(CachedRow {
        row,
        encoding: fde.cie().encoding(),
        signal_frame: fde.is_signal_trampoline(),
        from_debug_frame,
    })
}

/// Fetches a CFI expression from the section its row came from.
pub(crate) fn expression_of(
    cfi: &CfiSections,
    cached: &CachedRow,
    expr: &gimli::UnwindExpression<usize>,
) -> Option<gimli::Expression<DwarfReader>> {
    if cached.from_debug_frame {
        expr.get(&cfi.debug_frame_section()?).ok()
    } else {
        expr.get(&cfi.eh_frame_section()?).ok()
    }
}
