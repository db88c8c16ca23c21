//! Redaction over a real MCP session (issue 12, item 4): one secret planted
//! in a C++ fixture (a `password` field, a heap string behind an innocent
//! name, a JWT in a request buffer and in header and parameter maps, read by
//! a logpoint template) never appears in any tool answer, audit line or
//! stderr log line, while ordinary strings next to it stay visible.

mod common;

use std::process::Stdio;

use common::probes::results;
use common::*;
use serde_json::{Value, json};

/// The JWT's signature: unique to the secret, in every place it is planted.
const SECRET_SIGNATURE: &str = "Qx7mK2pVn9RtY4wZ8sLb3JfH6dGc1AeN0uTyXo5iPqE";
/// The JWT's payload segment.
const SECRET_PAYLOAD: &str = "eyJzdWIiOiJyZWRhY3Rpb24tZml4dHVyZSJ9";
/// A password no value detector recognises: only names and keys hide it.
const PASSWORD: &str = "correct horse battery staple";
/// The content of the `Vault` value hidden by `--redact-type Vault`.
const VAULT_LABEL: &str = "vault-label-plain";

fn server() -> std::path::PathBuf {
    build_fixture("redaction/server.cpp", "redaction_server", &["-O0"])
}

/// Fails when any form of the secret is in `text`.
fn assert_clean(what: &str, text: &str) {
    for secret in [SECRET_SIGNATURE, SECRET_PAYLOAD, PASSWORD, VAULT_LABEL] {
        assert!(
            !text.contains(secret),
            "{what} shows the secret {secret:?}: {text}"
        );
    }
}

/// Calls a tool, fails if its answer shows the secret, keeps its text.
fn call(c: &mut McpClient, seen: &mut String, tool: &str, args: Value) -> ToolAnswer {
    let answer = c.call(tool, args);
    let text = answer_text(&answer);
    assert_clean(tool, &text);
    seen.push_str(&text);
    answer
}

/// Every string a tool answer carries: structured content and text.
fn answer_text(answer: &ToolAnswer) -> String {
    format!("{}\n{}", answer.structured, answer.text)
}

#[test]
fn a_planted_secret_never_leaves_while_ordinary_strings_stay_visible() {
    let dir = fixture_dir();
    let audit = dir.join("audit.jsonl");
    let log = dir.join("stderr.log");
    let log_file = std::fs::File::create(&log).expect("create the log file");
    let exe = server();
    let mut fx = Fixture::start(&exe);
    let mut c = McpClient::start_with_stderr(
        &[
            "--audit-log",
            audit.to_str().expect("utf-8 path"),
            "--redact-type",
            "Vault",
            "--log",
            "debug",
        ],
        Stdio::from(log_file),
    );
    let mut seen = String::new();
    assert!(!call(&mut c, &mut seen, "attach", json!({"pid": fx.pid})).is_error);

    // A global read without stopping anything: the whole request.
    let request = call(
        &mut c,
        &mut seen,
        "evaluate",
        json!({"pid": fx.pid, "expression": "g_request",
               "limits": {"depth": 4, "max_string": 1024, "max_items": 50}}),
    );
    assert!(!request.is_error, "{}", request.text);
    let shown = answer_text(&request);
    for visible in [
        "hello-visible-greeting",
        "alice-visible",
        "text/plain-visible",
        "page-two-visible",
        "4217",
        "GET /orders?user=alice HTTP/1.1",
    ] {
        assert!(
            shown.contains(visible),
            "{visible} should be visible: {shown}"
        );
    }
    // The header and parameter maps are still listed by key.
    for key in ["Authorization", "Accept", "password", "page"] {
        assert!(shown.contains(key), "key {key} should be listed: {shown}");
    }
    assert!(shown.contains("<redacted>"), "{shown}");

    // A condition on a hidden type would leak it a bit per hit: refused.
    let condition = call(
        &mut c,
        &mut seen,
        "set_snapshot",
        json!({"pid": fx.pid, "location": "handle_request",
               "condition": "vault->combination == 271828"}),
    );
    assert!(condition.is_error, "{}", condition.text);
    assert!(condition.text.contains("redact"), "{}", condition.text);

    // The innocent name over the JWT, and the type rule.
    let note = call(
        &mut c,
        &mut seen,
        "evaluate",
        json!({"pid": fx.pid, "expression": "g_request.note"}),
    );
    assert!(answer_text(&note).contains("redacted"), "{}", note.text);
    let vault = call(
        &mut c,
        &mut seen,
        "evaluate",
        json!({"pid": fx.pid, "expression": "g_vault"}),
    )
    .ok();
    assert_eq!(vault["value"]["unavailable"], "redacted", "{vault}");
    // A field of a hidden type, or its address cast to bytes, is the type too.
    for expression in [
        "g_vault.label",
        "(char *)&g_vault.label",
        "g_vault.combination",
    ] {
        let part = call(
            &mut c,
            &mut seen,
            "evaluate",
            json!({"pid": fx.pid, "expression": expression}),
        )
        .ok();
        assert_eq!(part["value"]["unavailable"], "redacted", "{part}");
    }

    // A snapshot and a logpoint at the handler read the same request.
    let snapshot = call(
        &mut c,
        &mut seen,
        "set_snapshot",
        json!({"pid": fx.pid, "location": "handle_request",
               "expressions": ["*req", "req->note", "req->request_buf", "*vault",
                               "req->login.password", "req->park_token"],
               "limits": {"depth": 4, "max_string": 1024, "max_items": 50}}),
    )
    .ok();
    let logpoint = call(
        &mut c,
        &mut seen,
        "set_logpoint",
        json!({"pid": fx.pid, "location": "handle_request",
               "message": "note={req->note} buf={req->request_buf} pw={req->login.password} park={req->park_token} agent-check"}),
    )
    .ok();
    fx.send("serve");
    fx.expect_line("served");
    let snap = results(&mut c, &snapshot["probe_id"], 0, 5000);
    let snap_text = snap.to_string();
    assert_clean("get_probe_results (snapshot)", &snap_text);
    seen.push_str(&snap_text);
    let items = snap["items"].as_array().expect("snapshot items");
    assert_eq!(items.len(), 1, "{snap}");
    let expressions = &items[0]["expressions"];
    assert_eq!(expressions[4]["unavailable"], "redacted", "{snap}");
    assert_eq!(expressions[5]["value"], "4217", "{snap}");
    assert!(snap_text.contains("hello-visible-greeting"), "{snap}");
    let lines = results(&mut c, &logpoint["probe_id"], 0, 5000);
    let lines_text = lines.to_string();
    assert_clean("get_probe_results (logpoint)", &lines_text);
    seen.push_str(&lines_text);
    let line = lines["items"][0]["text"].as_str().expect("a logpoint line");
    assert!(line.contains("park=4217"), "{line}");
    assert!(line.contains("agent-check"), "{line}");
    assert!(line.contains("<redacted>"), "{line}");

    // Listing echoes templates; an error echoes its argument.
    call(&mut c, &mut seen, "list_probes", json!({}));
    let bad = call(
        &mut c,
        &mut seen,
        "evaluate",
        json!({"pid": fx.pid, "expression": format!("no_such_name + \"eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.{SECRET_PAYLOAD}.{SECRET_SIGNATURE}\"")}),
    );
    assert!(bad.is_error, "{}", bad.text);
    assert!(seen.contains("<redacted>"));
    fx.send("quit");
    c.shutdown();

    let audit_lines = std::fs::read_to_string(&audit).expect("the audit log");
    assert!(audit_lines.lines().count() >= 8, "{audit_lines}");
    assert_clean("the audit log", &audit_lines);
    let log_lines = std::fs::read_to_string(&log).expect("the stderr log");
    assert!(!log_lines.is_empty(), "--log debug wrote nothing");
    assert_clean("the stderr log", &log_lines);
    // The debug log quotes requests and answers: the secret reached it and
    // was hidden there, not merely absent.
    assert!(log_lines.contains("<redacted>"), "{log_lines}");
}

#[test]
fn a_harmless_name_that_contains_token_stays_visible() {
    let exe = server();
    let fx = Fixture::start(&exe);
    let mut c = McpClient::start();
    c.call("attach", json!({"pid": fx.pid})).ok();
    let park = c
        .call(
            "evaluate",
            json!({"pid": fx.pid, "expression": "g_request.park_token"}),
        )
        .ok();
    assert_eq!(park["value"]["value"], "4217", "{park}");
    // Without --redact-type, a Vault is an ordinary value.
    let vault = c
        .call("evaluate", json!({"pid": fx.pid, "expression": "g_vault"}))
        .ok();
    assert!(vault.to_string().contains(VAULT_LABEL), "{vault}");
}

/// The line of the fixture that contains `needle`.
fn line_of(needle: &str) -> usize {
    let text = std::fs::read_to_string(fixture_src("redaction/server.cpp")).expect("source");
    text.lines()
        .position(|l| l.contains(needle))
        .map(|i| i + 1)
        .unwrap_or_else(|| panic!("{needle:?} not in server.cpp"))
}

/// The uprobe engine keeps a raw copy of each hit and renders it when first
/// read: what it renders passes the same redaction before it is stored.
#[test]
fn uprobe_captures_are_redacted_when_rendered() {
    let exe = server();
    let mut fx = Fixture::start(&exe);
    let mut c = McpClient::start();
    c.call("attach", json!({"pid": fx.pid})).ok();
    let location = format!("server.cpp:{}", line_of("LOG_REQUEST_RETURN"));
    let snapshot = c
        .call(
            "set_snapshot",
            json!({"pid": fx.pid, "location": location, "engine": "uprobe",
                   "expressions": ["line", "g_request.request_buf", "park"],
                   "limits": {"max_string": 1024}}),
        )
        .ok();
    assert_eq!(snapshot["engine"], "uprobe", "{snapshot}");
    let logpoint = c
        .call(
            "set_logpoint",
            json!({"pid": fx.pid, "location": location, "engine": "uprobe",
                   "message": "line={line} park={park}"}),
        )
        .ok();
    assert_eq!(logpoint["engine"], "uprobe", "{logpoint}");
    fx.send("serve");
    fx.expect_line("served");
    let snap = results(&mut c, &snapshot["probe_id"], 0, 5000);
    assert_clean("uprobe snapshot", &snap.to_string());
    let expressions = &snap["items"][0]["expressions"];
    for (i, visible) in [(0, "Authorization"), (1, "GET /orders?user=alice")] {
        let text = expressions[i]["value"]
            .as_str()
            .unwrap_or_else(|| panic!("no value {i}: {snap}"));
        assert!(text.contains(visible), "{text}");
        assert!(text.contains("<redacted>"), "{text}");
    }
    assert_eq!(expressions[2]["value"], "4217", "{snap}");
    let lines = results(&mut c, &logpoint["probe_id"], 0, 5000);
    assert_clean("uprobe logpoint", &lines.to_string());
    let line = lines["items"][0]["text"].as_str().expect("a logpoint line");
    assert!(
        line.contains("park=4217") && line.contains("<redacted>"),
        "{line}"
    );
}

/// Rust `HashMap` and `BTreeMap` entries are judged by their key too.
#[test]
fn rust_map_entries_with_secret_keys_are_hidden() {
    let exe = build_fixture("redaction/service.rs", "redaction_service", &[]);
    let mut fx = Fixture::start(&exe);
    let mut c = McpClient::start();
    c.call("attach", json!({"pid": fx.pid})).ok();
    let snapshot = c
        .call(
            "set_snapshot",
            json!({"pid": fx.pid, "location": "service::handle", "engine": "ptrace",
                   "expressions": ["*headers", "*params"],
                   "limits": {"depth": 4, "max_string": 256, "max_items": 50}}),
        )
        .ok();
    fx.send("serve");
    fx.expect_line("served");
    let snap = results(&mut c, &snapshot["probe_id"], 0, 5000);
    let text = snap.to_string();
    assert!(
        !text.contains("plain-session-phrase"),
        "a secret-keyed entry is shown: {snap}"
    );
    for visible in [
        "text/plain-visible",
        "page-two-visible",
        "Authorization",
        "password",
    ] {
        assert!(
            text.contains(visible),
            "{visible} should be visible: {snap}"
        );
    }
}
