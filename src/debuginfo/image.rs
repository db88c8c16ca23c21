//! The process image: every ELF module mapped in a process, each with its load bias, and the queries that
//! span modules (symbolize, unwind, find functions, resolve locations).
//!
//! Owns the module list and pc -> module lookup. Built once at attach from /proc/PID/maps; cheap to share
//! (Send + Sync). Never reads target memory itself and never calls ptrace.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::addr::RuntimeAddr;
use super::error::DebugInfoError;
use super::maps::{Mapping, parse_maps};
use super::module::Module;
use super::symbolize::SourceFrame;

/// All ELF modules mapped in a process, each with its load bias.
#[derive(Debug)]
pub struct ProcessImage {
    pid: i32,
    modules: Vec<Arc<Module>>,
    /// Sorted runtime ranges -> index into `modules`.
    ranges: Vec<(u64, u64, usize)>,
    main: Option<usize>,
}

impl ProcessImage {
    /// Reads /proc/PID/maps and opens every file-backed ELF mapping that has executable code (through
    /// /proc/PID/map_files or /proc/PID/root so containers and deleted files work), computing each load bias.
    /// Fast: files are memory-mapped, only ELF headers are read; no DWARF is parsed here.
    pub fn load(pid: i32) -> Result<ProcessImage, DebugInfoError> {
        let maps_path = format!("/proc/{pid}/maps");
        let text = std::fs::read_to_string(&maps_path)
            .map_err(|source| DebugInfoError::ReadMaps { pid, source })?;
        let mappings = parse_maps(&text);
        let exe = std::fs::read_link(format!("/proc/{pid}/exe"))
            .ok()
            .map(|p| {
                let s = p.to_string_lossy().into_owned();
                PathBuf::from(s.strip_suffix(" (deleted)").unwrap_or(&s))
            });
        let root = PathBuf::from(format!("/proc/{pid}/root"));
        // Same root as ours: look for separate debug files by their plain paths (and report those).
        let debug_root = match std::fs::read_link(&root) {
            Ok(target) if target == Path::new("/") => None,
            _ => Some(root.as_path()),
        };

        // Group file mappings per (path, inode), keeping first-seen order.
        let mut order: Vec<(String, u64)> = Vec::new();
        let mut groups: HashMap<(String, u64), Vec<Mapping>> = HashMap::new();
        let vdso = mappings.iter().find(|m| m.pathname == "[vdso]").cloned();
        for m in mappings.into_iter().filter(Mapping::is_file) {
            let key = (m.pathname.clone(), m.inode);
            if !groups.contains_key(&key) {
                order.push(key.clone());
            }
            groups.entry(key).or_default().push(m);
        }

        let mut modules = Vec::new();
        let mut main = None;
        for key in order {
            let Some(group) = groups.remove(&key) else {
                continue;
            };
            if !group.iter().any(|m| m.exec) {
                continue;
            }
            let seen = group[0].file_path();
            let first = &group[0];
            let mut open_paths = vec![PathBuf::from(format!(
                "/proc/{pid}/map_files/{:x}-{:x}",
                first.start, first.end
            ))];
            open_paths.push(root.join(seen.strip_prefix("/").unwrap_or(&seen)));
            open_paths.push(seen.clone());
            match Module::open(&seen, &open_paths, debug_root, &group) {
                Ok(module) => {
                    if exe.as_deref() == Some(seen.as_path()) {
                        main = Some(modules.len());
                    }
                    tracing::debug!(module = %seen.display(), bias = format_args!("{:#x}", module.bias()), "loaded module");
                    modules.push(Arc::new(module));
                }
                Err(e) => tracing::debug!(module = %seen.display(), error = %e, "skipping mapping"),
            }
        }
        if let Some(module) = vdso.as_ref().and_then(Module::vdso) {
            modules.push(Arc::new(module));
        }
        Ok(ProcessImage::from_modules(pid, modules, main))
    }

    /// Builds an image from modules opened elsewhere (tools, tests, recordings).
    pub fn from_modules(pid: i32, modules: Vec<Arc<Module>>, main: Option<usize>) -> ProcessImage {
        let mut ranges = Vec::new();
        for (i, m) in modules.iter().enumerate() {
            for &(s, e) in m.mapped_ranges() {
                ranges.push((s, e, i));
            }
        }
        ranges.sort_unstable();
        ProcessImage {
            pid,
            modules,
            ranges,
            main,
        }
    }

    /// The process id this image was loaded from.
    pub fn pid(&self) -> i32 {
        self.pid
    }

    /// Every module, in /proc/PID/maps order.
    pub fn modules(&self) -> &[Arc<Module>] {
        &self.modules
    }

    /// The executable.
    pub fn main_module(&self) -> Option<&Arc<Module>> {
        self.main.and_then(|i| self.modules.get(i))
    }

    /// The module whose mapping contains a runtime address.
    pub fn module_for(&self, pc: RuntimeAddr) -> Option<&Arc<Module>> {
        let i = self.ranges.partition_point(|r| r.0 <= pc.0);
        let (_, end, idx) = *self.ranges.get(i.checked_sub(1)?)?;
        (pc.0 < end).then(|| self.modules.get(idx)).flatten()
    }

    /// The module with this path (as the process sees it).
    pub fn module_by_path(&self, path: &Path) -> Option<&Arc<Module>> {
        self.modules.iter().find(|m| m.path() == path)
    }

    /// Source frames for one pc, innermost first: inlined calls expanded as their own frames (like gdb's bt),
    /// the outermost being the real function. `is_caller` = this pc is a return address (look up pc-1).
    /// Falls back to .symtab/.dynsym names when there is no DWARF (file/line None). Names demangled.
    /// An address outside every module gives one frame with everything None.
    pub fn symbolize(&self, pc: RuntimeAddr, is_caller: bool) -> Vec<SourceFrame> {
        let lookup = RuntimeAddr(if is_caller {
            pc.0.saturating_sub(1)
        } else {
            pc.0
        });
        match self.module_for(lookup) {
            Some(module) => module.symbolize_file(module.to_file(lookup)),
            None => vec![SourceFrame {
                function: None,
                file: None,
                line: None,
                column: None,
                inlined: false,
                module: None,
            }],
        }
    }
}
