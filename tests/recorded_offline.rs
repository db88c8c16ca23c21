//! The value and debuginfo rooms offline, on committed recordings: a small
//! fixture's program file (with its DWARF), the registers of one frame and
//! the target memory that frame's reading touched, taken from a live,
//! ptrace-stopped process (as probe-rs keeps recorded targets). These run
//! without starting or tracing anything, beside the live tests that check
//! the same fixtures against known values and gdb.
//!
//! `tests/recordings/<name>/` holds `program` and `frame.json`. To make them
//! again (after a fixture or a deliberate change of output):
//! `cargo test --test recorded_offline -- --ignored record_the_recordings`
//! (`record_the_recordings_optimized` makes only `c_optimized_O2`).

#[path = "fixtures/values/support.rs"]
mod support;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use liveprobe::debuginfo::{
    MemoryError, MemorySource, Module, ProcessImage, RecordedMemory, Registers, RuntimeAddr,
};
use liveprobe::eval::{FrameContext, compile, evaluate, read_locals};
use liveprobe::value::{
    DebugInfoPart, Limits, NotYetInitialized, NullKind, OptimizedOut, Redaction, Unavailable,
    Unsupported, Value,
};
use serde::{Deserialize, Serialize};
use std::num::NonZeroU64;
use support::common;
use support::{Fixture, Stopped};

/// DWARF registers 0..=16 (rax .. rip), as `Registers` tracks them.
const REGISTERS: u16 = 17;

/// One frame of a stopped process, and what reading it touched.
#[derive(Serialize, Deserialize)]
struct Recording {
    /// Load bias of the program (PIE) when it was recorded.
    bias: u64,
    pc: u64,
    cfa: Option<u64>,
    is_caller: bool,
    inline_depth: usize,
    registers: Vec<Option<u64>>,
    fs_base: Option<u64>,
    /// (address, bytes as hex) in the order they were read.
    memory: Vec<(u64, String)>,
    /// What the live process gave: `read_locals` of the frame (values
    /// recordings) or the frames unwound from it within the program,
    /// as (function, file name, line) (unwind recordings).
    locals: Option<serde_json::Value>,
    frames: Option<Vec<(String, String, u32)>>,
}

fn recording_dir(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/recordings")
        .join(name)
}

fn load(name: &str) -> (Recording, ProcessImage, RecordedMemory, Registers) {
    let dir = recording_dir(name);
    let text = std::fs::read_to_string(dir.join("frame.json"))
        .unwrap_or_else(|e| panic!("recording {name} is missing ({e}); see this file's header"));
    let recording: Recording = serde_json::from_str(&text).expect("frame.json");
    let module = Module::open_file(&dir.join("program"), recording.bias).expect("open program");
    let image = ProcessImage::from_modules(0, vec![Arc::new(module)], Some(0));
    let mut memory = RecordedMemory::new();
    for (addr, hex) in &recording.memory {
        memory.insert(*addr, from_hex(hex));
    }
    let mut regs = Registers::new();
    for (k, value) in recording.registers.iter().enumerate() {
        regs.set(k as u16, *value);
    }
    regs.set_fs_base(recording.fs_base);
    (recording, image, memory, regs)
}

fn to_hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn from_hex(hex: &str) -> Vec<u8> {
    (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).expect("hex byte"))
        .collect()
}

/// Frames unwound from `regs` that are in the program, as (function, file
/// name, line); `first_is_caller` when the first frame's pc is a return
/// address.
fn program_frames(
    image: &ProcessImage,
    regs: &Registers,
    first_is_caller: bool,
    memory: &dyn MemorySource,
) -> Vec<(String, String, u32)> {
    let mut out = Vec::new();
    for (k, frame) in image.unwind(regs, memory, 64).into_iter().enumerate() {
        let is_caller = frame.is_caller || (k == 0 && first_is_caller);
        for source in image.symbolize(frame.pc, is_caller) {
            if let (Some(function), Some(file), Some(line)) =
                (source.function, source.file, source.line)
            {
                let file = Path::new(&file)
                    .file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or(file);
                out.push((function, file, line));
            }
        }
    }
    out
}

#[test]
fn c_values_read_the_same_offline() {
    let (recording, image, memory, regs) = load("c_values_O0");
    let ctx = FrameContext {
        types: liveprobe::debuginfo::types::TypeTables::shared(),
        image: &image,
        pc: RuntimeAddr(recording.pc),
        regs: &regs,
        cfa: recording.cfa,
        is_caller: recording.is_caller,
        inline_depth: recording.inline_depth,
        memory: &memory,
    };
    let locals =
        read_locals(&ctx, &Limits::default(), &Redaction::default_list()).expect("read_locals");
    let recorded = recording.locals.expect("recorded locals");
    let locals = serde_json::to_value(&locals).expect("json");
    assert_eq!(
        locals, recorded,
        "offline read_locals differs from the live one recorded"
    );
    // Not only a copy of itself: the fixture's known values are there.
    let text = serde_json::to_string(&locals).expect("json");
    for known in [
        "\"ull\"",
        "18446744073709551615",
        "\"numbers\"",
        "\"value\":\"97 'a'\"",
    ] {
        assert!(text.contains(known), "{known} missing: {text}");
    }
}

#[test]
fn c_basic_unwinds_the_same_offline() {
    let (recording, image, memory, regs) = load("c_basic");
    let frames = program_frames(&image, &regs, recording.is_caller, &memory);
    assert_eq!(
        Some(&frames),
        recording.frames.as_ref(),
        "offline unwind differs from the live one recorded"
    );
    // The lines the source says (as the live test checks against gdb).
    let names: Vec<&str> = frames.iter().map(|f| f.0.as_str()).collect();
    assert_eq!(names, ["work", "main"], "{frames:?}");
    assert_eq!(frames[0].1, "c_basic.c");
    assert_eq!((frames[0].2, frames[1].2), (24, 30), "{frames:?}");
}

#[test]
fn c_optimized_reads_the_same_offline() {
    let (recording, image, memory, regs) = load("c_optimized_O2");
    let ctx = frame_context(&recording, &image, &memory, &regs);
    let locals =
        read_locals(&ctx, &Limits::default(), &Redaction::default_list()).expect("read_locals");
    let json = serde_json::to_value(&locals).expect("json");
    assert_eq!(
        Some(&json),
        recording.locals.as_ref(),
        "offline read_locals differs from the live one recorded"
    );
    // main passes a = 6 and b = 7; they come back as entry values from
    // main's call site, and the compiler kept no `scaled` at this pc.
    let local = |name: &str| {
        locals
            .iter()
            .find(|v| v.name == name)
            .unwrap_or_else(|| panic!("no {name} in {locals:?}"))
    };
    assert_eq!(
        (local("a").value.as_str(), local("b").value.as_str()),
        ("6", "7")
    );
    assert!(
        matches!(
            local("scaled").unavailable,
            Some(Unavailable::OptimizedOut(_))
        ),
        "{:?}",
        local("scaled")
    );
}

/// A frame context over a recording.
fn frame_context<'a>(
    recording: &Recording,
    image: &'a ProcessImage,
    memory: &'a dyn MemorySource,
    regs: &'a Registers,
) -> FrameContext<'a> {
    FrameContext {
        types: liveprobe::debuginfo::types::TypeTables::shared(),
        image,
        pc: RuntimeAddr(recording.pc),
        regs,
        cfa: recording.cfa,
        is_caller: recording.is_caller,
        inline_depth: recording.inline_depth,
        memory,
    }
}

/// `expression` evaluated at `ctx`, with the default limits and redaction.
fn evaluated(ctx: &FrameContext<'_>, expression: &str) -> Value {
    let compiled = compile(expression, ctx).unwrap_or_else(|e| panic!("{expression}: {e}"));
    evaluate(
        &compiled,
        ctx,
        &Limits::default(),
        &Redaction::default_list(),
    )
}

/// The reason `name` is missing among `values`, printed as clients read it.
fn reason_of<'v>(values: &'v [Value], name: &str) -> (&'v Unavailable, String) {
    let value = values
        .iter()
        .find(|v| v.name == name)
        .unwrap_or_else(|| panic!("no {name} in {values:?}"));
    let reason = value
        .unavailable
        .as_ref()
        .unwrap_or_else(|| panic!("{name} is not unavailable: {value:?}"));
    let json = serde_json::to_value(value).expect("json");
    assert_eq!(json["unavailable"], reason.to_string(), "{name}");
    assert_eq!(value.value, format!("<{reason}>"), "{name}");
    (reason, reason.to_string())
}

/// Every kind of reason, each made by the decoder or the evaluator where
/// it decides, over the recorded frames (some with a part of the frame
/// taken away, as a frame the unwinder only partly recovered would be).
#[test]
fn every_kind_of_reason_comes_from_a_real_decode() {
    let (recording, image, memory, regs) = load("c_values_O0");
    let ctx = frame_context(&recording, &image, &memory, &regs);

    // read_error: a pointer into unmapped memory, with the read's size.
    let dangling = evaluated(&ctx, "*dangling");
    assert_eq!(
        dangling.unavailable,
        Some(Unavailable::ReadError {
            address: 0x10,
            size: NonZeroU64::new(4),
            null: None
        }),
        "{dangling:?}"
    );
    assert_eq!(dangling.value, "<read error at 0x10>");
    // ... and through a null pointer, said so.
    let null = evaluated(&ctx, "*null_ptr");
    assert_eq!(null.unavailable, Some(Unavailable::null(NullKind::Pointer)));
    assert_eq!(null.value, "<read error at 0x0 (null pointer)>");

    // redacted: by name, in read_locals and in an expression.
    let locals =
        read_locals(&ctx, &Limits::default(), &Redaction::default_list()).expect("read_locals");
    let (reason, text) = reason_of(&locals, "session_token");
    assert_eq!(
        (reason, text.as_str()),
        (&Unavailable::Redacted, "redacted")
    );
    assert_eq!(
        evaluated(&ctx, "acct.password").unavailable,
        Some(Unavailable::Redacted)
    );

    // unsupported: the evaluator's own reasons, with their numbers.
    let out_of_range = evaluated(&ctx, "numbers[9]");
    assert_eq!(
        out_of_range.unavailable,
        Some(Unavailable::Unsupported(Unsupported::IndexOutOfRange {
            index: Some(9),
            length: 4
        }))
    );
    assert_eq!(
        out_of_range.value,
        "<unsupported: index 9 is out of range (length 4)>"
    );
    let by_zero = evaluated(&ctx, "count / (count - 3)");
    assert_eq!(
        by_zero.unavailable,
        Some(Unavailable::Unsupported(Unsupported::DivisionByZero))
    );
    // ... and a location the frame cannot answer: gcc's -O0 frame base is
    // the CFA, here unknown.
    let no_cfa = FrameContext { cfa: None, ..ctx };
    let locals =
        read_locals(&no_cfa, &Limits::default(), &Redaction::default_list()).expect("read_locals");
    let (reason, text) = reason_of(&locals, "count");
    assert_eq!(reason, &Unavailable::Unsupported(Unsupported::CfaUnknown));
    assert_eq!(
        text,
        "unsupported: the frame's CFA is unknown (no unwind info)"
    );

    // read_error with the size of the read: the same frame over memory
    // that holds nothing.
    let nothing = RecordedMemory::new();
    let empty = FrameContext {
        memory: &nothing,
        ..ctx
    };
    let locals =
        read_locals(&empty, &Limits::default(), &Redaction::default_list()).expect("read_locals");
    let (reason, text) = reason_of(&locals, "ull");
    let Unavailable::ReadError {
        address,
        size,
        null: None,
    } = reason
    else {
        panic!("{reason:?}");
    };
    assert_eq!(
        *size,
        NonZeroU64::new(8),
        "an unsigned long long is 8 bytes"
    );
    assert_eq!(text, format!("read error at {address:#x}"));
    let cfa = recording.cfa.expect("recorded cfa");
    assert!(
        *address < cfa && cfa - *address < 4096,
        "{address:#x} is a stack slot below the CFA {cfa:#x}"
    );

    // not_yet_initialized: the same function at its entry, before any of
    // its declarations ran.
    let module = image.main_module().expect("program");
    let (entry, function) = module
        .function_entry(module.to_file(RuntimeAddr(recording.pc)))
        .expect("the recorded pc is in a function");
    assert_eq!(function, "inspect_here");
    let at_entry = FrameContext {
        pc: module.to_runtime(entry),
        is_caller: false,
        ..ctx
    };
    let locals = read_locals(&at_entry, &Limits::default(), &Redaction::default_list())
        .expect("read_locals");
    let (reason, text) = reason_of(&locals, "small_c");
    let Unavailable::NotYetInitialized(NotYetInitialized::BeforeDeclaration { declared, frame }) =
        reason
    else {
        panic!("{reason:?}");
    };
    assert!(
        frame < declared,
        "line {frame} comes before line {declared}"
    );
    eprintln!("{text}");
    assert_eq!(
        text,
        format!("not yet initialized: declared at line {declared}, the frame is at line {frame}")
    );
    // An argument is set before the function's first line: never marked.
    assert!(
        locals
            .iter()
            .filter(|v| ["count", "label", "where"].contains(&v.name.as_str()))
            .all(|v| !matches!(v.unavailable, Some(Unavailable::NotYetInitialized(_)))),
        "{locals:?}"
    );

    // optimized_out: the -O2 frame, where the compiler kept no `scaled`.
    let (recording, image, memory, regs) = load("c_optimized_O2");
    let ctx = frame_context(&recording, &image, &memory, &regs);
    let locals =
        read_locals(&ctx, &Limits::default(), &Redaction::default_list()).expect("read_locals");
    let (reason, text) = reason_of(&locals, "scaled");
    assert_eq!(reason.kind(), "optimized_out", "{reason:?}");
    assert_eq!(text, "optimized out");
    // ... and a value in a callee-saved register the unwinder did not
    // recover: said with the register's name.
    let held = locals
        .iter()
        .find(|v| v.name == "product")
        .expect("product");
    assert_eq!(held.value, "42", "product is in rbx at this pc: {held:?}");
    let mut partial = regs.clone();
    partial.set(3, None); // rbx
    let ctx = frame_context(&recording, &image, &memory, &partial);
    let locals =
        read_locals(&ctx, &Limits::default(), &Redaction::default_list()).expect("read_locals");
    let (reason, text) = reason_of(&locals, "product");
    assert_eq!(
        reason,
        &Unavailable::OptimizedOut(OptimizedOut::Register { register: 3 })
    );
    assert!(
        text.starts_with("optimized out: register rbx is not known in this frame"),
        "{text}"
    );

    // unreadable_debug_info: the -O2 program with its location lists
    // overwritten, read the same way.
    let broken = common::fixture_dir().join("c_optimized_O2_broken_loclists");
    let mut bytes =
        std::fs::read(recording_dir("c_optimized_O2").join("program")).expect("read program");
    let range = {
        use object::{Object, ObjectSection};
        let file = object::File::parse(&*bytes).expect("parse program");
        let section = file
            .section_by_name(".debug_loclists")
            .expect("gcc 12 writes DWARF 5 location lists at -O2");
        let (start, len) = section.file_range().expect("in the file");
        start as usize..(start + len) as usize
    };
    // Past the section header (12 bytes), every entry kind is 0xff: none.
    bytes[range.start + 12..range.end].fill(0xff);
    std::fs::write(&broken, &bytes).expect("write the broken program");
    let module = Module::open_file(&broken, recording.bias).expect("open the broken program");
    let image = ProcessImage::from_modules(0, vec![Arc::new(module)], Some(0));
    let ctx = frame_context(&recording, &image, &memory, &regs);
    let locals =
        read_locals(&ctx, &Limits::default(), &Redaction::default_list()).expect("read_locals");
    let unreadable: Vec<(&Unavailable, String)> = locals
        .iter()
        .filter_map(|v| v.unavailable.as_ref().map(|r| (r, r.to_string())))
        .filter(|(r, _)| r.kind() == "unreadable_debug_info")
        .collect();
    assert!(!unreadable.is_empty(), "{locals:?}");
    for (reason, text) in unreadable {
        eprintln!("{text}");
        assert!(
            matches!(
                reason,
                Unavailable::UnreadableDebugInfo {
                    part: DebugInfoPart::LocationList,
                    error: Some(_)
                }
            ),
            "{reason:?}"
        );
        assert!(text.starts_with("unreadable location list: "), "{text}");
    }
}

/// Reads through to the live process and keeps a copy of every byte read.
struct Recorder<'a> {
    inner: &'a dyn MemorySource,
    read: std::cell::RefCell<Vec<(u64, Vec<u8>)>>,
}

impl MemorySource for Recorder<'_> {
    fn read_memory(&self, addr: u64, buf: &mut [u8]) -> Result<(), MemoryError> {
        self.inner.read_memory(addr, buf)?;
        self.read.borrow_mut().push((addr, buf.to_vec()));
        Ok(())
    }
}

fn save(name: &str, exe: &Path, recording: &Recording) {
    let dir = recording_dir(name);
    std::fs::create_dir_all(&dir).expect("create recording dir");
    std::fs::copy(exe, dir.join("program")).expect("copy program");
    let text = serde_json::to_string_pretty(recording).expect("json");
    std::fs::write(dir.join("frame.json"), text + "\n").expect("write frame.json");
}

fn registers_of(regs: &Registers) -> Vec<Option<u64>> {
    (0..REGISTERS).map(|k| regs.get(k)).collect()
}

/// Makes the recordings again from live fixtures (not a check: run it by
/// hand when a fixture or the expected output changes, and review the diff).
#[test]
#[ignore = "writes tests/recordings; run by hand with --ignored"]
fn record_the_recordings() {
    // Values: inspect_here() of the C values fixture.
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
        read: Default::default(),
    };
    let ctx = FrameContext {
        types: liveprobe::debuginfo::types::TypeTables::shared(),
        image: &stopped.image,
        pc: frame.pc,
        regs: &frame.regs,
        cfa: frame.cfa,
        is_caller: frame.is_caller,
        inline_depth: frame.inline_depth,
        memory: &recorder,
    };
    let locals =
        read_locals(&ctx, &Limits::default(), &Redaction::default_list()).expect("read_locals");
    let main = stopped.image.main_module().expect("main module");
    let recording = Recording {
        bias: main.bias(),
        pc: frame.pc.0,
        cfa: frame.cfa,
        is_caller: frame.is_caller,
        inline_depth: frame.inline_depth,
        registers: registers_of(&frame.regs),
        fs_base: frame.regs.fs_base(),
        memory: recorder
            .read
            .borrow()
            .iter()
            .map(|(a, b)| (*a, to_hex(b)))
            .collect(),
        locals: Some(serde_json::to_value(&locals).expect("json")),
        frames: None,
    };
    save("c_values_O0", &exe, &recording);
    stopped.detach();
    fixture.finish();

    // Unwind: from work() of the debuginfo C fixture, blocked in read(2).
    let exe = common::build_fixture("debuginfo/c_basic.c", "recorded_c_basic", &["-O0"]);
    let mut fixture = common::Launch::new(&exe).ready_without_pid().start();
    let stopped = Stopped::new(fixture.pid);
    let frame = stopped.frame("work");
    let main = stopped.image.main_module().expect("main module");
    // The program alone, as offline: only its frames.
    let program_only = ProcessImage::from_modules(
        0,
        vec![Arc::new(
            Module::open_file(&exe, main.bias()).expect("open program"),
        )],
        Some(0),
    );
    let recorder = Recorder {
        inner: &stopped.memory,
        read: Default::default(),
    };
    let frames = program_frames(&program_only, &frame.regs, frame.is_caller, &recorder);
    let recording = Recording {
        bias: main.bias(),
        pc: frame.pc.0,
        cfa: frame.cfa,
        is_caller: frame.is_caller,
        inline_depth: frame.inline_depth,
        registers: registers_of(&frame.regs),
        fs_base: frame.regs.fs_base(),
        memory: recorder
            .read
            .borrow()
            .iter()
            .map(|(a, b)| (*a, to_hex(b)))
            .collect(),
        locals: None,
        frames: Some(frames),
    };
    save("c_basic", &exe, &recording);
    stopped.detach();
    fixture.send("x");
}

/// A values recording of `frame`: its registers, `read_locals` of it, and
/// every byte that reading touched.
fn values_recording(stopped: &Stopped, frame: &support::Frame) -> Recording {
    let recorder = Recorder {
        inner: &stopped.memory,
        read: Default::default(),
    };
    let ctx = FrameContext {
        types: liveprobe::debuginfo::types::TypeTables::shared(),
        image: &stopped.image,
        pc: frame.pc,
        regs: &frame.regs,
        cfa: frame.cfa,
        is_caller: frame.is_caller,
        inline_depth: frame.inline_depth,
        memory: &recorder,
    };
    let locals =
        read_locals(&ctx, &Limits::default(), &Redaction::default_list()).expect("read_locals");
    let main = stopped.image.main_module().expect("main module");
    Recording {
        bias: main.bias(),
        pc: frame.pc.0,
        cfa: frame.cfa,
        is_caller: frame.is_caller,
        inline_depth: frame.inline_depth,
        registers: registers_of(&frame.regs),
        fs_base: frame.regs.fs_base(),
        memory: recorder
            .read
            .borrow()
            .iter()
            .map(|(a, b)| (*a, to_hex(b)))
            .collect(),
        locals: Some(serde_json::to_value(&locals).expect("json")),
        frames: None,
    }
}

/// Makes `c_optimized_O2` again: compute() of the -O2 values fixture, a
/// caller frame whose arguments are entry values and whose `scaled` the
/// compiler dropped (run by hand, as `record_the_recordings`).
#[test]
#[ignore = "writes tests/recordings; run by hand with --ignored"]
fn record_the_recordings_optimized() {
    let exe = support::build("c_optimized.c", "c_optimized_O2", &["-O2"]);
    let mut fixture = Fixture::start(&exe);
    let stopped = Stopped::new(fixture.pid);
    let recording = values_recording(&stopped, stopped.frame("compute"));
    save("c_optimized_O2", &exe, &recording);
    stopped.detach();
    fixture.finish();
}
