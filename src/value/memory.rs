//! Batched reads over a [`MemorySource`]: small reads are served from whole
//! pages read once, so decoding a frame's locals or a struct's fields costs a
//! handful of page reads instead of one read per field. It never writes
//! target memory and holds at most [`MAX_CACHED_PAGES`] pages.

use std::cell::RefCell;
use std::collections::HashMap;
use std::sync::Arc;

use crate::debuginfo::{MemoryError, MemorySource};

const PAGE: u64 = 4096;

/// Most pages kept per cache (4 MiB); further reads go straight through.
pub const MAX_CACHED_PAGES: usize = 1024;

/// A read-through cache of whole pages over another memory source.
pub struct PageCache<'a> {
    inner: &'a dyn MemorySource,
    pages: RefCell<HashMap<u64, Option<Arc<[u8]>>>>,
}

impl<'a> PageCache<'a> {
    /// A cache in front of `inner`.
    pub fn new(inner: &'a dyn MemorySource) -> PageCache<'a> {
        PageCache {
            inner,
            pages: RefCell::new(HashMap::new()),
        }
    }

    /// The page at `start` (page-aligned), read on first use; `None` when the
    /// whole page cannot be read (then reads of it go straight through).
    fn page(&self, start: u64) -> Option<Arc<[u8]>> {
        if let Some(page) = self.pages.borrow().get(&start) {
            return page.clone();
        }
        if self.pages.borrow().len() >= MAX_CACHED_PAGES {
            return None;
        }
        let mut bytes = vec![0u8; PAGE as usize];
        let page: Option<Arc<[u8]>> = match self.inner.read_memory(start, &mut bytes) {
            Ok(()) => Some(Arc::from(bytes)),
            Err(_) => None,
        };
        self.pages.borrow_mut().insert(start, page.clone());
        page
    }
}

impl MemorySource for PageCache<'_> {
    fn read_memory(&self, addr: u64, buf: &mut [u8]) -> Result<(), MemoryError> {
        let len = buf.len() as u64;
        if len == 0 {
            return Ok(());
        }
        let end = addr.checked_add(len).ok_or(MemoryError { addr })?;
        let first = addr & !(PAGE - 1);
        let last = (end - 1) & !(PAGE - 1);
        // Large reads are already one syscall; caching them would only copy.
        if last - first >= 2 * PAGE || self.inner.wants_exact_reads() {
            return self.inner.read_memory(addr, buf);
        }
        let mut page_start = first;
        let mut done = 0usize;
        while page_start <= last {
            let from = addr.max(page_start);
            let to = end.min(page_start + PAGE);
            let n = (to - from) as usize;
            match self.page(page_start) {
                Some(page) => {
                    let offset = (from - page_start) as usize;
                    buf[done..done + n].copy_from_slice(&page[offset..offset + n]);
                }
                None => self.inner.read_memory(from, &mut buf[done..done + n])?,
            }
            done += n;
            page_start += PAGE;
        }
        Ok(())
    }

    fn wants_exact_reads(&self) -> bool {
        self.inner.wants_exact_reads()
    }

    fn read_string(&self, addr: u64, max: usize) -> Result<(Vec<u8>, bool), MemoryError> {
        if self.inner.wants_exact_reads() {
            return self.inner.read_string(addr, max);
        }
        crate::debuginfo::read_string_by_pages(self, addr, max)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::debuginfo::RecordedMemory;
    use std::cell::Cell;

    struct Counting<'a> {
        inner: &'a RecordedMemory,
        reads: Cell<usize>,
    }

    impl MemorySource for Counting<'_> {
        fn read_memory(&self, addr: u64, buf: &mut [u8]) -> Result<(), MemoryError> {
            self.reads.set(self.reads.get() + 1);
            self.inner.read_memory(addr, buf)
        }
    }

    #[test]
    fn serves_small_reads_from_one_page_read() {
        let mut recorded = RecordedMemory::new();
        recorded.insert(0x1000, (0..8192u32).map(|i| i as u8).collect());
        let counting = Counting {
            inner: &recorded,
            reads: Cell::new(0),
        };
        let cache = PageCache::new(&counting);
        let mut buf = [0u8; 4];
        for offset in [0u64, 8, 100, 4000] {
            cache.read_memory(0x1000 + offset, &mut buf).unwrap();
            assert_eq!(buf[0], offset as u8);
        }
        assert_eq!(counting.reads.get(), 1);
        // Straddling into the second page reads it once more.
        cache.read_memory(0x1ffe, &mut buf).unwrap();
        assert_eq!(buf, [0xfe, 0xff, 0x00, 0x01]);
        assert_eq!(counting.reads.get(), 2);
    }

    #[test]
    fn partial_recordings_fall_back_to_exact_reads() {
        let mut recorded = RecordedMemory::new();
        recorded.insert(0x1010, vec![7; 16]);
        let cache = PageCache::new(&recorded);
        let mut buf = [0u8; 8];
        cache.read_memory(0x1014, &mut buf).unwrap();
        assert_eq!(buf, [7; 8]);
        let err = cache.read_memory(0x1020, &mut buf).unwrap_err();
        assert_eq!(err.addr, 0x1020);
    }
}
