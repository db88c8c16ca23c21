//! `watch_expression`: follow a value over time.
//!
//! `sample` mode evaluates the expression every `interval_ms`. An expression
//! over globals, statics and the heap reached from them is read through the
//! process's memory (process_vm_readv) with no thread stopped. An expression
//! on a frame's locals (`tid`, `frame`) holds that one thread only while its
//! registers and stack are copied (the thread-copy path of `evaluate`), and
//! the watch ends `done` when that frame is no longer on the thread's stack.
//!
//! A watch is a [`Probe`] of kind `watch` with the probe machinery's store,
//! states, paging, long-poll, budget and resources; its sampler is a task
//! of its own, not a breakpoint.

use super::debug_registers::DebugRegisters;
use super::items::{ProbeItem, WatchItem, WatchSample};
use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::debuginfo::types::TypeTables;
use crate::debuginfo::{MemorySource, ProcessImage, Registers, RuntimeAddr};
use crate::eval::{self, CompiledExpr, FrameContext};
use crate::tracer::{TargetState, Tracer};
use crate::value::{Limits, Redaction, Value};

use super::frames::{CapturedThread, LiveMemory};
use super::probe_ops::{MAX_PROBES, MAX_TTL_S};
use super::probes::{EngineChoice, Probe, ProbeEngine, ProbeKind, ProbeState, StoredBody};
use super::store::rfc3339;
use super::{Engine, EngineError, STACK_COPY_BYTES, Target};

/// Default sampling interval.
pub const DEFAULT_INTERVAL_MS: u64 = 100;
/// Longest sampling interval accepted (a minute).
pub const MAX_INTERVAL_MS: u64 = 60_000;
/// Default watch duration.
pub const DEFAULT_DURATION_S: u64 = 10;
/// Default `max_events`.
pub const DEFAULT_MAX_EVENTS: u64 = 100;
/// Largest `max_events` accepted.
pub const MAX_EVENTS_CEILING: u64 = 1_000_000;
/// Items a watch keeps for reading; older ones are pushed out (and counted
/// in `dropped`) when a client reads slower than the watch records.
pub(super) const WATCH_STORE_CAPACITY: u64 = 10_000;
/// Frames searched for the watched frame at each sample.
const MAX_WATCH_FRAMES: usize = 256;

/// How a watch follows its expression.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum WatchMode {
    /// Evaluate the expression every `interval_ms`.
    Sample,
    /// Report every write to the expression's lvalue (hardware watchpoint).
    Write,
    /// Report every read or write of the expression's lvalue.
    Access,
}

/// The bounds every watch runs within, checked.
pub(super) struct WatchLimits {
    pub(super) duration_s: u64,
    pub(super) max_events: u64,
    pub(super) ttl_s: u64,
}

impl WatchMode {
    pub(super) fn name(self) -> &'static str {
        match self {
            WatchMode::Sample => "sample",
            WatchMode::Write => "write",
            WatchMode::Access => "access",
        }
    }
}

/// What to watch.
pub struct WatchRequest {
    /// Target.
    pub pid: i32,
    /// The expression.
    pub expression: String,
    /// How.
    pub mode: WatchMode,
    /// Sampling interval (`sample`), in ms.
    pub interval_ms: Option<u64>,
    /// How long the watch runs, in seconds.
    pub duration_s: Option<u64>,
    /// Items before the watch is done.
    pub max_events: Option<u64>,
    /// Keep only samples whose value differs from the previous sample's.
    pub on_change: bool,
    /// Only samples where this holds.
    pub condition: Option<String>,
    /// Thread whose frame the expression is evaluated in.
    pub tid: Option<i32>,
    /// Frame index in that thread (0 = innermost).
    pub frame: Option<usize>,
    /// Seconds before the watch expires.
    pub ttl_s: Option<u64>,
    /// Engine asked for.
    pub engine: Option<EngineChoice>,
    /// How much of each value to load.
    pub limits: Limits,
}

/// Answer of `watch_expression`.
#[derive(Debug, Clone, Serialize, JsonSchema)]
pub struct WatchCreated {
    /// Id to read results with (get_probe_results), list and remove it by.
    pub probe_id: u64,
    /// How the watch reads: `sampler` (the target's memory is read every
    /// interval, no thread is stopped) or `ptrace` (the watched frame's
    /// thread is held while its registers and stack are copied, each sample).
    pub engine: ProbeEngine,
    /// Why this engine, when another was asked for or could be expected.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub engine_note: Option<String>,
    /// `sample`, `write` or `access`.
    pub mode: WatchMode,
    /// The expression's type.
    #[serde(rename = "type")]
    pub type_name: String,
    /// Sampling interval in force, in ms.
    pub interval_ms: u64,
    /// Duration in force, in seconds.
    pub duration_s: u64,
    /// `max_events` in force.
    pub max_events: u64,
    /// `ttl_s` in force.
    pub ttl_s: u64,
    /// The frame watched, for an expression on locals.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub frame: Option<super::FrameInfo>,
    /// The thread of that frame.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tid: Option<i32>,
}

/// Running summary of a watch's samples, in `get_probe_results`.
#[derive(Debug, Clone, Default, Serialize, JsonSchema)]
pub struct WatchSummary {
    /// Samples taken that passed the condition (recorded or not: with
    /// `on_change`, unchanged samples are counted here but not stored).
    pub count: u64,
    /// Samples whose value was a number.
    pub numeric: u64,
    /// Smallest number seen.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub min: Option<f64>,
    /// Largest number seen.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max: Option<f64>,
    /// First value seen (its one-line summary).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub first: Option<String>,
    /// Last value seen.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last: Option<String>,
    /// Samples whose value differed from the sample before.
    pub changes: u64,
    /// Samples whose value could not be read (each item says why).
    pub faults: u64,
}

impl WatchSummary {
    fn add(&mut self, value: &Value, number: Option<f64>, changed: bool) {
        self.count += 1;
        if value.unavailable.is_some() {
            self.faults += 1;
        }
        if let Some(n) = number {
            self.numeric += 1;
            self.min = Some(self.min.map_or(n, |m| m.min(n)));
            self.max = Some(self.max.map_or(n, |m| m.max(n)));
        }
        if self.first.is_none() {
            self.first = Some(value.value.clone());
        }
        self.last = Some(value.value.clone());
        if changed {
            self.changes += 1;
        }
    }
}

/// The summaries of the watches of one engine, by probe id, and the debug
/// registers its write/access watches hold.
#[derive(Default)]
pub struct WatchSummaries(
    Mutex<HashMap<u64, Arc<Mutex<WatchSummary>>>>,
    pub(super) Arc<Mutex<HashMap<u64, DebugRegisters>>>,
);

impl WatchSummaries {
    pub(super) fn map(&self) -> std::sync::MutexGuard<'_, HashMap<u64, Arc<Mutex<WatchSummary>>>> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The summary of watch `probe_id`, if it is a watch.
    pub fn get(&self, probe_id: u64) -> Option<WatchSummary> {
        let summary = self.map().get(&probe_id).cloned()?;
        Some(lock(&summary).clone())
    }

    /// Closes the watchpoints of every watch on `pid` (detach): their
    /// debug registers are free when this returns.
    pub fn release_pid(&self, pid: i32) {
        let held: Vec<DebugRegisters> = {
            let mut all = lock(&self.1);
            let of_pid = all.values().filter(|r| r.pid == pid).cloned().collect();
            all.retain(|_, r| r.pid != pid);
            of_pid
        };
        for h in held {
            lock(&h.watchpoints).clear();
        }
    }

    /// Forgets a removed watch.
    pub fn remove(&self, probe_id: u64) {
        self.map().remove(&probe_id);
        let held = lock(&self.1).remove(&probe_id);
        if let Some(held) = held {
            lock(&held.watchpoints).clear();
        }
    }
}

pub(super) fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Where the expression is evaluated.
enum Place {
    /// Globals and statics, no thread.
    Globals,
    /// A frame of one thread, known by its CFA, function and return address.
    Frame(FrameIdentity),
}

/// What tells the watched frame from any other, sample after sample.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct FrameIdentity {
    pub(super) tid: i32,
    /// The physical frame's canonical frame address.
    pub(super) cfa: u64,
    /// Where it returns to (the next physical frame's pc), when known.
    return_pc: Option<u64>,
    /// The source function at `inline_depth`.
    pub(super) function: Option<String>,
    inline_depth: usize,
}

/// The context globals are evaluated in: no thread, so no registers; with
/// the type tables client requests share.
pub(super) fn globals_context<'a>(
    image: &'a ProcessImage,
    regs: &'a Registers,
    memory: &'a dyn MemorySource,
) -> FrameContext<'a> {
    globals_context_in(image, regs, memory, TypeTables::shared())
}

/// [`globals_context`] for the reader whose type tables are `types`.
fn globals_context_in<'a>(
    image: &'a ProcessImage,
    regs: &'a Registers,
    memory: &'a dyn MemorySource,
    types: &'a TypeTables,
) -> FrameContext<'a> {
    FrameContext {
        image,
        pc: RuntimeAddr(0),
        regs,
        cfa: None,
        is_caller: false,
        inline_depth: 0,
        memory,
        types,
    }
}

impl Engine {
    /// Starts a watch.
    pub async fn watch_expression(&self, req: WatchRequest) -> Result<WatchCreated, EngineError> {
        let target = self.target(req.pid)?;
        let expression = req.expression.trim().to_string();
        if expression.is_empty() {
            return Err(EngineError::BadArgument(
                "expression is empty: give e.g. `counter`, `cfg->limit` or `stats.hits[2]`".into(),
            ));
        }
        let interval_ms = req.interval_ms.unwrap_or(DEFAULT_INTERVAL_MS);
        if !(1..=MAX_INTERVAL_MS).contains(&interval_ms) {
            return Err(EngineError::BadArgument(format!(
                "interval_ms must be between 1 and {MAX_INTERVAL_MS}, got {interval_ms}"
            )));
        }
        let ttl_s = req.ttl_s.unwrap_or(600);
        if ttl_s == 0 || ttl_s > MAX_TTL_S {
            return Err(EngineError::BadArgument(format!(
                "ttl_s must be between 1 and {MAX_TTL_S} seconds, got {ttl_s}"
            )));
        }
        let duration_s = req.duration_s.unwrap_or(DEFAULT_DURATION_S.min(ttl_s));
        if duration_s == 0 || duration_s > ttl_s {
            return Err(EngineError::BadArgument(format!(
                "duration_s must be between 1 and the watch's ttl_s ({ttl_s}) seconds, got {duration_s}; \
                 raise ttl_s (at most {MAX_TTL_S}) for a longer watch"
            )));
        }
        let max_events = req.max_events.unwrap_or(DEFAULT_MAX_EVENTS);
        if max_events == 0 || max_events > MAX_EVENTS_CEILING {
            return Err(EngineError::BadArgument(format!(
                "max_events must be between 1 and {MAX_EVENTS_CEILING}, got {max_events}"
            )));
        }
        if req.mode != WatchMode::Sample {
            return self
                .watch_writes(
                    &target,
                    &req,
                    &expression,
                    WatchLimits {
                        duration_s,
                        max_events,
                        ttl_s,
                    },
                )
                .await;
        }
        if req.engine == Some(EngineChoice::Uprobe) {
            return Err(EngineError::BadArgument(
                "engine uprobe runs at code locations; a sampled watch reads memory every interval \
                 instead: use engine auto (or ptrace)"
                    .into(),
            ));
        }
        let limits = req.limits.clamped();
        let image = target.image();
        // The watch's own type tables: its samples never wait for a
        // client's decode. Compiling warms them.
        let types = Arc::new(TypeTables::new());
        let on_locals = req.tid.is_some() || req.frame.is_some();
        let (expr, condition, place, frame_info, engine_note) = if on_locals {
            self.compile_on_frame(&target, &req, &expression, &types)
                .await?
        } else {
            let expr = compile_global_for_watch_in(&image, &expression, "expression", &types)?;
            let condition = req
                .condition
                .as_deref()
                .map(str::trim)
                .filter(|c| !c.is_empty())
                .map(|c| compile_global_for_watch_in(&image, c, "condition", &types))
                .transpose()?;
            let note = (req.engine == Some(EngineChoice::Ptrace)).then(|| {
                "the expression reads globals only: they are read from the process's memory with no \
                 thread stopped, so ptrace is not needed"
                    .to_string()
            });
            (expr, condition, Place::Globals, None, note)
        };
        if let Some(secret) = condition
            .as_ref()
            .and_then(|c| c.secret_name(&self.redaction))
        {
            return Err(EngineError::BadArgument(format!(
                "the condition reads `{secret}`, whose name looks secret: a condition on it would leak \
                 its value one sample at a time, so it is refused; filter on something else"
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
        let engine = match place {
            Place::Globals => ProbeEngine::Sampler,
            Place::Frame(_) => ProbeEngine::Ptrace,
        };
        let tid = match &place {
            Place::Frame(f) => Some(f.tid),
            Place::Globals => None,
        };
        super::probe_ops::warm_for_hits(&image);
        let id = self.next_probe_id.fetch_add(1, Ordering::Relaxed);
        let probe = Arc::new(Probe::new(
            id,
            req.pid,
            ProbeKind::Watch,
            expression.clone(),
            Vec::new(),
            None,
            max_events,
            Duration::from_secs(ttl_s),
            max_events.min(WATCH_STORE_CAPACITY) as usize,
            self.policy.hit_budget(),
            self.probe_updates.clone(),
        ));
        probe.set_engine(engine, engine_note.clone());
        let summary = Arc::new(Mutex::new(WatchSummary::default()));
        self.watches.map().insert(id, summary.clone());
        self.probes().insert(id, probe.clone());
        let type_name = expr.type_name().to_string();
        let sampler = Sampler {
            probe,
            summary,
            tracer: self.tracer.clone(),
            target: target.clone(),
            expr,
            condition,
            place,
            types,
            interval: Duration::from_millis(interval_ms),
            ends_at: Instant::now() + Duration::from_secs(duration_s),
            duration_s,
            on_change: req.on_change,
            limits,
            redaction: self.redaction.clone(),
            previous: None,
        };
        tokio::spawn(sampler.run());
        tracing::info!(probe = id, pid = req.pid, expression = %expression, "watch started");
        Ok(WatchCreated {
            probe_id: id,
            engine,
            engine_note,
            mode: req.mode,
            type_name,
            interval_ms,
            duration_s,
            max_events,
            ttl_s,
            frame: frame_info,
            tid,
        })
    }

    /// Compiles the expression (and condition) in frame `req.frame` of
    /// thread `req.tid`, and notes what identifies that frame.
    async fn compile_on_frame(
        &self,
        target: &Target,
        req: &WatchRequest,
        expression: &str,
        types: &TypeTables,
    ) -> Result<
        (
            CompiledExpr,
            Option<CompiledExpr>,
            Place,
            Option<super::FrameInfo>,
            Option<String>,
        ),
        EngineError,
    > {
        let tid = req.tid.unwrap_or(req.pid);
        let index = req.frame.unwrap_or(0);
        let thread = self
            .capture(target, Some(vec![tid]), STACK_COPY_BYTES)
            .await?
            .pop()
            .ok_or_else(|| EngineError::Internal(format!("thread {tid} was not captured")))?;
        let image = target.image();
        let compiled = self.with_frame_in(req.pid, &thread, index, types, |ctx, info| {
            let expr = eval::compile(expression, ctx);
            let condition = req
                .condition
                .as_deref()
                .map(str::trim)
                .filter(|c| !c.is_empty())
                .map(|c| eval::compile(c, ctx).map_err(|e| (c.to_string(), e)))
                .transpose();
            (expr, condition, info)
        })?;
        let (expr, condition, info) = compiled;
        let expr = expr.map_err(|e| {
            EngineError::BadArgument(format!(
                "expression `{expression}` does not compile in frame {index} of thread {tid}: {}",
                super::inspect::program_names_first(&image, e)
            ))
        })?;
        let condition = condition.map_err(|(c, e)| {
            EngineError::BadArgument(format!(
                "condition `{c}` does not compile in frame {index} of thread {tid}: {e}"
            ))
        })?;
        let identity = frame_identity(&image, &thread, index).ok_or_else(|| {
            EngineError::BadArgument(format!(
                "frame {index} of thread {tid} has no canonical frame address (no CFI covers it), so \
                 liveprobe could not tell when it returns; watch a global, or a frame with CFI"
            ))
        })?;
        Ok((
            expr,
            condition,
            Place::Frame(identity),
            Some(info),
            Some(format!(
                "each sample holds thread {tid} while its registers and stack are copied; the watch \
                 ends when frame {index} returns"
            )),
        ))
    }

    /// The running summary of a watch, if `probe_id` is one.
    pub(super) fn watch_summary(&self, probe_id: u64) -> Option<WatchSummary> {
        self.watches.get(probe_id)
    }
}

/// Compiles `text` over globals for a watch, with the type tables client
/// requests share.
pub(super) fn compile_global_for_watch(
    image: &ProcessImage,
    text: &str,
    what: &str,
) -> Result<CompiledExpr, EngineError> {
    compile_global_for_watch_in(image, text, what, TypeTables::shared())
}

/// [`compile_global_for_watch`] with the watch's own type tables.
fn compile_global_for_watch_in(
    image: &ProcessImage,
    text: &str,
    what: &str,
    types: &TypeTables,
) -> Result<CompiledExpr, EngineError> {
    eval::compile_global_in(text, image, types).map_err(|e| {
        let e = super::inspect::program_names_first(image, e);
        EngineError::BadArgument(format!(
            "{what} `{text}` does not compile over globals: {e}; to watch a local, give the tid \
             (and frame) of the frame that holds it"
        ))
    })
}

/// The identity of frame `index` (inlined frames count) of a captured
/// thread; `None` when its CFA is not known.
pub(super) fn frame_identity(
    image: &ProcessImage,
    thread: &CapturedThread,
    index: usize,
) -> Option<FrameIdentity> {
    let mut seen = 0usize;
    let mut frames = image
        .unwind_iter(&thread.regs, &thread.memory)
        .take(MAX_WATCH_FRAMES);
    while let Some(frame) = frames.next() {
        let symbols = image.symbolize(frame.pc, frame.is_caller);
        let count = symbols.len().max(1);
        if index < seen + count {
            let depth = index - seen;
            let return_pc = frames.next().map(|caller| caller.pc.0);
            return Some(FrameIdentity {
                tid: thread.tid,
                cfa: frame.cfa?,
                return_pc,
                function: symbols.get(depth).and_then(|s| s.function.clone()),
                inline_depth: depth,
            });
        }
        seen += count;
    }
    None
}

/// Whether the watched frame is still on the thread's stack: `Some(false)`
/// once a frame above it (a higher CFA) or another activation at its CFA is
/// found, `None` when the stack could not be unwound that far.
pub(super) fn frame_still_there(
    image: &ProcessImage,
    regs: &Registers,
    memory: &dyn MemorySource,
    identity: &FrameIdentity,
) -> Option<bool> {
    let mut frames = image
        .unwind_iter(regs, memory)
        .take(MAX_WATCH_FRAMES)
        .peekable();
    while let Some(frame) = frames.next() {
        let cfa = frame.cfa?;
        if cfa > identity.cfa {
            return Some(false);
        }
        if cfa != identity.cfa {
            continue;
        }
        let return_pc = frames.peek().map(|caller| caller.pc.0);
        let symbols = image.symbolize(frame.pc, frame.is_caller);
        let same_function = symbols
            .get(identity.inline_depth)
            .map(|s| s.function.clone())
            == Some(identity.function.clone());
        return Some(
            same_function && (identity.return_pc.is_none() || return_pc == identity.return_pc),
        );
    }
    None
}

/// What one sample gave.
enum Sample {
    /// A value (and, when it is a number, the number), and the time the
    /// thread was held.
    Value {
        value: Value,
        number: Option<f64>,
        held_us: u64,
    },
    /// The condition was false.
    Filtered,
    /// The condition could not be evaluated.
    ConditionFault,
    /// The watch cannot go on: its state and why.
    End(ProbeState, String),
}

/// The task that samples one watch.
struct Sampler {
    probe: Arc<Probe>,
    summary: Arc<Mutex<WatchSummary>>,
    tracer: Tracer,
    target: Arc<Target>,
    expr: CompiledExpr,
    condition: Option<CompiledExpr>,
    place: Place,
    /// The watch's own type tables (see `TypeTables`).
    types: Arc<TypeTables>,
    interval: Duration,
    ends_at: Instant,
    duration_s: u64,
    on_change: bool,
    limits: Limits,
    redaction: Redaction,
    /// The previous sample's value, to tell changes.
    previous: Option<serde_json::Value>,
}

impl Sampler {
    async fn run(mut self) {
        let mut ticks = tokio::time::interval(self.interval);
        // A late tick is skipped, not made up for in a burst.
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
        let ends_at = tokio::time::Instant::from_std(self.ends_at);
        let expires_at = tokio::time::Instant::from_std(self.probe.expires_at);
        let probe = self.probe.clone();
        loop {
            let ended = probe.ended.notified();
            tokio::pin!(ended);
            ended.as_mut().enable();
            if self.probe.state() != ProbeState::Armed {
                return;
            }
            tokio::select! {
                _ = ticks.tick() => {}
                _ = tokio::time::sleep_until(ends_at) => {
                    self.probe.finish(
                        ProbeState::Done,
                        Some(format!("duration_s ({} s) passed", self.duration_s)),
                    );
                    return;
                }
                _ = tokio::time::sleep_until(expires_at) => {
                    self.probe.finish(ProbeState::Expired, Some("ttl_s passed".into()));
                    return;
                }
                _ = &mut ended => continue,
            }
            if let Some(reason) = self.target_gone().await {
                self.probe.finish(ProbeState::TargetExited, Some(reason));
                return;
            }
            let started = Instant::now();
            let sample = self.sample().await;
            let spent = started.elapsed();
            let (held, proceed) = match sample {
                Sample::Value {
                    value,
                    number,
                    held_us,
                } => {
                    self.store(value, number);
                    (Duration::from_micros(held_us), true)
                }
                Sample::Filtered => {
                    self.probe.filtered.fetch_add(1, Ordering::Relaxed);
                    (Duration::ZERO, true)
                }
                Sample::ConditionFault => {
                    let faults = self.probe.condition_faults.fetch_add(1, Ordering::Relaxed) + 1;
                    if faults >= super::probes::MAX_CONDITION_FAULTS {
                        self.probe.finish(
                            ProbeState::Error,
                            Some(format!(
                                "the condition could not be evaluated {faults} times; set the watch again \
                                 with a condition that can be read"
                            )),
                        );
                        return;
                    }
                    (Duration::ZERO, true)
                }
                Sample::End(state, reason) => {
                    self.probe.finish(state, Some(reason));
                    (Duration::ZERO, false)
                }
            };
            if !proceed {
                return;
            }
            // What the target paid is the time its thread was held (none
            // for globals); the sampler's own time is shown, not charged.
            if self
                .probe
                .charge(spent, held, crate::tracer::monotonic_ns())
            {
                self.probe.finish(
                    ProbeState::Throttled,
                    Some(format!(
                        "holding thread(s) took more than the budget of {:?} per second; use a larger \
                         interval_ms",
                        self.probe.budget_per_second
                    )),
                );
                return;
            }
        }
    }

    /// Why the target can no longer be sampled, if it cannot.
    async fn target_gone(&self) -> Option<String> {
        match self.tracer.process_state(self.target.pid).await.ok() {
            Some(TargetState::Running) => None,
            Some(TargetState::Exited { code }) => {
                Some(format!("the process exited with code {code}"))
            }
            Some(TargetState::Killed { signal }) => {
                Some(format!("the process was killed by {signal}"))
            }
            Some(TargetState::Execed) => Some(
                "the process ran a new program (exec): the watched expression means nothing there"
                    .into(),
            ),
            // Detach finishes the watch itself (as removed); this is a
            // watch that outlived its target's entry.
            Some(TargetState::Detached) | None => Some("the process is no longer attached".into()),
        }
    }

    async fn sample(&mut self) -> Sample {
        let image = self.target.image();
        match &self.place {
            Place::Globals => {
                let memory = LiveMemory(&self.target.memory);
                let regs = Registers::default();
                let ctx = globals_context_in(&image, &regs, &memory, &self.types);
                if let Some(condition) = &self.condition {
                    match eval::evaluate_condition(condition, &ctx) {
                        Ok(true) => {}
                        Ok(false) => return Sample::Filtered,
                        Err(_) => return Sample::ConditionFault,
                    }
                }
                let value = eval::evaluate_global(
                    &self.expr,
                    &image,
                    &memory,
                    &self.limits,
                    &self.redaction,
                );
                let number = number_of(&self.expr, &value, &ctx);
                Sample::Value {
                    value,
                    number,
                    held_us: 0,
                }
            }
            Place::Frame(identity) => {
                let identity = identity.clone();
                let captured = self
                    .tracer
                    .capture_threads(self.target.pid, Some(vec![identity.tid]), STACK_COPY_BYTES)
                    .await;
                let thread = match captured.map(|mut c| c.pop()) {
                    Ok(Some(c)) => CapturedThread::new(c, self.target.memory.clone()),
                    Ok(None) | Err(_) => {
                        if let Some(reason) = self.target_gone().await {
                            return Sample::End(ProbeState::TargetExited, reason);
                        }
                        return Sample::End(
                            ProbeState::Done,
                            format!(
                                "thread {} exited, and the watched frame with it",
                                identity.tid
                            ),
                        );
                    }
                };
                self.sample_frame(&image, &thread, &identity)
            }
        }
    }

    /// Finds the watched frame on the thread's stack and evaluates there.
    fn sample_frame(
        &self,
        image: &ProcessImage,
        thread: &CapturedThread,
        identity: &FrameIdentity,
    ) -> Sample {
        let function = identity.function.as_deref().unwrap_or("its function");
        let returned = || {
            Sample::End(
                ProbeState::Done,
                format!(
                    "the watched frame of {function} returned (its frame at CFA {:#x} is no longer on thread {}'s stack)",
                    identity.cfa, identity.tid
                ),
            )
        };
        let mut frames = image
            .unwind_iter(&thread.regs, &thread.memory)
            .take(MAX_WATCH_FRAMES)
            .peekable();
        while let Some(frame) = frames.next() {
            let Some(cfa) = frame.cfa else {
                break;
            };
            // The stack grows down: a frame above the watched one means the
            // watched one is gone.
            if cfa > identity.cfa {
                return returned();
            }
            if cfa != identity.cfa {
                continue;
            }
            let return_pc = frames.peek().map(|caller| caller.pc.0);
            let symbols = image.symbolize(frame.pc, frame.is_caller);
            let same_function = symbols
                .get(identity.inline_depth)
                .map(|s| s.function.clone())
                == Some(identity.function.clone());
            if !same_function || (identity.return_pc.is_some() && return_pc != identity.return_pc) {
                return returned();
            }
            let ctx = FrameContext {
                image,
                pc: frame.pc,
                regs: &frame.regs,
                cfa: frame.cfa,
                is_caller: frame.is_caller,
                memory: &thread.memory,
                inline_depth: identity.inline_depth,
                types: &self.types,
            };
            if let Some(condition) = &self.condition {
                match eval::evaluate_condition(condition, &ctx) {
                    Ok(true) => {}
                    Ok(false) => return Sample::Filtered,
                    Err(_) => return Sample::ConditionFault,
                }
            }
            let value = eval::evaluate(&self.expr, &ctx, &self.limits, &self.redaction);
            let number = number_of(&self.expr, &value, &ctx);
            return Sample::Value {
                value,
                number,
                held_us: thread.held_us,
            };
        }
        // The stack could not be unwound down to the frame: unsure, so the
        // sample says so and the watch goes on.
        let value = Value::unavailable(
            self.expr.source().to_string(),
            self.expr.type_name().to_string(),
            crate::value::NotCaptured::FrameNotReached { tid: identity.tid },
        );
        Sample::Value {
            value,
            number: None,
            held_us: thread.held_us,
        }
    }

    /// Records a sample (unless `on_change` and unchanged) and updates the summary.
    fn store(&mut self, value: Value, number: Option<f64>) {
        let shown = serde_json::to_value(&value).unwrap_or_default();
        let changed = self.previous.as_ref().is_some_and(|p| *p != shown);
        let first = self.previous.is_none();
        lock(&self.summary).add(&value, number, changed);
        let keep = !self.on_change || first || changed;
        self.previous = Some(shown.clone());
        if !keep {
            return;
        }
        let hits = self.probe.hits.fetch_add(1, Ordering::Relaxed) + 1;
        let item = ProbeItem::Watch(WatchItem::Sample(WatchSample {
            seq: 0,
            time: rfc3339(SystemTime::now()),
            value,
        }));
        self.probe.record(
            StoredBody::Ready(Box::new(item)),
            hits >= self.probe.max_hits,
        );
    }
}

/// The value as a number, for the summary: only for scalar expressions
/// whose value was read.
fn number_of(expr: &CompiledExpr, value: &Value, ctx: &FrameContext<'_>) -> Option<f64> {
    if value.unavailable.is_some() || !expr.is_scalar() {
        return None;
    }
    // The rendered summary is what the client saw; read it back rather
    // than reading the target a second time (the value may have moved).
    let text = value.value.trim();
    match text {
        "true" => return Some(1.0),
        "false" => return Some(0.0),
        _ => {}
    }
    let first = text.split_whitespace().next().unwrap_or(text);
    if let Ok(n) = first.parse::<f64>() {
        return Some(n);
    }
    if let Some(hex) = first.strip_prefix("0x") {
        return u64::from_str_radix(hex, 16).ok().map(|n| n as f64);
    }
    eval::evaluate_number(expr, ctx).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn summary_counts_changes_faults_and_numbers() {
        let mut s = WatchSummary::default();
        let v = |text: &str| Value::leaf("x", "int", text);
        s.add(&v("3"), Some(3.0), false);
        s.add(&v("3"), Some(3.0), false);
        s.add(&v("7"), Some(7.0), true);
        let fault = Value::unavailable("x", "int", "read error at 0x0");
        s.add(&fault, None, true);
        assert_eq!(s.count, 4);
        assert_eq!(s.numeric, 3);
        assert_eq!(s.faults, 1);
        assert_eq!(s.changes, 2);
        assert_eq!((s.min, s.max), (Some(3.0), Some(7.0)));
        assert_eq!(s.first.as_deref(), Some("3"));
    }
}
