//! Reading target memory without stopping the target.
//!
//! Owns: the batched read path (`process_vm_readv` with many iovecs, split at
//! page boundaries so one bad page fails only the requests that touch it) and
//! the `/proc/PID/mem` fallback for pages `process_vm_readv` cannot read
//! (e.g. `PROT_NONE` pages, which ptrace's FOLL_FORCE access still reads).
//! Must never: loop over `PTRACE_PEEKDATA` (~500x slower), write into the
//! target, or require the target to be stopped.
//!
//! Seam for breakpoints (next issue): writes of breakpoint bytes go through a
//! `pwrite` on the same kept-open `/proc/PID/mem` file (`mem_file`), which
//! works on read-only text; after an exec the file refers to the old address
//! space, so a `ProcessMemory` must be created anew for the new image.

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::sync::{Arc, OnceLock};

use nix::errno::Errno;

use super::error::{MemoryReadCause, MemoryReadError};

/// Most iovecs one `process_vm_readv` call accepts (`UIO_MAXIOV`).
const MAX_IOVECS_PER_CALL: usize = libc::UIO_MAXIOV as usize;

fn page_size() -> u64 {
    static PAGE_SIZE: OnceLock<u64> = OnceLock::new();
    *PAGE_SIZE.get_or_init(|| {
        // SAFETY: sysconf has no memory-safety preconditions.
        let size = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
        if size > 0 { size as u64 } else { 4096 }
    })
}

/// Reader of one process's memory; cheap to clone, usable from any thread.
#[derive(Clone, Debug)]
pub struct ProcessMemory {
    pid: i32,
    /// `/proc/PID/mem`, opened on first need and kept open.
    mem_file: Arc<OnceLock<Result<File, MemoryReadCause>>>,
}

/// One page-bounded piece of a read request.
struct Piece {
    request: usize,
    offset: usize,
    addr: u64,
    len: usize,
}

impl ProcessMemory {
    /// A reader for process `pid`. Opens nothing yet.
    pub fn new(pid: i32) -> ProcessMemory {
        ProcessMemory {
            pid,
            mem_file: Arc::new(OnceLock::new()),
        }
    }

    /// The process this reads from.
    pub fn pid(&self) -> i32 {
        self.pid
    }

    /// Read exactly `buf.len()` bytes at `addr`; the error names the first
    /// byte that could not be read.
    pub fn read(&self, addr: u64, buf: &mut [u8]) -> Result<(), MemoryReadError> {
        let mut reqs = [(addr, buf)];
        match self.read_many(&mut reqs).pop() {
            Some(result) => result,
            None => Ok(()),
        }
    }

    /// Batched reads: each `(addr, buffer)` is filled completely or gets an
    /// error naming its first unreadable byte. Uses as few syscalls as the
    /// kernel allows (one `process_vm_readv` per 1024 page pieces when all
    /// pages are readable).
    pub fn read_many(&self, reqs: &mut [(u64, &mut [u8])]) -> Vec<Result<(), MemoryReadError>> {
        let mut results: Vec<Result<(), MemoryReadError>> = vec![Ok(()); reqs.len()];
        let pieces = self.split_into_pieces(reqs, &mut results);
        // Raw destination pointers, taken once so that the iovecs and the
        // fallback path address the same bytes without re-borrowing `reqs`.
        let destinations: Vec<*mut u8> = reqs.iter_mut().map(|(_, buf)| buf.as_mut_ptr()).collect();

        let mut next = 0;
        while next < pieces.len() {
            // Gather a batch of pieces whose requests have not failed yet.
            let mut batch: Vec<usize> = Vec::new();
            let mut scan = next;
            while scan < pieces.len() && batch.len() < MAX_IOVECS_PER_CALL {
                if results[pieces[scan].request].is_ok() {
                    batch.push(scan);
                }
                scan += 1;
            }
            next = scan;
            if batch.is_empty() {
                continue;
            }
            let mut start = 0;
            while start < batch.len() {
                let outcome = self.vm_readv(&pieces, &batch[start..], &destinations);
                match outcome {
                    Ok(bytes) => {
                        // Skip the pieces that were read completely.
                        let mut remaining = bytes;
                        let mut index = start;
                        while index < batch.len() && remaining >= pieces[batch[index]].len {
                            remaining -= pieces[batch[index]].len;
                            index += 1;
                        }
                        if index >= batch.len() {
                            break;
                        }
                        // Piece `index` failed (possibly after a partial copy).
                        let piece = &pieces[batch[index]];
                        self.read_piece_fallback(piece, remaining, &destinations, &mut results);
                        start = index + 1;
                    }
                    Err(Errno::EFAULT) | Err(Errno::EIO) => {
                        let piece = &pieces[batch[start]];
                        self.read_piece_fallback(piece, 0, &destinations, &mut results);
                        start += 1;
                    }
                    Err(Errno::ENOSYS) | Err(Errno::EINVAL) => {
                        // No process_vm_readv (seccomp, old kernel): read every
                        // piece through /proc/PID/mem instead.
                        for &piece_index in &batch[start..] {
                            let piece = &pieces[piece_index];
                            if results[piece.request].is_ok() {
                                self.read_piece_fallback(piece, 0, &destinations, &mut results);
                            }
                        }
                        break;
                    }
                    Err(errno) => {
                        let cause = cause_of(errno);
                        for &piece_index in &batch[start..] {
                            let piece = &pieces[piece_index];
                            if results[piece.request].is_ok() {
                                results[piece.request] = Err(MemoryReadError {
                                    pid: self.pid,
                                    addr: piece.addr,
                                    cause,
                                });
                            }
                        }
                        break;
                    }
                }
                // Pieces of a request that just failed need not be read.
                while start < batch.len() && results[pieces[batch[start]].request].is_err() {
                    start += 1;
                }
            }
        }
        results
    }

    fn split_into_pieces(
        &self,
        reqs: &[(u64, &mut [u8])],
        results: &mut [Result<(), MemoryReadError>],
    ) -> Vec<Piece> {
        let page = page_size();
        let mut pieces = Vec::with_capacity(reqs.len());
        for (request, (addr, buf)) in reqs.iter().enumerate() {
            let len = buf.len();
            if len == 0 {
                continue;
            }
            if addr.checked_add(len as u64 - 1).is_none() {
                results[request] = Err(MemoryReadError {
                    pid: self.pid,
                    addr: *addr,
                    cause: MemoryReadCause::Unmapped,
                });
                continue;
            }
            let mut offset = 0usize;
            while offset < len {
                let piece_addr = addr + offset as u64;
                let to_page_end = page - (piece_addr % page);
                let piece_len = (len - offset).min(to_page_end as usize);
                pieces.push(Piece {
                    request,
                    offset,
                    addr: piece_addr,
                    len: piece_len,
                });
                offset += piece_len;
            }
        }
        pieces
    }

    /// One `process_vm_readv` over the given pieces; returns bytes read.
    fn vm_readv(
        &self,
        pieces: &[Piece],
        batch: &[usize],
        destinations: &[*mut u8],
    ) -> Result<usize, Errno> {
        let mut local = Vec::with_capacity(batch.len());
        let mut remote = Vec::with_capacity(batch.len());
        for &piece_index in batch {
            let piece = &pieces[piece_index];
            // SAFETY: `offset + len` lies within the request's buffer (built by
            // split_into_pieces), and pieces of one buffer do not overlap.
            let base = unsafe { destinations[piece.request].add(piece.offset) };
            local.push(libc::iovec {
                iov_base: base.cast(),
                iov_len: piece.len,
            });
            remote.push(libc::iovec {
                iov_base: piece.addr as *mut libc::c_void,
                iov_len: piece.len,
            });
        }
        // SAFETY: the local iovecs point into live, exclusively borrowed
        // buffers; remote addresses are only interpreted by the kernel.
        let bytes = unsafe {
            libc::process_vm_readv(
                self.pid,
                local.as_ptr(),
                local.len() as libc::c_ulong,
                remote.as_ptr(),
                remote.len() as libc::c_ulong,
                0,
            )
        };
        if bytes < 0 {
            Err(Errno::last())
        } else {
            Ok(bytes as usize)
        }
    }

    /// Read the rest of one piece (from `already` bytes in) through
    /// `/proc/PID/mem`, which can read pages `process_vm_readv` cannot.
    fn read_piece_fallback(
        &self,
        piece: &Piece,
        already: usize,
        destinations: &[*mut u8],
        results: &mut [Result<(), MemoryReadError>],
    ) {
        let mut done = already;
        while done < piece.len {
            let addr = piece.addr + done as u64;
            let file = match self.mem_file() {
                Ok(file) => file,
                Err(cause) => {
                    results[piece.request] = Err(MemoryReadError {
                        pid: self.pid,
                        addr,
                        cause,
                    });
                    return;
                }
            };
            // SAFETY: the range lies within the request's buffer (see vm_readv).
            let dest = unsafe {
                std::slice::from_raw_parts_mut(
                    destinations[piece.request].add(piece.offset + done),
                    piece.len - done,
                )
            };
            match file.read_at(dest, addr) {
                Ok(0) => {
                    results[piece.request] = Err(MemoryReadError {
                        pid: self.pid,
                        addr,
                        cause: MemoryReadCause::Unmapped,
                    });
                    return;
                }
                Ok(n) => done += n,
                Err(error) if error.kind() == std::io::ErrorKind::Interrupted => {}
                Err(error) => {
                    let cause = match error.raw_os_error().map(Errno::from_raw) {
                        Some(Errno::EIO) | Some(Errno::EFAULT) | Some(Errno::EINVAL) | None => {
                            MemoryReadCause::Unmapped
                        }
                        Some(errno) => cause_of(errno),
                    };
                    results[piece.request] = Err(MemoryReadError {
                        pid: self.pid,
                        addr,
                        cause,
                    });
                    return;
                }
            }
        }
    }

    fn mem_file(&self) -> Result<&File, MemoryReadCause> {
        let opened = self.mem_file.get_or_init(|| {
            File::open(format!("/proc/{}/mem", self.pid)).map_err(|error| {
                match error.raw_os_error() {
                    Some(code) => cause_of(Errno::from_raw(code)),
                    None => MemoryReadCause::ProcessGone,
                }
            })
        });
        opened.as_ref().map_err(|cause| *cause)
    }
}

fn cause_of(errno: Errno) -> MemoryReadCause {
    match errno {
        Errno::ESRCH | Errno::ENOENT => MemoryReadCause::ProcessGone,
        Errno::EPERM | Errno::EACCES => MemoryReadCause::PermissionDenied,
        Errno::EFAULT | Errno::EIO => MemoryReadCause::Unmapped,
        other => MemoryReadCause::Os(other),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Reads of our own memory exercise the whole path without a target.
    #[test]
    fn reads_own_memory_across_pages_and_reports_first_bad_byte() {
        let page = page_size() as usize;
        // SAFETY: plain anonymous mapping of three pages, unmapped at the end.
        let base = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                3 * page,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        assert_ne!(base, libc::MAP_FAILED);
        let base = base as *mut u8;
        for i in 0..3 * page {
            // SAFETY: within the mapping.
            unsafe { *base.add(i) = (i % 251) as u8 };
        }
        // Make the middle page unreadable to process_vm_readv (PROT_NONE) and
        // the last page unmapped altogether.
        // SAFETY: within the mapping.
        unsafe {
            assert_eq!(
                libc::mprotect(base.add(page).cast(), page, libc::PROT_NONE),
                0
            );
            assert_eq!(libc::munmap(base.add(2 * page).cast(), page), 0);
        }
        let memory = ProcessMemory::new(std::process::id() as i32);
        let addr = base as u64;

        let mut first = vec![0u8; page];
        let mut straddling = vec![0u8; 64];
        let mut guarded = vec![0u8; 16];
        let mut beyond = vec![0u8; 8];
        let mut reqs: Vec<(u64, &mut [u8])> = vec![
            (addr, &mut first),
            (addr + page as u64 - 32, &mut straddling),
            (addr + page as u64 + 8, &mut guarded),
            (addr + 2 * page as u64 + 8, &mut beyond),
        ];
        let results = memory.read_many(&mut reqs);
        assert_eq!(results[0], Ok(()));
        assert!(first.iter().enumerate().all(|(i, b)| *b == (i % 251) as u8));
        // PROT_NONE pages are readable through /proc/PID/mem (FOLL_FORCE).
        assert_eq!(results[1], Ok(()));
        assert_eq!(straddling[40], ((page + 8) % 251) as u8);
        assert_eq!(results[2], Ok(()));
        let err = results[3].expect_err("unmapped page must fail");
        assert_eq!(err.addr, addr + 2 * page as u64 + 8);
        assert_eq!(err.cause, MemoryReadCause::Unmapped);

        let mut straddle_unmapped = vec![0u8; 32];
        let err = memory
            .read(addr + 2 * page as u64 - 16, &mut straddle_unmapped)
            .expect_err("read into unmapped page must fail");
        assert_eq!(err.addr, addr + 2 * page as u64);

        // SAFETY: unmapping what we mapped.
        unsafe { libc::munmap(base.cast(), 2 * page) };
    }

    #[test]
    fn gone_process_is_reported() {
        let memory = ProcessMemory::new(i32::MAX - 7);
        let mut buf = [0u8; 8];
        let err = memory.read(0x1000, &mut buf).expect_err("no such process");
        assert_eq!(err.cause, MemoryReadCause::ProcessGone);
    }
}
