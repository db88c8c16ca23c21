//! The one reader of `/proc/PID/maps`: a process's mappings with their
//! permissions, file offsets and file identities (device and inode).
//!
//! A ground-floor module: the tracer (scratch pages, breakpoint places,
//! stack clamps) and debuginfo (modules and their load bias) both read
//! maps through it, and it uses nothing of the crate but the address
//! newtypes, so no arrow runs back up. It never opens the mapped files.

use std::path::PathBuf;

use crate::addr::FileOffset;

/// One line of /proc/PID/maps.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Mapping {
    /// First address of the mapping.
    pub start: u64,
    /// One past the last address.
    pub end: u64,
    /// Readable (`r`).
    pub readable: bool,
    /// Executable (`x`).
    pub executable: bool,
    /// Offset in the mapped file of `start`.
    pub offset: u64,
    /// The path field as the kernel prints it (it may contain spaces and end
    /// with " (deleted)"), a pseudo-name (`[heap]`, `[stack]`, `[vdso]`), or
    /// "" for anonymous memory.
    pub path: String,
    /// The mapped file's device and inode; None for anonymous memory.
    pub file: Option<FileId>,
}

/// A file as the kernel knows it in /proc/PID/maps: device and inode. The
/// same file mapped by two processes has the same id, whatever its paths.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct FileId {
    /// `major:minor`, as /proc/PID/maps writes it.
    pub device: String,
    /// Inode number on that device.
    pub inode: u64,
}

/// A place in a file's code: where the kernel's uprobes are keyed, so
/// every process that maps the file shares it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct FilePlace {
    /// The file.
    pub file: FileId,
    /// Offset from the file's first byte.
    pub offset: FileOffset,
}

impl Mapping {
    /// Whether this maps a regular file (not anonymous memory, not `[stack]`/`[vdso]`...).
    pub fn is_file(&self) -> bool {
        self.file.is_some() && self.path.starts_with('/')
    }

    /// The mapped file's inode (0 for anonymous memory).
    pub fn inode(&self) -> u64 {
        self.file.as_ref().map_or(0, |f| f.inode)
    }

    /// The file path without the " (deleted)" marker.
    pub fn file_path(&self) -> PathBuf {
        PathBuf::from(self.path.strip_suffix(" (deleted)").unwrap_or(&self.path))
    }

    /// Whether `address` (a runtime address) lies in this mapping.
    pub fn contains(&self, address: u64) -> bool {
        self.start <= address && address < self.end
    }

    /// The place in the mapped file of `address`; None for anonymous memory
    /// or an address outside this mapping.
    pub fn file_place(&self, address: u64) -> Option<FilePlace> {
        if !self.contains(address) {
            return None;
        }
        Some(FilePlace {
            file: self.file.clone()?,
            offset: FileOffset(address - self.start + self.offset),
        })
    }
}

/// The memory map of `pid`, sorted by address.
pub fn read_maps(pid: i32) -> std::io::Result<Vec<Mapping>> {
    Ok(parse_maps(&std::fs::read_to_string(format!(
        "/proc/{pid}/maps"
    ))?))
}

/// Parses the text of /proc/PID/maps, sorted by address; malformed lines
/// are skipped.
pub fn parse_maps(text: &str) -> Vec<Mapping> {
    let mut maps: Vec<Mapping> = text.lines().filter_map(parse_line).collect();
    // The kernel prints them in order; a hand-made text may not.
    maps.sort_by_key(|m| m.start);
    maps
}

/// The mapping containing `address`.
pub fn mapping_at(maps: &[Mapping], address: u64) -> Option<&Mapping> {
    maps.iter().find(|m| m.contains(address))
}

/// `start-end perms offset dev inode   path`: five fields, then the path
/// after any run of blanks (the path itself may contain spaces).
fn parse_line(line: &str) -> Option<Mapping> {
    let mut rest = line;
    let mut field = || {
        rest = rest.trim_start();
        let end = rest.find(char::is_whitespace).unwrap_or(rest.len());
        let (f, r) = rest.split_at(end);
        rest = r;
        (!f.is_empty()).then_some(f)
    };
    let (start, end) = field()?.split_once('-')?;
    let perms = field()?.as_bytes();
    let offset = u64::from_str_radix(field()?, 16).ok()?;
    let device = field()?;
    let inode: u64 = field()?.parse().ok()?;
    let path = rest.trim_start().to_string();
    Some(Mapping {
        start: u64::from_str_radix(start, 16).ok()?,
        end: u64::from_str_radix(end, 16).ok()?,
        readable: perms.first() == Some(&b'r'),
        executable: perms.get(2) == Some(&b'x'),
        offset,
        path,
        file: (inode != 0).then(|| FileId {
            device: device.to_string(),
            inode,
        }),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const MAPS: &str = "\
555555555000-555555556000 r-xp 00001000 08:01 123                        /usr/bin/app with space
555555554000-555555555000 r--p 00000000 08:01 123 /usr/bin/app with space
555555559000-55555557a000 rw-p 00000000 00:00 0                          [heap]
7ffff7da8000-7ffff7f3d000 r-xp 00028000 08:01 456                        /usr/lib/libc.so.6 (deleted)
7fff00000000-7fff00001000 rw-p 00000000 00:00 0
garbage
";

    #[test]
    fn parses_files_pseudo_names_and_anonymous_memory_in_address_order() {
        let maps = parse_maps(MAPS);
        assert_eq!(maps.len(), 5);
        assert_eq!(maps[0].start, 0x5555_5555_4000);
        assert!(maps[0].readable && !maps[0].executable);
        assert!(maps[1].executable);
        assert_eq!(maps[1].path, "/usr/bin/app with space");
        assert!(maps[1].is_file());
        assert_eq!(maps[2].path, "[heap]");
        assert_eq!(maps[2].file, None);
        assert!(!maps[2].is_file());
        assert_eq!(maps[3].path, "");
        assert_eq!(maps[3].inode(), 0);
        assert_eq!(maps[4].file_path(), PathBuf::from("/usr/lib/libc.so.6"));
        assert_eq!(maps[4].inode(), 456);
    }

    #[test]
    fn a_code_address_has_a_place_in_its_file() {
        let maps = parse_maps(MAPS);
        let libc = mapping_at(&maps, 0x7fff_f7da_8010).expect("libc code");
        assert_eq!(
            libc.file_place(0x7fff_f7da_8010),
            Some(FilePlace {
                file: FileId {
                    device: "08:01".into(),
                    inode: 456
                },
                offset: FileOffset(0x28010)
            })
        );
        assert_eq!(libc.file_place(0x10), None);
        let heap = mapping_at(&maps, 0x5555_5555_a000).expect("heap");
        assert_eq!(heap.file_place(0x5555_5555_a000), None);
        assert!(mapping_at(&maps, 0x1000).is_none());
    }
}
