#!/usr/bin/env python3
"""Benchmark (issue 11): what a watch costs a busy target, against gdb's hardware `watch`.

Run from anywhere:  python3 tools/bench/watch.py                   (~3-5 min + build)
                    python3 tools/bench/watch.py --reps 3 --sample-seconds 5
                    python3 tools/bench/watch.py --liveprobe PATH --no-doc

The target (tools/bench/watch_target.c, gcc -g -O0) runs N rounds whenever the driver
writes `run N` on its stdin; each round does a little work and then writes the global
`watched` (8 bytes, aligned, a new value every round). It answers with the elapsed time
of the rounds (measured inside the target) and a checksum of the values written. The
driver sets a watch while the target is idle, then starts the rounds, so set-up never
counts. In one run, against the same target process, it measures:

  baseline        no tool attached
  write (perf)    liveprobe `watch_expression {expression: watched, mode: write,
                  engine: auto}`: a perf_event_open hardware breakpoint whose BPF program
                  copies the writer's registers, stack window and the new value; the
                  writer is not stopped (`list_probes` must say `perf_breakpoint`)
  write (ptrace)  the same with `engine: ptrace` (debug registers set through ptrace on
                  every thread; each write stops the writer only while the tracer thread
                  copies its registers, stack window and the new value; `list_probes`
                  must say `ptrace`). An older liveprobe without that engine answers
                  "not in this version": the row is skipped and the report says why
  trap alone      a perf_event_open hardware breakpoint on `watched` in counting mode,
                  opened by this driver with no program attached: what the CPU's debug
                  trap and perf's breakpoint handler cost by themselves on this machine,
                  the floor under any hardware write watch (its count must be N)
  ptrace floor    tools/bench/ptrace_watch_floor.c (gcc -O2), a minimal C tracer: DR0 on
                  `watched` (write, 8 bytes) set through PTRACE_POKEUSER on every thread,
                  and per write only waitpid, PEEKUSER+POKEUSER of DR6, PTRACE_GETREGS,
                  one process_vm_readv (the value and 1 KiB of stack), PTRACE_CONT; an
                  execute breakpoint (DR1) on `phase_done` ends it (clears DR7, detaches).
                  The floor under any ptrace write watch on this machine (its count must
                  be N)
  gdb watch       `gdb -nx -batch -p PID`: `watch watched` (a hardware watchpoint) with
                  `commands: silent, continue`; `break phase_done`, `continue`, then
                  `info watchpoints` (its hit count) and `detach`
  sampling        liveprobe `watch_expression {mode: sample, interval_ms: 1}` on
                  `watched` during a run of about --sample-seconds, against unprobed runs
                  of the same length; the figure is the change of the target's own time
                  per round

Per-write overhead = (time of the N rounds with the watch − N × baseline time per round)
/ N: every round writes once and every write traps, whatever the tool records (each
liveprobe run also checks that its watch saw N writes, with `lost` and `state`). gdb is
much slower per write, so it runs fewer rounds (--gdb-writes); per-write figures are
what is compared. Goals: ≤ 0.02× gdb's per-write overhead on the perf/BPF engine, ≤ 0.1×
on the ptrace engine; sampling every 1 ms changes the loop time by < 1%.

Each repetition runs a baseline, every write variant (rotating their order) and a
baseline (--variants picks some of them: `write_perf,write_ptrace,trap_alone,ptrace_floor,
gdb_watch,sample`; a quick ptrace-only comparison: `--variants write_ptrace,ptrace_floor
--reps 3 --writes 20000 --no-doc`); the sampling repetitions alternate (rotating which goes first) an unprobed run
and a sampled run. Figures are median (min–max) over the repetitions. It prints a
markdown report and writes it into docs/benchmarks.md (section `watch`), unless --no-doc.
"""

from __future__ import annotations

import argparse
import ctypes
import json
import math
import os
import shutil
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from line_process import LineProcess, LineProcessError  # noqa: E402
from mcp_stdio import McpError, McpStdioSession  # noqa: E402
from report import (  # noqa: E402
    Summary,
    load_average,
    machine_description,
    markdown_table,
    render_ratio,
    render_summary,
    today,
    verdict,
    write_doc_section,
)
from targets import BENCH_BIN_DIR, BuildError, LIVEPROBE, REPO, TARGET_DIR, build_c_fixture, log, tool_version  # noqa: E402

FIXTURE_SOURCE = Path(__file__).resolve().parent / "watch_target.c"
FLOOR_SOURCE = Path(__file__).resolve().parent / "ptrace_watch_floor.c"
WATCHED = "watched"
DOC = REPO / "docs" / "benchmarks.md"
LOG_DIR = TARGET_DIR / "bench-logs"
READY_MARK = "@@liveprobe-bench-ready@@"
# The longest a write watch may stay armed: a run of --writes rounds must end before it.
WATCH_SECONDS = 3600

GOAL_PERF_VS_GDB = 0.02
GOAL_PTRACE_VS_GDB = 0.1
GOAL_SAMPLING_CHANGE = 0.01

WRITE_VARIANTS = ["write_perf", "write_ptrace", "trap_alone", "ptrace_floor", "gdb_watch"]
LABELS = {
    "baseline": "no watch (baseline)",
    "write_perf": "liveprobe write watch, engine auto (perf_breakpoint)",
    "write_ptrace": "liveprobe write watch, engine ptrace",
    "trap_alone": "the trap alone: perf hardware breakpoint, counting, no program (not a tool)",
    "ptrace_floor": "the ptrace floor: minimal C tracer (not a tool)",
    "gdb_watch": "gdb hardware `watch`, `commands silent; continue`",
    "sample_baseline": "no watch (baseline)",
    "sample": "liveprobe sampled watch, every 1 ms",
}


class BenchError(RuntimeError):
    """The benchmark cannot go on; the message says why and what to do."""


class EngineRefused(RuntimeError):
    """liveprobe refused the engine asked for (it does not have it); the message is its answer."""


@dataclass
class Phase:
    """One timed run of rounds with one variant in place."""

    variant: str
    rep: int
    rounds: int
    elapsed_ns: int
    checksum: str
    checksum_ok: bool
    hits: int | None = None
    """Writes (or samples) the tool reported: liveprobe's `hits`, gdb's watchpoint hit count."""
    lost: int | None = None
    state: str | None = None
    reason: str | None = None
    engine: str | None = None
    baseline_ns_per_round: float = 0.0
    overhead_us_per_write: float | None = None
    loop_change: float | None = None
    """Sampling: time per round over the unprobed runs' time per round, minus 1."""


@dataclass
class Context:
    target: LineProcess
    liveprobe: Path
    liveprobe_args: list[str]
    writes: int
    gdb_writes: int
    baseline_writes: int
    expected: dict[int, str]
    """The checksum of `run N` unprobed, by N."""
    liveprobe_source: str = ""
    """Where the liveprobe under test came from, for the report."""
    ptrace_note: str | None = None
    """Why the ptrace write rows are missing, once liveprobe refused that engine."""
    watched_address: int = 0
    """Where `watched` is in the target (for the trap-alone and ptrace floor runs)."""
    phase_done_address: int = 0
    """Where `phase_done` is in the target (the ptrace floor's end)."""
    floor_binary: Path | None = None
    """The built ptrace floor tracer."""
    variants: frozenset[str] = frozenset()
    """The write variants to run (--variants)."""


def target_run(ctx: Context, rounds: int, timeout_s: float = 3600) -> tuple[int, str]:
    """`run N` on the target; returns (elapsed ns, checksum)."""
    ctx.target.send(f"run {rounds}\n")
    try:
        line = ctx.target.read_line(timeout_s)
    except LineProcessError as e:
        raise BenchError(f"the target did not finish `run {rounds}`: {e}") from e
    parts = line.split()
    if len(parts) != 4 or parts[0] != "done" or int(parts[3]) != rounds:
        raise BenchError(f"the target answered `run {rounds}` with {line!r}")
    return int(parts[1]), parts[2]


def timed_phase(ctx: Context, variant: str, rep: int, rounds: int) -> Phase:
    elapsed, checksum = target_run(ctx, rounds)
    expected = ctx.expected.get(rounds)
    return Phase(variant, rep, rounds, elapsed, checksum, expected is None or expected == checksum)


def expect_checksum(ctx: Context, rounds: int) -> None:
    if rounds not in ctx.expected:
        ctx.expected[rounds] = target_run(ctx, rounds)[1]


# --- liveprobe ------------------------------------------------------------------------


def build_private_liveprobe(build: bool, given: Path | None) -> Path:
    """The liveprobe under test: `given`, or `cargo build --release` (unless `build` is
    False) and a copy only this driver uses, so a rebuild or another driver's copy
    cannot swap the binary under it."""
    source = given
    if source is None:
        if build:
            command = ["cargo", "build", "--release", "--bin", "liveprobe"]
            log(f"building liveprobe (release): {' '.join(command)}")
            completed = subprocess.run(command, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
            if completed.returncode != 0:
                tail = completed.stdout.decode(errors="replace")[-4000:]
                raise BuildError(f"building liveprobe (release) failed (exit {completed.returncode}):\n{tail}")
        source = LIVEPROBE
    if not source.exists():
        raise BuildError(f"{source} does not exist; build it, or give one with --liveprobe PATH")
    BENCH_BIN_DIR.mkdir(parents=True, exist_ok=True)
    copy = BENCH_BIN_DIR / "liveprobe-watch"
    temporary = copy.with_suffix(".tmp")
    shutil.copy2(source, temporary)
    os.replace(temporary, copy)
    return copy


def open_session(ctx: Context) -> McpStdioSession:
    log_path = LOG_DIR / "watch-liveprobe.stderr"
    client = McpStdioSession([str(ctx.liveprobe), *ctx.liveprobe_args], stderr_path=str(log_path))
    try:
        client.initialize()
        attached = client.call_tool("attach", {"pid": ctx.target.pid})
        if attached.is_error:
            raise BenchError(f"liveprobe could not attach: {attached.text}")
    except McpError as e:
        client.close(timeout_s=5)
        raise BenchError(f"liveprobe failed: {e}; its log is {log_path}") from e
    except BaseException:
        client.close(timeout_s=5)
        raise
    return client


def close_session(ctx: Context, client: McpStdioSession) -> None:
    try:
        detached = client.call_tool("detach", {"pid": ctx.target.pid})
        if detached.is_error:
            raise BenchError(f"liveprobe detach failed: {detached.text}")
    finally:
        client.close()


def probe_row(client: McpStdioSession, pid: int, probe_id: int) -> dict:
    answer = client.call_tool("list_probes", {"pid": pid})
    if answer.is_error:
        raise BenchError(f"liveprobe list_probes failed: {answer.text}")
    for row in (answer.structured or {}).get("probes", []):
        if row.get("probe_id") == probe_id:
            return row
    raise BenchError(f"probe {probe_id} is not in list_probes: {answer.text[:400]}")


def settled_row(client: McpStdioSession, pid: int, probe_id: int, wanted: int) -> dict:
    """The probe's row once its hits reach `wanted` or stop moving for a second: the
    watcher drains the kernel ring on its own clock, after the writes."""
    row = probe_row(client, pid, probe_id)
    still_since = time.perf_counter()
    deadline = still_since + 30
    while int(row.get("hits", 0)) + int(row.get("lost", 0)) < wanted and time.perf_counter() < deadline:
        time.sleep(0.1)
        newer = probe_row(client, pid, probe_id)
        if newer.get("hits") != row.get("hits"):
            still_since = time.perf_counter()
        elif time.perf_counter() - still_since > 1.0:
            return newer
        row = newer
    return row


def watch(client: McpStdioSession, ctx: Context, arguments: dict) -> tuple[int, str]:
    """Sets a watch on the idle target; returns (probe id, engine). Raises EngineRefused
    when liveprobe refuses the engine asked for."""
    created = client.call_tool("watch_expression", {"pid": ctx.target.pid, "expression": WATCHED, **arguments})
    if created.is_error:
        # Only a liveprobe without the ptrace engine skips its rows; a failure of
        # that engine (it exists since issue 11's fallback) stops the benchmark.
        if arguments.get("engine") == "ptrace" and "not in this version" in created.text:
            raise EngineRefused(created.text)
        raise BenchError(f"liveprobe watch_expression {arguments} failed: {created.text}")
    data = created.structured or {}
    return int(data.get("probe_id", -1)), str(data.get("engine"))


def fill_from_row(phase: Phase, row: dict) -> None:
    phase.hits = int(row.get("hits", 0))
    phase.lost = int(row.get("lost", 0))
    phase.state = row.get("state")
    phase.reason = row.get("reason")
    phase.engine = row.get("engine")


def write_watch_phase(ctx: Context, client: McpStdioSession, variant: str, engine: str, rep: int) -> Phase | None:
    pid = ctx.target.pid
    n = ctx.writes
    arguments = {
        "mode": "write",
        "engine": engine,
        "max_events": n,
        "duration_s": WATCH_SECONDS,
        "ttl_s": WATCH_SECONDS,
    }
    try:
        probe_id, answered_engine = watch(client, ctx, arguments)
    except EngineRefused as e:
        ctx.ptrace_note = str(e).strip()
        log(f"  {variant}: skipped, liveprobe refused engine {engine}: {ctx.ptrace_note}")
        return None
    wanted = "perf_breakpoint" if engine == "auto" else engine
    if answered_engine != wanted:
        client.call_tool("remove_probe", {"probe_id": probe_id})
        raise BenchError(f"liveprobe ran the {variant} watch on {answered_engine}, not {wanted}")
    phase = timed_phase(ctx, variant, rep, n)
    row = settled_row(client, pid, probe_id, n)
    fill_from_row(phase, row)
    if rep == 0:
        results = client.call_tool("get_probe_results", {"probe_id": probe_id, "limit": 2})
        (LOG_DIR / f"watch-{variant}-result.json").write_text(json.dumps(results.structured, indent=2))
    removed = client.call_tool("remove_probe", {"probe_id": probe_id})
    if removed.is_error:
        raise BenchError(f"liveprobe remove_probe failed: {removed.text}")
    log(
        f"  {variant}: {phase.elapsed_ns / 1e9:.2f} s, {phase.hits}/{n} writes seen ({phase.lost} lost), "
        f"state {phase.state}, engine {phase.engine}"
    )
    return phase


def liveprobe_write_phases(ctx: Context, rep: int, with_ptrace: bool) -> list[Phase]:
    client = open_session(ctx)
    phases = []
    try:
        for variant, engine in (("write_perf", "auto"), ("write_ptrace", "ptrace")):
            if variant not in ctx.variants or (engine == "ptrace" and not with_ptrace):
                continue
            phase = write_watch_phase(ctx, client, variant, engine, rep)
            if phase is not None:
                phases.append(phase)
    except McpError as e:
        client.close(timeout_s=5)
        raise BenchError(f"liveprobe failed: {e}; its log is {LOG_DIR / 'watch-liveprobe.stderr'}") from e
    except BaseException:
        client.close(timeout_s=5)
        raise
    close_session(ctx, client)
    return phases


def sampled_phase(ctx: Context, rep: int, rounds: int, seconds: float) -> Phase:
    """One run of about `seconds` while liveprobe samples `watched` every 1 ms."""
    client = open_session(ctx)
    try:
        # The watch outlasts the run; it is removed as soon as the run ends.
        duration = math.ceil(seconds) + 5
        probe_id, engine = watch(
            client,
            ctx,
            {"mode": "sample", "interval_ms": 1, "duration_s": duration, "ttl_s": duration + 60, "max_events": 1_000_000},
        )
        phase = timed_phase(ctx, "sample", rep, rounds)
        row = probe_row(client, ctx.target.pid, probe_id)
        fill_from_row(phase, row)
        phase.engine = phase.engine or engine
        if rep == 0:
            results = client.call_tool("get_probe_results", {"probe_id": probe_id, "limit": 2})
            (LOG_DIR / "watch-sample-result.json").write_text(json.dumps(results.structured, indent=2))
        removed = client.call_tool("remove_probe", {"probe_id": probe_id})
        if removed.is_error:
            raise BenchError(f"liveprobe remove_probe failed: {removed.text}")
    except McpError as e:
        client.close(timeout_s=5)
        raise BenchError(f"liveprobe failed: {e}; its log is {LOG_DIR / 'watch-liveprobe.stderr'}") from e
    except BaseException:
        client.close(timeout_s=5)
        raise
    close_session(ctx, client)
    log(
        f"  sample: {phase.elapsed_ns / 1e9:.2f} s, {phase.hits} samples in {seconds:.1f} s "
        f"(state {phase.state}, engine {phase.engine})"
    )
    return phase


# --- gdb ------------------------------------------------------------------------------

GDB_WATCH_SCRIPT = f"""set pagination off
set confirm off
set can-use-hw-watchpoints 1
watch {WATCHED}
commands
silent
continue
end
break phase_done
echo {READY_MARK}\\n
continue
info watchpoints
detach
"""


def wait_for_text(path: Path, text: str, process: subprocess.Popen, timeout_s: float, what: str) -> None:
    deadline = time.perf_counter() + timeout_s
    while True:
        content = path.read_text(errors="replace") if path.exists() else ""
        if text in content:
            return
        if process.poll() is not None:
            raise BenchError(f"{what} exited (status {process.returncode}) before it was ready; see {path}")
        if time.perf_counter() > deadline:
            raise BenchError(f"{what} was not ready within {timeout_s:.0f} s; see {path}")
        time.sleep(0.02)


def stop_process(process: subprocess.Popen, timeout_s: float) -> int:
    try:
        return process.wait(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        process.kill()
        return process.wait()


def gdb_phase(ctx: Context, rep: int) -> Phase:
    script_path = LOG_DIR / "watch-gdb.gdb"
    script_path.write_text(GDB_WATCH_SCRIPT)
    output_path = LOG_DIR / "watch-gdb.out"
    with open(output_path, "w") as output:
        gdb = subprocess.Popen(
            ["gdb", "-nx", "-batch", "-p", str(ctx.target.pid), "-x", str(script_path)],
            stdin=subprocess.DEVNULL,
            stdout=output,
            stderr=subprocess.STDOUT,
        )
    try:
        wait_for_text(output_path, READY_MARK, gdb, 120, "gdb")
        phase = timed_phase(ctx, "gdb_watch", rep, ctx.gdb_writes)
    finally:
        status = stop_process(gdb, 120)
    text = output_path.read_text(errors="replace")
    if "Hardware watchpoint" not in text:
        raise BenchError(f"gdb did not set a hardware watchpoint (exit {status}); see {output_path}")
    if "detached]" not in text:
        raise BenchError(f"gdb did not detach (exit {status}); see {output_path}")
    # `info watchpoints`: "breakpoint already hit N times" under the watchpoint's row.
    for line in text.splitlines():
        words = line.split()
        if "already" in words and "hit" in words:
            at = words.index("hit")
            if at + 1 < len(words) and words[at + 1].isdigit():
                phase.hits = int(words[at + 1])
                break
    phase.state = "hardware watchpoint"
    log(f"  gdb_watch: {phase.elapsed_ns / 1e9:.2f} s, {phase.hits}/{ctx.gdb_writes} writes stopped at")
    return phase


# --- the trap alone -------------------------------------------------------------------

PERF_TYPE_BREAKPOINT = 5
HW_BREAKPOINT_W = 2
PERF_ATTR_SIZE = 112
PERF_FLAG_FD_CLOEXEC = 8
SYS_PERF_EVENT_OPEN = 298  # x86-64
ATTR_INHERIT = 1 << 1
ATTR_EXCLUDE_KERNEL = 1 << 5
ATTR_EXCLUDE_HV = 1 << 6


def symbol_address(binary: Path, pid: int, name: str) -> int:
    """The runtime address of the data symbol `name` of `binary` in process `pid`: its
    `nm` value, plus the load base when the binary is position-independent."""
    listed = subprocess.run(["nm", str(binary)], capture_output=True, text=True, check=False).stdout
    value = next((int(w[0], 16) for w in (line.split() for line in listed.splitlines()) if len(w) == 3 and w[2] == name), None)
    if value is None:
        raise BenchError(f"`nm {binary}` does not list {name}")
    with open(binary, "rb") as f:
        header = f.read(18)
    if header[16] != 3:  # ET_DYN: addresses are offsets from the load base
        return value
    real = os.path.realpath(binary)
    for line in Path(f"/proc/{pid}/maps").read_text().splitlines():
        fields = line.split()
        if len(fields) >= 6 and os.path.realpath(fields[5]) == real and int(fields[2], 16) == 0:
            return int(fields[0].split("-")[0], 16) + value
    raise BenchError(f"{binary} is not mapped in process {pid}")


def open_trap_counter(pid: int, address: int) -> list[int]:
    """A counting perf hardware breakpoint (writes of 8 bytes at `address`) on every
    thread of `pid`, with no program: returns the descriptors."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.syscall.restype = ctypes.c_long
    attr = (ctypes.c_uint64 * 16)()
    attr[0] = PERF_TYPE_BREAKPOINT | (PERF_ATTR_SIZE << 32)
    attr[2] = 0  # counting, no samples
    attr[5] = ATTR_INHERIT | ATTR_EXCLUDE_KERNEL | ATTR_EXCLUDE_HV
    attr[6] = HW_BREAKPOINT_W << 32
    attr[7] = address
    attr[8] = 8
    fds = []
    for tid in sorted(int(t) for t in os.listdir(f"/proc/{pid}/task")):
        fd = libc.syscall(
            SYS_PERF_EVENT_OPEN, ctypes.byref(attr), ctypes.c_int(tid), ctypes.c_int(-1), ctypes.c_int(-1),
            ctypes.c_ulong(PERF_FLAG_FD_CLOEXEC),
        )
        if fd < 0:
            errno = ctypes.get_errno()
            for opened in fds:
                os.close(opened)
            raise BenchError(f"perf_event_open of a hardware breakpoint on thread {tid}: {os.strerror(errno)}")
        fds.append(fd)
    return fds


def trap_alone_phase(ctx: Context, rep: int) -> Phase:
    fds = open_trap_counter(ctx.target.pid, ctx.watched_address)
    try:
        phase = timed_phase(ctx, "trap_alone", rep, ctx.writes)
        phase.hits = sum(int.from_bytes(os.read(fd, 8), "little") for fd in fds)
    finally:
        for fd in fds:
            os.close(fd)
    phase.state = "counted"
    log(f"  trap_alone: {phase.elapsed_ns / 1e9:.2f} s, {phase.hits}/{ctx.writes} writes counted")
    return phase


# --- the ptrace floor -----------------------------------------------------------------


def ptrace_floor_phase(ctx: Context, rep: int) -> Phase:
    """The minimal C tracer watching `watched` through the debug registers for one run."""
    if ctx.floor_binary is None:
        raise BenchError("the ptrace floor tracer was not built")
    log_path = LOG_DIR / "watch-ptrace-floor.stderr"
    tracer = LineProcess(
        [str(ctx.floor_binary), str(ctx.target.pid), hex(ctx.watched_address), hex(ctx.phase_done_address)],
        stderr_path=log_path,
    )
    try:
        try:
            line = tracer.read_line(30)
        except LineProcessError as e:
            raise BenchError(f"the ptrace floor tracer did not start: {e}; see {log_path}") from e
        if line.strip() != "ready":
            raise BenchError(f"the ptrace floor tracer said {line!r} instead of 'ready'; see {log_path}")
        phase = timed_phase(ctx, "ptrace_floor", rep, ctx.writes)
        try:
            line = tracer.read_line(60)
        except LineProcessError as e:
            raise BenchError(f"the ptrace floor tracer did not end at phase_done: {e}; see {log_path}") from e
        words = line.split()
        if len(words) != 2 or words[0] != "writes" or not words[1].isdigit():
            raise BenchError(f"the ptrace floor tracer ended with {line!r}; see {log_path}")
        phase.hits = int(words[1])
    finally:
        status = tracer.close(timeout_s=30)[0]
    if status != 0:
        raise BenchError(f"the ptrace floor tracer exited with status {status}; see {log_path}")
    phase.state = "counted"
    log(f"  ptrace_floor: {phase.elapsed_ns / 1e9:.2f} s, {phase.hits}/{ctx.writes} writes seen")
    return phase


# --- the runs -------------------------------------------------------------------------


def write_repetition(ctx: Context, rep: int, with_ptrace: bool) -> list[Phase]:
    groups = ["liveprobe", "trap_alone", "ptrace_floor", "gdb"]
    wanted = {
        "liveprobe": bool(ctx.variants & {"write_perf", "write_ptrace"}),
        "trap_alone": "trap_alone" in ctx.variants,
        "ptrace_floor": "ptrace_floor" in ctx.variants,
        "gdb": "gdb_watch" in ctx.variants,
    }
    groups = [g for g in groups if wanted[g]]
    shift = rep % max(len(groups), 1)
    groups = groups[shift:] + groups[:shift]
    phases = [timed_phase(ctx, "baseline", rep, ctx.baseline_writes)]
    for group in groups:
        log(f" write rep {rep + 1}: {group}")
        if group == "liveprobe":
            phases += liveprobe_write_phases(ctx, rep, with_ptrace and ctx.ptrace_note is None)
        elif group == "trap_alone":
            phases.append(trap_alone_phase(ctx, rep))
        elif group == "ptrace_floor":
            phases.append(ptrace_floor_phase(ctx, rep))
        else:
            phases.append(gdb_phase(ctx, rep))
        time.sleep(0.2)
    phases.append(timed_phase(ctx, "baseline", rep, ctx.baseline_writes))
    baselines = [p for p in phases if p.variant == "baseline"]
    per_round = sum(p.elapsed_ns for p in baselines) / sum(p.rounds for p in baselines)
    for phase in phases:
        phase.baseline_ns_per_round = per_round
        if phase.variant != "baseline":
            phase.overhead_us_per_write = (phase.elapsed_ns - per_round * phase.rounds) / phase.rounds / 1000
    return phases


def sample_repetition(ctx: Context, rep: int, rounds: int, seconds: float) -> list[Phase]:
    log(f" sampling rep {rep + 1}")
    order = ["sample_baseline", "sample"] if rep % 2 == 0 else ["sample", "sample_baseline"]
    phases = []
    for variant in order:
        if variant == "sample":
            phases.append(sampled_phase(ctx, rep, rounds, seconds))
        else:
            phases.append(timed_phase(ctx, "sample_baseline", rep, rounds))
            log(f"  sample_baseline: {phases[-1].elapsed_ns / 1e9:.2f} s")
    base = next(p for p in phases if p.variant == "sample_baseline")
    for phase in phases:
        phase.baseline_ns_per_round = base.elapsed_ns / base.rounds
        if phase.variant == "sample":
            phase.loop_change = phase.elapsed_ns / base.elapsed_ns - 1
    return phases


def calibrate_rounds(ctx: Context, seconds: float) -> int:
    """Rounds that take about `seconds` unprobed (the median of three short runs)."""
    probe_rounds = 2_000_000
    times = sorted(target_run(ctx, probe_rounds)[0] for _ in range(3))
    per_round_ns = max(times[1] / probe_rounds, 0.1)
    return max(1, int(seconds * 1e9 / per_round_ns))


# --- the report -----------------------------------------------------------------------


def source_revision() -> str:
    try:
        head = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True, text=True, timeout=30
        ).stdout.strip()
    except (OSError, subprocess.TimeoutExpired):
        return "an unknown commit"
    return f"commit {head}" if head else "an unknown commit"


def summary_of(phases: list[Phase], variant: str, pick) -> Summary | None:
    values = [pick(p) for p in phases if p.variant == variant]
    return Summary.of([v for v in values if v is not None])


def median_ratio(a: Summary | None, b: Summary | None) -> float | None:
    if a is None or b is None or b.median <= 0:
        return None
    return a.median / b.median


def compose_report(phases: list[Phase], ctx: Context, command: str, started: str, loads: list[float], args) -> str:
    def per_write(variant: str) -> Summary | None:
        return summary_of(phases, variant, lambda p: p.overhead_us_per_write)

    gdb = per_write("gdb_watch")
    goals = []
    for variant, engine, goal in (
        ("write_perf", "perf_breakpoint (BPF)", GOAL_PERF_VS_GDB),
        ("write_ptrace", "ptrace", GOAL_PTRACE_VS_GDB),
    ):
        value = median_ratio(per_write(variant), gdb)
        note = ""
        if value is not None:
            pass
        elif variant not in ctx.variants or "gdb_watch" not in ctx.variants:
            note = " (not run: --variants)"
        elif variant == "write_ptrace":
            note = f" (skipped: {ctx.ptrace_note})" if ctx.ptrace_note else " (skipped: --no-ptrace)"
        # A watch that stopped early (throttled, ended) trapped fewer writes: its
        # figure would flatter it, so the verdict says so instead.
        short = [p for p in phases if p.variant == variant and (p.hits or 0) + (p.lost or 0) < p.rounds]
        if short:
            note += (
                f" — **the watch saw fewer writes than were made in {len(short)} run(s)** "
                f"(state {', '.join(sorted({str(p.state) for p in short}))}): the figure is not a measurement "
                "of every write"
            )
        goals.append(
            [
                f"extra time per write, liveprobe {engine} / gdb hardware watch",
                render_ratio(value),
                f"≤ {goal}×: {verdict(None if value is None else value <= goal)}{note}",
            ]
        )
    floor = median_ratio(per_write("trap_alone"), gdb)
    if floor is not None:
        goals.append(
            [
                "the trap alone (perf hardware breakpoint, no program) / gdb hardware watch: the floor under any "
                "hardware write watch on this machine",
                render_ratio(floor),
                f"not a goal; the perf/BPF goal ≤ {GOAL_PERF_VS_GDB}× is "
                + ("below this floor" if floor > GOAL_PERF_VS_GDB else "above this floor"),
            ]
        )
    ptrace_floor = median_ratio(per_write("ptrace_floor"), gdb)
    if ptrace_floor is not None:
        goals.append(
            [
                "the ptrace floor (minimal C tracer: waitpid, DR6, GETREGS, one process_vm_readv, PTRACE_CONT) / "
                "gdb hardware watch: the floor under any ptrace write watch on this machine",
                render_ratio(ptrace_floor),
                f"not a goal; the ptrace goal ≤ {GOAL_PTRACE_VS_GDB}× is "
                + ("below this floor" if ptrace_floor > GOAL_PTRACE_VS_GDB else "above this floor"),
            ]
        )
    change = summary_of(phases, "sample", lambda p: None if p.loop_change is None else abs(p.loop_change))
    goals.append(
        [
            "sampling every 1 ms: change (absolute) of the target's time per round vs the unprobed run next to it",
            "—" if change is None else f"{change.median * 100:.2f}% ({change.minimum * 100:.2f}–{change.maximum * 100:.2f}%)",
            f"< {GOAL_SAMPLING_CHANGE * 100:.0f}%: {verdict(None if change is None else change.median < GOAL_SAMPLING_CHANGE)}",
        ]
    )
    header = ["variant", "rounds", "time, s", "ns per round", "writes seen (each rep)", "extra µs per write", "state", "checksum as unprobed"]
    rows = []
    for variant in ["baseline", *WRITE_VARIANTS, "sample_baseline", "sample"]:
        mine = [p for p in phases if p.variant == variant]
        if not mine:
            continue
        seconds = summary_of(phases, variant, lambda p: p.elapsed_ns / 1e9)
        per_round = summary_of(phases, variant, lambda p: p.elapsed_ns / p.rounds)
        seen = ", ".join(f"{p.hits}" + (f" (+{p.lost} lost)" if p.lost else "") for p in mine) if mine[0].hits is not None else "—"
        states = sorted({f"{p.state}" + (f" on {p.engine}" if p.engine else "") for p in mine if p.state})
        rows.append(
            [
                LABELS[variant] + (" [sampling runs]" if variant == "sample_baseline" else ""),
                f"{mine[0].rounds:,}",
                render_summary(seconds, 2),
                render_summary(per_round, 1),
                seen,
                render_summary(per_write(variant), 2) if variant in WRITE_VARIANTS else "—",
                ", ".join(states),
                "yes" if all(p.checksum_ok for p in mine) else "**no**",
            ]
        )
    reasons = sorted({p.reason for p in phases if p.reason and p.state not in ("removed", "armed")})
    reason_note = "".join(f"\n- A liveprobe watch ended: {r}" for r in reasons)
    if any(p.lost for p in phases if p.variant in WRITE_VARIANTS):
        reason_note += (
            "\n- `lost`: writes that trapped and ran liveprobe's BPF program but whose record found the"
            "\n  kernel ring full; they cost the writer as much as the others, so they count in the figure."
        )
    where = ""
    trap = per_write("trap_alone")
    perf_write = per_write("write_perf")
    if trap is not None and perf_write is not None:
        share = perf_write.median - trap.median
        share_text = (
            f"so liveprobe's own share (its BPF program copying the record, and its reader competing for "
            f"the CPUs) is {share:.2f} µs"
            if share >= 0
            else "below the trap alone: the difference is within this run's noise (the machine's load moves both)"
        )
        where = (
            "\nWhere a perf/BPF write's time goes (medians): the trap alone costs "
            f"{trap.median:.2f} µs per write, liveprobe's watch {perf_write.median:.2f} µs, {share_text}. The trap alone is the CPU's debug exception (#DB) and "
            "perf's breakpoint handler; on a virtual machine the hypervisor intercepts #DB, and that is where "
            "most of it goes (a profile of the writer shows almost no guest kernel time in the handler), so "
            "it grows with the host's load. A ratio to gdb below the trap alone's ratio is out of reach of "
            "any hardware write watch on such a machine.\n"
        )
    floor_write = per_write("ptrace_floor")
    ptrace_write = per_write("write_ptrace")
    if floor_write is not None:
        gdb_text = f" ({median_ratio(floor_write, gdb):.3f}× gdb's)" if gdb is not None else ""
        if ptrace_write is not None:
            share = ptrace_write.median - floor_write.median
            share_text = (
                f"liveprobe's ptrace watch {ptrace_write.median:.2f} µs, so liveprobe's own share (its tracer's "
                f"loop around the stop, and its reader and server competing for the CPUs) is {share:.2f} µs"
                if share >= 0
                else f"liveprobe's ptrace watch {ptrace_write.median:.2f} µs: below the floor, within this run's noise"
            )
        else:
            share_text = "liveprobe's ptrace watch was not run"
        goal_text = (
            f"the ≤ {GOAL_PTRACE_VS_GDB}× goal is below what any ptrace write watch costs on this machine: "
            "even a tracer that does nothing but the stop's own syscalls does not reach it"
            if gdb is not None and floor_write.median > GOAL_PTRACE_VS_GDB * gdb.median
            else f"the ≤ {GOAL_PTRACE_VS_GDB}× goal is above this floor: the rest is liveprobe's own"
            if gdb is not None
            else "gdb was not run, so no ratio"
        )
        where += (
            "\nWhere a ptrace write's time goes (medians): the ptrace floor, a minimal C tracer doing only what "
            f"every ptrace write watch must do per write, costs {floor_write.median:.2f} µs per write{gdb_text}; "
            f"{share_text}. The floor is the debug exception (the trap alone) and two task switches per write "
            "(the trap stops the writer and wakes the tracer, PTRACE_CONT wakes the writer) with six system "
            "calls between them; where the scheduler puts the tracer and the writer on "
            "different CPUs each wake-up is also an IPI with a VM exit on this nested VM, which more than doubles "
            "it (by hand on this machine: the floor tracer pinned to the writer's CPU, about 26 µs per write; "
            f"pinned to the other CPU, about 70 µs), so it moves with the host's load; {goal_text}.\n"
        )
    return f"""## Watch overhead per write vs gdb, and sampling's cost (issue 11)

Command: `{command}`
Run: {started}, {args.reps} repetitions of the write variants ({", ".join(v for v in WRITE_VARIANTS if v in ctx.variants) or "none"}; the tools
alternating which goes first), {0 if args.no_sample else args.sample_reps} of the sampling pair (alternating). liveprobe: {ctx.liveprobe_source}.
Machine: {machine_description()}. {tool_version(["gdb", "--version"])}.
Load average (1 min) during the run: {min(loads):.1f}–{max(loads):.1f} (the machine is shared).

{markdown_table(["goal", "measured (median)", "verdict"], goals)}
{where}
{markdown_table(header, rows)}

- Target: `tools/bench/watch_target.c` (gcc -g -O0); each round does a little work and writes
  the 8-byte global `{WATCHED}` once. Extra µs per write = (run time − rounds × the
  baseline's time per round, from the baselines before and after) / rounds: every write
  traps, whatever the tool records.
- liveprobe: `watch_expression {{expression: "{WATCHED}", mode: "write", engine, max_events:
  rounds}}` set on the idle target, then the run, then `list_probes` (hits, lost, state, engine)
  and `remove_probe`. Sampling: `watch_expression {{mode: "sample", interval_ms: 1}}` for the
  run (about {args.sample_seconds} s); "writes seen" is then the number of samples.
- The trap alone: a `perf_event_open` hardware breakpoint (`HW_BREAKPOINT_W`, 8 bytes,
  `inherit`, counting, no program) that this driver opens on the target's threads; its
  count is "writes seen". It is the debug trap and perf's breakpoint handler with nothing
  recorded: liveprobe's own share per write is its row minus this one.
- The ptrace floor: `tools/bench/ptrace_watch_floor.c` (gcc -O2), seizing the target's
  threads, DR0 = `{WATCHED}` (write, 8 bytes) through PTRACE_POKEUSER, and per write only
  waitpid, PEEKUSER + POKEUSER of DR6, PTRACE_GETREGS, one process_vm_readv (the new value
  and 1 KiB of stack), PTRACE_CONT; an execute breakpoint (DR1) on `phase_done` ends it
  (DR7 cleared, detached); its count is "writes seen". Not a tool (nothing recorded or
  symbolized): the least a ptrace write watch costs here; liveprobe's ptrace engine's own
  share is its row minus this one.
- gdb: `gdb -nx -batch -p PID -x target/bench-logs/watch-gdb.gdb`: `watch {WATCHED}` (hardware),
  `commands` `silent`, `continue`; `break phase_done` (after the timed rounds), `continue`,
  `info watchpoints` (its hit count is "writes seen") and `detach`.{reason_note}
- Raw figures: `target/bench-logs/watch-raw.json`.
"""


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--writes", type=int, default=200_000, help="rounds (writes) per liveprobe write run (default 200000, at most 1000000)")
    parser.add_argument("--gdb-writes", type=int, default=5_000, help="rounds (writes) per gdb run (default 5000)")
    parser.add_argument("--baseline-writes", type=int, default=5_000_000, help="rounds per baseline run (default 5000000)")
    parser.add_argument("--reps", type=int, default=5, help="repetitions of the write variants (default 5)")
    parser.add_argument("--sample-seconds", type=float, default=10.0, help="length of a sampling run, s (default 10)")
    parser.add_argument("--sample-reps", type=int, default=3, help="sampled/unprobed pairs (default 3)")
    parser.add_argument("--no-ptrace", action="store_true", help="do not try liveprobe's ptrace engine for write watches")
    parser.add_argument(
        "--variants",
        default=",".join([*WRITE_VARIANTS, "sample"]),
        help="comma-separated variants to run (default all): " + ", ".join([*WRITE_VARIANTS, "sample"]),
    )
    parser.add_argument("--no-sample", action="store_true", help="skip the sampling runs")
    parser.add_argument("--liveprobe", type=Path, help="run this liveprobe binary (no build)")
    parser.add_argument("--liveprobe-arg", action="append", default=[], help="extra argument for the liveprobe server (repeatable)")
    parser.add_argument("--no-build", action="store_true", help="use target/release/liveprobe as it is")
    parser.add_argument("--no-doc", action="store_true", help="print the report but do not write docs/benchmarks.md")
    args = parser.parse_args()
    command = "python3 tools/bench/watch.py" + "".join(f" {a}" for a in sys.argv[1:])
    if min(args.writes, args.gdb_writes, args.baseline_writes, args.reps, args.sample_reps) < 1 or args.sample_seconds <= 0:
        raise BenchError("every --*-writes option, --reps, --sample-reps and --sample-seconds must be at least 1 (positive)")
    if args.writes > 1_000_000:
        raise BenchError("--writes is at most 1000000 (liveprobe's max_events ceiling: the watch must see every write)")
    variants = {v.strip() for v in args.variants.split(",") if v.strip()}
    unknown = variants - {*WRITE_VARIANTS, "sample"}
    if unknown or not variants:
        raise BenchError(
            f"--variants: unknown {', '.join(sorted(unknown)) or '(none given)'}; pick from "
            + ", ".join([*WRITE_VARIANTS, "sample"])
        )
    if "sample" not in variants:
        args.no_sample = True
    if "gdb_watch" in variants and shutil.which("gdb") is None:
        raise BenchError("gdb is not installed, and this benchmark compares with gdb's hardware watch: apt-get install -y gdb")

    LOG_DIR.mkdir(parents=True, exist_ok=True)
    liveprobe = build_private_liveprobe(build=not args.no_build, given=args.liveprobe)
    binary = build_c_fixture(FIXTURE_SOURCE)
    floor_binary = build_c_fixture(FLOOR_SOURCE, ["-O2", "-Wall"]) if "ptrace_floor" in variants else None
    started = today()
    target = LineProcess([str(binary)], stderr_path=LOG_DIR / "watch-target.stderr")
    ctx = Context(
        target=target,
        liveprobe=liveprobe,
        liveprobe_args=args.liveprobe_arg,
        writes=args.writes,
        gdb_writes=args.gdb_writes,
        baseline_writes=args.baseline_writes,
        expected={},
        floor_binary=floor_binary,
        variants=frozenset(variants),
        liveprobe_source=(
            f"the binary `{args.liveprobe}` (--liveprobe)" if args.liveprobe else f"built from {source_revision()}"
        ),
    )
    phases: list[Phase] = []
    loads = [load_average()]
    try:
        line = target.read_line(30)
        if line.strip() != "ready":
            raise BenchError(f"the watch target said {line!r} instead of 'ready'")
        ctx.watched_address = symbol_address(binary, target.pid, WATCHED)
        ctx.phase_done_address = symbol_address(binary, target.pid, "phase_done")
        for rounds in (args.writes, args.gdb_writes, args.baseline_writes):
            expect_checksum(ctx, rounds)
        for rep in range(args.reps if variants & set(WRITE_VARIANTS) else 0):
            rep_phases = write_repetition(ctx, rep, with_ptrace=not args.no_ptrace)
            phases += rep_phases
            loads.append(load_average())
            for p in rep_phases:
                if p.overhead_us_per_write is not None:
                    log(f"  {p.variant}: {p.overhead_us_per_write:.2f} µs extra per write over {p.rounds} writes")
            if not all(p.checksum_ok for p in rep_phases):
                log("  warning: a checksum differs from the unprobed run")
        if not args.no_sample:
            rounds = calibrate_rounds(ctx, args.sample_seconds)
            expect_checksum(ctx, rounds)
            for rep in range(args.sample_reps):
                phases += sample_repetition(ctx, rep, rounds, args.sample_seconds)
                loads.append(load_average())
    finally:
        try:
            target.send("quit\n")
        except LineProcessError:
            pass
        target.close(timeout_s=10)
        (LOG_DIR / "watch-raw.json").write_text(json.dumps([asdict(p) for p in phases], indent=2))

    body = compose_report(phases, ctx, command, started, loads, args)
    print(body)
    if not args.no_doc:
        write_doc_section(DOC, "watch", body)
        log(f"wrote the watch section of {DOC}")
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except (BenchError, BuildError) as e:
        log(f"watch benchmark: {e}")
        sys.exit(1)
