# shellcheck shell=bash
# The guest kernel (sourced by build.sh): Debian's linux-source-6.12, tinyconfig plus
# kernel/virga.config, the patches in kernel/patches/, `make vmlinux bzImage`.

build_kernel() {
  need_pkgs linux-source-6.12 gcc-12 binutils make bc bison flex libelf-dev lz4 xz-utils patch
  local key
  key=$(cache_key "$GUEST_DIR/kernel/kernel.sh" "$GUEST_DIR/kernel/virga.config" \
    "$GUEST_DIR"/kernel/patches/*.patch -- linux-source-6.12 gcc-12 binutils)
  build_artifact kernel "$key" make_kernel bzImage vmlinux
}

# make_kernel TMP OUT
make_kernel() {
  local tmp=$1 out=$2 tarball=/usr/src/linux-source-6.12.tar.xz p
  [ -f "$tarball" ] || die "$tarball is missing although linux-source-6.12 is installed"
  log "kernel: building in $tmp (about 6 minutes on 2 idle cores; log: $tmp/build.log)"
  tar -C "$tmp" -xf "$tarball"
  local src=$tmp/linux-source-6.12
  for p in "$GUEST_DIR"/kernel/patches/*.patch; do
    patch -d "$src" -p1 --forward --quiet <"$p" ||
      die "kernel: patch $(basename "$p") does not apply to $(pkg_version linux-source-6.12)"
  done
  # A fixed build identity (the timestamp is the source tarball's, as the package shipped it),
  # so the same inputs give the same bytes: banner, `uname -v`, the built-in initramfs.
  local stamp
  stamp=$(date -u -d "@$(stat -c %Y "$tarball")" '+%Y-%m-%d %H:%M:%S UTC')
  local mk=(make -C "$src" O="$tmp/obj" ARCH=x86_64 KBUILD_BUILD_USER=virga KBUILD_BUILD_HOST=virga
    KBUILD_BUILD_TIMESTAMP="$stamp")
  mkdir -p "$tmp/obj"
  {
    "${mk[@]}" tinyconfig &&
      ARCH=x86_64 "$src/scripts/kconfig/merge_config.sh" -m -O "$tmp/obj" "$tmp/obj/.config" \
        "$GUEST_DIR/kernel/virga.config" &&
      mv "$tmp/obj/.config" "$tmp/obj/merged.config" &&
      "${mk[@]}" KCONFIG_ALLCONFIG="$tmp/obj/merged.config" allnoconfig &&
      "${mk[@]}" olddefconfig
  } >"$tmp/build.log" 2>&1 || die "kernel: configuration failed, see $tmp/build.log"
  check_config "$GUEST_DIR/kernel/virga.config" "$tmp/obj/.config" ||
    die "kernel: options above were dropped by olddefconfig (fix kernel/virga.config)"
  "${mk[@]}" -j"${VIRGA_JOBS:-2}" vmlinux bzImage >>"$tmp/build.log" 2>&1 ||
    die "kernel: build failed, see the end of $tmp/build.log"
  cp "$tmp/obj/vmlinux" "$tmp/obj/arch/x86/boot/bzImage" "$tmp/build.log" "$out/"
  cp "$tmp/obj/.config" "$out/config"
  cp "$GUEST_DIR/kernel/virga.config" "$out/virga.config"
}
