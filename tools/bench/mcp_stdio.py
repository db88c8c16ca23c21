"""A minimal MCP client over stdio, as an agent's client drives liveprobe.

Owns: starting one `liveprobe` server process, the JSON-RPC exchange (one JSON
object per line), and reaping the process with its resource usage (peak RSS).
Never: interprets tool answers (the drivers do) or times anything itself beyond
what a caller asks for; never writes to the server's stdout or reads its stderr
(that goes to a log file the caller names).
"""

from __future__ import annotations

import json
import os
import queue
import subprocess
import threading
import time
from dataclasses import dataclass
from typing import Any

PROTOCOL_VERSION = "2025-06-18"


class McpError(RuntimeError):
    """The server answered with a JSON-RPC error, went away, or did not answer in time."""


@dataclass
class ToolAnswer:
    """One `tools/call` answer."""

    structured: dict[str, Any] | None
    """`result.structuredContent`: the data."""
    text: str
    """The text content blocks, joined: what a person would read."""
    is_error: bool
    """`result.isError`: the tool failed and `text` says why."""
    elapsed_s: float
    """From writing the request to reading its answer."""


@dataclass
class ProcessEnd:
    """How the server process ended."""

    exit_status: int
    peak_rss_kib: int
    """`ru_maxrss` from wait4: the process's peak resident set, in KiB."""
    lifetime_s: float
    """From spawn to reaping."""


class McpStdioSession:
    """One liveprobe server process and the MCP session with it."""

    def __init__(self, command: list[str], stderr_path: str, env: dict[str, str] | None = None):
        self._stderr = open(stderr_path, "ab")
        self._spawned_at = time.perf_counter()
        self.process = subprocess.Popen(
            command,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self._stderr,
            env=env,
        )
        self._lines: queue.Queue[bytes | None] = queue.Queue()
        self._reader = threading.Thread(target=self._read_stdout, daemon=True)
        self._reader.start()
        self._next_id = 1

    def _read_stdout(self) -> None:
        stdout = self.process.stdout
        assert stdout is not None
        for line in stdout:
            self._lines.put(line)
        self._lines.put(None)

    def _send(self, message: dict[str, Any]) -> None:
        stdin = self.process.stdin
        if stdin is None or stdin.closed:
            raise McpError("the server's stdin is closed")
        try:
            stdin.write(json.dumps(message).encode() + b"\n")
            stdin.flush()
        except BrokenPipeError as e:
            raise McpError(f"the server went away: {e}") from e

    def request(self, method: str, params: dict[str, Any], timeout_s: float = 120.0) -> tuple[dict[str, Any], float]:
        """Sends one request; returns its `result` and the seconds it took.

        Notifications and requests from the server that arrive meanwhile are skipped.
        """
        request_id = self._next_id
        self._next_id += 1
        started = time.perf_counter()
        self._send({"jsonrpc": "2.0", "id": request_id, "method": method, "params": params})
        deadline = started + timeout_s
        while True:
            remaining = deadline - time.perf_counter()
            if remaining <= 0:
                raise McpError(f"no answer to {method} within {timeout_s:.0f} s")
            try:
                line = self._lines.get(timeout=remaining)
            except queue.Empty:
                continue
            if line is None:
                raise McpError(f"the server closed stdout while {method} was pending (see its stderr log)")
            elapsed = time.perf_counter() - started
            try:
                message = json.loads(line)
            except json.JSONDecodeError as e:
                raise McpError(f"the server wrote a line that is not JSON: {line[:200]!r}") from e
            if message.get("id") != request_id or "method" in message:
                continue
            if "error" in message:
                raise McpError(f"{method} failed: {message['error']}")
            return message.get("result", {}), elapsed

    def notify(self, method: str, params: dict[str, Any] | None = None) -> None:
        """Sends a notification (no answer expected)."""
        message: dict[str, Any] = {"jsonrpc": "2.0", "method": method}
        if params is not None:
            message["params"] = params
        self._send(message)

    def initialize(self) -> dict[str, Any]:
        """The MCP handshake: `initialize`, then `notifications/initialized`."""
        result, _ = self.request(
            "initialize",
            {
                "protocolVersion": PROTOCOL_VERSION,
                "capabilities": {},
                "clientInfo": {"name": "liveprobe-bench", "version": "0.1"},
            },
            timeout_s=30.0,
        )
        self.notify("notifications/initialized")
        return result

    def call_tool(self, name: str, arguments: dict[str, Any], timeout_s: float = 120.0) -> ToolAnswer:
        """One `tools/call`, timed from request to answer."""
        result, elapsed = self.request("tools/call", {"name": name, "arguments": arguments}, timeout_s)
        text = "\n".join(block.get("text", "") for block in result.get("content", []) if isinstance(block, dict))
        return ToolAnswer(
            structured=result.get("structuredContent"),
            text=text,
            is_error=bool(result.get("isError", False)),
            elapsed_s=elapsed,
        )

    def close(self, timeout_s: float = 30.0) -> ProcessEnd:
        """Closes the server's stdin (it must then clean up and exit) and reaps it.

        Kills the process if it does not exit within `timeout_s`.
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
        # Popen must not try to reap the pid again.
        self.process.returncode = os.waitstatus_to_exitcode(status)
        self._reader.join(timeout=5)
        self._stderr.close()
        return ProcessEnd(
            exit_status=self.process.returncode,
            peak_rss_kib=usage.ru_maxrss,
            lifetime_s=lifetime,
        )
