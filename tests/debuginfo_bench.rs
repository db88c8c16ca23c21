//! debuginfo room, performance: attach to the large debug-build benchmark target (tools/bench/bigtarget, ~130 MB
//! of DWARF) and resolve one `file:line`, printing time and memory. Ignored by default (it needs the target
//! built: `cargo build --offline --manifest-path tools/bench/bigtarget/Cargo.toml --target-dir
//! target/bench-bigtarget`); run with `cargo test --release --test debuginfo_bench -- --ignored --nocapture`.

use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Instant;

use liveprobe::debuginfo::ProcessImage;

fn rss() -> String {
    format!(
        "anon {} KB file {} KB",
        status_kb("RssAnon:"),
        status_kb("RssFile:")
    )
}

fn status_kb(field: &str) -> u64 {
    let text = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    text.lines()
        .find(|l| l.starts_with(field))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

#[test]
#[ignore]
fn bigtarget_attach_and_resolve_line() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let exe = root.join("target/bench-bigtarget/debug/bigtarget");
    if !exe.exists() {
        eprintln!("skipping: {} is not built", exe.display());
        return;
    }
    let source =
        std::fs::read_to_string(root.join("tools/bench/bigtarget/src/main.rs")).expect("main.rs");
    let line = source
        .lines()
        .position(|l| l.contains("BENCH-RESOLVE-LINE") && !l.trim_start().starts_with("//"))
        .expect("marker")
        + 1;
    let mut child = Command::new(&exe)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("spawn");
    let mut stdin = child.stdin.take().expect("stdin");
    let mut stdout = BufReader::new(child.stdout.take().expect("stdout"));
    stdin.write_all(b"ready?\n").expect("ask");
    let mut answer = String::new();
    stdout.read_line(&mut answer).expect("ready");
    let pid = child.id() as i32;

    let rss_before = status_kb("VmRSS:");
    let started = Instant::now();
    let image = ProcessImage::load(pid).expect("load");
    let loaded = started.elapsed();
    let main = image.main_module().expect("main");
    let _ = (main.build_id(), main.debug_info());
    let languages = image.languages();
    let after_languages = started.elapsed();
    eprintln!("after languages: {}", rss());
    let location = format!("main.rs:{line}");
    let info = image.source_file("main.rs").expect("source file");
    eprintln!(
        "source_file {:?} ({} code lines) at {:?}, RSS {} KB",
        info.path,
        info.code_lines.len(),
        started.elapsed(),
        rss()
    );
    let resolution = image.resolve_location(&location).expect("resolve");
    let resolved = started.elapsed();
    let rss_after = status_kb("VmRSS:");
    let hwm = status_kb("VmHWM:");
    eprintln!("after resolve: {}", rss());
    eprintln!(
        "load {:?}, languages {:?} ({:?}), resolve {location} -> {:?} total {:?}; RSS {} -> {} KB (peak {} KB)",
        loaded,
        languages,
        after_languages,
        resolution
            .sites
            .iter()
            .map(|s| (s.address, s.line))
            .collect::<Vec<_>>(),
        resolved,
        rss_before,
        rss_after,
        hwm
    );
    assert!(!resolution.sites.is_empty());
    let site = resolution.sites[0].address;
    let started = Instant::now();
    let unit = main.unit_for(main.to_file(site));
    eprintln!(
        "unit_for {:?}: {} after {:?}; {} (peak {} KB)",
        site,
        unit.is_some(),
        started.elapsed(),
        rss(),
        status_kb("VmHWM:")
    );

    let started = Instant::now();
    let found = image.find_functions("handle_command", 5);
    let first_query = started.elapsed();
    let by_name = image
        .resolve_location("handle_command")
        .expect("resolve function");
    let generic = image.find_functions("Serialize", 5);
    eprintln!(
        "name index: first find_functions {:?} ({:?}), resolve by name {:?}, total {:?}; {} generic hits; after names: {} (peak {} KB)",
        first_query,
        found.iter().map(|f| (&f.name, f.line)).collect::<Vec<_>>(),
        by_name
            .sites
            .iter()
            .map(|s| (s.address, &s.function, s.line))
            .collect::<Vec<_>>(),
        started.elapsed(),
        generic.len(),
        rss(),
        status_kb("VmHWM:")
    );

    if std::env::var_os("BENCH_GDB").is_some() {
        let started = Instant::now();
        let out = Command::new("/usr/bin/time")
            .args(["-f", "maxrss=%M"])
            .args([
                "gdb",
                "-p",
                &pid.to_string(),
                "-batch",
                "-nx",
                "-ex",
                &format!("break {location}"),
            ])
            .output()
            .expect("gdb");
        eprintln!(
            "gdb {:?}: {}",
            started.elapsed(),
            String::from_utf8_lossy(&out.stderr)
                .lines()
                .last()
                .unwrap_or("")
        );
    }
    drop(stdin);
    let _ = child.wait();
}

/// Per-call cost of unwinding and symbolizing a small C stack (read -> work -> main -> libc start), on memory
/// recorded once, so only debuginfo's own work is timed.
#[test]
#[ignore]
fn unwind_and_symbolize_cost() {
    use liveprobe::debuginfo::{RecordedMemory, Registers};
    use nix::sys::{ptrace, wait::waitpid};
    use nix::unistd::Pid;

    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("debuginfo_bench");
    std::fs::create_dir_all(&dir).expect("dir");
    let exe = dir.join("c_basic");
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/debuginfo/c_basic.c");
    let ok = Command::new("gcc")
        .args(["-g", "-O0", "-o"])
        .arg(&exe)
        .arg(&src)
        .status()
        .expect("gcc");
    assert!(ok.success());
    let mut child = Command::new(&exe)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("spawn");
    let mut line = String::new();
    BufReader::new(child.stdout.take().expect("stdout"))
        .read_line(&mut line)
        .expect("ready");
    let pid = Pid::from_raw(child.id() as i32);
    for _ in 0..1000 {
        let text = std::fs::read_to_string(format!("/proc/{pid}/syscall")).unwrap_or_default();
        if text.starts_with("0 ") {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(2));
    }
    ptrace::seize(pid, ptrace::Options::empty()).expect("seize");
    ptrace::interrupt(pid).expect("interrupt");
    waitpid(pid, None).expect("wait");
    let regs = Registers::from_user_regs(&ptrace::getregs(pid).expect("regs"));
    let sp = regs.sp().expect("sp");
    let mut stack = vec![0u8; 64 * 1024];
    let mut recorded = RecordedMemory::new();
    let mut len = stack.len();
    while len > 0 {
        let local = [std::io::IoSliceMut::new(&mut stack[..len])];
        let mut local = local;
        let remote = [nix::sys::uio::RemoteIoVec {
            base: sp as usize,
            len,
        }];
        if nix::sys::uio::process_vm_readv(pid, &mut local, &remote).is_ok() {
            break;
        }
        len /= 2;
    }
    stack.truncate(len);
    recorded.insert(sp, stack);
    let image = ProcessImage::load(pid.as_raw()).expect("load");
    ptrace::detach(pid, None).expect("detach");

    let frames = image.unwind(&regs, &recorded, 64);
    let warm: Vec<_> = frames
        .iter()
        .flat_map(|f| image.symbolize(f.pc, f.is_caller))
        .collect();
    let rounds = 2000;
    let started = Instant::now();
    for _ in 0..rounds {
        let frames = image.unwind(&regs, &recorded, 64);
        assert_eq!(frames.len(), 6);
    }
    let unwind = started.elapsed() / rounds;
    let started = Instant::now();
    for _ in 0..rounds {
        for f in &frames {
            let _ = image.symbolize(f.pc, f.is_caller);
        }
    }
    let symbolize = started.elapsed() / rounds;
    eprintln!(
        "{} frames ({} source frames): unwind {:?} per stack, symbolize {:?} per stack",
        frames.len(),
        warm.len(),
        unwind,
        symbolize
    );
    let _ = child.kill();
    let _ = child.wait();
}
