#!/usr/bin/env bash
# The test command (README, .ci/run): set-up, then every test in the workspace.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
./scripts/setup.sh
export CI="${CI:-}"
cargo build --workspace --all-targets
cargo test --workspace --no-fail-fast -- --test-threads=2
