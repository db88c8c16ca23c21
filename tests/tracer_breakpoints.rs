//! Non-breaking breakpoints against real processes: nothing lost under a
//! 4-thread hit storm, every relocated or emulated instruction kind keeps
//! the program's results, and forks, vforks, execs, exits, thread churn,
//! removal and detach in the middle of a storm leave the target healthy.
//! The fixture is tests/fixtures/tracer/breakpoints.c, driven on stdin.

mod common;

use common::{Fixture, Launch};
use liveprobe::addr::RuntimeAddr;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use liveprobe::tracer::{
    BreakpointEnd, HitContext, HitHandler, HitVerdict, TargetState, TraceError, Tracer,
};

const WAIT: Duration = common::WAIT;

fn fixture_exe() -> PathBuf {
    common::build_fixture("tracer/breakpoints.c", "tracer_breakpoints", &["-O2"])
}

/// The fixture under a `sh` (a target of liveprobe is never its child: see
/// `common::Launch::under_shell`).
fn breakpoints() -> Fixture {
    Launch::new(&fixture_exe()).under_shell().start()
}

/// The fixture's probe sites by name, as it lists them.
fn sites_of(fixture: &mut Fixture) -> HashMap<String, u64> {
    fixture.send("sites");
    let mut sites = HashMap::new();
    loop {
        let line = fixture.expect_line("site");
        if line == "sites-end" {
            return sites;
        }
        let mut parts = line.split_whitespace().skip(1);
        let name = parts.next().expect("site name").to_string();
        let addr = parts.next().expect("site address");
        let addr = u64::from_str_radix(addr.trim_start_matches("0x"), 16).expect("hex");
        sites.insert(name, addr);
    }
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime")
}

/// Counts hits, remembers how it ended, and asks for removal after
/// `remove_after` hits when set.
#[derive(Clone, Default)]
struct Counter {
    hits: Arc<AtomicU64>,
    ends: Arc<Mutex<Vec<BreakpointEnd>>>,
    /// rip seen at each hit must be the breakpoint address.
    bad_rip: Arc<AtomicU64>,
    remove_after: Option<u64>,
}

impl Counter {
    fn hits(&self) -> u64 {
        self.hits.load(Ordering::SeqCst)
    }

    fn ends(&self) -> Vec<BreakpointEnd> {
        self.ends.lock().expect("ends").clone()
    }

    fn handler(&self) -> Box<dyn HitHandler> {
        Box::new(self.clone())
    }
}

impl HitHandler for Counter {
    fn on_hit(&mut self, hit: &HitContext<'_>) -> HitVerdict {
        if hit.regs.rip != hit.address {
            self.bad_rip.fetch_add(1, Ordering::SeqCst);
        }
        let n = self.hits.fetch_add(1, Ordering::SeqCst) + 1;
        match self.remove_after {
            Some(limit) if n >= limit => HitVerdict::RemoveGroup,
            _ => HitVerdict::Keep,
        }
    }

    fn on_end(&mut self, why: &BreakpointEnd) {
        self.ends.lock().expect("ends").push(why.clone());
    }
}

/// Anonymous executable mappings of a process (where scratch pages live).
fn anonymous_code_mappings(pid: i32) -> Vec<String> {
    let maps = std::fs::read_to_string(format!("/proc/{pid}/maps")).unwrap_or_default();
    maps.lines()
        .filter(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            fields.len() == 5 && fields[1].contains('x')
        })
        .map(str::to_string)
        .collect()
}

#[test]
fn nothing_is_lost_under_a_four_thread_hit_storm() {
    let rt = runtime();
    let tracer = Tracer::start().expect("tracer");
    let mut fixture = breakpoints();
    let sites = sites_of(&mut fixture);
    let unprobed = fixture.ask("hammer 100000", "checksum");
    let code_before = anonymous_code_mappings(fixture.pid);

    rt.block_on(tracer.attach(fixture.pid)).expect("attach");
    let counter = Counter::default();
    rt.block_on(tracer.insert_breakpoint(
        fixture.pid,
        RuntimeAddr(sites["hot"]),
        1,
        counter.handler(),
    ))
    .expect("insert at hot");
    let probed = fixture.ask("hammer 100000", "checksum");
    assert_eq!(probed, unprobed, "the probed run computed something else");
    assert_eq!(counter.hits(), 400_000, "hits were lost or invented");
    assert_eq!(counter.bad_rip.load(Ordering::SeqCst), 0);

    let removed = rt
        .block_on(tracer.remove_group(fixture.pid, 1))
        .expect("remove");
    assert_eq!(removed, 1);
    assert_eq!(counter.ends(), vec![BreakpointEnd::Removed]);
    assert_eq!(fixture.ask("hammer 1000", "checksum"), {
        // Same computation without any breakpoint: compare with itself.
        fixture.ask("hammer 1000", "checksum")
    });
    assert_eq!(counter.hits(), 400_000, "a removed breakpoint still counts");

    rt.block_on(tracer.detach(fixture.pid)).expect("detach");
    assert_eq!(
        anonymous_code_mappings(fixture.pid),
        code_before,
        "the scratch page must be unmapped at detach"
    );
    fixture.send("exit 0");
    assert_eq!(fixture.wait_exit_status().code(), Some(0));
}

#[test]
fn every_instruction_kind_runs_correctly_out_of_line_or_emulated() {
    let rt = runtime();
    let tracer = Tracer::start().expect("tracer");
    let mut fixture = breakpoints();
    let sites = sites_of(&mut fixture);
    let unprobed = fixture.ask("reloc 1000", "checksum");
    rt.block_on(tracer.attach(fixture.pid)).expect("attach");

    // How often each site runs in reloc_mix(0..1000).
    let expected: &[(&str, u64)] = &[
        ("push", 1000),
        ("riprel_load", 1000),
        ("riprel_store", 1000),
        ("riprel_cmp", 1000),
        ("lea", 1000),
        ("call", 1000),
        ("call_reg", 1000),
        ("call_mem", 1000),
        ("jcc", 1000),
        ("jmp", 1000),
        ("loop", 3000),
        ("jmp_reg", 1000),
        ("pop", 1000),
        ("ret", 1000),
    ];
    let mut counters = Vec::new();
    for (group, (name, _)) in expected.iter().enumerate() {
        let counter = Counter::default();
        rt.block_on(tracer.insert_breakpoint(
            fixture.pid,
            RuntimeAddr(sites[*name]),
            group as u64 + 10,
            counter.handler(),
        ))
        .unwrap_or_else(|e| panic!("insert at {name}: {e}"));
        counters.push(counter);
    }
    let probed = fixture.ask("reloc 1000", "checksum");
    assert_eq!(probed, unprobed, "relocated code computed something else");
    for ((name, runs), counter) in expected.iter().zip(&counters) {
        assert_eq!(counter.hits(), *runs, "hits at {name}");
        assert_eq!(counter.bad_rip.load(Ordering::SeqCst), 0, "rip at {name}");
    }

    // Refusals name their reason.
    let syscall = rt
        .block_on(tracer.insert_breakpoint(
            fixture.pid,
            RuntimeAddr(sites["syscall"]),
            99,
            Counter::default().handler(),
        ))
        .expect_err("syscall refused");
    assert!(
        matches!(syscall, TraceError::BreakpointRefused { .. })
            && syscall.to_string().contains("`syscall`"),
        "{syscall}"
    );
    let inside = rt
        .block_on(tracer.insert_breakpoint(
            fixture.pid,
            RuntimeAddr(sites["riprel_load"] + 2),
            99,
            Counter::default().handler(),
        ))
        .expect_err("mid-instruction refused");
    assert!(
        inside.to_string().contains("inside the instruction"),
        "{inside}"
    );
    let nowhere = rt
        .block_on(tracer.insert_breakpoint(
            fixture.pid,
            RuntimeAddr(0x10),
            99,
            Counter::default().handler(),
        ))
        .expect_err("unmapped refused");
    assert!(
        nowhere.to_string().contains("no executable code"),
        "{nowhere}"
    );

    rt.block_on(tracer.detach(fixture.pid)).expect("detach");
    for counter in &counters {
        assert_eq!(counter.ends(), vec![BreakpointEnd::Detached]);
    }
    assert_eq!(fixture.ask("reloc 1000", "checksum"), unprobed);
    fixture.send("exit 0");
    assert_eq!(fixture.wait_exit_status().code(), Some(0));
}

#[test]
fn fork_vfork_and_spawn_children_live_on_while_armed() {
    let rt = runtime();
    let tracer = Tracer::start().expect("tracer");
    let mut fixture = breakpoints();
    let sites = sites_of(&mut fixture);
    let unprobed_child = fixture.ask("fork 2000", "child-checksum");
    assert_eq!(fixture.expect_line("forked"), "forked 0");

    rt.block_on(tracer.attach(fixture.pid)).expect("attach");
    let counter = Counter::default();
    for (group, name) in ["hot", "call", "ret", "riprel_store"].iter().enumerate() {
        rt.block_on(tracer.insert_breakpoint(
            fixture.pid,
            RuntimeAddr(sites[*name]),
            group as u64,
            counter.handler(),
        ))
        .expect("insert");
    }
    let child = fixture.ask("fork 2000", "child-checksum");
    assert_eq!(
        child, unprobed_child,
        "the fork child computed something else"
    );
    assert_eq!(
        fixture.expect_line("forked"),
        "forked 0",
        "the fork child died"
    );
    assert_eq!(
        counter.hits(),
        0,
        "hits in a fork child are not the target's"
    );

    // vfork: the child shares the memory and its breakpoints; exit code 42.
    assert_eq!(fixture.ask("vfork", "vforked"), (42 << 8).to_string());
    assert_eq!(
        counter.hits(),
        0,
        "hits in a vfork child are not the target's"
    );
    assert_eq!(fixture.ask("spawn", "spawned"), "0");

    // The parent's own hits still count.
    fixture.ask("reloc 10", "checksum");
    assert_eq!(counter.hits(), 30);

    rt.block_on(tracer.detach(fixture.pid)).expect("detach");
    fixture.send("exit 0");
    assert_eq!(fixture.wait_exit_status().code(), Some(0));
}

#[test]
fn exec_and_exit_end_the_breakpoints() {
    let rt = runtime();
    let tracer = Tracer::start().expect("tracer");
    let mut fixture = breakpoints();
    let sites = sites_of(&mut fixture);
    rt.block_on(tracer.attach(fixture.pid)).expect("attach");

    let counter = Counter::default();
    rt.block_on(tracer.insert_breakpoint(
        fixture.pid,
        RuntimeAddr(sites["hot"]),
        1,
        counter.handler(),
    ))
    .expect("insert");
    fixture.ask("hammer 10", "checksum");
    assert_eq!(counter.hits(), 40);
    fixture.send("exec");
    fixture.expect_line("ready");
    let deadline = Instant::now() + WAIT;
    while counter.ends().is_empty() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(5));
    }
    assert_eq!(counter.ends(), vec![BreakpointEnd::Execed]);
    assert_eq!(
        rt.block_on(tracer.process_state(fixture.pid))
            .expect("state"),
        TargetState::Execed
    );
    assert_eq!(
        rt.block_on(tracer.remove_group(fixture.pid, 1))
            .expect("remove"),
        0
    );

    // The new program, probed again, then exiting while armed.
    let sites = sites_of(&mut fixture);
    let counter = Counter::default();
    rt.block_on(tracer.insert_breakpoint(
        fixture.pid,
        RuntimeAddr(sites["hot"]),
        2,
        counter.handler(),
    ))
    .expect("insert after exec");
    fixture.ask("hammer 10", "checksum");
    assert_eq!(counter.hits(), 40);
    fixture.send("exit 3");
    assert_eq!(fixture.wait_exit_status().code(), Some(3));
    let deadline = Instant::now() + WAIT;
    while counter.ends().is_empty() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(5));
    }
    assert_eq!(
        counter.ends(),
        vec![BreakpointEnd::TargetExited {
            code: Some(3),
            signal: None
        }]
    );
}

#[test]
fn thread_churn_and_the_programs_own_sigtrap() {
    let rt = runtime();
    let tracer = Tracer::start().expect("tracer");
    let mut fixture = breakpoints();
    let sites = sites_of(&mut fixture);
    let unprobed = fixture.ask("churn 200", "churned");
    rt.block_on(tracer.attach(fixture.pid)).expect("attach");
    let counter = Counter::default();
    rt.block_on(tracer.insert_breakpoint(
        fixture.pid,
        RuntimeAddr(sites["hot"]),
        1,
        counter.handler(),
    ))
    .expect("insert");
    assert_eq!(fixture.ask("churn 200", "churned"), unprobed);
    assert_eq!(counter.hits(), 200 * 1000);
    // A SIGTRAP the program raises itself reaches its handler.
    assert_eq!(fixture.ask("trap", "trapped"), "1");
    rt.block_on(tracer.detach(fixture.pid)).expect("detach");
    fixture.send("exit 0");
    assert_eq!(fixture.wait_exit_status().code(), Some(0));
}

#[test]
fn removal_and_rearming_while_threads_hammer_the_address() {
    let rt = runtime();
    let tracer = Tracer::start().expect("tracer");
    let mut fixture = breakpoints();
    let sites = sites_of(&mut fixture);
    // Long enough unprobed (tens of milliseconds) that every round below
    // lands in the middle of the storm.
    let unprobed = fixture.ask("hammer 20000000", "checksum");
    rt.block_on(tracer.attach(fixture.pid)).expect("attach");

    fixture.send("hammer 20000000");
    let mut total = 0;
    for round in 0..30u64 {
        let counter = Counter::default();
        rt.block_on(tracer.insert_breakpoint(
            fixture.pid,
            RuntimeAddr(sites["hot"]),
            round,
            counter.handler(),
        ))
        .expect("insert");
        std::thread::sleep(Duration::from_millis(2));
        let removed = rt
            .block_on(tracer.remove_group(fixture.pid, round))
            .expect("remove");
        assert_eq!(removed, 1);
        total += counter.hits();
    }
    assert_eq!(
        fixture.expect_line("checksum"),
        format!("checksum {unprobed}")
    );
    assert!(total > 0, "the storm should have hit at least once");

    // A handler that asks for removal after 10 hits sees exactly 10.
    let limited = Counter {
        remove_after: Some(10),
        ..Counter::default()
    };
    rt.block_on(tracer.insert_breakpoint(
        fixture.pid,
        RuntimeAddr(sites["hot"]),
        500,
        limited.handler(),
    ))
    .expect("insert limited");
    let probed = fixture.ask("hammer 10000", "checksum");
    let unprobed = fixture.ask("hammer 10000", "checksum");
    assert_eq!(probed, unprobed);
    assert_eq!(limited.hits(), 10);
    assert_eq!(limited.ends(), vec![BreakpointEnd::Removed]);

    rt.block_on(tracer.detach(fixture.pid)).expect("detach");
    fixture.send("exit 0");
    assert_eq!(fixture.wait_exit_status().code(), Some(0));
}

#[test]
fn detach_and_capture_in_the_middle_of_a_hit_storm() {
    let rt = runtime();
    let tracer = Tracer::start().expect("tracer");
    let mut fixture = breakpoints();
    let sites = sites_of(&mut fixture);
    let unprobed = fixture.ask("hammer 300000", "checksum");
    let code_before = anonymous_code_mappings(fixture.pid);
    rt.block_on(tracer.attach(fixture.pid)).expect("attach");
    let counter = Counter::default();
    rt.block_on(tracer.insert_breakpoint(
        fixture.pid,
        RuntimeAddr(sites["hot"]),
        1,
        counter.handler(),
    ))
    .expect("insert");
    let scratch: Vec<String> = anonymous_code_mappings(fixture.pid)
        .into_iter()
        .filter(|m| !code_before.contains(m))
        .collect();
    assert_eq!(scratch.len(), 1, "one scratch page: {scratch:?}");

    fixture.send("hammer 300000");
    while counter.hits() < 1000 {
        std::thread::sleep(Duration::from_millis(1));
    }
    // Stacks never show the scratch page.
    let (start, end) = {
        let range = scratch[0].split_whitespace().next().expect("range");
        let (a, b) = range.split_once('-').expect("range");
        (
            u64::from_str_radix(a, 16).expect("hex"),
            u64::from_str_radix(b, 16).expect("hex"),
        )
    };
    for _ in 0..50 {
        let captures = rt
            .block_on(tracer.capture_threads(fixture.pid, None, 0))
            .expect("capture");
        for capture in captures {
            assert!(
                !(start..end).contains(&capture.regs.rip),
                "thread {} shown in the scratch page",
                capture.tid
            );
        }
    }
    rt.block_on(tracer.detach(fixture.pid))
        .expect("detach mid-storm");
    assert_eq!(counter.ends(), vec![BreakpointEnd::Detached]);
    assert_eq!(
        fixture.expect_line("checksum"),
        format!("checksum {unprobed}")
    );
    assert_eq!(anonymous_code_mappings(fixture.pid), code_before);
    fixture.send("exit 0");
    assert_eq!(fixture.wait_exit_status().code(), Some(0));
}

#[test]
fn dropping_the_tracer_mid_storm_leaves_the_target_clean() {
    let rt = runtime();
    let mut fixture = breakpoints();
    let sites = sites_of(&mut fixture);
    let unprobed = fixture.ask("hammer 300000", "checksum");
    let tracer = Tracer::start().expect("tracer");
    rt.block_on(tracer.attach(fixture.pid)).expect("attach");
    let counter = Counter::default();
    rt.block_on(tracer.insert_breakpoint(
        fixture.pid,
        RuntimeAddr(sites["hot"]),
        1,
        counter.handler(),
    ))
    .expect("insert");
    fixture.send("hammer 300000");
    while counter.hits() < 1000 {
        std::thread::sleep(Duration::from_millis(1));
    }
    assert!(tracer.detach_all_blocking(WAIT));
    drop(tracer);
    assert_eq!(
        fixture.expect_line("checksum"),
        format!("checksum {unprobed}")
    );
    fixture.send("exit 0");
    assert_eq!(fixture.wait_exit_status().code(), Some(0));
}

/// Per-hit cost, printed (never asserted: timing depends on the machine).
/// Run with `cargo test --test tracer_breakpoints -- --ignored --nocapture`.
#[test]
#[ignore]
fn measure_the_cost_of_a_hit() {
    let rt = runtime();
    let tracer = Tracer::start().expect("tracer");
    let mut fixture = breakpoints();
    let sites = sites_of(&mut fixture);
    let solo = |fixture: &mut Fixture, n: u64| -> (String, f64) {
        let answer = fixture.ask(&format!("solo {n}"), "solo");
        let mut parts = answer.split_whitespace();
        let checksum = parts.next().expect("checksum").to_string();
        let ns: f64 = parts.next().expect("ns").parse().expect("number");
        (checksum, ns)
    };
    let n = 200_000;
    let (plain, plain_ns) = solo(&mut fixture, n);
    rt.block_on(tracer.attach(fixture.pid)).expect("attach");
    let counter = Counter::default();
    rt.block_on(tracer.insert_breakpoint(
        fixture.pid,
        RuntimeAddr(sites["hot"]),
        1,
        counter.handler(),
    ))
    .expect("insert");
    let (probed, probed_ns) = solo(&mut fixture, n);
    assert_eq!(plain, probed);
    assert_eq!(counter.hits(), n);
    eprintln!(
        "one thread: {:.2} µs per call unprobed, {:.2} µs per call probed: {:.2} µs per hit",
        plain_ns / n as f64 / 1000.0,
        probed_ns / n as f64 / 1000.0,
        (probed_ns - plain_ns) / n as f64 / 1000.0
    );
    let started = Instant::now();
    fixture.ask("hammer 100000", "checksum");
    let elapsed = started.elapsed();
    eprintln!(
        "four threads: 400000 hits in {elapsed:?}: {:.2} µs per hit of wall time",
        elapsed.as_secs_f64() * 1e6 / 400_000.0
    );
    rt.block_on(tracer.detach(fixture.pid)).expect("detach");
}

#[test]
fn shared_library_code_gets_a_scratch_page_of_its_own() {
    let rt = runtime();
    let tracer = Tracer::start().expect("tracer");
    let mut fixture = breakpoints();
    let sites = sites_of(&mut fixture);
    let code_before = anonymous_code_mappings(fixture.pid);
    rt.block_on(tracer.attach(fixture.pid)).expect("attach");
    let in_exe = Counter::default();
    let in_libc = Counter::default();
    rt.block_on(tracer.insert_breakpoint(
        fixture.pid,
        RuntimeAddr(sites["hot"]),
        1,
        in_exe.handler(),
    ))
    .expect("insert in the executable");
    rt.block_on(tracer.insert_breakpoint(
        fixture.pid,
        RuntimeAddr(sites["getppid"]),
        2,
        in_libc.handler(),
    ))
    .expect("insert in libc");
    // getppid's own `syscall` instruction is refused, by name.
    let refused = rt
        .block_on(tracer.insert_breakpoint(
            fixture.pid,
            RuntimeAddr(sites["getppid"] + 5),
            3,
            Counter::default().handler(),
        ))
        .expect_err("syscall in libc");
    assert!(refused.to_string().contains("`syscall`"), "{refused}");
    let pages: Vec<String> = anonymous_code_mappings(fixture.pid)
        .into_iter()
        .filter(|m| !code_before.contains(m))
        .collect();
    assert_eq!(pages.len(), 2, "one page near each module: {pages:?}");

    assert_eq!(fixture.ask("libc 5000", "libc"), "5000");
    assert_eq!(in_libc.hits(), 5000);
    fixture.ask("hammer 100", "checksum");
    assert_eq!(in_exe.hits(), 400);
    rt.block_on(tracer.detach(fixture.pid)).expect("detach");
    assert_eq!(anonymous_code_mappings(fixture.pid), code_before);
    assert_eq!(fixture.ask("libc 10", "libc"), "10");
    fixture.send("exit 0");
    assert_eq!(fixture.wait_exit_status().code(), Some(0));
}

#[test]
fn groups_share_an_address_and_leave_it_one_by_one() {
    let rt = runtime();
    let tracer = Tracer::start().expect("tracer");
    let mut fixture = breakpoints();
    let sites = sites_of(&mut fixture);
    rt.block_on(tracer.attach(fixture.pid)).expect("attach");

    /// Appends its name to a shared log at each hit.
    struct Named(&'static str, Arc<Mutex<Vec<&'static str>>>);
    impl HitHandler for Named {
        fn on_hit(&mut self, _hit: &HitContext<'_>) -> HitVerdict {
            self.1.lock().expect("log").push(self.0);
            HitVerdict::Keep
        }
    }
    let log = Arc::new(Mutex::new(Vec::new()));
    for (group, name) in [(1, "first"), (2, "second"), (1, "third")] {
        rt.block_on(tracer.insert_breakpoint(
            fixture.pid,
            RuntimeAddr(sites["call"]),
            group,
            Box::new(Named(name, log.clone())),
        ))
        .expect("insert");
    }
    fixture.ask("reloc 1", "checksum");
    assert_eq!(*log.lock().expect("log"), ["first", "second", "third"]);
    assert_eq!(
        rt.block_on(tracer.remove_group(fixture.pid, 1))
            .expect("remove"),
        2
    );
    fixture.ask("reloc 1", "checksum");
    assert_eq!(
        *log.lock().expect("log"),
        ["first", "second", "third", "second"]
    );
    assert_eq!(
        rt.block_on(tracer.remove_group(fixture.pid, 2))
            .expect("remove"),
        1
    );
    assert_eq!(
        rt.block_on(tracer.remove_group(fixture.pid, 2))
            .expect("remove again"),
        0
    );
    fixture.ask("reloc 1", "checksum");
    assert_eq!(log.lock().expect("log").len(), 4);
    rt.block_on(tracer.detach(fixture.pid)).expect("detach");
}

#[test]
fn a_process_stopped_by_job_control_is_refused_until_continued() {
    let rt = runtime();
    let tracer = Tracer::start().expect("tracer");
    let mut fixture = breakpoints();
    let sites = sites_of(&mut fixture);
    rt.block_on(tracer.attach(fixture.pid)).expect("attach");
    // SAFETY: kill has no memory-safety preconditions.
    unsafe { libc::kill(fixture.pid, libc::SIGSTOP) };
    let deadline = Instant::now() + WAIT;
    let stopped = || {
        std::fs::read_to_string(format!("/proc/{}/stat", fixture.pid))
            .map(|s| {
                s.rsplit(')')
                    .next()
                    .is_some_and(|rest| rest.trim_start().starts_with(['T', 't']))
            })
            .unwrap_or(false)
    };
    while !stopped() {
        assert!(Instant::now() < deadline, "fixture did not stop");
        std::thread::sleep(Duration::from_millis(5));
    }
    let refused = rt
        .block_on(tracer.insert_breakpoint(
            fixture.pid,
            RuntimeAddr(sites["hot"]),
            1,
            Counter::default().handler(),
        ))
        .expect_err("a job-control stopped process cannot map a scratch page");
    assert!(
        matches!(refused, TraceError::JobControlStopped { .. }),
        "{refused}"
    );
    // Still stopped: nothing resumed it.
    assert!(stopped());
    // SAFETY: as above.
    unsafe { libc::kill(fixture.pid, libc::SIGCONT) };
    let counter = Counter::default();
    let armed = loop {
        match rt.block_on(tracer.insert_breakpoint(
            fixture.pid,
            RuntimeAddr(sites["hot"]),
            2,
            counter.handler(),
        )) {
            Ok(id) => break id,
            Err(TraceError::JobControlStopped { .. }) => {
                assert!(Instant::now() < deadline, "never continued");
                std::thread::sleep(Duration::from_millis(5));
            }
            Err(other) => panic!("{other}"),
        }
    };
    let _ = armed;
    fixture.ask("hammer 10", "checksum");
    assert_eq!(counter.hits(), 40);
    rt.block_on(tracer.detach(fixture.pid)).expect("detach");
}

#[test]
fn signals_landing_in_trampolines_keep_the_count_exact() {
    let rt = runtime();
    let tracer = Tracer::start().expect("tracer");
    let mut fixture = breakpoints();
    let sites = sites_of(&mut fixture);
    rt.block_on(tracer.attach(fixture.pid)).expect("attach");
    let counter = Counter::default();
    rt.block_on(tracer.insert_breakpoint(
        fixture.pid,
        RuntimeAddr(sites["hot"]),
        1,
        counter.handler(),
    ))
    .expect("insert");
    // Most signals arrive while their thread is stopped at the breakpoint,
    // so they are delivered the moment it resumes at the start of the
    // trampoline: the handler's frame must show the original code, and the
    // thread's return onto the int3 must not count twice.
    let answer = fixture.ask("storm 3000", "storm");
    let mut parts = answer.split_whitespace();
    let calls: u64 = parts.next().expect("calls").parse().expect("number");
    let handled: u64 = parts.next().expect("handled").parse().expect("number");
    assert_eq!(handled, 3000, "every signal reached the program's handler");
    assert_eq!(
        counter.hits(),
        calls,
        "one hit per call, none lost or doubled"
    );
    assert_eq!(counter.bad_rip.load(Ordering::SeqCst), 0);
    rt.block_on(tracer.detach(fixture.pid)).expect("detach");
    fixture.send("exit 0");
    assert_eq!(fixture.wait_exit_status().code(), Some(0));
}

#[test]
fn a_panicking_handler_loses_only_its_own_group() {
    struct Panicky;
    impl HitHandler for Panicky {
        fn on_hit(&mut self, _hit: &HitContext<'_>) -> HitVerdict {
            panic!("a bug in a hit handler");
        }
    }
    let rt = runtime();
    let tracer = Tracer::start().expect("tracer");
    let mut fixture = breakpoints();
    let sites = sites_of(&mut fixture);
    let unprobed = fixture.ask("hammer 1000", "checksum");
    rt.block_on(tracer.attach(fixture.pid)).expect("attach");
    rt.block_on(tracer.insert_breakpoint(
        fixture.pid,
        RuntimeAddr(sites["hot"]),
        1,
        Box::new(Panicky),
    ))
    .expect("insert panicky");
    let counter = Counter::default();
    rt.block_on(tracer.insert_breakpoint(
        fixture.pid,
        RuntimeAddr(sites["hot"]),
        2,
        counter.handler(),
    ))
    .expect("insert counter");
    assert_eq!(fixture.ask("hammer 1000", "checksum"), unprobed);
    assert_eq!(counter.hits(), 4000);
    assert_eq!(
        rt.block_on(tracer.remove_group(fixture.pid, 1))
            .expect("remove"),
        0,
        "the panicking group was removed at its first hit"
    );
    // The tracer thread survived and still answers.
    assert!(tracer.is_attached(fixture.pid));
    rt.block_on(tracer.detach(fixture.pid)).expect("detach");
    fixture.send("exit 0");
    assert_eq!(fixture.wait_exit_status().code(), Some(0));
}
