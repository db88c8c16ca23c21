//! Honest values of a thread read while it runs under load: a C event loop
//! whose main thread waits in `epoll_wait` (glibc's location lists use
//! `DW_OP_entry_value` there) is read 1,000 times over MCP while worker
//! threads keep waking it. Every `epfd` and `events` shown must be the value
//! the program printed, or be marked unavailable: never a number from
//! another moment of the thread or from a call site that was not proven.

mod common;

use common::*;
use serde_json::{Value, json};

/// What the fixture printed about its own state.
struct Truth {
    epfd: String,
    events: String,
}

fn started(exe: &std::path::Path) -> (Fixture, Truth) {
    let mut fx = Fixture::start(exe);
    let line = fx.expect_line("epfd ");
    let words: Vec<&str> = line.split_whitespace().collect();
    let (epfd, events) = match words.as_slice() {
        ["epfd", fd, "events", address] => (fd.to_string(), address.to_string()),
        _ => panic!("unexpected fixture line {line:?}"),
    };
    (fx, Truth { epfd, events })
}

fn variable<'a>(locals: &'a Value, name: &str) -> Option<&'a Value> {
    locals["variables"]
        .as_array()?
        .iter()
        .find(|v| v["name"] == name)
}

/// Tallies of what the reads saw.
#[derive(Debug, Default)]
struct Tally {
    reads: usize,
    /// Reads whose frame was `epoll_wait` (its arguments were checked).
    in_epoll_wait: usize,
    /// Values shown that were correct.
    right: usize,
    /// Values marked unavailable.
    unavailable: usize,
    /// Values shown that were not the truth: must stay empty.
    wrong: Vec<String>,
}

impl Tally {
    fn check(&mut self, locals: &Value, name: &str, truth: &str) {
        let Some(value) = variable(locals, name) else {
            self.wrong.push(format!("{name} missing from {locals}"));
            return;
        };
        if value.get("unavailable").is_some_and(|u| !u.is_null()) {
            self.unavailable += 1;
        } else if value["value"] == truth {
            self.right += 1;
        } else {
            self.wrong.push(format!(
                "{name} = {} in {} (truth {truth})",
                value["value"], locals["frame"]["function"]
            ));
        }
    }
}

/// Reads frame 0 or 1 of the main thread `reads` times; wherever the frame
/// read is `epoll_wait`, checks both arguments (in `main`, its `epfd`).
fn read_under_load(client: &mut McpClient, pid: i32, truth: &Truth, reads: usize) -> Tally {
    let mut tally = Tally::default();
    for read in 0..reads {
        // Frame 1 is epoll_wait when the thread is in glibc's cancellation
        // helpers around the system call: there glibc's arguments need
        // DW_OP_entry_value (else it is main).
        let frame = read % 2;
        let locals = client
            .call(
                "read_locals",
                json!({"pid": pid, "tid": pid, "frame": frame, "limits": {"depth": 1}}),
            )
            .ok();
        tally.reads += 1;
        match locals["frame"]["function"].as_str() {
            Some("epoll_wait") => {
                tally.in_epoll_wait += 1;
                tally.check(&locals, "epfd", &truth.epfd);
                tally.check(&locals, "events", &truth.events);
                // A system call the kernel will restart has no result yet:
                // its kernel-internal code must not show as the program's.
                if let Some(result) = variable(&locals, "sc_ret")
                    && ["-512", "-513", "-514", "-516"]
                        .contains(&result["value"].as_str().unwrap_or(""))
                {
                    tally.wrong.push(format!("sc_ret = {}", result["value"]));
                }
            }
            Some("main") => tally.check(&locals, "epfd", &truth.epfd),
            _ => {}
        }
    }
    tally
}

fn no_wrong_values_under_load(opt: &str) {
    let exe = build_fixture(
        "honest/epoll_server.c",
        &format!("epoll_server_{opt}"),
        &[&format!("-{opt}")],
    );
    let (mut fx, truth) = started(&exe);
    let mut client = McpClient::start();
    client.call("attach", json!({"pid": fx.pid})).ok();
    let tally = read_under_load(&mut client, fx.pid, &truth, 1000);
    eprintln!("{opt}: {tally:?}");
    assert!(
        tally.wrong.is_empty(),
        "{} wrong values in {} reads ({} in epoll_wait): {:?}",
        tally.wrong.len(),
        tally.reads,
        tally.in_epoll_wait,
        &tally.wrong[..tally.wrong.len().min(10)]
    );
    // The reads must have looked where the bug was: a main thread that is
    // never seen in epoll_wait would make this test pass for nothing.
    assert!(
        tally.in_epoll_wait >= tally.reads / 10,
        "only {} of {} reads found the main thread in epoll_wait",
        tally.in_epoll_wait,
        tally.reads
    );
    assert!(tally.right > 0, "no value was shown at all: {tally:?}");
    client.call("detach", json!({"pid": fx.pid})).ok();
    fx.send("quit");
    fx.expect_line("done");
    assert_eq!(fx.wait_exit(), Some(0));
}

#[test]
fn epoll_wait_arguments_are_never_wrong_under_load_o2() {
    no_wrong_values_under_load("O2");
}

#[test]
fn epoll_wait_arguments_are_never_wrong_under_load_o0() {
    no_wrong_values_under_load("O0");
}
