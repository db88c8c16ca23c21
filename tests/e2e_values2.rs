//! End-to-end tests of issue 9's value classes over a real MCP session:
//! casts to type names (typedefs included), `char`-family pointers as
//! bounded strings whatever produced them, string comparisons, globals from
//! any frame, Rust smart pointers, `len()` through typedefs and iterators,
//! locals not yet initialized, libc++ strings. Expected values are checked
//! against gdb on the same process where gdb can print them (gdb missing
//! is a failure).

mod common;

use std::process::Command;

use common::*;
use serde_json::{Value, json};

/// gdb's answer to `print <expr>` for each expression, attached to `pid`
/// (before liveprobe attaches: one tracer at a time).
fn gdb_print(pid: i32, expressions: &[&str]) -> Vec<String> {
    gdb_print_in(pid, None, expressions)
}

/// [`gdb_print`] in the frame of `function` (gdb's `frame function`).
fn gdb_print_in(pid: i32, function: Option<&str>, expressions: &[&str]) -> Vec<String> {
    let mut cmd = Command::new("gdb");
    cmd.args(["-batch", "-nx", "-p", &pid.to_string()]);
    if let Some(function) = function {
        cmd.arg("-ex").arg(format!("frame function {function}"));
    }
    for e in expressions {
        cmd.arg("-ex").arg(format!("print {e}"));
    }
    let out = cmd
        .output()
        .expect("gdb must be installed for these tests (apt-get install gdb)");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let answers: Vec<String> = stdout
        .lines()
        .filter(|l| l.starts_with('$'))
        .map(|l| {
            l.split_once(" = ")
                .map(|(_, v)| v.to_string())
                .unwrap_or_default()
        })
        .collect();
    assert_eq!(
        answers.len(),
        expressions.len(),
        "gdb printed {stdout} / {}",
        String::from_utf8_lossy(&out.stderr)
    );
    answers
}

/// The quoted string at the end of a gdb answer (`0x4052a0 "abc"` → `"abc"`).
fn gdb_string(answer: &str) -> String {
    let start = answer
        .find('"')
        .unwrap_or_else(|| panic!("no string in {answer}"));
    let end = answer.rfind('"').expect("closing quote");
    answer[start..=end].to_string()
}

fn eval(c: &mut McpClient, args: Value) -> Value {
    c.call("evaluate", args).ok()["value"].clone()
}

fn eval_err(c: &mut McpClient, args: Value) -> String {
    c.call("evaluate", args).err()
}

fn frame_index(stack: &Value, function: &str) -> u64 {
    stack["threads"][0]["frames"]
        .as_array()
        .expect("frames")
        .iter()
        .find(|f| f["function"] == function)
        .unwrap_or_else(|| panic!("{function} not on the stack: {stack}"))["index"]
        .as_u64()
        .expect("index")
}

#[test]
fn c_casts_strings_and_globals_from_any_frame() {
    let exe = build_fixture("values2/c_strings.c", "values2_c_strings", &["-O0"]);
    let mut fx = Fixture::start(&exe);
    let pid = fx.pid;
    let gdb = gdb_print(
        pid,
        &[
            "(char*)g_obj->ptr",
            "(sds)g_payload",
            "((struct entry *)g_entry_ptr)->key",
            "(const char *)g_payload",
            "g_sds",
            "(struct entry *)g_entry_ptr",
            "((struct entry *)g_entry_ptr)->weight",
        ],
    );
    let mut c = McpClient::start();
    c.call("attach", json!({"pid": pid})).ok();

    // No frame: the executable's globals, casts to any pointer type.
    let v = eval(
        &mut c,
        json!({"pid": pid, "expression": "(char*)g_obj->ptr"}),
    );
    assert_eq!(v["type"], "char *", "{v}");
    assert!(
        v["value"].as_str().unwrap().ends_with(&gdb_string(&gdb[0])),
        "{v} vs gdb {}",
        gdb[0]
    );
    let v = eval(&mut c, json!({"pid": pid, "expression": "(sds)g_payload"}));
    assert_eq!(v["type"], "sds", "{v}");
    assert!(
        v["value"].as_str().unwrap().ends_with(&gdb_string(&gdb[1])),
        "{v}"
    );
    let v = eval(
        &mut c,
        json!({"pid": pid, "expression": "((struct entry *)g_entry_ptr)->key"}),
    );
    assert!(
        v["value"].as_str().unwrap().ends_with(&gdb_string(&gdb[2])),
        "{v}"
    );
    let v = eval(
        &mut c,
        json!({"pid": pid, "expression": "(const char *)g_payload"}),
    );
    assert!(
        v["value"].as_str().unwrap().ends_with(&gdb_string(&gdb[3])),
        "{v}"
    );
    let v = eval(
        &mut c,
        json!({"pid": pid, "expression": "((entry_t*)g_entry_ptr)->weight"}),
    );
    assert_eq!(v["value"], gdb[6].as_str(), "{v}");
    // u8 pointers in C are strings too.
    let v = eval(&mut c, json!({"pid": pid, "expression": "g_bytes"}));
    assert!(v["value"].as_str().unwrap().ends_with("\"bytes!\""), "{v}");
    let v = eval(
        &mut c,
        json!({"pid": pid, "expression": "(unsigned char *)g_payload + 8"}),
    );
    assert!(v["value"].as_str().unwrap().ends_with("\"text\""), "{v}");

    // The string limit applies to computed pointers, and says so.
    let v = c
        .call(
            "evaluate",
            json!({"pid": pid, "expression": "(char *)g_long_text", "limits": {"max_string": 16}}),
        )
        .ok()["value"]
        .clone();
    assert_eq!(v["truncated"], true, "{v}");
    assert!(
        v["value"]
            .as_str()
            .unwrap()
            .contains("\"yyyyyyyyyyyyyyyy\"..."),
        "{v}"
    );

    // String literal comparisons for any char-family pointer.
    for (expression, expected) in [
        ("(char*)g_obj->ptr == \"/index.html\"", "true"),
        ("(char*)g_obj->ptr != \"/index.html\"", "false"),
        ("(char*)g_obj->ptr == \"/index.htm\"", "false"),
        ("(sds)g_payload == \"payload-text\"", "true"),
        ("g_sds == \"sds-value\"", "true"),
        ("(cstr_t)g_payload != \"other\"", "true"),
        ("g_name == \"abcdefg\"", "true"),
        ("(byte_t *)g_payload == \"payload-text\"", "true"),
        // `(T)*p` and `(T)-1` are casts when T is a type, arithmetic when
        // it is a variable.
        ("(cstr_t)*g_pp == \"sds-value\"", "true"),
        ("(byte_t)-1 + 0", "255"),
        ("(g_tick_count)*2", "34"),
        ("(g_tick_count) - 1", "16"),
    ] {
        let v = eval(&mut c, json!({"pid": pid, "expression": expression}));
        assert_eq!(v["value"], expected, "{expression}: {v}");
    }
    // A comparison whose string cannot be read is unavailable, not false.
    let v = eval(
        &mut c,
        json!({"pid": pid, "expression": "(char *)g_null_payload == \"x\""}),
    );
    assert!(v["unavailable"].as_str().is_some(), "{v}");
    let v = eval(
        &mut c,
        json!({"pid": pid, "expression": "(char *)16 == \"x\""}),
    );
    assert!(
        v["unavailable"].as_str().unwrap().contains("read error"),
        "{v}"
    );

    // Unknown type names are named, with close names; never a syntax error.
    let err = eval_err(&mut c, json!({"pid": pid, "expression": "(sdss)g_payload"}));
    assert!(err.contains("`sdss`") && err.contains("sds"), "{err}");
    let err = eval_err(
        &mut c,
        json!({"pid": pid, "expression": "(struct entri *)g_entry_ptr"}),
    );
    assert!(err.contains("entri") && err.contains("entry"), "{err}");

    // globals_only knows base types, declared or not.
    for (expression, expected) in [
        ("(unsigned long)g_tick_count", "17"),
        ("(double)g_tick_count", "17.0"),
        ("(u64)g_tick_count + 1", "18"),
        ("(bool)g_tick_count", "true"),
        ("sizeof(unsigned long)", "8"),
        ("sizeof(entry_t)", "16"),
        // Pointers to base types no C unit spells this way.
        ("*(i32 *)&g_tick_count", "17"),
        ("*(u16 *)&g_tick_count + 1", "18"),
        (
            "*(u64 *)g_entry_ptr == (u64)((struct entry *)g_entry_ptr)->key",
            "true",
        ),
    ] {
        let v = c
            .call(
                "evaluate",
                json!({"pid": pid, "expression": expression, "globals_only": true}),
            )
            .ok()["value"]
            .clone();
        assert_eq!(v["value"], expected, "{expression}: {v}");
    }
    let v = c
        .call(
            "evaluate",
            json!({"pid": pid, "expression": "(char *)g_payload", "globals_only": true}),
        )
        .ok()["value"]
        .clone();
    assert!(
        v["value"].as_str().unwrap().ends_with("\"payload-text\""),
        "{v}"
    );

    // Frame 0 is inside libc (read): the program's globals are still found.
    let threads = c.call("list_threads", json!({"pid": pid})).ok();
    let tid = threads["threads"][0]["tid"].as_i64().expect("tid");
    let v = eval(
        &mut c,
        json!({"pid": pid, "tid": tid, "frame": 0, "expression": "(char*)g_obj->ptr == \"/index.html\""}),
    );
    assert_eq!(v["value"], "true", "{v}");
    let err = eval_err(
        &mut c,
        json!({"pid": pid, "tid": tid, "frame": 0, "expression": "g_tick_cnt"}),
    );
    assert!(
        err.contains("g_tick_count"),
        "the program's own names first: {err}"
    );

    // In a frame of the program, typedef casts too.
    let stack = c.call("stack_trace", json!({"pid": pid, "tid": tid})).ok();
    let main = frame_index(&stack, "main");
    let v = eval(
        &mut c,
        json!({"pid": pid, "tid": tid, "frame": main, "expression": "(sds)g_obj->ptr"}),
    );
    assert!(
        v["value"].as_str().unwrap().ends_with("\"/index.html\""),
        "{v}"
    );
    let v = eval(
        &mut c,
        json!({"pid": pid, "tid": tid, "frame": main, "expression": "(entry_t *)g_entry_ptr"}),
    );
    let gdb_address = gdb[5]
        .split_whitespace()
        .find(|w| w.starts_with("0x"))
        .expect("address in gdb's answer");
    assert!(
        v["value"].as_str().unwrap().starts_with(gdb_address),
        "{v} vs {}",
        gdb[5]
    );
    assert_eq!(v["children"][1]["value"], gdb[6].as_str(), "{v}");

    // A local whose declaration line has not run yet is marked, in the
    // structured answer and in the text; the one declared before is read.
    let waiting = frame_index(&stack, "before_declaration");
    let answer = c.call(
        "read_locals",
        json!({"pid": pid, "tid": tid, "frame": waiting}),
    );
    let text = answer.text.clone();
    let locals = answer.ok();
    let find = |name: &str| {
        locals["variables"]
            .as_array()
            .expect("variables")
            .iter()
            .find(|v| v["name"] == name)
            .unwrap_or_else(|| panic!("no {name} in {locals}"))
            .clone()
    };
    assert_eq!(find("early")["value"], "5", "{locals}");
    assert_eq!(find("arg")["value"], "4", "{locals}");
    let late = find("late");
    assert!(
        late["unavailable"]
            .as_str()
            .unwrap_or("")
            .starts_with("not yet initialized"),
        "{late}"
    );
    assert!(text.contains("not yet initialized"), "{text}");
    let v = eval(
        &mut c,
        json!({"pid": pid, "tid": tid, "frame": waiting, "expression": "late + 1"}),
    );
    assert!(
        v["unavailable"]
            .as_str()
            .unwrap_or("")
            .starts_with("not yet initialized"),
        "{v}"
    );
    let v = eval(
        &mut c,
        json!({"pid": pid, "tid": tid, "frame": waiting, "expression": "early * 2"}),
    );
    assert_eq!(v["value"], "10", "{v}");
    c.call("detach", json!({"pid": pid})).ok();
    let gdb_frame = Command::new("gdb")
        .args(["-batch", "-nx", "-p", &pid.to_string()])
        .args([
            "-ex",
            "frame function before_declaration",
            "-ex",
            "print early",
        ])
        .output()
        .expect("gdb");
    let gdb_out = String::from_utf8_lossy(&gdb_frame.stdout);
    assert!(gdb_out.contains("$1 = 5"), "gdb: {gdb_out}");

    // A snapshot on the blocking call's line, before `late` is declared,
    // says so too.
    let source = std::fs::read_to_string(fixture_src("values2/c_strings.c")).expect("source");
    let call_line = source
        .lines()
        .position(|l| l.trim() == "wait_here();")
        .expect("the wait_here() call")
        + 1;
    c.call("attach", json!({"pid": pid})).ok();
    let set = c
        .call(
            "set_snapshot",
            json!({"pid": pid, "location": format!("c_strings.c:{call_line}"),
                   "expressions": ["late", "early"]}),
        )
        .ok();
    let id = set["probe_id"].clone();
    fx.send("go");
    let snaps = c
        .call(
            "get_probe_results",
            json!({"probe_id": id, "limit": 10, "wait_ms": 20000}),
        )
        .ok();
    let item = &snaps["items"][0];
    let late = item["frames"][0]["variables"]
        .as_array()
        .unwrap_or_else(|| panic!("no variables in {snaps}"))
        .iter()
        .find(|v| v["name"] == "late")
        .unwrap_or_else(|| panic!("no late in {item}"))
        .clone();
    assert!(
        late["unavailable"]
            .as_str()
            .unwrap_or("")
            .starts_with("not yet initialized"),
        "{late}"
    );
    let shown = item.to_string();
    assert!(shown.contains("not yet initialized"), "{shown}");
    fx.expect_line("ready");
    fx.send("go");
    fx.expect_line("done 30 17");
}

/// Evaluates each `(expression, expected)` in `frame` of the main thread.
fn expect_values(c: &mut McpClient, pid: i32, tid: i64, frame: u64, cases: &[(&str, &str)]) {
    for (expression, expected) in cases {
        let v = eval(
            c,
            json!({"pid": pid, "tid": tid, "frame": frame, "expression": expression}),
        );
        assert_eq!(v["value"], *expected, "{expression}: {v}");
    }
}

#[test]
fn rust_smart_pointers_deref_and_len_counts_what_rust_counts() {
    let exe = build_fixture("values2/rust_smart.rs", "values2_rust_smart", &[]);
    let mut fx = Fixture::start(&exe);
    let pid = fx.pid;
    let gdb = gdb_print_in(
        pid,
        Some("rust_smart::inspect_here"),
        &[
            "(**boxed).left",
            "(*(*conf).ptr.pointer).data.workers",
            "(*(*shared).ptr.pointer).value.right",
            "(*(*data).__0.ptr.pointer).data.workers",
            "(*(*conf).ptr.pointer).data.route_prefix.vec.len",
        ],
    );
    let mut c = McpClient::start();
    c.call("attach", json!({"pid": pid})).ok();
    let threads = c.call("list_threads", json!({"pid": pid})).ok();
    let tid = threads["threads"][0]["tid"].as_i64().expect("tid");
    let stack = c.call("stack_trace", json!({"pid": pid, "tid": tid})).ok();
    let frame = frame_index(&stack, "rust_smart::inspect_here");
    expect_values(
        &mut c,
        pid,
        tid,
        frame,
        &[
            // Box (a pointer type in rustc's DWARF), through a reference.
            ("boxed.left", gdb[0].as_str()),
            ("(**boxed).right", "12"),
            // Arc and Rc: auto-deref on field access, and `*`.
            ("conf.workers", gdb[1].as_str()),
            ("conf.route_prefix", "\"/api/v1\""),
            ("conf.route_prefix == \"/api/v1\"", "true"),
            ("(**conf).workers", gdb[1].as_str()),
            ("shared.right", gdb[2].as_str()),
            // A newtype around Arc (actix's Data<T>).
            ("data.workers", gdb[3].as_str()),
            ("data.route_prefix", "\"/data\""),
            ("data.0.workers", gdb[3].as_str()),
            // len() as Rust counts: remaining elements of an IntoIter,
            // String, &str, slices, HashMap.
            ("len(rest)", "3"),
            ("rest.len()", "3"),
            ("len(conf.route_prefix)", gdb[4].as_str()),
            ("len(name)", "10"),
            ("len(words)", "3"),
            ("len(table)", "2"),
        ],
    );
    let v = eval(
        &mut c,
        json!({"pid": pid, "tid": tid, "frame": frame, "expression": "**data"}),
    );
    assert_eq!(v["type"], "Config", "{v}");
    let err = eval_err(
        &mut c,
        json!({"pid": pid, "tid": tid, "frame": frame, "expression": "conf.missing"}),
    );
    assert!(
        err.contains("route_prefix"),
        "the target's fields are listed: {err}"
    );
    fx.send("go");
    fx.expect_line("done");
}

/// Builds the C++ fixture with clang++ and libc++ (the test fails if they
/// are not installed: `apt-get install clang libc++-dev libc++abi-dev`).
fn build_libcxx_fixture() -> std::path::PathBuf {
    let src = fixture_src("values2/cpp_typedefs.cpp");
    let out = fixture_dir().join("values2_cpp_libcxx");
    let tmp = fixture_dir().join(format!("values2_cpp_libcxx.tmp.{}", std::process::id()));
    let status = Command::new("clang++")
        .args(["-g", "-O0", "-stdlib=libc++"])
        .arg(&src)
        .arg("-o")
        .arg(&tmp)
        .status()
        .expect("clang++ must be installed (apt-get install clang libc++-dev libc++abi-dev)");
    assert!(status.success(), "building the libc++ fixture failed");
    std::fs::rename(&tmp, &out).expect("rename fixture");
    out
}

fn cpp_containers(exe: &std::path::Path, libcxx: bool) {
    let mut fx = Fixture::start(exe);
    let pid = fx.pid;
    let gdb = gdb_print_in(
        pid,
        Some("inspect_here"),
        &["((web::Request *)g_request)->status", "g_request"],
    );
    let mut c = McpClient::start();
    c.call("attach", json!({"pid": pid})).ok();
    let threads = c.call("list_threads", json!({"pid": pid})).ok();
    let tid = threads["threads"][0]["tid"].as_i64().expect("tid");
    let stack = c.call("stack_trace", json!({"pid": pid, "tid": tid})).ok();
    let frame = frame_index(&stack, "inspect_here");
    expect_values(
        &mut c,
        pid,
        tid,
        frame,
        &[
            // len() through `const Headers &` and a typedef of that reference.
            ("len(headers)", "3"),
            ("len(again)", "3"),
            ("headers.len()", "3"),
            ("len(names)", "2"),
            ("names[1]", "\"bob\""),
            ("names[0] == \"ann\"", "true"),
            ("short_text", "\"short\""),
            ("short_text == \"short\"", "true"),
            ("short_text != \"shorter\"", "true"),
            ("len(short_text)", "5"),
            (
                "long_text",
                "\"a long string that cannot fit in the small buffer\"",
            ),
            ("len(long_text)", "49"),
            (
                "long_text == \"a long string that cannot fit in the small buffer\"",
                "true",
            ),
            // A qualified class name in a cast.
            ("((web::Request*)g_request)->status", gdb[0].as_str()),
            ("((web::Request*)g_request)->method == \"GET\"", "true"),
            ("((web::Request*)g_request)->method", "\"GET\""),
        ],
    );
    // The string limit applies to both representations.
    let v = c
        .call(
            "evaluate",
            json!({"pid": pid, "tid": tid, "frame": frame, "expression": "long_text",
                   "limits": {"max_string": 6}}),
        )
        .ok()["value"]
        .clone();
    assert_eq!(v["value"], "\"a long\"...", "{v}");
    assert_eq!(v["truncated"], true, "{v}");
    let v = c
        .call(
            "evaluate",
            json!({"pid": pid, "tid": tid, "frame": frame, "expression": "short_text",
                   "limits": {"max_string": 2}}),
        )
        .ok()["value"]
        .clone();
    assert_eq!(v["value"], "\"sh\"...", "{v}");
    // read_locals renders the strings and vector too.
    let answer = c.call(
        "read_locals",
        json!({"pid": pid, "tid": tid, "frame": frame}),
    );
    let text = answer.text.clone();
    assert!(text.contains("\"short\""), "{text}");
    assert!(text.contains("vector(len 2)"), "{text}");
    // Both libraries' multimaps walk to the same entries, in order.
    assert!(
        text.contains(
            "multimap(len 3) {[\"accept\"] = \"*/*\", [\"accept\"] = \"text/html\", [\"host\"] = \"example.org\"}"
        ),
        "libc++: {libcxx}: {text}"
    );
    // gdb agrees on the pointer the cast read through.
    let v = eval(
        &mut c,
        json!({"pid": pid, "tid": tid, "frame": frame, "expression": "(web::Request*)g_request"}),
    );
    let gdb_address = gdb[1]
        .split_whitespace()
        .find(|w| w.starts_with("0x"))
        .expect("address");
    assert!(
        v["value"].as_str().unwrap().starts_with(gdb_address),
        "{v} vs {}",
        gdb[1]
    );
    fx.send("go");
    fx.expect_line("done");
}

#[test]
fn cpp_typedef_references_and_libstdcxx_strings() {
    let exe = build_fixture(
        "values2/cpp_typedefs.cpp",
        "values2_cpp_libstdcxx",
        &["-O0"],
    );
    cpp_containers(&exe, false);
}

#[test]
fn cpp_libcxx_strings_render_like_libstdcxx() {
    let exe = build_libcxx_fixture();
    cpp_containers(&exe, true);
}

/// gdb's `print` of each expression in the frame that called `callee`
/// (`frame function callee`, then `up`).
fn gdb_print_in_caller_of(pid: i32, callee: &str, expressions: &[&str]) -> Vec<String> {
    let mut cmd = Command::new("gdb");
    cmd.args(["-batch", "-nx", "-p", &pid.to_string()]);
    cmd.arg("-ex").arg(format!("frame function {callee}"));
    cmd.arg("-ex").arg("up");
    for e in expressions {
        cmd.arg("-ex").arg(format!("print {e}"));
    }
    let out = cmd
        .output()
        .expect("gdb must be installed for these tests (apt-get install gdb)");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let answers: Vec<String> = stdout
        .lines()
        .filter(|l| l.starts_with('$'))
        .filter_map(|l| l.split_once(" = ").map(|(_, v)| v.to_string()))
        .collect();
    assert_eq!(
        answers.len(),
        expressions.len(),
        "gdb printed {stdout} / {}",
        String::from_utf8_lossy(&out.stderr)
    );
    answers
}

/// The index of the frame that called `callee` on the main thread.
fn caller_frame_of(c: &mut McpClient, pid: i32, callee: &str) -> (i64, u64) {
    let threads = c.call("list_threads", json!({"pid": pid})).ok();
    let tid = threads["threads"][0]["tid"].as_i64().expect("tid");
    let stack = c.call("stack_trace", json!({"pid": pid, "tid": tid})).ok();
    (tid, frame_index(&stack, callee) + 1)
}

/// In a member function and in a lambda capturing `this`, names written
/// without `this->` resolve as C++ does, with gdb's values: a data member
/// (one from a base class too), a member hiding a global of the same name,
/// the class's and a base's statics, a local, then a global.
#[test]
fn cpp_members_resolve_through_this_in_member_functions_and_lambdas() {
    let exe = build_fixture("values2/cpp_members.cpp", "values2_cpp_members", &["-O0"]);
    let mut fx = Fixture::start(&exe);
    let pid = fx.pid;
    let cases: [(&[&str], &str); 2] = [
        (
            &[
                "id_",
                "shadow",
                "base_field",
                "count_",
                "base_static",
                "g_only",
                "local",
                "this->id_ + id_",
            ],
            "plain",
        ),
        (
            &[
                "id_",
                "shadow",
                "base_field",
                "count_",
                "base_static",
                "g_only",
                "reads",
                "n",
            ],
            "lambda",
        ),
    ];
    for (expressions, what) in cases {
        let gdb = gdb_print_in_caller_of(pid, "wait_here", expressions);
        // The member hides the global `shadow` (99).
        assert_eq!(gdb[1], "7", "{what}: {gdb:?}");
        let mut c = McpClient::start();
        c.call("attach", json!({"pid": pid})).ok();
        let (tid, frame) = caller_frame_of(&mut c, pid, "wait_here");
        for (expression, gdb_value) in expressions.iter().zip(&gdb) {
            let v = eval(
                &mut c,
                json!({"pid": pid, "tid": tid, "frame": frame, "expression": expression}),
            );
            assert_eq!(v["value"], gdb_value.as_str(), "{what}: {expression}: {v}");
        }
        c.call("detach", json!({"pid": pid})).ok();
        fx.send("go");
        if what == "plain" {
            fx.expect_line("ready");
        }
    }
    fx.expect_line("done 63 65");
}

/// C arrays decay to a pointer to their first element in casts, pointer
/// arithmetic and comparisons; a `char contents[1]` at the end of a struct
/// cast to `char *` is the string stored there, as gdb prints it.
///
/// A caller frame on a local's declaration line is inside the call that
/// computes its initial value: the local is not initialized yet. Not when
/// the line may have initialized it already: another variable declared on
/// the same line, a `for` whose variable is assigned before its condition
/// calls, or a second statement of the line running after the declaration.
#[test]
fn c_array_decay_and_locals_whose_declaration_is_running() {
    let exe = build_fixture("values2/c_decay_init.c", "values2_c_decay_init", &["-O0"]);
    let mut fx = Fixture::start(&exe);
    let pid = fx.pid;
    let decay = [
        "(char *)g_text->contents",
        "(const char *)g_text->contents + 7",
        "g_buf + 2",
        "g_buf == &g_buf[0]",
        "g_text->contents - g_text->contents",
    ];
    let gdb = gdb_print(pid, &decay);
    let mut c = McpClient::start();
    c.call("attach", json!({"pid": pid})).ok();
    for (expression, gdb_value) in decay.iter().zip(&gdb) {
        let v = eval(&mut c, json!({"pid": pid, "expression": expression}));
        let shown = v["value"].as_str().unwrap_or("");
        if gdb_value.contains('"') {
            assert!(
                shown.ends_with(&gdb_string(gdb_value)),
                "{expression}: {v} vs gdb {gdb_value}"
            );
        } else {
            // A C comparison is an `int` to gdb; liveprobe says `true`.
            let gdb_value = match (v["type"].as_str(), gdb_value.as_str()) {
                (Some("bool"), "1") => "true",
                (Some("bool"), "0") => "false",
                (_, other) => other,
            };
            assert_eq!(shown, gdb_value, "{expression}: {v}");
        }
    }
    assert!(gdb[0].ends_with("\"inline-text\""), "{gdb:?}");

    let local = |c: &mut McpClient, name: &str| {
        let (tid, frame) = caller_frame_of(c, pid, "wait_value");
        let locals = c
            .call(
                "read_locals",
                json!({"pid": pid, "tid": tid, "frame": frame}),
            )
            .ok();
        locals["variables"]
            .as_array()
            .and_then(|vs| vs.iter().find(|v| v["name"] == name))
            .unwrap_or_else(|| panic!("no {name} in {locals}"))
            .clone()
    };
    // 1: `int status = wait_value(7);` is running.
    let status = local(&mut c, "status");
    assert!(
        status["unavailable"]
            .as_str()
            .is_some_and(|u| u.starts_with("not yet initialized")),
        "{status}"
    );
    assert_eq!(local(&mut c, "early")["value"], "3");
    let (tid, frame) = caller_frame_of(&mut c, pid, "wait_value");
    let v = eval(
        &mut c,
        json!({"pid": pid, "tid": tid, "frame": frame, "expression": "status + 1"}),
    );
    assert!(v["unavailable"].as_str().is_some(), "{v}");
    c.call("detach", json!({"pid": pid})).ok();
    fx.send("go");
    fx.expect_line("ready");

    // 2: `int first = 1, second = wait_value(8);`: `first` is set.
    c.call("attach", json!({"pid": pid})).ok();
    let first = local(&mut c, "first");
    assert_eq!(first["value"], "1", "{first}");
    assert_eq!(local(&mut c, "status")["value"], "7");
    c.call("detach", json!({"pid": pid})).ok();
    fx.send("go");
    fx.expect_line("ready");

    // 3: `for (int i = 5; i < wait_value(7); i += 10)`: `i` is 5, as gdb says.
    let gdb_i = gdb_print_in_caller_of(pid, "wait_value", &["i"]);
    assert_eq!(gdb_i[0], "5");
    c.call("attach", json!({"pid": pid})).ok();
    let i = local(&mut c, "i");
    assert_eq!(i["value"], "5", "{i}");
    assert!(i["unavailable"].is_null(), "{i}");
    c.call("detach", json!({"pid": pid})).ok();
    fx.send("go");
    fx.expect_line("ready");
    fx.send("go");
    fx.expect_line("ready");

    // 5, 6: `int got = wait_value(9); wait_value(got);`: not initialized in
    // the first call, initialized in the second, on the same line.
    c.call("attach", json!({"pid": pid})).ok();
    let got = local(&mut c, "got");
    assert!(
        got["unavailable"]
            .as_str()
            .is_some_and(|u| u.starts_with("not yet initialized")),
        "{got}"
    );
    c.call("detach", json!({"pid": pid})).ok();
    fx.send("go");
    fx.expect_line("ready");
    c.call("attach", json!({"pid": pid})).ok();
    let got = local(&mut c, "got");
    assert_eq!(got["value"], "9", "{got}");
    assert!(got["unavailable"].is_null(), "{got}");
    c.call("detach", json!({"pid": pid})).ok();
    fx.send("go");
    fx.expect_line("done 7 1 8 8 9");
}
