//! Kernel-side sites on the tracer thread: arming them, reading their
//! records from the ring and handing each to its site's handler, ending
//! them with their process. The handlers are the same as for ptrace
//! breakpoints; they see a hit on captured memory, and (the engine's) only
//! queue it for a worker thread: the drain never waits on a lock.

use std::collections::HashMap;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::time::{Duration, Instant, SystemTime};

use super::super::breakpoints::{
    BreakpointEnd, BreakpointId, CopiedHitContext, HitHandler, HitVerdict, monotonic_ns,
};
use super::super::error::TraceError;
use super::super::kernel::{
    CapturePlan, KernelProbes, KernelSite, RING_POLL_INTERVAL, decode_record,
};
use super::super::scratch::{self, FilePlace};
use super::super::sites::Armed;
use super::TracerLoop;
use super::hits::call_on_end;

/// Records handled per loop turn, so ptrace events are not starved by a
/// flood of hits.
const RECORDS_PER_TURN: usize = 4096;
/// Longest a flush before an answer works through waiting records: a full
/// ring of the smallest records takes about a second in a release build;
/// this stays well below a client's request timeout.
const FLUSH_LIMIT: Duration = Duration::from_secs(5);
/// How often the lost-record counters are read.
const LOSS_CHECK_INTERVAL: Duration = Duration::from_millis(200);

/// The kernel-side state of the tracer thread: the one owner of the
/// uprobes, their handlers (in the same map, keyed by site id) and the ring.
pub(super) struct KernelState {
    probes: Option<KernelProbes<Armed>>,
    /// Why kernel-side probes cannot be used here, once found out.
    unavailable: Option<String>,
    last_loss_check: Option<Instant>,
    /// Offset from CLOCK_MONOTONIC to wall-clock time, in ns.
    wall_offset_ns: i128,
    /// Size of the ring, in bytes (a power of two).
    pub ring_bytes: usize,
}

impl KernelState {
    pub(super) fn new(ring_bytes: usize) -> KernelState {
        KernelState {
            probes: None,
            unavailable: None,
            last_loss_check: None,
            wall_offset_ns: 0,
            ring_bytes,
        }
    }

    /// How long the tracer may sleep: hits do not wake it (see
    /// `program`), so while kernel-side sites exist it comes by itself, at
    /// once when records are still waiting.
    pub(super) fn max_sleep(&self) -> Option<Duration> {
        let probes = self.probes.as_ref()?;
        if probes.sites.is_empty() {
            return None;
        }
        Some(if probes.ring.is_empty() {
            RING_POLL_INTERVAL
        } else {
            Duration::ZERO
        })
    }
}

impl TracerLoop {
    /// The group of the kernel-side site at `address` of `pid`, if any.
    pub(super) fn kernel_site_at(&self, pid: i32, address: u64) -> Option<u64> {
        let probes = self.kernel.probes.as_ref()?;
        probes
            .sites
            .values()
            .find(|s| s.pid == pid && s.address == address)
            .map(|s| s.group)
    }

    /// A kernel-side site (its pid and group) at `place`, in any process.
    pub(super) fn kernel_site_at_place(&self, place: &FilePlace) -> Option<(i32, u64)> {
        let probes = self.kernel.probes.as_ref()?;
        probes
            .sites
            .values()
            .find(|s| s.place == *place)
            .map(|s| (s.pid, s.group))
    }

    /// A ptrace breakpoint (its pid and address) at `place`, in any process.
    fn ptrace_site_at_place(&self, place: &FilePlace) -> Option<(i32, u64)> {
        self.processes.iter().find_map(|(pid, target)| {
            let address = target.space.breakpoints.site_at_place(place)?;
            Some((*pid, address))
        })
    }

    /// Where a kernel-side site at `address` of `pid` would go (the path
    /// the uprobe opens, the file place), or why it cannot: every refusal
    /// known before the kernel is asked for the uprobe (a dry run asks this
    /// too; a first ask sets up the ring, as arming would).
    pub(super) fn kernel_site_place(
        &mut self,
        pid: i32,
        address: u64,
    ) -> Result<(String, FilePlace), TraceError> {
        let refused = |reason: String| TraceError::BreakpointRefused {
            pid,
            address,
            reason,
        };
        let Some(target) = self.processes.get(pid) else {
            return Err(self.not_live_error(pid));
        };
        if target.detach.is_some() {
            return Err(TraceError::DetachInProgress { pid });
        }
        if target.space.breakpoints.sites.contains_key(&address) {
            return Err(refused("a ptrace breakpoint is already there".into()));
        }
        if let Some(why) = &self.kernel.unavailable {
            return Err(refused(why.clone()));
        }
        if self.kernel.probes.is_none() {
            match KernelProbes::new(self.kernel.ring_bytes) {
                Ok(probes) => {
                    let wall = SystemTime::now()
                        .duration_since(SystemTime::UNIX_EPOCH)
                        .map(|d| d.as_nanos() as i128)
                        .unwrap_or(0);
                    self.kernel.wall_offset_ns = wall - monotonic_ns() as i128;
                    self.kernel.probes = Some(probes);
                }
                Err(e) => {
                    self.kernel.unavailable = Some(e.0.clone());
                    return Err(refused(e.0));
                }
            }
        }
        let maps = scratch::read_maps(pid);
        let Some(mapping) = scratch::mapping_at(&maps, address).filter(|m| m.executable) else {
            return Err(refused("no executable code is mapped there".into()));
        };
        if !mapping.path.starts_with('/') {
            return Err(refused(format!(
                "the code there is not from a file ({}), which a uprobe needs",
                mapping.path
            )));
        }
        // The mapping's own link in /proc reaches the very file mapped, even
        // in another mount namespace or after the file was replaced on disk,
        // but following it takes CAP_SYS_ADMIN (or CAP_CHECKPOINT_RESTORE);
        // without, the path in the target's root is the next best.
        let map_files = format!(
            "/proc/{pid}/map_files/{:x}-{:x}",
            mapping.start, mapping.end
        );
        let path = if std::fs::metadata(&map_files).is_ok() {
            map_files
        } else {
            format!("/proc/{pid}/root{}", mapping.path)
        };
        let Some(place) = mapping.file_place(address) else {
            return Err(refused(format!(
                "the code there has no file identity in /proc/{pid}/maps, which a uprobe needs"
            )));
        };
        // The uprobe would be at this place in every process of the file:
        // where one of ours has a ptrace int3 there and any uprobe, the
        // kernel would take that int3 for the uprobe's and remove it.
        if let Some((other_pid, other_address)) = self.ptrace_site_at_place(&place) {
            return Err(refused(format!(
                "a ptrace breakpoint is already there, at the same place of {} ({other_address:#x} in process {other_pid}); a uprobe would remove it",
                mapping.path
            )));
        }
        Ok((path, place))
    }

    /// Arms a kernel-side site (see `Tracer::insert_kernel_breakpoint`). On
    /// failure the handler comes back, so the caller can use it elsewhere.
    pub(super) fn insert_kernel_breakpoint(
        &mut self,
        pid: i32,
        address: u64,
        group: u64,
        handler: Box<dyn HitHandler>,
        plan: CapturePlan,
    ) -> Result<BreakpointId, (TraceError, Box<dyn HitHandler>)> {
        let refused = |reason: String| TraceError::BreakpointRefused {
            pid,
            address,
            reason,
        };
        let (path, place) = match self.kernel_site_place(pid, address) {
            Ok(found) => found,
            Err(e) => return Err((e, handler)),
        };
        let id = BreakpointId(self.next_breakpoint);
        let Some(probes) = self.kernel.probes.as_mut() else {
            return Err((refused("kernel probes are not set up".into()), handler));
        };
        let armed = Armed {
            id,
            group,
            handler,
            copy: None,
        };
        if let Err((e, armed)) = probes.arm(id.0, pid, address, group, &path, place, plan, armed) {
            return Err((refused(e.0), armed.handler));
        }
        self.next_breakpoint += 1;
        tracing::debug!(
            pid,
            address = format_args!("{address:#x}"),
            group,
            "kernel-side probe armed"
        );
        Ok(id)
    }

    /// Handles the records waiting in the ring (at most a turn's worth).
    pub(super) fn drain_kernel_hits(&mut self) {
        let Some(probes) = self.kernel.probes.as_ref() else {
            return;
        };
        if probes.sites.is_empty() {
            // Records of removed sites may still wait; drop them.
            probes.ring.drain(usize::MAX, |_| {});
            return;
        }
        let mut remove = self.deliver_batch();
        remove.sort_unstable();
        remove.dedup();
        for (pid, group) in remove {
            self.remove_group(pid, group);
        }
        self.check_kernel_losses();
    }

    /// Handles every record committed before this call: an answer about
    /// probes then includes every hit before it. Records that arrive
    /// meanwhile wait for the next turn, and the flush gives up after
    /// `FLUSH_LIMIT`, so a backlog cannot hold an answer back for long.
    pub(super) fn flush_kernel_hits(&mut self) {
        let mut remove = self.drain_committed();
        remove.sort_unstable();
        remove.dedup();
        for (pid, group) in remove {
            self.remove_group(pid, group);
        }
        self.kernel.last_loss_check = None;
        self.check_kernel_losses();
    }

    fn check_kernel_losses(&mut self) {
        let now = Instant::now();
        if self
            .kernel
            .last_loss_check
            .is_some_and(|t| now.duration_since(t) < LOSS_CHECK_INTERVAL)
        {
            return;
        }
        self.kernel.last_loss_check = Some(now);
        let Some(probes) = self.kernel.probes.as_mut() else {
            return;
        };
        for (id, count) in probes.new_losses() {
            if let Some(site) = probes.sites.get_mut(&id) {
                site.handler.handler.on_lost(count);
            }
        }
    }

    /// Takes the kernel-side sites of `group` in `pid` out; returns their
    /// handlers (the caller ends them).
    pub(super) fn remove_kernel_group(&mut self, pid: i32, group: u64) -> Vec<Armed> {
        let Some(probes) = self.kernel.probes.as_mut() else {
            return Vec::new();
        };
        let ids: Vec<u64> = probes
            .sites
            .iter()
            .filter(|(_, s)| s.pid == pid && s.group == group)
            .map(|(id, _)| *id)
            .collect();
        // Records already in the ring are still handed over first: they are
        // hits that happened while the probe was armed; so are its losses.
        let mut others = Vec::new();
        if !ids.is_empty() {
            others = self.drain_committed();
            self.kernel.last_loss_check = None;
            self.check_kernel_losses();
        }
        let Some(probes) = self.kernel.probes.as_mut() else {
            return Vec::new();
        };
        let mut out = Vec::new();
        for id in ids {
            if let Some(site) = probes.disarm(id) {
                out.push(site.handler);
            }
        }
        self.release_kernel_if_idle();
        // Other groups whose handlers asked to go while their records were
        // handed over (done, throttled, a panic) go too.
        for (other_pid, other_group) in others {
            if (other_pid, other_group) != (pid, group) {
                for armed in self.remove_kernel_group(other_pid, other_group) {
                    call_on_end(armed, &BreakpointEnd::Removed);
                }
            }
        }
        out
    }

    /// Frees the ring (16 MiB of kernel memory) once no kernel-side site is
    /// left; the next one sets it up again.
    fn release_kernel_if_idle(&mut self) {
        if self
            .kernel
            .probes
            .as_ref()
            .is_some_and(|p| p.sites.is_empty())
        {
            self.kernel.probes = None;
        }
    }

    /// Handles every record committed before this call (for at most
    /// `FLUSH_LIMIT`: what arrives meanwhile waits for the next turn);
    /// returns the groups whose handlers asked to be removed.
    fn drain_committed(&mut self) -> Vec<(i32, u64)> {
        let mut remove: Vec<(i32, u64)> = Vec::new();
        let Some(target) = self
            .kernel
            .probes
            .as_ref()
            .map(|p| p.ring.producer_position())
        else {
            return remove;
        };
        let started = Instant::now();
        while started.elapsed() < FLUSH_LIMIT {
            let Some(probes) = self.kernel.probes.as_ref() else {
                break;
            };
            if probes.ring.consumed_up_to(target) || probes.ring.is_empty() {
                break;
            }
            remove.extend(self.deliver_batch());
        }
        remove
    }

    /// Hands up to a turn's worth of waiting records to their handlers;
    /// returns the groups whose handlers asked to be removed.
    fn deliver_batch(&mut self) -> Vec<(i32, u64)> {
        let mut remove = Vec::new();
        let wall_offset = self.kernel.wall_offset_ns;
        let Some(probes) = self.kernel.probes.as_mut() else {
            return remove;
        };
        let KernelProbes { ring, sites, .. } = probes;
        ring.drain(RECORDS_PER_TURN, |record| {
            if let Some((pid, group, verdict)) = deliver(record, sites, wall_offset)
                && verdict == HitVerdict::RemoveGroup
            {
                remove.push((pid, group));
            }
        });
        remove
    }

    /// Ends every kernel-side site of `pid` with `why`.
    pub(super) fn end_kernel_sites(&mut self, pid: i32, why: &BreakpointEnd) {
        let has_sites = self
            .kernel
            .probes
            .as_ref()
            .is_some_and(|p| p.sites.values().any(|s| s.pid == pid));
        if has_sites {
            // Hits before the end are delivered, and losses counted.
            let others = self.drain_committed();
            self.kernel.last_loss_check = None;
            self.check_kernel_losses();
            for (other_pid, other_group) in others {
                if other_pid != pid {
                    for armed in self.remove_kernel_group(other_pid, other_group) {
                        call_on_end(armed, &BreakpointEnd::Removed);
                    }
                }
            }
        }
        let Some(probes) = self.kernel.probes.as_mut() else {
            return;
        };
        let ids: Vec<u64> = probes
            .sites
            .iter()
            .filter(|(_, s)| s.pid == pid)
            .map(|(id, _)| *id)
            .collect();
        for id in ids {
            if let Some(site) = probes.disarm(id) {
                call_on_end(site.handler, why);
            }
        }
        self.release_kernel_if_idle();
    }
}

/// Hands one record to its site's handler: the process, the group and the
/// handler's verdict (a panic counts as "remove"); None for a record of a
/// site removed meanwhile, or a malformed one.
fn deliver(
    record: &[u8],
    sites: &mut HashMap<u64, KernelSite<Armed>>,
    wall_offset_ns: i128,
) -> Option<(i32, u64, HitVerdict)> {
    let id = u64::from_ne_bytes(record.get(..8)?.try_into().ok()?);
    let site = sites.get_mut(&id)?;
    let hit = decode_record(record, &site.plan)?;
    // SAFETY: user_regs_struct is plain integers; all-zero is valid.
    let mut regs = hit.regs.unwrap_or_else(|| unsafe { std::mem::zeroed() });
    regs.rip = site.address;
    let wall_ns = hit.monotonic_ns as i128 + wall_offset_ns;
    // The decoded copy is moved to the handler, which (the engine's) only
    // queues it: the drain neither copies it again nor waits.
    let context = CopiedHitContext {
        pid: hit.pid,
        tid: hit.tid,
        address: site.address,
        regs,
        fs_base: None,
        memory: hit.memory,
        monotonic_ns: hit.monotonic_ns,
        time: SystemTime::UNIX_EPOCH + Duration::from_nanos(wall_ns.max(0) as u64),
        held: None,
        copying: None,
    };
    let armed = &mut site.handler;
    let verdict = match catch_unwind(AssertUnwindSafe(|| armed.handler.on_copied_hit(context))) {
        Ok(verdict) => verdict,
        Err(_) => {
            tracing::error!(
                group = armed.group,
                "a probe handler panicked; its group is removed"
            );
            HitVerdict::RemoveGroup
        }
    };
    Some((site.pid, armed.group, verdict))
}
