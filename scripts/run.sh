#!/usr/bin/env bash
# The run command (README): set up this machine, build Virga, start `virgad` (one daemon with
# its embedded SQLite state under $VIRGA_RUN_DIR, default ~/.cache/virga/run), then boot a guest
# through the real `openstack` client: a kernel image (our tiny test guest, which boots in
# milliseconds here; a Linux kernel takes minutes on this machine's software KVM), a qcow2 root
# disk image, a key pair, user data, `server create --wait`, and the guest's console log.
# virgad then keeps serving until Ctrl-C; with VIRGA_RUN_ONCE=1 the server is deleted and the
# daemon stopped at once.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"

log() { printf '[run] %s\n' "$*" >&2; }

./scripts/setup.sh
log "building (release)"
cargo build --release --bins -p virga >&2
cargo build --release -p tiny-guest >&2

cache=${VIRGA_CACHE:-$HOME/.cache/virga}
run_dir=${VIRGA_RUN_DIR:-$cache/run}
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

"$bin/virgad" --config "$config" >>"$run_dir/virgad.log" 2>&1 &
daemon=$!

export OS_AUTH_URL="http://127.0.0.1:$port/identity/v3" OS_IDENTITY_API_VERSION=3
export OS_USERNAME=admin OS_PASSWORD="$password" OS_PROJECT_NAME=admin
export OS_USER_DOMAIN_NAME=Default OS_PROJECT_DOMAIN_NAME=Default
openstack="$cache/venv-openstack/current/bin/openstack"

cleanup() {
  if [ "${VIRGA_RUN_ONCE:-}" = 1 ]; then
    "$openstack" server delete --wait vm1 >/dev/null 2>&1 || true
  fi
  kill "$daemon" 2>/dev/null || true
  wait "$daemon" 2>/dev/null || true
}
trap cleanup EXIT INT TERM

for _ in $(seq 100); do
  curl -fsS "http://127.0.0.1:$port/identity/v3" >/dev/null 2>&1 && break
  kill -0 "$daemon" 2>/dev/null || { log "virgad exited; see $run_dir/virgad.log"; exit 1; }
  sleep 0.1
done
log "virgad is up: $OS_AUTH_URL (admin / $password), log $run_dir/virgad.log"

os() { "$openstack" "$@"; }
# A previous run's server and images are replaced.
os server delete --wait vm1 >/dev/null 2>&1 || true
for i in $(os image list -f value -c ID --name demo-kernel) $(os image list -f value -c ID --name demo); do
  os image delete "$i"
done

guest=$(ls -t target/release/build/tiny-guest-*/out/virga-tiny.elf | head -n1)
kernel=$(os image create --disk-format aki --container-format bare --file "$guest" \
  demo-kernel -f value -c id)
disk="$run_dir/demo-root.qcow2"
[ -e "$disk" ] || qemu-img create -q -f qcow2 "$disk" 64M
os image create --disk-format qcow2 --container-format bare --file "$disk" \
  --property "kernel_id=$kernel" demo -f value -c id >/dev/null
os flavor show demo.tiny >/dev/null 2>&1 ||
  os flavor create --ram 64 --disk 1 --vcpus 1 demo.tiny >/dev/null
os keypair show demo >/dev/null 2>&1 || os keypair create demo >"$run_dir/demo-key.pem"
printf '#tiny\necho hello from cloud-init user data\n' >"$run_dir/user-data"

log "openstack server create --wait vm1"
start=$(date +%s%N)
os server create --flavor demo.tiny --image demo --key-name demo \
  --user-data "$run_dir/user-data" --wait vm1 -f value -c status
log "ACTIVE after $((($(date +%s%N) - start) / 1000000)) ms (including the client's own start-up and polling)"
os server list
# ACTIVE means the VMM runs the guest (as Nova); its user space may still be coming up.
for _ in 1 2 3 4 5 6 7 8 9 10; do
  os console log show vm1 | grep -q 'hello from cloud-init user data' && break
  sleep 0.5
done
log "console log of vm1:"
os console log show vm1

if [ "${VIRGA_RUN_ONCE:-}" = 1 ]; then
  exit 0
fi
log "virgad keeps serving (vm1 runs); Ctrl-C stops the daemon (guests outlive it and are adopted next start)"
wait "$daemon"
