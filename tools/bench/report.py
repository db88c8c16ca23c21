"""Figures and their write-up: summaries of repeated measurements, the machine a run
was made on, markdown tables, and the benchmark's section of docs/benchmarks.md.

Owns: the format of docs/benchmarks.md (one section per benchmark, between
`<!-- bench:NAME:begin -->` and `<!-- bench:NAME:end -->` markers, so each driver
rewrites only its own). Never: measures anything or writes a number that a driver
did not measure in the same run.
"""

from __future__ import annotations

import datetime
import os
import platform
import resource
import statistics
from dataclasses import dataclass
from pathlib import Path

DOC_TITLE = """# liveprobe benchmarks

Each section below was written by the benchmark driver named in it, from numbers
measured in one run against a baseline (gdb) measured in the same run. Rerun a
section with the command it shows; the driver rewrites only that section. These are
measurements, not tests: nothing in the test suite asserts on time.

The drivers are in `tools/bench/` (Python 3.11, standard library only). They build
what they need (`cargo build --release` of liveprobe, the targets into `target/`),
drive the real `liveprobe` binary over MCP stdio as a client would, and need `gdb`,
`gcc` and `chrt` on the machine; run them as root or with `CAP_SYS_PTRACE` (and
`CAP_SYS_NICE` for the real-time heartbeat). Options: `--help`; `--no-doc` prints the
report without touching this file. Raw figures and logs go to `target/bench-logs/`.

| benchmark | command | takes |
|---|---|---|
| attach to a huge binary and resolve file:line (issue 2) | `python3 tools/bench/attach.py` | ~10 min cold (big target build), then ~2–5 min |
| read_locals vs gdb, warm (issue 3) | `python3 tools/bench/locals.py` | ~1–4 min |
| probe overhead per hit vs gdb and bpftrace (issue 4) | `python3 tools/bench/probes.py` | ~6 min (+ build); bpftrace via `apt-get install bpftrace` |
"""


@dataclass
class Summary:
    """Median, minimum and maximum of repeated measurements of one figure."""

    median: float
    minimum: float
    maximum: float
    count: int

    @staticmethod
    def of(values: list[float]) -> "Summary | None":
        """The summary of `values`, or None if there are none."""
        if not values:
            return None
        return Summary(statistics.median(values), min(values), max(values), len(values))

    def render(self, digits: int = 1) -> str:
        """`median (min–max)`."""
        return f"{self.median:.{digits}f} ({self.minimum:.{digits}f}–{self.maximum:.{digits}f})"


def render_summary(summary: Summary | None, digits: int = 1) -> str:
    """A table cell for a summary; `—` when nothing was measured."""
    return "—" if summary is None else summary.render(digits)


def ratio(numerator: Summary | None, denominator: Summary | None) -> float | None:
    """The ratio of two medians, or None when either is missing or the denominator is 0."""
    if numerator is None or denominator is None or denominator.median == 0:
        return None
    return numerator.median / denominator.median


def render_ratio(value: float | None, digits: int = 3) -> str:
    """A table cell for a ratio."""
    if value is None:
        return "—"
    if 0 < value < 10**-digits:
        return f"< {10**-digits:.{digits}f}×"
    return f"{value:.{digits}f}×"


def verdict(met: bool | None) -> str:
    """A table cell saying whether a goal was met."""
    if met is None:
        return "not measured"
    return "met" if met else "**not met**"


def markdown_table(header: list[str], rows: list[list[str]]) -> str:
    """A GitHub markdown table."""
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def cpu_model() -> str:
    """The CPU model name from /proc/cpuinfo."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def machine_description() -> str:
    """One line about the machine: cores, CPU, memory, kernel."""
    memory_gib = "?"
    try:
        with open("/proc/meminfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("MemTotal:"):
                    memory_gib = f"{int(line.split()[1]) / 1024 / 1024:.0f}"
                    break
    except OSError:
        pass
    return (
        f"nproc {os.cpu_count()}, {cpu_model()}, {memory_gib} GiB RAM, "
        f"Linux {platform.release()}"
    )


def driver_peak_rss_mib() -> float:
    """The driver's own peak RSS. A child spawned with vfork+exec (as subprocess does)
    inherits it as the starting value of its `ru_maxrss`, so it is a floor for every
    tool's figure."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def load_average() -> float:
    """The 1-minute load average: how busy the machine was besides the benchmark."""
    try:
        return os.getloadavg()[0]
    except OSError:
        return float("nan")


def today() -> str:
    """The date and time of the run, UTC."""
    return datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")


def write_doc_section(doc_path: Path, name: str, body: str) -> None:
    """Replaces (or appends) the section `name` of the benchmarks document with `body`."""
    begin = f"<!-- bench:{name}:begin -->"
    end = f"<!-- bench:{name}:end -->"
    block = f"{begin}\n{body.rstrip()}\n{end}\n"
    text = doc_path.read_text(encoding="utf-8") if doc_path.exists() else DOC_TITLE
    if begin in text and end in text:
        head, rest = text.split(begin, 1)
        _, tail = rest.split(end, 1)
        tail = tail.lstrip("\n")
        text = head + block + ("\n" + tail if tail else "")
    else:
        text = text.rstrip("\n") + "\n\n" + block
    doc_path.parent.mkdir(parents=True, exist_ok=True)
    doc_path.write_text(text, encoding="utf-8")
