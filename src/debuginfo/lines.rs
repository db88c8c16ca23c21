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
use super::object::LoadedObject;
use super::unit_tables::RELEASE_EVERY_UNITS;

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
    /// gdb's line table of a unit, by unit index.
    gdb_tables: Mutex<HashMap<u32, Arc<GdbTable>>>,
}

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
    pub(crate) discriminator: u64,
}

/// One entry of a unit's line table as gdb builds it (see [`LineIndex::gdb_table`]).
#[derive(Clone, Copy, Debug)]
pub(crate) struct TableEntry {
    pub(crate) addr: u64,
    pub(crate) line: u32,
    pub(crate) is_stmt: bool,
    pub(crate) prologue_end: bool,
}

/// A unit's line table as gdb builds it: per distinct source file ("subfile"), its entries sorted by address
/// (end markers, line 0, first at an address).
pub(crate) struct GdbTable {
    /// Normalized path of each subfile.
    pub(crate) paths: Vec<Arc<str>>,
    /// Entries of each subfile, sorted by address.
    pub(crate) entries: Vec<Vec<TableEntry>>,
}

impl GdbTable {
    /// Subfiles whose path is `path`.
    pub(crate) fn subfiles_named(&self, path: &str) -> Vec<usize> {
        (0..self.paths.len())
            .filter(|&i| &*self.paths[i] == path)
            .collect()
    }

    /// Every entry of every subfile (unsorted across subfiles).
    pub(crate) fn all_entries(&self) -> impl Iterator<Item = &TableEntry> {
        self.entries.iter().flatten()
    }

    /// The subfile and line gdb's `find_pc_sect_line` gives `addr`, which is the line gdb reports for a
    /// breakpoint there: in each subfile the last entry at or before `addr`; of several entries at that address,
    /// when the last is not a statement, the statement entry before it (gcc puts a function's declaration
    /// lines and its first statement at the entry, then the declaration line again as a non-statement row:
    /// gdb says the statement's line). The subfile whose entry is closest wins (the first on a tie); an end
    /// marker there means no line.
    pub(crate) fn line_for_pc(&self, addr: u64) -> Option<(usize, u32)> {
        let mut best: Option<(usize, &TableEntry)> = None;
        for (subfile, list) in self.entries.iter().enumerate() {
            let after = list.partition_point(|e| e.addr <= addr);
            if after == 0 {
                continue;
            }
            let mut at = after - 1;
            if !list[at].is_stmt {
                let mut back = at;
                while back > 0
                    && list[back - 1].addr == list[back].addr
                    && list[back - 1].line != 0
                    && !list[back].is_stmt
                {
                    back -= 1;
                }
                if list[back].is_stmt {
                    at = back;
                }
            }
            if best.is_none_or(|(_, b)| list[at].addr > b.addr) {
                best = Some((subfile, &list[at]));
            }
        }
        let (subfile, entry) = best?;
        (entry.line != 0).then_some((subfile, entry.line))
    }
}

/// Builds gdb's line table from the rows of a unit's line program, in program order. Reproduces what gdb's
/// DWARF reader (`lnp_state_machine::record_line`) and `buildsym_compunit::record_line` keep, because which
/// addresses survive decides where gdb (and so a user's expectation) puts a line breakpoint:
/// - a switch to another file at an address ends the previous file's lines there, which drops that file's
///   entries at the same address (an inlined callee's row at the caller's address hides the caller's row);
/// - a non-statement row of a new file at an address that already has a statement row is ignored;
/// - rows of line 0 are not recorded;
/// - consecutive rows of the same file and line are merged when the line has a nonzero discriminator.
pub(crate) fn gdb_table_from_rows(
    rows: &[Row],
    subfile_of: &dyn Fn(u32) -> usize,
    subfiles: usize,
) -> Vec<Vec<TableEntry>> {
    let mut tables: Vec<Vec<TableEntry>> = vec![Vec::new(); subfiles];
    fn record(list: &mut Vec<TableEntry>, entry: TableEntry) {
        if entry.line == 0 {
            let mut last_line = None;
            while let Some(last) = list.last() {
                last_line = Some(last.line);
                if last.addr != entry.addr {
                    break;
                }
                list.pop();
            }
            // An end marker of an empty sequence is not kept.
            if last_line.is_none_or(|l| l == 0) {
                return;
            }
        }
        list.push(entry);
    }
    let end_marker = |addr| TableEntry {
        addr,
        line: 0,
        is_stmt: true,
        prologue_end: false,
    };
    // State of gdb's line state machine, reset at each sequence.
    let mut last_subfile: Option<usize> = None;
    let mut last_line = 0u32;
    let mut last_address = 0u64;
    let mut stmt_at_address = false;
    let mut prev: Option<(u32, u32)> = None;
    let mut has_discriminator = false;
    for row in rows {
        let subfile = subfile_of(row.file);
        has_discriminator = match prev {
            Some((file, line)) if file == row.file && line == row.line => {
                has_discriminator || row.discriminator != 0
            }
            _ => row.discriminator != 0,
        };
        prev = Some((row.file, row.line));
        if row.end_sequence {
            if let Some(s) = last_subfile {
                record(&mut tables[s], end_marker(row.addr));
            }
            last_subfile = None;
            last_line = 0;
            last_address = 0;
            stmt_at_address = false;
            prev = None;
            continue;
        }
        let file_changed = last_subfile != Some(subfile);
        let ignore = (file_changed && last_address == row.addr && !row.is_stmt && stmt_at_address)
            || row.line == 0;
        if file_changed
            && !ignore
            && let Some(s) = last_subfile
        {
            record(&mut tables[s], end_marker(row.addr));
        }
        if !ignore && (file_changed || row.line != last_line || !has_discriminator) {
            last_subfile = Some(subfile);
            record(
                &mut tables[subfile],
                TableEntry {
                    addr: row.addr,
                    line: row.line,
                    is_stmt: row.is_stmt,
                    prologue_end: row.prologue_end,
                },
            );
            last_line = row.line;
        }
        if last_address != row.addr {
            stmt_at_address = false;
            last_address = row.addr;
        }
        stmt_at_address |= row.is_stmt;
    }
    for list in &mut tables {
        // gdb sorts by address, an end marker before the lines that start where it ends.
        list.sort_by_key(|e| (e.addr, e.line != 0));
    }
    tables
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
    pub(crate) fn build(object: &LoadedObject) -> LineIndex {
        let mut cus = Vec::new();
        let mut by_base: HashMap<Box<str>, Vec<(u32, u32)>> = HashMap::new();
        let Some(dwarf) = object.dwarf() else {
            return LineIndex {
                cus,
                by_base,
                file_rows: Mutex::new(HashMap::new()),
                gdb_tables: Mutex::new(HashMap::new()),
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
                    tracing::warn!(module = %object.path().display(), error = %e, "stopped reading unit headers");
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
                object.release_dwarf_pages();
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
        object.release_dwarf_pages();
        LineIndex {
            cus,
            by_base,
            file_rows: Mutex::new(HashMap::new()),
            gdb_tables: Mutex::new(HashMap::new()),
            by_base_paths: Mutex::new(HashMap::new()),
            visited: Default::default(),
        }
    }

    /// The header offset of the unit containing a `.debug_info` offset.
    pub(crate) fn unit_header_containing(
        &self,
        offset: gimli::DebugInfoOffset<usize>,
    ) -> Option<gimli::DebugInfoOffset<usize>> {
        let i = self.cus.partition_point(|c| c.unit_offset.0 <= offset.0);
        self.cus.get(i.checked_sub(1)?).map(|c| c.unit_offset)
    }

    /// (unit index, raw file index, normalized path) of every file entry whose path matches `query`.
    pub(crate) fn matching_files(
        &self,
        object: &LoadedObject,
        query: &str,
    ) -> Vec<(u32, u32, Arc<str>)> {
        let query = normalize_path(query);
        self.entries_with_base(object, base_name(&query))
            .iter()
            .filter(|(_, _, path)| path_matches(path, &query))
            .cloned()
            .collect()
    }

    /// (unit index, raw file index, normalized path) of every file entry with this base name.
    fn entries_with_base(
        &self,
        object: &LoadedObject,
        base: &str,
    ) -> Arc<Vec<(u32, u32, Arc<str>)>> {
        if let Ok(cache) = self.by_base_paths.lock()
            && let Some(hit) = cache.get(base)
        {
            return hit.clone();
        }
        let found = Arc::new(self.resolve_entries_with_base(object, base));
        if let Ok(mut cache) = self.by_base_paths.lock() {
            cache.insert(base.into(), found.clone());
        }
        found
    }

    fn resolve_entries_with_base(
        &self,
        object: &LoadedObject,
        base: &str,
    ) -> Vec<(u32, u32, Arc<str>)> {
        let mut out = Vec::new();
        let Some(candidates) = self.by_base.get(base) else {
            return out;
        };
        let Some(dwarf) = object.dwarf() else {
            return out;
        };
        let mut current: Option<(u32, gimli::Unit<DwarfReader>)> = None;
        for &(cu, file) in candidates {
            if current.as_ref().is_none_or(|(c, _)| *c != cu) {
                let Some(info) = self.cus.get(cu as usize) else {
                    continue;
                };
                let Some(unit) = object.parse_unit(info.unit_offset) else {
                    continue;
                };
                current = Some((cu, unit));
                self.note_unit_visited(object);
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
    pub(crate) fn paths_with_base(&self, object: &LoadedObject, base: &str) -> Vec<Arc<str>> {
        let mut out: Vec<Arc<str>> = Vec::new();
        for (_, _, p) in self.entries_with_base(object, base).iter() {
            if !out.contains(p) {
                out.push(p.clone());
            }
        }
        out
    }

    /// The statement entries of unit `cu` for the given file indices, as gdb's line table keeps them (an
    /// inlined callee's row at the same address hides the caller's; see [`gdb_table_from_rows`]), sorted by
    /// address. Computed once, then cached.
    pub(crate) fn file_rows(
        &self,
        object: &LoadedObject,
        cu: u32,
        files: &[u32],
    ) -> Option<Arc<Vec<Row>>> {
        let key = (cu, files.to_vec());
        if let Ok(cache) = self.file_rows.lock()
            && let Some(r) = cache.get(&key)
        {
            return Some(r.clone());
        }
        let table = self.gdb_table(object, cu)?;
        let unit = object.parse_unit(self.cus.get(cu as usize)?.unit_offset)?;
        let dwarf = object.dwarf()?;
        let mut subfiles: Vec<usize> = Vec::new();
        for &f in files {
            if let Some(path) = file_path(dwarf, &unit, u64::from(f)) {
                for s in table.subfiles_named(&path) {
                    if !subfiles.contains(&s) {
                        subfiles.push(s);
                    }
                }
            }
        }
        let mut rows: Vec<Row> = Vec::new();
        for s in subfiles {
            rows.extend(
                table.entries[s]
                    .iter()
                    .filter(|e| e.is_stmt && e.line != 0)
                    .map(|e| Row {
                        addr: e.addr,
                        file: files.first().copied().unwrap_or(0),
                        line: e.line,
                        is_stmt: true,
                        prologue_end: e.prologue_end,
                        end_sequence: false,
                        discriminator: 0,
                    }),
            );
        }
        rows.sort_by_key(|r| r.addr);
        let rows = Arc::new(rows);
        if let Ok(mut cache) = self.file_rows.lock() {
            cache.insert(key, rows.clone());
        }
        Some(rows)
    }

    /// Unit `cu`'s line table as gdb builds it (decoded once, then cached).
    pub(crate) fn gdb_table(&self, object: &LoadedObject, cu: u32) -> Option<Arc<GdbTable>> {
        if let Ok(cache) = self.gdb_tables.lock()
            && let Some(t) = cache.get(&cu)
        {
            return Some(t.clone());
        }
        let rows = self.decode(object, cu)?;
        let unit = object.parse_unit(self.cus.get(cu as usize)?.unit_offset)?;
        let dwarf = object.dwarf()?;
        // One subfile per distinct path (DWARF 5 names the primary file twice, as file 0 and file 1).
        let mut paths: Vec<Arc<str>> = Vec::new();
        let mut by_index: HashMap<u32, usize> = HashMap::new();
        for row in &rows {
            if by_index.contains_key(&row.file) {
                continue;
            }
            let path: Arc<str> = file_path(dwarf, &unit, u64::from(row.file))
                .unwrap_or_else(|| format!("<file {}>", row.file))
                .into();
            let id = match paths.iter().position(|p| *p == path) {
                Some(i) => i,
                None => {
                    paths.push(path);
                    paths.len() - 1
                }
            };
            by_index.insert(row.file, id);
        }
        let subfile_of = |f: u32| by_index.get(&f).copied().unwrap_or(0);
        let entries = gdb_table_from_rows(&rows, &subfile_of, paths.len().max(1));
        let table = Arc::new(GdbTable { paths, entries });
        if let Ok(mut cache) = self.gdb_tables.lock() {
            cache.insert(cu, table.clone());
        }
        Some(table)
    }

    /// Every row of unit `cu`, in program order (not cached: used for one function's prologue).
    pub(crate) fn all_rows(&self, object: &LoadedObject, cu: u32) -> Option<Vec<Row>> {
        self.decode(object, cu)
    }

    /// The source file and line of a file address inside unit `cu`, from its line table (the row that covers
    /// the address; of several rows at one address, the last, as addr2line does).
    pub(crate) fn location_in_unit(
        &self,
        object: &LoadedObject,
        cu: u32,
        addr: u64,
    ) -> Option<(String, u32)> {
        let rows = self.all_rows(object, cu)?;
        let mut found: Option<Row> = None;
        for pair in rows.windows(2) {
            let (row, next) = (pair[0], pair[1]);
            if !row.end_sequence && row.addr <= addr && addr < next.addr {
                found = Some(row);
            }
        }
        let row = found?;
        let unit = object.parse_unit(self.cus.get(cu as usize)?.unit_offset)?;
        let path = file_path(object.dwarf()?, &unit, u64::from(row.file))?;
        Some((path, row.line))
    }

    /// Counts a unit visited by a scan and releases touched pages every [`RELEASE_EVERY_UNITS`] units.
    fn note_unit_visited(&self, object: &LoadedObject) {
        let n = self
            .visited
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        if n % RELEASE_EVERY_UNITS == RELEASE_EVERY_UNITS - 1 {
            object.release_dwarf_pages();
        }
    }

    /// Runs the line program of unit `cu`: every row, in program order.
    fn decode(&self, object: &LoadedObject, cu: u32) -> Option<Vec<Row>> {
        let unit = object.parse_unit(self.cus.get(cu as usize)?.unit_offset)?;
        self.note_unit_visited(object);
        let program = unit.line_program?;
        let mut rows = Vec::new();
        let mut iter = program.rows();
        loop {
            match iter.next_row() {
                Ok(Some((_, row))) => {
                    let file = row.file_index() as u32;
                    rows.push(Row {
                        addr: row.address(),
                        file,
                        line: row.line().map(|l| l.get() as u32).unwrap_or(0),
                        is_stmt: row.is_stmt(),
                        prologue_end: row.prologue_end(),
                        end_sequence: row.end_sequence(),
                        discriminator: row.discriminator(),
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

    fn row(addr: u64, file: u32, line: u32, is_stmt: bool) -> Row {
        Row {
            addr,
            file,
            line,
            is_stmt,
            prologue_end: false,
            end_sequence: false,
            discriminator: 0,
        }
    }

    fn end(addr: u64) -> Row {
        Row {
            end_sequence: true,
            ..row(addr, 1, 0, true)
        }
    }

    fn lines_of(table: &[TableEntry]) -> Vec<(u64, u32, bool)> {
        table.iter().map(|e| (e.addr, e.line, e.is_stmt)).collect()
    }

    #[test]
    fn the_line_at_a_function_entry_is_its_statement_not_the_trailing_declaration_row() {
        // gcc -O2 at str_upper's entry: lines 137..141 as statements, then 137 again as a non-statement;
        // gdb (find_pc_sect_line) says 141 there, and 137 at 0x107 where the non-statement row starts.
        let mut rows: Vec<Row> = (137..=141).map(|l| row(0x100, 1, l, true)).collect();
        rows.push(row(0x100, 1, 137, false));
        rows.push(row(0x102, 1, 141, false));
        rows.push(row(0x107, 1, 137, false));
        rows.push(end(0x110));
        let entries = gdb_table_from_rows(&rows, &|f| f as usize - 1, 1);
        let table = GdbTable {
            paths: vec![Arc::from("a.c")],
            entries,
        };
        assert_eq!(table.line_for_pc(0x100), Some((0, 141)));
        assert_eq!(table.line_for_pc(0x101), Some((0, 141)));
        assert_eq!(table.line_for_pc(0x107), Some((0, 137)));
        assert_eq!(table.line_for_pc(0x110), None, "the end marker has no line");
        assert_eq!(table.line_for_pc(0xff), None);
    }

    #[test]
    fn a_callee_file_starting_at_the_same_address_hides_the_callers_row() {
        // Caller (file 1) line 10 at 0x100, then an inlined header (file 2) at the same address: gdb ends
        // file 1's lines at 0x100 (an end marker), which drops its line 10 there; line 10 at 0x108 stays.
        let rows = [
            row(0x100, 1, 10, true),
            row(0x100, 2, 5, true),
            row(0x104, 1, 11, true),
            row(0x108, 1, 10, true),
            end(0x110),
        ];
        let tables = gdb_table_from_rows(&rows, &|f| f as usize - 1, 2);
        assert_eq!(
            lines_of(&tables[0]),
            [
                (0x100, 0, true),
                (0x104, 11, true),
                (0x108, 10, true),
                (0x110, 0, true)
            ]
        );
        assert_eq!(lines_of(&tables[1]), [(0x100, 5, true), (0x104, 0, true)]);
    }

    #[test]
    fn a_non_statement_row_of_another_file_after_a_statement_is_ignored() {
        let rows = [
            row(0x100, 1, 10, true),
            row(0x100, 2, 5, false),
            row(0x104, 1, 11, true),
            end(0x108),
        ];
        let tables = gdb_table_from_rows(&rows, &|f| f as usize - 1, 2);
        assert_eq!(
            lines_of(&tables[0]),
            [(0x100, 10, true), (0x104, 11, true), (0x108, 0, true)]
        );
        assert!(tables[1].is_empty());
    }

    #[test]
    fn repeats_of_a_line_with_a_discriminator_merge_and_line_zero_is_not_kept() {
        let rows = [
            row(0x100, 1, 10, true),
            Row {
                discriminator: 1,
                ..row(0x104, 1, 10, true)
            },
            row(0x108, 1, 0, true),
            row(0x10c, 1, 12, true),
            row(0x110, 1, 12, true),
            end(0x114),
        ];
        let tables = gdb_table_from_rows(&rows, &|_| 0, 1);
        // Line 12 has no discriminator: its repeat is kept (gcc marks a prologue's end that way).
        assert_eq!(
            lines_of(&tables[0]),
            [
                (0x100, 10, true),
                (0x10c, 12, true),
                (0x110, 12, true),
                (0x114, 0, true)
            ]
        );
    }

    #[test]
    fn matches_suffix_on_component_boundary() {
        assert!(path_matches("/src/app/main.rs", "main.rs"));
        assert!(path_matches("/src/app/main.rs", "app/main.rs"));
        assert!(!path_matches("/src/app/domain.rs", "main.rs"));
        assert!(path_matches("/src/app/main.rs", "/src/app/main.rs"));
    }
}
