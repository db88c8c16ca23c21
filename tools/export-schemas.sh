#!/usr/bin/env bash
# Regenerates schemas/ from the tool types. Run after changing a tool's
# arguments or answer; tests/e2e_foundation.rs fails when schemas/ drifts.
set -euo pipefail
cd "$(dirname "$0")/.."
rm -f schemas/*.json
cargo run --quiet -- export-schemas schemas
