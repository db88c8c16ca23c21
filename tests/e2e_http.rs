//! `liveprobe --http`: the real binary serving MCP over streamable HTTP,
//! driven over real HTTP by curl, raw sockets, the official Python SDK and
//! the MCP Inspector CLI (`tools/test.sh` installs both clients).

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::Receiver;
use std::time::Duration;

use common::probes::*;
use common::*;
use serde_json::{Value, json};

const TOKEN: &str = "test-token-0123456789abcdef0123456789abcdef";

/// A `liveprobe --http 127.0.0.1:0` process, killed when dropped.
struct HttpServer {
    child: Child,
    url: String,
    authority: String,
    stderr: Receiver<String>,
    /// Stderr lines before the one that says where it serves.
    early: Vec<String>,
}

impl HttpServer {
    fn start(extra: &[&str]) -> HttpServer {
        Self::start_env(extra, Some(TOKEN))
    }

    fn start_env(extra: &[&str], token: Option<&str>) -> HttpServer {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_liveprobe"));
        cmd.args(["--http", "127.0.0.1:0"])
            .args(extra)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        match token {
            Some(t) => cmd.env("LIVEPROBE_TOKEN", t),
            None => cmd.env_remove("LIVEPROBE_TOKEN"),
        };
        let mut child = cmd.spawn().expect("start liveprobe --http");
        let stderr = child.stderr.take().expect("stderr");
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                eprintln!("[liveprobe] {line}");
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let mut server = HttpServer {
            child,
            url: String::new(),
            authority: String::new(),
            stderr: rx,
            early: Vec::new(),
        };
        let line = loop {
            match server.stderr.recv_timeout(WAIT) {
                Ok(line) if line.starts_with("liveprobe: serving MCP on ") => break line,
                Ok(line) => server.early.push(line),
                Err(e) => panic!("liveprobe --http never said where it serves: {e}"),
            }
        };
        server.url = line
            .trim_start_matches("liveprobe: serving MCP on ")
            .trim()
            .to_string();
        server.authority = server
            .url
            .trim_start_matches("http://")
            .trim_start_matches("https://")
            .trim_end_matches("/mcp")
            .to_string();
        server
    }

    fn port(&self) -> u16 {
        self.authority
            .rsplit(':')
            .next()
            .and_then(|p| p.parse().ok())
            .expect("port")
    }
}

impl Drop for HttpServer {
    fn drop(&mut self) {
        // SIGTERM: liveprobe detaches and removes its token file.
        // SAFETY: kill(2) on our own child's pid.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        let _ = self.child.wait();
    }
}

/// One HTTP exchange as curl saw it.
#[derive(Debug)]
struct Reply {
    status: u16,
    headers: Vec<(String, String)>,
    body: String,
}

impl Reply {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The JSON-RPC message in the body (plain JSON, or the SSE event that
    /// carries a response).
    fn message(&self) -> Value {
        if let Ok(v) = serde_json::from_str::<Value>(&self.body) {
            return v;
        }
        self.body
            .lines()
            .filter_map(|l| l.strip_prefix("data:"))
            .filter_map(|d| serde_json::from_str::<Value>(d.trim()).ok())
            .find(|m| m.get("id").is_some())
            .unwrap_or_else(|| panic!("no JSON-RPC response in {:?}", self.body))
    }
}

/// `curl -i`; `body` goes in a file (any size).
fn curl(method: &str, url: &str, headers: &[String], body: Option<&[u8]>) -> Reply {
    curl_with(&[], method, url, headers, body)
}

/// `curl -i` with `extra` arguments first.
fn curl_with(
    extra: &[&str],
    method: &str,
    url: &str,
    headers: &[String],
    body: Option<&[u8]>,
) -> Reply {
    let mut cmd = Command::new("curl");
    cmd.args(extra);
    cmd.args(["-s", "-S", "-i", "--max-time", "60", "-X", method, url]);
    for h in headers {
        cmd.args(["-H", h]);
    }
    let file = tempfile::NamedTempFile::new().expect("temp file");
    if let Some(body) = body {
        std::fs::write(file.path(), body).expect("write body");
        cmd.arg("--data-binary")
            .arg(format!("@{}", file.path().display()));
    }
    let out = cmd
        .output()
        .expect("curl is needed by this test (apt-get install curl)");
    let mut text = String::from_utf8_lossy(&out.stdout).to_string();
    // A big body is sent after `100 Continue`: the answer is the next block.
    while text.starts_with("HTTP/1.1 100") {
        text = text
            .split_once("\r\n\r\n")
            .map(|(_, rest)| rest.to_string())
            .unwrap_or_default();
    }
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or_else(|| {
        panic!(
            "curl got no HTTP answer: {text:?} {}",
            String::from_utf8_lossy(&out.stderr)
        )
    });
    let mut lines = head.lines();
    let status = lines
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no status in {head:?}"));
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_string(), v.trim().to_string()))
        .collect();
    Reply {
        status,
        headers,
        body: body.to_string(),
    }
}

fn mcp_headers(token: Option<&str>) -> Vec<String> {
    let mut h = vec![
        "Content-Type: application/json".to_string(),
        "Accept: application/json, text/event-stream".to_string(),
    ];
    if let Some(t) = token {
        h.push(format!("Authorization: Bearer {t}"));
    }
    h
}

fn initialize_body() -> Vec<u8> {
    json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
        "protocolVersion": "2025-11-25", "capabilities": {},
        "clientInfo": {"name": "e2e_http", "version": "1"}}})
    .to_string()
    .into_bytes()
}

/// A 2025-11-25 session opened with curl: its id.
fn open_session(server: &HttpServer) -> String {
    let r = curl(
        "POST",
        &server.url,
        &mcp_headers(Some(TOKEN)),
        Some(&initialize_body()),
    );
    assert_eq!(r.status, 200, "{r:?}");
    let id = r
        .header("mcp-session-id")
        .expect("a session id")
        .to_string();
    let h = session_headers(&id);
    let done = json!({"jsonrpc": "2.0", "method": "notifications/initialized"}).to_string();
    let r = curl("POST", &server.url, &h, Some(done.as_bytes()));
    assert_eq!(r.status, 202, "{r:?}");
    id
}

/// The headers of a request in session `session`.
fn session_headers(session: &str) -> Vec<String> {
    let mut h = mcp_headers(Some(TOKEN));
    h.push(format!("Mcp-Session-Id: {session}"));
    h.push("MCP-Protocol-Version: 2025-11-25".into());
    h
}

/// The ids of the probes `list_probes` shows to session `session`.
fn listed_probe_ids(server: &HttpServer, session: &str) -> Vec<Value> {
    let listed = call_in_session(server, session, "list_probes", json!({}));
    listed["probes"]
        .as_array()
        .unwrap_or_else(|| panic!("no probes in {listed}"))
        .iter()
        .map(|p| p["probe_id"].clone())
        .collect()
}

/// A tool call in session `session`: the structured answer.
fn call_in_session(server: &HttpServer, session: &str, tool: &str, args: Value) -> Value {
    let h = session_headers(session);
    let body = json!({"jsonrpc": "2.0", "id": 2, "method": "tools/call",
        "params": {"name": tool, "arguments": args}})
    .to_string();
    let r = curl("POST", &server.url, &h, Some(body.as_bytes()));
    assert_eq!(r.status, 200, "{r:?}");
    let m = r.message();
    assert_eq!(m["result"]["isError"], json!(false), "{m}");
    m["result"]["structuredContent"].clone()
}

fn close_session(server: &HttpServer, session: &str) {
    let mut h = mcp_headers(Some(TOKEN));
    h.push(format!("Mcp-Session-Id: {session}"));
    let r = curl("DELETE", &server.url, &h, None);
    assert!(r.status < 300, "{r:?}");
}

#[test]
fn http_refuses_requests_without_the_token_or_from_a_foreign_origin_or_host() {
    let server = HttpServer::start(&["--allowed-origin", "https://agent.example"]);
    let body = initialize_body();

    let r = curl("POST", &server.url, &mcp_headers(None), Some(&body));
    assert_eq!(r.status, 401, "{r:?}");
    assert!(r.body.contains("no bearer token"), "{r:?}");
    assert!(r.header("www-authenticate").is_some(), "{r:?}");

    let r = curl(
        "POST",
        &server.url,
        &mcp_headers(Some("wrong-token")),
        Some(&body),
    );
    assert_eq!(r.status, 401, "{r:?}");
    assert!(r.body.contains("wrong bearer token"), "{r:?}");

    let mut h = mcp_headers(Some(TOKEN));
    h.push("Origin: http://evil.example".into());
    let r = curl("POST", &server.url, &h, Some(&body));
    assert_eq!(r.status, 403, "{r:?}");
    assert!(r.body.contains("--allowed-origin"), "{r:?}");

    let mut h = mcp_headers(Some(TOKEN));
    h.push(format!("Host: evil.example:{}", server.port()));
    let r = curl("POST", &server.url, &h, Some(&body));
    assert_eq!(r.status, 403, "{r:?}");
    assert!(r.body.contains("--allowed-host"), "{r:?}");

    // The refusals changed nothing: the token opens a session, from an
    // allowed origin too.
    let mut h = mcp_headers(Some(TOKEN));
    h.push("Origin: https://agent.example".into());
    let r = curl("POST", &server.url, &h, Some(&body));
    assert_eq!(r.status, 200, "{r:?}");
    assert!(r.header("mcp-session-id").is_some(), "{r:?}");
    assert_eq!(r.message()["result"]["serverInfo"]["name"], "liveprobe");
}

#[test]
fn http_refuses_a_10_mb_body_and_garbage_json_and_keeps_serving() {
    let server = HttpServer::start(&[]);
    let mut huge = br#"{"jsonrpc":"2.0","id":1,"method":"tools/list","params":{"pad":""#.to_vec();
    huge.resize(10 * 1024 * 1024, b'a');
    huge.extend_from_slice(b"\"}}");
    let r = curl("POST", &server.url, &mcp_headers(Some(TOKEN)), Some(&huge));
    assert_eq!(r.status, 413, "{}", r.status);
    assert!(r.body.contains("1 MiB"), "{r:?}");

    for garbage in [&b"{not json"[..], b"\x00\xff\xfe", b""] {
        let r = curl(
            "POST",
            &server.url,
            &mcp_headers(Some(TOKEN)),
            Some(garbage),
        );
        assert_eq!(r.status, 400, "{r:?}");
        assert_eq!(r.message()["error"]["code"], -32700, "{r:?}");
        assert!(r.body.contains("not JSON"), "{r:?}");
    }

    let session = open_session(&server);
    let list = call_in_session(
        &server,
        &session,
        "list_processes",
        json!({"query": "liveprobe"}),
    );
    assert!(list["processes"].is_array(), "{list}");
}

#[test]
fn http_bounds_sessions_and_200_connections_and_keeps_serving() {
    let server = HttpServer::start(&["--max-sessions", "2", "--max-connections", "64"]);

    // Sessions: two fit, the third is refused with the reason, and ending
    // one makes room.
    let first = open_session(&server);
    let _second = open_session(&server);
    let r = curl(
        "POST",
        &server.url,
        &mcp_headers(Some(TOKEN)),
        Some(&initialize_body()),
    );
    assert_eq!(r.status, 503, "{r:?}");
    assert!(r.body.contains("--max-sessions"), "{r:?}");
    assert_eq!(r.message()["id"], 1, "{r:?}");
    close_session(&server, &first);
    let _third = open_session(&server);

    // 200 connections at once: the first 64 are served, the rest are told
    // why and closed.
    let mut sockets: Vec<std::net::TcpStream> = (0..200)
        .map(|_| std::net::TcpStream::connect(&server.authority).expect("connect"))
        .collect();
    let request = format!(
        "GET /elsewhere HTTP/1.1\r\nHost: {}\r\nAuthorization: Bearer {TOKEN}\r\n\r\n",
        server.authority
    );
    let (mut served, mut refused) = (0, 0);
    for s in &mut sockets {
        s.set_read_timeout(Some(WAIT)).expect("timeout");
        s.write_all(request.as_bytes()).expect("send");
        let mut answer = Vec::new();
        let mut buf = [0u8; 4096];
        // Read until the end of the body (its length is in the header).
        loop {
            let n = s.read(&mut buf).expect("read the answer");
            answer.extend_from_slice(&buf[..n]);
            let text = String::from_utf8_lossy(&answer);
            if n == 0 || text.contains("\"}}") {
                break;
            }
        }
        let text = String::from_utf8_lossy(&answer);
        if text.starts_with("HTTP/1.1 404") {
            assert!(text.contains("the MCP endpoint is /mcp"), "{text}");
            served += 1;
        } else {
            assert!(text.starts_with("HTTP/1.1 503"), "{text}");
            assert!(text.contains("--max-connections"), "{text}");
            refused += 1;
        }
    }
    assert_eq!(served + refused, 200);
    assert!((1..=64).contains(&served), "served {served}");
    assert!(refused >= 136, "refused {refused}");
    drop(sockets);

    // Once they are gone the server serves again (their slots come back as
    // it notices the closes).
    let mut served_again = false;
    for _ in 0..200 {
        let r = curl(
            "GET",
            &format!("http://{}/elsewhere", server.authority),
            &[],
            None,
        );
        if r.status == 404 {
            served_again = true;
            break;
        }
        assert_eq!(r.status, 503, "{r:?}");
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(
        served_again,
        "the server serves again once the connections are closed"
    );
    let list = call_in_session(
        &server,
        &_third,
        "list_processes",
        json!({"query": "liveprobe"}),
    );
    assert!(list["processes"].is_array(), "{list}");
}

#[test]
fn http_without_liveprobe_token_writes_a_private_token_file() {
    use std::os::unix::fs::PermissionsExt;
    // Default place: the path is printed, the file is private, and it goes
    // when liveprobe stops.
    let server = HttpServer::start_env(&[], None);
    let said = server
        .early
        .iter()
        .find_map(|l| l.strip_prefix("liveprobe: token file "))
        .unwrap_or_else(|| panic!("no token file line in {:?}", server.early));
    let path = std::path::PathBuf::from(said.split(" (").next().expect("path"));
    let mode = std::fs::metadata(&path)
        .expect("token file")
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);
    let token = std::fs::read_to_string(&path).expect("read token");
    let r = curl(
        "POST",
        &server.url,
        &mcp_headers(Some(token.trim())),
        Some(&initialize_body()),
    );
    assert_eq!(r.status, 200, "{r:?}");
    drop(server);
    let dir = tempfile::tempdir().expect("dir");
    let file = dir.path().join("token");
    let server = HttpServer::start_env(&["--token-file", file.to_str().expect("utf8")], None);
    let mode = std::fs::metadata(&file)
        .expect("token file")
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);
    let token = std::fs::read_to_string(&file).expect("read token");
    let token = token.trim();
    assert_eq!(token.len(), 64, "{token}");
    let r = curl(
        "POST",
        &server.url,
        &mcp_headers(Some(token)),
        Some(&initialize_body()),
    );
    assert_eq!(r.status, 200, "{r:?}");
    drop(server);
}

#[test]
fn http_on_a_remote_address_needs_allow_remote_and_a_long_token() {
    let run = |args: &[&str], token: &str| {
        let out = Command::new(env!("CARGO_BIN_EXE_liveprobe"))
            .args(args)
            .env("LIVEPROBE_TOKEN", token)
            .stdin(Stdio::null())
            .output()
            .expect("run liveprobe");
        assert!(!out.status.success());
        String::from_utf8_lossy(&out.stderr).to_string()
    };
    let said = run(&["--http", "0.0.0.0:0"], TOKEN);
    assert!(said.contains("--allow-remote"), "{said}");
    let said = run(&["--http", "0.0.0.0:0", "--allow-remote"], "short");
    assert!(said.contains("at least 32"), "{said}");
    let said = run(&["--http", "127.0.0.1:0"], "  ");
    assert!(said.contains("empty"), "{said}");
}

/// Runs tests/clients/python_http.py in `mode` against a fresh server and
/// fixture; returns (server, fixture, first line, second line).
fn python_client_session(mode: &str) -> (HttpServer, Fixture, Value, Value) {
    let server = HttpServer::start(&[]);
    let mut fx = Fixture::start(&orders());
    let script =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/clients/python_http.py");
    let mut client = Command::new("python3")
        .arg(&script)
        .args([&server.url, TOKEN, &fx.pid.to_string(), mode])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("run python3");
    let mut out = BufReader::new(client.stdout.take().expect("stdout"));
    let mut line = String::new();
    out.read_line(&mut line).expect("read");
    let armed: Value = serde_json::from_str(&line).unwrap_or_else(|_| {
        panic!(
            "python SDK client failed (is `mcp` 2.x installed? tools/test.sh installs it): {line:?}"
        )
    });
    let own = armed["own_address"].as_str().expect("address").to_string();
    let kept = armed["kept_address"].as_str().expect("address").to_string();
    assert_eq!(byte_at(fx.pid, &own), 0xcc, "{armed}");
    assert_eq!(byte_at(fx.pid, &kept), 0xcc, "{armed}");
    fx.send("run 1");
    fx.expect_line("checksum");
    client
        .stdin
        .take()
        .expect("stdin")
        .write_all(b"go\n")
        .expect("tell the client");
    line.clear();
    out.read_line(&mut line).expect("read");
    let read: Value = serde_json::from_str(&line).unwrap_or_else(|_| panic!("{line:?}"));
    assert!(client.wait().expect("client exit").success());
    (server, fx, armed, read)
}

fn wait_for_byte(pid: i32, addr: &str, wanted: impl Fn(u8) -> bool) -> u8 {
    let mut b = byte_at(pid, addr);
    for _ in 0..400 {
        if wanted(b) {
            break;
        }
        std::thread::sleep(Duration::from_millis(25));
        b = byte_at(pid, addr);
    }
    b
}

#[test]
fn python_sdk_session_over_http_sets_and_reads_a_probe_that_ends_with_the_session() {
    let (server, mut fx, armed, read) = python_client_session("legacy");
    let tools: Vec<&str> = armed["tools"]
        .as_array()
        .expect("tools")
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert!(
        tools.contains(&"attach") && tools.contains(&"set_snapshot"),
        "{tools:?}"
    );
    assert!(read["snapshot_hits"].as_u64().unwrap_or(0) >= 1, "{read}");
    let locals = read["first_locals"].to_string();
    assert!(
        locals.contains("\"o\"") && locals.contains("\"worker\""),
        "{read}"
    );
    assert_eq!(
        read["listed"],
        json!([armed["own"], armed["kept"]]),
        "{read}"
    );

    // The session ended (the SDK closed it): its own probe left the code,
    // the kept one is still armed and any session with the token sees it.
    let own = armed["own_address"].as_str().expect("address");
    let kept = armed["kept_address"].as_str().expect("address");
    assert_ne!(
        wait_for_byte(fx.pid, own, |b| b != 0xcc),
        0xcc,
        "the session's probe is gone"
    );
    assert_eq!(byte_at(fx.pid, kept), 0xcc, "the kept probe stays");
    let other = open_session(&server);
    let ids = listed_probe_ids(&server, &other);
    assert_eq!(ids, vec![armed["kept"].clone()], "{ids:?}");
    let removed = call_in_session(
        &server,
        &other,
        "remove_probe",
        json!({"probe_id": armed["kept"]}),
    );
    assert_eq!(removed["probe_id"], armed["kept"]);
    assert_ne!(byte_at(fx.pid, kept), 0xcc);
    fx.send("run 1");
    fx.expect_line("checksum");
}

#[test]
fn python_sdk_stateless_over_http_probes_belong_to_the_token() {
    let (server, mut fx, armed, read) = python_client_session("auto");
    assert!(read["snapshot_hits"].as_u64().unwrap_or(0) >= 1, "{read}");
    // 2026-07-28 requests have no session: both probes outlive the client,
    // and a session with the token sees and removes them.
    let own = armed["own_address"].as_str().expect("address");
    assert_eq!(
        byte_at(fx.pid, own),
        0xcc,
        "a token's probe lives until removed"
    );
    let other = open_session(&server);
    let listed = call_in_session(&server, &other, "list_probes", json!({}));
    assert_eq!(
        listed["probes"].as_array().map(Vec::len),
        Some(2),
        "{listed}"
    );
    call_in_session(
        &server,
        &other,
        "remove_probe",
        json!({"probe_id": armed["own"]}),
    );
    assert_ne!(byte_at(fx.pid, own), 0xcc);
    fx.send("run 1");
    fx.expect_line("checksum");
}

/// A session whose client goes quiet (vanished without DELETE) is ended
/// after `--session-idle-timeout`: its probes are removed, one set with
/// `keep: true` stays and another session can still remove it.
#[test]
fn an_idle_session_ends_and_takes_its_probes_but_not_the_kept_ones() {
    let server = HttpServer::start(&["--session-idle-timeout", "1"]);
    let mut fx = Fixture::start(&orders());
    let a = open_session(&server);
    call_in_session(&server, &a, "attach", json!({"pid": fx.pid}));
    let dropped = call_in_session(
        &server,
        &a,
        "set_metric",
        json!({"pid": fx.pid, "location": "process_order", "kind": "count", "engine": "ptrace"}),
    );
    let kept = call_in_session(
        &server,
        &a,
        "set_metric",
        json!({"pid": fx.pid, "location": "make_order", "kind": "count", "engine": "ptrace",
               "keep": true}),
    );
    let dropped_at = dropped["resolved"][0]["address"].as_str().expect("address");
    let kept_at = kept["resolved"][0]["address"].as_str().expect("address");
    assert_eq!(byte_at(fx.pid, dropped_at), 0xcc);
    // No request from session a from now on.
    assert_ne!(
        wait_for_byte(fx.pid, dropped_at, |b| b != 0xcc),
        0xcc,
        "the idle session's probe is still armed"
    );
    assert_eq!(byte_at(fx.pid, kept_at), 0xcc, "the kept probe was removed");
    // The ended session is gone for its client too.
    let h = session_headers(&a);
    let body = json!({"jsonrpc": "2.0", "id": 5, "method": "tools/call",
        "params": {"name": "list_probes", "arguments": {}}})
    .to_string();
    let r = curl("POST", &server.url, &h, Some(body.as_bytes()));
    assert!(r.status >= 400, "an ended session still answers: {r:?}");
    let b = open_session(&server);
    let ids = listed_probe_ids(&server, &b);
    assert_eq!(ids, vec![kept["probe_id"].clone()], "{ids:?}");
    call_in_session(
        &server,
        &b,
        "remove_probe",
        json!({"probe_id": kept["probe_id"]}),
    );
    assert_ne!(wait_for_byte(fx.pid, kept_at, |b| b != 0xcc), 0xcc);
    fx.send("run 1");
    fx.expect_line("checksum");
}

#[test]
fn a_session_cannot_see_or_remove_another_sessions_probe() {
    let server = HttpServer::start(&[]);
    let mut fx = Fixture::start(&orders());
    let a = open_session(&server);
    let b = open_session(&server);
    call_in_session(&server, &a, "attach", json!({"pid": fx.pid}));
    let set = call_in_session(
        &server,
        &a,
        "set_metric",
        json!({"pid": fx.pid, "location": "process_order", "kind": "count", "engine": "ptrace"}),
    );
    let listed = call_in_session(&server, &b, "list_probes", json!({}));
    assert_eq!(listed["probes"], json!([]), "{listed}");
    let h = session_headers(&b);
    let body = json!({"jsonrpc": "2.0", "id": 3, "method": "tools/call",
        "params": {"name": "remove_probe", "arguments": {"probe_id": set["probe_id"]}}})
    .to_string();
    let m = curl("POST", &server.url, &h, Some(body.as_bytes())).message();
    assert_eq!(m["result"]["isError"], json!(true), "{m}");
    // Nor hear of its results: subscribing to its resource is refused.
    let uri = format!("probe://{}/results", set["probe_id"]);
    let body = json!({"jsonrpc": "2.0", "id": 4, "method": "resources/subscribe",
        "params": {"uri": uri}})
    .to_string();
    let m = curl("POST", &server.url, &h, Some(body.as_bytes())).message();
    assert!(
        m["error"]["message"]
            .as_str()
            .is_some_and(|e| e.contains("no probe")),
        "{m}"
    );
    let addr = set["resolved"][0]["address"].as_str().expect("address");
    assert_eq!(byte_at(fx.pid, addr), 0xcc);
    // Closing session a ends its probe.
    close_session(&server, &a);
    assert_ne!(wait_for_byte(fx.pid, addr, |b| b != 0xcc), 0xcc);
    fx.send("run 1");
    fx.expect_line("checksum");
}

#[test]
fn mcp_inspector_cli_lists_tools_over_http_with_the_token() {
    let server = HttpServer::start(&[]);
    // tests/inspector pins a version with --header (tools/test.sh installs it).
    let inspector = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/inspector/node_modules/.bin/mcp-inspector");
    assert!(
        inspector.exists(),
        "the MCP Inspector CLI is not installed: run tools/test.sh, or (cd tests/inspector && npm install)"
    );
    let run = |token: &str| {
        Command::new(&inspector)
            .stdin(Stdio::null())
            .args(["--cli", &server.url, "--transport", "http", "--header"])
            .arg(format!("Authorization: Bearer {token}"))
            .args(["--method", "tools/list"])
            .output()
            .expect("run inspector")
    };
    let out = run(TOKEN);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let listed: Value = serde_json::from_slice(&out.stdout).expect("inspector printed JSON");
    let names: Vec<&str> = listed["tools"]
        .as_array()
        .expect("tools")
        .iter()
        .filter_map(|t| t["name"].as_str())
        .collect();
    assert!(
        names.contains(&"attach") && names.contains(&"set_snapshot"),
        "{names:?}"
    );
    let out = run("wrong");
    assert!(
        !out.status.success(),
        "a wrong token must fail: {}",
        String::from_utf8_lossy(&out.stdout)
    );
}

#[test]
fn http_over_tls_serves_with_the_token_and_refuses_without_it() {
    let dir = tempfile::tempdir().expect("dir");
    let cert = dir.path().join("cert.pem");
    let key = dir.path().join("key.pem");
    let made = Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-days",
            "1",
        ])
        .args([
            "-subj",
            "/CN=localhost",
            "-addext",
            "subjectAltName=IP:127.0.0.1,DNS:localhost",
        ])
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .output()
        .expect("openssl is needed by this test (apt-get install openssl)");
    assert!(
        made.status.success(),
        "{}",
        String::from_utf8_lossy(&made.stderr)
    );
    let (cert_s, key_s) = (cert.to_str().expect("utf8"), key.to_str().expect("utf8"));
    let server = HttpServer::start(&["--tls-cert", cert_s, "--tls-key", key_s]);
    assert!(server.url.starts_with("https://"), "{}", server.url);
    let ca = ["--cacert", cert_s];
    let r = curl_with(
        &ca,
        "POST",
        &server.url,
        &mcp_headers(Some(TOKEN)),
        Some(&initialize_body()),
    );
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(r.message()["result"]["serverInfo"]["name"], "liveprobe");
    let r = curl_with(
        &ca,
        "POST",
        &server.url,
        &mcp_headers(None),
        Some(&initialize_body()),
    );
    assert_eq!(r.status, 401, "{r:?}");
    // Plain HTTP to the TLS port gets no answer.
    let out = Command::new("curl")
        .args(["-s", "--max-time", "30", "-X", "POST"])
        .arg(server.url.replacen("https://", "http://", 1))
        .output()
        .expect("curl");
    assert!(!String::from_utf8_lossy(&out.stdout).contains("jsonrpc"));

    // Files that are not what they should be stop the start with the reason.
    let out = Command::new(env!("CARGO_BIN_EXE_liveprobe"))
        .args([
            "--http",
            "127.0.0.1:0",
            "--tls-cert",
            key_s,
            "--tls-key",
            key_s,
        ])
        .env("LIVEPROBE_TOKEN", TOKEN)
        .stdin(Stdio::null())
        .output()
        .expect("run liveprobe");
    assert!(!out.status.success());
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(said.contains("--tls-cert"), "{said}");
}
