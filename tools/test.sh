#!/usr/bin/env bash
# The test command of the README: installs what the tests need on a fresh
# machine of this kind (gcc, g++, gdb, rustc are expected; strip comes with
# binutils), then runs every test against real processes.
set -euo pipefail
cd "$(dirname "$0")/.."
missing=()
for tool in gcc g++ gdb strip addr2line rustc; do
  command -v "$tool" >/dev/null 2>&1 || missing+=("$tool")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "installing: ${missing[*]}" >&2
  apt-get update -qq && apt-get install -y -qq gcc g++ gdb binutils >/dev/null
fi
# The client-compatibility tests drive liveprobe with the official Python SDK
# and the MCP Inspector CLI.
python3 -c 'import importlib.metadata as m, sys; sys.exit(0 if m.version("mcp").startswith("2.") else 1)' 2>/dev/null \
  || python3 -m pip install -q 'mcp>=2,<3'
command -v mcp-inspector >/dev/null 2>&1 \
  || npm install -g -s @modelcontextprotocol/inspector >/dev/null
# tests/e2e_policy.rs validates deploy/kubernetes/ against the Kubernetes
# schemas (bundled in the package: no network once installed).
command -v kubernetes-validate >/dev/null 2>&1 \
  || python3 -m pip install -q kubernetes-validate
# Real programs nobody here wrote (Lua from crates.io's lua-src, a hyper +
# tokio server, an Asio C++ server), built with full DWARF into target/real
# for tests/real_*.rs. The first run fetches their sources with cargo and
# apt; later runs reuse the build.
# libc6-dbg: libc's DWARF, so frames inside libc (epoll_wait, read) have
# arguments the tests can check.
if [ ! -f /usr/include/asio.hpp ] || ! dpkg -s libc6-dbg >/dev/null 2>&1; then
  apt-get update -qq && apt-get install -y -qq libasio-dev libc6-dbg >/dev/null
fi
./tests/real/build.sh
# tests/e2e_mcp_shape.rs validates every schema and answer with Ajv in strict
# mode (as strict MCP clients do); it needs node and this helper's packages.
command -v node >/dev/null 2>&1 || { apt-get update -qq && apt-get install -y -qq nodejs npm >/dev/null; }
(cd tests/schema-check && npm install --silent --no-audit --no-fund >/dev/null)
# tests/e2e_http.rs drives `liveprobe --http` with the MCP Inspector CLI at a
# version that has --header (the bearer token).
(cd tests/inspector && npm install --silent --no-audit --no-fund >/dev/null)
# Tests attach with ptrace to processes they start; they need root or
# CAP_SYS_PTRACE (or kernel.yama.ptrace_scope=0).
# Tests run on parallel threads (TEST_THREADS overrides the default, the
# number of CPUs): each test gets its own copies of its fixture binaries
# (tests/common: target/fixtures/run-*), so no kernel uprobe of one test can
# sit on another test's processes.
if [ -n "${TEST_THREADS:-}" ]; then
  cargo test --all-targets --no-fail-fast -- --test-threads="$TEST_THREADS" "$@"
else
  cargo test --all-targets --no-fail-fast -- "$@"
fi
