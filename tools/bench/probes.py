#!/usr/bin/env python3
"""Benchmark 3 (issue 4): what a probe costs a busy target, per hit, against gdb and bpftrace.

Run from anywhere:  python3 tools/bench/probes.py                  (3 repetitions, ~5 min)
                    python3 tools/bench/probes.py --reps 5 --pin no

The target (tools/bench/probes_target.c, gcc -g -O0 -pthread) calls a hot function,
`probe_work(int a, int b)` (noinline, a few locals, ≈0.5 µs a call), N times whenever
the driver writes `run N` on its stdin, and answers with the elapsed time of the calls
(measured inside the target) and a checksum of their results. The driver attaches a
tool while the target is idle, then starts the calls, so set-up never counts. In one
run, against the same target process, it measures:

  baseline     no tool attached (and, as a check, liveprobe attached with no probe)
  count        liveprobe `set_metric {kind: count}`
  logpoint     liveprobe `set_logpoint {message: "a={a} b={b}", max_hits: N}`
  snapshot     liveprobe `set_snapshot {max_hits: N}` (locals of the frame)
               (each once with `engine: uprobe`, a kernel uprobe with liveprobe's generated
               BPF capture, and once with `engine: ptrace`, an int3 the tracer handles)
  gdb dprintf  `gdb -nx -batch -p PID`: `dprintf probe_work,"a=%d b=%d\\n",a,b`
  gdb locals   the same gdb with `commands: silent, info args, info locals, continue`
  bpftrace     `uprobe:BIN:probe_work { printf("a=%d b=%d\\n", arg0, arg1); }` (if installed)
  4 threads    liveprobe count on `threads 4 N` (both engines): must count exactly 4×N,
               same checksum

Per-hit overhead = (time of the N calls with the probe − N × baseline time per call)
/ hits, where hits is what the tool reports (liveprobe's `list_probes`) or N (gdb,
bpftrace: one stop per call). gdb is much slower per hit, so it runs fewer calls
(--gdb-calls); per-hit figures are what is compared. gdb stops where the target calls
phase_done() after the timed calls, and detaches.

Each repetition runs every variant once, rotating the order. By default the whole set
runs twice: once unpinned, once with the target and the tool pinned to one CPU
(taskset / sched_setaffinity), since a cross-CPU wake-up of the tracer costs tens of
µs on a VM. It prints a markdown report and writes it into docs/benchmarks.md
(section `probes`), unless --no-doc.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
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

FIXTURE_SOURCE = Path(__file__).resolve().parent / "probes_target.c"
FUNCTION = "probe_work"
DOC = REPO / "docs" / "benchmarks.md"
LOG_DIR = TARGET_DIR / "bench-logs"
READY_MARK = "@@liveprobe-bench-ready@@"
LOGPOINT_MESSAGE = "a={a} b={b}"
THREADS = 4

GOAL_LOGPOINT_VS_DPRINTF = 0.05
GOAL_LOGPOINT_VS_BPFTRACE = 1.0
GOAL_SNAPSHOT_VS_GDB_LOCALS = 0.05

VARIANTS = [
    "baseline",
    "attached",
    "count",
    "logpoint",
    "snapshot",
    "threads",
    "count_ptrace",
    "logpoint_ptrace",
    "snapshot_ptrace",
    "threads_ptrace",
    "count_entry",
    "logpoint_entry",
    "gdb_dprintf",
    "gdb_locals",
    "bpftrace",
]
LABELS = {
    "baseline": "no probe (baseline)",
    "attached": "liveprobe attached, no probe",
    "count": "liveprobe `count` metric (uprobe)",
    "logpoint": "liveprobe logpoint `a={a} b={b}` (uprobe)",
    "snapshot": "liveprobe snapshot, frame locals (uprobe)",
    "threads": f"liveprobe `count`, {THREADS} threads (uprobe)",
    "count_ptrace": "liveprobe `count` metric (ptrace)",
    "logpoint_ptrace": "liveprobe logpoint `a={a} b={b}` (ptrace)",
    "snapshot_ptrace": "liveprobe snapshot, frame locals (ptrace)",
    "threads_ptrace": f"liveprobe `count`, {THREADS} threads (ptrace)",
    "count_entry": "liveprobe `count` at the function's entry, like bpftrace (uprobe)",
    "logpoint_entry": "liveprobe logpoint `a={a} b={b}` at the function's entry, like bpftrace (uprobe)",
    "gdb_dprintf": "gdb `dprintf` a, b",
    "gdb_locals": "gdb `info args` + `info locals` per hit",
    "bpftrace": "bpftrace uprobe `printf` a, b",
}


class BenchError(RuntimeError):
    """The benchmark cannot go on; the message says why and what to do."""


@dataclass
class Phase:
    """One timed batch of calls with one variant in place."""

    variant: str
    pinned: bool
    rep: int
    calls: int
    elapsed_ns: int
    checksum: str
    checksum_ok: bool
    hits: int | None = None
    """Hits the tool saw: liveprobe's count; for gdb and bpftrace, lines of output."""
    state: str | None = None
    reason: str | None = None
    mean_handler_us: float | None = None
    max_handler_us: float | None = None
    lost: int | None = None
    """bpftrace: events it reported lost; liveprobe: hits its kernel ring had no room for."""
    engine: str | None = None
    """liveprobe: the engine the probe ran on, as it reported."""
    baseline_ns_per_call: float = 0.0
    overhead_us_per_hit: float | None = None


@dataclass
class Context:
    """What every phase needs: the target, the binaries and the settings of the run."""

    target: LineProcess
    binary: Path
    liveprobe: Path
    liveprobe_args: list[str]
    cpu: int
    calls: int
    gdb_calls: int
    bpftrace_calls: int
    baseline_calls: int
    thread_calls: int
    expected: dict[str, str] = field(default_factory=dict)
    """The checksum of each command in an unprobed run."""


def target_command(ctx: Context, command: str, timeout_s: float = 600) -> tuple[int, str, int]:
    """Sends one command to the target; returns (elapsed ns, checksum, calls)."""
    ctx.target.send(command + "\n")
    try:
        line = ctx.target.read_line(timeout_s)
    except LineProcessError as e:
        raise BenchError(f"the target did not finish `{command}`: {e}") from e
    parts = line.split()
    if len(parts) != 4 or parts[0] != "done":
        raise BenchError(f"the target answered `{command}` with {line!r}")
    return int(parts[1]), parts[2], int(parts[3])


def pin_prefix(ctx: Context, pinned: bool) -> list[str]:
    return ["taskset", "-c", str(ctx.cpu)] if pinned else []


def set_target_affinity(ctx: Context, pinned: bool) -> None:
    """Pins the target's (only, idle) thread to the benchmark CPU, or lets it run on any;
    the worker threads of `threads` inherit it."""
    cpus = {ctx.cpu} if pinned else set(range(os.cpu_count() or 1))
    os.sched_setaffinity(ctx.target.pid, cpus)


def make_phase(ctx: Context, variant: str, pinned: bool, rep: int, command: str, result: tuple[int, str, int]) -> Phase:
    elapsed, checksum, calls = result
    expected = ctx.expected.get(command)
    return Phase(
        variant=variant,
        pinned=pinned,
        rep=rep,
        calls=calls,
        elapsed_ns=elapsed,
        checksum=checksum,
        checksum_ok=expected is None or expected == checksum,
    )


# --- liveprobe ------------------------------------------------------------------------


def build_private_liveprobe(build: bool) -> Path:
    """`cargo build --release` of liveprobe (unless `build` is False), then a copy of it
    that only this driver uses. (targets.build_liveprobe copies to a path every driver
    shares: a copy made by another driver mid-run would swap the binary under this one.)"""
    if build:
        command = ["cargo", "build", "--release", "--bin", "liveprobe"]
        log(f"building liveprobe (release): {' '.join(command)}")
        completed = subprocess.run(command, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        if completed.returncode != 0:
            tail = completed.stdout.decode(errors="replace")[-4000:]
            raise BuildError(f"building liveprobe (release) failed (exit {completed.returncode}):\n{tail}")
    if not LIVEPROBE.exists():
        raise BuildError(f"{LIVEPROBE} does not exist; build it (run the driver without --no-build)")
    BENCH_BIN_DIR.mkdir(parents=True, exist_ok=True)
    copy = BENCH_BIN_DIR / "liveprobe-probes"
    temporary = copy.with_suffix(".tmp")
    shutil.copy2(LIVEPROBE, temporary)
    os.replace(temporary, copy)
    return copy


def probe_row(client: McpStdioSession, pid: int, probe_id: int) -> dict:
    answer = client.call_tool("list_probes", {"pid": pid})
    if answer.is_error:
        raise BenchError(f"liveprobe list_probes failed: {answer.text}")
    for row in (answer.structured or {}).get("probes", []):
        if row.get("probe_id") == probe_id:
            return row
    raise BenchError(f"probe {probe_id} is not in list_probes: {answer.text[:400]}")


def liveprobe_probe_phase(
    ctx: Context, client: McpStdioSession, variant: str, tool: str, arguments: dict, command: str, pinned: bool, rep: int
) -> Phase:
    pid = ctx.target.pid
    created = client.call_tool(tool, {"pid": pid, "location": FUNCTION, **arguments})
    if created.is_error:
        raise BenchError(f"liveprobe {tool} failed: {created.text}")
    probe_id = int((created.structured or {}).get("probe_id", -1))
    phase = make_phase(ctx, variant, pinned, rep, command, target_command(ctx, command))
    row = probe_row(client, pid, probe_id)
    phase.hits = int(row.get("hits", 0))
    phase.state = row.get("state")
    phase.reason = row.get("reason")
    phase.mean_handler_us = row.get("mean_handler_us")
    phase.max_handler_us = row.get("max_handler_us")
    phase.lost = int(row.get("lost", 0))
    phase.engine = row.get("engine")
    wanted = arguments.get("engine")
    if wanted and phase.engine != wanted:
        raise BenchError(f"liveprobe ran the {variant} probe on {phase.engine}, not {wanted}: {row.get('engine_note')}")
    if rep == 0:
        results = client.call_tool("get_probe_results", {"probe_id": probe_id, "limit": 1})
        (LOG_DIR / f"probes-{variant}-result.json").write_text(json.dumps(results.structured, indent=2))
    removed = client.call_tool("remove_probe", {"probe_id": probe_id})
    if removed.is_error:
        raise BenchError(f"liveprobe remove_probe failed: {removed.text}")
    return phase


def liveprobe_phases(ctx: Context, pinned: bool, rep: int) -> list[Phase]:
    """One liveprobe server: attach, idle-attached check, count, logpoint, snapshot, 4 threads, detach."""
    pid = ctx.target.pid
    log_path = LOG_DIR / "probes-liveprobe.stderr"
    client = McpStdioSession([*pin_prefix(ctx, pinned), str(ctx.liveprobe), *ctx.liveprobe_args], stderr_path=str(log_path))
    phases: list[Phase] = []
    n = ctx.calls
    try:
        client.initialize()
        attached = client.call_tool("attach", {"pid": pid})
        if attached.is_error:
            raise BenchError(f"liveprobe could not attach: {attached.text}")
        command = f"run {ctx.baseline_calls}"
        phases.append(make_phase(ctx, "attached", pinned, rep, command, target_command(ctx, command)))
        run_n = f"run {n}"
        functions = client.call_tool("find_functions", {"pid": pid, "query": FUNCTION})
        entry = next(
            (f["address"] for f in (functions.structured or {}).get("functions", []) if f.get("name") == FUNCTION), None
        )
        if entry is None:
            raise BenchError(f"liveprobe find_functions did not find {FUNCTION}: {functions.text[:300]}")
        at_entry = {"location": f"*{entry}", "engine": "uprobe"}
        probes = [
            ("count_entry", "set_metric", {"kind": "count", **at_entry}, run_n),
            ("logpoint_entry", "set_logpoint", {"message": LOGPOINT_MESSAGE, "max_hits": n, **at_entry}, run_n),
        ]
        for engine, suffix in (("uprobe", ""), ("ptrace", "_ptrace")):
            probes += [
                ("count" + suffix, "set_metric", {"kind": "count", "engine": engine}, run_n),
                ("logpoint" + suffix, "set_logpoint", {"message": LOGPOINT_MESSAGE, "max_hits": n, "engine": engine}, run_n),
                ("snapshot" + suffix, "set_snapshot", {"max_hits": n, "engine": engine}, run_n),
                ("threads" + suffix, "set_metric", {"kind": "count", "engine": engine}, f"threads {THREADS} {ctx.thread_calls}"),
            ]
        for variant, tool, arguments, command in probes:
            phase = liveprobe_probe_phase(ctx, client, variant, tool, arguments, command, pinned, rep)
            phases.append(phase)
            log(
                f"  {variant}: {phase.elapsed_ns / 1e9:.2f} s, {phase.hits} hits ({phase.lost or 0} lost), "
                f"state {phase.state}, handler {phase.mean_handler_us or 0:.2f} µs mean"
            )
        detached = client.call_tool("detach", {"pid": pid})
        if detached.is_error:
            raise BenchError(f"liveprobe detach failed: {detached.text}")
    except McpError as e:
        client.close(timeout_s=5)
        raise BenchError(f"liveprobe failed: {e}; its log is {log_path}") from e
    except BaseException:
        client.close(timeout_s=5)
        raise
    client.close()
    return phases


# --- gdb ------------------------------------------------------------------------------

GDB_DPRINTF_SCRIPT = f"""set pagination off
set confirm off
dprintf {FUNCTION},"a=%d b=%d\\n",a,b
break phase_done
echo {READY_MARK}\\n
continue
detach
"""

GDB_LOCALS_SCRIPT = f"""set pagination off
set confirm off
break {FUNCTION}
commands
silent
info args
info locals
continue
end
break phase_done
echo {READY_MARK}\\n
continue
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


def gdb_phase(ctx: Context, variant: str, script: str, count_prefix: str, pinned: bool, rep: int) -> Phase:
    script_path = LOG_DIR / f"probes-{variant}.gdb"
    script_path.write_text(script)
    output_path = LOG_DIR / f"probes-{variant}.out"
    with open(output_path, "w") as output:
        gdb = subprocess.Popen(
            [*pin_prefix(ctx, pinned), "gdb", "-nx", "-batch", "-p", str(ctx.target.pid), "-x", str(script_path)],
            stdin=subprocess.DEVNULL,
            stdout=output,
            stderr=subprocess.STDOUT,
        )
    try:
        wait_for_text(output_path, READY_MARK, gdb, 120, "gdb")
        command = f"run {ctx.gdb_calls}"
        phase = make_phase(ctx, variant, pinned, rep, command, target_command(ctx, command))
    finally:
        status = stop_process(gdb, 60)
    text = output_path.read_text(errors="replace")
    if "detached]" not in text:
        raise BenchError(f"gdb did not detach (exit {status}); see {output_path}")
    phase.hits = sum(1 for line in text.splitlines() if line.startswith(count_prefix))
    return phase


# --- bpftrace -------------------------------------------------------------------------


def bpftrace_phase(ctx: Context, pinned: bool, rep: int) -> Phase:
    program = f'uprobe:{ctx.binary}:{FUNCTION} {{ printf("a=%d b=%d\\n", arg0, arg1); }}'
    output_path = LOG_DIR / "probes-bpftrace.out"
    with open(output_path, "w") as output:
        tracer = subprocess.Popen(
            [*pin_prefix(ctx, pinned), "bpftrace", "-p", str(ctx.target.pid), "-e", program],
            stdin=subprocess.DEVNULL,
            stdout=output,
            stderr=subprocess.STDOUT,
        )
    try:
        # bpftrace prints nothing once its uprobe is in place: call the function
        # once at a time until a line of it shows up.
        deadline = time.perf_counter() + 120
        while "a=0 b=0" not in (output_path.read_text(errors="replace") if output_path.exists() else ""):
            if tracer.poll() is not None:
                raise BenchError(f"bpftrace exited (status {tracer.returncode}); see {output_path}")
            if time.perf_counter() > deadline:
                raise BenchError(f"bpftrace printed nothing for 120 s; see {output_path}")
            target_command(ctx, "run 1")
            time.sleep(0.1)
        warmup_lines = output_path.read_text(errors="replace").count("a=0 b=0")
        command = f"run {ctx.bpftrace_calls}"
        phase = make_phase(ctx, "bpftrace", pinned, rep, command, target_command(ctx, command))
        time.sleep(0.5)  # let it drain its ring buffer before it is stopped
    finally:
        if tracer.poll() is None:
            tracer.send_signal(signal.SIGINT)
        stop_process(tracer, 30)
    lines = output_path.read_text(errors="replace").splitlines()
    phase.hits = sum(1 for line in lines if line.startswith("a=")) - warmup_lines
    phase.lost = sum(int(w) for line in lines if line.startswith("Lost") for w in line.split()[1:2] if w.isdigit())
    # bpftrace prints a line per call it delivered; the uprobe ran on every call even
    # when its line was lost, so its cost is charged to every call.
    phase.state = f"{phase.lost} lost"
    return phase


# --- the run --------------------------------------------------------------------------


def baseline_phase(ctx: Context, pinned: bool, rep: int) -> Phase:
    command = f"run {ctx.baseline_calls}"
    return make_phase(ctx, "baseline", pinned, rep, command, target_command(ctx, command))


def one_repetition(ctx: Context, pinned: bool, rep: int, with_bpftrace: bool) -> list[Phase]:
    set_target_affinity(ctx, pinned)
    groups = ["liveprobe", "gdb_dprintf", "gdb_locals"] + (["bpftrace"] if with_bpftrace else [])
    shift = rep % len(groups)
    groups = groups[shift:] + groups[:shift]
    phases = [baseline_phase(ctx, pinned, rep)]
    for group in groups:
        log(f" {'pinned' if pinned else 'unpinned'} rep {rep + 1}: {group}")
        if group == "liveprobe":
            phases += liveprobe_phases(ctx, pinned, rep)
        elif group == "gdb_dprintf":
            phases.append(gdb_phase(ctx, "gdb_dprintf", GDB_DPRINTF_SCRIPT, "a=", pinned, rep))
        elif group == "gdb_locals":
            phases.append(gdb_phase(ctx, "gdb_locals", GDB_LOCALS_SCRIPT, "a = ", pinned, rep))
        else:
            phases.append(bpftrace_phase(ctx, pinned, rep))
        time.sleep(0.2)
    phases.append(baseline_phase(ctx, pinned, rep))
    baselines = [p for p in phases if p.variant == "baseline"]
    per_call = sum(p.elapsed_ns for p in baselines) / sum(p.calls for p in baselines)
    for phase in phases:
        phase.baseline_ns_per_call = per_call
        if phase.variant in ("baseline", "attached"):
            continue
        hits = phase.hits or 0
        if phase.variant in ("gdb_locals", "gdb_dprintf", "bpftrace"):
            # One stop (trap) per call, whether or not its output line arrived.
            hits = phase.calls
        if hits > 0:
            phase.overhead_us_per_hit = (phase.elapsed_ns - per_call * phase.calls) / hits / 1000
    return phases


def record_expected_checksums(ctx: Context) -> None:
    commands = {
        f"run {ctx.baseline_calls}",
        f"run {ctx.calls}",
        f"run {ctx.gdb_calls}",
        f"run {ctx.bpftrace_calls}",
        f"threads {THREADS} {ctx.thread_calls}",
    }
    for command in sorted(commands):
        _, checksum, _ = target_command(ctx, command)
        ctx.expected[command] = checksum


# --- the report -----------------------------------------------------------------------


def source_revision() -> str:
    """The commit liveprobe was built from, and whether the working tree differed from it."""
    try:
        head = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True, text=True, timeout=30
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no", "--", "src", "Cargo.toml", "Cargo.lock"],
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=30,
        ).stdout.splitlines()
    except (OSError, subprocess.TimeoutExpired):
        return "an unknown commit"
    if not head:
        return "an unknown commit"
    if dirty:
        return f"commit {head} plus uncommitted changes to {len(dirty)} file(s) under src/ (work in progress of other rooms)"
    return f"commit {head}"


def summary_of(phases: list[Phase], variant: str, pinned: bool, pick) -> Summary | None:
    values = [pick(p) for p in phases if p.variant == variant and p.pinned == pinned]
    return Summary.of([v for v in values if v is not None])


def median_ratio(a: Summary | None, b: Summary | None) -> float | None:
    if a is None or b is None or b.median <= 0:
        return None
    return a.median / b.median


def goal_rows(phases: list[Phase], pinned: bool) -> list[list[str]]:
    def per_hit(variant: str) -> Summary | None:
        return summary_of(phases, variant, pinned, lambda p: p.overhead_us_per_hit)

    dprintf, locals_, bpftrace = per_hit("gdb_dprintf"), per_hit("gdb_locals"), per_hit("bpftrace")
    rows = []
    value = median_ratio(per_hit("logpoint_entry"), bpftrace)
    rows.append(
        [
            "logpoint (uprobe) / bpftrace printf, both at the function's entry (same instruction, same trap)",
            render_ratio(value),
            f"≤ {GOAL_LOGPOINT_VS_BPFTRACE}×: {verdict(None if value is None else value <= GOAL_LOGPOINT_VS_BPFTRACE)}",
        ]
    )
    rows.append(
        [
            "count (uprobe) / bpftrace printf, both at the function's entry",
            render_ratio(median_ratio(per_hit("count_entry"), bpftrace)),
            "",
        ]
    )
    for engine, suffix in (("uprobe", ""), ("ptrace", "_ptrace")):
        logpoint, snapshot = per_hit("logpoint" + suffix), per_hit("snapshot" + suffix)
        for what, a, b, goal in [
            (f"logpoint ({engine}) / gdb dprintf", logpoint, dprintf, GOAL_LOGPOINT_VS_DPRINTF),
            (
                f"logpoint ({engine}, after the prologue) / bpftrace printf (at the entry)",
                logpoint,
                bpftrace,
                GOAL_LOGPOINT_VS_BPFTRACE,
            ),
            (f"snapshot ({engine}) / gdb info args + info locals", snapshot, locals_, GOAL_SNAPSHOT_VS_GDB_LOCALS),
        ]:
            value = median_ratio(a, b)
            rows.append([what, render_ratio(value), f"≤ {goal}×: {verdict(None if value is None else value <= goal)}"])
        floor = median_ratio(per_hit("count" + suffix), bpftrace)
        rows.append([f"count ({engine}) / bpftrace printf (the bare hit cost, no capture)", render_ratio(floor), ""])
        threads = [p for p in phases if p.variant == "threads" + suffix and p.pinned == pinned]
        exact = [p.hits == p.calls and p.checksum_ok for p in threads]
        counts = ", ".join(f"{p.hits}/{p.calls}" for p in threads)
        rows.append(
            [
                f"{THREADS}-thread count ({engine}): hits / calls, every run",
                counts or "—",
                f"no lost hits: {verdict(all(exact) if exact else None)}",
            ]
        )
    return rows


def variant_rows(phases: list[Phase], pinned: bool, ctx: Context) -> list[list[str]]:
    rows = []
    for variant in VARIANTS:
        mine = [p for p in phases if p.variant == variant and p.pinned == pinned]
        if not mine:
            continue
        seconds = summary_of(phases, variant, pinned, lambda p: p.elapsed_ns / 1e9)
        per_call = summary_of(phases, variant, pinned, lambda p: p.elapsed_ns / p.calls / 1000)
        per_hit = summary_of(phases, variant, pinned, lambda p: p.overhead_us_per_hit)
        handler = summary_of(phases, variant, pinned, lambda p: p.mean_handler_us)
        hits = ", ".join(str(p.hits) for p in mine) if mine[0].hits is not None else "—"
        states = [p.state for p in mine if p.state]
        if len(set(states)) == 1:
            states = states[:1]
        if any(p.lost for p in mine if not p.variant.startswith(("gdb", "bpftrace"))):
            states.append("lost " + ", ".join(str(p.lost or 0) for p in mine))
        checks = "yes" if all(p.checksum_ok for p in mine) else "**no**"
        rows.append(
            [
                LABELS[variant],
                f"{mine[0].calls:,}",
                render_summary(seconds, 2),
                render_summary(per_call, 2),
                hits,
                render_summary(per_hit, 1),
                render_summary(handler, 2),
                ", ".join(states),
                checks,
            ]
        )
    return rows


def compose_report(
    phases: list[Phase],
    ctx: Context,
    command: str,
    started: str,
    loads: list[float],
    reps: int,
    bpftrace_note: str,
    revision: str,
) -> str:
    passes = sorted({p.pinned for p in phases})
    header = [
        "variant",
        "calls",
        "time, s",
        "µs per call",
        "hits (each rep)",
        "overhead per hit, µs",
        "liveprobe `mean_handler_us`",
        "state",
        "checksum as unprobed",
    ]
    sections = []
    for pinned in passes:
        title = (
            f"Target and tool pinned to CPU {ctx.cpu} (`taskset -c {ctx.cpu}`)" if pinned else "Unpinned (any CPU)"
        )
        sections.append(
            f"### {title}\n\n"
            + markdown_table(["goal", "measured (median)", "verdict"], goal_rows(phases, pinned))
            + "\n\n"
            + markdown_table(header, variant_rows(phases, pinned, ctx))
        )
    sections_text = "\n\n".join(sections)
    throttled = sorted({p.reason for p in phases if p.state == "throttled" and p.reason})
    throttle_note = ""
    if throttled:
        throttle_note = (
            "\n- `throttled`: liveprobe's overhead budget (handler time per second of wall time,\n"
            "  `--probe-budget-ms`, default 250) disabled the probe before it\n"
            "  reached `max_hits`, so it saw fewer hits than calls; the calls after that ran unprobed\n"
            "  and the per-hit figure divides by the hits it did see. Its reason: \"" + throttled[0] + "\"."
        )
    return f"""## Probe overhead per hit: liveprobe vs gdb vs bpftrace (issue 4)

Command: `{command}`
Run: {started}, {reps} repetitions of every variant in each pass, order rotated per repetition.
Machine: {machine_description()}. {tool_version(["gdb", "--version"])}; {bpftrace_note}.
liveprobe: release build of {revision}.
Load average (1 min) during the run: {min(loads):.1f}–{max(loads):.1f} (the machine is shared: other
engineers' builds and tests run on the same 2 cores, so absolute times are noisy).
Target: `tools/bench/probes_target.c` (gcc -g -O0 -pthread): `{FUNCTION}(int a, int b)`, noinline,
5 locals, ≈0.5 µs a call, called `run N` times on one thread (`threads {THREADS} N` on {THREADS}).
Calls per variant: liveprobe {ctx.calls:,}; bpftrace {ctx.bpftrace_calls:,}; gdb {ctx.gdb_calls:,} (it is ~10–100× slower per hit);
baseline {ctx.baseline_calls:,}; {THREADS} threads × {ctx.thread_calls:,}.
Cells are median (min–max) over the repetitions.

{sections_text}

- Overhead per hit = (time of the calls with the probe − calls × the baseline's time per
  call) / hits; the baseline is the mean of the no-probe runs at the start and end of the same
  repetition. Time is measured inside the target (CLOCK_MONOTONIC around the calls), so
  attaching and setting probes are outside it.
- liveprobe: one server per repetition over MCP stdio; `attach`, then for each variant the
  probe tool with `location: "{FUNCTION}"` (after the prologue) and `engine` set explicitly,
  the calls, `list_probes` (hits, lost, `mean_handler_us`), `remove_probe`. Logpoint and
  snapshot have `max_hits` = calls; the store keeps the newest 100 items.
  - `uprobe`: a kernel uprobe runs the BPF capture program liveprobe generated for the probe
    (registers plus the planned stack reads into a ring buffer); the thread is not stopped.
    liveprobe's tracer thread takes each record afterwards (condition, count, store;
    snapshots and logpoints are rendered when a client reads them), so `mean_handler_us`
    is its own work per hit, not time the target waited; `list_probes` answers after
    every record so far has been handled, so hits are complete.
  - `ptrace`: an `int3` the tracer handles; `mean_handler_us` is the time its handler held
    the thread, part of the overhead per hit (the rest is the trap, the tracer's wake-up and
    the out-of-line resume).
- gdb: `gdb -nx -batch -p PID -x script` (scripts in `target/bench-logs/probes-gdb_*.gdb`):
  `dprintf {FUNCTION},"a=%d b=%d\\n",a,b`, or `break {FUNCTION}` with `commands` `silent`,
  `info args`, `info locals`, `continue`; plus `break phase_done` (called after the timed
  calls), then `continue` and `detach`. Its output goes to a file; hits are its lines.
- bpftrace: `bpftrace -p PID -e 'uprobe:BIN:{FUNCTION} {{ printf("a=%d b=%d\\n", arg0, arg1); }}'`
  (at the function's entry, reading the argument registers); output to a file, stopped with
  SIGINT after the calls. Its hits column counts printed lines, its state column the events
  it reported lost (`Lost N events`: its reader fell behind); the uprobe ran on every call
  either way, so its overhead divides by the calls.
- Where the probes are: liveprobe's `location: "{FUNCTION}"` is after the prologue (as gdb's
  `break`/`dprintf`), where the arguments are in their stack slots; the instruction there (a
  load) is one the kernel's uprobe must single-step out of line, a second trap. The
  bpftrace installed here cannot probe inside a function (built without uprobe offset
  support), only at its entry, whose `push %rbp` the kernel emulates: one trap. The
  `…at the function's entry` rows put liveprobe's uprobe on that same instruction
  (`location: "*ENTRY"`), the like-for-like comparison; its logpoint there reads the
  stack slots before the prologue writes them, so its values are the previous call's:
  those rows measure cost only.
- Pinned pass: the target's threads and the tool's process (all its threads) share one CPU,
  so a ptrace hit wakes the tracer on the CPU the stopped thread just left, and uprobe
  records wait in the ring until the target yields the CPU.{throttle_note}
- Raw figures: `target/bench-logs/probes-raw.json`.
"""


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--calls", type=int, default=100_000, help="calls per liveprobe and bpftrace variant (default 100000)")
    parser.add_argument("--bpftrace-calls", type=int, default=300_000, help="calls per bpftrace variant (default 300000)")
    parser.add_argument("--gdb-calls", type=int, default=4_000, help="calls per gdb variant (default 4000)")
    parser.add_argument("--baseline-calls", type=int, default=2_000_000, help="calls per baseline run (default 2000000)")
    parser.add_argument("--thread-calls", type=int, default=100_000, help=f"calls per thread of the {THREADS}-thread run (default 100000)")
    parser.add_argument("--reps", type=int, default=3, help="repetitions of every variant per pass (default 3)")
    parser.add_argument("--pin", choices=["both", "no", "only"], default="both", help="unpinned pass, pinned pass, or both (default)")
    parser.add_argument("--cpu", type=int, default=None, help="the CPU of the pinned pass (default: the last one)")
    parser.add_argument(
        "--liveprobe-arg", action="append", default=[], help="extra argument for the liveprobe server (repeatable)"
    )
    parser.add_argument("--no-bpftrace", action="store_true", help="skip bpftrace even if it is installed")
    parser.add_argument("--no-build", action="store_true", help="use the liveprobe binary already built")
    parser.add_argument("--no-doc", action="store_true", help="print the report but do not write docs/benchmarks.md")
    args = parser.parse_args()
    command = "python3 tools/bench/probes.py" + "".join(f" {a}" for a in sys.argv[1:])
    if min(args.calls, args.gdb_calls, args.bpftrace_calls, args.baseline_calls, args.thread_calls, args.reps) < 1:
        raise BenchError("every --*-calls option and --reps must be at least 1")
    if shutil.which("gdb") is None:
        raise BenchError("gdb is not installed (apt-get install -y gdb)")

    LOG_DIR.mkdir(parents=True, exist_ok=True)
    liveprobe = build_private_liveprobe(build=not args.no_build)
    revision = source_revision()
    binary = build_c_fixture(FIXTURE_SOURCE, ["-g", "-O0", "-pthread"])
    with_bpftrace = not args.no_bpftrace and shutil.which("bpftrace") is not None
    if args.no_bpftrace:
        bpftrace_note = "bpftrace skipped (--no-bpftrace)"
    elif with_bpftrace:
        bpftrace_note = tool_version(["bpftrace", "--version"])
    else:
        bpftrace_note = "bpftrace not installed (`apt-get install -y bpftrace` to measure it)"
    cpu = args.cpu if args.cpu is not None else max(os.sched_getaffinity(0))
    started = today()

    target = LineProcess([str(binary)], stderr_path=LOG_DIR / "probes-target.stderr")
    ctx = Context(
        target=target,
        binary=binary,
        liveprobe=liveprobe,
        liveprobe_args=args.liveprobe_arg,
        cpu=cpu,
        calls=args.calls,
        gdb_calls=args.gdb_calls,
        bpftrace_calls=args.bpftrace_calls,
        baseline_calls=args.baseline_calls,
        thread_calls=args.thread_calls,
    )
    phases: list[Phase] = []
    loads = [load_average()]
    try:
        line = target.read_line(30)
        if line.strip() != "ready":
            raise BenchError(f"the probes target said {line!r} instead of 'ready'")
        record_expected_checksums(ctx)
        passes = {"both": [False, True], "no": [False], "only": [True]}[args.pin]
        for pinned in passes:
            for rep in range(args.reps):
                rep_phases = one_repetition(ctx, pinned, rep, with_bpftrace)
                phases += rep_phases
                loads.append(load_average())
                for p in rep_phases:
                    if p.overhead_us_per_hit is not None:
                        log(f"  {p.variant}: {p.overhead_us_per_hit:.1f} µs per hit over {p.calls} calls")
                if not all(p.checksum_ok for p in rep_phases):
                    log("  warning: a checksum differs from the unprobed run")
    finally:
        try:
            target.send("quit\n")
        except LineProcessError:
            pass
        target.close(timeout_s=10)
        (LOG_DIR / "probes-raw.json").write_text(json.dumps([asdict(p) for p in phases], indent=2))

    body = compose_report(phases, ctx, command, started, loads, args.reps, bpftrace_note, revision)
    print(body)
    if not args.no_doc:
        write_doc_section(DOC, "probes", body)
        log(f"wrote the probes section of {DOC}")
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except (BenchError, BuildError) as e:
        log(f"probes benchmark: {e}")
        sys.exit(1)
