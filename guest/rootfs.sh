# shellcheck shell=bash
# The ext4 root file system (sourced by build.sh): the shared userspace on a raw ext4 image made
# by `mkfs.ext4 -d` (no loop mount, no root needed), and the same image as qcow2.

ROOTFS_SIZE=64M

build_rootfs() {
  need_pkgs busybox-static e2fsprogs qemu-utils
  local key
  key=$(cache_key "$GUEST_DIR/rootfs.sh" "$GUEST_DIR/init/stage.sh" "$GUEST_DIR/init/init" \
    "$GUEST_DIR/init/config-drive" -- busybox-static e2fsprogs qemu-utils)
  build_artifact rootfs "$key" make_rootfs rootfs.ext4 rootfs.qcow2
}

# make_rootfs TMP OUT
make_rootfs() {
  local tmp=$1 out=$2 img=$2/rootfs.ext4
  stage_userspace "$tmp/root"
  truncate -s "$ROOTFS_SIZE" "$img"
  # Fixed UUID, hash seed and clock: the same inputs give the same image.
  E2FSPROGS_FAKE_TIME=1 mkfs.ext4 -q -F -b 4096 -L virga-root -m 0 \
    -U 6a1e0f0e-7a5c-4c3b-9a49-000000000001 -E hash_seed=6a1e0f0e-7a5c-4c3b-9a49-000000000002 \
    -d "$tmp/root" "$img" >"$tmp/mkfs.log" 2>&1 || die "rootfs: mkfs.ext4 failed: $(cat "$tmp/mkfs.log")"
  # mkfs.ext4 -d copies each file's owner, atime and ctime (which touch cannot set): give every
  # inode to root and the epoch, so the image depends on the inputs only.
  (cd "$tmp/root" && find . | sed 's|^\.||; s|^$|/|') | while IFS= read -r path; do
    for field in uid gid atime ctime; do printf 'sif "%s" %s 0\n' "$path" "$field"; done
  done >"$tmp/fix.cmds"
  E2FSPROGS_FAKE_TIME=1 debugfs -w -f "$tmp/fix.cmds" "$img" >"$tmp/debugfs.log" 2>&1 ||
    die "rootfs: debugfs could not set owners and times: $(tail -3 "$tmp/debugfs.log")"
  e2fsck -fn "$img" >"$tmp/fsck.log" 2>&1 || die "rootfs: e2fsck finds errors: $(cat "$tmp/fsck.log")"
  qemu-img convert -f raw -O qcow2 "$img" "$out/rootfs.qcow2" ||
    die "rootfs: qemu-img convert to qcow2 failed"
}
