//! End-to-end tests of `watch_expression` (mode `sample`), through a real
//! MCP session with the real binary on a real fixture whose values move
//! only when the test says so.

mod common;

use common::*;
use serde_json::{Value, json};

fn watched() -> std::path::PathBuf {
    build_fixture("watch/watched.c", "watch_watched", &["-O0"])
}

fn attached() -> (Fixture, McpClient) {
    let fx = Fixture::start(&watched());
    let mut c = McpClient::start();
    c.call("attach", json!({"pid": fx.pid})).ok();
    (fx, c)
}

fn results(c: &mut McpClient, id: &Value, after: u64, wait_ms: u64) -> Value {
    c.call(
        "get_probe_results",
        json!({"probe_id": id, "after": after, "limit": 100, "wait_ms": wait_ms,
               "max_bytes": 1_048_576}),
    )
    .ok()
}

/// Reads items of watch `id` (long-polling) until one satisfies `wanted`;
/// returns every item read. Fails when none comes within many long-polls
/// (the values it waits for are set before, so they come at the next sample).
fn items_until(
    c: &mut McpClient,
    id: &Value,
    after: &mut u64,
    wanted: impl Fn(&Value) -> bool,
) -> Vec<Value> {
    let mut seen = Vec::new();
    for _ in 0..60 {
        let r = results(c, id, *after, 2000);
        *after = r["next_after"].as_u64().expect("next_after");
        for item in r["items"].as_array().expect("items") {
            seen.push(item.clone());
            if wanted(item) {
                return seen;
            }
        }
        assert_eq!(r["state"], "armed", "the watch ended early: {r}");
    }
    panic!("no wanted item came; read: {seen:?}")
}

/// Long-polls until watch `id` leaves `armed`; returns then all its results.
fn until_ended(c: &mut McpClient, id: &Value) -> Value {
    let mut after = 0;
    for _ in 0..60 {
        let r = results(c, id, after, 2000);
        if r["state"] != "armed" {
            return results(c, id, 0, 0);
        }
        after = r["next_after"].as_u64().unwrap_or(after);
    }
    panic!("watch {id} never ended")
}

fn value_is(item: &Value, text: &str) -> bool {
    item["value"]["value"] == text
}

#[test]
fn a_sampled_global_counter_advances_with_summary_and_on_change() {
    let (mut fx, mut c) = attached();
    let set = c
        .call(
            "watch_expression",
            json!({"pid": fx.pid, "expression": "counter", "mode": "sample",
                   "interval_ms": 1, "duration_s": 120, "on_change": true}),
        )
        .ok();
    assert_eq!(set["engine"], "sampler", "{set}");
    assert_eq!(set["mode"], "sample");
    let id = set["probe_id"].clone();
    let mut after = 0;
    let mut items = items_until(&mut c, &id, &mut after, |i| value_is(i, "0"));
    for n in 1..=3 {
        fx.send("inc");
        assert_eq!(fx.expect_line("counter"), format!("counter {n}"));
        items.extend(items_until(&mut c, &id, &mut after, |i| {
            value_is(i, &n.to_string())
        }));
    }
    // on_change: each value once, in order, although sampled every 1 ms.
    let values: Vec<&str> = items
        .iter()
        .map(|i| i["value"]["value"].as_str().expect("value"))
        .collect();
    assert_eq!(values, ["0", "1", "2", "3"], "{items:?}");
    for (k, item) in items.iter().enumerate() {
        assert_eq!(item["seq"], json!(k + 1), "{item}");
        assert!(item["time"].as_str().is_some_and(|t| t.ends_with('Z')));
        assert!(
            item["value"]["type"]
                .as_str()
                .is_some_and(|t| t.contains("long")),
            "{item}"
        );
    }
    let r = results(&mut c, &id, 0, 0);
    let summary = &r["summary"];
    assert_eq!(summary["changes"], 3, "{r}");
    assert_eq!(summary["min"], 0.0, "{r}");
    assert_eq!(summary["max"], 3.0, "{r}");
    assert_eq!(summary["first"], "0", "{r}");
    assert_eq!(summary["last"], "3", "{r}");
    assert!(summary["count"].as_u64().expect("count") >= 4, "{r}");
    assert_eq!(summary["numeric"], summary["count"], "{r}");
    // Listed like any probe, then removed like any probe.
    let row = common::probes::row_of(&mut c, &id);
    assert_eq!(row["kind"], "watch", "{row}");
    assert_eq!(row["engine"], "sampler", "{row}");
    assert_eq!(row["state"], "armed", "{row}");
    assert_eq!(row["location"], "counter", "{row}");
    let removed = c.call("remove_probe", json!({"probe_id": id})).ok();
    assert_eq!(removed["state"], "armed");
    let gone = c.call("get_probe_results", json!({"probe_id": id})).err();
    assert!(gone.contains("no probe"), "{gone}");
    fx.send("quit");
    assert_eq!(fx.wait_exit(), Some(0));
}

#[test]
fn a_sampled_heap_field_through_a_global_pointer_and_its_resource() {
    let (mut fx, mut c) = attached();
    let set = c
        .call(
            "watch_expression",
            json!({"pid": fx.pid, "expression": "heap_stats->hits", "mode": "sample",
                   "interval_ms": 1, "duration_s": 120, "on_change": true,
                   "condition": "counter == 0"}),
        )
        .ok();
    let id = set["probe_id"].clone();
    let mut after = 0;
    items_until(&mut c, &id, &mut after, |i| value_is(i, "0"));
    fx.send("hit");
    assert_eq!(fx.expect_line("hits"), "hits 1");
    items_until(&mut c, &id, &mut after, |i| value_is(i, "1"));
    // The condition stops every sample once counter moves.
    fx.send("inc");
    fx.expect_line("counter 1");
    fx.send("hit");
    assert_eq!(fx.expect_line("hits"), "hits 2");
    // Some sample after `hits 2` has been taken (and filtered out).
    let filtered = |c: &mut McpClient| {
        let listed = c.call("list_probes", json!({})).ok();
        listed["probes"][0]["filtered"].as_u64().expect("filtered")
    };
    let before = filtered(&mut c);
    let mut later = before;
    for _ in 0..10_000 {
        later = filtered(&mut c);
        if later > before {
            break;
        }
    }
    assert!(later > before, "the watch kept sampling");
    let uri = format!("probe://{id}/results");
    let read = c.request("resources/read", json!({"uri": uri}));
    let text = read["result"]["contents"][0]["text"]
        .as_str()
        .expect("text");
    let body: Value = serde_json::from_str(text).expect("JSON results");
    let values: Vec<&str> = body["items"]
        .as_array()
        .expect("items")
        .iter()
        .map(|i| i["value"]["value"].as_str().expect("value"))
        .collect();
    assert_eq!(values, ["0", "1"], "hits 2 is never sampled: counter is 1");
    fx.send("quit");
    fx.wait_exit();
}

#[test]
fn a_faulting_sample_says_so_and_the_watch_goes_on_to_max_events() {
    let (mut fx, mut c) = attached();
    let set = c
        .call(
            "watch_expression",
            json!({"pid": fx.pid, "expression": "null_stats->hits", "mode": "sample",
                   "interval_ms": 1, "max_events": 3, "duration_s": 120}),
        )
        .ok();
    let id = set["probe_id"].clone();
    let r = until_ended(&mut c, &id);
    assert_eq!(r["state"], "done", "{r}");
    assert_eq!(r["reason"], "reached max_events (3)", "{r}");
    let items = r["items"].as_array().expect("items");
    assert_eq!(items.len(), 3, "{r}");
    for item in items {
        let why = item["value"]["unavailable"].as_str().unwrap_or_default();
        assert!(why.contains("0x0"), "a NULL read says so: {item}");
    }
    assert_eq!(r["summary"]["faults"], 3, "{r}");
    assert!(r["summary"].get("min").is_none(), "{r}");
    fx.send("quit");
    fx.wait_exit();
}

#[test]
fn a_watch_on_a_local_ends_done_when_its_frame_returns() {
    let (mut fx, mut c) = attached();
    fx.send("local");
    fx.expect_line("in local");
    wait_blocked_in_read(fx.pid);
    let stack = c
        .call("stack_trace", json!({"pid": fx.pid, "max_frames": 32}))
        .ok();
    let frames = stack["threads"][0]["frames"].as_array().expect("frames");
    let index = frames
        .iter()
        .position(|f| f["function"] == "hold_local")
        .unwrap_or_else(|| panic!("hold_local on the stack: {stack}"));
    let set = c
        .call(
            "watch_expression",
            json!({"pid": fx.pid, "expression": "step", "mode": "sample", "tid": fx.pid,
                   "frame": index, "interval_ms": 1, "duration_s": 120, "on_change": true}),
        )
        .ok();
    assert_eq!(set["engine"], "ptrace", "{set}");
    assert_eq!(set["frame"]["function"], "hold_local", "{set}");
    let id = set["probe_id"].clone();
    let mut after = 0;
    items_until(&mut c, &id, &mut after, |i| value_is(i, "0"));
    fx.send("step");
    fx.expect_line("step 1");
    items_until(&mut c, &id, &mut after, |i| value_is(i, "1"));
    fx.send("leave");
    fx.expect_line("left");
    let r = until_ended(&mut c, &id);
    assert_eq!(r["state"], "done", "{r}");
    let reason = r["reason"].as_str().expect("reason");
    assert!(
        reason.contains("hold_local") && reason.contains("returned"),
        "{reason}"
    );
    // The process goes on, untouched.
    fx.send("inc");
    assert_eq!(fx.expect_line("counter"), "counter 1");
    fx.send("quit");
    assert_eq!(fx.wait_exit(), Some(0));
}

#[test]
fn a_watch_whose_target_exits_is_target_exited_with_results_readable() {
    let (mut fx, mut c) = attached();
    let set = c
        .call(
            "watch_expression",
            json!({"pid": fx.pid, "expression": "counter", "mode": "sample",
                   "interval_ms": 1, "duration_s": 120, "on_change": true}),
        )
        .ok();
    let id = set["probe_id"].clone();
    let mut after = 0;
    items_until(&mut c, &id, &mut after, |i| value_is(i, "0"));
    fx.send("quit");
    assert_eq!(fx.wait_exit(), Some(0));
    let r = until_ended(&mut c, &id);
    assert_eq!(r["state"], "target_exited", "{r}");
    assert!(
        r["reason"].as_str().is_some_and(|s| s.contains("exited")),
        "{r}"
    );
    let again = results(&mut c, &id, 0, 0);
    assert_eq!(again["items"][0]["value"]["value"], "0", "{again}");
}

#[test]
fn bad_watch_input_is_refused_with_the_allowed_range() {
    let (mut fx, mut c) = attached();
    let pid = fx.pid;
    let mut refused = |args: Value| {
        let mut all = json!({"pid": pid, "expression": "counter", "mode": "sample"});
        for (k, v) in args.as_object().expect("object") {
            all[k] = v.clone();
        }
        c.call("watch_expression", all).err()
    };
    let e = refused(json!({"interval_ms": 0}));
    assert!(e.contains("interval_ms must be between 1 and 60000"), "{e}");
    let e = refused(json!({"duration_s": 700}));
    assert!(
        e.contains("duration_s must be between 1 and the watch's ttl_s (600)"),
        "{e}"
    );
    let e = refused(json!({"max_events": 0}));
    assert!(e.contains("max_events must be between 1"), "{e}");
    let e = refused(json!({"expression": "no_such_name"}));
    assert!(e.contains("does not compile over globals"), "{e}");
    let e = refused(json!({"expression": "step"}));
    assert!(e.contains("give the tid"), "a local needs its frame: {e}");
    let e = refused(json!({"engine": "uprobe"}));
    assert!(e.contains("engine auto"), "{e}");
    let e = refused(json!({"mode": "write", "tid": pid, "expression": "counter + 1"}));
    assert!(e.contains("not an lvalue"), "{e}");
    let e = refused(json!({"mode": "write", "expression": "7"}));
    assert!(e.contains("not an lvalue"), "{e}");
    let listed = c.call("list_probes", json!({})).ok();
    assert_eq!(listed["probes"], json!([]), "nothing was left armed");
    fx.send("quit");
    fx.wait_exit();
}

/// The `threads` line of an unprobed run.
fn unprobed_threads_line() -> String {
    let mut fx = Fixture::start(&watched());
    fx.send("threads");
    let line = fx.expect_line("threads");
    fx.send("quit");
    fx.wait_exit();
    line
}

fn write_watch(c: &mut McpClient, pid: i32, expression: &str) -> Value {
    c.call(
        "watch_expression",
        json!({"pid": pid, "expression": expression, "mode": "write", "duration_s": 120}),
    )
    .ok()
}

/// Every write of two threads created after the watches were set, with
/// old/new, writer function and thread name.
#[test]
fn write_watches_report_every_write_of_threads_created_later() {
    let expected = unprobed_threads_line();
    let (mut fx, mut c) = attached();
    let global = write_watch(&mut c, fx.pid, "shared_value");
    assert_eq!(global["engine"], "perf_breakpoint", "{global}");
    let heap = write_watch(&mut c, fx.pid, "heap_stats->misses");
    fx.send("threads");
    assert_eq!(
        fx.expect_line("threads"),
        expected,
        "same output as unprobed"
    );
    for (set, what) in [(&global, "shared_value"), (&heap, "misses")] {
        let id = set["probe_id"].clone();
        let mut after = 0;
        let items = items_until(&mut c, &id, &mut after, |i| i["new"]["value"] == "203");
        let r = results(&mut c, &id, 0, 0);
        assert_eq!(items.len(), 6, "{what}: every write, none lost: {r}");
        let expected_values = ["101", "102", "103", "201", "202", "203"];
        let mut old = "0";
        for (item, new) in items.iter().zip(expected_values) {
            assert_eq!(item["old"]["value"], old, "{what}: {item}");
            assert_eq!(item["new"]["value"], new, "{what}: {item}");
            old = new;
            let (function, name) = if new.starts_with('1') {
                ("writer_one", "writer-1")
            } else {
                ("writer_two", "writer-2")
            };
            assert_eq!(item["thread_name"], name, "{what}: {item}");
            assert_eq!(item["frames"][0]["function"], function, "{what}: {item}");
            assert_ne!(item["tid"], json!(fx.pid), "{item}");
        }
        let row = c.call("list_probes", json!({})).ok();
        assert!(
            row["probes"]
                .as_array()
                .expect("probes")
                .iter()
                .any(|p| p["probe_id"] == id
                    && p["engine"] == "perf_breakpoint"
                    && p.get("lost").is_none()),
            "{row}"
        );
    }
    fx.send("quit");
    assert_eq!(fx.wait_exit(), Some(0));
}

/// x86-64 has four debug registers per thread: four watches work, the
/// fifth is refused naming the watches that hold them. Not an lvalue is
/// refused naming why.
#[test]
fn four_write_watches_work_and_the_fifth_is_refused() {
    let (mut fx, mut c) = attached();
    let mut ids = Vec::new();
    for e in ["spare[0]", "spare[1]", "spare[2]", "spare[3]"] {
        ids.push(write_watch(&mut c, fx.pid, e)["probe_id"].clone());
    }
    let fifth = c
        .call(
            "watch_expression",
            json!({"pid": fx.pid, "expression": "shared_value", "mode": "write"}),
        )
        .err();
    assert!(fifth.contains("4 per thread"), "{fifth}");
    for id in &ids {
        assert!(fifth.contains(&format!("watch {id}")), "{fifth}");
    }
    let not_lvalue = c
        .call(
            "watch_expression",
            json!({"pid": fx.pid, "expression": "shared_value + 1", "mode": "write"}),
        )
        .err();
    assert!(not_lvalue.contains("not an lvalue"), "{not_lvalue}");
    // Removing one frees its register for another.
    c.call("remove_probe", json!({"probe_id": ids[0]})).ok();
    write_watch(&mut c, fx.pid, "shared_value");
    fx.send("quit");
    assert_eq!(fx.wait_exit(), Some(0));
}

/// A SIGKILLed liveprobe leaves nothing armed: the kernel closes its
/// events, so the fixture runs as unprobed, and all four debug registers
/// are free again for a new liveprobe (an event left behind would hold one).
#[test]
fn sigkill_of_liveprobe_leaves_no_watchpoint_behind() {
    let expected = unprobed_threads_line();
    let (mut fx, mut c) = attached();
    for e in ["shared_value", "spare[0]", "spare[1]", "spare[2]"] {
        write_watch(&mut c, fx.pid, e);
    }
    // liveprobe's tracer task, a process of its own holding liveprobe's
    // descriptors (the watches' events) until it has detached the target.
    let task = tracer_pid(fx.pid);
    assert!(task > 0);
    drop(c); // SIGKILL: McpClient kills its server when dropped
    fx.send("threads");
    assert_eq!(fx.expect_line("threads"), expected);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while matches!(proc_state(task), Some(state) if state != 'Z' && state != 'X') {
        assert!(
            std::time::Instant::now() < deadline,
            "tracer task {task} lives on"
        );
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    let mut again = McpClient::start();
    again.call("attach", json!({"pid": fx.pid})).ok();
    let mut ids = Vec::new();
    for e in ["shared_value", "spare[0]", "spare[1]", "spare[2]"] {
        ids.push(write_watch(&mut again, fx.pid, e)["probe_id"].clone());
    }
    fx.send("threads");
    fx.expect_line("threads");
    let mut after = 0;
    let items = items_until(&mut again, &ids[0], &mut after, |i| {
        i["new"]["value"] == "203"
    });
    assert_eq!(items.len(), 6, "the new watches see every write: {items:?}");
    fx.send("quit");
    assert_eq!(fx.wait_exit(), Some(0));
}

/// `access` reports reads too: `counter += 1` then printing it reads and
/// writes it in main.
#[test]
fn an_access_watch_reports_reads_and_writes() {
    let (mut fx, mut c) = attached();
    let set = c
        .call(
            "watch_expression",
            json!({"pid": fx.pid, "expression": "counter", "mode": "access", "duration_s": 120}),
        )
        .ok();
    let id = set["probe_id"].clone();
    fx.send("inc");
    assert_eq!(fx.expect_line("counter"), "counter 1");
    let mut after = 0;
    let items = items_until(&mut c, &id, &mut after, |i| i["new"]["value"] == "1");
    let r = results(&mut c, &id, 0, 0);
    let all = r["items"].as_array().expect("items");
    assert!(all.len() >= 2, "a read and a write at least: {r}");
    assert_eq!(all[0]["old"]["value"], "0", "the first access reads 0: {r}");
    assert_eq!(all[0]["new"]["value"], "0", "a read leaves it: {r}");
    assert!(!items.is_empty());
    for item in all {
        assert_eq!(item["tid"], json!(fx.pid), "main did it: {item}");
        assert_eq!(item["frames"][0]["function"], "main", "{item}");
    }
    fx.send("quit");
    assert_eq!(fx.wait_exit(), Some(0));
}

/// Observe-only refuses a write watch (it sets debug registers) and allows
/// a sampled one (it only reads).
#[test]
fn observe_only_refuses_write_watches_and_allows_sampling() {
    let mut fx = Fixture::start(&watched());
    let mut c = McpClient::start_with_args(&["--observe-only"]);
    c.call("attach", json!({"pid": fx.pid})).ok();
    let refused = c
        .call(
            "watch_expression",
            json!({"pid": fx.pid, "expression": "counter", "mode": "write"}),
        )
        .err();
    assert!(
        refused.contains("debug registers") && refused.contains("observe-only"),
        "{refused}"
    );
    c.call(
        "watch_expression",
        json!({"pid": fx.pid, "expression": "counter", "mode": "sample"}),
    )
    .ok();
    fx.send("quit");
    assert_eq!(fx.wait_exit(), Some(0));
}

/// An lvalue larger than 8 bytes is split over aligned pieces, one debug
/// register each (and they count against the four).
#[test]
fn a_large_lvalue_is_split_over_registers() {
    let (mut fx, mut c) = attached();
    let set = write_watch(&mut c, fx.pid, "spare");
    let note = set["engine_note"].as_str().expect("note");
    assert!(
        note.starts_with("4 hardware watchpoint(s) on 32 byte(s)"),
        "{set}"
    );
    let refused = c
        .call(
            "watch_expression",
            json!({"pid": fx.pid, "expression": "counter", "mode": "write"}),
        )
        .err();
    assert!(
        refused.contains(&format!("watch {}", set["probe_id"])),
        "{refused}"
    );
    fx.send("quit");
    assert_eq!(fx.wait_exit(), Some(0));
}

/// Detach clears every watchpoint at once: attached again, all four debug
/// registers are free, and the fixture runs as unprobed meanwhile.
#[test]
fn detach_clears_write_watches() {
    let expected = unprobed_threads_line();
    let (mut fx, mut c) = attached();
    for e in ["spare[0]", "spare[1]", "spare[2]", "spare[3]"] {
        write_watch(&mut c, fx.pid, e);
    }
    c.call("detach", json!({"pid": fx.pid})).ok();
    fx.send("threads");
    assert_eq!(fx.expect_line("threads"), expected);
    c.call("attach", json!({"pid": fx.pid})).ok();
    for e in ["spare[0]", "spare[1]", "spare[2]", "spare[3]"] {
        write_watch(&mut c, fx.pid, e);
    }
    fx.send("quit");
    assert_eq!(fx.wait_exit(), Some(0));
}

/// A write watch on a local: the frame's thread writes it, the item names
/// the function; when the frame returns the watch ends `done`.
#[test]
fn a_write_watch_on_a_local_ends_with_its_frame() {
    write_watch_on_a_local_ends_with_its_frame("auto", "perf_breakpoint");
}

/// The same on the ptrace engine.
#[test]
fn a_ptrace_write_watch_on_a_local_ends_with_its_frame() {
    write_watch_on_a_local_ends_with_its_frame("ptrace", "ptrace");
}

fn write_watch_on_a_local_ends_with_its_frame(engine: &str, runs: &str) {
    let (mut fx, mut c) = attached();
    fx.send("local");
    fx.expect_line("in local");
    wait_blocked_in_read(fx.pid);
    let stack = c
        .call("stack_trace", json!({"pid": fx.pid, "max_frames": 32}))
        .ok();
    let frames = stack["threads"][0]["frames"].as_array().expect("frames");
    let index = frames
        .iter()
        .position(|f| f["function"] == "hold_local")
        .unwrap_or_else(|| panic!("hold_local on the stack: {stack}"));
    let set = c
        .call(
            "watch_expression",
            json!({"pid": fx.pid, "expression": "step", "mode": "write", "tid": fx.pid,
                   "frame": index, "interval_ms": 10, "duration_s": 120, "engine": engine}),
        )
        .ok();
    assert_eq!(set["engine"], runs, "{set}");
    assert_eq!(set["frame"]["function"], "hold_local", "{set}");
    let id = set["probe_id"].clone();
    for n in 1..=2 {
        fx.send("step");
        assert_eq!(fx.expect_line("step"), format!("step {n}"));
    }
    let mut after = 0;
    let items = items_until(&mut c, &id, &mut after, |i| i["new"]["value"] == "2");
    assert_eq!(items.len(), 2, "{items:?}");
    assert_eq!(items[0]["old"]["value"], "0");
    assert_eq!(items[0]["new"]["value"], "1");
    assert_eq!(items[1]["old"]["value"], "1");
    for item in &items {
        assert_eq!(item["frames"][0]["function"], "hold_local", "{item}");
        assert_eq!(item["tid"], json!(fx.pid), "{item}");
    }
    fx.send("leave");
    fx.expect_line("left");
    let r = until_ended(&mut c, &id);
    assert_eq!(r["state"], "done", "{r}");
    let reason = r["reason"].as_str().expect("reason");
    assert!(
        reason.contains("hold_local") && reason.contains("returned"),
        "{reason}"
    );
    assert_eq!(r["items"].as_array().map(Vec::len), Some(2), "{r}");
    // Its register is free again.
    for e in ["spare[0]", "spare[1]", "spare[2]", "spare[3]"] {
        write_watch(&mut c, fx.pid, e);
    }
    fx.send("inc");
    assert_eq!(fx.expect_line("counter"), "counter 1");
    fx.send("quit");
    assert_eq!(fx.wait_exit(), Some(0));
}

/// Two threads writing at once, 2 x 200 writes: every write is reported
/// once, by the right thread, none lost.
#[test]
fn concurrent_writers_lose_no_write() {
    let (mut fx, mut c) = attached();
    let set = c
        .call(
            "watch_expression",
            json!({"pid": fx.pid, "expression": "storm_value", "mode": "write",
                   "duration_s": 120, "max_events": 1000}),
        )
        .ok();
    let id = set["probe_id"].clone();
    fx.send("storm 200");
    fx.expect_line("storm done");
    let mut seen: Vec<Value> = Vec::new();
    let mut after = 0;
    while seen.len() < 400 {
        let r = results(&mut c, &id, after, 2000);
        let items = r["items"].as_array().expect("items").clone();
        assert!(
            !items.is_empty(),
            "writes missing after {}: {r}",
            seen.len()
        );
        after = r["next_after"].as_u64().expect("next_after");
        seen.extend(items);
    }
    assert_eq!(seen.len(), 400);
    let mut values: Vec<i64> = seen
        .iter()
        .map(|i| {
            i["new"]["value"]
                .as_str()
                .and_then(|v| v.parse().ok())
                .expect("number")
        })
        .collect();
    values.sort_unstable();
    let expected: Vec<i64> = (1..=2)
        .flat_map(|k| (1..=200).map(move |i| k * 1_000_000 + i))
        .collect();
    // Every write is reported once, by its thread, with the value it wrote:
    // the writer's instruction (at -O0, `mov %rax,storm_value(%rip)`) is a
    // plain store, so `new` comes from its captured rax, not from memory the
    // other writer may already have overwritten.
    assert_eq!(values, expected, "each written value exactly once");
    let mut per_thread: std::collections::HashMap<i64, usize> = std::collections::HashMap::new();
    for item in &seen {
        *per_thread
            .entry(item["tid"].as_i64().expect("tid"))
            .or_default() += 1;
    }
    let mut counts: Vec<usize> = per_thread.into_values().collect();
    counts.sort_unstable();
    assert_eq!(counts, [200, 200], "each writer's 200 writes, each once");
    assert!(
        set["engine_note"]
            .as_str()
            .is_some_and(|n| n.contains("plain store") && n.contains("another thread")),
        "{set}"
    );
    for item in &seen {
        assert_eq!(item["frames"][0]["function"], "storm_writer", "{item}");
    }
    let listed = c.call("list_probes", json!({})).ok();
    assert!(listed["probes"][0].get("lost").is_none(), "{listed}");
    fx.send("quit");
    assert_eq!(fx.wait_exit(), Some(0));
}

/// Runs the `dr_tracer` fixture (a minimal ptrace tracer) with `args`;
/// returns its exit status and stdout.
fn dr_tracer(args: &[&str]) -> (std::process::ExitStatus, String) {
    let exe = build_fixture("watch/dr_tracer.c", "watch_dr_tracer", &["-O0"]);
    let out = std::process::Command::new(&exe)
        .args(args)
        .output()
        .expect("run dr_tracer");
    (
        out.status,
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

/// The hex addresses (no `0x`) of `counter` and `shared_value` in `fx`.
fn addresses(fx: &mut Fixture) -> (String, String) {
    let at = fx.ask("where", "counter_at");
    let mut words = at.split_whitespace();
    let counter = words.next().unwrap_or_default();
    let shared = words.nth(1).unwrap_or_default();
    (
        counter.trim_start_matches("0x").to_string(),
        shared.trim_start_matches("0x").to_string(),
    )
}

/// The kernel fact that decides what the ptrace fallback of write watches
/// can promise: debug registers set with PTRACE_POKEUSER are NOT cleared
/// when the tracer dies by SIGKILL (nor by PTRACE_DETACH), unlike perf
/// events, which the kernel closes. The target keeps running, and its next
/// write of the watched address traps with no tracer: it dies of SIGTRAP.
/// So a SIGKILLed liveprobe with ptrace-engine write watches armed kills
/// the target at its next watched write; every catchable exit must clear
/// DR7 on every thread. If a kernel ever clears them, this test fails and
/// the fallback may promise more.
#[test]
fn ptrace_debug_registers_outlive_a_sigkilled_tracer() {
    use std::os::unix::process::ExitStatusExt;
    let mut fx = Fixture::start(&watched());
    let (addr, _) = addresses(&mut fx);
    let pid = fx.pid.to_string();
    let (status, out) = dr_tracer(&["arm", &pid, &addr]);
    assert_eq!(status.signal(), Some(libc::SIGKILL), "{status:?}: {out}");
    assert_eq!(out.trim(), "armed dr7=0x90001", "{out}");
    // The target was resumed before the tracer died and runs on: a write
    // elsewhere answers.
    assert_eq!(fx.ask("hit", "hits"), "1");
    // The registers are still armed (a second tracer reads them back, then
    // detaches: PTRACE_DETACH does not clear them either).
    let (status, out) = dr_tracer(&["peek", &pid]);
    assert_eq!(status.code(), Some(0), "{out}");
    assert!(
        out.trim().starts_with(&format!("dr7=0x90001 dr0=0x{addr}")),
        "{out}"
    );
    // The next write of the watched address traps with no tracer.
    fx.send("inc");
    let status = fx.wait_exit_status();
    assert_eq!(status.signal(), Some(libc::SIGTRAP), "{status:?}");
}

/// The other half of that fact: a tracer that stays sees the write as a
/// SIGTRAP stop whose DR6 names the slot, and once it writes DR7 = 0
/// before detaching, later writes run free. What a ptrace fallback must do
/// at every exit it can run.
#[test]
fn ptrace_debug_registers_trap_once_and_clear_before_detach() {
    use std::io::{BufRead, BufReader};
    let mut fx = Fixture::start(&watched());
    let (addr, _) = addresses(&mut fx);
    let exe = build_fixture("watch/dr_tracer.c", "watch_dr_tracer", &["-O0"]);
    let mut tracer = std::process::Command::new(&exe)
        .args(["trap", &fx.pid.to_string(), addr.as_str()])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("run dr_tracer");
    let mut out = BufReader::new(tracer.stdout.take().expect("stdout"));
    let mut line = String::new();
    out.read_line(&mut line).expect("armed line");
    assert_eq!(line.trim(), "armed dr7=0x90001");
    // The write traps to the tracer, which clears and detaches; the
    // fixture goes on and answers.
    fx.send("inc");
    let mut rest = String::new();
    std::io::Read::read_to_string(&mut out, &mut rest).expect("tracer output");
    assert!(tracer.wait().expect("wait dr_tracer").success(), "{rest}");
    assert_eq!(rest, "trap dr6=0x1 dr7=0x90001\ncleared dr7=0x0\n");
    assert_eq!(fx.expect_line("counter"), "counter 1");
    // Nothing armed any more: the next write does not trap.
    assert_eq!(fx.ask("inc", "counter"), "2");
    let (status, out) = dr_tracer(&["peek", &fx.pid.to_string()]);
    assert_eq!(status.code(), Some(0), "{out}");
    assert!(out.starts_with("dr7=0x0 "), "{out}");
    fx.send("quit");
    assert_eq!(fx.wait_exit(), Some(0));
}

/// Ptrace-set debug registers are per thread: threads the target creates
/// later do not inherit them (so a ptrace fallback must arm each new thread
/// at its clone stop). Left armed on the main thread by a SIGKILLed tracer,
/// a watch on `shared_value` does not fire when two new threads write it.
#[test]
fn ptrace_debug_registers_are_not_inherited_by_new_threads() {
    let mut fx = Fixture::start(&watched());
    let (_, shared) = addresses(&mut fx);
    let pid = fx.pid.to_string();
    let (status, out) = dr_tracer(&["arm", &pid, &shared]);
    assert_eq!(
        std::os::unix::process::ExitStatusExt::signal(&status),
        Some(libc::SIGKILL),
        "{out}"
    );
    // writer-1 and writer-2 each write shared_value 3 times; the main
    // thread only reads it (a write watch): no trap, the sum is printed.
    assert_eq!(fx.ask("threads", "threads"), "406");
    let (status, out) = dr_tracer(&["peek", &pid]);
    assert_eq!(status.code(), Some(0), "{out}");
    assert!(
        out.starts_with("dr7=0x90001 "),
        "still armed on main: {out}"
    );
    fx.send("quit");
    assert_eq!(fx.wait_exit(), Some(0));
}

// ----- the ptrace engine (debug registers set through ptrace) -------------

fn watch_with(c: &mut McpClient, pid: i32, expression: &str, mode: &str, engine: &str) -> Value {
    c.call(
        "watch_expression",
        json!({"pid": pid, "expression": expression, "mode": mode, "engine": engine,
               "duration_s": 120, "max_events": 1000}),
    )
    .ok()
}

/// The DR7 of every thread of `pid`, read by `dr_tracer peekall` (the
/// target must not be traced): (tid, dr7) per thread.
fn dr7_of_every_thread(pid: i32) -> Vec<(i32, u64)> {
    let (status, out) = dr_tracer(&["peekall", &pid.to_string()]);
    assert_eq!(status.code(), Some(0), "{out}");
    let mut lines = out.lines();
    let header = lines.next().unwrap_or_default();
    let count: usize = header
        .strip_prefix("threads ")
        .and_then(|r| r.strip_suffix(" dr7"))
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("peekall header: {out}"));
    let rows: Vec<(i32, u64)> = lines
        .map(|l| {
            let (tid, dr7) = l.split_once(" dr7=0x").unwrap_or_else(|| panic!("{out}"));
            (
                tid.parse().expect("tid"),
                u64::from_str_radix(dr7.trim(), 16).expect("dr7"),
            )
        })
        .collect();
    assert_eq!(rows.len(), count, "{out}");
    rows
}

/// With `engine: ptrace`, every write of two threads created after the
/// watches were set is reported (each new thread is armed at its first
/// stop), with old/new, writer function and thread name; the fixture's
/// output is the unprobed one; list_probes says `ptrace`.
#[test]
fn ptrace_write_watches_report_every_write_of_threads_created_later() {
    let expected = unprobed_threads_line();
    let (mut fx, mut c) = attached();
    let global = watch_with(&mut c, fx.pid, "shared_value", "write", "ptrace");
    assert_eq!(global["engine"], "ptrace", "{global}");
    let note = global["engine_note"].as_str().expect("note");
    assert!(
        note.contains("set through ptrace") && note.contains("SIGKILL"),
        "{note}"
    );
    let heap = watch_with(&mut c, fx.pid, "heap_stats->misses", "write", "ptrace");
    assert_eq!(heap["engine"], "ptrace", "{heap}");
    fx.send("threads");
    assert_eq!(
        fx.expect_line("threads"),
        expected,
        "same output as unprobed"
    );
    for (set, what) in [(&global, "shared_value"), (&heap, "misses")] {
        let id = set["probe_id"].clone();
        let mut after = 0;
        let items = items_until(&mut c, &id, &mut after, |i| i["new"]["value"] == "203");
        let r = results(&mut c, &id, 0, 0);
        assert_eq!(items.len(), 6, "{what}: every write, none lost: {r}");
        let expected_values = ["101", "102", "103", "201", "202", "203"];
        let mut old = "0";
        for (item, new) in items.iter().zip(expected_values) {
            assert_eq!(item["old"]["value"], old, "{what}: {item}");
            assert_eq!(item["new"]["value"], new, "{what}: {item}");
            old = new;
            let (function, name) = if new.starts_with('1') {
                ("writer_one", "writer-1")
            } else {
                ("writer_two", "writer-2")
            };
            assert_eq!(item["thread_name"], name, "{what}: {item}");
            assert_eq!(item["frames"][0]["function"], function, "{what}: {item}");
            assert_ne!(item["tid"], json!(fx.pid), "{item}");
        }
        let row = c.call("list_probes", json!({})).ok();
        assert!(
            row["probes"]
                .as_array()
                .expect("probes")
                .iter()
                .any(|p| p["probe_id"] == id && p["engine"] == "ptrace" && p.get("lost").is_none()),
            "{row}"
        );
    }
    fx.send("quit");
    assert_eq!(fx.wait_exit(), Some(0));
}

/// Two threads writing at once, 2 x 200 writes, on the ptrace engine:
/// every write reported once, by its thread, with the value it wrote.
#[test]
fn ptrace_concurrent_writers_lose_no_write() {
    let (mut fx, mut c) = attached();
    let set = watch_with(&mut c, fx.pid, "storm_value", "write", "ptrace");
    assert_eq!(set["engine"], "ptrace", "{set}");
    let id = set["probe_id"].clone();
    fx.send("storm 200");
    fx.expect_line("storm done");
    let mut seen: Vec<Value> = Vec::new();
    let mut after = 0;
    while seen.len() < 400 {
        let r = results(&mut c, &id, after, 2000);
        let items = r["items"].as_array().expect("items").clone();
        assert!(
            !items.is_empty(),
            "writes missing after {}: {r}",
            seen.len()
        );
        after = r["next_after"].as_u64().expect("next_after");
        seen.extend(items);
    }
    assert_eq!(seen.len(), 400);
    let mut values: Vec<i64> = seen
        .iter()
        .map(|i| {
            i["new"]["value"]
                .as_str()
                .and_then(|v| v.parse().ok())
                .expect("number")
        })
        .collect();
    values.sort_unstable();
    let expected: Vec<i64> = (1..=2)
        .flat_map(|k| (1..=200).map(move |i| k * 1_000_000 + i))
        .collect();
    assert_eq!(values, expected, "each written value exactly once");
    for item in &seen {
        assert_eq!(item["frames"][0]["function"], "storm_writer", "{item}");
    }
    fx.send("quit");
    assert_eq!(fx.wait_exit(), Some(0));
}

/// While a ptrace-engine watch is armed, a SIGTRAP that is not a debug
/// trap of ours (the target raises its own, with a handler) is delivered
/// to the target unchanged, and no item is made of it.
#[test]
fn the_targets_own_sigtrap_is_delivered_while_a_ptrace_watch_is_armed() {
    let (mut fx, mut c) = attached();
    let set = watch_with(&mut c, fx.pid, "counter", "write", "ptrace");
    let id = set["probe_id"].clone();
    assert_eq!(fx.ask("trap", "trapped"), "1", "the handler ran");
    assert_eq!(fx.ask("trap", "trapped"), "2", "the handler ran");
    assert_eq!(fx.ask("inc", "counter"), "1");
    let mut after = 0;
    let items = items_until(&mut c, &id, &mut after, |i| i["new"]["value"] == "1");
    assert_eq!(items.len(), 1, "only the write: {items:?}");
    fx.send("quit");
    assert_eq!(fx.wait_exit(), Some(0));
}

/// `condition` works on the ptrace engine as on the other: only the writes
/// whose new value passes are items, the others are counted as filtered.
#[test]
fn a_ptrace_write_watch_keeps_only_writes_passing_its_condition() {
    let (mut fx, mut c) = attached();
    let set = c
        .call(
            "watch_expression",
            json!({"pid": fx.pid, "expression": "shared_value", "mode": "write", "engine": "ptrace",
                   "condition": "shared_value > 200", "duration_s": 120}),
        )
        .ok();
    assert_eq!(set["engine"], "ptrace", "{set}");
    let id = set["probe_id"].clone();
    assert_eq!(fx.ask("threads", "threads"), "406");
    let mut after = 0;
    let items = items_until(&mut c, &id, &mut after, |i| i["new"]["value"] == "203");
    let values: Vec<&str> = items
        .iter()
        .filter_map(|i| i["new"]["value"].as_str())
        .collect();
    assert_eq!(values, ["201", "202", "203"], "{items:?}");
    assert_eq!(
        items[0]["old"]["value"], "103",
        "old is the last write seen: {items:?}"
    );
    fx.send("quit");
    assert_eq!(fx.wait_exit(), Some(0));
}

/// `access` on the ptrace engine (RW slots) reports reads too.
#[test]
fn ptrace_access_watch_reports_reads_and_writes() {
    let (mut fx, mut c) = attached();
    let set = watch_with(&mut c, fx.pid, "counter", "access", "ptrace");
    assert_eq!(set["engine"], "ptrace", "{set}");
    let id = set["probe_id"].clone();
    fx.send("inc");
    assert_eq!(fx.expect_line("counter"), "counter 1");
    let mut after = 0;
    items_until(&mut c, &id, &mut after, |i| i["new"]["value"] == "1");
    let r = results(&mut c, &id, 0, 0);
    let all = r["items"].as_array().expect("items");
    assert!(all.len() >= 2, "a read and a write at least: {r}");
    assert_eq!(all[0]["old"]["value"], "0", "{r}");
    assert_eq!(
        all[0]["new"]["value"], "0",
        "the first access is a read: {r}"
    );
    for item in all {
        assert_eq!(item["tid"], json!(fx.pid), "main did it: {item}");
        assert_eq!(item["frames"][0]["function"], "main", "{item}");
    }
    fx.send("quit");
    assert_eq!(fx.wait_exit(), Some(0));
}

/// The four debug registers are counted across engines: two perf and two
/// ptrace watches hold them, a fifth (either engine) is refused naming all
/// four; removing a ptrace one frees its register.
#[test]
fn the_fifth_watch_is_refused_across_engines() {
    let (mut fx, mut c) = attached();
    let mut ids = Vec::new();
    for (e, engine) in [
        ("spare[0]", "auto"),
        ("spare[1]", "ptrace"),
        ("spare[2]", "auto"),
        ("spare[3]", "ptrace"),
    ] {
        let set = watch_with(&mut c, fx.pid, e, "write", engine);
        let want = if engine == "ptrace" {
            "ptrace"
        } else {
            "perf_breakpoint"
        };
        assert_eq!(set["engine"], want, "{set}");
        ids.push(set["probe_id"].clone());
    }
    for engine in ["ptrace", "auto"] {
        let fifth = c
            .call(
                "watch_expression",
                json!({"pid": fx.pid, "expression": "shared_value", "mode": "write", "engine": engine}),
            )
            .err();
        assert!(fifth.contains("4 per thread"), "{fifth}");
        for id in &ids {
            assert!(fifth.contains(&format!("watch {id}")), "{fifth}");
        }
    }
    c.call("remove_probe", json!({"probe_id": ids[1]})).ok();
    let set = watch_with(&mut c, fx.pid, "counter", "write", "ptrace");
    let id = set["probe_id"].clone();
    assert_eq!(fx.ask("inc", "counter"), "1");
    let mut after = 0;
    items_until(&mut c, &id, &mut after, |i| i["new"]["value"] == "1");
    fx.send("quit");
    assert_eq!(fx.wait_exit(), Some(0));
}

/// On the ptrace engine too, a 32-byte lvalue takes four debug registers
/// (aligned 8-byte pieces) and they count against the four; a watch ended
/// by max_events gives its register back to the next watch at once.
#[test]
fn a_large_lvalue_is_split_over_ptrace_registers() {
    let (mut fx, mut c) = attached();
    let set = c
        .call(
            "watch_expression",
            json!({"pid": fx.pid, "expression": "counter", "mode": "write", "engine": "ptrace",
                   "max_events": 1, "duration_s": 120}),
        )
        .ok();
    assert_eq!(fx.ask("inc", "counter"), "1");
    let r = until_ended(&mut c, &set["probe_id"]);
    assert_eq!(r["state"], "done", "{r}");
    let set = watch_with(&mut c, fx.pid, "spare", "write", "ptrace");
    assert_eq!(set["engine"], "ptrace", "{set}");
    let note = set["engine_note"].as_str().expect("note");
    assert!(
        note.starts_with("4 debug register(s) on 32 byte(s)"),
        "{note}"
    );
    let refused = c
        .call(
            "watch_expression",
            json!({"pid": fx.pid, "expression": "shared_value", "mode": "write", "engine": "ptrace"}),
        )
        .err();
    assert!(
        refused.contains(&format!("watch {}", set["probe_id"])),
        "{refused}"
    );
    fx.send("quit");
    assert_eq!(fx.wait_exit(), Some(0));
}

/// How a liveprobe session with ptrace-engine watches ends.
#[derive(Debug, Clone, Copy)]
enum Ending {
    RemoveThenSigkill,
    Detach,
    StdinClosed,
    Sigterm,
    MaxEventsThenDetach,
}

/// Every catchable way of ending clears every debug register of every
/// thread before it is let go: afterwards DR7 is 0 on each thread (read by
/// a second tracer), and writes to the watched addresses (by main and by a
/// thread that existed while the watch was armed) neither stop nor kill
/// the target.
fn ptrace_watch_ending_leaves_nothing_armed(ending: Ending) {
    use std::os::unix::process::ExitStatusExt;
    let mut fx = Fixture::start(&watched());
    assert_eq!(fx.ask("park", "parked"), "");
    let mut c = McpClient::start();
    c.call("attach", json!({"pid": fx.pid})).ok();
    let counter = if let Ending::MaxEventsThenDetach = ending {
        c.call(
            "watch_expression",
            json!({"pid": fx.pid, "expression": "counter", "mode": "write", "engine": "ptrace",
                   "max_events": 1, "duration_s": 120}),
        )
        .ok()
    } else {
        watch_with(&mut c, fx.pid, "counter", "write", "ptrace")
    };
    assert_eq!(counter["engine"], "ptrace", "{counter}");
    let shared = watch_with(&mut c, fx.pid, "shared_value", "write", "ptrace");
    // Armed on main and on the parked thread: both writes are seen.
    assert_eq!(fx.ask("inc", "counter"), "1");
    assert_eq!(fx.ask("poke", "poked"), "2");
    let id = counter["probe_id"].clone();
    match ending {
        Ending::MaxEventsThenDetach => {
            let r = until_ended(&mut c, &id);
            assert_eq!(r["state"], "done", "{r}");
        }
        _ => {
            let mut after = 0;
            let items = items_until(&mut c, &id, &mut after, |i| i["new"]["value"] == "2");
            assert_eq!(items.len(), 2, "{items:?}");
            assert_ne!(
                items[1]["tid"],
                json!(fx.pid),
                "the parked thread wrote: {items:?}"
            );
        }
    }
    match ending {
        Ending::RemoveThenSigkill => {
            for set in [&counter, &shared] {
                c.call("remove_probe", json!({"probe_id": set["probe_id"]}))
                    .ok();
            }
            drop(c); // SIGKILL: nothing of liveprobe's can run now
        }
        Ending::Detach | Ending::MaxEventsThenDetach => {
            c.call("detach", json!({"pid": fx.pid})).ok();
        }
        Ending::StdinClosed => {
            assert_eq!(c.shutdown(), Some(0));
        }
        Ending::Sigterm => {
            // SAFETY: kill on our own child's pid.
            unsafe { libc::kill(c.child.id() as i32, libc::SIGTERM) };
            let status = c.child.wait().expect("wait liveprobe");
            assert!(status.code().is_some() || status.signal().is_some());
        }
    }
    // Let go of the target before it is read by another tracer.
    for _ in 0..200 {
        if tracer_pid(fx.pid) == 0 {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    assert_eq!(tracer_pid(fx.pid), 0, "{ending:?}: liveprobe let go");
    let rows = dr7_of_every_thread(fx.pid);
    assert_eq!(rows.len(), 2, "main and parked: {rows:?}");
    for (tid, dr7) in &rows {
        assert_eq!(
            *dr7, 0,
            "{ending:?}: thread {tid} still has debug registers armed"
        );
    }
    // Writes of the watched addresses run free, by both threads.
    assert_eq!(fx.ask("inc", "counter"), "3");
    assert_eq!(fx.ask("poke", "poked"), "4");
    assert_eq!(fx.ask("threads", "threads"), "406");
    fx.send("quit");
    assert_eq!(fx.wait_exit(), Some(0), "{ending:?}");
}

#[test]
fn removing_ptrace_watches_clears_every_thread() {
    ptrace_watch_ending_leaves_nothing_armed(Ending::RemoveThenSigkill);
}

#[test]
fn detach_clears_ptrace_watches_on_every_thread() {
    ptrace_watch_ending_leaves_nothing_armed(Ending::Detach);
}

#[test]
fn a_ptrace_watch_ended_by_max_events_then_detach_leaves_nothing_armed() {
    ptrace_watch_ending_leaves_nothing_armed(Ending::MaxEventsThenDetach);
}

#[test]
fn client_exit_clears_ptrace_watches_on_every_thread() {
    ptrace_watch_ending_leaves_nothing_armed(Ending::StdinClosed);
}

#[test]
fn sigterm_clears_ptrace_watches_on_every_thread() {
    ptrace_watch_ending_leaves_nothing_armed(Ending::Sigterm);
}

/// Where the kernel refuses BPF to liveprobe (here: started without
/// CAP_BPF, CAP_PERFMON and CAP_SYS_ADMIN), `engine: auto` falls back to
/// the ptrace engine and says why in engine_note; `engine: uprobe` (the
/// BPF engine only) is refused naming the other engines.
#[test]
fn auto_falls_back_to_ptrace_where_the_kernel_refuses_bpf() {
    // Capability bounding sets are per thread and inherited by children:
    // dropped on this test's thread, liveprobe (spawned from it) starts
    // without them even as root.
    for cap in [39, 38, 21] {
        // SAFETY: prctl with integer arguments only.
        let dropped = unsafe { libc::prctl(libc::PR_CAPBSET_DROP, cap, 0, 0, 0) };
        assert_eq!(dropped, 0, "drop capability {cap} from the bounding set");
    }
    let (mut fx, mut c) = attached();
    let set = watch_with(&mut c, fx.pid, "shared_value", "write", "auto");
    assert_eq!(set["engine"], "ptrace", "{set}");
    let note = set["engine_note"].as_str().expect("note");
    assert!(
        note.contains("the kernel refused the preferred engine"),
        "{note}"
    );
    let refused = c
        .call(
            "watch_expression",
            json!({"pid": fx.pid, "expression": "counter", "mode": "write", "engine": "uprobe"}),
        )
        .err();
    assert!(refused.contains("use engine auto or ptrace"), "{refused}");
    fx.send("threads");
    assert_eq!(fx.expect_line("threads"), "threads 406");
    let mut after = 0;
    let items = items_until(&mut c, &set["probe_id"], &mut after, |i| {
        i["new"]["value"] == "203"
    });
    assert_eq!(items.len(), 6, "{items:?}");
    let listed = c.call("list_probes", json!({})).ok();
    assert_eq!(listed["probes"][0]["engine"], "ptrace", "{listed}");
    fx.send("quit");
    assert_eq!(fx.wait_exit(), Some(0));
}

/// The promise for a SIGKILLed liveprobe on the ptrace engine: the
/// target runs on and nothing is left armed. The kernel keeps ptrace-set
/// debug registers when their tracer dies (what
/// `ptrace_debug_registers_outlive_a_sigkilled_tracer` shows with a
/// minimal tracer), so this holds only because liveprobe's tracer task
/// outlives its process and its orphaned detach clears them.
#[test]
fn sigkill_of_liveprobe_with_ptrace_watches_leaves_nothing_armed() {
    let mut fx = Fixture::start(&watched());
    assert_eq!(fx.ask("park", "parked"), "");
    let mut c = McpClient::start();
    c.call("attach", json!({"pid": fx.pid})).ok();
    let set = watch_with(&mut c, fx.pid, "counter", "write", "ptrace");
    assert_eq!(set["engine"], "ptrace", "{set}");
    drop(c); // SIGKILL
    for _ in 0..500 {
        if tracer_pid(fx.pid) == 0 {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    assert_eq!(tracer_pid(fx.pid), 0, "the orphaned tracer let go");
    for (tid, dr7) in dr7_of_every_thread(fx.pid) {
        assert_eq!(dr7, 0, "thread {tid} still has debug registers armed");
    }
    assert_eq!(fx.ask("inc", "counter"), "1");
    assert_eq!(fx.ask("poke", "poked"), "2");
    fx.send("quit");
    assert_eq!(fx.wait_exit(), Some(0));
}

/// A write 20 frames deep: the item names the writer and its caller, every
/// frame shown is one of the chain, and where the stack copied at the write
/// ends, `frames_note` says so instead of frames read from the live stack.
/// A shallow writer's stack names it and `main`.
#[test]
fn a_deep_writer_is_named_with_its_caller_and_the_copied_stack_says_where_it_ends() {
    let exe = build_fixture("watch/deep.c", "watch_deep", &["-O0"]);
    let mut fx = Fixture::start(&exe);
    let mut c = McpClient::start();
    c.call("attach", json!({"pid": fx.pid})).ok();
    let set = write_watch(&mut c, fx.pid, "deep_value");
    assert_eq!(set["engine"], "perf_breakpoint", "{set}");
    let id = set["probe_id"].clone();
    fx.send("deep 7");
    fx.expect_line("deep done");
    fx.send("shallow 8");
    fx.expect_line("shallow done");
    let mut after = 0;
    let items = items_until(&mut c, &id, &mut after, |i| i["new"]["value"] == "8");
    assert_eq!(items.len(), 2, "{items:?}");

    let deep = &items[0];
    assert_eq!(deep["old"]["value"], "0", "{deep}");
    assert_eq!(deep["new"]["value"], "7", "{deep}");
    let frames = deep["frames"].as_array().expect("frames");
    assert_eq!(frames[0]["function"], "deep_writer", "{deep}");
    assert_eq!(frames[1]["function"], "descend", "{deep}");
    // Nothing guessed: every frame shown is one of the chain's.
    for f in frames {
        assert!(
            f["function"] == "deep_writer" || f["function"] == "descend",
            "a frame outside the chain: {deep}"
        );
    }
    // 19 frames of `descend` hold ~3.4 KiB of stack, more than the watch
    // copies: the stack stops early and says why.
    assert!(frames.len() < 20, "{deep}");
    let note = deep["frames_note"].as_str().expect("frames_note");
    assert!(
        note.contains("bytes of the writer's stack") && note.contains("not shown"),
        "{note}"
    );

    let shallow = &items[1];
    assert_eq!(shallow["old"]["value"], "7", "{shallow}");
    assert_eq!(
        shallow["frames"][0]["function"], "shallow_writer",
        "{shallow}"
    );
    assert_eq!(shallow["frames"][1]["function"], "main", "{shallow}");
    fx.send("quit");
    assert_eq!(fx.wait_exit(), Some(0));
}

/// A busy ptrace-engine watch (two threads writing as fast as they can,
/// so the tracer waits for traps blocked in waitpid) still lets liveprobe
/// answer: its results are read, it is removed and the target detached
/// while the writes go on, and afterwards no thread has a debug register
/// armed and the rest of the writes run free; uprobe probes set meanwhile
/// are armed on their engine. `list_probes` answers in the
/// middle of the writes (fewer seen than made: the storm is 200000 writes,
/// seconds with every write stopping its writer, and the answer comes
/// right after the first 200 were read).
#[test]
fn a_busy_ptrace_watch_answers_is_removed_and_detached_while_writes_go_on() {
    let (mut fx, mut c) = attached();
    let set = c
        .call(
            "watch_expression",
            json!({"pid": fx.pid, "expression": "storm_value", "mode": "write",
                   "engine": "ptrace", "duration_s": 600, "max_events": 1_000_000}),
        )
        .ok();
    assert_eq!(set["engine"], "ptrace", "{set}");
    let id = set["probe_id"].clone();
    fx.send("storm 100000");
    let mut after = 0;
    while after < 200 {
        let r = results(&mut c, &id, after, 2000);
        assert_eq!(r["state"], "armed", "{r}");
        let items = r["items"].as_array().expect("items");
        assert!(!items.is_empty(), "no write seen after {after}: {r}");
        for item in items {
            assert_eq!(item["frames"][0]["function"], "storm_writer", "{item}");
        }
        after = r["next_after"].as_u64().expect("next_after");
    }
    // Kernel-side probes are set while the watch traps: the BPF verifier
    // gives up (EAGAIN) when a signal is pending, and the tracer's alarm
    // never is outside its wait.
    for _ in 0..5 {
        let uprobe = c
            .call(
                "set_snapshot",
                json!({"pid": fx.pid, "location": "writer_one", "engine": "uprobe",
                       "expressions": ["heap_stats->misses", "shared_value", "spare[0]",
                                       "spare[3]", "byte_flags[2]", "heap_stats->hits"]}),
            )
            .ok();
        assert_eq!(uprobe["engine"], "uprobe", "{uprobe}");
        c.call("remove_probe", json!({"probe_id": uprobe["probe_id"]}))
            .ok();
    }
    let row = common::probes::row_of(&mut c, &id);
    c.call("remove_probe", json!({"probe_id": id})).ok();
    c.call("detach", json!({"pid": fx.pid})).ok();
    fx.expect_line("storm done");
    let seen = row["hits"].as_u64().expect("hits");
    assert!(
        (200..200_000).contains(&seen),
        "answered in the middle of the writes: {seen} seen; {row}"
    );
    assert_eq!(tracer_pid(fx.pid), 0, "liveprobe let go");
    for (tid, dr7) in dr7_of_every_thread(fx.pid) {
        assert_eq!(dr7, 0, "thread {tid} still has debug registers armed");
    }
    fx.send("quit");
    assert_eq!(fx.wait_exit(), Some(0));
}
