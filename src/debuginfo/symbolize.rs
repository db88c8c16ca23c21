//! pc -> source frames (with inlined calls expanded): from the unit's DIEs (the subprogram and inlined calls
//! holding the pc, named as gdb names them), else through a per-unit `addr2line` context, else from ELF
//! symbols.
//!
//! Owns frame naming (linkage name demangled, else `DW_AT_name` qualified by its namespaces and classes) and
//! what goes into the module's caches of symbolized pcs and of qualifiers (module.rs holds them). Never
//! touches target memory.

use std::collections::HashMap;
use std::sync::Arc;

use super::addr::FileAddr;
use super::bytes::DwarfReader;
use super::demangle::{demangle, demangle_name, is_legacy_closure_name};
use super::module::Module;
use super::qualifiers::{QUALIFIER_CACHE_LIMIT, function_qualifiers};
use super::scope::{ChainLevel, inline_chain, linkage_name, naming_die, own_name};
use super::source_frame::SourceFrame;
use super::symbols::SymbolHit;
use super::types::TypeTable;
use super::unit_tables::unit_key;

/// Most symbolized pcs kept per module before the cache starts over.
const SYMBOLIZED_CACHE_LIMIT: usize = 4096;

impl Module {
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
        let from_dies = self.frames_from_dies(probe, module_name.clone());
        let mut frames = from_dies
            .or_else(|| {
                unit.and_then(|unit| {
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

impl Module {
    /// Source frames for a file address from the unit's DIEs: the subprogram and the inlined calls containing
    /// the address (every form of address ranges, origins in other units), innermost first. The innermost
    /// frame's file:line comes from the line table, each caller's from the call site of the frame inside it.
    fn frames_from_dies(
        &self,
        probe: FileAddr,
        module_name: Option<String>,
    ) -> Option<Vec<SourceFrame>> {
        let unit = self.unit_for(probe)?;
        let dwarf = self.dwarf_of(&unit)?;
        let chain = inline_chain(self, &unit, probe.0)?;
        let language = unit.entry(unit.root_offset()).ok().and_then(|root| {
            match root.attr_value(gimli::DW_AT_language) {
                Some(gimli::AttributeValue::Language(language)) => Some(language),
                _ => None,
            }
        });
        let mut types = TypeTable::new();
        let (mut file, mut line, mut column) = self.line_of(&unit, probe);
        let mut frames = Vec::with_capacity(chain.len());
        for (depth, level) in chain.iter().enumerate().rev() {
            if depth + 1 < chain.len() {
                // This frame is at the call of the frame inside it.
                let inner: &ChainLevel = &chain[depth + 1];
                file = inner
                    .call_file
                    .and_then(|index| super::lines::file_path(dwarf, &unit, index));
                line = inner.call_line.filter(|l| *l != 0);
                column = inner.call_column.filter(|c| *c != 0);
            }
            frames.push(SourceFrame {
                function: self.function_name(&mut types, &unit, level.entry, language),
                file: file.clone(),
                line,
                column,
                inlined: depth != 0,
                module: module_name.clone(),
            });
        }
        Some(frames)
    }

    /// The line-table row covering a file address in `unit`.
    fn line_of(
        &self,
        unit: &Arc<gimli::Unit<DwarfReader>>,
        probe: FileAddr,
    ) -> (Option<String>, Option<u32>, Option<u32>) {
        let Some(offset) = unit_key(unit) else {
            return (None, None, None);
        };
        self.with_unit_context(offset, |ctx| match ctx.find_location(probe.0) {
            Ok(Some(location)) => (
                location.file.map(str::to_string),
                location.line,
                location.column,
            ),
            _ => (None, None, None),
        })
        .unwrap_or((None, None, None))
    }

    /// A function's name as gdb shows it: its linkage name demangled, else its `DW_AT_name` qualified by the
    /// namespaces and classes around the DIE that declares it.
    fn function_name(
        &self,
        types: &mut TypeTable,
        unit: &Arc<gimli::Unit<DwarfReader>>,
        entry: usize,
        language: Option<gimli::DwLang>,
    ) -> Option<String> {
        if let Some(linkage) = linkage_name(self, types, unit, entry) {
            let demangled = demangle_name(&linkage, language);
            // A legacy Rust symbol calls every closure and async body `{{closure}}`; DWARF numbers them
            // (`{closure#1}`, `{async_fn#0}`), as gdb shows them. names.rs names sites by the same rule.
            if is_legacy_closure_name(&demangled)
                && let Some(numbered) = self.qualified_name(types, unit, entry)
            {
                return Some(numbered);
            }
            return Some(demangled);
        }
        self.qualified_name(types, unit, entry)
    }

    /// A function's `DW_AT_name` qualified by the namespaces and classes around the DIE that declares it.
    fn qualified_name(
        &self,
        types: &mut TypeTable,
        unit: &Arc<gimli::Unit<DwarfReader>>,
        entry: usize,
    ) -> Option<String> {
        let (name_unit, name_entry) = naming_die(self, types, unit, entry)?;
        let name = own_name(self, &name_unit, name_entry)?;
        // C has no namespaces: no need to index the unit's scopes.
        if super::types::unit_language(&name_unit) == super::types::Language::C {
            return Some(name);
        }
        let qualifier = self
            .qualifiers_of(&name_unit)
            .and_then(|q| q.get(&name_entry).cloned());
        Some(match qualifier {
            Some(qualifier) => format!("{qualifier}::{name}"),
            None => name,
        })
    }

    fn qualifiers_of(
        &self,
        unit: &Arc<gimli::Unit<DwarfReader>>,
    ) -> Option<Arc<HashMap<usize, String>>> {
        let offset = unit_key(unit)?;
        if let Ok(cache) = self.qualifiers.lock()
            && let Some(found) = cache.get(&offset)
        {
            return Some(found.clone());
        }
        let built = Arc::new(function_qualifiers(self, unit));
        if let Ok(mut cache) = self.qualifiers.lock() {
            if cache.len() >= QUALIFIER_CACHE_LIMIT {
                cache.clear();
            }
            cache.insert(offset, built.clone());
        }
        Some(built)
    }
}
