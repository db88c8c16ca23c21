//! A C++ TCP echo server on standalone Asio (Debian's libasio-dev, a
//! header-only library nobody here wrote, compiled by tests/real/build.sh at
//! g++ -O0 -g) whose completion handlers are lambdas capturing `this`, a
//! `shared_ptr` and an int by value — the shape of most asynchronous C++.
//! Driven with real TCP messages on 127.0.0.1; values are checked against
//! gdb stopped at the same line of a fresh server for the same message.

mod common;
#[path = "real/support.rs"]
mod real;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;

use common::*;
use real::*;
use serde_json::{Value, json};

fn server() -> (Fixture, u16) {
    server_of(&real_programs().asio_echo)
}

fn server_of(exe: &Path) -> (Fixture, u16) {
    let mut fx = Fixture::start(exe);
    let line = fx.expect_line("port");
    let port = line
        .split_whitespace()
        .nth(1)
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("no port in {line:?}"));
    (fx, port)
}

fn server_attached() -> (Fixture, u16, McpClient) {
    let (fx, port) = server();
    let mut c = McpClient::start();
    c.call("attach", json!({"pid": fx.pid})).ok();
    (fx, port, c)
}

/// The line inside the read handler's lambda.
fn handler_line() -> u64 {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/real/asio_echo.cpp");
    line_in(&src, "void do_read()", "// echo: a message has arrived")
}

fn handler_location() -> String {
    format!("asio_echo.cpp:{}", handler_line())
}

/// Sends each message on one connection and waits for its echo.
fn echo(port: u16, messages: &[&str]) {
    let mut stream = TcpStream::connect(("127.0.0.1", port))
        .unwrap_or_else(|e| panic!("connect to 127.0.0.1:{port}: {e}"));
    stream.set_read_timeout(Some(WAIT)).expect("read timeout");
    for m in messages {
        stream.write_all(m.as_bytes()).expect("send");
        let mut back = vec![0u8; m.len()];
        stream.read_exact(&mut back).expect("read the echo");
        assert_eq!(back, m.as_bytes());
    }
}

fn results(c: &mut McpClient, probe: &Value) -> Value {
    c.call(
        "get_probe_results",
        json!({"probe_id": probe, "after": 0, "limit": 100, "wait_ms": 0}),
    )
    .ok()
}

/// gdb's `print` and a liveprobe value agree (number, address or string).
fn same_value(value: &Value, gdb: &str) -> bool {
    let summary = value["value"].as_str().unwrap_or("");
    if let Some(start) = gdb.find('"') {
        // gdb: `"hello\n", '\000' <repeats 1017 times>`: the text before
        // the NULs.
        let text = &gdb[start..];
        let text = text
            .split("\", ")
            .next()
            .unwrap_or(text)
            .trim_end_matches('"');
        return summary.contains(text);
    }
    if gdb.contains("0x") {
        return address_in(gdb).is_some() && address_in(gdb) == address_in(summary);
    }
    let gdb_number = gdb
        .split_whitespace()
        .next()
        .and_then(|n| n.parse::<i64>().ok());
    gdb_number.is_some() && gdb_number == number_of(&value["value"])
}

/// Inside the read handler's lambda, a snapshot reads the handler's
/// arguments, the captures by value, and the members of the captured
/// `this` (explicitly and implicitly, as C++ code in the lambda names them)
/// with the values gdb prints stopped there for the same message.
#[test]
fn asio_lambda_handler_values_match_gdb() {
    let exprs = [
        "length",
        "reads_before",
        "this->id_",
        "id_",
        "bytes_seen_",
        "data_",
    ];
    let (fx, port) = server();
    let gdb = gdb_prints_at_breakpoint(fx.pid, &handler_location(), &exprs, move || {
        echo(port, &["hello\n"])
    });
    assert_eq!(gdb[0], "6", "{gdb:?}");
    drop(fx);

    let (_fx, port, mut c) = server_attached();
    let set = c.call(
        "set_snapshot",
        json!({"pid": _fx.pid, "location": handler_location(), "expressions": exprs}),
    );
    let set = set.ok();
    echo(port, &["hello\n"]);
    let r = results(&mut c, &set["probe_id"]);
    let values = r["items"][0]["expressions"]
        .as_array()
        .unwrap_or_else(|| panic!("{r}"))
        .clone();
    let mut wrong = Vec::new();
    for ((expr, gdb_value), value) in exprs.iter().zip(&gdb).zip(&values) {
        if !same_value(value, gdb_value) {
            wrong.push(format!("{expr}: liveprobe {value} vs gdb {gdb_value}"));
        }
    }
    assert!(
        wrong.is_empty(),
        "values differ from gdb's:\n{}",
        wrong.join("\n")
    );
}

/// A dry run at the lambda's line lists what is in scope there as gdb's
/// `info args` / `info locals` do: the arguments, and the captures by
/// their names (`this`, `self`, `reads_before`).
#[test]
fn asio_lambda_scope_lists_arguments_and_captures() {
    let (fx, _port, mut c) = server_attached();
    let dry = c
        .call(
            "set_snapshot",
            json!({"pid": fx.pid, "location": handler_location(), "dry_run": true}),
        )
        .ok();
    let names: Vec<&str> = dry["variables"]
        .as_array()
        .map(|vs| vs.iter().filter_map(|v| v["name"].as_str()).collect())
        .unwrap_or_default();
    for name in ["ec", "length", "reads_before", "self", "this"] {
        assert!(names.contains(&name), "{name} not in scope: {dry}");
    }
    assert_eq!(dry["resolved"].as_array().map(Vec::len), Some(1), "{dry}");
}

/// A count at the lambda's line is the number of messages and gdb's hit
/// count for a breakpoint there (gdb arms one site), on both engines.
#[test]
fn asio_count_in_a_lambda_equals_messages_and_gdb_hits() {
    let messages = ["one\n", "three\n", "two\n", "four\n", "five\n"];
    let (mut fx, port) = server();
    let pid = fx.pid;
    let gdb = gdb_hit_count(pid, &handler_location(), || {
        echo(port, &messages);
        fx.send("quit");
    });
    assert_eq!(gdb, messages.len() as u64);
    for engine in ["uprobe", "ptrace"] {
        let (fx, port, mut c) = server_attached();
        let count = c
            .call(
                "set_metric",
                json!({"pid": fx.pid, "location": handler_location(), "kind": "count",
                       "engine": engine}),
            )
            .ok();
        echo(port, &messages);
        let r = results(&mut c, &count["probe_id"]);
        assert_eq!(
            r["hits"], gdb,
            "{engine}: resolved {} (gdb arms 1 site)",
            count["resolved"]
        );
    }
}

/// A condition over a lambda argument selects the hits, and a logpoint's
/// template reads the argument and a capture by value.
#[test]
fn asio_condition_and_template_in_a_lambda() {
    for engine in ["uprobe", "ptrace"] {
        let (fx, port, mut c) = server_attached();
        let log = c
            .call(
                "set_logpoint",
                json!({"pid": fx.pid, "location": handler_location(), "engine": engine,
                       "condition": "length == 4", "message": "read {length} after {reads_before}"}),
            )
            .ok();
        echo(port, &["one\n", "three\n", "two\n", "four\n", "five\n"]);
        let r = results(&mut c, &log["probe_id"]);
        let texts: Vec<&str> = r["items"]
            .as_array()
            .expect("items")
            .iter()
            .filter_map(|i| i["text"].as_str())
            .collect();
        assert_eq!(texts, ["read 4 after 0", "read 4 after 2"], "{engine}: {r}");
    }
}

/// The hit's frame 0 is the lambda at its file:line.
#[test]
fn asio_snapshot_hit_is_labelled_with_the_lambda_line() {
    let (fx, port, mut c) = server_attached();
    let set = c
        .call(
            "set_snapshot",
            json!({"pid": fx.pid, "location": handler_location()}),
        )
        .ok();
    echo(port, &["x\n"]);
    let r = results(&mut c, &set["probe_id"]);
    let frame = &r["items"][0]["frames"][0];
    assert!(
        frame["file"]
            .as_str()
            .is_some_and(|f| f.ends_with("asio_echo.cpp")),
        "{frame}"
    );
    assert_eq!(frame["line"], handler_line(), "{frame}");
    assert!(
        frame["function"]
            .as_str()
            .is_some_and(|f| f.contains("do_read")),
        "{frame}"
    );
}

/// Every frame of every idle thread that gdb places in the server's own
/// code (Asio's headers, libstdc++'s thread templates, the lambdas) has
/// gdb's file:line and, in whatever naming style, gdb's function, and no
/// name is left mangled.
#[test]
fn asio_idle_frames_match_gdb() {
    idle_frames_match_gdb(&real_programs().asio_echo);
}

/// The same at -O2, where Asio's calls are inlined: gdb shows each inlined
/// frame with its own line, and liveprobe must too.
#[test]
fn asio_o2_idle_frames_match_gdb() {
    idle_frames_match_gdb(&real_programs().asio_echo_o2);
}

fn idle_frames_match_gdb(exe: &Path) {
    let (fx, port) = server_of(exe);
    echo(port, &["warm\n"]);
    let expected = gdb_all_threads_bt(fx.pid);
    let mut c = McpClient::start();
    c.call("attach", json!({"pid": fx.pid})).ok();
    let stack = c
        .call(
            "stack_trace",
            json!({"pid": fx.pid, "all_threads": true, "max_frames": 256}),
        )
        .ok();
    let exe = std::fs::canonicalize(exe).expect("exe");
    let ranges = mapped_ranges(fx.pid, &exe);
    let in_exe =
        |pc: Option<u64>| pc.is_some_and(|pc| ranges.iter().any(|(a, b)| (*a..*b).contains(&pc)));
    let mut wrong = Vec::new();
    let mut compared = 0;
    for (tid, gdb_frames) in &expected {
        let thread = stack["threads"]
            .as_array()
            .and_then(|ts| ts.iter().find(|t| t["tid"] == *tid))
            .unwrap_or_else(|| panic!("thread {tid} missing: {stack}"));
        let mut live: Vec<(String, String, u64)> = thread["frames"]
            .as_array()
            .expect("frames")
            .iter()
            .filter(|f| in_exe(f["pc"].as_str().and_then(address_in)))
            .map(|f| {
                (
                    f["function"].as_str().unwrap_or("?").to_string(),
                    f["file"].as_str().unwrap_or("?").to_string(),
                    f["line"].as_u64().unwrap_or(0),
                )
            })
            .collect();
        // gdb's backtrace stops at main; libc's start code below is not compared.
        if let Some(i) = live.iter().position(|f| f.0 == "main") {
            live.truncate(i + 1);
        }
        // gdb's frames in the executable: the ones with a source file
        // outside libc and libstdc++'s own (prebuilt) code.
        let gdb_exe: Vec<&GdbFrame> = gdb_frames
            .iter()
            .filter(|f| {
                f.file.as_deref().is_some_and(|file| {
                    file.starts_with("/usr/include/") || file.ends_with("asio_echo.cpp")
                })
            })
            .collect();
        if live.len() != gdb_exe.len() {
            wrong.push(format!(
                "thread {tid}: {} frames in the executable, gdb {}: {live:?} vs {gdb_exe:?}",
                live.len(),
                gdb_exe.len()
            ));
            continue;
        }
        for (l, g) in live.iter().zip(&gdb_exe) {
            compared += 1;
            let same_place = g.file.as_deref() == Some(l.1.as_str()) && g.line == Some(l.2);
            let same_name = base_function_name(&l.0) == base_function_name(&g.function);
            let mangled = l.0.starts_with("_Z");
            if !same_place || !same_name || mangled {
                wrong.push(format!("thread {tid}: liveprobe {l:?} vs gdb {g:?}"));
            }
        }
    }
    assert!(
        compared >= 8,
        "only {compared} frames compared: {expected:?}"
    );
    assert!(
        wrong.is_empty(),
        "frames differ from gdb's:\n{}",
        wrong.join("\n")
    );
}

/// The epoll descriptor of `pid`: the fd whose link is anon_inode:[eventpoll].
fn epoll_fd(pid: i32) -> i64 {
    let dir = format!("/proc/{pid}/fd");
    std::fs::read_dir(&dir)
        .expect("read fds")
        .filter_map(Result::ok)
        .find(|e| {
            std::fs::read_link(e.path())
                .map(|l| l.to_string_lossy().contains("eventpoll"))
                .unwrap_or(false)
        })
        .and_then(|e| e.file_name().to_str().and_then(|n| n.parse().ok()))
        .unwrap_or_else(|| panic!("no epoll fd in {dir}"))
}

/// Asio's reactor thread, read 60 times in epoll_wait while a client keeps the
/// server busy: whenever its frame 0 is libc's epoll_wait, the `epfd`
/// argument is the process's epoll descriptor and `maxevents` Asio's 128,
/// or the value is marked unavailable — never another number (libc's
/// location lists use DW_OP_entry_value there).
#[test]
fn asio_epoll_wait_arguments_under_load_are_right_or_unavailable() {
    let (fx, port, mut c) = server_attached();
    let epfd = epoll_fd(fx.pid);
    let stack = c
        .call("stack_trace", json!({"pid": fx.pid, "all_threads": true}))
        .ok();
    let reactor = stack["threads"]
        .as_array()
        .and_then(|ts| {
            ts.iter().find(|t| {
                t["frames"].as_array().is_some_and(|fs| {
                    fs.iter()
                        .any(|f| f["function"] == "asio::detail::epoll_reactor::run")
                })
            })
        })
        .and_then(|t| t["tid"].as_i64())
        .unwrap_or_else(|| panic!("no thread in epoll_reactor::run: {stack}"));
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let load = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            let mut sent = 0u32;
            // Bounded: at most 200,000 messages, or until the reads are done.
            while sent < 200_000 && !stop.load(std::sync::atomic::Ordering::Relaxed) {
                echo(port, &["ping\n"; 20]);
                sent += 20;
            }
        })
    };
    let mut in_epoll_wait = 0;
    let mut wrong = Vec::new();
    // Reads until 60 of them found the thread in epoll_wait (at most 3000).
    for _ in 0..3000 {
        if in_epoll_wait == 60 {
            break;
        }
        let locals = c
            .call(
                "read_locals",
                json!({"pid": fx.pid, "tid": reactor, "frame": 0}),
            )
            .ok();
        if locals["frame"]["function"] != "epoll_wait" {
            continue;
        }
        in_epoll_wait += 1;
        let variables = locals["variables"].as_array().cloned().unwrap_or_default();
        for (name, expected) in [("epfd", epfd), ("maxevents", 128)] {
            let Some(v) = variables.iter().find(|v| v["name"] == name) else {
                wrong.push(format!("{name} missing: {locals}"));
                continue;
            };
            if v.get("unavailable").is_some() {
                continue;
            }
            if number_of(&v["value"]) != Some(expected) {
                wrong.push(format!("{name}: {} (expected {expected})", v["value"]));
            }
        }
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    load.join().expect("load thread");
    assert!(
        in_epoll_wait >= 30,
        "only {in_epoll_wait} of 300 reads found epoll_wait"
    );
    assert!(
        wrong.is_empty(),
        "{} wrong values in {in_epoll_wait} reads:\n{}",
        wrong.len(),
        wrong.join("\n")
    );
}
