//! The compilation units of a loaded object: the unit at a `.debug_info` offset (cached, or parsed afresh for
//! scans), the unit covering an address, one small `addr2line` context per unit, built when a pc in that unit
//! is first symbolized, and the split halves of skeleton units (`-gsplit-dwarf`: `.dwo` files, `.dwp`
//! packages), loaded on first use.
//!
//! Per-unit contexts replace one process-wide `addr2line::Context`, which parses every unit's root DIE and
//! line-program header up front and keeps them all: on a binary with a thousand units that costs tens of
//! megabytes before the first stack is printed. Owns no target memory access.

use std::sync::{Arc, Mutex};

use gimli::Reader as _;

use super::addr::FileAddr;
use super::bytes::{DwarfReader, SectionBytes, reader};
use super::elf::MappedFile;
use super::object::LoadedObject;
use super::unit_tables::{
    CONTEXT_CACHE_LIMIT, FromSkeleton, SplitUnit, SplitUnits, UnitRanges, at_skeleton_offset,
    single_unit_dwarf, unit_key,
};

impl LoadedObject {
    /// The compilation unit containing a file address (parsed on first request, then cached), for scope and
    /// variable lookup. The handle is an `Arc<gimli::Unit>`; use `unit.unit_ref(module.dwarf()?)` to walk it.
    pub fn unit_for(&self, a: FileAddr) -> Option<Arc<gimli::Unit<DwarfReader>>> {
        let offset = self.unit_offset_for(a)?;
        self.unit_at(offset)
    }

    /// The compilation unit whose header is at `offset` in `.debug_info` (cached).
    pub fn unit_at(
        &self,
        offset: gimli::DebugInfoOffset<usize>,
    ) -> Option<Arc<gimli::Unit<DwarfReader>>> {
        let dwarf = self.dwarf()?;
        if let Ok(cache) = self.units.lock()
            && let Some(u) = cache.get(&offset.0)
        {
            return Some(u.clone());
        }
        // A skeleton unit stands for its split half: read it with `dwarf_for(offset)`.
        if let Some(split) = self.split_unit(offset.0) {
            return Some(split.unit.clone());
        }
        let header = dwarf.debug_info.header_from_offset(offset).ok()?;
        let unit = Arc::new(dwarf.unit(header).ok()?);
        if let Ok(mut cache) = self.units.lock() {
            cache.insert(offset.0, unit.clone());
        }
        Some(unit)
    }

    /// Parses the unit whose header is at `offset` without caching it (for scans that visit many units once).
    pub(crate) fn parse_unit(
        &self,
        offset: gimli::DebugInfoOffset<usize>,
    ) -> Option<gimli::Unit<DwarfReader>> {
        if let Some(unit) = self.parse_split_unit(offset.0) {
            return Some(unit);
        }
        let dwarf = self.dwarf()?;
        let header = dwarf.debug_info.header_from_offset(offset).ok()?;
        dwarf.unit(header).ok()
    }

    /// The `.debug_info` offset of the compilation unit covering a file address.
    pub(crate) fn unit_offset_for(&self, a: FileAddr) -> Option<gimli::DebugInfoOffset<usize>> {
        let table = self
            .unit_ranges
            .get_or_init(|| UnitRanges::build(self.dwarf(), || self.release_dwarf_pages()));
        table.lookup(a.0).map(gimli::DebugInfoOffset)
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
                let dwarf = single_unit_dwarf(self.dwarf()?, offset)?;
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

    /// A skeleton's split half that could not be found: logged once per unit, and remembered so that a
    /// question about its code can name the file.
    fn warn_missing(&self, skeleton: usize, what: &str) {
        tracing::warn!(module = %self.path().display(), missing = what,
            "split DWARF not found: locals, types and function names of this unit are unavailable");
        if let Some(table) = self.split_units.get() {
            table.note_missing(skeleton, what);
        }
    }

    /// The split half of the skeleton unit at `offset` in `.debug_info`, loaded on first use; None when the
    /// unit is not a skeleton (or its `.dwo`/`.dwp` is missing).
    pub(crate) fn split_unit(&self, offset: usize) -> Option<&SplitUnit> {
        let table = self
            .split_units
            .get_or_init(|| SplitUnits::build(self.dwarf(), || self.release_dwarf_pages()));
        table
            .slot(offset)?
            .get_or_init(|| self.load_split_unit(offset))
            .as_ref()
    }

    /// The split DWARF file that the code at `a` needs and that was not found (its `.dwo`, or a package
    /// holding its DWO id), for an error that says what to put back.
    pub fn missing_split_dwarf(&self, a: FileAddr) -> Option<String> {
        let offset = self.unit_offset_for(a)?.0;
        if self.split_unit(offset).is_some() {
            return None;
        }
        self.split_units.get()?.missing_for(offset)
    }

    /// The DWARF a unit's DIEs, strings and location lists are read from: the split DWARF for a skeleton unit,
    /// else the module's own. Pair it with [`LoadedObject::unit_at`] / [`LoadedObject::parse_unit`] of the same offset.
    pub fn dwarf_for(&self, unit_offset: usize) -> Option<&gimli::Dwarf<DwarfReader>> {
        match self.split_unit(unit_offset) {
            Some(split) => Some(&split.dwarf),
            None => self.dwarf(),
        }
    }

    /// The DWARF to read `unit`'s DIEs with (see [`LoadedObject::dwarf_for`]): a split unit's header sits at its
    /// skeleton's offset.
    pub fn dwarf_of(&self, unit: &gimli::Unit<DwarfReader>) -> Option<&gimli::Dwarf<DwarfReader>> {
        match unit_key(unit) {
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
            self.warn_missing(offset, dwo_name.as_deref().unwrap_or("(no DW_AT_dwo_name)"));
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
            self.warn_missing(offset, "a unit with the skeleton's DWO id");
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
            let Ok(mapped) = MappedFile::open(&path) else {
                continue;
            };
            let Ok(file) = mapped.parse() else { continue };
            let load = |id: gimli::SectionId| -> Result<DwarfReader, gimli::Error> {
                Ok(reader(
                    id.dwo_name()
                        .and_then(|name| mapped.section(&file, name))
                        .map(|(b, _)| b)
                        .unwrap_or_else(SectionBytes::empty),
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
                    let Ok(mapped) = MappedFile::open(&path) else {
                        continue;
                    };
                    let Ok(file) = mapped.parse() else { continue };
                    let load = |id: gimli::SectionId| -> Result<DwarfReader, gimli::Error> {
                        Ok(reader(
                            id.dwo_name()
                                .and_then(|name| mapped.section(&file, name))
                                .map(|(b, _)| b)
                                .unwrap_or_else(SectionBytes::empty),
                        ))
                    };
                    match gimli::DwarfPackage::load(
                        load,
                        reader(SectionBytes::empty()),
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
