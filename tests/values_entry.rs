//! `DW_OP_entry_value` resolved only from a proven call site, on a real
//! process: a C event loop's main thread stopped in glibc's `epoll_wait`
//! (multi-threaded path). glibc's location lists describe `epfd` and
//! `events` with `DW_OP_entry_value` right after the system call returns;
//! the frame is read there (the thread's own registers and stack, pc moved
//! to that next instruction: nothing in between changes them) and checked
//! against the printed truth and against gdb's `@entry` values. Then the
//! same frame with the caller's register unknown, and with a return address
//! whose call site calls another function, must say "not provable".

#[path = "fixtures/values/support.rs"]
mod support;
use support::common;

use liveprobe::debuginfo::scope::frame_scope;
use liveprobe::debuginfo::types::TypeTable;
use liveprobe::debuginfo::{FileAddr, MemoryError, MemorySource, Registers, RuntimeAddr, reg};
use liveprobe::eval::{FrameContext, read_locals};
use liveprobe::value::{Limits, Redaction, Value};

/// The fixture's printed truth: (epfd, events address).
fn start_idle_server() -> (common::Fixture, String, String) {
    let exe = common::build_fixture("honest/epoll_server.c", "epoll_server_O2", &["-O2"]);
    let mut fixture = common::Fixture::start_with_args(&exe, &["idle"]);
    let line = fixture.expect_line("epfd ");
    let words: Vec<&str> = line.split_whitespace().collect();
    match words.as_slice() {
        ["epfd", fd, "events", address] => (fixture, fd.to_string(), address.to_string()),
        _ => panic!("unexpected fixture line {line:?}"),
    }
}

fn value<'a>(values: &'a [Value], name: &str) -> &'a Value {
    values
        .iter()
        .find(|v| v.name == name)
        .unwrap_or_else(|| panic!("no {name} in {values:?}"))
}

/// True when `epfd`'s location at file pc `pc` starts with DW_OP_entry_value.
fn entry_value_at(module: &liveprobe::debuginfo::Module, pc: u64) -> bool {
    let mut types = TypeTable::new();
    let Ok(scope) = frame_scope(module, &mut types, FileAddr(pc), 0) else {
        return false;
    };
    let Some(epfd) = scope.variables.iter().find(|v| v.name == "epfd") else {
        return false;
    };
    let liveprobe::debuginfo::scope::VariableLocation::Expression(expression) = &epfd.location
    else {
        return false;
    };
    let unit = module
        .unit_for(FileAddr(pc))
        .expect("the unit of epoll_wait");
    matches!(
        expression.clone().operations(unit.encoding()).next(),
        Ok(Some(gimli::Operation::EntryValue { .. }))
    )
}

/// Reads through to live memory, but shows `value` in the 8 bytes at `slot`.
struct Overlay<'a> {
    inner: &'a dyn MemorySource,
    slot: u64,
    value: u64,
}

impl MemorySource for Overlay<'_> {
    fn read_memory(&self, addr: u64, buf: &mut [u8]) -> Result<(), MemoryError> {
        self.inner.read_memory(addr, buf)?;
        let bytes = self.value.to_le_bytes();
        for (i, byte) in buf.iter_mut().enumerate() {
            let at = addr + i as u64;
            if at >= self.slot && at < self.slot + 8 {
                *byte = bytes[(at - self.slot) as usize];
            }
        }
        Ok(())
    }
}

#[test]
fn entry_values_come_only_from_a_proven_call_site() {
    let (mut fixture, epfd, events) = start_idle_server();
    // gdb first (it attaches and detaches): what it proves at entry.
    let gdb = support::gdb_print(fixture.pid, "epoll_wait", &["epfd@entry", "events@entry"]);
    assert_eq!(gdb[0], epfd, "gdb: {gdb:?}");
    assert!(gdb[1].ends_with(&events), "gdb: {gdb:?}");

    // gdb's attach made epoll_wait return EINTR; wait until the loop is
    // back in it (system call 232 on x86-64).
    let in_epoll_wait = || {
        std::fs::read_to_string(format!("/proc/{}/syscall", fixture.pid))
            .is_ok_and(|text| text.split_whitespace().next() == Some("232"))
    };
    for _ in 0..10_000 {
        if in_epoll_wait() {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(1));
    }
    assert!(
        in_epoll_wait(),
        "the main thread never waited in epoll_wait again"
    );
    let stopped = support::Stopped::now(fixture.pid);
    let frame = stopped.frame("epoll_wait");
    assert!(
        !frame.is_caller,
        "the main thread is not in epoll_wait's own code"
    );
    let limits = Limits::default();
    let redaction = Redaction::default_list();

    // Where it is stopped (after the system call) the arguments are on the
    // stack: a plain read.
    let here = read_locals(&stopped.context("epoll_wait"), &limits, &redaction).expect("read");
    assert_eq!(value(&here, "epfd").value, epfd, "{here:?}");
    assert_eq!(value(&here, "events").value, events, "{here:?}");

    // The next pc where glibc's location list says DW_OP_entry_value.
    let module = stopped
        .image
        .module_for(frame.pc)
        .expect("libc is loaded")
        .clone();
    let file_pc = module.to_file(frame.pc).0;
    let next = (file_pc..file_pc + 64)
        .find(|&pc| entry_value_at(&module, pc))
        .unwrap_or_else(|| {
            panic!("no pc after {file_pc:#x} in epoll_wait locates epfd with DW_OP_entry_value")
        });
    let pc = module.to_runtime(FileAddr(next));
    let at = |regs: &Registers| {
        let mut regs = regs.clone();
        regs.set(reg::RIP, Some(pc.0));
        regs
    };
    let regs = at(&frame.regs);
    // The same CFI row (no stack change in between): the state is one the
    // thread passes through.
    let unwound = stopped.image.unwind(&regs, &stopped.memory, 1);
    assert_eq!(
        unwound[0].cfa,
        stopped.image.unwind(&frame.regs, &stopped.memory, 1)[0].cfa
    );
    let cfa = unwound[0].cfa;
    let image = &stopped.image;
    fn context<'a>(
        image: &'a liveprobe::debuginfo::ProcessImage,
        pc: RuntimeAddr,
        cfa: Option<u64>,
        regs: &'a Registers,
        memory: &'a dyn MemorySource,
    ) -> FrameContext<'a> {
        FrameContext {
            types: liveprobe::debuginfo::types::TypeTables::shared(),
            image,
            pc,
            regs,
            cfa,
            is_caller: false,
            inline_depth: 0,
            memory,
        }
    }

    // 1. Proven: main's call site passes epfd from a callee-saved register
    //    (kept by epoll_wait) and events from its own frame.
    let proven = read_locals(
        &context(image, pc, cfa, &regs, &stopped.memory),
        &limits,
        &redaction,
    )
    .expect("read");
    eprintln!("{proven:?}");
    assert_eq!(value(&proven, "epfd").value, epfd, "{proven:?}");
    assert!(value(&proven, "epfd").unavailable.is_none());
    assert_eq!(value(&proven, "events").value, events, "{proven:?}");

    // 2. The callee-saved registers unknown (main keeps epfd in one of
    //    them): epfd cannot be proven; events, passed from main's stack
    //    frame (CFA-relative), still can.
    let mut no_callee_saved = regs.clone();
    for register in reg::CALLEE_SAVED {
        no_callee_saved.set(register, None);
    }
    let partial = read_locals(
        &context(image, pc, cfa, &no_callee_saved, &stopped.memory),
        &limits,
        &redaction,
    )
    .expect("read");
    let reason = value(&partial, "epfd")
        .unavailable
        .as_ref()
        .map(ToString::to_string)
        .unwrap_or_else(|| panic!("epfd shown without a proof: {:?}", value(&partial, "epfd")));
    assert!(reason.contains("entry value not provable"), "{reason}");
    assert_eq!(value(&partial, "events").value, events, "{partial:?}");

    // 3. A return address whose call site calls another function (as if a
    //    tail call had come between): nothing is proven.
    let main_module = stopped.image.main_module().expect("the executable").clone();
    let return_slot = unwound[0].cfa.expect("epoll_wait's CFA") - 8;
    let true_return = liveprobe::debuginfo::read_u64(&stopped.memory, return_slot).expect("ra");
    let other_site = {
        let (entry, _) = main_module
            .function_entry(main_module.to_file(RuntimeAddr(true_return - 1)))
            .expect("main's symbol");
        let mut types = TypeTable::new();
        (entry.0..entry.0 + 0x400)
            .map(FileAddr)
            .filter(|&ra| main_module.to_runtime(ra).0 != true_return)
            .find(|&ra| {
                [reg::RDI, reg::RSI].into_iter().all(|register| {
                    liveprobe::debuginfo::call_site_value(&main_module, &mut types, ra, register)
                        .is_some()
                })
            })
            .expect("another call site in main passing rdi and rsi")
    };
    let overlay = Overlay {
        inner: &stopped.memory,
        slot: return_slot,
        value: main_module.to_runtime(other_site).0,
    };
    let unproven = read_locals(
        &context(image, pc, cfa, &regs, &overlay),
        &limits,
        &redaction,
    )
    .expect("read");
    for name in ["epfd", "events"] {
        let reason = value(&unproven, name)
            .unavailable
            .as_ref()
            .map(ToString::to_string)
            .unwrap_or_else(|| {
                panic!("{name} shown without a proof: {:?}", value(&unproven, name))
            });
        assert!(reason.contains("another function"), "{name}: {reason}");
    }

    stopped.detach();
    fixture.send("quit");
    fixture.expect_line("done");
}
