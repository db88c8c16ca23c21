"""Drives liveprobe over streamable HTTP with the official Python MCP SDK (2.x).

Usage: python_http.py URL TOKEN PID MODE
MODE is "legacy" (initialize: a 2025-11-25 session) or "auto" (server/discover:
2026-07-28 stateless requests). The client lists tools, attaches to PID, sets a
snapshot at process_order (the session's own, armed for 1000 hits) and a count metric at make_order
(keep: true), prints one JSON line "armed" with both probes, waits for a line
on stdin (the test runs the fixture meanwhile), reads the snapshot, prints a
second JSON line and closes (a session ends with DELETE).
"""
import asyncio
import json
import sys

import httpx2
from mcp import Client
from mcp.client.streamable_http import streamable_http_client


def emit(obj) -> None:
    print(json.dumps(obj), flush=True)


async def main(url: str, token: str, pid: int, mode: str) -> None:
    http = httpx2.AsyncClient(headers={"Authorization": f"Bearer {token}"}, timeout=60)
    transport = streamable_http_client(url, http_client=http)
    async with Client(transport, read_timeout_seconds=60, mode=mode) as client:
        tools = await client.list_tools()
        names = sorted(t.name for t in tools.tools)
        attached = await client.call_tool("attach", {"pid": pid})
        if attached.is_error:
            raise SystemExit(f"attach failed: {attached.content}")
        own = await client.call_tool(
            "set_snapshot",
            {"pid": pid, "location": "process_order", "engine": "ptrace", "max_hits": 1000},
        )
        if own.is_error:
            raise SystemExit(f"set_snapshot failed: {own.content}")
        kept = await client.call_tool(
            "set_metric",
            {"pid": pid, "location": "make_order", "kind": "count", "engine": "ptrace", "keep": True},
        )
        if kept.is_error:
            raise SystemExit(f"set_metric failed: {kept.content}")
        emit(
            {
                "tools": names,
                "own": own.structured_content["probe_id"],
                "own_address": own.structured_content["resolved"][0]["address"],
                "kept": kept.structured_content["probe_id"],
                "kept_address": kept.structured_content["resolved"][0]["address"],
            }
        )
        sys.stdin.readline()
        got = await client.call_tool(
            "get_probe_results",
            {"probe_id": own.structured_content["probe_id"], "wait_ms": 20000},
        )
        if got.is_error:
            raise SystemExit(f"get_probe_results failed: {got.content}")
        items = got.structured_content["items"]
        listed = await client.call_tool("list_probes", {})
        emit(
            {
                "snapshot_hits": len(items),
                "first_locals": sorted(v["name"] for v in items[0]["frames"][0]["variables"]) if items else [],
                "listed": sorted(p["probe_id"] for p in listed.structured_content["probes"]),
            }
        )
    await http.aclose()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]))
