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

    let early = c
        .call(
            "set_metric",
            json!({"pid": fx.pid, "location": "plugin_work", "kind": "count"}),
        )
        .err();
    assert!(
        early.contains("no function named") && early.contains("dlopen"),
        "a probe before the library is loaded says why it is not found: {early}"
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
            json!({"pid": fx.pid, "location": format!("plugin.c:{work_line}"), "frames": 2,
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
    // The hit's stack leaves the library for the host that called it.
    assert_eq!(item["frames"][1]["function"], "main", "{item}");
    assert!(
        item["frames"][1]["file"]
            .as_str()
            .unwrap_or_default()
            .ends_with("host.c"),
        "{item}"
    );

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

/// How a split-DWARF variant of the fixture is built.
#[derive(Clone, Copy, Debug)]
enum Split {
    /// `-gsplit-dwarf` (DWARF 5 skeleton units, `.dwo` files).
    Dwarf5,
    /// `-gdwarf-4 -gsplit-dwarf` (the GNU extension: DW_AT_GNU_dwo_name).
    Dwarf4,
    /// DWARF 4 `.dwo` files packed into `<exe>.dwp` by binutils' `dwp`, the
    /// `.dwo` files removed (binutils' `dwp` cannot pack DWARF 5).
    Package4,
    /// DWARF 5 `.dwo` files from clang packed by `llvm-dwp`, the `.dwo` files
    /// removed (llvm-dwp 14 does not finish on gcc 12's DWARF 5 `.dwo` files).
    Package5,
}

/// Builds the two-unit split fixture into its own directory; returns the
/// executable. Fails (never skips) when a tool it needs is missing.
/// `tag` names the directory, so tests running in parallel never share one.
fn build_split(variant: Split, optimize: &str, tag: &str) -> std::path::PathBuf {
    let dir = fixture_dir().join(format!("split_{variant:?}{optimize}_{tag}").to_lowercase());
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("fixture dir");
    let exe = dir.join("split");
    let compiler = match variant {
        Split::Package5 => "clang",
        _ => "gcc",
    };
    let mut gcc = std::process::Command::new(compiler);
    gcc.args(["-g", optimize, "-gsplit-dwarf"]);
    if let Split::Dwarf4 | Split::Package4 = variant {
        gcc.arg("-gdwarf-4");
    }
    gcc.arg(fixture_src("modules/split_main.c"))
        .arg(fixture_src("modules/split_account.c"))
        .arg("-o")
        .arg(&exe)
        .current_dir(&dir);
    let status = gcc
        .status()
        .unwrap_or_else(|e| panic!("this test needs {compiler}: {e}"));
    assert!(status.success(), "{compiler} -gsplit-dwarf failed");
    let dwos: Vec<std::path::PathBuf> = std::fs::read_dir(&dir)
        .expect("read fixture dir")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "dwo"))
        .collect();
    assert_eq!(dwos.len(), 2, "one .dwo per unit: {dwos:?}");
    exe
}

/// Packs the `.dwo` files of a package variant into `<exe>.dwp` and removes
/// them, so that only the package can answer.
fn pack_split(variant: Split, exe: &std::path::Path) {
    let dir = exe.parent().expect("fixture dir");
    let dwos: Vec<std::path::PathBuf> = std::fs::read_dir(dir)
        .expect("read fixture dir")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "dwo"))
        .collect();
    let packer = match variant {
        Split::Package4 => Some(("dwp", "binutils")),
        Split::Package5 => Some(("llvm-dwp", "llvm")),
        _ => None,
    };
    if let Some((tool, package)) = packer {
        let mut dwp = std::process::Command::new(tool);
        dwp.arg("-e").arg(exe).arg("-o").arg(dir.join("split.dwp"));
        let status = dwp.status().unwrap_or_else(|e| {
            panic!("this test needs `{tool}` (apt-get install {package}): {e}")
        });
        assert!(status.success(), "{tool} failed");
        for dwo in dwos {
            std::fs::remove_file(dwo).expect("remove .dwo");
        }
    }
}

/// gdb's values at a breakpoint on `file:line` of a fresh run of `exe` fed
/// `input`: the text after `$N = ` of each `print`, and the `bt` lines.
fn gdb_at(
    exe: &std::path::Path,
    location: &str,
    input: &str,
    prints: &[&str],
) -> (Vec<String>, String) {
    let input_file = exe.with_extension("gdb-input");
    std::fs::write(&input_file, input).expect("gdb input");
    let mut cmd = std::process::Command::new("gdb");
    cmd.args(["-batch", "-nx", "-ex", "set debuginfod enabled off", "-ex"])
        .arg(format!("break {location}"))
        .arg("-ex")
        .arg(format!("run < {}", input_file.display()));
    // Read where liveprobe reads: in the caller's frame of the blocking
    // fgets, at its return address.
    cmd.args([
        "-ex",
        "break fgets",
        "-ex",
        "continue",
        "-ex",
        // #0 fgets, #1 wait_for_line (inlined or not), #2 settle.
        "frame 2",
    ]);
    for p in prints {
        cmd.arg("-ex").arg(format!("print {p}"));
    }
    cmd.args(["-ex", "bt", "-ex", "kill"]).arg(exe);
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("this test compares with gdb, which is missing: {e}"));
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let values: Vec<String> = text
        .lines()
        .filter_map(|l| l.strip_prefix('$').and_then(|l| l.split_once(" = ")))
        .map(|(_, v)| v.to_string())
        .collect();
    assert_eq!(values.len(), prints.len(), "gdb printed: {text}");
    (values, text)
}

fn split_line(marker: &str) -> u64 {
    let text = std::fs::read_to_string(fixture_src("modules/split_account.c")).expect("source");
    text.lines()
        .position(|l| l.contains(marker))
        .map(|i| i as u64 + 1)
        .unwrap_or_else(|| panic!("{marker:?} not in split_account.c"))
}

/// A value liveprobe gave agrees with what gdb printed: the same text (a
/// `char *` compared by its string: gdb prints `0x55... "alice"`), or marked
/// unavailable where gdb says `<optimized out>`.
fn agrees_with_gdb(what: &str, ours: &Value, gdb: &str, context: &Value) {
    if gdb == "<optimized out>" {
        assert!(
            ours["unavailable"].is_string(),
            "{what}: gdb says optimized out, liveprobe {ours}: {context}"
        );
        return;
    }
    let text = ours["value"].as_str().unwrap_or_default();
    let string_part = gdb.rsplit(' ').next().unwrap_or_default();
    assert!(
        text == gdb || (gdb.starts_with("0x") && text.ends_with(string_part)),
        "{what}: liveprobe {ours}, gdb {gdb:?}: {context}"
    );
}

fn value_of<'a>(locals: &'a Value, name: &str) -> &'a Value {
    locals["variables"]
        .as_array()
        .expect("variables")
        .iter()
        .find(|v| v["name"] == name)
        .unwrap_or_else(|| panic!("no {name} in {locals}"))
}

/// Everything liveprobe reads of a running split-DWARF program, compared
/// with gdb's reading of the same binary stopped at the same line.
fn split_dwarf_reads_like_gdb(variant: Split, optimize: &str) {
    let exe = build_split(variant, optimize, "gdb");
    let wait_line = split_line("/* settle wait */");
    let prints = [
        "before",
        "level",
        "acct->owner",
        "acct->balance",
        "total_calls",
        "amount",
    ];
    let (gdb, gdb_text) = gdb_at(
        &exe,
        &format!("split_account.c:{wait_line}"),
        "settle\n",
        &prints,
    );
    assert!(
        gdb_text.contains("settle (acct="),
        "gdb reads the split DWARF: {gdb_text}"
    );
    // Packed after gdb read the .dwo files: gdb 13 cannot read clang's DWARF 5
    // packages, and the values must be the same from either.
    pack_split(variant, &exe);

    let mut fx = Fixture::start(&exe);
    let mut c = McpClient::start();
    let attach = c.call("attach", json!({"pid": fx.pid})).ok();
    assert_eq!(attach["debug_info"]["found"], true, "{attach}");

    let found = c
        .call("find_functions", json!({"pid": fx.pid, "query": "settle"}))
        .ok();
    let settle = found["functions"]
        .as_array()
        .expect("functions")
        .iter()
        .find(|f| f["name"] == "settle")
        .unwrap_or_else(|| panic!("settle not found in split DWARF: {found}"))
        .clone();
    assert!(
        settle["file"]
            .as_str()
            .unwrap_or_default()
            .ends_with("split_account.c"),
        "{settle}"
    );
    let resolved = c
        .call(
            "resolve_location",
            json!({"pid": fx.pid, "location": format!("split_account.c:{wait_line}")}),
        )
        .ok();
    assert_eq!(
        resolved["resolved"][0]["function"], "wait_for_line",
        "{resolved}"
    );
    assert_eq!(
        resolved["resolved"][0]["line"],
        json!(wait_line),
        "{resolved}"
    );
    let call_line = split_line("/* settle call */");

    fx.send("settle");
    fx.expect_line("settling");
    wait_blocked_in_read(fx.pid);
    let stack = c.call("stack_trace", json!({"pid": fx.pid})).ok();
    let frames = stack["threads"][0]["frames"].as_array().expect("frames");
    let frame_of = |function: &str| {
        frames
            .iter()
            .find(|f| f["function"] == function)
            .unwrap_or_else(|| panic!("{function} not on the stack: {stack}"))
    };
    // At -O2 wait_for_line is inlined: a frame of its own all the same.
    let wait_frame = frame_of("wait_for_line");
    assert_eq!(wait_frame["line"], json!(wait_line), "{stack}");
    assert!(
        wait_frame["file"]
            .as_str()
            .unwrap_or_default()
            .ends_with("split_account.c"),
        "{wait_frame}"
    );
    let settle_frame = frame_of("settle");
    assert_eq!(settle_frame["line"], json!(call_line), "{stack}");
    assert!(
        settle_frame["file"]
            .as_str()
            .unwrap_or_default()
            .ends_with("split_account.c"),
        "{settle_frame}"
    );
    assert!(
        gdb_text.contains(&format!("split_account.c:{call_line}")),
        "gdb puts settle at the same line: {gdb_text}"
    );
    let index = settle_frame["index"].as_u64().expect("index");
    let main_frame = &frames[index as usize + 1];
    assert_eq!(main_frame["function"], "main", "{stack}");
    assert!(
        main_frame["file"]
            .as_str()
            .unwrap_or_default()
            .ends_with("split_main.c"),
        "{main_frame}"
    );

    let locals = c
        .call("read_locals", json!({"pid": fx.pid, "frame": index}))
        .ok();
    assert_eq!(value_of(&locals, "level")["type"], "enum tier", "{locals}");
    for (name, k) in [("before", 0), ("level", 1), ("amount", 5)] {
        agrees_with_gdb(name, value_of(&locals, name), &gdb[k], &locals);
    }
    for (k, expression) in prints.iter().enumerate() {
        let answer = c.call(
            "evaluate",
            json!({"pid": fx.pid, "frame": index, "expression": expression}),
        );
        if gdb[k] == "<optimized out>" {
            // Refused, or a value marked unavailable: never a number.
            if !answer.is_error {
                let v = &answer.structured["value"];
                assert!(v["unavailable"].is_string(), "{expression}: {v}");
            }
            continue;
        }
        let answer = answer.ok();
        agrees_with_gdb(expression, &answer["value"], &gdb[k], &answer);
    }
    fx.send("go");
    assert_eq!(fx.expect_line("settled"), "settled 126");
    fx.send("quit");
    assert_eq!(fx.wait_exit(), Some(0));
}

#[test]
fn split_dwarf_5_dwo_files_are_read_like_gdb() {
    split_dwarf_reads_like_gdb(Split::Dwarf5, "-O0");
}

#[test]
fn split_dwarf_4_gnu_dwo_files_are_read_like_gdb() {
    split_dwarf_reads_like_gdb(Split::Dwarf4, "-O0");
}

#[test]
fn a_dwarf_4_package_dwp_is_read_like_gdb() {
    split_dwarf_reads_like_gdb(Split::Package4, "-O0");
}

#[test]
fn a_dwarf_5_package_dwp_is_read_like_gdb() {
    split_dwarf_reads_like_gdb(Split::Package5, "-O0");
}

/// At -O2 values live in location lists (`.debug_loclists.dwo`) and some
/// are gone: liveprobe reads what gdb reads, and says unavailable where gdb
/// says `<optimized out>`.
#[test]
fn split_dwarf_5_optimized_reads_location_lists_like_gdb() {
    split_dwarf_reads_like_gdb(Split::Dwarf5, "-O2");
}

/// The same at -O2 with DWARF 4's GNU split format (`.debug_loc.dwo`).
#[test]
fn split_dwarf_4_optimized_reads_location_lists_like_gdb() {
    split_dwarf_reads_like_gdb(Split::Dwarf4, "-O2");
}

/// A Rust program whose DWARF rustc left in `.dwo` files (`unpacked`) or
/// packed into `<exe>.dwp` (`packed`, by rustc's own packer): its functions,
/// frames and locals, compared with gdb at the same line.
fn rust_split_dwarf_is_read(kind: &str) {
    let dir = fixture_dir().join(format!("split_rust_{kind}"));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("fixture dir");
    let exe = dir.join("split_rust");
    let status = std::process::Command::new("rustc")
        .args(["-g", "--edition=2021"])
        .arg(format!("-Csplit-debuginfo={kind}"))
        .arg(fixture_src("modules/split_rust.rs"))
        .arg("-o")
        .arg(&exe)
        .current_dir(&dir)
        .status()
        .expect("run rustc");
    assert!(status.success(), "rustc -Csplit-debuginfo={kind} failed");
    let split_files: Vec<String> = std::fs::read_dir(&dir)
        .expect("read dir")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".dwo") || n.ends_with(".dwp"))
        .collect();
    assert!(!split_files.is_empty(), "rustc wrote no split DWARF");

    let source = std::fs::read_to_string(fixture_src("modules/split_rust.rs")).expect("source");
    let wait_line = source
        .lines()
        .position(|l| l.contains("// settle wait"))
        .expect("marker") as u64
        + 1;
    let (gdb, gdb_text) = gdb_at_line(
        &exe,
        &format!("split_rust.rs:{wait_line}"),
        "settle\n",
        &["before", "amount", "acct.balance"],
    );
    assert!(gdb_text.contains("split_rust::settle"), "{gdb_text}");

    let mut fx = Fixture::start(&exe);
    let mut c = McpClient::start();
    c.call("attach", json!({"pid": fx.pid})).ok();
    let found = c
        .call(
            "find_functions",
            json!({"pid": fx.pid, "query": "split_rust::settle"}),
        )
        .ok();
    assert!(
        function_names(&found)
            .iter()
            .any(|n| n == "split_rust::settle"),
        "{found}"
    );
    fx.send("settle");
    fx.expect_line("settling");
    wait_blocked_in_read(fx.pid);
    let stack = c.call("stack_trace", json!({"pid": fx.pid})).ok();
    let frames = stack["threads"][0]["frames"].as_array().expect("frames");
    let settle = frames
        .iter()
        .find(|f| f["function"] == "split_rust::settle")
        .unwrap_or_else(|| panic!("settle not on the stack: {stack}"));
    assert_eq!(settle["line"], json!(wait_line), "{settle}");
    let index = settle["index"].as_u64().expect("index");
    assert_eq!(
        frames[index as usize + 1]["function"],
        "split_rust::main",
        "{stack}"
    );
    let locals = c
        .call("read_locals", json!({"pid": fx.pid, "frame": index}))
        .ok();
    agrees_with_gdb("before", value_of(&locals, "before"), &gdb[0], &locals);
    agrees_with_gdb("amount", value_of(&locals, "amount"), &gdb[1], &locals);
    let balance = c
        .call(
            "evaluate",
            json!({"pid": fx.pid, "frame": index, "expression": "acct.balance"}),
        )
        .ok();
    agrees_with_gdb("acct.balance", &balance["value"], &gdb[2], &balance);
    fx.send("go");
    assert_eq!(fx.expect_line("settled"), "settled 132 alice");
    fx.send("quit");
    assert_eq!(fx.wait_exit(), Some(0));
}

/// gdb's values at a breakpoint on `location` (no stepping further).
fn gdb_at_line(
    exe: &std::path::Path,
    location: &str,
    input: &str,
    prints: &[&str],
) -> (Vec<String>, String) {
    let input_file = exe.with_extension("gdb-input");
    std::fs::write(&input_file, input).expect("gdb input");
    let mut cmd = std::process::Command::new("gdb");
    cmd.args(["-batch", "-nx", "-ex", "set debuginfod enabled off", "-ex"])
        .arg(format!("break {location}"))
        .arg("-ex")
        .arg(format!("run < {}", input_file.display()));
    for p in prints {
        cmd.arg("-ex").arg(format!("print {p}"));
    }
    cmd.args(["-ex", "bt", "-ex", "kill"]).arg(exe);
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("this test compares with gdb, which is missing: {e}"));
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let values: Vec<String> = text
        .lines()
        .filter_map(|l| l.strip_prefix('$').and_then(|l| l.split_once(" = ")))
        .map(|(_, v)| v.to_string())
        .collect();
    assert_eq!(values.len(), prints.len(), "gdb printed: {text}");
    (values, text)
}

#[test]
fn rust_unpacked_split_debuginfo_is_read_like_gdb() {
    rust_split_dwarf_is_read("unpacked");
}

#[test]
fn rust_packed_split_debuginfo_is_read_like_gdb() {
    rust_split_dwarf_is_read("packed");
}

/// C++ with `-gsplit-dwarf`: a member function in a namespace, `this`, a
/// `std::string` member, compared with gdb at the same line.
#[test]
fn cpp_split_dwarf_is_read_like_gdb() {
    let dir = fixture_dir().join("split_cpp");
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("fixture dir");
    let exe = dir.join("split_cpp");
    let status = std::process::Command::new("g++")
        .args(["-g", "-O0", "-gsplit-dwarf"])
        .arg(fixture_src("modules/split_cpp.cpp"))
        .arg("-o")
        .arg(&exe)
        .current_dir(&dir)
        .status()
        .expect("run g++");
    assert!(status.success(), "g++ -gsplit-dwarf failed");
    let source = std::fs::read_to_string(fixture_src("modules/split_cpp.cpp")).expect("source");
    let wait_line = source
        .lines()
        .position(|l| l.contains("// settle wait"))
        .expect("marker") as u64
        + 1;
    let (gdb, gdb_text) = gdb_at_line(
        &exe,
        &format!("split_cpp.cpp:{wait_line}"),
        "settle\n",
        &["before", "amount", "balance_", "owner_.size()"],
    );
    assert!(gdb_text.contains("bank::Ledger::settle"), "{gdb_text}");

    let mut fx = Fixture::start(&exe);
    let mut c = McpClient::start();
    c.call("attach", json!({"pid": fx.pid})).ok();
    let found = c
        .call(
            "find_functions",
            json!({"pid": fx.pid, "query": "Ledger::settle"}),
        )
        .ok();
    assert!(
        function_names(&found)
            .iter()
            .any(|n| n.starts_with("bank::Ledger::settle")),
        "{found}"
    );
    fx.send("settle");
    fx.expect_line("settling");
    wait_blocked_in_read(fx.pid);
    let stack = c.call("stack_trace", json!({"pid": fx.pid})).ok();
    let frames = stack["threads"][0]["frames"].as_array().expect("frames");
    let settle = frames
        .iter()
        .find(|f| {
            f["function"]
                .as_str()
                .is_some_and(|n| n.starts_with("bank::Ledger::settle"))
        })
        .unwrap_or_else(|| panic!("settle not on the stack: {stack}"));
    assert_eq!(settle["line"], json!(wait_line), "{settle}");
    let index = settle["index"].as_u64().expect("index");
    let locals = c
        .call("read_locals", json!({"pid": fx.pid, "frame": index}))
        .ok();
    agrees_with_gdb("before", value_of(&locals, "before"), &gdb[0], &locals);
    agrees_with_gdb("amount", value_of(&locals, "amount"), &gdb[1], &locals);
    // (A member named without `this->` is not looked up by liveprobe in any
    // build, split or not.)
    let balance = c
        .call(
            "evaluate",
            json!({"pid": fx.pid, "frame": index, "expression": "this->balance_"}),
        )
        .ok();
    agrees_with_gdb("this->balance_", &balance["value"], &gdb[2], &balance);
    let owner = c
        .call(
            "evaluate",
            json!({"pid": fx.pid, "frame": index, "expression": "this->owner_"}),
        )
        .ok();
    assert!(
        owner["value"]["value"]
            .as_str()
            .unwrap_or_default()
            .contains("\"alice\""),
        "std::string from split DWARF: {owner}"
    );
    assert_eq!(gdb[3], "5", "gdb: owner_.size() {gdb_text}");
    fx.send("go");
    assert_eq!(fx.expect_line("settled"), "settled 130");
    fx.send("quit");
    assert_eq!(fx.wait_exit(), Some(0));
}

/// The `.dwo` files deleted: frames keep their function names (symbol
/// table) and lines (the skeleton's line table), and locals are refused
/// with a reason, never made up.
#[test]
fn missing_dwo_files_leave_names_and_lines_and_refuse_locals() {
    let exe = build_split(Split::Dwarf5, "-O0", "missing");
    for entry in std::fs::read_dir(exe.parent().expect("dir")).expect("read dir") {
        let path = entry.expect("entry").path();
        if path.extension().is_some_and(|e| e == "dwo") {
            std::fs::remove_file(path).expect("remove .dwo");
        }
    }
    let mut fx = Fixture::start(&exe);
    let mut c = McpClient::start();
    c.call("attach", json!({"pid": fx.pid})).ok();
    fx.send("settle");
    fx.expect_line("settling");
    wait_blocked_in_read(fx.pid);
    let stack = c.call("stack_trace", json!({"pid": fx.pid})).ok();
    let frames = stack["threads"][0]["frames"].as_array().expect("frames");
    let settle = frames
        .iter()
        .find(|f| f["function"] == "settle")
        .unwrap_or_else(|| panic!("settle not on the stack: {stack}"));
    assert_eq!(
        settle["line"],
        json!(split_line("/* settle call */")),
        "{stack}"
    );
    let index = settle["index"].as_u64().expect("index");
    let locals = c
        .call("read_locals", json!({"pid": fx.pid, "frame": index}))
        .err();
    assert!(
        locals.contains("split-dwarf") && locals.contains("split-split_account.dwo"),
        "the error names the missing .dwo: {locals}"
    );
    let before = c
        .call(
            "evaluate",
            json!({"pid": fx.pid, "frame": index, "expression": "before"}),
        )
        .err();
    assert!(
        before.contains("split-split_account.dwo"),
        "no value for `before` without its .dwo, and the error says why: {before}"
    );
    fx.send("go");
    assert_eq!(fx.expect_line("settled"), "settled 126");
    fx.send("quit");
    assert_eq!(fx.wait_exit(), Some(0));
}
