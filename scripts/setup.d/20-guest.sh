#!/usr/bin/env bash
# Guest artifacts: kernel, initramfs, ext4 root (cached under ~/.cache/virga/guest; a no-op when
# the cache already holds builds of the current inputs).
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
exec "$root/guest/build.sh" all
