//! Languages liveprobe does not read yet, found in the executable itself so
//! an agent is told at attach instead of meeting wrong answers later.

use std::path::Path;

use object::{Object, ObjectSection, ObjectSymbol};

/// Sections only the Go toolchain writes.
const GO_SECTIONS: &[&str] = &[".go.buildinfo", ".gopclntab", ".note.go.buildid"];

/// True when the ELF file at `path` was built by Go: a Go section, or the
/// `runtime.main` symbol. False when the file cannot be read (the attach
/// goes on; nothing is claimed).
pub(super) fn is_go_binary(path: &Path) -> bool {
    let Ok(file) = std::fs::File::open(path) else {
        return false;
    };
    // SAFETY: a read-only map dropped before returning, as the debuginfo
    // room maps the same files.
    let Ok(map) = (unsafe { memmap2::Mmap::map(&file) }) else {
        return false;
    };
    let Ok(elf) = object::File::parse(&*map) else {
        return false;
    };
    elf.sections()
        .any(|s| s.name().is_ok_and(|n| GO_SECTIONS.contains(&n)))
        || elf
            .symbols()
            .any(|s| s.name().is_ok_and(|n| n == "runtime.main"))
}

/// The warning attach gives for a Go program.
pub(super) const GO_WARNING: &str = "this is a Go program: liveprobe does not support Go yet \
     (goroutine stacks, Go's calling convention and runtime types are not read), so stacks, \
     locals and probes may be wrong or empty; C, C++ and Rust are supported";
