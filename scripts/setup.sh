#!/usr/bin/env bash
# One-time (idempotent) set-up of a fresh machine: Debian packages, the Python venv for the real
# `openstack` client, and the guest artifacts (cached under ~/.cache/virga, keyed by their inputs).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"

log() { printf '[setup] %s\n' "$*" >&2; }

# Debian packages: one list per area in scripts/packages/*.txt (comments with #).
want=$(sed -e 's/#.*//' scripts/packages/*.txt | tr -s ' \n' '\n' | sort -u | sed '/^$/d')
missing=()
for p in $want; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if ((${#missing[@]})); then
  log "installing Debian packages: ${missing[*]}"
  if [ "$(id -u)" -ne 0 ]; then SUDO=sudo; else SUDO=; fi
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get update -q >&2 || { log "apt-get update failed"; exit 1; }
  if ! $SUDO apt-get install -y -q --no-install-recommends "${missing[@]}" >&2; then
    log "error: could not install: ${missing[*]} (is the Debian mirror reachable?)"
    exit 1
  fi
fi

# Each area may add its own steps (venvs, guest artifacts) as scripts/setup.d/NN-name.sh.
for step in scripts/setup.d/*.sh; do
  [ -e "$step" ] || continue
  log "running $step"
  bash "$step"
done
