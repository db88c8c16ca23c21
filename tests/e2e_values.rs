//! End-to-end tests of read_locals and evaluate over a real MCP session.

mod common;

use common::*;
use serde_json::{Value, json};

/// Index of the frame running `function` in a stack_trace answer.
fn frame_index(stack: &Value, function: &str) -> u64 {
    stack["threads"][0]["frames"]
        .as_array()
        .expect("frames")
        .iter()
        .find(|f| f["function"] == function)
        .unwrap_or_else(|| panic!("{function} not on the stack: {stack}"))["index"]
        .as_u64()
        .expect("index")
}

#[test]
fn locals_and_expressions_of_a_blocked_worker() {
    let exe = build_fixture("e2e/threads.c", "e2e_threads", &["-O0"]);
    let mut fx = Fixture::start(&exe);
    fx.send("run 3");
    fx.expect_line("checksum");
    let mut c = McpClient::start();
    c.call("attach", json!({"pid": fx.pid})).ok();
    let threads = c.call("list_threads", json!({"pid": fx.pid})).ok();
    let worker = threads["threads"]
        .as_array()
        .expect("threads")
        .iter()
        .find(|t| t["name"] == "worker-2")
        .expect("worker-2")
        .clone();
    let tid = worker["tid"].as_i64().expect("tid");
    let stack = c
        .call("stack_trace", json!({"pid": fx.pid, "tid": tid}))
        .ok();
    let idle = frame_index(&stack, "worker_idle");

    let locals = c
        .call(
            "read_locals",
            json!({"pid": fx.pid, "tid": tid, "frame": idle}),
        )
        .ok();
    assert_eq!(locals["frame"]["function"], "worker_idle");
    let id = locals["variables"]
        .as_array()
        .expect("variables")
        .iter()
        .find(|v| v["name"] == "id")
        .unwrap_or_else(|| panic!("no id in {locals}"))
        .clone();
    assert_eq!(id["value"], "2");
    assert_eq!(id["type"], "int");
    assert!(locals["held_us"].as_u64().is_some());

    let main_frame = idle + 1;
    let name = c
        .call(
            "read_locals",
            json!({"pid": fx.pid, "tid": tid, "frame": main_frame}),
        )
        .ok();
    let vars: Vec<&str> = name["variables"]
        .as_array()
        .expect("variables")
        .iter()
        .filter_map(|v| v["name"].as_str())
        .collect();
    assert!(vars.contains(&"name") && vars.contains(&"id"), "{vars:?}");
    let text = c
        .call(
            "evaluate",
            json!({"pid": fx.pid, "tid": tid, "frame": main_frame, "expression": "name"}),
        )
        .ok();
    assert!(
        text["value"]["value"]
            .as_str()
            .expect("value")
            .contains("worker-2"),
        "{text}"
    );

    let sum = c
        .call(
            "evaluate",
            json!({"pid": fx.pid, "tid": tid, "frame": idle, "expression": "id * 10 + 1"}),
        )
        .ok();
    assert_eq!(sum["value"]["value"], "21");

    // Globals without holding any thread.
    let global = c
        .call(
            "evaluate",
            json!({"pid": fx.pid, "expression": "rounds_asked"}),
        )
        .ok();
    assert_eq!(global["value"]["value"], "3");
    assert_eq!(global["held_us"], 0);
    assert!(global.get("frame").is_none());

    // Bad input.
    let err = c
        .call(
            "evaluate",
            json!({"pid": fx.pid, "tid": tid, "frame": idle, "expression": "id +* 2"}),
        )
        .err();
    assert!(err.contains("column"), "{err}");
    let err = c
        .call(
            "evaluate",
            json!({"pid": fx.pid, "tid": tid, "frame": idle, "expression": "idd"}),
        )
        .err();
    assert!(err.contains("id"), "names in scope are suggested: {err}");
    let err = c
        .call(
            "evaluate",
            json!({"pid": fx.pid, "tid": tid, "frame": idle, "expression": "compute(1, 2)"}),
        )
        .err();
    assert!(err.contains("call"), "{err}");
    let err = c
        .call(
            "evaluate",
            json!({"pid": fx.pid, "tid": tid, "frame": idle, "expression": "id = 3"}),
        )
        .err();
    assert!(err.contains("assign"), "{err}");
    let err = c
        .call(
            "read_locals",
            json!({"pid": fx.pid, "tid": tid, "frame": 500}),
        )
        .err();
    assert!(err.contains("frame"), "{err}");

    // The reads changed nothing.
    fx.send("run 3");
    let again = fx.expect_line("checksum");
    let mut plain = Fixture::start(&exe);
    plain.send("run 3");
    plain.expect_line("checksum");
    plain.send("run 3");
    assert_eq!(plain.expect_line("checksum"), again);
}
