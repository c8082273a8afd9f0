#!/usr/bin/env bash
# Every test of the project, from one command (README's test command; .ci/run runs it too):
# installs what the tests need on Debian (as root), then runs the three suites in turn and
# stops at the first that fails:
#   cargo   cargo test --features failpoints,cluster-etcd (the Rust, C and C++ tests)
#   swift   scripts/swift-test.sh --debug    (the Swift package, in a Debian 13 root)
#   node    scripts/node-interop.sh          (against the real Node gateway, from npm)
#
#   bash scripts/test.sh                                  # everything
#   GATEWAY_TEST_SUITES="cargo node" bash scripts/test.sh # while working: named suites only
#
# What the packages are for: unshare, setpriv and systemd-socket-activate (util-linux,
# systemd), ip (iproute2) for the namespace and supervisor tests; gcc, g++, valgrind and
# pkg-config for the C ABI tests (ASan+UBSan and valgrind); debootstrap for the Swift root;
# mount, exfat-fuse and exfatprogs for the exFAT tests (a FUSE mount); bindfs for the tests of
# a state dir on a path-based FUSE file system (and the two-host tests); strace; tmux to drive
# `openclaw tui` in the real-client tests and chromium to load the Control UI
# (scripts/node-interop.sh); etcd-server and etcd-client (etcdctl) for the cluster-mode tests'
# real etcd cluster, protobuf-compiler to build the cluster-etcd feature. Without root or
# apt-get nothing is installed, and a test whose tool is missing fails naming it.
# CARGO_TARGET_DIR is honoured throughout.
set -euo pipefail
source "$(dirname "$0")/target-dir.sh"
cd "$(dirname "$0")/.."

packages=(util-linux iproute2 systemd gcc g++ valgrind pkg-config debootstrap mount exfat-fuse
  exfatprogs bindfs strace tmux chromium etcd-server etcd-client protobuf-compiler)
suites=${GATEWAY_TEST_SUITES:-cargo swift node}

step() { printf '\n=== %s\n' "$*"; }

for suite in $suites; do
  case $suite in
    cargo | swift | node) ;;
    *) echo "test.sh: unknown suite '$suite' in GATEWAY_TEST_SUITES (cargo, swift, node)" >&2; exit 2 ;;
  esac
done
for suite in cargo swift node; do
  case " $suites " in *" $suite "*) ;; *) echo "NOT RUN (GATEWAY_TEST_SUITES): $suite" ;; esac
done

step "test packages"
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
  missing=()
  for package in "${packages[@]}"; do
    dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed" \
      || missing+=("$package")
  done
  if [ ${#missing[@]} -gt 0 ]; then
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
    echo "installed: ${missing[*]}"
  else
    echo "all installed: ${packages[*]}"
  fi
else
  echo "not root with apt-get: nothing installed; the tests need ${packages[*]}"
fi

for suite in $suites; do
  case $suite in
    cargo)
      step "cargo test --features failpoints,cluster-etcd"
      cargo test --features failpoints,cluster-etcd
      ;;
    swift) step "scripts/swift-test.sh --debug"; bash scripts/swift-test.sh --debug ;;
    node) step "scripts/node-interop.sh"; bash scripts/node-interop.sh ;;
  esac
done
step "all tests passed (suites: $suites)"
