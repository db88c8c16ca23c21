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

    /// The entry (file address) and raw name of the function symbol containing file address `a`.
    pub fn function_entry(&self, a: FileAddr) -> Option<(FileAddr, String)> {
        self.symbol_table()
            .lookup(a.0)
            .map(|SymbolHit { name, addr, .. }| (FileAddr(addr), name.to_string()))
    }

    /// Whether a function symbol named `name` (raw, as the linker sees it) starts at file address `entry`.
    /// Aliases count (`read`, `__read`, `__libc_read` are one function), although the address index keeps
    /// only one name per address; they are looked up in the symbol tables themselves (rarely needed).
    pub fn has_symbol_at(&self, name: &str, entry: FileAddr) -> bool {
        use object::{Object, ObjectSymbol};
        if self
            .symbol_table()
            .lookup(entry.0)
            .is_some_and(|hit| hit.addr == entry.0 && hit.name == name)
        {
            return true;
        }
        let mut files = vec![&self.elf];
        if let Some(separate) = &self.debug_separate {
            files.push(separate);
        }
        files.into_iter().any(|mapped| {
            let Ok(file) = mapped.parse() else {
                return false;
            };
            file.symbols().chain(file.dynamic_symbols()).any(|symbol| {
                symbol.address() == entry.0
                    && !symbol.is_undefined()
                    && symbol.name_bytes().is_ok_and(|n| n == name.as_bytes())
            })
        })
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
                    let Ok(mut iter) = ctx.find_frames(probe.0).skip_all_loads() else {
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
