#!/usr/bin/env bash
# The real `openstack` client for the API tests (tests/cli_*.rs): a venv outside the repo, keyed
# by the pinned requirements below, so a change of pin builds a fresh one and the old stays cached.
# Tests look for it at ${VIRGA_CACHE:-~/.cache/virga}/venv-openstack/current/bin/openstack.
set -euo pipefail

cache="${VIRGA_CACHE:-$HOME/.cache/virga}"
# Top-level pins; pip resolves the rest against them (both from PyPI).
requirements='python-openstackclient==10.5.0
openstacksdk==4.22.0
'
key=$(printf '%s' "$requirements" | sha256sum | cut -c1-16)
base="$cache/venv-openstack"
venv="$base/$key"

log() { printf '[setup openstack-client] %s\n' "$*" >&2; }

if [ -x "$venv/bin/openstack" ] && [ -e "$venv/.complete" ]; then
  ln -sfn "$key" "$base/current"
  log "cached: $venv"
  exit 0
fi

# Debian's python3 (with python3-venv from scripts/packages/api.txt) first, else whatever is on PATH.
py=/usr/bin/python3
[ -x "$py" ] || py=$(command -v python3 || true)
if [ -z "$py" ]; then
  log "error: no python3 found (install Debian's python3 and python3-venv)"
  exit 1
fi

rm -rf "$venv"
mkdir -p "$base"
log "creating $venv with $py"
if ! "$py" -m venv "$venv"; then
  log "error: '$py -m venv' failed (is python3-venv installed?)"
  exit 1
fi
printf '%s' "$requirements" >"$venv/requirements.txt"
if ! "$venv/bin/pip" install -q --disable-pip-version-check -r "$venv/requirements.txt" >&2; then
  log "error: pip could not install $(tr '\n' ' ' <"$venv/requirements.txt")(is PyPI reachable?)"
  rm -rf "$venv"
  exit 1
fi
"$venv/bin/openstack" --version >&2
"$venv/bin/pip" freeze >"$venv/installed.txt"
touch "$venv/.complete"
ln -sfn "$key" "$base/current"
log "ready: $base/current/bin/openstack"
