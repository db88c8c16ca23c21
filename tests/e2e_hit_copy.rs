//! A ptrace-engine hit only copies: the thread is held while its registers
//! and the planned memory are copied, and the condition, the count and the
//! store happen after it went on, on the copy. A hit whose capture cannot
//! be planned is read while its thread is held, with its probe's own type
//! tables: a client decoding locals at the same time (which holds client
//! requests' tables for a whole decode) never holds a hitting thread. Real
//! binary over MCP, real ptrace.

mod common;

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc;
use std::time::Instant;

use common::probes::*;
use common::*;
use liveprobe::addr::RuntimeAddr;
use liveprobe::tracer::{
    HELD_HIT_DEADLINE, HeldHit, HitContext, HitHandler, HitVerdict, LetGo, TargetState, Tracer,
};
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

/// The index of `main` in the stack of process `pid`'s main thread.
fn main_frame_index(c: &mut McpClient, pid: i32) -> u64 {
    let stack = c.call("stack_trace", json!({"pid": pid, "tid": pid})).ok();
    stack["threads"][0]["frames"]
        .as_array()
        .expect("frames")
        .iter()
        .find(|f| f["function"] == "main")
        .and_then(|f| f["index"].as_u64())
        .unwrap_or_else(|| panic!("main is on the main thread's stack: {stack}"))
}

/// Sends `run` to the fixture and, once `probe` saw its first hit (main
/// then waits in the run's barrier), decodes main's locals in a loop until
/// the probe has seen `total` hits (hits plus filtered): returns each
/// decode's time (µs) and how many decodes ran while the probe was hit.
fn decode_beside_run(
    c: &mut McpClient,
    fx: &mut Fixture,
    run: &str,
    probe: &Value,
    total: u64,
) -> (Vec<f64>, usize) {
    let seen = |c: &mut McpClient| {
        let row = row_of(c, probe);
        row["hits"].as_u64().unwrap_or(0) + row["filtered"].as_u64().unwrap_or(0)
    };
    // A decode before the run warms the decoder's caches up.
    c.call(
        "read_locals",
        json!({"pid": fx.pid, "tid": fx.pid, "frame": 0}),
    )
    .ok();
    fx.send(run);
    let started = (0..100_000).any(|_| seen(c) > 0);
    assert!(started, "the probe saw no hit of the run");
    let main_index = main_frame_index(c, fx.pid);
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
        let elapsed_us = started.elapsed().as_secs_f64() * 1e6;
        if seen(c) >= total {
            break;
        }
        // main may still have been on its way into the barrier at the
        // stack trace; a decode of another frame is left out.
        if locals["frame"]["function"] != "main" {
            continue;
        }
        assert!(
            !locals["variables"]
                .as_array()
                .expect("variables")
                .is_empty(),
            "{locals}"
        );
        // This decode ran while the workers were still hitting the probe.
        decode_us.push(elapsed_us);
        during_hits += 1;
    }
    (decode_us, during_hits)
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
    let (mut decode_us, during_hits) =
        decode_beside_run(&mut c, &mut fx, &format!("run {N}"), &busy, N * WORKERS);
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

/// Calls of `process_order` per worker per run of the held-hit test: few
/// enough that the hits' held time (a debug build's evaluation, a wait for
/// a decode) stays within the largest budget, 1 s per second.
const HELD_N: u64 = 200;
/// Matches worker 1's orders 1000003, 1000013, ...
const HELD_CONDITION: &str = "worker == 1 && o->id % 10 == 3";
const HELD_STEP: i64 = 10;
const HELD_MATCHES: u64 = HELD_N / HELD_STEP as u64;

/// A snapshot that cannot be planned (`thread_orders` is a thread-local,
/// which no plan reads): its hits keep their thread stopped while the hit
/// worker reads them.
fn set_held_snapshot(c: &mut McpClient, pid: i32) -> Value {
    let set = c
        .call(
            "set_snapshot",
            json!({"pid": pid, "location": "process_order", "engine": "ptrace",
                   "condition": HELD_CONDITION, "max_hits": 1000,
                   "expressions": ["o->id", "o->amount", "thread_orders"]}),
        )
        .ok();
    assert_eq!(set["engine"], "ptrace", "{set}");
    set["probe_id"].clone()
}

/// A count on another hot function, whose hits only copy (nothing).
fn set_copied_count(c: &mut McpClient, pid: i32) -> Value {
    let set = c
        .call(
            "set_metric",
            json!({"pid": pid, "location": "make_order", "kind": "count", "engine": "ptrace"}),
        )
        .ok();
    assert_eq!(set["engine"], "ptrace", "{set}");
    set["probe_id"].clone()
}

/// What one run of both probes showed.
struct HeldRun {
    /// The held snapshot's (mean, max) held time per hit, µs.
    held: (f64, f64),
    /// Each recorded item's `held_us`.
    item_held_us: Vec<f64>,
    /// The copying count's (mean, max) held time per hit, µs.
    copied: (f64, f64),
}

/// Checks both probes exactly after run number `run` (from 0): every
/// matching hit of the held snapshot, in order, with the values of the
/// hitting thread at the hit (the thread-local counts the orders the
/// thread made in every run so far), every other hit filtered; every call
/// of `make_order` counted.
fn check_held_run(c: &mut McpClient, snapshot: &Value, count: &Value, run: u64) -> HeldRun {
    let r = results(c, snapshot, 0, 0);
    let items = r["items"].as_array().expect("items");
    let mut item_held_us = Vec::new();
    let ids: Vec<i64> = items
        .iter()
        .map(|item| {
            let v = |i: usize| -> i64 {
                item["expressions"][i]["value"]
                    .as_str()
                    .and_then(|s| s.parse().ok())
                    .unwrap_or_else(|| panic!("expression {i} is not a number: {item}"))
            };
            let id = v(0);
            assert_eq!(v(1), amount_of(id), "o->amount of order {id}: {item}");
            let made_before = (id - 1_000_000) + 1;
            assert_eq!(
                v(2),
                (run * HELD_N) as i64 + made_before,
                "thread_orders at order {id}: {item}"
            );
            assert!(item.get("capture_note").is_none(), "read in time: {item}");
            item_held_us.push(item["held_us"].as_f64().expect("held_us"));
            id
        })
        .collect();
    let expected: Vec<i64> = (0..HELD_MATCHES as i64)
        .map(|k| 1_000_003 + k * HELD_STEP)
        .collect();
    assert_eq!(ids, expected, "every matching hit, in order: {r}");
    let row = row_of(c, snapshot);
    assert_eq!(row["hits"], json!(HELD_MATCHES), "{row}");
    assert_eq!(
        row["filtered"],
        json!(HELD_N * WORKERS - HELD_MATCHES),
        "{row}"
    );
    assert_eq!(row["condition_faults"], json!(0), "{row}");
    assert_eq!(row["state"], "armed", "{row}");
    let counted = row_of(c, count);
    assert_eq!(counted["hits"], json!(HELD_N * WORKERS), "{counted}");
    assert_eq!(counted["state"], "armed", "{counted}");
    let means = |row: &Value| {
        (
            row["mean_handler_us"].as_f64().expect("mean"),
            row["max_handler_us"].as_f64().expect("max"),
        )
    };
    HeldRun {
        held: means(&row),
        item_held_us,
        copied: means(&counted),
    }
}

/// A hot snapshot that cannot be planned holds its thread while the hit
/// worker reads it, not the tracer thread: beside a client decoding locals
/// in a loop, its counts and values stay exact, and other threads' traps (a
/// copying count on another hot function) are not held up by it. The held
/// snapshot's own hold is reported, not asserted (that it never waits for
/// a client's decode is
/// `a_held_hit_is_never_read_behind_a_client_decode_of_a_large_frame`).
#[test]
fn an_unplannable_hot_snapshot_holds_only_its_own_thread_beside_read_locals() {
    let mut fx = Fixture::start(&orders());
    // Every hit of the held snapshot holds its thread for the worker's
    // evaluation (a debug build); the budget is tested elsewhere.
    let mut c = McpClient::start_with_args(&["--probe-budget-ms", "1000"]);
    c.call("attach", json!({"pid": fx.pid})).ok();

    // Alone.
    let snapshot = set_held_snapshot(&mut c, fx.pid);
    let count = set_copied_count(&mut c, fx.pid);
    fx.send(&format!("run {HELD_N}"));
    fx.expect_line("checksum");
    let quiet = check_held_run(&mut c, &snapshot, &count, 0);
    c.call("remove_probe", json!({"probe_id": snapshot})).ok();
    c.call("remove_probe", json!({"probe_id": count})).ok();

    // Beside read_locals of main's frame in a loop.
    let snapshot = set_held_snapshot(&mut c, fx.pid);
    let count = set_copied_count(&mut c, fx.pid);
    let (mut decode_us, during_hits) = decode_beside_run(
        &mut c,
        &mut fx,
        &format!("run {HELD_N}"),
        &snapshot,
        HELD_N * WORKERS,
    );
    fx.expect_line("checksum");
    let busy = check_held_run(&mut c, &snapshot, &count, 1);
    assert!(
        during_hits >= 3,
        "read_locals ran {during_hits} times while the probe was hit; the run was too short to tell"
    );
    decode_us.sort_by(f64::total_cmp);
    let median_decode = decode_us[decode_us.len() / 2];
    let over = |run: &HeldRun| {
        run.item_held_us
            .iter()
            .filter(|us| **us > median_decode)
            .count()
    };
    eprintln!(
        "held snapshot per hit: alone mean {:.1} µs max {:.1} µs ({} of {} items held over {median_decode:.0} µs); \
         beside {during_hits} read_locals (median {median_decode:.0} µs): mean {:.1} µs max {:.1} µs ({} of {} items over); \
         copying count on another function: alone mean {:.1} µs max {:.1} µs, beside mean {:.1} µs max {:.1} µs",
        quiet.held.0,
        quiet.held.1,
        over(&quiet),
        quiet.item_held_us.len(),
        busy.held.0,
        busy.held.1,
        over(&busy),
        busy.item_held_us.len(),
        quiet.copied.0,
        quiet.copied.1,
        busy.copied.0,
        busy.copied.1,
    );
    // Had the held snapshot been read on the tracer thread, every trap of
    // every thread would wait while it waits for a decode's lock.
    assert!(
        busy.copied.0 < median_decode,
        "a copying hit is held {:.1} µs on average beside read_locals taking {median_decode:.0} µs",
        busy.copied.0
    );
    fx.send("quit");
    assert_eq!(fx.wait_exit(), Some(0));
}

/// The ledger fixture: workers processing orders between `start` and
/// `stop`, and main waiting on stdin in a frame with a large ledger and two
/// 1 MiB texts (tests/fixtures/probes/ledger.c).
fn ledger() -> std::path::PathBuf {
    build_fixture("probes/ledger.c", "probes_ledger", &["-O0"])
}

/// Matches worker 1's orders 1000003, 1000203, ... (about 2 a second).
const LEDGER_CONDITION: &str = "worker == 1 && o->id % 200 == 3";
/// Decodes of main's frame the client runs while the probe is hit.
const LEDGER_DECODES: usize = 3;

/// A held hit's reader never waits for a client request: while a client
/// decodes a large frame again and again (`read_locals` of main: a ledger
/// of orders and two 1 MiB texts, seconds of decoding in a debug build,
/// all of it with the type tables of client requests locked), a hot
/// snapshot whose capture cannot be planned (a thread-local) keeps its
/// threads stopped while the hit worker evaluates its condition and reads
/// them. The probe has type tables of its own, so every hit is read in
/// time: none "capture took too long", no condition read after the thread
/// went on (the tracer lets a held thread go after `HELD_HIT_DEADLINE`,
/// 1 s, and a condition read after that faults), every hit counted and
/// every matching one recorded with the hitting thread's values.
#[test]
fn a_held_hit_is_never_read_behind_a_client_decode_of_a_large_frame() {
    let mut fx = Fixture::start(&ledger());
    // Every hit holds its thread for the worker's evaluation (a debug
    // build); the budget is tested elsewhere.
    let mut c = McpClient::start_with_args(&["--probe-budget-ms", "1000"]);
    c.call("attach", json!({"pid": fx.pid})).ok();
    let main_index = main_frame_index(&mut c, fx.pid);
    let set = c
        .call(
            "set_snapshot",
            json!({"pid": fx.pid, "location": "process_order", "engine": "ptrace",
                   "condition": LEDGER_CONDITION, "max_hits": 1000,
                   "expressions": ["o->id", "o->amount", "thread_orders"]}),
        )
        .ok();
    assert_eq!(set["engine"], "ptrace", "{set}");
    let probe = set["probe_id"].clone();
    let seen = |c: &mut McpClient| {
        let row = row_of(c, &probe);
        row["hits"].as_u64().unwrap_or(0)
            + row["filtered"].as_u64().unwrap_or(0)
            + row["condition_faults"].as_u64().unwrap_or(0)
    };
    fx.send("start");
    fx.expect_line("started");
    let started = (0..100_000).any(|_| seen(&mut c) > 0);
    assert!(started, "the probe saw no hit");
    let mut decode_ms = Vec::new();
    let mut decodes_during_hits = 0;
    for _ in 0..LEDGER_DECODES {
        let before = seen(&mut c);
        let started = Instant::now();
        let locals = c
            .call(
                "read_locals",
                json!({"pid": fx.pid, "tid": fx.pid, "frame": main_index,
                       "limits": {"depth": 3, "max_items": 10000, "max_string": 1 << 20}}),
            )
            .ok();
        decode_ms.push(started.elapsed().as_secs_f64() * 1e3);
        assert_eq!(locals["frame"]["function"], "main", "{locals}");
        for name in ["ledger", "pages"] {
            let variable = locals["variables"]
                .as_array()
                .expect("variables")
                .iter()
                .find(|v| v["name"] == name)
                .unwrap_or_else(|| panic!("main's {name} is in scope: {locals}"));
            assert!(variable["unavailable"].is_null(), "{variable}");
        }
        if seen(&mut c) > before {
            decodes_during_hits += 1;
        }
    }
    fx.send("stop");
    let stopped = fx.expect_line("stopped");
    let calls: Vec<u64> = stopped
        .split_whitespace()
        .skip(1)
        .map(|n| n.parse().expect("a count"))
        .collect();
    let total: u64 = calls.iter().sum();
    // Worker 1's orders are 1000000 + k for k below its calls.
    let expected: Vec<i64> = (0..calls[1] as i64)
        .filter(|k| k % 200 == 3)
        .map(|k| 1_000_000 + k)
        .collect();

    let row = row_of(&mut c, &probe);
    assert_eq!(row["state"], "armed", "{row}");
    assert_eq!(
        row["condition_faults"],
        json!(0),
        "no condition read late: {row}"
    );
    let r = results(&mut c, &probe, 0, 0);
    let items = r["items"].as_array().expect("items");
    let mut max_held_us: f64 = 0.0;
    let ids: Vec<i64> = items
        .iter()
        .map(|item| {
            assert!(item.get("capture_note").is_none(), "read in time: {item}");
            let v = |i: usize| -> i64 {
                item["expressions"][i]["value"]
                    .as_str()
                    .and_then(|s| s.parse().ok())
                    .unwrap_or_else(|| panic!("expression {i} is not a number: {item}"))
            };
            let id = v(0);
            assert_eq!(v(1), amount_of(id), "o->amount of order {id}: {item}");
            assert_eq!(
                v(2),
                id - 1_000_000 + 1,
                "thread_orders at order {id}: {item}"
            );
            max_held_us = max_held_us.max(item["held_us"].as_f64().expect("held_us"));
            id
        })
        .collect();
    assert_eq!(ids, expected, "every matching hit, in order: {r}");
    assert_eq!(row["hits"], json!(expected.len()), "{row}");
    assert_eq!(
        row["filtered"],
        json!(total - expected.len() as u64),
        "{row}"
    );
    eprintln!(
        "{} hits beside {LEDGER_DECODES} read_locals of main taking {decode_ms:.0?} ms; \
         the longest hold of a recorded hit: {max_held_us:.0} µs; of any hit: mean {} µs, max {} µs",
        total, row["mean_handler_us"], row["max_handler_us"]
    );
    // Each decode ran while the probe was hit (else it proved nothing).
    assert_eq!(decodes_during_hits, LEDGER_DECODES, "{decode_ms:?}");
    fx.send("quit");
    assert_eq!(fx.wait_exit(), Some(0));
}

// ----- the tracer's held hits, through its own API ---------------------

/// The breakpoint fixture (tests/fixtures/tracer/breakpoints.c) under a
/// shell, with its probe sites by name.
fn breakpoints() -> (Fixture, HashMap<String, u64>) {
    let exe = build_fixture("tracer/breakpoints.c", "tracer_breakpoints", &["-O2"]);
    let mut fixture = Launch::new(&exe).under_shell().start();
    fixture.send("sites");
    let mut sites = HashMap::new();
    loop {
        let line = fixture.expect_line("site");
        if line == "sites-end" {
            return (fixture, sites);
        }
        let mut parts = line.split_whitespace().skip(1);
        let name = parts.next().expect("site name").to_string();
        let addr = parts.next().expect("site address");
        let addr = u64::from_str_radix(addr.trim_start_matches("0x"), 16).expect("hex");
        sites.insert(name, addr);
    }
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime")
}

/// Hands its first held hit to the test, which keeps its thread stopped
/// for as long as it holds it; later hits are released at once.
struct KeepFirst {
    first: Option<mpsc::Sender<HeldHit>>,
    hits: Arc<AtomicU64>,
}

impl HitHandler for KeepFirst {
    fn on_hit(&mut self, _hit: &HitContext<'_>) -> HitVerdict {
        self.hits.fetch_add(1, Ordering::SeqCst);
        HitVerdict::Keep
    }

    fn on_held_hit(&mut self, hit: HeldHit) -> HitVerdict {
        self.hits.fetch_add(1, Ordering::SeqCst);
        if let Some(first) = self.first.take() {
            let _ = first.send(hit);
        }
        HitVerdict::Keep
    }
}

fn keep_first(
    rt: &tokio::runtime::Runtime,
    tracer: &Tracer,
    pid: i32,
    address: u64,
) -> (mpsc::Receiver<HeldHit>, Arc<AtomicU64>) {
    let (send, kept) = mpsc::channel();
    let hits = Arc::new(AtomicU64::new(0));
    let handler = KeepFirst {
        first: Some(send),
        hits: hits.clone(),
    };
    rt.block_on(tracer.insert_breakpoint(pid, RuntimeAddr(address), 1, Box::new(handler)))
        .expect("insert at hot");
    (kept, hits)
}

/// A tracer attached to the breakpoints fixture, with `keep_first` at its
/// hot function, and the fixture's unprobed checksum of `hammer 200`.
struct HeldAtHot {
    rt: tokio::runtime::Runtime,
    tracer: Tracer,
    fx: Fixture,
    unprobed: String,
    kept: mpsc::Receiver<HeldHit>,
    hits: Arc<AtomicU64>,
}

fn held_at_hot() -> HeldAtHot {
    let rt = runtime();
    let tracer = Tracer::start().expect("tracer");
    let (mut fx, sites) = breakpoints();
    let unprobed = fx.ask("hammer 200", "checksum");
    rt.block_on(tracer.attach(fx.pid)).expect("attach");
    let (kept, hits) = keep_first(&rt, &tracer, fx.pid, sites["hot"]);
    HeldAtHot {
        rt,
        tracer,
        fx,
        unprobed,
        kept,
        hits,
    }
}

/// A reader that never releases its held thread: the tracer lets the
/// thread go after `HELD_HIT_DEADLINE` (the run can only finish so),
/// serving every other hit meanwhile, and the reader's reads after that
/// fail instead of showing later memory as the hit's.
#[test]
fn a_held_hit_not_released_is_let_go_at_the_deadline_and_later_reads_fail() {
    let HeldAtHot {
        rt,
        tracer,
        mut fx,
        unprobed,
        kept,
        hits,
    } = held_at_hot();

    // The test holds the first hit's thread and never lets it go itself.
    let probed = fx.ask("hammer 200", "checksum");
    assert_eq!(probed, unprobed, "the probed run computed something else");
    assert_eq!(
        hits.load(Ordering::SeqCst),
        800,
        "hits were lost or invented"
    );
    let hit = kept.try_recv().expect("the first hit was handed over");
    let mut word = [0u8; 8];
    assert!(
        hit.thread.read(hit.regs.rsp, &mut word).is_err(),
        "a read after the thread was let go must fail"
    );
    match hit.thread.release() {
        Err((LetGo::TookTooLong, held)) => assert!(held >= HELD_HIT_DEADLINE, "{held:?}"),
        other => panic!("the thread was let go by the deadline, not {other:?}"),
    }
    rt.block_on(tracer.detach(fx.pid)).expect("detach");
    fx.send("exit 0");
    assert_eq!(fx.wait_exit_status().code(), Some(0));
}

/// A detach while a hit holds a thread completes: the held thread is let
/// go (its int3 already out of the code), runs the original instruction
/// and is detached; the program finishes with the unprobed result.
#[test]
fn a_detach_while_a_hit_holds_a_thread_lets_it_go() {
    let HeldAtHot {
        rt,
        tracer,
        mut fx,
        unprobed,
        kept,
        ..
    } = held_at_hot();
    fx.send("hammer 200");
    let hit = kept.recv_timeout(WAIT).expect("a hit is held");
    rt.block_on(tracer.detach(fx.pid)).expect("detach");
    assert_eq!(fx.expect_line("checksum"), format!("checksum {unprobed}"));
    assert!(
        hit.thread.release().is_err(),
        "the detach let the thread go before the test released it"
    );
    fx.send("exit 0");
    assert_eq!(fx.wait_exit_status().code(), Some(0));
}

/// A probe removed while one of its hits holds a thread: released, the
/// thread runs the original instruction in place (the int3 is gone).
#[test]
fn a_group_removed_while_its_hit_holds_a_thread_leaves_it_whole() {
    let HeldAtHot {
        rt,
        tracer,
        mut fx,
        unprobed,
        kept,
        ..
    } = held_at_hot();
    fx.send("hammer 200");
    let hit = kept.recv_timeout(WAIT).expect("a hit is held");
    assert_eq!(
        rt.block_on(tracer.remove_group(fx.pid, 1)).expect("remove"),
        1
    );
    drop(hit);
    assert_eq!(fx.expect_line("checksum"), format!("checksum {unprobed}"));
    assert_eq!(fx.ask("hammer 200", "checksum"), unprobed);
    rt.block_on(tracer.detach(fx.pid)).expect("detach");
    fx.send("exit 0");
    assert_eq!(fx.wait_exit_status().code(), Some(0));
}

/// A process killed while one of its threads is held at a hit: the tracer
/// lets the reader go (the thread is gone), so no later memory could be
/// taken for the hit's.
#[test]
fn a_thread_killed_while_held_lets_its_reader_go() {
    let rt = runtime();
    let tracer = Tracer::start().expect("tracer");
    let (mut fx, sites) = breakpoints();
    rt.block_on(tracer.attach(fx.pid)).expect("attach");
    let (kept, _hits) = keep_first(&rt, &tracer, fx.pid, sites["hot"]);
    fx.send("hammer 200");
    let hit = kept.recv_timeout(WAIT).expect("a hit is held");
    // SAFETY: kill has no memory-safety preconditions.
    unsafe { libc::kill(fx.pid, libc::SIGKILL) };
    // The tracer reaps the held thread's end before it reports the
    // process killed.
    let deadline = Instant::now() + WAIT;
    while !matches!(
        rt.block_on(tracer.process_state(fx.pid)),
        Ok(TargetState::Killed { .. })
    ) {
        assert!(Instant::now() < deadline, "the kill was never reaped");
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    match hit.thread.release() {
        Err((LetGo::ThreadGone, _)) => {}
        other => panic!("the killed thread's reader was let go, not {other:?}"),
    }
    let mut word = [0u8; 8];
    assert!(hit.thread.read(hit.regs.rsp, &mut word).is_err());
}
