//! The MCP face: tool handlers that turn requests into engine calls and the
//! engine's answers into structured JSON plus a short text rendering.
//!
//! It knows nothing of ptrace or DWARF: everything it needs is in `engine`.

pub mod args;
pub mod audit;
pub(crate) mod budget;
pub mod http;
mod probe_tools;
pub mod resources;
mod schema_shape;
mod text;
mod value_tools;
mod watch_tools;

use std::sync::Arc;
use std::time::Instant;

use resources::Subscriptions;
use resources::{parse_probe_uri, probe_uri};
use rmcp::ErrorData as McpError;
use rmcp::handler::server::common::schema_for_output;
use rmcp::handler::server::router::tool::ToolRouter;
use rmcp::handler::server::wrapper::Parameters;
use rmcp::model::{CallToolResult, ContentBlock, Implementation, ServerCapabilities, ServerConfig};
use rmcp::model::{
    ListResourceTemplatesResult, ListResourcesResult, PaginatedRequestParams,
    ReadResourceRequestParams, ReadResourceResponse, ReadResourceResult, Resource,
    ResourceContents, ResourceTemplate, SubscriptionFilter,
};
use rmcp::service::{RequestContext, RoleServer, SubscriptionContext};
use rmcp::{ServerHandler, tool, tool_handler, tool_router};
use serde::Serialize;

use crate::engine::report::*;
use crate::engine::{Engine, EngineError};
use args::*;
pub use text::RenderText;

const DEFAULT_PROCESS_LIMIT: u32 = 100;
const DEFAULT_MAX_FRAMES: u32 = 64;
const DEFAULT_FUNCTION_LIMIT: u32 = 50;
/// How to see what a budget cut, unless a tool knows better.
const DEFAULT_MORE_HINT: &str =
    "call again with a larger max_bytes (up to 1048576) or ask for less";

/// The liveprobe MCP server: a cheap handle over the shared engine.
#[derive(Clone)]
pub struct LiveprobeServer {
    engine: Arc<Engine>,
    subscriptions: Arc<Subscriptions>,
    tool_router: ToolRouter<Self>,
    origin: audit::CallOrigin,
    /// Over HTTP: the session (or stateless request) this instance serves.
    http_scope: Option<Arc<http::HttpScope>>,
}

#[tool_router]
impl LiveprobeServer {
    /// A server over `engine`; `subscriptions` is shared with the task that
    /// forwards probe updates (see [`Subscriptions::forward`]).
    pub fn new(engine: Arc<Engine>, subscriptions: Arc<Subscriptions>) -> LiveprobeServer {
        LiveprobeServer {
            engine,
            subscriptions,
            tool_router: Self::all_tools(),
            origin: audit::CallOrigin::stdio(),
            http_scope: None,
        }
    }

    /// The same server, its audit lines naming another transport and
    /// session (for transports with more than one session).
    pub fn with_origin(mut self, origin: audit::CallOrigin) -> LiveprobeServer {
        self.origin = origin;
        self
    }

    /// Builds the tool result within the default byte budget (see
    /// [`Self::reply_within`]).
    pub(crate) fn reply<T: Serialize + RenderText>(
        &self,
        tool: &str,
        started: Instant,
        answer: Result<T, EngineError>,
    ) -> CallToolResult {
        self.reply_within(
            tool,
            started,
            answer,
            budget::DEFAULT_MAX_BYTES,
            DEFAULT_MORE_HINT,
        )
    }

    /// Builds the tool result: the answer as `structuredContent` and its
    /// text rendering, each at most `max_bytes` (what was cut is said in
    /// both, with `hint` on how to see more), or an `isError` result; either
    /// way the call is logged (audit lines are written around every call by
    /// `call_tool`, see `audit`).
    pub(crate) fn reply_within<T: Serialize + RenderText>(
        &self,
        tool: &str,
        started: Instant,
        answer: Result<T, EngineError>,
        max_bytes: usize,
        hint: &str,
    ) -> CallToolResult {
        self.reply_noted(tool, started, answer, max_bytes, hint, Vec::new())
    }

    /// [`Self::reply_within`], with cuts the tool made itself before (such
    /// as results left for the next page) said along with the budget's.
    pub(crate) fn reply_noted<T: Serialize + RenderText>(
        &self,
        tool: &str,
        started: Instant,
        answer: Result<T, EngineError>,
        max_bytes: usize,
        hint: &str,
        notes: Vec<String>,
    ) -> CallToolResult {
        let encoded = answer.and_then(|value| {
            serde_json::to_value(&value)
                .map(|json| (json, value.render_text()))
                .map_err(|e| EngineError::Internal(format!("could not encode the answer: {e}")))
        });
        let elapsed_ms = started.elapsed().as_secs_f64() * 1000.0;
        match encoded {
            Ok((mut json, mut text)) => {
                // Last line of defence: values were redacted when they were
                // made, but an answer also echoes arguments (templates,
                // expressions) and target text that is not a value.
                let redaction = self.engine.redaction();
                scrub_json(&mut json, redaction);
                if let std::borrow::Cow::Owned(clean) = redaction.scrub_content(&text) {
                    text = clean;
                }
                tracing::info!(tool, elapsed_ms, ok = true, "tool call");
                schema_shape::strip_nulls(&mut json);
                let mut cuts = budget::fit(&mut json, max_bytes);
                cuts.notes.splice(0..0, notes);
                if !cuts.is_empty() {
                    if let serde_json::Value::Object(m) = &mut json {
                        m.insert("cut".into(), cuts.json(max_bytes, hint));
                    }
                    let said = cuts.text(max_bytes, hint);
                    text = format!("{said}\n{text}");
                }
                budget::fit_text(&mut text, max_bytes, hint);
                let mut result = CallToolResult::structured(json);
                result.content = vec![ContentBlock::text(text)];
                result
            }
            Err(e) => {
                let message = self.engine.redaction().scrub(&e.to_string()).into_owned();
                tracing::info!(tool, elapsed_ms, ok = false, error = %message, "tool call");
                CallToolResult::error(vec![ContentBlock::text(message)])
            }
        }
    }

    /// Every tool, its schemas reshaped for real clients (see `schema_shape`).
    fn all_tools() -> ToolRouter<Self> {
        let mut router =
            Self::tool_router() + Self::value_tools() + Self::probe_tools() + Self::watch_tools();
        for route in router.map.values_mut() {
            let mut input = (*route.attr.input_schema).clone();
            schema_shape::shape(&mut input);
            route.attr.input_schema = Arc::new(input);
            if let Some(output) = &route.attr.output_schema {
                let mut output = (**output).clone();
                schema_shape::shape(&mut output);
                if let Some(serde_json::Value::Object(props)) = output.get_mut("properties") {
                    props.insert("cut".into(), budget::cut_schema());
                }
                route.attr.output_schema = Some(Arc::new(output));
            }
        }
        router
    }

    /// Every tool with its schemas, as `tools/list` shows them.
    pub fn tools() -> Vec<rmcp::model::Tool> {
        Self::all_tools().list_all()
    }

    #[tool(
        description = "List processes on this machine that liveprobe could attach to. `query` filters by a substring of the name, executable, command line, or by pid. Each entry says whether it is attachable and, if not, why.",
        output_schema = schema_for_output::<ProcessList>(),
        annotations(read_only_hint = true, open_world_hint = false)
    )]
    async fn list_processes(&self, Parameters(a): Parameters<ListProcessesArgs>) -> CallToolResult {
        let started = Instant::now();
        let limit = a.limit.unwrap_or(DEFAULT_PROCESS_LIMIT) as usize;
        let answer = Ok(self.engine.list_processes(a.query.as_deref(), limit));
        self.reply_within(
            "list_processes",
            started,
            answer,
            budget::budget(a.max_bytes),
            "narrow `query`, lower `limit`, or raise max_bytes",
        )
    }

    #[tool(
        description = "Attach to a running process without stopping it (every thread is seized; the process keeps running) and load its debug info. Required before any other tool on that pid. Attaching again is harmless.",
        output_schema = schema_for_output::<AttachReport>(),
        annotations(read_only_hint = false, destructive_hint = false, idempotent_hint = true, open_world_hint = false)
    )]
    async fn attach(&self, Parameters(a): Parameters<PidArgs>) -> CallToolResult {
        let started = Instant::now();
        self.reply("attach", started, self.engine.attach(a.pid).await)
    }

    #[tool(
        description = "Detach from a process: every probe is removed and every thread released, leaving the process exactly as it was.",
        output_schema = schema_for_output::<DetachReport>(),
        annotations(read_only_hint = false, destructive_hint = false, idempotent_hint = false, open_world_hint = false)
    )]
    async fn detach(&self, Parameters(a): Parameters<PidArgs>) -> CallToolResult {
        let started = Instant::now();
        self.reply("detach", started, self.engine.detach(a.pid).await)
    }

    #[tool(
        description = "List the threads of an attached process with each thread's state and where it is in the program's own code (function, file, line). Each thread is held only for microseconds.",
        output_schema = schema_for_output::<ThreadList>(),
        annotations(read_only_hint = true, open_world_hint = false)
    )]
    async fn list_threads(&self, Parameters(a): Parameters<PidArgs>) -> CallToolResult {
        let started = Instant::now();
        self.reply(
            "list_threads",
            started,
            self.engine.list_threads(a.pid).await,
        )
    }

    #[tool(
        description = "Symbolized call stack of one thread (default: the main thread) or of all threads, innermost frame first, inlined calls shown as their own frames. Unwound from CFI; each thread is held only while its registers and stack are copied.",
        output_schema = schema_for_output::<StackReport>(),
        annotations(read_only_hint = true, open_world_hint = false)
    )]
    async fn stack_trace(&self, Parameters(a): Parameters<StackTraceArgs>) -> CallToolResult {
        let started = Instant::now();
        let max_frames = a.max_frames.unwrap_or(DEFAULT_MAX_FRAMES).max(1) as usize;
        let budget = budget::budget(a.max_bytes);
        let answer = self
            .engine
            .stack_trace(a.pid, a.tid, max_frames, a.all_threads.unwrap_or(false))
            .await;
        self.reply_within(
            "stack_trace",
            started,
            answer,
            budget,
            "ask for one thread (tid) or fewer max_frames, or raise max_bytes",
        )
    }

    #[tool(
        description = "Find functions in an attached process by part of their name (case-insensitive; plain, qualified like `Cache::get` or `my_crate::cache::Cache::get`, or mangled). Returns each with its source file, line and address: use them as probe locations.",
        output_schema = schema_for_output::<FunctionList>(),
        annotations(read_only_hint = true, open_world_hint = false)
    )]
    async fn find_functions(&self, Parameters(a): Parameters<FindFunctionsArgs>) -> CallToolResult {
        let started = Instant::now();
        let limit = a.limit.unwrap_or(DEFAULT_FUNCTION_LIMIT).max(1) as usize;
        let budget = budget::budget(a.max_bytes);
        let engine = self.engine.clone();
        let answer =
            tokio::task::spawn_blocking(move || engine.find_functions(a.pid, &a.query, limit))
                .await
                .unwrap_or_else(|e| Err(EngineError::Internal(format!("find_functions: {e}"))));
        self.reply_within(
            "find_functions",
            started,
            answer,
            budget,
            "refine the query (a qualified name or file) or raise max_bytes",
        )
    }

    #[tool(
        description = "Resolve a location to the addresses a probe there would cover, without arming anything: `file.c:42` (a line without code moves to the next line with code, and the answer says so), a function name (after its prologue), or `*0xADDR`. Inlined copies and generic instances are all listed.",
        output_schema = schema_for_output::<LocationReport>(),
        annotations(read_only_hint = true, open_world_hint = false)
    )]
    async fn resolve_location(
        &self,
        Parameters(a): Parameters<ResolveLocationArgs>,
    ) -> CallToolResult {
        let started = Instant::now();
        let budget = budget::budget(a.max_bytes);
        let engine = self.engine.clone();
        let answer = tokio::task::spawn_blocking(move || {
            engine.resolve_location(a.pid, &a.location, a.function.as_deref())
        })
        .await
        .unwrap_or_else(|e| Err(EngineError::Internal(format!("resolve_location: {e}"))));
        self.reply_within(
            "resolve_location",
            started,
            answer,
            budget,
            "give a file:line or a qualified name, or raise max_bytes",
        )
    }

    #[tool(
        description = "Show source lines of a file of an attached process, with `code: true` on lines where a probe can go. `file` is a base name or a path suffix; `stale` says the file changed after the binary was built.",
        output_schema = schema_for_output::<SourceListing>(),
        annotations(read_only_hint = true, open_world_hint = false)
    )]
    async fn list_source(&self, Parameters(a): Parameters<ListSourceArgs>) -> CallToolResult {
        let started = Instant::now();
        let budget = budget::budget(a.max_bytes);
        let engine = self.engine.clone();
        let answer = tokio::task::spawn_blocking(move || {
            engine.list_source(a.pid, &a.file, a.line, a.context)
        })
        .await
        .unwrap_or_else(|e| Err(EngineError::Internal(format!("list_source: {e}"))));
        self.reply_within(
            "list_source",
            started,
            answer,
            budget,
            "ask for fewer lines (line and context) or raise max_bytes",
        )
    }
}

/// Writes `<tool>.input.json` and `<tool>.output.json` for every tool into
/// `dir`; returns how many files were written. `schemas/` in the repository
/// is made this way, and a test fails when it drifts from the code.
pub fn export_schemas(dir: &std::path::Path) -> std::io::Result<usize> {
    std::fs::create_dir_all(dir)?;
    let mut written = 0;
    for (name, kind, schema) in tool_schemas() {
        let text = serde_json::to_string_pretty(&schema).map_err(std::io::Error::other)?;
        std::fs::write(dir.join(format!("{name}.{kind}.json")), text + "\n")?;
        written += 1;
    }
    Ok(written)
}

/// (tool name, "input" | "output", schema) for every tool.
pub fn tool_schemas() -> Vec<(String, &'static str, serde_json::Value)> {
    let mut out = Vec::new();
    for tool in LiveprobeServer::tools() {
        let name = tool.name.to_string();
        out.push((
            name.clone(),
            "input",
            serde_json::Value::Object((*tool.input_schema).clone()),
        ));
        if let Some(schema) = &tool.output_schema {
            out.push((
                name,
                "output",
                serde_json::Value::Object((**schema).clone()),
            ));
        }
    }
    out.sort_by(|a, b| (&a.0, a.1).cmp(&(&b.0, b.1)));
    out
}

#[tool_handler(router = self.tool_router)]
impl ServerHandler for LiveprobeServer {
    /// Every call passes the audit and policy gate (`audit::GatedCall`), and
    /// runs as the HTTP caller (if any) so the engine shows each client only
    /// its own probes (see `engine::ownership`).
    async fn call_tool(
        &self,
        request: rmcp::model::CallToolRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<rmcp::model::CallToolResponse, McpError> {
        let call =
            match audit::GatedCall::admit(self.engine.clone(), &self.origin, &request, &context) {
                Ok(call) => call,
                Err(refused) => return Ok((*refused).into()),
            };
        let caller = self.caller(&context);
        let tcc = rmcp::handler::server::tool::ToolCallContext::new(self, request, context);
        call.finish(http::as_caller(caller, self.tool_router.call(tcc)).await)
            .await
    }

    fn get_info(&self) -> ServerConfig {
        let capabilities = ServerCapabilities::builder()
            .enable_tools()
            .enable_resources()
            .enable_resources_subscribe()
            .build();
        ServerConfig::new(capabilities)
            .with_server_info(Implementation::new(
                env!("CARGO_PKG_NAME"),
                env!("CARGO_PKG_VERSION"),
            ))
            .with_instructions(
                "liveprobe inspects running native processes (C, C++, Rust) without stopping them. \
                 Start with list_processes or a known pid, then attach. list_threads and stack_trace show \
                 where threads are; find_functions and list_source find code; read_locals and evaluate \
                 read state. set_snapshot, set_logpoint and set_metric place non-breaking probes; read them \
                 with get_probe_results (wait_ms waits for traffic). Every tool takes the pid.",
            )
    }

    async fn list_resources(
        &self,
        _request: Option<PaginatedRequestParams>,
        context: RequestContext<RoleServer>,
    ) -> Result<ListResourcesResult, McpError> {
        let listed = http::as_caller(self.caller(&context), self.engine.list_probes(None)).await;
        let resources = listed
            .probes
            .into_iter()
            .map(|p| {
                Resource::new(probe_uri(p.probe_id), format!("probe-{}", p.probe_id))
                    .with_description(format!(
                        "results of the {} probe at {} in process {}",
                        serde_json::to_value(p.kind)
                            .ok()
                            .and_then(|v| v.as_str().map(str::to_string))
                            .unwrap_or_default(),
                        p.location,
                        p.pid
                    ))
                    .with_mime_type("application/json")
            })
            .collect();
        Ok(ListResourcesResult::with_all_items(resources))
    }

    async fn list_resource_templates(
        &self,
        _request: Option<PaginatedRequestParams>,
        _context: RequestContext<RoleServer>,
    ) -> Result<ListResourceTemplatesResult, McpError> {
        Ok(ListResourceTemplatesResult::with_all_items(vec![
            ResourceTemplate::new("probe://{probe_id}/results", "probe-results")
                .with_description(
                    "the newest results of a probe, as get_probe_results returns them",
                )
                .with_mime_type("application/json"),
        ]))
    }

    async fn read_resource(
        &self,
        request: ReadResourceRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<ReadResourceResponse, McpError> {
        let answer = self.read_probe_resource(&request, &context).await;
        let error = answer.as_ref().err().map(|e| e.message.to_string());
        match audit::audit_resource_read(
            &self.engine,
            &self.origin,
            &context,
            &request.uri,
            error.as_deref(),
        ) {
            Ok(()) => answer,
            Err(e) => {
                tracing::error!("{e}: withholding {}", request.uri);
                Err(McpError::internal_error(
                    format!(
                        "liveprobe read {}, but withholds it: {e}. Nothing is answered unaudited: \
                         free space on that file system or fix the file's permissions, then read again",
                        request.uri
                    ),
                    None,
                ))
            }
        }
    }

    #[allow(deprecated)]
    async fn subscribe(
        &self,
        request: rmcp::model::SubscribeRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<(), McpError> {
        let Some(id) = parse_probe_uri(&request.uri) else {
            return Err(McpError::invalid_params(
                format!(
                    "cannot subscribe to {}: probe results are probe://{{probe_id}}/results",
                    request.uri
                ),
                None,
            ));
        };
        // Over HTTP a client hears only of probes it may read.
        let caller = self.caller(&context);
        if caller.is_some() {
            let listed = http::as_caller(caller, self.engine.list_probes(None)).await;
            if !listed.probes.iter().any(|p| p.probe_id == id) {
                return Err(McpError::resource_not_found(
                    format!(
                        "no probe {id} for this session: subscribe to a probe it set (list_probes shows them)"
                    ),
                    None,
                ));
            }
        }
        self.subscriptions
            .subscribe(request.uri, self.http_scope_id(), context.peer);
        Ok(())
    }

    #[allow(deprecated)]
    async fn unsubscribe(
        &self,
        request: rmcp::model::UnsubscribeRequestParams,
        _context: RequestContext<RoleServer>,
    ) -> Result<(), McpError> {
        self.subscriptions
            .unsubscribe(&request.uri, self.http_scope_id());
        Ok(())
    }

    fn accepted_subscription_filter(
        &self,
        requested: &SubscriptionFilter,
    ) -> Option<SubscriptionFilter> {
        Some(requested.supported_by(&self.get_info().capabilities))
    }

    async fn listen(&self, context: SubscriptionContext) -> Result<(), McpError> {
        let mut wanted: Vec<String> = context
            .accepted()
            .resource_subscriptions
            .clone()
            .unwrap_or_default();
        // Over HTTP (2026-07-28: no session) a listener hears only of the
        // token's probes, not of probes another session set.
        if self.http_scope_id().is_some() {
            let visible = http::as_caller(
                Some(crate::engine::ownership::Caller::Token),
                self.engine.list_probes(None),
            )
            .await;
            wanted.retain(|uri| {
                parse_probe_uri(uri)
                    .is_some_and(|id| visible.probes.iter().any(|p| p.probe_id == id))
            });
        }
        let mut updates = self.subscriptions.updates.subscribe();
        loop {
            tokio::select! {
                _ = context.cancelled() => return Ok(()),
                uri = updates.recv() => match uri {
                    Ok(uri) if wanted.contains(&uri) => {
                        if context.sink().notify_resource_updated(uri).await.is_err() {
                            return Ok(());
                        }
                    }
                    Ok(_) | Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {}
                    Err(tokio::sync::broadcast::error::RecvError::Closed) => return Ok(()),
                },
            }
        }
    }
}

/// Hides credential-looking text in every string of an answer (content
/// detectors only: liveprobe's own `name = value` renderings are not
/// `password=…` query strings).
fn scrub_json(json: &mut serde_json::Value, redaction: &crate::value::Redaction) {
    match json {
        serde_json::Value::String(s) => {
            if let std::borrow::Cow::Owned(clean) = redaction.scrub_content(s) {
                *s = clean;
            }
        }
        serde_json::Value::Array(items) => {
            for item in items {
                scrub_json(item, redaction);
            }
        }
        serde_json::Value::Object(map) => {
            for item in map.values_mut() {
                scrub_json(item, redaction);
            }
        }
        _ => {}
    }
}

impl LiveprobeServer {
    /// The answer of `resources/read` for `probe://{id}/results`: the
    /// probe's results within the answer budget.
    async fn read_probe_resource(
        &self,
        request: &ReadResourceRequestParams,
        context: &RequestContext<RoleServer>,
    ) -> Result<ReadResourceResponse, McpError> {
        let caller = self.caller(context);
        let Some(id) = parse_probe_uri(&request.uri) else {
            return Err(McpError::resource_not_found(
                format!(
                    "no resource {}: probe results are probe://{{probe_id}}/results",
                    request.uri
                ),
                None,
            ));
        };
        let results = http::as_caller(caller, self.engine.probe_results(id, 0, 1000, 0))
            .await
            .map_err(|e| McpError::resource_not_found(e.to_string(), None))?;
        let mut json = serde_json::to_value(&results)
            .map_err(|e| McpError::internal_error(e.to_string(), None))?;
        // The same budget as a tool answer, and the mime type the template
        // announces.
        schema_shape::strip_nulls(&mut json);
        let cuts = budget::fit(&mut json, budget::DEFAULT_MAX_BYTES);
        if !cuts.is_empty()
            && let serde_json::Value::Object(m) = &mut json
        {
            m.insert(
                "cut".into(),
                cuts.json(
                    budget::DEFAULT_MAX_BYTES,
                    "page with get_probe_results (after, limit, max_bytes)",
                ),
            );
        }
        let contents = ResourceContents::text(json.to_string(), request.uri.clone())
            .with_mime_type("application/json");
        Ok(ReadResourceResult::new(vec![contents]).into())
    }
}
