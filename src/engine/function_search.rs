//! `find_functions` as a person reads it: the program's own functions that
//! match the query best come first (exact name, then prefix, then whole
//! word, then any substring), standard-library and compiler-generated
//! functions (`drop_in_place`, `core::`, `std::`, `__gnu_cxx::`) last, and
//! overloads told apart by their signature and file:line.

use std::sync::Arc;

use crate::debuginfo::{
    FunctionMatch, Module, ProcessImage, is_legacy_closure_name, legacy_closure_spelling,
};

use super::format_addr;
use super::frames::is_system_library;
use super::report::FunctionRow;

/// Candidates asked of the debug info before ranking: enough that the
/// program's own functions are among them whatever the libraries hold.
const POOL: usize = 2000;

/// Name prefixes of standard-library and compiler-generated code.
const LIBRARY_PREFIXES: &[&str] = &[
    "core::",
    "std::",
    "alloc::",
    "__gnu_cxx::",
    "__cxxabiv1::",
    "__cxx",
    "_GLOBAL__",
    "__static_initialization",
    "__libc",
    "_dl_",
    "__",
    "<core::",
    "<std::",
    "<alloc::",
];

/// The functions matching `query`, best first, at most `limit`; the flag is
/// true when more matched.
pub(super) fn find(image: &ProcessImage, query: &str, limit: usize) -> (Vec<FunctionRow>, bool) {
    let pool = image.find_functions(query, POOL.max(limit.saturating_add(1)));
    let main = image.main_module().cloned();
    let q = query.to_ascii_lowercase();
    let mut ranked: Vec<(Rank, FunctionMatch, Option<Arc<Module>>)> = pool
        .into_iter()
        .map(|f| {
            let module = image.module_for(f.address).cloned();
            let own = module.as_ref().is_some_and(|m| {
                main.as_ref().is_some_and(|main| Arc::ptr_eq(m, main))
                    || !is_system_library(m.path())
            });
            let rank = Rank {
                library: is_library_name(&f.name),
                foreign: !own,
                closeness: closeness_to_query(&f.name, &q),
                length: f.name.len(),
            };
            (rank, f, module)
        })
        .collect();
    // Stable: equal ranks keep the debug info's order.
    ranked.sort_by_key(|(rank, _, _)| *rank);
    let truncated = ranked.len() > limit;
    ranked.truncate(limit);
    let rows = ranked
        .into_iter()
        .map(|(_, f, module)| FunctionRow {
            signature: module.and_then(|m| signature(&m, &f)),
            name: f.name,
            file: f.file,
            line: f.line,
            address: format_addr(f.address),
        })
        .collect();
    (rows, truncated)
}

/// When `location` names a function that has several definitions
/// (overloads) and a condition or expression failed to compile at one of
/// them, the error a person can act on: which functions match, by
/// file:line, to pick one. Any other error is returned as it is.
pub(super) fn explain_overloads(
    image: &ProcessImage,
    location: &str,
    error: super::EngineError,
) -> super::EngineError {
    let location = location.trim();
    let is_function_name = !location.starts_with('*')
        && !location
            .rsplit_once(':')
            .is_some_and(|(_, line)| line.chars().all(|c| c.is_ascii_digit()));
    if !is_function_name {
        return error;
    }
    let q = location.to_ascii_lowercase();
    let (rows, _) = find(image, location, 50);
    let exact: Vec<&FunctionRow> = rows
        .iter()
        .filter(|r| closeness_to_query(&r.name, &q) == 0)
        .collect();
    if exact.len() < 2 {
        return error;
    }
    let list: Vec<String> = exact
        .iter()
        .map(|r| {
            let place = match (&r.file, r.line) {
                (Some(f), Some(l)) => format!("{}:{l}", f.rsplit('/').next().unwrap_or(f)),
                _ => r.address.clone(),
            };
            format!(
                "{place} ({}{})",
                r.name,
                r.signature.as_deref().unwrap_or("")
            )
        })
        .collect();
    let mut why = error.to_string();
    if why.len() > 200 {
        let mut cut = 200;
        while !why.is_char_boundary(cut) {
            cut -= 1;
        }
        why.truncate(cut);
        why.push('…');
    }
    super::EngineError::BadArgument(format!(
        "{} functions match `{location}`; pick one by file:line as the location: {}. (At one of them: {why})",
        exact.len(),
        list.join(", ")
    ))
}

/// Sort key: lower is better.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Debug)]
struct Rank {
    library: bool,
    foreign: bool,
    closeness: u8,
    length: usize,
}

/// True for standard-library and compiler-generated names.
fn is_library_name(name: &str) -> bool {
    LIBRARY_PREFIXES.iter().any(|p| name.starts_with(p)) || name.contains("drop_in_place")
}

/// [`closeness`] of a function's name to a lower-case query. A closure asked
/// for as a legacy symbol spells it (`f::{{closure}}`) is listed by its
/// DWARF name (`f::{closure#0}`): its closeness is read in the query's
/// spelling.
fn closeness_to_query(name: &str, query: &str) -> u8 {
    match legacy_closure_spelling(name).filter(|_| is_legacy_closure_name(query)) {
        Some(legacy) => closeness(&legacy.to_ascii_lowercase(), query),
        None => closeness(&name.to_ascii_lowercase(), query),
    }
}

/// 0 exact (whole name or last path segment), 1 prefix of the last segment,
/// 2 whole word, 3 any substring. Both lower-case.
fn closeness(name: &str, query: &str) -> u8 {
    let base = name.split('<').next().unwrap_or(name);
    let last = base.rsplit("::").next().unwrap_or(base);
    if name == query || base == query || last == query || base.ends_with(&format!("::{query}")) {
        0
    } else if last.starts_with(query) {
        1
    } else if is_whole_word(name, query) {
        2
    } else {
        3
    }
}

fn is_whole_word(name: &str, query: &str) -> bool {
    let ident = |c: char| c.is_ascii_alphanumeric() || c == '_';
    name.match_indices(query).any(|(i, m)| {
        let before = name[..i].chars().next_back();
        let after = name[i + m.len()..].chars().next();
        !before.is_some_and(ident) && !after.is_some_and(ident)
    })
}

/// The parameter list of a C++ function, from its mangled symbol
/// (`handle_request(std::string const&)`); `None` for C and Rust, whose
/// symbols carry no parameter types, and when no symbol starts at the entry.
fn signature(module: &Module, f: &FunctionMatch) -> Option<String> {
    let file_addr = module.to_file(f.address);
    let hit = module.symbol_table().lookup(file_addr.0)?;
    let is_cpp = hit.name.starts_with("_Z") && !is_rust_hash(hit.name);
    if hit.addr != file_addr.0 || !is_cpp {
        return None;
    }
    let symbol = cpp_demangle::Symbol::new(hit.name).ok()?;
    let full = symbol.demangle().ok()?;
    let params = full.find('(').map(|i| full[i..].to_string())?;
    Some(crate::value::shorten_type_name(&params).into_owned())
}

/// Rust legacy symbols end in `17h<16 hex>E`.
fn is_rust_hash(raw: &str) -> bool {
    raw.ends_with('E')
        && raw
            .get(raw.len().saturating_sub(20)..)
            .is_some_and(|tail| tail.starts_with("17h"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exact_before_prefix_before_word_before_substring() {
        assert_eq!(closeness("handle_request", "handle_request"), 0);
        assert_eq!(closeness("server::handle_request", "handle_request"), 0);
        assert_eq!(closeness("handle_request_fast", "handle_request"), 1);
        assert_eq!(closeness("call<handle_request>", "handle_request"), 2);
        assert_eq!(closeness("rehandle_requests", "handle_request"), 3);
        assert!(is_library_name("core::ptr::drop_in_place<x>"));
        assert!(is_library_name("__gnu_cxx::new_allocator<int>::allocate"));
        assert!(!is_library_name("handle_request"));
    }

    #[test]
    fn closures_are_as_close_in_their_legacy_spelling() {
        assert_eq!(
            closeness_to_query("app::handle::{async_fn#0}", "handle::{{closure}}"),
            0
        );
        assert_eq!(
            closeness_to_query("app::handle::{async_fn#0}", "handle::{async_fn#0}"),
            0
        );
        assert_eq!(closeness_to_query("app::handle::{closure#1}", "handle"), 2);
    }
}
