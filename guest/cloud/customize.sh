#!/usr/bin/env bash
# mmdebstrap customize hooks of the cloud image (run by guest/cloud/build.sh, never by
# hand): `customize.sh ROOT config` before the kernel is installed, `customize.sh ROOT finish`
# after. ROOT is the chroot; CLOUD_* come from build.sh's environment.
set -euo pipefail
root=$1
step=$2
: "${CLOUD_FS_UUID:?}" "${CLOUD_MIRROR:?}" "${CLOUD_SECURITY_MIRROR:?}"

in_root() { chroot "$root" env DEBIAN_FRONTEND=noninteractive LC_ALL=C.UTF-8 "$@"; }

config() {
  # Names: cloud-init sets the instance's host name at first boot.
  echo debian >"$root/etc/hostname"
  cat >"$root/etc/hosts" <<'EOF'
127.0.0.1	localhost
::1		localhost ip6-localhost ip6-loopback
ff02::1		ip6-allnodes
ff02::2		ip6-allrouters
EOF
  # The root file system by its UUID (build.sh gives mke2fs the same one).
  cat >"$root/etc/fstab" <<EOF
# <file system> <mount point> <type> <options> <dump> <pass>
UUID=$CLOUD_FS_UUID / ext4 rw,discard,errors=remount-ro 0 1
EOF

  # The apt sources an instance uses (the ones the image was built from).
  cat >"$root/etc/apt/sources.list" <<EOF
deb $CLOUD_MIRROR bookworm main
deb $CLOUD_MIRROR bookworm-updates main
deb $CLOUD_SECURITY_MIRROR bookworm-security main
deb $CLOUD_MIRROR bookworm-backports main
EOF

  # ifupdown: the loopback here, cloud-init writes interfaces.d/50-cloud-init at first boot.
  mkdir -p "$root/etc/network/interfaces.d"
  cat >"$root/etc/network/interfaces" <<'EOF'
# The loopback; cloud-init writes the instance's interfaces to interfaces.d/50-cloud-init.
source /etc/network/interfaces.d/*

auto lo
iface lo inet loopback
EOF

  # The initramfs: MODULES=most (Debian's default) already takes virtio and ext4; naming the
  # ones a virtio-mmio guest needs makes them load early whatever udev finds.
  mkdir -p "$root/etc/initramfs-tools"
  cat >>"$root/etc/initramfs-tools/modules" <<'EOF'
virtio_mmio
virtio_pci
virtio_blk
virtio_net
ext4
EOF
  # FSTYPE: the root's type for the fsck hook, which cannot find it from fstab's UUID= in a
  # chroot (no such device there) and would leave e2fsck out: the root would never be checked.
  mkdir -p "$root/etc/initramfs-tools/conf.d"
  printf 'MODULES=most\nFSTYPE=ext4\n' >"$root/etc/initramfs-tools/conf.d/virga.conf"

  # Locale: C.UTF-8 (in libc), so cloud-init's locale module has nothing to generate.
  echo 'LANG=C.UTF-8' >"$root/etc/default/locale"

  # cloud-init: which sources to look at (ds-identify still checks each; ConfigDrive finds the
  # config-2 drive), and the console output of its modules.
  mkdir -p "$root/etc/cloud/cloud.cfg.d"
  cat >"$root/etc/cloud/cloud.cfg.d/90-virga.cfg" <<'EOF'
# Virga cloud image (guest/cloud): OpenStack's config drive first, then NoCloud.
datasource_list: [ConfigDrive, OpenStack, NoCloud, None]
EOF

  # A login prompt on the serial console (the booter passes console=ttyS0).
  mkdir -p "$root/etc/systemd/system/getty.target.wants"
  ln -sfn /lib/systemd/system/serial-getty@.service \
    "$root/etc/systemd/system/getty.target.wants/serial-getty@ttyS0.service"
}

finish() {
  local kver initrd m
  kver=$(basename "$(ls -d "$root"/lib/modules/*/ | sort -V | tail -n 1)")
  initrd=/boot/initrd.img-$kver
  [ -f "$root/boot/vmlinuz-$kver" ] || { echo "no /boot/vmlinuz-$kver" >&2; exit 1; }
  [ -f "$root$initrd" ] || { echo "no $initrd" >&2; exit 1; }
  # The drivers a virtio-mmio guest with an ext4 root needs: in the initramfs, or built in.
  in_root lsinitramfs "$initrd" >"$root/tmp/initrd.list"
  for m in virtio_mmio virtio_blk virtio_net ext4; do
    grep -q "/$m\.ko" "$root/tmp/initrd.list" ||
      grep -q "/$m\.ko\$" "$root/lib/modules/$kver/modules.builtin" ||
      { echo "$m.ko is neither in $initrd nor built in" >&2; exit 1; }
  done
  grep -q '/fsck.ext4$' "$root/tmp/initrd.list" ||
    { echo "fsck.ext4 is not in $initrd" >&2; exit 1; }
  rm -f "$root/tmp/initrd.list"
  echo "$kver" >"$root/etc/virga-kernel-release"

  # mmdebstrap copied the build host's resolver (the kernel's download needed it); an instance
  # gets its own from DHCP.
  rm -f "$root/etc/resolv.conf"
  : >"$root/etc/resolv.conf"
  # Per-instance state generated at first boot: ssh host keys (cloud-init's ssh module), the
  # machine id (systemd), the random seed.
  rm -f "$root"/etc/ssh/ssh_host_*
  : >"$root/etc/machine-id"
  rm -f "$root/var/lib/dbus/machine-id" "$root/var/lib/systemd/random-seed"
  # What the build left behind. (Not /tmp: mmdebstrap's own apt configuration is there until
  # its final clean-up, which removes the package lists, the apt cache and /tmp itself.)
  rm -rf "$root"/var/log/*.log "$root"/var/log/apt/* "$root"/var/tmp/*
}

case $step in
  config) config ;;
  finish) finish ;;
  *)
    echo "usage: $0 ROOT config|finish" >&2
    exit 2
    ;;
esac
