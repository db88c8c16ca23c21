//! Parsing /proc/PID/maps into file-backed mappings.
//!
//! Owns only text parsing; it never opens the mapped files.

use std::path::PathBuf;

/// One line of /proc/PID/maps.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Mapping {
    /// First address of the mapping.
    pub start: u64,
    /// One past the last address.
    pub end: u64,
    /// Readable.
    pub read: bool,
    /// Executable.
    pub exec: bool,
    /// Offset in the file of `start`.
    pub offset: u64,
    /// Inode (0 for anonymous mappings).
    pub inode: u64,
    /// The path field as the kernel prints it (may end with " (deleted)"), or a pseudo-name like "[vdso]".
    pub pathname: String,
}

impl Mapping {
    /// Whether this maps a regular file (not anonymous memory, not `[stack]`/`[vdso]`...).
    pub fn is_file(&self) -> bool {
        self.inode != 0 && self.pathname.starts_with('/')
    }

    /// The file path without the " (deleted)" marker.
    pub fn file_path(&self) -> PathBuf {
        PathBuf::from(
            self.pathname
                .strip_suffix(" (deleted)")
                .unwrap_or(&self.pathname),
        )
    }
}

/// Parses the text of /proc/PID/maps; malformed lines are skipped.
pub fn parse_maps(text: &str) -> Vec<Mapping> {
    text.lines().filter_map(parse_line).collect()
}

fn parse_line(line: &str) -> Option<Mapping> {
    let mut fields = line.splitn(6, ' ');
    let range = fields.next()?;
    let perms = fields.next()?;
    let offset = fields.next()?;
    let _dev = fields.next()?;
    let inode = fields.next()?;
    let pathname = fields.next().unwrap_or("").trim_start().to_string();
    let (start, end) = range.split_once('-')?;
    let perms = perms.as_bytes();
    Some(Mapping {
        start: u64::from_str_radix(start, 16).ok()?,
        end: u64::from_str_radix(end, 16).ok()?,
        read: perms.first() == Some(&b'r'),
        exec: perms.get(2) == Some(&b'x'),
        offset: u64::from_str_radix(offset, 16).ok()?,
        inode: inode.parse().ok()?,
        pathname,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_file_and_anonymous_lines() {
        let text = "55d0c0de0000-55d0c0de1000 r--p 00000000 fd:01 1234 /usr/bin/my prog (deleted)\n\
                    7ffd1000-7ffd2000 rw-p 00000000 00:00 0                          [stack]\n\
                    garbage\n";
        let maps = parse_maps(text);
        assert_eq!(maps.len(), 2);
        assert!(maps[0].is_file());
        assert_eq!(maps[0].file_path(), PathBuf::from("/usr/bin/my prog"));
        assert!(!maps[1].is_file());
        assert_eq!(maps[1].pathname, "[stack]");
    }
}
