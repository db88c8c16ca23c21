//! Symbol demangling: Rust (legacy and v0, without the hash) and C++ (without parameter lists, like gdb's
//! backtraces), chosen by the DWARF language when known.
//!
//! Owns only name formatting; never fails (an undemanglable name is returned as is).

use std::fmt::Write;

/// Demangles `name` with the scheme of `language` if given, else by trying Rust then C++.
pub fn demangle_name(name: &str, language: Option<gimli::DwLang>) -> String {
    let is_cpp = |l: gimli::DwLang| {
        matches!(
            l,
            gimli::DW_LANG_C_plus_plus
                | gimli::DW_LANG_C_plus_plus_03
                | gimli::DW_LANG_C_plus_plus_11
                | gimli::DW_LANG_C_plus_plus_14
                | gimli::DW_LANG_C_plus_plus_17
                | gimli::DW_LANG_C_plus_plus_20
        )
    };
    match language {
        Some(gimli::DW_LANG_Rust) => demangle_rust(name).or_else(|| demangle_cpp(name)),
        Some(l) if is_cpp(l) => demangle_cpp(name),
        _ => demangle_rust(name).or_else(|| demangle_cpp(name)),
    }
    .unwrap_or_else(|| name.to_string())
}

/// Demangles a name found in a symbol table (no language known).
pub fn demangle(name: &str) -> String {
    demangle_name(name, None)
}

fn demangle_rust(name: &str) -> Option<String> {
    if !(name.starts_with("_ZN")
        || name.starts_with("_R")
        || name.starts_with("__ZN")
        || name.starts_with("__R"))
    {
        return None;
    }
    let demangled = rustc_demangle::try_demangle(name).ok()?;
    // A C++ symbol such as `_ZN5Cache3getEv` also parses as legacy Rust; a real legacy Rust symbol ends in a
    // `17h<16 hex>E` hash component, v0 symbols start with `_R`.
    let v0 = name.starts_with("_R") || name.starts_with("__R");
    if !(v0 || has_rust_hash(name)) {
        return None;
    }
    let mut out = String::new();
    write!(out, "{demangled:#}").ok()?;
    Some(out)
}

fn has_rust_hash(name: &str) -> bool {
    // Legacy Rust: last path component is "h" + 16 hex digits, encoded as `17h` + 16 hex + `E`, possibly followed
    // by a `.suffix` LLVM added (`.llvm.123`, `.cold`). Not split at the first '.': a trait impl's path contains
    // `..` (`_$LT$a..Rect$u20$as$u20$a..Shape$GT$`). Bytes, not str slicing: a symbol name from a hostile binary
    // need not be ASCII.
    let bytes = name.as_bytes();
    let ends_hash_at = |end: usize| {
        end >= 20
            && bytes.get(end - 20..end).is_some_and(|tail| {
                tail.starts_with(b"17h")
                    && tail.ends_with(b"E")
                    && tail[3..19].iter().all(|b| b.is_ascii_hexdigit())
            })
    };
    ends_hash_at(bytes.len())
        || bytes
            .iter()
            .enumerate()
            .any(|(i, b)| *b == b'.' && ends_hash_at(i))
}

fn demangle_cpp(name: &str) -> Option<String> {
    if !name.starts_with("_Z") {
        return None;
    }
    let symbol = cpp_demangle::Symbol::new(name).ok()?;
    let options = cpp_demangle::DemangleOptions::new()
        .no_params()
        .no_return_type();
    let mut text = symbol.demangle_with_options(&options).ok()?;
    // Without its parameter list a method's qualifiers (`Cache::get const`) read as part of the name; gdb's
    // backtraces leave them out too.
    for qualifier in [" const", " volatile", " &&", " &"] {
        while let Some(stripped) = text.strip_suffix(qualifier) {
            text.truncate(stripped.len());
        }
    }
    Some(text)
}

/// True for a demangled legacy Rust name of a closure or async body (or of code generic over one): legacy
/// symbols call every such body `{{closure}}`, where DWARF numbers them (`{closure#1}`, `{async_fn#0}`), so
/// such a function is named by its DWARF scopes instead, everywhere (frames, sites, `find_functions`).
pub(crate) fn is_legacy_closure_name(demangled: &str) -> bool {
    demangled.contains("{{closure}}")
}

/// The kinds of body DWARF (and v0 symbols) number as `{kind#N}` where a legacy symbol says `{{closure}}` (and
/// their captures' types, `{kind_env#N}`).
const NUMBERED_CLOSURE_KINDS: &[&str] = &[
    "closure",
    "async_fn",
    "async_block",
    "async_closure",
    "async_gen_block",
    "async_gen_fn",
    "gen_block",
    "gen_fn",
    "coroutine",
    "coroutine_closure",
];

/// A Rust name as a legacy symbol spells it: every numbered closure or async body (`{closure#1}`,
/// `{async_fn#0}`) becomes `{{closure}}`. `None` when the name has none (it is its own legacy spelling).
pub(crate) fn legacy_closure_spelling(name: &str) -> Option<String> {
    if !name.contains('#') {
        return None;
    }
    let mut out = String::with_capacity(name.len());
    let mut rest = name;
    let mut changed = false;
    while let Some(open) = rest.find('{') {
        out.push_str(&rest[..open]);
        let after = &rest[open + 1..];
        let numbered = after.find('}').and_then(|close| {
            let (kind, number) = after[..close].split_once('#')?;
            // `{closure_env#0}`: the type of a closure's captures, in the generic arguments of code over it.
            let kind = kind.strip_suffix("_env").unwrap_or(kind);
            (NUMBERED_CLOSURE_KINDS.contains(&kind)
                && !number.is_empty()
                && number.bytes().all(|b| b.is_ascii_digit()))
            .then_some(close)
        });
        match numbered {
            Some(close) => {
                out.push_str("{{closure}}");
                rest = &after[close + 1..];
                changed = true;
            }
            None => {
                out.push('{');
                rest = after;
            }
        }
    }
    out.push_str(rest);
    changed.then_some(out)
}

/// Removes every balanced `<...>` group: `Cache<i32>::get` -> `Cache::get`.
pub fn strip_generics(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    let mut depth = 0usize;
    for c in name.chars() {
        match c {
            '<' => depth += 1,
            '>' if depth > 0 => depth -= 1,
            _ if depth == 0 => out.push(c),
            _ => {}
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rust_legacy_without_hash() {
        assert_eq!(
            demangle("_ZN7fixture6worker17h0123456789abcdefE"),
            "fixture::worker"
        );
    }

    #[test]
    fn rust_trait_impl_with_dots_in_the_path() {
        assert_eq!(
            demangle(
                "_ZN50_$LT$closures..Rect$u20$as$u20$closures..Shape$GT$4area17h308099bb3dd957b5E"
            ),
            "<closures::Rect as closures::Shape>::area"
        );
        assert_eq!(
            demangle("_ZN8closures7add_tax17h0123456789abcdefE.llvm.7781"),
            "closures::add_tax"
        );
    }

    #[test]
    fn numbered_closures_in_their_legacy_spelling() {
        assert_eq!(
            legacy_closure_spelling("hyper_server::handle_request::{async_fn#0}").as_deref(),
            Some("hyper_server::handle_request::{{closure}}")
        );
        assert_eq!(
            legacy_closure_spelling("a::f::{closure#0}::{closure#12}").as_deref(),
            Some("a::f::{{closure}}::{{closure}}")
        );
        assert_eq!(
            legacy_closure_spelling("core::ptr::drop_in_place<a::f::{async_block_env#0}>")
                .as_deref(),
            Some("core::ptr::drop_in_place<a::f::{{closure}}>")
        );
        assert_eq!(legacy_closure_spelling("a::{impl#3}::poll"), None);
        assert_eq!(legacy_closure_spelling("a::{closure#x}"), None);
        assert_eq!(legacy_closure_spelling("a::f"), None);
        assert!(is_legacy_closure_name(
            "hyper_server::handle_request::{{closure}}"
        ));
    }

    #[test]
    fn rust_v0() {
        assert_eq!(demangle("_RNvCs1234_7mycrate3foo"), "mycrate::foo");
    }

    #[test]
    fn cpp_without_params() {
        assert_eq!(demangle("_ZN5Cache3getEi"), "Cache::get");
        assert_eq!(demangle("_ZNK5Cache3getEv"), "Cache::get");
        assert_eq!(demangle("_ZN5Cache3getEv"), "Cache::get");
        assert_eq!(
            demangle("_ZZ4mainENK3$_0clERK7RequestR8Response"),
            "main::$_0::operator()"
        );
    }

    #[test]
    fn non_ascii_names_do_not_panic() {
        assert_eq!(
            demangle("_ZN3fooé12345678901234567890E"),
            "_ZN3fooé12345678901234567890E"
        );
        assert_eq!(
            demangle("ééééééééééééééééééééééé"),
            "ééééééééééééééééééééééé"
        );
    }

    #[test]
    fn plain_c_unchanged() {
        assert_eq!(demangle("main"), "main");
        assert_eq!(demangle("__GI___libc_read"), "__GI___libc_read");
    }

    #[test]
    fn generics_stripped() {
        assert_eq!(
            strip_generics("fixture::Cache<T>::get"),
            "fixture::Cache::get"
        );
    }
}
