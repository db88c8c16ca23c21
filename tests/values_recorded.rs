//! The value layer over recorded memory: a frame read live is read again
//! from the bytes the first read touched, after the process is gone, and
//! gives the same answer (the seam the probes rely on: copy at the hit,
//! decode later). Also bad input: unknown names, malformed expressions,
//! calls and assignments, unmapped pointers, cycles and huge limits.

#[path = "fixtures/values/support.rs"]
mod support;

use std::cell::RefCell;
use std::time::Instant;

use liveprobe::debuginfo::{MemoryError, MemorySource, RecordedMemory};
use liveprobe::eval::{EvalError, FrameContext, compile, evaluate, read_locals};
use liveprobe::value::{Limits, Redaction, Unavailable};
use support::{Fixture, Stopped};

/// Reads through to another source and keeps a copy of every byte read.
struct Recorder<'a> {
    inner: &'a dyn MemorySource,
    recorded: RefCell<RecordedMemory>,
    reads: RefCell<usize>,
}

impl MemorySource for Recorder<'_> {
    fn read_memory(&self, addr: u64, buf: &mut [u8]) -> Result<(), MemoryError> {
        *self.reads.borrow_mut() += 1;
        self.inner.read_memory(addr, buf)?;
        self.recorded.borrow_mut().insert(addr, buf.to_vec());
        Ok(())
    }
}

#[test]
fn a_frame_decodes_the_same_from_a_recording() {
    let exe = support::build_many(
        &["c_values.c", "c_values_handle.c"],
        "c_values_O0",
        &["-O0"],
    );
    let mut fixture = Fixture::start(&exe);
    let stopped = Stopped::new(fixture.pid);
    let frame = stopped.frame("inspect_here");
    let recorder = Recorder {
        inner: &stopped.memory,
        recorded: RefCell::new(RecordedMemory::new()),
        reads: RefCell::new(0),
    };
    let live_ctx = FrameContext {
        types: liveprobe::debuginfo::types::TypeTables::shared(),
        image: &stopped.image,
        pc: frame.pc,
        regs: &frame.regs,
        cfa: frame.cfa,
        is_caller: frame.is_caller,
        inline_depth: frame.inline_depth,
        memory: &recorder,
    };
    let limits = Limits::default();
    let redaction = Redaction::default_list();
    let started = Instant::now();
    let live = read_locals(&live_ctx, &limits, &redaction).expect("live read_locals");
    let first = started.elapsed();
    let reads = *recorder.reads.borrow();
    // Warm: the fastest of a few calls (the machine is shared; no timing
    // is asserted, it is reported for the benchmark notes).
    let mut second = std::time::Duration::MAX;
    for _ in 0..20 {
        let started = Instant::now();
        let again = read_locals(&live_ctx, &limits, &redaction).expect("second read_locals");
        second = second.min(started.elapsed());
        assert_eq!(live, again);
    }
    let started = Instant::now();
    let _ = liveprobe::eval::frame_function(&live_ctx).expect("frame_function");
    let scope_only = started.elapsed();
    eprintln!(
        "read_locals: {} variables, {reads} memory reads, first {first:?}, warm {second:?} (scope walk {scope_only:?})",
        live.len()
    );

    stopped.detach();
    let last = fixture.finish();
    assert!(last.starts_with("done "), "{last}");
    drop(fixture);

    let recording = recorder.recorded.borrow().clone();
    let offline_ctx = FrameContext {
        types: liveprobe::debuginfo::types::TypeTables::shared(),
        memory: &recording,
        ..live_ctx
    };
    let offline =
        read_locals(&offline_ctx, &limits, &redaction).expect("read_locals over the recording");
    assert_eq!(
        live, offline,
        "a recording of the bytes read gives the same values"
    );
}

#[test]
fn bad_input_is_reported_not_fatal() {
    let exe = support::build_many(
        &["c_values.c", "c_values_handle.c"],
        "c_values_O0",
        &["-O0"],
    );
    let mut fixture = Fixture::start(&exe);
    let stopped = Stopped::new(fixture.pid);
    let ctx = stopped.context("inspect_here");
    let limits = Limits::default();
    let redaction = Redaction::default_list();

    match compile("countt + 1", &ctx) {
        Err(EvalError::UnknownName {
            name,
            column,
            in_scope,
        }) => {
            assert_eq!((name.as_str(), column), ("countt", 1));
            assert_eq!(
                in_scope.first().map(String::as_str),
                Some("count"),
                "{in_scope:?}"
            );
        }
        other => panic!("{other:?}"),
    }
    match compile("p.x +", &ctx) {
        Err(EvalError::Syntax { column, .. }) => assert_eq!(column, 6),
        other => panic!("{other:?}"),
    }
    match compile("square(2)", &ctx) {
        Err(EvalError::Refused { column, reason }) => {
            assert_eq!(column, 7);
            assert!(reason.contains("calls are not allowed"), "{reason}");
        }
        other => panic!("{other:?}"),
    }
    match compile("count = 4", &ctx) {
        Err(EvalError::Refused { column, .. }) => assert_eq!(column, 7),
        other => panic!("{other:?}"),
    }
    match compile("p.z", &ctx) {
        Err(EvalError::Type { column, message }) => {
            assert_eq!(column, 1);
            assert!(message.contains("x, y"), "{message}");
        }
        other => panic!("{other:?}"),
    }
    match compile("p->x", &ctx) {
        Err(EvalError::Type { message, .. }) => assert!(message.contains("use `.`"), "{message}"),
        other => panic!("{other:?}"),
    }

    // A pointer into unmapped memory: the value says so.
    let dangling = evaluate(
        &compile("*dangling", &ctx).unwrap(),
        &ctx,
        &limits,
        &redaction,
    );
    assert!(
        matches!(
            dangling.unavailable,
            Some(Unavailable::ReadError {
                address: 0x10,
                null: None,
                ..
            })
        ),
        "{dangling:?}"
    );
    let null = evaluate(
        &compile("null_ptr->x", &ctx).err().map_or_else(
            || compile("*null_ptr", &ctx).unwrap(),
            |_| compile("*null_ptr", &ctx).unwrap(),
        ),
        &ctx,
        &limits,
        &redaction,
    );
    assert!(
        null.unavailable
            .as_ref()
            .map(ToString::to_string)
            .is_some_and(|r| r.starts_with("read error at 0x0")),
        "{null:?}"
    );
    let out_of_range = evaluate(
        &compile("numbers[9]", &ctx).unwrap(),
        &ctx,
        &limits,
        &redaction,
    );
    assert!(
        out_of_range
            .unavailable
            .as_ref()
            .map(ToString::to_string)
            .is_some_and(|r| r.contains("out of range")),
        "{out_of_range:?}"
    );
    let by_zero = evaluate(
        &compile("count / (count - 3)", &ctx).unwrap(),
        &ctx,
        &limits,
        &redaction,
    );
    assert!(
        by_zero
            .unavailable
            .as_ref()
            .map(ToString::to_string)
            .is_some_and(|r| r.contains("division by zero")),
        "{by_zero:?}"
    );

    // A cycle with a huge depth stays bounded; huge limits are clamped.
    let deep = Limits {
        depth: 1_000_000,
        max_string: u32::MAX,
        max_items: u32::MAX,
    };
    let cycle = evaluate(&compile("loop_a", &ctx).unwrap(), &ctx, &deep, &redaction);
    let text = cycle.to_text();
    assert!(text.contains("cycle"), "{text}");
    assert!(text.len() < 10_000, "{} bytes", text.len());
    let big = evaluate(
        &compile("big_array", &ctx).unwrap(),
        &ctx,
        &deep,
        &redaction,
    );
    let children = big.children.as_ref().map_or(0, Vec::len);
    assert!(children == 1, "{children}");
    let huge = evaluate(
        &compile("big_string", &ctx).unwrap(),
        &ctx,
        &deep,
        &redaction,
    );
    assert!(
        huge.truncated && huge.value.len() <= Limits::MAX_STRING as usize + 64,
        "{}",
        huge.value.len()
    );

    // Secrets stay hidden through expressions too.
    for secret in [
        "acct.password",
        "session_token",
        "session_token + 1",
        "api_key",
    ] {
        let value = evaluate(&compile(secret, &ctx).unwrap(), &ctx, &limits, &redaction);
        assert_eq!(
            value.unavailable,
            Some(Unavailable::Redacted),
            "{secret}: {value:?}"
        );
    }

    stopped.detach();
    let last = fixture.finish();
    assert!(last.starts_with("done "), "{last}");
}

/// Memory where every address is readable and holds pseudo-random bytes:
/// every pointer "works", every length and discriminant is garbage.
struct Garbage;

impl MemorySource for Garbage {
    fn read_memory(&self, addr: u64, buf: &mut [u8]) -> Result<(), MemoryError> {
        if buf.len() > 64 << 20 {
            panic!("a {}-byte read: limits did not hold", buf.len());
        }
        for (i, byte) in buf.iter_mut().enumerate() {
            let mut x = addr
                .wrapping_add(i as u64)
                .wrapping_mul(0x9E37_79B9_7F4A_7C15);
            x ^= x >> 29;
            x = x.wrapping_mul(0xBF58_476D_1CE4_E5B9);
            *byte = (x >> 32) as u8;
        }
        Ok(())
    }
}

#[test]
fn garbage_memory_stays_bounded() {
    let cases = [
        (
            support::build("rust_values.rs", "rust_values", &["-C", "opt-level=0"]),
            "inspect_here",
        ),
        (
            support::build("cpp_values.cpp", "cpp_values_O0", &["-O0", "-std=c++17"]),
            "inspect_here",
        ),
        (
            support::build_many(
                &["c_values.c", "c_values_handle.c"],
                "c_values_O0",
                &["-O0"],
            ),
            "inspect_here",
        ),
    ];
    for (exe, function) in cases {
        let mut fixture = Fixture::start(&exe);
        let stopped = Stopped::new(fixture.pid);
        let frame = stopped.frame(function);
        let ctx = FrameContext {
            types: liveprobe::debuginfo::types::TypeTables::shared(),
            image: &stopped.image,
            pc: frame.pc,
            regs: &frame.regs,
            cfa: frame.cfa,
            is_caller: frame.is_caller,
            inline_depth: frame.inline_depth,
            memory: &Garbage,
        };
        let limits = Limits {
            depth: 6,
            max_string: 4096,
            max_items: 200,
        };
        let started = Instant::now();
        let values = read_locals(&ctx, &limits, &Redaction::default_list())
            .expect("read_locals over garbage");
        let json = serde_json::to_string(&values).expect("json");
        eprintln!(
            "{}: {} variables over garbage in {:?}, {} bytes of JSON",
            exe.display(),
            values.len(),
            started.elapsed(),
            json.len()
        );
        assert!(json.len() < 64 << 20, "the answer must stay bounded");
        stopped.detach();
        let _ = fixture.finish();
    }
}
