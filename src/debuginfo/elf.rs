//! The ELF files behind a module: memory-mapping one, reading a section's bytes (inflating compressed ones),
//! and finding the separate files its DWARF may live in (a debug file by build-id or `.gnu_debuglink`, a dwz
//! supplementary file by `.gnu_debugaltlink`).
//!
//! Knows files, not processes: never reads target memory and holds no DWARF parsed beyond section headers.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use memmap2::Mmap;
use object::{Object, ObjectSection};

use super::bytes::SectionBytes;
use super::error::DebugInfoError;

/// A memory-mapped ELF file.
pub(crate) struct MappedFile {
    pub(crate) path: PathBuf,
    pub(crate) map: Arc<Mmap>,
}

impl MappedFile {
    pub(crate) fn open(path: &Path) -> Result<MappedFile, DebugInfoError> {
        let file = File::open(path).map_err(|source| DebugInfoError::OpenFile {
            path: path.to_owned(),
            source,
        })?;
        // SAFETY: the map is read-only. Another process truncating the file while it is mapped could make
        // accesses fault; that is the accepted risk of every debugger that maps binaries (gdb, lldb, perf).
        let map = unsafe { Mmap::map(&file) }.map_err(|source| DebugInfoError::OpenFile {
            path: path.to_owned(),
            source,
        })?;
        Ok(MappedFile {
            path: path.to_owned(),
            map: Arc::new(map),
        })
    }

    /// Drops this process's page-table entries for the mapping, so pages touched while scanning stop counting
    /// toward our resident memory. The pages stay in the kernel's page cache and fault back in on the next
    /// read: scanning the headers of a 100 MB debug file otherwise leaves most of it resident through fault-around.
    pub(crate) fn release_pages(&self) {
        // SAFETY: the mapping is a read-only MAP_PRIVATE file mapping that is never written, so it has no
        // copy-on-write pages: MADV_DONTNEED only discards PTEs and later reads see the same file bytes.
        if let Err(e) = unsafe {
            self.map
                .unchecked_advise(memmap2::UncheckedAdvice::DontNeed)
        } {
            tracing::debug!(path = %self.path.display(), error = %e, "madvise(DONTNEED) failed");
        }
    }

    pub(crate) fn parse(&self) -> Result<object::File<'_>, DebugInfoError> {
        object::File::parse(&self.map[..]).map_err(|e| DebugInfoError::ParseElf {
            path: self.path.clone(),
            reason: e.to_string(),
        })
    }

    /// The bytes of section `name` (zero-copy unless compressed), with the section's address.
    pub(crate) fn section(
        &self,
        file: &object::File<'_>,
        name: &str,
    ) -> Option<(SectionBytes, u64)> {
        let section = file.section_by_name(name)?;
        let address = section.address();
        let compressed = section.compressed_data().ok()?;
        let bytes = if compressed.format == object::CompressionFormat::None {
            let base = self.map.as_ptr() as usize;
            let start = (compressed.data.as_ptr() as usize).checked_sub(base)?;
            SectionBytes::mapped(self.map.clone(), start, compressed.data.len())
        } else {
            match compressed.decompress() {
                Ok(data) => SectionBytes::owned(data.into_owned()),
                Err(e) => {
                    tracing::warn!(path = %self.path.display(), section = name, error = %e, "cannot decompress section");
                    return None;
                }
            }
        };
        Some((bytes, address))
    }
}

/// A build-id (or any bytes) as lowercase hex.
pub(crate) fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Whether the file holds a `.debug_info` with bytes in the file.
pub(crate) fn has_debug_info(file: &object::File<'_>) -> bool {
    file.section_by_name(".debug_info")
        .is_some_and(|s| s.size() > 0 && s.file_range().is_some())
}

/// Looks for a separate debug file: by build-id under /usr/lib/debug/.build-id, then by `.gnu_debuglink`
/// next to the file, in its `.debug/` subdirectory and under /usr/lib/debug/<dir>. Candidates are checked
/// against the build-id when both have one, and must contain `.debug_info`.
pub(crate) fn find_debug_file(
    file: &object::File<'_>,
    seen_path: &Path,
    root: Option<&Path>,
    build_id: Option<&str>,
) -> Option<MappedFile> {
    let mut candidates: Vec<PathBuf> = Vec::new();
    let under_roots = |p: PathBuf, out: &mut Vec<PathBuf>| {
        if let Some(root) = root
            && root != Path::new("/")
        {
            out.push(root.join(p.strip_prefix("/").unwrap_or(&p)));
        }
        out.push(p);
    };
    if let Some(id) = build_id.filter(|id| id.len() > 2) {
        under_roots(
            PathBuf::from(format!(
                "/usr/lib/debug/.build-id/{}/{}.debug",
                &id[..2],
                &id[2..]
            )),
            &mut candidates,
        );
    }
    if let Ok(Some((name, _crc))) = file.gnu_debuglink() {
        let name = String::from_utf8_lossy(name).into_owned();
        let dir = seen_path.parent().unwrap_or(Path::new("/"));
        under_roots(dir.join(&name), &mut candidates);
        under_roots(dir.join(".debug").join(&name), &mut candidates);
        let rel = dir.strip_prefix("/").unwrap_or(dir);
        under_roots(
            Path::new("/usr/lib/debug").join(rel).join(&name),
            &mut candidates,
        );
    }
    for candidate in candidates {
        if candidate == seen_path || !candidate.is_file() {
            continue;
        }
        let Ok(mapped) = MappedFile::open(&candidate) else {
            continue;
        };
        let Ok(parsed) = mapped.parse() else { continue };
        let their_id = parsed.build_id().ok().flatten().map(hex);
        if let (Some(ours), Some(theirs)) = (build_id, their_id.as_deref())
            && ours != theirs
        {
            tracing::debug!(path = %candidate.display(), "debug file build-id mismatch");
            continue;
        }
        if !has_debug_info(&parsed) {
            continue;
        }
        drop(parsed);
        tracing::debug!(module = %seen_path.display(), debug = %candidate.display(), "found separate debug file");
        return Some(mapped);
    }
    None
}

/// Finds the dwz supplementary file named by `.gnu_debugaltlink` (relative to the debug file's directory).
pub(crate) fn find_dwz_file(file: &object::File<'_>, debug_path: &Path) -> Option<MappedFile> {
    let (name, _id) = file.gnu_debugaltlink().ok().flatten()?;
    let name = PathBuf::from(String::from_utf8_lossy(name).into_owned());
    let path = if name.is_absolute() {
        name
    } else {
        debug_path.parent().unwrap_or(Path::new("/")).join(name)
    };
    MappedFile::open(&path).ok()
}
