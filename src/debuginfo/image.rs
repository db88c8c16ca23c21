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
use super::source_frame::SourceFrame;

/// All ELF modules mapped in a process, each with its load bias.
#[derive(Debug)]
pub struct ProcessImage {
    pid: i32,
    modules: Vec<Arc<Module>>,
    /// Sorted runtime ranges -> index into `modules`.
    ranges: Vec<(u64, u64, usize)>,
    main: Option<usize>,
    /// Signature of the file mappings this image was built from (see [`maps_signature`]); 0 when not built
    /// from /proc/PID/maps.
    signature: u64,
}

/// Reads and parses /proc/PID/maps.
fn read_maps(pid: i32) -> Result<Vec<Mapping>, DebugInfoError> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/maps"))
        .map_err(|source| DebugInfoError::ReadMaps { pid, source })?;
    Ok(parse_maps(&text))
}

/// A cheap fingerprint of the mappings of files with code in /proc/PID/maps: it changes when a library is
/// loaded (`dlopen`) or unloaded (`dlclose`), and not when the heap or a thread stack grows or a data file is
/// mapped (databases map and unmap theirs all the time).
pub fn maps_signature(mappings: &[Mapping]) -> u64 {
    use std::hash::{Hash, Hasher};
    let with_code: std::collections::HashSet<(&str, u64)> = mappings
        .iter()
        .filter(|m| m.is_file() && m.executable)
        .map(|m| (m.path.as_str(), m.inode()))
        .collect();
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    for m in mappings
        .iter()
        .filter(|m| m.is_file() && with_code.contains(&(m.path.as_str(), m.inode())))
    {
        (m.start, m.end, m.executable, m.offset, m.inode(), &m.path).hash(&mut hasher);
    }
    hasher.finish()
}

impl ProcessImage {
    /// Reads /proc/PID/maps and opens every file-backed ELF mapping that has executable code (through
    /// /proc/PID/map_files or /proc/PID/root so containers and deleted files work), computing each load bias.
    /// Fast: files are memory-mapped, only ELF headers are read; no DWARF is parsed here.
    pub fn load(pid: i32) -> Result<ProcessImage, DebugInfoError> {
        let mappings = read_maps(pid)?;
        Ok(ProcessImage::build(pid, mappings, None))
    }

    /// The image as the process is mapped now, when its file mappings changed since this image was built
    /// (a library loaded or unloaded); `None` when nothing changed. Modules still mapped where they were are
    /// shared with this image, with every index already built for them.
    pub fn refreshed(&self) -> Result<Option<ProcessImage>, DebugInfoError> {
        let mappings = read_maps(self.pid)?;
        if maps_signature(&mappings) == self.signature {
            return Ok(None);
        }
        Ok(Some(ProcessImage::build(self.pid, mappings, Some(self))))
    }

    /// The modules of this image that `newer` no longer has (unloaded, or replaced by another file).
    pub fn unloaded_in(&self, newer: &ProcessImage) -> Vec<Arc<Module>> {
        self.modules
            .iter()
            .filter(|m| !newer.modules.iter().any(|n| Arc::ptr_eq(m, n)))
            .cloned()
            .collect()
    }

    /// The modules `newer` has that this image did not.
    pub fn loaded_in(&self, newer: &ProcessImage) -> Vec<Arc<Module>> {
        newer.unloaded_in(self)
    }

    fn build(pid: i32, mappings: Vec<Mapping>, previous: Option<&ProcessImage>) -> ProcessImage {
        let signature = maps_signature(&mappings);
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
        let vdso = mappings.iter().find(|m| m.path == "[vdso]").cloned();
        for m in mappings.into_iter().filter(Mapping::is_file) {
            let key = (m.path.clone(), m.inode());
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
            if !group.iter().any(|m| m.executable) {
                continue;
            }
            let seen = group[0].file_path();
            let first = &group[0];
            let mut ranges: Vec<(u64, u64)> = group.iter().map(|m| (m.start, m.end)).collect();
            ranges.sort_unstable();
            // The same file mapped at the same addresses: keep its module and everything already indexed.
            if let Some(kept) = previous.and_then(|p| {
                p.modules
                    .iter()
                    .find(|m| m.inode == first.inode() && m.path() == seen && m.ranges == ranges)
            }) {
                if exe.as_deref() == Some(seen.as_path()) {
                    main = Some(modules.len());
                }
                modules.push(kept.clone());
                continue;
            }
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
        let kept_vdso = previous.and_then(|p| {
            let v = vdso.as_ref()?;
            p.modules
                .iter()
                .find(|m| m.path() == Path::new("[vdso]") && m.ranges == [(v.start, v.end)])
                .cloned()
        });
        match kept_vdso {
            Some(module) => modules.push(module),
            None => {
                if let Some(module) = vdso.as_ref().and_then(Module::vdso) {
                    modules.push(Arc::new(module));
                }
            }
        }
        let mut image = ProcessImage::from_modules(pid, modules, main);
        image.signature = signature;
        image
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
            signature: 0,
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_signature_changes_with_libraries_not_with_the_heap() {
        let base = "55d0c0de0000-55d0c0de1000 r-xp 00000000 fd:01 1234 /usr/bin/prog\n\
                    55d0c0f00000-55d0c0f21000 rw-p 00000000 00:00 0 [heap]\n";
        let grown = "55d0c0de0000-55d0c0de1000 r-xp 00000000 fd:01 1234 /usr/bin/prog\n\
                     55d0c0f00000-55d0c0f42000 rw-p 00000000 00:00 0 [heap]\n\
                     7f0000000000-7f0000021000 rw-p 00000000 00:00 0\n\
                     7f2000000000-7f2000100000 r--s 00000000 fd:01 77 /var/lib/db/data.mdb\n";
        let loaded = "55d0c0de0000-55d0c0de1000 r-xp 00000000 fd:01 1234 /usr/bin/prog\n\
                      7f1000000000-7f1000001000 r-xp 00001000 fd:01 99 /opt/plugin.so\n";
        let sig = |t: &str| maps_signature(&parse_maps(t));
        assert_eq!(sig(base), sig(grown));
        assert_ne!(sig(base), sig(loaded));
    }
}
