//! Location queries over a whole process image: `file:line`, function names and `*0xADDR` resolved to probe
//! sites; source files and the lines where probes can go; function search; languages.
//!
//! Owns the rules a user sees (a line without code moves to the next line with code and says so; names match
//! plain, qualified or mangled; errors suggest near matches). Never reads target memory.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::addr::{FileAddr, RuntimeAddr};
use super::blocks::{Block, BlockKind, UnitBlocks};
use super::demangle::demangle;
use super::error::LocationError;
use super::image::ProcessImage;
use super::lines::{GdbTable, base_name, normalize_path};
use super::module::Module;
use super::names::{MatchRank, NameQuery, instance_chains_at, match_key};

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
    /// For an inlined copy: the out-of-line function it was inlined into.
    pub inlined_into: Option<String>,
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
                inlined_into: None,
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
            inlined_into: if frames.len() > 1 {
                frames.last().and_then(|f| f.function.clone())
            } else {
                None
            },
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

        // The sites gdb's `decode_line_full` chooses: of the line's statement addresses, the lowest in each
        // innermost block (function, inlined copy, lexical block that declares something), moved past the
        // function's prologue when before it. A `for` line split in several ranges of one block gives one site;
        // a loop unrolled into several blocks, or an inlined function's copies, give one each.
        let mut sites: Vec<ResolvedSite> = Vec::new();
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
            if addrs.is_empty() {
                continue;
            }
            let blocks = UnitBlocks::of_unit(module, hit.cu);
            let table = module.line_index().gdb_table(module, hit.cu);
            let mut kept: Vec<u64> = Vec::new();
            let mut seen_blocks: BTreeSet<usize> = BTreeSet::new();
            for addr in addrs {
                match blocks.as_ref().and_then(|b| b.innermost(addr)) {
                    Some(block) => {
                        if seen_blocks.insert(block.die) {
                            kept.push(addr);
                        }
                    }
                    // Without a block (assembly, stripped units) every address is its own site.
                    None => kept.push(addr),
                }
            }
            let mut placed: Vec<(u64, u32)> = Vec::new();
            for addr in kept {
                let mut at = (addr, chosen);
                if let (Some(blocks), Some(table)) = (&blocks, &table)
                    && let Some(function) = blocks.function_at(addr)
                {
                    let after = post_prologue(module, blocks, table, function);
                    if addr < after {
                        moved = true;
                        // The line gdb reports there (find_pc_sect_line), when it is of this file.
                        let line = table
                            .line_for_pc(after)
                            .filter(|(subfile, _)| normalize_path(&table.paths[*subfile]) == path)
                            .map(|(_, l)| l)
                            .or_else(|| line_at(table, after));
                        at = (after, line.unwrap_or(chosen));
                    }
                }
                if !placed.contains(&at) {
                    placed.push(at);
                }
            }
            let placed_addrs: Vec<u64> = placed.iter().map(|p| p.0).collect();
            let chains = instance_chains_at(module, module.line_index(), hit.cu, &placed_addrs);
            for ((addr, at_line), mut chain) in placed.into_iter().zip(chains) {
                // The site belongs to the function whose code the line is: an inlined copy called from this very
                // line is the callee, not the line.
                while chain.len() > 1
                    && chain.last().is_some_and(|inner| {
                        blocks
                            .as_ref()
                            .and_then(|b| b.by_die(inner.die))
                            .and_then(|b| b.call.as_ref())
                            .is_some_and(|(file, l)| *l == at_line && normalize_path(file) == path)
                    })
                {
                    chain.pop();
                }
                let function = match chain.last() {
                    Some(i) => i.name.clone(),
                    None => module.symbol_for(FileAddr(addr)).map(|(n, _)| n),
                };
                let inlined = chain.last().is_some_and(|i| i.inlined);
                sites.push(ResolvedSite {
                    address: module.to_runtime(FileAddr(addr)),
                    function,
                    file: Some(path.clone()),
                    line: Some(at_line),
                    inlined,
                    inlined_into: if inlined {
                        chain.first().and_then(|i| i.name.clone())
                    } else {
                        None
                    },
                });
            }
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

    /// Where a probe on the function (or inlined copy) starting at file address `entry` of unit `cu` goes, and
    /// the file:line gdb reports for its breakpoint there. `inlined` says `entry` is an inlined copy's (its DIE
    /// `die`, when known, picks the copy among those starting at the same address).
    fn function_site(
        &self,
        module: &Module,
        cu: u32,
        entry: u64,
        die: Option<usize>,
        inlined: bool,
        units: &mut UnitCache,
    ) -> Option<FunctionSite> {
        let blocks = units
            .entry((module as *const Module as usize, cu))
            .or_insert_with(|| UnitBlocks::of_unit(module, cu).map(Arc::new))
            .clone()?;
        let table = module.line_index().gdb_table(module, cu)?;
        let label_at = |addr: u64| {
            table
                .line_for_pc(addr)
                .map(|(subfile, line)| (normalize_path(&table.paths[subfile]), line))
        };
        if inlined {
            let block = die
                .and_then(|d| blocks.by_die(d))
                .filter(|b| b.kind == BlockKind::Inlined)
                .or_else(|| {
                    blocks
                        .blocks
                        .iter()
                        .filter(|b| b.kind == BlockKind::Inlined && b.contains(entry))
                        .max_by_key(|b| b.depth)
                })?;
            // gdb 13 does not skip a prologue in an inlined copy; its label is the line of the address.
            let addr = inlined_copy_site(module, &blocks, block, entry);
            let addr = own_code_from(module, &blocks, &table, block, addr).unwrap_or(addr);
            return Some(FunctionSite {
                addr,
                label: label_at(addr),
            });
        }
        let block = blocks
            .blocks
            .iter()
            .filter(|b| b.kind == BlockKind::Function && b.contains(entry))
            .max_by_key(|b| b.depth)?;
        let start = post_prologue(module, &blocks, &table, block);
        match own_code_from(module, &blocks, &table, block, start) {
            Some(own) => Some(FunctionSite {
                addr: own,
                label: label_at(own),
            }),
            None if !blocks.in_nested_inline(block, start) => Some(FunctionSite {
                addr: start,
                label: label_at(start),
            }),
            _ => {
                // gdb's `skip_prologue_sal`: a breakpoint moved past the prologue into an inlined callee is
                // labelled with the call of the outermost inlined copy there (the function's own line).
                let entry_pc = block.ranges.first().map_or(start, |r| r.0);
                let call = (start > entry_pc)
                    .then(|| {
                        blocks
                            .blocks
                            .iter()
                            .filter(|b| {
                                b.kind == BlockKind::Inlined
                                    && b.depth > block.depth
                                    && b.contains(start)
                            })
                            .min_by_key(|b| b.depth)
                            .and_then(|b| b.call.clone())
                    })
                    .flatten()
                    .map(|(file, line)| (normalize_path(&file), line));
                Some(FunctionSite {
                    addr: start,
                    label: call.or_else(|| label_at(start)),
                })
            }
        }
    }

    /// The first address after the prologue of the function entered at file address `entry` (unit unknown:
    /// found from the address).
    fn after_prologue(&self, module: &Module, entry: u64) -> u64 {
        let Some(unit) = module.unit_offset_for(FileAddr(entry)) else {
            return entry;
        };
        let index = module.line_index();
        let Ok(cu) = index.cus.binary_search_by_key(&unit.0, |c| c.unit_offset.0) else {
            return entry;
        };
        self.function_site(module, cu as u32, entry, None, false, &mut UnitCache::new())
            .map_or(entry, |site| site.addr)
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
                                    inlined: e.inlined,
                                    has_lines: true,
                                    cu: Some(e.cu),
                                    die: Some(e.die),
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
                                    inlined: false,
                                    has_lines: module.debug_info().found,
                                    cu: None,
                                    die: None,
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
        // Instances and copies of one function share units: each unit's blocks are read once.
        let mut units = UnitCache::new();
        for c in chosen {
            let module = &self.modules()[c.module];
            let mut label = None;
            let addr = if !c.has_lines {
                c.entry
            } else if let Some(cu) = c.cu {
                match self.function_site(module, cu, c.entry, c.die, c.inlined, &mut units) {
                    Some(site) => {
                        label = site.label;
                        site.addr
                    }
                    None => c.entry,
                }
            } else if c.inlined {
                c.entry
            } else {
                self.after_prologue(module, c.entry)
            };
            if !c.has_lines && note.is_none() {
                note = Some(format!(
                    "{} has no line table; the probe goes at the function entry",
                    c.name
                ));
            }
            // File and line from the unit's line table when the index knows the unit (cheap); otherwise
            // through the symbolizer.
            let line = label.or_else(|| {
                c.cu.and_then(|cu| module.line_index().location_in_unit(module, cu, addr))
                    .map(|(f, l)| (normalize_path(&f), l))
            });
            let mut site = self.site_at(module.to_runtime(FileAddr(addr)), Some(&c.name), line);
            site.inlined = c.inlined;
            if c.inlined {
                // Which function this copy was inlined into: the outermost function at the address.
                site.inlined_into = c.cu.and_then(|cu| {
                    instance_chains_at(module, module.line_index(), cu, &[addr])
                        .into_iter()
                        .next()
                        .and_then(|chain| chain.into_iter().next())
                        .and_then(|outer| outer.name)
                });
            }
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

/// gdb's `skip_prologue_sal` for an out-of-line function: the first address after its prologue.
/// - a `prologue_end` entry in the function (LLVM; gdb 13+ trusts it first);
/// - else, for a GCC unit with location lists (gdb's `locations_valid`), the entry itself;
/// - else the architecture's prologue analysis (LLVM: where the entry's line ends; GCC: past
///   `push %rbp; mov %rsp,%rbp`), moved to the start of the next line-table entry when that lands mid-line.
fn post_prologue(module: &Module, blocks: &UnitBlocks, table: &GdbTable, function: &Block) -> u64 {
    let entry = function.ranges.first().map_or(0, |r| r.0);
    let end = function
        .ranges
        .iter()
        .find(|r| r.0 <= entry && entry < r.1)
        .map_or(u64::MAX, |r| r.1);
    if let Some(addr) = table
        .all_entries()
        .filter(|e| e.prologue_end && e.line != 0 && e.addr >= entry && e.addr < end)
        .map(|e| e.addr)
        .min()
    {
        return addr;
    }
    if blocks.locations_valid() {
        return entry;
    }
    let mut pc = if blocks.producer_is_llvm() {
        llvm_prologue_end(table, entry, end)
    } else {
        frame_setup_end(module, entry)
    };
    let starts_here = table.all_entries().any(|e| e.addr == pc);
    if !starts_here
        && let Some(next) = table
            .all_entries()
            .filter(|e| e.addr > pc)
            .map(|e| e.addr)
            .min()
        && next >= entry
        && next < end
    {
        pc = next;
    }
    pc
}

/// gdb's `skip_prologue_using_sal`, simplified: the entry when two lines start there (an empty prologue),
/// else the start of the next statement entry.
fn llvm_prologue_end(table: &GdbTable, entry: u64, end: u64) -> u64 {
    let mut lines = table
        .all_entries()
        .filter(|e| e.addr == entry && e.line != 0)
        .map(|e| e.line);
    if let Some(first) = lines.next()
        && lines.any(|l| l != first)
    {
        return entry;
    }
    table
        .all_entries()
        .filter(|e| e.addr > entry && e.addr < end && e.is_stmt && e.line != 0)
        .map(|e| e.addr)
        .min()
        .unwrap_or(entry)
}

/// x86-64 frame setup at a function entry, as gdb's `amd64_analyze_prologue` reads it: `[endbr64] push %rbp;
/// mov %rsp,%rbp` ends at the returned address; a function without it (frameless) starts at its entry.
fn frame_setup_end(module: &Module, entry: u64) -> u64 {
    let Some(bytes) = code_bytes(module, entry, 12) else {
        return entry;
    };
    let mut i = 0;
    if bytes.starts_with(&[0xf3, 0x0f, 0x1e, 0xfa]) {
        i = 4;
    }
    if bytes.get(i) != Some(&0x55) {
        return entry;
    }
    let rest = &bytes[i + 1..];
    if rest.starts_with(&[0x48, 0x89, 0xe5]) || rest.starts_with(&[0x48, 0x8b, 0xec]) {
        return entry + i as u64 + 4;
    }
    if rest.starts_with(&[0x89, 0xe5]) || rest.starts_with(&[0x8b, 0xec]) {
        return entry + i as u64 + 3;
    }
    entry
}

/// Whether code entered at `start` surely reaches `target` once: every instruction in between falls through
/// (calls return), and no branch of the function (`ranges`) lands in `(start, target]`.
fn runs_once_from(module: &Module, ranges: &[(u64, u64)], start: u64, target: u64) -> bool {
    use iced_x86::{Decoder, DecoderOptions, FlowControl};
    const MAX_FUNCTION_BYTES: u64 = 1 << 20;
    if !ranges.iter().any(|r| r.0 <= start && target < r.1) {
        return false;
    }
    let Some(bytes) = code_bytes(module, start, target - start) else {
        return false;
    };
    let mut decoder = Decoder::with_ip(64, &bytes, start, DecoderOptions::NONE);
    let mut reached = start;
    for insn in &mut decoder {
        if insn.is_invalid() {
            return false;
        }
        match insn.flow_control() {
            FlowControl::Next | FlowControl::Call | FlowControl::IndirectCall => {}
            _ => return false,
        }
        reached = insn.next_ip();
    }
    if reached != target {
        return false;
    }
    // No branch anywhere in the function lands between: that would run the target again, or skip the start.
    for &(from, to) in ranges {
        let len = to.saturating_sub(from);
        if len == 0 || len > MAX_FUNCTION_BYTES {
            return false;
        }
        let Some(code) = code_bytes(module, from, len) else {
            return false;
        };
        let mut decoder = Decoder::with_ip(64, &code, from, DecoderOptions::NONE);
        for insn in &mut decoder {
            let lands_between = |t: u64| t > start && t <= target;
            match insn.flow_control() {
                FlowControl::UnconditionalBranch | FlowControl::ConditionalBranch
                    if lands_between(insn.near_branch_target()) =>
                {
                    return false;
                }
                _ => {}
            }
        }
    }
    true
}

/// `len` bytes of the module's file at file address `addr` (code, read from the ELF, not the process).
fn code_bytes(module: &Module, addr: u64, len: u64) -> Option<Vec<u8>> {
    module.file_bytes(
        crate::addr::FileAddr(addr),
        crate::addr::FileAddr(addr.saturating_add(len)),
    )
}

/// The line of the entry that starts at `addr` (any file), if one does.
fn line_at(table: &GdbTable, addr: u64) -> Option<u32> {
    table
        .all_entries()
        .filter(|e| e.addr == addr && e.line != 0)
        .map(|e| e.line)
        .last()
}

/// The blocks of units already read, by (module identity, unit index).
type UnitCache = BTreeMap<(usize, u32), Option<Arc<UnitBlocks>>>;

/// A function candidate from DWARF or a symbol table.
struct Candidate {
    module: usize,
    name: String,
    file: Option<String>,
    line: Option<u32>,
    entry: u64,
    inlined: bool,
    has_lines: bool,
    /// Unit index in the module's line index, when known from the DWARF index.
    cu: Option<u32>,
    /// Offset of its DIE in that unit, when known from the DWARF index.
    die: Option<usize>,
}

/// Where a function probe goes, and the file:line gdb labels its breakpoint there with (when known).
struct FunctionSite {
    addr: u64,
    label: Option<(String, u32)>,
}

/// When `start` lies in an inlined callee nested in `block` (optimized code calls `black_box`,
/// `NonNull::new`... first), nothing of the function is in scope there: its own first statement after `start`,
/// when every call surely passes it once (straight-line code from `start` to it, which no branch of the function
/// jumps into). gdb stays in the callee; None when `start` is the block's own code or no such statement exists.
fn own_code_from(
    module: &Module,
    blocks: &UnitBlocks,
    table: &GdbTable,
    block: &Block,
    start: u64,
) -> Option<u64> {
    if !blocks.in_nested_inline(block, start) {
        return None;
    }
    let own = table
        .all_entries()
        .filter(|e| {
            e.is_stmt
                && e.line != 0
                && e.addr > start
                && block.contains(e.addr)
                && !blocks.in_nested_inline(block, e.addr)
        })
        .map(|e| e.addr)
        .min()?;
    let ranges = match block.kind {
        BlockKind::Function => &block.ranges,
        _ => &blocks.function_at(start)?.ranges,
    };
    runs_once_from(module, ranges, start, own).then_some(own)
}

/// Where a probe on the inlined copy `copy` (entered at `entry_pc`, its DW_AT_entry_pc or first address) goes.
/// gdb 13 breaks at the start of the copy's first range (its `block::entry_pc`, which ignores DW_AT_entry_pc).
/// With gcc -O2 that range is often code scheduled before the call proper: when straight-line code leads from
/// it to `entry_pc` (both run exactly as often) it is gdb's address that is used. When it is not (a branch
/// between: the copy's first range is the shared start of two copies, or a return path reached only on some
/// calls), a probe there would count other paths, so the copy's own entry is used, as later gdb does.
fn inlined_copy_site(module: &Module, blocks: &UnitBlocks, copy: &Block, entry_pc: u64) -> u64 {
    let Some(&(first, _)) = copy.ranges.first() else {
        return entry_pc;
    };
    if first == entry_pc {
        return first;
    }
    let Some(function) = blocks.function_at(entry_pc) else {
        return entry_pc;
    };
    let (from, to) = (first.min(entry_pc), first.max(entry_pc));
    if function.contains(first) && runs_once_from(module, &function.ranges, from, to) {
        first
    } else {
        entry_pc
    }
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
