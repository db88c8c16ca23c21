"""Building what the benchmarks run, and facts about the binaries they run on.

Owns: building `target/release/liveprobe` (and the private copy of it a run uses), the big Rust target
(`tools/bench/bigtarget`, into `target/bench-bigtarget`) and C fixtures (into
`target/bench-fixtures`); reading an ELF file's section table to size its DWARF
and count its compilation units. Never: writes outside the main crate's `target/`
directory, or runs the binaries it builds.
"""

from __future__ import annotations

import os
import shutil
import struct
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
"""The liveprobe crate (tools/bench/ is two levels below it)."""
TARGET_DIR = REPO / "target"
LIVEPROBE = TARGET_DIR / "release" / "liveprobe"
BIGTARGET_MANIFEST = REPO / "tools" / "bench" / "bigtarget" / "Cargo.toml"
BIGTARGET_TARGET_DIR = TARGET_DIR / "bench-bigtarget"
BIGTARGET = BIGTARGET_TARGET_DIR / "debug" / "bigtarget"
FIXTURE_DIR = TARGET_DIR / "bench-fixtures"
BENCH_BIN_DIR = TARGET_DIR / "bench-bin"

SHF_COMPRESSED = 0x800


class BuildError(RuntimeError):
    """A build step failed; the message says which and how to see why."""


def log(message: str) -> None:
    """Progress for the person running the driver (stderr, so stdout stays the report)."""
    print(message, file=sys.stderr, flush=True)


def _run_build(command: list[str], what: str, cwd: Path = REPO) -> None:
    log(f"building {what}: {' '.join(command)}")
    completed = subprocess.run(command, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    if completed.returncode != 0:
        tail = completed.stdout.decode(errors="replace")[-4000:]
        raise BuildError(f"building {what} failed (exit {completed.returncode}):\n{tail}")


def build_liveprobe(build: bool = True) -> Path:
    """`cargo build --release` of the liveprobe binary (unless `build` is False), then
    a private copy of it for the run, so a rebuild in the shared target directory
    during the benchmark cannot swap the binary under it. Returns the copy's path."""
    if build:
        _run_build(["cargo", "build", "--release", "--bin", "liveprobe"], "liveprobe (release)")
    if not LIVEPROBE.exists():
        raise BuildError(f"{LIVEPROBE} does not exist; build it (run the driver without --no-build)")
    BENCH_BIN_DIR.mkdir(parents=True, exist_ok=True)
    copy = BENCH_BIN_DIR / "liveprobe"
    shutil.copy2(LIVEPROBE, copy)
    return copy


def build_bigtarget() -> Path:
    """The big debug-build Rust target; offline first (every crate is in the local
    registry cache), online if that fails. Returns the binary's path."""
    base = ["cargo", "build", "--manifest-path", str(BIGTARGET_MANIFEST), "--target-dir", str(BIGTARGET_TARGET_DIR)]
    try:
        _run_build(base + ["--offline"], "the big target (debug, offline)")
    except BuildError as offline_error:
        log(f"offline build failed, trying online:\n{offline_error}")
        _run_build(base, "the big target (debug)")
    if not BIGTARGET.exists():
        raise BuildError(f"cargo succeeded but {BIGTARGET} does not exist")
    return BIGTARGET


def build_c_fixture(source: Path, flags: list[str] | None = None) -> Path:
    """Compiles one C source with gcc (`-g -O0` unless `flags` says otherwise)."""
    FIXTURE_DIR.mkdir(parents=True, exist_ok=True)
    output = FIXTURE_DIR / source.stem
    compiler = shutil.which("gcc") or "cc"
    _run_build([compiler, *(flags or ["-g", "-O0"]), "-o", str(output), str(source)], source.name)
    return output


@dataclass
class DwarfFacts:
    """How much DWARF a binary carries."""

    debug_bytes: int
    """Total size of the `.debug_*` sections as stored in the file."""
    section_bytes: dict[str, int]
    compile_units: int
    """Units in `.debug_info` whose type is DW_UT_compile (all units before DWARF 5)."""
    other_units: int
    """Type, partial and skeleton units in `.debug_info`."""
    dwarf_versions: list[int]
    compressed: bool


def dwarf_facts(path: Path) -> DwarfFacts:
    """Reads the ELF section table and walks the `.debug_info` unit headers.

    Only headers are read (small preads), so this takes well under a second even for
    hundreds of MB and leaves the driver's own RSS small. (That matters: a child's
    ru_maxrss starts at the parent's peak when it is spawned with vfork+exec, as
    subprocess does, so a driver that had read or mapped this file whole would
    inflate every tool's peak RSS to the file's size.)
    """
    with open(path, "rb") as file:
        fd = file.fileno()

        def read(offset: int, size: int) -> bytes:
            return os.pread(fd, size, offset)

        ident = read(0, 64)
        if ident[:4] != b"\x7fELF" or ident[4] != 2 or ident[5] != 1:
            raise ValueError(f"{path} is not a little-endian 64-bit ELF file")
        (section_offset,) = struct.unpack_from("<Q", ident, 0x28)
        entry_size, count, names_index = struct.unpack_from("<HHH", ident, 0x3A)
        table = read(section_offset, entry_size * count)
        headers = [struct.unpack_from("<IIQQQQIIQQ", table, i * entry_size) for i in range(count)]
        names = read(headers[names_index][4], headers[names_index][5])
        sections: dict[str, tuple[int, int, int]] = {}
        for name_at, _type, flags, _addr, offset, size, *_ in headers:
            name = names[name_at : names.find(b"\0", name_at)].decode(errors="replace")
            sections[name] = (offset, size, flags)
        debug = {name: size for name, (_, size, _) in sections.items() if name.startswith(".debug_")}
        compressed = any(
            flags & SHF_COMPRESSED for name, (_, _, flags) in sections.items() if name.startswith(".debug_")
        )
        compile_units = other_units = 0
        versions: set[int] = set()
        if ".debug_info" in sections and not compressed:
            offset, size, _ = sections[".debug_info"]
            position, end = offset, offset + size
            while position + 11 <= end:
                header_bytes = read(position, 16)
                (length,) = struct.unpack_from("<I", header_bytes, 0)
                header = 4
                if length == 0xFFFFFFFF:
                    (length,) = struct.unpack_from("<Q", header_bytes, 4)
                    header = 12
                (version,) = struct.unpack_from("<H", header_bytes, header)
                versions.add(version)
                unit_type = header_bytes[header + 2] if version >= 5 else 0x01
                if unit_type == 0x01:
                    compile_units += 1
                else:
                    other_units += 1
                position += header + length
    return DwarfFacts(
        debug_bytes=sum(debug.values()),
        section_bytes=debug,
        compile_units=compile_units,
        other_units=other_units,
        dwarf_versions=sorted(versions),
        compressed=compressed,
    )


def tool_version(command: list[str]) -> str:
    """The first line a tool prints for its version."""
    try:
        completed = subprocess.run(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return "unknown"
    lines = completed.stdout.decode(errors="replace").splitlines()
    return lines[0].strip() if lines else "unknown"
