#!/usr/bin/env bash
# The run command (README): set up this machine, build Virga, start `virgad` with its embedded
# SQLite state under $VIRGA_RUN_DIR (default ~/.cache/virga/run), then boot a guest and show its
# console. virgad keeps serving until Ctrl-C (or exits at once with VIRGA_RUN_ONCE=1).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"

log() { printf '[run] %s\n' "$*" >&2; }

./scripts/setup.sh
log "building (release)"
cargo build --release --bins -p virga >&2
cargo build --release -p tiny-guest >&2

run_dir=${VIRGA_RUN_DIR:-${VIRGA_CACHE:-$HOME/.cache/virga}/run}
port=${VIRGA_RUN_PORT:-5000}
password=${OS_PASSWORD:-virga-admin}
mkdir -p "$run_dir"
config="$run_dir/virgad.toml"
cat >"$config" <<EOF
[server]
listen = "127.0.0.1:$port"
data_dir = "$run_dir/data"
EOF

bin="$root/target/release"
"$bin/virgad" --config "$config" bootstrap --bootstrap-password "$password" >&2

"$bin/virgad" --config "$config" >"$run_dir/virgad.log" 2>&1 &
daemon=$!
cleanup() {
  kill "$daemon" 2>/dev/null || true
  wait "$daemon" 2>/dev/null || true
}
trap cleanup EXIT INT TERM

for _ in $(seq 100); do
  curl -fsS "http://127.0.0.1:$port/identity/v3" >/dev/null 2>&1 && break
  kill -0 "$daemon" 2>/dev/null || { log "virgad exited; see $run_dir/virgad.log"; exit 1; }
  sleep 0.1
done
log "virgad is up: http://127.0.0.1:$port/identity/v3 (admin / $password), log $run_dir/virgad.log"

# The tiny test guest boots in milliseconds on this machine's software KVM (a Linux kernel takes
# minutes and never reaches user space here; see docs/vmm.md).
guest=$(ls -t target/release/build/tiny-guest-*/out/virga-tiny.elf | head -n1)
log "booting the tiny guest with virga-vmm ($guest)"
"$bin/virga-vmm" --kernel "$guest" --memory 128 --cmdline "echo hello from Virga;poweroff" --timings
log "guest powered off (status $?)"

if [ "${VIRGA_RUN_ONCE:-}" = 1 ]; then
  exit 0
fi
log "virgad keeps serving; Ctrl-C stops it"
wait "$daemon"
