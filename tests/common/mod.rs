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

/// The compile cache: fixtures are compiled here once and never run from
/// here (see `fixture_dir`).
pub fn fixture_cache_dir() -> PathBuf {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/fixtures");
    std::fs::create_dir_all(&dir).expect("create target/fixtures");
    dir
}

/// The directory the calling test's fixtures are handed out in:
/// `target/fixtures/run-<pid>-<start>/<test name>/`, new for every test of
/// every test process. A kernel uprobe sits on a file's inode: one left by
/// an earlier run, or set by another test's liveprobe on the same binary,
/// would take the int3s of every process that maps that inode. Fresh copies
/// (new inodes) keep each test's processes to itself.
pub fn fixture_dir() -> PathBuf {
    let test = std::thread::current()
        .name()
        .unwrap_or("main")
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .collect::<String>();
    let dir = run_dir().join(test);
    std::fs::create_dir_all(&dir).expect("create the test's fixture directory");
    dir
}

/// `target/fixtures/run-<pid>-<start time>` of this test process. The first
/// call removes the run directories of test processes that are gone.
fn run_dir() -> PathBuf {
    static RUN_DIR: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    RUN_DIR
        .get_or_init(|| {
            let cache = fixture_cache_dir();
            if let Ok(entries) = std::fs::read_dir(&cache) {
                for entry in entries.flatten() {
                    let name = entry.file_name().to_string_lossy().into_owned();
                    let Some(owner) = name.strip_prefix("run-") else {
                        continue;
                    };
                    let alive = owner
                        .split_once('-')
                        .and_then(|(pid, start)| Some((pid.parse().ok()?, start.parse().ok()?)))
                        .is_some_and(|(pid, start): (i32, u64)| process_start(pid) == Some(start));
                    if !alive {
                        let _ = std::fs::remove_dir_all(entry.path());
                    }
                }
            }
            let me = std::process::id() as i32;
            let start = process_start(me).expect("own start time in /proc/self/stat");
            let dir = cache.join(format!("run-{me}-{start}"));
            std::fs::create_dir_all(&dir).expect("create the run's fixture directory");
            dir
        })
        .clone()
}

/// Start time of process `pid` (field 22 of /proc/PID/stat), which tells a
/// process from a later one with the same pid.
fn process_start(pid: i32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    stat.rsplit_once(')')?
        .1
        .split_whitespace()
        .nth(19)?
        .parse()
        .ok()
}

/// The source directory of fixtures.
pub fn fixture_src(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(rel)
}

/// Compiles `tests/fixtures/<rel>` with the compiler its extension names,
/// `-g -pthread` (C, C++) or `-g --edition=2021` (Rust), and `flags`, and
/// hands out a fresh copy of it in `fixture_dir()`.
pub fn build_fixture(rel: &str, out_name: &str, flags: &[&str]) -> PathBuf {
    let mut all = match Path::new(rel).extension().and_then(|e| e.to_str()) {
        Some("c" | "cpp") => vec!["-g", "-pthread"],
        _ => vec!["-g"],
    };
    all.extend_from_slice(flags);
    build_fixture_sources(&[rel], out_name, &all)
}

/// Compiles several sources of `tests/fixtures/` into one program with
/// exactly `flags` (the first source names the compiler: gcc, g++, or rustc
/// with `--edition=2021`), and hands out a fresh copy in `fixture_dir()`.
pub fn build_fixture_sources(rels: &[&str], out_name: &str, flags: &[&str]) -> PathBuf {
    let sources: Vec<PathBuf> = rels.iter().map(|r| fixture_src(r)).collect();
    let compiler = match sources[0].extension().and_then(|e| e.to_str()) {
        Some("c") => vec!["gcc"],
        Some("cpp") => vec!["g++"],
        Some("rs") => vec!["rustc", "--edition=2021"],
        other => panic!("no compiler for fixture extension {other:?}"),
    };
    let recipe = format!("{compiler:?} {flags:?} {rels:?}");
    build_fixture_with(out_name, &sources, &recipe, &[], |out| {
        let mut cmd = Command::new(compiler[0]);
        cmd.args(&compiler[1..])
            .args(flags)
            .args(&sources)
            .arg("-o")
            .arg(out);
        run_build_step(&mut cmd, out_name);
    })
}

/// Runs one step of a fixture build, failing the test with its stderr.
pub fn run_build_step(cmd: &mut Command, what: &str) {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?} for {what}: {e}"));
    assert!(
        out.status.success(),
        "building {what} failed: {cmd:?}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The general fixture build: `build` writes `out_name` (and the files
/// named `out_name` + each of `companions`, e.g. ".debug") into the
/// directory of the path it is given. It runs only when the cached program
/// is older than a source or was built by another `recipe`; its results
/// are moved into the cache together, so a parallel test process never sees
/// half of them. The caller gets a fresh copy of them all in
/// `fixture_dir()` (new inodes, made by a `cp` child so that no file of a
/// fixture is ever open for writing in this multi-threaded process, which
/// would make a concurrent exec of it fail with ETXTBSY).
pub fn build_fixture_with(
    out_name: &str,
    sources: &[PathBuf],
    recipe: &str,
    companions: &[&str],
    build: impl FnOnce(&Path),
) -> PathBuf {
    let copy = fixture_dir().join(out_name);
    if copy.exists() {
        return copy;
    }
    let cache = fixture_cache_dir();
    let cached = cache.join(out_name);
    let stamp = cache.join(format!("{out_name}.recipe"));
    {
        // One build at a time in this test process: two threads building
        // the same fixture would race on it.
        static BUILDING: std::sync::Mutex<()> = std::sync::Mutex::new(());
        let _one_at_a_time = BUILDING.lock().unwrap_or_else(|e| e.into_inner());
        let modified = |p: &Path| std::fs::metadata(p).and_then(|m| m.modified()).ok();
        let newest_source = sources.iter().filter_map(|p| modified(p)).max();
        let fresh = matches!((modified(&cached), newest_source), (Some(built), Some(written)) if built > written)
            && companions
                .iter()
                .all(|c| cache.join(format!("{out_name}{c}")).exists())
            && std::fs::read_to_string(&stamp).is_ok_and(|s| s == recipe);
        if !fresh {
            let staging = cache.join(format!("build-{}-{out_name}", std::process::id()));
            let _ = std::fs::remove_dir_all(&staging);
            std::fs::create_dir_all(&staging).expect("create a fixture staging directory");
            build(&staging.join(out_name));
            for suffix in companions.iter().chain(std::iter::once(&"")) {
                let name = format!("{out_name}{suffix}");
                std::fs::rename(staging.join(&name), cache.join(&name))
                    .unwrap_or_else(|e| panic!("move fixture {name} into the cache: {e}"));
            }
            let _ = std::fs::remove_dir_all(&staging);
            std::fs::write(&stamp, recipe).expect("write the fixture's recipe stamp");
        }
    }
    for suffix in companions.iter().chain(std::iter::once(&"")) {
        let name = format!("{out_name}{suffix}");
        let status = Command::new("cp")
            .arg(cache.join(&name))
            .arg(fixture_dir().join(&name))
            .status()
            .expect("run cp");
        assert!(status.success(), "copying fixture {name} failed");
    }
    copy
}

/// How to start a fixture (see `Fixture::start` for the common case).
pub struct Launch {
    exe: PathBuf,
    args: Vec<String>,
    under_shell: bool,
    pid_in_ready: bool,
    ready_line: bool,
}

impl Launch {
    /// `exe` as a direct child, its first line `ready <pid>` (or `ready`).
    pub fn new(exe: &Path) -> Launch {
        Launch {
            exe: exe.to_path_buf(),
            args: Vec::new(),
            under_shell: false,
            pid_in_ready: true,
            ready_line: true,
        }
    }

    /// Command-line arguments of the fixture.
    pub fn args(mut self, args: &[&str]) -> Launch {
        self.args = args.iter().map(|a| a.to_string()).collect();
        self
    }

    /// The fixture as a grandchild, under a `sh` that waits for it and
    /// exits with its status; its pid comes from its `ready <pid>` line. A
    /// traced process that is a child of the tracer's own process has its
    /// exit status collected by the tracer (Linux hands a ptraced child's
    /// exit to the first waiter in the real parent's thread group); targets
    /// of liveprobe are never its children, and tests that trace in this
    /// process keep it that way too, with `sh` as the real parent whose view
    /// of the exit must stay intact.
    pub fn under_shell(mut self) -> Launch {
        self.under_shell = true;
        self
    }

    /// The first line only starts with `ready` (what follows is not a pid).
    pub fn ready_without_pid(mut self) -> Launch {
        self.pid_in_ready = false;
        self
    }

    /// The fixture prints no `ready` line: `start` returns at once.
    pub fn without_ready_line(mut self) -> Launch {
        self.ready_line = false;
        self
    }

    /// Starts the fixture and waits for its `ready` line.
    pub fn start(self) -> Fixture {
        let mut command = if self.under_shell {
            let mut c = Command::new("sh");
            c.arg("-c").arg("\"$0\" \"$@\"; exit $?").arg(&self.exe);
            c
        } else {
            Command::new(&self.exe)
        };
        command
            .args(&self.args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null());
        // ETXTBSY: a file another program had open for writing; fixtures
        // are copied by a `cp` child, so this is only a safety net.
        let mut attempts = 0;
        let mut child = loop {
            match command.spawn() {
                Ok(child) => break child,
                Err(e) if e.raw_os_error() == Some(libc::ETXTBSY) && attempts < 50 => {
                    attempts += 1;
                    std::thread::sleep(Duration::from_millis(20));
                }
                Err(e) => panic!("start fixture {}: {e}", self.exe.display()),
            }
        };
        let stdin = child.stdin.take();
        let lines = line_reader(child.stdout.take().expect("stdout"));
        let child_pid = child.id() as i32;
        let mut f = Fixture {
            child,
            pid: child_pid,
            under_shell: self.under_shell,
            stdin,
            lines,
        };
        if !self.ready_line {
            assert!(
                !self.under_shell,
                "a fixture under a shell names its pid in its ready line"
            );
            return f;
        }
        let ready = f.expect_line("ready");
        if self.under_shell {
            f.pid = ready["ready".len()..]
                .trim()
                .parse()
                .unwrap_or_else(|_| panic!("no pid in the ready line {ready:?}"));
        } else if self.pid_in_ready && ready != "ready" {
            assert_eq!(ready, format!("ready {child_pid}"));
        }
        f
    }
}

/// A running fixture, killed when dropped; the one driver of every test.
pub struct Fixture {
    pub child: Child,
    /// The fixture's pid (under a shell, not the shell's).
    pub pid: i32,
    under_shell: bool,
    stdin: Option<ChildStdin>,
    lines: Receiver<String>,
}

impl Fixture {
    /// Starts `exe` as a direct child and waits for its `ready <pid>` (or
    /// `ready`) line.
    pub fn start(exe: &Path) -> Fixture {
        Launch::new(exe).start()
    }

    /// Starts `exe` with command-line `args` and waits for its `ready` line.
    pub fn start_with_args(exe: &Path, args: &[&str]) -> Fixture {
        Launch::new(exe).args(args).start()
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
        let deadline = std::time::Instant::now() + WAIT;
        loop {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) if line.starts_with(prefix) => return line,
                Ok(_) => {}
                Err(_) => panic!(
                    "fixture {} printed no line starting with {prefix:?}",
                    self.pid
                ),
            }
        }
    }

    /// The next output line, whatever it is.
    pub fn next_line(&mut self) -> String {
        self.expect_line("")
    }

    /// A line starting with `prefix` if one has arrived, without waiting
    /// (lines before it are passed over).
    pub fn poll_line(&mut self, prefix: &str) -> Option<String> {
        self.lines.try_iter().find(|line| line.starts_with(prefix))
    }

    /// Sends `command` and returns what follows `prefix` in the answer.
    pub fn ask(&mut self, command: &str, prefix: &str) -> String {
        self.send(command);
        let line = self.expect_line(prefix);
        line[prefix.len()..].trim().to_string()
    }

    /// Waits until the main thread sits in `read` (see `wait_blocked_in_read`).
    pub fn wait_blocked_in_read(&self) {
        wait_blocked_in_read(self.pid);
    }

    /// `finish_with("go")`.
    pub fn finish(&mut self) -> String {
        self.finish_with("go")
    }

    /// Sends `line` (the fixture's "go on"), returns the next line it
    /// prints and waits for it to end.
    pub fn finish_with(&mut self, line: &str) -> String {
        self.send(line);
        self.close_stdin();
        let last = self.next_line();
        self.wait_exit_status();
        last
    }

    /// Waits for the fixture to exit and returns its exit code.
    pub fn wait_exit(&mut self) -> Option<i32> {
        self.wait_exit_status().code()
    }

    /// Waits for the fixture (under a shell: the shell, which exits with
    /// the fixture's status) to exit.
    pub fn wait_exit_status(&mut self) -> std::process::ExitStatus {
        let deadline = std::time::Instant::now() + WAIT;
        while std::time::Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                return status;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        panic!("fixture {} did not exit", self.pid);
    }
}

impl Drop for Fixture {
    fn drop(&mut self) {
        if self.under_shell && self.child.try_wait().ok().flatten().is_none() {
            // SAFETY: kill has no memory-safety preconditions; the fixture
            // is the live shell's unreaped child, so its pid is not reused.
            unsafe { libc::kill(self.pid, libc::SIGKILL) };
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Waits until the main thread of `pid` sits in the `read` system call
/// (number 0 on x86-64), so that a test stops it at the same place every
/// time.
pub fn wait_blocked_in_read(pid: i32) {
    let path = format!("/proc/{pid}/syscall");
    let deadline = std::time::Instant::now() + WAIT;
    while std::time::Instant::now() < deadline {
        let text = std::fs::read_to_string(&path).unwrap_or_default();
        if text.split_whitespace().next() == Some("0") {
            return;
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    panic!("fixture {pid} never blocked in read()");
}

/// Waits until the main thread of `pid` sits in some system call (a fixture
/// blocked in `read`, `epoll_wait`, ...), not running between two.
pub fn wait_blocked_in_syscall(pid: i32) {
    let path = format!("/proc/{pid}/syscall");
    let deadline = std::time::Instant::now() + WAIT;
    while std::time::Instant::now() < deadline {
        let text = std::fs::read_to_string(&path).unwrap_or_default();
        if text
            .split_whitespace()
            .next()
            .is_some_and(|nr| nr.parse::<u64>().is_ok())
        {
            return;
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    panic!("fixture {pid} never blocked in a system call");
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
        Self::start_with_stderr(args, Stdio::inherit())
    }

    /// Starts the server with extra arguments and its stderr (the log) sent
    /// to `stderr`, e.g. a file the test reads afterwards.
    pub fn start_with_stderr(args: &[&str], stderr: Stdio) -> McpClient {
        let mut child = Command::new(env!("CARGO_BIN_EXE_liveprobe"))
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(stderr)
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
