#!/usr/bin/env bash
# The Debian cloud image (docs/cloud-image.md): built from Debian's mirror into
# ~/.cache/virga/guest/cloud-<key>/debian.qcow2, linked from guest/current/debian.qcow2 (a no-op
# when the cache already holds a build of the current inputs).
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
exec "$root/guest/cloud/build.sh"
