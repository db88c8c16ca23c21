//! pc -> source frames (with inlined calls expanded) through `addr2line`, falling back to ELF symbols.
//!
//! Owns the per-module `addr2line::Context` (lazily built, kept behind a mutex because it is not `Sync`).
//! Never touches target memory.

use super::addr::FileAddr;
use super::demangle::{demangle, demangle_name};
use super::module::Module;
use super::symbols::{SymbolHit, SymbolTable};

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

/// Most symbolized pcs kept per module before the cache starts over.
const SYMBOLIZED_CACHE_LIMIT: usize = 4096;

impl Module {
    /// The module's function symbols (built on first use).
    pub(crate) fn symbol_table(&self) -> &SymbolTable {
        self.symbols.get_or_init(|| {
            let mut files = vec![&self.elf];
            if let Some(sep) = &self.debug_separate {
                files.push(sep);
            }
            SymbolTable::build(&files)
        })
    }

    /// The ELF function symbol containing a file address.
    pub fn symbol_for(&self, a: FileAddr) -> Option<(String, FileAddr)> {
        self.symbol_table()
            .lookup(a.0)
            .map(|SymbolHit { name, addr, .. }| (demangle(name), FileAddr(addr)))
    }

    /// Source frames for a file address (already adjusted for return addresses), innermost first.
    pub fn symbolize_file(&self, probe: FileAddr) -> Vec<SourceFrame> {
        if let Ok(cache) = self.symbolized.lock()
            && let Some(hit) = cache.get(&probe.0)
        {
            return hit.clone();
        }
        let frames = self.symbolize_uncached(probe);
        if let Ok(mut cache) = self.symbolized.lock() {
            if cache.len() >= SYMBOLIZED_CACHE_LIMIT {
                cache.clear();
            }
            cache.insert(probe.0, frames.clone());
        }
        frames
    }

    fn symbolize_uncached(&self, probe: FileAddr) -> Vec<SourceFrame> {
        let module_name = Some(self.path.display().to_string());
        let unit = self.unit_offset_for(probe);
        let mut frames = unit
            .and_then(|unit| {
                self.with_unit_context(unit.0, |ctx| {
                    let mut out = Vec::new();
                    // Split DWARF (.dwo/.dwp) is loaded when the lookup asks for it.
                    let Ok(mut iter) = self.complete_lookup(ctx.find_frames(probe.0)) else {
                        return out;
                    };
                    loop {
                        match iter.next() {
                            Ok(Some(frame)) => {
                                let function = frame.function.as_ref().and_then(|name| {
                                    let raw = name.raw_name().ok()?;
                                    Some(demangle_name(&raw, name.language))
                                });
                                let (file, line, column) = match &frame.location {
                                    Some(loc) => {
                                        (loc.file.map(str::to_string), loc.line, loc.column)
                                    }
                                    None => (None, None, None),
                                };
                                out.push(SourceFrame {
                                    function,
                                    file,
                                    line,
                                    column,
                                    inlined: true,
                                    module: module_name.clone(),
                                });
                            }
                            Ok(None) => break,
                            Err(e) => {
                                tracing::debug!(error = %e, "addr2line frame iteration stopped");
                                break;
                            }
                        }
                    }
                    out
                })
            })
            .unwrap_or_default();
        if let Some(last) = frames.last_mut() {
            last.inlined = false;
            if last.function.is_none() {
                last.function = self.symbol_for(probe).map(|(n, _)| n);
            }
        } else {
            frames.push(SourceFrame {
                function: self.symbol_for(probe).map(|(n, _)| n),
                file: None,
                line: None,
                column: None,
                inlined: false,
                module: module_name,
            });
        }
        frames
    }
}
