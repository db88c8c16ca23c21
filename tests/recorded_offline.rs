//! The value and debuginfo rooms offline, on committed recordings: a small
//! fixture's program file (with its DWARF), the registers of one frame and
//! the target memory that frame's reading touched, taken from a live,
//! ptrace-stopped process (as probe-rs keeps recorded targets). These run
//! without starting or tracing anything, beside the live tests that check
//! the same fixtures against known values and gdb.
//!
//! `tests/recordings/<name>/` holds `program` and `frame.json`. To make them
//! again (after a fixture or a deliberate change of output):
//! `cargo test --test recorded_offline -- --ignored record_the_recordings`.

#[path = "fixtures/values/support.rs"]
mod support;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use liveprobe::debuginfo::{
    MemoryError, MemorySource, Module, ProcessImage, RecordedMemory, Registers, RuntimeAddr,
};
use liveprobe::eval::{FrameContext, read_locals};
use liveprobe::value::{Limits, Redaction};
use serde::{Deserialize, Serialize};
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
