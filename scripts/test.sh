#!/usr/bin/env bash
# The test command: format check, clippy with warnings as errors, and every test (unit tests
# and integration tests on real PostgreSQL servers the harness starts and stops itself).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
cargo fmt --all -- --check
cargo clippy --workspace --all-targets --locked -- -D warnings
log=$(mktemp)
trap 'rm -f "$log"' EXIT
cargo test --workspace --locked 2>&1 | tee "$log"
# One closing line with the totals over every test binary (cargo prints one line per binary).
awk '/^test result:/ { passed += $4; failed += $6 } END { printf "tests: %d passed, %d failed\n", passed, failed }' "$log"
