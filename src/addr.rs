//! The two kinds of address a debugger mixes up: runtime (after load bias) and file (as written in ELF/DWARF).
//!
//! Owns only the newtypes; converting between them needs a module's bias (`Module::to_file`/`to_runtime`).
//! Never converts implicitly: mixing the two is the classic PIE/shared-library bug.
//!
//! A ground-floor module: the tracer and debuginfo both use it, and it uses
//! nothing of the crate, so no arrow runs back up.

use std::fmt;

/// An address in the running process (after load bias).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct RuntimeAddr(pub u64);

/// An address as written in the ELF file / DWARF (before load bias).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct FileAddr(pub u64);

impl fmt::Display for RuntimeAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:#x}", self.0)
    }
}

impl fmt::Display for FileAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:#x}", self.0)
    }
}

impl fmt::LowerHex for RuntimeAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::LowerHex::fmt(&self.0, f)
    }
}

impl fmt::LowerHex for FileAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::LowerHex::fmt(&self.0, f)
    }
}

/// A place in a mapped file: an offset from the file's first byte (what
/// the kernel keys uprobes on). Not a [`FileAddr`]: ELF virtual addresses
/// and file offsets differ by each segment's alignment.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct FileOffset(pub u64);

impl fmt::Display for FileOffset {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:#x}", self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_print_in_hex() {
        assert_eq!(RuntimeAddr(0x7f00_1234).to_string(), "0x7f001234");
        assert_eq!(format!("{:x}", FileAddr(0x1040)), "1040");
        assert_eq!(FileOffset(0x2000).to_string(), "0x2000");
        assert!(RuntimeAddr(1) < RuntimeAddr(2));
    }
}
