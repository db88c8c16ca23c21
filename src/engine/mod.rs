//! The engine: the session of attached targets (pid -> target) and every
//! question asked of them. It joins the tracer (process control) with the
//! debug info (what the bytes mean) and the policy (what may be touched).
//!
//! It owns no ptrace call itself (the tracer thread does) and knows nothing of
//! MCP: the `mcp` room turns its answers into JSON and text.

mod capture_plan;
mod debug_registers;
mod error;
mod frames;
mod function_search;
mod inspect;
pub mod items;
mod languages;
pub mod ownership;
mod probe_ops;
pub mod probes;
pub mod report;
mod source;
mod store;
mod watch;
mod watch_write;

use std::collections::HashMap;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex};
use std::time::Instant;

pub use error::EngineError;
use frames::CapturedThread;
pub use inspect::{EvaluateReport, FrameInfo, LocalsReport};
pub use items::SummaryView;
pub use probe_ops::{
    MAX_PROBES, MAX_WAIT_MS, ProbeCreated, ProbeList, ProbeRemoved, ProbeRequest, ProbeResults,
    ProbeWhat, ScopeVariable,
};
pub use probes::{EngineChoice, MetricKind, ProbeEngine, ProbeKind, ProbeRow, ProbeState};
use report::*;
pub use watch::{WatchCreated, WatchMode, WatchRequest, WatchSummary};

use crate::debuginfo::{ProcessImage, RuntimeAddr};
use crate::policy::Policy;
use crate::tracer::{ProcessMemory, Tracer};
use crate::value::Redaction;
use probes::Probe;

/// Stack bytes copied per thread for `stack_trace`: enough for deep stacks;
/// unwinding past it reads live memory.
const STACK_COPY_BYTES: usize = 256 * 1024;
/// Stack bytes copied per thread for `list_threads`, which only needs the few
/// frames down to the program's own code.
const SHORT_STACK_COPY_BYTES: usize = 32 * 1024;
/// Frames searched for the first frame with source info in `list_threads`.
const THREAD_SUMMARY_FRAMES: usize = 24;

/// One attached process and what we know of its code.
pub struct Target {
    /// Process id.
    pub pid: i32,
    /// Modules mapped in it and their debug info, as of the last request
    /// (refreshed when a library was loaded or unloaded since).
    image: std::sync::RwLock<Arc<ProcessImage>>,
    /// Reads its memory without stopping it.
    pub memory: ProcessMemory,
    /// The attach report, returned again when attach is asked twice.
    pub attach_report: AttachReport,
}

impl Target {
    /// The modules mapped in the process and their debug info, as last seen.
    pub fn image(&self) -> Arc<ProcessImage> {
        self.image.read().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

/// All attached targets and the tracer that holds them.
pub struct Engine {
    tracer: Tracer,
    policy: Arc<Policy>,
    redaction: Redaction,
    targets: Mutex<HashMap<i32, Arc<Target>>>,
    probes: Mutex<HashMap<u64, Arc<Probe>>>,
    next_probe_id: AtomicU64,
    /// Probes ended because their library was unloaded, whose sites the
    /// tracer may still hold: taken out before anything new is armed, so a
    /// library loaded at the same addresses never meets a stale site.
    unloaded_probes: Mutex<Vec<Arc<Probe>>>,
    #[allow(dead_code)]
    probe_updates: Option<tokio::sync::mpsc::UnboundedSender<u64>>,
    /// Which HTTP client set which probe (see `ownership`).
    owners: ownership::Owners,
    /// Running summaries of `watch_expression` watches, by probe id.
    watches: watch::WatchSummaries,
}

impl Engine {
    /// Starts the tracer thread.
    ///
    /// `probe_updates`, when given, is told the id of every probe with new
    /// results (for resource-updated notifications).
    pub fn new(
        policy: Arc<Policy>,
        probe_updates: Option<tokio::sync::mpsc::UnboundedSender<u64>>,
    ) -> Result<Engine, EngineError> {
        let redaction = Redaction::configured(
            policy.no_default_secrets,
            policy.secret_names.clone(),
            policy.secret_types.clone(),
        );
        Ok(Engine {
            tracer: match policy.ring_buffer_mb {
                Some(mb) => Tracer::start_with_ring(mb.clamp(1, 1024) as usize * 1024 * 1024)?,
                None => Tracer::start()?,
            },
            policy,
            redaction,
            targets: Mutex::new(HashMap::new()),
            probes: Mutex::new(HashMap::new()),
            next_probe_id: AtomicU64::new(1),
            unloaded_probes: Mutex::new(Vec::new()),
            probe_updates,
            owners: ownership::Owners::default(),
            watches: watch::WatchSummaries::default(),
        })
    }

    fn probes(&self) -> std::sync::MutexGuard<'_, HashMap<u64, Arc<Probe>>> {
        self.probes.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The redaction every value, answer, audit and log line passes through.
    pub fn redaction(&self) -> &Redaction {
        &self.redaction
    }

    /// The policy in force.
    pub fn policy(&self) -> &Policy {
        &self.policy
    }

    /// Whether `name` names a secret (for audit lines of tool arguments).
    pub fn is_secret_name(&self, name: &str) -> bool {
        self.redaction.is_secret(name)
    }

    fn targets(&self) -> std::sync::MutexGuard<'_, HashMap<i32, Arc<Target>>> {
        // A poisoned map still holds valid entries: a panic elsewhere must not
        // keep us from detaching.
        self.targets.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The attached target `pid`, or an error that says to attach first.
    /// Its image is brought up to date first: a library loaded since the
    /// last request (`dlopen`) is found, probed and symbolized like any other.
    pub fn target(&self, pid: i32) -> Result<Arc<Target>, EngineError> {
        let target = self
            .targets()
            .get(&pid)
            .cloned()
            .ok_or(EngineError::NotAttached { pid })?;
        self.refresh_image(&target);
        Ok(target)
    }

    /// Rebuilds the target's image when its file mappings changed (a cheap
    /// signature of /proc/PID/maps), keeping every module still mapped where
    /// it was. Probes in a library that was unloaded end, saying so: their
    /// addresses now belong to nothing, or to another library.
    fn refresh_image(&self, target: &Target) {
        let current = target.image();
        let newer = match current.refreshed() {
            Ok(Some(newer)) => Arc::new(newer),
            Ok(None) => return,
            Err(e) => {
                // The process is gone or exiting: the tracer says so on the
                // next request; the image we have is the best there is.
                tracing::debug!(pid = target.pid, error = %e, "cannot refresh the module list");
                return;
            }
        };
        let same_program = match (current.main_module(), newer.main_module()) {
            (Some(a), Some(b)) => Arc::ptr_eq(a, b),
            (None, None) => true,
            _ => false,
        };
        if !same_program {
            // The executable itself changed (exec): that is the tracer's to
            // report (probes end as target_exited), not a library unloaded.
            return;
        }
        {
            let mut slot = target.image.write().unwrap_or_else(|e| e.into_inner());
            if !Arc::ptr_eq(&slot, &current) {
                // Another request refreshed it meanwhile.
                return;
            }
            *slot = newer.clone();
        }
        for module in current.loaded_in(&newer) {
            tracing::info!(pid = target.pid, module = %module.path().display(), "library loaded");
        }
        for module in current.unloaded_in(&newer) {
            tracing::info!(pid = target.pid, module = %module.path().display(), "library unloaded");
            self.end_probes_in(target.pid, &module);
        }
    }

    /// Brings the image of `pid` up to date if it is attached (for answers
    /// about probes, which name no target otherwise).
    fn refresh_modules(&self, pid: i32) {
        let target = self.targets().get(&pid).cloned();
        if let Some(target) = target {
            self.refresh_image(&target);
        }
    }

    /// Takes the sites of probes ended by an unloaded library of `pid` out
    /// of the tracer (their expiry tasks do too, but not necessarily yet).
    async fn remove_unloaded_sites(&self, pid: i32) {
        let ended: Vec<Arc<Probe>> = {
            let mut list = self
                .unloaded_probes
                .lock()
                .unwrap_or_else(|e| e.into_inner());
            let (of_pid, others) = list.drain(..).partition(|p| p.pid == pid);
            *list = others;
            of_pid
        };
        for probe in ended {
            let _ = self.tracer.remove_group(probe.pid, probe.id).await;
        }
    }

    /// Ends every armed probe of `pid` with a site in `module`, which was
    /// unloaded: its expiry task takes the sites out of the tracer.
    fn end_probes_in(&self, pid: i32, module: &crate::debuginfo::Module) {
        let probes: Vec<Arc<Probe>> = self
            .probes()
            .values()
            .filter(|p| p.pid == pid && p.state() == probes::ProbeState::Armed)
            .cloned()
            .collect();
        for probe in probes {
            let inside = probe.resolved.iter().any(|site| {
                site.address
                    .strip_prefix("0x")
                    .and_then(|hex| u64::from_str_radix(hex, 16).ok())
                    .is_some_and(|a| module.contains(RuntimeAddr(a)))
            });
            if inside {
                self.unloaded_probes
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .push(probe.clone());
                probe.finish(
                    probes::ProbeState::Removed,
                    Some(format!(
                        "the library {} holding this probe was unloaded (dlclose); set the probe again \
                         once it is loaded again",
                        module.path().display()
                    )),
                );
            }
        }
    }

    /// Processes on this machine, filtered by a substring of name, command line or pid.
    pub fn list_processes(&self, query: Option<&str>, limit: usize) -> ProcessList {
        let mut rows: Vec<ProcessRow> = crate::tracer::list_processes(query)
            .into_iter()
            .map(|p| {
                let refusal = self.policy.refusal(p.pid, p.exe.as_deref());
                // Our own targets look "already traced" in /proc: by us.
                let attached = self.tracer.is_attached(p.pid);
                ProcessRow {
                    pid: p.pid,
                    name: p.name,
                    exe: p.exe,
                    cmdline: p.cmdline,
                    user: p.user,
                    attachable: attached || (p.attachable && refusal.is_none()),
                    reason: if attached { None } else { p.reason.or(refusal) },
                    attached,
                }
            })
            .collect();
        rows.sort_by_key(|r| r.pid);
        let total = rows.len();
        rows.truncate(limit);
        ProcessList {
            processes: rows,
            total,
        }
    }

    /// Seizes every thread of `pid` and loads its debug info. Attaching again
    /// is harmless and returns the first report.
    pub async fn attach(&self, pid: i32) -> Result<AttachReport, EngineError> {
        if let Some(t) = self.targets().get(&pid) {
            let mut again = t.attach_report.clone();
            again.already_attached = true;
            return Ok(again);
        }
        let read_exe = || {
            std::fs::read_link(format!("/proc/{pid}/exe"))
                .ok()
                .map(|p| p.display().to_string())
        };
        let exe = read_exe();
        let checked_start = crate::policy::process_start_time(pid);
        if let Some(reason) = self.policy.refusal(pid, exe.as_deref()) {
            return Err(EngineError::Refused { pid, reason });
        }
        let started = Instant::now();
        let seized = self.tracer.attach(pid).await?;
        // Seized, the pid can no longer change hands; between the check and
        // the seize the process may have ended and its pid been reused, or
        // it may have run another program: judge what was seized.
        let replaced = crate::policy::process_start_time(pid) != checked_start;
        let exe_now = read_exe();
        let refusal = if replaced {
            Some(format!(
                "process {pid} ended and its pid was taken by a new process between the policy check \
                 and the attach; the new one was let go untouched. Call list_processes, then attach \
                 it if it is the one you want"
            ))
        } else if exe_now != exe {
            self.policy.refusal(pid, exe_now.as_deref())
        } else {
            None
        };
        if let Some(reason) = refusal {
            let _ = self.tracer.detach(pid).await;
            return Err(EngineError::Refused { pid, reason });
        }
        let exe = exe_now;
        let image = match tokio::task::spawn_blocking(move || ProcessImage::load(pid)).await {
            Ok(Ok(image)) => Arc::new(image),
            Ok(Err(e)) => {
                let _ = self.tracer.detach(pid).await;
                return Err(e.into());
            }
            Err(join) => {
                let _ = self.tracer.detach(pid).await;
                return Err(EngineError::Internal(format!("loading debug info: {join}")));
            }
        };
        let attach_ms = started.elapsed().as_secs_f64() * 1000.0;
        let main = image.main_module().cloned();
        let debug = main.as_ref().map(|m| m.debug_info());
        let found = debug.as_ref().is_some_and(|d| d.found);
        let exe_path = main
            .as_ref()
            .map(|m| m.path().display().to_string())
            .or(exe)
            .unwrap_or_default();
        let mut languages = image.languages();
        let mut warnings = Vec::new();
        if main
            .as_ref()
            .is_some_and(|m| languages::is_go_binary(m.path()))
        {
            if !languages.iter().any(|l| l == "go") {
                languages.insert(0, "go".to_string());
            }
            warnings.push(languages::GO_WARNING.to_string());
        }
        let report = AttachReport {
            pid,
            exe: exe_path.clone(),
            build_id: main.as_ref().and_then(|m| m.build_id().map(str::to_owned)),
            threads: seized.threads.len(),
            languages,
            warnings,
            debug_info: DebugInfoReport {
                found,
                path: debug
                    .as_ref()
                    .and_then(|d| d.path.as_ref().map(|p| p.display().to_string())),
                hint: (!found).then(|| no_debug_info_hint(&exe_path)),
            },
            modules: image.modules().len(),
            modules_with_debug_info: image
                .modules()
                .iter()
                .filter(|m| m.debug_info().found)
                .count(),
            attach_ms,
            held_us: seized.held.as_micros() as u64,
            already_attached: false,
        };
        let target = Arc::new(Target {
            pid,
            image: std::sync::RwLock::new(image),
            memory: ProcessMemory::new(pid),
            attach_report: report.clone(),
        });
        self.targets().insert(pid, target);
        tracing::info!(pid, attach_ms, "attached");
        Ok(report)
    }

    /// Releases `pid`: every thread detached, the target left as it was.
    pub async fn detach(&self, pid: i32) -> Result<DetachReport, EngineError> {
        let target = self.target(pid)?;
        let armed: Vec<Arc<Probe>> = self
            .probes()
            .values()
            .filter(|p| p.pid == pid && p.state() == probes::ProbeState::Armed)
            .cloned()
            .collect();
        self.tracer.detach(pid).await?;
        self.watches.release_pid(pid);
        self.targets().remove(&target.pid);
        for probe in &armed {
            probe.finish(
                probes::ProbeState::Removed,
                Some("the process was detached".into()),
            );
        }
        let removed = armed.len();
        Ok(DetachReport {
            pid,
            probes_removed: removed,
        })
    }

    /// Detaches every target; used on every way liveprobe can end.
    pub async fn detach_all(&self) {
        self.tracer.detach_all().await;
        self.targets().clear();
    }

    /// Detaches every target from a context that cannot await (a panic
    /// hook), waiting a bounded time.
    pub fn detach_all_blocking(&self) {
        self.tracer
            .detach_all_blocking(std::time::Duration::from_secs(5));
    }

    /// Copies registers and stack of the given threads (None: all), holding
    /// each only while it is copied.
    async fn capture(
        &self,
        target: &Target,
        tids: Option<Vec<i32>>,
        stack_bytes: usize,
    ) -> Result<Vec<CapturedThread>, EngineError> {
        self.ensure_same_program(target).await?;
        let captures = self
            .tracer
            .capture_threads(target.pid, tids, stack_bytes)
            .await?;
        Ok(captures
            .into_iter()
            .map(|c| CapturedThread::new(c, target.memory.clone()))
            .collect())
    }

    /// Fails when the target ran a new program since attach: every address
    /// and all debug info we hold belong to the old one.
    async fn ensure_same_program(&self, target: &Target) -> Result<(), EngineError> {
        match self.tracer.process_state(target.pid).await? {
            crate::tracer::TargetState::Execed => Err(EngineError::BadArgument(format!(
                "process {} called exec since it was attached: its code and debug info changed; \
                 detach and attach again",
                target.pid
            ))),
            _ => Ok(()),
        }
    }

    /// Threads of `pid` with where each one is in the program.
    pub async fn list_threads(&self, pid: i32) -> Result<ThreadList, EngineError> {
        let target = self.target(pid)?;
        let statuses = self.tracer.threads(pid).await?;
        let captures = self.capture(&target, None, SHORT_STACK_COPY_BYTES).await?;
        let by_tid: HashMap<i32, &CapturedThread> = captures.iter().map(|c| (c.tid, c)).collect();
        let mut threads = Vec::with_capacity(statuses.len());
        for status in statuses {
            let mut row = ThreadRow {
                tid: status.tid,
                name: status.name,
                state: status.state,
                function: None,
                file: None,
                line: None,
                innermost: None,
            };
            if let Some(capture) = by_tid.get(&status.tid) {
                let frames =
                    frames::symbolized_frames(&target.image(), capture, THREAD_SUMMARY_FRAMES);
                let innermost = frames.first().and_then(|f| f.function.clone());
                let chosen = frames
                    .iter()
                    .find(|f| f.own_code && f.function.is_some())
                    .or(frames.first());
                if let Some(f) = chosen {
                    row.function = f.function.clone();
                    row.file = f.file.clone();
                    row.line = f.line;
                    if innermost != f.function {
                        row.innermost = innermost;
                    }
                }
            }
            threads.push(row);
        }
        threads.sort_by_key(|t| (t.tid != pid, t.tid));
        Ok(ThreadList { pid, threads })
    }

    /// Symbolized stacks of one thread (default the main thread) or of all.
    pub async fn stack_trace(
        &self,
        pid: i32,
        tid: Option<i32>,
        max_frames: usize,
        all_threads: bool,
    ) -> Result<StackReport, EngineError> {
        let target = self.target(pid)?;
        let tids = if all_threads {
            None
        } else {
            Some(vec![tid.unwrap_or(pid)])
        };
        let statuses = self.tracer.threads(pid).await?;
        let names: HashMap<i32, String> = statuses.into_iter().map(|s| (s.tid, s.name)).collect();
        let captures = self.capture(&target, tids, STACK_COPY_BYTES).await?;
        let mut threads: Vec<ThreadStack> = captures
            .iter()
            .map(|capture| {
                let mut frames = frames::symbolized_frames(
                    &target.image(),
                    capture,
                    max_frames.saturating_add(1),
                );
                let truncated = frames.len() > max_frames;
                frames.truncate(max_frames);
                ThreadStack {
                    tid: capture.tid,
                    name: names.get(&capture.tid).cloned().unwrap_or_default(),
                    frames,
                    truncated,
                    held_us: capture.held_us,
                }
            })
            .collect();
        threads.sort_by_key(|t| (t.tid != pid, t.tid));
        Ok(StackReport { pid, threads })
    }

    /// Functions whose demangled name contains `query`.
    pub fn find_functions(
        &self,
        pid: i32,
        query: &str,
        limit: usize,
    ) -> Result<FunctionList, EngineError> {
        let target = self.target(pid)?;
        if query.trim().is_empty() {
            return Err(EngineError::BadArgument(
                "query is empty: give part of a function name, e.g. \"handle_request\" or \"Cache::get\"".into(),
            ));
        }
        let (functions, truncated) = function_search::find(&target.image(), query.trim(), limit);
        Ok(FunctionList {
            functions,
            truncated,
        })
    }

    /// Every address a location (`file:line`, function, `*0xADDR`) covers, optionally only those in functions
    /// named like `function`.
    pub fn resolve_location(
        &self,
        pid: i32,
        location: &str,
        function: Option<&str>,
    ) -> Result<LocationReport, EngineError> {
        let target = self.target(pid)?;
        let resolution = resolve_in(&target.image(), location.trim())?;
        let (kept, note) = probe_ops::select_sites(location, resolution, function, None)?;
        Ok(LocationReport {
            location: location.to_string(),
            resolved: kept
                .iter()
                .map(|s| probe_ops::site_row(s.site, &s.resolved))
                .collect(),
            note,
        })
    }

    /// Source text around a line, with the lines where a probe can go marked.
    pub fn list_source(
        &self,
        pid: i32,
        file: &str,
        line: Option<u32>,
        context: Option<u32>,
    ) -> Result<SourceListing, EngineError> {
        let target = self.target(pid)?;
        source::list_source(&target.image(), file, line, context)
    }
}

/// Resolves a location in the modules loaded now; a name or file found in
/// none of them says that a library loaded later will be searched too.
pub(crate) fn resolve_in(
    image: &ProcessImage,
    location: &str,
) -> Result<crate::debuginfo::Resolution, EngineError> {
    use crate::debuginfo::LocationError;
    image.resolve_location(location).map_err(|e| match e {
        LocationError::FunctionNotFound { .. } | LocationError::FileNotFound { .. } => {
            EngineError::NotLoaded {
                source: e,
                modules: image.modules().len(),
            }
        }
        other => EngineError::Location(other),
    })
}

/// Formats a runtime address as clients see it.
pub fn format_addr(addr: RuntimeAddr) -> String {
    format!("{:#x}", addr.0)
}

fn no_debug_info_hint(exe: &str) -> String {
    format!(
        "{exe} has no DWARF debug info: stacks show symbol names only, and locals, lines and probes on lines \
         are not available. Rebuild with -g (C/C++) or debug = true / debug = \"line-tables-only\" (Rust), \
         or install the separate debug file (for Debian packages: the -dbgsym package) so it is found under \
         /usr/lib/debug/.build-id/"
    )
}
