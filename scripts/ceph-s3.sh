#!/usr/bin/env bash
# A one-node Ceph cluster with a RADOS Gateway (S3) on 127.0.0.1, for the object-store tests.
#
#   scripts/ceph-s3.sh start DIR   builds a cluster in the empty (or absent) folder DIR and prints its
#                                  S3 endpoint and keys as `export NAME=value` lines (progress on stderr);
#                                  on a folder whose cluster is alive it only prints them again; a folder
#                                  left by a crashed cluster (it has a `pids` file) is cleared and built
#                                  again; any other non-empty folder is refused (exit 2), never deleted
#   scripts/ceph-s3.sh stop DIR    stops that cluster's daemons and deletes DIR
#
# Everything (config, keys, monitor store, the OSD's BlueStore in a sparse file, logs, sockets) lives in
# DIR, and every port is picked free at start, so several clusters can run side by side. With
# CEPH_S3_OWNER_PID set, a watchdog stops the cluster once that process is gone (a test killed with -9),
# from the moment the folder has its `pids` file, so a start cut short by the owner's death leaves nothing.
# Needs Debian's ceph-mon, ceph-osd, radosgw and ceph-common (scripts/setup.sh installs them) and python3. The recipe
# and its pitfalls: docs/design.md §The object-store seam.
set -euo pipefail

usage() {
  echo "usage: $0 start|stop DIR" >&2
  exit 2
}
[ $# -eq 2 ] || usage
CMD="$1"
W="$(realpath -m "$2")"
CONF="$W/ceph.conf"
SELF="$(realpath "$0")"

log() { echo "ceph-s3: $*" >&2; }

# A recorded PID is ours only while its command line names this cluster's folder (PIDs are reused).
ours() {
  local pid="$1"
  [ -r "/proc/$pid/cmdline" ] && tr '\0' ' ' <"/proc/$pid/cmdline" | grep -qF -- "$W"
}

pid_of() { awk -v n="$1" '$1 == n { print $2 }' "$W/pids" 2>/dev/null || true; }

# SIGTERM, up to 10 s, then SIGKILL.
stop_pid() {
  local pid="$1" signal="${2:-TERM}"
  ours "$pid" || return 0
  kill "-$signal" "$pid" 2>/dev/null || return 0
  for _ in $(seq 100); do
    ours "$pid" || return 0
    sleep 0.1
  done
  kill -KILL "$pid" 2>/dev/null || true
}

# Ceph daemons whose command line names this cluster's folder but that no pids line records (a start
# killed between launching one and recording it).
stray_daemons() {
  local f pid comm
  for f in /proc/[0-9]*/cmdline; do
    pid="${f#/proc/}"
    pid="${pid%/cmdline}"
    comm="$(cat "/proc/$pid/comm" 2>/dev/null || true)"
    case "$comm" in ceph-mon | ceph-osd | radosgw) ;; *) continue ;; esac
    if ours "$pid"; then echo "$pid"; fi
  done
}

stop_all() {
  local watchdog start osd rgw
  watchdog="$(pid_of watchdog)"
  # The watchdog runs this very function as its last act: it must not kill itself.
  if [ -n "$watchdog" ] && [ "$watchdog" != "$$" ]; then stop_pid "$watchdog" KILL; fi
  # A start still building (its owner died): stopped first, so it launches nothing more.
  start="$(pid_of start)"
  if [ -n "$start" ] && [ "$start" != "$$" ]; then stop_pid "$start" KILL; fi
  osd="$(pid_of osd)"
  rgw="$(pid_of rgw)"
  # radosgw ignores SIGTERM while it waits for an OSD that is gone: kill it outright then.
  if [ -n "$rgw" ]; then
    if [ -n "$osd" ] && ours "$osd"; then stop_pid "$rgw"; else stop_pid "$rgw" KILL; fi
  fi
  # Order matters: radosgw, then the OSD, then the monitor (an OSD without its monitor waits).
  for name in osd mon; do
    local pid
    pid="$(pid_of "$name")"
    if [ -n "$pid" ]; then stop_pid "$pid"; fi
  done
  for pid in $(stray_daemons); do stop_pid "$pid" KILL; done
}

show_logs() {
  for f in "$W"/log/*; do
    [ -f "$f" ] || continue
    echo "----- $f (last 30 lines)" >&2
    tail -n 30 "$f" >&2
  done
}

alive() {
  [ -f "$W/env" ] || return 1
  for name in mon osd rgw; do
    local pid
    pid="$(pid_of "$name")"
    [ -n "$pid" ] && ours "$pid" || return 1
  done
}

# Polls `$@` every 50 ms for up to $1 seconds.
wait_for() {
  local seconds="$1" what="$2"
  shift 2
  local deadline=$((SECONDS + seconds))
  until "$@" >/dev/null 2>&1; do
    if [ "$SECONDS" -ge "$deadline" ]; then
      log "$what did not come up within ${seconds} s"
      return 1
    fi
    sleep 0.05
  done
}

# Admin commands served by the (absent) manager hang forever: every call has a deadline.
ceph_cli() { timeout 20 ceph -c "$CONF" "$@"; }

# Any HTTP answer (python3 rather than curl, which setup.sh does not install).
http_answers() {
  python3 - "$1" <<'EOF'
import sys, urllib.error, urllib.request
try:
    urllib.request.urlopen(sys.argv[1], timeout=2)
except urllib.error.HTTPError:
    pass
EOF
}

osd_up() { ceph_cli osd dump -f json | python3 -c 'import json,sys; d=json.load(sys.stdin); sys.exit(0 if any(o["up"] for o in d["osds"]) else 1)'; }

build() {
  for tool in ceph-mon ceph-osd radosgw ceph monmaptool ceph-authtool radosgw-admin; do
    command -v "$tool" >/dev/null || {
      log "$tool is missing: install ceph-mon ceph-osd radosgw ceph-common (scripts/setup.sh)"
      exit 3
    }
  done
  mkdir -p "$W"/{run,log,crash,mon/a,osd/0,rgw}
  echo "start $$" >"$W/pids"
  if [ -n "${CEPH_S3_OWNER_PID:-}" ]; then
    # From now on: an owner that dies during the build (a test killed with -9) is noticed within a second.
    # The watchdog names $W on its command line, so stop_all recognises it as this cluster's.
    setsid bash -c 'while kill -0 "$1" 2>/dev/null && [ -d "$3" ]; do sleep 1; done; exec "$2" stop "$3"' \
      ceph-s3-watchdog "$CEPH_S3_OWNER_PID" "$SELF" "$W" >/dev/null 2>&1 </dev/null &
    echo "watchdog $!" >>"$W/pids"
  fi
  # Two free ports (monitor, gateway) and the secrets; python's secrets, not `tr </dev/urandom | head` (SIGPIPE).
  read -r MON_PORT RGW_PORT FSID OSD_UUID ACCESS_KEY SECRET_KEY < <(python3 - <<'EOF'
import secrets, socket, uuid
ports = []
socks = []
for _ in range(2):
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    socks.append(s)
    ports.append(s.getsockname()[1])
print(*ports, uuid.uuid4(), uuid.uuid4(), "LFB" + secrets.token_hex(8).upper(), secrets.token_urlsafe(30))
EOF
)
  cat >"$CONF" <<EOF
[global]
fsid = $FSID
mon host = [v2:127.0.0.1:$MON_PORT]
mon initial members = a
public addr = 127.0.0.1
cluster addr = 127.0.0.1
ms bind msgr1 = false
ms bind msgr2 = true
run dir = $W/run
admin socket = $W/run/\$name.asok
log file = $W/log/\$name.log
crash dir = $W/crash
keyring = $W/admin.keyring
osd pool default size = 1
osd pool default min size = 1
mon allow pool size one = true
mon warn on pool no redundancy = false
osd crush chooseleaf type = 0
osd pool default pg num = 8
osd pool default pgp num = 8
osd pool default pg autoscale mode = off
# Each cluster-map change waits this long; RGW's pools cost two each (1 s: radosgw takes 10 s to start).
paxos propose interval = 0.05
# The monitor stops itself when its file system is under 5 % free by default.
mon data avail crit = 1
mon data avail warn = 2
ms async op threads = 1
[mon]
mon data = $W/mon/\$id
keyring = $W/mon/\$id/keyring
rocksdb cache size = 33554432
[osd]
osd data = $W/osd/\$id
keyring = $W/osd/\$id/keyring
osd objectstore = bluestore
# A sparse file in the OSD's folder (no loop device, no root mount); only written blocks use disk.
# Leave 'bluestore block path' unset: set to the folder's own 'block' it becomes a symlink to itself.
bluestore block create = true
bluestore block size = $((${OSD_SIZE_GB:-10} * 1024 * 1024 * 1024))
bluestore cache autotune = false
bluestore cache size = 134217728
osd op num shards = 2
[client.rgw.gw]
keyring = $W/rgw/keyring
rgw data = $W/rgw
# tcp_nodelay: without it a small response (a root, a listing) waits ~40 ms for the client's delayed ACK (Nagle).
rgw frontends = beast endpoint=127.0.0.1:$RGW_PORT tcp_nodelay=1
rgw thread pool size = 64
EOF

  log "monitor on 127.0.0.1:$MON_PORT"
  ceph-authtool --create-keyring "$W/mon.keyring" --gen-key -n mon. --cap mon 'allow *' >/dev/null
  ceph-authtool --create-keyring "$W/admin.keyring" --gen-key -n client.admin \
    --cap mon 'allow *' --cap osd 'allow *' --cap mgr 'allow *' --cap mds 'allow *' >/dev/null
  ceph-authtool "$W/mon.keyring" --import-keyring "$W/admin.keyring" >/dev/null
  monmaptool --create --fsid "$FSID" --addv a "[v2:127.0.0.1:$MON_PORT]" "$W/monmap" >/dev/null
  ceph-mon -c "$CONF" --mkfs -i a --monmap "$W/monmap" --keyring "$W/mon.keyring" >"$W/log/mkfs-mon.out" 2>&1
  # setsid: no terminal's Ctrl-C reaches the daemons, so the stop runs in order; with -f the PID is the daemon's.
  setsid ceph-mon -c "$CONF" -i a -f >"$W/log/mon.out" 2>&1 </dev/null &
  echo "mon $!" >>"$W/pids"
  wait_for 20 "the monitor" ceph_cli --connect-timeout 2 mon stat

  log "OSD (BlueStore in a sparse file)"
  local secret
  secret="$(ceph-authtool --gen-print-key)"
  printf '{"cephx_secret": "%s"}\n' "$secret" >"$W/osd-secret.json"
  ceph_cli osd new "$OSD_UUID" -i "$W/osd-secret.json" >/dev/null
  ceph-authtool --create-keyring "$W/osd/0/keyring" --name osd.0 --add-key "$secret" >/dev/null
  ceph-osd -c "$CONF" -i 0 --mkfs --osd-uuid "$OSD_UUID" >"$W/log/mkfs-osd.out" 2>&1
  setsid ceph-osd -c "$CONF" -i 0 -f >"$W/log/osd.out" 2>&1 </dev/null &
  echo "osd $!" >>"$W/pids"
  wait_for 30 "the OSD" osd_up

  log "RADOS Gateway on 127.0.0.1:$RGW_PORT"
  ceph_cli auth get-or-create client.rgw.gw mon 'allow rw' osd 'allow rwx' -o "$W/rgw/keyring" >/dev/null
  setsid radosgw -c "$CONF" -n client.rgw.gw -f >"$W/log/rgw.out" 2>&1 </dev/null &
  echo "rgw $!" >>"$W/pids"
  wait_for 30 "radosgw" http_answers "http://127.0.0.1:$RGW_PORT/"

  timeout 20 radosgw-admin -c "$CONF" user create --uid=lifeboat --display-name=lifeboat \
    --access-key="$ACCESS_KEY" --secret-key="$SECRET_KEY" >/dev/null
  cat >"$W/env" <<EOF
export AWS_ENDPOINT_URL=http://127.0.0.1:$RGW_PORT
export AWS_REGION=us-east-1
export AWS_ACCESS_KEY_ID=$ACCESS_KEY
export AWS_SECRET_ACCESS_KEY=$SECRET_KEY
export CEPH_CONF=$CONF
EOF
}

case "$CMD" in
start)
  if alive; then
    cat "$W/env"
    exit 0
  fi
  # A folder left by a crashed cluster (it has a pids file): what still runs is stopped and the folder
  # built again. Any other non-empty folder is not ours to delete.
  if [ -f "$W/pids" ]; then
    stop_all
    rm -rf "$W"
  elif [ -e "$W" ] && { [ ! -d "$W" ] || [ -n "$(ls -A "$W")" ]; }; then
    log "$W exists and is not empty, and has no pids file: not a cluster folder; give an empty or absent folder"
    exit 2
  fi
  # A dead stderr (the owner killed with -9) must not kill this script with SIGPIPE before its trap has
  # stopped the daemons: writes there fail with EPIPE instead, and the build fails (set -e).
  trap '' PIPE
  # Any failure of the build (set -e) leaves nothing running, then shows the daemons' logs if stderr is there.
  trap 'status=$?; if [ "$status" != 0 ]; then stop_all; show_logs || true; rm -rf "$W"; fi' EXIT
  build
  trap - EXIT
  # Built: the start is over, its pids line no longer names a live process of ours.
  sed -i '/^start /d' "$W/pids"
  cat "$W/env"
  ;;
stop)
  [ -e "$W" ] || exit 0
  [ -f "$W/pids" ] || {
    log "$W has no pids file: not a cluster folder, left alone"
    exit 1
  }
  stop_all
  rm -rf "$W"
  ;;
*) usage ;;
esac
