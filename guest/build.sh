#!/usr/bin/env bash
# shellcheck source-path=SCRIPTDIR
# Builds the Virga guest artifacts from Debian packages into ${VIRGA_CACHE:-~/.cache/virga}/guest/
# (one directory per artifact and hash of its inputs) and points guest/current/ at them.
# Usage: guest/build.sh [all|kernel|initramfs|rootfs]   (docs/guest.md)
set -euo pipefail
GUEST_DIR=$(cd "$(dirname "$0")" && pwd)
. "$GUEST_DIR/lib.sh"
. "$GUEST_DIR/kernel/kernel.sh"
. "$GUEST_DIR/init/stage.sh"
. "$GUEST_DIR/initramfs.sh"
. "$GUEST_DIR/rootfs.sh"

case ${1:-all} in
  all)
    build_kernel
    build_initramfs
    build_rootfs
    ;;
  kernel) build_kernel ;;
  initramfs) build_initramfs ;;
  rootfs) build_rootfs ;;
  *)
    echo "usage: $0 [all|kernel|initramfs|rootfs]" >&2
    exit 2
    ;;
esac
