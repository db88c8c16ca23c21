//! `watch_expression` modes `write` and `access`: a hardware watchpoint on
//! the expression's lvalue, on every thread of the target including threads
//! created later, through perf_event_open with a generated BPF program
//! (see `tracer::HwWatch`). The writer is never stopped: the program copies
//! its registers, a stack window and the new value, and liveprobe turns the
//! copy into an item afterwards.

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use serde_json::json;

use crate::debuginfo::{MemoryError, MemorySource, ProcessImage, Registers};
use crate::eval::{self, CompiledExpr};
use crate::tracer::{HwWatch, HwWatchKind, ProcessMemory, TargetState, Tracer, WatchRecord};
use crate::value::{Limits, Redaction, Value};

use super::frames::{CapturedMemory, CapturedThread, LiveMemory, registers_from};
use super::probe_ops::MAX_PROBES;
use super::probes::{EngineChoice, Probe, ProbeEngine, ProbeKind, ProbeState, StoredBody};
use super::store::rfc3339;
use super::watch::{
    DebugRegisters, WATCH_STORE_CAPACITY, WatchCreated, WatchLimits, WatchMode, WatchRequest,
    compile_global_for_watch, globals_context, lock,
};
use super::{Engine, EngineError, Target};

/// Debug registers per thread on x86-64 (DR0-DR3).
pub const DEBUG_REGISTERS: usize = 4;
/// How often the ring of a write watch is read.
const DRAIN_INTERVAL: Duration = Duration::from_millis(5);
/// Frames of the writer's stack in each item.
const WRITER_FRAMES: usize = 16;

/// The aligned pieces (address, length 1/2/4/8) that cover `[addr, addr + size)`.
pub fn split_aligned(addr: u64, size: u64) -> Vec<(u64, usize)> {
    let mut pieces = Vec::new();
    let mut at = addr;
    let end = addr.saturating_add(size);
    while at < end {
        let len = [8u64, 4, 2, 1]
            .into_iter()
            .find(|&l| at.is_multiple_of(l) && at + l <= end)
            .unwrap_or(1);
        pieces.push((at, len as usize));
        at += len;
    }
    pieces
}

/// Memory where the watched bytes read as a record says they were, and
/// everything else reads live: how `new` is rendered with the expression's
/// own type.
struct Overlay<'a> {
    addr: u64,
    bytes: &'a [u8],
    live: LiveMemory<'a>,
}

impl MemorySource for Overlay<'_> {
    fn read_memory(&self, addr: u64, buf: &mut [u8]) -> Result<(), MemoryError> {
        let end = self.addr + self.bytes.len() as u64;
        let want_end = addr.saturating_add(buf.len() as u64);
        if addr >= end || want_end <= self.addr {
            return self.live.read_memory(addr, buf);
        }
        // Live first, then the watched bytes on top.
        let live = self.live.read_memory(addr, buf);
        for (i, b) in buf.iter_mut().enumerate() {
            let a = addr + i as u64;
            if a >= self.addr && a < end {
                *b = self.bytes[(a - self.addr) as usize];
            }
        }
        if addr >= self.addr && want_end <= end {
            Ok(())
        } else {
            live
        }
    }
}

impl Engine {
    /// Starts a write or access watch.
    pub(super) async fn watch_writes(
        &self,
        target: &Arc<Target>,
        req: &WatchRequest,
        expression: &str,
        bounds: WatchLimits,
    ) -> Result<WatchCreated, EngineError> {
        // A write/access watch sets the target's debug registers: the
        // policy judges it as the patching tool the design reserves for it.
        if let Some(why) = self.policy.tool_refusal("set_watch", Some(req.pid)) {
            return Err(EngineError::BadArgument(format!(
                "a {} watch sets the target's debug registers, and {why}; mode `sample` only reads",
                req.mode.name()
            )));
        }
        if req.tid.is_some() || req.frame.is_some() {
            return Err(EngineError::BadArgument(format!(
                "a {} watch on a frame's local is not in this version (only globals, statics and the heap \
                 reached from them); watch the local with mode `sample` and its tid/frame",
                req.mode.name()
            )));
        }
        if req.engine == Some(EngineChoice::Ptrace) {
            return Err(EngineError::BadArgument(
                "the ptrace engine (debug registers set through ptrace) is not in this version for \
                 write/access watches; use engine auto, which uses a perf hardware breakpoint with a BPF \
                 program"
                    .into(),
            ));
        }
        let image = target.image();
        let expr = compile_global_for_watch(&image, expression, "expression")?;
        let address_of = eval::compile_global(&format!("&({expression})"), &image).map_err(|e| {
            EngineError::BadArgument(format!(
                "`{expression}` is not an lvalue, so it has no address to watch: {e}; give a variable, a \
                 field or an element (`counter`, `cfg->limit`, `table[3]`), or use mode `sample`"
            ))
        })?;
        let size_of = eval::compile_global(&format!("sizeof({expression})"), &image)
            .map_err(|e| EngineError::BadArgument(format!("the size of `{expression}`: {e}")))?;
        // Read in a block of its own: the context must not live across an await.
        let (addr, size) = {
            let regs = Registers::default();
            let memory = LiveMemory(&target.memory);
            let ctx = globals_context(&image, &regs, &memory);
            let addr = eval::evaluate_number(&address_of, &ctx).map_err(|e| {
                EngineError::BadArgument(format!(
                    "the address of `{expression}` cannot be read now: {e}"
                ))
            })? as u64;
            let size = eval::evaluate_number(&size_of, &ctx)
                .map_err(|e| EngineError::BadArgument(format!("the size of `{expression}`: {e}")))?
                as u64;
            (addr, size)
        };
        if size == 0 {
            return Err(EngineError::BadArgument(format!(
                "`{expression}` has size 0: there is nothing to watch"
            )));
        }
        let pieces = split_aligned(addr, size);
        let held: Vec<DebugRegisters> = lock(&self.watches.1)
            .values()
            .filter(|r| r.pid == req.pid)
            .cloned()
            .collect();
        let used: usize = held.iter().map(|r| r.count).sum();
        if used + pieces.len() > DEBUG_REGISTERS {
            let holders: Vec<String> = held
                .iter()
                .map(|r| format!("watch {} ({} register(s))", r.probe, r.count))
                .collect();
            return Err(EngineError::BadArgument(format!(
                "`{expression}` ({size} byte(s) at {addr:#x}) needs {} debug register(s), and x86-64 has \
                 {DEBUG_REGISTERS} per thread, {} of them held by {}; remove one of those watches, or use \
                 mode `sample`",
                pieces.len(),
                used,
                if holders.is_empty() {
                    "nothing liveprobe set".to_string()
                } else {
                    holders.join(", ")
                }
            )));
        }
        let condition = req
            .condition
            .as_deref()
            .map(str::trim)
            .filter(|c| !c.is_empty())
            .map(|c| compile_global_for_watch(&image, c, "condition"))
            .transpose()?;
        if let Some(secret) = condition
            .as_ref()
            .and_then(|c| c.secret_name(&self.redaction))
        {
            return Err(EngineError::BadArgument(format!(
                "the condition reads `{secret}`, whose name looks secret; filter on something else"
            )));
        }
        {
            let armed = self
                .probes()
                .values()
                .filter(|p| p.state() == ProbeState::Armed)
                .count();
            if armed >= MAX_PROBES {
                return Err(EngineError::BadArgument(format!(
                    "{armed} probes are armed, the most allowed; remove some with remove_probe first"
                )));
            }
        }
        // The value before the first write liveprobe sees.
        let mut current = vec![0u8; size as usize];
        let initial_known = target.memory.read(addr, &mut current).is_ok();
        let kind = match req.mode {
            WatchMode::Access => HwWatchKind::Access,
            _ => HwWatchKind::Write,
        };
        let pid = req.pid;
        let armed = tokio::task::spawn_blocking(move || {
            pieces
                .into_iter()
                .map(|(at, len)| HwWatch::arm(pid, at, len, kind).map(|w| (at, w)))
                .collect::<Result<Vec<(u64, HwWatch)>, String>>()
        })
        .await
        .map_err(|e| EngineError::Internal(format!("arming the watch: {e}")))?
        .map_err(|why| {
            EngineError::BadArgument(format!(
                "cannot set a hardware watchpoint on `{expression}`: {why}; use mode `sample`"
            ))
        })?;
        let id = self.next_probe_id.fetch_add(1, Ordering::Relaxed);
        let probe = Arc::new(Probe::new(
            id,
            req.pid,
            ProbeKind::Watch,
            expression.to_string(),
            Vec::new(),
            None,
            bounds.max_events,
            Duration::from_secs(bounds.ttl_s),
            bounds.max_events.min(WATCH_STORE_CAPACITY) as usize,
            self.policy.hit_budget(),
            self.probe_updates.clone(),
        ));
        let note = format!(
            "{} hardware watchpoint(s) on {size} byte(s) at {addr:#x}, through perf_event_open with a BPF \
             program; writers are never stopped. `old` is the value liveprobe saw before (at the previous \
             write, or when the watch was set)",
            armed.len()
        );
        probe.set_engine(ProbeEngine::PerfBreakpoint, Some(note.clone()));
        let count = armed.len();
        let watchpoints = Arc::new(Mutex::new(armed));
        lock(&self.watches.1).insert(
            id,
            DebugRegisters {
                pid: req.pid,
                count,
                probe: id,
                watchpoints: watchpoints.clone(),
            },
        );
        self.probes().insert(id, probe.clone());
        let type_name = expr.type_name().to_string();
        let watcher = WriteWatcher {
            probe,
            registers: self.watches.1.clone(),
            tracer: self.tracer.clone(),
            image,
            memory: target.memory.clone(),
            expr,
            condition,
            addr,
            current,
            initial_known,
            armed: watchpoints,
            ends_at: Instant::now() + Duration::from_secs(bounds.duration_s),
            duration_s: bounds.duration_s,
            limits: req.limits.clamped(),
            redaction: self.redaction.clone(),
            names: HashMap::new(),
        };
        tokio::spawn(watcher.run());
        tracing::info!(probe = id, pid = req.pid, expression, "write watch armed");
        Ok(WatchCreated {
            probe_id: id,
            engine: ProbeEngine::PerfBreakpoint,
            engine_note: Some(note),
            mode: req.mode,
            type_name,
            interval_ms: DRAIN_INTERVAL.as_millis() as u64,
            duration_s: bounds.duration_s,
            max_events: bounds.max_events,
            ttl_s: bounds.ttl_s,
            frame: None,
            tid: None,
        })
    }
}

/// The task that reads a write watch's records.
struct WriteWatcher {
    probe: Arc<Probe>,
    registers: Arc<Mutex<HashMap<u64, DebugRegisters>>>,
    tracer: Tracer,
    image: Arc<ProcessImage>,
    memory: ProcessMemory,
    expr: CompiledExpr,
    condition: Option<CompiledExpr>,
    addr: u64,
    /// The watched bytes as last seen.
    current: Vec<u8>,
    initial_known: bool,
    /// (address of the piece, its watchpoint); emptied when the watch is
    /// removed.
    armed: Arc<Mutex<Vec<(u64, HwWatch)>>>,
    ends_at: Instant,
    duration_s: u64,
    limits: Limits,
    redaction: Redaction,
    /// Thread names by tid, read once.
    names: HashMap<i32, String>,
}

impl WriteWatcher {
    async fn run(mut self) {
        let ends_at = tokio::time::Instant::from_std(self.ends_at);
        let expires_at = tokio::time::Instant::from_std(self.probe.expires_at);
        let mut ticks = tokio::time::interval(DRAIN_INTERVAL);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
        let probe = self.probe.clone();
        loop {
            let ended = probe.ended.notified();
            tokio::pin!(ended);
            ended.as_mut().enable();
            if probe.state() != ProbeState::Armed {
                break;
            }
            let mut end = None;
            tokio::select! {
                _ = ticks.tick() => {}
                _ = tokio::time::sleep_until(ends_at) => {
                    end = Some((ProbeState::Done, format!("duration_s ({} s) passed", self.duration_s)));
                }
                _ = tokio::time::sleep_until(expires_at) => {
                    end = Some((ProbeState::Expired, "ttl_s passed".to_string()));
                }
                _ = &mut ended => {}
            }
            // Writes already made count, whatever ends the watch.
            self.drain();
            if let Some((state, reason)) = end {
                probe.finish(state, Some(reason));
                break;
            }
            let gone = match self.tracer.process_state(probe.pid).await.ok() {
                Some(TargetState::Running) => None,
                Some(TargetState::Exited { code }) => {
                    Some(format!("the process exited with code {code}"))
                }
                Some(TargetState::Killed { signal }) => {
                    Some(format!("the process was killed by {signal}"))
                }
                Some(TargetState::Execed) => Some("the process ran a new program (exec)".into()),
                Some(TargetState::Detached) | None => {
                    Some("the process is no longer attached".into())
                }
            };
            if let Some(reason) = gone {
                probe.finish(ProbeState::TargetExited, Some(reason));
                break;
            }
        }
        // Dropping the watchpoints closes their events: the kernel clears
        // the debug registers of every thread.
        lock(&self.armed).clear();
        lock(&self.registers).remove(&probe.id);
    }

    fn drain(&mut self) {
        let mut records: Vec<(u64, WatchRecord)> = Vec::new();
        {
            let armed = lock(&self.armed);
            for (at, watch) in armed.iter() {
                records.extend(watch.drain().into_iter().map(|r| (*at, r)));
            }
            if !armed.is_empty() {
                let lost: u64 = armed.iter().map(|(_, w)| w.lost()).sum();
                self.probe.lost.store(lost, Ordering::Relaxed);
            }
        }
        // Pieces have rings of their own: merge in time order.
        records.sort_by_key(|(_, r)| r.time_ns);
        for (at, record) in records {
            if self.probe.state() != ProbeState::Armed {
                return;
            }
            self.record(at, record);
        }
    }

    fn thread_name(&mut self, tid: i32) -> String {
        let pid = self.probe.pid;
        self.names
            .entry(tid)
            .or_insert_with(|| {
                std::fs::read_to_string(format!("/proc/{pid}/task/{tid}/comm"))
                    .map(|s| s.trim().to_string())
                    .unwrap_or_default()
            })
            .clone()
    }

    fn render(&self, bytes: &[u8]) -> Value {
        let overlay = Overlay {
            addr: self.addr,
            bytes,
            live: LiveMemory(&self.memory),
        };
        eval::evaluate_global(
            &self.expr,
            &self.image,
            &overlay,
            &self.limits,
            &self.redaction,
        )
    }

    fn record(&mut self, piece_at: u64, record: WatchRecord) {
        let started = Instant::now();
        let old_known = self.initial_known;
        let old = if old_known {
            self.render(&self.current.clone())
        } else {
            Value::unavailable(
                self.expr.source().to_string(),
                self.expr.type_name().to_string(),
                "the value before the watch was set could not be read",
            )
        };
        let new = match &record.value {
            Some(bytes) => {
                let offset = (piece_at - self.addr) as usize;
                if let Some(slot) = self.current.get_mut(offset..offset + bytes.len()) {
                    slot.copy_from_slice(bytes);
                }
                self.initial_known = true;
                self.render(&self.current.clone())
            }
            None => Value::unavailable(
                self.expr.source().to_string(),
                self.expr.type_name().to_string(),
                "the watched bytes could not be read right after the write",
            ),
        };
        if let Some(condition) = &self.condition {
            let overlay = Overlay {
                addr: self.addr,
                bytes: &self.current,
                live: LiveMemory(&self.memory),
            };
            let regs = Registers::default();
            let ctx = globals_context(&self.image, &regs, &overlay);
            match eval::evaluate_condition(condition, &ctx) {
                Ok(true) => {}
                Ok(false) => {
                    self.probe.filtered.fetch_add(1, Ordering::Relaxed);
                    return;
                }
                Err(_) => {
                    self.probe.condition_faults.fetch_add(1, Ordering::Relaxed);
                    return;
                }
            }
        }
        let thread = CapturedThread {
            tid: record.tid,
            regs: registers_from(&record.regs, None),
            memory: CapturedMemory::new(record.stack, self.memory.clone()),
            held_us: 0,
        };
        let frames = super::frames::symbolized_frames(&self.image, &thread, WRITER_FRAMES);
        let thread_name = if record.thread_name.is_empty() {
            self.thread_name(record.tid)
        } else {
            record.thread_name.clone()
        };
        let wall = wall_time_of(record.time_ns);
        let item = json!({
            "time": rfc3339(wall),
            "tid": record.tid,
            "thread_name": thread_name,
            "old": old,
            "new": new,
            "frames": frames,
        });
        let hits = self.probe.hits.fetch_add(1, Ordering::Relaxed) + 1;
        self.probe
            .record(StoredBody::Ready(item), hits >= self.probe.max_hits);
        // The writer paid for the program only (a rule, as for uprobes).
        let _ = self.probe.charge(
            started.elapsed(),
            super::probes::KERNEL_HIT_COST,
            record.time_ns,
        );
    }
}

/// The wall-clock time of a CLOCK_MONOTONIC instant in the past.
fn wall_time_of(monotonic_ns: u64) -> SystemTime {
    let now_mono = crate::tracer::monotonic_ns();
    let ago = Duration::from_nanos(now_mono.saturating_sub(monotonic_ns));
    SystemTime::now()
        .checked_sub(ago)
        .unwrap_or_else(SystemTime::now)
}

#[cfg(test)]
mod tests {
    use super::split_aligned;

    #[test]
    fn pieces_are_aligned_and_cover_the_lvalue() {
        assert_eq!(split_aligned(0x1000, 8), vec![(0x1000, 8)]);
        assert_eq!(split_aligned(0x1004, 4), vec![(0x1004, 4)]);
        assert_eq!(split_aligned(0x1000, 16), vec![(0x1000, 8), (0x1008, 8)]);
        assert_eq!(
            split_aligned(0x1002, 8),
            vec![(0x1002, 2), (0x1004, 4), (0x1008, 2)]
        );
        assert_eq!(split_aligned(0x1001, 1), vec![(0x1001, 1)]);
    }
}
