//! Tracer room against real processes: seize, follow, capture, detach, and
//! every refusal that can be produced for real. Fixtures are in
//! tests/fixtures/tracer/ and are driven line by line on stdin.

mod common;

use std::io::{BufRead, BufReader, Write};
use std::path::PathBuf;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc::{Receiver, RecvTimeoutError, channel};
use std::time::{Duration, Instant};

use liveprobe::tracer::{ProcessMemory, TargetState, TraceError, Tracer, list_processes};

const WAIT: Duration = common::WAIT;

fn workers_exe() -> PathBuf {
    common::build_fixture("tracer/workers.c", "tracer_workers", &["-O1"])
}

fn holdtrace_exe() -> PathBuf {
    common::build_fixture("tracer/holdtrace.c", "tracer_holdtrace", &[])
}

/// A fixture process driven through stdin, whose output lines can also be
/// polled without blocking.
struct Driven {
    child: Child,
    pid: i32,
    stdin: Option<ChildStdin>,
    lines: Receiver<String>,
}

impl Driven {
    /// Start `exe` directly: it is a child of this test process.
    fn start(exe: &PathBuf, args: &[&str]) -> Driven {
        let mut command = Command::new(exe);
        command.args(args);
        let mut driven = Driven::spawn(command);
        driven.pid = driven.child.id() as i32;
        driven
    }

    fn spawn(mut command: Command) -> Driven {
        let mut child = command
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("start fixture");
        let stdin = child.stdin.take();
        let stdout = child.stdout.take().expect("stdout");
        let (sender, lines) = channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { return };
                if sender.send(line).is_err() {
                    return;
                }
            }
        });
        Driven {
            child,
            pid: 0,
            stdin,
            lines,
        }
    }

    /// The workers fixture as a grandchild, under a `sh` that waits for it
    /// and exits with its status. A traced process that is a child of the
    /// tracer's own process has its exit status collected by the tracer
    /// (Linux hands a ptraced child's exit to the first waiter in the real
    /// parent's thread group); targets of liveprobe are never its children,
    /// so the tests keep it that way too, and `sh` plays the real parent
    /// whose view of the exit must stay intact.
    fn workers() -> Driven {
        let mut command = Command::new("sh");
        command.arg("-c").arg("\"$0\"; exit $?").arg(workers_exe());
        let mut driven = Driven::spawn(command);
        let ready = driven.expect("ready");
        driven.pid = ready["ready ".len()..].parse().expect("pid in ready line");
        driven
    }

    fn send(&mut self, line: &str) {
        let stdin = self.stdin.as_mut().expect("stdin open");
        // One write per line (a second write of the newline could meet EPIPE).
        stdin
            .write_all(format!("{line}\n").as_bytes())
            .expect("write to fixture");
    }

    fn expect(&mut self, prefix: &str) -> String {
        let deadline = Instant::now() + WAIT;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
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

    /// A line starting with `prefix` if one has arrived, without waiting.
    fn poll(&mut self, prefix: &str) -> Option<String> {
        loop {
            match self.lines.recv_timeout(Duration::ZERO) {
                Ok(line) if line.starts_with(prefix) => return Some(line),
                Ok(_) => {}
                Err(RecvTimeoutError::Timeout | RecvTimeoutError::Disconnected) => return None,
            }
        }
    }

    fn wait_exit(&mut self) -> std::process::ExitStatus {
        let deadline = Instant::now() + WAIT;
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                return status;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        panic!("fixture {} did not exit", self.pid);
    }
}

impl Drop for Driven {
    fn drop(&mut self) {
        if self.pid > 0 && self.pid != self.child.id() as i32 {
            // SAFETY: kill has no memory-safety preconditions; the fixture is
            // still the sh's unreaped child, so its pid cannot be reused yet.
            unsafe { libc::kill(self.pid, libc::SIGKILL) };
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
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
        let mut plain = Driven::workers();
        plain.send("work 4000000");
        plain.expect("checksum")
    };

    let mut target = Driven::workers();
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
            if let Some(line) = target.poll("checksum") {
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
    target.expect("pong");
    rt.block_on(tracer.detach(target.pid)).expect("detach");
    assert!(!tracer.is_attached(target.pid));
    assert_eq!(
        rt.block_on(tracer.process_state(target.pid))
            .expect("state"),
        TargetState::Detached
    );
    assert_eq!(common::tracer_pid(target.pid), 0);
    target.send("work 4000000");
    assert_eq!(target.expect("checksum"), reference);
    // And it can be attached again.
    rt.block_on(tracer.attach(target.pid)).expect("re-attach");
    target.send("ping");
    target.expect("pong");
    rt.block_on(tracer.detach(target.pid))
        .expect("detach again");
}

#[test]
fn signals_of_the_target_still_arrive_while_captured() {
    let rt = runtime();
    let tracer = Tracer::start().expect("tracer");
    let mut target = Driven::workers();
    rt.block_on(tracer.attach(target.pid)).expect("attach");
    target.send("spawn 3");
    target.expect("spawned 3");
    target.send("signals 3000");
    let mut captures = 0;
    let line = loop {
        rt.block_on(tracer.capture_threads(target.pid, None, 256))
            .expect("capture");
        captures += 1;
        if let Some(line) = target.poll("usr1") {
            break line;
        }
    };
    assert_eq!(line, "usr1 3000", "after {captures} captures");
    assert!(target.poll("lost-signal").is_none());
}

#[test]
fn new_threads_are_followed_and_named() {
    let rt = runtime();
    let tracer = Tracer::start().expect("tracer");
    let mut target = Driven::workers();
    rt.block_on(tracer.attach(target.pid)).expect("attach");
    target.send("spawn 3");
    target.expect("spawned 3");
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
    target.expect("pong");
}

#[test]
fn group_stop_is_kept_and_capture_does_not_resume_it() {
    let rt = runtime();
    let tracer = Tracer::start().expect("tracer");
    let mut target = Driven::workers();
    rt.block_on(tracer.attach(target.pid)).expect("attach");
    target.send("spawn 2");
    target.expect("spawned 2");
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
        target.poll("pong").is_none(),
        "capture resumed a job-control-stopped process"
    );
    assert!(stopped(target.pid));
    // SAFETY: as above.
    unsafe { libc::kill(target.pid, libc::SIGCONT) };
    target.expect("pong");

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
        target.poll("pong").is_none(),
        "detach resumed a job-control-stopped process"
    );
    // SAFETY: as above.
    unsafe { libc::kill(target.pid, libc::SIGCONT) };
    target.expect("pong");
}

fn task_state(pid: i32, tid: i32) -> Option<char> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/task/{tid}/stat")).ok()?;
    stat.rsplit_once(')')?.1.trim_start().chars().next()
}

#[test]
fn fork_children_are_let_go_and_vfork_spawn_works() {
    let rt = runtime();
    let tracer = Tracer::start().expect("tracer");
    let mut target = Driven::workers();
    rt.block_on(tracer.attach(target.pid)).expect("attach");
    target.send("fork");
    // Parent and child print concurrently: take both lines in either order.
    let mut child_alive = None;
    let mut forked = None;
    while child_alive.is_none() || forked.is_none() {
        let line = target.expect("");
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
    assert_eq!(target.expect("reaped"), "reaped 4");
    target.send("spawn-true");
    assert_eq!(target.expect("spawned-true"), "spawned-true 0");
    target.send("ping");
    target.expect("pong");
    assert!(tracer.is_attached(target.pid));
}

#[test]
fn exec_is_recorded_and_followed() {
    let rt = runtime();
    let tracer = Tracer::start().expect("tracer");
    let mut target = Driven::workers();
    rt.block_on(tracer.attach(target.pid)).expect("attach");
    target.send("spawn 2");
    target.expect("spawned 2");
    target.send("exec");
    assert_eq!(target.expect("ready"), format!("ready {}", target.pid));
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
    target.expect("spawned 1");
    let captured = rt
        .block_on(tracer.capture_threads(target.pid, None, 128))
        .expect("capture after exec");
    assert_eq!(captured.len(), 2);
    rt.block_on(tracer.detach(target.pid)).expect("detach");
    target.send("ping");
    target.expect("pong");
}

#[test]
fn exit_and_death_are_recorded() {
    let rt = runtime();
    let tracer = Tracer::start().expect("tracer");

    let mut exiting = Driven::workers();
    rt.block_on(tracer.attach(exiting.pid)).expect("attach");
    exiting.send("spawn 2");
    exiting.expect("spawned 2");
    exiting.send("exit 7");
    assert_eq!(
        wait_state(&rt, &tracer, exiting.pid),
        TargetState::Exited { code: 7 }
    );
    assert_eq!(
        exiting.wait_exit().code(),
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

    let mut crashing = Driven::workers();
    rt.block_on(tracer.attach(crashing.pid)).expect("attach");
    crashing.send("crash");
    assert_eq!(
        wait_state(&rt, &tracer, crashing.pid),
        TargetState::Killed {
            signal: "SIGABRT".into()
        }
    );
    assert_eq!(
        crashing.wait_exit().code(),
        Some(128 + libc::SIGABRT),
        "sh saw its child die of SIGABRT"
    );
}

#[test]
fn leader_exit_with_live_threads() {
    let rt = runtime();
    let tracer = Tracer::start().expect("tracer");
    let mut target = Driven::workers();
    rt.block_on(tracer.attach(target.pid)).expect("attach");
    target.send("leader-exit");
    target.expect("leader-gone");
    eventually("the leader is a zombie", || {
        task_state(target.pid, target.pid) == Some('Z')
    });
    target.send("ping");
    target.expect("pong");
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
    assert_eq!(target.wait_exit().code(), Some(5));
}

#[test]
fn attaching_to_a_process_whose_leader_already_exited() {
    let rt = runtime();
    let tracer = Tracer::start().expect("tracer");
    let mut target = Driven::workers();
    target.send("leader-exit");
    target.expect("leader-gone");
    eventually("the leader is a zombie", || {
        task_state(target.pid, target.pid) == Some('Z')
    });
    let report = rt.block_on(tracer.attach(target.pid)).expect("attach");
    assert_eq!(report.threads.len(), 1);
    target.send("ping");
    target.expect("pong");
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
    let target = Driven::workers();
    let mut holder = Driven::start(&holdtrace_exe(), &[&target.pid.to_string()]);
    assert_eq!(holder.expect("holding"), format!("holding {}", target.pid));
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
    holder.stdin.take();
    holder.wait_exit();
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
    let mut first = Driven::workers();
    let mut second = Driven::workers();
    let tracer = Tracer::start().expect("tracer");
    rt.block_on(tracer.attach(first.pid)).expect("attach");
    rt.block_on(tracer.attach(second.pid)).expect("attach");
    second.send("spawn 2");
    second.expect("spawned 2");
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
        target.expect("pong");
    }
}

#[test]
fn memory_reads_of_a_running_target() {
    let rt = runtime();
    let tracer = Tracer::start().expect("tracer");
    let mut target = Driven::workers();
    rt.block_on(tracer.attach(target.pid)).expect("attach");
    target.send("addr");
    let line = target.expect("addr");
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
    let target = Driven::workers();
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
    let mut target = Driven::workers();
    rt.block_on(tracer.attach(target.pid)).expect("attach");
    target.send("spawn 2");
    target.expect("spawned 2");
    // The successor thread takes over the command loop, then execs: the kernel
    // gives it the leader's id and ends every other thread.
    target.send("leader-exit");
    target.expect("leader-gone");
    target.send("exec");
    assert_eq!(target.expect("ready"), format!("ready {}", target.pid));
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
    target.expect("pong");
    target.send("exit 3");
    assert_eq!(
        wait_state(&rt, &tracer, target.pid),
        TargetState::Exited { code: 3 }
    );
    assert_eq!(target.wait_exit().code(), Some(3));
}

#[test]
fn thread_churn_while_capturing() {
    let rt = runtime();
    let tracer = Tracer::start().expect("tracer");
    let mut target = Driven::workers();
    rt.block_on(tracer.attach(target.pid)).expect("attach");
    target.send("churn 2000");
    let mut captures = 0;
    let line = loop {
        let taken = rt
            .block_on(tracer.capture_threads(target.pid, None, 512))
            .expect("capture during churn");
        assert!(!taken.is_empty() || captures > 0 || task_ids(target.pid).len() > 1);
        captures += 1;
        if let Some(line) = target.poll("churned") {
            break line;
        }
    };
    assert_eq!(line, "churned 2000", "after {captures} captures");
    target.send("ping");
    target.expect("pong");
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
    let mut target = Driven::workers();
    target.send("spawn 1");
    target.expect("spawned 1");
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
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        eprintln!("not root: cannot drop privileges to produce EPERM; skipped");
        return;
    }
    let target = Driven::workers();
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
