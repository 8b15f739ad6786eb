#!/usr/bin/env bash
# Installs everything Lifeboat and its tests need on Debian 12 (bookworm), then
# the npm dependencies (which compiles the TypeScript and the small native
# helper). Node.js >= 20 with npm must already be installed.
set -euo pipefail
cd "$(dirname "$0")/.."

# Quiet unless something fails: apt and npm write to a log, shown only when a step fails.
LOG_DIR="$(mktemp -d)"
LOG="$LOG_DIR/setup.log"
trap 'status=$?; if [ "$status" != 0 ]; then echo "setup.sh failed (exit $status); its log ($LOG):" >&2; cat "$LOG" >&2; else rm -rf "$LOG_DIR"; fi' EXIT

SUDO=""
if [ "$(id -u)" != 0 ]; then SUDO="sudo"; fi
export DEBIAN_FRONTEND=noninteractive
# qemu-utils (+ qemu-block-extra for nfs://): qcow2 restores and the tests' qemu-img; e2fsprogs: the demo and
# benchmark images; restic and borgbackup: the benchmark's reference tools;
# util-linux (losetup) and time: block-device and memory tests; rpcbind (for
# rpcinfo), libnfs-utils, libnbd-bin and nbd-client: real RPC, NFS and NBD clients for the protocol tests; python3/make/g++:
# node-gyp for the SEEK_DATA helper; qemu-system-x86, busybox-static, syslinux, mtools,
# dosfstools, fdisk, cpio, openssl: the boot test's tiny VM (test/fixtures/make-boot-image.sh);
# iproute2 (ip): a test address on lo where a machine has no other; nfs-ganesha: the reference server of bench/nfs-bench; nbdkit: an NBD source in the tests and bench/nbd-bench; fio: bench/nbd-bench;
# postgresql (15): test/catalog-postgres.test.ts runs the catalog suite on a temporary cluster.
# openssl also makes serve's self-signed HTTPS certificate (src/auth/tls.ts, test/auth-tls.test.ts);
# script (util-linux; Debian's bsdutils, an essential package) gives test/cli-users.test.ts a terminal for the password prompt.
# chromium: the web console's tests drive it headless with puppeteer-core (no browser download from outside).
# ceph-mon, ceph-osd, radosgw, ceph-common: test/objects-s3.test.ts runs the object store on a one-node Ceph cluster with its
# S3 gateway (scripts/ceph-s3.sh; no daemon runs outside the tests).
PKGS="qemu-utils qemu-block-extra qemu-system-x86 e2fsprogs util-linux time rpcbind libnfs-utils libnbd-bin nbd-client busybox-static syslinux syslinux-common mtools dosfstools fdisk cpio openssl python3 make g++ restic borgbackup nfs-ganesha nfs-ganesha-vfs nbdkit fio iproute2 postgresql chromium dnsmasq-base iputils-ping qemu-guest-agent systemd libguestfs-tools linux-image-amd64 libguestfs-xfs fuse3 ntfs-3g btrfs-progs ceph-mon ceph-osd radosgw ceph-common"
missing=""
for p in $PKGS; do dpkg -s "$p" >/dev/null 2>&1 || missing="$missing $p"; done
if [ -n "$missing" ]; then
  echo "installing Debian packages:$missing"
  $SUDO apt-get update -qq >>"$LOG" 2>&1
  $SUDO apt-get install -y -qq --no-install-recommends $missing >>"$LOG" 2>&1
fi

node -e 'const [M]=process.versions.node.split(".").map(Number); if (M < 20) { console.error("Lifeboat needs Node.js >= 20, found " + process.version); process.exit(1) }'
echo "installing npm dependencies and building"
npm ci --no-audit --no-fund >>"$LOG" 2>&1
