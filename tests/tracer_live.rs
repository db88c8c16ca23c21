//! Tracer room against real processes: seize, follow, capture, detach, and
//! every refusal that can be produced for real. Fixtures are in
//! tests/fixtures/tracer/ and are driven line by line on stdin.

mod common;

use common::{Fixture, Launch};

use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use liveprobe::tracer::{ProcessMemory, TargetState, TraceError, Tracer, list_processes};

const WAIT: Duration = common::WAIT;

fn workers_exe() -> PathBuf {
    common::build_fixture("tracer/workers.c", "tracer_workers", &["-O1"])
}

fn holdtrace_exe() -> PathBuf {
    common::build_fixture("tracer/holdtrace.c", "tracer_holdtrace", &[])
}

/// The workers fixture under a `sh` (see `common::Launch::under_shell`).
fn workers() -> Fixture {
    Launch::new(&workers_exe()).under_shell().start()
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
}

fn task_ids(pid: i32) -> Vec<i32> {
    let mut tids: Vec<i32> = std::fs::read_dir(format!("/proc/{pid}/task"))
        .map(|dir| {
            dir.filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
                .collect()
        })
        .unwrap_or_default();
    tids.sort_unstable();
    tids
}

/// Poll `check` until it holds; fail the test after WAIT.
fn eventually(what: &str, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + WAIT;
    while Instant::now() < deadline {
        if check() {
            return;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    panic!("timed out waiting until {what}");
}

fn wait_state(rt: &tokio::runtime::Runtime, tracer: &Tracer, pid: i32) -> TargetState {
    let deadline = Instant::now() + WAIT;
    loop {
        let state = rt.block_on(tracer.process_state(pid)).expect("state");
        let live = matches!(state, TargetState::Running | TargetState::Execed);
        if !live || Instant::now() > deadline {
            return state;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

#[test]
fn attach_captures_and_detach_leave_the_target_unchanged() {
    let rt = runtime();
    let tracer = Tracer::start().expect("tracer");
    let reference = {
        let mut plain = workers();
        plain.send("work 4000000");
        plain.expect_line("checksum")
    };

    let mut target = workers();
    let report = rt.block_on(tracer.attach(target.pid)).expect("attach");
    assert_eq!(report.pid, target.pid);
    assert_eq!(report.threads, vec![target.pid]);
    assert_eq!(report.held, Duration::ZERO);
    assert!(tracer.is_attached(target.pid));
    assert!(common::tracer_pid(target.pid) > 0);
    // Attaching twice is harmless.
    let again = rt
        .block_on(tracer.attach(target.pid))
        .expect("attach again");
    assert_eq!(again.threads, report.threads);

    let mut captures = 0usize;
    let mut rounds = 0;
    let mut max_threads = 0;
    while captures < 300 || rounds == 0 {
        target.send("work 4000000");
        rounds += 1;
        let checksum = loop {
            let taken = rt
                .block_on(tracer.capture_threads(target.pid, None, 4096))
                .expect("capture");
            captures += 1;
            max_threads = max_threads.max(taken.len());
            for capture in &taken {
                let rsp = capture.regs.rsp;
                assert!(capture.stack.start <= rsp, "stack copy starts above rsp");
                assert!(
                    capture.stack.start + 128 >= rsp,
                    "stack copy starts more than the red zone below rsp"
                );
                assert!(
                    !capture.stack.bytes.is_empty(),
                    "no stack bytes for thread {}",
                    capture.tid
                );
                assert!(capture.stack.bytes.len() <= 4096 + 128);
                assert_ne!(capture.fs_base, 0, "thread pointer missing");
                assert_eq!(capture.fs_base, capture.regs.fs_base);
            }
            if let Some(line) = target.poll_line("checksum") {
                break line;
            }
        };
        assert_eq!(
            checksum, reference,
            "captures changed what the target computed (round {rounds})"
        );
    }
    assert!(
        max_threads >= 2,
        "never saw the worker threads (max {max_threads})"
    );

    target.send("ping");
    target.expect_line("pong");
    rt.block_on(tracer.detach(target.pid)).expect("detach");
    assert!(!tracer.is_attached(target.pid));
    assert_eq!(
        rt.block_on(tracer.process_state(target.pid))
            .expect("state"),
        TargetState::Detached
    );
    assert_eq!(common::tracer_pid(target.pid), 0);
    target.send("work 4000000");
    assert_eq!(target.expect_line("checksum"), reference);
    // And it can be attached again.
    rt.block_on(tracer.attach(target.pid)).expect("re-attach");
    target.send("ping");
    target.expect_line("pong");
    rt.block_on(tracer.detach(target.pid))
        .expect("detach again");
}

#[test]
fn signals_of_the_target_still_arrive_while_captured() {
    let rt = runtime();
    let tracer = Tracer::start().expect("tracer");
    let mut target = workers();
    rt.block_on(tracer.attach(target.pid)).expect("attach");
    target.send("spawn 3");
    target.expect_line("spawned 3");
    target.send("signals 3000");
    let mut captures = 0;
    let line = loop {
        rt.block_on(tracer.capture_threads(target.pid, None, 256))
            .expect("capture");
        captures += 1;
        if let Some(line) = target.poll_line("usr1") {
            break line;
        }
    };
    assert_eq!(line, "usr1 3000", "after {captures} captures");
    assert!(target.poll_line("lost-signal").is_none());
}

#[test]
fn new_threads_are_followed_and_named() {
    let rt = runtime();
    let tracer = Tracer::start().expect("tracer");
    let mut target = workers();
    rt.block_on(tracer.attach(target.pid)).expect("attach");
    target.send("spawn 3");
    target.expect_line("spawned 3");
    let tids = task_ids(target.pid);
    assert_eq!(tids.len(), 4);
    let threads = rt.block_on(tracer.threads(target.pid)).expect("threads");
    assert_eq!(threads.iter().map(|t| t.tid).collect::<Vec<_>>(), tids);
    let names: Vec<&str> = threads.iter().map(|t| t.name.as_str()).collect();
    assert!(
        names.contains(&"idle-0") && names.contains(&"idle-2"),
        "names {names:?}"
    );
    // A new thread may still sit in its first (tracer) stop for a moment.
    assert!(
        threads
            .iter()
            .all(|t| matches!(t.state.as_str(), "sleeping" | "running" | "tracing-stop")),
        "{threads:?}"
    );

    // Capturing all threads reaches the new ones (their clone events were followed).
    let captured = rt
        .block_on(tracer.capture_threads(target.pid, None, 64))
        .expect("capture");
    let mut captured_tids: Vec<i32> = captured.iter().map(|c| c.tid).collect();
    captured_tids.sort_unstable();
    assert_eq!(captured_tids, tids);
    // A subset, in the order asked.
    let subset = vec![tids[2], tids[0]];
    let captured = rt
        .block_on(tracer.capture_threads(target.pid, Some(subset.clone()), 64))
        .expect("capture");
    assert_eq!(captured.iter().map(|c| c.tid).collect::<Vec<_>>(), subset);
    // Unknown thread.
    match rt.block_on(tracer.capture_threads(target.pid, Some(vec![tids[0], 999_999]), 64)) {
        Err(TraceError::NoSuchThread { pid, tid, known }) => {
            assert_eq!((pid, tid), (target.pid, 999_999));
            assert_eq!(known, tids);
        }
        other => panic!("expected NoSuchThread, got {other:?}"),
    }
    target.send("ping");
    target.expect_line("pong");
}

#[test]
fn group_stop_is_kept_and_capture_does_not_resume_it() {
    let rt = runtime();
    let tracer = Tracer::start().expect("tracer");
    let mut target = workers();
    rt.block_on(tracer.attach(target.pid)).expect("attach");
    target.send("spawn 2");
    target.expect_line("spawned 2");
    let stopped = |pid: i32| {
        task_ids(pid)
            .iter()
            .all(|&tid| matches!(task_state(pid, tid), Some('t' | 'T')))
    };
    // SAFETY: kill has no memory-safety preconditions.
    unsafe { libc::kill(target.pid, libc::SIGSTOP) };
    eventually("every thread is stopped", || stopped(target.pid));
    target.send("ping");
    let captured = rt
        .block_on(tracer.capture_threads(target.pid, None, 64))
        .expect("capture while stopped");
    assert_eq!(captured.len(), 3);
    std::thread::sleep(Duration::from_millis(200));
    assert!(
        target.poll_line("pong").is_none(),
        "capture resumed a job-control-stopped process"
    );
    assert!(stopped(target.pid));
    // SAFETY: as above.
    unsafe { libc::kill(target.pid, libc::SIGCONT) };
    target.expect_line("pong");

    // Detaching from a stopped process leaves it stopped.
    // SAFETY: as above.
    unsafe { libc::kill(target.pid, libc::SIGSTOP) };
    eventually("every thread is stopped again", || stopped(target.pid));
    rt.block_on(tracer.detach(target.pid)).expect("detach");
    assert_eq!(common::tracer_pid(target.pid), 0);
    eventually("the process shows job-control stop", || {
        common::proc_state(target.pid) == Some('T')
    });
    target.send("ping");
    std::thread::sleep(Duration::from_millis(200));
    assert!(
        target.poll_line("pong").is_none(),
        "detach resumed a job-control-stopped process"
    );
    // SAFETY: as above.
    unsafe { libc::kill(target.pid, libc::SIGCONT) };
    target.expect_line("pong");
}

fn task_state(pid: i32, tid: i32) -> Option<char> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/task/{tid}/stat")).ok()?;
    stat.rsplit_once(')')?.1.trim_start().chars().next()
}

#[test]
fn fork_children_are_let_go_and_vfork_spawn_works() {
    let rt = runtime();
    let tracer = Tracer::start().expect("tracer");
    let mut target = workers();
    rt.block_on(tracer.attach(target.pid)).expect("attach");
    target.send("fork");
    // Parent and child print concurrently: take both lines in either order.
    let mut child_alive = None;
    let mut forked = None;
    while child_alive.is_none() || forked.is_none() {
        let line = target.expect_line("");
        if let Some(pid) = line.strip_prefix("child-alive ") {
            child_alive = pid.parse::<i32>().ok();
        } else if let Some(pid) = line.strip_prefix("forked ") {
            forked = pid.parse::<i32>().ok();
        }
    }
    assert_eq!(child_alive, forked);
    let child = forked.expect("child pid");
    eventually("the fork child is no longer traced", || {
        common::tracer_pid(child) == 0
    });
    assert!(!tracer.is_attached(child));
    target.send("reap");
    assert_eq!(target.expect_line("reaped"), "reaped 4");
    target.send("spawn-true");
    assert_eq!(target.expect_line("spawned-true"), "spawned-true 0");
    target.send("ping");
    target.expect_line("pong");
    assert!(tracer.is_attached(target.pid));
}

#[test]
fn exec_is_recorded_and_followed() {
    let rt = runtime();
    let tracer = Tracer::start().expect("tracer");
    let mut target = workers();
    rt.block_on(tracer.attach(target.pid)).expect("attach");
    target.send("spawn 2");
    target.expect_line("spawned 2");
    target.send("exec");
    assert_eq!(target.expect_line("ready"), format!("ready {}", target.pid));
    eventually("exec is recorded", || {
        rt.block_on(tracer.process_state(target.pid)).ok() == Some(TargetState::Execed)
    });
    assert!(tracer.is_attached(target.pid));
    let captured = rt
        .block_on(tracer.capture_threads(target.pid, None, 128))
        .expect("capture after exec");
    assert_eq!(
        captured.iter().map(|c| c.tid).collect::<Vec<_>>(),
        vec![target.pid]
    );
    target.send("spawn 1");
    target.expect_line("spawned 1");
    let captured = rt
        .block_on(tracer.capture_threads(target.pid, None, 128))
        .expect("capture after exec");
    assert_eq!(captured.len(), 2);
    rt.block_on(tracer.detach(target.pid)).expect("detach");
    target.send("ping");
    target.expect_line("pong");
}

#[test]
fn exit_and_death_are_recorded() {
    let rt = runtime();
    let tracer = Tracer::start().expect("tracer");

    let mut exiting = workers();
    rt.block_on(tracer.attach(exiting.pid)).expect("attach");
    exiting.send("spawn 2");
    exiting.expect_line("spawned 2");
    exiting.send("exit 7");
    assert_eq!(
        wait_state(&rt, &tracer, exiting.pid),
        TargetState::Exited { code: 7 }
    );
    assert_eq!(
        exiting.wait_exit_status().code(),
        Some(7),
        "the real parent still gets the exit status"
    );
    assert!(!tracer.is_attached(exiting.pid));
    match rt.block_on(tracer.capture_threads(exiting.pid, None, 64)) {
        Err(TraceError::TargetExited { pid, how }) => {
            assert_eq!(pid, exiting.pid);
            assert!(how.contains("code 7"), "{how}");
        }
        other => panic!("expected TargetExited, got {other:?}"),
    }
    assert!(matches!(
        rt.block_on(tracer.threads(exiting.pid)),
        Err(TraceError::TargetExited { .. })
    ));
    rt.block_on(tracer.detach(exiting.pid))
        .expect("detach of an exited target is fine");

    let mut crashing = workers();
    rt.block_on(tracer.attach(crashing.pid)).expect("attach");
    crashing.send("crash");
    assert_eq!(
        wait_state(&rt, &tracer, crashing.pid),
        TargetState::Killed {
            signal: "SIGABRT".into()
        }
    );
    assert_eq!(
        crashing.wait_exit_status().code(),
        Some(128 + libc::SIGABRT),
        "sh saw its child die of SIGABRT"
    );
}

#[test]
fn leader_exit_with_live_threads() {
    let rt = runtime();
    let tracer = Tracer::start().expect("tracer");
    let mut target = workers();
    rt.block_on(tracer.attach(target.pid)).expect("attach");
    target.send("leader-exit");
    target.expect_line("leader-gone");
    eventually("the leader is a zombie", || {
        task_state(target.pid, target.pid) == Some('Z')
    });
    target.send("ping");
    target.expect_line("pong");
    assert_eq!(
        rt.block_on(tracer.process_state(target.pid))
            .expect("state"),
        TargetState::Running
    );
    let captured = rt
        .block_on(tracer.capture_threads(target.pid, None, 64))
        .expect("capture");
    assert_eq!(captured.len(), 1, "only the successor thread is alive");
    assert_ne!(captured[0].tid, target.pid);
    target.send("exit 5");
    assert_eq!(
        wait_state(&rt, &tracer, target.pid),
        TargetState::Exited { code: 5 }
    );
    assert_eq!(target.wait_exit_status().code(), Some(5));
}

#[test]
fn attaching_to_a_process_whose_leader_already_exited() {
    let rt = runtime();
    let tracer = Tracer::start().expect("tracer");
    let mut target = workers();
    target.send("leader-exit");
    target.expect_line("leader-gone");
    eventually("the leader is a zombie", || {
        task_state(target.pid, target.pid) == Some('Z')
    });
    let report = rt.block_on(tracer.attach(target.pid)).expect("attach");
    assert_eq!(report.threads.len(), 1);
    target.send("ping");
    target.expect_line("pong");
    target.send("exit 6");
    assert_eq!(
        wait_state(&rt, &tracer, target.pid),
        TargetState::Exited { code: 6 }
    );
}

#[test]
fn refusals_name_their_reason() {
    let rt = runtime();
    let tracer = Tracer::start().expect("tracer");

    match rt.block_on(tracer.attach(i32::MAX - 3)) {
        Err(TraceError::NoSuchProcess { pid }) => assert_eq!(pid, i32::MAX - 3),
        other => panic!("expected NoSuchProcess, got {other:?}"),
    }
    let ours = std::process::id() as i32;
    assert!(
        matches!(rt.block_on(tracer.attach(ours)), Err(TraceError::Ourselves { pid }) if pid == ours)
    );
    // SAFETY: getppid has no preconditions.
    let parent = unsafe { libc::getppid() };
    if parent > 1 {
        assert!(
            matches!(rt.block_on(tracer.attach(parent)), Err(TraceError::Ancestor { pid, .. }) if pid == parent)
        );
    }

    // Kernel thread: kthreadd is pid 2 wherever there is one.
    if std::fs::read_to_string("/proc/2/comm")
        .map(|c| c.trim() == "kthreadd")
        .unwrap_or(false)
    {
        let error = rt.block_on(tracer.attach(2)).expect_err("kernel thread");
        assert!(
            matches!(error, TraceError::KernelThread { pid: 2, .. }),
            "{error:?}"
        );
        assert!(error.to_string().contains("kernel thread"));
    } else {
        eprintln!("no kthreadd visible in this pid namespace; kernel-thread refusal not tested");
    }

    // Zombie: a child we do not reap yet.
    let mut zombie = Command::new("true").spawn().expect("spawn true");
    let zombie_pid = zombie.id() as i32;
    eventually("the child is a zombie", || {
        common::proc_state(zombie_pid) == Some('Z')
    });
    match rt.block_on(tracer.attach(zombie_pid)) {
        Err(error @ TraceError::Zombie { .. }) => assert!(error.to_string().contains("zombie")),
        other => panic!("expected Zombie, got {other:?}"),
    }
    let _ = zombie.wait();

    // Already traced by a foreign tracer.
    let target = workers();
    let mut holder = common::Launch::new(&holdtrace_exe())
        .without_ready_line()
        .args(&[&target.pid.to_string()])
        .start();
    assert_eq!(
        holder.expect_line("holding"),
        format!("holding {}", target.pid)
    );
    match rt.block_on(tracer.attach(target.pid)) {
        Err(error @ TraceError::AlreadyTraced { .. }) => {
            let TraceError::AlreadyTraced {
                pid,
                tracer_pid,
                ref tracer_name,
            } = error
            else {
                unreachable!()
            };
            assert_eq!(
                (pid, tracer_pid, tracer_name.as_str()),
                (target.pid, holder.pid, "holdtrace")
            );
            assert!(
                error.to_string().contains("detach holdtrace first"),
                "{error}"
            );
        }
        other => panic!("expected AlreadyTraced, got {other:?}"),
    }
    let listed = list_processes(Some(&target.pid.to_string()));
    let entry = listed.iter().find(|p| p.pid == target.pid).expect("listed");
    assert!(!entry.attachable);
    assert!(
        entry.reason.as_deref().unwrap_or("").contains("holdtrace"),
        "{entry:?}"
    );
    holder.close_stdin();
    holder.wait_exit_status();
    eventually("the foreign tracer is gone", || {
        common::tracer_pid(target.pid) == 0
    });

    // Already traced by another tracer of this very process.
    let other = Tracer::start().expect("second tracer");
    rt.block_on(other.attach(target.pid))
        .expect("attach with the other tracer");
    match rt.block_on(tracer.attach(target.pid)) {
        Err(TraceError::AlreadyTraced {
            tracer_pid,
            tracer_name,
            ..
        }) => {
            assert_eq!(tracer_pid, ours);
            assert!(tracer_name.contains("liveprobe"), "{tracer_name}");
        }
        other => panic!("expected AlreadyTraced, got {other:?}"),
    }
    // Operations on a process this tracer does not own.
    assert!(matches!(
        rt.block_on(tracer.threads(target.pid)),
        Err(TraceError::NotAttached { .. })
    ));
    assert!(matches!(
        rt.block_on(tracer.detach(target.pid)),
        Err(TraceError::NotAttached { .. })
    ));
    drop(other);
    assert_eq!(
        common::tracer_pid(target.pid),
        0,
        "dropping a tracer detaches its targets"
    );
}

#[test]
fn dropping_or_detach_all_releases_every_target() {
    let rt = runtime();
    let mut first = workers();
    let mut second = workers();
    let tracer = Tracer::start().expect("tracer");
    rt.block_on(tracer.attach(first.pid)).expect("attach");
    rt.block_on(tracer.attach(second.pid)).expect("attach");
    second.send("spawn 2");
    second.expect_line("spawned 2");
    rt.block_on(tracer.detach_all());
    assert_eq!(common::tracer_pid(first.pid), 0);
    assert_eq!(common::tracer_pid(second.pid), 0);
    assert!(!tracer.is_attached(first.pid));

    rt.block_on(tracer.attach(first.pid)).expect("attach");
    rt.block_on(tracer.attach(second.pid)).expect("attach");
    assert!(tracer.detach_all_blocking(Duration::from_secs(30)));
    assert_eq!(common::tracer_pid(second.pid), 0);

    rt.block_on(tracer.attach(first.pid)).expect("attach");
    let clone = tracer.clone();
    drop(tracer);
    assert!(
        common::tracer_pid(first.pid) > 0,
        "a live clone keeps the target attached"
    );
    drop(clone);
    assert_eq!(common::tracer_pid(first.pid), 0);
    for target in [&mut first, &mut second] {
        target.send("ping");
        target.expect_line("pong");
    }
}

#[test]
fn memory_reads_of_a_running_target() {
    let rt = runtime();
    let tracer = Tracer::start().expect("tracer");
    let mut target = workers();
    rt.block_on(tracer.attach(target.pid)).expect("attach");
    target.send("addr");
    let line = target.expect_line("addr");
    let mut parts = line.split_whitespace().skip(1);
    let addr =
        u64::from_str_radix(parts.next().expect("addr").trim_start_matches("0x"), 16).expect("hex");
    let len: usize = parts.next().expect("len").parse().expect("len");
    let memory = ProcessMemory::new(target.pid);
    let mut all = vec![0u8; len];
    memory.read(addr, &mut all).expect("read pattern");
    assert!(all.iter().enumerate().all(|(i, b)| *b == (i * 7 + 3) as u8));

    let mut a = [0u8; 3];
    let mut b = [0u8; 5000];
    let mut bad = [0u8; 8];
    let mut reqs: Vec<(u64, &mut [u8])> =
        vec![(addr + 10, &mut a), (8, &mut bad), (addr + 4000, &mut b)];
    let results = memory.read_many(&mut reqs);
    assert_eq!(results[0], Ok(()));
    assert_eq!(results[1].expect_err("page zero").addr, 8);
    assert_eq!(results[2], Ok(()));
    assert_eq!(a, [73, 80, 87]);
    assert_eq!(b[4999], ((8999 * 7 + 3) % 256) as u8);
}

#[test]
fn list_processes_finds_the_fixture() {
    let target = workers();
    let listed = list_processes(Some("tracer_workers"));
    let entry = listed
        .iter()
        .find(|p| p.pid == target.pid)
        .expect("fixture listed");
    assert_eq!(entry.name, "tracer_workers");
    assert!(
        entry
            .exe
            .as_deref()
            .unwrap_or("")
            .ends_with("tracer_workers")
    );
    assert!(entry.attachable, "{entry:?}");
    assert!(!entry.user.is_empty());
    let ours = list_processes(Some(&std::process::id().to_string()));
    let me = ours
        .iter()
        .find(|p| p.pid == std::process::id() as i32)
        .expect("ourselves listed");
    assert!(!me.attachable);
    if let Some(kthreadd) = list_processes(Some("kthreadd"))
        .into_iter()
        .find(|p| p.pid == 2)
    {
        assert!(!kthreadd.attachable);
        assert_eq!(kthreadd.reason.as_deref(), Some("kernel thread"));
    }
}

#[test]
fn exec_from_a_thread_that_is_not_the_leader() {
    let rt = runtime();
    let tracer = Tracer::start().expect("tracer");
    let mut target = workers();
    rt.block_on(tracer.attach(target.pid)).expect("attach");
    target.send("spawn 2");
    target.expect_line("spawned 2");
    // The successor thread takes over the command loop, then execs: the kernel
    // gives it the leader's id and ends every other thread.
    target.send("leader-exit");
    target.expect_line("leader-gone");
    target.send("exec");
    assert_eq!(target.expect_line("ready"), format!("ready {}", target.pid));
    eventually("exec is recorded", || {
        rt.block_on(tracer.process_state(target.pid)).ok() == Some(TargetState::Execed)
    });
    let captured = rt
        .block_on(tracer.capture_threads(target.pid, None, 128))
        .expect("capture after exec");
    assert_eq!(
        captured.iter().map(|c| c.tid).collect::<Vec<_>>(),
        vec![target.pid]
    );
    target.send("ping");
    target.expect_line("pong");
    target.send("exit 3");
    assert_eq!(
        wait_state(&rt, &tracer, target.pid),
        TargetState::Exited { code: 3 }
    );
    assert_eq!(target.wait_exit_status().code(), Some(3));
}

#[test]
fn thread_churn_while_capturing() {
    let rt = runtime();
    let tracer = Tracer::start().expect("tracer");
    let mut target = workers();
    rt.block_on(tracer.attach(target.pid)).expect("attach");
    target.send("churn 2000");
    let mut captures = 0;
    let line = loop {
        let taken = rt
            .block_on(tracer.capture_threads(target.pid, None, 512))
            .expect("capture during churn");
        assert!(!taken.is_empty() || captures > 0 || task_ids(target.pid).len() > 1);
        captures += 1;
        if let Some(line) = target.poll_line("churned") {
            break line;
        }
    };
    assert_eq!(line, "churned 2000", "after {captures} captures");
    target.send("ping");
    target.expect_line("pong");
    let captured = rt
        .block_on(tracer.capture_threads(target.pid, None, 64))
        .expect("capture");
    assert_eq!(
        captured.iter().map(|c| c.tid).collect::<Vec<_>>(),
        vec![target.pid],
        "exited threads are forgotten"
    );
    rt.block_on(tracer.detach(target.pid)).expect("detach");
    assert_eq!(common::tracer_pid(target.pid), 0);
}

#[test]
fn a_thread_id_is_not_a_process() {
    let rt = runtime();
    let tracer = Tracer::start().expect("tracer");
    let mut target = workers();
    target.send("spawn 1");
    target.expect_line("spawned 1");
    let thread = *task_ids(target.pid).last().expect("a thread");
    match rt.block_on(tracer.attach(thread)) {
        Err(TraceError::ThreadNotProcess { tid, pid }) => {
            assert_eq!((tid, pid), (thread, target.pid))
        }
        other => panic!("expected ThreadNotProcess, got {other:?}"),
    }
}

/// Set in the environment of the unprivileged re-run of this test binary.
const UNPRIVILEGED_TARGET: &str = "LIVEPROBE_TEST_UNPRIVILEGED_TARGET";

/// As root the kernel lets us trace anything, so the refusal is produced in a
/// copy of this test binary that drops to user `nobody` first.
#[test]
fn permission_denied_says_why() {
    if let Ok(target) = std::env::var(UNPRIVILEGED_TARGET) {
        unprivileged_child(target.parse().expect("target pid"));
        return;
    }
    // Without root there is no dropping to `nobody`: fail rather than check
    // nothing.
    // SAFETY: geteuid has no preconditions.
    let euid = unsafe { libc::geteuid() };
    assert_eq!(
        euid, 0,
        "this test needs root, to produce EPERM in a copy of itself that drops to user nobody; run the tests as root"
    );
    let target = workers();
    let output = Command::new(std::env::current_exe().expect("test binary"))
        .args([
            "--exact",
            "permission_denied_says_why",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(UNPRIVILEGED_TARGET, target.pid.to_string())
        .output()
        .expect("re-run test binary");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "unprivileged child failed:\n{stderr}"
    );
    assert!(
        stderr.contains("UNPRIVILEGED-CHECKS-PASSED"),
        "child did not run its checks:\n{stderr}"
    );
}

fn unprivileged_child(target: i32) {
    // SAFETY: plain credential changes of this (child) process.
    unsafe {
        assert_eq!(libc::setgroups(0, std::ptr::null()), 0);
        assert_eq!(libc::setgid(65534), 0);
        assert_eq!(libc::setuid(65534), 0);
    }
    let rt = runtime();
    let tracer = Tracer::start().expect("tracer");
    match rt.block_on(tracer.attach(target)) {
        Err(error @ TraceError::PermissionDenied { .. }) => {
            let text = error.to_string();
            assert!(text.contains("not permitted to trace process"), "{text}");
            assert!(text.contains("belongs to user root"), "{text}");
            assert!(text.contains("CAP_SYS_PTRACE"), "{text}");
        }
        other => panic!("expected PermissionDenied, got {other:?}"),
    }
    let listed = list_processes(Some(&target.to_string()));
    let entry = listed
        .iter()
        .find(|p| p.pid == target)
        .expect("target listed");
    assert!(!entry.attachable);
    assert!(
        entry
            .reason
            .as_deref()
            .unwrap_or("")
            .contains("owned by user root"),
        "{entry:?}"
    );
    let mut buf = [0u8; 8];
    let error = ProcessMemory::new(target)
        .read(0x1000, &mut buf)
        .expect_err("no access");
    assert_eq!(
        error.cause,
        liveprobe::tracer::MemoryReadCause::PermissionDenied
    );
    eprintln!("UNPRIVILEGED-CHECKS-PASSED");
}
