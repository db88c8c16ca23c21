#!/usr/bin/env python3
"""Benchmark 2 (issue 3): read the locals of a stopped frame, liveprobe vs gdb, warm.

Run from anywhere:  python3 tools/bench/locals.py                 (3 sessions x 200 calls)
                    python3 tools/bench/locals.py --calls 1000

The target (tools/bench/locals_target.c, gcc -g -O0) blocks in read() on stdin inside
`handle_order`, a frame with 3 arguments and 10 locals (integers, a struct, char
arrays, a string, a double, pointers to a struct nesting structs two deep). Frame 0
is libc's read; the frame of `handle_order` is found with `stack_trace`.

Sessions alternate between the tools; in each, after a few warm-up calls, every call
is timed on its own:

- liveprobe: one server, `attach`, then `read_locals {pid, frame: N}` repeatedly; time
  is the MCP round trip seen by the client; held is the `held_us` the server reports
  for the thread it interrupted.
- gdb: `gdb -nx -q -p PID` driven on stdin (attached once, `frame function
  handle_order`), then `info args` + `info locals` + an `echo` sentinel per call; time
  is from writing the commands to reading the sentinel. gdb stops every thread of the
  target from attach to detach, so its "held" is the whole session.

It prints a markdown report and writes it into docs/benchmarks.md (section `locals`),
unless --no-doc.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from line_process import LineProcess, LineProcessError  # noqa: E402
from mcp_stdio import McpError, McpStdioSession  # noqa: E402
from report import (  # noqa: E402
    Summary,
    driver_peak_rss_mib,
    load_average,
    machine_description,
    markdown_table,
    ratio,
    render_ratio,
    render_summary,
    today,
    verdict,
    write_doc_section,
)
from targets import BuildError, LIVEPROBE, REPO, TARGET_DIR, build_c_fixture, build_liveprobe, log, tool_version  # noqa: E402

FIXTURE_SOURCE = Path(__file__).resolve().parent / "locals_target.c"
FUNCTION = "handle_order"
EXPECTED_NAMES = {
    "order", "attempt", "customer",
    "count", "total_cents", "where", "name", "head", "detail", "ratio", "status", "line", "got",
}  # fmt: skip
DOC = REPO / "docs" / "benchmarks.md"
LOG_DIR = TARGET_DIR / "bench-logs"
SENTINEL = "@@liveprobe-bench@@"

GOAL_HELD_US = 100.0
GOAL_TIME_RATIO = 0.1


class BenchError(RuntimeError):
    """The benchmark cannot go on; the message says why and what to do."""


@dataclass
class Session:
    """One tool's session: set-up, then per-call figures."""

    tool: str
    setup_ms: float = 0.0
    call_us: list[float] = field(default_factory=list)
    held_us: list[float] = field(default_factory=list)
    session_s: float = 0.0
    """From the attach request (or gdb's spawn) to the detach answer (or gdb's exit)."""
    peak_rss_mib: float = 0.0
    variables: list[str] = field(default_factory=list)
    ping_us: list[float] = field(default_factory=list)
    """MCP `ping` round trips in the same session: the transport's floor."""


def start_fixture(binary: Path) -> LineProcess:
    target = LineProcess([str(binary)], stderr_path=LOG_DIR / "locals-target.stderr")
    try:
        line = target.read_line(30)
    except LineProcessError as e:
        raise BenchError(f"the locals target did not start: {e}") from e
    if line.strip() != "ready":
        raise BenchError(f"the locals target said {line!r} instead of 'ready'")
    time.sleep(0.05)  # printf("ready") comes just before read(): let it block
    return target


def frame_of(stack: dict, function: str) -> int:
    """The index of the innermost frame of `function` in a `stack_trace` answer."""
    for thread in stack.get("threads", []):
        for frame in thread.get("frames", []):
            name = frame.get("function") or ""
            if name == function or name.endswith("::" + function):
                return int(frame.get("index", 0))
    raise BenchError(f"no frame of {function} in the stack: {json.dumps(stack)[:600]}")


def liveprobe_session(liveprobe: Path, pid: int, calls: int, warmup: int, extra_args: list[str]) -> Session:
    session = Session(tool="liveprobe")
    log_path = LOG_DIR / "locals-liveprobe.stderr"
    client = McpStdioSession([str(liveprobe), *extra_args], stderr_path=str(log_path))
    try:
        client.initialize()
        started = time.perf_counter()
        attached = client.call_tool("attach", {"pid": pid})
        if attached.is_error:
            raise BenchError(f"liveprobe could not attach: {attached.text}")
        stack = client.call_tool("stack_trace", {"pid": pid})
        if stack.is_error:
            raise BenchError(f"liveprobe stack_trace failed: {stack.text}")
        frame = frame_of(stack.structured or {}, FUNCTION)
        session.setup_ms = (time.perf_counter() - started) * 1000
        arguments = {"pid": pid, "frame": frame}
        for index in range(warmup + calls):
            answer = client.call_tool("read_locals", arguments)
            if answer.is_error:
                raise BenchError(f"liveprobe read_locals failed: {answer.text}")
            data = answer.structured or {}
            if index == 0:
                session.variables = [str(v.get("name")) for v in data.get("variables", []) if isinstance(v, dict)]
                (LOG_DIR / "locals-liveprobe-answer.json").write_text(json.dumps(data, indent=2))
            if index >= warmup:
                session.call_us.append(answer.elapsed_s * 1e6)
                if isinstance(data.get("held_us"), (int, float)):
                    session.held_us.append(float(data["held_us"]))
        for index in range(warmup + calls):
            _, elapsed = client.request("ping", {})
            if index >= warmup:
                session.ping_us.append(elapsed * 1e6)
        detached = client.call_tool("detach", {"pid": pid})
        session.session_s = time.perf_counter() - started
        if detached.is_error:
            raise BenchError(f"liveprobe detach failed: {detached.text}")
    except McpError as e:
        client.close(timeout_s=5)
        raise BenchError(f"liveprobe failed: {e}; its log is {log_path}") from e
    except BaseException:
        client.close(timeout_s=5)
        raise
    end = client.close()
    session.peak_rss_mib = end.peak_rss_kib / 1024
    return session


def gdb_session(pid: int, calls: int, warmup: int) -> Session:
    session = Session(tool="gdb")
    started = time.perf_counter()
    gdb = LineProcess(["gdb", "-nx", "-q", "-p", str(pid)], merge_stderr=True)
    try:
        gdb.send(
            "set pagination off\nset width 0\nset confirm off\n"
            f"frame function {FUNCTION}\necho {SENTINEL}\\n\n"
        )
        gdb.read_until(SENTINEL, timeout_s=120)
        session.setup_ms = (time.perf_counter() - started) * 1000
        round_trip = f"info args\ninfo locals\necho {SENTINEL}\\n\n"
        for index in range(warmup + calls):
            sent = time.perf_counter()
            gdb.send(round_trip)
            lines = gdb.read_until(SENTINEL, timeout_s=60)
            elapsed = time.perf_counter() - sent
            if index == 0:
                session.variables = [
                    line.replace("(gdb) ", "").split(" = ", 1)[0].strip()
                    for line in lines
                    if " = " in line and not line.startswith(" ")
                ]
            if index >= warmup:
                session.call_us.append(elapsed * 1e6)
        gdb.send("detach\nquit\n")
    except LineProcessError as e:
        gdb.close(timeout_s=5)
        raise BenchError(f"gdb failed: {e}; it said: {gdb.transcript[-20:]}") from e
    status, peak_rss_kib, lifetime = gdb.close()
    session.session_s = lifetime
    session.peak_rss_mib = peak_rss_kib / 1024
    with open(LOG_DIR / "locals-gdb.log", "w") as f:
        f.write("\n".join(gdb.transcript[:80]) + "\n")
    return session


def pooled(sessions: list[Session], pick) -> Summary | None:
    values: list[float] = []
    for s in sessions:
        values.extend(pick(s))
    return Summary.of(values)


def percentile(values: list[float], fraction: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


def compose_report(
    results: dict[str, list[Session]], calls: int, command: str, started: str, loads: list[float]
) -> str:
    gdb, live = results["gdb"], results["liveprobe"]
    gdb_call = pooled(gdb, lambda s: s.call_us)
    live_call = pooled(live, lambda s: s.call_us)
    live_held = pooled(live, lambda s: s.held_us)
    all_held = [h for s in live for h in s.held_us]
    gdb_setup = Summary.of([s.setup_ms for s in gdb])
    live_setup = Summary.of([s.setup_ms for s in live])
    gdb_rss = Summary.of([s.peak_rss_mib for s in gdb])
    live_rss = Summary.of([s.peak_rss_mib for s in live])
    gdb_stopped = Summary.of([s.session_s for s in gdb])
    time_ratio = ratio(live_call, gdb_call)
    held_p99 = percentile(all_held, 0.99)
    held_met = None if live_held is None else live_held.median <= GOAL_HELD_US

    def p99(values: list[float]) -> str:
        value = percentile(values, 0.99)
        return "—" if value is None else f"{value:.0f}"

    rows = [
        [
            "one call (client round trip), µs",
            render_summary(gdb_call, 0),
            render_summary(live_call, 0),
            render_ratio(time_ratio),
            f"≤ {GOAL_TIME_RATIO}× gdb: {verdict(None if time_ratio is None else time_ratio <= GOAL_TIME_RATIO)}",
        ],
        [
            "one call, p99, µs",
            p99([c for s in gdb for c in s.call_us]),
            p99([c for s in live for c in s.call_us]),
            "",
            "",
        ],
        [
            "target thread held per call, µs",
            "all threads, whole session: "
            + ("—" if gdb_stopped is None else f"{gdb_stopped.median * 1e3:.0f} ms"),
            render_summary(live_held, 0) + ("" if held_p99 is None else f"; p99 {held_p99:.0f}"),
            "",
            f"≤ {GOAL_HELD_US:g} µs (median): {verdict(held_met)}",
        ],
        [
            "MCP `ping` round trip in the same session (transport floor), µs",
            "",
            render_summary(pooled(live, lambda s: s.ping_us), 0),
            "",
            "",
        ],
        [
            "set-up: attach to frame selected, ms",
            render_summary(gdb_setup),
            render_summary(live_setup),
            render_ratio(ratio(live_setup, gdb_setup)),
            "",
        ],
        ["peak RSS of the tool, MiB", render_summary(gdb_rss), render_summary(live_rss), render_ratio(ratio(live_rss, gdb_rss)), ""],
        [
            "variables returned",
            str(len(gdb[0].variables)) if gdb else "—",
            str(len(live[0].variables)) if live else "—",
            "",
            f"expected {len(EXPECTED_NAMES)}",
        ],
    ]
    table = markdown_table(["figure (median (min–max))", "gdb", "liveprobe", "liveprobe / gdb", "goal"], rows)
    missing = sorted(EXPECTED_NAMES - set(live[0].variables)) if live else []
    return f"""## read_locals vs gdb `info args` + `info locals`, warm (issue 3)

Command: `{command}`
Run: {started}, {len(live)} liveprobe and {len(gdb)} gdb sessions, alternating, {calls} timed calls
each after warm-up. Machine: {machine_description()}. {tool_version(["gdb", "--version"])}.
Load average (1 min) during the run: {min(loads):.1f}–{max(loads):.1f} (the machine is shared).
Target: `tools/bench/locals_target.c` (gcc -g -O0), blocked in read() inside `{FUNCTION}`
(3 arguments, 10 locals, pointers to a struct nesting structs two deep).

{table}

- liveprobe: `read_locals {{pid, frame: N}}` over MCP stdio in one attached session; the
  time is the client's round trip (JSON-RPC, the tracer thread's interrupt, register and
  stack copy, DWARF decoding, rendering). Held is the server's `held_us`: how long the
  one thread was stopped. It follows pointers (default depth 3), so it reads more than gdb.
- gdb: one `gdb -nx -q -p PID` session on stdin/stdout pipes, `frame function {FUNCTION}`
  once, then `info args`, `info locals` and an `echo` sentinel per call; gdb prints
  pointers without following them. gdb keeps every thread stopped from attach to detach,
  so its held time is the whole session.
- Peak RSS is `ru_maxrss` of the tool's own process (os.wait4); it cannot be lower
  than the driver's own peak ({driver_peak_rss_mib():.1f} MiB), since the tools are spawned with vfork+exec.
- liveprobe variables missing against the expected set: {", ".join(missing) if missing else "none"}.
"""


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--calls", type=int, default=200, help="timed calls per session (default 200)")
    parser.add_argument("--warmup", type=int, default=10, help="untimed calls first (default 10)")
    parser.add_argument("--sessions", type=int, default=3, help="sessions of each tool (default 3)")
    parser.add_argument("--no-build", action="store_true", help="use the binaries already built")
    parser.add_argument("--no-doc", action="store_true", help="print the report but do not write docs/benchmarks.md")
    parser.add_argument(
        "--tools", default="gdb,liveprobe", help="which tools to run, comma-separated (default gdb,liveprobe)"
    )
    parser.add_argument(
        "--liveprobe-arg", action="append", default=[], help="extra argument for the liveprobe server (repeatable)"
    )
    args = parser.parse_args()
    command = "python3 tools/bench/locals.py" + "".join(f" {a}" for a in sys.argv[1:])
    tools = [t for t in ("gdb", "liveprobe") if t in args.tools.split(",")]
    if not tools:
        raise BenchError("--tools names neither gdb nor liveprobe")

    LOG_DIR.mkdir(parents=True, exist_ok=True)
    liveprobe = build_liveprobe(build=not args.no_build) if "liveprobe" in tools else LIVEPROBE
    binary = build_c_fixture(FIXTURE_SOURCE)
    started = today()

    target = start_fixture(binary)
    results: dict[str, list[Session]] = {"gdb": [], "liveprobe": []}
    loads = [load_average()]
    try:
        for index in range(args.sessions):
            order = tools if index % 2 == 0 else tools[::-1]
            for tool in order:
                if tool == "gdb":
                    session = gdb_session(target.pid, args.calls, args.warmup)
                else:
                    session = liveprobe_session(liveprobe, target.pid, args.calls, args.warmup, args.liveprobe_arg)
                results[tool].append(session)
                loads.append(load_average())
                median_call = Summary.of(session.call_us)
                median_held = Summary.of(session.held_us)
                log(
                    f"session {index + 1}/{args.sessions} {tool}: set-up {session.setup_ms:.1f} ms, "
                    f"call {median_call.median if median_call else 0:.0f} µs median, "
                    f"held {median_held.median if median_held else 0:.0f} µs median, "
                    f"{len(session.variables)} variables"
                )
                time.sleep(0.2)
    finally:
        target.close(timeout_s=10)

    body = compose_report(results, args.calls, command, started, loads)
    raw = {tool: [session.__dict__ for session in sessions] for tool, sessions in results.items()}
    (LOG_DIR / "locals-raw.json").write_text(json.dumps(raw, indent=2))
    print(body)
    if not args.no_doc:
        write_doc_section(DOC, "locals", body)
        log(f"wrote the locals section of {DOC}")
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except (BenchError, BuildError) as e:
        log(f"locals benchmark: {e}")
        sys.exit(1)
