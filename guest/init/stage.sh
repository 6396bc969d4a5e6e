# shellcheck shell=bash
# The userspace both test guests share (sourced by build.sh): busybox-static, our init and the
# config-drive reader, a minimal /etc.

# stage_userspace DIR: fill DIR with the guest's file tree. Owners are fixed when packing.
stage_userspace() {
  local root=$1 path
  mkdir -p "$root"/{bin,sbin,usr/bin,usr/sbin,dev,proc,sys,run,tmp,root,etc,lib/virga,mnt}
  chmod 1777 "$root/tmp"
  chmod 700 "$root/root"
  install -m 755 /bin/busybox "$root/bin/busybox"
  # One link per applet, where busybox says it belongs (bin/sh, usr/bin/awk, ...).
  while IFS= read -r path; do
    case $path in */*) ;; *) continue ;; esac # skip `linuxrc`
    [ -e "$root/$path" ] || ln -s /bin/busybox "$root/$path"
  done < <("$root/bin/busybox" --list-full)
  install -m 755 "$GUEST_DIR/init/init" "$root/init"
  # The kernel looks for /init in an initramfs and /sbin/init on a disk: the same script.
  ln -sfn ../init "$root/sbin/init"
  install -m 755 "$GUEST_DIR/init/config-drive" "$root/lib/virga/config-drive"
  printf 'root:x:0:0:root:/root:/bin/sh\n' >"$root/etc/passwd"
  printf 'root:*:19000:0:99999:7:::\n' >"$root/etc/shadow"
  chmod 600 "$root/etc/shadow"
  printf 'root:x:0:\n' >"$root/etc/group"
  printf 'virga\n' >"$root/etc/hostname"
  printf '/dev/vda / ext4 rw 0 1\n' >"$root/etc/fstab"
  # Fixed times, so the same inputs give the same archive and image bytes.
  find "$root" -exec touch -h -d @0 {} +
}
