//! Byte storage for DWARF and CFI sections: a window into a memory-mapped file, or an owned buffer for
//! sections that had to be decompressed.
//!
//! Owns the zero-copy rule: sections are never copied out of the mapping unless they were compressed.

use std::fmt;
use std::ops::Deref;
use std::sync::Arc;

use memmap2::Mmap;

/// Where a [`SectionBytes`] window points.
#[derive(Clone)]
enum Backing {
    /// Nothing (a missing section).
    Empty,
    /// A read-only memory map of a whole file.
    Mapped(Arc<Mmap>),
    /// Bytes we own (a decompressed section).
    Owned(Arc<[u8]>),
}

/// A cheaply clonable, immutable byte slice backed by a shared memory map or an owned buffer.
#[derive(Clone)]
pub struct SectionBytes {
    backing: Backing,
    start: usize,
    len: usize,
}

impl SectionBytes {
    /// An empty slice.
    pub fn empty() -> SectionBytes {
        SectionBytes {
            backing: Backing::Empty,
            start: 0,
            len: 0,
        }
    }

    /// A window `[start, start+len)` of a mapped file; clamped to the mapping.
    pub fn mapped(map: Arc<Mmap>, start: usize, len: usize) -> SectionBytes {
        let start = start.min(map.len());
        let len = len.min(map.len() - start);
        SectionBytes {
            backing: Backing::Mapped(map),
            start,
            len,
        }
    }

    /// Bytes we own (for example a decompressed section).
    pub fn owned(bytes: Vec<u8>) -> SectionBytes {
        let len = bytes.len();
        SectionBytes {
            backing: Backing::Owned(Arc::from(bytes)),
            start: 0,
            len,
        }
    }

    fn whole(&self) -> &[u8] {
        match &self.backing {
            Backing::Empty => &[],
            Backing::Mapped(m) => m,
            Backing::Owned(o) => o,
        }
    }
}

impl Deref for SectionBytes {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        self.whole()
            .get(self.start..self.start + self.len)
            .unwrap_or(&[])
    }
}

impl fmt::Debug for SectionBytes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never dump section contents into logs: they can be hundreds of megabytes.
        write!(f, "SectionBytes({} bytes)", self.len)
    }
}

// SAFETY: the slice returned by `deref` points into a memory map or a heap buffer owned through an `Arc`.
// Moving or cloning a `SectionBytes` only moves/clones the `Arc`, never the bytes, so the address stays valid
// and unchanged for as long as any clone lives (the requirements of `StableDeref` and `CloneStableDeref`).
unsafe impl gimli::StableDeref for SectionBytes {}
// SAFETY: see above; clones share the same backing allocation.
unsafe impl gimli::CloneStableDeref for SectionBytes {}

/// The gimli reader type used everywhere in liveprobe: little-endian (runtime-checked) over [`SectionBytes`].
/// Send + Sync + Clone; cloning is an `Arc` increment.
pub type DwarfReader = gimli::EndianReader<gimli::RunTimeEndian, SectionBytes>;

/// Wraps bytes into a [`DwarfReader`].
pub fn reader(bytes: SectionBytes) -> DwarfReader {
    gimli::EndianReader::new(bytes, gimli::RunTimeEndian::Little)
}
