//! A liveprobe that dies by any means (SIGKILL, SIGSEGV) never kills its
//! target: the ptrace owner is a tracer task of its own that outlives
//! liveprobe's process, takes every int3 out, moves every thread off them
//! and detaches. Driven over MCP against the real binary, mid hit storm:
//! four threads call the probed function in a loop when liveprobe dies.
//! After the death the target must (a) finish with the unprobed checksum,
//! (b) be traced by nobody, (c) have its executable's text exactly as in
//! the file (no breakpoint byte left).

mod common;

use std::os::unix::fs::FileExt;
use std::os::unix::process::ExitStatusExt;
use std::time::{Duration, Instant};

use common::probes::*;
use common::*;
use serde_json::{Value, json};

/// Longest wait for something that happens on its own (a detach, an exit);
/// a bound against hanging, not a timing assertion.
const SETTLE: Duration = Duration::from_secs(60);

fn storm() -> std::path::PathBuf {
    build_fixture("probes/storm.c", "probes_storm", &["-O0"])
}

/// One `run n` of the storm fixture, "go" as soon as every worker spins;
/// its checksum line.
fn storm_run(fx: &mut Fixture, n: u64) -> String {
    fx.send(&format!("run {n}"));
    fx.expect_line("spinning");
    fx.send("go");
    fx.expect_line("checksum")
}

/// The checksum line of an unprobed `run n`.
fn unprobed_storm(n: u64) -> String {
    let mut fx = Fixture::start(&storm());
    let line = storm_run(&mut fx, n);
    fx.send("quit");
    assert_eq!(fx.wait_exit(), Some(0));
    line
}

/// Addresses in the executable's code mappings of `pid` whose bytes differ
/// from the executable file's (at most `max` of them). Fails the test when
/// no executable mapping of the file is found: nothing would be compared.
fn text_differences(pid: i32, max: usize) -> Vec<u64> {
    let exe = std::fs::read_link(format!("/proc/{pid}/exe")).expect("exe link");
    let file = std::fs::read(&exe).expect("read the executable");
    let maps = std::fs::read_to_string(format!("/proc/{pid}/maps")).expect("maps");
    let mem = std::fs::File::open(format!("/proc/{pid}/mem")).expect("open mem");
    let mut compared = 0;
    let mut differences = Vec::new();
    for line in maps.lines() {
        let fields: Vec<&str> = line.split_whitespace().collect();
        if fields.len() < 6 || !fields[1].contains('x') || fields[5] != exe.to_str().unwrap() {
            continue;
        }
        let (start, end) = fields[0].split_once('-').expect("range");
        let start = u64::from_str_radix(start, 16).expect("start");
        let end = u64::from_str_radix(end, 16).expect("end");
        let offset = usize::from_str_radix(fields[2], 16).expect("offset");
        let len = ((end - start) as usize).min(file.len().saturating_sub(offset));
        let mut live = vec![0u8; len];
        mem.read_exact_at(&mut live, start).expect("read the text");
        for (i, (a, b)) in live.iter().zip(&file[offset..offset + len]).enumerate() {
            if a != b && differences.len() < max {
                differences.push(start + i as u64);
            }
        }
        compared += len;
    }
    assert!(compared > 0, "no executable mapping of {exe:?} in {maps}");
    differences
}

/// Anonymous executable mappings of a process (where scratch pages live).
fn anonymous_code_mappings(pid: i32) -> Vec<String> {
    let maps = std::fs::read_to_string(format!("/proc/{pid}/maps")).unwrap_or_default();
    maps.lines()
        .filter(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            fields.len() == 5 && fields[1].contains('x')
        })
        .map(str::to_string)
        .collect()
}

/// `Name:\tvalue` of /proc/PID/status, as a number.
fn status_field(pid: i32, name: &str) -> Option<i32> {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()?
        .lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(':'))?
        .trim()
        .parse()
        .ok()
}

/// Waits (bounded) until `pid` is traced by nobody.
fn wait_untraced(pid: i32) {
    let deadline = Instant::now() + SETTLE;
    while tracer_pid(pid) != 0 {
        assert!(
            Instant::now() < deadline,
            "process {pid} is still traced by {} long after liveprobe died",
            tracer_pid(pid)
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Waits (bounded) until `pid` has exited (gone, or a zombie nobody reaps).
fn wait_gone(pid: i32) {
    let deadline = Instant::now() + SETTLE;
    while matches!(proc_state(pid), Some(state) if state != 'Z' && state != 'X') {
        assert!(
            Instant::now() < deadline,
            "task {pid} is still there long after liveprobe died"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// The ptrace owner of a target is a tracer task: a process of its own
/// (not liveprobe's thread group), a child of liveprobe.
fn tracer_task_of(target: i32, liveprobe: i32) -> i32 {
    let task = tracer_pid(target);
    assert!(task > 0, "target {target} is not traced");
    assert_ne!(task, liveprobe, "traced by liveprobe's process itself");
    assert_eq!(
        status_field(task, "Tgid"),
        Some(task),
        "a process of its own"
    );
    assert_eq!(
        status_field(task, "PPid"),
        Some(liveprobe),
        "started by liveprobe"
    );
    task
}

/// The count of a count metric.
fn count_of(c: &mut McpClient, probe: &Value) -> u64 {
    let r = results(c, probe, 0, 0);
    r["items"][0]["count"].as_u64().unwrap_or(0)
}

/// Waits (bounded) until the count of `probe` passes `above`: hits flow.
fn wait_count_above(c: &mut McpClient, probe: &Value, above: u64) -> u64 {
    let deadline = Instant::now() + SETTLE;
    loop {
        let count = count_of(c, probe);
        if count > above {
            return count;
        }
        assert!(Instant::now() < deadline, "no hit counted during the storm");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Ends liveprobe with `signal`, repeating it while liveprobe lives: Rust's
/// runtime catches the first SIGSEGV not caused by a fault in its stack
/// guard, restores the default action and returns, so a sent SIGSEGV
/// ends the process only the second time.
fn end_liveprobe(c: &mut McpClient, signal: i32) {
    let pid = c.child.id() as i32;
    let deadline = Instant::now() + SETTLE;
    let status = loop {
        // SAFETY: kill of our own child, which is not reaped yet.
        assert_eq!(unsafe { libc::kill(pid, signal) }, 0);
        let sent = Instant::now();
        let mut exited = None;
        while exited.is_none() && sent.elapsed() < Duration::from_secs(2) {
            exited = c.child.try_wait().expect("try_wait liveprobe");
            if exited.is_none() {
                std::thread::sleep(Duration::from_millis(5));
            }
        }
        if let Some(status) = exited {
            break status;
        }
        assert!(
            Instant::now() < deadline,
            "liveprobe survives signal {signal}"
        );
    };
    assert_eq!(status.signal(), Some(signal), "{status:?}");
}

/// Which probes a scenario sets.
#[derive(Clone, Copy, PartialEq)]
enum Engine {
    Ptrace,
    Uprobe,
}

impl Engine {
    fn name(self) -> &'static str {
        match self {
            Engine::Ptrace => "ptrace",
            Engine::Uprobe => "uprobe",
        }
    }
}

/// A count and a snapshot with a condition on the hot function, on
/// `engine`; returns the count's probe id.
fn set_storm_probes(c: &mut McpClient, pid: i32, engine: Engine) -> Value {
    let count = c
        .call(
            "set_metric",
            json!({"pid": pid, "location": "process_order", "kind": "count",
                   "engine": engine.name()}),
        )
        .ok();
    assert_eq!(count["engine"], engine.name(), "{count}");
    let snapshot = c
        .call(
            "set_snapshot",
            json!({"pid": pid, "location": "process_order", "condition": "worker == 2",
                   "expressions": ["o->id", "worker"], "max_hits": 10_000_000,
                   "engine": engine.name()}),
        )
        .ok();
    assert_eq!(snapshot["engine"], engine.name(), "{snapshot}");
    count["probe_id"].clone()
}

/// The whole scenario: probes set on `engine`, a first storm shows they
/// count, then liveprobe dies by `signal` in the middle of a second storm
/// (after `before_death` ran), and the target must be healthy and clean.
fn die_mid_storm(engine: Engine, signal: i32, before_death: impl FnOnce(&mut McpClient, i32)) {
    // Small: every ptrace hit is a trap, a wait and a resume, and the kill
    // lands mid-storm whatever the size (the workers spin until "go").
    let n = 200;
    let expected = unprobed_storm(n);
    assert!(expected.ends_with(" bad 0"), "{expected}");
    let mut fx = Fixture::start(&storm());
    let mut c = McpClient::start();
    c.call("attach", json!({"pid": fx.pid})).ok();
    let liveprobe = c.child.id() as i32;
    let task = tracer_task_of(fx.pid, liveprobe);
    assert!(
        text_differences(fx.pid, 1).is_empty(),
        "clean before probes"
    );
    let code_before = anonymous_code_mappings(fx.pid);
    let count = set_storm_probes(&mut c, fx.pid, engine);
    assert!(
        !text_differences(fx.pid, 1).is_empty(),
        "an int3 is in the text while probes are armed (the check can fail)"
    );

    assert_eq!(storm_run(&mut fx, n), expected, "probed, same result");
    if engine == Engine::Ptrace {
        assert_ne!(
            anonymous_code_mappings(fx.pid),
            code_before,
            "a scratch page while ptrace probes are armed (the check below can fail)"
        );
    }
    let first = wait_count_above(&mut c, &count, 0);

    fx.send(&format!("run {n}"));
    fx.expect_line("spinning");
    wait_count_above(&mut c, &count, first);
    // Hits were handled: no thread was started inside the tracer task (it
    // would keep the task, and liveprobe's descriptors, alive after it).
    let task_threads = std::fs::read_dir(format!("/proc/{task}/task"))
        .expect("tracer task threads")
        .count();
    assert_eq!(task_threads, 1, "the tracer task runs one thread");
    before_death(&mut c, fx.pid);
    end_liveprobe(&mut c, signal);

    wait_untraced(fx.pid);
    wait_gone(task);
    assert_eq!(
        text_differences(fx.pid, 8),
        Vec::<u64>::new(),
        "bytes of the text differ from the file after liveprobe died"
    );
    assert_eq!(
        anonymous_code_mappings(fx.pid),
        code_before,
        "the scratch pages are unmapped at the orphaned detach"
    );
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
    assert_eq!(storm_run(&mut fx, n), expected, "and unprobed from now on");
    fx.send("quit");
    assert_eq!(fx.expect_line("bye"), "bye");
    assert_eq!(fx.wait_exit(), Some(0));
}

#[test]
fn sigkill_mid_storm_with_ptrace_probes_leaves_the_target_healthy_and_clean() {
    die_mid_storm(Engine::Ptrace, libc::SIGKILL, |_, _| {});
}

#[test]
fn sigkill_mid_storm_with_uprobe_probes_leaves_the_target_healthy_and_clean() {
    die_mid_storm(Engine::Uprobe, libc::SIGKILL, |_, _| {});
}

#[test]
fn sigsegv_mid_storm_with_ptrace_probes_leaves_the_target_healthy_and_clean() {
    die_mid_storm(Engine::Ptrace, libc::SIGSEGV, |_, _| {});
}

/// read_locals requests in flight when liveprobe dies: each interrupts a
/// worker and holds it while its stack is copied. They are sent without
/// waiting for the answers, so the kill lands among them.
#[test]
fn sigkill_with_read_locals_in_flight_leaves_the_target_healthy_and_clean() {
    die_mid_storm(Engine::Ptrace, libc::SIGKILL, |c, pid| {
        let threads = c.call("list_threads", json!({"pid": pid})).ok();
        let tids: Vec<i64> = threads["threads"]
            .as_array()
            .expect("threads")
            .iter()
            .filter_map(|t| t["tid"].as_i64())
            .filter(|tid| *tid != pid as i64)
            .collect();
        assert_eq!(tids.len(), 4, "{threads}");
        for (id, tid) in tids.iter().cycle().take(32).enumerate() {
            c.send_raw(
                &json!({"jsonrpc": "2.0", "id": 1_000_000 + id, "method": "tools/call",
                "params": {"name": "read_locals", "arguments": {"pid": pid, "tid": tid}}}),
            );
        }
    });
}

/// liveprobe's tracer task is liveprobe itself: attaching it is refused
/// (seizing it would stop the tracer), and list_processes says why.
#[test]
fn the_tracer_task_is_never_attached() {
    let mut fx = Fixture::start(&storm());
    let mut c = McpClient::start();
    c.call("attach", json!({"pid": fx.pid})).ok();
    let liveprobe = c.child.id() as i32;
    let task = tracer_task_of(fx.pid, liveprobe);
    let refused = c.call("attach", json!({"pid": task})).err();
    assert!(refused.contains("itself"), "{refused}");
    assert_eq!(tracer_pid(task), 0, "the task is not traced");
    let list = c
        .call("list_processes", json!({"query": task.to_string()}))
        .ok();
    let row = list["processes"]
        .as_array()
        .expect("processes")
        .iter()
        .find(|p| p["pid"] == json!(task))
        .unwrap_or_else(|| panic!("the tracer task is listed: {list}"))
        .clone();
    assert_eq!(row["attachable"], json!(false), "{row}");
    assert!(
        row["reason"].as_str().unwrap_or("").contains("tracer task"),
        "{row}"
    );
    // A normal end: the task detaches the target and exits with liveprobe.
    assert_eq!(c.shutdown(), Some(0));
    assert_eq!(tracer_pid(fx.pid), 0);
    wait_gone(task);
    fx.send("quit");
    assert_eq!(fx.expect_line("bye"), "bye");
}
