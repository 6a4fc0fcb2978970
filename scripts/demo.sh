#!/usr/bin/env bash
# The demo: starts two local PostgreSQL servers, loads a sample shop, migrates it online with
# filters and renames (schema, snapshot, then the changes the shop keeps making while ferry
# runs), stops the job, verifies the sink row by row, then stops the servers.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
# The dev profile (dependencies optimised, see Cargo.toml) is the one the tests build, so the
# demo needs no second full build; the benchmarks (benches/, `ferry-bench`) build in release.
cargo run --locked -- demo "$@"
