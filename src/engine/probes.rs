//! Probes: one user probe, many physical sites. A probe is compiled when it
//! is set (location resolved, condition and captures type-checked, the
//! capture planned); a hit only copies what the plan names (a kernel-side
//! site in BPF, a ptrace breakpoint with `process_vm_readv` while only the
//! hitting thread is held), and the handler works on that copy later:
//! condition, counts, store, and a render deferred to the first read. A
//! ptrace site whose capture cannot be planned keeps its thread stopped
//! while the hit worker reads it live (see docs/architecture.md).
//!
//! Where hits are handled: every site's handler on the tracer thread only
//! queues (`QueuedSiteHandler`) to one hit worker thread, which evaluates
//! conditions, renders and records, in hit order: a ptrace copy after its
//! thread was resumed, a kernel-side record as the tracer drains the ring,
//! a held ptrace hit while its thread waits (the worker releases it; the
//! tracer lets it go after `HELD_HIT_DEADLINE` and the reads after that
//! fail). A probe decodes types with tables of its own (`SiteHandler::types`,
//! made and warmed when it is set), so the worker never waits for a client
//! request's decode, which holds the tables client requests share; a copy
//! rendered when a client first reads it is that client's request and uses
//! those. Answers wait for the worker to catch up (`settle_copied_hits`).

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use schemars::JsonSchema;
use serde::Serialize;

use crate::debuginfo::types::TypeTables;
use crate::debuginfo::{MemorySource, ProcessImage, Registers, RuntimeAddr};
use crate::eval::{self, CompiledExpr, FrameContext};
use crate::tracer::{
    BreakpointEnd, CopiedHitContext, HeldHit, HitContext, HitHandler, HitMemory, HitVerdict,
};
use crate::value::{Limits, Redaction, Unavailable, Value};

use super::frames::{HitMemorySource, registers_from};
use super::items::{CapturedFrame, LogpointItem, MetricItem, ProbeItem, SnapshotItem};
use super::items::{SiteHits, SummaryView};
use super::report::ResolvedSiteRow;
use super::store::{Render, ResultStore, Summary, rfc3339};

/// Shortest interval between two "new results" updates of one probe.
const UPDATE_INTERVAL_NS: u64 = 50_000_000;

/// Spans of one duration metric open at once on one thread (recursion).
const MAX_OPEN_SPANS: usize = 256;

/// Condition faults tolerated before a probe gives up and reports the error.
pub const MAX_CONDITION_FAULTS: u64 = 10;
/// Handler time one probe may spend per second of wall time before it is
/// throttled, unless the policy says otherwise: the overhead budget that
/// keeps a hot probe from hurting the target.
pub const DEFAULT_HANDLER_BUDGET_PER_SECOND: Duration = Duration::from_millis(250);
/// What each hit of a kernel-side probe is charged against the probe's
/// budget: the part of a hit that is the probe's own work in the hitting
/// thread (the capture program; the trap itself is not charged, as for
/// ptrace breakpoints). A rule, not a measurement: liveprobe cannot time
/// the program per hit without turning on kernel-wide BPF statistics.
/// Its work on the record happens later, on its own thread.
pub const KERNEL_HIT_COST: Duration = Duration::from_nanos(500);

/// How hits reach a probe.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, serde::Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum ProbeEngine {
    /// A kernel uprobe runs a generated BPF program that copies what the
    /// probe reads into a ring buffer; the thread is never stopped by us.
    Uprobe,
    /// A ptrace breakpoint: the hitting thread alone is held while the
    /// handler reads.
    Ptrace,
    /// A sampled watch over globals: liveprobe reads the target's memory
    /// every interval (process_vm_readv); no thread is stopped.
    Sampler,
    /// A write/access watch: a hardware breakpoint through perf_event_open
    /// whose BPF program copies the writer's registers, stack window and the
    /// new value; no thread is stopped.
    PerfBreakpoint,
}

pub use crate::policy::EngineChoice;

/// What kind of probe this is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum ProbeKind {
    /// Captures locals and expressions at a hit.
    Snapshot,
    /// Renders a message template at a hit.
    Logpoint,
    /// Counts hits, summarizes an expression, or times a span.
    Metric,
    /// Follows an expression's value over time (`watch_expression`).
    Watch,
}

/// Where a probe is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum ProbeState {
    /// In the target, waiting for hits.
    Armed,
    /// Reached `max_hits`.
    Done,
    /// Its `ttl_s` passed.
    Expired,
    /// Exceeded the overhead budget and was disabled.
    Throttled,
    /// Removed by a client (or by detach).
    Removed,
    /// The target exited or exec'd.
    TargetExited,
    /// Failed, e.g. its condition kept faulting.
    Error,
}

/// Metric kinds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum MetricKind {
    /// Hits.
    Count,
    /// Distribution of a numeric expression.
    Histogram,
    /// Time from `location` to `end_location`, per thread.
    Duration,
}

/// What a probe does at a hit, compiled per site.
pub enum SiteAction {
    /// Locals of `frames` frames plus expressions.
    Snapshot {
        /// Frames captured, from the hit frame outwards.
        frames: usize,
        /// Named expressions, compiled for this site.
        expressions: Vec<(String, CompiledExpr)>,
        /// Load limits.
        limits: Limits,
    },
    /// A message template.
    Logpoint {
        /// Literal text and compiled holes, in order.
        parts: Vec<TemplatePart>,
    },
    /// Count hits.
    Count,
    /// Summarize a numeric expression.
    Histogram(Box<CompiledExpr>),
    /// Start of a timed span.
    DurationStart,
    /// End of a timed span.
    DurationEnd,
}

/// One piece of a logpoint message.
pub enum TemplatePart {
    /// Text copied as is.
    Text(String),
    /// An expression whose value is rendered in place.
    Expr(String, Box<CompiledExpr>),
}

/// A status change with its reason.
#[derive(Debug, Clone)]
pub struct ProbeStatus {
    /// Current state.
    pub state: ProbeState,
    /// Why it left `armed`, when it did.
    pub reason: Option<String>,
}

/// One probe as the engine keeps it.
pub struct Probe {
    /// Unique id.
    pub id: u64,
    /// Target process.
    pub pid: i32,
    /// Kind.
    pub kind: ProbeKind,
    /// The location as the client gave it.
    pub location: String,
    /// Every address covered.
    pub resolved: Vec<ResolvedSiteRow>,
    /// How it was adjusted (line moved, `source_contains` search), if at all.
    pub note: Option<String>,
    /// Hits that passed the condition and were recorded.
    pub hits: AtomicU64,
    /// Hits whose condition was false.
    pub filtered: AtomicU64,
    /// Hits skipped because the condition could not be evaluated.
    pub condition_faults: AtomicU64,
    /// Handler time spent, in nanoseconds.
    pub handler_ns: AtomicU64,
    /// Longest a thread was held by this probe's handler, in nanoseconds.
    pub max_handler_ns: AtomicU64,
    /// Hits lost: the kernel's ring buffer was full (uprobe engine), or
    /// copies waiting for the hit worker passed their bound (either engine).
    pub lost: AtomicU64,
    /// Hits recorded at each site, in the order of `resolved`.
    pub site_hits: Vec<AtomicU64>,
    /// How hits reach it (set once, when it is armed).
    engine: Mutex<(ProbeEngine, Option<String>)>,
    /// `max_hits`.
    pub max_hits: u64,
    /// When the probe expires.
    pub expires_at: Instant,
    /// Handler time it may spend per second before it is throttled.
    pub budget_per_second: Duration,
    /// When it was set.
    pub created: SystemTime,
    status: Mutex<ProbeStatus>,
    store: Mutex<ResultStore>,
    /// Held by a reader while it renders waiting captures.
    render_lock: Mutex<()>,
    summary: Mutex<Summary>,
    /// Open spans of a duration metric: thread -> starts (monotonic ns),
    /// innermost last, so a recursive function's spans nest.
    span_starts: Mutex<HashMap<i32, Vec<u64>>>,
    budget: Mutex<BudgetWindow>,
    /// Woken at every new item and at every state change.
    pub changed: tokio::sync::Notify,
    /// Woken when the probe leaves `armed`.
    pub ended: tokio::sync::Notify,
    /// When the last update was sent, in ns since `born` (updates are
    /// rate-limited at the source: a hot probe must not flood the channel).
    last_update_ns: AtomicU64,
    born: Instant,
    /// Told of every new item (to send resource notifications).
    updates: Option<tokio::sync::mpsc::UnboundedSender<u64>>,
}

/// One second of the budget, on the clock of the hits (CLOCK_MONOTONIC):
/// kernel-side hits are handled after they happened, sometimes in a batch,
/// and are charged to the second they happened in.
#[derive(Debug)]
struct BudgetWindow {
    started_ns: u64,
    spent: Duration,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// What `list_probes` and `get_probe_results` show of a probe's life.
#[derive(Debug, Clone, Serialize, JsonSchema)]
pub struct ProbeRow {
    /// Probe id.
    pub probe_id: u64,
    /// Target process.
    pub pid: i32,
    /// `snapshot`, `logpoint` or `metric`.
    pub kind: ProbeKind,
    /// The location as given.
    pub location: String,
    /// State.
    pub state: ProbeState,
    /// Hits recorded.
    pub hits: u64,
    /// Why it is not armed, when it is not.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// Hits whose condition was false.
    pub filtered: u64,
    /// Hits skipped because the condition faulted.
    pub condition_faults: u64,
    /// Mean time a thread was held per hit by the probe's handler, in microseconds.
    pub mean_handler_us: f64,
    /// Longest time a thread was held by the handler, in microseconds.
    pub max_handler_us: f64,
    /// Seconds until it expires (0 once not armed).
    pub expires_in_s: u64,
    /// Addresses covered.
    pub sites: usize,
    /// How hits reach it: `uprobe` (kernel-side capture, the thread is not
    /// stopped; `mean_handler_us` is then liveprobe's own work per hit, done
    /// after the thread went on) or `ptrace` (the hitting thread is held
    /// while the handler reads).
    pub engine: ProbeEngine,
    /// Why it uses `ptrace` although `uprobe` was preferred.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub engine_note: Option<String>,
    /// Hits lost because liveprobe fell behind a very hot probe: the kernel's
    /// ring buffer was full (uprobe engine), or the copies waiting for the
    /// hit worker passed their bound (either engine).
    #[serde(skip_serializing_if = "is_zero")]
    pub lost: u64,
    /// Hits recorded at each site (a line or function can have several: loop blocks, inlined copies,
    /// generic instances).
    pub per_site: Vec<SiteHits>,
}

pub(super) fn is_zero(n: &u64) -> bool {
    *n == 0
}

impl Probe {
    /// A new armed probe.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        id: u64,
        pid: i32,
        kind: ProbeKind,
        location: String,
        resolved: Vec<ResolvedSiteRow>,
        note: Option<String>,
        max_hits: u64,
        ttl: Duration,
        capacity: usize,
        budget_per_second: Duration,
        updates: Option<tokio::sync::mpsc::UnboundedSender<u64>>,
    ) -> Probe {
        // The hit worker thread starts here, on one of liveprobe's threads:
        // started by a hit handler, it would be a thread of the tracer task
        // (a process of its own, tracer/guardian.rs) and outlive liveprobe.
        hit_worker();
        Probe {
            id,
            pid,
            kind,
            location,
            note,
            hits: AtomicU64::new(0),
            filtered: AtomicU64::new(0),
            condition_faults: AtomicU64::new(0),
            handler_ns: AtomicU64::new(0),
            max_handler_ns: AtomicU64::new(0),
            lost: AtomicU64::new(0),
            site_hits: resolved.iter().map(|_| AtomicU64::new(0)).collect(),
            engine: Mutex::new((ProbeEngine::Ptrace, None)),
            max_hits,
            expires_at: Instant::now() + ttl,
            budget_per_second,
            created: SystemTime::now(),
            status: Mutex::new(ProbeStatus {
                state: ProbeState::Armed,
                reason: None,
            }),
            store: Mutex::new(ResultStore::new(capacity)),
            render_lock: Mutex::new(()),
            summary: Mutex::new(Summary::default()),
            span_starts: Mutex::new(HashMap::new()),
            budget: Mutex::new(BudgetWindow {
                started_ns: crate::tracer::monotonic_ns(),
                spent: Duration::ZERO,
            }),
            changed: tokio::sync::Notify::new(),
            ended: tokio::sync::Notify::new(),
            last_update_ns: AtomicU64::new(0),
            born: Instant::now(),
            updates,
            resolved,
        }
    }

    /// Records how hits reach it.
    pub fn set_engine(&self, engine: ProbeEngine, note: Option<String>) {
        *lock(&self.engine) = (engine, note);
    }

    /// How hits reach it.
    pub fn engine(&self) -> ProbeEngine {
        lock(&self.engine).0
    }

    /// Current state, without copying the reason (checked at every hit).
    pub fn state(&self) -> ProbeState {
        lock(&self.status).state
    }

    /// Current state and reason.
    pub fn status(&self) -> ProbeStatus {
        lock(&self.status).clone()
    }

    /// Moves an armed probe to `state`; a probe that already ended keeps its
    /// first ending. Returns whether the state changed.
    pub fn finish(&self, state: ProbeState, reason: Option<String>) -> bool {
        let mut s = lock(&self.status);
        if s.state != ProbeState::Armed {
            return false;
        }
        s.state = state;
        s.reason = reason;
        drop(s);
        self.changed.notify_waiters();
        self.ended.notify_waiters();
        if let Some(tx) = &self.updates {
            let _ = tx.send(self.id);
        }
        true
    }

    /// The row `list_probes` shows.
    pub fn row(&self) -> ProbeRow {
        let status = self.status();
        let (engine, engine_note) = lock(&self.engine).clone();
        let hits = self.hits.load(Ordering::Relaxed);
        let all_hits = hits
            + self.filtered.load(Ordering::Relaxed)
            + self.condition_faults.load(Ordering::Relaxed);
        ProbeRow {
            probe_id: self.id,
            pid: self.pid,
            kind: self.kind,
            location: self.location.clone(),
            state: status.state,
            hits,
            reason: status.reason,
            filtered: self.filtered.load(Ordering::Relaxed),
            condition_faults: self.condition_faults.load(Ordering::Relaxed),
            mean_handler_us: if all_hits == 0 {
                0.0
            } else {
                self.handler_ns.load(Ordering::Relaxed) as f64 / all_hits as f64 / 1000.0
            },
            max_handler_us: self.max_handler_ns.load(Ordering::Relaxed) as f64 / 1000.0,
            expires_in_s: if status.state == ProbeState::Armed {
                self.expires_at
                    .saturating_duration_since(Instant::now())
                    .as_secs()
            } else {
                0
            },
            sites: self.resolved.len(),
            engine,
            engine_note,
            lost: self.lost.load(Ordering::Relaxed),
            per_site: self.per_site(),
        }
    }

    /// Hits recorded at each site.
    pub fn per_site(&self) -> Vec<SiteHits> {
        self.resolved
            .iter()
            .zip(&self.site_hits)
            .map(|(r, n)| SiteHits {
                site: r.site,
                address: r.address.clone(),
                function: r.function.clone(),
                line: r.line,
                hits: n.load(Ordering::Relaxed),
            })
            .collect()
    }

    /// Counts a hit recorded at the site with this place in `resolved`.
    fn count_at_site(&self, place: Option<usize>) {
        if let Some(n) = place.and_then(|p| self.site_hits.get(p)) {
            n.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Items after `after`, the newest sequence number, and how many were dropped.
    pub fn items_after(&self, after: u64, limit: usize) -> (Vec<ProbeItem>, u64, u64) {
        if self.kind == ProbeKind::Metric {
            // A metric has one item: its current summary.
            let summary = lock(&self.summary).view();
            let seq = summary.count;
            if seq > after {
                let item = ProbeItem::Metric(MetricItem {
                    seq,
                    time: rfc3339(SystemTime::now()),
                    summary,
                    per_site: self.per_site(),
                });
                return (vec![item], seq, 0);
            }
            return (Vec::new(), seq, 0);
        }
        // Rendering waiting captures takes a while: not under the store's
        // lock, which the tracer thread takes at every hit.
        let _one_reader = lock(&self.render_lock);
        let pending = lock(&self.store).take_pending(after, limit);
        let rendered: Vec<(u64, ProbeItem)> = pending
            .into_iter()
            .map(|(seq, render)| (seq, render()))
            .collect();
        let mut store = lock(&self.store);
        for (seq, body) in rendered {
            store.put_rendered(seq, body);
        }
        let items = store.after(after, limit);
        (items, store.last_seq(), store.dropped())
    }

    /// The newest sequence number (for long-polls).
    pub fn last_seq(&self) -> u64 {
        if self.kind == ProbeKind::Metric {
            lock(&self.summary).count()
        } else {
            lock(&self.store).last_seq()
        }
    }

    /// The metric summary (metrics only).
    pub fn summary(&self) -> SummaryView {
        lock(&self.summary).view()
    }

    /// Stores an item; when it is the last one (`max_hits` reached), the
    /// probe is marked done before anyone is woken, so a reader never sees
    /// the last item with the probe still armed, nor `done` without the item.
    pub(super) fn record(&self, item: StoredBody, last: bool) {
        {
            let mut store = lock(&self.store);
            match item {
                StoredBody::Ready(item) => store.push_ready(*item),
                StoredBody::Pending(render) => store.push_pending(render),
            };
        }
        if last {
            self.mark_done();
            self.ended.notify_waiters();
            if let Some(tx) = &self.updates {
                let _ = tx.send(self.id);
            }
        }
        self.announce();
    }

    /// Marks the probe done without waking anyone (the caller announces).
    fn mark_done(&self) {
        let mut s = lock(&self.status);
        if s.state == ProbeState::Armed {
            s.state = ProbeState::Done;
            let limit = if self.kind == ProbeKind::Watch {
                "max_events"
            } else {
                "max_hits"
            };
            s.reason = Some(format!("reached {limit} ({})", self.max_hits));
        }
    }

    fn announce(&self) {
        self.changed.notify_waiters();
        let Some(tx) = &self.updates else {
            return;
        };
        let now = self.born.elapsed().as_nanos() as u64;
        let last = self.last_update_ns.load(Ordering::Relaxed);
        if (last == 0 || now.saturating_sub(last) >= UPDATE_INTERVAL_NS)
            && self
                .last_update_ns
                .compare_exchange(last, now.max(1), Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
        {
            let _ = tx.send(self.id);
        }
    }

    /// Records handler time, and charges `cost` (what the hit cost the
    /// target) to the budget second of `at_ns` (when the hit happened, on
    /// CLOCK_MONOTONIC); true when the probe went over its budget.
    pub(super) fn charge(&self, spent: Duration, cost: Duration, at_ns: u64) -> bool {
        let ns = spent.as_nanos() as u64;
        self.handler_ns.fetch_add(ns, Ordering::Relaxed);
        self.max_handler_ns.fetch_max(ns, Ordering::Relaxed);
        let mut b = lock(&self.budget);
        if at_ns.saturating_sub(b.started_ns) >= 1_000_000_000 {
            b.started_ns = at_ns;
            b.spent = Duration::ZERO;
        }
        b.spent += cost;
        b.spent > self.budget_per_second
    }
}

/// An item for the store: rendered, or rendered when first read.
pub(super) enum StoredBody {
    Ready(Box<ProbeItem>),
    Pending(Render),
}

/// The handler armed at one site of a probe.
pub struct SiteHandler {
    /// The probe it records into.
    pub probe: Arc<Probe>,
    /// Code and debug info of the target.
    pub image: Arc<ProcessImage>,
    /// The probe's own type tables (one for all its sites): its condition,
    /// histogram and every render at the hit decode with them, and no client
    /// request locks them.
    pub types: Arc<TypeTables>,
    /// Compiled condition, if any.
    pub condition: Option<CompiledExpr>,
    /// What to capture (shared with captures waiting to be rendered).
    pub action: Arc<SiteAction>,
    /// Names never shown.
    pub redaction: Redaction,
    /// The site's number (as in the probe's `resolved`); `None` for a duration's end.
    pub site: Option<usize>,
    /// The site's place in the probe's `resolved` list.
    pub place: Option<usize>,
}

impl SiteHandler {
    fn hit_inner(&self, hit: &HitContext<'_>) -> HitVerdict {
        let probe = &self.probe;
        if probe.state() != ProbeState::Armed {
            return HitVerdict::RemoveGroup;
        }
        let regs: Registers = registers_from(hit.regs, hit.fs_base);
        let planned = HitMemorySource::new(hit.memory);
        let memory: &dyn MemorySource = &planned;
        let pc = RuntimeAddr(hit.address);
        // Only what reads the frame needs its CFA (a CFI lookup): a plain
        // count or a span mark must stay as cheap as a trap can be.
        // A copy is rendered later, and finds its CFA then.
        let renders_now = matches!(hit.memory, HitMemory::Live(_) | HitMemory::Held(_));
        let reads_frame = self.condition.is_some()
            || matches!(*self.action, SiteAction::Histogram(_))
            || (renders_now
                && matches!(
                    *self.action,
                    SiteAction::Snapshot { .. } | SiteAction::Logpoint { .. }
                ));
        let cfa = if reads_frame {
            self.image
                .unwind(&regs, memory, 1)
                .first()
                .and_then(|f| f.cfa)
        } else {
            None
        };
        let ctx = FrameContext {
            image: &self.image,
            pc,
            regs: &regs,
            cfa,
            is_caller: false,
            memory,
            inline_depth: 0,
            types: &self.types,
        };
        if let Some(cond) = &self.condition {
            match eval::evaluate_condition(cond, &ctx) {
                Ok(true) => {}
                Ok(false) => {
                    probe.filtered.fetch_add(1, Ordering::Relaxed);
                    return HitVerdict::Keep;
                }
                Err(e) => {
                    let faults = probe.condition_faults.fetch_add(1, Ordering::Relaxed) + 1;
                    if faults >= MAX_CONDITION_FAULTS {
                        probe.finish(
                            ProbeState::Error,
                            Some(format!(
                                "the condition failed at {faults} hits (last: {e}); fix the condition and set the probe again"
                            )),
                        );
                        return HitVerdict::RemoveGroup;
                    }
                    return HitVerdict::Keep;
                }
            }
        }
        // Reserve a hit number first: concurrent hits on other sites must not
        // overshoot max_hits.
        let n = probe.hits.fetch_add(1, Ordering::Relaxed) + 1;
        if n > probe.max_hits {
            probe.hits.fetch_sub(1, Ordering::Relaxed);
            return HitVerdict::RemoveGroup;
        }
        let last = n >= probe.max_hits;
        let time = hit.time;
        let tid = hit.tid;
        let place = self.place;
        let site_number = self.site;
        match &*self.action {
            SiteAction::Snapshot { .. } | SiteAction::Logpoint { .. } => {
                let capture = Capture {
                    tid,
                    time,
                    pc,
                    cfa,
                    regs: regs.clone(),
                };
                let copied_by_ptrace = hit.held.is_some();
                let held = hit.held;
                let item = match hit.memory {
                    // A copy stays valid: render it when it is read. That
                    // is a client's request, with client requests' tables:
                    // a client reading results never holds the probe's.
                    HitMemory::Captured(copy) => {
                        let site = SiteRendering {
                            image: self.image.clone(),
                            action: self.action.clone(),
                            redaction: self.redaction.clone(),
                            types: TypeTables::shared().clone(),
                        };
                        let copy = copy.clone();
                        StoredBody::Pending(Box::new(move || {
                            let memory = HitMemorySource::new(HitMemory::Captured(&copy));
                            let mut item = site.render(&capture, &memory);
                            item.set_site(site_number);
                            item.set_held(held);
                            if let Some(addr) = memory.first_miss() {
                                // A failed read of a planned range is the
                                // target's; one outside the plan is ours.
                                item.set_capture_note(if copied_by_ptrace {
                                    format!(
                                        "some reads were not in the capture copied at the hit (first at {addr:#x}), so they show as read errors: the capture was planned for other data"
                                    )
                                } else {
                                    format!(
                                        "some reads were not in the kernel-side capture (first at {addr:#x}), so they show as read errors: the capture was planned for other data; set the probe with engine ptrace to read such values live"
                                    )
                                });
                            }
                            item
                        }))
                    }
                    // The thread waits for this render; then it goes on.
                    HitMemory::Held(thread) => {
                        let site = SiteRendering {
                            image: self.image.clone(),
                            action: self.action.clone(),
                            redaction: self.redaction.clone(),
                            types: self.types.clone(),
                        };
                        let mut item = site.render(&capture, memory);
                        item.set_site(site_number);
                        match thread.release() {
                            Ok(held) => item.set_held(Some(held)),
                            Err((why, held)) => {
                                // Reads after it was let go failed; none
                                // of this hit's values is sure then.
                                blank_values(&mut item, &self.action, not_captured(why));
                                item.set_held(Some(held));
                                item.set_capture_note(format!(
                                    "{why}: every value of this hit is unavailable, none is shown from a later moment"
                                ));
                            }
                        }
                        StoredBody::Ready(Box::new(item))
                    }
                    // Live memory changes once the thread goes on: render now.
                    HitMemory::Live(_) => {
                        let site = SiteRendering {
                            image: self.image.clone(),
                            action: self.action.clone(),
                            redaction: self.redaction.clone(),
                            types: self.types.clone(),
                        };
                        let mut item = site.render(&capture, memory);
                        item.set_site(site_number);
                        StoredBody::Ready(Box::new(item))
                    }
                };
                probe.count_at_site(place);
                probe.record(item, last);
            }
            SiteAction::Count => {
                probe.count_at_site(place);
                lock(&probe.summary).add_count();
                probe.announce();
            }
            SiteAction::Histogram(e) => match eval::evaluate_number(e, &ctx) {
                Ok(x) => {
                    probe.count_at_site(place);
                    lock(&probe.summary).add(x);
                    probe.announce();
                }
                Err(_) => {
                    probe.hits.fetch_sub(1, Ordering::Relaxed);
                    probe.condition_faults.fetch_add(1, Ordering::Relaxed);
                }
            },
            SiteAction::DurationStart => {
                // A start is not a completed observation; the site counts its entries.
                probe.hits.fetch_sub(1, Ordering::Relaxed);
                probe.count_at_site(place);
                let mut starts = lock(&probe.span_starts);
                let open = starts.entry(tid).or_default();
                if open.len() >= MAX_OPEN_SPANS {
                    // Deeper than we follow: the outermost span is given up.
                    open.remove(0);
                }
                open.push(hit.monotonic_ns);
            }
            SiteAction::DurationEnd => {
                let started = {
                    let mut starts = lock(&probe.span_starts);
                    let started = starts.get_mut(&tid).and_then(Vec::pop);
                    if starts.get(&tid).is_some_and(Vec::is_empty) {
                        starts.remove(&tid);
                    }
                    started
                };
                match started {
                    Some(t0) => {
                        let us = hit.monotonic_ns.saturating_sub(t0) as f64 / 1000.0;
                        lock(&probe.summary).add(us);
                        probe.announce();
                    }
                    None => {
                        probe.hits.fetch_sub(1, Ordering::Relaxed);
                    }
                }
            }
        }
        if last {
            // Snapshots and logpoints were marked done with their last item;
            // metrics are marked here.
            probe.finish(
                ProbeState::Done,
                Some(format!("reached max_hits ({})", probe.max_hits)),
            );
            return HitVerdict::RemoveGroup;
        }
        HitVerdict::Keep
    }
}

impl SiteHandler {
    /// A hit, on whichever thread handles it.
    fn handle(&self, hit: &HitContext<'_>) -> HitVerdict {
        let started = Instant::now();
        let verdict = self.hit_inner(hit);
        let spent = started.elapsed();
        // A ptrace hit that copied held the thread for the copy; a
        // kernel-side one only for the trap; the work on a copy happened
        // after the thread went on.
        let (spent, cost, what) = match (hit.memory, hit.held) {
            // Charged: the copy, the probe's own work in the hold (as a
            // handler's time was when it ran while the thread was held).
            (_, Some(held)) => (held, hit.copying.unwrap_or(held), "holding target threads"),
            (HitMemory::Live(_), None) => (spent, spent, "holding target threads"),
            // Held from the stop until the worker was done with it (it is
            // released here at the latest), queueing included.
            (HitMemory::Held(thread), None) => {
                let held = match thread.release() {
                    Ok(held) | Err((_, held)) => held,
                };
                (held, held, "holding target threads")
            }
            (HitMemory::Captured(_), None) => (
                spent,
                KERNEL_HIT_COST,
                "of target threads' time in uprobe hits",
            ),
        };
        if self.probe.charge(spent, cost, hit.monotonic_ns) && verdict == HitVerdict::Keep {
            self.probe.finish(
                ProbeState::Throttled,
                Some(format!(
                    "spent more than {} ms per second {what}; narrow it with a condition, or use a count metric",
                    self.probe.budget_per_second.as_millis()
                )),
            );
            return HitVerdict::RemoveGroup;
        }
        verdict
    }

    fn end(&self, why: &BreakpointEnd) {
        match why {
            BreakpointEnd::TargetExited { code, signal } => {
                let reason = match (code, signal) {
                    (Some(c), _) => format!("the process exited with code {c}"),
                    (None, Some(s)) => format!("the process was killed by {s}"),
                    _ => "the process exited".to_string(),
                };
                self.probe.finish(ProbeState::TargetExited, Some(reason));
            }
            BreakpointEnd::Execed => {
                self.probe.finish(
                    ProbeState::TargetExited,
                    Some("the process called exec: its code was replaced; attach again and set the probe again".into()),
                );
            }
            BreakpointEnd::Detached => {
                self.probe
                    .finish(ProbeState::Removed, Some("the process was detached".into()));
            }
            BreakpointEnd::Removed => {}
        }
    }
}

impl HitHandler for SiteHandler {
    fn on_hit(&mut self, hit: &HitContext<'_>) -> HitVerdict {
        self.handle(hit)
    }

    fn on_end(&mut self, why: &BreakpointEnd) {
        self.end(why);
    }

    fn on_lost(&mut self, count: u64) {
        self.lost(count);
    }
}

impl SiteHandler {
    /// Kernel-side hits lost (the ring was full): counted and charged.
    fn lost(&self, count: u64) {
        self.probe.lost.fetch_add(count, Ordering::Relaxed);
        // A lost hit cost the target its trap and program all the same.
        let cost = KERNEL_HIT_COST.saturating_mul(count.min(u32::MAX as u64) as u32);
        if self
            .probe
            .charge(Duration::ZERO, cost, crate::tracer::monotonic_ns())
        {
            self.probe.finish(
                ProbeState::Throttled,
                Some(format!(
                    "spent more than {} ms per second of target threads' time in uprobe hits ({} hits lost: liveprobe fell behind); narrow it with a condition, or use a count metric",
                    self.probe.budget_per_second.as_millis(),
                    self.probe.lost.load(Ordering::Relaxed)
                )),
            );
        }
    }
}

/// Most bytes of copies waiting for the hit worker; a hit beyond is lost
/// (counted), as a kernel-side hit is when its ring is full.
const MAX_QUEUED_COPY_BYTES: usize = 256 * 1024 * 1024;

type HitJob = Box<dyn FnOnce() + Send>;

/// The thread that handles ptrace hits' copies, in the order they happened.
struct HitWorker {
    jobs: std::sync::mpsc::Sender<HitJob>,
    queued: AtomicU64,
    done: AtomicU64,
    queued_bytes: std::sync::atomic::AtomicUsize,
    /// Woken after each job.
    progress: tokio::sync::Notify,
}

fn hit_worker() -> &'static HitWorker {
    static WORKER: std::sync::OnceLock<HitWorker> = std::sync::OnceLock::new();
    WORKER.get_or_init(|| {
        let (jobs, receiver) = std::sync::mpsc::channel::<HitJob>();
        let spawned = std::thread::Builder::new()
            .name("liveprobe-hits".into())
            .spawn(move || {
                while let Ok(job) = receiver.recv() {
                    // A panic is the job's own (it ends its probe); the
                    // worker goes on with the next hit.
                    let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(job));
                    let worker = hit_worker();
                    worker.done.fetch_add(1, Ordering::Release);
                    worker.progress.notify_waiters();
                }
            });
        if let Err(e) = spawned {
            // Jobs are then run where they are queued (see `queue`).
            tracing::error!("cannot start the hit worker thread: {e}");
        }
        HitWorker {
            jobs,
            queued: AtomicU64::new(0),
            done: AtomicU64::new(0),
            queued_bytes: std::sync::atomic::AtomicUsize::new(0),
            progress: tokio::sync::Notify::new(),
        }
    })
}

impl HitWorker {
    fn queue(&self, job: HitJob) {
        self.queued.fetch_add(1, Ordering::AcqRel);
        if let Err(std::sync::mpsc::SendError(job)) = self.jobs.send(job) {
            // No worker thread: handle it here rather than lose it.
            let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(job));
            self.done.fetch_add(1, Ordering::Release);
            self.progress.notify_waiters();
        }
    }
}

/// Waits until every ptrace hit queued before this call is handled. The
/// caller first makes a round trip through the tracer, so that every hit
/// whose thread was resumed before the request is queued.
pub async fn settle_copied_hits() {
    let worker = hit_worker();
    let target = worker.queued.load(Ordering::Acquire);
    loop {
        let progress = worker.progress.notified();
        tokio::pin!(progress);
        progress.as_mut().enable();
        if worker.done.load(Ordering::Acquire) >= target {
            return;
        }
        progress.await;
    }
}

/// The handler every site is armed with: on the tracer thread it only
/// queues the hit for the hit worker (`SiteHandler` does the rest there):
/// a ptrace copy, a kernel-side record, or a held thread (released by the
/// worker when it is done reading it). Ends and losses are queued too, so
/// they come after the hits before them. Nothing here waits on a lock.
pub struct QueuedSiteHandler {
    /// The site's handler, shared with queued hits.
    pub site: Arc<SiteHandler>,
}

impl HitHandler for QueuedSiteHandler {
    fn on_hit(&mut self, hit: &HitContext<'_>) -> HitVerdict {
        let HitMemory::Captured(copy) = hit.memory else {
            // Live memory cannot wait: only a handler of a plain breakpoint
            // called without `on_held_hit` (not the tracer's way) gets here.
            return self.site.handle(hit);
        };
        self.on_copied_hit(CopiedHitContext {
            pid: hit.pid,
            tid: hit.tid,
            address: hit.address,
            regs: *hit.regs,
            fs_base: hit.fs_base,
            memory: copy.clone(),
            monotonic_ns: hit.monotonic_ns,
            time: hit.time,
            held: hit.held,
            copying: hit.copying,
        })
    }

    fn on_copied_hit(&mut self, hit: CopiedHitContext) -> HitVerdict {
        let worker = hit_worker();
        let bytes = hit.memory.bytes();
        if worker.queued_bytes.load(Ordering::Relaxed) + bytes > MAX_QUEUED_COPY_BYTES {
            self.site.probe.lost.fetch_add(1, Ordering::Relaxed);
            return HitVerdict::Keep;
        }
        worker.queued_bytes.fetch_add(bytes, Ordering::Relaxed);
        let site = self.site.clone();
        worker.queue(Box::new(move || {
            hit_worker()
                .queued_bytes
                .fetch_sub(bytes, Ordering::Relaxed);
            site.handle_queued(&hit.context());
            // A probe that ended (done, throttled, failed) is taken out of
            // the target by its expiry task, which its end wakes.
        }));
        HitVerdict::Keep
    }

    fn on_held_hit(&mut self, hit: HeldHit) -> HitVerdict {
        let site = self.site.clone();
        hit_worker().queue(Box::new(move || {
            site.handle_queued(&hit.context());
            // Dropping the hit releases its thread, whatever happened.
            drop(hit);
        }));
        HitVerdict::Keep
    }

    fn on_end(&mut self, why: &BreakpointEnd) {
        let site = self.site.clone();
        let why = why.clone();
        hit_worker().queue(Box::new(move || site.end(&why)));
    }

    fn on_lost(&mut self, count: u64) {
        let site = self.site.clone();
        hit_worker().queue(Box::new(move || site.lost(count)));
    }
}

impl SiteHandler {
    /// A hit on the worker: a panic ends the probe, not the worker.
    fn handle_queued(&self, hit: &HitContext<'_>) {
        let handled = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| self.handle(hit)));
        if handled.is_err() {
            self.probe.finish(
                ProbeState::Error,
                Some("liveprobe failed handling a hit (a bug); set the probe again".into()),
            );
        }
    }
}

/// A template's text (`Some`) with every hole (`None`) showing `<why>`.
fn holes_filled_with<'a>(parts: impl Iterator<Item = Option<&'a str>>, why: &str) -> String {
    parts
        .map(|part| match part {
            Some(text) => text.to_string(),
            None => format!("<{why}>"),
        })
        .collect()
}

/// Every value of an item rendered from a held thread that was let go
/// before its reads ended: unavailable with `why` (names, types and frames
/// stay: they come from the registers and debug info, not from memory read
/// late). A logpoint's holes are filled with the reason.
fn blank_values(item: &mut ProbeItem, action: &SiteAction, why: Unavailable) {
    let blank = |value: &mut Value| {
        *value = Value::unavailable(
            std::mem::take(&mut value.name),
            std::mem::take(&mut value.type_name),
            why.clone(),
        );
    };
    match item {
        ProbeItem::Snapshot(snapshot) => {
            for frame in &mut snapshot.frames {
                frame.variables.iter_mut().for_each(blank);
            }
            snapshot.expressions.iter_mut().for_each(blank);
        }
        ProbeItem::Logpoint(logpoint) => {
            if let SiteAction::Logpoint { parts } = action {
                logpoint.text = holes_filled_with(
                    parts.iter().map(|part| match part {
                        TemplatePart::Text(text) => Some(text.as_str()),
                        TemplatePart::Expr(..) => None,
                    }),
                    &why.to_string(),
                );
            }
        }
        _ => {}
    }
}

/// Why the values of a hit whose held thread was let go are missing.
fn not_captured(why: crate::tracer::LetGo) -> Unavailable {
    use crate::value::NotCaptured;
    match why {
        crate::tracer::LetGo::TookTooLong => NotCaptured::HeldTooLong {
            deadline_ms: crate::tracer::HELD_HIT_DEADLINE.as_millis() as u64,
        },
        crate::tracer::LetGo::ThreadGone => NotCaptured::ThreadExited,
    }
    .into()
}

/// What a hit left to render an item from, besides memory.
struct Capture {
    tid: i32,
    time: SystemTime,
    pc: RuntimeAddr,
    cfa: Option<u64>,
    regs: Registers,
}

/// What rendering a site's snapshot or logpoint needs.
struct SiteRendering {
    image: Arc<ProcessImage>,
    action: Arc<SiteAction>,
    redaction: Redaction,
    /// The reader's type tables: the probe's own at the hit, client
    /// requests' for a copy rendered when first read.
    types: Arc<TypeTables>,
}

impl SiteRendering {
    /// The item of a snapshot or logpoint hit (without `seq`).
    fn render(&self, hit: &Capture, memory: &dyn MemorySource) -> ProbeItem {
        let cfa = hit.cfa.or_else(|| {
            self.image
                .unwind(&hit.regs, memory, 1)
                .first()
                .and_then(|f| f.cfa)
        });
        let ctx = FrameContext {
            image: &self.image,
            pc: hit.pc,
            regs: &hit.regs,
            cfa,
            is_caller: false,
            memory,
            inline_depth: 0,
            types: &self.types,
        };
        let time = rfc3339(hit.time);
        match &*self.action {
            SiteAction::Snapshot {
                frames,
                expressions,
                limits,
            } => {
                let captured_frames = capture_frames(
                    &self.image,
                    &hit.regs,
                    memory,
                    *frames,
                    limits,
                    &self.redaction,
                    &self.types,
                );
                let exprs: Vec<Value> = expressions
                    .iter()
                    .map(|(text, e)| {
                        let mut v = eval::evaluate(e, &ctx, limits, &self.redaction);
                        v.name = text.clone();
                        v
                    })
                    .collect();
                ProbeItem::Snapshot(SnapshotItem {
                    seq: 0,
                    time,
                    tid: hit.tid,
                    site: None,
                    frames: captured_frames,
                    expressions: exprs,
                    capture_note: None,
                    held_us: None,
                })
            }
            SiteAction::Logpoint { parts } => {
                let limits = logpoint_limits();
                let mut text = String::new();
                for part in parts {
                    match part {
                        TemplatePart::Text(t) => text.push_str(t),
                        TemplatePart::Expr(_, e) => {
                            let v = eval::evaluate(e, &ctx, &limits, &self.redaction);
                            match &v.unavailable {
                                Some(why) => {
                                    text.push('<');
                                    text.push_str(&why.to_string());
                                    text.push('>');
                                }
                                None => text.push_str(&v.value),
                            }
                        }
                    }
                }
                // The template's own text may quote a credential too.
                self.redaction.scrub_in_place(&mut text);
                ProbeItem::Logpoint(LogpointItem {
                    seq: 0,
                    time,
                    tid: hit.tid,
                    site: None,
                    text,
                    capture_note: None,
                    held_us: None,
                })
            }
            // Only snapshot and logpoint sites store rendered items (metrics
            // keep a summary); an empty snapshot claims nothing about the hit.
            _ => ProbeItem::Snapshot(SnapshotItem {
                seq: 0,
                time,
                tid: hit.tid,
                site: None,
                frames: Vec::new(),
                expressions: Vec::new(),
                capture_note: None,
                held_us: None,
            }),
        }
    }
}

/// The limits a logpoint renders its expressions with.
pub(super) fn logpoint_limits() -> Limits {
    Limits {
        depth: 1,
        max_string: 256,
        max_items: 16,
    }
}

/// Locals of the hit frame and its callers, as a snapshot shows them,
/// decoded with the reader's `types`.
pub(super) fn capture_frames(
    image: &ProcessImage,
    regs: &Registers,
    memory: &dyn MemorySource,
    frames: usize,
    limits: &Limits,
    redaction: &Redaction,
    types: &TypeTables,
) -> Vec<CapturedFrame> {
    let mut out = Vec::new();
    for frame in image.unwind_iter(regs, memory).take(frames.max(1)) {
        let symbols = image.symbolize(frame.pc, frame.is_caller);
        for (depth, sym) in symbols.iter().enumerate() {
            if out.len() >= frames {
                return out;
            }
            let ctx = FrameContext {
                image,
                pc: frame.pc,
                regs: &frame.regs,
                cfa: frame.cfa,
                is_caller: frame.is_caller,
                memory,
                inline_depth: depth,
                types,
            };
            let variables = eval::read_locals(&ctx, limits, redaction).unwrap_or_default();
            out.push(CapturedFrame {
                function: sym.function.clone(),
                file: sym.file.clone(),
                line: sym.line,
                variables,
            });
        }
    }
    out
}

/// Splits a logpoint message into text and `{expression}` holes. `{{` and
/// `}}` stand for literal braces.
pub fn parse_template(message: &str) -> Result<Vec<(bool, String)>, String> {
    let mut parts = Vec::new();
    let mut text = String::new();
    let mut chars = message.char_indices().peekable();
    while let Some((i, c)) = chars.next() {
        match c {
            '{' if chars.peek().map(|p| p.1) == Some('{') => {
                chars.next();
                text.push('{');
            }
            '}' if chars.peek().map(|p| p.1) == Some('}') => {
                chars.next();
                text.push('}');
            }
            '{' => {
                let mut depth = 1;
                let mut expr = String::new();
                for (_, c) in chars.by_ref() {
                    match c {
                        '{' => depth += 1,
                        '}' => {
                            depth -= 1;
                            if depth == 0 {
                                break;
                            }
                        }
                        _ => {}
                    }
                    expr.push(c);
                }
                if depth != 0 {
                    return Err(format!(
                        "the '{{' at column {} is never closed; write {{{{ for a literal brace",
                        i + 1
                    ));
                }
                if expr.trim().is_empty() {
                    return Err(format!("empty {{}} at column {}", i + 1));
                }
                if !text.is_empty() {
                    parts.push((false, std::mem::take(&mut text)));
                }
                parts.push((true, expr.trim().to_string()));
            }
            '}' => {
                return Err(format!(
                    "unmatched '}}' at column {}; write }}}} for a literal brace",
                    i + 1
                ));
            }
            c => text.push(c),
        }
    }
    if !text.is_empty() {
        parts.push((false, text));
    }
    Ok(parts)
}

#[cfg(test)]
mod tests {
    use super::{
        CapturedFrame, ProbeItem, SiteAction, SnapshotItem, Value, blank_values, holes_filled_with,
        parse_template,
    };

    #[test]
    fn a_hit_let_go_early_shows_no_value_only_the_reason() {
        let why =
            "capture took too long: the thread was let go after 1000 ms, before this was read";
        let mut field = Value::leaf("id", "long", "7");
        field.children = Some(vec![Value::leaf("x", "int", "1")]);
        let mut item = ProbeItem::Snapshot(SnapshotItem {
            seq: 0,
            time: String::new(),
            tid: 1,
            site: None,
            frames: vec![CapturedFrame {
                function: Some("process_order".into()),
                file: None,
                line: Some(49),
                variables: vec![field],
            }],
            expressions: vec![Value::leaf("o->id", "long", "1000003")],
            capture_note: None,
            held_us: None,
        });
        let reason = super::not_captured(crate::tracer::LetGo::TookTooLong);
        assert_eq!(reason.to_string(), why);
        blank_values(&mut item, &SiteAction::Count, reason.clone());
        let ProbeItem::Snapshot(snapshot) = &item else {
            panic!("still a snapshot");
        };
        let frame = &snapshot.frames[0];
        assert_eq!(frame.function.as_deref(), Some("process_order"));
        for value in frame.variables.iter().chain(&snapshot.expressions) {
            assert_eq!(value.unavailable, Some(reason.clone()));
            assert!(value.children.is_none());
            assert!(!value.value.contains('7') && !value.value.contains("1000003"));
        }
        assert_eq!(snapshot.expressions[0].name, "o->id");
        assert_eq!(snapshot.expressions[0].type_name, "long");

        assert_eq!(
            holes_filled_with([Some("order "), None, Some("!")].into_iter(), why),
            format!("order <{why}>!")
        );
    }

    #[test]
    fn templates_split_into_text_and_holes() {
        let parts = parse_template("order {o->id} total={total} {{literal}}").expect("parse");
        assert_eq!(
            parts,
            vec![
                (false, "order ".to_string()),
                (true, "o->id".to_string()),
                (false, " total=".to_string()),
                (true, "total".to_string()),
                (false, " {literal}".to_string()),
            ]
        );
        assert!(parse_template("a {b").unwrap_err().contains("column 3"));
        assert!(parse_template("a } b").unwrap_err().contains("column 3"));
        assert!(parse_template("{}").is_err());
    }
}
