//! The site table of a traced address space: its ptrace breakpoints, their
//! original bytes, the trampolines in its scratch pages, and the addresses
//! removed recently whose late traps are still ours.
//!
//! The table changes the target's code only through its `CodeWriter` and
//! records every `int3` in the `PatchRegistry` before it is written (a
//! thread may trap the moment it is). Mapping a scratch page takes a
//! thread of the target (an injected `mmap`), which the tracer loop lends.
//!
//! Must never: forget an original byte while an `int3` of ours may still be
//! in the address space, or put a trampoline over another.

use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

use nix::errno::Errno;

use super::breakpoints::{BreakpointId, CodeWriter, HitHandler, PatchRegistry};
use super::code::{DisplacedInstruction, INT3};
use super::error::TraceError;
use super::hit_copy::{HeldToken, LetGo};
use super::kernel::CapturedMemory;
use super::scratch::{FilePlace, ScratchSpace};
use std::sync::Arc;

/// Most recently removed addresses remembered per process for late traps.
const MORIBUND_LIMIT: usize = 4096;
/// How long a removed address may still see a late trap, or be an int3 in
/// a fork child's copy of memory that has not been cleaned yet. A late trap
/// is microseconds late (milliseconds if its thread is preempted in the
/// kernel on its way to the stop); this is generous.
const MORIBUND_FRESH: Duration = Duration::from_secs(60);

/// One handler armed at a site. Each group at a shared address has its
/// own entry: the place for what its probe copies at the trap (a capture
/// plan run before the thread resumes), beside the handler that renders it.
pub(super) struct Armed {
    pub id: BreakpointId,
    pub group: u64,
    pub handler: Box<dyn HitHandler>,
    /// For a ptrace breakpoint that copies (`Tracer::insert_copying_breakpoint`):
    /// what to copy while the thread is held; its handler runs after.
    pub copy: Option<super::hit_copy::HitCopyPlan>,
}

/// One breakpoint address: one `int3`, several handlers.
pub(super) struct Site {
    pub instruction: DisplacedInstruction,
    /// Trampoline address, for instructions run out of line.
    pub trampoline: Option<u64>,
    pub handlers: Vec<Armed>,
    /// The place in the mapped file (None for anonymous code): a kernel
    /// uprobe there, in any process, would take this int3 (see
    /// `TracerLoop::uprobe_at_place`).
    pub place: Option<FilePlace>,
}

/// The site table of one address space: its ptrace breakpoints (one
/// `int3` per address, several handlers per site, in insertion order), the
/// recently removed ("moribund") addresses whose late traps are still
/// ours, and the scratch pages with their trampolines.
#[derive(Default)]
pub(super) struct SiteTable {
    pub sites: HashMap<u64, Site>,
    /// Recently removed address -> its original first byte.
    pub moribund: HashMap<u64, u8>,
    /// Removed addresses, oldest first, with when they were removed.
    moribund_order: VecDeque<(u64, Instant)>,
    pub scratch: ScratchSpace,
    /// Address of a `syscall` instruction for injected calls, once found.
    pub syscall_instruction: Option<u64>,
    /// Writer of this address space's memory, opened at the first write.
    pub writer: Option<CodeWriter>,
    /// Hits copied at a stop, whose handlers run once the thread is resumed.
    pub copied_hits: Vec<CopiedHit>,
    /// Threads kept stopped at a hit while their handlers read them on
    /// another thread; resumed by the loop when released or late.
    pub held_stops: Vec<HeldStop>,
}

impl SiteTable {
    /// Whether anything of ours may be in the address space (so hits,
    /// late traps, trampolines and fork children need attention).
    pub(super) fn in_use(&self) -> bool {
        !self.sites.is_empty()
            || !self.scratch.pages.is_empty()
            || self
                .moribund_order
                .back()
                .is_some_and(|(_, removed)| removed.elapsed() < MORIBUND_FRESH)
    }

    /// Whether `address` is an active or recently removed breakpoint.
    pub(super) fn is_ours(&self, address: u64) -> bool {
        self.sites.contains_key(&address) || self.moribund.contains_key(&address)
    }

    /// Every address that may hold an int3 of ours in this address space
    /// or a copy of it made recently (active and recently removed), with
    /// the byte it hides.
    pub(super) fn originals(&self) -> Vec<(u64, u8)> {
        let mut all: Vec<(u64, u8)> = self
            .sites
            .iter()
            .filter_map(|(addr, site)| Some((*addr, *site.instruction.bytes.first()?)))
            .collect();
        all.extend(
            self.moribund_order
                .iter()
                .rev()
                .take_while(|(_, removed)| removed.elapsed() < MORIBUND_FRESH)
                .filter_map(|(addr, _)| Some((*addr, *self.moribund.get(addr)?))),
        );
        all
    }

    /// The original bytes at `[addr, addr + buf.len())`: `buf` holds what
    /// memory shows, and our `int3`s are replaced by what they hide.
    pub(super) fn unpatch(&self, addr: u64, buf: &mut [u8]) {
        for (site_addr, site) in &self.sites {
            if let Some(offset) = site_addr.checked_sub(addr)
                && let Some(byte) = buf.get_mut(offset as usize)
                && let Some(original) = site.instruction.bytes.first()
            {
                *byte = *original;
            }
        }
    }

    pub(super) fn remember_moribund(&mut self, address: u64, original: u8) {
        if self.moribund.insert(address, original).is_some() {
            self.moribund_order.retain(|(a, _)| *a != address);
        }
        self.moribund_order.push_back((address, Instant::now()));
        while self.moribund_order.len() > MORIBUND_LIMIT {
            if let Some((oldest, _)) = self.moribund_order.pop_front() {
                self.moribund.remove(&oldest);
            }
        }
    }

    pub(super) fn forget_moribund(&mut self, address: u64) {
        if self.moribund.remove(&address).is_some() {
            self.moribund_order.retain(|(a, _)| *a != address);
        }
    }

    /// Lazily opened writer of this address space.
    pub(super) fn writer(&mut self, pid: i32) -> Result<&CodeWriter, Errno> {
        if self.writer.is_none() {
            self.writer = Some(CodeWriter::open(pid)?);
        }
        self.writer.as_ref().ok_or(Errno::EBADF)
    }

    /// Add a handler to the site at `address`, if there is one; the handler
    /// comes back otherwise.
    pub(super) fn join_site(&mut self, address: u64, armed: Armed) -> Result<(), Armed> {
        match self.sites.get_mut(&address) {
            Some(site) => {
                site.handlers.push(armed);
                Ok(())
            }
            None => Err(armed),
        }
    }

    /// Why `instruction` cannot get a breakpoint beside the existing ones:
    /// two int3s cannot share an instruction.
    pub(super) fn overlap(&self, instruction: &DisplacedInstruction) -> Option<String> {
        let address = instruction.address;
        let end = address + instruction.len() as u64;
        for (other, site) in &self.sites {
            if *other > address && *other < end {
                return Some(format!(
                    "a probe at {other:#x} lies inside the instruction at {address:#x} (`{}`); the two addresses cannot both be probed",
                    instruction.name()
                ));
            }
            let other_end = *other + site.instruction.len() as u64;
            if *other < address && address < other_end {
                return Some(format!(
                    "it is inside the instruction at {other:#x} (`{}`), not at the start of an instruction",
                    site.instruction.name()
                ));
            }
        }
        None
    }

    /// The address of a ptrace breakpoint at `place` of a file, if any.
    pub(super) fn site_at_place(&self, place: &FilePlace) -> Option<u64> {
        self.sites
            .iter()
            .find(|(_, site)| site.place.as_ref() == Some(place))
            .map(|(address, _)| *address)
    }

    /// The trampoline of `instruction`: one already built for the same
    /// bytes, or a new one written into a scratch page with room. Ok(None):
    /// no page has room (`problem` says why, when a page refused it); a
    /// new page is needed.
    pub(super) fn place_trampoline(
        &mut self,
        pid: i32,
        instruction: &DisplacedInstruction,
        problem: &mut Option<String>,
    ) -> Result<Option<u64>, TraceError> {
        let address = instruction.address;
        if let Some((at, bytes)) = self.scratch.trampolines.get(&address)
            && *bytes == instruction.bytes
        {
            return Ok(Some(*at));
        }
        let mut placed = None;
        for (index, page) in self.scratch.pages.iter().enumerate() {
            let Some(at) = page.next_free() else {
                continue;
            };
            match instruction.trampoline(at) {
                Ok((bytes, jump_at)) => {
                    placed = Some((index, at, bytes, jump_at));
                    break;
                }
                Err(why) => *problem = Some(why),
            }
        }
        let Some((index, at, bytes, jump_at)) = placed else {
            return Ok(None);
        };
        let code_write = |errno| TraceError::CodeWrite {
            pid,
            address: at,
            errno,
        };
        let writer = self.writer(pid).map_err(code_write)?;
        writer.write(at, &bytes).map_err(code_write)?;
        if let Some(page) = self.scratch.pages.get_mut(index) {
            page.take_slot(address, jump_at, instruction.len());
        }
        self.scratch
            .trampolines
            .insert(address, (at, instruction.bytes.clone()));
        Ok(Some(at))
    }

    /// Write the `int3` of a new site (registered first, so a thread that
    /// traps the moment the byte is written is recognised). On failure the
    /// site, never armed, is dropped with its handler.
    pub(super) fn arm(
        &mut self,
        pid: i32,
        site: Site,
        registry: &PatchRegistry,
    ) -> Result<(), TraceError> {
        let address = site.instruction.address;
        let original = site.instruction.bytes[0];
        let code_write = |errno| TraceError::CodeWrite {
            pid,
            address,
            errno,
        };
        let writer = match self.writer(pid) {
            Ok(writer) => writer,
            Err(errno) => return Err(code_write(errno)),
        };
        registry.patched(pid, address, original);
        if let Err(errno) = writer.write(address, &[INT3]) {
            registry.restored(pid, address);
            return Err(code_write(errno));
        }
        self.forget_moribund(address);
        self.sites.insert(address, site);
        Ok(())
    }

    /// Take the handlers of `group` out; a site left without handlers
    /// loses its `int3`. Returns the handlers, for the caller to end.
    pub(super) fn remove_group(
        &mut self,
        pid: i32,
        group: u64,
        registry: &PatchRegistry,
    ) -> Vec<Armed> {
        let mut removed = Vec::new();
        let mut emptied = Vec::new();
        for (address, site) in self.sites.iter_mut() {
            let (gone, kept): (Vec<Armed>, Vec<Armed>) = std::mem::take(&mut site.handlers)
                .into_iter()
                .partition(|armed| armed.group == group);
            site.handlers = kept;
            if !gone.is_empty() && site.handlers.is_empty() {
                emptied.push(*address);
            }
            removed.extend(gone);
        }
        for address in emptied {
            let Some(original) = self
                .sites
                .get(&address)
                .map(|site| site.instruction.bytes[0])
            else {
                continue;
            };
            let written = self
                .writer(pid)
                .and_then(|writer| writer.restore(address, original));
            match written {
                Ok(()) => {
                    self.sites.remove(&address);
                    self.remember_moribund(address, original);
                    registry.restored(pid, address);
                }
                Err(errno) => {
                    // Keep the site (with no handler): its traps must still
                    // be stepped over, or the target dies of them.
                    tracing::error!(pid, address, %errno, "cannot remove a breakpoint byte; it stays armed without handlers");
                }
            }
        }
        removed
    }

    /// Take every `int3` out at once; returns every handler, for the
    /// caller to end. Trampolines stay: threads may still run in them.
    pub(super) fn disarm_all(&mut self, pid: i32, registry: &PatchRegistry) -> Vec<Armed> {
        let sites: Vec<(u64, Site)> = self.sites.drain().collect();
        let mut ended = Vec::new();
        for (address, site) in sites {
            let original = site.instruction.bytes[0];
            let written = self
                .writer(pid)
                .and_then(|writer| writer.restore(address, original));
            match written {
                Ok(()) => registry.restored(pid, address),
                Err(errno) => {
                    tracing::error!(pid, address, %errno, "cannot remove a breakpoint byte")
                }
            }
            self.remember_moribund(address, original);
            ended.extend(site.handlers);
        }
        ended
    }

    /// The address space is gone (exit) or replaced (exec): every handler,
    /// for the caller to end; nothing is written.
    pub(super) fn into_handlers(self) -> Vec<Armed> {
        self.sites
            .into_values()
            .flat_map(|site| site.handlers)
            .collect()
    }

    /// Take the scratch pages out of the table (to unmap them: no thread
    /// runs in them any more, and no int3 can send one back).
    pub(super) fn take_scratch_pages(&mut self) -> Vec<u64> {
        self.scratch.trampolines.clear();
        self.scratch
            .pages
            .drain(..)
            .map(|page| page.start)
            .collect()
    }
}

/// A hit copied while its thread was stopped, waiting for the thread to be
/// resumed before its handlers are called.
pub(super) struct CopiedHit {
    pub tid: i32,
    pub address: u64,
    /// Registers as at the breakpoint (`rip == address`).
    pub regs: libc::user_regs_struct,
    /// One copy per handler that asked for one, with the time it took.
    pub copies: Vec<(BreakpointId, CapturedMemory, Duration)>,
    /// When the stop was seen.
    pub stopped: Instant,
    pub monotonic_ns: u64,
    pub time: std::time::SystemTime,
}

impl CopiedHit {
    /// How long the thread was held, with `resumed` when it was let go.
    pub fn held(&self, resumed: Instant) -> Duration {
        resumed.saturating_duration_since(self.stopped)
    }
}

/// A thread stopped at a hit whose handlers read it live elsewhere: it is
/// resumed once every token is released or the deadline passed. Dropped
/// without that (its process gone, exec), it lets every token go, so the
/// readers never take later memory for the hit's.
pub(super) struct HeldStop {
    pub tid: i32,
    pub address: u64,
    /// Registers as read at the stop (`rip == address + 1`).
    pub as_read: libc::user_regs_struct,
    pub tokens: Vec<Arc<HeldToken>>,
    pub deadline: Instant,
    /// Copies made at this stop for copying handlers, delivered once the
    /// thread is resumed.
    pub copied: Option<CopiedHit>,
}

impl HeldStop {
    /// Whether every reader released the thread.
    pub(super) fn released(&self) -> bool {
        self.tokens.iter().all(|token| token.is_released())
    }

    /// Takes the thread back from readers that did not release it.
    pub(super) fn let_go(&self, why: LetGo) {
        for token in &self.tokens {
            token.let_go(why);
        }
    }
}

impl Drop for HeldStop {
    fn drop(&mut self) {
        self.let_go(LetGo::ThreadGone);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::procmaps::FileId;
    use crate::tracer::breakpoints::{HitContext, HitVerdict};

    struct Keep;

    impl HitHandler for Keep {
        fn on_hit(&mut self, _hit: &HitContext<'_>) -> HitVerdict {
            HitVerdict::Keep
        }
    }

    fn armed(id: u64, group: u64) -> Armed {
        Armed {
            id: BreakpointId(id),
            group,
            handler: Box::new(Keep),
            copy: None,
        }
    }

    /// A table with a site at 0x1000 on `mov rbp, rsp` (3 bytes), entered
    /// without writing anything (no process).
    fn table_with_a_site() -> SiteTable {
        let instruction =
            DisplacedInstruction::analyze(0x1000, &[0x48, 0x89, 0xe5]).expect("mov rbp, rsp");
        let mut table = SiteTable::default();
        table.sites.insert(
            0x1000,
            Site {
                instruction,
                trampoline: None,
                handlers: vec![armed(1, 7)],
                place: Some(FilePlace {
                    file: FileId {
                        device: "08:01".into(),
                        inode: 42,
                    },
                    offset: crate::addr::FileOffset(0x1000),
                }),
            },
        );
        table
    }

    #[test]
    fn a_second_group_joins_the_site_and_a_new_address_does_not() {
        let mut table = table_with_a_site();
        assert!(table.join_site(0x1000, armed(2, 8)).is_ok());
        assert_eq!(table.sites[&0x1000].handlers.len(), 2);
        let refused = table.join_site(0x2000, armed(3, 9));
        assert!(refused.is_err_and(|armed| armed.id == BreakpointId(3)));
    }

    #[test]
    fn two_breakpoints_cannot_share_an_instruction() {
        let table = table_with_a_site();
        // Inside the existing site's instruction.
        let inside = DisplacedInstruction::analyze(0x1001, &[0x89, 0xe5]).expect("mov ebp, esp");
        let why = table.overlap(&inside).expect("refused");
        assert!(why.contains("inside the instruction at 0x1000"), "{why}");
        // An instruction that covers the existing site.
        let covering = DisplacedInstruction::analyze(0xffe, &[0x48, 0x8d, 0x64, 0x24, 0x08])
            .expect("lea rsp, [rsp+8]");
        let why = table.overlap(&covering).expect("refused");
        assert!(
            why.contains("lies inside the instruction at 0xffe"),
            "{why}"
        );
        // Right after it: fine.
        let after = DisplacedInstruction::analyze(0x1003, &[0x90]).expect("nop");
        assert_eq!(table.overlap(&after), None);
    }

    #[test]
    fn sites_are_found_by_their_place_in_the_file() {
        let table = table_with_a_site();
        let place = FilePlace {
            file: FileId {
                device: "08:01".into(),
                inode: 42,
            },
            offset: crate::addr::FileOffset(0x1000),
        };
        assert_eq!(table.site_at_place(&place), Some(0x1000));
        let elsewhere = FilePlace {
            offset: crate::addr::FileOffset(0x1003),
            ..place
        };
        assert_eq!(table.site_at_place(&elsewhere), None);
    }

    #[test]
    fn a_removed_address_stays_ours_for_late_traps() {
        let mut table = table_with_a_site();
        let original = table.sites[&0x1000].instruction.bytes[0];
        assert!(table.in_use());
        let handlers = table.sites.remove(&0x1000).map(|s| s.handlers.len());
        assert_eq!(handlers, Some(1));
        table.remember_moribund(0x1000, original);
        assert!(table.is_ours(0x1000));
        assert!(table.in_use(), "a late trap may still come");
        assert_eq!(table.originals(), vec![(0x1000, original)]);
    }
}
