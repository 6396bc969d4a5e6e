#!/usr/bin/env bash
# shellcheck source-path=SCRIPTDIR
# Builds a Debian 12 (bookworm) cloud image, the shape of Debian's genericcloud image, from
# Debian's package mirror only: a 2 GiB (virtual, sparse) qcow2 with a GPT and one ext4 root
# partition holding linux-image-cloud-amd64 (bookworm-backports), its initramfs, cloud-init,
# openssh-server, systemd and ifupdown (docs/cloud-image.md).
# Output: ${VIRGA_CACHE:-~/.cache/virga}/guest/cloud-<key>/debian.qcow2, linked from
# guest/current/debian.qcow2. A no-op when the cache holds a build of the current inputs.
# Usage: guest/cloud/build.sh
set -euo pipefail
CLOUD_DIR=$(cd "$(dirname "$0")" && pwd)
GUEST_DIR=$(cd "$CLOUD_DIR/.." && pwd)
. "$GUEST_DIR/lib.sh"

export CLOUD_MIRROR=${VIRGA_DEBIAN_MIRROR:-http://deb.debian.org/debian}
export CLOUD_SECURITY_MIRROR=${VIRGA_DEBIAN_SECURITY_MIRROR:-http://deb.debian.org/debian-security}
# The suite the kernel comes from: bookworm-backports' 6.12, as the rest of the project uses.
CLOUD_KERNEL_SUITE=${VIRGA_CLOUD_KERNEL_SUITE:-bookworm-backports}

# The disk: 2 GiB virtual; one partition from 1 MiB to 1 MiB before the end (room for the
# backup GPT). Fixed identifiers, as in any distributed image (every instance starts with
# them): the booter finds the root by PARTUUID, fstab by the file system UUID.
DISK_MIB=2048
ROOT_START=2048 # sectors
ROOT_SECTORS=$((DISK_MIB * 2048 - 2 * 2048))
DISK_GUID=8e0a0d5c-57a4-4f0e-9c1b-1f6f3a8c7d01
ROOT_PARTUUID=5b0ed9f6-6c3e-4a41-9d0a-7a1f0e2c9b11
export CLOUD_FS_UUID=2c4b3f0e-9a7d-4c61-8e55-0d3b6f1a7e21
ROOT_LABEL=debian-root
LINUX_FS_TYPE=0FC63DAF-8483-4772-8E79-3D69D8477DE4

HOST_PKGS=(mmdebstrap e2fsprogs fdisk qemu-utils debian-archive-keyring)

# The in-image package list, without comments.
image_packages() { sed -e 's/#.*//' "$CLOUD_DIR/packages.txt" | tr -s ' \n' '\n' | sed '/^$/d'; }

# What the mirror offers, as far as this host's apt lists know (no snapshot is pinned: only
# deb.debian.org is reachable): the candidate versions of the packages that matter most, so an
# `apt-get update` that sees a new kernel or cloud-init gives a new key.
mirror_state() {
  apt-cache madison linux-image-cloud-amd64 cloud-init openssh-server systemd 2>/dev/null |
    tr -s ' ' | sort
}

build_image() {
  local tmp=$1 out=$2 root=$1/root incl
  [ "$(id -u)" -eq 0 ] || die "cloud: building the image needs root (mmdebstrap --mode=root, chroot)"
  incl=$(image_packages | paste -sd, -)
  mkdir -p "$root"
  log "cloud: mmdebstrap bookworm (kernel from $CLOUD_KERNEL_SUITE) into $root"
  mmdebstrap --mode=root --variant=minbase --format=directory \
    --aptopt='Acquire::Retries "3"' \
    --dpkgopt='path-exclude=/usr/share/doc/*' \
    --dpkgopt='path-include=/usr/share/doc/*/copyright' \
    --dpkgopt='path-exclude=/usr/share/man/*' \
    --dpkgopt='path-exclude=/usr/share/info/*' \
    --dpkgopt='path-exclude=/usr/share/locale/*' \
    --dpkgopt='path-include=/usr/share/locale/locale.alias' \
    --include="$incl" \
    --customize-hook="\"$CLOUD_DIR/customize.sh\" \"\$1\" config" \
    --customize-hook="chroot \"\$1\" env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends -t $CLOUD_KERNEL_SUITE linux-image-cloud-amd64" \
    --customize-hook="\"$CLOUD_DIR/customize.sh\" \"\$1\" finish" \
    bookworm "$root" \
    "deb $CLOUD_MIRROR bookworm main" \
    "deb $CLOUD_MIRROR bookworm-updates main" \
    "deb $CLOUD_SECURITY_MIRROR bookworm-security main" \
    "deb $CLOUD_MIRROR bookworm-backports main" >"$tmp/mmdebstrap.log" 2>&1 ||
    { tail -n 40 "$tmp/mmdebstrap.log" >&2; die "cloud: mmdebstrap failed (log: $tmp/mmdebstrap.log)"; }
  cp "$tmp/mmdebstrap.log" "$out/mmdebstrap.log"
  chroot "$root" dpkg-query -W -f='${Package} ${Version}\n' >"$out/packages.list"
  cp "$root/etc/virga-kernel-release" "$out/kernel-release"

  log "cloud: ext4 root ($((ROOT_SECTORS / 2048)) MiB, label $ROOT_LABEL)"
  # Times fixed for reproducible metadata; the tree's owners and modes are kept (built as root).
  E2FSPROGS_FAKE_TIME=$(stat -c %Y "$root/etc/virga-kernel-release") \
    mke2fs -q -F -t ext4 -L "$ROOT_LABEL" -U "$CLOUD_FS_UUID" \
    -E "hash_seed=$CLOUD_FS_UUID,discard" -d "$root" "$tmp/root.ext4" "$((ROOT_SECTORS / 2))k" ||
    die "cloud: mke2fs failed"
  e2fsck -fn "$tmp/root.ext4" >"$tmp/e2fsck.log" 2>&1 ||
    { cat "$tmp/e2fsck.log" >&2; die "cloud: e2fsck found errors in the new root"; }
  rm -rf "$root"

  log "cloud: GPT disk, root partition $ROOT_PARTUUID"
  truncate -s "${DISK_MIB}M" "$tmp/disk.raw"
  sfdisk -q "$tmp/disk.raw" >/dev/null <<EOF
label: gpt
label-id: $DISK_GUID
first-lba: 34
start=$ROOT_START, size=$ROOT_SECTORS, type=$LINUX_FS_TYPE, uuid=$ROOT_PARTUUID, name="$ROOT_LABEL"
EOF
  dd if="$tmp/root.ext4" of="$tmp/disk.raw" bs=1M seek=$((ROOT_START / 2048)) conv=notrunc,sparse status=none
  rm -f "$tmp/root.ext4"
  qemu-img convert -f raw -O qcow2 "$tmp/disk.raw" "$out/debian.qcow2"
  rm -f "$tmp/disk.raw"
  qemu-img check -q "$out/debian.qcow2" || die "cloud: qemu-img check failed"
  cat >"$out/image.env" <<EOF
DISK_GUID=$DISK_GUID
ROOT_PARTUUID=$ROOT_PARTUUID
ROOT_FS_UUID=$CLOUD_FS_UUID
ROOT_LABEL=$ROOT_LABEL
KERNEL_RELEASE=$(cat "$out/kernel-release")
EOF
}

# A killed mmdebstrap may leave its chroot's /proc, /sys or /dev mounted in the scratch tree:
# unmount them before lib.sh's `rm -rf` of that tree can reach through them.
unmount_leftovers() {
  local m
  for m in $(findmnt -rn -o TARGET | grep -F "$GUEST_CACHE/.tmp-cloud-" | sort -r); do
    log "cloud: unmounting leftover $m"
    umount -l "$m" || die "cloud: cannot unmount $m (remove it by hand)"
  done
}

build_cloud() {
  need_pkgs "${HOST_PKGS[@]}"
  unmount_leftovers
  local key
  key=$(cache_key "$CLOUD_DIR/build.sh" "$CLOUD_DIR/customize.sh" "$CLOUD_DIR/packages.txt" \
    -- "${HOST_PKGS[@]}")
  key=$( { echo "$key"; echo "kernel-suite $CLOUD_KERNEL_SUITE $CLOUD_MIRROR $CLOUD_SECURITY_MIRROR"; mirror_state; } |
    sha256sum | cut -c1-16)
  build_artifact cloud "$key" build_image debian.qcow2
}

build_cloud
