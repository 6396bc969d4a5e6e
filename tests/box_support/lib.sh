# Helpers for the scripts the box tests run (tests/box_*.rs), sourced as /kvmbox/lib.sh.
# One virga-vmm per NAME runs in the background: console in /tmp/NAME.log, console input from the
# fifo /tmp/NAME.in, control socket /tmp/NAME.sock, exit status in /tmp/NAME.rc and the VMM's
# exit-status file /tmp/NAME.exit. What the Rust side reads is printed between BOX-* markers.
VMM=/kvmbox/bin/virga-vmm

# iproute2 (bridges, taps): busybox's sh would otherwise run its own, smaller `ip` applet.
ip() { /usr/sbin/ip "$@"; }

# fail WHY: say why, show every console and where each VMM's threads are, end the script.
fail() {
  echo "BOX-FAIL $*"
  for f in /tmp/*.log; do
    [ -e "$f" ] || continue
    echo "== $f"
    tail -n 60 "$f"
  done
  vm_threads
  exit 1
}

# vm_threads: every running VMM's threads, their state, wait channel and kernel stack (a
# guest that stopped making progress: is a vCPU thread in KVM_RUN, or waiting in the VMM?).
vm_threads() {
  for p in /proc/[0-9]*; do
    tr '\0' ' ' <$p/cmdline 2>/dev/null | grep -q "^$VMM " || continue
    echo "== VMM ${p#/proc/}: $(tr '\0' ' ' <$p/cmdline | cut -c1-160)"
    for t in $p/task/*; do
      echo "-- ${t##*/} $(cat $t/comm 2>/dev/null) state=$(cut -d' ' -f3 $t/stat 2>/dev/null)" \
        "utime=$(cut -d' ' -f14 $t/stat 2>/dev/null) wchan=$(cat $t/wchan 2>/dev/null)"
      cat $t/stack 2>/dev/null
    done
  done
}

# b64 TEXT: TEXT base64-encoded on one line (for the guest init's virga.cmd=).
b64() { printf '%s' "$1" | base64 -w 0; }

# vm_start NAME VMM-ARGS...
vm_start() {
  n=$1
  shift
  rm -f /tmp/$n.*
  mkfifo /tmp/$n.in
  (sleep 100000 >/tmp/$n.in &)
  ($VMM --control-socket /tmp/$n.sock --exit-status-file /tmp/$n.exit "$@" \
    </tmp/$n.in >/tmp/$n.log 2>&1; echo $? >/tmp/$n.rc) &
}

# vm_wait NAME TEXT [SECONDS]: until TEXT is on NAME's console (else fail).
vm_wait() {
  i=0
  while ! grep -qF -- "$2" /tmp/$1.log 2>/dev/null; do
    i=$((i + 1))
    [ $i -gt $((${3:-60} * 10)) ] && fail "$1: no '$2' on the console within ${3:-60}s"
    [ -s /tmp/$1.rc ] && fail "$1: the VMM exited ($(cat /tmp/$1.rc)) without '$2' on the console"
    sleep 0.1
  done
}

# vm_count NAME TEXT: how many console lines hold TEXT.
vm_count() { grep -cF -- "$2" /tmp/$1.log 2>/dev/null || true; }

# vm_type NAME LINE: LINE typed on NAME's console.
vm_type() { printf '%s\n' "$2" >/tmp/$1.in; }

# vm_ctl NAME JSON: a control request; prints "BOX-CTL NAME <answer>" (fails unless ok).
vm_ctl() {
  a=$(echo "$2" | socat -t 30 - UNIX-CONNECT:/tmp/$1.sock) || fail "$1: control socket: $2"
  echo "BOX-CTL $1 $a"
  case $a in *'"ok":true'*) ;; *) fail "$1: $2 answered $a" ;; esac
}

# vm_exit NAME [SECONDS]: until NAME's VMM exits; prints "BOX-EXIT NAME <status> <exit file>".
vm_exit() {
  i=0
  while [ ! -s /tmp/$1.rc ]; do
    i=$((i + 1))
    [ $i -gt $((${2:-60} * 10)) ] && fail "$1: the VMM did not exit within ${2:-60}s"
    sleep 0.1
  done
  echo "BOX-EXIT $1 $(cat /tmp/$1.rc) $(cat /tmp/$1.exit 2>/dev/null)"
}

# vm_log NAME: NAME's console between BOX-LOG-BEGIN NAME and BOX-LOG-END NAME.
vm_log() {
  echo "BOX-LOG-BEGIN $1"
  cat /tmp/$1.log
  echo "BOX-LOG-END $1"
}

# vm_rss NAME: the VMM's resident memory in KiB.
vm_rss() {
  for p in /proc/[0-9]*; do
    if tr '\0' ' ' <$p/cmdline 2>/dev/null | grep -qF -- "--control-socket /tmp/$1.sock"; then
      awk '/^VmRSS/ { print $2 }' $p/status
      return
    fi
  done
  fail "$1: no VMM process"
}
