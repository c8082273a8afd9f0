#!/usr/bin/env bash
# Every test that can run on a Mac, from one command. Nobody working on this project has run it
# on a Mac yet: CI (scripts/macos-link.sh) only compiles and links its test binaries for both
# Apple targets on Linux. When you run it, please report what fails.
#
#   scripts/macos-test.sh           # cargo test, then the Swift package's tests
#
# What runs:
#   cargo   cargo test --features failpoints: every Rust, C and C++ test that compiles for
#           macOS. Linux-only tests (namespaces, exFAT through FUSE, systemd socket activation,
#           valgrind, strace, /proc) are left out by `#[cfg(target_os = "linux")]` where they
#           are written, never skipped at run time; the macOS-only ones (`#![cfg(target_os =
#           "macos")]`: tests/macos_bind.rs, a wildcard listener beside ours, and tests/macos.rs
#           where present: F_GETLK seeing a beacon, a zombie owner, argv of a live process) run
#           with the rest and once more by name below, so their result is easy to find.
#   swift   swift test in bindings/swift, against the debug build of libgateway.a (or
#           bindings/swift/Gateway.xcframework when scripts/build-xcframework.sh made one).
#
# Needs Xcode (or its command line tools: cc, c++, swift) and rustup with a stable toolchain.
# The Node interop tests stay `#[ignore]`d as on Linux (scripts/node-interop.sh runs them).
# CARGO_TARGET_DIR is honoured.
set -euo pipefail
source "$(dirname "$0")/target-dir.sh"
cd "$(dirname "$0")/.."

[ "$(uname -s)" = Darwin ] || { echo "macos-test.sh: runs on macOS only (CI links these tests: scripts/macos-link.sh)" >&2; exit 2; }
export MACOSX_DEPLOYMENT_TARGET=13.0
step() { printf '\n=== %s\n' "$*"; }

step "cargo test --features failpoints"
cargo test --features failpoints

step "the macOS-only tests, by name"
macos_tests=()
for file in tests/macos*.rs; do
  [ -e "$file" ] && macos_tests+=(--test "$(basename "$file" .rs)")
done
[ ${#macos_tests[@]} -gt 0 ] || { echo "no tests/macos*.rs: nothing macOS-only to run" >&2; exit 1; }
cargo test --features failpoints "${macos_tests[@]}"

step "swift test (bindings/swift)"
# A directory with the static library only: next to libgateway.dylib, `-lgateway` would pick
# the shared one. The build products go under cargo's target directory.
cargo build --lib
static_dir=$target_dir/swift-lib/debug
mkdir -p "$static_dir"
cp -p "$target_dir/debug/libgateway.a" "$static_dir/"
swift test --package-path bindings/swift --scratch-path "$target_dir/swift-macos" \
  -Xlinker "-L$static_dir"
