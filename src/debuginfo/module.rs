//! One ELF module mapped in a process: its loaded object (object.rs: the file, load bias, DWARF sections and
//! units) and the indexes built over it on first use (symbols, lines, function names, symbolized pcs,
//! qualifiers, function ranges).
//!
//! Owns the index caches, not the rules to build them: each index's own file builds it from the
//! [`LoadedObject`], which knows none of them. A `Module` reads as its object (Deref), so `module.dwarf()` and
//! `module.unit_at(..)` work where a module is at hand. Never reads target memory.

use std::collections::HashMap;
use std::ops::Deref;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock, Weak};

use super::error::DebugInfoError;
use super::function_ranges::FunctionRangeCache;
use super::lines::LineIndex;
use super::maps::Mapping;
use super::names::NameIndex;
use super::object::LoadedObject;
use super::qualifiers::QualifierCache;
use super::source_frame::SourceFrame;
use super::symbols::SymbolTable;

/// One ELF module mapped in the process (the executable or a shared library): its loaded object and the
/// indexes built over it.
pub struct Module {
    object: LoadedObject,
    symbols: OnceLock<SymbolTable>,
    line_index: OnceLock<LineIndex>,
    name_index: OnceLock<NameIndex>,
    /// Symbolized pcs (file address -> frames), bounded: stacks and probe hits repeat the same pcs.
    pub(crate) symbolized: Mutex<HashMap<u64, Vec<SourceFrame>>>,
    /// Per unit: the namespaces and classes around each function DIE (see
    /// `qualifiers::function_qualifiers`), built when a frame in it is first named.
    pub(crate) qualifiers: QualifierCache,
    /// Per unit: the address ranges of its subprograms (see `scope::subprogram_at`).
    pub(crate) function_ranges: FunctionRangeCache,
}

impl Deref for Module {
    type Target = LoadedObject;

    fn deref(&self) -> &LoadedObject {
        &self.object
    }
}

impl std::fmt::Debug for Module {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Module")
            .field("path", &self.path)
            .field("bias", &format_args!("{:#x}", self.bias))
            .field("build_id", &self.build_id)
            .field("debug_info", &self.debug_info())
            .finish()
    }
}

impl Module {
    /// A module over a loaded object, with every index still to build.
    fn new(object: LoadedObject) -> Module {
        Module {
            object,
            symbols: OnceLock::new(),
            line_index: OnceLock::new(),
            name_index: OnceLock::new(),
            symbolized: Mutex::new(HashMap::new()),
            qualifiers: Mutex::new(HashMap::new()),
            function_ranges: Mutex::new(HashMap::new()),
        }
    }

    /// Opens a module mapped in a process (see [`LoadedObject::open`]).
    pub(crate) fn open(
        seen_path: &Path,
        open_paths: &[PathBuf],
        root: Option<&Path>,
        mappings: &[Mapping],
    ) -> Result<Module, DebugInfoError> {
        LoadedObject::open(seen_path, open_paths, root, mappings).map(Module::new)
    }

    /// The target's vDSO as a module (see [`LoadedObject::vdso`]).
    pub(crate) fn vdso(target: &Mapping) -> Option<Module> {
        LoadedObject::vdso(target).map(Module::new)
    }

    /// Opens an ELF file on disk as a module loaded at `bias` (for tools and tests that work without a process).
    pub fn open_file(path: &Path, bias: u64) -> Result<Module, DebugInfoError> {
        LoadedObject::open_file(path, bias).map(Module::new)
    }

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

    /// The line index of this module (unit list and file names), built on first use from line-program headers.
    pub(crate) fn line_index(&self) -> &LineIndex {
        self.line_index
            .get_or_init(|| LineIndex::build(&self.object))
    }

    /// The function index of this module (built on first use by walking its DIEs once).
    pub(crate) fn name_index(&self) -> &NameIndex {
        self.name_index
            .get_or_init(|| NameIndex::build(&self.object, self.line_index()))
    }
}

/// Values kept beside modules (caches a module does not own), one per
/// module, found by the module's identity and dropped with it: modules are
/// held weakly, so a detached target's entries go at the next look-up.
#[derive(Debug)]
pub(crate) struct PerModule<T> {
    entries: Mutex<Vec<(Weak<Module>, T)>>,
}

impl<T> Default for PerModule<T> {
    fn default() -> Self {
        PerModule {
            entries: Mutex::new(Vec::new()),
        }
    }
}

impl<T: Clone + Default> PerModule<T> {
    /// `module`'s value, made empty on first use. The list is locked only
    /// for the look-up: the caller fills or locks the value after.
    pub(crate) fn get(&self, module: &Arc<Module>) -> T {
        let mut entries = self.lock();
        entries.retain(|(weak, _)| weak.strong_count() > 0);
        if let Some((_, value)) = entries
            .iter()
            .find(|(weak, _)| std::ptr::eq(weak.as_ptr(), Arc::as_ptr(module)))
        {
            return value.clone();
        }
        let value = T::default();
        entries.push((Arc::downgrade(module), value.clone()));
        value
    }

    /// True when `module` has a value (it was asked for).
    pub(crate) fn contains(&self, module: &Module) -> bool {
        self.lock()
            .iter()
            .any(|(weak, _)| weak.strong_count() > 0 && std::ptr::eq(weak.as_ptr(), module))
    }

    /// An entry is pushed whole, so a panic elsewhere leaves nothing half
    /// made: poison is ignored.
    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<(Weak<Module>, T)>> {
        match self.entries.lock() {
            Ok(guard) => guard,
            Err(poisoned) => poisoned.into_inner(),
        }
    }
}
