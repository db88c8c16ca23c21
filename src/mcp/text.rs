//! Short text renderings of the answers, for a reader who pays per token.
//! The structured content carries every field; the text carries what a
//! reader needs to decide the next step.

use std::fmt::Write;

use crate::engine::items::{CapturedFrame, ProbeItem, WatchItem};
use crate::engine::report::*;
use crate::engine::{EvaluateReport, LocalsReport};
use crate::engine::{ProbeCreated, ProbeList, ProbeRemoved, ProbeResults, SummaryView};
use crate::value::{shorten_type_name, value_from_json};

/// A compact, human-readable rendering of an answer.
pub trait RenderText {
    /// The text shown as the tool result's content.
    fn render_text(&self) -> String;
}

fn location(function: &Option<String>, file: &Option<String>, line: Option<u32>) -> String {
    let mut s = function
        .as_deref()
        .map(|f| shorten_type_name(f).into_owned())
        .unwrap_or_else(|| "??".to_string());
    if let Some(file) = file {
        let base = file.rsplit('/').next().unwrap_or(file);
        let _ = write!(s, " at {base}");
        if let Some(line) = line {
            let _ = write!(s, ":{line}");
        }
    }
    s
}

impl RenderText for ProcessList {
    fn render_text(&self) -> String {
        let mut s = format!("{} process(es)", self.total);
        if self.total > self.processes.len() {
            let _ = write!(s, ", first {} shown", self.processes.len());
        }
        s.push('\n');
        for p in &self.processes {
            let _ = write!(s, "{} {} [{}] {}", p.pid, p.name, p.user, p.cmdline);
            if let Some(r) = &p.reason {
                let _ = write!(s, " — not attachable: {r}");
            }
            s.push('\n');
        }
        s
    }
}

impl RenderText for AttachReport {
    fn render_text(&self) -> String {
        let mut s = format!(
            "attached to {} ({}): {} thread(s), languages [{}], {} module(s), {} with debug info, in {:.1} ms (threads held {} µs)",
            self.pid,
            self.exe,
            self.threads,
            self.languages.join(", "),
            self.modules,
            self.modules_with_debug_info,
            self.attach_ms,
            self.held_us
        );
        if self.already_attached {
            s.push_str(" [already attached]");
        }
        for warning in &self.warnings {
            let _ = write!(s, "\nWARNING: {warning}");
        }
        if let Some(hint) = &self.debug_info.hint {
            let _ = write!(s, "\n{hint}");
        }
        s
    }
}

impl RenderText for DetachReport {
    fn render_text(&self) -> String {
        format!(
            "detached from {}; {} probe(s) removed",
            self.pid, self.probes_removed
        )
    }
}

impl RenderText for ThreadList {
    fn render_text(&self) -> String {
        let mut s = format!("{} thread(s) in {}\n", self.threads.len(), self.pid);
        for t in &self.threads {
            let _ = write!(
                s,
                "{} \"{}\" {} in {}",
                t.tid,
                t.name,
                t.state,
                location(&t.function, &t.file, t.line)
            );
            if let Some(inner) = &t.innermost {
                let _ = write!(s, " (inside {inner})");
            }
            s.push('\n');
        }
        s
    }
}

impl RenderText for StackReport {
    fn render_text(&self) -> String {
        let mut s = String::new();
        for t in &self.threads {
            let _ = writeln!(
                s,
                "thread {} \"{}\" (held {} µs):",
                t.tid, t.name, t.held_us
            );
            for f in &t.frames {
                let _ = write!(
                    s,
                    "  #{} {} {}",
                    f.index,
                    f.pc,
                    location(&f.function, &f.file, f.line)
                );
                if f.inlined {
                    s.push_str(" [inlined]");
                }
                if f.file.is_none()
                    && let Some(m) = &f.module
                {
                    let _ = write!(s, " ({m})");
                }
                s.push('\n');
            }
            if t.truncated {
                s.push_str("  … more frames: raise max_frames\n");
            }
        }
        s
    }
}

impl RenderText for FunctionList {
    fn render_text(&self) -> String {
        if self.functions.is_empty() {
            return "no function matches".to_string();
        }
        let mut s = String::new();
        // Overloads (one name, several functions) are chosen by file:line.
        let mut seen: Vec<(&str, usize)> = Vec::new();
        for f in &self.functions {
            match seen.iter_mut().find(|(n, _)| *n == f.name) {
                Some((_, count)) => *count += 1,
                None => seen.push((&f.name, 1)),
            }
        }
        for (name, count) in seen.iter().filter(|(_, c)| *c > 1) {
            let _ = writeln!(
                s,
                "{count} functions match `{}`: pick one by file:line (or address) as the location",
                shorten_type_name(name)
            );
        }
        for f in &self.functions {
            let mut name = shorten_type_name(&f.name).into_owned();
            if let Some(sig) = &f.signature {
                name.push_str(sig);
            }
            let _ = writeln!(
                s,
                "{} {}",
                f.address,
                location(&Some(name), &f.file, f.line)
            );
        }
        if self.truncated {
            s.push_str("… more matches: refine the query or raise limit\n");
        }
        s
    }
}

impl RenderText for SourceListing {
    fn render_text(&self) -> String {
        let mut s = format!("{} ({} lines)", self.file, self.total_lines);
        if self.stale {
            s.push_str(" [STALE: modified after the binary was built]");
        }
        s.push('\n');
        for l in &self.lines {
            let _ = writeln!(
                s,
                "{}{:>5} {}",
                if l.code { '*' } else { ' ' },
                l.line,
                l.text
            );
        }
        s.push_str("(* = a probe can go on this line)\n");
        s
    }
}

impl RenderText for LocationReport {
    fn render_text(&self) -> String {
        let mut s = format!(
            "{} resolves to {} address(es)",
            self.location,
            self.resolved.len()
        );
        if let Some(note) = &self.note {
            let _ = write!(s, " ({note})");
        }
        s.push('\n');
        for r in &self.resolved {
            let _ = write!(s, "site {}: ", r.site);
            site_text(&mut s, r);
        }
        s
    }
}

impl RenderText for LocalsReport {
    fn render_text(&self) -> String {
        let mut s = format!(
            "thread {} frame #{} {}\n",
            self.tid,
            self.frame.index,
            location(&self.frame.function, &self.frame.file, self.frame.line)
        );
        if self.variables.is_empty() {
            s.push_str("(no arguments or locals in scope)\n");
        }
        for v in &self.variables {
            s.push_str(&v.to_text());
            s.push('\n');
        }
        s
    }
}

impl RenderText for EvaluateReport {
    fn render_text(&self) -> String {
        let mut s = String::new();
        if let Some(f) = &self.frame {
            let _ = write!(
                s,
                "[frame #{} {}] ",
                f.index,
                location(&f.function, &f.file, f.line)
            );
        }
        s.push_str(&self.value.to_text());
        s
    }
}

impl RenderText for ProbeCreated {
    fn render_text(&self) -> String {
        let mut s = match self.probe_id {
            Some(id) => format!(
                "probe {id} armed at {} address(es) (max_hits {}, ttl {} s)",
                self.resolved.len(),
                self.max_hits,
                self.ttl_s
            ),
            None => format!("dry run: would arm {} address(es)", self.resolved.len()),
        };
        if let Some(note) = &self.note {
            let _ = write!(s, "; {note}");
        }
        s.push('\n');
        for r in &self.resolved {
            let _ = write!(s, "  site {}: ", r.site);
            site_text(&mut s, r);
        }
        for r in &self.end_resolved {
            s.push_str("  end: ");
            site_text(&mut s, r);
        }
        if let Some(vars) = &self.variables {
            s.push_str("in scope: ");
            let names: Vec<String> = vars
                .iter()
                .map(|v| format!("{}: {}", v.name, shorten_type_name(&v.type_name)))
                .collect();
            s.push_str(&names.join(", "));
            s.push('\n');
        }
        s
    }
}

impl RenderText for ProbeList {
    fn render_text(&self) -> String {
        if self.probes.is_empty() {
            return "no probes".to_string();
        }
        let mut s = String::new();
        for p in &self.probes {
            let _ = write!(
                s,
                "probe {} pid {} {} at {}: {}, {} hit(s), {:.1} µs/hit",
                p.probe_id,
                p.pid,
                json_name(&p.kind),
                p.location,
                json_name(&p.state),
                p.hits,
                p.mean_handler_us
            );
            if let Some(r) = &p.reason {
                let _ = write!(s, " — {r}");
            }
            s.push('\n');
            if p.per_site.len() > 1 {
                for site in &p.per_site {
                    let _ = writeln!(
                        s,
                        "  site {} {} {}: {} hit(s)",
                        site.site,
                        site.address,
                        location(&site.function, &None, site.line),
                        site.hits
                    );
                }
            }
        }
        s
    }
}

/// One resolved site on a line: address, function, file:line, and the caller of an inlined copy.
fn site_text(s: &mut String, r: &crate::engine::report::ResolvedSiteRow) {
    let _ = write!(
        s,
        "{} {}",
        r.address,
        location(&r.function, &r.file, r.line)
    );
    match (&r.inlined_into, r.inlined) {
        (Some(caller), _) => {
            let _ = write!(s, " [inlined into {caller}]");
        }
        (None, true) => s.push_str(" [inlined]"),
        (None, false) => {}
    }
    s.push('\n');
}

/// An enum's name as the JSON shows it (`target_exited`, not `TargetExited`).
fn json_name<T: serde::Serialize>(v: &T) -> String {
    serde_json::to_value(v)
        .ok()
        .and_then(|v| v.as_str().map(str::to_string))
        .unwrap_or_default()
}

impl RenderText for ProbeResults {
    fn render_text(&self) -> String {
        let state = json_name(&self.state);
        let mut s = format!(
            "probe {} {state}, {} hit(s), {} new result(s), next_after {}",
            self.probe_id,
            self.hits,
            self.items.len(),
            self.next_after
        );
        if let Some(r) = &self.reason {
            let _ = write!(s, " ({r})");
        }
        if self.dropped > 0 {
            let _ = write!(s, "; {} older result(s) were dropped", self.dropped);
        }
        if self.wait_capped {
            s.push_str("; wait_ms was capped at 30000");
        }
        if let Some(summary) = &self.summary {
            let _ = write!(
                s,
                "; {} sample(s), {} change(s)",
                summary.count, summary.changes
            );
            if let (Some(min), Some(max)) = (summary.min, summary.max) {
                let _ = write!(s, ", min {min}, max {max}");
            }
            if let (Some(first), Some(last)) = (&summary.first, &summary.last) {
                let _ = write!(s, ", first {first}, last {last}");
            }
            if summary.faults > 0 {
                let _ = write!(s, ", {} unreadable", summary.faults);
            }
        }
        s.push('\n');
        for item in &self.items {
            item_lines(item, &mut s);
        }
        s
    }
}

/// The lines of one probe result: a heading `#seq [tid] site n …`, then
/// its frames and values as `read_locals` shows them.
fn item_lines(item: &ProbeItem, s: &mut String) {
    // Which site of the location the hit came from.
    let site = |n: Option<usize>| n.map(|n| format!(" site {n}")).unwrap_or_default();
    let frames = |frames: &[CapturedFrame], s: &mut String| {
        for f in frames {
            let _ = writeln!(s, "  in {}", location(&f.function, &f.file, f.line));
            for v in &f.variables {
                let _ = writeln!(s, "    {}", v.to_text());
            }
        }
    };
    match item {
        ProbeItem::Part(part) => {
            let _ = write!(s, "#{} {}", part.seq, part.path);
            if let Some(skipped) = part.skipped {
                let _ = write!(s, " (first {skipped} left out)");
            }
            s.push('\n');
            match &part.value {
                serde_json::Value::Array(list) => {
                    for v in list {
                        let _ = writeln!(s, "  {}", compact_value(v));
                    }
                }
                v if v.get("value").is_some() => {
                    let _ = writeln!(s, "  {}", compact_value(v));
                }
                other => {
                    let _ = writeln!(s, "  {other}");
                }
            }
        }
        ProbeItem::Logpoint(line) => {
            let _ = writeln!(
                s,
                "#{} [{}]{} {}",
                line.seq,
                line.tid,
                site(line.site),
                line.text
            );
        }
        ProbeItem::Snapshot(snap) => {
            let _ = writeln!(
                s,
                "#{} [{}]{} {}",
                snap.seq,
                snap.tid,
                site(snap.site),
                snap.time
            );
            frames(&snap.frames, s);
            for v in &snap.expressions {
                let _ = writeln!(s, "  {}", v.to_text());
            }
        }
        ProbeItem::Metric(metric) => {
            let _ = writeln!(s, "#{} {}", metric.seq, metric_line(&metric.summary));
        }
        ProbeItem::Watch(WatchItem::Sample(sample)) => {
            let _ = writeln!(
                s,
                "#{} {} {}",
                sample.seq,
                sample.time,
                sample.value.to_text()
            );
        }
        ProbeItem::Watch(WatchItem::Change(change)) => {
            let _ = writeln!(
                s,
                "#{} [{} {}] {}: {} -> {}",
                change.seq,
                change.tid,
                change.thread_name,
                change.time,
                change.old.to_text(),
                change.new.to_text()
            );
            for f in &change.frames {
                let inlined = if f.inlined { " (inlined)" } else { "" };
                let _ = writeln!(
                    s,
                    "  in {}{inlined}",
                    location(&f.function, &f.file, f.line)
                );
            }
        }
    }
    let note = match item {
        ProbeItem::Snapshot(i) => i.capture_note.as_deref(),
        ProbeItem::Logpoint(i) => i.capture_note.as_deref(),
        ProbeItem::Watch(WatchItem::Change(change)) => change.frames_note.as_deref(),
        _ => None,
    };
    if let Some(note) = note {
        let _ = writeln!(s, "  ({note})");
    }
}

/// One line for a value already in JSON form: its summary and the first
/// elements of its children, as `read_locals` shows a value.
fn compact_value(v: &serde_json::Value) -> String {
    value_from_json(v).to_text()
}

/// A metric summary as words: `count 12, min 1, max 9, mean 4.25, p50 4, …`.
fn metric_line(summary: &SummaryView) -> String {
    let mut parts = vec![format!("count {}", summary.count)];
    let stats = [
        ("min", summary.min),
        ("max", summary.max),
        ("mean", summary.mean),
        ("p50", summary.p50),
        ("p90", summary.p90),
        ("p99", summary.p99),
    ];
    for (key, n) in stats {
        if let Some(n) = n {
            let shown = if n.fract() == 0.0 && n.abs() < 1e15 {
                format!("{}", n as i64)
            } else {
                format!("{n:.2}")
            };
            parts.push(format!("{key} {shown}"));
        }
    }
    if summary.count == 0 {
        parts.push("no observations yet".into());
    }
    parts.join(", ")
}

impl RenderText for ProbeRemoved {
    fn render_text(&self) -> String {
        format!("probe {} removed after {} hit(s)", self.probe_id, self.hits)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::items::{LogpointItem, WatchChange};
    use crate::value::{Unavailable, Value};

    #[test]
    fn result_lines_name_the_item_and_say_why_a_value_is_missing() {
        let mut s = String::new();
        item_lines(
            &ProbeItem::Logpoint(LogpointItem {
                seq: 3,
                time: "t".into(),
                tid: 42,
                site: Some(1),
                text: "order 7".into(),
                capture_note: None,
                held_us: None,
            }),
            &mut s,
        );
        item_lines(
            &ProbeItem::Watch(WatchItem::Change(Box::new(WatchChange {
                seq: 4,
                time: "t".into(),
                tid: 43,
                thread_name: "worker".into(),
                old: Value::leaf("x", "int", "1"),
                new: Value::unavailable("x", "int", Unavailable::OPTIMIZED_OUT),
                frames: vec![crate::engine::report::FrameRow {
                    index: 0,
                    pc: "0x401000".into(),
                    function: Some("work".into()),
                    file: Some("w.c".into()),
                    line: Some(9),
                    inlined: false,
                    module: None,
                    own_code: true,
                }],
                frames_note: Some("the stack ends here".into()),
            }))),
            &mut s,
        );
        assert_eq!(
            s,
            "#3 [42] site 1 order 7\n#4 [43 worker] t: x: int = 1 -> x: int = <optimized out>\n  in work at w.c:9\n  (the stack ends here)\n"
        );
    }
}
