#!/usr/bin/env bash
# A background load that opens and closes loopback connections (127.0.0.1 only) as fast as it
# can, and stops by itself after --seconds: it takes the ports of the kernel's ephemeral range
# the way busy programs do, so a test that picked a port there could lose it between the pick
# and the use. The tests pick theirs outside that range (tests/common/ports.rs, `free_port`).
#
#   scripts/loopback-load.sh --seconds 600 [--threads 3] &
#   cargo test --features failpoints
#
# scripts/loopback-load.rs, built with plain rustc into the cargo target directory.
set -euo pipefail
source "$(dirname "$0")/target-dir.sh"
cd "$(dirname "$0")/.."

bin=$target_dir/loopback-load/loopback-load
if [ ! -x "$bin" ] || [ scripts/loopback-load.rs -nt "$bin" ]; then
  mkdir -p "$(dirname "$bin")"
  rustc --edition 2024 -O scripts/loopback-load.rs -o "$bin"
fi
exec "$bin" "$@"
