//! Location queries over a whole process image: `file:line`, function names and `*0xADDR` resolved to probe
//! sites; source files and the lines where probes can go; function search; languages.
//!
//! Owns the rules a user sees (a line without code moves to the next line with code and says so; names match
//! plain, qualified or mangled; errors suggest near matches). Never reads target memory.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::addr::{FileAddr, RuntimeAddr};
use super::demangle::demangle;
use super::error::LocationError;
use super::image::ProcessImage;
use super::lines::{base_name, normalize_path, skip_prologue};
use super::module::Module;
use super::names::{Instance, MatchRank, NameQuery, instances_at, match_key};

/// A function found by [`ProcessImage::find_functions`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FunctionMatch {
    /// Demangled qualified name.
    pub name: String,
    /// Declaration file.
    pub file: Option<String>,
    /// Declaration line.
    pub line: Option<u32>,
    /// Entry address in the process.
    pub address: RuntimeAddr,
}

/// A location resolved to code addresses.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Resolution {
    /// Every address the location stands for (inlined copies, generic instances, several units).
    pub sites: Vec<ResolvedSite>,
    /// What was adjusted, e.g. "line 41 has no code; using line 42".
    pub note: Option<String>,
}

/// One code address of a resolved location.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ResolvedSite {
    /// Where a probe goes.
    pub address: RuntimeAddr,
    /// The (innermost) function at that address.
    pub function: Option<String>,
    /// Source file.
    pub file: Option<String>,
    /// Source line.
    pub line: Option<u32>,
    /// The address is inside an inlined copy.
    pub inlined: bool,
}

/// A source file known to the debug info.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SourceFileInfo {
    /// Full path as the DWARF says (comp_dir + dir + file, normalized).
    pub path: PathBuf,
    /// Lines that have `is_stmt` line-table rows: where a probe can go.
    pub code_lines: BTreeSet<u32>,
    /// The module whose debug info names the file (the first, if several do).
    pub module_path: PathBuf,
}

const SYSTEM_DIRS: [&str; 6] = [
    "/lib/",
    "/lib64/",
    "/usr/lib/",
    "/usr/lib64/",
    "/usr/lib32/",
    "/usr/libexec/",
];

impl Module {
    /// A system library (libc, libstdc++...): searched only when nothing in the program itself matches, and
    /// indexed by symbols rather than DIEs for name queries.
    pub fn is_system(&self) -> bool {
        let p = self.path().to_string_lossy();
        SYSTEM_DIRS.iter().any(|d| p.starts_with(d))
            || self
                .debug_info()
                .path
                .is_some_and(|d| d.starts_with("/usr/lib/debug"))
    }
}

fn edit_distance(a: &str, b: &str) -> usize {
    let a: Vec<char> = a.chars().collect();
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.iter().enumerate() {
        let mut cur = vec![i + 1; b.len() + 1];
        for (j, cb) in b.iter().enumerate() {
            cur[j + 1] = (prev[j] + usize::from(ca != cb))
                .min(prev[j + 1] + 1)
                .min(cur[j] + 1);
        }
        prev = cur;
    }
    prev[b.len()]
}

fn similar(a: &str, b: &str) -> bool {
    let (a, b) = (a.to_lowercase(), b.to_lowercase());
    a.contains(&b) || b.contains(&a) || edit_distance(&a, &b) <= 2.max(a.len().min(b.len()) / 4)
}

/// Splits "file:line" or "file:line:column" into (file, line).
fn split_file_line(location: &str) -> Option<(&str, u32)> {
    let (left, right) = location.rsplit_once(':')?;
    if right.is_empty()
        || !right.bytes().all(|b| b.is_ascii_digit())
        || left.is_empty()
        || left.ends_with(':')
    {
        return None;
    }
    if let Some((file, line)) = left.rsplit_once(':')
        && !file.is_empty()
        && !file.ends_with(':')
        && !line.is_empty()
        && line.bytes().all(|b| b.is_ascii_digit())
    {
        return Some((file, line.parse().ok()?));
    }
    Some((left, right.parse().ok()?))
}

fn parse_address(text: &str) -> Option<u64> {
    let t = text.trim();
    match t.strip_prefix("0x").or_else(|| t.strip_prefix("0X")) {
        Some(hex) => u64::from_str_radix(hex, 16).ok(),
        None => t.parse().ok(),
    }
}

/// One matched file entry: which module and unit, which file indices in that unit.
struct FileHit {
    module: usize,
    cu: u32,
    files: Vec<u32>,
}

impl ProcessImage {
    /// Modules in search order: the program's own modules first, then system libraries.
    fn tiers(&self) -> [Vec<usize>; 2] {
        let mut user = Vec::new();
        let mut system = Vec::new();
        let main = self.main_module().map(Arc::as_ptr);
        for (i, m) in self.modules().iter().enumerate() {
            if Some(Arc::as_ptr(m)) == main {
                user.insert(0, i);
            } else if m.is_system() {
                system.push(i);
            } else {
                user.push(i);
            }
        }
        [user, system]
    }

    fn has_any_dwarf(&self) -> bool {
        self.modules().iter().any(|m| m.debug_info().found)
    }

    /// Finds the file entries matching `file_query`: all from the first tier that has any; errors when none
    /// match or when several distinct files do.
    fn find_file(&self, file_query: &str) -> Result<(String, Vec<FileHit>), LocationError> {
        let query = normalize_path(file_query.trim().trim_start_matches("./"));
        if query.is_empty() {
            return Err(LocationError::Syntax {
                location: file_query.to_string(),
                reason: "empty file name".into(),
            });
        }
        if !self.has_any_dwarf() {
            return Err(LocationError::NoDebugInfo);
        }
        for tier in self.tiers() {
            let mut by_path: BTreeMap<Arc<str>, Vec<FileHit>> = BTreeMap::new();
            for &mi in &tier {
                let module = &self.modules()[mi];
                if !module.debug_info().found {
                    continue;
                }
                let index = module.line_index();
                let mut per_cu: BTreeMap<(Arc<str>, u32), Vec<u32>> = BTreeMap::new();
                for (cu, file, path) in index.matching_files(module, &query) {
                    per_cu.entry((path, cu)).or_default().push(file);
                }
                for ((path, cu), files) in per_cu {
                    by_path.entry(path).or_default().push(FileHit {
                        module: mi,
                        cu,
                        files,
                    });
                }
            }
            if by_path.is_empty() {
                continue;
            }
            if by_path.len() > 1 {
                // An exact full path wins; otherwise the user must say which.
                if let Some(hits) = by_path.remove(query.as_str()) {
                    return Ok((query, hits));
                }
                return Err(LocationError::AmbiguousFile {
                    query: file_query.to_string(),
                    candidates: by_path.keys().take(10).map(|p| p.to_string()).collect(),
                });
            }
            if let Some((path, hits)) = by_path.into_iter().next() {
                return Ok((path.to_string(), hits));
            }
        }
        Err(LocationError::FileNotFound {
            query: file_query.to_string(),
            suggestions: self.file_suggestions(&query),
        })
    }

    fn file_suggestions(&self, query: &str) -> Vec<String> {
        let base = base_name(query);
        let mut out: Vec<String> = Vec::new();
        for tier in self.tiers() {
            for &mi in &tier {
                let module = &self.modules()[mi];
                if !module.debug_info().found {
                    continue;
                }
                let index = module.line_index();
                let mut bases: Vec<&str> =
                    index.base_names().filter(|b| similar(b, base)).collect();
                bases.sort_by_key(|b| edit_distance(&b.to_lowercase(), &base.to_lowercase()));
                for b in bases.into_iter().take(5) {
                    for p in index.paths_with_base(module, b) {
                        if out.len() < 5 && !out.iter().any(|o| **o == *p) {
                            out.push(p.to_string());
                        }
                    }
                }
            }
            if !out.is_empty() {
                break;
            }
        }
        out
    }

    /// Lines with code for the matched file, over every unit and module that has it.
    fn code_lines(&self, hits: &[FileHit]) -> BTreeSet<u32> {
        let mut lines = BTreeSet::new();
        for hit in hits {
            let module = &self.modules()[hit.module];
            if let Some(rows) = module.line_index().file_rows(module, hit.cu, &hit.files) {
                lines.extend(rows.iter().map(|r| r.line).filter(|&l| l != 0));
            }
        }
        lines
    }

    /// Source file known to the debug info matching a base name or path suffix: its full path and the lines
    /// that have `is_stmt` line-table rows (where a probe can go).
    pub fn source_file(&self, file_query: &str) -> Result<SourceFileInfo, LocationError> {
        let (path, hits) = self.find_file(file_query)?;
        let code_lines = self.code_lines(&hits);
        let module_path = hits
            .first()
            .map(|h| self.modules()[h.module].path().to_owned())
            .unwrap_or_default();
        Ok(SourceFileInfo {
            path: PathBuf::from(path),
            code_lines,
            module_path,
        })
    }

    /// Resolve a location string: "file.c:42" (base name or path suffix; a line with no code moves to the next
    /// line with code and says so), "function_name" (plain, qualified `Cache::get`, `crate::mod::f`, or
    /// mangled; the address after the prologue), "*0xADDR" (a runtime address). Every inlined copy and every
    /// instance is returned. Errors suggest near matches.
    pub fn resolve_location(&self, location: &str) -> Result<Resolution, LocationError> {
        let loc = location.trim();
        if loc.is_empty() {
            return Err(LocationError::Syntax {
                location: location.to_string(),
                reason: "empty location".into(),
            });
        }
        if let Some(addr_text) = loc.strip_prefix('*') {
            let addr = parse_address(addr_text).ok_or_else(|| LocationError::Syntax {
                location: location.to_string(),
                reason: format!("{addr_text:?} is not an address"),
            })?;
            return self.resolve_address(addr);
        }
        if let Some((file, line)) = split_file_line(loc) {
            return self.resolve_file_line(file, line);
        }
        if loc.contains(char::is_whitespace) && !loc.contains(" as ") {
            return Err(LocationError::Syntax {
                location: location.to_string(),
                reason: "unexpected space".into(),
            });
        }
        self.resolve_function(loc)
    }

    fn resolve_address(&self, addr: u64) -> Result<Resolution, LocationError> {
        if self.module_for(RuntimeAddr(addr)).is_none() {
            return Err(LocationError::AddressNotMapped { addr });
        }
        Ok(Resolution {
            sites: vec![self.site_at(RuntimeAddr(addr), None, None)],
            note: None,
        })
    }

    /// Describes the site at an address: innermost function, file and line (unless given; when both are given
    /// nothing is looked up and `inlined` is left false for the caller to set).
    fn site_at(
        &self,
        address: RuntimeAddr,
        function: Option<&str>,
        line: Option<(String, u32)>,
    ) -> ResolvedSite {
        if let (Some(function), Some((file, line))) = (function, &line) {
            return ResolvedSite {
                address,
                function: Some(function.to_string()),
                file: Some(file.clone()),
                line: Some(*line),
                inlined: false,
            };
        }
        let frames = self.symbolize(address, false);
        let innermost = frames.first();
        let (file, line) = match line {
            Some((f, l)) => (Some(f), Some(l)),
            None => (
                innermost
                    .and_then(|f| f.file.clone())
                    .map(|f| normalize_path(&f)),
                innermost.and_then(|f| f.line),
            ),
        };
        ResolvedSite {
            address,
            function: function
                .map(str::to_string)
                .or_else(|| innermost.and_then(|f| f.function.clone())),
            file,
            line,
            inlined: frames.len() > 1,
        }
    }

    fn resolve_file_line(&self, file: &str, line: u32) -> Result<Resolution, LocationError> {
        let (path, hits) = self.find_file(file)?;
        let code = self.code_lines(&hits);
        let Some(&chosen) = code.range(line..).next() else {
            let last = code.iter().next_back().copied();
            return Err(match last {
                None => LocationError::NoCodeAtLine {
                    file: path,
                    line,
                    last_code_line: 0,
                    nearest: Vec::new(),
                },
                Some(last) => LocationError::NoCodeAtLine {
                    file: path,
                    line,
                    last_code_line: last,
                    nearest: vec![last],
                },
            });
        };
        let note = (chosen != line)
            .then(|| format!("line {line} of {path} has no code; using line {chosen}"));

        // Candidate addresses: statement rows of the chosen line; keep the lowest per function instance
        // (the out-of-line function, or each inlined copy: each has its own DIE).
        let mut best: BTreeMap<(usize, u32, u64), (u64, Option<Instance>)> = BTreeMap::new();
        let mut moved = false;
        for hit in &hits {
            let module = &self.modules()[hit.module];
            let Some(rows) = module.line_index().file_rows(module, hit.cu, &hit.files) else {
                continue;
            };
            let mut addrs: Vec<u64> = rows
                .iter()
                .filter(|r| r.line == chosen)
                .map(|r| r.addr)
                .collect();
            addrs.sort_unstable();
            addrs.dedup();
            let instances = instances_at(module, hit.cu, &addrs);
            for (addr, instance) in addrs.into_iter().zip(instances) {
                // Without a DIE (assembly, stripped units) every address is its own site.
                let key = (
                    hit.module,
                    hit.cu,
                    instance.as_ref().map_or(u64::MAX - addr, |i| i.die as u64),
                );
                let slot = best.entry(key).or_insert((addr, instance.clone()));
                if addr < slot.0 {
                    *slot = (addr, instance);
                }
            }
        }
        let mut sites: Vec<ResolvedSite> = Vec::new();
        for ((mi, cu, _), (addr, instance)) in best {
            let module = &self.modules()[mi];
            let mut addr = addr;
            let mut at_line = chosen;
            // A line that starts a function: put the probe after the prologue, where arguments are readable.
            if let Some(inst) = instance.as_ref().filter(|i| !i.inlined && i.entry == addr) {
                let after = self.prologue_end_in_unit(module, cu, addr, inst.end);
                if after != addr {
                    addr = after;
                    moved = true;
                    if let Some((_, l)) = module.line_index().location_in_unit(module, cu, addr) {
                        at_line = l;
                    }
                }
            }
            let function = match &instance {
                Some(i) => i.name.clone(),
                None => module.symbol_for(FileAddr(addr)).map(|(n, _)| n),
            };
            sites.push(ResolvedSite {
                address: module.to_runtime(FileAddr(addr)),
                function,
                file: Some(path.clone()),
                line: Some(at_line),
                inlined: instance.as_ref().is_some_and(|i| i.inlined),
            });
        }
        sites.sort_by_key(|s| s.address);
        sites.dedup_by_key(|s| s.address);
        let note = match (note, moved) {
            (note, false) => note,
            (Some(n), true) => Some(format!("{n}; the function's prologue is skipped")),
            (None, true) => Some(format!(
                "line {chosen} starts a function; the probe goes after its prologue"
            )),
        };
        Ok(Resolution { sites, note })
    }

    /// The first address after the prologue of a function entered at `entry` in unit `cu`.
    fn prologue_end_in_unit(&self, module: &Module, cu: u32, entry: u64, end: u64) -> u64 {
        match module.line_index().all_rows(module, cu) {
            Some(rows) => skip_prologue(&rows, entry, end),
            None => entry,
        }
    }

    /// The first address after the prologue of the function entered at file address `entry` (unit unknown).
    fn after_prologue(&self, module: &Module, entry: u64, end: Option<u64>) -> u64 {
        let end = end.unwrap_or_else(|| {
            module
                .symbol_table()
                .lookup(entry)
                .map(|s| {
                    if s.size > 0 {
                        s.addr.saturating_add(s.size)
                    } else {
                        u64::MAX
                    }
                })
                .unwrap_or(u64::MAX)
        });
        let Some(unit) = module.unit_offset_for(FileAddr(entry)) else {
            return entry;
        };
        let index = module.line_index();
        let Ok(cu) = index.cus.binary_search_by_key(&unit.0, |c| c.unit_offset.0) else {
            return entry;
        };
        self.prologue_end_in_unit(module, cu as u32, entry, end)
    }

    /// Every function instance (DWARF) or symbol matching `query`, best rank first, per module tier.
    fn function_candidates(
        &self,
        query: &NameQuery,
        want_substring: bool,
    ) -> Vec<(MatchRank, usize, Candidate)> {
        let mut out = Vec::new();
        for (tier_no, tier) in self.tiers().into_iter().enumerate() {
            for &mi in &tier {
                let module = &self.modules()[mi];
                if module.debug_info().found && tier_no == 0 {
                    for e in &module.name_index().entries {
                        if let Some(rank) = query.rank(&e.name, &e.key, None)
                            && (want_substring || rank != MatchRank::Substring)
                        {
                            out.push((
                                rank,
                                tier_no,
                                Candidate {
                                    module: mi,
                                    name: e.name.to_string(),
                                    file: e.decl_file.as_ref().map(|f| f.to_string()),
                                    line: e.decl_line,
                                    entry: e.entry,
                                    end: Some(e.end),
                                    inlined: e.inlined,
                                    has_lines: true,
                                    cu: Some(e.cu),
                                },
                            ));
                        }
                    }
                } else {
                    for s in module.symbol_table().iter() {
                        let name = demangle(s.name);
                        let key = match_key(&name);
                        if let Some(rank) = query.rank(&name, &key, Some(s.name))
                            && (want_substring || rank != MatchRank::Substring)
                        {
                            out.push((
                                rank,
                                tier_no,
                                Candidate {
                                    module: mi,
                                    name,
                                    file: None,
                                    line: None,
                                    entry: s.addr,
                                    end: (s.size > 0).then(|| s.addr.saturating_add(s.size)),
                                    inlined: false,
                                    has_lines: module.debug_info().found,
                                    cu: None,
                                },
                            ));
                        }
                    }
                }
            }
        }
        out
    }

    fn resolve_function(&self, name: &str) -> Result<Resolution, LocationError> {
        let query = NameQuery::new(name);
        let candidates = self.function_candidates(&query, false);
        let Some(best) = candidates
            .iter()
            .map(|(rank, tier, _)| (*rank, *tier))
            .min()
        else {
            return Err(LocationError::FunctionNotFound {
                name: name.to_string(),
                suggestions: self.function_suggestions(name),
            });
        };
        let chosen: Vec<&Candidate> = candidates
            .iter()
            .filter(|(r, t, _)| (*r, *t) == best)
            .map(|(_, _, c)| c)
            .collect();
        let mut distinct: Vec<&str> = chosen.iter().map(|c| c.name.as_str()).collect();
        distinct.sort_unstable();
        distinct.dedup();
        if distinct.len() > 12 {
            return Err(LocationError::AmbiguousFunction {
                name: name.to_string(),
                candidates: distinct.iter().take(12).map(|s| s.to_string()).collect(),
                count: distinct.len(),
            });
        }
        let mut sites = Vec::new();
        let mut note = None;
        for c in chosen {
            let module = &self.modules()[c.module];
            let addr = if c.inlined || !c.has_lines {
                c.entry
            } else if let (Some(cu), Some(end)) = (c.cu, c.end) {
                self.prologue_end_in_unit(module, cu, c.entry, end)
            } else {
                self.after_prologue(module, c.entry, c.end)
            };
            if !c.has_lines && note.is_none() {
                note = Some(format!(
                    "{} has no line table; the probe goes at the function entry",
                    c.name
                ));
            }
            // File and line from the unit's line table when the index knows the unit (cheap); otherwise
            // through the symbolizer.
            let line =
                c.cu.and_then(|cu| module.line_index().location_in_unit(module, cu, addr));
            let mut site = self.site_at(
                module.to_runtime(FileAddr(addr)),
                Some(&c.name),
                line.map(|(f, l)| (normalize_path(&f), l)),
            );
            site.inlined = c.inlined;
            sites.push(site);
        }
        sites.sort_by_key(|s| s.address);
        sites.dedup_by_key(|s| s.address);
        Ok(Resolution { sites, note })
    }

    fn function_suggestions(&self, name: &str) -> Vec<String> {
        let key = match_key(name);
        let last = key.rsplit("::").next().unwrap_or(&key).to_string();
        let mut scored: Vec<(usize, String)> = Vec::new();
        let mut seen = BTreeSet::new();
        for (_, _, c) in self.function_candidates(&NameQuery::new(&last), true) {
            if seen.insert(c.name.clone()) {
                scored.push((c.name.len(), c.name));
            }
        }
        if scored.is_empty() {
            // No name contains the last component: fall back to edit distance over the program's functions.
            for tier in self.tiers().into_iter().take(1) {
                for &mi in &tier {
                    let module = &self.modules()[mi];
                    for e in &module.name_index().entries {
                        let k = e.key.rsplit("::").next().unwrap_or(&e.key);
                        let d = edit_distance(k, &last);
                        if d <= 2.max(last.len() / 4) && seen.insert(e.name.to_string()) {
                            scored.push((d, e.name.to_string()));
                        }
                    }
                }
            }
        }
        scored.sort();
        scored.into_iter().take(5).map(|(_, n)| n).collect()
    }

    /// Substring (case-insensitive) and qualified-name match over demangled function names (DWARF functions of
    /// the program, then symbols of system libraries). Exact matches first. Each with its declaration
    /// file:line and entry address. Functions that exist only inlined are listed once, at their first copy.
    pub fn find_functions(&self, query: &str, limit: usize) -> Vec<FunctionMatch> {
        let q = NameQuery::new(query);
        let mut candidates = self.function_candidates(&q, true);
        candidates.sort_by(|a, b| {
            (a.0, a.1, a.2.inlined, a.2.name.len(), &a.2.name, a.2.entry).cmp(&(
                b.0,
                b.1,
                b.2.inlined,
                b.2.name.len(),
                &b.2.name,
                b.2.entry,
            ))
        });
        let mut out: Vec<FunctionMatch> = Vec::new();
        let mut seen_out_of_line: BTreeSet<(usize, String)> = BTreeSet::new();
        let mut seen: BTreeSet<(String, u64)> = BTreeSet::new();
        for (_, _, c) in candidates {
            if out.len() >= limit {
                break;
            }
            if c.inlined && seen_out_of_line.contains(&(c.module, c.name.clone())) {
                continue;
            }
            let module = &self.modules()[c.module];
            let address = module.to_runtime(FileAddr(c.entry));
            if !c.inlined {
                seen_out_of_line.insert((c.module, c.name.clone()));
            } else if !seen_out_of_line.insert((c.module, c.name.clone())) {
                continue;
            }
            if !seen.insert((c.name.clone(), address.0)) {
                continue;
            }
            out.push(FunctionMatch {
                name: c.name,
                file: c.file.map(|f| normalize_path(&f)),
                line: c.line,
                address,
            });
        }
        out
    }

    /// Languages present in the program (DW_AT_language of the main executable's compilation units), most
    /// common first: "c", "c++", "rust", ... System libraries are not counted.
    pub fn languages(&self) -> Vec<String> {
        let Some(main) = self.main_module() else {
            return Vec::new();
        };
        let mut counts: BTreeMap<&'static str, usize> = BTreeMap::new();
        for cu in &main.line_index().cus {
            if let Some(lang) = cu.language {
                *counts.entry(language_name(lang)).or_default() += 1;
            }
        }
        let mut langs: Vec<(&str, usize)> = counts.into_iter().collect();
        langs.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(b.0)));
        langs.into_iter().map(|(l, _)| l.to_string()).collect()
    }

    /// The module containing `path` as the process sees it (convenience for callers holding a path).
    pub fn module_named(&self, path: &Path) -> Option<&Arc<Module>> {
        self.module_by_path(path)
    }
}

/// A function candidate from DWARF or a symbol table.
struct Candidate {
    module: usize,
    name: String,
    file: Option<String>,
    line: Option<u32>,
    entry: u64,
    end: Option<u64>,
    inlined: bool,
    has_lines: bool,
    /// Unit index in the module's line index, when known from the DWARF index.
    cu: Option<u32>,
}

/// The short name of a DWARF language.
pub fn language_name(lang: gimli::DwLang) -> &'static str {
    match lang {
        gimli::DW_LANG_C89
        | gimli::DW_LANG_C
        | gimli::DW_LANG_C99
        | gimli::DW_LANG_C11
        | gimli::DW_LANG_C17 => "c",
        gimli::DW_LANG_C_plus_plus
        | gimli::DW_LANG_C_plus_plus_03
        | gimli::DW_LANG_C_plus_plus_11
        | gimli::DW_LANG_C_plus_plus_14
        | gimli::DW_LANG_C_plus_plus_17
        | gimli::DW_LANG_C_plus_plus_20 => "c++",
        gimli::DW_LANG_Rust => "rust",
        gimli::DW_LANG_Go => "go",
        gimli::DW_LANG_Mips_Assembler => "asm",
        gimli::DW_LANG_Fortran77
        | gimli::DW_LANG_Fortran90
        | gimli::DW_LANG_Fortran95
        | gimli::DW_LANG_Fortran03
        | gimli::DW_LANG_Fortran08 => "fortran",
        gimli::DW_LANG_D => "d",
        gimli::DW_LANG_Swift => "swift",
        gimli::DW_LANG_Zig => "zig",
        _ => "other",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_locations() {
        assert_eq!(split_file_line("main.c:42"), Some(("main.c", 42)));
        assert_eq!(
            split_file_line("src/main.rs:42:7"),
            Some(("src/main.rs", 42))
        );
        assert_eq!(split_file_line("Cache::get"), None);
        assert_eq!(split_file_line("crate::mod::f"), None);
        assert_eq!(split_file_line("C:\\x.c:3"), Some(("C:\\x.c", 3)));
    }

    #[test]
    fn distances() {
        assert_eq!(edit_distance("main.rs", "mian.rs"), 2);
        assert!(similar("cache.rs", "cache.r"));
    }
}
