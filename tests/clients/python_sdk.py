"""Drives liveprobe with the official Python MCP SDK (2.x), as an agent's client would.

Usage: python_sdk.py LIVEPROBE_BINARY PID
Prints one JSON object with what it saw; exits non-zero on any failure.
"""
import asyncio
import json
import sys

from mcp import Client, StdioServerParameters


async def main(binary: str, pid: int) -> None:
    params = StdioServerParameters(command=binary, args=[])
    async with Client(params, read_timeout_seconds=60) as client:
        tools = await client.list_tools()
        names = sorted(t.name for t in tools.tools)
        attached = await client.call_tool("attach", {"pid": pid})
        if attached.is_error:
            raise SystemExit(f"attach failed: {attached.content}")
        stack = await client.call_tool("stack_trace", {"pid": pid, "all_threads": True})
        if stack.is_error:
            raise SystemExit(f"stack_trace failed: {stack.content}")
        functions = sorted(
            {
                f.get("function")
                for t in stack.structured_content["threads"]
                for f in t["frames"]
                if f.get("function")
            }
        )
        bad = await client.call_tool("attach", {"pid": 999999999})
        detached = await client.call_tool("detach", {"pid": pid})
        print(
            json.dumps(
                {
                    "tools": names,
                    "threads": attached.structured_content["threads"],
                    "functions": functions,
                    "bad_pid_is_error": bool(bad.is_error),
                    "detached": detached.structured_content["pid"],
                }
            )
        )


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], int(sys.argv[2])))
