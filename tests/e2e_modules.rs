//! End-to-end tests of debug info where real programs keep it: a library the
//! process loads with `dlopen` after liveprobe attached (found, probed on both
//! engines, symbolized, and its probes ended cleanly by `dlclose`), and split
//! DWARF (`.dwo` files and `.dwp` packages), compared with gdb.

mod common;

use common::probes::{results, row_of};
use common::*;
use serde_json::{Value, json};

/// The host program, which dlopen()s what it is told to, when told.
fn host() -> std::path::PathBuf {
    build_fixture("modules/host.c", "modules_host", &["-O0", "-ldl"])
}

/// The plugin as a shared library, under its own name (one per test, so a
/// test rebuilding it never replaces a file another test has mapped).
fn plugin(name: &str) -> std::path::PathBuf {
    build_fixture(
        "modules/plugin.c",
        &format!("{name}.so"),
        &["-O0", "-shared", "-fPIC"],
    )
}

/// The line of plugin.c holding `marker`.
fn plugin_line(marker: &str) -> u64 {
    let text = std::fs::read_to_string(fixture_src("modules/plugin.c")).expect("plugin.c");
    text.lines()
        .position(|l| l.contains(marker))
        .map(|i| i as u64 + 1)
        .unwrap_or_else(|| panic!("{marker:?} not in plugin.c"))
}

fn attached_host() -> (Fixture, McpClient) {
    let fx = Fixture::start(&host());
    let mut c = McpClient::start();
    c.call("attach", json!({"pid": fx.pid})).ok();
    (fx, c)
}

/// Whether /proc/PID/maps maps `path`.
fn maps_has(pid: i32, path: &std::path::Path) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/maps"))
        .expect("maps")
        .contains(path.to_str().expect("utf-8 path"))
}

/// Waits until the main thread of `pid` sits in read(2) (syscall 0), so its
/// stack is the same whenever it is looked at.
fn wait_blocked_in_read(pid: i32) {
    let started = std::time::Instant::now();
    loop {
        let text = std::fs::read_to_string(format!("/proc/{pid}/syscall")).unwrap_or_default();
        if text.split_whitespace().next() == Some("0") {
            return;
        }
        assert!(
            started.elapsed() < WAIT,
            "process {pid} never blocked in read"
        );
        std::thread::sleep(std::time::Duration::from_millis(2));
    }
}

/// Sum the host prints for `call n base`: plugin_work(x) = 2x + 1.
fn expected_sum(n: i64, base: i64) -> i64 {
    (0..n).map(|i| 2 * (base + i) + 1).sum()
}

fn function_names(found: &Value) -> Vec<String> {
    found["functions"]
        .as_array()
        .expect("functions")
        .iter()
        .map(|f| f["name"].as_str().unwrap_or_default().to_string())
        .collect()
}

/// A library loaded after attach: find_functions, resolve_location, exact
/// counts on both engines, a snapshot reading a local, a stack trace and
/// read_locals in a frame of the library — with no second attach.
#[test]
fn a_library_loaded_after_attach_is_found_probed_and_symbolized() {
    let so = plugin("modules_plugin_probe");
    let (mut fx, mut c) = attached_host();
    assert!(!maps_has(fx.pid, &so), "the plugin is not loaded yet");
    let before = c
        .call(
            "find_functions",
            json!({"pid": fx.pid, "query": "plugin_work"}),
        )
        .ok();
    assert!(
        !function_names(&before).contains(&"plugin_work".to_string()),
        "not loaded yet: {before}"
    );

    fx.send(&format!("load {}", so.display()));
    fx.expect_line("loaded");

    let found = c
        .call(
            "find_functions",
            json!({"pid": fx.pid, "query": "plugin_work"}),
        )
        .ok();
    let row = found["functions"]
        .as_array()
        .expect("functions")
        .iter()
        .find(|f| f["name"] == "plugin_work")
        .unwrap_or_else(|| panic!("plugin_work not found after dlopen: {found}"))
        .clone();
    assert!(
        row["file"]
            .as_str()
            .unwrap_or_default()
            .ends_with("plugin.c"),
        "{row}"
    );
    let work_line = plugin_line("/* work line */");
    let resolved = c
        .call(
            "resolve_location",
            json!({"pid": fx.pid, "location": format!("plugin.c:{work_line}")}),
        )
        .ok();
    assert_eq!(
        resolved["resolved"][0]["function"], "plugin_work",
        "{resolved}"
    );

    // Exact counts on both engines: the uprobe one on the function, the
    // ptrace one on a line of it (one address may not carry both).
    let on_uprobe = c
        .call(
            "set_metric",
            json!({"pid": fx.pid, "location": "plugin_work", "kind": "count", "engine": "uprobe"}),
        )
        .ok();
    assert_eq!(on_uprobe["engine"], "uprobe", "{on_uprobe}");
    let on_ptrace = c
        .call(
            "set_metric",
            json!({"pid": fx.pid, "location": format!("plugin.c:{work_line}"), "kind": "count",
                   "engine": "ptrace"}),
        )
        .ok();
    assert_eq!(on_ptrace["engine"], "ptrace", "{on_ptrace}");
    let snapshot = c
        .call(
            "set_snapshot",
            json!({"pid": fx.pid, "location": format!("plugin.c:{work_line}"),
                   "expressions": ["doubled", "x", "plugin_calls"]}),
        )
        .ok();

    fx.send("call 250 21");
    assert_eq!(
        fx.expect_line("called"),
        format!("called {}", expected_sum(250, 21))
    );
    for probe in [&on_uprobe, &on_ptrace] {
        let r = results(&mut c, &probe["probe_id"], 0, 0);
        assert_eq!(r["items"][0]["count"], json!(250), "{probe}: {r}");
        assert_eq!(r["state"], "armed", "{r}");
    }
    let snap = results(&mut c, &snapshot["probe_id"], 0, 5000);
    assert_eq!(snap["state"], "done", "{snap}");
    let item = &snap["items"][0];
    let values: Vec<&str> = (0..3)
        .map(|k| item["expressions"][k]["value"].as_str().unwrap_or("?"))
        .collect();
    assert_eq!(values, ["42", "21", "0"], "first call: x = 21: {item}");
    let frame = &item["frames"][0];
    assert_eq!(frame["function"], "plugin_work", "{item}");
    let doubled = frame["variables"]
        .as_array()
        .expect("variables")
        .iter()
        .find(|v| v["name"] == "doubled")
        .unwrap_or_else(|| panic!("no local doubled: {item}"));
    assert_eq!(doubled["value"], "42", "{item}");

    // A thread blocked inside the library: its frames, its locals.
    fx.send("wait");
    fx.expect_line("waiting");
    wait_blocked_in_read(fx.pid);
    let stack = c.call("stack_trace", json!({"pid": fx.pid})).ok();
    let frames = stack["threads"][0]["frames"].as_array().expect("frames");
    let wait_frame = frames
        .iter()
        .find(|f| f["function"] == "plugin_wait")
        .unwrap_or_else(|| panic!("plugin_wait not on the stack: {stack}"));
    assert!(
        wait_frame["file"]
            .as_str()
            .unwrap_or_default()
            .ends_with("plugin.c"),
        "{wait_frame}"
    );
    assert_eq!(
        wait_frame["line"],
        json!(plugin_line("/* wait line */")),
        "{wait_frame}"
    );
    let wait_index = wait_frame["index"].as_u64().expect("index");
    let caller = &frames[wait_index as usize + 1];
    assert_eq!(
        caller["function"], "main",
        "the library returns into the host: {stack}"
    );
    let locals = c
        .call("read_locals", json!({"pid": fx.pid, "frame": wait_index}))
        .ok();
    let waited = locals["variables"]
        .as_array()
        .expect("variables")
        .iter()
        .find(|v| v["name"] == "waited")
        .unwrap_or_else(|| panic!("no waited: {locals}"));
    assert_eq!(waited["value"], "42", "{locals}");
    let evaluated = c
        .call(
            "evaluate",
            json!({"pid": fx.pid, "frame": wait_index, "expression": "waited + plugin_calls"}),
        )
        .ok();
    assert_eq!(
        evaluated["value"]["value"], "292",
        "42 + 250 calls: {evaluated}"
    );
    fx.send("go on");
    assert_eq!(fx.expect_line("waited"), "waited 42");

    fx.send("quit");
    assert_eq!(fx.wait_exit(), Some(0));
}

/// dlclose of a library with probes armed on both engines: the probes end
/// with a reason naming the library, the process runs on unharmed, and the
/// library loaded again is probed afresh.
#[test]
fn probes_in_an_unloaded_library_end_with_a_reason_and_do_no_harm() {
    let so = plugin("modules_plugin_unload");
    let (mut fx, mut c) = attached_host();
    fx.send(&format!("load {}", so.display()));
    fx.expect_line("loaded");
    let work_line = plugin_line("/* work line */");
    let mut probes = Vec::new();
    for (location, engine) in [
        ("plugin_work".to_string(), "uprobe"),
        (format!("plugin.c:{work_line}"), "ptrace"),
    ] {
        let set = c
            .call(
                "set_metric",
                json!({"pid": fx.pid, "location": location, "kind": "count", "engine": engine}),
            )
            .ok();
        assert_eq!(set["engine"], engine, "{set}");
        probes.push(set["probe_id"].clone());
    }
    fx.send("call 3 0");
    assert_eq!(
        fx.expect_line("called"),
        format!("called {}", expected_sum(3, 0))
    );

    fx.send("unload");
    fx.expect_line("unloaded");
    assert!(!maps_has(fx.pid, &so), "dlclose unmapped the plugin");
    for id in &probes {
        let row = row_of(&mut c, id);
        assert_eq!(row["state"], "removed", "{row}");
        let reason = row["reason"].as_str().unwrap_or_default();
        assert!(
            reason.contains("unloaded") && reason.contains("modules_plugin_unload.so"),
            "{row}"
        );
        let r = results(&mut c, id, 0, 0);
        assert_eq!(
            r["items"][0]["count"],
            json!(3),
            "hits before dlclose kept: {r}"
        );
    }

    // Loaded again (possibly at the same addresses): it runs as it should,
    // nothing of the old probes fires, and a new probe counts exactly.
    fx.send(&format!("load {}", so.display()));
    fx.expect_line("loaded");
    let fresh = c
        .call(
            "set_metric",
            json!({"pid": fx.pid, "location": format!("plugin.c:{work_line}"), "kind": "count",
                   "engine": "ptrace"}),
        )
        .ok();
    fx.send("call 5 7");
    assert_eq!(
        fx.expect_line("called"),
        format!("called {}", expected_sum(5, 7))
    );
    let r = results(&mut c, &fresh["probe_id"], 0, 0);
    assert_eq!(r["items"][0]["count"], json!(5), "{r}");
    for id in &probes {
        let r = results(&mut c, id, 0, 0);
        assert_eq!(
            r["items"][0]["count"],
            json!(3),
            "an ended probe stays ended: {r}"
        );
    }
    c.call("remove_probe", json!({"probe_id": fresh["probe_id"]}))
        .ok();
    fx.send("unload");
    fx.expect_line("unloaded");
    fx.send("quit");
    assert_eq!(fx.wait_exit(), Some(0));
}
