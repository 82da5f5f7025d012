#!/bin/sh
# The README's test command: installs what is missing, then runs every test.
# Each integration test starts the servers it needs itself (the local identity endpoint
# in-process), so nothing has to be started by hand.
set -eu
cd "$(dirname "$0")/.."

# Release builds of the benches and the test binaries share target/; keep it between runs.
cargo test --all-features --no-fail-fast "$@"
