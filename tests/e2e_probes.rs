//! End-to-end tests of non-breaking probes, through a real MCP session with
//! the real binary, on a real multi-threaded fixture.

mod common;

use common::probes::*;
use common::*;
use serde_json::{Value, json};

/// The checksum line of an unprobed run of `run n`.
fn unprobed_checksum(n: u64) -> String {
    let mut fx = Fixture::start(&orders());
    fx.send(&format!("run {n}"));
    let line = fx.expect_line("checksum");
    fx.send("quit");
    fx.wait_exit();
    line
}

fn attached() -> (Fixture, McpClient) {
    let fx = Fixture::start(&orders());
    let mut c = McpClient::start();
    c.call("attach", json!({"pid": fx.pid})).ok();
    (fx, c)
}

/// Calls a set_* tool with `"engine": engine` and checks that the answer
/// says the probe uses that engine (for "auto", only that it names one).
fn set_with(c: &mut McpClient, tool: &str, mut args: Value, engine: &str) -> Value {
    args["engine"] = json!(engine);
    let set = c.call(tool, args.clone()).ok();
    if engine == "auto" {
        assert!(
            set["engine"] == "uprobe" || set["engine"] == "ptrace",
            "{tool} {args}: {set}"
        );
    } else {
        assert_eq!(set["engine"], engine, "{tool} {args}: {set}");
    }
    set
}

fn a_count_metric_on_four_threads_loses_no_hit(engine: &str) {
    let expected = unprobed_checksum(100_000);
    let (mut fx, mut c) = attached();
    let set = set_with(
        &mut c,
        "set_metric",
        json!({"pid": fx.pid, "location": "process_order", "kind": "count"}),
        engine,
    );
    let id = set["probe_id"].clone();
    let addr = set["resolved"][0]["address"]
        .as_str()
        .expect("address")
        .to_string();
    assert_eq!(byte_at(fx.pid, &addr), 0xcc, "the breakpoint is in place");
    fx.send("run 100000");
    assert_eq!(fx.expect_line("checksum"), expected);
    let r = results(&mut c, &id, 0, 0);
    assert_eq!(r["items"][0]["count"], json!(400_000), "{r}");
    assert_eq!(r["state"], "armed");
    let row = row_of(&mut c, &id);
    assert_eq!(row["engine"], engine, "{row}");
    assert!(row.get("lost").is_none(), "no hit lost: {row}");
    let removed = c.call("remove_probe", json!({"probe_id": id})).ok();
    assert_eq!(removed["hits"], json!(400_000));
    assert_ne!(
        byte_at(fx.pid, &addr),
        0xcc,
        "the breakpoint left the target"
    );
    fx.send("run 10");
    fx.expect_line("checksum");
    fx.send("quit");
    assert_eq!(fx.wait_exit(), Some(0));
}

#[test]
fn a_count_metric_on_four_threads_loses_no_hit_uprobe() {
    a_count_metric_on_four_threads_loses_no_hit("uprobe");
}

#[test]
fn a_count_metric_on_four_threads_loses_no_hit_ptrace() {
    a_count_metric_on_four_threads_loses_no_hit("ptrace");
}

fn snapshots_carry_the_hitting_threads_values(engine: &str) {
    let (mut fx, mut c) = attached();
    let set = set_with(
        &mut c,
        "set_snapshot",
        json!({
            "pid": fx.pid,
            "location": "process_order",
            "max_hits": 40,
            "expressions": ["o->amount", "o->n_items", "o->items[0].price", "o->items[1].price",
                            "o->items[2].price", "o->items[3].price", "o->id", "worker", "o->customer"]
        }),
        engine,
    );
    let id = set["probe_id"].clone();
    assert_eq!(set["resolved"][0]["function"], "process_order");
    fx.send("run 1000");
    fx.expect_line("checksum");
    let r = results(&mut c, &id, 0, 5000);
    assert_eq!(r["state"], "done", "{r}");
    let items = r["items"].as_array().expect("items");
    assert_eq!(items.len(), 40);
    let names = ["alice", "bob", "carol", "dave"];
    for item in items {
        let v = |i: usize| -> i64 {
            item["expressions"][i]["value"]
                .as_str()
                .and_then(|s| s.parse().ok())
                .unwrap_or_else(|| panic!("expression {i} not a number: {item}"))
        };
        let (amount, n_items, id_, worker) = (v(0), v(1) as usize, v(6), v(7));
        let prices: i64 = (0..n_items).map(|i| v(2 + i)).sum();
        assert_eq!(amount, prices, "o->amount is the sum of its items: {item}");
        assert_eq!(
            id_ / 1_000_000,
            worker,
            "the order belongs to the hitting worker: {item}"
        );
        let customer = item["expressions"][8]["value"].as_str().expect("customer");
        assert!(
            customer.contains(names[worker as usize % 4]),
            "{customer} for worker {worker}"
        );
        // The frame's own locals are there too.
        let vars: Vec<&str> = item["frames"][0]["variables"]
            .as_array()
            .expect("variables")
            .iter()
            .filter_map(|v| v["name"].as_str())
            .collect();
        assert!(vars.contains(&"o") && vars.contains(&"worker"), "{vars:?}");
        assert!(
            item["tid"].as_i64().expect("tid") != fx.pid as i64,
            "workers hit, not main"
        );
    }
    fx.send("quit");
    assert_eq!(fx.wait_exit(), Some(0));
}

#[test]
fn snapshots_carry_the_hitting_threads_values_uprobe() {
    snapshots_carry_the_hitting_threads_values("uprobe");
}

#[test]
fn snapshots_carry_the_hitting_threads_values_ptrace() {
    snapshots_carry_the_hitting_threads_values("ptrace");
}

fn logpoints_render_like_evaluate_and_conditions_filter(engine: &str) {
    let (mut fx, mut c) = attached();
    let loc = format!("orders.c:{}", line_of("uint64_t h = (uint64_t)o->id * 31u"));
    let log = set_with(
        &mut c,
        "set_logpoint",
        json!({"pid": fx.pid, "location": loc, "condition": "worker == 2 && o->id % 100 == 7",
               "message": "order {o->id} worker={worker} amount={o->amount} who={o->customer}"}),
        engine,
    );
    let snap = set_with(
        &mut c,
        "set_snapshot",
        json!({"pid": fx.pid, "location": loc, "condition": "worker == 2 && o->id % 100 == 7",
               "max_hits": 3, "expressions": ["o->id", "worker", "o->amount", "o->customer"]}),
        engine,
    );
    fx.send("run 1000");
    fx.expect_line("checksum");
    let logs = results(&mut c, &log["probe_id"], 0, 5000);
    let snaps = results(&mut c, &snap["probe_id"], 0, 5000);
    let texts: Vec<&str> = logs["items"]
        .as_array()
        .expect("items")
        .iter()
        .filter_map(|i| i["text"].as_str())
        .collect();
    assert_eq!(
        texts.len(),
        10,
        "ids 2000007, 2000107, ... 2000907: {texts:?}"
    );
    for (i, s) in snaps["items"].as_array().expect("items").iter().enumerate() {
        let e = |k: usize| {
            s["expressions"][k]["value"]
                .as_str()
                .expect("value")
                .to_string()
        };
        let expected = format!(
            "order {} worker={} amount={} who={}",
            e(0),
            e(1),
            e(2),
            e(3)
        );
        assert_eq!(texts[i], expected);
    }
    assert!(
        texts[0].starts_with("order 2000007 worker=2 "),
        "{}",
        texts[0]
    );
    let listed = c.call("list_probes", json!({"pid": fx.pid})).ok();
    let row = listed["probes"]
        .as_array()
        .expect("probes")
        .iter()
        .find(|p| p["probe_id"] == log["probe_id"])
        .expect("logpoint listed")
        .clone();
    assert_eq!(row["hits"], json!(10));
    assert_eq!(row["filtered"], json!(4000 - 10));
    assert_eq!(row["engine"], engine, "{row}");
    fx.send("quit");
    fx.wait_exit();
}

#[test]
fn logpoints_render_like_evaluate_and_conditions_filter_uprobe() {
    logpoints_render_like_evaluate_and_conditions_filter("uprobe");
}

#[test]
fn logpoints_render_like_evaluate_and_conditions_filter_ptrace() {
    logpoints_render_like_evaluate_and_conditions_filter("ptrace");
}

#[test]
fn get_probe_results_long_polls_until_traffic_passes() {
    let (mut fx, mut c) = attached();
    let set = c
        .call(
            "set_snapshot",
            json!({"pid": fx.pid, "location": "process_order"}),
        )
        .ok();
    let id = set["probe_id"].clone();
    let empty = results(&mut c, &id, 0, 50);
    assert_eq!(empty["items"].as_array().expect("items").len(), 0);
    assert_eq!(empty["state"], "armed");
    let capped = c
        .call("get_probe_results", json!({"probe_id": id, "wait_ms": 10}))
        .ok();
    assert!(capped.get("wait_capped").is_none());
    fx.send("run 5");
    let r = results(&mut c, &id, 0, 20_000);
    assert_eq!(r["items"].as_array().expect("items").len(), 1);
    assert_eq!(r["next_after"], json!(1));
    assert_eq!(r["state"], "done");
    fx.expect_line("checksum");
    // Done: the breakpoint is gone.
    let addr = set["resolved"][0]["address"]
        .as_str()
        .expect("address")
        .to_string();
    assert_ne!(byte_at(fx.pid, &addr), 0xcc);
    fx.send("quit");
    fx.wait_exit();
}

fn fork_spawn_thread_churn_and_exec_while_probed(engine: &str) {
    let (mut fx, mut c) = attached();
    let set = set_with(
        &mut c,
        "set_metric",
        json!({"pid": fx.pid, "location": "process_order", "kind": "count"}),
        engine,
    );
    let id = set["probe_id"].clone();
    fx.send("fork");
    assert_eq!(fx.expect_line("child"), "child exited 0");
    fx.send("spawn");
    assert_eq!(fx.expect_line("spawned"), "spawned 0 0");
    fx.send("churn 30");
    assert_eq!(fx.expect_line("churned"), "churned 30");
    fx.send("run 1000");
    fx.expect_line("checksum");
    let r = results(&mut c, &id, 0, 0);
    // The churned threads' 3000 calls and the workers' 4000 are counted; the
    // forked child's are not (it is not our target).
    assert_eq!(r["items"][0]["count"], json!(7000), "{r}");
    fx.send("exec");
    assert_eq!(fx.expect_line("exec-done"), "exec-done");
    let r = results(&mut c, &id, 0, 10_000);
    assert_eq!(r["state"], "target_exited", "{r}");
    assert!(r["reason"].as_str().expect("reason").contains("exec"));
}

#[test]
fn fork_spawn_thread_churn_and_exec_while_probed_uprobe() {
    fork_spawn_thread_churn_and_exec_while_probed("uprobe");
}

#[test]
fn fork_spawn_thread_churn_and_exec_while_probed_ptrace() {
    fork_spawn_thread_churn_and_exec_while_probed("ptrace");
}

#[test]
fn target_exit_ends_probes_and_results_stay_readable() {
    let (mut fx, mut c) = attached();
    let set = c
        .call(
            "set_logpoint",
            json!({"pid": fx.pid, "location": "process_order", "message": "id={o->id}", "max_hits": 5}),
        )
        .ok();
    let count = c
        .call(
            "set_metric",
            json!({"pid": fx.pid, "location": "process_order", "kind": "histogram", "expression": "o->amount"}),
        )
        .ok();
    fx.send("run 100");
    fx.expect_line("checksum");
    fx.send("quit");
    assert_eq!(fx.expect_line("bye"), "bye 400");
    assert_eq!(fx.wait_exit(), Some(0));
    let r = results(&mut c, &count["probe_id"], 0, 10_000);
    assert_eq!(r["state"], "target_exited", "{r}");
    assert_eq!(r["items"][0]["count"], json!(400));
    assert!(r["items"][0]["p50"].as_f64().is_some());
    let logs = results(&mut c, &set["probe_id"], 0, 0);
    assert_eq!(logs["items"].as_array().expect("items").len(), 5);
    assert_eq!(logs["state"], "done");
}

#[test]
fn dry_run_and_source_contains() {
    let (fx, mut c) = attached();
    let line = line_of("uint64_t h = (uint64_t)o->id * 31u");
    let dry = c
        .call(
            "set_snapshot",
            json!({"pid": fx.pid, "location": format!("orders.c:{}", line - 2),
                   "source_contains": "h ^= (uint64_t)worker", "dry_run": true}),
        )
        .ok();
    assert_eq!(dry["dry_run"], json!(true));
    assert!(dry.get("probe_id").is_none());
    assert_eq!(dry["resolved"][0]["line"], json!(line + 1));
    assert!(dry["note"].as_str().expect("note").contains("using line"));
    let vars: Vec<&str> = dry["variables"]
        .as_array()
        .expect("variables")
        .iter()
        .filter_map(|v| v["name"].as_str())
        .collect();
    assert!(
        vars.contains(&"o") && vars.contains(&"worker") && vars.contains(&"h"),
        "{vars:?}"
    );
    let listed = c.call("list_probes", json!({})).ok();
    assert_eq!(
        listed["probes"].as_array().expect("probes").len(),
        0,
        "dry run armed nothing"
    );
    let err = c
        .call(
            "set_snapshot",
            json!({"pid": fx.pid, "location": format!("orders.c:{line}"), "source_contains": "no such text anywhere"}),
        )
        .err();
    assert!(err.contains("no such text anywhere"), "{err}");
}

#[test]
fn bad_probe_requests_get_clear_errors() {
    let (fx, mut c) = attached();
    let err = c
        .call(
            "set_snapshot",
            json!({"pid": fx.pid, "location": "proces_order"}),
        )
        .err();
    assert!(
        err.contains("process_order"),
        "suggests the near name: {err}"
    );
    // (tool, arguments, what the error must name)
    let refusals = [
        (
            "set_snapshot",
            json!({"location": "nosuchfile.c:10"}),
            "nosuchfile.c",
        ),
        (
            "set_snapshot",
            json!({"location": "process_order", "condition": "o->no_such_field == 1"}),
            "no_such_field",
        ),
        (
            "set_snapshot",
            json!({"location": "process_order", "condition": "worker == "}),
            "column",
        ),
        (
            "set_snapshot",
            json!({"location": "process_order", "max_hits": 0}),
            "max_hits",
        ),
        (
            "set_logpoint",
            json!({"location": "process_order", "message": "a {o->id"}),
            "never closed",
        ),
        (
            "set_metric",
            json!({"location": "process_order", "kind": "histogram"}),
            "expression",
        ),
    ];
    for (tool, mut args, expected) in refusals {
        args["pid"] = json!(fx.pid);
        let err = c.call(tool, args.clone()).err();
        assert!(err.contains(expected), "{tool} {args}: {err}");
    }
    let err = c
        .call(
            "set_snapshot",
            json!({"pid": fx.pid, "location": "orders.c:53", "source_contains": "return h;",
                   "condition": "session_token[0] == 'a'"}),
        )
        .err();
    assert!(err.contains("secret"), "{err}");
    let err = c.call("get_probe_results", json!({"probe_id": 4242})).err();
    assert!(err.contains("4242"), "{err}");
    let err = c.call("remove_probe", json!({"probe_id": 4242})).err();
    assert!(err.contains("4242"), "{err}");
    let other = Fixture::start(&orders());
    let err = c
        .call(
            "set_snapshot",
            json!({"pid": other.pid, "location": "process_order"}),
        )
        .err();
    assert!(err.contains("attach"), "{err}");
}

fn stop_liveprobe_mid_storm(how: &str, engine: &str) {
    let n = 300_000;
    let expected = unprobed_checksum(n);
    let (mut fx, mut c) = attached();
    let set = set_with(
        &mut c,
        "set_metric",
        json!({"pid": fx.pid, "location": "process_order", "kind": "count"}),
        engine,
    );
    let addr = set["resolved"][0]["address"]
        .as_str()
        .expect("address")
        .to_string();
    fx.send(&format!("run {n}"));
    // Wait until hits are flowing, then stop liveprobe in the middle.
    let mut seen = 0;
    for _ in 0..200 {
        let r = results(&mut c, &set["probe_id"], 0, 0);
        seen = r["items"][0]["count"].as_u64().unwrap_or(0);
        if seen > 1000 {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    assert!(seen > 0, "no hits before stopping");
    let server = c.child.id() as i32;
    match how {
        "stdin" => {
            assert_eq!(c.shutdown(), Some(0));
        }
        sig => {
            let status = std::process::Command::new("kill")
                .args([&format!("-{sig}"), &server.to_string()])
                .status()
                .expect("kill");
            assert!(status.success());
            let code = c.child.wait().expect("wait liveprobe");
            assert!(code.success() || code.code().is_some(), "{code:?}");
        }
    }
    assert_eq!(
        fx.expect_line("checksum"),
        expected,
        "the target survived with the right result"
    );
    assert_eq!(tracer_pid(fx.pid), 0);
    assert_ne!(byte_at(fx.pid, &addr), 0xcc);
    fx.send("quit");
    assert_eq!(fx.wait_exit(), Some(0));
}

#[test]
fn sigterm_mid_storm_leaves_the_target_clean_uprobe() {
    stop_liveprobe_mid_storm("TERM", "uprobe");
}

#[test]
fn sigterm_mid_storm_leaves_the_target_clean_ptrace() {
    stop_liveprobe_mid_storm("TERM", "ptrace");
}

#[test]
fn sigint_mid_storm_leaves_the_target_clean() {
    stop_liveprobe_mid_storm("INT", "auto");
}

#[test]
fn sighup_mid_storm_leaves_the_target_clean() {
    stop_liveprobe_mid_storm("HUP", "auto");
}

#[test]
fn closing_stdin_mid_storm_leaves_the_target_clean() {
    stop_liveprobe_mid_storm("stdin", "auto");
}

#[test]
fn a_condition_that_faults_is_counted_then_reported() {
    let (mut fx, mut c) = attached();
    let set = c
        .call(
            "set_snapshot",
            json!({"pid": fx.pid, "location": "process_order", "max_hits": 5,
                   "condition": "o->customer[4000000000] == 'x'"}),
        )
        .ok();
    fx.send("run 100");
    fx.expect_line("checksum");
    let r = results(&mut c, &set["probe_id"], 0, 5000);
    assert_eq!(r["state"], "error", "{r}");
    assert_eq!(r["hits"], json!(0));
    assert!(
        r["reason"].as_str().expect("reason").contains("condition"),
        "{r}"
    );
    let listed = c.call("list_probes", json!({})).ok();
    assert!(
        listed["probes"][0]["condition_faults"]
            .as_u64()
            .expect("faults")
            >= 10
    );
    // The target never noticed.
    fx.send("run 10");
    fx.expect_line("checksum");
}

#[test]
fn subscribers_hear_of_new_results() {
    let (mut fx, mut c) = attached();
    let set = c
        .call(
            "set_logpoint",
            json!({"pid": fx.pid, "location": "process_order", "message": "{o->id}", "max_hits": 3}),
        )
        .ok();
    let uri = format!("probe://{}/results", set["probe_id"]);
    let listed = c.request("resources/list", json!({}));
    assert!(
        listed["result"]["resources"]
            .as_array()
            .expect("resources")
            .iter()
            .any(|r| r["uri"] == uri.as_str()),
        "{listed}"
    );
    let sub = c.request("resources/subscribe", json!({"uri": uri}));
    assert!(sub.get("result").is_some(), "{sub}");
    fx.send("run 5");
    fx.expect_line("checksum");
    let note = c.wait_notification("notifications/resources/updated");
    assert_eq!(note["params"]["uri"], uri.as_str());
    let read = c.request("resources/read", json!({"uri": uri}));
    let text = read["result"]["contents"][0]["text"]
        .as_str()
        .expect("text");
    let body: Value = serde_json::from_str(text).expect("JSON results");
    assert_eq!(body["items"].as_array().expect("items").len(), 3);
    let bad = c.request("resources/read", json!({"uri": "probe://999/results"}));
    assert!(bad.get("error").is_some(), "{bad}");
}

fn durations_to_the_function_return_and_to_an_end_location(engine: &str) {
    let (mut fx, mut c) = attached();
    let to_return = set_with(
        &mut c,
        "set_metric",
        json!({"pid": fx.pid, "location": "process_order", "kind": "duration"}),
        engine,
    );
    assert!(
        !to_return["end_resolved"]
            .as_array()
            .expect("end sites")
            .is_empty(),
        "{to_return}"
    );
    let start = line_of("make_order(&o, base + i, worker);");
    let end = line_of("sum += process_order(&o, worker);");
    let span = set_with(
        &mut c,
        "set_metric",
        json!({"pid": fx.pid, "location": format!("orders.c:{start}"), "kind": "duration",
               "end_location": format!("orders.c:{end}")}),
        engine,
    );
    fx.send("run 250");
    fx.expect_line("checksum");
    for id in [&to_return["probe_id"], &span["probe_id"]] {
        let r = results(&mut c, id, 0, 0);
        let item = &r["items"][0];
        assert_eq!(item["count"], json!(1000), "{r}");
        assert!(item["min"].as_f64().expect("min") > 0.0, "{r}");
        assert!(item["p99"].as_f64().expect("p99") >= item["p50"].as_f64().expect("p50"));
    }
    fx.send("quit");
    fx.wait_exit();
}

#[test]
fn durations_to_the_function_return_and_to_an_end_location_uprobe() {
    durations_to_the_function_return_and_to_an_end_location("uprobe");
}

#[test]
fn durations_to_the_function_return_and_to_an_end_location_ptrace() {
    durations_to_the_function_return_and_to_an_end_location("ptrace");
}

#[test]
fn the_owner_adds_secret_names_on_the_command_line() {
    let mut fx = Fixture::start(&orders());
    let mut c = McpClient::start_with_args(&["--redact-name", "customer"]);
    c.call("attach", json!({"pid": fx.pid})).ok();
    let set = c
        .call(
            "set_snapshot",
            json!({"pid": fx.pid, "location": "process_order", "expressions": ["o->customer", "o->id"]}),
        )
        .ok();
    fx.send("run 3");
    fx.expect_line("checksum");
    let r = results(&mut c, &set["probe_id"], 0, 5000);
    let item = &r["items"][0];
    assert_eq!(item["expressions"][0]["unavailable"], "redacted", "{item}");
    assert!(item["expressions"][1]["value"].as_str().is_some());
    // The built-in list still applies.
    let token = item["frames"][0]["variables"]
        .as_array()
        .expect("variables")
        .iter()
        .find(|v| v["name"] == "session_token")
        .expect("session_token")
        .clone();
    assert_eq!(token["unavailable"], "redacted");
    // And the customer field inside the struct is redacted too.
    let o = item["frames"][0]["variables"]
        .as_array()
        .expect("variables")
        .iter()
        .find(|v| v["name"] == "o")
        .expect("o")
        .to_string();
    for name in ["alice", "bob", "carol", "dave"] {
        assert!(!o.contains(name), "{o}");
    }
}
