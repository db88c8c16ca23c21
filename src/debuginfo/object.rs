//! One ELF object as loaded in a process: the file, its load bias and mapped ranges, where its DWARF lives
//! (inside, or a separate debug file found by build-id or `.gnu_debuglink`), its unwind sections, and its
//! DWARF's compilation units (units.rs; split halves included).
//!
//! This is what the module's indexes are built from (lines.rs, names.rs, symbols.rs...) and it imports none
//! of them: module.rs composes an object with the indexes built over it. Everything beyond section headers
//! is parsed lazily (DWARF sections on first use, DIEs never here). Never reads target memory.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};

use object::{Object, ObjectSegment};

use super::addr::{FileAddr, RuntimeAddr};
use super::bytes::{DwarfReader, SectionBytes, reader};
use super::cfi::CfiSections;
use super::elf::{MappedFile, find_debug_file, find_dwz_file, has_debug_info, hex};
use super::error::DebugInfoError;
use super::maps::Mapping;
use super::unit_tables::{SplitUnits, UnitContexts, UnitRanges};

/// Where a module's DWARF came from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DebugInfoStatus {
    /// Whether DWARF debug info (`.debug_info`) was found for the module.
    pub found: bool,
    /// The file holding it: the module itself, or a separate debug file.
    pub path: Option<PathBuf>,
}

/// One ELF object mapped in the process (the executable or a shared library), with its DWARF.
pub struct LoadedObject {
    pub(crate) path: PathBuf,
    pub(crate) elf: MappedFile,
    pub(crate) build_id: Option<String>,
    pub(crate) bias: u64,
    /// Inode of the mapped file (0 when not opened from a process's mappings): with the path and the ranges,
    /// tells whether a module seen again after a library was loaded or unloaded is still the same mapping.
    pub(crate) inode: u64,
    /// Runtime address ranges mapped from this file, sorted.
    pub(crate) ranges: Vec<(u64, u64)>,
    /// Where `.debug_info` lives (this file or a separate debug file), if anywhere.
    pub(crate) dwarf_file: Option<MappedFile>,
    pub(crate) debug_separate: Option<MappedFile>,
    pub(crate) cfi: CfiSections,
    dwarf: OnceLock<Option<Arc<gimli::Dwarf<DwarfReader>>>>,
    /// Which unit covers an address, built on first use.
    pub(crate) unit_ranges: OnceLock<UnitRanges>,
    /// Per unit: its addr2line context (see `units.rs`).
    pub(crate) unit_contexts: UnitContexts,
    /// Units parsed, by `.debug_info` offset.
    pub(crate) units: Mutex<HashMap<usize, Arc<gimli::Unit<DwarfReader>>>>,
    /// Skeleton units' split halves (`-gsplit-dwarf`), by skeleton offset, resolved on first use.
    pub(crate) split_units: OnceLock<SplitUnits>,
    /// Split DWARF files loaded, by DWO id (None: looked for, not found).
    pub(crate) split_dwarfs: Mutex<HashMap<u64, Option<Arc<gimli::Dwarf<DwarfReader>>>>>,
    /// `<module>.dwp`, if there is one.
    pub(crate) dwarf_package: OnceLock<Option<gimli::DwarfPackage<DwarfReader>>>,
}

impl std::fmt::Debug for LoadedObject {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LoadedObject")
            .field("path", &self.path)
            .field("bias", &format_args!("{:#x}", self.bias))
            .field("build_id", &self.build_id)
            .field("debug_info", &self.debug_info())
            .finish()
    }
}

/// Computes the load bias from the file's lowest-offset mapping and the PT_LOAD segment that covers it.
fn compute_bias(file: &object::File<'_>, mappings: &[Mapping]) -> u64 {
    let Some(first) = mappings.iter().min_by_key(|m| (m.offset, m.start)) else {
        return 0;
    };
    for segment in file.segments() {
        let (seg_off, seg_len) = segment.file_range();
        if seg_len == 0 {
            continue;
        }
        let page_start = seg_off & !0xfff;
        if first.offset >= page_start && first.offset < seg_off.saturating_add(seg_len.max(1)) {
            // A file byte at offset X is mapped at first.start + (X - first.offset); the segment's vaddr
            // corresponds to file offset seg_off.
            return first
                .start
                .wrapping_add(seg_off)
                .wrapping_sub(first.offset)
                .wrapping_sub(segment.address());
        }
    }
    first.start.wrapping_sub(first.offset)
}

impl LoadedObject {
    /// Opens a module mapped in a process. `seen_path` is the path the process sees; `open_paths` are tried in
    /// order to open it (map_files, /proc/PID/root/...); `root` is the process's root directory prefix used to
    /// find separate debug files from its point of view.
    pub(crate) fn open(
        seen_path: &Path,
        open_paths: &[PathBuf],
        root: Option<&Path>,
        mappings: &[Mapping],
    ) -> Result<LoadedObject, DebugInfoError> {
        let mut last_err = None;
        let mut elf = None;
        for p in open_paths {
            match MappedFile::open(p) {
                Ok(f) => {
                    elf = Some(f);
                    break;
                }
                Err(e) => last_err = Some(e),
            }
        }
        let Some(elf) = elf else {
            return Err(last_err.unwrap_or_else(|| DebugInfoError::OpenFile {
                path: seen_path.to_owned(),
                source: std::io::Error::from(std::io::ErrorKind::NotFound),
            }));
        };
        let mut module = LoadedObject::from_mapped(seen_path, elf, root, 0)?;
        let file = module.elf.parse()?;
        module.bias = compute_bias(&file, mappings);
        module.inode = mappings.first().map_or(0, |m| m.inode());
        let mut ranges: Vec<(u64, u64)> = mappings.iter().map(|m| (m.start, m.end)).collect();
        ranges.sort_unstable();
        module.ranges = ranges;
        Ok(module)
    }

    /// The target's vDSO as a module: the kernel maps the same vDSO image into every process, so our own copy
    /// (found through AT_SYSINFO_EHDR) gives its symbols and CFI. Returns None if sizes differ (another kernel
    /// image, e.g. a 32-bit target) or our own vDSO cannot be found.
    pub(crate) fn vdso(target: &Mapping) -> Option<LoadedObject> {
        // SAFETY: getauxval has no preconditions; it returns 0 when the entry is absent.
        let ours = unsafe { libc::getauxval(libc::AT_SYSINFO_EHDR) };
        if ours == 0 {
            return None;
        }
        let maps = std::fs::read_to_string("/proc/self/maps").ok()?;
        let own = super::maps::parse_maps(&maps)
            .into_iter()
            .find(|m| m.path == "[vdso]" && m.start == ours)?;
        let len = usize::try_from(own.end - own.start).ok()?;
        if own.end - own.start != target.end - target.start {
            return None;
        }
        let mut copy = memmap2::MmapMut::map_anon(len).ok()?;
        // SAFETY: [own.start, own.end) is our own vDSO mapping, readable for the life of the process and never
        // written; `len` is its exact length.
        let bytes = unsafe { std::slice::from_raw_parts(own.start as *const u8, len) };
        copy.copy_from_slice(bytes);
        let map = copy.make_read_only().ok()?;
        let path = PathBuf::from("[vdso]");
        let elf = MappedFile {
            path: path.clone(),
            map: Arc::new(map),
        };
        let mut module = LoadedObject::from_mapped(&path, elf, None, 0).ok()?;
        let file = module.elf.parse().ok()?;
        let as_file = Mapping {
            offset: 0,
            ..target.clone()
        };
        module.bias = compute_bias(&file, std::slice::from_ref(&as_file));
        drop(file);
        module.ranges = vec![(target.start, target.end)];
        Some(module)
    }

    /// Opens an ELF file on disk as a module loaded at `bias` (for tools and tests that work without a process).
    pub fn open_file(path: &Path, bias: u64) -> Result<LoadedObject, DebugInfoError> {
        let elf = MappedFile::open(path)?;
        let mut module = LoadedObject::from_mapped(path, elf, None, bias)?;
        let file = module.elf.parse()?;
        let mut ranges = Vec::new();
        for segment in file.segments() {
            if segment.size() > 0 {
                ranges.push((
                    segment.address().wrapping_add(bias),
                    segment
                        .address()
                        .wrapping_add(bias)
                        .wrapping_add(segment.size()),
                ));
            }
        }
        ranges.sort_unstable();
        module.ranges = ranges;
        Ok(module)
    }

    fn from_mapped(
        seen_path: &Path,
        elf: MappedFile,
        root: Option<&Path>,
        bias: u64,
    ) -> Result<LoadedObject, DebugInfoError> {
        let file = elf.parse()?;
        let build_id = file.build_id().ok().flatten().map(hex);
        let cfi = CfiSections::from_file(&elf, &file);
        let embedded = has_debug_info(&file);
        let separate = if embedded {
            None
        } else {
            find_debug_file(&file, seen_path, root, build_id.as_deref())
        };
        drop(file);
        let (dwarf_file, debug_separate) = match separate {
            Some(sep) => (
                Some(MappedFile {
                    path: sep.path.clone(),
                    map: sep.map.clone(),
                }),
                Some(sep),
            ),
            None if embedded => (
                Some(MappedFile {
                    path: elf.path.clone(),
                    map: elf.map.clone(),
                }),
                None,
            ),
            None => (None, None),
        };
        let mut cfi = cfi;
        if cfi.debug_frame.is_none()
            && let Some(sep) = &debug_separate
            && let Ok(sep_file) = sep.parse()
        {
            cfi.debug_frame = sep
                .section(&sep_file, ".debug_frame")
                .map(|(b, _)| b)
                .filter(|b| !b.is_empty());
        }
        Ok(LoadedObject {
            path: seen_path.to_owned(),
            elf,
            build_id,
            bias,
            inode: 0,
            ranges: Vec::new(),
            dwarf_file,
            debug_separate,
            cfi,
            dwarf: OnceLock::new(),
            unit_ranges: OnceLock::new(),
            unit_contexts: Mutex::new(HashMap::new()),
            units: Mutex::new(HashMap::new()),
            split_units: OnceLock::new(),
            split_dwarfs: Mutex::new(HashMap::new()),
            dwarf_package: OnceLock::new(),
        })
    }

    /// The file as the process sees it.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The GNU build-id, as lowercase hex.
    pub fn build_id(&self) -> Option<&str> {
        self.build_id.as_deref()
    }

    /// Load bias: runtime address minus file address.
    pub fn bias(&self) -> u64 {
        self.bias
    }

    /// Whether DWARF was found, and where.
    pub fn debug_info(&self) -> DebugInfoStatus {
        DebugInfoStatus {
            found: self.dwarf_file.is_some(),
            path: self.dwarf_file.as_ref().map(|f| f.path.clone()),
        }
    }

    /// Runtime address -> file address.
    pub fn to_file(&self, a: RuntimeAddr) -> FileAddr {
        FileAddr(a.0.wrapping_sub(self.bias))
    }

    /// File address -> runtime address.
    pub fn to_runtime(&self, a: FileAddr) -> RuntimeAddr {
        RuntimeAddr(a.0.wrapping_add(self.bias))
    }

    /// Whether the runtime address lies in one of this module's mappings.
    pub fn contains(&self, a: RuntimeAddr) -> bool {
        let i = self.ranges.partition_point(|r| r.0 <= a.0);
        i > 0 && a.0 < self.ranges[i - 1].1
    }

    /// The runtime address ranges mapped from this file (sorted).
    pub fn mapped_ranges(&self) -> &[(u64, u64)] {
        &self.ranges
    }

    /// The file's bytes at file addresses `[start, end)` (fewer when the loadable segment holding `start`
    /// ends first): code as the file holds it, without the int3s a live probe may have patched into the
    /// process's copy. None when no segment holds `start` in file data.
    pub fn file_bytes(&self, start: FileAddr, end: FileAddr) -> Option<Vec<u8>> {
        let len = end.0.checked_sub(start.0)?;
        let file = self.elf.parse().ok()?;
        file.segments().find_map(|segment| {
            let data = segment.data().ok()?;
            let offset = usize::try_from(start.0.checked_sub(segment.address())?).ok()?;
            let rest = data.get(offset..).filter(|rest| !rest.is_empty())?;
            let take = rest.len().min(usize::try_from(len).ok()?);
            Some(rest[..take].to_vec())
        })
    }

    /// The module's DWARF (parsed lazily on first call: section headers only, compressed sections inflated),
    /// for the values engineer (types, variables, locations). None if the module has no DWARF.
    pub fn dwarf(&self) -> Option<&gimli::Dwarf<DwarfReader>> {
        self.dwarf_arc().map(|d| &**d)
    }

    /// Shared handle to the module's DWARF.
    pub fn dwarf_arc(&self) -> Option<&Arc<gimli::Dwarf<DwarfReader>>> {
        self.dwarf.get_or_init(|| self.load_dwarf()).as_ref()
    }

    fn load_dwarf(&self) -> Option<Arc<gimli::Dwarf<DwarfReader>>> {
        let source = self.dwarf_file.as_ref()?;
        let file = match source.parse() {
            Ok(f) => f,
            Err(e) => {
                tracing::warn!(error = %e, "cannot parse debug file");
                return None;
            }
        };
        let load = |id: gimli::SectionId| -> Result<DwarfReader, gimli::Error> {
            Ok(reader(
                source
                    .section(&file, id.name())
                    .map(|(b, _)| b)
                    .unwrap_or_else(SectionBytes::empty),
            ))
        };
        let mut dwarf = match gimli::Dwarf::load(load) {
            Ok(d) => d,
            Err(e) => {
                tracing::warn!(path = %source.path.display(), error = %e, "cannot load DWARF");
                return None;
            }
        };
        if let Some(sup) = find_dwz_file(&file, &source.path)
            && let Ok(sup_file) = sup.parse()
        {
            let load_sup = |id: gimli::SectionId| -> Result<DwarfReader, gimli::Error> {
                Ok(reader(
                    sup.section(&sup_file, id.name())
                        .map(|(b, _)| b)
                        .unwrap_or_else(SectionBytes::empty),
                ))
            };
            if let Err(e) = dwarf.load_sup(load_sup) {
                tracing::warn!(path = %sup.path.display(), error = %e, "cannot load supplementary DWARF");
            }
        }
        dwarf.populate_abbreviations_cache(gimli::AbbreviationsCacheStrategy::Duplicates);
        Some(Arc::new(dwarf))
    }

    /// Releases resident pages of the file holding the DWARF (see [`MappedFile::release_pages`]); used after
    /// scans that touch a little of every unit.
    pub(crate) fn release_dwarf_pages(&self) {
        if let Some(f) = &self.dwarf_file {
            f.release_pages();
        }
    }
}
