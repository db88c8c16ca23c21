//! The results a probe keeps, as types: one [`ProbeItem`] per snapshot hit,
//! logpoint line, metric summary or watch event, shaped as TOOLS.md says
//! (`get_probe_results` items). The engine builds these, the store keeps
//! them, and `get_probe_results`'s output schema is derived from them, so
//! the schema and the answer cannot drift apart.
//!
//! The JSON carries no kind tag (the contract has none): each kind is told
//! by its own fields (`frames`, `text`, `count`, `value`, `old`/`new`).

use schemars::JsonSchema;
use serde::Serialize;

use crate::value::Value;

/// One result of a probe, numbered by `seq` in arrival order.
#[derive(Debug, Clone, PartialEq, Serialize, JsonSchema)]
#[serde(untagged)]
pub enum ProbeItem {
    /// What a snapshot captured at one hit.
    Snapshot(SnapshotItem),
    /// The line a logpoint rendered at one hit.
    Logpoint(LogpointItem),
    /// A metric's summary so far.
    Metric(MetricItem),
    /// A watched expression's sample or change.
    Watch(WatchItem),
    /// The part of an earlier result a `path` asked for (how a cut part is expanded).
    Part(ItemPart),
}

/// What a snapshot captured at one hit.
#[derive(Debug, Clone, PartialEq, Serialize, JsonSchema)]
pub struct SnapshotItem {
    /// Sequence number, from 1.
    pub seq: u64,
    /// When the hit happened, RFC 3339 UTC.
    pub time: String,
    /// The thread that hit.
    pub tid: i32,
    /// The site the hit came from (as in `resolved`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub site: Option<usize>,
    /// Locals of the hit frame and its callers, innermost first.
    pub frames: Vec<CapturedFrame>,
    /// The probe's expressions, each named by its text.
    pub expressions: Vec<Value>,
    /// Why some values show as read errors (a kernel-side capture that did
    /// not hold what they needed).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub capture_note: Option<String>,
    /// How long the ptrace hit held its thread (stop seen to resumed), µs;
    /// absent when the thread was not held by liveprobe (uprobe engine).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub held_us: Option<f64>,
}

/// One frame of a snapshot (or of a watch event's stack).
#[derive(Debug, Clone, PartialEq, Serialize, JsonSchema)]
pub struct CapturedFrame {
    /// Function name, when known.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub function: Option<String>,
    /// Source file, when known.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub file: Option<String>,
    /// Source line, when known.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub line: Option<u32>,
    /// Arguments and locals in scope.
    pub variables: Vec<Value>,
}

/// The line a logpoint rendered at one hit.
#[derive(Debug, Clone, PartialEq, Serialize, JsonSchema)]
pub struct LogpointItem {
    /// Sequence number, from 1.
    pub seq: u64,
    /// When the hit happened, RFC 3339 UTC.
    pub time: String,
    /// The thread that hit.
    pub tid: i32,
    /// The site the hit came from (as in `resolved`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub site: Option<usize>,
    /// The message with its holes filled; a hole that could not be read
    /// shows `<reason>`.
    pub text: String,
    /// Why some holes show read errors (a kernel-side capture that did not
    /// hold what they needed).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub capture_note: Option<String>,
    /// How long the ptrace hit held its thread (stop seen to resumed), µs;
    /// absent when the thread was not held by liveprobe (uprobe engine).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub held_us: Option<f64>,
}

/// A metric's summary so far (a metric has one item, renewed as it counts).
#[derive(Debug, Clone, PartialEq, Serialize, JsonSchema)]
pub struct MetricItem {
    /// Observations so far (a metric's `seq` is its count).
    pub seq: u64,
    /// When the summary was taken, RFC 3339 UTC.
    pub time: String,
    /// Count and, for a histogram or duration, min, max, mean and percentiles.
    #[serde(flatten)]
    pub summary: SummaryView,
    /// Hits at each site.
    pub per_site: Vec<SiteHits>,
}

/// A watched expression's event: a periodic sample, or a write/access
/// caught by a hardware watchpoint.
#[derive(Debug, Clone, PartialEq, Serialize, JsonSchema)]
#[serde(untagged)]
pub enum WatchItem {
    /// `mode: sample`: the value at one tick.
    Sample(WatchSample),
    /// `mode: write` or `access`: the value before and after, and who touched it.
    /// Boxed: it is several times the size of the other items.
    Change(Box<WatchChange>),
}

/// A watched value at one tick (`watch_expression` with `mode: sample`).
#[derive(Debug, Clone, PartialEq, Serialize, JsonSchema)]
pub struct WatchSample {
    /// Sequence number, from 1.
    pub seq: u64,
    /// When it was read, RFC 3339 UTC.
    pub time: String,
    /// The value read.
    pub value: Value,
}

/// A write to (or access of) a watched address (`mode: write | access`).
#[derive(Debug, Clone, PartialEq, Serialize, JsonSchema)]
pub struct WatchChange {
    /// Sequence number, from 1.
    pub seq: u64,
    /// When the watchpoint fired, RFC 3339 UTC.
    pub time: String,
    /// The thread that touched the address.
    pub tid: i32,
    /// That thread's name.
    pub thread_name: String,
    /// The value before.
    pub old: Value,
    /// The value after.
    pub new: Value,
    /// The touching thread's stack, innermost first (inlined calls are
    /// frames of their own).
    pub frames: Vec<super::report::FrameRow>,
    /// Why `frames` stops before the thread's outermost frame, when it
    /// does: the stack copied at the write ended there (outer frames are
    /// left out, never read from the live stack).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub frames_note: Option<String>,
}

/// The part of a result at `path`, as a `get_probe_results` call with
/// `path` asks for it.
#[derive(Debug, Clone, PartialEq, Serialize, JsonSchema)]
pub struct ItemPart {
    /// The result it comes from.
    pub seq: u64,
    /// The path inside that result, e.g. `frames[0].variables[1].children`.
    pub path: String,
    /// What is at the path (a value, a list of values, or a plain field).
    pub value: serde_json::Value,
    /// Elements of a list left out at its start (`skip`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub skipped: Option<usize>,
}

impl ProbeItem {
    /// Its sequence number.
    pub fn seq(&self) -> u64 {
        match self {
            ProbeItem::Snapshot(i) => i.seq,
            ProbeItem::Logpoint(i) => i.seq,
            ProbeItem::Metric(i) => i.seq,
            ProbeItem::Watch(WatchItem::Sample(i)) => i.seq,
            ProbeItem::Watch(WatchItem::Change(i)) => i.seq,
            ProbeItem::Part(i) => i.seq,
        }
    }

    /// Numbers it (the store does, when it takes it in).
    pub fn set_seq(&mut self, seq: u64) {
        match self {
            ProbeItem::Snapshot(i) => i.seq = seq,
            ProbeItem::Logpoint(i) => i.seq = seq,
            ProbeItem::Metric(i) => i.seq = seq,
            ProbeItem::Watch(WatchItem::Sample(i)) => i.seq = seq,
            ProbeItem::Watch(WatchItem::Change(i)) => i.seq = seq,
            ProbeItem::Part(i) => i.seq = seq,
        }
    }

    /// Says which site a snapshot or logpoint hit came from.
    pub fn set_site(&mut self, site: Option<usize>) {
        match self {
            ProbeItem::Snapshot(i) => i.site = site,
            ProbeItem::Logpoint(i) => i.site = site,
            _ => {}
        }
    }

    /// Says how long a snapshot's or logpoint's ptrace hit held its thread.
    pub fn set_held(&mut self, held: Option<std::time::Duration>) {
        let us = held.map(|h| (h.as_nanos() as f64 / 10.0).round() / 100.0);
        match self {
            ProbeItem::Snapshot(i) => i.held_us = us,
            ProbeItem::Logpoint(i) => i.held_us = us,
            _ => {}
        }
    }

    /// Adds why some of a snapshot's or logpoint's values are missing.
    pub fn set_capture_note(&mut self, note: String) {
        match self {
            ProbeItem::Snapshot(i) => i.capture_note = Some(note),
            ProbeItem::Logpoint(i) => i.capture_note = Some(note),
            _ => {}
        }
    }
}

/// A summary as clients see it.
#[derive(Debug, Clone, PartialEq, Serialize, schemars::JsonSchema)]
pub struct SummaryView {
    /// Observations.
    pub count: u64,
    /// Smallest.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub min: Option<f64>,
    /// Largest.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max: Option<f64>,
    /// Mean.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mean: Option<f64>,
    /// Median.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub p50: Option<f64>,
    /// 90th percentile.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub p90: Option<f64>,
    /// 99th percentile.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub p99: Option<f64>,
}

/// Hits recorded at one site of a probe.
#[derive(Debug, Clone, PartialEq, Serialize, JsonSchema)]
pub struct SiteHits {
    /// Site number (as in `resolved`).
    pub site: usize,
    /// Runtime address, hex.
    pub address: String,
    /// The function the site belongs to.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub function: Option<String>,
    /// Source line.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub line: Option<u32>,
    /// Hits recorded there.
    pub hits: u64,
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn snapshot() -> ProbeItem {
        ProbeItem::Snapshot(SnapshotItem {
            seq: 0,
            time: "2026-11-27T00:00:00.000000Z".into(),
            tid: 7,
            site: None,
            frames: vec![CapturedFrame {
                function: Some("work".into()),
                file: None,
                line: Some(12),
                variables: vec![Value::leaf("n", "int", "3")],
            }],
            expressions: vec![],
            capture_note: None,
            held_us: None,
        })
    }

    #[test]
    fn a_snapshot_serializes_as_the_contract_says() {
        let mut item = snapshot();
        item.set_seq(4);
        item.set_site(Some(1));
        assert_eq!(item.seq(), 4);
        assert_eq!(
            serde_json::to_value(&item).expect("json"),
            json!({
                "seq": 4, "time": "2026-11-27T00:00:00.000000Z", "tid": 7, "site": 1,
                "frames": [{"function": "work", "line": 12,
                            "variables": [{"name": "n", "type": "int", "value": "3"}]}],
                "expressions": [],
            })
        );
    }

    #[test]
    fn a_metric_flattens_its_summary() {
        let item = ProbeItem::Metric(MetricItem {
            seq: 2,
            time: "t".into(),
            summary: SummaryView {
                count: 2,
                min: Some(1.0),
                max: Some(3.0),
                mean: Some(2.0),
                p50: None,
                p90: None,
                p99: None,
            },
            per_site: vec![],
        });
        assert_eq!(
            serde_json::to_value(&item).expect("json"),
            json!({"seq": 2, "time": "t", "count": 2, "min": 1.0, "max": 3.0, "mean": 2.0, "per_site": []})
        );
    }

    #[test]
    fn watch_items_have_the_contract_fields() {
        let sample = ProbeItem::Watch(WatchItem::Sample(WatchSample {
            seq: 1,
            time: "t".into(),
            value: Value::leaf("x", "int", "1"),
        }));
        let v = serde_json::to_value(&sample).expect("json");
        assert_eq!(v["value"]["value"], "1");
        let change = ProbeItem::Watch(WatchItem::Change(Box::new(WatchChange {
            seq: 2,
            time: "t".into(),
            tid: 9,
            thread_name: "worker".into(),
            old: Value::leaf("x", "int", "1"),
            new: Value::leaf("x", "int", "2"),
            frames: vec![],
            frames_note: None,
        })));
        let v = serde_json::to_value(&change).expect("json");
        let keys: Vec<&String> = v
            .as_object()
            .map(|o| o.keys().collect())
            .unwrap_or_default();
        assert_eq!(
            keys,
            ["seq", "time", "tid", "thread_name", "old", "new", "frames"]
        );
    }

    #[test]
    fn the_schema_names_every_kind() {
        let schema = serde_json::to_value(schemars::schema_for!(ProbeItem)).expect("schema");
        let text = schema.to_string();
        for field in [
            "frames",
            "text",
            "per_site",
            "thread_name",
            "path",
            "capture_note",
        ] {
            assert!(text.contains(field), "{field} missing from {text}");
        }
    }
}
