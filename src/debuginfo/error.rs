//! Errors of the debuginfo room, worded so that a user (or an AI agent) knows what to do next.

use std::path::PathBuf;

/// Loading a process image failed.
#[derive(Debug, thiserror::Error)]
pub enum DebugInfoError {
    /// /proc/PID/maps could not be read.
    #[error(
        "cannot read /proc/{pid}/maps: {source}; check that process {pid} exists and that liveprobe may inspect it"
    )]
    ReadMaps {
        /// The process.
        pid: i32,
        /// The underlying error.
        source: std::io::Error,
    },
    /// An ELF file could not be opened or mapped.
    #[error("cannot open {path}: {source}")]
    OpenFile {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// A file is not a usable ELF object.
    #[error("cannot parse {path} as ELF: {reason}")]
    ParseElf {
        /// The file.
        path: PathBuf,
        /// What was wrong.
        reason: String,
    },
    /// DWARF data is malformed.
    #[error("malformed DWARF in {path}: {reason}")]
    Dwarf {
        /// The file.
        path: PathBuf,
        /// What was wrong.
        reason: String,
    },
}

fn list(items: &[String]) -> String {
    if items.is_empty() {
        String::new()
    } else {
        format!("; did you mean: {}?", items.join(", "))
    }
}

/// A location string could not be resolved to code addresses.
#[derive(Debug, Clone, thiserror::Error)]
pub enum LocationError {
    /// The location string could not be parsed.
    #[error(
        "cannot parse location {location:?}: {reason}; use \"file.c:42\", \"function_name\" or \"*0xADDRESS\""
    )]
    Syntax {
        /// The text given.
        location: String,
        /// What was wrong.
        reason: String,
    },
    /// No source file known to the debug info matches.
    #[error("no source file matching {query:?} in the debug info{}", list(.suggestions))]
    FileNotFound {
        /// The file part of the query.
        query: String,
        /// Files with similar names.
        suggestions: Vec<String>,
    },
    /// More than one distinct source file matches.
    #[error("{query:?} matches several source files: {}; give more of the path", .candidates.join(", "))]
    AmbiguousFile {
        /// The file part of the query.
        query: String,
        /// The matching files.
        candidates: Vec<String>,
    },
    /// The line (and every line after it) has no code.
    #[error(
        "{file} has no code at or after line {line}; the last line with code is {last_code_line}"
    )]
    NoCodeAtLine {
        /// The file.
        file: String,
        /// The requested line.
        line: u32,
        /// The last line with code in the file.
        last_code_line: u32,
        /// The nearest lines that have code (before the requested line).
        nearest: Vec<u32>,
    },
    /// No function of that name.
    #[error("no function named {name:?}{}", list(.suggestions))]
    FunctionNotFound {
        /// The name given.
        name: String,
        /// Functions with similar names.
        suggestions: Vec<String>,
    },
    /// The name matches too many different functions to probe them all.
    #[error("{name:?} matches {count} different functions, e.g. {}; give a qualified name like `module::Type::method`", .candidates.join(", "))]
    AmbiguousFunction {
        /// The name given.
        name: String,
        /// Some of the matching functions.
        candidates: Vec<String>,
        /// How many distinct functions match.
        count: usize,
    },
    /// The function exists but has no code (declaration only, or every copy was optimized away).
    #[error("function {name:?} has no code in this process (optimized away or only declared)")]
    FunctionHasNoCode {
        /// The name given.
        name: String,
    },
    /// A runtime address that is not inside any loaded module.
    #[error("address {addr:#x} is not inside any loaded module of the process")]
    AddressNotMapped {
        /// The address.
        addr: u64,
    },
    /// No module has line tables.
    #[error(
        "no debug info with line tables is loaded for this process; rebuild the target with -g (or install its debug symbols)"
    )]
    NoDebugInfo,
}
