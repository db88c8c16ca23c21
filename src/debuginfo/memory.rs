//! Where target bytes come from: a live process, bytes copied at a probe hit, or a recording.
//!
//! This room reads target memory only through [`MemorySource`]; it must never call ptrace or know the tracer.

use std::collections::BTreeMap;

/// Where target bytes come from (live process, bytes copied at a hit, a recording).
pub trait MemorySource {
    /// Fill `buf` from target address `addr`; fail (with the first unreadable address) if any byte is unreadable.
    fn read_memory(&self, addr: u64, buf: &mut [u8]) -> Result<(), MemoryError>;
    /// True when reads should reach this source exactly as asked, not
    /// rounded to whole pages by a cache (a copy of chosen ranges, or a
    /// recorder that plans what to copy).
    fn wants_exact_reads(&self) -> bool {
        false
    }

    /// Reads a NUL-terminated string at `addr`, at most `max` bytes of it
    /// (the NUL not included): the bytes, and whether its NUL was seen.
    /// Reads a page at a time, so a string that ends just before unmapped
    /// memory reads whole; a fault after the first page ends it early (NUL
    /// not seen). Sources that hold copies answer from the copy instead.
    fn read_string(&self, addr: u64, max: usize) -> Result<(Vec<u8>, bool), MemoryError> {
        read_string_by_pages(self, addr, max)
    }
}

/// `MemorySource::read_string` done with `read_memory`, a page at a time.
pub fn read_string_by_pages<M: MemorySource + ?Sized>(
    memory: &M,
    addr: u64,
    max: usize,
) -> Result<(Vec<u8>, bool), MemoryError> {
    let mut bytes = Vec::new();
    let mut cursor = addr;
    while bytes.len() < max {
        let page_left = (4096 - (cursor % 4096)) as usize;
        let mut chunk = vec![0u8; page_left.min(max - bytes.len())];
        if let Err(e) = memory.read_memory(cursor, &mut chunk) {
            if bytes.is_empty() {
                return Err(e);
            }
            return Ok((bytes, false));
        }
        if let Some(nul) = chunk.iter().position(|b| *b == 0) {
            bytes.extend_from_slice(&chunk[..nul]);
            return Ok((bytes, true));
        }
        cursor = cursor.wrapping_add(chunk.len() as u64);
        bytes.extend_from_slice(&chunk);
    }
    Ok((bytes, false))
}

/// A target read that could not be satisfied.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("read error at {addr:#x}")]
pub struct MemoryError {
    /// The first address that could not be read.
    pub addr: u64,
}

/// Reads a little-endian u64 through a [`MemorySource`].
pub fn read_u64(mem: &dyn MemorySource, addr: u64) -> Result<u64, MemoryError> {
    let mut buf = [0u8; 8];
    mem.read_memory(addr, &mut buf)?;
    Ok(u64::from_le_bytes(buf))
}

/// Memory recorded as a set of byte ranges (for example the stack copied at a probe hit, or a test recording).
///
/// Reads that are not entirely covered by one recorded range fail at the first missing byte.
#[derive(Clone, Debug, Default)]
pub struct RecordedMemory {
    ranges: BTreeMap<u64, Vec<u8>>,
}

impl RecordedMemory {
    /// An empty recording (every read fails).
    pub fn new() -> RecordedMemory {
        RecordedMemory::default()
    }

    /// Records `bytes` as the content of target memory at `addr`. Later ranges win where they overlap.
    pub fn insert(&mut self, addr: u64, bytes: Vec<u8>) {
        self.ranges.insert(addr, bytes);
    }
}

impl MemorySource for RecordedMemory {
    fn read_memory(&self, addr: u64, buf: &mut [u8]) -> Result<(), MemoryError> {
        let mut done = 0usize;
        while done < buf.len() {
            let want = addr.wrapping_add(done as u64);
            let Some((start, bytes)) = self.ranges.range(..=want).next_back() else {
                return Err(MemoryError { addr: want });
            };
            let skip = (want - start) as usize;
            if skip >= bytes.len() {
                return Err(MemoryError { addr: want });
            }
            let n = (bytes.len() - skip).min(buf.len() - done);
            buf[done..done + n].copy_from_slice(&bytes[skip..skip + n]);
            done += n;
        }
        Ok(())
    }
}
