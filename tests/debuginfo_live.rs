//! debuginfo room, live: compile fixtures (C -O0, C -O2 with inlining, C++, Rust), run them blocked on stdin,
//! and check ProcessImage::load, symbolize, unwind, resolve_location, find_functions and source_file against
//! what the sources say (and gdb where it is installed).

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;

use liveprobe::debuginfo::{MemoryError, MemorySource, ProcessImage, Registers, RuntimeAddr};
use nix::sys::ptrace;
use nix::sys::uio::{RemoteIoVec, process_vm_readv};
use nix::sys::wait::{WaitPidFlag, waitpid};
use nix::unistd::Pid;

fn fixtures_src() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/debuginfo")
}

fn out_dir() -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("debuginfo_fixtures");
    std::fs::create_dir_all(&dir).expect("create fixture dir");
    dir
}

fn compile(cmd: &mut Command, what: &str) {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("cannot run compiler for {what}: {e}"));
    assert!(
        out.status.success(),
        "compiling {what} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Compiles a fixture once per test binary and returns the executable path.
fn fixture(name: &str) -> PathBuf {
    static BUILT: OnceLock<std::sync::Mutex<std::collections::HashMap<String, PathBuf>>> =
        OnceLock::new();
    let built = BUILT.get_or_init(Default::default);
    let mut built = built.lock().unwrap();
    if let Some(p) = built.get(name) {
        return p.clone();
    }
    let src = fixtures_src();
    let out = out_dir().join(name);
    match name {
        "c_basic" => compile(
            Command::new("gcc")
                .args(["-g", "-O0", "-o"])
                .arg(&out)
                .arg(src.join("c_basic.c")),
            name,
        ),
        "c_basic_nopie" => compile(
            Command::new("gcc")
                .args(["-g", "-O0", "-no-pie", "-fno-pie", "-o"])
                .arg(&out)
                .arg(src.join("c_basic.c")),
            name,
        ),
        "c_basic_dwarf4_zlib" => compile(
            Command::new("gcc")
                .args(["-gdwarf-4", "-O0", "-gz=zlib", "-o"])
                .arg(&out)
                .arg(src.join("c_basic.c")),
            name,
        ),
        "c_inline" => compile(
            Command::new("gcc")
                .args(["-g", "-O2", "-o"])
                .arg(&out)
                .arg(src.join("c_inline.c")),
            name,
        ),
        "cpp_class" => compile(
            Command::new("g++")
                .args(["-g", "-O0", "-o"])
                .arg(&out)
                .arg(src.join("cpp_class.cpp")),
            name,
        ),
        "rust_basic" => compile(
            Command::new("rustc")
                .args(["-g", "-C", "opt-level=0", "--crate-name", "fixture", "-o"])
                .arg(&out)
                .arg(src.join("rust_basic.rs")),
            name,
        ),
        other => panic!("unknown fixture {other}"),
    }
    built.insert(name.to_string(), out.clone());
    out
}

/// A running fixture, killed on drop.
struct Running {
    child: Child,
}

impl Running {
    fn start(name: &str) -> Running {
        let exe = fixture(name);
        let mut child = Command::new(&exe)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn fixture");
        let stdout = child.stdout.take().expect("stdout");
        let mut line = String::new();
        BufReader::new(stdout)
            .read_line(&mut line)
            .expect("read ready line");
        assert!(line.starts_with("ready"), "fixture said {line:?}");
        let running = Running { child };
        running.wait_blocked_in_read();
        running
    }

    fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    /// Waits until the main thread sits in the read(2) syscall (nr 0), so stacks are deterministic.
    fn wait_blocked_in_read(&self) {
        for _ in 0..2000 {
            let text = std::fs::read_to_string(format!("/proc/{}/syscall", self.pid()))
                .unwrap_or_default();
            if text.split_whitespace().next() == Some("0") {
                return;
            }
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        panic!("fixture never blocked in read");
    }

    /// Stops the thread with PTRACE_SEIZE + PTRACE_INTERRUPT, reads its registers, and detaches.
    fn registers(&self) -> Registers {
        let pid = Pid::from_raw(self.pid());
        ptrace::seize(pid, ptrace::Options::empty()).expect("seize");
        ptrace::interrupt(pid).expect("interrupt");
        waitpid(pid, Some(WaitPidFlag::__WALL)).expect("wait for stop");
        let regs = ptrace::getregs(pid).expect("getregs");
        ptrace::detach(pid, None).expect("detach");
        Registers::from_user_regs(&regs)
    }

    fn finish(mut self) {
        if let Some(mut stdin) = self.child.stdin.take() {
            let _ = stdin.write_all(b"x");
        }
        let _ = self.child.wait();
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Reads the live process with process_vm_readv.
struct LiveMemory(i32);

impl MemorySource for LiveMemory {
    fn read_memory(&self, addr: u64, buf: &mut [u8]) -> Result<(), MemoryError> {
        let len = buf.len();
        let remote = [RemoteIoVec {
            base: addr as usize,
            len,
        }];
        let mut local = [std::io::IoSliceMut::new(buf)];
        match process_vm_readv(Pid::from_raw(self.0), &mut local, &remote) {
            Ok(n) if n == len => Ok(()),
            Ok(n) => Err(MemoryError {
                addr: addr + n as u64,
            }),
            Err(_) => Err(MemoryError { addr }),
        }
    }
}

fn gdb_backtrace(pid: i32) -> Option<String> {
    let out = Command::new("gdb")
        .args([
            "-p",
            &pid.to_string(),
            "-batch",
            "-nx",
            "-ex",
            "set backtrace past-main on",
            "-ex",
            "bt",
        ])
        .output()
        .ok()?;
    Some(String::from_utf8_lossy(&out.stdout).into_owned())
}

fn names_of(frames: &[liveprobe::debuginfo::SourceFrame]) -> Vec<String> {
    frames
        .iter()
        .map(|f| f.function.clone().unwrap_or_else(|| "??".into()))
        .collect()
}

#[test]
fn c_basic_load_and_symbolize() {
    let run = Running::start("c_basic");
    let image = ProcessImage::load(run.pid()).expect("load");
    let main = image.main_module().expect("main module");
    assert_eq!(main.path(), fixture("c_basic"));
    assert!(main.debug_info().found);
    assert!(main.bias() != 0, "PIE executable must have a bias");
    assert!(main.build_id().is_some());
    assert!(
        image
            .modules()
            .iter()
            .any(|m| m.path().to_string_lossy().contains("libc.so"))
    );

    let regs = run.registers();
    let pc = regs.pc().unwrap();
    let frames = image.symbolize(RuntimeAddr(pc), false);
    let names = names_of(&frames);
    eprintln!("{frames:#?}");
    assert!(
        names.iter().any(|n| n.contains("read")),
        "pc in read, got {names:?}"
    );
    if let Some(bt) = gdb_backtrace(run.pid()) {
        eprintln!("gdb:\n{bt}");
    }
    run.finish();
}

/// Function names of a gdb `bt`, innermost first.
fn gdb_frame_names(bt: &str) -> Vec<String> {
    bt.lines()
        .filter(|l| l.starts_with('#'))
        .filter_map(|l| {
            let rest = l
                .trim_start_matches(|c: char| c == '#' || c.is_ascii_digit())
                .trim_start();
            let rest = match rest.split_once(" in ") {
                Some((addr, after)) if addr.starts_with("0x") => after,
                _ => rest,
            };
            Some(rest.split(" (").next()?.to_string())
        })
        .collect()
}

/// Unwinds the stopped main thread and symbolizes every frame (inlined frames expanded).
fn our_stack(image: &ProcessImage, run: &Running) -> Vec<(String, Option<String>, Option<u32>)> {
    let regs = run.registers();
    let mem = LiveMemory(run.pid());
    let frames = image.unwind(&regs, &mem, 64);
    let mut out = Vec::new();
    for f in &frames {
        eprintln!(
            "frame pc={} cfa={:?} caller={} {:?}",
            f.pc,
            f.cfa.map(|c| format!("{c:#x}")),
            f.is_caller,
            f.method
        );
        for s in image.symbolize(f.pc, f.is_caller) {
            out.push((s.function.unwrap_or_else(|| "??".into()), s.file, s.line));
        }
    }
    out
}

fn check_against_gdb(name: &str) -> Vec<(String, Option<String>, Option<u32>)> {
    let run = Running::start(name);
    let image = ProcessImage::load(run.pid()).expect("load");
    let ours = our_stack(&image, &run);
    eprintln!("ours: {ours:#?}");
    if let Some(bt) = gdb_backtrace(run.pid()) {
        let theirs = gdb_frame_names(&bt);
        eprintln!("gdb: {theirs:#?}");
        assert_eq!(
            ours.len(),
            theirs.len(),
            "frame count differs from gdb: ours {ours:?} gdb {theirs:?}"
        );
    }
    run.finish();
    ours
}

#[test]
fn c_basic_unwind_matches_gdb() {
    let ours = check_against_gdb("c_basic");
    let names: Vec<&str> = ours.iter().map(|f| f.0.as_str()).collect();
    assert_eq!(names[..3], ["__GI___libc_read", "work", "main"]);
    assert_eq!(ours[1].2, Some(24));
    assert!(ours[1].1.as_deref().unwrap_or("").ends_with("c_basic.c"));
    assert_eq!(ours[2].2, Some(30));
}

#[test]
fn c_inline_unwind_matches_gdb() {
    check_against_gdb("c_inline");
}

#[test]
fn cpp_unwind_matches_gdb() {
    check_against_gdb("cpp_class");
}

#[test]
fn rust_unwind_matches_gdb() {
    check_against_gdb("rust_basic");
}
