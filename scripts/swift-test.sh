#!/usr/bin/env bash
# Builds and tests the Swift package (bindings/swift) on Debian 12, where Swift is not packaged:
# inside a Debian 13 root made with debootstrap, where Debian's `swiftlang` (Swift 6.0.3)
# installs. The Rust static library is built here on the host and linked there (the root's glibc
# is newer, so that works).
#
#   scripts/swift-test.sh [--debug]      # as root; needs debootstrap (apt-get install debootstrap)
#
# The root is made once (about a minute, a ~450 MB download) and reused; it lives outside the
# repository, in $GATEWAY_SWIFT_ROOT (default /var/tmp/gateway-swift-root), so `cargo clean` or
# `git clean` never walks into it. Mounts (/proc, /dev, the repository) exist only while this
# script runs: a trap unmounts them on every exit, failure and interrupt included.
#
# Environment: GATEWAY_SWIFT_ROOT (where the root lives), GATEWAY_DEBIAN_MIRROR (default: the
# Debian mirror apt already uses on this machine), SWIFT_TEST_ARGS (extra `swift test` args,
# e.g. "--filter LockTests"), CARGO_TARGET_DIR (honoured: the build products go there).
#
# The library is built with cluster mode (`cluster-etcd`, needs protoc). When etcd is installed
# (Debian's etcd-server), one member runs on loopback for the cluster tests while the tests run
# (the root shares this machine's network); its client URL reaches them as GATEWAY_TEST_ETCD.
set -euo pipefail
source "$(dirname "$0")/target-dir.sh"
cd "$(dirname "$0")/.."
repo=$PWD

profile=release
cargo_profile=(--release)
if [ "${1:-}" = --debug ]; then
  profile=debug
  cargo_profile=()
fi

root=${GATEWAY_SWIFT_ROOT:-/var/tmp/gateway-swift-root}
ready_marker=$root/.gateway-swift-root-ready
inner_repo=/gateway            # where the repository appears inside the root
inner_target=/gateway-target   # where cargo's target directory appears inside the root

step() { printf '\n=== %s\n' "$*"; }
die() { echo "swift-test.sh: $*" >&2; exit 1; }

[ "$(id -u)" = 0 ] || die "run as root (debootstrap, chroot and mount need it)"
case $root in /*) ;; *) die "GATEWAY_SWIFT_ROOT must be an absolute path" ;; esac
case $root/ in "$repo"/*) die "keep GATEWAY_SWIFT_ROOT outside the repository ($repo)" ;; esac

# One run at a time per root: two runs would mount over each other and unmount under each other.
mkdir -p "$(dirname "$root")"
exec 9>"$root.lock"
flock -n 9 || { echo "waiting for another swift-test.sh using $root"; flock 9; }

# The paths under the root that are mount points right now, deepest first.
mounts_under_root() {
  awk -v root="$root" '{ print $5 }' /proc/self/mountinfo \
    | awk -v root="$root" 'index($0, root "/") == 1' | sort -r
}

unmount_all() {
  local target
  for target in $(mounts_under_root); do
    umount "$target" 2>/dev/null || umount -l "$target" || echo "could not unmount $target" >&2
  done
}
etcd_pid=
etcd_dir=
cleanup() {
  if [ -n "$etcd_pid" ]; then kill "$etcd_pid" 2>/dev/null || true; wait "$etcd_pid" 2>/dev/null || true; fi
  if [ -n "$etcd_dir" ]; then rm -rf "$etcd_dir"; fi
  unmount_all
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
unmount_all # left over by a run that was SIGKILLed

step "Rust static library ($profile)"
cargo build "${cargo_profile[@]}" --features cluster-etcd --lib
test -f "$target_dir/$profile/libgateway.a" || die "$target_dir/$profile/libgateway.a was not built"
# A directory with the static library only: next to libgateway.so, `-lgateway` would pick the
# shared one, and the Swift programs would need it at run time.
static_dir=swift-lib/$profile  # under the target directory
mkdir -p "$target_dir/$static_dir"
cp -p "$target_dir/$profile/libgateway.a" "$target_dir/$static_dir/"

step "device_signer example (signs the device blocks of the Swift pairing tests)"
cargo build "${cargo_profile[@]}" --features cluster-etcd --example device_signer

if [ ! -f "$ready_marker" ]; then
  step "Debian 13 root with swiftlang at $root (once)"
  command -v debootstrap >/dev/null || die "debootstrap is missing: apt-get install -y debootstrap"
  mirror=${GATEWAY_DEBIAN_MIRROR:-}
  if [ -z "$mirror" ]; then
    # The mirror apt already uses for this machine's own release (not -security, not -updates).
    codename=$(. /etc/os-release && echo "${VERSION_CODENAME:-}")
    mirror=$(apt-get indextargets --format '$(REPO_URI) $(RELEASE) $(ORIGIN)' 2>/dev/null \
      | awk -v c="$codename" '$2 == c && $3 == "Debian" { print $1; exit }')
    mirror=${mirror:-http://deb.debian.org/debian/}
  fi
  echo "mirror: $mirror"
  # A root without the marker is a run that stopped half-way: start it again from scratch.
  if [ -e "$root" ]; then
    [ -z "$(mounts_under_root)" ] || die "$root still has mounts; not removing it"
    rm -rf --one-file-system "$root"
  fi
  debootstrap --variant=minbase trixie "$root" "$mirror" >"$root.debootstrap.log" 2>&1 \
    || { tail -n 30 "$root.debootstrap.log" >&2; die "debootstrap failed (log: $root.debootstrap.log)"; }
  mount -t proc proc "$root/proc"
  chroot "$root" env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends \
    swiftlang libc6-dev >"$root.apt.log" 2>&1 \
    || { tail -n 30 "$root.apt.log" >&2; die "installing swiftlang failed (log: $root.apt.log)"; }
  chroot "$root" apt-get clean
  umount "$root/proc"
  touch "$ready_marker"
fi

step "mounts: /proc, /dev, the repository at $inner_repo, $target_dir at $inner_target"
mount -t proc proc "$root/proc"
mount --bind /dev "$root/dev"
mkdir -p "$root$inner_repo" "$root$inner_target"
mount --bind "$repo" "$root$inner_repo"
mount --bind "$target_dir" "$root$inner_target"

in_root() {
  chroot "$root" env -i HOME=/root PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    LANG=C.UTF-8 TMPDIR=/tmp "$@"
}
in_root swift --version

# The build products go under cargo's target directory, not into bindings/swift/.build.
swift_args=(--package-path "$inner_repo/bindings/swift" --scratch-path "$inner_target/swift"
  -Xlinker "-L$inner_target/$static_dir")

step "swift build"
in_root swift build "${swift_args[@]}"

# A loopback port nothing listens on, from a range outside the kernel's ephemeral ports.
free_port() {
  local port
  for port in $(shuf -i 20000-29999 -n 200); do
    if ! (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then echo "$port"; return; fi
  done
  die "no free loopback port for etcd"
}

etcd_env=()
if command -v etcd >/dev/null; then
  step "etcd for the cluster tests (one member on loopback)"
  etcd_dir=$(mktemp -d /tmp/gateway-swift-etcd.XXXXXX)
  client=http://127.0.0.1:$(free_port)
  peer=http://127.0.0.1:$(free_port)
  etcd --name swift --data-dir "$etcd_dir/data" --listen-client-urls "$client" \
    --advertise-client-urls "$client" --listen-peer-urls "$peer" \
    --initial-advertise-peer-urls "$peer" --initial-cluster "swift=$peer" >"$etcd_dir/log" 2>&1 &
  etcd_pid=$!
  for _ in $(seq 300); do
    if (exec 3<>"/dev/tcp/127.0.0.1/${client##*:}") 2>/dev/null; then break; fi
    kill -0 "$etcd_pid" 2>/dev/null || { tail -n 20 "$etcd_dir/log" >&2; die "etcd did not start"; }
    sleep 0.1
  done
  etcd_env=(GATEWAY_TEST_ETCD="$client")
  echo "etcd at $client"
else
  echo "etcd is not installed: the Swift cluster tests that need a store are skipped"
fi

step "swift test"
# shellcheck disable=SC2086 # SWIFT_TEST_ARGS is split on purpose
in_root GATEWAY_DEVICE_SIGNER="$inner_target/$profile/examples/device_signer" "${etcd_env[@]}" \
  swift test "${swift_args[@]}" ${SWIFT_TEST_ARGS:-}
