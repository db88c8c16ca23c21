//! Support for the tests of real programs (tests/real_*.rs): building them
//! with tests/real/build.sh, and the references the tests compare
//! liveprobe's answers with: gdb in batch mode and `addr2line -i`. A missing
//! tool fails the test: a comparison that cannot run proves nothing.
#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use serde_json::Value;

/// The programs tests/real/build.sh made.
pub struct RealPrograms {
    /// Lua 5.4 at -O0 -g, running tests/real/scenario.lua.
    pub lua: PathBuf,
    /// The same at -O2 -g.
    pub lua_o2: PathBuf,
    /// Where Lua's C sources are (in cargo's registry cache).
    pub lua_src: PathBuf,
    /// hyper + tokio, release with debug info.
    pub hyper_server: PathBuf,
    /// Where hyper's sources are (in cargo's registry cache).
    pub hyper_src: PathBuf,
    /// The Asio echo server, g++ -O0 -g.
    pub asio_echo: PathBuf,
    /// The same at -O2 -g.
    pub asio_echo_o2: PathBuf,
}

/// Builds (or finds cached) the real programs, once per test process.
pub fn real_programs() -> &'static RealPrograms {
    static BUILT: OnceLock<RealPrograms> = OnceLock::new();
    BUILT.get_or_init(|| {
        let root = Path::new(env!("CARGO_MANIFEST_DIR"));
        let script = root.join("tests/real/build.sh");
        let status = Command::new("bash")
            .arg(&script)
            .status()
            .unwrap_or_else(|e| panic!("cannot run {}: {e}", script.display()));
        assert!(status.success(), "{} failed: {status}", script.display());
        let out = root.join("target/real");
        let named_dir = |file: &str| {
            let text = std::fs::read_to_string(out.join(file))
                .unwrap_or_else(|e| panic!("build.sh wrote no {file}: {e}"));
            PathBuf::from(text.trim())
        };
        RealPrograms {
            lua: out.join("lua_host"),
            lua_o2: out.join("lua_host_o2"),
            lua_src: named_dir("lua-src-dir"),
            hyper_server: out.join("cargo/release/hyper_server"),
            hyper_src: named_dir("hyper-src-dir"),
            asio_echo: out.join("asio_echo"),
            asio_echo_o2: out.join("asio_echo_o2"),
        }
    })
}

/// The 1-based line of `file` that contains `needle`, searching from the
/// first line that contains `after` (a function's head, say).
pub fn line_in(file: &Path, after: &str, needle: &str) -> u64 {
    let text =
        std::fs::read_to_string(file).unwrap_or_else(|e| panic!("read {}: {e}", file.display()));
    let start = text
        .lines()
        .position(|l| l.contains(after))
        .unwrap_or_else(|| panic!("{after:?} not in {}", file.display()));
    text.lines()
        .enumerate()
        .skip(start)
        .find(|(_, l)| l.contains(needle))
        .map(|(i, _)| i as u64 + 1)
        .unwrap_or_else(|| panic!("{needle:?} not after {after:?} in {}", file.display()))
}

/// Runs gdb in batch mode attached to `pid` with `commands` (one `-ex`
/// each) and returns its standard output. gdb detaches when it ends, and the
/// process goes on as before.
pub fn gdb_batch(pid: i32, commands: &[&str]) -> String {
    let mut cmd = Command::new("gdb");
    cmd.args(["-nx", "-batch", "-p", &pid.to_string()])
        .args(["-ex", "set width 0", "-ex", "set height 0"])
        .args(["-ex", "set print frame-arguments none"]);
    for c in commands {
        cmd.args(["-ex", c]);
    }
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("gdb is needed for this test and did not run: {e}"));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// One frame of a gdb `bt`: function and, where gdb has one, file:line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GdbFrame {
    pub index: usize,
    pub function: String,
    pub file: Option<String>,
    pub line: Option<u64>,
}

/// Parses the `#N ...` lines of gdb's `bt` (with frame arguments off).
pub fn parse_gdb_bt(text: &str) -> Vec<GdbFrame> {
    let mut frames = Vec::new();
    for line in text.lines() {
        let Some(rest) = line.strip_prefix('#') else {
            continue;
        };
        let Some((index, rest)) = rest.split_once(' ') else {
            continue;
        };
        let Ok(index) = index.parse::<usize>() else {
            continue;
        };
        let rest = rest.trim_start();
        // "0x... in f (...) at file:line" or "f (...) at file:line".
        let rest = match rest.split_once(" in ") {
            Some((addr, after)) if addr.starts_with("0x") => after,
            _ => rest,
        };
        let (head, location) = match rest.rsplit_once(" at ") {
            Some((h, l)) => (h, Some(l)),
            None => (rest, None),
        };
        let function = match head.find(" (") {
            Some(i) => head[..i].to_string(),
            None => head.to_string(),
        };
        let (file, line_no) = match location.and_then(|l| l.rsplit_once(':')) {
            Some((f, n)) => (Some(f.to_string()), n.trim().parse().ok()),
            None => (None, None),
        };
        if frames.len() > index {
            continue; // a repeated frame line (`frame N` prints one again)
        }
        frames.push(GdbFrame {
            index,
            function,
            file,
            line: line_no,
        });
    }
    frames
}

/// The value gdb printed for `print EXPR` as `$N = VALUE`, in order.
pub fn gdb_prints(text: &str) -> Vec<String> {
    text.lines()
        .filter_map(|l| {
            let rest = l.strip_prefix('$')?;
            let (n, value) = rest.split_once(" = ")?;
            n.parse::<u32>().ok()?;
            Some(value.to_string())
        })
        .collect()
}

/// One frame as addr2line names it: function, file, line (`None` for `??`).
pub type Addr2lineFrame = (String, Option<String>, Option<u64>);

/// `addr2line -a -i -f -C -e exe ADDR...`: for each file address, its
/// inlined chain, innermost first.
pub fn addr2line_chains(exe: &Path, addrs: &[u64]) -> Vec<Vec<Addr2lineFrame>> {
    if addrs.is_empty() {
        return Vec::new();
    }
    let out = Command::new("addr2line")
        .args(["-a", "-i", "-f", "-C", "-e"])
        .arg(exe)
        .args(addrs.iter().map(|a| format!("{a:#x}")))
        .output()
        .unwrap_or_else(|e| panic!("addr2line is needed for this test and did not run: {e}"));
    assert!(out.status.success(), "addr2line failed: {out:?}");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let mut chains: Vec<Vec<Addr2lineFrame>> = Vec::new();
    let mut lines = text.lines().peekable();
    while let Some(line) = lines.next() {
        if line.starts_with("0x") && !line.contains(':') {
            chains.push(Vec::new()); // `-a`: the address opens a chain
            continue;
        }
        let Some(location) = lines.next() else { break };
        // "file:line", "file:line (discriminator N)" or "??:0" / "??:?".
        let location = location.split(" (").next().unwrap_or(location);
        let (file, line_no) = match location.rsplit_once(':') {
            Some(("??", _)) | None => (None, None),
            Some((f, n)) => (Some(f.to_string()), n.parse().ok().filter(|n| *n != 0)),
        };
        if let Some(chain) = chains.last_mut() {
            chain.push((line.to_string(), file, line_no));
        }
    }
    assert_eq!(chains.len(), addrs.len(), "addr2line output:\n{text}");
    chains
}

/// The load bias of `exe` in process `pid`: the start of its first mapping
/// minus that mapping's file offset (a PIE's addresses minus this are the
/// addresses in the file).
pub fn load_bias(pid: i32, exe: &Path) -> u64 {
    let exe = std::fs::canonicalize(exe).expect("canonical exe path");
    let maps = std::fs::read_to_string(format!("/proc/{pid}/maps")).expect("read maps");
    maps.lines()
        .find_map(|l| {
            let fields: Vec<&str> = l.split_whitespace().collect();
            if fields.len() < 6 || Path::new(fields[5]) != exe {
                return None;
            }
            let start = u64::from_str_radix(fields[0].split('-').next()?, 16).ok()?;
            let offset = u64::from_str_radix(fields[2], 16).ok()?;
            Some(start - offset)
        })
        .unwrap_or_else(|| panic!("{} not mapped in {pid}", exe.display()))
}

/// The [start, end) ranges where `exe` is mapped in `pid`.
pub fn mapped_ranges(pid: i32, exe: &Path) -> Vec<(u64, u64)> {
    let exe = std::fs::canonicalize(exe).expect("canonical exe path");
    let maps = std::fs::read_to_string(format!("/proc/{pid}/maps")).expect("read maps");
    maps.lines()
        .filter_map(|l| {
            let fields: Vec<&str> = l.split_whitespace().collect();
            if fields.len() < 6 || Path::new(fields[5]) != exe {
                return None;
            }
            let (a, b) = fields[0].split_once('-')?;
            Some((
                u64::from_str_radix(a, 16).ok()?,
                u64::from_str_radix(b, 16).ok()?,
            ))
        })
        .collect()
}

/// One HTTP/1.1 request to 127.0.0.1:`port` on its own connection; the
/// status code and body of the answer.
pub fn http_request(port: u16, method: &str, path: &str) -> (u16, String) {
    let mut stream = TcpStream::connect(("127.0.0.1", port))
        .unwrap_or_else(|e| panic!("connect to 127.0.0.1:{port}: {e}"));
    stream
        .set_read_timeout(Some(super::common::WAIT))
        .expect("read timeout");
    let request =
        format!("{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).expect("send request");
    let mut answer = String::new();
    stream
        .read_to_string(&mut answer)
        .unwrap_or_else(|e| panic!("read the answer to {method} {path}: {e}"));
    let status = answer
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no status line in {answer:?}"));
    let body = answer
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    (status, body)
}

/// A number parsed from the start of a value summary (`"42"`, `"111 'o'"`).
pub fn number_of(value: &Value) -> Option<i64> {
    value.as_str()?.split_whitespace().next()?.parse().ok()
}

/// The hexadecimal address at the start of a summary (`"0x55d0..."` or
/// `"(T *) 0x55d0..."`), as gdb and liveprobe both print pointers.
pub fn address_in(text: &str) -> Option<u64> {
    let start = text.find("0x")?;
    let hex: String = text[start + 2..]
        .chars()
        .take_while(|c| c.is_ascii_hexdigit())
        .collect();
    u64::from_str_radix(&hex, 16).ok()
}

/// How many times gdb's breakpoint at `location` is hit while the process
/// `pid` runs until it exits after `drive` (which sends it its commands)
/// returns: gdb's own choice of sites for the location, counted by gdb.
pub fn gdb_hit_count(pid: i32, location: &str, drive: impl FnOnce()) -> u64 {
    use std::io::BufRead;
    let script = std::env::temp_dir().join(format!(
        "liveprobe-real-gdb-{}-{pid}.gdb",
        std::process::id()
    ));
    std::fs::write(
        &script,
        format!(
            "set width 0\nset height 0\nset pagination off\n\
             break {location}\ncommands 1\nsilent\ncontinue\nend\n\
             echo armed\\n\ncontinue\ninfo breakpoints\n"
        ),
    )
    .expect("write gdb script");
    let mut gdb = Command::new("gdb")
        .args(["-nx", "-batch", "-p", &pid.to_string(), "-x"])
        .arg(&script)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap_or_else(|e| panic!("gdb is needed for this test and did not run: {e}"));
    let mut out = std::io::BufReader::new(gdb.stdout.take().expect("gdb stdout"));
    let mut text = String::new();
    loop {
        let mut line = String::new();
        let n = out.read_line(&mut line).expect("read gdb output");
        assert!(n > 0, "gdb ended before arming {location}:\n{text}");
        text.push_str(&line);
        if line.trim() == "armed" {
            break;
        }
    }
    drive();
    let mut rest = String::new();
    out.read_to_string(&mut rest).expect("read gdb output");
    text.push_str(&rest);
    let _ = gdb.wait();
    let _ = std::fs::remove_file(&script);
    // "\tbreakpoint already hit 3 times" (absent when never hit).
    text.lines()
        .find_map(|l| {
            l.trim()
                .strip_prefix("breakpoint already hit ")?
                .split_whitespace()
                .next()?
                .parse()
                .ok()
        })
        .unwrap_or_else(|| {
            assert!(
                text.contains("Breakpoint 1 at"),
                "gdb set no breakpoint:\n{text}"
            );
            0
        })
}

/// gdb attached to `pid` with a breakpoint at `location`: `drive` runs once
/// the breakpoint is armed (it makes the program reach it, from another
/// thread if it must wait for the program); what gdb prints for `exprs` at
/// the first stop, in order. gdb detaches at the end and the program goes on.
pub fn gdb_prints_at_breakpoint(
    pid: i32,
    location: &str,
    exprs: &[&str],
    drive: impl FnOnce() + Send + 'static,
) -> Vec<String> {
    use std::io::BufRead;
    let mut cmd = Command::new("gdb");
    cmd.args(["-nx", "-batch", "-p", &pid.to_string()])
        .args(["-ex", "set width 0", "-ex", "set height 0"])
        .args(["-ex", &format!("break {location}")])
        .args(["-ex", "echo armed\\n", "-ex", "continue"]);
    for e in exprs {
        cmd.args(["-ex", &format!("print {e}")]);
    }
    let mut gdb = cmd
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap_or_else(|e| panic!("gdb is needed for this test and did not run: {e}"));
    let mut out = std::io::BufReader::new(gdb.stdout.take().expect("gdb stdout"));
    let mut text = String::new();
    loop {
        let mut line = String::new();
        let n = out.read_line(&mut line).expect("read gdb output");
        assert!(n > 0, "gdb ended before arming {location}:\n{text}");
        text.push_str(&line);
        if line.trim() == "armed" {
            break;
        }
    }
    let driver = std::thread::spawn(drive);
    let mut rest = String::new();
    out.read_to_string(&mut rest).expect("read gdb output");
    text.push_str(&rest);
    let _ = gdb.wait();
    driver.join().expect("the driving thread panicked");
    let values = gdb_prints(&text);
    assert_eq!(values.len(), exprs.len(), "gdb printed:\n{text}");
    values
}

/// gdb's `thread apply all bt`, by thread id (the LWP gdb names).
pub fn gdb_all_threads_bt(pid: i32) -> Vec<(i64, Vec<GdbFrame>)> {
    let out = gdb_batch(pid, &["thread apply all bt"]);
    let mut threads: Vec<(i64, String)> = Vec::new();
    for line in out.lines() {
        if line.starts_with("Thread ") {
            let tid = line
                .split("(LWP ")
                .nth(1)
                .and_then(|rest| rest.split(')').next())
                .and_then(|n| n.trim().parse().ok())
                .unwrap_or_else(|| panic!("no LWP in {line:?}"));
            threads.push((tid, String::new()));
        } else if let Some((_, text)) = threads.last_mut() {
            text.push_str(line);
            text.push('\n');
        }
    }
    assert!(!threads.is_empty(), "gdb printed no threads:\n{out}");
    threads
        .into_iter()
        .map(|(tid, text)| (tid, parse_gdb_bt(&text)))
        .collect()
}

/// The last `::` segment of a function name with template arguments and
/// parameter lists taken out (`std::__invoke_impl<void, F>(A&&)` →
/// `__invoke_impl`, `S::operator()(int) const` → `operator()`), so names
/// from gdb, addr2line and liveprobe compare whatever their style.
pub fn base_function_name(name: &str) -> String {
    let name = name.trim();
    let name = name.strip_suffix(" const").unwrap_or(name);
    // `operator()` keeps its own parentheses.
    let (name, operator_call) = match name.find("operator()") {
        Some(i) => (name[..i].to_string() + "operator" + &name[i + 10..], true),
        None => (name.to_string(), false),
    };
    let mut out = String::new();
    let mut depth = 0i32;
    for c in name.chars() {
        match c {
            '<' | '(' => depth += 1,
            '>' | ')' => depth -= 1,
            _ if depth == 0 => out.push(c),
            _ => {}
        }
    }
    let last = out.rsplit("::").next().unwrap_or(&out).trim().to_string();
    // A return type before the name (`void f`): the last word.
    let last = last.rsplit(' ').next().unwrap_or(&last).to_string();
    if operator_call && last == "operator" {
        "operator()".to_string()
    } else {
        last
    }
}
