//! End-to-end tests of the two probe engines (kernel uprobe + BPF capture,
//! and ptrace breakpoints) through a real MCP session with the real binary:
//! what survives a SIGKILL of liveprobe, when `auto` falls back to ptrace and
//! says why, dry runs, both engines in one function, the server's
//! `--probe-engine` default, and conditions evaluated on captured memory.

mod common;

use common::probes::*;
use common::*;
use serde_json::{Value, json};

fn storm() -> std::path::PathBuf {
    build_fixture("probes/storm.c", "probes_storm", &["-O0"])
}

/// `orders.c:N` of the line containing `needle`.
fn at_line(needle: &str) -> String {
    format!("orders.c:{}", line_of(needle))
}

/// The line in make_order() where the local index `i` is in scope and
/// `o->items[i]` has an address computed from data.
const INDEXED_LINE: &str = "o->amount += o->items[i].price;";

fn attached(exe: &std::path::Path) -> (Fixture, McpClient) {
    let fx = Fixture::start(exe);
    let mut c = McpClient::start();
    c.call("attach", json!({"pid": fx.pid})).ok();
    (fx, c)
}

/// Calls a set_* tool with `"engine": engine` (none when `None`).
fn set(c: &mut McpClient, tool: &str, mut args: Value, engine: Option<&str>) -> Value {
    if let Some(engine) = engine {
        args["engine"] = json!(engine);
    }
    c.call(tool, args).ok()
}

/// Same, and checks that the answer names `expected` as its engine.
fn set_expect(
    c: &mut McpClient,
    tool: &str,
    args: Value,
    engine: Option<&str>,
    expected: &str,
) -> Value {
    let answer = set(c, tool, args.clone(), engine);
    assert_eq!(answer["engine"], expected, "{tool} {args}: {answer}");
    answer
}

fn address_of(answer: &Value) -> String {
    answer["resolved"][0]["address"]
        .as_str()
        .unwrap_or_else(|| panic!("no address in {answer}"))
        .to_string()
}

/// Logpoint texts of a results answer.
fn texts(r: &Value) -> Vec<String> {
    r["items"]
        .as_array()
        .expect("items")
        .iter()
        .map(|i| i["text"].as_str().expect("text").to_string())
        .collect()
}

/// `name=value` from a logpoint text, as a number.
fn field(text: &str, name: &str) -> i64 {
    text.split_whitespace()
        .find_map(|w| w.strip_prefix(&format!("{name}=")))
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no number {name}= in {text:?}"))
}

/// Expression `k` of a snapshot item, as a number (a char's code: `111 'o'`).
fn expr(item: &Value, k: usize) -> i64 {
    item["expressions"][k]["value"]
        .as_str()
        .and_then(|s| s.split_whitespace().next())
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("expression {k} is not a number: {item}"))
}

/// One `run n` of the storm fixture, "go" as soon as every worker spins;
/// its checksum line.
fn storm_run(fx: &mut Fixture, n: u64) -> String {
    fx.send(&format!("run {n}"));
    fx.expect_line("spinning");
    fx.send("go");
    fx.expect_line("checksum")
}

/// The checksum line of an unprobed `run n` of the storm fixture.
fn unprobed_storm(n: u64) -> String {
    let mut fx = Fixture::start(&storm());
    let line = storm_run(&mut fx, n);
    fx.send("quit");
    assert_eq!(fx.wait_exit(), Some(0));
    line
}

/// (a) Uprobes go with liveprobe's descriptors: SIGKILL of liveprobe while
/// two uprobe probes (a count and a logpoint on the same hot function) are
/// being hit on four threads leaves the target running, computing the same
/// results as an unprobed run, with its original code byte back, and it
/// exits 0. The fixture's workers keep calling the probed function until
/// the test says "go", so the kill always lands in the middle of the storm.
#[test]
fn sigkill_mid_storm_with_uprobe_probes_leaves_the_target_healthy() {
    let n = 2_000;
    let expected = unprobed_storm(n);
    assert!(expected.ends_with(" bad 0"), "{expected}");
    let (mut fx, mut c) = attached(&storm());
    let dry = set_expect(
        &mut c,
        "set_metric",
        json!({"pid": fx.pid, "location": "process_order", "kind": "count", "dry_run": true}),
        Some("uprobe"),
        "uprobe",
    );
    let addr = address_of(&dry);
    let original = byte_at(fx.pid, &addr);
    assert_ne!(original, 0xcc, "no int3 before any probe");
    let count = set_expect(
        &mut c,
        "set_metric",
        json!({"pid": fx.pid, "location": "process_order", "kind": "count"}),
        Some("uprobe"),
        "uprobe",
    );
    let log = set_expect(
        &mut c,
        "set_logpoint",
        json!({"pid": fx.pid, "location": "process_order", "max_hits": 10_000_000,
               "message": "id={o->id} worker={worker}"}),
        Some("uprobe"),
        "uprobe",
    );
    assert_eq!(address_of(&count), addr);
    assert_eq!(address_of(&log), addr);
    assert_eq!(
        byte_at(fx.pid, &addr),
        0xcc,
        "the kernel's int3 is in place"
    );

    // A first storm shows that both probes record hits. (No call during a
    // storm: liveprobe answers slowly while it is flooded with records.)
    assert_eq!(storm_run(&mut fx, n), expected);
    let counted = results(&mut c, &count["probe_id"], 0, 0);
    assert!(
        counted["items"][0]["count"].as_u64().expect("count") > 0,
        "{counted}"
    );
    let row = row_of(&mut c, &log["probe_id"]);
    assert!(row["hits"].as_u64().expect("hits") > 0, "{row}");
    assert_eq!(row["state"], "armed", "{row}");
    assert_eq!(row_of(&mut c, &count["probe_id"])["state"], "armed");

    // The second storm: every worker is calling process_order() in a loop
    // when liveprobe is killed, and goes on until "go".
    fx.send(&format!("run {n}"));
    fx.expect_line("spinning");
    let server = c.child.id() as i32;
    let status = std::process::Command::new("kill")
        .args(["-KILL", &server.to_string()])
        .status()
        .expect("kill");
    assert!(status.success());
    let exit = c.child.wait().expect("wait liveprobe");
    use std::os::unix::process::ExitStatusExt;
    assert_eq!(exit.signal(), Some(9), "{exit:?}");

    // liveprobe is reaped; its tracer task (a process of its own that
    // shares liveprobe's descriptors) detaches the target and exits, which
    // closes the descriptors. The storm is still going (no "go" yet): the
    // target ends up neither stopped nor traced, and its code is as before.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while tracer_pid(fx.pid) != 0 || byte_at(fx.pid, &addr) != original {
        assert!(
            std::time::Instant::now() < deadline,
            "still traced by {} or the kernel's int3 still in place",
            tracer_pid(fx.pid)
        );
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    assert!(
        matches!(proc_state(fx.pid), Some('R' | 'S')),
        "{:?}",
        proc_state(fx.pid)
    );
    fx.send("go");
    assert_eq!(
        fx.expect_line("checksum"),
        expected,
        "same result as unprobed, no wrong result during the storm"
    );
    // And it goes on working unprobed.
    assert_eq!(storm_run(&mut fx, n), expected);
    fx.send("quit");
    assert_eq!(fx.expect_line("bye"), "bye");
    assert_eq!(fx.wait_exit(), Some(0));
}

/// (b) Probes whose expressions need `o->customer[worker]`, an address
/// computed from data (the index is a variable): `auto` (asked for or by
/// default) uses ptrace and says why, and the values are right; `uprobe` is
/// refused with what to do instead. The same goes for a condition or a
/// histogram needing such an address, and for a snapshot of caller frames.
#[test]
fn data_dependent_addresses_fall_back_to_ptrace_or_are_refused_for_uprobe() {
    let (mut fx, mut c) = attached(&orders());
    let message = "id={o->id} worker={worker} c={o->customer[worker]}";
    let log = set_expect(
        &mut c,
        "set_logpoint",
        json!({"pid": fx.pid, "location": "process_order", "message": message, "max_hits": 100}),
        Some("auto"),
        "ptrace",
    );
    let note = log["engine_note"]
        .as_str()
        .expect("engine_note")
        .to_string();
    assert!(
        note.contains("computed from the target's data"),
        "says why: {note}"
    );
    let row = row_of(&mut c, &log["probe_id"]);
    assert_eq!(row["engine"], "ptrace", "{row}");
    assert_eq!(row["engine_note"], note.as_str(), "{row}");
    let snap = set_expect(
        &mut c,
        "set_snapshot",
        json!({"pid": fx.pid, "location": "process_order", "max_hits": 5,
               "expressions": ["o->customer[worker]", "worker"]}),
        None,
        "ptrace",
    );
    assert!(snap["engine_note"].as_str().is_some(), "{snap}");
    // The index only in the condition: only carol's [2] is 'r'.
    let cond = set_expect(
        &mut c,
        "set_metric",
        json!({"pid": fx.pid, "location": "process_order", "kind": "count",
               "condition": "o->customer[worker] == 'r'"}),
        None,
        "ptrace",
    );
    assert!(cond["engine_note"].as_str().is_some(), "{cond}");

    // Engine uprobe: refused, naming the engine and what to use instead.
    let refusals = [
        json!({"tool": "set_logpoint", "message": message}),
        json!({"tool": "set_snapshot", "expressions": ["o->customer[worker]"]}),
        json!({"tool": "set_metric", "kind": "histogram", "expression": "o->customer[worker]"}),
        json!({"tool": "set_metric", "kind": "count", "condition": "o->customer[worker] == 'r'"}),
        json!({"tool": "set_snapshot", "frames": 2}),
    ];
    for mut args in refusals {
        let tool = args["tool"].as_str().expect("tool").to_string();
        let map = args.as_object_mut().expect("object");
        map.remove("tool");
        map.insert("pid".into(), json!(fx.pid));
        map.insert("location".into(), json!("process_order"));
        map.insert("engine".into(), json!("uprobe"));
        let err = c.call(&tool, args.clone()).err();
        assert!(err.contains("uprobe"), "{tool} {args}: {err}");
        assert!(err.contains("auto or ptrace"), "{tool} {args}: {err}");
    }
    let frames = set_expect(
        &mut c,
        "set_snapshot",
        json!({"pid": fx.pid, "location": "process_order", "frames": 2}),
        Some("auto"),
        "ptrace",
    );
    assert!(
        frames["engine_note"]
            .as_str()
            .expect("engine_note")
            .contains("caller frames"),
        "{frames}"
    );
    let listed = c.call("list_probes", json!({})).ok();
    assert_eq!(
        listed["probes"].as_array().expect("probes").len(),
        4,
        "refusals armed nothing: {listed}"
    );

    fx.send("run 3");
    fx.expect_line("checksum");
    let names = ["alice", "bob", "carol", "dave"];
    let nth_letter = |worker: i64| names[worker as usize % 4].as_bytes()[worker as usize] as i64;
    let logs = texts(&results(&mut c, &log["probe_id"], 0, 5000));
    assert_eq!(logs.len(), 12, "{logs:?}");
    for t in &logs {
        let (id, worker) = (field(t, "id"), field(t, "worker"));
        assert_eq!(id / 1_000_000, worker, "{t}");
        assert_eq!(field(t, "c"), nth_letter(worker), "{t}");
    }
    let snaps = results(&mut c, &snap["probe_id"], 0, 5000);
    assert_eq!(snaps["state"], "done", "{snaps}");
    for item in snaps["items"].as_array().expect("items") {
        assert_eq!(expr(item, 0), nth_letter(expr(item, 1)), "{item}");
    }
    let counted = results(&mut c, &cond["probe_id"], 0, 0);
    assert_eq!(counted["items"][0]["count"], json!(3), "{counted}");
    fx.send("quit");
    assert_eq!(fx.wait_exit(), Some(0));
}

/// (b') Array elements whose index is read from the target's memory (a
/// local `int i`, an `int` argument, `o->id % 4`) have addresses computed
/// from data too: `auto` must use ptrace (and give the right values), a
/// dry run must say so, and `uprobe` must be refused.
#[test]
fn array_indexes_read_from_memory_are_data_dependent_addresses() {
    let (mut fx, mut c) = attached(&orders());
    let loc = at_line(INDEXED_LINE);
    let log = set(
        &mut c,
        "set_logpoint",
        json!({"pid": fx.pid, "location": loc, "max_hits": 100,
               "message": "id={o->id} i={i} price={o->items[i].price}"}),
        Some("auto"),
    );
    // ids w*1000000 + 0,1,2 have 1,2,3 items: 6 passes per worker.
    fx.send("run 3");
    fx.expect_line("checksum");
    let logs = texts(&results(&mut c, &log["probe_id"], 0, 5000));
    assert_eq!(logs.len(), 24, "{logs:?}");
    let wrong: Vec<&String> = logs
        .iter()
        .filter(|t| {
            let text = t.as_str();
            let (id, i) = (field(text, "id"), field(text, "i"));
            text.split_whitespace()
                .find_map(|w| w.strip_prefix("price="))
                .and_then(|v| v.parse::<i64>().ok())
                != Some(id % 97 + i * 3 + 1)
        })
        .collect();
    assert!(
        wrong.is_empty(),
        "o->items[i].price is wrong or unreadable on the {} engine: {wrong:?}",
        log["engine"]
    );
    assert_eq!(log["engine"], "ptrace", "{log}");
    assert!(
        log["engine_note"]
            .as_str()
            .is_some_and(|n| n.contains("computed from the target's data")),
        "{log}"
    );
    let cases = [
        (loc.as_str(), "o->items[i].price"),
        (loc.as_str(), "customers[i]"),
        ("process_order", "o->items[worker].price"),
        ("process_order", "customers[worker]"),
        ("process_order", "o->items[o->id % 4].price"),
        ("process_order", "o->items[o->n_items - 1].price"),
    ];
    let mut planned = Vec::new();
    for (location, e) in cases {
        let dry = set(
            &mut c,
            "set_snapshot",
            json!({"pid": fx.pid, "location": location, "dry_run": true, "expressions": [e]}),
            None,
        );
        let refused = c
            .call(
                "set_snapshot",
                json!({"pid": fx.pid, "location": location, "expressions": [e], "engine": "uprobe"}),
            )
            .is_error;
        if dry["engine"] != "ptrace" || !refused {
            planned.push(format!(
                "{location} {e}: dry run engine {}, engine uprobe {}",
                dry["engine"],
                if refused { "refused" } else { "accepted" }
            ));
        }
    }
    assert!(
        planned.is_empty(),
        "data-dependent addresses planned for uprobe: {planned:#?}"
    );
    fx.send("quit");
    assert_eq!(fx.wait_exit(), Some(0));
}

/// (c) A dry run says which engine the probe would use, and why not
/// uprobe when it would not, and arms nothing.
#[test]
fn dry_run_reports_the_engine_that_would_be_used() {
    let (mut fx, mut c) = attached(&orders());
    let plain = json!({"pid": fx.pid, "location": "process_order", "dry_run": true,
                       "expressions": ["o->id", "o->customer"]});
    let indexed = json!({"pid": fx.pid, "location": "process_order", "dry_run": true,
                         "expressions": ["o->customer[worker]"]});
    for engine in [None, Some("auto"), Some("uprobe")] {
        let dry = set_expect(&mut c, "set_snapshot", plain.clone(), engine, "uprobe");
        assert_eq!(dry["dry_run"], json!(true));
        assert!(dry.get("engine_note").is_none(), "{engine:?}: {dry}");
        assert!(dry.get("probe_id").is_none());
    }
    let dry = set_expect(
        &mut c,
        "set_snapshot",
        plain.clone(),
        Some("ptrace"),
        "ptrace",
    );
    assert!(dry.get("engine_note").is_none(), "asked for: {dry}");
    for engine in [None, Some("auto")] {
        let dry = set_expect(&mut c, "set_snapshot", indexed.clone(), engine, "ptrace");
        assert!(
            dry["engine_note"]
                .as_str()
                .expect("engine_note")
                .contains("computed from the target's data"),
            "{dry}"
        );
    }
    let mut args = indexed.clone();
    args["engine"] = json!("uprobe");
    let err = c.call("set_snapshot", args).err();
    assert!(
        err.contains("uprobe") && err.contains("auto or ptrace"),
        "{err}"
    );
    let dry = set_expect(
        &mut c,
        "set_logpoint",
        json!({"pid": fx.pid, "location": "process_order", "dry_run": true,
               "message": "{o->id} {worker}"}),
        None,
        "uprobe",
    );
    let addr = address_of(&dry);
    let dry = set_expect(
        &mut c,
        "set_metric",
        json!({"pid": fx.pid, "location": "process_order", "dry_run": true, "kind": "duration"}),
        None,
        "uprobe",
    );
    assert!(dry["end_resolved"].as_array().is_some(), "{dry}");
    let listed = c.call("list_probes", json!({})).ok();
    assert_eq!(listed["probes"].as_array().expect("probes").len(), 0);
    assert_ne!(byte_at(fx.pid, &addr), 0xcc, "a dry run writes nothing");
    fx.send("quit");
    assert_eq!(fx.wait_exit(), Some(0));
}

/// (d) A uprobe logpoint and a ptrace snapshot on different lines of one
/// function both see every pass; a ptrace probe at the very address of an
/// armed uprobe is refused with what to do, and a uprobe at the address of
/// an armed ptrace breakpoint is refused (engine uprobe) or shares the
/// breakpoint (engine auto, saying why).
#[test]
fn uprobe_and_ptrace_probes_in_one_function() {
    let (mut fx, mut c) = attached(&orders());
    let first = at_line("uint64_t h = (uint64_t)o->id * 31u");
    let second = at_line("h ^= (uint64_t)worker << 40;");
    let log = set_expect(
        &mut c,
        "set_logpoint",
        json!({"pid": fx.pid, "location": first, "condition": "worker == 1",
               "message": "id={o->id}", "max_hits": 500}),
        Some("uprobe"),
        "uprobe",
    );
    let snap = set_expect(
        &mut c,
        "set_snapshot",
        json!({"pid": fx.pid, "location": second, "condition": "worker == 3", "max_hits": 5,
               "expressions": ["o->id", "worker", "h", "o->amount"]}),
        Some("ptrace"),
        "ptrace",
    );
    let first_addr = address_of(&log);
    assert_ne!(first_addr, address_of(&snap));
    fx.send("run 100");
    fx.expect_line("checksum");
    let logs = texts(&results(&mut c, &log["probe_id"], 0, 5000));
    let ids: Vec<i64> = logs.iter().map(|t| field(t, "id")).collect();
    assert_eq!(ids, (1_000_000..1_000_100).collect::<Vec<i64>>());
    let snaps = results(&mut c, &snap["probe_id"], 0, 5000);
    assert_eq!(snaps["state"], "done", "{snaps}");
    let items = snaps["items"].as_array().expect("items");
    assert_eq!(items.len(), 5);
    for (k, item) in items.iter().enumerate() {
        let (id, worker, h, amount) = (expr(item, 0), expr(item, 1), expr(item, 2), expr(item, 3));
        assert_eq!((id, worker), (3_000_000 + k as i64, 3), "{item}");
        assert_eq!(
            h,
            id * 31 + amount,
            "h as computed on the line before: {item}"
        );
    }

    // ptrace at the address of the armed uprobe: refused, saying why.
    for location in [first.clone(), format!("*{first_addr}")] {
        let err = c
            .call(
                "set_snapshot",
                json!({"pid": fx.pid, "location": location, "engine": "ptrace"}),
            )
            .err();
        assert!(
            err.contains("kernel-side probe") && err.contains("remove that probe first"),
            "{location}: {err}"
        );
    }
    // uprobe at the address of an armed ptrace breakpoint.
    let ptrace_count = set_expect(
        &mut c,
        "set_metric",
        json!({"pid": fx.pid, "location": second, "kind": "count"}),
        Some("ptrace"),
        "ptrace",
    );
    let err = c
        .call(
            "set_metric",
            json!({"pid": fx.pid, "location": second, "kind": "count", "engine": "uprobe"}),
        )
        .err();
    assert!(
        err.contains("ptrace breakpoint is already there") && err.contains("auto or ptrace"),
        "{err}"
    );
    let shared = set_expect(
        &mut c,
        "set_metric",
        json!({"pid": fx.pid, "location": second, "kind": "count"}),
        Some("auto"),
        "ptrace",
    );
    assert!(
        shared["engine_note"]
            .as_str()
            .expect("engine_note")
            .contains("ptrace breakpoint is already there"),
        "{shared}"
    );
    fx.send("run 10");
    fx.expect_line("checksum");
    for id in [&ptrace_count["probe_id"], &shared["probe_id"]] {
        let r = results(&mut c, id, 0, 0);
        assert_eq!(r["items"][0]["count"], json!(40), "{r}");
    }
    // Once the uprobe is gone, ptrace may go where it was.
    c.call("remove_probe", json!({"probe_id": log["probe_id"]}))
        .ok();
    let there = set_expect(
        &mut c,
        "set_metric",
        json!({"pid": fx.pid, "location": first, "kind": "count"}),
        Some("ptrace"),
        "ptrace",
    );
    fx.send("run 10");
    fx.expect_line("checksum");
    let r = results(&mut c, &there["probe_id"], 0, 0);
    assert_eq!(r["items"][0]["count"], json!(40), "{r}");
    for id in [
        &ptrace_count["probe_id"],
        &shared["probe_id"],
        &there["probe_id"],
    ] {
        c.call("remove_probe", json!({"probe_id": id})).ok();
    }
    assert_ne!(byte_at(fx.pid, &first_addr), 0xcc);
    fx.send("quit");
    assert_eq!(fx.wait_exit(), Some(0));
}

/// (e) `--probe-engine` on the server's command line is the engine of
/// requests that name none; a request's own "engine" still wins.
#[test]
fn the_server_flag_sets_the_default_engine() {
    let mut fx = Fixture::start(&orders());
    let mut c = McpClient::start_with_args(&["--probe-engine", "ptrace"]);
    c.call("attach", json!({"pid": fx.pid})).ok();
    let count = set_expect(
        &mut c,
        "set_metric",
        json!({"pid": fx.pid, "location": "process_order", "kind": "count"}),
        None,
        "ptrace",
    );
    assert!(count.get("engine_note").is_none(), "{count}");
    let dry = set_expect(
        &mut c,
        "set_snapshot",
        json!({"pid": fx.pid, "location": "process_order", "dry_run": true}),
        None,
        "ptrace",
    );
    assert!(dry.get("engine_note").is_none(), "{dry}");
    let log = set_expect(
        &mut c,
        "set_logpoint",
        json!({"pid": fx.pid, "location": at_line("h ^= (uint64_t)worker << 40;"),
               "message": "{o->id}", "max_hits": 3}),
        Some("auto"),
        "uprobe",
    );
    fx.send("run 10");
    fx.expect_line("checksum");
    let r = results(&mut c, &count["probe_id"], 0, 0);
    assert_eq!(r["items"][0]["count"], json!(40), "{r}");
    assert_eq!(row_of(&mut c, &count["probe_id"])["engine"], "ptrace");
    let r = results(&mut c, &log["probe_id"], 0, 5000);
    assert_eq!(r["items"].as_array().expect("items").len(), 3, "{r}");
    assert_eq!(row_of(&mut c, &log["probe_id"])["engine"], "uprobe");
    // Closing stdin ends it cleanly (SIGKILL would leave its ptrace int3).
    assert_eq!(c.shutdown(), Some(0));

    // --probe-engine uprobe: requests that cannot be uprobes are refused.
    let mut c = McpClient::start_with_args(&["--probe-engine", "uprobe"]);
    c.call("attach", json!({"pid": fx.pid})).ok();
    let err = c
        .call(
            "set_logpoint",
            json!({"pid": fx.pid, "location": "process_order", "message": "{o->customer[worker]}"}),
        )
        .err();
    assert!(
        err.contains("uprobe") && err.contains("auto or ptrace"),
        "{err}"
    );
    set_expect(
        &mut c,
        "set_logpoint",
        json!({"pid": fx.pid, "location": "process_order", "message": "{o->customer[worker]}"}),
        Some("auto"),
        "ptrace",
    );
    assert_eq!(c.shutdown(), Some(0));
    fx.send("run 10");
    fx.expect_line("checksum");
    fx.send("quit");
    assert_eq!(fx.wait_exit(), Some(0));
}

/// (f) Conditions on kernel-captured memory keep `&&` semantics: the
/// capture reads the right side's memory at every hit, but hits where the
/// left side is false are filtered without looking at it, even when that
/// memory could not be read; where the left side is true, the right side
/// decides (or faults).
fn conditions_short_circuit_on_captured_memory(engine: &str) {
    let (mut fx, mut c) = attached(&orders());
    let snap = set_expect(
        &mut c,
        "set_snapshot",
        json!({"pid": fx.pid, "location": "process_order", "max_hits": 20,
               "condition": "worker == 2 && o->id % 100 == 7",
               "expressions": ["o->id", "worker"]}),
        Some(engine),
        engine,
    );
    // The right side reads far below the customer string, where nothing is
    // mapped; the left side is never true.
    let never = set_expect(
        &mut c,
        "set_metric",
        json!({"pid": fx.pid, "location": "process_order", "kind": "count",
               "condition": "worker == 9 && o->customer[-900000] == 'x'"}),
        Some(engine),
        engine,
    );
    let or = set_expect(
        &mut c,
        "set_metric",
        json!({"pid": fx.pid, "location": "process_order", "kind": "count",
               "condition": "worker != 9 || o->customer[-900000] == 'x'"}),
        Some(engine),
        engine,
    );
    fx.send("run 1000");
    fx.expect_line("checksum");
    let r = results(&mut c, &snap["probe_id"], 0, 5000);
    let ids: Vec<i64> = r["items"]
        .as_array()
        .expect("items")
        .iter()
        .map(|item| {
            assert_eq!(expr(item, 1), 2, "{item}");
            expr(item, 0)
        })
        .collect();
    assert_eq!(
        ids,
        (0..10).map(|k| 2_000_007 + 100 * k).collect::<Vec<i64>>(),
        "{r}"
    );
    let row = row_of(&mut c, &snap["probe_id"]);
    assert_eq!(row["hits"], json!(10), "{row}");
    assert_eq!(row["filtered"], json!(4000 - 10), "{row}");
    assert_eq!(row["condition_faults"], json!(0), "{row}");
    let row = row_of(&mut c, &never["probe_id"]);
    assert_eq!(row["state"], "armed", "{row}");
    assert_eq!(row["filtered"], json!(4000), "{row}");
    assert_eq!(row["condition_faults"], json!(0), "{row}");
    let r = results(&mut c, &never["probe_id"], 0, 0);
    assert_eq!(r["hits"], json!(0), "{r}");
    let r = results(&mut c, &or["probe_id"], 0, 0);
    assert_eq!(r["items"][0]["count"], json!(4000), "{r}");
    assert_eq!(
        row_of(&mut c, &or["probe_id"])["condition_faults"],
        json!(0)
    );

    // Left side true, right side unreadable: faults, not matches.
    let faulting = set_expect(
        &mut c,
        "set_snapshot",
        json!({"pid": fx.pid, "location": "process_order", "max_hits": 5,
               "condition": "worker == 2 && o->customer[-900000] == 'x'"}),
        Some(engine),
        engine,
    );
    fx.send("run 100");
    fx.expect_line("checksum");
    let r = results(&mut c, &faulting["probe_id"], 0, 5000);
    assert_eq!(r["hits"], json!(0), "{r}");
    assert_eq!(r["state"], "error", "{r}");
    assert!(
        r["reason"].as_str().expect("reason").contains("condition"),
        "{r}"
    );
    let row = row_of(&mut c, &faulting["probe_id"]);
    assert!(
        row["condition_faults"].as_u64().expect("faults") >= 1,
        "{row}"
    );
    fx.send("quit");
    assert_eq!(fx.wait_exit(), Some(0));
}

#[test]
fn conditions_short_circuit_on_captured_memory_uprobe() {
    conditions_short_circuit_on_captured_memory("uprobe");
}

#[test]
fn conditions_short_circuit_on_captured_memory_ptrace() {
    conditions_short_circuit_on_captured_memory("ptrace");
}

/// A thread-local variable needs the thread pointer, which a kernel-side
/// capture does not have: auto takes ptrace (saying why) and reads it right;
/// engine uprobe refuses.
#[test]
fn thread_local_variables_take_the_ptrace_engine() {
    let (mut fx, mut c) = attached(&orders());
    let location = at_line("sum += process_order(&o, worker);");
    let log = set_expect(
        &mut c,
        "set_logpoint",
        json!({"pid": fx.pid, "location": location, "condition": "worker == 1",
               "message": "seen={thread_orders}", "max_hits": 5}),
        None,
        "ptrace",
    );
    let note = log["engine_note"].as_str().expect("engine_note");
    assert!(note.contains("thread-local"), "{log}");
    let err = c
        .call(
            "set_logpoint",
            json!({"pid": fx.pid, "location": location, "message": "{thread_orders}", "engine": "uprobe"}),
        )
        .err();
    assert!(
        err.contains("thread-local") && err.contains("auto or ptrace"),
        "{err}"
    );
    fx.send("run 10");
    fx.expect_line("checksum");
    let seen: Vec<i64> = texts(&results(&mut c, &log["probe_id"], 0, 5000))
        .iter()
        .map(|t| field(t, "seen"))
        .collect();
    // Worker 1's own count, one more at each of its orders.
    assert_eq!(seen, vec![1, 2, 3, 4, 5]);
    fx.send("quit");
    assert_eq!(fx.wait_exit(), Some(0));
}

/// A probe that outruns liveprobe: with a small ring, hits that find it full
/// are counted as lost, never silently dropped: every call is either a
/// recorded hit or a lost one.
#[test]
fn hits_a_full_ring_cannot_take_are_counted_as_lost() {
    let mut fx = Fixture::start(&orders());
    let mut c = McpClient::start_with_args(&["--ring-buffer-mb", "1", "--probe-budget-ms", "1000"]);
    c.call("attach", json!({"pid": fx.pid})).ok();
    let snap = set_expect(
        &mut c,
        "set_snapshot",
        json!({"pid": fx.pid, "location": "process_order", "max_hits": 10_000_000,
               "expressions": ["o->id", "o->customer"]}),
        None,
        "uprobe",
    );
    fx.send("run 100000");
    fx.expect_line("checksum");
    let row = row_of(&mut c, &snap["probe_id"]);
    let hits = row["hits"].as_u64().expect("hits");
    let lost = row["lost"].as_u64().unwrap_or(0);
    assert_eq!(
        hits + lost,
        400_000,
        "every call is a hit or a lost hit: {row}"
    );
    assert!(
        lost > 0,
        "a 1 MiB ring cannot hold a 400000-hit storm of snapshots: {row}"
    );
    assert_eq!(c.shutdown(), Some(0));
    fx.send("quit");
    assert_eq!(fx.wait_exit(), Some(0));
}

/// Strings are copied up to their NUL, so one that crosses a page or ends
/// just before unmapped memory reads (and compares) as it does live.
fn strings_read_whole(engine: &str) {
    let exe = build_fixture("probes/strings.c", "probes_strings", &["-O0"]);
    let (mut fx, mut c) = attached(&exe);
    let matched = set_expect(
        &mut c,
        "set_snapshot",
        json!({"pid": fx.pid, "location": "check", "condition": "name == \"hello\"",
               "max_hits": 50, "expressions": ["name", "k"]}),
        Some(engine),
        engine,
    );
    fx.send("cross");
    fx.expect_line("checked");
    let r = results(&mut c, &matched["probe_id"], 0, 5000);
    let items = r["items"].as_array().expect("items");
    assert_eq!(
        items.len(),
        10,
        "mid-page and page-crossing strings both match: {r}"
    );
    for item in items {
        let name = item["expressions"][0]["value"].as_str().expect("name");
        assert!(name.ends_with("\"hello\""), "{item}");
    }
    let row = row_of(&mut c, &matched["probe_id"]);
    assert_eq!(row["condition_faults"], json!(0), "{row}");
    c.call("remove_probe", json!({"probe_id": matched["probe_id"]}))
        .ok();
    let edge = set_expect(
        &mut c,
        "set_snapshot",
        json!({"pid": fx.pid, "location": "check", "expressions": ["name"]}),
        Some(engine),
        engine,
    );
    fx.send("edge");
    fx.expect_line("checked");
    let r = results(&mut c, &edge["probe_id"], 0, 5000);
    let name = r["items"][0]["expressions"][0]["value"]
        .as_str()
        .expect("name");
    assert!(
        name.ends_with("\"hello\""),
        "a string before unmapped memory: {r}"
    );
    assert!(r["items"][0].get("capture_note").is_none(), "{r}");
    fx.send("quit");
    assert_eq!(fx.wait_exit(), Some(0));
}

#[test]
fn strings_read_whole_uprobe() {
    strings_read_whole("uprobe");
}

#[test]
fn strings_read_whole_ptrace() {
    strings_read_whole("ptrace");
}

/// Vector elements are planned and read (Rust Vec, and a std::vector whose
/// element size is not a power of two), the same as ptrace reads them.
#[test]
fn vector_elements_are_captured_like_ptrace_reads_them() {
    let rust = build_fixture("probes/vectors.rs", "probes_vectors_rs", &[]);
    let cpp = build_fixture("probes/vectors.cpp", "probes_vectors_cpp", &["-O0"]);
    let mut seen = Vec::new();
    for (exe, location, expression) in [(&rust, "vectors::target", "*v"), (&cpp, "target", "v")] {
        for engine in ["ptrace", "uprobe"] {
            let (mut fx, mut c) = attached(exe);
            let snap = set_expect(
                &mut c,
                "set_snapshot",
                json!({"pid": fx.pid, "location": location, "expressions": [expression]}),
                Some(engine),
                engine,
            );
            fx.send("go");
            fx.expect_line("done");
            let r = results(&mut c, &snap["probe_id"], 0, 5000);
            let value = r["items"][0]["expressions"][0].clone();
            assert!(value.get("unavailable").is_none(), "{engine}: {r}");
            assert!(r["items"][0].get("capture_note").is_none(), "{engine}: {r}");
            seen.push(value);
            fx.send("quit");
            assert_eq!(fx.wait_exit(), Some(0));
        }
    }
    assert_eq!(seen[0], seen[1], "Rust Vec: uprobe reads what ptrace reads");
    assert_eq!(
        seen[2], seen[3],
        "std::vector: uprobe reads what ptrace reads"
    );
    let shown = seen[0].to_string();
    assert!(shown.contains("11") && shown.contains("33"), "{shown}");
    let shown = seen[2].to_string();
    assert!(shown.contains('5') && shown.contains('6'), "{shown}");
}

/// A duration to the function's return nests: each recursive call is timed
/// from its own start (four calls, four spans), and the outermost contains
/// the innermost.
fn recursive_durations_nest(engine: &str) {
    let exe = build_fixture("probes/recurse.c", "probes_recurse", &["-O0"]);
    let (mut fx, mut c) = attached(&exe);
    let metric = set_expect(
        &mut c,
        "set_metric",
        json!({"pid": fx.pid, "location": "depth", "kind": "duration"}),
        Some(engine),
        engine,
    );
    fx.send("run 3");
    assert_eq!(fx.expect_line("depth"), "depth 4");
    let r = results(&mut c, &metric["probe_id"], 0, 0);
    let summary = &r["items"][0];
    assert_eq!(
        summary["count"],
        json!(4),
        "four nested calls, four spans: {r}"
    );
    let (min, max) = (
        summary["min"].as_f64().expect("min"),
        summary["max"].as_f64().expect("max"),
    );
    // Not a timing bound: the outermost span contains the innermost one
    // and, inside it, the inner calls' own probe hits (entry and return),
    // so it is longer whatever the machine's load; only spans that did not
    // nest could be equal.
    assert!(max > min, "the outermost span holds the inner ones: {r}");
    fx.send("quit");
    assert_eq!(fx.wait_exit(), Some(0));
}

#[test]
fn recursive_durations_nest_uprobe() {
    recursive_durations_nest("uprobe");
}

#[test]
fn recursive_durations_nest_ptrace() {
    recursive_durations_nest("ptrace");
}

/// The overhead budget holds on both engines: a hot probe over it is
/// throttled, says why, and leaves the target, which finishes its work.
fn hot_probes_are_throttled(engine: &str) {
    let mut fx = Fixture::start(&orders());
    let mut c = McpClient::start_with_args(&["--probe-budget-ms", "1"]);
    c.call("attach", json!({"pid": fx.pid})).ok();
    let snap = set_expect(
        &mut c,
        "set_snapshot",
        json!({"pid": fx.pid, "location": "process_order", "max_hits": 10_000_000}),
        Some(engine),
        engine,
    );
    fx.send("run 100000");
    fx.expect_line("checksum");
    let r = results(&mut c, &snap["probe_id"], 0, 0);
    assert_eq!(r["state"], "throttled", "{r}");
    assert!(
        r["reason"]
            .as_str()
            .expect("reason")
            .contains("1 ms per second"),
        "{r}"
    );
    let hits = r["hits"].as_u64().expect("hits");
    assert!(hits > 0 && hits < 400_000, "stopped early: {r}");
    let addr = snap["resolved"][0]["address"].as_str().expect("address");
    assert_ne!(
        byte_at(fx.pid, addr),
        0xcc,
        "its breakpoint left the target"
    );
    assert_eq!(c.shutdown(), Some(0));
    fx.send("quit");
    assert_eq!(fx.wait_exit(), Some(0));
}

#[test]
fn hot_probes_are_throttled_uprobe() {
    hot_probes_are_throttled("uprobe");
}

#[test]
fn hot_probes_are_throttled_ptrace() {
    hot_probes_are_throttled("ptrace");
}

/// Two processes of one binary, one liveprobe, both engines at once. A
/// kernel uprobe is keyed by file and offset: at its place, the int3 of
/// any process that has a uprobe is taken by the kernel and removed. So a
/// ptrace breakpoint is refused where a uprobe of ours is, in any process
/// of the file, and a uprobe where a ptrace breakpoint of ours is; `auto`
/// takes the engine that can share the place. Every count is exact.
#[test]
fn two_processes_of_one_binary_share_places_between_engines() {
    let exe = orders();
    let mut a = Fixture::start(&exe);
    let mut b = Fixture::start(&exe);
    let mut c = McpClient::start();
    c.call("attach", json!({"pid": a.pid})).ok();
    c.call("attach", json!({"pid": b.pid})).ok();
    let count = |c: &mut McpClient, pid: i32, location: &str, engine: &str| {
        c.call(
            "set_metric",
            json!({"pid": pid, "location": location, "kind": "count", "engine": engine}),
        )
    };
    let customer_line = at_line("o->customer = customers[worker % 4];");
    // A dry run of each set below answers what the set then does.
    let dry = |c: &mut McpClient, pid: i32, location: &str, engine: &str| {
        c.call(
            "set_metric",
            json!({"pid": pid, "location": location, "kind": "count", "engine": engine,
                   "dry_run": true}),
        )
    };

    // A uprobe on process_order in A; B gets a uprobe of its own elsewhere,
    // which makes the kernel look at every int3 of B.
    let a_work = count(&mut c, a.pid, "process_order", "uprobe").ok();
    assert_eq!(a_work["engine"], "uprobe", "{a_work}");
    let b_other = count(&mut c, b.pid, "make_order", "uprobe").ok();
    assert_eq!(b_other["engine"], "uprobe", "{b_other}");
    // ptrace at process_order in B: the uprobe of A is at that place.
    let dry_err = dry(&mut c, b.pid, "process_order", "ptrace").err();
    let err = count(&mut c, b.pid, "process_order", "ptrace").err();
    assert!(
        err.contains("kernel-side probe")
            && err.contains(&format!("process {}", a.pid))
            && err.contains("remove that probe first"),
        "{err}"
    );
    assert_eq!(dry_err, err, "the dry run refuses as the set does");
    let b_dry = dry(&mut c, b.pid, "process_order", "auto").ok();
    assert_eq!(b_dry["engine"], "uprobe", "{b_dry}");
    let b_work = count(&mut c, b.pid, "process_order", "auto").ok();
    assert_eq!(b_work["engine"], "uprobe", "{b_work}");

    // The other way round: a ptrace breakpoint in B, then A asks there.
    let b_line = count(&mut c, b.pid, &customer_line, "ptrace").ok();
    assert_eq!(b_line["engine"], "ptrace", "{b_line}");
    let dry_err = dry(&mut c, a.pid, &customer_line, "uprobe").err();
    let err = count(&mut c, a.pid, &customer_line, "uprobe").err();
    assert!(
        err.contains("ptrace breakpoint is already there")
            && err.contains(&format!("process {}", b.pid)),
        "{err}"
    );
    assert_eq!(dry_err, err, "the dry run refuses as the set does");
    let a_dry = dry(&mut c, a.pid, &customer_line, "auto").ok();
    let a_line = count(&mut c, a.pid, &customer_line, "auto").ok();
    assert_eq!(a_line["engine"], "ptrace", "{a_line}");
    assert!(
        a_line["engine_note"]
            .as_str()
            .is_some_and(|n| n.contains("ptrace breakpoint is already there")),
        "{a_line}"
    );
    assert_eq!(
        (&a_dry["engine"], &a_dry["engine_note"]),
        (&a_line["engine"], &a_line["engine_note"]),
        "the dry run says what the set does: {a_dry}"
    );

    for fx in [&mut a, &mut b] {
        fx.send("run 100");
        assert_eq!(
            fx.expect_line("checksum").split_whitespace().last(),
            Some("400")
        );
    }
    for (what, probe) in [
        ("A process_order (uprobe)", &a_work),
        ("B make_order (uprobe)", &b_other),
        ("B process_order (auto: uprobe)", &b_work),
        ("B customer line (ptrace)", &b_line),
        ("A customer line (auto: ptrace)", &a_line),
    ] {
        let r = results(&mut c, &probe["probe_id"], 0, 0);
        assert_eq!(r["items"][0]["count"], json!(400), "{what}: {r}");
        assert_eq!(r["state"], "armed", "{what}: {r}");
    }
    for probe in [&a_work, &b_other, &b_work, &b_line, &a_line] {
        c.call("remove_probe", json!({"probe_id": probe["probe_id"]}))
            .ok();
    }
    // With the uprobes gone, ptrace may go to process_order in B.
    let b_work_ptrace = count(&mut c, b.pid, "process_order", "ptrace").ok();
    assert_eq!(b_work_ptrace["engine"], "ptrace", "{b_work_ptrace}");
    b.send("run 10");
    b.expect_line("checksum");
    let r = results(&mut c, &b_work_ptrace["probe_id"], 0, 0);
    assert_eq!(r["items"][0]["count"], json!(40), "{r}");
    assert_eq!(c.shutdown(), Some(0));
    for fx in [&mut a, &mut b] {
        fx.send("quit");
        assert_eq!(fx.wait_exit(), Some(0));
    }
}
