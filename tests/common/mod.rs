//! Shared test support: fixture programs compiled at test time, running
//! fixtures the test controls through stdin, and a real MCP client that
//! drives the `liveprobe` binary over stdio JSON-RPC.
#![allow(dead_code)]

pub mod probes;

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::sync::mpsc::{Receiver, channel};
use std::time::Duration;

use serde_json::{Value, json};

/// How long any single wait in a test may take before the test fails with a
/// message (a hang is a failure, not a timing assertion).
pub const WAIT: Duration = Duration::from_secs(60);

/// Where compiled fixtures go.
pub fn fixture_dir() -> PathBuf {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/fixtures");
    std::fs::create_dir_all(&dir).expect("create target/fixtures");
    dir
}

/// The source directory of fixtures.
pub fn fixture_src(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(rel)
}

/// Compiles `tests/fixtures/<rel>` with the compiler its extension names
/// and `flags`, into `target/fixtures/<out_name>`. Rebuilt when the source is
/// newer. Written to a temporary name and renamed, so parallel test
/// processes never see a half-written binary.
pub fn build_fixture(rel: &str, out_name: &str, flags: &[&str]) -> PathBuf {
    // One build at a time in this test process: two threads building the
    // same fixture would race on it.
    static BUILDING: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _one_at_a_time = BUILDING.lock().unwrap_or_else(|e| e.into_inner());
    let src = fixture_src(rel);
    let out = fixture_dir().join(out_name);
    let newer = |a: &Path, b: &Path| {
        let m = |p: &Path| std::fs::metadata(p).and_then(|m| m.modified()).ok();
        match (m(a), m(b)) {
            (Some(a), Some(b)) => a > b,
            _ => true,
        }
    };
    if out.exists() && !newer(&src, &out) {
        return out;
    }
    let tmp = fixture_dir().join(format!("{out_name}.tmp.{}", std::process::id()));
    let mut cmd = match src.extension().and_then(|e| e.to_str()) {
        Some("c") => {
            let mut c = Command::new("gcc");
            c.arg("-g").arg("-pthread");
            c
        }
        Some("cpp") => {
            let mut c = Command::new("g++");
            c.arg("-g").arg("-pthread");
            c
        }
        Some("rs") => {
            let mut c = Command::new("rustc");
            c.arg("-g").arg("--edition=2021");
            c
        }
        other => panic!("no compiler for fixture extension {other:?}"),
    };
    cmd.args(flags).arg(&src).arg("-o").arg(&tmp);
    let status = cmd.status().expect("run compiler");
    assert!(status.success(), "compiling {rel} failed");
    std::fs::rename(&tmp, &out).expect("rename fixture");
    out
}

/// A running fixture, killed when dropped.
pub struct Fixture {
    pub child: Child,
    pub pid: i32,
    stdin: Option<ChildStdin>,
    lines: Receiver<String>,
}

impl Fixture {
    /// Starts `exe` and waits for its `ready <pid>` line.
    pub fn start(exe: &Path) -> Fixture {
        Fixture::start_with_args(exe, &[])
    }

    /// Starts `exe` with command-line `args` and waits for its `ready <pid>` line.
    pub fn start_with_args(exe: &Path, args: &[&str]) -> Fixture {
        // ETXTBSY: another thread of this test process may be forking while
        // a fixture binary was briefly open for writing; try again.
        let mut attempts = 0;
        let mut child = loop {
            match Command::new(exe)
                .args(args)
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .stderr(Stdio::null())
                .spawn()
            {
                Ok(child) => break child,
                Err(e) if e.raw_os_error() == Some(26) && attempts < 50 => {
                    attempts += 1;
                    std::thread::sleep(Duration::from_millis(20));
                }
                Err(e) => panic!("start fixture {}: {e}", exe.display()),
            }
        };
        let stdin = child.stdin.take();
        let lines = line_reader(child.stdout.take().expect("stdout"));
        let pid = child.id() as i32;
        let mut f = Fixture {
            child,
            pid,
            stdin,
            lines,
        };
        let ready = f.expect_line("ready");
        assert_eq!(ready, format!("ready {pid}"));
        f
    }

    /// Sends one line to the fixture's stdin.
    pub fn send(&mut self, line: &str) {
        let stdin = self.stdin.as_mut().expect("stdin open");
        // One write per line: a fixture that reads its line and exits must
        // not make a second write (the newline alone) fail with EPIPE.
        let written = stdin.write_all(format!("{line}\n").as_bytes());
        if let Err(e) = written {
            std::thread::sleep(Duration::from_millis(50));
            let said: Vec<String> = self.lines.try_iter().collect();
            panic!(
                "cannot write to fixture {} ({e}); it ended with {:?} after printing {said:?}",
                self.pid,
                self.child.try_wait()
            );
        }
    }

    /// Closes the fixture's stdin.
    pub fn close_stdin(&mut self) {
        self.stdin.take();
    }

    /// Waits for the next output line starting with `prefix`.
    pub fn expect_line(&mut self, prefix: &str) -> String {
        loop {
            let line = self
                .lines
                .recv_timeout(WAIT)
                .unwrap_or_else(|_| panic!("fixture printed no line starting with {prefix:?}"));
            if line.starts_with(prefix) {
                return line;
            }
        }
    }

    /// Waits for the fixture to exit and returns its exit code.
    pub fn wait_exit(&mut self) -> Option<i32> {
        let deadline = std::time::Instant::now() + WAIT;
        while std::time::Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                return status.code();
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        panic!("fixture {} did not exit", self.pid);
    }
}

impl Drop for Fixture {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn line_reader<R: std::io::Read + Send + 'static>(r: R) -> Receiver<String> {
    let (tx, rx) = channel();
    std::thread::spawn(move || {
        for line in BufReader::new(r).lines() {
            match line {
                Ok(l) => {
                    if tx.send(l).is_err() {
                        return;
                    }
                }
                Err(_) => return,
            }
        }
    });
    rx
}

/// A tool call's answer.
#[derive(Debug)]
pub struct ToolAnswer {
    pub structured: Value,
    pub text: String,
    pub is_error: bool,
}

impl ToolAnswer {
    /// The structured content, failing the test with the text if the call failed.
    pub fn ok(self) -> Value {
        assert!(!self.is_error, "tool failed: {}", self.text);
        self.structured
    }
    /// The error text, failing the test if the call succeeded.
    pub fn err(self) -> String {
        assert!(self.is_error, "expected an error, got {}", self.structured);
        self.text
    }
}

/// A real MCP client driving the `liveprobe` binary over stdio.
pub struct McpClient {
    pub child: Child,
    stdin: Option<ChildStdin>,
    lines: Receiver<String>,
    next_id: u64,
    /// Notifications received while waiting for responses, oldest first.
    pub notifications: Vec<Value>,
}

impl McpClient {
    /// Starts the server and completes the initialize handshake.
    pub fn start() -> McpClient {
        Self::start_with_args(&[])
    }

    /// Starts the server with extra command-line arguments.
    pub fn start_with_args(args: &[&str]) -> McpClient {
        let mut child = Command::new(env!("CARGO_BIN_EXE_liveprobe"))
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start liveprobe");
        let stdin = child.stdin.take();
        let stdout: ChildStdout = child.stdout.take().expect("stdout");
        let mut c = McpClient {
            child,
            stdin,
            lines: line_reader(stdout),
            next_id: 1,
            notifications: Vec::new(),
        };
        let init = c.request(
            "initialize",
            json!({
                "protocolVersion": "2025-06-18",
                "capabilities": {},
                "clientInfo": {"name": "liveprobe-tests", "version": "0"}
            }),
        );
        assert!(init.get("result").is_some(), "initialize failed: {init}");
        c.notify("notifications/initialized", json!({}));
        c
    }

    /// Sends a raw JSON-RPC message line.
    pub fn send_raw(&mut self, msg: &Value) {
        let stdin = self.stdin.as_mut().expect("stdin open");
        stdin
            .write_all(format!("{msg}\n").as_bytes())
            .expect("write to liveprobe");
    }

    /// Reads the next JSON-RPC message; every stdout line must be JSON.
    pub fn read_message(&mut self) -> Value {
        let line = self
            .lines
            .recv_timeout(WAIT)
            .expect("liveprobe answered nothing in time");
        serde_json::from_str(&line)
            .unwrap_or_else(|e| panic!("stdout line is not JSON-RPC ({e}): {line}"))
    }

    /// Sends a request and returns the response with the same id
    /// (notifications in between are skipped).
    pub fn request(&mut self, method: &str, params: Value) -> Value {
        let id = self.next_id;
        self.next_id += 1;
        self.send_raw(&json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params}));
        loop {
            let msg = self.read_message();
            if msg.get("id") == Some(&json!(id)) {
                return msg;
            }
            if msg.get("id").is_none() {
                self.notifications.push(msg);
            }
        }
    }

    /// Waits for a notification with `method` (already received or next).
    pub fn wait_notification(&mut self, method: &str) -> Value {
        if let Some(i) = self
            .notifications
            .iter()
            .position(|n| n["method"] == method)
        {
            return self.notifications.remove(i);
        }
        loop {
            let msg = self.read_message();
            if msg["method"] == method {
                return msg;
            }
            if msg.get("id").is_none() {
                self.notifications.push(msg);
            }
        }
    }

    /// Sends a notification.
    pub fn notify(&mut self, method: &str, params: Value) {
        self.send_raw(&json!({"jsonrpc": "2.0", "method": method, "params": params}));
    }

    /// Calls a tool.
    pub fn call(&mut self, tool: &str, args: Value) -> ToolAnswer {
        let resp = self.request("tools/call", json!({"name": tool, "arguments": args}));
        let result = resp
            .get("result")
            .unwrap_or_else(|| panic!("tools/call {tool} got a protocol error: {resp}"));
        let text = result["content"]
            .as_array()
            .map(|blocks| {
                blocks
                    .iter()
                    .filter_map(|b| b["text"].as_str())
                    .collect::<Vec<_>>()
                    .join("\n")
            })
            .unwrap_or_default();
        ToolAnswer {
            structured: result
                .get("structuredContent")
                .cloned()
                .unwrap_or(Value::Null),
            text,
            is_error: result["isError"].as_bool().unwrap_or(false),
        }
    }

    /// Closes stdin and waits for the server to exit; returns its exit code.
    pub fn shutdown(mut self) -> Option<i32> {
        self.stdin.take();
        let deadline = std::time::Instant::now() + WAIT;
        while std::time::Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                return status.code();
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        panic!("liveprobe did not exit after its stdin was closed");
    }
}

impl Drop for McpClient {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Process state letter from /proc/PID/stat (R, S, t, Z, ...).
pub fn proc_state(pid: i32) -> Option<char> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let after = stat.rsplit_once(')')?.1;
    after.trim_start().chars().next()
}

/// TracerPid from /proc/PID/status (0 when not traced).
pub fn tracer_pid(pid: i32) -> i32 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("TracerPid:").map(|v| v.trim().parse().ok()))
                .flatten()
        })
        .unwrap_or(-1)
}
