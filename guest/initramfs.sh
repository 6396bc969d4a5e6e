# shellcheck shell=bash
# The initramfs (sourced by build.sh): the shared userspace as a gzip'd newc cpio archive.

build_initramfs() {
  need_pkgs busybox-static cpio gzip
  local key
  key=$(cache_key "$GUEST_DIR/initramfs.sh" "$GUEST_DIR/init/stage.sh" "$GUEST_DIR/init/init" \
    "$GUEST_DIR/init/config-drive" -- busybox-static cpio gzip)
  build_artifact initramfs "$key" make_initramfs initramfs.cpio.gz
}

# newc_node NAME MODE MAJOR MINOR: a one-entry newc archive holding a device node, so the
# archive needs no mknod (and no root) at build time. The kernel reads concatenated archives.
newc_node() {
  local name=$1 mode=$2 major=$3 minor=$4 namesize=$((${#1} + 1))
  # magic ino mode uid gid nlink mtime filesize devmajor devminor rdevmajor rdevminor namesize check
  printf '070701%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%s\0' \
    1 "$mode" 0 0 1 0 0 0 0 "$major" "$minor" "$namesize" 0 "$name"
  # The header (110 bytes) and the name are padded together to a multiple of 4.
  head -c $(((4 - (110 + namesize) % 4) % 4)) /dev/zero
  printf '070701%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%s\0' \
    0 0 0 0 1 0 0 0 0 0 0 11 0 'TRAILER!!!'
  head -c $(((4 - (110 + 11) % 4) % 4)) /dev/zero
}

# make_initramfs TMP OUT
make_initramfs() {
  local tmp=$1 out=$2
  stage_userspace "$tmp/root"
  {
    (cd "$tmp/root" && find . -mindepth 1 | LC_ALL=C sort | sed 's|^\./||' |
      cpio --quiet -o -H newc -R 0:0 --reproducible)
    # /dev/console (char 5:1) must exist before /init runs: the kernel opens it for init's
    # stdio. After the main archive, so that dev/ already exists when the kernel unpacks it.
    newc_node dev/console $((020600)) 5 1
  } | gzip -9 -n >"$out/initramfs.cpio.gz"
}
