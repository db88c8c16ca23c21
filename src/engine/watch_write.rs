//! `watch_expression` modes `write` and `access`: a hardware watchpoint on
//! the expression's lvalue, on every thread of the target including threads
//! created later. Two engines give the same records (registers, a stack
//! window, the new value), turned into items here afterwards:
//! - `perf_breakpoint` (preferred): perf_event_open with a generated BPF
//!   program (see `tracer::HwWatch`); the writer is never stopped.
//! - `ptrace` (where the kernel refuses perf/BPF, or when asked): the
//!   debug registers of every thread set through ptrace (see
//!   `tracer::DebugWatch`); the writer is held only while the tracer copies.
//!
//! Both count against the same four debug registers per process.

use super::items::{ProbeItem, WatchChange, WatchItem};
use std::cell::Cell;
use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use crate::debuginfo::{MemoryError, MemorySource, ProcessImage, Registers};
use crate::eval::{self, CompiledExpr};
use crate::tracer::{
    HwWatch, HwWatchKind, MemoryCopy, ProcessMemory, TargetState, Tracer, WatchRecord,
};
use crate::value::{Limits, PageCache, Redaction, Value};

use super::debug_registers::{ArmedWatch, DebugRegisters};
use super::frames::{CapturedThread, LiveMemory, registers_from};
use super::probe_ops::MAX_PROBES;
use super::probes::{EngineChoice, Probe, ProbeEngine, ProbeKind, ProbeState, StoredBody};
use super::store::rfc3339;
use super::watch::{
    FrameIdentity, WATCH_STORE_CAPACITY, WatchCreated, WatchLimits, WatchMode, WatchRequest,
    compile_global_for_watch, frame_identity, frame_still_there, globals_context, lock,
};
use super::{Engine, EngineError, Target};

/// Debug registers per thread on x86-64 (DR0-DR3).
pub const DEBUG_REGISTERS: usize = 4;
/// How often the ring of a write watch is read.
const DRAIN_INTERVAL: Duration = Duration::from_millis(5);
/// Frames of the writer's stack in each item.
const WRITER_FRAMES: usize = 16;

/// What `old` and `new` of an item are, whichever engine copied the write.
const OLD_NEW_NOTE: &str = "`old` is the value liveprobe saw before (at the previous \
     write, or when the watch was set). `new` is exact when the writing instruction is a plain store \
     (`mov` of a general register or an immediate covering the watched bytes): its bytes come from \
     the writer's registers captured at the write. After any other write (read-modify-write like \
     `add`/`inc`, `xchg`/`cmpxchg`, string moves, vector stores, a store covering only part of the \
     watched bytes, fs/gs-relative TLS stores, or code liveprobe cannot decode), `new` is the watched \
     bytes read when the watchpoint fired, right after the write: a write to the same address by \
     another thread in that moment shows there instead. Writes by a vfork child of the process before \
     it execs or exits (it runs in the process's memory) are not seen by either engine, so the next \
     item's `old` is the value liveprobe saw before them";

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
/// own type. Reads go through as asked (not widened to pages), so a scalar
/// that is all watched bytes costs no read of the target; the live rest
/// goes through a page cache of its own.
struct Overlay<'a> {
    addr: u64,
    bytes: &'a [u8],
    live: &'a dyn MemorySource,
}

impl MemorySource for Overlay<'_> {
    fn read_memory(&self, addr: u64, buf: &mut [u8]) -> Result<(), MemoryError> {
        let end = self.addr.saturating_add(self.bytes.len() as u64);
        let read_end = addr
            .checked_add(buf.len() as u64)
            .ok_or(MemoryError { addr })?;
        if read_end <= self.addr || addr >= end {
            return self.live.read_memory(addr, buf);
        }
        let from = addr.max(self.addr);
        let to = read_end.min(end);
        let (below, rest) = buf.split_at_mut((from - addr) as usize);
        let (watched, above) = rest.split_at_mut((to - from) as usize);
        watched
            .copy_from_slice(&self.bytes[(from - self.addr) as usize..(to - self.addr) as usize]);
        if !below.is_empty() {
            self.live.read_memory(addr, below)?;
        }
        if !above.is_empty() {
            self.live.read_memory(to, above)?;
        }
        Ok(())
    }

    fn wants_exact_reads(&self) -> bool {
        true
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
        let choice = req.engine.unwrap_or(self.policy.probe_engine);
        let image = target.image();
        let not_lvalue = |e: String| {
            EngineError::BadArgument(format!(
                "`{expression}` is not an lvalue with an address, so there is nothing to watch: {e}; give \
                 a variable, a field or an element (`counter`, `cfg->limit`, `table[3]`), or use mode `sample`"
            ))
        };
        let (expr, condition, addr, size, frame) = if req.tid.is_some() || req.frame.is_some() {
            self.resolve_local(target, req, expression, &not_lvalue)
                .await?
        } else {
            let expr = compile_global_for_watch(&image, expression, "expression")?;
            let address_of = eval::compile_global(&format!("&({expression})"), &image)
                .map_err(|e| not_lvalue(e.to_string()))?;
            let size_of =
                eval::compile_global(&format!("sizeof({expression})"), &image).map_err(|e| {
                    EngineError::BadArgument(format!("the size of `{expression}`: {e}"))
                })?;
            let regs = Registers::default();
            let memory = LiveMemory(&target.memory);
            let ctx = globals_context(&image, &regs, &memory);
            let addr = eval::evaluate_number(&address_of, &ctx)
                .map_err(|e| not_lvalue(e.to_string()))? as u64;
            let size = eval::evaluate_number(&size_of, &ctx)
                .map_err(|e| EngineError::BadArgument(format!("the size of `{expression}`: {e}")))?
                as u64;
            let condition = req
                .condition
                .as_deref()
                .map(str::trim)
                .filter(|c| !c.is_empty())
                .map(|c| compile_global_for_watch(&image, c, "condition"))
                .transpose()?;
            (expr, condition, addr, size, None)
        };
        if size == 0 {
            return Err(EngineError::BadArgument(format!(
                "`{expression}` has size 0: there is nothing to watch"
            )));
        }
        let pieces = split_aligned(addr, size);
        // Watches that ended (max_events, duration, their frame returned)
        // give their registers back now, not when their task gets to it.
        {
            let ended: Vec<u64> = {
                let probes = self.probes();
                lock(&self.watches.1)
                    .keys()
                    .filter(|id| {
                        probes
                            .get(id)
                            .is_none_or(|p| p.state() != ProbeState::Armed)
                    })
                    .copied()
                    .collect()
            };
            for id in ended {
                let held = lock(&self.watches.1).remove(&id);
                if let Some(held) = held {
                    let ptrace = {
                        let mut armed = lock(&held.watchpoints);
                        let ptrace = matches!(*armed, ArmedWatch::Ptrace(_));
                        armed.clear();
                        ptrace
                    };
                    // The tracer holds ptrace slots until it cleared them on
                    // every thread.
                    if ptrace && let Err(e) = self.tracer.remove_group(held.pid, id).await {
                        tracing::debug!(
                            probe = id,
                            "clearing an ended watch's debug registers: {e}"
                        );
                    }
                }
            }
        }
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
        // Each ring holds every record the watch will keep, when that is
        // few; a condition may drop any number of writes, so then the
        // largest ring.
        let records = if condition.is_some() {
            u64::MAX
        } else {
            bounds.max_events
        };
        let id = self.next_probe_id.fetch_add(1, Ordering::Relaxed);
        let piece_count = pieces.len();
        let perf = if choice == EngineChoice::Ptrace {
            None
        } else {
            let pieces = pieces.clone();
            let armed = tokio::task::spawn_blocking(move || {
                pieces
                    .into_iter()
                    .map(|(at, len)| HwWatch::arm_for(pid, at, len, kind, records).map(|w| (at, w)))
                    .collect::<Result<Vec<(u64, HwWatch)>, String>>()
            })
            .await
            .map_err(|e| EngineError::Internal(format!("arming the watch: {e}")))?;
            Some(armed)
        };
        let (armed, engine, note) = match perf {
            Some(Ok(watches)) => (
                ArmedWatch::Perf(watches),
                ProbeEngine::PerfBreakpoint,
                format!(
                    "{piece_count} hardware watchpoint(s) on {size} byte(s) at {addr:#x}, through perf_event_open \
                     with a BPF program; writers are never stopped. {OLD_NEW_NOTE}"
                ),
            ),
            Some(Err(why)) if choice == EngineChoice::Uprobe => {
                return Err(EngineError::BadArgument(format!(
                    "cannot set a hardware watchpoint on `{expression}` through perf_event_open with a BPF \
                     program: {why}; use engine auto or ptrace (debug registers set through ptrace), or mode \
                     `sample`"
                )));
            }
            perf => {
                let fallback = match perf {
                    Some(Err(why)) => format!(
                        "the kernel refused the preferred engine (a perf hardware breakpoint with a BPF \
                         program: {why}), so "
                    ),
                    _ => String::new(),
                };
                let watch = self
                    .tracer
                    .insert_debug_watch(pid, id, pieces, kind, crate::tracer::STACK_WINDOW)
                    .await
                    .map_err(|e| {
                        EngineError::BadArgument(format!(
                            "{fallback}cannot set a hardware watchpoint on `{expression}` through ptrace: {e}; \
                             use mode `sample`"
                        ))
                    })?;
                (
                    ArmedWatch::Ptrace(Some(watch)),
                    ProbeEngine::Ptrace,
                    format!(
                        "{piece_count} debug register(s) on {size} byte(s) at {addr:#x}, set through ptrace on \
                         every thread (each new thread at its creation, before it runs); {fallback}a writer is \
                         held only while its registers, {} KiB of its stack and the watched bytes are copied \
                         (the trap comes just after the write), then it goes on. {OLD_NEW_NOTE}. Every way \
                         liveprobe ends clears the registers, a SIGKILL or crash included (its tracer task \
                         outlives it); only the tracer task's own death (the OOM killer) leaves them armed, and \
                         the target then dies of SIGTRAP at its next watched write",
                        crate::tracer::STACK_WINDOW / 1024
                    ),
                )
            }
        };
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
        probe.set_engine(engine, Some(note.clone()));
        let count = piece_count;
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
        let frame_info = frame.as_ref().map(|f| f.info.clone());
        let tid = frame.as_ref().map(|f| f.identity.tid);
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
            frame,
            next_frame_check: Instant::now(),
            frame_check_every: Duration::from_millis(req.interval_ms.unwrap_or(100).max(1)),
            ends_at: Instant::now() + Duration::from_secs(bounds.duration_s),
            duration_s: bounds.duration_s,
            limits: req.limits.clamped(),
            redaction: self.redaction.clone(),
            names: HashMap::new(),
            function_code: HashMap::new(),
            current_rendered: None,
        };
        tokio::spawn(watcher.run());
        tracing::info!(probe = id, pid = req.pid, expression, "write watch armed");
        Ok(WatchCreated {
            probe_id: id,
            engine,
            engine_note: Some(note),
            mode: req.mode,
            type_name,
            interval_ms: DRAIN_INTERVAL.as_millis() as u64,
            duration_s: bounds.duration_s,
            max_events: bounds.max_events,
            ttl_s: bounds.ttl_s,
            frame: frame_info,
            tid,
        })
    }

    /// The address, size and compiled forms of an expression on a frame's
    /// locals, and what identifies the frame.
    async fn resolve_local(
        &self,
        target: &Arc<Target>,
        req: &WatchRequest,
        expression: &str,
        not_lvalue: &(dyn Fn(String) -> EngineError + Sync),
    ) -> Result<
        (
            CompiledExpr,
            Option<CompiledExpr>,
            u64,
            u64,
            Option<WatchedFrame>,
        ),
        EngineError,
    > {
        let tid = req.tid.unwrap_or(req.pid);
        let index = req.frame.unwrap_or(0);
        let thread = self
            .capture(target, Some(vec![tid]), super::STACK_COPY_BYTES)
            .await?
            .pop()
            .ok_or_else(|| EngineError::Internal(format!("thread {tid} was not captured")))?;
        let image = target.image();
        let identity = frame_identity(&image, &thread, index).ok_or_else(|| {
            EngineError::BadArgument(format!(
                "frame {index} of thread {tid} has no canonical frame address (no CFI covers it), so \
                 liveprobe could not tell when it returns; watch a global instead"
            ))
        })?;
        let found = self.with_frame(req.pid, &thread, index, |ctx, info| {
            let compiled = (|| {
                let expr = eval::compile(expression, ctx).map_err(|e| {
                    EngineError::BadArgument(format!(
                        "expression `{expression}` does not compile in frame {index} of thread {tid}: {e}"
                    ))
                })?;
                let address_of = eval::compile(&format!("&({expression})"), ctx)
                    .map_err(|e| not_lvalue(e.to_string()))?;
                let addr = eval::evaluate_number(&address_of, ctx)
                    .map_err(|e| not_lvalue(e.to_string()))? as u64;
                let size_of = eval::compile(&format!("sizeof({expression})"), ctx).map_err(|e| {
                    EngineError::BadArgument(format!("the size of `{expression}`: {e}"))
                })?;
                let size = eval::evaluate_number(&size_of, ctx).map_err(|e| {
                    EngineError::BadArgument(format!("the size of `{expression}`: {e}"))
                })? as u64;
                let condition = req
                    .condition
                    .as_deref()
                    .map(str::trim)
                    .filter(|c| !c.is_empty())
                    .map(|c| {
                        eval::compile(c, ctx).map_err(|e| {
                            EngineError::BadArgument(format!(
                                "condition `{c}` does not compile in frame {index} of thread {tid}: {e}"
                            ))
                        })
                    })
                    .transpose()?;
                Ok::<_, EngineError>((expr, condition, addr, size))
            })();
            let place = (
                ctx.pc,
                ctx.regs.clone(),
                ctx.cfa,
                ctx.is_caller,
                ctx.inline_depth,
            );
            (compiled, place, info)
        })?;
        let (compiled, (pc, regs, cfa, is_caller, inline_depth), info) = found;
        let (expr, condition, addr, size) = compiled?;
        Ok((
            expr,
            condition,
            addr,
            size,
            Some(WatchedFrame {
                identity,
                info,
                pc,
                regs,
                cfa,
                is_caller,
                inline_depth,
            }),
        ))
    }
}

/// The frame a watch on a local lives in: how to evaluate there again
/// (its registers as unwound when the watch was set; a frame's own
/// registers and CFA do not move while it lives), and how to know it.
struct WatchedFrame {
    identity: FrameIdentity,
    info: super::FrameInfo,
    pc: crate::debuginfo::RuntimeAddr,
    regs: Registers,
    cfa: Option<u64>,
    is_caller: bool,
    inline_depth: usize,
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
    /// `current` as rendered at the last write (the next write's `old`).
    current_rendered: Option<Value>,
    initial_known: bool,
    /// Its watchpoints; emptied when the watch is removed.
    armed: Arc<Mutex<ArmedWatch>>,
    ends_at: Instant,
    duration_s: u64,
    limits: Limits,
    redaction: Redaction,
    /// Thread names by tid, read once.
    names: HashMap<i32, String>,
    /// By trap rip: the runtime address of the instruction that ends there
    /// and its bytes from the file (`None`: not found), decoded once per
    /// writing site rather than from its function's start at every write.
    function_code: HashMap<u64, Option<FunctionCode>>,
    /// The frame of a watched local.
    frame: Option<WatchedFrame>,
    next_frame_check: Instant,
    frame_check_every: Duration,
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
            if let Some(reason) = self.frame_returned().await {
                self.drain();
                probe.finish(ProbeState::Done, Some(reason));
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
        // Perf: dropping the watchpoints closes their events, and the
        // kernel clears the debug registers of every thread. Ptrace: the
        // tracer clears them on every thread (answering once done), before
        // the registers count as free.
        let ptrace = matches!(*lock(&self.armed), ArmedWatch::Ptrace(_));
        lock(&self.armed).clear();
        if ptrace && let Err(e) = self.tracer.remove_group(probe.pid, probe.id).await {
            tracing::debug!(
                probe = probe.id,
                "clearing the debug registers of a watch: {e}"
            );
        }
        lock(&self.registers).remove(&probe.id);
    }

    fn drain(&mut self) {
        let mut records = {
            let armed = lock(&self.armed);
            let (records, lost) = armed.drain();
            if !armed.is_empty() {
                self.probe.lost.store(lost, Ordering::Relaxed);
            }
            records
        };
        if records.is_empty() {
            return;
        }
        // Pieces have rings of their own: merge in time order.
        records.sort_by_key(|(_, _, r)| r.time_ns);
        // One reading of the clocks for the batch, not per record.
        let clock = WallClock::now();
        for (at, len, record) in records {
            if self.probe.state() != ProbeState::Armed {
                return;
            }
            self.record(at, len, record, &clock);
        }
    }

    /// What the writing instruction stored at the piece, when it is a plain
    /// store covering it (see `tracer::stored_bytes`): exact even when
    /// another thread writes the same bytes right after.
    fn stored_by_writer(
        &mut self,
        piece_at: u64,
        len: usize,
        record: &WatchRecord,
    ) -> Option<Vec<u8>> {
        let rip = record.regs.rip;
        let image = &self.image;
        let code = self
            .function_code
            .entry(rip)
            .or_insert_with(|| store_instruction_before(image, rip))
            .as_ref()?;
        crate::tracer::stored_bytes(&code.1, code.0, rip, &record.regs, piece_at, len)
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

    /// A context over `memory`: the watched frame's, or the globals'.
    fn with_context<R>(
        &self,
        memory: &dyn MemorySource,
        f: impl FnOnce(&crate::eval::FrameContext<'_>) -> R,
    ) -> R {
        match &self.frame {
            Some(frame) => f(&crate::eval::FrameContext {
                image: &self.image,
                pc: frame.pc,
                regs: &frame.regs,
                cfa: frame.cfa,
                is_caller: frame.is_caller,
                inline_depth: frame.inline_depth,
                memory,
                types: crate::debuginfo::types::TypeTables::shared(),
            }),
            None => {
                let regs = Registers::default();
                f(&globals_context(&self.image, &regs, memory))
            }
        }
    }

    fn render(&self, bytes: &[u8]) -> Value {
        let live = LiveMemory(&self.memory);
        let live = PageCache::new(&live);
        let overlay = Overlay {
            addr: self.addr,
            bytes,
            live: &live,
        };
        if self.frame.is_none() {
            return eval::evaluate_global(
                &self.expr,
                &self.image,
                &overlay,
                &self.limits,
                &self.redaction,
            );
        }
        self.with_context(&overlay, |ctx| {
            eval::evaluate(&self.expr, ctx, &self.limits, &self.redaction)
        })
    }

    /// Whether the watched frame is gone (checked by copying its thread).
    async fn frame_returned(&mut self) -> Option<String> {
        let frame = self.frame.as_ref()?;
        if Instant::now() < self.next_frame_check {
            return None;
        }
        self.next_frame_check = Instant::now() + self.frame_check_every;
        let identity = frame.identity.clone();
        let captured = self
            .tracer
            .capture_threads(
                self.probe.pid,
                Some(vec![identity.tid]),
                super::STACK_COPY_BYTES,
            )
            .await;
        let thread = match captured.map(|mut c| c.pop()) {
            Ok(Some(c)) => CapturedThread::new(c, self.memory.clone()),
            _ => {
                return Some(format!(
                    "thread {} exited, and the watched frame with it",
                    identity.tid
                ));
            }
        };
        (frame_still_there(&self.image, &thread.regs, &thread.memory, &identity) == Some(false))
            .then(|| returned_reason(&identity))
    }

    fn record(&mut self, piece_at: u64, piece_len: usize, record: WatchRecord, clock: &WallClock) {
        let started = Instant::now();
        let regs = registers_from(&record.regs, None);
        if let Some(frame) = &self.frame
            && record.tid == frame.identity.tid
            && frame_still_there(
                &self.image,
                &regs,
                &StackAtWrite::new(&record.stack),
                &frame.identity,
            ) == Some(false)
        {
            // The frame returned before this write: the bytes are another
            // frame's now, and the watch is over.
            let reason = returned_reason(&frame.identity);
            self.probe.finish(ProbeState::Done, Some(reason));
            return;
        }
        // The previous write's `new` is this one's `old`, as rendered then:
        // one rendering per write, and the value as it was seen at the time.
        let old = if let Some(previous) = self.current_rendered.take() {
            previous
        } else if self.initial_known {
            self.render(&self.current.clone())
        } else {
            Value::unavailable(
                self.expr.source().to_string(),
                self.expr.type_name().to_string(),
                crate::value::NotCaptured::BeforeTheWatch,
            )
        };
        // The stored bytes when the writer's instruction says what they
        // were; else the bytes read just after the write.
        let value = self
            .stored_by_writer(piece_at, piece_len, &record)
            .or_else(|| record.value.clone());
        let new = match &value {
            Some(bytes) => {
                let offset = (piece_at - self.addr) as usize;
                if let Some(slot) = self.current.get_mut(offset..offset + bytes.len()) {
                    slot.copy_from_slice(bytes);
                }
                self.initial_known = true;
                let rendered = self.render(&self.current.clone());
                self.current_rendered = Some(rendered.clone());
                rendered
            }
            None => Value::unavailable(
                self.expr.source().to_string(),
                self.expr.type_name().to_string(),
                crate::value::NotCaptured::AfterTheWrite,
            ),
        };
        if let Some(condition) = &self.condition {
            let live = LiveMemory(&self.memory);
            let live = PageCache::new(&live);
            let overlay = Overlay {
                addr: self.addr,
                bytes: &self.current,
                live: &live,
            };
            let verdict =
                self.with_context(&overlay, |ctx| eval::evaluate_condition(condition, ctx));
            match verdict {
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
        let thread_name = if record.thread_name.is_empty() {
            self.thread_name(record.tid)
        } else {
            record.thread_name.clone()
        };
        let wall = clock.wall_time_of(record.time_ns);
        // The writer's stack is a copy that stays valid: it is unwound and
        // symbolized when the item is first read, so the reader keeps up
        // with the writes and nothing is done for items never read.
        let image = self.image.clone();
        let stack = record.stack;
        let item = StoredBody::Pending(Box::new(move || {
            let (frames, frames_note) = writer_frames(&image, &regs, &stack);
            ProbeItem::Watch(WatchItem::Change(Box::new(WatchChange {
                seq: 0,
                time: rfc3339(wall),
                tid: record.tid,
                thread_name,
                old,
                new,
                frames,
                frames_note,
            })))
        }));
        let hits = self.probe.hits.fetch_add(1, Ordering::Relaxed) + 1;
        self.probe.record(item, hits >= self.probe.max_hits);
        // The writer paid for the program only (a rule, as for uprobes).
        let _ = self.probe.charge(
            started.elapsed(),
            super::probes::KERNEL_HIT_COST,
            record.time_ns,
        );
    }
}

/// The writer's stack as the watch program copied it at the write, and
/// nothing more: the writer ran on right after, so memory beyond the copy
/// (its outer callers' frames) says what it says now, not what it said
/// then. Reads outside the copy fail; the first one is kept, so the item
/// can say where its stack stops and why.
struct StackAtWrite<'a> {
    stack: &'a MemoryCopy,
    first_miss: Cell<Option<u64>>,
}

impl<'a> StackAtWrite<'a> {
    fn new(stack: &'a MemoryCopy) -> StackAtWrite<'a> {
        StackAtWrite {
            stack,
            first_miss: Cell::new(None),
        }
    }
}

impl MemorySource for StackAtWrite<'_> {
    fn read_memory(&self, addr: u64, buf: &mut [u8]) -> Result<(), MemoryError> {
        match self.stack.slice(addr, buf.len()) {
            Some(bytes) => {
                buf.copy_from_slice(bytes);
                Ok(())
            }
            None => {
                if self.first_miss.get().is_none() {
                    self.first_miss.set(Some(addr));
                }
                Err(MemoryError { addr })
            }
        }
    }

    fn wants_exact_reads(&self) -> bool {
        true
    }
}

/// The writer's symbolized stack from its registers and the stack copied at
/// the write, and, when the copy ended before the stack did, a note saying
/// so: the frames beyond it are left out, never read live.
fn writer_frames(
    image: &ProcessImage,
    regs: &Registers,
    stack: &MemoryCopy,
) -> (Vec<super::report::FrameRow>, Option<String>) {
    let memory = StackAtWrite::new(stack);
    let frames = super::frames::symbolized_frames_in(image, regs, &memory, WRITER_FRAMES);
    let note = memory
        .first_miss
        .get()
        .filter(|_| frames.len() < WRITER_FRAMES)
        .map(|addr| {
            if stack.bytes.is_empty() {
                return format!(
                    "the stack ends here because the writer's stack could not be copied at the write (its \
                     stack pointer {:#x} was not readable); outer frames are not shown rather than read from \
                     the live stack, where the writer has run on since",
                    stack.start
                );
            }
            format!(
                "the stack ends here because the watch copies {} bytes of the writer's stack at each \
                 write (from its stack pointer {:#x}), and the next caller's frame lies beyond them \
                 (a read at {addr:#x}); the frames of outer callers are not shown rather than read from the \
                 live stack, where the writer has run on since",
                stack.bytes.len(),
                stack.start
            )
        });
    (frames, note)
}

/// Code (runtime address of its first byte) and its bytes.
type FunctionCode = (u64, Arc<[u8]>);

/// Longest stretch of a function decoded to find a writing instruction.
const MAX_FUNCTION_PREFIX: u64 = 1 << 20;

/// The runtime address where the function holding `rip` starts (its ELF
/// symbol), and the module file's code from there up to `rip`: the file's,
/// because the live code may hold the int3s of ptrace probes.
fn function_code_before(image: &ProcessImage, rip: u64) -> Option<FunctionCode> {
    let module = image.module_for(crate::debuginfo::RuntimeAddr(rip))?;
    let rip_file = module.to_file(crate::debuginfo::RuntimeAddr(rip));
    // The instruction ends at rip, so it starts before it.
    let (entry, _) =
        module.function_entry(crate::debuginfo::FileAddr(rip_file.0.checked_sub(1)?))?;
    if rip_file.0.checked_sub(entry.0)? > MAX_FUNCTION_PREFIX {
        return None;
    }
    let code = module.file_bytes(entry, rip_file)?;
    Some((module.to_runtime(entry).0, Arc::from(code)))
}

/// The instruction ending at `rip` (a data watchpoint traps just after the
/// write): its runtime address and its bytes from the module file, found
/// once by decoding forward from the start of its function. `None` when the
/// function or an instruction ending exactly at `rip` is not found (then no
/// stored value is derived, as `stored_bytes` would not either).
fn store_instruction_before(image: &ProcessImage, rip: u64) -> Option<FunctionCode> {
    let (start, code) = function_code_before(image, rip)?;
    let end = usize::try_from(rip.checked_sub(start)?).ok()?;
    let mut decoder =
        iced_x86::Decoder::with_ip(64, code.get(..end)?, start, iced_x86::DecoderOptions::NONE);
    let mut instruction = iced_x86::Instruction::default();
    while decoder.can_decode() {
        decoder.decode_out(&mut instruction);
        if instruction.is_invalid() {
            return None;
        }
        if instruction.next_ip() == rip {
            let from = usize::try_from(instruction.ip().checked_sub(start)?).ok()?;
            return Some((instruction.ip(), Arc::from(code.get(from..end)?)));
        }
    }
    None
}

/// CLOCK_MONOTONIC and the wall clock read together, to date records
/// stamped with the monotonic clock.
struct WallClock {
    monotonic_ns: u64,
    wall: SystemTime,
}

impl WallClock {
    fn now() -> WallClock {
        WallClock {
            monotonic_ns: crate::tracer::monotonic_ns(),
            wall: SystemTime::now(),
        }
    }

    /// The wall-clock time of a CLOCK_MONOTONIC instant in the past.
    fn wall_time_of(&self, monotonic_ns: u64) -> SystemTime {
        let ago = Duration::from_nanos(self.monotonic_ns.saturating_sub(monotonic_ns));
        self.wall.checked_sub(ago).unwrap_or(self.wall)
    }
}

fn returned_reason(identity: &FrameIdentity) -> String {
    format!(
        "the watched frame of {} returned (its frame at CFA {:#x} is no longer on thread {}'s stack)",
        identity.function.as_deref().unwrap_or("its function"),
        identity.cfa,
        identity.tid
    )
}

#[cfg(test)]
mod tests {
    use super::{MemoryCopy, Overlay, StackAtWrite, split_aligned};
    use crate::debuginfo::{MemoryError, MemorySource};
    use std::cell::Cell;

    /// Memory at 0x1000.. holding byte i = i as u8, counting reads.
    struct Counting {
        reads: Cell<usize>,
    }

    impl MemorySource for Counting {
        fn read_memory(&self, addr: u64, buf: &mut [u8]) -> Result<(), MemoryError> {
            self.reads.set(self.reads.get() + 1);
            if addr < 0x1000 {
                return Err(MemoryError { addr });
            }
            for (i, b) in buf.iter_mut().enumerate() {
                *b = (addr - 0x1000 + i as u64) as u8;
            }
            Ok(())
        }
    }

    #[test]
    fn the_overlay_reads_the_target_only_for_bytes_outside_the_watched_ones() {
        let live = Counting {
            reads: Cell::new(0),
        };
        let watched = [0xaa; 8];
        let overlay = Overlay {
            addr: 0x1008,
            bytes: &watched,
            live: &live,
        };
        let mut buf = [0u8; 8];
        overlay
            .read_memory(0x1008, &mut buf)
            .expect("watched bytes");
        assert_eq!(buf, [0xaa; 8]);
        assert_eq!(
            live.reads.get(),
            0,
            "a scalar of watched bytes reads nothing live"
        );
        let mut buf = [0u8; 4];
        overlay.read_memory(0x100a, &mut buf).expect("inside");
        assert_eq!((buf, live.reads.get()), ([0xaa; 4], 0));
        // Straddling: the rest comes live, below and above.
        let mut buf = [0u8; 12];
        overlay.read_memory(0x1006, &mut buf).expect("straddling");
        assert_eq!(
            buf,
            [
                6, 7, 0xaa, 0xaa, 0xaa, 0xaa, 0xaa, 0xaa, 0xaa, 0xaa, 0x10, 0x11
            ]
        );
        assert_eq!(live.reads.get(), 2);
        let mut buf = [0u8; 2];
        overlay.read_memory(0x1020, &mut buf).expect("outside");
        assert_eq!(buf, [0x20, 0x21]);
        // A live part that cannot be read fails the read, naming it.
        let overlay = Overlay {
            addr: 0x1000,
            bytes: &watched,
            live: &live,
        };
        let mut buf = [0u8; 16];
        assert_eq!(
            overlay.read_memory(0xff8, &mut buf),
            Err(MemoryError { addr: 0xff8 })
        );
    }

    #[test]
    fn the_stack_at_a_write_answers_only_from_its_copy_and_keeps_the_first_miss() {
        let copy = MemoryCopy {
            start: 0x7000,
            bytes: (0..64u8).collect(),
        };
        let stack = StackAtWrite::new(&copy);
        let mut buf = [0u8; 8];
        stack
            .read_memory(0x7008, &mut buf)
            .expect("inside the copy");
        assert_eq!(buf, [8, 9, 10, 11, 12, 13, 14, 15]);
        assert_eq!(stack.first_miss.get(), None);
        // Running past the copy's end is a miss, never a live read.
        assert!(stack.read_memory(0x703c, &mut buf).is_err());
        assert!(stack.read_memory(0x7100, &mut buf).is_err());
        assert_eq!(stack.first_miss.get(), Some(0x703c));
    }

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
