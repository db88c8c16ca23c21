"""A child process spoken to in lines: commands to its stdin, answers read from its
stdout with a timeout (a reader thread feeds a queue, so a stuck child cannot hang
the driver).

Owns: spawning and reaping such a child (with its peak RSS). Never: interprets what
the child says.
"""

from __future__ import annotations

import os
import queue
import subprocess
import threading
import time
from pathlib import Path


class LineProcessError(RuntimeError):
    """The child went away or did not answer in time."""


class LineProcess:
    """One child process with piped stdin and stdout."""

    def __init__(self, command: list[str], stderr_path: Path | None = None, merge_stderr: bool = False):
        self.command = command
        self._stderr = open(stderr_path, "ab") if stderr_path is not None and not merge_stderr else None
        self._spawned_at = time.perf_counter()
        self.process = subprocess.Popen(
            command,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT if merge_stderr else self._stderr,
        )
        self._lines: queue.Queue[bytes | None] = queue.Queue()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        self.transcript: list[str] = []
        """Every line the child wrote, for the log."""

    @property
    def pid(self) -> int:
        return self.process.pid

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self._lines.put(line)
        self._lines.put(None)

    def send(self, text: str) -> None:
        """Writes `text` (add the newlines yourself) and flushes."""
        stdin = self.process.stdin
        if stdin is None or stdin.closed:
            raise LineProcessError(f"{self.command[0]}: stdin is closed")
        try:
            stdin.write(text.encode())
            stdin.flush()
        except BrokenPipeError as e:
            raise LineProcessError(f"{self.command[0]} went away") from e

    def read_line(self, timeout_s: float) -> str:
        """The next line, without its newline."""
        try:
            line = self._lines.get(timeout=timeout_s)
        except queue.Empty as e:
            raise LineProcessError(f"{self.command[0]} wrote nothing for {timeout_s:.0f} s") from e
        if line is None:
            raise LineProcessError(f"{self.command[0]} closed its output (exited?)")
        text = line.decode(errors="replace").rstrip("\n")
        self.transcript.append(text)
        return text

    def read_until(self, sentinel: str, timeout_s: float) -> list[str]:
        """Lines up to (not including) the first one that contains `sentinel`."""
        deadline = time.perf_counter() + timeout_s
        lines: list[str] = []
        while True:
            line = self.read_line(max(0.001, deadline - time.perf_counter()))
            if sentinel in line:
                return lines
            lines.append(line)

    def close(self, timeout_s: float = 30.0) -> tuple[int, int, float]:
        """Closes stdin, reaps the child (killing it after `timeout_s`).

        Returns (exit status, peak RSS in KiB, seconds since spawn).
        """
        stdin = self.process.stdin
        if stdin is not None and not stdin.closed:
            try:
                stdin.close()
            except BrokenPipeError:
                pass
        deadline = time.perf_counter() + timeout_s
        while True:
            pid, status, usage = os.wait4(self.process.pid, os.WNOHANG)
            if pid != 0:
                break
            if time.perf_counter() > deadline:
                self.process.kill()
                pid, status, usage = os.wait4(self.process.pid, 0)
                break
            time.sleep(0.005)
        lifetime = time.perf_counter() - self._spawned_at
        self.process.returncode = os.waitstatus_to_exitcode(status)
        self._reader.join(timeout=5)
        if self._stderr is not None:
            self._stderr.close()
        return self.process.returncode, usage.ru_maxrss, lifetime
