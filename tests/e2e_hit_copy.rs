//! A ptrace-engine hit only copies: the thread is held while its registers
//! and the planned memory are copied, and the condition, the count and the
//! store happen after it went on, on the copy. So a client decoding locals
//! at the same time (which holds the module's type tables for a whole
//! decode) never holds a hitting thread. Real binary over MCP, real ptrace.

mod common;

use std::time::Instant;

use common::probes::*;
use common::*;
use serde_json::{Value, json};

/// Calls of `process_order` per worker per `run`.
const N: u64 = 10_000;
/// Workers in the fixture.
const WORKERS: u64 = 4;
/// The condition matches worker 1's orders 1000003, 1002003, ...
const CONDITION: &str = "worker == 1 && o->id % 1000 == 3";
const MATCHES: u64 = N / 1000;

/// `o->amount` as `make_order` computes it for order `id`.
fn amount_of(id: i64) -> i64 {
    let n_items = id % 4 + 1;
    (0..n_items).map(|i| (id % 97) + i * 3 + 1).sum()
}

fn set_hot_snapshot(c: &mut McpClient, pid: i32) -> Value {
    let set = c
        .call(
            "set_snapshot",
            json!({"pid": pid, "location": "process_order", "engine": "ptrace",
                   "condition": CONDITION, "max_hits": 1000,
                   "expressions": ["o->id", "worker", "o->amount"]}),
        )
        .ok();
    assert_eq!(set["engine"], "ptrace", "{set}");
    set["probe_id"].clone()
}

/// Checks that every matching hit was recorded with the hitting thread's
/// values, and that every other hit was counted as filtered; returns the
/// probe's (mean, max) held time per hit in µs.
fn check_exact(c: &mut McpClient, id: &Value) -> (f64, f64) {
    let r = results(c, id, 0, 0);
    let items = r["items"].as_array().expect("items");
    let ids: Vec<i64> = items
        .iter()
        .map(|item| {
            let v = |i: usize| -> i64 {
                item["expressions"][i]["value"]
                    .as_str()
                    .and_then(|s| s.parse().ok())
                    .unwrap_or_else(|| panic!("expression {i} is not a number: {item}"))
            };
            assert_eq!(v(1), 1, "only worker 1 matches: {item}");
            assert_eq!(v(2), amount_of(v(0)), "o->amount of order {}: {item}", v(0));
            assert!(item.get("capture_note").is_none(), "fully planned: {item}");
            v(0)
        })
        .collect();
    let expected: Vec<i64> = (0..MATCHES as i64).map(|k| 1_000_003 + k * 1000).collect();
    assert_eq!(ids, expected, "every matching hit, in order: {r}");
    let row = row_of(c, id);
    assert_eq!(row["hits"], json!(MATCHES), "{row}");
    assert_eq!(row["filtered"], json!(N * WORKERS - MATCHES), "{row}");
    assert_eq!(row["condition_faults"], json!(0), "{row}");
    assert!(row.get("lost").is_none(), "{row}");
    (
        row["mean_handler_us"].as_f64().expect("mean"),
        row["max_handler_us"].as_f64().expect("max"),
    )
}

#[test]
fn a_hot_ptrace_snapshot_is_never_held_by_a_concurrent_read_locals() {
    let mut fx = Fixture::start(&orders());
    // A hit on every call of a hot function is over the default budget of
    // a debug build on a busy machine; throttling is tested elsewhere.
    let mut c = McpClient::start_with_args(&["--probe-budget-ms", "1000"]);
    c.call("attach", json!({"pid": fx.pid})).ok();

    // The probe alone.
    let quiet = set_hot_snapshot(&mut c, fx.pid);
    fx.send(&format!("run {N}"));
    fx.expect_line("checksum");
    let (quiet_mean, quiet_max) = check_exact(&mut c, &quiet);
    c.call("remove_probe", json!({"probe_id": quiet})).ok();

    // The same probe while the client decodes main's locals in a loop.
    let busy = set_hot_snapshot(&mut c, fx.pid);
    fx.send(&format!("run {N}"));
    let stack = c
        .call("stack_trace", json!({"pid": fx.pid, "tid": fx.pid}))
        .ok();
    let main_index = stack["threads"][0]["frames"]
        .as_array()
        .expect("frames")
        .iter()
        .find(|f| f["function"] == "main")
        .and_then(|f| f["index"].as_u64())
        .unwrap_or_else(|| panic!("main is on the main thread's stack: {stack}"));
    let mut decode_us: Vec<f64> = Vec::new();
    let mut during_hits = 0;
    for _ in 0..5000 {
        let started = Instant::now();
        let locals = c
            .call(
                "read_locals",
                json!({"pid": fx.pid, "tid": fx.pid, "frame": main_index}),
            )
            .ok();
        decode_us.push(started.elapsed().as_secs_f64() * 1e6);
        let row = row_of(&mut c, &busy);
        let seen = row["hits"].as_u64().unwrap_or(0) + row["filtered"].as_u64().unwrap_or(0);
        if seen >= N * WORKERS {
            break;
        }
        // This decode ran while the workers were still hitting the probe.
        assert_eq!(locals["frame"]["function"], "main", "{locals}");
        assert!(
            !locals["variables"]
                .as_array()
                .expect("variables")
                .is_empty(),
            "{locals}"
        );
        during_hits += 1;
    }
    fx.expect_line("checksum");
    let (busy_mean, busy_max) = check_exact(&mut c, &busy);
    assert!(
        during_hits >= 3,
        "read_locals ran {during_hits} times while the probe was hit; the run was too short to tell"
    );
    decode_us.sort_by(f64::total_cmp);
    let median_decode = decode_us[decode_us.len() / 2];
    eprintln!(
        "held per hit: alone mean {quiet_mean:.1} µs max {quiet_max:.1} µs; \
         beside {during_hits} read_locals (median {median_decode:.0} µs): \
         mean {busy_mean:.1} µs max {busy_max:.1} µs"
    );
    // A hit that waited for a decode would be held about as long as one;
    // the mean over thousands of hits stays far below that unless hits
    // share the decode's lock.
    assert!(
        busy_mean < median_decode,
        "a hit is held {busy_mean:.1} µs on average beside read_locals taking {median_decode:.0} µs"
    );
    fx.send("quit");
    assert_eq!(fx.wait_exit(), Some(0));
}

/// A capture that cannot be planned (caller frames need return addresses
/// found only by unwinding; thread-locals need the thread pointer) is read
/// while the thread is held, as before: every value is from the moment of
/// the hit, none read late (such a probe is not copy-only, see
/// docs/architecture.md).
#[test]
fn an_unplannable_ptrace_snapshot_is_read_while_its_thread_is_held() {
    let mut fx = Fixture::start(&orders());
    let mut c = McpClient::start();
    c.call("attach", json!({"pid": fx.pid})).ok();
    let set = c
        .call(
            "set_snapshot",
            json!({"pid": fx.pid, "location": "process_order", "engine": "ptrace",
                   "condition": "worker == 1", "max_hits": 5, "frames": 3,
                   "expressions": ["o->id", "o->amount", "thread_orders"]}),
        )
        .ok();
    assert_eq!(set["engine"], "ptrace", "{set}");
    fx.send("run 100");
    fx.expect_line("checksum");
    let r = results(&mut c, &set["probe_id"], 0, 5000);
    assert_eq!(r["state"], "done", "{r}");
    let items = r["items"].as_array().expect("items");
    assert_eq!(items.len(), 5, "{r}");
    for (k, item) in items.iter().enumerate() {
        let v = |i: usize| -> i64 {
            item["expressions"][i]["value"]
                .as_str()
                .and_then(|s| s.parse().ok())
                .unwrap_or_else(|| panic!("expression {i} is not a number: {item}"))
        };
        // Worker 1's orders in order.
        assert_eq!(v(0), 1_000_000 + k as i64, "{item}");
        assert_eq!(v(1), amount_of(v(0)), "{item}");
        // The thread-local, read while the thread is held.
        assert_eq!(v(2), k as i64 + 1, "{item}");
        let functions: Vec<&str> = item["frames"]
            .as_array()
            .expect("frames")
            .iter()
            .filter_map(|f| f["function"].as_str())
            .collect();
        assert_eq!(
            functions,
            ["process_order", "run_orders", "worker_main"],
            "{item}"
        );
        // Nothing was read after the thread went on.
        assert!(item.get("capture_note").is_none(), "{item}");
    }
    fx.send("quit");
    assert_eq!(fx.wait_exit(), Some(0));
}
