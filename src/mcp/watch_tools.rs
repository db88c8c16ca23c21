//! `watch_expression`: follow a value over time without stopping the process.

use std::fmt::Write as _;
use std::time::Instant;

use rmcp::handler::server::common::schema_for_output;
use rmcp::handler::server::wrapper::Parameters;
use rmcp::model::CallToolResult;
use rmcp::{tool, tool_router};

use super::LiveprobeServer;
use super::args::WatchExpressionArgs;
use super::text::RenderText;
use crate::engine::{WatchCreated, WatchRequest};

#[tool_router(router = watch_tools, vis = "pub(super)")]
impl LiveprobeServer {
    #[tool(
        description = "Follow a value over time without stopping the process. mode `sample` evaluates `expression` every `interval_ms` (default 100) for `duration_s` (default 10) or until `max_events` (default 100): globals, statics and the heap reached from them are read with no thread stopped; with `tid`/`frame` the expression is on that frame's locals, the thread is held only while it is copied, and the watch ends (`done`) when the frame returns. `on_change` keeps only changed values; `condition` filters samples. Read items {seq, time, value} and the summary {count, min, max, first, last, changes} with get_probe_results. mode `write` (or `access`) sets a hardware watchpoint on the lvalue's address on every thread, threads created later included, without stopping writers: items {seq, time, tid, thread_name, old, new, frames}. list_probes and remove_probe manage a watch like any probe.",
        output_schema = schema_for_output::<WatchCreated>(),
        annotations(read_only_hint = false, destructive_hint = false, open_world_hint = false)
    )]
    async fn watch_expression(
        &self,
        Parameters(a): Parameters<WatchExpressionArgs>,
    ) -> CallToolResult {
        let started = Instant::now();
        let req = WatchRequest {
            pid: a.pid,
            expression: a.expression,
            mode: a.mode,
            interval_ms: a.interval_ms,
            duration_s: a.duration_s,
            max_events: a.max_events,
            on_change: a.on_change.unwrap_or(false),
            condition: a.condition,
            tid: a.tid,
            frame: a.frame.map(|f| f as usize),
            ttl_s: a.ttl_s,
            engine: a.engine,
            limits: a.limits.unwrap_or_default(),
        };
        self.reply(
            "watch_expression",
            started,
            self.engine.watch_expression(req).await,
        )
    }
}

impl RenderText for WatchCreated {
    fn render_text(&self) -> String {
        let mut s = format!(
            "watch {} ({:?}, {}) of a {} every {} ms for {} s, at most {} item(s)",
            self.probe_id,
            self.mode,
            serde_json::to_value(self.engine)
                .ok()
                .and_then(|v| v.as_str().map(str::to_string))
                .unwrap_or_default(),
            self.type_name,
            self.interval_ms,
            self.duration_s,
            self.max_events
        );
        if let (Some(tid), Some(frame)) = (self.tid, &self.frame) {
            let _ = write!(
                s,
                "; frame #{} {} of thread {tid}",
                frame.index,
                frame.function.as_deref().unwrap_or("??")
            );
        }
        if let Some(note) = &self.engine_note {
            let _ = write!(s, " ({note})");
        }
        s
    }
}
