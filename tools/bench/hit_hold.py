#!/usr/bin/env python3
"""Benchmark (issue 10): how long a ptrace-engine hit holds the hitting thread.

Run from anywhere:  python3 tools/bench/hit_hold.py               (~1 min + build)
                    python3 tools/bench/hit_hold.py --probes 20 --calls 4000
                    python3 tools/bench/hit_hold.py --liveprobe target/debug/liveprobe
                    python3 tools/bench/hit_hold.py --baseline /path/to/older/liveprobe
                    python3 tools/bench/hit_hold.py --floor --pin 1

A ptrace hit only copies: the tracer reads the thread's registers and the memory the
probe's capture plan names (batched process_vm_readv), resumes the thread, and only
then evaluates the condition and records, on the copy. Each snapshot item says how
long its hit held the thread (`held_us`: stop seen by the tracer to thread resumed),
and `list_probes` gives the mean and max over every hit, recorded or filtered.

The target is tools/bench/probes_target.c (gcc -g -O0): `run N` calls
`probe_work(a, b)` N times with a = 0, 1, 2, ... For each of --probes fresh probes,
the driver sets `set_snapshot {location: probe_work, engine: ptrace,
condition: "a % STEP == 0", max_hits: 100}` on the idle target (everything is decided
then), runs --calls calls, and reads the 100 items. It prints, in µs: the median and
p99 of `held_us` over all recorded hits, the first hit of each probe (median and max
over the probes), and the mean/max `list_probes` reports (all hits, filtered ones
included). Goal: median <= 10 us, first hit <= 1 ms. It writes nothing into docs/.

With --baseline BINARY the same runs are made, in the same process of the target and
alternating probe by probe, with an older liveprobe (one whose items have no `held_us`:
a ptrace hit then held its thread for the whole handler), and the list_probes figures of
both are printed side by side with their ratio.

With --floor, tools/bench/ptrace_hold_floor.c (gcc -O2) runs once after each probe, on
--calls hits: a minimal C tracer doing only what any copying ptrace hit must do
(PTRACE_GETREGS, one process_vm_readv, PTRACE_POKEUSER of rip, PTRACE_CONT), timed as
`held_us` is. Its median is the floor under liveprobe's figure on this machine; it also
prints what each of those calls costs. With --pin CPU, the target, liveprobe and the floor
tracer all run under `taskset -c CPU`: the tracer then resumes a thread on its own CPU,
without waking another (on a virtual machine, waking an idle vCPU is an inter-processor
interrupt through the hypervisor, and it is most of PTRACE_CONT's cost).
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from line_process import LineProcess  # noqa: E402
from mcp_stdio import McpStdioSession  # noqa: E402
from targets import TARGET_DIR, build_c_fixture, build_liveprobe, log  # noqa: E402

FIXTURE_SOURCE = Path(__file__).resolve().parent / "probes_target.c"
FLOOR_SOURCE = Path(__file__).resolve().parent / "ptrace_hold_floor.c"
LOG_DIR = TARGET_DIR / "bench-logs"
ITEMS = 100


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))
    return ordered[index]


def call(session: McpStdioSession, tool: str, arguments: dict) -> dict:
    answer = session.call_tool(tool, arguments)
    if answer.is_error or answer.structured is None:
        raise RuntimeError(f"{tool} failed: {answer.text}")
    return answer.structured


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--probes", type=int, default=10, help="fresh probes, one run each (default 10)")
    parser.add_argument("--calls", type=int, default=2000, help="calls of probe_work per run (default 2000)")
    parser.add_argument("--no-build", action="store_true", help="use target/release/liveprobe as it is")
    parser.add_argument("--liveprobe", type=Path, help="run this liveprobe binary instead (e.g. a debug build, to check the script)")
    parser.add_argument("--liveprobe-arg", action="append", default=[], help="extra server argument (repeatable)")
    parser.add_argument("--baseline", type=Path, help="also run this older liveprobe binary and print the ratio")
    parser.add_argument("--floor", action="store_true", help="also run the minimal C tracer (the floor) after each probe")
    parser.add_argument("--pin", metavar="CPU", help="run the target, liveprobe and the floor tracer on this one CPU (taskset -c)")
    args = parser.parse_args()
    if args.calls < ITEMS:
        parser.error(f"--calls must be at least {ITEMS}")
    step = args.calls // ITEMS

    liveprobe = args.liveprobe or build_liveprobe(build=not args.no_build)
    binary = build_c_fixture(FIXTURE_SOURCE)
    floor = build_c_fixture(FLOOR_SOURCE, ["-O2"]) if args.floor else None
    floors: list[dict] = []
    LOG_DIR.mkdir(parents=True, exist_ok=True)
    runs = {"liveprobe": (liveprobe, Measured())}
    if args.baseline:
        runs["baseline"] = (args.baseline, Measured())
    # Alternate probe by probe, so both see the same machine.
    for n in range(args.probes):
        for name, (server, measured) in runs.items():
            measure_one(server, binary, args, step, measured, f"{name} {n + 1}/{args.probes}")
        if floor:
            floors.append(run_floor(floor, args))

    held, first, means, maxes = runs["liveprobe"][1].fields()
    print(f"Held time per ptrace hit, snapshot with condition `a % {step} == 0` on probe_work")
    print(f"({args.probes} probes x {args.calls} calls, {len(held)} recorded hits):")
    print(f"  recorded hits: median {statistics.median(held):.1f} us, p99 {percentile(held, 0.99):.1f} us, max {max(held):.1f} us")
    print(f"  first hit of a probe: median {statistics.median(first):.1f} us, max {max(first):.1f} us")
    print(f"  list_probes over all hits: mean {statistics.mean(means):.1f} us (per-probe means averaged), max {max(maxes):.1f} us")
    extra = runs["liveprobe"][1].extra
    print(f"  the target's own view, extra per call (every call traps): median {statistics.median(extra):.1f} us "
          f"({min(extra):.1f}-{max(extra):.1f})")
    if floors:
        floor_median = statistics.median(f["hold_median_ns"] for f in floors) / 1000.0
        print(f"The floor (minimal C tracer, {args.probes} runs x {args.calls} hits): median of run medians "
              f"{floor_median:.1f} us; liveprobe/floor {statistics.median(held) / floor_median:.2f}x")
        for call_name in ("getregs_ns", "process_vm_readv_ns", "pokeuser_rip_ns", "cont_ns"):
            print(f"  {call_name[:-3]}: median {statistics.median(f[call_name] for f in floors) / 1000.0:.1f} us")
    if args.pin is not None:
        print(f"  (target, liveprobe and floor pinned to CPU {args.pin})")
    if args.baseline:
        base_extra = runs["baseline"][1].extra
        print(f"Baseline extra per call (the target's view): median {statistics.median(base_extra):.1f} us "
              f"({min(base_extra):.1f}-{max(base_extra):.1f}); ratio liveprobe/baseline "
              f"{statistics.median(extra) / statistics.median(base_extra):.3f}x")
        _, _, base_means, base_maxes = runs["baseline"][1].fields()
        print(f"Baseline {args.baseline} (list_probes: handler time while the thread was held):")
        print(f"  mean {statistics.mean(base_means):.1f} us, max {max(base_maxes):.1f} us")
        print(f"  ratio liveprobe/baseline: mean {statistics.mean(means) / statistics.mean(base_means):.3f}x, "
              f"max {max(maxes) / max(base_maxes):.3f}x")
    return 0


class Measured:
    """Figures of one server over its probes."""

    def __init__(self) -> None:
        self.held: list[float] = []
        self.first: list[float] = []
        self.means: list[float] = []
        self.maxes: list[float] = []
        # The target's own view: extra µs per call of the probed run over an
        # unprobed run of the same process (trap, tracer, copy, resume).
        self.extra: list[float] = []

    def fields(self) -> tuple[list[float], list[float], list[float], list[float]]:
        return self.held, self.first, self.means, self.maxes


def pinned(argv: list[str], args: argparse.Namespace) -> list[str]:
    """`argv` under `taskset -c CPU` when --pin is given (taskset execs: the pid stays)."""
    return ["taskset", "-c", str(args.pin), *argv] if args.pin is not None else argv


def run_floor(floor: Path, args: argparse.Namespace) -> dict:
    """One run of the minimal C tracer; its JSON line."""
    done = subprocess.run(pinned([str(floor), str(args.calls)], args), capture_output=True, text=True, timeout=600)
    if done.returncode != 0:
        raise RuntimeError(f"the floor tracer failed: {done.stderr.strip()}")
    figures = json.loads(done.stdout)
    log(f"floor: median {figures['hold_median_ns'] / 1000.0:.1f} µs")
    return figures


def measure_one(liveprobe: Path, binary: Path, args: argparse.Namespace, step: int, m: Measured, label: str) -> None:
    """One fresh target, one server, one probe: its items and list_probes row."""
    target = LineProcess(pinned([str(binary)], args), stderr_path=LOG_DIR / "hit-hold-target.stderr")
    session = McpStdioSession(
        pinned([str(liveprobe), *args.liveprobe_arg], args), stderr_path=str(LOG_DIR / "hit-hold-liveprobe.stderr")
    )
    try:
        if target.read_line(30).strip() != "ready":
            raise RuntimeError("the probes target did not say 'ready'")
        session.initialize()
        call(session, "attach", {"pid": target.pid})
        target.send(f"run {args.calls}\n")
        unprobed = target.read_line(600)
        if not unprobed.startswith("done"):
            raise RuntimeError(f"the target answered {unprobed!r}")
        probe = call(
            session,
            "set_snapshot",
            {
                "pid": target.pid,
                "location": "probe_work",
                "engine": "ptrace",
                "condition": f"a % {step} == 0",
                "max_hits": ITEMS,
            },
        )
        probe_id = probe["probe_id"]
        target.send(f"run {args.calls}\n")
        done = target.read_line(600)
        if not done.startswith("done"):
            raise RuntimeError(f"the target answered {done!r}")
        extra_ns = int(done.split()[1]) - int(unprobed.split()[1])
        m.extra.append(extra_ns / args.calls / 1000.0)
        # Answers are cut at 32 KB: page through the items.
        these: list[float] = []
        seen = 0
        after = 0
        while seen < ITEMS:
            page = call(session, "get_probe_results", {"probe_id": probe_id, "after": after, "limit": ITEMS})
            items = page.get("items", [])
            if not items:
                break
            seen += len(items)
            these.extend(item["held_us"] for item in items if "held_us" in item)
            after = page["next_after"]
        if seen != ITEMS:
            raise RuntimeError(f"probe {probe_id}: {seen} items, expected {ITEMS}")
        if these:
            m.held.extend(these)
            m.first.append(these[0])
        rows = call(session, "list_probes", {"pid": target.pid})["probes"]
        row = next(r for r in rows if r["probe_id"] == probe_id)
        m.means.append(row["mean_handler_us"])
        m.maxes.append(row["max_handler_us"])
        call(session, "remove_probe", {"probe_id": probe_id})
        log(f"{label}: mean {row['mean_handler_us']:.1f} µs, max {row['max_handler_us']:.1f} µs")
    finally:
        target.send("quit\n")
        target.close()
        session.close()


if __name__ == "__main__":
    sys.exit(main())
