//! The gate every tool call passes: an audit line before it runs (no line,
//! no call), the policy's tool limits, and an audit line with its outcome.
//! Probe state changes are audited here too, from the engine's update
//! stream and after the tools that change probes.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use rmcp::ErrorData as McpError;
use rmcp::model::{CallToolRequestParams, CallToolResponse, CallToolResult, ContentBlock};
use rmcp::service::{RequestContext, RoleServer};
use serde_json::{Value, json};
use tokio::sync::mpsc;

use crate::engine::Engine;
use crate::policy::AuditError;
use crate::policy::audit::redact_keys;

/// Which transport and session a server instance answers on; audit lines
/// carry it.
#[derive(Debug, Clone)]
pub struct CallOrigin {
    /// `stdio`, `http`, ...
    pub transport: String,
    /// The session's id (an MCP session id where the transport has one).
    pub session: String,
}

impl CallOrigin {
    /// A stdio session: one per server instance, numbered in this process.
    pub fn stdio() -> CallOrigin {
        static NEXT: AtomicU64 = AtomicU64::new(1);
        CallOrigin {
            transport: "stdio".into(),
            session: format!(
                "stdio-{}-{}",
                std::process::id(),
                NEXT.fetch_add(1, Ordering::Relaxed)
            ),
        }
    }
}

/// Tools after which probe states may have changed.
const PROBE_CHANGING_TOOLS: &[&str] = &[
    "set_snapshot",
    "set_logpoint",
    "set_metric",
    "set_watch",
    "watch_expression",
    "remove_probe",
    "detach",
];

/// One tool call going through the gate.
pub(crate) struct GatedCall {
    engine: Arc<Engine>,
    started: Instant,
    /// What every line of this call says: tool, redacted arguments, client,
    /// session, transport, request id.
    record: Value,
    tool: String,
}

impl GatedCall {
    /// Writes the `tool_call` line and applies the policy's tool limits.
    /// `Err` is the answer to give instead of running the tool (already
    /// audited when the log could be written).
    pub(crate) fn admit(
        engine: Arc<Engine>,
        origin: &CallOrigin,
        request: &CallToolRequestParams,
        context: &RequestContext<RoleServer>,
    ) -> Result<GatedCall, Box<CallToolResult>> {
        let tool = request.name.to_string();
        let mut arguments = Value::Object(request.arguments.clone().unwrap_or_default());
        redact_keys(&mut arguments, &|key| engine.is_secret_name(key));
        // A credential can sit in any argument's text (an expression's
        // string literal, a template): values are judged too.
        scrub_strings(&mut arguments, engine.redaction());
        let mut record = caller_record(origin, context);
        record.insert("tool".into(), tool.clone().into());
        record.insert("arguments".into(), arguments);
        let call = GatedCall {
            engine,
            started: Instant::now(),
            record: Value::Object(record),
            tool,
        };
        if let Err(e) = call.write("tool_call", None) {
            tracing::error!("{e}: refusing {}", call.tool);
            return Err(Box::new(unaudited(&call.tool, &e, "did not run")));
        }
        let pid = request
            .arguments
            .as_ref()
            .and_then(|a| a.get("pid"))
            .and_then(|p| {
                p.as_i64()
                    .or_else(|| p.as_str().and_then(|s| s.trim().parse().ok()))
            })
            .and_then(|p| i32::try_from(p).ok());
        let judged_as = policy_tool_name(&call.tool, request.arguments.as_ref());
        let refusal = call
            .engine
            .policy()
            .tool_refusal(judged_as, pid)
            // Name what the client called, not the tool it is judged as.
            .map(|why| {
                if judged_as == call.tool {
                    return why;
                }
                format!(
                    "{} A write or access watch sets debug registers in the target, as set_watch \
                     does; mode \"sample\" only reads.",
                    why.replace(judged_as, &format!("{} (write/access)", call.tool))
                )
            });
        if let Some(why) = refusal {
            tracing::info!(tool = call.tool, "refused by policy: {why}");
            let outcome = json!({"outcome": "refused", "ok": false, "error": why});
            if let Err(e) = call.write("tool_result", Some(outcome)) {
                return Err(Box::new(unaudited(&call.tool, &e, "did not run")));
            }
            return Err(Box::new(CallToolResult::error(vec![ContentBlock::text(
                why,
            )])));
        }
        Ok(call)
    }

    /// Writes the `tool_result` line (and the probe states the call may have
    /// changed); an answer whose outcome cannot be audited is withheld.
    pub(crate) async fn finish(
        self,
        response: Result<CallToolResponse, McpError>,
    ) -> Result<CallToolResponse, McpError> {
        let elapsed_ms = self.started.elapsed().as_secs_f64() * 1000.0;
        let outcome = match &response {
            Ok(CallToolResponse::Complete(r)) if r.is_error == Some(true) => json!({
                "outcome": "error",
                "error": r.content.iter().filter_map(|c| c.as_text().map(|t| t.text.as_str())).collect::<Vec<_>>().join("\n"),
            }),
            Ok(_) => json!({"outcome": "ok"}),
            Err(e) => json!({"outcome": "error", "error": e.message}),
        };
        let mut outcome = outcome;
        if let Value::Object(o) = &mut outcome {
            let ok = o.get("outcome").is_some_and(|v| v == "ok");
            o.insert("ok".into(), ok.into());
            o.insert("elapsed_ms".into(), elapsed_ms.into());
        }
        let mut written = self.write("tool_result", Some(outcome));
        if written.is_ok() && PROBE_CHANGING_TOOLS.contains(&self.tool.as_str()) {
            written = audit_probe_states(&self.engine).await;
        }
        match written {
            Ok(()) => response,
            Err(e) => {
                tracing::error!("{e}: withholding the answer of {}", self.tool);
                Ok(unaudited(&self.tool, &e, "ran, but its answer is withheld").into())
            }
        }
    }

    fn write(&self, event: &str, outcome: Option<Value>) -> Result<(), AuditError> {
        let mut line = serde_json::Map::new();
        line.insert("event".into(), event.into());
        if let Value::Object(r) = &self.record {
            line.extend(r.clone());
        }
        if let Some(Value::Object(o)) = outcome {
            line.extend(o);
        }
        self.engine.policy().audit(Value::Object(line))
    }
}

/// The tool name the policy judges a call by: a `watch_expression` in
/// `write` or `access` mode places a hardware watch, as `set_watch` does
/// (the engine refuses it too; judged here, the audit says `refused`).
fn policy_tool_name<'a>(
    tool: &'a str,
    arguments: Option<&serde_json::Map<String, Value>>,
) -> &'a str {
    let mode = arguments
        .and_then(|a| a.get("mode"))
        .and_then(Value::as_str);
    if tool == "watch_expression" && matches!(mode, Some("write" | "access")) {
        "set_watch"
    } else {
        tool
    }
}

/// Who asks: client, session, transport and request id, as every audit
/// line of a request names them.
fn caller_record(
    origin: &CallOrigin,
    context: &RequestContext<RoleServer>,
) -> serde_json::Map<String, Value> {
    let client = context
        .peer
        .peer_info()
        .map(|info| json!({"name": info.client_info.name, "version": info.client_info.version}))
        .unwrap_or_else(|| json!({"name": "unknown"}));
    let mut record = serde_json::Map::new();
    record.insert("client".into(), client);
    record.insert("session".into(), origin.session.clone().into());
    record.insert("transport".into(), origin.transport.clone().into());
    record.insert("request_id".into(), context.id.to_string().into());
    record
}

/// Writes the `resource_read` line of a `resources/read`: a probe's results
/// are data from the target as much as a tool's answer is. `Err` (the log
/// cannot be written) means the answer must be withheld.
pub(crate) fn audit_resource_read(
    engine: &Engine,
    origin: &CallOrigin,
    context: &RequestContext<RoleServer>,
    uri: &str,
    error: Option<&str>,
) -> Result<(), AuditError> {
    let mut line = serde_json::Map::new();
    line.insert("event".into(), "resource_read".into());
    line.extend(caller_record(origin, context));
    line.insert("uri".into(), uri.into());
    line.insert(
        "outcome".into(),
        if error.is_some() { "error" } else { "ok" }.into(),
    );
    line.insert("ok".into(), error.is_none().into());
    if let Some(e) = error {
        line.insert("error".into(), e.into());
    }
    engine.policy().audit(Value::Object(line))
}

fn unaudited(tool: &str, e: &AuditError, what: &str) -> CallToolResult {
    CallToolResult::error(vec![ContentBlock::text(format!(
        "liveprobe {what} {tool}: {e}. No call runs unaudited: free space on that file system or \
         fix the file's permissions, then call again"
    ))])
}

/// Writes a `probe_state` line for every probe whose state changed since
/// the last one written.
pub async fn audit_probe_states(engine: &Engine) -> Result<(), AuditError> {
    let Some(log) = &engine.policy().audit else {
        return Ok(());
    };
    let rows = engine.list_probes(None).await.probes;
    for row in &rows {
        let state = serde_json::to_value(row.state)
            .ok()
            .and_then(|v| v.as_str().map(str::to_string))
            .unwrap_or_default();
        log.probe_state(
            row.probe_id,
            row.pid,
            &row.location,
            &state,
            row.reason.as_deref(),
        )?;
    }
    let present: Vec<u64> = rows.iter().map(|r| r.probe_id).collect();
    log.probes_gone(&present)
}

/// Passes the engine's probe updates on to the returned receiver, writing
/// the state changes they announce to the audit log on the way (failures go
/// to stderr: no client call is waiting on them).
pub fn audit_probe_updates(
    engine: Arc<Engine>,
    mut updates: mpsc::UnboundedReceiver<u64>,
) -> mpsc::UnboundedReceiver<u64> {
    let (tx, rx) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Some(id) = updates.recv().await {
            if engine.policy().audit.is_some()
                && let Err(e) = audit_probe_states(&engine).await
            {
                tracing::error!("a probe state change is not in the audit log: {e}");
            }
            if tx.send(id).is_err() {
                return;
            }
        }
    });
    rx
}

/// Replaces credential-looking text in every string of `value`, in place.
fn scrub_strings(value: &mut Value, redaction: &crate::value::Redaction) {
    match value {
        Value::String(text) => {
            if let std::borrow::Cow::Owned(clean) = redaction.scrub(text) {
                *text = clean;
            }
        }
        Value::Array(items) => items.iter_mut().for_each(|v| scrub_strings(v, redaction)),
        Value::Object(fields) => fields
            .values_mut()
            .for_each(|v| scrub_strings(v, redaction)),
        _ => {}
    }
}
