//! End-to-end tests of the foundation: the real `liveprobe` binary driven
//! over a real MCP stdio session, attached to real fixture processes.

mod common;

use common::*;
use serde_json::{Value, json};

fn threads_fixture() -> std::path::PathBuf {
    build_fixture("e2e/threads.c", "e2e_threads", &["-O0"])
}

/// Line number (1-based) of the first source line containing `needle`.
fn line_of(rel: &str, needle: &str) -> u64 {
    let text = std::fs::read_to_string(fixture_src(rel)).expect("read fixture source");
    text.lines()
        .position(|l| l.contains(needle))
        .map(|i| i as u64 + 1)
        .unwrap_or_else(|| panic!("{needle:?} not in {rel}"))
}

fn frames_of(stack: &Value, tid: i64) -> Vec<Value> {
    stack["threads"]
        .as_array()
        .expect("threads")
        .iter()
        .find(|t| t["tid"] == json!(tid))
        .unwrap_or_else(|| panic!("no thread {tid} in {stack}"))["frames"]
        .as_array()
        .expect("frames")
        .clone()
}

fn function_names(frames: &[Value]) -> Vec<String> {
    frames
        .iter()
        .map(|f| f["function"].as_str().unwrap_or("??").to_string())
        .collect()
}

#[test]
fn tools_are_listed_with_input_and_output_schemas() {
    let mut c = McpClient::start();
    let resp = c.request("tools/list", json!({}));
    let tools = resp["result"]["tools"].as_array().expect("tools").clone();
    let names: Vec<&str> = tools.iter().filter_map(|t| t["name"].as_str()).collect();
    for expected in [
        "list_processes",
        "attach",
        "detach",
        "list_threads",
        "stack_trace",
        "find_functions",
        "list_source",
    ] {
        assert!(
            names.contains(&expected),
            "{expected} missing from {names:?}"
        );
    }
    for t in &tools {
        assert_eq!(t["inputSchema"]["type"], "object", "{}", t["name"]);
        assert_eq!(t["outputSchema"]["type"], "object", "{}", t["name"]);
        assert!(t["description"].as_str().is_some_and(|d| d.len() > 20));
    }
}

#[test]
fn schemas_directory_matches_the_code() {
    let out = tempfile::tempdir().expect("tempdir");
    let status = std::process::Command::new(env!("CARGO_BIN_EXE_liveprobe"))
        .arg("export-schemas")
        .arg(out.path())
        .status()
        .expect("run export-schemas");
    assert!(status.success());
    let committed = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("schemas");
    let mut generated: Vec<_> = std::fs::read_dir(out.path())
        .expect("read generated")
        .map(|e| e.expect("entry").file_name())
        .collect();
    generated.sort();
    let mut on_disk: Vec<_> = std::fs::read_dir(&committed)
        .expect("read schemas/")
        .map(|e| e.expect("entry").file_name())
        .filter(|n| n.to_string_lossy().ends_with(".json"))
        .collect();
    on_disk.sort();
    assert_eq!(
        generated, on_disk,
        "schemas/ has other files than the tools define: run tools/export-schemas.sh"
    );
    for name in generated {
        let a = std::fs::read_to_string(out.path().join(&name)).expect("generated");
        let b = std::fs::read_to_string(committed.join(&name)).expect("committed");
        assert_eq!(
            a,
            b,
            "schemas/{} drifted from the code: run tools/export-schemas.sh and commit",
            name.to_string_lossy()
        );
    }
}

#[test]
fn unknown_request_before_initialize_gets_an_error_and_the_session_goes_on() {
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_liveprobe"))
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("start");
    use std::io::{BufRead, BufReader, Write};
    let mut stdin = child.stdin.take().expect("stdin");
    let mut out = BufReader::new(child.stdout.take().expect("stdout"));
    writeln!(
        stdin,
        r#"{{"jsonrpc":"2.0","id":1,"method":"server/discover","params":{{}}}}"#
    )
    .expect("write");
    writeln!(
        stdin,
        r#"{{"jsonrpc":"2.0","id":2,"method":"no/such/method","params":{{}}}}"#
    )
    .expect("write");
    writeln!(stdin, r#"{{"jsonrpc":"2.0","id":3,"method":"initialize","params":{{"protocolVersion":"2025-06-18","capabilities":{{}},"clientInfo":{{"name":"t","version":"0"}}}}}}"#).expect("write");
    let mut seen = std::collections::HashMap::new();
    let mut line = String::new();
    while seen.len() < 3 {
        line.clear();
        assert!(
            out.read_line(&mut line).expect("read") > 0,
            "server closed the connection"
        );
        let v: Value = serde_json::from_str(&line).expect("stdout line is JSON");
        if let Some(id) = v["id"].as_i64() {
            seen.insert(id, v);
        }
    }
    assert!(seen[&2].get("error").is_some(), "{}", seen[&2]);
    assert!(
        seen[&3]["result"]["serverInfo"]["name"] == "liveprobe",
        "{}",
        seen[&3]
    );
    drop(stdin);
    let _ = child.wait();
}

#[test]
fn attach_threads_and_stacks_of_a_multithreaded_c_program() {
    let exe = threads_fixture();
    let mut fx = Fixture::start(&exe);
    let mut c = McpClient::start();

    let attached = c.call("attach", json!({"pid": fx.pid})).ok();
    assert_eq!(attached["pid"], json!(fx.pid));
    assert_eq!(attached["threads"], json!(4));
    assert_eq!(attached["debug_info"]["found"], json!(true));
    assert!(
        attached["languages"]
            .as_array()
            .expect("languages")
            .contains(&json!("c"))
    );
    assert!(
        attached["exe"]
            .as_str()
            .expect("exe")
            .ends_with("e2e_threads")
    );
    // Attaching again is harmless and says so.
    let again = c.call("attach", json!({"pid": fx.pid.to_string()})).ok();
    assert_eq!(again["already_attached"], json!(true));

    let threads = c.call("list_threads", json!({"pid": fx.pid})).ok();
    let rows = threads["threads"].as_array().expect("threads");
    assert_eq!(rows.len(), 4);
    assert_eq!(rows[0]["tid"], json!(fx.pid), "main thread first");
    assert_eq!(rows[0]["function"], "wait_for_command");
    let idle_line = line_of("e2e/threads.c", "return (int)read(go_pipe");
    for row in &rows[1..] {
        assert!(
            row["name"].as_str().expect("name").starts_with("worker-"),
            "{row}"
        );
        assert_eq!(row["function"], "worker_idle", "{row}");
        assert_eq!(row["line"], json!(idle_line), "{row}");
        assert!(row["file"].as_str().expect("file").ends_with("threads.c"));
    }

    let stack = c
        .call("stack_trace", json!({"pid": fx.pid, "all_threads": true}))
        .ok();
    assert_eq!(stack["threads"].as_array().expect("threads").len(), 4);
    let main_frames = frames_of(&stack, fx.pid as i64);
    let names = function_names(&main_frames);
    let wait_pos = names
        .iter()
        .position(|n| n == "wait_for_command")
        .unwrap_or_else(|| panic!("wait_for_command not in {names:?}"));
    assert_eq!(names[wait_pos + 1], "main", "{names:?}");
    assert_eq!(
        main_frames[wait_pos + 1]["line"],
        json!(line_of("e2e/threads.c", "while (wait_for_command("))
    );
    for row in &rows[1..] {
        let tid = row["tid"].as_i64().expect("tid");
        let names = function_names(&frames_of(&stack, tid));
        let idle = names
            .iter()
            .position(|n| n == "worker_idle")
            .expect("worker_idle");
        assert_eq!(names[idle + 1], "worker_main", "{names:?}");
    }

    // One thread only, by tid; and a tid that is not in the process.
    let worker_tid = rows[1]["tid"].as_i64().expect("tid");
    let one = c
        .call(
            "stack_trace",
            json!({"pid": fx.pid, "tid": worker_tid, "max_frames": 2}),
        )
        .ok();
    assert_eq!(one["threads"].as_array().expect("threads").len(), 1);
    assert_eq!(
        one["threads"][0]["frames"]
            .as_array()
            .expect("frames")
            .len(),
        2
    );
    let err = c
        .call("stack_trace", json!({"pid": fx.pid, "tid": 1}))
        .err();
    assert!(
        err.contains("thread") && err.contains(&worker_tid.to_string()),
        "{err}"
    );

    // The program still works, and detach leaves it untraced.
    fx.send("run 20");
    let with_liveprobe = fx.expect_line("checksum");
    let detached = c.call("detach", json!({"pid": fx.pid})).ok();
    assert_eq!(detached["pid"], json!(fx.pid));
    assert_eq!(tracer_pid(fx.pid), 0);
    fx.send("run 20");
    assert_eq!(fx.expect_line("checksum"), with_liveprobe);
    let err = c.call("list_threads", json!({"pid": fx.pid})).err();
    assert!(err.contains("attach"), "{err}");
    fx.send("quit");
    assert_eq!(fx.wait_exit(), Some(0));
}

#[test]
fn stacks_agree_with_gdb() {
    let exe = threads_fixture();
    let fx = Fixture::start(&exe);
    let out = std::process::Command::new("gdb")
        .args([
            "-nx",
            "-batch",
            "-p",
            &fx.pid.to_string(),
            "-ex",
            "thread apply all bt",
        ])
        .output()
        .expect("run gdb");
    let gdb_text = String::from_utf8_lossy(&out.stdout);
    // Frames in the fixture's own source, with their lines, as gdb prints them.
    let gdb_frames: Vec<String> = gdb_text
        .lines()
        .filter(|l| l.starts_with('#') && l.contains("threads.c:"))
        .filter_map(|l| {
            let function = l.split(" (").next()?.split_whitespace().last()?;
            let line = l.rsplit("threads.c:").next()?.trim();
            Some(format!("{function}:{line}"))
        })
        .collect();
    assert!(
        gdb_frames.len() >= 8,
        "gdb printed too few frames: {gdb_text}"
    );
    let mut c = McpClient::start();
    c.call("attach", json!({"pid": fx.pid})).ok();
    let stack = c
        .call("stack_trace", json!({"pid": fx.pid, "all_threads": true}))
        .ok();
    let mut ours: Vec<String> = Vec::new();
    for t in stack["threads"].as_array().expect("threads") {
        for f in t["frames"].as_array().expect("frames") {
            if f["file"].as_str().is_some_and(|p| p.ends_with("threads.c")) {
                ours.push(format!(
                    "{}:{}",
                    f["function"].as_str().unwrap_or("??"),
                    f["line"]
                ));
            }
        }
    }
    let mut a = gdb_frames.clone();
    let mut b = ours.clone();
    a.sort();
    b.sort();
    assert_eq!(a, b, "gdb: {gdb_text}\nliveprobe: {stack}");
}

#[test]
fn checksum_is_unchanged_while_stacks_are_taken_repeatedly() {
    let exe = threads_fixture();
    let mut plain = Fixture::start(&exe);
    plain.send("run 3000");
    let expected = plain.expect_line("checksum");
    plain.send("quit");
    plain.wait_exit();

    let mut fx = Fixture::start(&exe);
    let mut c = McpClient::start();
    c.call("attach", json!({"pid": fx.pid})).ok();
    fx.send("run 3000");
    for _ in 0..40 {
        let stack = c
            .call(
                "stack_trace",
                json!({"pid": fx.pid, "all_threads": true, "max_frames": 8}),
            )
            .ok();
        assert_eq!(stack["threads"].as_array().expect("threads").len(), 4);
    }
    assert_eq!(fx.expect_line("checksum"), expected);
    fx.send("quit");
    assert_eq!(fx.wait_exit(), Some(0));
}

#[test]
fn inlined_calls_are_frames_of_their_own() {
    let exe = build_fixture("e2e/inlined.c", "e2e_inlined_O2", &["-O2"]);
    let mut fx = Fixture::start(&exe);
    let mut c = McpClient::start();
    c.call("attach", json!({"pid": fx.pid})).ok();
    let stack = c.call("stack_trace", json!({"pid": fx.pid})).ok();
    let frames = frames_of(&stack, fx.pid as i64);
    let names = function_names(&frames);
    let wait = names
        .iter()
        .position(|n| n == "wait_here")
        .unwrap_or_else(|| panic!("wait_here not in {names:?}"));
    assert_eq!(
        &names[wait..wait + 4],
        &["wait_here", "parse_step", "process_input", "main"]
    );
    assert_eq!(frames[wait]["inlined"], json!(true));
    assert_eq!(frames[wait + 1]["inlined"], json!(true));
    assert_eq!(frames[wait + 2]["inlined"], json!(false));
    assert_eq!(
        frames[wait]["line"],
        json!(line_of("e2e/inlined.c", "return read(fd, buffer"))
    );
    assert_eq!(
        frames[wait + 1]["line"],
        json!(line_of("e2e/inlined.c", "long n = wait_here(fd);"))
    );
    fx.send("q");
    fx.expect_line("acc");
}

#[test]
fn cpp_and_rust_names_are_demangled() {
    let cpp = build_fixture("e2e/cache.cpp", "e2e_cache_cpp", &["-O0"]);
    let rust = build_fixture("e2e/service.rs", "e2e_service_rs", &["-C", "opt-level=0"]);
    let mut c = McpClient::start();

    let mut fx = Fixture::start(&cpp);
    c.call("attach", json!({"pid": fx.pid})).ok();
    let stack = c.call("stack_trace", json!({"pid": fx.pid})).ok();
    let names = function_names(&frames_of(&stack, fx.pid as i64));
    assert!(
        names.iter().any(|n| n.starts_with("store::Cache::get")),
        "{names:?}"
    );
    let found = c
        .call(
            "find_functions",
            json!({"pid": fx.pid, "query": "Cache::get"}),
        )
        .ok();
    assert!(
        found["functions"][0]["name"]
            .as_str()
            .expect("name")
            .contains("store::Cache::get")
    );
    fx.send("x");
    fx.expect_line("value 7");

    let mut fx = Fixture::start(&rust);
    let attached = c.call("attach", json!({"pid": fx.pid})).ok();
    assert!(
        attached["languages"]
            .as_array()
            .expect("languages")
            .contains(&json!("rust"))
    );
    let stack = c
        .call("stack_trace", json!({"pid": fx.pid, "all_threads": true}))
        .ok();
    let all: Vec<String> = stack["threads"]
        .as_array()
        .expect("threads")
        .iter()
        .flat_map(|t| function_names(t["frames"].as_array().expect("frames")))
        .collect();
    assert!(
        all.iter().any(|n| n == "service::cache::Cache::lookup"),
        "{all:?}"
    );
    assert!(all.iter().any(|n| n == "service::wait_for_quit"), "{all:?}");
    let threads = c.call("list_threads", json!({"pid": fx.pid})).ok();
    assert!(
        threads["threads"]
            .as_array()
            .expect("threads")
            .iter()
            .any(|t| t["name"] == "cache-worker")
    );
    let found = c
        .call(
            "find_functions",
            json!({"pid": fx.pid, "query": "cache::Cache::lookup"}),
        )
        .ok();
    assert_eq!(
        found["functions"][0]["name"],
        "service::cache::Cache::lookup"
    );
    assert!(
        found["functions"][0]["file"]
            .as_str()
            .expect("file")
            .ends_with("service.rs")
    );
    fx.send("quit");
    fx.expect_line("bye quit");
}

#[test]
fn find_functions_and_list_source() {
    let exe = threads_fixture();
    let fx = Fixture::start(&exe);
    let mut c = McpClient::start();
    c.call("attach", json!({"pid": fx.pid})).ok();

    let found = c
        .call("find_functions", json!({"pid": fx.pid, "query": "worker"}))
        .ok();
    let names: Vec<&str> = found["functions"]
        .as_array()
        .expect("functions")
        .iter()
        .filter_map(|f| f["name"].as_str())
        .collect();
    assert!(
        names.contains(&"worker_idle") && names.contains(&"worker_main"),
        "{names:?}"
    );
    let idle = &found["functions"]
        .as_array()
        .expect("functions")
        .iter()
        .find(|f| f["name"] == "worker_idle")
        .expect("worker_idle")
        .clone();
    assert_eq!(
        idle["line"],
        json!(line_of("e2e/threads.c", "int worker_idle(int id)"))
    );
    assert!(idle["address"].as_str().expect("address").starts_with("0x"));

    let compute_line = line_of("e2e/threads.c", "acc = mix(acc, i + (uint64_t)r);");
    let src = c
        .call(
            "list_source",
            json!({"pid": fx.pid, "file": "threads.c", "line": compute_line, "context": 3}),
        )
        .ok();
    let lines = src["lines"].as_array().expect("lines");
    assert_eq!(lines.len(), 7);
    let at = lines
        .iter()
        .find(|l| l["line"] == json!(compute_line))
        .expect("asked line");
    assert_eq!(at["code"], json!(true));
    assert!(at["text"].as_str().expect("text").contains("acc = mix"));
    let comment_line = line_of("e2e/threads.c", "Multi-threaded C fixture");
    let top = c
        .call(
            "list_source",
            json!({"pid": fx.pid, "file": "e2e/threads.c"}),
        )
        .ok();
    let first = &top["lines"][comment_line as usize - 1];
    assert_eq!(first["code"], json!(false));
    assert_eq!(top["stale"], Value::Null);

    let err = c
        .call("list_source", json!({"pid": fx.pid, "file": "thread.c"}))
        .err();
    assert!(
        err.contains("threads.c"),
        "a near match is suggested: {err}"
    );
    let err = c
        .call(
            "list_source",
            json!({"pid": fx.pid, "file": "threads.c", "line": 100000}),
        )
        .err();
    assert!(err.contains("lines"), "{err}");
}

#[test]
fn bad_pids_get_clear_errors_and_targets_are_untouched() {
    let mut c = McpClient::start();
    // A pid that does not exist.
    let err = c.call("attach", json!({"pid": 999_999_999})).err();
    assert!(
        err.contains("999999999") && err.to_lowercase().contains("no"),
        "{err}"
    );
    // liveprobe itself.
    let own = c.child.id() as i32;
    let err = c.call("attach", json!({"pid": own})).err();
    assert!(err.contains("liveprobe") || err.contains("itself"), "{err}");
    // Not attached.
    let err = c.call("stack_trace", json!({"pid": own})).err();
    assert!(err.contains("attach"), "{err}");
    // A malformed pid.
    let err = c.call("attach", json!({"pid": "abc"})).err();
    assert!(err.contains("abc"), "{err}");

    // A kernel thread, where the machine shows one.
    if std::fs::read_to_string("/proc/2/comm").is_ok_and(|c| c.trim() == "kthreadd") {
        let err = c.call("attach", json!({"pid": 2})).err();
        assert!(err.contains("kernel thread"), "{err}");
    }
    // A zombie: a child that exited and was not reaped.
    let mut zombie = std::process::Command::new("true").spawn().expect("spawn");
    let zpid = zombie.id() as i32;
    while proc_state(zpid) != Some('Z') {
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    let err = c.call("attach", json!({"pid": zpid})).err();
    assert!(
        err.to_lowercase().contains("zombie") || err.contains("exited"),
        "{err}"
    );
    let _ = zombie.wait();

    // A process already traced by gdb.
    let exe = threads_fixture();
    let mut fx = Fixture::start(&exe);
    let mut gdb = std::process::Command::new("gdb")
        .args(["-nx", "-q", "-p", &fx.pid.to_string()])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("start gdb");
    let deadline = std::time::Instant::now() + WAIT;
    while tracer_pid(fx.pid) <= 0 {
        assert!(std::time::Instant::now() < deadline, "gdb never attached");
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let err = c.call("attach", json!({"pid": fx.pid})).err();
    assert!(err.contains("gdb") && err.contains("detach"), "{err}");
    {
        use std::io::Write;
        let stdin = gdb.stdin.as_mut().expect("gdb stdin");
        writeln!(stdin, "detach\nquit").expect("tell gdb to detach");
    }
    let _ = gdb.wait();
    assert_eq!(tracer_pid(fx.pid), 0);
    fx.send("run 5");
    fx.expect_line("checksum");
}

#[test]
fn a_binary_without_debug_info_still_attaches_with_a_hint() {
    let exe = threads_fixture();
    let stripped = fixture_dir().join("e2e_threads_stripped");
    let status = std::process::Command::new("strip")
        .arg("-o")
        .arg(&stripped)
        .arg(&exe)
        .status()
        .expect("run strip");
    assert!(status.success());
    let mut fx = Fixture::start(&stripped);
    let mut c = McpClient::start();
    let attached = c.call("attach", json!({"pid": fx.pid})).ok();
    assert_eq!(attached["debug_info"]["found"], json!(false));
    let hint = attached["debug_info"]["hint"].as_str().expect("hint");
    assert!(hint.contains("-g"), "{hint}");
    // Stacks still come out, named from the shared libraries' symbols.
    let stack = c.call("stack_trace", json!({"pid": fx.pid})).ok();
    let frames = frames_of(&stack, fx.pid as i64);
    assert!(!frames.is_empty());
    let err = c
        .call("list_source", json!({"pid": fx.pid, "file": "threads.c"}))
        .err();
    assert!(err.contains("debug"), "{err}");
    fx.send("run 2");
    fx.expect_line("checksum");
}

#[test]
fn list_processes_finds_a_fixture() {
    let exe = threads_fixture();
    let fx = Fixture::start(&exe);
    let mut c = McpClient::start();
    let list = c
        .call("list_processes", json!({"query": "e2e_threads"}))
        .ok();
    let row = list["processes"]
        .as_array()
        .expect("processes")
        .iter()
        .find(|p| p["pid"] == json!(fx.pid))
        .unwrap_or_else(|| panic!("fixture not listed: {list}"))
        .clone();
    assert_eq!(row["attachable"], json!(true));
    assert_eq!(row["attached"], json!(false));
    assert_eq!(row["user"], "root");
    c.call("attach", json!({"pid": fx.pid})).ok();
    let list = c
        .call("list_processes", json!({"query": fx.pid.to_string()}))
        .ok();
    let row = &list["processes"][0];
    assert_eq!(row["attached"], json!(true), "{row}");
    assert_eq!(row["attachable"], json!(true), "{row}");
    let own = c.child.id() as i64;
    let list = c
        .call("list_processes", json!({"query": own.to_string()}))
        .ok();
    let me = list["processes"]
        .as_array()
        .expect("processes")
        .iter()
        .find(|p| p["pid"] == json!(own))
        .expect("liveprobe lists itself")
        .clone();
    assert_eq!(me["attachable"], json!(false));
}

#[test]
fn closing_stdin_detaches_and_exits() {
    let exe = threads_fixture();
    let mut fx = Fixture::start(&exe);
    let mut c = McpClient::start();
    c.call("attach", json!({"pid": fx.pid})).ok();
    assert!(tracer_pid(fx.pid) > 0);
    assert_eq!(c.shutdown(), Some(0));
    assert_eq!(tracer_pid(fx.pid), 0);
    fx.send("run 2");
    fx.expect_line("checksum");
}

#[test]
fn every_tool_call_is_audited_when_asked() {
    let dir = tempfile::tempdir().expect("tempdir");
    let log = dir.path().join("audit.jsonl");
    let log_arg = log.display().to_string();
    let mut c = McpClient::start_with_args(&["--audit-log", &log_arg]);
    c.call("list_processes", json!({"query": "nothing-matches-this"}))
        .ok();
    c.call("attach", json!({"pid": 999_999_999})).err();
    assert_eq!(c.shutdown(), Some(0));
    let lines: Vec<Value> = std::fs::read_to_string(&log)
        .expect("audit log written")
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).expect("JSON line"))
        // One line before the call runs, one with its outcome.
        .filter(|l| l["event"] == "tool_result")
        .collect();
    assert_eq!(lines.len(), 2, "{lines:?}");
    assert_eq!(lines[0]["tool"], "list_processes");
    assert_eq!(lines[0]["ok"], true);
    assert_eq!(lines[1]["tool"], "attach");
    assert_eq!(lines[1]["ok"], false);
    assert!(
        lines[1]["error"]
            .as_str()
            .expect("error")
            .contains("999999999")
    );
}

#[test]
fn list_source_says_when_the_file_changed_after_the_build() {
    let dir = tempfile::tempdir().expect("tempdir");
    let src = dir.path().join("moving.c");
    std::fs::copy(fixture_src("e2e/inlined.c"), &src).expect("copy source");
    let exe = dir.path().join("moving");
    let status = std::process::Command::new("gcc")
        .args(["-g", "-O0", "-o"])
        .arg(&exe)
        .arg(&src)
        .status()
        .expect("gcc");
    assert!(status.success());
    let mut fx = Fixture::start(&exe);
    let mut c = McpClient::start();
    c.call("attach", json!({"pid": fx.pid})).ok();
    let fresh = c
        .call(
            "list_source",
            json!({"pid": fx.pid, "file": "moving.c", "line": 5}),
        )
        .ok();
    assert!(fresh.get("stale").is_none(), "{fresh}");
    // Edit the source after the build: its lines may no longer match the code.
    std::thread::sleep(std::time::Duration::from_millis(20));
    let text = std::fs::read_to_string(&src).expect("read") + "\n/* edited */\n";
    std::fs::write(&src, text).expect("write");
    let stale = c
        .call(
            "list_source",
            json!({"pid": fx.pid, "file": "moving.c", "line": 5}),
        )
        .ok();
    assert_eq!(stale["stale"], json!(true), "{stale}");
    // A source that is gone says so.
    std::fs::remove_file(&src).expect("remove");
    let err = c
        .call("list_source", json!({"pid": fx.pid, "file": "moving.c"}))
        .err();
    assert!(err.contains("cannot be read"), "{err}");
    // Reading source touched nothing in the target: it still waits on stdin.
    if let Ok(Some(status)) = fx.child.try_wait() {
        panic!("the fixture ended early with {status}");
    }
    fx.send("q");
    fx.expect_line("acc");
}
