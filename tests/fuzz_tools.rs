//! Property test of every tool's arguments over a real MCP session: random
//! and nearly-valid arguments (wrong types, huge and negative numbers, odd
//! strings, expression soup) for every tool in `tools/list`, against a pid
//! that is dead. Every call must be answered — a result or an error — and the
//! server must be alive and serving at the end: no panic, no hang.
//!
//! Safety on a shared machine: pids are only ever the dead pid or values no
//! process has (0, negative, beyond i32, not numbers), and liveprobe runs
//! with `--allow-exe` naming no real program, so no attach can reach ptrace.
//! Cases: `PROPTEST_CASES` (default 64 here; `tools/fuzz.sh` runs longer).

mod common;

use std::cell::RefCell;

use common::McpClient;
use proptest::prelude::*;
use proptest::test_runner::{Config, TestCaseError, TestRunner};
use serde_json::{Map, Value, json};

/// A pid that was a process and is not any more.
fn dead_pid() -> i64 {
    let mut child = std::process::Command::new("true")
        .spawn()
        .expect("start /bin/true");
    let pid = i64::from(child.id());
    child.wait().expect("reap /bin/true");
    pid
}

fn junk_string() -> impl Strategy<Value = String> {
    prop_oneof![
        any::<String>(),
        "[ -~]{0,80}",
        prop::sample::select(vec![
            "",
            "0",
            "-1",
            "1e309",
            "0x10",
            "main",
            "handle_request",
            "orders.c:12",
            "x->y[3]",
            "*(int*)0",
            "{",
            "}",
            "{{}}",
            "{x",
            "a.rs:99999999",
            "::",
            "ptrace",
            "uprobe",
            "auto",
            "NaN",
            "true",
            "null",
            "ring",
            "-----BEGIN RSA PRIVATE KEY-----",
        ])
        .prop_map(str::to_string),
        (0usize..20_000).prop_map(|n| "(".repeat(n)),
    ]
}

fn junk_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        (-5i64..5_000).prop_map(Value::from),
        any::<f64>().prop_map(|f| json!(f)),
        junk_string().prop_map(Value::from),
    ];
    leaf.prop_recursive(3, 24, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::from),
            prop::collection::btree_map("[a-z_]{1,12}", inner, 0..6)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// A value for a field called `pid`: never a live process.
fn pid_value(dead: i64) -> impl Strategy<Value = Value> {
    prop_oneof![
        4 => Just(json!(dead)),
        1 => Just(json!(dead.to_string())),
        1 => prop::sample::select(vec![
            json!(0), json!(-1), json!(i64::MIN), json!(u64::MAX), json!(1u64 << 40),
            json!(1.5), json!("pid"), json!(null), json!([dead]), json!({"pid": dead}),
        ]),
    ]
}

/// One call: which tool, which of its properties are set and to what, and
/// sometimes arguments that are not an object at all.
#[derive(Debug, Clone)]
struct Case {
    tool: usize,
    fields: Vec<(usize, Value)>,
    pid: Value,
    extra: Option<(String, Value)>,
    not_an_object: Option<Value>,
}

fn case(dead: i64) -> impl Strategy<Value = Case> {
    (
        any::<usize>(),
        prop::collection::vec((any::<usize>(), junk_value()), 0..8),
        pid_value(dead),
        prop::option::of(("[a-z_]{1,10}", junk_value())),
        prop::option::weighted(0.2, junk_value()),
    )
        .prop_map(|(tool, fields, pid, extra, not_an_object)| Case {
            tool,
            fields,
            pid,
            extra,
            not_an_object,
        })
}

#[test]
fn every_tool_answers_any_arguments_without_a_target() {
    let dead = dead_pid();
    let client = RefCell::new(McpClient::start_with_args(&[
        "--allow-exe",
        "/nonexistent/liveprobe-fuzz-target",
    ]));
    let listed = client.borrow_mut().request("tools/list", json!({}));
    let tools: Vec<(String, Vec<String>)> = listed["result"]["tools"]
        .as_array()
        .expect("tools/list")
        .iter()
        .map(|tool| {
            let name = tool["name"].as_str().expect("tool name").to_string();
            let props = tool["inputSchema"]["properties"]
                .as_object()
                .map(|p| p.keys().cloned().collect())
                .unwrap_or_default();
            (name, props)
        })
        .collect();
    assert!(tools.len() >= 10, "{listed}");

    // PROPTEST_CASES (tools/fuzz.sh's rounds) draws new cases each run;
    // without it (the test suite) the same 64 every run, so a sound server
    // always passes.
    let asked: Option<u32> = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|n| n.parse().ok());
    let cases = asked.unwrap_or(64);
    let config = Config {
        cases,
        failure_persistence: None,
        ..Config::default()
    };
    let mut runner = match asked {
        Some(_) => TestRunner::new(config),
        None => {
            let rng = proptest::test_runner::TestRng::deterministic_rng(config.rng_algorithm);
            TestRunner::new_with_rng(config, rng)
        }
    };
    // How many calls got past argument checking into a tool (a result),
    // and how many were refused as invalid params (a protocol error).
    let reached = std::cell::Cell::new(0u32);
    let refused = std::cell::Cell::new(0u32);
    let outcome = runner.run(&case(dead), |case| {
        let (tool, props) = &tools[case.tool % tools.len()];
        let arguments = match case.not_an_object {
            Some(junk) => junk,
            None => {
                let mut args = Map::new();
                for (which, value) in case.fields {
                    if let Some(prop) = props.get(which % props.len().max(1)) {
                        args.insert(prop.clone(), value);
                    }
                }
                if let Some((name, value)) = case.extra {
                    args.insert(name, value);
                }
                // Any field naming a process gets a safe pid.
                for field in ["pid", "target_pid"] {
                    if props.iter().any(|p| p == field) {
                        args.insert(field.into(), case.pid.clone());
                    }
                }
                Value::Object(args)
            }
        };
        let response = client
            .borrow_mut()
            .request("tools/call", json!({"name": tool, "arguments": arguments}));
        if response.get("result").is_some() {
            reached.set(reached.get() + 1);
        } else if response.get("error").is_some() {
            refused.set(refused.get() + 1);
        } else {
            return Err(TestCaseError::fail(format!(
                "{tool}({arguments}) got neither a result nor an error: {response}"
            )));
        }
        Ok(())
    });
    if let Err(e) = outcome {
        panic!("{e}");
    }
    eprintln!(
        "fuzz_tools: {} calls reached a tool, {} were refused as invalid",
        reached.get(),
        refused.get()
    );
    // The generator must exercise both paths, or it tests nothing.
    assert!(reached.get() > 0 && refused.get() > 0);
    let mut client = client.into_inner();
    assert!(
        client.child.try_wait().expect("poll liveprobe").is_none(),
        "liveprobe exited during the fuzz run"
    );
    let again = client.request("tools/list", json!({}));
    assert!(again.get("result").is_some(), "{again}");
    assert_eq!(client.shutdown(), Some(0));
}
