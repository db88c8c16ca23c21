//! Setting, listing, reading and removing probes.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use schemars::JsonSchema;
use serde::Serialize;

use crate::debuginfo::types::TypeTables;
use crate::debuginfo::{ProcessImage, Registers, Resolution, RuntimeAddr, reg};
use crate::eval::{self, CompiledExpr, FrameContext};
use crate::value::Limits;

use super::capture_plan::{PlanLimits, plan_site, warm_site};
use super::items::ProbeItem;
use super::probes::{
    EngineChoice, MetricKind, Probe, ProbeEngine, ProbeKind, ProbeRow, ProbeState,
    QueuedSiteHandler, SiteAction, SiteHandler, TemplatePart, parse_template,
};
use crate::tracer::{CapturePlan, HitCopyPlan, SiteEngine};

/// One site's compiled condition and action.
type CompiledSite = (RuntimeAddr, Option<CompiledExpr>, SiteAction);
use super::report::ResolvedSiteRow;
use super::{Engine, EngineError, Target, format_addr};

/// Most probes armed at once, over all targets: each costs the target a
/// breakpoint and the server a store.
pub const MAX_PROBES: usize = 64;
/// Largest `max_hits` accepted.
pub const MAX_HITS_CEILING: u64 = 10_000_000;
/// Longest `ttl_s` accepted (a day).
pub const MAX_TTL_S: u64 = 86_400;
/// Longest a `get_probe_results` call waits: below the usual client request
/// timeout (60 s), so a wait never outlasts the request.
pub const MAX_WAIT_MS: u64 = 30_000;
/// Lines searched either side for `source_contains`.
const SOURCE_SEARCH_LINES: u32 = 10;

/// What to set.
pub struct ProbeRequest {
    /// Target.
    pub pid: i32,
    /// Where.
    pub location: String,
    /// Text expected on the line.
    pub source_contains: Option<String>,
    /// Only hits where this holds.
    pub condition: Option<String>,
    /// Hits before the probe is done.
    pub max_hits: u64,
    /// Seconds before it expires.
    pub ttl_s: u64,
    /// Resolve and check only.
    pub dry_run: bool,
    /// How hits should reach the probe; `None`: the server's default.
    pub engine: Option<EngineChoice>,
    /// Only the sites in functions named like this (full name, or part of it).
    pub function: Option<String>,
    /// Only these site numbers (from `resolve_location` or a dry run).
    pub sites: Option<Vec<usize>>,
    /// Over HTTP: outlive the session that set it (see `ownership`).
    pub keep: bool,
    /// Kind-specific part.
    pub what: ProbeWhat,
}

/// The kind-specific part of a probe request.
pub enum ProbeWhat {
    /// `set_snapshot`.
    Snapshot {
        /// Frames to capture.
        frames: usize,
        /// Expressions to evaluate.
        expressions: Vec<String>,
        /// Load limits.
        limits: Limits,
    },
    /// `set_logpoint`.
    Logpoint {
        /// Template.
        message: String,
    },
    /// `set_metric`.
    Metric {
        /// Kind.
        kind: MetricKind,
        /// Expression for a histogram.
        expression: Option<String>,
        /// End of a duration.
        end_location: Option<String>,
    },
}

/// A variable in scope at a probe site (for `dry_run`).
#[derive(Debug, Clone, Serialize, JsonSchema)]
pub struct ScopeVariable {
    /// Name.
    pub name: String,
    /// Type.
    #[serde(rename = "type")]
    pub type_name: String,
}

/// Answer of the `set_*` tools.
#[derive(Debug, Clone, Serialize, JsonSchema)]
pub struct ProbeCreated {
    /// Id to read results with (absent for a dry run).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub probe_id: Option<u64>,
    /// Every address the probe covers.
    pub resolved: Vec<ResolvedSiteRow>,
    /// Where the probe's end is, for a duration metric.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub end_resolved: Vec<ResolvedSiteRow>,
    /// How the location was adjusted, if at all.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
    /// True when nothing was armed.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub dry_run: bool,
    /// For a dry run: the variables in scope at the first site.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub variables: Option<Vec<ScopeVariable>>,
    /// `max_hits` in force.
    pub max_hits: u64,
    /// `ttl_s` in force.
    pub ttl_s: u64,
    /// How hits reach the probe (for a dry run: would reach it): `uprobe`
    /// (captured in the kernel, the thread is not stopped) or `ptrace` (the
    /// hitting thread is held while liveprobe reads).
    pub engine: ProbeEngine,
    /// Why `ptrace` is used although `uprobe` was preferred.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub engine_note: Option<String>,
}

/// Answer of `list_probes`.
#[derive(Debug, Clone, Serialize, JsonSchema)]
pub struct ProbeList {
    /// Probes, oldest first.
    pub probes: Vec<ProbeRow>,
}

/// Answer of `get_probe_results`.
#[derive(Debug, Clone, Serialize, JsonSchema)]
pub struct ProbeResults {
    /// Probe id.
    pub probe_id: u64,
    /// State.
    pub state: ProbeState,
    /// Why it is not armed, when it is not.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// Hits recorded.
    pub hits: u64,
    /// Results, oldest first, each with its `seq`: snapshot hits, logpoint
    /// lines, a metric's summary or watch events, by the probe's kind.
    pub items: Vec<ProbeItem>,
    /// Pass as `after` to get the next results.
    pub next_after: u64,
    /// Results pushed out of the bounded store before they were read.
    pub dropped: u64,
    /// Hits (watch writes) never recorded because liveprobe fell behind:
    /// the kernel's ring was full. As in `list_probes`.
    #[serde(skip_serializing_if = "super::probes::is_zero")]
    pub lost: u64,
    /// True when `wait_ms` was capped to the longest wait allowed.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub wait_capped: bool,
    /// For a sampled watch: count, min, max, first, last and changes of
    /// every sample so far (also of samples `on_change` did not keep).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub summary: Option<super::WatchSummary>,
}

/// Answer of `remove_probe`.
#[derive(Debug, Clone, Serialize, JsonSchema)]
pub struct ProbeRemoved {
    /// Probe id.
    pub probe_id: u64,
    /// Hits recorded before removal.
    pub hits: u64,
    /// State before removal.
    pub state: ProbeState,
}

/// A frame context for compiling at a site: the scope is known from the pc,
/// no registers or memory are needed. `types` are the probe's own.
fn static_context<'a>(
    image: &'a ProcessImage,
    pc: RuntimeAddr,
    regs: &'a Registers,
    memory: &'a dyn crate::debuginfo::MemorySource,
    types: &'a TypeTables,
) -> FrameContext<'a> {
    FrameContext {
        image,
        pc,
        regs,
        cfa: None,
        is_caller: false,
        memory,
        inline_depth: 0,
        types,
    }
}

/// Builds now what a probe's hits would otherwise build on their first
/// use, with a thread held: the index of the executable's globals, which
/// names the pointers a hit renders (`frame::symbolize`).
pub(super) fn warm_for_hits(image: &ProcessImage) {
    if let Some(main) = image.main_module() {
        crate::debuginfo::scope::GlobalIndex::of(main);
    }
}

/// Memory that has nothing: compile time must not read the target.
struct NoMemory;

impl crate::debuginfo::MemorySource for NoMemory {
    fn read_memory(&self, addr: u64, _buf: &mut [u8]) -> Result<(), crate::debuginfo::MemoryError> {
        Err(crate::debuginfo::MemoryError { addr })
    }
}

/// Compiles `text` at `pc` with the probe's type tables (which the compile
/// warms for its hits).
fn compile_at(
    image: &ProcessImage,
    pc: RuntimeAddr,
    text: &str,
    what: &str,
    types: &TypeTables,
) -> Result<CompiledExpr, EngineError> {
    let mut regs = Registers::default();
    regs.set(reg::RIP, Some(pc.0));
    let ctx = static_context(image, pc, &regs, &NoMemory, types);
    eval::compile(text, &ctx).map_err(|e| {
        // A misspelt name: the program's own close names first, as
        // `evaluate` suggests them.
        let e = super::inspect::program_names_first(image, e);
        EngineError::BadArgument(format!(
            "{what} `{text}` does not compile at {}: {e}",
            format_addr(pc)
        ))
    })
}

impl Engine {
    fn resolve_with_source_check(
        &self,
        target: &Target,
        location: &str,
        source_contains: Option<&str>,
    ) -> Result<Resolution, EngineError> {
        let mut resolution = super::resolve_in(&target.image(), location.trim())?;
        let Some(expected) = source_contains.map(str::trim).filter(|s| !s.is_empty()) else {
            return Ok(resolution);
        };
        let Some((file, line)) = resolution
            .sites
            .first()
            .and_then(|s| Some((s.file.clone()?, s.line?)))
        else {
            return Err(EngineError::BadArgument(format!(
                "source_contains needs a location with source lines, and {location} has none"
            )));
        };
        let text = std::fs::read_to_string(&file).map_err(|e| {
            EngineError::BadArgument(format!(
                "cannot check source_contains: {file} is not readable here ({e}); drop source_contains or copy the sources"
            ))
        })?;
        let lines: Vec<&str> = text.lines().collect();
        let has = |n: u32| {
            n >= 1
                && lines
                    .get(n as usize - 1)
                    .is_some_and(|l| l.contains(expected))
        };
        if has(line) {
            return Ok(resolution);
        }
        let found = (1..=SOURCE_SEARCH_LINES)
            .flat_map(|d| [line.saturating_add(d), line.saturating_sub(d)])
            .find(|&n| has(n));
        let Some(n) = found else {
            return Err(EngineError::BadArgument(format!(
                "line {line} of {file} does not contain {expected:?}, nor does any line within ±{SOURCE_SEARCH_LINES}; \
                 check the line with list_source"
            )));
        };
        let moved = format!("{file}:{n}");
        let note = format!("line {line} does not contain {expected:?}; using line {n}, which does");
        resolution = super::resolve_in(&target.image(), &moved)?;
        resolution.note = Some(match resolution.note.take() {
            Some(other) => format!("{note}; {other}"),
            None => note,
        });
        Ok(resolution)
    }

    /// Compiles the condition and the action of every site of a request,
    /// with the probe's type tables.
    fn compile_sites(
        &self,
        image: &ProcessImage,
        sites: &[crate::debuginfo::ResolvedSite],
        req: &ProbeRequest,
        types: &TypeTables,
    ) -> Result<Vec<CompiledSite>, EngineError> {
        let mut site_plans: Vec<CompiledSite> = Vec::new();
        for site in sites {
            let condition = req
                .condition
                .as_deref()
                .filter(|c| !c.trim().is_empty())
                .map(|c| compile_at(image, site.address, c, "condition", types))
                .transpose()?;
            if let Some(secret) = condition
                .as_ref()
                .and_then(|c| c.secret_name(&self.redaction))
            {
                return Err(EngineError::BadArgument(format!(
                    "the condition reads `{secret}`, which is redacted (a secret-looking name or a \
                     --redact-type type): a condition on it would leak its value one hit at a time, so it \
                     is refused; filter on something else"
                )));
            }
            let action = match &req.what {
                ProbeWhat::Snapshot {
                    frames,
                    expressions,
                    limits,
                } => SiteAction::Snapshot {
                    frames: *frames,
                    expressions: expressions
                        .iter()
                        .map(|e| {
                            Ok((
                                e.clone(),
                                compile_at(image, site.address, e, "expression", types)?,
                            ))
                        })
                        .collect::<Result<_, EngineError>>()?,
                    limits: limits.clamped(),
                },
                ProbeWhat::Logpoint { message } => {
                    let parts = parse_template(message)
                        .map_err(|e| EngineError::BadArgument(format!("message template: {e}")))?;
                    SiteAction::Logpoint {
                        parts: parts
                            .into_iter()
                            .map(|(is_expr, text)| {
                                if is_expr {
                                    let c = compile_at(
                                        image,
                                        site.address,
                                        &text,
                                        "template expression",
                                        types,
                                    )?;
                                    Ok(TemplatePart::Expr(text, Box::new(c)))
                                } else {
                                    Ok(TemplatePart::Text(text))
                                }
                            })
                            .collect::<Result<_, EngineError>>()?,
                    }
                }
                ProbeWhat::Metric {
                    kind, expression, ..
                } => match kind {
                    MetricKind::Count => SiteAction::Count,
                    MetricKind::Histogram => {
                        let e = expression.as_deref().ok_or_else(|| {
                            EngineError::BadArgument(
                                "a histogram metric needs `expression`: the number to summarize"
                                    .into(),
                            )
                        })?;
                        SiteAction::Histogram(Box::new(compile_at(
                            image,
                            site.address,
                            e,
                            "expression",
                            types,
                        )?))
                    }
                    MetricKind::Duration => SiteAction::DurationStart,
                },
            };
            site_plans.push((site.address, condition, action));
        }
        Ok(site_plans)
    }

    /// Sets a probe (or, with `dry_run`, only resolves and checks it).
    pub async fn set_probe(&self, req: ProbeRequest) -> Result<ProbeCreated, EngineError> {
        let target = self.target(req.pid)?;
        self.remove_unloaded_sites(req.pid).await;
        if req.max_hits == 0 || req.max_hits > MAX_HITS_CEILING {
            return Err(EngineError::BadArgument(format!(
                "max_hits must be between 1 and {MAX_HITS_CEILING}, got {}",
                req.max_hits
            )));
        }
        if req.ttl_s == 0 || req.ttl_s > MAX_TTL_S {
            return Err(EngineError::BadArgument(format!(
                "ttl_s must be between 1 and {MAX_TTL_S} seconds, got {}",
                req.ttl_s
            )));
        }
        let resolution =
            self.resolve_with_source_check(&target, &req.location, req.source_contains.as_deref())?;
        let (resolved, note) = select_sites(
            &req.location,
            resolution,
            req.function.as_deref(),
            req.sites.as_deref(),
        )?;
        let numbers: Vec<usize> = resolved.iter().map(|r| r.site).collect();
        let resolution = Resolution {
            sites: resolved.into_iter().map(|r| r.resolved).collect(),
            note,
        };
        if resolution.sites.is_empty() {
            return Err(EngineError::BadArgument(format!(
                "{} resolves to no code address",
                req.location
            )));
        }
        let image = target.image();
        let (kind, capacity) = match &req.what {
            ProbeWhat::Snapshot { .. } => (ProbeKind::Snapshot, 100),
            ProbeWhat::Logpoint { .. } => (ProbeKind::Logpoint, 1000),
            ProbeWhat::Metric { .. } => (ProbeKind::Metric, 1),
        };
        // The probe's own type tables, locked by its hits and nothing a
        // client asks (a dry run is a client request: it uses theirs).
        // Compiling and planning below warm them for the first hit.
        let types = if req.dry_run {
            TypeTables::shared().clone()
        } else {
            Arc::new(TypeTables::new())
        };
        // Compile everything for every site now: a condition that does not
        // type-check is refused here, not at the first hit.
        let site_plans = numbered(
            self.compile_sites(&image, &resolution.sites, &req, &types)
                .map_err(|e| super::function_search::explain_overloads(&image, &req.location, e))?,
            &numbers,
        );
        // A duration's end sites.
        let mut end_sites = Vec::new();
        if let ProbeWhat::Metric {
            kind: MetricKind::Duration,
            end_location,
            ..
        } = &req.what
        {
            match end_location
                .as_deref()
                .map(str::trim)
                .filter(|e| !e.is_empty())
            {
                Some(end) => {
                    let end_res = super::resolve_in(&target.image(), end)?;
                    end_sites.extend(end_res.sites.iter().cloned());
                }
                None => end_sites = function_return_sites(&image, &resolution.sites)?,
            }
        }
        let resolved: Vec<ResolvedSiteRow> = resolution
            .sites
            .iter()
            .zip(&numbers)
            .map(|(s, &n)| site_row(n, s))
            .collect();
        let end_resolved: Vec<ResolvedSiteRow> = end_sites
            .iter()
            .enumerate()
            .map(|(n, s)| site_row(n, s))
            .collect();
        let ttl_s = req.ttl_s;
        let choice = req.engine.unwrap_or(self.policy.probe_engine);
        // The kernel-side capture of every site (and of the end sites of a
        // duration, which read nothing), or why there cannot be one.
        let kernel_plans: Result<Vec<CapturePlan>, String> = match choice {
            EngineChoice::Ptrace => Err("engine ptrace was asked for".into()),
            _ => site_plans
                .iter()
                .map(|(_, (addr, condition, action))| {
                    plan_site(
                        &image,
                        *addr,
                        condition.as_ref(),
                        action,
                        &self.redaction,
                        PlanLimits::BPF,
                        &types,
                    )
                    .map_err(|why| format!("at {}: {why}", format_addr(*addr)))
                })
                .collect(),
        };
        if choice == EngineChoice::Uprobe
            && let Err(why) = &kernel_plans
        {
            return Err(EngineError::BadArgument(format!(
                "engine uprobe cannot capture this probe ({why}); use engine auto or ptrace"
            )));
        }
        if req.dry_run {
            // The tracer's own refusals too (another process's int3 or
            // uprobe at the same place of the file, an instruction that
            // cannot take one...): a dry run says what a set would do.
            let addresses: Vec<RuntimeAddr> = site_plans
                .iter()
                .map(|(_, (addr, _, _))| *addr)
                .chain(end_sites.iter().map(|s| s.address))
                .collect();
            let (engine, engine_note) = match &kernel_plans {
                Ok(_) => match self
                    .check_sites(req.pid, &addresses, SiteEngine::Kernel)
                    .await
                {
                    Ok(()) => (ProbeEngine::Uprobe, None),
                    Err(why) if choice == EngineChoice::Auto => (ProbeEngine::Ptrace, Some(why)),
                    Err(why) => {
                        return Err(EngineError::BadArgument(format!(
                            "engine uprobe is not possible here: {why}; use engine auto or ptrace"
                        )));
                    }
                },
                Err(why) if choice == EngineChoice::Auto => {
                    (ProbeEngine::Ptrace, Some(why.clone()))
                }
                Err(_) => (ProbeEngine::Ptrace, None),
            };
            if engine == ProbeEngine::Ptrace {
                for &address in &addresses {
                    self.tracer
                        .check_site(req.pid, address, SiteEngine::Ptrace)
                        .await
                        .map_err(EngineError::Trace)?;
                }
            }
            let variables = scope_variables(&image, resolution.sites[0].address);
            return Ok(ProbeCreated {
                probe_id: None,
                resolved,
                end_resolved,
                note: resolution.note,
                dry_run: true,
                variables: Some(variables),
                max_hits: req.max_hits,
                ttl_s,
                engine,
                engine_note,
            });
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
        warm_for_hits(&image);
        let id = self.next_probe_id.fetch_add(1, Ordering::Relaxed);
        let probe = Arc::new(Probe::new(
            id,
            req.pid,
            kind,
            req.location.clone(),
            resolved.clone(),
            resolution.note.clone(),
            req.max_hits,
            Duration::from_secs(ttl_s),
            capacity,
            self.policy.hit_budget(),
            self.probe_updates.clone(),
        ));
        self.probes().insert(id, probe.clone());
        self.owners.record(id, req.keep);
        let mut engine_note = None;
        let mut engine = ProbeEngine::Ptrace;
        let ptrace_sites = match kernel_plans {
            Ok(plans) => match self
                .arm_kernel_sites(&probe, &image, &types, site_plans, &end_sites, plans)
                .await
            {
                Ok(()) => {
                    engine = ProbeEngine::Uprobe;
                    None
                }
                Err(why) if choice == EngineChoice::Auto => {
                    engine_note = Some(why);
                    // The handlers went to the kernel path: compile again.
                    match self.compile_sites(&image, &resolution.sites, &req, &types) {
                        Ok(sites) => Some(numbered(sites, &numbers)),
                        Err(e) => {
                            self.probes().remove(&id);
                            self.release_probe_id(id);
                            return Err(e);
                        }
                    }
                }
                Err(why) => {
                    probe.finish(ProbeState::Error, Some(why.clone()));
                    self.probes().remove(&id);
                    self.release_probe_id(id);
                    return Err(EngineError::BadArgument(format!(
                        "engine uprobe is not possible here: {why}; use engine auto or ptrace"
                    )));
                }
            },
            Err(why) => {
                if choice == EngineChoice::Auto {
                    engine_note = Some(why);
                }
                Some(site_plans)
            }
        };
        if let Some(sites) = ptrace_sites
            && let Err(e) = self
                .arm_ptrace_sites(&probe, &image, &types, sites, &end_sites)
                .await
        {
            self.release_probe_id(id);
            return Err(e);
        }
        probe.set_engine(engine, engine_note.clone());
        self.spawn_expiry(probe.clone());
        tracing::info!(probe = id, pid = req.pid, location = %req.location, "probe armed");
        Ok(ProbeCreated {
            probe_id: Some(id),
            resolved,
            end_resolved,
            note: resolution.note,
            dry_run: false,
            variables: None,
            max_hits: req.max_hits,
            ttl_s,
            engine,
            engine_note,
        })
    }

    /// Gives back the id of a probe that failed to arm, so a failed `set_*`
    /// does not use up an id: only when no later probe took the next one
    /// meanwhile (ids are never reused out of order).
    fn release_probe_id(&self, id: u64) {
        let _ =
            self.next_probe_id
                .compare_exchange(id + 1, id, Ordering::Relaxed, Ordering::Relaxed);
    }

    /// Arms every site of `probe` as a ptrace breakpoint.
    async fn arm_ptrace_sites(
        &self,
        probe: &Arc<Probe>,
        image: &Arc<ProcessImage>,
        types: &Arc<TypeTables>,
        sites: Vec<NumberedSite>,
        end_sites: &[crate::debuginfo::ResolvedSite],
    ) -> Result<(), EngineError> {
        // What each hit copies while its thread is held, decided now. A
        // capture that cannot be planned keeps its thread stopped while the
        // hit worker reads it live (late reads of a running thread would
        // show containers its frame frees a moment later).
        let plans: Vec<Option<HitCopyPlan>> = sites
            .iter()
            .map(|(_, (addr, condition, action))| {
                let planned = plan_site(
                    image,
                    *addr,
                    condition.as_ref(),
                    action,
                    &self.redaction,
                    PlanLimits::PTRACE,
                    types,
                );
                match planned {
                    Ok(capture) => Some(HitCopyPlan {
                        capture,
                        stack_window: 0,
                        tls_window: 0,
                    }),
                    Err(_) => {
                        // Its hits are read with the thread held: decode
                        // now what they would decode first.
                        let condition = condition.as_ref();
                        warm_site(image, *addr, condition, action, &self.redaction, types);
                        None
                    }
                }
            })
            .collect();
        let handlers = self.site_handlers(probe, image, types, sites, end_sites);
        // End sites of a duration read nothing.
        let plans = plans
            .into_iter()
            .chain(std::iter::repeat_with(|| Some(HitCopyPlan::default())));
        for ((addr, handler), plan) in handlers.into_iter().zip(plans) {
            let handler = QueuedSiteHandler {
                site: Arc::new(handler),
            };
            let armed = match plan {
                Some(plan) => {
                    self.tracer
                        .insert_copying_breakpoint(
                            probe.pid,
                            addr,
                            probe.id,
                            Box::new(handler),
                            plan,
                        )
                        .await
                }
                None => {
                    self.tracer
                        .insert_breakpoint(probe.pid, addr, probe.id, Box::new(handler))
                        .await
                }
            };
            if let Err(e) = armed {
                let _ = self.tracer.remove_group(probe.pid, probe.id).await;
                probe.finish(ProbeState::Error, Some(e.to_string()));
                self.probes().remove(&probe.id);
                return Err(EngineError::Trace(e));
            }
        }
        Ok(())
    }

    /// Arms every site of `probe` as a kernel-side site with its plan; on
    /// failure nothing stays armed and the reason is returned.
    async fn arm_kernel_sites(
        &self,
        probe: &Arc<Probe>,
        image: &Arc<ProcessImage>,
        types: &Arc<TypeTables>,
        sites: Vec<NumberedSite>,
        end_sites: &[crate::debuginfo::ResolvedSite],
        plans: Vec<CapturePlan>,
    ) -> Result<(), String> {
        let handlers = self.site_handlers(probe, image, types, sites, end_sites);
        // End sites of a duration read nothing.
        let plans = plans
            .into_iter()
            .chain(std::iter::repeat(CapturePlan::default()));
        for ((addr, handler), plan) in handlers.into_iter().zip(plans) {
            // Records are queued for the hit worker as the tracer drains them.
            let handler = QueuedSiteHandler {
                site: Arc::new(handler),
            };
            if let Err((e, _handler)) = self
                .tracer
                .insert_kernel_breakpoint(probe.pid, addr, probe.id, Box::new(handler), plan)
                .await
            {
                let _ = self.tracer.remove_group(probe.pid, probe.id).await;
                return Err(refusal_reason(e));
            }
        }
        Ok(())
    }

    /// Why a site of `engine` at one of `addresses` would be refused (the
    /// first refusal), as arming would say it.
    async fn check_sites(
        &self,
        pid: i32,
        addresses: &[RuntimeAddr],
        engine: SiteEngine,
    ) -> Result<(), String> {
        for &address in addresses {
            self.tracer
                .check_site(pid, address, engine)
                .await
                .map_err(refusal_reason)?;
        }
        Ok(())
    }

    /// The handlers of a probe's sites (and of a duration's end sites).
    fn site_handlers(
        &self,
        probe: &Arc<Probe>,
        image: &Arc<ProcessImage>,
        types: &Arc<TypeTables>,
        sites: Vec<NumberedSite>,
        end_sites: &[crate::debuginfo::ResolvedSite],
    ) -> Vec<(RuntimeAddr, SiteHandler)> {
        let handler = |site, place, condition, action| SiteHandler {
            probe: probe.clone(),
            image: image.clone(),
            types: types.clone(),
            condition,
            action: Arc::new(action),
            redaction: self.redaction.clone(),
            site,
            place,
        };
        // Sites come in the order of the probe's `resolved`.
        let mut handlers: Vec<(RuntimeAddr, SiteHandler)> = sites
            .into_iter()
            .enumerate()
            .map(|(place, (n, (addr, condition, action)))| {
                (addr, handler(Some(n), Some(place), condition, action))
            })
            .collect();
        for s in end_sites {
            handlers.push((
                s.address,
                handler(None, None, None, SiteAction::DurationEnd),
            ));
        }
        handlers
    }

    fn spawn_expiry(&self, probe: Arc<Probe>) {
        let tracer = self.tracer.clone();
        tokio::spawn(async move {
            let deadline = tokio::time::Instant::from_std(probe.expires_at);
            loop {
                let ended = probe.ended.notified();
                tokio::pin!(ended);
                ended.as_mut().enable();
                if probe.state() != ProbeState::Armed {
                    // Done, throttled or failed at a hit: that hit removed
                    // its group already; make sure, in case of a race.
                    let _ = tracer.remove_group(probe.pid, probe.id).await;
                    return;
                }
                tokio::select! {
                    _ = tokio::time::sleep_until(deadline) => {
                        if probe.finish(ProbeState::Expired, Some("ttl_s passed".into())) {
                            let _ = tracer.remove_group(probe.pid, probe.id).await;
                        }
                        return;
                    }
                    _ = &mut ended => {}
                }
            }
        });
    }

    /// Hands the hits recorded so far to their probes: answers must include
    /// hits that already happened. Kernel-side hits wait in the ring; a
    /// ptrace hit is queued for the hit worker by the tracer thread right
    /// after its thread is resumed, so a round trip through the tracer
    /// queues every hit before the request, then the worker catches up.
    async fn settle_kernel_hits(&self) {
        let any = !self.probes().is_empty();
        if any {
            let _ = self.tracer.flush_kernel_hits().await;
            super::probes::settle_copied_hits().await;
        }
    }

    /// Probes of one target or of all.
    pub async fn list_probes(&self, pid: Option<i32>) -> ProbeList {
        self.settle_kernel_hits().await;
        let pids: std::collections::BTreeSet<i32> = self
            .probes()
            .values()
            .filter(|p| pid.is_none_or(|pid| p.pid == pid))
            .map(|p| p.pid)
            .collect();
        // A probe in a library unloaded since the last request ends now.
        for pid in pids {
            self.refresh_modules(pid);
        }
        let mut probes: Vec<ProbeRow> = self
            .probes()
            .values()
            .filter(|p| pid.is_none_or(|pid| p.pid == pid) && self.owners.visible(p.id))
            .map(|p| p.row())
            .collect();
        probes.sort_by_key(|p| p.probe_id);
        ProbeList { probes }
    }

    fn probe(&self, probe_id: u64) -> Result<Arc<Probe>, EngineError> {
        let probes = self.probes();
        if let Some(p) = probes.get(&probe_id)
            && self.owners.visible(probe_id)
        {
            return Ok(p.clone());
        }
        // Another session's probe is answered like one that does not exist.
        let mut known: Vec<u64> = probes
            .keys()
            .copied()
            .filter(|id| self.owners.visible(*id))
            .collect();
        drop(probes);
        known.sort_unstable();
        let known: Vec<String> = known.iter().map(u64::to_string).collect();
        Err(EngineError::BadArgument(if known.is_empty() {
            format!(
                "no probe {probe_id}: there are no probes; set one with set_snapshot, set_logpoint or set_metric"
            )
        } else {
            format!(
                "no probe {probe_id}; known probes: {} (list_probes shows them)",
                known.join(", ")
            )
        }))
    }

    /// Results of a probe after `after`, waiting up to `wait_ms` for a new one.
    pub async fn probe_results(
        &self,
        probe_id: u64,
        after: u64,
        limit: usize,
        wait_ms: u64,
    ) -> Result<ProbeResults, EngineError> {
        let probe = self.probe(probe_id)?;
        let _ = self.tracer.flush_kernel_hits().await;
        super::probes::settle_copied_hits().await;
        self.refresh_modules(probe.pid);
        let wait_capped = wait_ms > MAX_WAIT_MS;
        let wait = Duration::from_millis(wait_ms.min(MAX_WAIT_MS));
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            let notified = probe.changed.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            let status = probe.status();
            if probe.last_seq() > after || status.state != ProbeState::Armed || wait.is_zero() {
                break;
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                break;
            }
        }
        let status = probe.status();
        if status.state != ProbeState::Armed {
            // The hit that ended the probe wakes readers from inside its
            // handler, before the tracer takes the sites out: a round trip
            // through the tracer (which removes a group at most once) makes
            // an answer that says the probe ended also mean its breakpoints
            // have left the target.
            let _ = self.tracer.remove_group(probe.pid, probe.id).await;
        }
        let (items, last, dropped) = probe.items_after(after, limit.max(1));
        let next_after = items
            .last()
            .map(ProbeItem::seq)
            .unwrap_or(last.min(after).max(after));
        Ok(ProbeResults {
            probe_id,
            state: status.state,
            reason: status.reason,
            hits: probe.hits.load(Ordering::Relaxed),
            items,
            next_after,
            dropped,
            lost: probe.lost.load(Ordering::Relaxed),
            wait_capped,
            summary: self.watch_summary(probe_id),
        })
    }

    /// Removes a probe: its breakpoints leave the target at once.
    pub async fn remove_probe(&self, probe_id: u64) -> Result<ProbeRemoved, EngineError> {
        let probe = self.probe(probe_id)?;
        let _ = self.tracer.flush_kernel_hits().await;
        super::probes::settle_copied_hits().await;
        let before = probe.state();
        probe.finish(ProbeState::Removed, Some("removed by remove_probe".into()));
        let removed = self.tracer.remove_group(probe.pid, probe.id).await;
        self.probes().remove(&probe_id);
        self.owners.forget(probe_id);
        self.watches.remove(probe_id);
        if let Err(e) = removed
            && before == ProbeState::Armed
        {
            tracing::warn!(probe = probe_id, "removing breakpoints: {e}");
        }
        Ok(ProbeRemoved {
            probe_id,
            hits: probe.hits.load(Ordering::Relaxed),
            state: before,
        })
    }

    /// Removes the probes HTTP session `session` set without `keep`: the
    /// session ended (closed, timed out or lost). Returns how many.
    pub async fn end_session(&self, session: u64) -> usize {
        let mut removed = 0;
        for id in self.owners.of_session(session) {
            // Outside any caller scope: every probe is visible here.
            match self.remove_probe(id).await {
                Ok(_) => removed += 1,
                Err(_) => self.owners.forget(id),
            }
        }
        removed
    }
}

/// A compiled site with its site number.
type NumberedSite = (usize, CompiledSite);

fn numbered(sites: Vec<CompiledSite>, numbers: &[usize]) -> Vec<NumberedSite> {
    numbers.iter().copied().zip(sites).collect()
}

/// A site kept by [`select_sites`], with its number in the full list.
pub(crate) struct SelectedSite {
    pub(crate) site: usize,
    pub(crate) resolved: crate::debuginfo::ResolvedSite,
}

/// Keeps the sites a client chose: those whose function (or the function an inlined copy sits in) is named
/// `function` (exactly, else containing it), and those numbered in `sites`. Each keeps its number in the full
/// list. An empty choice is an error that lists what there is.
pub(crate) fn select_sites(
    location: &str,
    resolution: Resolution,
    function: Option<&str>,
    sites: Option<&[usize]>,
) -> Result<(Vec<SelectedSite>, Option<String>), EngineError> {
    let all = resolution.sites.len();
    let mut kept: Vec<SelectedSite> = resolution
        .sites
        .into_iter()
        .enumerate()
        .map(|(site, resolved)| SelectedSite { site, resolved })
        .collect();
    let listing = |kept: &[SelectedSite]| {
        kept.iter()
            .map(|s| {
                format!(
                    "{}: {} in {}",
                    s.site,
                    format_addr(s.resolved.address),
                    s.resolved.function.as_deref().unwrap_or("?")
                )
            })
            .collect::<Vec<_>>()
            .join("; ")
    };
    if let Some(numbers) = sites.filter(|n| !n.is_empty()) {
        if let Some(bad) = numbers.iter().find(|&&n| n >= all) {
            return Err(EngineError::BadArgument(format!(
                "{location} has {all} site(s), numbered 0 to {}; there is no site {bad} ({})",
                all.saturating_sub(1),
                listing(&kept)
            )));
        }
        kept.retain(|s| numbers.contains(&s.site));
    }
    if let Some(wanted) = function.map(str::trim).filter(|f| !f.is_empty()) {
        let names = |s: &SelectedSite| {
            [&s.resolved.function, &s.resolved.inlined_into]
                .into_iter()
                .flatten()
                .cloned()
                .collect::<Vec<String>>()
        };
        let exact = kept.iter().any(|s| names(s).iter().any(|n| n == wanted));
        let lower = wanted.to_lowercase();
        let matching: Vec<SelectedSite> = kept
            .iter()
            .filter(|s| {
                names(s).iter().any(|n| {
                    if exact {
                        n == wanted
                    } else {
                        n.to_lowercase().contains(&lower)
                    }
                })
            })
            .map(|s| SelectedSite {
                site: s.site,
                resolved: s.resolved.clone(),
            })
            .collect();
        if matching.is_empty() {
            return Err(EngineError::BadArgument(format!(
                "no site of {location} is in a function named like {wanted:?}; its sites are {}",
                listing(&kept)
            )));
        }
        kept = matching;
    }
    Ok((kept, resolution.note))
}

pub(crate) fn site_row(site: usize, s: &crate::debuginfo::ResolvedSite) -> ResolvedSiteRow {
    ResolvedSiteRow {
        site,
        address: format_addr(s.address),
        function: s.function.clone(),
        inlined_into: s.inlined_into.clone(),
        file: s.file.clone(),
        line: s.line,
        inlined: s.inlined,
    }
}

/// Names and types in scope at a site, without reading the target.
fn scope_variables(image: &ProcessImage, pc: RuntimeAddr) -> Vec<ScopeVariable> {
    eval::variables_in_scope(image, pc)
        .into_iter()
        .map(|(name, type_name)| ScopeVariable { name, type_name })
        .collect()
}

/// The `ret` instructions of the functions containing `sites`: where a
/// duration "to the function's return" ends.
fn function_return_sites(
    image: &ProcessImage,
    sites: &[crate::debuginfo::ResolvedSite],
) -> Result<Vec<crate::debuginfo::ResolvedSite>, EngineError> {
    let mut ends: Vec<crate::debuginfo::ResolvedSite> = Vec::new();
    for site in sites {
        let needs_end_location = |why: &str| {
            EngineError::BadArgument(format!(
                "cannot time {} to its function's return: {why}; give end_location (e.g. the function's last line)",
                format_addr(site.address)
            ))
        };
        if site.inlined {
            return Err(needs_end_location(
                "it is an inlined copy, which has no return of its own",
            ));
        }
        let code = image.function_returns(site.address).ok_or_else(|| {
            needs_end_location("its function's extent is not in the symbol table")
        })?;
        if code.returns.is_empty() {
            return Err(needs_end_location(
                "its function has no ret instruction (it ends in a tail call or never returns)",
            ));
        }
        for ret in code.returns {
            if ends.iter().any(|e| e.address == ret) {
                continue;
            }
            let frame = image.symbolize(ret, false).into_iter().next_back();
            ends.push(crate::debuginfo::ResolvedSite {
                address: ret,
                function: frame.as_ref().and_then(|f| f.function.clone()),
                file: frame.as_ref().and_then(|f| f.file.clone()),
                line: frame.as_ref().and_then(|f| f.line),
                inlined: false,
                inlined_into: None,
            });
        }
    }
    Ok(ends)
}

/// A refused site's reason as a probe's engine note says it.
fn refusal_reason(error: crate::tracer::TraceError) -> String {
    match error {
        crate::tracer::TraceError::BreakpointRefused { reason, .. } => reason,
        other => other.to_string(),
    }
}
