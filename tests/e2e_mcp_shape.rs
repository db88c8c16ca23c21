//! The MCP face as real clients meet it, driving the real binary: schemas a
//! strict validator and the MCP Inspector's forms accept, answers that fit a
//! context window and say what they cut, find_functions that puts the
//! program's own code first, and the small contracts (resource mime type,
//! probe ids, a word on Go binaries, readable metrics).

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::*;
use serde_json::{Map, Value, json};

/// The default byte budget of one answer.
const BUDGET: usize = 32 * 1024;

fn bigvalues() -> PathBuf {
    build_fixture("mcp/bigvalues.cpp", "mcp_bigvalues", &["-O0"])
}

fn line_of(needle: &str) -> u64 {
    let text = std::fs::read_to_string(fixture_src("mcp/bigvalues.cpp")).expect("source");
    text.lines()
        .position(|l| l.contains(needle))
        .map(|i| i as u64 + 1)
        .unwrap_or_else(|| panic!("{needle:?} not in bigvalues.cpp"))
}

/// Answers collected for the strict validator, as (schema name, answer).
#[derive(Default)]
struct Collected(Vec<(String, Value)>);

impl Collected {
    /// Calls `tool`, checks both halves of a successful answer fit the
    /// budget, and keeps the answer for validation against its schema.
    fn call(&mut self, c: &mut McpClient, tool: &str, args: Value) -> ToolAnswer {
        let answer = c.call(tool, args.clone());
        if !answer.is_error {
            let structured = serde_json::to_string(&answer.structured).expect("json");
            assert!(
                structured.len() <= BUDGET,
                "{tool} {args}: structuredContent is {} bytes",
                structured.len()
            );
            assert!(
                answer.text.len() <= BUDGET,
                "{tool} {args}: text is {} bytes",
                answer.text.len()
            );
            self.0
                .push((format!("{tool}.output"), answer.structured.clone()));
        }
        answer
    }
}

/// The Ajv helper directory; its packages are installed when missing.
fn schema_check_dir() -> PathBuf {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/schema-check");
    let node = Command::new("node").arg("--version").output();
    assert!(
        node.is_ok_and(|o| o.status.success()),
        "node is required for the strict schema check (tools/test.sh installs it)"
    );
    // Tests of this file run on parallel threads: one npm install at a
    // time (two at once in one directory corrupt node_modules).
    static INSTALL: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _installing = INSTALL.lock().unwrap_or_else(|e| e.into_inner());
    if !dir.join("node_modules/ajv").exists() {
        let status = Command::new("npm")
            .args(["install", "--silent", "--no-audit", "--no-fund"])
            .current_dir(&dir)
            .status()
            .expect("run npm install in tests/schema-check");
        assert!(status.success(), "npm install in tests/schema-check failed");
    }
    dir
}

/// Runs the strict validator over `schemas` and `answers`; fails the test
/// with every problem it reports.
fn ajv_check(schemas: &Map<String, Value>, answers: &[(String, Value)]) {
    let dir = schema_check_dir();
    let input = json!({
        "schemas": schemas,
        "instances": answers
            .iter()
            .map(|(schema, data)| json!({"schema": schema, "data": data}))
            .collect::<Vec<_>>(),
    });
    let file = tempfile::NamedTempFile::new().expect("temp file");
    std::fs::write(file.path(), input.to_string()).expect("write check input");
    let out = Command::new("node")
        .arg(dir.join("check.mjs"))
        .arg(file.path())
        .output()
        .expect("run node");
    let report = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "strict validation failed:\n{report}");
    assert!(report.contains("0 problem(s)"), "{report}");
}

/// The Inspector-relevant rules, on one schema node and below.
fn check_shape(name: &str, path: &str, node: &Value, input: bool, problems: &mut Vec<String>) {
    let Value::Object(m) = node else {
        if node.is_boolean() {
            problems.push(format!("{name} {path}: bare boolean schema"));
        }
        return;
    };
    if let Some(t) = m.get("type")
        && (t.is_array() || t == "null")
    {
        problems.push(format!("{name} {path}: type {t}"));
    }
    for key in ["anyOf", "oneOf"] {
        if let Some(Value::Array(branches)) = m.get(key)
            && branches
                .iter()
                .any(|b| b.get("type") == Some(&json!("null")))
        {
            problems.push(format!("{name} {path}: a null branch in {key}"));
        }
    }
    if let Some(format) = m.get("format").and_then(Value::as_str)
        && ["uint", "int", "double", "float"]
            .iter()
            .any(|bad| format.starts_with(bad))
    {
        problems.push(format!("{name} {path}: format {format}"));
    }
    if m.contains_key("default") {
        problems.push(format!("{name} {path}: a default a form would send"));
    }
    if let Some(r) = m.get("$ref").and_then(Value::as_str)
        && (input || r != "#/$defs/Value")
    {
        problems.push(format!(
            "{name} {path}: $ref {r} instead of an inline schema"
        ));
    }
    if let Some(d) = m.get("description").and_then(Value::as_str)
        && (d.contains("[`") || d.contains('\n'))
    {
        problems.push(format!("{name} {path}: description not plain: {d:?}"));
    }
    if let (Some(Value::Object(props)), Some(Value::Array(required))) =
        (m.get("properties"), m.get("required"))
    {
        let names: Vec<&String> = props.keys().collect();
        for (i, r) in required.iter().enumerate() {
            if names.get(i).map(|n| n.as_str()) != r.as_str() {
                problems.push(format!(
                    "{name} {path}: required fields are not first: {names:?} vs {required:?}"
                ));
                break;
            }
        }
    }
    for (k, v) in m {
        match (k.as_str(), v) {
            ("properties" | "$defs" | "patternProperties", Value::Object(subs)) => {
                for (sk, sv) in subs {
                    check_shape(name, &format!("{path}/{k}/{sk}"), sv, input, problems);
                }
            }
            ("anyOf" | "oneOf" | "allOf" | "prefixItems", Value::Array(subs)) => {
                for (i, sv) in subs.iter().enumerate() {
                    check_shape(name, &format!("{path}/{k}/{i}"), sv, input, problems);
                }
            }
            ("items" | "additionalProperties" | "not", sub) => {
                check_shape(name, &format!("{path}/{k}"), sub, input, problems);
            }
            _ => {}
        }
    }
}

/// Schemas of the live tools/list, keyed `<tool>.<input|output>`.
fn live_schemas(c: &mut McpClient) -> Map<String, Value> {
    let listed = c.request("tools/list", json!({}));
    let mut out = Map::new();
    for tool in listed["result"]["tools"].as_array().expect("tools") {
        let name = tool["name"].as_str().expect("name");
        out.insert(format!("{name}.input"), tool["inputSchema"].clone());
        if let Some(o) = tool.get("outputSchema") {
            out.insert(format!("{name}.output"), o.clone());
        }
    }
    out
}

#[test]
fn every_schema_is_strict_and_shaped_for_forms() {
    let mut c = McpClient::start();
    let live = live_schemas(&mut c);
    assert_eq!(
        live.len(),
        34,
        "17 tools, each with input and output schema"
    );
    let mut problems = Vec::new();
    for (name, schema) in &live {
        check_shape(name, "#", schema, name.ends_with(".input"), &mut problems);
    }
    // The exported files are the same schemas (the drift test checks the
    // bytes); check them as files a linter would read.
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("schemas");
    let mut exported = Map::new();
    for entry in std::fs::read_dir(&dir).expect("schemas/") {
        let path = entry.expect("entry").path();
        let name = path
            .file_name()
            .and_then(|n| n.to_str())
            .and_then(|n| n.strip_suffix(".json"))
            .expect("name")
            .to_string();
        let schema: Value =
            serde_json::from_str(&std::fs::read_to_string(&path).expect("read")).expect("json");
        check_shape(&name, "#", &schema, name.ends_with(".input"), &mut problems);
        exported.insert(format!("file:{name}"), schema);
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
    // The forms people fill: enums are inline lists, optional fields are
    // simply absent from `required`, `pid` comes first.
    let metric = &live["set_metric.input"];
    assert_eq!(
        metric["properties"]["kind"]["enum"],
        json!(["count", "histogram", "duration"])
    );
    assert_eq!(
        metric["properties"]["engine"]["enum"],
        json!(["auto", "uprobe", "ptrace"])
    );
    assert_eq!(metric["required"], json!(["pid", "location", "kind"]));
    let snapshot = &live["set_snapshot.input"];
    assert_eq!(snapshot["properties"]["expressions"]["type"], "array");
    assert!(snapshot["properties"]["limits"].get("default").is_none());
    assert_eq!(
        snapshot["properties"]
            .as_object()
            .and_then(|p| p.keys().next())
            .map(String::as_str),
        Some("pid")
    );
    // Items are described, one branch per kind, each told by its own fields.
    let items = &live["get_probe_results.output"]["properties"]["items"]["items"];
    let required = |branch: &Value| branch["required"].clone();
    let branches = items["anyOf"]
        .as_array()
        .expect("items are an anyOf of kinds");
    assert_eq!(
        branches.iter().map(required).collect::<Vec<_>>(),
        vec![
            json!(["seq", "time", "tid", "frames", "expressions"]),
            json!(["seq", "time", "tid", "text"]),
            json!(["seq", "time", "count", "per_site"]),
            Value::Null,
            json!(["seq", "path", "value"]),
        ]
    );
    let watch = branches[3]["anyOf"]
        .as_array()
        .expect("watch: sample or change");
    assert_eq!(
        watch.iter().map(required).collect::<Vec<_>>(),
        vec![
            json!(["seq", "time", "value"]),
            json!(["seq", "time", "tid", "thread_name", "old", "new", "frames"]),
        ]
    );
    let mut all = live.clone();
    all.extend(exported);
    ajv_check(&all, &[]);
    c.shutdown();
}

#[test]
fn huge_values_stay_within_the_budget_and_say_what_was_cut() {
    let mut fx = Fixture::start(&bigvalues());
    // Each hit copies hundreds of strings: the overhead budget must not
    // throttle the probe before its 20 hits (that budget has its own tests).
    // The per-hit capture is kept to 200 elements a container so a loaded
    // machine stays within it; 20 such hits are still far over 32 KB.
    let mut c = McpClient::start_with_args(&["--probe-budget-ms", "1000"]);
    let mut got = Collected::default();
    got.call(&mut c, "attach", json!({"pid": fx.pid})).ok();
    let big = json!({"depth": 8, "max_items": 1000, "max_string": 4096});

    // A map of 1,000 entries: the text shows its first entries, both
    // halves fit, and the answer says what was cut.
    let map = got.call(
        &mut c,
        "evaluate",
        json!({"pid": fx.pid, "expression": "registry", "limits": big}),
    );
    assert!(!map.is_error, "{}", map.text);
    assert!(
        map.text.contains("[0] = ") && map.text.contains("value-0"),
        "the text shows the first entries: {}",
        &map.text[..map.text.len().min(600)]
    );
    assert!(
        map.text.contains("more"),
        "the text says more entries exist"
    );
    let cut = &map.structured["cut"];
    assert!(
        cut["cuts"].as_array().is_some_and(|c| !c.is_empty()),
        "structured says what was cut: {cut}"
    );
    assert!(map.text.contains("answer cut to fit max_bytes=32768"));

    // A type name of hundreds of characters is shortened, and that is said.
    let long = got
        .call(
            &mut c,
            "evaluate",
            json!({"pid": fx.pid, "expression": "nested_triple"}),
        )
        .ok();
    let ty = long["value"]["type"].as_str().expect("type");
    assert!(ty.chars().count() <= 161, "type name shortened: {ty}");
    assert!(ty.contains("<…>"), "{ty}");
    assert!(
        long["cut"]["names_shortened"]
            .as_u64()
            .is_some_and(|n| n > 0),
        "{long}"
    );

    // A smaller budget per call is honoured.
    let small = c.call(
        "evaluate",
        json!({"pid": fx.pid, "expression": "registry", "limits": big, "max_bytes": 8192}),
    );
    assert!(serde_json::to_string(&small.structured).unwrap().len() <= 8192);
    assert!(small.text.len() <= 8192);

    // Structs nested six deep.
    let deep = got.call(
        &mut c,
        "evaluate",
        json!({"pid": fx.pid, "expression": "*tree", "limits": big}),
    );
    assert!(!deep.is_error, "{}", deep.text);
    assert!(deep.structured.get("cut").is_some(), "{}", deep.text);

    // 20 snapshot hits of a big frame and its caller, more frames asked
    // than a snapshot captures: the cap is said.
    let line = line_of("// PROBE");
    let set = got
        .call(
            &mut c,
            "set_snapshot",
            json!({"pid": fx.pid, "location": format!("bigvalues.cpp:{line}"), "frames": 30,
                   "max_hits": 20, "engine": "ptrace",
                   "limits": {"depth": 3, "max_items": 200, "max_string": 256},
                   "expressions": ["tree->numbers"]}),
        )
        .ok();
    let note = set["note"].as_str().unwrap_or_default();
    assert!(
        note.contains("frames 30 asked, 16 captured"),
        "the frames cap is said: {set}"
    );
    let id = set["probe_id"].clone();
    fx.send("run 20");
    fx.expect_line("done");

    // Page through every hit: each page fits, none is lost.
    let mut after = 0u64;
    let mut seen = Vec::new();
    let mut pages = 0;
    let mut first_page = Value::Null;
    // Hits recorded, and the probe's state: a ptrace snapshot of 16 frames of
    // big values holds its thread long in a debug build, and on a loaded
    // machine the hit budget may throttle it before the 20th hit. Paging
    // must then give every recorded hit, in order, once.
    let mut recorded;
    let mut state;
    loop {
        let page = got.call(
            &mut c,
            "get_probe_results",
            json!({"probe_id": id, "after": after, "limit": 20, "wait_ms": 5000}),
        );
        assert!(!page.is_error, "{}", page.text);
        let items = page.structured["items"].as_array().expect("items").clone();
        recorded = page.structured["hits"].as_u64().expect("hits");
        state = page.structured["state"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        if items.is_empty() {
            break;
        }
        pages += 1;
        if pages == 1 {
            first_page = page.structured.clone();
            assert!(
                page.structured.get("cut").is_some(),
                "20 big hits do not fit one answer: {}",
                &page.text[..page.text.len().min(800)]
            );
            assert!(page.text.contains("answer cut to fit"), "the text says so");
            assert!(
                page.text.contains("[0] = "),
                "the text shows the first elements of containers"
            );
        }
        for item in &items {
            seen.push(item["seq"].as_u64().expect("seq"));
        }
        let next = page.structured["next_after"].as_u64().expect("next_after");
        assert!(next > after, "paging moves on");
        after = next;
        if seen.len() >= 20 {
            break;
        }
        assert!(pages < 40, "paging does not end: {seen:?}");
    }
    assert!(
        recorded == 20 || state == "throttled",
        "20 hits, or a throttled probe: {recorded} hits, state {state}"
    );
    assert_eq!(
        seen,
        (1..=recorded).collect::<Vec<u64>>(),
        "every recorded hit, in order, once (state {state})"
    );
    assert!(pages > 1, "the hits came in several pages");

    // A cut list inside a stored hit is expanded by its path, paged by skip.
    let cut_list = first_page["cut"]["cuts"]
        .as_array()
        .expect("cuts")
        .iter()
        .filter_map(Value::as_str)
        .find(|n| n.contains(".children: first ") && n.contains(" of 200 kept"))
        .unwrap_or_else(|| panic!("a cut 200-entry map: {}", first_page["cut"]))
        .to_string();
    let (path, kept) = cut_list.split_once(": first ").expect("note shape");
    let kept: usize = kept
        .split(' ')
        .next()
        .and_then(|k| k.parse().ok())
        .expect("kept");
    // Past what was kept, and past the first few not shown, so `skip` is seen to work.
    let kept = kept + 5;
    let seq = first_page["items"][0]["seq"].as_u64().expect("seq");
    let more = got.call(
        &mut c,
        "get_probe_results",
        json!({"probe_id": id, "after": seq - 1, "path": path, "skip": kept}),
    );
    assert!(!more.is_error, "{}", more.text);
    let item = &more.structured["items"][0];
    assert_eq!(item["skipped"], json!(kept), "{item}");
    let entries = item["value"].as_array().expect("the rest of the list");
    assert_eq!(entries[0]["name"], json!(format!("[{kept}]")), "{item}");
    assert!(
        more.text.contains(&format!("[{kept}]: std::string = ")),
        "{}",
        &more.text[..more.text.len().min(600)]
    );
    let bad = c.call(
        "get_probe_results",
        json!({"probe_id": id, "after": seq - 1, "path": "frames[0].nothing"}),
    );
    assert!(bad.err().contains("no `nothing` here; present:"));

    // Stacks and the other answers obey the same budget.
    got.call(
        &mut c,
        "stack_trace",
        json!({"pid": fx.pid, "all_threads": true}),
    )
    .ok();
    got.call(&mut c, "list_threads", json!({"pid": fx.pid}))
        .ok();
    got.call(&mut c, "list_probes", json!({})).ok();
    got.call(
        &mut c,
        "list_source",
        json!({"pid": fx.pid, "file": "bigvalues.cpp", "context": 10000}),
    )
    .ok();
    got.call(
        &mut c,
        "find_functions",
        json!({"pid": fx.pid, "query": "std", "limit": 100000}),
    )
    .ok();

    // Every answer validates against its output schema, strictly.
    let schemas = live_schemas(&mut c);
    ajv_check(&schemas, &got.0);
    fx.send("quit");
    fx.wait_exit();
    c.shutdown();
}

#[test]
fn find_functions_puts_the_programs_own_code_first_and_tells_overloads_apart() {
    let mut fx = Fixture::start(&bigvalues());
    let mut c = McpClient::start();
    let mut got = Collected::default();
    got.call(&mut c, "attach", json!({"pid": fx.pid})).ok();

    // Overloads: both, first, each with file:line and parameter types.
    let found = got.call(
        &mut c,
        "find_functions",
        json!({"pid": fx.pid, "query": "handle_request"}),
    );
    let rows = found.structured["functions"]
        .as_array()
        .expect("functions")
        .clone();
    assert!(rows.len() >= 2, "{}", found.text);
    let decl_int = line_of("int handle_request(int code)");
    let decl_str = line_of("int handle_request(const std::string");
    let mut lines: Vec<u64> = rows[..2]
        .iter()
        .map(|r| {
            assert_eq!(r["name"], "handle_request", "{}", found.text);
            assert!(
                r["file"]
                    .as_str()
                    .is_some_and(|f| f.ends_with("bigvalues.cpp"))
            );
            r["line"].as_u64().expect("line")
        })
        .collect();
    lines.sort();
    assert_eq!(lines, vec![decl_int, decl_str]);
    let sigs: Vec<&str> = rows[..2]
        .iter()
        .map(|r| r["signature"].as_str().expect("signature"))
        .collect();
    assert!(sigs.contains(&"(int)"), "{sigs:?}");
    assert!(
        sigs.iter()
            .any(|s| s.contains("basic_string") || s.contains("string")),
        "{sigs:?}"
    );
    assert!(
        found
            .text
            .contains("2 functions match `handle_request`: pick one by file:line"),
        "{}",
        found.text
    );
    assert!(found.text.contains(&format!("bigvalues.cpp:{decl_int}")));

    // The program's own `process` before any library function holding the word.
    let found = got.call(
        &mut c,
        "find_functions",
        json!({"pid": fx.pid, "query": "process", "limit": 20}),
    );
    let first = &found.structured["functions"][0];
    assert_eq!(first["name"], "process", "{}", found.text);
    // Library and compiler-generated names come after the program's own.
    let found = got.call(
        &mut c,
        "find_functions",
        json!({"pid": fx.pid, "query": "string", "limit": 2000}),
    );
    let names: Vec<&str> = found.structured["functions"]
        .as_array()
        .expect("functions")
        .iter()
        .filter_map(|r| r["name"].as_str())
        .collect();
    let library =
        |n: &str| n.starts_with("std::") || n.starts_with("__gnu_cxx::") || n.starts_with("__");
    if let Some(first_library) = names.iter().position(|n| library(n)) {
        assert!(
            names[first_library..]
                .iter()
                .all(|n| library(n) || !n.contains("::")),
            "a program name after a library one: {names:?}"
        );
    }
    let schemas = live_schemas(&mut c);
    ajv_check(&schemas, &got.0);

    // A condition naming something unknown at an overloaded function.
    let set = c.call(
        "set_snapshot",
        json!({"pid": fx.pid, "location": "handle_request", "condition": "cod == 1", "dry_run": true}),
    );
    let said = set.err();
    assert!(
        said.starts_with("2 functions match `handle_request`; pick one by file:line"),
        "{said}"
    );
    assert!(
        said.contains(&format!("bigvalues.cpp:{decl_int} (handle_request(int))")),
        "{said}"
    );
    assert!(
        said.contains(&format!("bigvalues.cpp:{decl_str}")),
        "{said}"
    );
    assert!(said.len() < 700, "a short answer, not every name: {said}");
    fx.send("quit");
    fx.wait_exit();
    c.shutdown();
}

#[test]
fn small_contracts_resource_mime_probe_ids_and_readable_metrics() {
    let mut fx = Fixture::start(&bigvalues());
    let mut c = McpClient::start();
    c.call("attach", json!({"pid": fx.pid})).ok();
    let line = line_of("// PROBE");
    let at = format!("bigvalues.cpp:{line}");

    // A misspelt global while the main thread sleeps in libc: the program's
    // own close name comes first, not libc internals.
    let unknown = c
        .call("evaluate", json!({"pid": fx.pid, "expression": "tick_cnt"}))
        .err();
    assert!(unknown.contains("in scope: tick_count"), "{unknown}");
    let in_frame = c
        .call(
            "evaluate",
            json!({"pid": fx.pid, "expression": "tick_cnt + 1", "frame": 0}),
        )
        .err();
    assert!(in_frame.contains("in scope: tick_count"), "{in_frame}");
    // The same in a probe's condition.
    let in_condition = c
        .call(
            "set_snapshot",
            json!({"pid": fx.pid, "location": &at, "condition": "tick_cnt > 0", "dry_run": true}),
        )
        .err();
    assert!(
        in_condition.contains("in scope: tick_count"),
        "{in_condition}"
    );

    // Failed sets, before and after an id would be given, use up no id.
    c.call(
        "set_snapshot",
        json!({"pid": fx.pid, "location": "no_such_function_here"}),
    )
    .err();
    c.call(
        "set_snapshot",
        json!({"pid": fx.pid, "location": at, "condition": "no_such_name == 1"}),
    )
    .err();
    let forced = c.call(
        "set_snapshot",
        json!({"pid": fx.pid, "location": at, "engine": "uprobe", "frames": 16,
               "expressions": ["registry"], "limits": {"depth": 8, "max_items": 1000}}),
    );
    let first = if forced.is_error {
        c.call(
            "set_metric",
            json!({"pid": fx.pid, "location": at, "kind": "count", "engine": "ptrace"}),
        )
        .ok()
    } else {
        forced.structured.clone()
    };
    let first_id = first["probe_id"].as_u64().expect("probe id");
    assert_eq!(first_id, 1, "no failed set used up an id: {first}");

    // A metric reads as words.
    let metric = c
        .call(
            "set_metric",
            json!({"pid": fx.pid, "location": at, "kind": "count", "engine": "ptrace"}),
        )
        .ok();
    assert_eq!(metric["probe_id"], json!(first_id + 1));
    fx.send("run 3");
    fx.expect_line("done");
    let results = c.call(
        "get_probe_results",
        json!({"probe_id": metric["probe_id"], "wait_ms": 5000}),
    );
    assert!(!results.is_error, "{}", results.text);
    assert!(results.text.contains("count 3"), "{}", results.text);
    assert!(
        !results.text.contains("no observations"),
        "{}",
        results.text
    );
    assert!(
        !results.text.contains("{\""),
        "no raw JSON line: {}",
        results.text
    );

    // The probe-results resource is JSON, as its template says.
    let templates = c.request("resources/templates/list", json!({}));
    assert_eq!(
        templates["result"]["resourceTemplates"][0]["mimeType"],
        "application/json"
    );
    let read = c.request(
        "resources/read",
        json!({"uri": format!("probe://{}/results", metric["probe_id"])}),
    );
    let contents = &read["result"]["contents"][0];
    assert_eq!(contents["mimeType"], "application/json", "{read}");
    let body: Value =
        serde_json::from_str(contents["text"].as_str().expect("text")).expect("JSON body");
    assert_eq!(body["probe_id"], metric["probe_id"]);
    fx.send("quit");
    fx.wait_exit();
    c.shutdown();
}

#[test]
fn attaching_to_a_go_program_says_go_is_not_supported_yet() {
    // A real Go binary when the toolchain is there; else a C program given
    // the section only Go's linker writes, which is what the check reads.
    let exe = fixture_dir().join("mcp_go_marked");
    let base = common::probes::orders();
    let section = fixture_dir().join("mcp_gopclntab.bin");
    std::fs::write(&section, [0xf1u8, 0xff, 0xff, 0xff, 0, 0, 1, 8]).expect("section bytes");
    let tmp = fixture_dir().join(format!("mcp_go_marked.tmp.{}", std::process::id()));
    let status = Command::new("objcopy")
        .arg("--add-section")
        .arg(format!(".gopclntab={}", section.display()))
        .arg(&base)
        .arg(&tmp)
        .status()
        .expect("run objcopy");
    assert!(status.success(), "objcopy --add-section failed");
    std::fs::rename(&tmp, &exe).expect("rename");
    let mut fx = Fixture::start(&exe);
    let mut c = McpClient::start();
    let attach = c.call("attach", json!({"pid": fx.pid}));
    let report = attach.structured.clone();
    assert!(!attach.is_error, "{}", attach.text);
    assert!(
        report["languages"]
            .as_array()
            .is_some_and(|l| l.contains(&json!("go"))),
        "{report}"
    );
    assert!(
        report["warnings"][0]
            .as_str()
            .is_some_and(|w| w.contains("does not support Go yet")),
        "{report}"
    );
    assert!(
        attach.text.contains("WARNING: this is a Go program"),
        "{}",
        attach.text
    );

    // The same program without the section gets no such word.
    let mut plain = Fixture::start(&base);
    let clean = c.call("attach", json!({"pid": plain.pid})).ok();
    assert!(clean.get("warnings").is_none(), "{clean}");
    assert!(
        !clean["languages"]
            .as_array()
            .expect("languages")
            .contains(&json!("go"))
    );
    fx.send("quit");
    plain.send("quit");
    fx.wait_exit();
    plain.wait_exit();
    c.shutdown();
}

/// Every kind of probe result (snapshot, logpoint, metric, and a path part
/// of a snapshot) as a real run returns it: it passes the strict validator
/// against `get_probe_results`' output schema, and carries its own kind's
/// fields and not another's.
#[test]
fn every_probe_result_kind_matches_the_output_schema() {
    let mut fx = Fixture::start(&bigvalues());
    let mut c = McpClient::start();
    let mut got = Collected::default();
    c.call("attach", json!({"pid": fx.pid})).ok();
    let at = format!("bigvalues.cpp:{}", line_of("// PROBE"));
    let snapshot = c
        .call(
            "set_snapshot",
            json!({"pid": fx.pid, "location": at, "max_hits": 2,
                   "expressions": ["round", "tick_count"], "limits": {"depth": 1, "max_items": 4}}),
        )
        .ok();
    let logpoint = c
        .call(
            "set_logpoint",
            json!({"pid": fx.pid, "location": at, "message": "round {round} total {total}"}),
        )
        .ok();
    let metric = c
        .call(
            "set_metric",
            json!({"pid": fx.pid, "location": at, "kind": "histogram", "expression": "round"}),
        )
        .ok();
    fx.send("run 3");
    fx.expect_line("done");
    let items_of = |got: &mut Collected, c: &mut McpClient, probe: &Value| -> Vec<Value> {
        let answer = got.call(
            c,
            "get_probe_results",
            json!({"probe_id": probe["probe_id"], "wait_ms": 5000}),
        );
        assert!(!answer.is_error, "{}", answer.text);
        answer.structured["items"]
            .as_array()
            .cloned()
            .unwrap_or_default()
    };

    let snaps = items_of(&mut got, &mut c, &snapshot);
    assert_eq!(snaps.len(), 2, "{snaps:?}");
    for (n, item) in snaps.iter().enumerate() {
        assert_eq!(item["seq"], json!(n + 1), "{item}");
        assert!(
            item["time"].as_str().is_some_and(|t| t.ends_with('Z')),
            "{item}"
        );
        assert!(item["tid"].as_i64().is_some_and(|t| t > 0), "{item}");
        assert_eq!(item["frames"][0]["function"], "process", "{item}");
        assert_eq!(item["expressions"][0]["name"], "round", "{item}");
        assert_eq!(
            item["expressions"][0]["value"],
            json!(n.to_string()),
            "{item}"
        );
        assert!(
            item.get("text").is_none() && item.get("count").is_none(),
            "{item}"
        );
    }
    let lines = items_of(&mut got, &mut c, &logpoint);
    assert_eq!(lines.len(), 3, "{lines:?}");
    for (n, item) in lines.iter().enumerate() {
        let text = item["text"].as_str().unwrap_or_default();
        assert!(text.starts_with(&format!("round {n} total ")), "{item}");
        assert!(item.get("frames").is_none(), "{item}");
    }
    let summary = items_of(&mut got, &mut c, &metric);
    assert_eq!(summary.len(), 1, "{summary:?}");
    assert_eq!(summary[0]["count"], 3, "{summary:?}");
    assert_eq!(summary[0]["seq"], 3, "{summary:?}");
    assert_eq!(
        (summary[0]["min"].as_f64(), summary[0]["max"].as_f64()),
        (Some(0.0), Some(2.0))
    );
    assert!(
        summary[0]["per_site"][0]["hits"].as_u64() == Some(3),
        "{summary:?}"
    );

    // A part of a snapshot, asked for by path.
    let part = got.call(
        &mut c,
        "get_probe_results",
        json!({"probe_id": snapshot["probe_id"], "after": 0, "path": "expressions[1]"}),
    );
    assert!(!part.is_error, "{}", part.text);
    let item = &part.structured["items"][0];
    assert_eq!(
        (&item["seq"], &item["path"]),
        (&json!(1), &json!("expressions[1]"))
    );
    assert_eq!(item["value"]["name"], "tick_count", "{item}");

    let schemas = live_schemas(&mut c);
    ajv_check(&schemas, &got.0);
    fx.send("quit");
    fx.wait_exit();
    c.shutdown();
}
