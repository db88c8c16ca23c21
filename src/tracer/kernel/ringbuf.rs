//! The consumer side of a BPF ring buffer map: the kernel's single ring
//! that every hit's record goes through, read here without a system call
//! per record (two shared pages of positions and the data pages mapped
//! twice, so a record that wraps around reads as one slice).

use std::io;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};

use super::bpf;

const BUSY_BIT: u32 = 1 << 31;
const DISCARD_BIT: u32 = 1 << 30;
const HEADER: usize = 8;

/// A ring buffer map and our mappings of it.
pub struct RingBuffer {
    map: OwnedFd,
    size: usize,
    page: usize,
    consumer: *mut u8,
    producer: *mut u8,
}

// SAFETY: the mappings are owned by this value and only read through
// atomics or as plain bytes the kernel published before the position we read.
unsafe impl Send for RingBuffer {}

impl RingBuffer {
    /// A new ring of `size` bytes (a power of two, a multiple of the page size).
    pub fn new(size: usize) -> io::Result<RingBuffer> {
        let map = bpf::create_map(bpf::MAP_TYPE_RINGBUF, 0, 0, size as u32, "liveprobe_ring")?;
        // SAFETY: sysconf has no preconditions.
        let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) } as usize;
        // SAFETY: mapping the map's consumer page read-write, as the kernel allows.
        let consumer = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                page,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED,
                map.as_raw_fd(),
                0,
            )
        };
        if consumer == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: the producer page and the data pages (mapped twice by the
        // kernel) are read-only for us.
        let producer = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                page + 2 * size,
                libc::PROT_READ,
                libc::MAP_SHARED,
                map.as_raw_fd(),
                page as libc::off_t,
            )
        };
        if producer == libc::MAP_FAILED {
            let error = io::Error::last_os_error();
            // SAFETY: unmapping what we just mapped.
            unsafe { libc::munmap(consumer, page) };
            return Err(error);
        }
        Ok(RingBuffer {
            map,
            size,
            page,
            consumer: consumer.cast(),
            producer: producer.cast(),
        })
    }

    /// The map's file descriptor (for programs, and to poll: readable when
    /// records wait).
    pub fn fd(&self) -> i32 {
        self.map.as_fd().as_raw_fd()
    }

    fn consumer_pos(&self) -> &AtomicU64 {
        // SAFETY: the consumer position is the first u64 of its page.
        unsafe { &*(self.consumer as *const AtomicU64) }
    }

    fn producer_pos(&self) -> &AtomicU64 {
        // SAFETY: the producer position is the first u64 of its page.
        unsafe { &*(self.producer as *const AtomicU64) }
    }

    /// True when no record waits.
    pub fn is_empty(&self) -> bool {
        self.consumer_pos().load(Ordering::Acquire) >= self.producer_pos().load(Ordering::Acquire)
    }

    /// Where the producer is now: records before it are committed or
    /// being written.
    pub fn producer_position(&self) -> u64 {
        self.producer_pos().load(Ordering::Acquire)
    }

    /// True once every record before `position` has been consumed.
    pub fn consumed_up_to(&self, position: u64) -> bool {
        self.consumer_pos().load(Ordering::Acquire) >= position
    }

    /// Calls `each` with every committed record, oldest first, and releases
    /// them to the kernel; stops after `limit` records. Returns how many
    /// were read.
    pub fn drain(&self, limit: usize, mut each: impl FnMut(&[u8])) -> usize {
        let mask = (self.size - 1) as u64;
        let mut consumer = self.consumer_pos().load(Ordering::Acquire);
        let mut count = 0;
        while count < limit {
            let producer = self.producer_pos().load(Ordering::Acquire);
            if consumer >= producer {
                break;
            }
            let at = (consumer & mask) as usize;
            // SAFETY: `at` is inside the first copy of the data pages, and a
            // header is 8-byte aligned there.
            let data = unsafe { self.producer.add(self.page) };
            let header = unsafe { &*(data.add(at) as *const AtomicU32) };
            let len = header.load(Ordering::Acquire);
            if len & BUSY_BIT != 0 {
                break;
            }
            let body_len = (len & !(BUSY_BIT | DISCARD_BIT)) as usize;
            if len & DISCARD_BIT == 0 && body_len <= self.size {
                // SAFETY: the record (committed: not busy) lies in the data
                // pages, which are mapped twice, so it never runs off the end.
                let body = unsafe { std::slice::from_raw_parts(data.add(at + HEADER), body_len) };
                each(body);
            }
            consumer += ((body_len + HEADER + 7) & !7) as u64;
            self.consumer_pos().store(consumer, Ordering::Release);
            count += 1;
        }
        count
    }
}

impl Drop for RingBuffer {
    fn drop(&mut self) {
        // SAFETY: unmapping our own mappings, made in `new`.
        unsafe {
            libc::munmap(self.consumer.cast(), self.page);
            libc::munmap(self.producer.cast(), self.page + 2 * self.size);
        }
    }
}
