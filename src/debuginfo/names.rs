//! The function-name side of the index: every function with code (out-of-line definitions and inlined
//! copies) with its demangled qualified name, declaration file:line and entry address. Built on the first
//! name query by walking the DIEs of a module once (never at attach), then kept.
//!
//! Owns name normalization and matching (plain, qualified, mangled). Never reads target memory.

use std::collections::HashMap;
use std::sync::Arc;

use gimli::{AttributeValue, DebuggingInformationEntry, UnitOffset};

use gimli::Reader as _;

use super::bytes::DwarfReader;
use super::demangle::{
    demangle_name, is_legacy_closure_name, legacy_closure_spelling, strip_generics,
};
use super::lines::{LineIndex, file_path};
use super::object::LoadedObject;
use super::qualifiers::function_qualifiers;
use super::unit_tables::{RELEASE_EVERY_UNITS, unit_key};

/// One function instance with code.
#[derive(Clone, Debug)]
pub(crate) struct FnEntry {
    /// Display name: demangled, qualified.
    pub(crate) name: Arc<str>,
    /// Lowercase matching key (generic arguments and `<T as Trait>` wrappers removed).
    pub(crate) key: Arc<str>,
    /// Declaration file and line.
    pub(crate) decl_file: Option<Arc<str>>,
    pub(crate) decl_line: Option<u32>,
    /// Entry address (file address): the start of the first range.
    pub(crate) entry: u64,
    /// An inlined copy (DW_TAG_inlined_subroutine) rather than an out-of-line function.
    pub(crate) inlined: bool,
    /// Index of its unit in the module's line index.
    pub(crate) cu: u32,
    /// Offset of its DIE in the unit (tells apart copies that start at the same address).
    pub(crate) die: usize,
}

/// All function instances of one module.
pub(crate) struct NameIndex {
    pub(crate) entries: Vec<FnEntry>,
}

/// The lowercase matching key of a function name: `<a::B<T> as c::D>::f` -> `a::b::f`.
pub(crate) fn match_key(name: &str) -> String {
    let mut s = name.trim();
    let mut owned;
    if s.starts_with('<') {
        // Find the '>' closing the leading '<'.
        let mut depth = 0usize;
        let mut close = None;
        for (i, c) in s.char_indices() {
            match c {
                '<' => depth += 1,
                '>' => {
                    depth = depth.saturating_sub(1);
                    if depth == 0 {
                        close = Some(i);
                        break;
                    }
                }
                _ => {}
            }
        }
        if let Some(close) = close {
            let inner = &s[1..close];
            let self_type = top_level_as(inner).map_or(inner, |at| &inner[..at]);
            owned = format!(
                "{}{}",
                self_type
                    .trim_start_matches('&')
                    .trim_start_matches("mut ")
                    .trim(),
                &s[close + 1..]
            );
            s = &owned;
        }
    }
    owned = strip_generics(s);
    owned.retain(|c| c != ' ');
    owned.to_lowercase()
}

/// Position of a top-level " as " in a `<X as Y>` body.
fn top_level_as(inner: &str) -> Option<usize> {
    let mut depth = 0usize;
    let bytes = inner.as_bytes();
    for (i, &b) in bytes.iter().enumerate() {
        match b {
            b'<' => depth += 1,
            b'>' => depth = depth.saturating_sub(1),
            b' ' if depth == 0 && inner[i..].starts_with(" as ") => return Some(i),
            _ => {}
        }
    }
    None
}

/// How well a function name matches a query.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum MatchRank {
    /// The whole qualified name (or the mangled name) is the query.
    Exact,
    /// The name ends with `::query` (a qualified suffix: `Cache::get`, or a plain name in any namespace).
    Qualified,
    /// The query appears somewhere in the name (case-insensitive).
    Substring,
}

/// A prepared query.
pub(crate) struct NameQuery {
    raw: String,
    /// The query demangled if it was a mangled name (`_ZN...`, `_R...`), else the query.
    display: String,
    key: String,
    suffix: String,
    /// The query as written, lowercased, spaces collapsed: found in a name as it reads (`Http1Transaction>::parse`
    /// in `<a::Server as a::Http1Transaction>::parse`) or in its [`short_spelling`] (`Rect as Shape` in
    /// `<app::Rect as app::Shape>::area`).
    spelled: String,
    /// [`short_spelling`] of the query: `<Rect as app::Shape>::area` -> `<rect as shape>::area`.
    spelled_short: String,
    /// The query spells a closure or async body as a legacy symbol does (`handle_request::{{closure}}`): names
    /// are also matched in their legacy spelling, since they show DWARF's numbered one.
    legacy_closure: bool,
}

/// A name with the paths inside its `<...>` shortened to their last segment, lowercased, spaces collapsed:
/// `<app::shapes::Rect as app::Shape>::area` -> `<rect as shape>::area`.
pub(crate) fn short_spelling(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    let mut depth = 0usize;
    let mut chars = name.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '<' => depth += 1,
            '>' => depth = depth.saturating_sub(1),
            ':' if depth > 0 && chars.peek() == Some(&':') => {
                chars.next();
                // Drop the path segment just written.
                while out
                    .chars()
                    .last()
                    .is_some_and(|p| p.is_alphanumeric() || p == '_' || p == '$')
                {
                    out.pop();
                }
                continue;
            }
            _ => {}
        }
        out.push(c);
    }
    collapse_spaces(&out.to_lowercase())
}

/// True when `spelled` (lowercase, spaces collapsed) appears in `name` as it reads, ignoring case: any piece
/// of the demangled spelling `nm -C` prints (`Server as`, `Http1Transaction>::parse`).
fn reads_as(name: &str, spelled: &str) -> bool {
    if spelled.is_empty() || name.len() < spelled.len() {
        return false;
    }
    if name.contains("  ") {
        return collapse_spaces(&name.to_lowercase()).contains(spelled);
    }
    if name.is_ascii() {
        let (name, spelled) = (name.as_bytes(), spelled.as_bytes());
        return name
            .windows(spelled.len())
            .any(|w| w.eq_ignore_ascii_case(spelled));
    }
    name.to_lowercase().contains(spelled)
}

fn collapse_spaces(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

impl NameQuery {
    pub(crate) fn new(query: &str) -> NameQuery {
        let raw = query.trim().to_string();
        let display = if raw.starts_with("_Z") || raw.starts_with("_R") {
            demangle_name(&raw, None)
        } else {
            raw.clone()
        };
        let key = match_key(&display);
        let suffix = format!("::{key}");
        let spelled = collapse_spaces(&display.to_lowercase());
        let spelled_short = short_spelling(&display);
        let legacy_closure = is_legacy_closure_name(&display);
        NameQuery {
            raw,
            display,
            key,
            suffix,
            spelled,
            spelled_short,
            legacy_closure,
        }
    }

    pub(crate) fn rank(&self, name: &str, key: &str, linkage: Option<&str>) -> Option<MatchRank> {
        if self.key.is_empty() {
            return None;
        }
        let rank = self.rank_spelling(name, key, linkage);
        if self.legacy_closure
            && rank != Some(MatchRank::Exact)
            && let Some(legacy) = legacy_closure_spelling(name)
        {
            let legacy_rank = self.rank_spelling(&legacy, &match_key(&legacy), None);
            return rank.into_iter().chain(legacy_rank).min();
        }
        rank
    }

    fn rank_spelling(&self, name: &str, key: &str, linkage: Option<&str>) -> Option<MatchRank> {
        if name == self.raw
            || name == self.display
            || key == self.key
            || linkage == Some(self.raw.as_str())
        {
            Some(MatchRank::Exact)
        } else if key.ends_with(&self.suffix) {
            Some(MatchRank::Qualified)
        } else if key.contains(&self.key) || reads_as(name, &self.spelled) {
            Some(MatchRank::Substring)
        } else if self.spelled_short.contains([' ', '<', '>'])
            && short_spelling(name).contains(&self.spelled_short)
        {
            // `Foo as Trait`: the trait part of a trait impl's name, which the key leaves out, with its paths
            // shortened as a person writes them.
            Some(MatchRank::Substring)
        } else {
            None
        }
    }
}

/// Per-unit state while walking DIEs.
struct UnitWalk<'a> {
    object: &'a LoadedObject,
    /// The module's line index: its list of units.
    lines: &'a LineIndex,
    dwarf: &'a gimli::Dwarf<DwarfReader>,
    unit: &'a gimli::Unit<DwarfReader>,
    language: Option<gimli::DwLang>,
    /// Names already computed for abstract origins / specifications in this unit.
    origin_names: HashMap<usize, Option<Names>>,
    decl_files: HashMap<u64, Option<Arc<str>>>,
    /// Declaration paths shared across units (the same headers and modules recur in every unit).
    paths: &'a mut HashMap<String, Arc<str>>,
    /// Per unit (by `.debug_info` offset), the namespaces and types qualifying each function DIE, read when a
    /// function is named by its DWARF scopes (see [`display_name`](UnitWalk::display_name)).
    qualifiers: HashMap<usize, Arc<HashMap<usize, String>>>,
}

#[derive(Clone)]
struct Names {
    name: Option<String>,
    linkage: Option<String>,
    decl_file: Option<Arc<str>>,
    decl_line: Option<u32>,
    /// The DIE `name` is the `DW_AT_name` of (the function's own, or its origin's).
    name_die: Option<NameDie>,
}

/// A function's display name, or what it is built from when its DWARF scopes name it.
enum Display {
    Named(String),
    /// The `DW_AT_name` of `die`, to be qualified by the namespaces and types around that DIE.
    ByScopes {
        die: NameDie,
        name: String,
    },
}

/// Where a DIE is: in the unit being walked, or anywhere in `.debug_info` (an origin in another unit).
#[derive(Clone, Copy)]
enum NameDie {
    Local(usize),
    Global(gimli::DebugInfoOffset<usize>),
}

fn string_of(
    dwarf: &gimli::Dwarf<DwarfReader>,
    unit: &gimli::Unit<DwarfReader>,
    v: AttributeValue<DwarfReader>,
) -> Option<String> {
    Some(
        dwarf
            .attr_string(unit, v)
            .ok()?
            .to_string_lossy()
            .ok()?
            .into_owned(),
    )
}

impl UnitWalk<'_> {
    fn decl_file(&mut self, index: u64) -> Option<Arc<str>> {
        if let Some(known) = self.decl_files.get(&index) {
            return known.clone();
        }
        let path = file_path(self.dwarf, self.unit, index).map(|p| match self.paths.get(&p) {
            Some(shared) => shared.clone(),
            None => {
                let shared: Arc<str> = Arc::from(p.as_str());
                self.paths.insert(p, shared.clone());
                shared
            }
        });
        self.decl_files.insert(index, path.clone());
        path
    }

    /// Name, linkage name and declaration of a DIE, following DW_AT_abstract_origin / DW_AT_specification.
    fn names(&mut self, entry: &DebuggingInformationEntry<DwarfReader>, hops: u32) -> Names {
        let mut names = Names {
            name: None,
            linkage: None,
            decl_file: None,
            decl_line: None,
            name_die: None,
        };
        let mut reference = None;
        for attr in entry.attrs() {
            match attr.name() {
                gimli::DW_AT_name => {
                    names.name = string_of(self.dwarf, self.unit, attr.value());
                    names.name_die = Some(NameDie::Local(entry.offset().0));
                }
                gimli::DW_AT_linkage_name | gimli::DW_AT_MIPS_linkage_name => {
                    names.linkage = string_of(self.dwarf, self.unit, attr.value())
                }
                gimli::DW_AT_decl_file => {
                    if let AttributeValue::FileIndex(i) = attr.value() {
                        names.decl_file = self.decl_file(i);
                    } else if let Some(i) = attr.udata_value() {
                        names.decl_file = self.decl_file(i);
                    }
                }
                gimli::DW_AT_decl_line => names.decl_line = attr.udata_value().map(|l| l as u32),
                gimli::DW_AT_abstract_origin | gimli::DW_AT_specification => {
                    reference = Some(attr.value())
                }
                _ => {}
            }
        }
        if (names.name.is_none() || names.linkage.is_none() || names.decl_line.is_none())
            && hops < 4
        {
            if let Some(AttributeValue::UnitRef(offset)) = reference {
                if let Some(other) = self.origin(offset, hops) {
                    if names.name.is_none() {
                        names.name_die = other.name_die;
                    }
                    names.name = names.name.or(other.name);
                    names.linkage = names.linkage.or(other.linkage);
                    if names.decl_line.is_none() {
                        names.decl_line = other.decl_line;
                        names.decl_file = other.decl_file;
                    }
                }
            } else if let Some(AttributeValue::DebugInfoRef(offset)) = reference {
                // A reference into another unit (LTO): read the names there, without its decl file context.
                if let Some(other) = cross_unit_names(self.object, self.lines, offset) {
                    if names.name.is_none() {
                        names.name_die = other.name_die;
                    }
                    names.name = names.name.or(other.name);
                    names.linkage = names.linkage.or(other.linkage);
                    names.decl_line = names.decl_line.or(other.decl_line);
                    names.decl_file = names.decl_file.or(other.decl_file);
                }
            }
        }
        names
    }

    fn origin(&mut self, offset: UnitOffset<usize>, hops: u32) -> Option<Names> {
        if let Some(cached) = self.origin_names.get(&offset.0) {
            return cached.clone();
        }
        let result = self
            .unit
            .entry(offset)
            .ok()
            .map(|e| self.names(&e, hops + 1));
        self.origin_names.insert(offset.0, result.clone());
        result
    }

    /// A function's name as its stack frames show it (symbolize.rs names frames by the same rule): the linkage
    /// name demangled, except a Rust closure or async body, which a legacy symbol calls `{{closure}}` while
    /// DWARF numbers it (`{closure#1}`, `{async_fn#0}`) and gdb shows that: its `DW_AT_name` qualified by the
    /// namespaces around the DIE that names it.
    fn display_name(&mut self, names: &Names, scopes: &[(isize, String)]) -> Option<String> {
        Some(match self.display(names, scopes)? {
            Display::Named(name) => name,
            Display::ByScopes { die, name } => self.scoped_name(die, &name),
        })
    }

    /// [`display_name`](UnitWalk::display_name), leaving the scopes of a DWARF-named function to the caller.
    fn display(&self, names: &Names, scopes: &[(isize, String)]) -> Option<Display> {
        if let Some(linkage) = &names.linkage {
            let demangled = demangle_name(linkage, self.language);
            if is_legacy_closure_name(&demangled)
                && let (Some(name), Some(die)) = (&names.name, names.name_die)
            {
                return Some(Display::ByScopes {
                    die,
                    name: name.clone(),
                });
            }
            if demangled != *linkage {
                return Some(Display::Named(with_generic_args(
                    demangled,
                    names.name.as_deref(),
                )));
            }
        }
        let name = names.name.as_ref()?;
        if scopes.is_empty() {
            return Some(Display::Named(name.clone()));
        }
        let mut qualified: Vec<&str> = scopes.iter().map(|(_, s)| s.as_str()).collect();
        qualified.push(name);
        Some(Display::Named(qualified.join("::")))
    }

    /// `name` qualified by the scopes around `die`.
    fn scoped_name(&mut self, die: NameDie, name: &str) -> String {
        match self.qualifier_of(die) {
            Some(qualifier) => format!("{qualifier}::{name}"),
            None => name.to_string(),
        }
    }

    /// The namespaces and types around a function DIE (`hyper_server::handle_request`), as
    /// [`function_qualifiers`] gives them to frame names.
    fn qualifier_of(&mut self, die: NameDie) -> Option<String> {
        let (unit_offset, local) = match die {
            NameDie::Local(local) => (unit_key(self.unit)?, local),
            NameDie::Global(offset) => {
                let unit_offset = self.lines.unit_header_containing(offset)?;
                (unit_offset.0, offset.0.checked_sub(unit_offset.0)?)
            }
        };
        if !self.qualifiers.contains_key(&unit_offset) {
            let built = if Some(unit_offset) == unit_key(self.unit) {
                function_qualifiers(self.object, self.unit)
            } else {
                let unit = self.object.unit_at(gimli::DebugInfoOffset(unit_offset))?;
                function_qualifiers(self.object, &unit)
            };
            self.qualifiers.insert(unit_offset, Arc::new(built));
        }
        self.qualifiers.get(&unit_offset)?.get(&local).cloned()
    }

    /// Entry address and end of the first range of a DIE with code.
    fn code_range(&self, entry: &DebuggingInformationEntry<DwarfReader>) -> Option<(u64, u64)> {
        let unit_ref = self.unit.unit_ref(self.dwarf);
        let mut ranges = unit_ref.die_ranges(entry).ok()?;
        let mut first: Option<gimli::Range> = None;
        let mut lowest: Option<gimli::Range> = None;
        while let Ok(Some(r)) = ranges.next() {
            if r.begin >= r.end {
                continue;
            }
            if first.is_none() {
                first = Some(r);
            }
            if lowest.is_none_or(|l| r.begin < l.begin) {
                lowest = Some(r);
            }
        }
        let entry_pc = entry
            .attr_value(gimli::DW_AT_entry_pc)
            .and_then(|v| match v {
                AttributeValue::Udata(off) => lowest.map(|l| l.begin.wrapping_add(off)),
                other => unit_ref.attr_address(other).ok().flatten(),
            });
        let low_pc = entry
            .attr_value(gimli::DW_AT_low_pc)
            .and_then(|v| unit_ref.attr_address(v).ok().flatten());
        let range = first?;
        let start = entry_pc.or(low_pc).unwrap_or(range.begin);
        Some((
            start,
            if start >= range.begin && start < range.end {
                range.end
            } else {
                start.saturating_add(1)
            },
        ))
    }
}

fn cross_unit_names(
    object: &LoadedObject,
    lines: &LineIndex,
    offset: gimli::DebugInfoOffset<usize>,
) -> Option<Names> {
    let unit_offset = lines.unit_header_containing(offset)?;
    let dwarf = object.dwarf_for(unit_offset.0)?;
    let unit = object.unit_at(unit_offset)?;
    let local = UnitOffset(offset.0.checked_sub(unit_offset.0)?);
    let entry = unit.entry(local).ok()?;
    let mut paths = HashMap::new();
    let mut walk = UnitWalk {
        object,
        lines,
        dwarf,
        unit: &unit,
        language: None,
        origin_names: HashMap::new(),
        decl_files: HashMap::new(),
        paths: &mut paths,
        qualifiers: HashMap::new(),
    };
    let mut names = walk.names(&entry, 3);
    if let Some(NameDie::Local(local)) = names.name_die {
        names.name_die = Some(NameDie::Global(gimli::DebugInfoOffset(
            unit_offset.0 + local,
        )));
    }
    Some(names)
}

fn scope_tag(tag: gimli::DwTag) -> bool {
    matches!(
        tag,
        gimli::DW_TAG_namespace
            | gimli::DW_TAG_structure_type
            | gimli::DW_TAG_class_type
            | gimli::DW_TAG_union_type
            | gimli::DW_TAG_enumeration_type
            | gimli::DW_TAG_interface_type
    )
}

/// Deepest DIE nesting we follow (malformed DWARF must not overflow the stack).
const MAX_DIE_DEPTH: usize = 128;

type Scopes = Vec<(isize, String)>;

/// Visits every function DIE with code (out-of-line subprograms and inlined copies) of a unit, depth first,
/// with the namespaces/types enclosing it. `visit` returns whether to look inside the function (for inlined
/// copies); subtrees that cannot hold functions (types' members, variables) are skipped without decoding.
fn walk_functions<F>(walk: &mut UnitWalk<'_>, mut visit: F)
where
    F: FnMut(
        &mut UnitWalk<'_>,
        &DebuggingInformationEntry<DwarfReader>,
        bool,
        &[(isize, String)],
    ) -> bool,
{
    let unit = walk.unit;
    let Ok(mut tree) = unit.entries_tree(None) else {
        return;
    };
    let Ok(root) = tree.root() else {
        return;
    };
    let mut scopes: Scopes = Vec::new();
    walk_children(walk, root, 1, &mut scopes, &mut visit);
}

fn walk_children<F>(
    walk: &mut UnitWalk<'_>,
    node: gimli::EntriesTreeNode<'_, '_, DwarfReader>,
    depth: usize,
    scopes: &mut Scopes,
    visit: &mut F,
) where
    F: FnMut(
        &mut UnitWalk<'_>,
        &DebuggingInformationEntry<DwarfReader>,
        bool,
        &[(isize, String)],
    ) -> bool,
{
    if depth > MAX_DIE_DEPTH {
        return;
    }
    let mut children = node.children();
    loop {
        let child = match children.next() {
            Ok(Some(c)) => c,
            Ok(None) => break,
            Err(e) => {
                tracing::debug!(error = %e, "stopped walking unit DIEs");
                break;
            }
        };
        let entry = child.entry();
        let tag = entry.tag();
        if scope_tag(tag) {
            if !entry.has_children() {
                continue;
            }
            let name = entry
                .attr_value(gimli::DW_AT_name)
                .and_then(|v| string_of(walk.dwarf, walk.unit, v))
                .unwrap_or_else(|| "(anonymous namespace)".to_string());
            scopes.push((depth as isize, name));
            walk_children(walk, child, depth + 1, scopes, visit);
            scopes.pop();
            continue;
        }
        let descend = match tag {
            gimli::DW_TAG_subprogram | gimli::DW_TAG_inlined_subroutine => {
                let inlined = tag == gimli::DW_TAG_inlined_subroutine;
                entry.attr_value(gimli::DW_AT_declaration).is_none()
                    && visit(walk, entry, inlined, scopes)
            }
            gimli::DW_TAG_lexical_block => true,
            _ => false,
        };
        if descend && entry.has_children() {
            walk_children(walk, child, depth + 1, scopes, visit);
        }
    }
}

/// Legacy Rust mangling drops a generic function's arguments (`sites::describe`) while its DW_AT_name keeps
/// them (`describe<u64>`): the instances of a generic function are told apart by putting them back.
fn with_generic_args(demangled: String, die_name: Option<&str>) -> String {
    let Some(name) = die_name else {
        return demangled;
    };
    let Some(open) = name.find('<') else {
        return demangled;
    };
    if demangled.contains('<') {
        return demangled;
    }
    match demangled.strip_suffix(&name[..open]) {
        Some(path) if path.is_empty() || path.ends_with("::") => format!("{path}{name}"),
        _ => demangled,
    }
}

/// Shares one allocation per distinct function name and declaration path (generic functions and headers
/// recur in many units).
#[derive(Default)]
struct Interner {
    /// Display name -> (display name, matching key).
    names: HashMap<String, (Arc<str>, Arc<str>)>,
    paths: HashMap<String, Arc<str>>,
}

fn index_unit(
    object: &LoadedObject,
    lines: &LineIndex,
    dwarf: &gimli::Dwarf<DwarfReader>,
    unit: &gimli::Unit<DwarfReader>,
    cu: u32,
    interned: &mut Interner,
    out: &mut Vec<FnEntry>,
) {
    let language = lines.cus.get(cu as usize).and_then(|info| info.language);
    let Interner {
        names: interned,
        paths,
    } = interned;
    let mut walk = UnitWalk {
        object,
        lines,
        dwarf,
        unit,
        language,
        origin_names: HashMap::new(),
        decl_files: HashMap::new(),
        paths,
        qualifiers: HashMap::new(),
    };
    // The scopes around each closure-named subprogram (`{async_fn#0}`), seen as the walk passes it, and the
    // entries named by such a DIE, completed once the whole unit is walked (an origin may come later).
    let mut walked_qualifiers: HashMap<usize, String> = HashMap::new();
    let mut by_scopes: Vec<(usize, usize, String)> = Vec::new();
    walk_functions(&mut walk, |walk, entry, inlined, scopes| {
        if !inlined && !scopes.is_empty() && names_a_closure(walk, entry) {
            let qualifier: Vec<&str> = scopes.iter().map(|(_, s)| s.as_str()).collect();
            walked_qualifiers.insert(entry.offset().0, qualifier.join("::"));
        }
        let Some((start, _)) = walk.code_range(entry) else {
            return true;
        };
        if start == 0 {
            return false; // discarded by the linker (address 0 in an executable that does not map page 0)
        }
        let names = walk.names(entry, 0);
        let display = match walk.display(&names, if inlined { &[] } else { scopes }) {
            Some(Display::Named(name)) => name,
            Some(Display::ByScopes {
                die: NameDie::Local(die),
                name,
            }) => {
                by_scopes.push((out.len(), die, name.clone()));
                name
            }
            Some(Display::ByScopes { die, name }) => walk.scoped_name(die, &name),
            None => return true,
        };
        let (name, key) = intern(interned, display);
        out.push(FnEntry {
            name,
            key,
            decl_file: names.decl_file,
            decl_line: names.decl_line,
            entry: start,
            inlined,
            cu,
            die: entry.offset().0,
        });
        true
    });
    for (at, die, name) in by_scopes {
        let display = match walked_qualifiers.get(&die) {
            Some(qualifier) => format!("{qualifier}::{name}"),
            None => walk.scoped_name(NameDie::Local(die), &name),
        };
        if let Some(entry) = out.get_mut(at) {
            (entry.name, entry.key) = intern(interned, display);
        }
    }
}

/// The shared display name and matching key of a function name.
fn intern(
    interned: &mut HashMap<String, (Arc<str>, Arc<str>)>,
    display: String,
) -> (Arc<str>, Arc<str>) {
    interned
        .entry(display)
        .or_insert_with_key(|d| (Arc::from(d.as_str()), Arc::from(match_key(d).as_str())))
        .clone()
}

/// True when a DIE's own `DW_AT_name` may name a Rust closure or async body (`{closure#0}`) or code generic
/// over one (`drop_in_place<a::{async_fn_env#0}>`), read without copying the name.
fn names_a_closure(walk: &UnitWalk<'_>, entry: &DebuggingInformationEntry<DwarfReader>) -> bool {
    entry
        .attr_value(gimli::DW_AT_name)
        .and_then(|v| walk.dwarf.attr_string(walk.unit, v).ok())
        .and_then(|text| text.to_slice().ok().map(|s| s.contains(&b'{')))
        .unwrap_or(false)
}

/// The innermost function instance containing an address.
#[derive(Clone, Debug)]
pub(crate) struct Instance {
    /// Offset of its DIE in the unit (identifies the instance: each inlined copy has its own DIE).
    pub(crate) die: usize,
    /// Demangled qualified name.
    pub(crate) name: Option<String>,
    /// An inlined copy.
    pub(crate) inlined: bool,
}

/// For each address (file addresses inside unit `cu`), every function instance containing it, outermost first
/// (the out-of-line function, then each inlined copy down to the innermost). Walks only that unit's DIEs.
pub(crate) fn instance_chains_at(
    object: &LoadedObject,
    lines: &LineIndex,
    cu: u32,
    addrs: &[u64],
) -> Vec<Vec<Instance>> {
    let mut chains: Vec<Vec<Instance>> = vec![Vec::new(); addrs.len()];
    if addrs.is_empty() {
        return chains;
    }
    let index = lines;
    let Some(info) = index.cus.get(cu as usize) else {
        return chains;
    };
    let Some(dwarf) = object.dwarf_for(info.unit_offset.0) else {
        return chains;
    };
    let Some(unit) = object.parse_unit(info.unit_offset) else {
        return chains;
    };
    let mut paths = HashMap::new();
    let mut walk = UnitWalk {
        object,
        lines,
        dwarf,
        unit: &unit,
        language: info.language,
        origin_names: HashMap::new(),
        decl_files: HashMap::new(),
        paths: &mut paths,
        qualifiers: HashMap::new(),
    };
    walk_functions(&mut walk, |walk, entry, inlined, scopes| {
        let unit_ref = walk.unit.unit_ref(walk.dwarf);
        let Ok(mut ranges) = unit_ref.die_ranges(entry) else {
            return false;
        };
        let mut hits: Vec<usize> = Vec::new();
        while let Ok(Some(r)) = ranges.next() {
            for (i, &a) in addrs.iter().enumerate() {
                if a >= r.begin && a < r.end && !hits.contains(&i) {
                    hits.push(i);
                }
            }
        }
        if hits.is_empty() {
            return false;
        }
        if walk.code_range(entry).is_none() {
            return true;
        }
        let names = walk.names(entry, 0);
        let name = walk.display_name(&names, if inlined { &[] } else { scopes });
        // Functions nest and are visited outside-in, so each chain grows inward.
        for i in hits {
            chains[i].push(Instance {
                die: entry.offset().0,
                name: name.clone(),
                inlined,
            });
        }
        true
    });
    chains
}

impl NameIndex {
    pub(crate) fn build(object: &LoadedObject, lines: &LineIndex) -> NameIndex {
        if object.dwarf().is_none() {
            return NameIndex {
                entries: Vec::new(),
            };
        }
        let started = std::time::Instant::now();
        let cus = lines.cus.len();
        // Two workers: DIE decoding dominates and parallelizes per unit; more would crowd the target's machine.
        let workers = std::thread::available_parallelism()
            .map_or(1, |n| n.get())
            .clamp(1, 2);
        let chunk = cus.div_ceil(workers).max(1);
        let mut parts: Vec<Vec<FnEntry>> = Vec::new();
        std::thread::scope(|scope| {
            let handles: Vec<_> = (0..workers)
                .map(|w| {
                    scope.spawn(move || {
                        index_range(object, lines, w * chunk..((w + 1) * chunk).min(cus))
                    })
                })
                .collect();
            for h in handles {
                match h.join() {
                    Ok(part) => parts.push(part),
                    Err(_) => {
                        tracing::warn!("a function-index worker panicked; its units are missing")
                    }
                }
            }
        });
        let mut entries: Vec<FnEntry> = Vec::with_capacity(parts.iter().map(Vec::len).sum());
        for part in parts {
            entries.extend(part);
        }
        object.release_dwarf_pages();
        release_freed_heap();
        tracing::debug!(module = %object.path().display(), functions = entries.len(), ms = started.elapsed().as_millis() as u64, "built function index");
        NameIndex { entries }
    }
}

/// Returns memory freed by the indexing workers (their per-thread malloc arenas) to the system, so a one-off
/// index build does not leave the server's resident size at its peak.
fn release_freed_heap() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only releases free heap pages; it has no preconditions.
    unsafe {
        libc::malloc_trim(0);
    }
}

/// Indexes the units `range` of a module.
fn index_range(
    object: &LoadedObject,
    lines: &LineIndex,
    range: std::ops::Range<usize>,
) -> Vec<FnEntry> {
    let mut entries = Vec::new();
    if object.dwarf().is_none() {
        return entries;
    }
    let index = lines;
    let mut interned = Interner::default();
    for i in range {
        let Some(cu) = index.cus.get(i) else { break };
        // Units are parsed fresh (not through the module cache): indexing touches every unit once and must
        // not keep them all alive.
        let Some(unit) = object.parse_unit(cu.unit_offset) else {
            continue;
        };
        let Some(dwarf) = object.dwarf_for(cu.unit_offset.0) else {
            continue;
        };
        index_unit(
            object,
            lines,
            dwarf,
            &unit,
            i as u32,
            &mut interned,
            &mut entries,
        );
        if i % RELEASE_EVERY_UNITS == RELEASE_EVERY_UNITS - 1 {
            object.release_dwarf_pages();
        }
    }
    entries.shrink_to_fit();
    entries
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys() {
        assert_eq!(
            match_key("fixture::store::Cache<T>::get"),
            "fixture::store::cache::get"
        );
        assert_eq!(
            match_key("<fixture::store::Cache<u32>>::get"),
            "fixture::store::cache::get"
        );
        assert_eq!(
            match_key("<fixture::Foo as core::fmt::Display>::fmt"),
            "fixture::foo::fmt"
        );
        assert_eq!(match_key("store::Cache::get"), "store::cache::get");
    }

    #[test]
    fn generic_args_come_back_from_the_die_name() {
        assert_eq!(
            with_generic_args("sites::describe".into(), Some("describe<u64>")),
            "sites::describe<u64>"
        );
        assert_eq!(
            with_generic_args("a::b::describe".into(), Some("describe<&str>")),
            "a::b::describe<&str>"
        );
        assert_eq!(
            with_generic_args("accumulate<int>(int, int)".into(), Some("accumulate<int>")),
            "accumulate<int>(int, int)"
        );
        assert_eq!(
            with_generic_args("x::undescribe".into(), Some("describe<u8>")),
            "x::undescribe"
        );
    }

    #[test]
    fn ranks() {
        let q = NameQuery::new("Cache::get");
        assert_eq!(
            q.rank("store::Cache::get", "store::cache::get", None),
            Some(MatchRank::Qualified)
        );
        assert_eq!(
            q.rank("Cache::get", "cache::get", None),
            Some(MatchRank::Exact)
        );
        assert_eq!(
            q.rank("Cache::get_all", "cache::get_all", None),
            Some(MatchRank::Substring)
        );
        let q = NameQuery::new("_ZN5store5Cache3getEi");
        assert_eq!(
            q.rank(
                "store::Cache::get",
                "store::cache::get",
                Some("_ZN5store5Cache3getEi")
            ),
            Some(MatchRank::Exact)
        );
    }

    #[test]
    fn trait_impls_by_their_readable_spellings() {
        let name = "<closures::Rect as closures::Shape>::area";
        let key = match_key(name);
        assert_eq!(short_spelling(name), "<rect as shape>::area");
        for query in [
            "<Rect as Shape>::area",
            "Rect as Shape",
            "area",
            "<closures::Rect as closures::Shape>::area",
        ] {
            assert!(
                NameQuery::new(query).rank(name, &key, None).is_some(),
                "{query} does not find {name}"
            );
        }
        // The raw legacy symbol demangles to the same name and is found by it.
        let raw =
            "_ZN50_$LT$closures..Rect$u20$as$u20$closures..Shape$GT$4area17h308099bb3dd957b5E";
        assert_eq!(
            NameQuery::new(raw).rank(name, &key, Some(raw)),
            Some(MatchRank::Exact)
        );
    }

    #[test]
    fn any_piece_of_the_readable_name_finds_it() {
        let name = "<hyper::proto::h1::role::Server as hyper::proto::h1::Http1Transaction>::parse";
        let key = match_key(name);
        for query in [
            "Http1Transaction>::parse",
            "Server as",
            "server AS  hyper::proto",
            "<Server as h1::Http1Transaction>::parse",
            "Server as Http1Transaction",
            name,
        ] {
            assert!(
                NameQuery::new(query).rank(name, &key, None).is_some(),
                "{query} does not find {name}"
            );
        }
        assert_eq!(NameQuery::new("Client as").rank(name, &key, None), None);
    }

    #[test]
    fn numbered_closures_are_found_by_their_legacy_spelling() {
        let name = "hyper_server::handle_request::{async_fn#0}";
        let key = match_key(name);
        assert_eq!(
            NameQuery::new("handle_request::{{closure}}").rank(name, &key, None),
            Some(MatchRank::Qualified)
        );
        assert_eq!(
            NameQuery::new("hyper_server::handle_request::{{closure}}").rank(name, &key, None),
            Some(MatchRank::Exact)
        );
        assert_eq!(
            NameQuery::new("handle_request::{async_fn#0}").rank(name, &key, None),
            Some(MatchRank::Qualified)
        );
        assert_eq!(
            NameQuery::new("{{closure}}").rank("a::f", "a::f", None),
            None
        );
    }
}
