#!/usr/bin/env bash
# shellcheck source-path=SCRIPTDIR
# Manual check of the guest artifacts' user space under QEMU's TCG emulator (no KVM): on this
# project's hosts no Linux guest reaches user space under KVM (kvm_pvm), so this is where /init,
# the command parameter, Ctrl-Alt-Del, DHCP, pvpanic and the config drive were seen to work.
# Not run by CI: bookworm's qemu-system-x86 would replace the backports qemu-utils. Usage:
#   QEMU=/path/to/qemu-system-x86_64 [QEMU_DATA=dir:dir] guest/qemu-smoke.sh
# (docs/guest.md says how to unpack QEMU from Debian packages without installing it).
set -euo pipefail
GUEST_DIR=$(cd "$(dirname "$0")" && pwd)
. "$GUEST_DIR/lib.sh"
cur=$GUEST_CACHE/current
qemu=${QEMU:-qemu-system-x86_64}
command -v "$qemu" >/dev/null || die "set QEMU to a qemu-system-x86_64 binary"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
datadirs=()
IFS=: read -ra dirs <<<"${QEMU_DATA:-}"
for d in "${dirs[@]}"; do [ -n "$d" ] && datadirs+=(-L "$d"); done
failed=0

# boot NAME MACHINE KERNEL CMD CMDLINE [QEMU ARGS...]: boot once, console in $work/NAME.log.
boot() {
  local name=$1 machine=$2 kernel=$3 cmd=$4 append=$5
  shift 5
  timeout 120 "$qemu" -M "$machine" -accel tcg -cpu max -smp 2 -m 256 -nodefaults \
    -no-user-config -nographic "${datadirs[@]}" -serial stdio -no-reboot -kernel "$cur/$kernel" \
    -append "console=ttyS0 reboot=k panic=-1 i8042.nopnp virga.cmd=$(printf '%s' "$cmd" | base64 -w0) $append" \
    "$@" </dev/null >"$work/$name.log" 2>&1 && echo 0 >"$work/$name.status" || echo $? >"$work/$name.status"
}

# expect NAME LINE...: each LINE must end a line of the console log (kernel lines start with a
# timestamp), in this order.
expect() {
  local name=$1 line n=0
  shift
  for line in "$@"; do
    n=$(awk -v from="$n" -v want="$line" 'NR > from {
      sub(/\r$/, "")
      if (substr($0, length($0) - length(want) + 1) == want) { print NR; exit }
    }' "$work/$name.log")
    if [ -z "$n" ]; then
      log "FAIL $name: no line '$line' (console: $work/$name.log)"
      tail -20 "$work/$name.log" >&2
      failed=1
      trap - EXIT
      return
    fi
  done
  log "ok   $name"
}

rd=(-initrd "$cur/initramfs.cpio.gz")
# Without ACPI Linux cannot power off: this boot ends by a reboot (a triple fault, reboot=t),
# which -no-reboot turns into QEMU's exit.
boot pvh-mptable microvm,acpi=off vmlinux 'grep -c ^processor /proc/cpuinfo' \
  'reboot=t virga.halt=reboot' "${rd[@]}" \
  -chardev "file,id=port,path=$work/port" -device isa-debugcon,iobase=0x3f0,chardev=port
expect pvh-mptable VIRGA-READY VIRGA-CMD-BEGIN 2 "VIRGA-CMD-END 0" "VIRGA-REBOOT (done)"
[ "$(od -An -tu1 "$work/port" | tr -d ' ')" = 123 ] || { log "FAIL: port 0x3f0 got $(od -An -tu1 "$work/port")"; failed=1; }

boot bzimage-acpi pc bzImage 'echo out; echo err >&2; printf no-newline; exit 7' '' "${rd[@]}"
expect bzimage-acpi VIRGA-READY VIRGA-CMD-BEGIN out err no-newline "VIRGA-CMD-END 7" "VIRGA-POWEROFF (done)" \
  "ACPI: PM: Preparing to enter system sleep state S5" "reboot: Power down"

boot ext4-root pc vmlinux 'mount | grep " / "' 'root=/dev/vda rw' \
  -drive "file=$cur/rootfs.qcow2,format=qcow2,if=virtio,snapshot=on"
expect ext4-root VIRGA-READY "/dev/root on / type ext4 (rw,relatime)" "VIRGA-CMD-END 0"

boot dhcp pc bzImage 'ip -4 addr show eth0 | grep -o "inet [0-9./]*"' ip=dhcp "${rd[@]}" \
  -nic user,model=virtio-net-pci,restrict=on
expect dhcp "inet 10.0.2.15/24" "VIRGA-CMD-END 0"

# QEMU exits with 1 only when the guest's pvpanic driver reported the panic (panic=-1 would
# otherwise reboot, and -no-reboot turns that into exit status 0).
boot pvpanic pc bzImage 'ls -1 /sys/bus/platform/drivers/pvpanic-mmio; sleep 1; echo c >/proc/sysrq-trigger' '' \
  "${rd[@]}" -device pvpanic -action panic=exit-failure
expect pvpanic VIRGA-CMD-BEGIN QEMU0001:00 "Kernel panic - not syncing: sysrq triggered crash"
[ "$(cat "$work/pvpanic.status")" = 1 ] || { log "FAIL pvpanic: QEMU exit $(cat "$work/pvpanic.status")"; failed=1; }

mkdir -p "$work/cd/openstack/latest"
printf '{"hostname": "vm1.novalocal", "public_keys": {"k": "ssh-ed25519 AAAA test@virga\\n"}}' \
  >"$work/cd/openstack/latest/meta_data.json"
# shellcheck disable=SC2016 # expanded by the guest
printf '#!/bin/sh\necho "user data on $(hostname)"\n' >"$work/cd/openstack/latest/user_data"
truncate -s 8M "$work/cd.img"
mkfs.ext4 -q -L config-2 -d "$work/cd" "$work/cd.img"
boot config-drive pc bzImage 'cat /root/.ssh/authorized_keys' '' "${rd[@]}" \
  -drive "file=$work/cd.img,format=raw,if=virtio,readonly=on"
expect config-drive VIRGA-READY "VIRGA-HOSTNAME vm1" "VIRGA-SSH-KEY ssh-ed25519 AAAA test@virga" \
  VIRGA-USER-DATA-BEGIN "user data on vm1" "VIRGA-USER-DATA-END 0" "ssh-ed25519 AAAA test@virga"

# Ctrl-Alt-Del through the i8042, sent from QEMU's monitor while the command sleeps.
mon=$work/mon.sock
boot ctrl-alt-del pc bzImage 'echo sleeping; sleep 100' '' "${rd[@]}" \
  -monitor "unix:$mon,server,nowait" &
qpid=$!
for _ in $(seq 120); do grep -q '^sleeping' "$work/ctrl-alt-del.log" 2>/dev/null && break; sleep 0.5; done
python3 - "$mon" <<'EOF'
import socket, sys, time
s = socket.socket(socket.AF_UNIX)
s.connect(sys.argv[1])
time.sleep(0.5)
s.sendall(b"sendkey ctrl-alt-delete\n")
time.sleep(1)
EOF
wait "$qpid"
expect ctrl-alt-del sleeping "VIRGA-POWEROFF (ctrl-alt-del)"

[ "$failed" = 0 ] || die "some checks failed; logs kept in $work"
log "all user-space checks passed under QEMU TCG"
