//! debuginfo room, live: compile fixtures (C -O0, C -O2 with inlining, C++, Rust), run them blocked on stdin,
//! and check ProcessImage::load, symbolize, unwind, resolve_location, find_functions and source_file against
//! what the sources say (and gdb, which they need as their oracle).

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::{Fixture, Launch, build_fixture_with, run_build_step};

use liveprobe::debuginfo::{MemoryError, MemorySource, ProcessImage, Registers, RuntimeAddr};
use nix::sys::ptrace;
use nix::sys::uio::{RemoteIoVec, process_vm_readv};
use nix::sys::wait::{WaitPidFlag, waitpid};
use nix::unistd::Pid;

fn fixtures_src() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/debuginfo")
}

/// Builds a fixture (see `common::build_fixture_with`) and returns the path
/// of this test's copy of it.
fn fixture(name: &str) -> PathBuf {
    let src = fixtures_src();
    // (compiler, flags, source, post-processing)
    let (compiler, flags, source): (&str, &[&str], &str) = match name {
        "c_basic" | "c_basic_symtab_only" | "c_basic_debuglink" => {
            ("gcc", &["-g", "-O0"], "c_basic.c")
        }
        "c_basic_nopie" => ("gcc", &["-g", "-O0", "-no-pie", "-fno-pie"], "c_basic.c"),
        "c_basic_dwarf4_zlib" => ("gcc", &["-gdwarf-4", "-O0", "-gz=zlib"], "c_basic.c"),
        "c_inline" => ("gcc", &["-g", "-O2"], "c_inline.c"),
        "cpp_class" => ("g++", &["-g", "-O0"], "cpp_class.cpp"),
        "c_signal" => ("gcc", &["-g", "-O0"], "c_signal.c"),
        "rust_v0" => (
            "rustc",
            &[
                "-g",
                "-C",
                "opt-level=0",
                "-C",
                "symbol-mangling-version=v0",
                "--crate-name",
                "fixture",
            ],
            "rust_basic.rs",
        ),
        // No .eh_frame for our own code: its CFI is only in .debug_frame.
        "c_basic_debug_frame" => (
            "gcc",
            &[
                "-g",
                "-O0",
                "-fno-asynchronous-unwind-tables",
                "-fno-unwind-tables",
            ],
            "c_basic.c",
        ),
        "c_threads" => ("gcc", &["-g", "-O0", "-pthread"], "c_threads.c"),
        "c_vdso" => ("gcc", &["-g", "-O1"], "c_vdso.c"),
        "rust_basic" => (
            "rustc",
            &["-g", "-C", "opt-level=0", "--crate-name", "fixture"],
            "rust_basic.rs",
        ),
        other => panic!("unknown fixture {other}"),
    };
    let source = src.join(source);
    let companions: &[&str] = if name == "c_basic_debuglink" {
        &[".debug"]
    } else {
        &[]
    };
    let recipe = format!("{compiler} {flags:?} {} then {name}", source.display());
    build_fixture_with(
        name,
        std::slice::from_ref(&source),
        &recipe,
        companions,
        |out| {
            run_build_step(
                Command::new(compiler)
                    .args(flags)
                    .arg("-o")
                    .arg(out)
                    .arg(&source),
                name,
            );
            match name {
                "c_basic_symtab_only" => {
                    run_build_step(Command::new("strip").arg("--strip-debug").arg(out), name)
                }
                "c_basic_debuglink" => {
                    // DWARF moved to a separate file next to the executable,
                    // found through .gnu_debuglink (which keeps the base name).
                    let debug = out.with_extension("debug");
                    run_build_step(
                        Command::new("objcopy")
                            .arg("--only-keep-debug")
                            .arg(out)
                            .arg(&debug),
                        name,
                    );
                    run_build_step(
                        Command::new("objcopy")
                            .arg("--strip-debug")
                            .arg(format!("--add-gnu-debuglink={}", debug.display()))
                            .arg(out),
                        name,
                    );
                }
                _ => {}
            }
        },
    )
}

/// A running fixture (the common driver), blocked in read(2).
struct Running {
    fixture: Fixture,
}

impl Running {
    fn start(name: &str) -> Running {
        Running::start_then(name, |_| {})
    }

    /// Starts a fixture, waits for its "ready" line, runs `poke` (e.g. send a signal), then waits until the
    /// main thread blocks in read(2), so stacks are deterministic.
    fn start_then(name: &str, poke: impl FnOnce(i32)) -> Running {
        let fixture = Launch::new(&fixture(name)).ready_without_pid().start();
        poke(fixture.pid);
        fixture.wait_blocked_in_read();
        Running { fixture }
    }

    fn pid(&self) -> i32 {
        self.fixture.pid
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
        self.fixture.send("x");
        self.fixture.close_stdin();
        self.fixture.wait_exit_status();
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

/// gdb's output for `args`. gdb is the oracle of these tests: without it
/// they fail, saying so, rather than check nothing.
fn run_gdb(args: &[&str]) -> String {
    let out = Command::new("gdb")
        .args(["-batch", "-nx", "-ex", "set width 0", "-ex", "set height 0"])
        .args(args)
        .output()
        .unwrap_or_else(|e| {
            panic!("gdb is needed by this test as its oracle and cannot run ({e}); install it (apt-get install gdb)")
        });
    String::from_utf8_lossy(&out.stdout).into_owned() + "\n" + &String::from_utf8_lossy(&out.stderr)
}

/// gdb's `bt` of the process, frame arguments left out.
fn gdb_backtrace(pid: i32) -> String {
    run_gdb(&[
        "-p",
        &pid.to_string(),
        "-ex",
        "set backtrace past-main on",
        "-ex",
        "set print frame-arguments none",
        "-ex",
        "bt",
    ])
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
    eprintln!("gdb:\n{}", gdb_backtrace(run.pid()));
    run.finish();
}

/// One frame of a gdb `bt`: function, file, line (file and line when gdb
/// has them).
#[derive(Debug)]
struct GdbFrame {
    function: String,
    file: Option<String>,
    line: Option<u32>,
}

/// The frames of a gdb `bt` (made with `set print frame-arguments none`),
/// innermost first. A line reads `#N  [0xADDR in ]NAME (...)[ at FILE:LINE |
/// from LIBRARY]`.
fn gdb_frames(bt: &str) -> Vec<GdbFrame> {
    bt.lines()
        .filter(|l| l.starts_with('#'))
        .map(|l| {
            let rest = l
                .trim_start_matches(|c: char| c == '#' || c.is_ascii_digit())
                .trim_start();
            let rest = match rest.split_once(" in ") {
                Some((addr, after)) if addr.starts_with("0x") => after,
                _ => rest,
            };
            // NAME (...) [at FILE:LINE | from LIBRARY]; a Rust NAME may hold
            // " (" in its generic arguments (`call_once<fn(), ()>`).
            let (call, place) = match rest.rsplit_once(" at ") {
                Some((call, at)) => (call, Some(at)),
                None => (
                    rest.rsplit_once(" from ").map_or(rest, |(call, _)| call),
                    None,
                ),
            };
            // `<signal handler called>` has no argument list.
            let function = call.rsplit_once(" (").map_or(call, |(name, _)| name);
            let function = function.to_string();
            let place = place
                .and_then(|at| at.rsplit_once(':'))
                .and_then(|(file, line)| Some((file.to_string(), line.trim().parse().ok()?)));
            GdbFrame {
                function,
                file: place.as_ref().map(|(f, _)| f.clone()),
                line: place.map(|(_, l)| l),
            }
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

/// Whether our name of a frame's function is gdb's. C and C++ names are the
/// same but for generic arguments. For Rust, ours come from the demangled
/// symbol (`<std::io::stdio::Stdin as std::io::Read>::read`) and gdb's from
/// DWARF's scopes (`std::io::stdio::{impl#5}::read`): the function itself
/// must be the same, with closures named either way.
fn same_function(ours: &str, gdb: &str, file: Option<&str>) -> bool {
    fn plain(name: &str) -> String {
        let mut out = String::new();
        let mut depth = 0usize;
        let mut previous = ' ';
        for c in name.chars() {
            match c {
                '<' => depth += 1,
                '>' if previous != '-' => depth = depth.saturating_sub(1),
                _ if depth == 0 => out.push(c),
                _ => {}
            }
            previous = c;
        }
        let mut out = out
            .trim_end_matches("::")
            .replace("{{closure}}", "{closure}");
        while let Some(at) = out.find("{closure#") {
            let Some(end) = out[at..].find('}') else {
                break;
            };
            out.replace_range(at..at + end + 1, "{closure}");
        }
        out
    }
    let (ours, gdb) = (plain(ours), plain(gdb));
    let leaf = |n: &str| n.rsplit("::").next().unwrap_or(n).to_string();
    ours == gdb || (file.is_some_and(|f| f.ends_with(".rs")) && leaf(&ours) == leaf(&gdb))
}

/// Our stack of fixture `name` blocked in read(2), checked frame by frame
/// against gdb's: the same functions, and where gdb names a file and a
/// line, the same file name and line.
fn check_against_gdb(name: &str) -> Vec<(String, Option<String>, Option<u32>)> {
    let run = Running::start(name);
    let image = ProcessImage::load(run.pid()).expect("load");
    let ours = our_stack(&image, &run);
    eprintln!("ours: {ours:#?}");
    let bt = gdb_backtrace(run.pid());
    let theirs = gdb_frames(&bt);
    eprintln!("gdb: {theirs:#?}");
    assert!(!theirs.is_empty(), "gdb printed no frames:\n{bt}");
    assert_eq!(
        ours.len(),
        theirs.len(),
        "frame count differs from gdb: ours {ours:?} gdb {theirs:?}"
    );
    for (k, ((function, file, line), gdb)) in ours.iter().zip(&theirs).enumerate() {
        assert!(
            same_function(function, &gdb.function, file.as_deref()),
            "frame {k}: ours {function:?}, gdb's {:?}\nours {ours:?}\ngdb {theirs:?}",
            gdb.function
        );
        if let Some(gdb_file) = &gdb.file {
            let base = |p: &str| Path::new(p).file_name().map(|n| n.to_os_string());
            assert!(
                file.as_deref().is_some_and(|f| base(f) == base(gdb_file)),
                "frame {k} ({function}): our file {file:?}, gdb's {gdb_file}"
            );
            assert_eq!(
                *line, gdb.line,
                "frame {k} ({function}): line differs from gdb"
            );
        }
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

/// An image of one executable on disk at bias 0 (file addresses are runtime addresses), no process needed.
fn offline_image(name: &str) -> ProcessImage {
    let exe = fixture(name);
    let module = liveprobe::debuginfo::Module::open_file(&exe, 0).expect("open fixture");
    ProcessImage::from_modules(0, vec![std::sync::Arc::new(module)], Some(0))
}

/// Addresses gdb chooses for `break LOCATION` on the executable (file addresses for PIE).
fn gdb_break_addrs(exe: &Path, location: &str) -> Vec<u64> {
    let exe = exe.to_string_lossy();
    let text = run_gdb(&[
        "-ex",
        &format!("break {location}"),
        "-ex",
        "info breakpoints",
        &exe,
    ]);
    let mut addrs = Vec::new();
    for line in text.lines() {
        let fields: Vec<&str> = line.split_whitespace().collect();
        // "1       breakpoint     keep y   0x0000000000001189 in work at c_basic.c:24" or "1.2  y  0x... in ..."
        let addr = if fields.first().is_some_and(|f| f.contains('.')) {
            fields.get(2)
        } else if fields.get(1) == Some(&"breakpoint") {
            fields.get(4)
        } else {
            None
        };
        if let Some(a) = addr.and_then(|a| a.strip_prefix("0x"))
            && let Ok(v) = u64::from_str_radix(a, 16)
        {
            addrs.push(v);
        }
    }
    addrs.sort_unstable();
    assert!(
        !addrs.is_empty(),
        "gdb placed no breakpoint at {location}:\n{text}"
    );
    addrs
}

fn site_addrs(image: &ProcessImage, location: &str) -> Vec<u64> {
    let res = image
        .resolve_location(location)
        .unwrap_or_else(|e| panic!("resolve {location}: {e}"));
    let mut v: Vec<u64> = res.sites.iter().map(|s| s.address.0).collect();
    v.sort_unstable();
    v
}

fn assert_same_as_gdb(name: &str, location: &str) {
    let image = offline_image(name);
    let ours = site_addrs(&image, location);
    assert!(!ours.is_empty(), "{location}: no sites");
    let theirs = gdb_break_addrs(&fixture(name), location);
    assert_eq!(
        ours, theirs,
        "{name} {location}: ours {ours:x?} gdb {theirs:x?}"
    );
}

#[test]
fn c_basic_locations_match_gdb() {
    for loc in [
        "c_basic.c:24",
        "c_basic.c:19",
        "c_basic.c:10",
        "work",
        "helper",
        "main",
        "c_basic.c:14",
        "c_basic.c:18",
    ] {
        assert_same_as_gdb("c_basic", loc);
    }
}

#[test]
fn c_basic_line_without_code_moves_forward_and_says_so() {
    let image = offline_image("c_basic");
    let res = image.resolve_location("c_basic.c:23").expect("resolve");
    assert_eq!(res.sites.len(), 1);
    assert_eq!(res.sites[0].line, Some(24));
    assert_eq!(res.sites[0].function.as_deref(), Some("work"));
    let note = res.note.expect("a note");
    assert!(note.contains("23") && note.contains("24"), "{note}");
}

#[test]
fn c_basic_source_file_and_errors() {
    let image = offline_image("c_basic");
    let info = image.source_file("c_basic.c").expect("source file");
    assert!(
        info.path.ends_with("tests/fixtures/debuginfo/c_basic.c"),
        "{:?}",
        info.path
    );
    for line in [10, 15, 19, 21, 22, 24, 25] {
        assert!(
            info.code_lines.contains(&line),
            "line {line} should have code: {:?}",
            info.code_lines
        );
    }
    for line in [16, 17, 20, 23] {
        assert!(
            !info.code_lines.contains(&line),
            "line {line} has no code: {:?}",
            info.code_lines
        );
    }
    assert!(
        image.source_file("debuginfo/c_basic.c").is_ok(),
        "path suffix"
    );

    let err = image
        .resolve_location("c_basic.c:500")
        .unwrap_err()
        .to_string();
    assert!(err.contains("500") && err.contains("32"), "{err}");
    let err = image
        .resolve_location("cbasic.c:3")
        .unwrap_err()
        .to_string();
    assert!(err.contains("c_basic.c"), "suggests the real file: {err}");
    let err = image.resolve_location("wrok").unwrap_err().to_string();
    assert!(err.contains("work"), "suggests work: {err}");
    assert!(image.resolve_location("*0xzz").is_err());
    assert!(image.resolve_location("*0xdead00000000").is_err());
}

#[test]
fn c_basic_find_functions() {
    let image = offline_image("c_basic");
    let found = image.find_functions("WOR", 10);
    let work = found.iter().find(|f| f.name == "work").expect("work found");
    assert_eq!(work.line, Some(13));
    assert!(work.file.as_deref().unwrap_or("").ends_with("c_basic.c"));
    let exact = image.find_functions("main", 10);
    assert_eq!(
        exact.first().map(|f| f.name.as_str()),
        Some("main"),
        "exact match first: {exact:?}"
    );
    assert_eq!(image.languages(), ["c"]);
}

#[test]
fn c_inline_copies_are_all_resolved() {
    let image = offline_image("c_inline");
    let res = image.resolve_location("square_plus").expect("resolve");
    assert_eq!(res.sites.len(), 2, "{res:?}");
    assert!(res.sites.iter().all(|s| s.inlined));
    let res = image.resolve_location("c_inline.c:10").expect("resolve");
    assert_eq!(res.sites.len(), 2, "{res:?}");
    // gdb agrees: the first copy starts at compute's first instruction, whose DWARF range excludes it.
    assert!(
        res.sites
            .iter()
            .any(|s| s.inlined && s.function.as_deref() == Some("square_plus")),
        "{res:?}"
    );
    assert_same_as_gdb("c_inline", "c_inline.c:10");
    assert_same_as_gdb("c_inline", "compute");
    assert_same_as_gdb("c_inline", "block_here");
    // symbolize inside an inlined copy: square_plus (inlined) then compute.
    let frames = image.symbolize(res.sites[1].address, false);
    let names = names_of(&frames);
    assert_eq!(names, ["square_plus", "compute"], "{frames:?}");
    assert!(frames[0].inlined && !frames[1].inlined);
}

#[test]
fn cpp_method_names() {
    let image = offline_image("cpp_class");
    let a = site_addrs(&image, "Cache::get");
    assert_eq!(a.len(), 1);
    assert_eq!(a, site_addrs(&image, "store::Cache::get"));
    assert_eq!(a, site_addrs(&image, "_ZN5store5Cache3getEi"));
    assert_same_as_gdb("cpp_class", "store::Cache::get");
    assert_same_as_gdb("cpp_class", "cpp_class.cpp:20");
    let found = image.find_functions("cache", 20);
    let names: Vec<&str> = found.iter().map(|f| f.name.as_str()).collect();
    assert!(
        names.contains(&"store::Cache::get") && names.contains(&"store::Cache::size"),
        "{names:?}"
    );
    assert_eq!(image.languages(), ["c++"]);
}

#[test]
fn rust_names_and_lines() {
    let image = offline_image("rust_basic");
    let worker = site_addrs(&image, "fixture::worker");
    assert_eq!(worker.len(), 1);
    assert_eq!(worker, site_addrs(&image, "worker"));
    let get = image.resolve_location("Cache::get").expect("Cache::get");
    assert_eq!(get.sites.len(), 1, "{get:?}");
    assert!(
        get.sites[0]
            .function
            .as_deref()
            .unwrap_or("")
            .contains("Cache"),
        "{get:?}"
    );
    assert_same_as_gdb("rust_basic", "rust_basic.rs:21");
    assert_same_as_gdb("rust_basic", "fixture::worker");
    let found = image.find_functions("worker", 5);
    assert_eq!(
        found.first().map(|f| f.name.as_str()),
        Some("fixture::worker")
    );
    assert_eq!(found[0].line, Some(19));
    assert_eq!(image.languages().first().map(String::as_str), Some("rust"));
}

#[test]
fn live_resolution_applies_the_load_bias() {
    let run = Running::start("c_basic");
    let image = ProcessImage::load(run.pid()).expect("load");
    let bias = image.main_module().unwrap().bias();
    let live = site_addrs(&image, "c_basic.c:24");
    let offline = site_addrs(&offline_image("c_basic"), "c_basic.c:24");
    assert_eq!(live, offline.iter().map(|a| a + bias).collect::<Vec<_>>());
    let addr = format!("*{:#x}", live[0]);
    let res = image.resolve_location(&addr).expect("address");
    assert_eq!(res.sites[0].line, Some(24));
    assert_eq!(image.languages(), ["c"]);
    run.finish();
}

#[test]
fn non_pie_and_dwarf4_compressed() {
    for name in ["c_basic_nopie", "c_basic_dwarf4_zlib"] {
        let run = Running::start(name);
        let image = ProcessImage::load(run.pid()).expect("load");
        let main = image.main_module().expect("main");
        if name == "c_basic_nopie" {
            assert_eq!(main.bias(), 0);
        }
        let ours = our_stack(&image, &run);
        let names: Vec<&str> = ours.iter().map(|f| f.0.as_str()).collect();
        assert_eq!(names[..3], ["__GI___libc_read", "work", "main"], "{name}");
        assert_eq!(ours[1].2, Some(24), "{name}");
        let res = image.resolve_location("c_basic.c:19").expect("resolve");
        assert_eq!(res.sites.len(), 1, "{name}");
        run.finish();
    }
}

#[test]
fn unwinds_through_a_signal_frame() {
    let run = Running::start("c_signal");
    let image = ProcessImage::load(run.pid()).expect("load");
    let regs = run.registers();
    let frames = image.unwind(&regs, &LiveMemory(run.pid()), 64);
    let names: Vec<String> = frames
        .iter()
        .map(|f| {
            image
                .symbolize(f.pc, f.is_caller)
                .last()
                .and_then(|s| s.function.clone())
                .unwrap_or_default()
        })
        .collect();
    eprintln!("{names:?}");
    let handler = names
        .iter()
        .position(|n| n == "on_signal")
        .expect("handler frame");
    let trampoline = handler + 1;
    assert!(
        names[trampoline].contains("restore_rt"),
        "trampoline after the handler: {names:?}"
    );
    assert!(frames[trampoline].is_signal_trampoline);
    assert!(
        !frames[trampoline + 1].is_caller,
        "the interrupted pc is not a return address"
    );
    let spin = names.iter().position(|n| n == "spin").expect("spin frame");
    assert!(spin > trampoline, "{names:?}");
    assert_eq!(names[spin + 1], "main", "{names:?}");
    // gdb also synthesizes frames for tail calls (__pthread_kill_internal jumps to
    // __pthread_kill_implementation); every frame of ours must appear in its list, in order.
    let bt = gdb_backtrace(run.pid());
    let theirs: Vec<String> = gdb_frames(&bt)
        .into_iter()
        .map(|f| {
            if f.function.starts_with("<signal handler called>") {
                "__restore_rt".to_string()
            } else {
                f.function
            }
        })
        .collect();
    assert!(!theirs.is_empty(), "gdb printed no frames:\n{bt}");
    let mut it = theirs.iter();
    for n in &names {
        assert!(
            it.any(|t| t == n),
            "{n} missing or out of order in gdb's {theirs:?}"
        );
    }
}

#[test]
fn separate_debug_file_through_debuglink() {
    let run = Running::start("c_basic_debuglink");
    let image = ProcessImage::load(run.pid()).expect("load");
    let main = image.main_module().expect("main");
    let status = main.debug_info();
    assert!(status.found);
    assert_eq!(
        status.path.as_deref(),
        Some(
            fixture("c_basic_debuglink")
                .with_extension("debug")
                .as_path()
        )
    );
    let ours = our_stack(&image, &run);
    assert_eq!(ours[1].0, "work");
    assert_eq!(ours[1].2, Some(24));
    assert_eq!(
        image
            .resolve_location("c_basic.c:24")
            .expect("resolve")
            .sites
            .len(),
        1
    );
    run.finish();
}

#[test]
fn symbols_without_dwarf() {
    let run = Running::start("c_basic_symtab_only");
    let image = ProcessImage::load(run.pid()).expect("load");
    let main = image.main_module().expect("main");
    assert!(!main.debug_info().found);
    let ours = our_stack(&image, &run);
    let names: Vec<&str> = ours.iter().map(|f| f.0.as_str()).collect();
    assert_eq!(
        names[..3],
        ["__GI___libc_read", "work", "main"],
        "CFI unwinding and .symtab names"
    );
    assert_eq!(ours[1].2, None, "no line without DWARF");
    let res = image.resolve_location("work").expect("function by symbol");
    assert_eq!(res.sites.len(), 1);
    assert!(
        res.note.is_some(),
        "says the probe is at the entry: {res:?}"
    );
    assert!(
        image
            .find_functions("work", 5)
            .iter()
            .any(|f| f.name == "work")
    );
    let err = image
        .resolve_location("c_basic.c:24")
        .unwrap_err()
        .to_string();
    assert!(err.contains("c_basic.c"), "{err}");
    run.finish();
}

#[test]
fn rust_v0_mangling() {
    let image = offline_image("rust_v0");
    let worker = image.resolve_location("fixture::worker").expect("worker");
    assert_eq!(worker.sites.len(), 1);
    assert_eq!(worker.sites[0].function.as_deref(), Some("fixture::worker"));
    let get = image.resolve_location("Cache::get").expect("Cache::get");
    assert_eq!(get.sites.len(), 1, "{get:?}");
    let frames = image.symbolize(worker.sites[0].address, false);
    assert_eq!(frames[0].function.as_deref(), Some("fixture::worker"));
}

#[test]
fn unwinds_out_of_the_vdso() {
    let spinning = Launch::new(&fixture("c_vdso")).ready_without_pid().start();
    let pid = Pid::from_raw(spinning.pid);
    let image = ProcessImage::load(pid.as_raw()).expect("load");
    let vdso = image
        .modules()
        .iter()
        .find(|m| m.path() == Path::new("[vdso]"))
        .expect("vdso module")
        .clone();
    ptrace::seize(pid, ptrace::Options::empty()).expect("seize");
    let mut caught = None;
    // The fixture spends nearly all its time in clock_gettime: a miss in
    // 20000 stops means something is wrong, not bad luck.
    for _ in 0..20_000 {
        ptrace::interrupt(pid).expect("interrupt");
        waitpid(pid, Some(WaitPidFlag::__WALL)).expect("wait");
        let regs = Registers::from_user_regs(&ptrace::getregs(pid).expect("regs"));
        if vdso.contains(RuntimeAddr(regs.pc().unwrap_or(0))) {
            let frames = image.unwind(&regs, &LiveMemory(pid.as_raw()), 16);
            let names: Vec<String> = frames
                .iter()
                .map(|f| {
                    image
                        .symbolize(f.pc, f.is_caller)
                        .last()
                        .and_then(|s| s.function.clone())
                        .unwrap_or_default()
                })
                .collect();
            caught = Some((frames, names));
            break;
        }
        ptrace::cont(pid, None).expect("cont");
    }
    drop(spinning);
    let Some((frames, names)) = caught else {
        panic!("never caught the thread inside the vDSO in 20000 stops");
    };
    eprintln!("{names:?}");
    assert!(names[0].contains("gettime"), "vDSO symbol: {names:?}");
    assert_eq!(
        frames[1].method,
        liveprobe::debuginfo::UnwindMethod::Cfi,
        "the vDSO's own CFI is used"
    );
    let tick = names.iter().position(|n| n == "tick").expect("tick");
    assert_eq!(
        names.get(tick + 1).map(String::as_str),
        Some("main"),
        "{names:?}"
    );
}

#[test]
fn unwinds_a_thread_to_its_start() {
    let threads = Launch::new(&fixture("c_threads"))
        .ready_without_pid()
        .start();
    let pid = threads.pid;
    // The worker is the task that is not the main thread; wait until it sits in read(2).
    let mut worker = None;
    for _ in 0..2000 {
        let tasks = std::fs::read_dir(format!("/proc/{pid}/task")).expect("tasks");
        for task in tasks.flatten() {
            let tid: i32 = task.file_name().to_string_lossy().parse().unwrap_or(0);
            let syscall = std::fs::read_to_string(format!("/proc/{pid}/task/{tid}/syscall"))
                .unwrap_or_default();
            if tid != pid && syscall.starts_with("0 ") {
                worker = Some(tid);
            }
        }
        if worker.is_some() {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(2));
    }
    let tid = Pid::from_raw(worker.expect("worker blocked in read"));
    let image = ProcessImage::load(pid).expect("load");
    ptrace::seize(tid, ptrace::Options::empty()).expect("seize");
    ptrace::interrupt(tid).expect("interrupt");
    waitpid(tid, Some(WaitPidFlag::__WALL)).expect("wait");
    let regs = Registers::from_user_regs(&ptrace::getregs(tid).expect("regs"));
    let frames = image.unwind(&regs, &LiveMemory(pid), 64);
    ptrace::detach(tid, None).expect("detach");
    let names: Vec<String> = frames
        .iter()
        .map(|f| {
            image
                .symbolize(f.pc, f.is_caller)
                .last()
                .and_then(|s| s.function.clone())
                .unwrap_or_default()
        })
        .collect();
    drop(threads);
    eprintln!("{names:?}");
    assert_eq!(names[0], "__GI___libc_read");
    assert_eq!(names[1], "worker_body");
    assert_eq!(names[2], "start_thread");
    assert!(
        names.last().is_some_and(|n| n.contains("clone")),
        "ends at clone3: {names:?}"
    );
    assert_eq!(
        names.len(),
        4,
        "nothing invented past the thread's first frame: {names:?}"
    );
}

#[test]
fn unwinds_with_debug_frame_only() {
    let run = Running::start("c_basic_debug_frame");
    let image = ProcessImage::load(run.pid()).expect("load");
    let regs = run.registers();
    let frames = image.unwind(&regs, &LiveMemory(run.pid()), 64);
    let names: Vec<String> = frames
        .iter()
        .map(|f| {
            image
                .symbolize(f.pc, f.is_caller)
                .last()
                .and_then(|s| s.function.clone())
                .unwrap_or_default()
        })
        .collect();
    eprintln!(
        "{names:?} {:?}",
        frames.iter().map(|f| f.method).collect::<Vec<_>>()
    );
    assert_eq!(names[..3], ["__GI___libc_read", "work", "main"]);
    // main's registers come from work's CFI, which exists only in .debug_frame.
    assert_eq!(frames[2].method, liveprobe::debuginfo::UnwindMethod::Cfi);
    assert!(
        names.iter().any(|n| n == "__libc_start_call_main"),
        "{names:?}"
    );
    run.finish();
}
