//! Tools that place non-breaking probes and read what they captured.

use std::time::Instant;

use rmcp::handler::server::common::schema_for_output;
use rmcp::handler::server::wrapper::Parameters;
use rmcp::model::CallToolResult;
use rmcp::{tool, tool_router};

use super::args::*;
use super::{LiveprobeServer, budget};
use crate::engine::items::{ItemPart, ProbeItem};
use crate::engine::{
    EngineError, ProbeCreated, ProbeList, ProbeRemoved, ProbeRequest, ProbeResults, ProbeWhat,
};

#[tool_router(router = probe_tools, vis = "pub(super)")]
impl LiveprobeServer {
    #[tool(
        description = "Set a snapshot probe on a source line, function or address of a running process: when a thread passes it, that thread alone is held for microseconds while its locals (of `frames` frames) and `expressions` are captured; the process never stops. Read the captures with get_probe_results (use wait_ms to wait for traffic). `condition` filters hits; `max_hits` (default 1) and `ttl_s` (default 600) bound the cost. `dry_run` checks the location and lists the variables in scope without arming anything.",
        output_schema = schema_for_output::<ProbeCreated>(),
        annotations(read_only_hint = false, destructive_hint = false, open_world_hint = false)
    )]
    async fn set_snapshot(&self, Parameters(a): Parameters<SetSnapshotArgs>) -> CallToolResult {
        let started = Instant::now();
        let asked_frames = a.frames.unwrap_or(1);
        let frames = asked_frames.clamp(1, MAX_SNAPSHOT_FRAMES);
        let req = probe_request(
            a.common,
            a.max_hits.unwrap_or(1),
            ProbeWhat::Snapshot {
                frames: frames as usize,
                expressions: a.expressions.unwrap_or_default(),
                limits: a.limits.unwrap_or_default(),
            },
        );
        let mut answer = self.engine.set_probe(req).await;
        if asked_frames != frames
            && let Ok(created) = &mut answer
        {
            let said = format!(
                "frames {asked_frames} asked, {frames} captured per hit: a snapshot captures at most {MAX_SNAPSHOT_FRAMES} frames (at least 1)"
            );
            created.note = Some(match created.note.take() {
                Some(n) => format!("{n}; {said}"),
                None => said,
            });
        }
        self.reply("set_snapshot", started, answer)
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
        let max_bytes = budget::budget(a.max_bytes);
        let mut answer = self
            .engine
            .probe_results(
                a.probe_id,
                a.after.unwrap_or(0),
                a.limit.unwrap_or(20) as usize,
                a.wait_ms.unwrap_or(0),
            )
            .await;
        let mut notes = Vec::new();
        let mut hint = "call again with after=next_after for the next results; to expand a part that was cut, pass its path with after=<its seq - 1> (and skip=<elements kept> to page through a cut list), or a larger max_bytes".to_string();
        if let Some(path) = &a.path {
            let skip = a.skip.unwrap_or(0) as usize;
            answer = answer.and_then(|mut results| {
                select_path(&mut results, path, skip)?;
                Ok(results)
            });
            hint = format!(
                "the list was cut after skipping {skip}: call again with the same path and skip={skip} + the number kept"
            );
        } else if let Ok(results) = &mut answer
            && let Some(note) = page_to_budget(results, max_bytes)
        {
            notes.push(note);
        }
        self.reply_noted(
            "get_probe_results",
            started,
            answer,
            max_bytes,
            &hint,
            notes,
        )
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

/// Frames a snapshot captures per hit, at most: each frame's locals are
/// read while the hitting thread is held.
const MAX_SNAPSHOT_FRAMES: u32 = 16;

/// Leaves whole results for the next page when the answer would pass
/// `max_bytes`: `next_after` moves back to the last result kept, so paging
/// on loses nothing. At least one result is kept (the budget then cuts
/// inside it). Returns the note saying so.
fn page_to_budget(results: &mut ProbeResults, max_bytes: usize) -> Option<String> {
    let room = max_bytes.saturating_sub(budget::PAGE_RESERVE);
    let mut used = 0;
    let mut keep = 0;
    for item in &results.items {
        let size = serde_json::to_string(item).map(|s| s.len()).unwrap_or(0) + 1;
        if keep > 0 && used + size > room {
            break;
        }
        used += size;
        keep += 1;
    }
    let total = results.items.len();
    if keep >= total {
        return None;
    }
    let last_seq = results.items[keep - 1].seq();
    results.items.truncate(keep);
    results.next_after = last_seq;
    Some(format!(
        "items: first {keep} of {total} results kept, the rest left for the next page (next_after is {last_seq})"
    ))
}

/// Replaces the one result in `results` by the part of it at `path` (a
/// path as the budget's cut notes write it), leaving out its first `skip`
/// elements: how a part an earlier answer cut is expanded.
fn select_path(results: &mut ProbeResults, path: &str, skip: usize) -> Result<(), EngineError> {
    let Some(item) = results.items.first() else {
        return Err(EngineError::BadArgument(format!(
            "probe {} has no result after the given `after`: set `after` to the seq of the result to expand minus 1",
            results.probe_id
        )));
    };
    let seq = item.seq();
    let item = serde_json::to_value(item)
        .map_err(|e| EngineError::BadArgument(format!("cannot expand result {seq}: {e}")))?;
    let relative = strip_item_prefix(path.trim());
    let mut node = &item;
    for step in parse_path(relative).ok_or_else(|| {
        EngineError::BadArgument(format!(
            "cannot read path `{path}`: write it as the cut note does, e.g. `frames[0].variables[1].children`"
        ))
    })? {
        let next = match &step {
            PathStep::Key(k) => node.get(k.as_str()),
            PathStep::Index(i) => node.get(*i),
        };
        node = next.ok_or_else(|| {
            let keys: Vec<String> = node
                .as_object()
                .map(|m| m.keys().cloned().collect())
                .unwrap_or_default();
            let len = node.as_array().map(Vec::len);
            EngineError::BadArgument(match len {
                Some(n) => format!("path `{path}`: index out of range, the list has {n} element(s)"),
                None => format!("path `{path}`: no `{step}` here; present: {}", keys.join(", ")),
            })
        })?;
    }
    let mut value = node.clone();
    let mut skipped = 0;
    let list = match &mut value {
        serde_json::Value::Array(a) => Some(a),
        serde_json::Value::Object(m) => m.get_mut("children").and_then(|c| c.as_array_mut()),
        _ => None,
    };
    if let Some(list) = list {
        skipped = skip.min(list.len());
        list.drain(..skipped);
    }
    results.items = vec![ProbeItem::Part(ItemPart {
        seq,
        path: relative.to_string(),
        value,
        skipped: (skipped > 0).then_some(skipped),
    })];
    results.next_after = seq;
    Ok(())
}

fn strip_item_prefix(path: &str) -> &str {
    if let Some(rest) = path.strip_prefix("items[")
        && let Some(close) = rest.find("].")
        && rest[..close].chars().all(|c| c.is_ascii_digit())
    {
        return &rest[close + 2..];
    }
    path
}

enum PathStep {
    Key(String),
    Index(usize),
}

impl std::fmt::Display for PathStep {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PathStep::Key(k) => write!(f, "{k}"),
            PathStep::Index(i) => write!(f, "[{i}]"),
        }
    }
}

/// `frames[0].variables[1].children` → steps; `None` when malformed.
fn parse_path(path: &str) -> Option<Vec<PathStep>> {
    let mut steps = Vec::new();
    for part in path.split('.').filter(|p| !p.is_empty()) {
        let (key, mut rest) = match part.find('[') {
            Some(i) => (&part[..i], &part[i..]),
            None => (part, ""),
        };
        if !key.is_empty() {
            steps.push(PathStep::Key(key.to_string()));
        }
        while let Some(inner) = rest.strip_prefix('[') {
            let close = inner.find(']')?;
            steps.push(PathStep::Index(inner[..close].parse().ok()?));
            rest = &inner[close + 1..];
        }
        if !rest.is_empty() {
            return None;
        }
    }
    Some(steps)
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
        keep: common.keep.unwrap_or(false),
        what,
    }
}
