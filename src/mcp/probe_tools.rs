//! Tools that place non-breaking probes and read what they captured.

use std::time::Instant;

use rmcp::handler::server::common::schema_for_output;
use rmcp::handler::server::wrapper::Parameters;
use rmcp::model::CallToolResult;
use rmcp::{tool, tool_router};

use super::LiveprobeServer;
use super::args::*;
use crate::engine::{ProbeCreated, ProbeList, ProbeRemoved, ProbeRequest, ProbeResults, ProbeWhat};

#[tool_router(router = probe_tools, vis = "pub(super)")]
impl LiveprobeServer {
    #[tool(
        description = "Set a snapshot probe on a source line, function or address of a running process: when a thread passes it, that thread alone is held for microseconds while its locals (of `frames` frames) and `expressions` are captured; the process never stops. Read the captures with get_probe_results (use wait_ms to wait for traffic). `condition` filters hits; `max_hits` (default 1) and `ttl_s` (default 600) bound the cost. `dry_run` checks the location and lists the variables in scope without arming anything.",
        output_schema = schema_for_output::<ProbeCreated>(),
        annotations(read_only_hint = false, destructive_hint = false, open_world_hint = false)
    )]
    async fn set_snapshot(&self, Parameters(a): Parameters<SetSnapshotArgs>) -> CallToolResult {
        let started = Instant::now();
        let req = probe_request(
            a.common,
            a.max_hits.unwrap_or(1),
            ProbeWhat::Snapshot {
                frames: a.frames.unwrap_or(1).clamp(1, 16) as usize,
                expressions: a.expressions.unwrap_or_default(),
                limits: a.limits.unwrap_or_default(),
            },
        );
        self.reply("set_snapshot", started, self.engine.set_probe(req).await)
    }

    #[tool(
        description = "Set a logpoint: a dynamic log line rendered at every pass of a source line, function or address, without stopping the process. `message` is a template with `{expression}` holes, e.g. `order {o->id} total={total}`. Read the lines with get_probe_results. `condition`, `max_hits` (default 1000) and `ttl_s` (default 600) bound it.",
        output_schema = schema_for_output::<ProbeCreated>(),
        annotations(read_only_hint = false, destructive_hint = false, open_world_hint = false)
    )]
    async fn set_logpoint(&self, Parameters(a): Parameters<SetLogpointArgs>) -> CallToolResult {
        let started = Instant::now();
        let req = probe_request(
            a.common,
            a.max_hits.unwrap_or(1000),
            ProbeWhat::Logpoint { message: a.message },
        );
        self.reply("set_logpoint", started, self.engine.set_probe(req).await)
    }

    #[tool(
        description = "Set a metric probe: `count` of passes, `histogram` of a numeric `expression`, or `duration` in µs from `location` to `end_location`, or to the function's return when no end_location is given (per thread). Its result is a summary {count, min, max, mean, p50, p90, p99}, read with get_probe_results.",
        output_schema = schema_for_output::<ProbeCreated>(),
        annotations(read_only_hint = false, destructive_hint = false, open_world_hint = false)
    )]
    async fn set_metric(&self, Parameters(a): Parameters<SetMetricArgs>) -> CallToolResult {
        let started = Instant::now();
        let req = probe_request(
            a.common,
            a.max_hits.unwrap_or(10_000_000),
            ProbeWhat::Metric {
                kind: a.kind,
                expression: a.expression,
                end_location: a.end_location,
            },
        );
        self.reply("set_metric", started, self.engine.set_probe(req).await)
    }

    #[tool(
        description = "List probes (of one process, or all) with state (armed, done, expired, throttled, removed, target_exited, error), hits, why they ended, and what they cost the target per hit.",
        output_schema = schema_for_output::<ProbeList>(),
        annotations(read_only_hint = true, open_world_hint = false)
    )]
    async fn list_probes(&self, Parameters(a): Parameters<ListProbesArgs>) -> CallToolResult {
        let started = Instant::now();
        self.reply(
            "list_probes",
            started,
            Ok(self.engine.list_probes(a.pid).await),
        )
    }

    #[tool(
        description = "Read a probe's results after sequence number `after` (pass the previous `next_after`). `wait_ms` long-polls until a new result arrives or the time is up (capped at 30000 ms): no need to loop on sleep.",
        output_schema = schema_for_output::<ProbeResults>(),
        annotations(read_only_hint = true, open_world_hint = false)
    )]
    async fn get_probe_results(
        &self,
        Parameters(a): Parameters<GetProbeResultsArgs>,
    ) -> CallToolResult {
        let started = Instant::now();
        let answer = self
            .engine
            .probe_results(
                a.probe_id,
                a.after.unwrap_or(0),
                a.limit.unwrap_or(20) as usize,
                a.wait_ms.unwrap_or(0),
            )
            .await;
        self.reply("get_probe_results", started, answer)
    }

    #[tool(
        description = "Remove a probe: its breakpoints leave the process at once. Its results are gone with it.",
        output_schema = schema_for_output::<ProbeRemoved>(),
        annotations(read_only_hint = false, destructive_hint = false, open_world_hint = false)
    )]
    async fn remove_probe(&self, Parameters(a): Parameters<RemoveProbeArgs>) -> CallToolResult {
        let started = Instant::now();
        self.reply(
            "remove_probe",
            started,
            self.engine.remove_probe(a.probe_id).await,
        )
    }
}

fn probe_request(common: ProbeCommonArgs, max_hits: u64, what: ProbeWhat) -> ProbeRequest {
    ProbeRequest {
        pid: common.pid,
        location: common.location,
        source_contains: common.source_contains,
        condition: common.condition,
        max_hits,
        ttl_s: common.ttl_s.unwrap_or(600),
        dry_run: common.dry_run.unwrap_or(false),
        engine: common.engine,
        function: common.function,
        sites: common.sites,
        what,
    }
}
