//! The capture planner against the decoder, through the real binary: every
//! local of the Rust and C++ values fixtures (every pretty printer liveprobe
//! has) is either planned for the kernel-side capture, and then reads on the
//! uprobe engine exactly as a stopped thread reads it on ptrace, or refused
//! with a reason (`engine_note`), never planned short (no `capture_note`).
//! Each local is read as a logpoint hole (its one-line summary: a string's
//! text, a container's length, reference counts, an optional's payload):
//! a snapshot always captures the whole frame, which these fixtures' enums
//! and maps make unplannable as a whole.

mod common;

use common::probes::*;
use common::*;
use serde_json::{Value, json};

/// `file:line` of the first line of a fixture containing `needle`.
fn location(rel: &str, needle: &str) -> String {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(rel);
    let text = std::fs::read_to_string(&path).expect("fixture source");
    let line = text
        .lines()
        .position(|l| l.contains(needle))
        .unwrap_or_else(|| panic!("{needle} not in {rel}"));
    let file = path.file_name().and_then(|f| f.to_str()).expect("name");
    format!("{file}:{}", line + 1)
}

/// A value's JSON with addresses blotted out (two processes, two layouts).
fn without_addresses(value: &Value) -> String {
    let text = value.to_string();
    let mut out = String::new();
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '0' && chars.peek() == Some(&'x') {
            chars.next();
            while chars.peek().is_some_and(|d| d.is_ascii_hexdigit()) {
                chars.next();
            }
            out.push_str("0x_");
        } else {
            out.push(c);
        }
    }
    out
}

/// The names of the locals at `location` (from a ptrace snapshot).
fn local_names(exe: &std::path::Path, location: &str) -> Vec<String> {
    let mut fx = Fixture::start(exe);
    let mut c = McpClient::start();
    c.call("attach", json!({"pid": fx.pid})).ok();
    let snap = c
        .call(
            "set_snapshot",
            json!({"pid": fx.pid, "location": location, "engine": "ptrace", "max_hits": 1}),
        )
        .ok();
    fx.send("go");
    fx.expect_line("done");
    let r = results(&mut c, &snap["probe_id"], 0, 5000);
    let names = r["items"][0]["frames"][0]["variables"]
        .as_array()
        .unwrap_or_else(|| panic!("no frame: {r}"))
        .iter()
        .filter_map(|v| v["name"].as_str())
        .filter(|name| !name.contains(' '))
        .map(str::to_string)
        .collect();
    assert_eq!(fx.wait_exit(), Some(0));
    names
}

/// One logpoint `{name}` per local on `engine` (those `names` only), hit
/// once; answers each name's text.
fn logged(
    exe: &std::path::Path,
    location: &str,
    names: &[String],
    engine: &str,
) -> Vec<(String, String)> {
    let mut fx = Fixture::start(exe);
    let mut c = McpClient::start();
    c.call("attach", json!({"pid": fx.pid})).ok();
    let probes: Vec<(String, Value)> = names
        .iter()
        .map(|name| {
            let log = c
                .call(
                    "set_logpoint",
                    json!({"pid": fx.pid, "location": location, "engine": engine,
                           "message": format!("{{{name}}}"), "max_hits": 1}),
                )
                .ok();
            (name.clone(), log["probe_id"].clone())
        })
        .collect();
    fx.send("go");
    fx.expect_line("done");
    let texts = probes
        .iter()
        .map(|(name, id)| {
            let r = results(&mut c, id, 0, 5000);
            let item = &r["items"][0];
            assert!(
                item.get("capture_note").is_none(),
                "{name}: planned short: {r}"
            );
            let text = item["text"]
                .as_str()
                .unwrap_or_else(|| panic!("{name}: no text: {r}"));
            (name.clone(), text.to_string())
        })
        .collect();
    assert_eq!(fx.wait_exit(), Some(0));
    texts
}

/// Plans each local alone (a dry-run logpoint, engine auto), then reads the
/// planned ones on the uprobe engine and compares them with what ptrace
/// reads in another process of the program. Answers the names refused,
/// with their notes.
fn planned_locals_read_as_ptrace_reads_them(
    exe: &std::path::Path,
    location: &str,
) -> Vec<(String, String)> {
    let names = local_names(exe, location);
    assert!(names.len() > 10, "{names:?}");
    let mut fx = Fixture::start(exe);
    let mut c = McpClient::start();
    c.call("attach", json!({"pid": fx.pid})).ok();
    let mut refused = Vec::new();
    let mut planned = Vec::new();
    for name in &names {
        let dry = c
            .call(
                "set_logpoint",
                json!({"pid": fx.pid, "location": location, "dry_run": true,
                       "message": format!("{{{name}}}")}),
            )
            .ok();
        if dry["engine"] == "ptrace" {
            let note = dry["engine_note"]
                .as_str()
                .unwrap_or_else(|| panic!("{name}: refused without a reason: {dry}"));
            refused.push((name.clone(), note.to_string()));
        } else {
            assert_eq!(dry["engine"], "uprobe", "{name}: {dry}");
            planned.push(name.clone());
        }
    }
    fx.send("go");
    fx.expect_line("done");
    assert_eq!(fx.wait_exit(), Some(0));
    assert!(planned.len() > 10, "most locals are plannable: {refused:?}");
    let on_uprobe = logged(exe, location, &planned, "uprobe");
    let on_ptrace = logged(exe, location, &planned, "ptrace");
    for ((name, got), (_, want)) in on_uprobe.iter().zip(&on_ptrace) {
        assert_eq!(
            without_addresses(&json!(got)),
            without_addresses(&json!(want)),
            "{name}: uprobe reads other than ptrace"
        );
    }
    refused
}

#[test]
fn rust_locals_are_planned_or_refused_with_a_reason() {
    let exe = build_fixture(
        "values/rust_values.rs",
        "plan_rust_values",
        &["-C", "opt-level=0"],
    );
    let at = location("values/rust_values.rs", "second.borrow_mut().next = None;");
    let refused = planned_locals_read_as_ptrace_reads_them(&exe, &at);
    for container in ["map", "tree", "deque"] {
        let note = refused
            .iter()
            .find(|(n, _)| n == container)
            .map(|(_, note)| note.as_str())
            .unwrap_or_else(|| panic!("{container} was planned: {refused:?}"));
        assert!(
            note.contains("depends on its contents"),
            "{container}: {note}"
        );
    }
}

#[test]
fn cpp_locals_are_planned_or_refused_with_a_reason() {
    let exe = build_fixture(
        "values/cpp_values.cpp",
        "plan_cpp_values",
        &["-O0", "-std=c++17"],
    );
    let at = location(
        "values/cpp_values.cpp",
        "return count + count_ref + widget_ref.id",
    );
    let refused = planned_locals_read_as_ptrace_reads_them(&exe, &at);
    assert!(
        refused
            .iter()
            .any(|(_, note)| note.contains("depends on its contents")),
        "a std::map or hash table is refused: {refused:?}"
    );
}
