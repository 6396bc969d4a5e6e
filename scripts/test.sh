#!/usr/bin/env bash
# The test command (README, .ci/run): set-up, the formatting and lint gates, then every test
# in the workspace.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
./scripts/setup.sh
export CI="${CI:-}"
# Gates before the tests: formatting, and every clippy warning is an error (the workspace's
# [workspace.lints] deny unwrap outside tests and unsafe blocks without SAFETY comments).
cargo fmt --all --check
cargo clippy --workspace --all-targets -- -D warnings
cargo build --workspace --all-targets
cargo test --workspace --no-fail-fast -- --test-threads=2
