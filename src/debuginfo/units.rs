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

/// The split half of a skeleton unit (`-gsplit-dwarf`): its DWARF (a `.dwo` file, or its contribution to a
/// `.dwp` package, with `.debug_addr` and `.debug_ranges` taken from the executable) and the unit itself, with
/// the skeleton's relocated attributes (low pc, address base) and line table.
pub(crate) struct SplitUnit {
    pub(crate) dwarf: Arc<gimli::Dwarf<DwarfReader>>,
    pub(crate) unit: Arc<gimli::Unit<DwarfReader>>,
    /// Offset of the split unit's header in the split DWARF's `.debug_info`.
    header_offset: gimli::DebugInfoOffset<usize>,
    from_skeleton: FromSkeleton,
}

/// What a split unit takes from its skeleton besides the relocated attributes: the line table (the split
/// unit's `.debug_line.dwo` holds only a copy of the file names; the rows are in the executable), and its
/// name and compilation directory when the split unit lacks them.
struct FromSkeleton {
    line_program: Option<gimli::IncompleteLineProgram<DwarfReader>>,
    name: Option<DwarfReader>,
    comp_dir: Option<DwarfReader>,
}

impl FromSkeleton {
    fn apply(&self, unit: &mut gimli::Unit<DwarfReader>) {
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
    slots: Vec<std::sync::OnceLock<Option<SplitUnit>>>,
    /// Skeletons whose split half was not found -> the file looked for.
    missing: Mutex<HashMap<usize, String>>,
}

/// The split unit's header, placed at its skeleton's offset: everything that names a unit by its
/// `.debug_info` offset (type and scope keys, unit caches, `unit_at`) then names the skeleton, whose offset is
/// what address lookups return. DIE offsets inside the unit are relative to its start, so they do not change;
/// split units refer to no other unit by section offset.
fn at_skeleton_offset(
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

/// A skeleton's split half that could not be found: logged once per unit, and remembered so that a question
/// about its code can name the file.
fn warn_missing(module: &Module, skeleton: usize, what: &str) {
    tracing::warn!(module = %module.path().display(), missing = what,
        "split DWARF not found: locals, types and function names of this unit are unavailable");
    if let Some(table) = module.split_units.get()
        && let Ok(mut missing) = table.missing.lock()
    {
        missing.insert(skeleton, what.to_string());
    }
}

impl SplitUnits {
    fn build(module: &Module) -> SplitUnits {
        let mut offsets = Vec::new();
        if let Some(dwarf) = module.dwarf() {
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
        module.release_dwarf_pages();
        offsets.shrink_to_fit();
        let slots = offsets.iter().map(|_| std::sync::OnceLock::new()).collect();
        SplitUnits {
            offsets,
            slots,
            missing: Mutex::new(HashMap::new()),
        }
    }
}

impl Module {
    /// The split half of the skeleton unit at `offset` in `.debug_info`, loaded on first use; None when the
    /// unit is not a skeleton (or its `.dwo`/`.dwp` is missing).
    pub(crate) fn split_unit(&self, offset: usize) -> Option<&SplitUnit> {
        let table = self.split_units.get_or_init(|| SplitUnits::build(self));
        let i = table.offsets.binary_search(&offset).ok()?;
        table.slots[i]
            .get_or_init(|| self.load_split_unit(offset))
            .as_ref()
    }

    /// The split DWARF file that the code at `a` needs and that was not found (its `.dwo`, or a package
    /// holding its DWO id), for an error that says what to put back.
    pub fn missing_split_dwarf(&self, a: super::addr::FileAddr) -> Option<String> {
        let offset = self.unit_offset_for(a)?.0;
        if self.split_unit(offset).is_some() {
            return None;
        }
        let table = self.split_units.get()?;
        table.missing.lock().ok()?.get(&offset).cloned()
    }

    /// The DWARF a unit's DIEs, strings and location lists are read from: the split DWARF for a skeleton unit,
    /// else the module's own. Pair it with [`Module::unit_at`] / [`Module::parse_unit`] of the same offset.
    pub fn dwarf_for(&self, unit_offset: usize) -> Option<&gimli::Dwarf<DwarfReader>> {
        match self.split_unit(unit_offset) {
            Some(split) => Some(&split.dwarf),
            None => self.dwarf(),
        }
    }

    /// The DWARF to read `unit`'s DIEs with (see [`Module::dwarf_for`]): a split unit's header sits at its
    /// skeleton's offset.
    pub fn dwarf_of(&self, unit: &gimli::Unit<DwarfReader>) -> Option<&gimli::Dwarf<DwarfReader>> {
        match super::types::unit_key(unit) {
            Some(offset) => self.dwarf_for(offset),
            None => self.dwarf(),
        }
    }

    fn load_split_unit(&self, offset: usize) -> Option<SplitUnit> {
        let main = self.dwarf()?;
        let header = main
            .debug_info
            .header_from_offset(gimli::DebugInfoOffset(offset))
            .ok()?;
        let skeleton = main.unit(header).ok()?;
        let dwo_id = skeleton.dwo_id?;
        let dwo_name = skeleton
            .dwo_name()
            .ok()
            .flatten()
            .and_then(|v| main.attr_string(&skeleton, v).ok())
            .and_then(|r| r.to_string_lossy().ok().map(|s| s.into_owned()));
        let comp_dir = skeleton
            .comp_dir
            .as_ref()
            .and_then(|r| r.to_string_lossy().ok().map(|s| s.into_owned()));
        let Some(dwarf) = self.split_dwarf(dwo_id, comp_dir.as_deref(), dwo_name.as_deref()) else {
            warn_missing(
                self,
                offset,
                dwo_name.as_deref().unwrap_or("(no DW_AT_dwo_name)"),
            );
            return None;
        };
        // The split compile unit carrying the same id (a .dwo holds one; a .dwp contribution holds one).
        let mut units = dwarf.units();
        let mut found = None;
        while let Ok(Some(h)) = units.next() {
            if let gimli::UnitType::SplitCompilation(id) = h.type_()
                && id != dwo_id
            {
                continue;
            }
            let Some(o) = h.offset().to_debug_info_offset(&h) else {
                continue;
            };
            let Some(h) = at_skeleton_offset(h, offset) else {
                continue;
            };
            let Ok(unit) = dwarf.unit(h) else { continue };
            if unit.dwo_id == Some(dwo_id) {
                found = Some((o, unit));
                break;
            }
        }
        let Some((header_offset, mut unit)) = found else {
            warn_missing(self, offset, "a unit with the skeleton's DWO id");
            return None;
        };
        let from_skeleton = FromSkeleton {
            line_program: skeleton.line_program.clone(),
            name: skeleton.name.clone(),
            comp_dir: skeleton.comp_dir.clone(),
        };
        unit.copy_relocated_attributes(&skeleton);
        from_skeleton.apply(&mut unit);
        Some(SplitUnit {
            dwarf,
            unit: Arc::new(unit),
            header_offset,
            from_skeleton,
        })
    }

    /// A fresh copy of the split unit at skeleton `offset` (for scans that do not keep units).
    pub(crate) fn parse_split_unit(&self, offset: usize) -> Option<gimli::Unit<DwarfReader>> {
        let split = self.split_unit(offset)?;
        let header = split
            .dwarf
            .debug_info
            .header_from_offset(split.header_offset)
            .ok()?;
        let header = at_skeleton_offset(header, offset)?;
        let mut unit = split.dwarf.unit(header).ok()?;
        unit.copy_relocated_attributes(&split.unit);
        split.from_skeleton.apply(&mut unit);
        Some(unit)
    }

    /// The split DWARF for `dwo_id`: from `<module>.dwp` (or the debug file's `.dwp`) when there is one,
    /// else the `.dwo` file named by the skeleton, relative to its compilation directory, or next to the
    /// module when the build tree moved. Cached per id (addr2line asks for the same ones).
    pub(crate) fn split_dwarf(
        &self,
        dwo_id: gimli::DwoId,
        comp_dir: Option<&str>,
        dwo_name: Option<&str>,
    ) -> Option<Arc<gimli::Dwarf<DwarfReader>>> {
        if let Ok(cache) = self.split_dwarfs.lock()
            && let Some(d) = cache.get(&dwo_id.0)
        {
            return d.clone();
        }
        let loaded = self
            .find_split_dwarf(dwo_id, comp_dir, dwo_name)
            .map(Arc::new);
        if let Ok(mut cache) = self.split_dwarfs.lock() {
            cache.insert(dwo_id.0, loaded.clone());
        }
        loaded
    }

    fn find_split_dwarf(
        &self,
        dwo_id: gimli::DwoId,
        comp_dir: Option<&str>,
        dwo_name: Option<&str>,
    ) -> Option<gimli::Dwarf<DwarfReader>> {
        let main = self.dwarf()?;
        // The skeleton's line table, which split units use, names its files in the executable's
        // `.debug_line_str`; split files have none of their own.
        let share_line_str = |mut dwarf: gimli::Dwarf<DwarfReader>| {
            dwarf.debug_line_str = main.debug_line_str.clone();
            dwarf
        };
        if let Some(package) = self.dwarf_package()
            && let Ok(Some(dwarf)) = package.find_cu(dwo_id, main)
        {
            return Some(share_line_str(dwarf));
        }
        let name = std::path::Path::new(dwo_name?);
        let mut candidates = Vec::new();
        if name.is_absolute() {
            candidates.push(name.to_path_buf());
        } else if let Some(dir) = comp_dir {
            candidates.push(std::path::Path::new(dir).join(name));
        }
        // The build tree moved: the .dwo next to the module, or next to its debug file.
        for beside in [
            Some(self.elf.path.as_path()),
            self.dwarf_file.as_ref().map(|f| f.path.as_path()),
        ]
        .into_iter()
        .flatten()
        {
            if let (Some(dir), Some(file)) = (beside.parent(), name.file_name()) {
                candidates.push(dir.join(file));
            }
        }
        for path in candidates {
            if !path.is_file() {
                continue;
            }
            let Ok(mapped) = super::module::MappedFile::open(&path) else {
                continue;
            };
            let Ok(file) = mapped.parse() else { continue };
            let load = |id: gimli::SectionId| -> Result<DwarfReader, gimli::Error> {
                Ok(super::bytes::reader(
                    id.dwo_name()
                        .and_then(|name| mapped.section(&file, name))
                        .map(|(b, _)| b)
                        .unwrap_or_else(super::bytes::SectionBytes::empty),
                ))
            };
            let Ok(mut dwarf) = gimli::Dwarf::load(load) else {
                continue;
            };
            dwarf.make_dwo(main);
            tracing::debug!(module = %self.path().display(), dwo = %path.display(), "loaded split DWARF");
            return Some(share_line_str(dwarf));
        }
        None
    }

    /// The module's DWARF package (`<file>.dwp` next to the module or its debug file), opened on first use.
    fn dwarf_package(&self) -> Option<&gimli::DwarfPackage<DwarfReader>> {
        self.dwarf_package
            .get_or_init(|| {
                let mut candidates = vec![self.elf.path.clone(), self.path.clone()];
                if let Some(f) = &self.dwarf_file {
                    candidates.push(f.path.clone());
                }
                for base in candidates {
                    let mut name = base.clone().into_os_string();
                    name.push(".dwp");
                    let path = std::path::PathBuf::from(name);
                    if !path.is_file() {
                        continue;
                    }
                    let Ok(mapped) = super::module::MappedFile::open(&path) else {
                        continue;
                    };
                    let Ok(file) = mapped.parse() else { continue };
                    let load = |id: gimli::SectionId| -> Result<DwarfReader, gimli::Error> {
                        Ok(super::bytes::reader(
                            id.dwo_name()
                                .and_then(|name| mapped.section(&file, name))
                                .map(|(b, _)| b)
                                .unwrap_or_else(super::bytes::SectionBytes::empty),
                        ))
                    };
                    match gimli::DwarfPackage::load(
                        load,
                        super::bytes::reader(super::bytes::SectionBytes::empty()),
                    ) {
                        Ok(package) => {
                            tracing::debug!(module = %self.path().display(), dwp = %path.display(), "loaded DWARF package");
                            return Some(package);
                        }
                        Err(e) => {
                            tracing::warn!(dwp = %path.display(), error = %e, "cannot read DWARF package")
                        }
                    }
                }
                None
            })
            .as_ref()
    }

    /// Completes an addr2line lookup, loading the split DWARF it asks for.
    pub(crate) fn complete_lookup<L>(&self, mut result: addr2line::LookupResult<L>) -> L::Output
    where
        L: addr2line::LookupContinuation<Buf = DwarfReader>,
    {
        loop {
            match result {
                addr2line::LookupResult::Output(output) => return output,
                addr2line::LookupResult::Load { load, continuation } => {
                    let text = |r: &Option<DwarfReader>| {
                        r.as_ref()
                            .and_then(|r| r.to_string_lossy().ok().map(|s| s.into_owned()))
                    };
                    let dwarf = self.split_dwarf(
                        load.dwo_id,
                        text(&load.comp_dir).as_deref(),
                        text(&load.path).as_deref(),
                    );
                    result = continuation.resume(dwarf);
                }
            }
        }
    }
}
