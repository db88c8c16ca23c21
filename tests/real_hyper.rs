//! A release Rust network server nobody here wrote — hyper 1.x on tokio's
//! multi-thread runtime, opt-level 3 with full debug info, built by
//! tests/real/build.sh from crates.io (tests/real/src/hyper_server.rs is
//! only the glue and a handler) — driven with real HTTP requests on
//! 127.0.0.1 through a real MCP session. Frames are checked against
//! `addr2line -i` on the same pcs, values against gdb stopped at the same
//! line, counts against the requests sent.

mod common;
#[path = "real/support.rs"]
mod real;

use std::path::{Path, PathBuf};

use common::*;
use real::*;
use serde_json::{Value, json};

/// A running server and its port.
fn server() -> (Fixture, u16) {
    let mut fx = Fixture::start(&real_programs().hyper_server);
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

fn server_source() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/real/src/hyper_server.rs")
}

/// The handler's line that builds the response: `path`, `method`, `status`
/// and `body` are all in scope there.
fn response_line() -> u64 {
    line_in(
        &server_source(),
        "async fn handle_request",
        "let mut response = Response::new",
    )
}

fn results(c: &mut McpClient, probe: &Value) -> Value {
    c.call(
        "get_probe_results",
        json!({"probe_id": probe, "after": 0, "limit": 100, "wait_ms": 0}),
    )
    .ok()
}

/// Two files name the same source: equal, or one a path suffix of the
/// other (addr2line and liveprobe may join the compilation directory
/// differently).
fn same_file(a: &str, b: &str) -> bool {
    a == b || a.ends_with(&format!("/{b}")) || b.ends_with(&format!("/{a}"))
}

/// Every frame of every idle thread that lies in the server's code has the
/// function, file and line `addr2line -i` gives for its pc, inlined frames
/// included (caller frames are looked up at pc - 1, as debuggers do, since
/// their pc is a return address).
#[test]
fn hyper_idle_frames_match_addr2line_inlined_chains() {
    let (fx, port, mut c) = server_attached();
    for i in 0..3 {
        assert_eq!(http_request(port, "GET", &format!("/echo/{i}")).0, 200);
    }
    let exe = &real_programs().hyper_server;
    let stack = c
        .call(
            "stack_trace",
            json!({"pid": fx.pid, "all_threads": true, "max_frames": 256, "max_bytes": 1048576}),
        )
        .ok();
    let threads = stack["threads"].as_array().expect("threads");
    assert!(threads.len() >= 3, "main + 2 workers at least: {stack}");
    let ranges = mapped_ranges(fx.pid, exe);
    let bias = load_bias(fx.pid, exe);
    // Physical frames: runs of frames with one pc (inlined ones first).
    let mut groups: Vec<(u64, Vec<Value>)> = Vec::new();
    for thread in threads {
        let frames = thread["frames"].as_array().expect("frames");
        // A stack cut by max_frames may end inside an inline chain: its last
        // physical frame is not whole, so it is not compared.
        let whole = if thread["truncated"] == json!(true) {
            let last_pc = frames.last().map(|f| f["pc"].clone());
            frames
                .iter()
                .position(|f| Some(&f["pc"]) == last_pc.as_ref())
                .unwrap_or(frames.len())
        } else {
            frames.len()
        };
        let frames = &frames[..whole];
        let mut start = 0;
        while start < frames.len() {
            let pc_text = frames[start]["pc"].as_str().unwrap_or("");
            let end = frames[start..]
                .iter()
                .position(|f| f["pc"].as_str() != Some(pc_text))
                .map_or(frames.len(), |n| start + n);
            let pc = address_in(pc_text).unwrap_or_else(|| panic!("pc {pc_text:?}"));
            if ranges.iter().any(|(a, b)| (*a..*b).contains(&pc)) {
                let lookup = pc - bias - u64::from(start > 0);
                groups.push((lookup, frames[start..end].to_vec()));
            }
            start = end;
        }
    }
    assert!(
        groups.len() >= 10,
        "too few frames in the server's code: {stack}"
    );
    let lookups: Vec<u64> = groups.iter().map(|(a, _)| *a).collect();
    let chains = addr2line_chains(exe, &lookups);
    let mut wrong = Vec::new();
    let mut compared = 0;
    for ((lookup, got), expected) in groups.iter().zip(&chains) {
        let got: Vec<(String, Option<String>, Option<u64>)> = got
            .iter()
            .map(|f| {
                (
                    f["function"].as_str().unwrap_or("?").to_string(),
                    f["file"].as_str().map(str::to_string),
                    f["line"].as_u64(),
                )
            })
            .collect();
        compared += expected.len();
        let same = got.len() == expected.len()
            && got.iter().zip(expected).all(|(g, e)| {
                same_rust_function(&g.0, &e.0)
                    && g.2 == e.2
                    && match (&g.1, &e.1) {
                        (Some(a), Some(b)) => same_file(a, b),
                        (None, None) => true,
                        _ => false,
                    }
            });
        if !same {
            wrong.push(format!(
                "file address {lookup:#x}:\n  liveprobe {got:?}\n  addr2line {expected:?}"
            ));
        }
    }
    assert!(
        wrong.is_empty(),
        "{} of {} physical frames ({compared} frames by addr2line) differ:\n{}",
        wrong.len(),
        groups.len(),
        wrong.join("\n")
    );
}

/// `find_functions handle_request` answers with the handler (its async
/// body, defined in hyper_server.rs) first, in readable names, and within
/// the answer budget.
#[test]
fn hyper_find_functions_names_the_handler_first_and_readably() {
    let (fx, _port, mut c) = server_attached();
    let answer = c.call(
        "find_functions",
        json!({"pid": fx.pid, "query": "handle_request"}),
    );
    assert!(
        answer.text.len() <= 32 * 1024,
        "text of {} bytes",
        answer.text.len()
    );
    let found = answer.ok();
    let functions = found["functions"].as_array().expect("functions");
    let first = functions
        .first()
        .unwrap_or_else(|| panic!("nothing found: {found}"));
    assert!(
        first["name"]
            .as_str()
            .is_some_and(|n| n.starts_with("hyper_server::handle_request")),
        "first: {first}"
    );
    assert!(
        first["file"]
            .as_str()
            .is_some_and(|f| f.ends_with("hyper_server.rs")),
        "first: {first}"
    );
    let mangled: Vec<&str> = functions
        .iter()
        .filter_map(|f| f["name"].as_str())
        .filter(|n| n.contains("$LT$") || n.contains("$u7b$") || has_legacy_hash(n))
        .collect();
    assert!(mangled.is_empty(), "raw mangled names listed: {mangled:?}");
}

/// A legacy Rust symbol's hash suffix: `::h` and 16 hex digits at the end.
fn has_legacy_hash(name: &str) -> bool {
    name.rsplit_once("::h")
        .is_some_and(|(_, hash)| hash.len() == 16 && hash.chars().all(|c| c.is_ascii_hexdigit()))
}

/// Sends `n` requests and returns the count a metric probe reports.
fn count_after_requests(c: &mut McpClient, port: u16, probe: &Value, n: usize) -> Value {
    for i in 0..n {
        let (status, body) = http_request(port, "GET", &format!("/echo/n{i}"));
        assert_eq!((status, body.as_str()), (200, format!("n{i}\n").as_str()));
    }
    let r = results(c, probe);
    assert_eq!(r["hits"], n, "{r}");
    r["items"]
        .as_array()
        .and_then(|items| items.last())
        .map(|item| item["count"].clone())
        .unwrap_or(Value::Null)
}

/// A count at the handler by the name liveprobe lists for it (the async
/// fn's body) is the number of requests sent, on both engines.
#[test]
fn hyper_count_at_the_handler_body_is_the_number_of_requests() {
    for engine in ["uprobe", "ptrace"] {
        let (_fx, port, mut c) = server_attached();
        let pid = _fx.pid;
        let set = c
            .call(
                "set_metric",
                json!({"pid": pid, "location": "hyper_server::handle_request::{{closure}}",
                       "kind": "count", "engine": engine}),
            )
            .ok();
        assert_eq!(set["engine"], engine, "{set}");
        let count = count_after_requests(&mut c, port, &set["probe_id"], 7);
        assert_eq!(count, 7, "{engine}");
    }
}

/// The same count by the plain name a person types, `handle_request`: the
/// async fn (which makes the future, once per request) or its body (polled
/// once per request: nothing in it waits) — either way one per request.
#[test]
fn hyper_count_at_the_handler_by_its_plain_name() {
    for engine in ["uprobe", "ptrace"] {
        let (fx, port, mut c) = server_attached();
        let set = c
            .call(
                "set_metric",
                json!({"pid": fx.pid, "location": "handle_request", "kind": "count",
                       "engine": engine}),
            )
            .ok();
        let count = count_after_requests(&mut c, port, &set["probe_id"], 5);
        assert_eq!(count, 5, "{engine}");
    }
}

/// A count at a line of the handler run once per request.
#[test]
fn hyper_count_at_a_handler_line_is_the_number_of_requests() {
    for engine in ["uprobe", "ptrace"] {
        let (fx, port, mut c) = server_attached();
        let set = c
            .call(
                "set_metric",
                json!({"pid": fx.pid, "location": format!("hyper_server.rs:{}", response_line()),
                       "kind": "count", "engine": engine}),
            )
            .ok();
        let count = count_after_requests(&mut c, port, &set["probe_id"], 6);
        assert_eq!(count, 6, "{engine}: {set}");
    }
}

/// gdb stopped at the handler's response line during one request: what it
/// prints for `exprs`.
fn gdb_at_line_during_request(
    pid: i32,
    port: u16,
    line: u64,
    path: &str,
    exprs: &[&str],
) -> Vec<String> {
    let path = path.to_string();
    gdb_prints_at_breakpoint(pid, &format!("hyper_server.rs:{line}"), exprs, move || {
        assert_eq!(http_request(port, "GET", &path).0, 200);
    })
}

/// A snapshot at the handler's response line reads the request's path and
/// method and the chosen status: the values gdb prints stopped at the same
/// line for the same request. (`auto`: the uprobe engine refuses this
/// capture, saying why, and auto falls back to ptrace.)
#[test]
fn hyper_snapshot_in_the_handler_reads_the_request_as_gdb_does() {
    let line = response_line();
    let exprs = ["path", "*method", "status"];
    for engine in ["auto", "ptrace"] {
        let (fx, port) = server();
        let gdb = gdb_at_line_during_request(fx.pid, port, line, "/echo/gdb", &exprs);
        assert_eq!(gdb[0], "\"/echo/gdb\"", "{gdb:?}");
        assert!(gdb[1].contains("Get"), "{gdb:?}");
        assert!(gdb[2].contains("(200)"), "{gdb:?}");

        let mut c = McpClient::start();
        c.call("attach", json!({"pid": fx.pid})).ok();
        let set = c.call(
            "set_snapshot",
            json!({"pid": fx.pid, "location": format!("hyper_server.rs:{line}"),
                   "expressions": exprs, "engine": engine}),
        );
        let set = set.ok();
        assert_eq!(set["resolved"].as_array().map(Vec::len), Some(1), "{set}");
        assert_eq!(http_request(port, "GET", "/echo/gdb").0, 200);
        let r = results(&mut c, &set["probe_id"]);
        let item = &r["items"][0];
        let values = item["expressions"]
            .as_array()
            .unwrap_or_else(|| panic!("{engine}: {r}"));
        let path = &values[0];
        assert_eq!(path["value"], "\"/echo/gdb\"", "{engine}: path {path}");
        let method = values[1].to_string();
        assert!(
            method.contains("Get") || method.contains("GET"),
            "{engine}: method {method}"
        );
        let status = values[2].to_string();
        assert!(status.contains("200"), "{engine}: status {status}");
    }
}

/// A snapshot's frame 0 at a handler line is the handler (inlined into
/// hyper's dispatcher at opt-level 3) at that file:line, as gdb's `bt`
/// says (`hyper_server::handle_request::{async_fn#0} () at
/// src/hyper_server.rs:LINE`), not the function it is inlined into. The
/// site is labelled with that same name (one function, one name), though
/// the legacy symbol spells it `handle_request::{{closure}}`.
#[test]
fn hyper_snapshot_hit_names_the_handler_frame_and_line() {
    let line = response_line();
    let (_fx, port, mut c) = server_attached();
    let set = c
        .call(
            "set_snapshot",
            json!({"pid": _fx.pid, "location": format!("hyper_server.rs:{line}"), "frames": 2}),
        )
        .ok();
    assert_eq!(
        set["resolved"][0]["function"], "hyper_server::handle_request::{async_fn#0}",
        "{set}"
    );
    assert_eq!(http_request(port, "GET", "/").0, 200);
    let r = results(&mut c, &set["probe_id"]);
    let frame = &r["items"][0]["frames"][0];
    assert_eq!(frame["function"], set["resolved"][0]["function"], "{frame}");
    assert!(
        frame["file"]
            .as_str()
            .is_some_and(|f| f.ends_with("hyper_server.rs")),
        "{frame}"
    );
    assert_eq!(frame["line"], line, "{frame}");
    let names: Vec<&str> = frame["variables"]
        .as_array()
        .map(|vs| vs.iter().filter_map(|v| v["name"].as_str()).collect())
        .unwrap_or_default();
    for name in ["path", "method", "status", "body"] {
        assert!(
            names.contains(&name),
            "{name} not in frame 0's variables {names:?}"
        );
    }
}

/// Lines whose hit counts are compared with gdb's: (file under hyper's
/// sources or this server's, a line before the one meant, the line meant).
/// Hyper's request parser (its header loop runs once per header; two per
/// request here) and the handler's response line.
const COUNTED_LINES: &[(&str, &str, &str)] = &[
    (
        "src/proto/h1/role.rs",
        "fn parse(buf: &mut BytesMut, ctx: ParseContext<'_>) -> ParseResult<RequestLine>",
        "for header in &headers_indices[..headers_len] {",
    ),
    (
        "src/proto/h1/role.rs",
        "fn parse(buf: &mut BytesMut, ctx: ParseContext<'_>) -> ParseResult<RequestLine>",
        "let name = header_name!(&slice[header.name.0..header.name.1]);",
    ),
    (
        "src/proto/h1/role.rs",
        "fn parse(buf: &mut BytesMut, ctx: ParseContext<'_>) -> ParseResult<RequestLine>",
        "headers.reserve(headers_len);",
    ),
    (
        "hyper_server.rs",
        "async fn handle_request",
        "let mut response = Response::new",
    ),
];

/// Sends `n` requests, then `quit`, and waits for the server to exit.
fn requests_then_quit(fx: &mut Fixture, port: u16, n: usize) {
    for i in 0..n {
        assert_eq!(http_request(port, "GET", &format!("/echo/{i}")).0, 200);
    }
    fx.send("quit");
}

/// Counts at lines of hyper's parser and of the handler equal gdb's hit
/// counts for breakpoints at the same lines while the same requests are
/// served, on both engines.
#[test]
fn hyper_line_counts_match_gdb_hit_counts() {
    let requests = 4;
    let mut wrong = Vec::new();
    for (file, after, needle) in COUNTED_LINES {
        let source = if *file == "hyper_server.rs" {
            server_source()
        } else {
            real_programs().hyper_src.join(file)
        };
        let line = line_in(&source, after, needle);
        let short = file.trim_start_matches("src/");
        let location = format!("{short}:{line}");
        let (mut fx, port) = server();
        let pid = fx.pid;
        let expected = gdb_hit_count(pid, &location, || {
            requests_then_quit(&mut fx, port, requests)
        });
        assert_eq!(fx.wait_exit(), Some(0));
        assert!(expected > 0, "gdb never stopped at {location} ({needle})");
        for engine in ["uprobe", "ptrace"] {
            let (mut fx, port, mut c) = server_attached();
            let set = c
                .call(
                    "set_metric",
                    json!({"pid": fx.pid, "location": location, "kind": "count", "engine": engine}),
                )
                .ok();
            requests_then_quit(&mut fx, port, requests);
            assert_eq!(fx.wait_exit(), Some(0));
            let got = results(&mut c, &set["probe_id"])["hits"]
                .as_u64()
                .unwrap_or(0);
            if got != expected {
                wrong.push(format!(
                    "{location} `{needle}` on {engine}: {got} hits, gdb {expected}; resolved {}",
                    set["resolved"]
                ));
            }
        }
    }
    assert!(
        wrong.is_empty(),
        "line counts differ from gdb's:\n{}",
        wrong.join("\n")
    );
}

/// Answers stay within the 32 KB budget the tool contract promises, text and
/// structured content alike: 10 snapshot hits of the handler with 16 frames
/// each (hyper's and tokio's frames hold large generic types).
#[test]
fn hyper_snapshot_results_stay_within_the_answer_budget() {
    let (fx, port, mut c) = server_attached();
    let set = c
        .call(
            "set_snapshot",
            json!({"pid": fx.pid, "location": format!("hyper_server.rs:{}", response_line()),
                   "frames": 16, "max_hits": 10}),
        )
        .ok();
    for i in 0..10 {
        assert_eq!(http_request(port, "GET", &format!("/echo/{i}")).0, 200);
    }
    let answer = c.call(
        "get_probe_results",
        json!({"probe_id": set["probe_id"], "after": 0, "limit": 100, "wait_ms": 0}),
    );
    let structured = answer.structured.to_string().len();
    let text = answer.text.len();
    assert!(
        structured <= 32 * 1024 && text <= 32 * 1024,
        "structuredContent {structured} bytes, text {text} bytes (budget 32768)"
    );
    assert!(!answer.is_error, "{}", answer.text);
    let items = answer.structured["items"]
        .as_array()
        .map(Vec::len)
        .unwrap_or(0);
    assert!(items >= 1, "no hit in the answer: {}", answer.text);
}

/// Discovery answers on a large release binary stay within the budget:
/// a common word in find_functions, every thread's stack, the locals of
/// hyper's and tokio's frames.
#[test]
fn hyper_discovery_answers_stay_within_the_answer_budget() {
    let (fx, port, mut c) = server_attached();
    assert_eq!(http_request(port, "GET", "/").0, 200);
    let mut over = Vec::new();
    let mut check = |what: &str, answer: ToolAnswer| {
        let structured = answer.structured.to_string().len();
        let text = answer.text.len();
        if structured > 32 * 1024 || text > 32 * 1024 {
            over.push(format!(
                "{what}: structuredContent {structured} bytes, text {text} bytes"
            ));
        }
    };
    for query in ["poll", "drop_in_place", "parse"] {
        let answer = c.call("find_functions", json!({"pid": fx.pid, "query": query}));
        check(&format!("find_functions {query:?}"), answer);
    }
    let answer = c.call(
        "stack_trace",
        json!({"pid": fx.pid, "all_threads": true, "max_frames": 64}),
    );
    check("stack_trace all_threads", answer);
    for frame in 0..12 {
        let answer = c.call("read_locals", json!({"pid": fx.pid, "frame": frame}));
        check(&format!("read_locals frame {frame}"), answer);
    }
    assert!(
        over.is_empty(),
        "over the 32768-byte budget:\n{}",
        over.join("\n")
    );
}

/// A trait method is found by its readable name, as addr2line and
/// backtraces print it (`<Type as Trait>::method`), not only by the
/// mangled spelling.
#[test]
fn hyper_find_functions_finds_a_trait_method_by_its_readable_name() {
    let (fx, _port, mut c) = server_attached();
    let wanted = "<hyper::proto::h1::role::Server as hyper::proto::h1::Http1Transaction>::parse";
    let mut wrong = Vec::new();
    for query in [wanted, "Http1Transaction>::parse", "Server as"] {
        let found = c
            .call("find_functions", json!({"pid": fx.pid, "query": query}))
            .ok();
        let names: Vec<String> = found["functions"]
            .as_array()
            .map(|fs| {
                fs.iter()
                    .filter_map(|f| f["name"].as_str())
                    .map(|n| n.chars().take(120).collect())
                    .collect()
            })
            .unwrap_or_default();
        if !names
            .iter()
            .any(|n| wanted.starts_with(n.as_str()) || n.starts_with(wanted))
        {
            wrong.push(format!("query {query:?}: {names:?}"));
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}

/// The async handler has one name everywhere, DWARF's (as gdb and the
/// stack frames show it): `find_functions` lists it as
/// `hyper_server::handle_request::{async_fn#0}` and a probe on it is
/// labelled so, whether asked for by that name or by the legacy symbol's
/// spelling `handle_request::{{closure}}` (which `nm -C` prints).
#[test]
fn hyper_async_handler_has_one_name_and_answers_to_the_legacy_spelling() {
    let (fx, _port, mut c) = server_attached();
    let name = "hyper_server::handle_request::{async_fn#0}";
    for query in [
        "handle_request::{{closure}}",
        "handle_request::{async_fn#0}",
    ] {
        let found = c
            .call("find_functions", json!({"pid": fx.pid, "query": query}))
            .ok();
        assert_eq!(found["functions"][0]["name"], name, "{query}: {found}");
        let names: Vec<&str> = found["functions"]
            .as_array()
            .map(|fs| fs.iter().filter_map(|f| f["name"].as_str()).collect())
            .unwrap_or_default();
        assert!(
            names.iter().all(|n| !n.contains("{{closure}}")),
            "{query}: legacy spellings listed: {names:?}"
        );
        let set = c
            .call(
                "set_snapshot",
                json!({"pid": fx.pid, "location": query, "max_hits": 1}),
            )
            .ok();
        let labels: Vec<&Value> = set["resolved"]
            .as_array()
            .map(|sites| sites.iter().map(|s| &s["function"]).collect())
            .unwrap_or_default();
        assert!(
            !labels.is_empty() && labels.iter().all(|l| *l == name),
            "{query}: {set}"
        );
    }
}

/// State behind an `Arc` reads as Rust code reads it: `state.name` goes
/// through the Arc (auto-deref), as do `(*state).name` and
/// `state.requests`, which counts the requests so far.
#[test]
fn hyper_state_behind_an_arc_reads_through_the_arc() {
    let (fx, port, mut c) = server_attached();
    let set = c
        .call(
            "set_snapshot",
            json!({"pid": fx.pid, "location": format!("hyper_server.rs:{}", response_line()),
                   "max_hits": 3,
                   "expressions": ["state.name", "(*state).name", "state.requests"]}),
        )
        .ok();
    for _ in 0..3 {
        let (status, body) = http_request(port, "GET", "/");
        assert_eq!(
            (status, body.as_str()),
            (200, "hello from liveprobe-real\n")
        );
    }
    let r = results(&mut c, &set["probe_id"]);
    let items = r["items"].as_array().unwrap_or_else(|| panic!("{r}"));
    assert_eq!(items.len(), 3, "{r}");
    let mut wrong = Vec::new();
    for (k, item) in items.iter().enumerate() {
        let e = &item["expressions"];
        for i in [0, 1] {
            if e[i]["value"] != "\"liveprobe-real\"" {
                wrong.push(format!("hit {k}: {}", e[i]));
            }
        }
        // The handler's fetch_add has run for this request.
        if !e[2].to_string().contains(&format!("\"{}\"", k + 1)) {
            wrong.push(format!("hit {k}: requests {}", e[2]));
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}

/// Whether two spellings name the same Rust function: liveprobe names
/// frames from rustc's DWARF scopes as gdb does (`{impl#0}`,
/// `{closure#0}`, generic arguments), addr2line from the legacy symbol
/// (`<Type as Trait>::f`, `{{closure}}`). Generic arguments are dropped,
/// closures and async bodies are one kind, a `<A as B>` or `<A>` segment
/// stands for A's path, and `{impl#N}` matches any one segment.
fn same_rust_function(a: &str, b: &str) -> bool {
    let (a, b) = (rust_path_segments(a), rust_path_segments(b));
    a.len() == b.len()
        && a.iter()
            .zip(&b)
            .all(|(x, y)| x == y || x == "{impl}" || y == "{impl}")
}

fn rust_path_segments(name: &str) -> Vec<String> {
    // Split at top-level `::`, keeping `<...>` groups whole.
    let mut segments = Vec::new();
    let (mut depth, mut current) = (0usize, String::new());
    let chars: Vec<char> = name.chars().collect();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        match c {
            '<' => depth += 1,
            '>' => depth = depth.saturating_sub(1),
            ':' if depth == 0 && chars.get(i + 1) == Some(&':') => {
                segments.push(std::mem::take(&mut current));
                i += 2;
                continue;
            }
            _ => {}
        }
        current.push(c);
        i += 1;
    }
    segments.push(current);
    let mut out = Vec::new();
    for segment in segments {
        if let Some(inner) = segment.strip_prefix('<').and_then(|s| s.strip_suffix('>')) {
            // `<A as B>` or `<A>`: A's path.
            let self_type = split_top_level_as(inner);
            out.extend(rust_path_segments(self_type));
            continue;
        }
        let base = segment.split('<').next().unwrap_or("").to_string();
        let kind = if base.starts_with("{impl#") {
            "{impl}".to_string()
        } else if base.starts_with("{closure#")
            || base.starts_with("{async_fn#")
            || base.starts_with("{async_block#")
            || base == "{{closure}}"
        {
            "{closure}".to_string()
        } else {
            base
        };
        out.push(kind);
    }
    out
}

/// `A` of `A as B` (at the top level of angle brackets), or all of it.
fn split_top_level_as(inner: &str) -> &str {
    let mut depth = 0usize;
    for (i, c) in inner.char_indices() {
        match c {
            '<' => depth += 1,
            '>' => depth = depth.saturating_sub(1),
            ' ' if depth == 0 && inner[i..].starts_with(" as ") => return &inner[..i],
            _ => {}
        }
    }
    inner
}
