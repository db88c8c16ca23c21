#!/usr/bin/env bash
# Fuzzes the expression parser, the secret scrubber and every tool's
# arguments (over a real MCP session, dead pid) with proptest, in rounds,
# until FUZZ_SECONDS (default 600) have passed. Each round draws new random
# seeds; any failure stops the run and prints the minimal failing input.
#   tools/fuzz.sh              # 10 minutes
#   FUZZ_SECONDS=60 tools/fuzz.sh
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${FUZZ_SECONDS:-600}
lib_cases=${FUZZ_LIB_CASES:-20000}
tool_cases=${FUZZ_TOOL_CASES:-3000}
cargo build --tests --quiet
# The server's warnings about refused arguments are expected: kept in a log,
# shown only when a round fails.
log=$(mktemp -t liveprobe-fuzz.XXXXXX)
trap 'echo "fuzz: FAILED; last output:"; tail -n 60 "$log"' ERR
start=$(date +%s)
rounds=0
while (( $(date +%s) - start < seconds )); do
    PROPTEST_CASES=$lib_cases cargo test --quiet --lib -- parse_fuzz secrets::fuzz >"$log" 2>&1
    PROPTEST_CASES=$tool_cases cargo test --quiet --test fuzz_tools -- --test-threads=1 >"$log" 2>&1
    rounds=$((rounds + 1))
    echo "fuzz: round $rounds passed ($((rounds * lib_cases)) parser and scrubber cases each, $((rounds * tool_cases)) tool calls) after $(( $(date +%s) - start ))s"
done
rm -f "$log"
echo "fuzz: no panic, overflow or hang in $(( $(date +%s) - start ))s, $rounds rounds"
