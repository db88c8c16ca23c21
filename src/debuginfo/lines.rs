//! The line-table side of the index: which compilation units mention which source files (built from
//! line-program headers only), and the rows of a unit's line program (run only for units that mention a file
//! someone asked about). This is what makes `file.rs:42` fast on binaries with hundreds of megabytes of DWARF:
//! no DIE is walked and no unrelated line program is run.
//!
//! Owns file-name matching and row decoding. Never reads target memory.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use gimli::Reader as _;

use super::bytes::DwarfReader;
use super::module::Module;

/// Lexically normalizes a path: removes `.` components, folds `dir/..`, collapses repeated slashes.
/// Leading `..` of a relative path are kept.
pub fn normalize_path(path: &str) -> String {
    let absolute = path.starts_with('/');
    let mut parts: Vec<&str> = Vec::new();
    for part in path.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                if parts.last().is_some_and(|p| *p != "..") {
                    parts.pop();
                } else if !absolute {
                    parts.push("..");
                }
            }
            p => parts.push(p),
        }
    }
    let joined = parts.join("/");
    if absolute {
        format!("/{joined}")
    } else {
        joined
    }
}

/// Joins a DWARF directory and file name the way compilers mean it.
fn join_path(dir: &str, file: &str) -> String {
    if file.starts_with('/') || dir.is_empty() {
        file.to_string()
    } else if dir.ends_with('/') {
        format!("{dir}{file}")
    } else {
        format!("{dir}/{file}")
    }
}

/// The last component of a path.
pub(crate) fn base_name(path: &str) -> &str {
    path.rsplit('/').next().unwrap_or(path)
}

/// Whether `path` (normalized) matches a user's file query: equal, or ends with `/` + query.
pub(crate) fn path_matches(path: &str, query: &str) -> bool {
    path == query
        || (path.len() > query.len()
            && path.ends_with(query)
            && path.as_bytes()[path.len() - query.len() - 1] == b'/')
}

/// One compilation unit that has a line program.
pub(crate) struct CuLines {
    /// Offset of the unit header in `.debug_info`.
    pub(crate) unit_offset: gimli::DebugInfoOffset<usize>,
    /// DW_AT_language of the unit, if given.
    pub(crate) language: Option<gimli::DwLang>,
}

/// A file entry of a unit: (unit index, raw file index, normalized full path).
pub(crate) type FileEntryRef = (u32, u32, Arc<str>);

/// Statement rows of some files of a unit, keyed by (unit index, file indices).
type FileRowsCache = HashMap<(u32, Vec<u32>), Arc<Vec<Row>>>;

/// Per module: compilation units and, per file base name, where it appears (unit index, file index).
pub(crate) struct LineIndex {
    pub(crate) cus: Vec<CuLines>,
    by_base: HashMap<Box<str>, Vec<(u32, u32)>>,
    /// Resolved paths of the file entries with a given base name (unit index, file index, path).
    by_base_paths: Mutex<HashMap<Box<str>, Arc<Vec<FileEntryRef>>>>,
    /// Units visited by scans since the index was built (see `note_unit_visited`).
    visited: std::sync::atomic::AtomicUsize,
    /// Rows of selected files of a unit, keyed by (unit index, file indices).
    file_rows: Mutex<FileRowsCache>,
}

/// How many units a scan visits before releasing the pages it touched (bounds resident memory on huge files).
pub(crate) const RELEASE_EVERY_UNITS: usize = 32;

/// One decoded line-table row.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Row {
    pub(crate) addr: u64,
    /// Raw file index of the unit's line program.
    pub(crate) file: u32,
    pub(crate) line: u32,
    pub(crate) is_stmt: bool,
    pub(crate) prologue_end: bool,
    pub(crate) end_sequence: bool,
}

fn attr_str(
    dwarf: &gimli::Dwarf<DwarfReader>,
    unit: &gimli::Unit<DwarfReader>,
    value: gimli::AttributeValue<DwarfReader>,
) -> Option<String> {
    let r = dwarf.attr_string(unit, value).ok()?;
    Some(r.to_string_lossy().ok()?.into_owned())
}

/// The full, normalized path of file `index` in a unit's line program header.
pub(crate) fn file_path(
    dwarf: &gimli::Dwarf<DwarfReader>,
    unit: &gimli::Unit<DwarfReader>,
    index: u64,
) -> Option<String> {
    let program = unit.line_program.as_ref()?;
    let header = program.header();
    let entry = header.file(index)?;
    let name = attr_str(dwarf, unit, entry.path_name())?;
    let comp_dir = unit
        .comp_dir
        .as_ref()
        .and_then(|d| d.to_string_lossy().ok())
        .map(|c| c.into_owned())
        .unwrap_or_default();
    let mut path = name;
    if !path.starts_with('/')
        && let Some(dir) = entry
            .directory(header)
            .and_then(|d| attr_str(dwarf, unit, d))
    {
        path = join_path(&dir, &path);
    }
    if !path.starts_with('/') {
        path = join_path(&comp_dir, &path);
    }
    Some(normalize_path(&path))
}

fn file_count(unit: &gimli::Unit<DwarfReader>) -> (u64, u64) {
    match unit.line_program.as_ref() {
        Some(p) => {
            let h = p.header();
            let n = h.file_names().len() as u64;
            if h.version() <= 4 { (1, n + 1) } else { (0, n) }
        }
        None => (0, 0),
    }
}

impl LineIndex {
    fn build(module: &Module) -> LineIndex {
        let mut cus = Vec::new();
        let mut by_base: HashMap<Box<str>, Vec<(u32, u32)>> = HashMap::new();
        let Some(dwarf) = module.dwarf() else {
            return LineIndex {
                cus,
                by_base,
                file_rows: Mutex::new(HashMap::new()),
                by_base_paths: Mutex::new(HashMap::new()),
                visited: Default::default(),
            };
        };
        let mut headers = dwarf.units();
        loop {
            let header = match headers.next() {
                Ok(Some(h)) => h,
                Ok(None) => break,
                Err(e) => {
                    tracing::warn!(module = %module.path().display(), error = %e, "stopped reading unit headers");
                    break;
                }
            };
            let Some(unit_offset) = header.offset().to_debug_info_offset(&header) else {
                continue;
            };
            let Ok(unit) = dwarf.unit(header) else {
                continue;
            };
            let Some(program) = unit.line_program.as_ref() else {
                continue;
            };
            let language = {
                let mut entries = unit.entries();
                match entries.next_dfs() {
                    Ok(Some(root)) => match root.attr_value(gimli::DW_AT_language) {
                        Some(gimli::AttributeValue::Language(l)) => Some(l),
                        _ => None,
                    },
                    _ => None,
                }
            };
            let cu_index = cus.len() as u32;
            if cus.len() % RELEASE_EVERY_UNITS == RELEASE_EVERY_UNITS - 1 {
                module.release_dwarf_pages();
            }
            let header = program.header();
            let (first, end) = file_count(&unit);
            for index in first..end {
                let Some(entry) = header.file(index) else {
                    continue;
                };
                let Ok(name) = dwarf.attr_string(&unit, entry.path_name()) else {
                    continue;
                };
                let Ok(name) = name.to_string_lossy() else {
                    continue;
                };
                let base = base_name(&name);
                match by_base.get_mut(base) {
                    Some(list) => {
                        if list.last() != Some(&(cu_index, index as u32)) {
                            list.push((cu_index, index as u32));
                        }
                    }
                    None => {
                        by_base.insert(base.into(), vec![(cu_index, index as u32)]);
                    }
                }
            }
            cus.push(CuLines {
                unit_offset,
                language,
            });
        }
        module.release_dwarf_pages();
        LineIndex {
            cus,
            by_base,
            file_rows: Mutex::new(HashMap::new()),
            by_base_paths: Mutex::new(HashMap::new()),
            visited: Default::default(),
        }
    }

    /// (unit index, raw file index, normalized path) of every file entry whose path matches `query`.
    pub(crate) fn matching_files(&self, module: &Module, query: &str) -> Vec<(u32, u32, Arc<str>)> {
        let query = normalize_path(query);
        self.entries_with_base(module, base_name(&query))
            .iter()
            .filter(|(_, _, path)| path_matches(path, &query))
            .cloned()
            .collect()
    }

    /// (unit index, raw file index, normalized path) of every file entry with this base name.
    fn entries_with_base(&self, module: &Module, base: &str) -> Arc<Vec<(u32, u32, Arc<str>)>> {
        if let Ok(cache) = self.by_base_paths.lock()
            && let Some(hit) = cache.get(base)
        {
            return hit.clone();
        }
        let found = Arc::new(self.resolve_entries_with_base(module, base));
        if let Ok(mut cache) = self.by_base_paths.lock() {
            cache.insert(base.into(), found.clone());
        }
        found
    }

    fn resolve_entries_with_base(&self, module: &Module, base: &str) -> Vec<(u32, u32, Arc<str>)> {
        let mut out = Vec::new();
        let Some(candidates) = self.by_base.get(base) else {
            return out;
        };
        let Some(dwarf) = module.dwarf() else {
            return out;
        };
        let mut current: Option<(u32, gimli::Unit<DwarfReader>)> = None;
        for &(cu, file) in candidates {
            if current.as_ref().is_none_or(|(c, _)| *c != cu) {
                let Some(info) = self.cus.get(cu as usize) else {
                    continue;
                };
                let Some(unit) = module.parse_unit(info.unit_offset) else {
                    continue;
                };
                current = Some((cu, unit));
                self.note_unit_visited(module);
            }
            let Some((_, unit)) = &current else { continue };
            if let Some(path) = file_path(dwarf, unit, u64::from(file)) {
                out.push((cu, file, Arc::from(path)));
            }
        }
        out
    }

    /// Every distinct base name known (for suggestions).
    pub(crate) fn base_names(&self) -> impl Iterator<Item = &str> {
        self.by_base.keys().map(|k| &**k)
    }

    /// Distinct full paths of every file with a given base name (for suggestions and ambiguity messages).
    pub(crate) fn paths_with_base(&self, module: &Module, base: &str) -> Vec<Arc<str>> {
        let mut out: Vec<Arc<str>> = Vec::new();
        for (_, _, p) in self.entries_with_base(module, base).iter() {
            if !out.contains(p) {
                out.push(p.clone());
            }
        }
        out
    }

    /// The statement rows of unit `cu` for the given file indices (decoded once, then cached).
    pub(crate) fn file_rows(
        &self,
        module: &Module,
        cu: u32,
        files: &[u32],
    ) -> Option<Arc<Vec<Row>>> {
        let key = (cu, files.to_vec());
        if let Ok(cache) = self.file_rows.lock()
            && let Some(r) = cache.get(&key)
        {
            return Some(r.clone());
        }
        let rows = Arc::new(self.decode(module, cu, Some(files))?);
        if let Ok(mut cache) = self.file_rows.lock() {
            cache.insert(key, rows.clone());
        }
        Some(rows)
    }

    /// Every row of unit `cu`, in program order (not cached: used for one function's prologue).
    pub(crate) fn all_rows(&self, module: &Module, cu: u32) -> Option<Vec<Row>> {
        self.decode(module, cu, None)
    }

    /// The source file and line of a file address inside unit `cu`, from its line table (the row that covers
    /// the address; of several rows at one address, the last, as addr2line does).
    pub(crate) fn location_in_unit(
        &self,
        module: &Module,
        cu: u32,
        addr: u64,
    ) -> Option<(String, u32)> {
        let rows = self.all_rows(module, cu)?;
        let mut found: Option<Row> = None;
        for pair in rows.windows(2) {
            let (row, next) = (pair[0], pair[1]);
            if !row.end_sequence && row.addr <= addr && addr < next.addr {
                found = Some(row);
            }
        }
        let row = found?;
        let unit = module.parse_unit(self.cus.get(cu as usize)?.unit_offset)?;
        let path = file_path(module.dwarf()?, &unit, u64::from(row.file))?;
        Some((path, row.line))
    }

    /// Counts a unit visited by a scan and releases touched pages every [`RELEASE_EVERY_UNITS`] units.
    fn note_unit_visited(&self, module: &Module) {
        let n = self
            .visited
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        if n % RELEASE_EVERY_UNITS == RELEASE_EVERY_UNITS - 1 {
            module.release_dwarf_pages();
        }
    }

    /// Runs the line program of unit `cu`, keeping the rows of `files` (statement rows only) or every row.
    fn decode(&self, module: &Module, cu: u32, files: Option<&[u32]>) -> Option<Vec<Row>> {
        let unit = module.parse_unit(self.cus.get(cu as usize)?.unit_offset)?;
        self.note_unit_visited(module);
        let program = unit.line_program?;
        let mut rows = Vec::new();
        let mut iter = program.rows();
        loop {
            match iter.next_row() {
                Ok(Some((_, row))) => {
                    let file = row.file_index() as u32;
                    if let Some(files) = files
                        && (!row.is_stmt() || row.end_sequence() || !files.contains(&file))
                    {
                        continue;
                    }
                    rows.push(Row {
                        addr: row.address(),
                        file,
                        line: row.line().map(|l| l.get() as u32).unwrap_or(0),
                        is_stmt: row.is_stmt(),
                        prologue_end: row.prologue_end(),
                        end_sequence: row.end_sequence(),
                    });
                }
                Ok(None) => break,
                Err(e) => {
                    tracing::debug!(error = %e, "line program stopped early");
                    break;
                }
            }
        }
        Some(rows)
    }
}

impl Module {
    /// The line index of this module (unit list and file names), built on first use from line-program headers.
    pub(crate) fn line_index(&self) -> &LineIndex {
        self.line_index.get_or_init(|| LineIndex::build(self))
    }
}

/// The first address after a function's prologue, from its line rows: the first `prologue_end` row (LLVM),
/// else — unless several lines start at the entry (an empty prologue, GCC -O2) — the first statement row after
/// the entry (GCC), else the entry itself. `end` bounds the function.
pub(crate) fn skip_prologue(rows: &[Row], entry: u64, end: u64) -> u64 {
    let inside = |r: &&Row| r.addr >= entry && r.addr < end && !r.end_sequence;
    if let Some(addr) = rows
        .iter()
        .filter(inside)
        .filter(|r| r.prologue_end)
        .map(|r| r.addr)
        .min()
    {
        return addr;
    }
    let mut entry_lines = rows
        .iter()
        .filter(|r| r.addr == entry && !r.end_sequence && r.line != 0)
        .map(|r| r.line);
    if let Some(first) = entry_lines.next()
        && entry_lines.any(|l| l != first)
    {
        return entry;
    }
    rows.iter()
        .filter(inside)
        .filter(|r| r.addr > entry && r.is_stmt && r.line != 0)
        .map(|r| r.addr)
        .min()
        .unwrap_or(entry)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalizes() {
        assert_eq!(
            normalize_path("./io/../sysdeps/unix/read.c"),
            "sysdeps/unix/read.c"
        );
        assert_eq!(normalize_path("/a/b/../c//d.c"), "/a/c/d.c");
        assert_eq!(normalize_path("../x/./y.c"), "../x/y.c");
    }

    #[test]
    fn matches_suffix_on_component_boundary() {
        assert!(path_matches("/src/app/main.rs", "main.rs"));
        assert!(path_matches("/src/app/main.rs", "app/main.rs"));
        assert!(!path_matches("/src/app/domain.rs", "main.rs"));
        assert!(path_matches("/src/app/main.rs", "/src/app/main.rs"));
    }
}
