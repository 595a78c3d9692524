#!/usr/bin/env bash
# Runs the load and query benchmark (see benches/load/main.rs and docs/PERFORMANCE.md).
#   bash benches/run.sh           full run (a few minutes; builds a 1M-row store once)
#   bash benches/run.sh --smoke   seconds; checks the harness works (CI)
# Needs nothing but cargo: the load generator is the Rust client in benches/load.
set -euo pipefail
cd "$(dirname "$0")/.."
# 1,000 concurrent connections need more descriptors than the common default of 1024.
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)" || true
cargo build --release --bin recording-events
cargo bench --bench load -- "$@"
