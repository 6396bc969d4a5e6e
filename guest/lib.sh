# shellcheck shell=bash
# Shared helpers for the guest artifact builders (sourced, not run).
# Layout: $GUEST_CACHE/<artifact>-<key>/ holds one finished build; $GUEST_CACHE/current/ holds
# relative links to the files of the builds the current sources describe.

GUEST_DIR=${GUEST_DIR:-$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)}
VIRGA_CACHE=${VIRGA_CACHE:-$HOME/.cache/virga}
GUEST_CACHE=$VIRGA_CACHE/guest

log() { printf '[guest] %s\n' "$*" >&2; }
die() {
  printf '[guest] error: %s\n' "$*" >&2
  exit 1
}

# pkg_version PKG: the installed version of a Debian package, empty when it is not installed.
pkg_version() {
  dpkg-query -W -f='${db:Status-Abbrev} ${Version}' "$1" 2>/dev/null | awk '$1 == "ii" { print $2 }'
}

# need_pkgs PKG...: make sure the Debian packages are installed; as root, install the missing
# ones; otherwise (or when apt cannot get them) stop with an error that names them.
need_pkgs() {
  local missing=() p
  for p in "$@"; do
    [ -n "$(pkg_version "$p")" ] || missing+=("$p")
  done
  ((${#missing[@]})) || return 0
  if [ "$(id -u)" -ne 0 ]; then
    die "missing Debian packages: ${missing[*]} (listed in scripts/packages/guest.txt; run scripts/setup.sh as root or apt-get install them)"
  fi
  log "installing Debian packages: ${missing[*]}"
  if ! DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}" >&2; then
    DEBIAN_FRONTEND=noninteractive apt-get update -q >&2 || true
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}" >&2 ||
      die "cannot install Debian packages: ${missing[*]} (is the Debian mirror, bookworm and bookworm-security, reachable?)"
  fi
}

# cache_key LABEL FILE... -- PKG...: a short hash over the files' names and contents and the
# installed versions of the packages: everything that decides the artifact's bytes.
cache_key() {
  local files=() pkgs=() f p
  while (($#)) && [ "$1" != -- ]; do files+=("$1"); shift; done
  (($#)) && shift
  pkgs=("$@")
  {
    for f in "${files[@]}"; do
      printf 'file %s\n' "${f#"$GUEST_DIR"/}"
      sha256sum <"$f"
    done
    for p in "${pkgs[@]}"; do
      printf 'pkg %s %s\n' "$p" "$(pkg_version "$p")"
    done
  } | sha256sum | cut -c1-16
}

# with_lock NAME CMD...: run CMD under an exclusive lock, so two set-ups never build the same
# artifact into the same directory at once.
with_lock() {
  local name=$1
  shift
  mkdir -p "$GUEST_CACHE"
  (
    flock 9
    "$@"
  ) 9>"$GUEST_CACHE/.lock-$name"
}

# build_artifact NAME KEY BUILDER FILE...: build NAME-KEY once (BUILDER TMP OUT fills OUT from
# scratch space TMP), under a lock, renamed into place only when complete; then point
# current/FILE at each FILE of it.
build_artifact() {
  local name=$1 dir=$1-$2 builder=$3
  shift 3
  with_lock "$name" build_once "$name" "$dir" "$builder"
  link_current "$dir" "$@"
  log "$name: $GUEST_CACHE/$dir (current/: $*)"
  # After the links: deleting a kernel tree (70 000 files) takes minutes on a busy disk.
  if [ -d "$GUEST_CACHE/.tmp-$dir" ] && [ -f "$GUEST_CACHE/$dir/.done" ]; then
    if [ -n "${VIRGA_KEEP_BUILD:-}" ]; then
      log "$name: build tree kept in $GUEST_CACHE/.tmp-$dir"
    else
      rm -rf "$GUEST_CACHE/.tmp-$dir"
    fi
  fi
}

build_once() {
  local name=$1 dir=$2 builder=$3 out=$GUEST_CACHE/$2 tmp=$GUEST_CACHE/.tmp-$2 start=$SECONDS
  if [ -f "$out/.done" ]; then
    log "$name: $dir is up to date"
    return 0
  fi
  rm -rf "$tmp" "$out"
  mkdir -p "$tmp/out"
  "$builder" "$tmp" "$tmp/out"
  echo $((SECONDS - start)) >"$tmp/out/build-seconds"
  touch "$tmp/out/.done"
  mv -T "$tmp/out" "$out"
  log "$name: built in $(cat "$out/build-seconds") s"
}

# link_current TARGET_DIR NAME...: point current/NAME at TARGET_DIR/NAME (relative, atomic).
link_current() {
  local dir=$1 name
  shift
  mkdir -p "$GUEST_CACHE/current"
  for name in "$@"; do
    [ -e "$GUEST_CACHE/$dir/$name" ] || die "cannot link current/$name: $GUEST_CACHE/$dir/$name is missing"
    ln -sfn "../$dir/$name" "$GUEST_CACHE/current/.$name.new"
    mv -Tf "$GUEST_CACHE/current/.$name.new" "$GUEST_CACHE/current/$name"
  done
}

# check_config FRAGMENT CONFIG: every `CONFIG_X=v` line of the fragment is in the final
# config, and every `# CONFIG_X is not set` line is not set there. Prints each mismatch;
# fails when there is one. (olddefconfig silently drops options whose dependencies are off.)
check_config() {
  local fragment=$1 config=$2 bad=0 line opt
  while IFS= read -r line; do
    case $line in
      CONFIG_*=*)
        grep -qxF -- "$line" "$config" && continue
        opt=${line%%=*}
        printf '[guest]   wanted %s, got: %s\n' "$line" \
          "$(grep -E "^(# )?${opt}[= ]" "$config" || echo "absent (a dependency is off)")" >&2
        bad=1
        ;;
      "# CONFIG_"*" is not set")
        opt=${line#\# }
        opt=${opt%% *}
        grep -q "^$opt=" "$config" || continue
        printf '[guest]   wanted %s off, got: %s\n' "$opt" "$(grep "^$opt=" "$config")" >&2
        bad=1
        ;;
    esac
  done <"$fragment"
  return $bad
}
