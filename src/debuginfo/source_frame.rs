//! The source-level frames a pc stands for: what symbolization (symbolize.rs) answers and what each module
//! keeps in its cache of symbolized pcs.

/// One source-level frame for a pc: an inlined call or the real function.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SourceFrame {
    /// Demangled function name (Rust without hash, C++ without parameters).
    pub function: Option<String>,
    /// Source file path as the debug info gives it.
    pub file: Option<String>,
    /// Line number.
    pub line: Option<u32>,
    /// Column number.
    pub column: Option<u32>,
    /// True for an inlined call (every frame but the outermost of one pc).
    pub inlined: bool,
    /// The module (ELF file path as the process sees it).
    pub module: Option<String>,
}
