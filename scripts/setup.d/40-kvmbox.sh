#!/usr/bin/env bash
# The box (scripts/kvmbox, docs/kvmbox.md): QEMU 10 from bookworm-backports (the suite the
# machine's qemu-utils comes from; bookworm's own qemu-system-x86 conflicts with it), then the box
# itself, cached under ~/.cache/virga/kvmbox (a no-op when the cache holds the current inputs).
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
log() { printf '[setup kvmbox] %s\n' "$*" >&2; }
if [ "$(id -u)" -ne 0 ]; then SUDO=sudo; else SUDO=; fi

if ! apt-cache policy 2>/dev/null | grep -q 'bookworm-backports'; then
  log "adding bookworm-backports to apt's sources"
  $SUDO tee /etc/apt/sources.list.d/virga-backports.sources >/dev/null <<'SRC'
Types: deb
URIs: http://deb.debian.org/debian
Suites: bookworm-backports
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
SRC
  $SUDO apt-get update -q >&2 || { log "error: apt-get update failed"; exit 1; }
fi
if ! dpkg-query -W -f='${Status} ${Version}' qemu-system-x86 2>/dev/null | grep -q 'install ok installed .*bpo'; then
  log "installing qemu-system-x86 from bookworm-backports"
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q --no-install-recommends \
    -t bookworm-backports qemu-system-x86 >&2 ||
    { log "error: could not install qemu-system-x86 from bookworm-backports"; exit 1; }
fi
"$root/scripts/kvmbox" build >/dev/null
log "ready: $("$root/scripts/kvmbox" build)"
