#!/usr/bin/env bash
# Builds bindings/swift/Gateway.xcframework for Xcode: the Rust static library for macOS arm64
# and x86_64 (one universal libgateway.a, made with lipo), the header and a module map that
# names the module CGateway. bindings/swift/Package.swift uses it, when present, instead of the
# system library (so an Xcode app needs no linker flags).
#
# macOS only (xcodebuild, lipo); it cannot run on Linux. Needs Xcode and rustup:
#   rustup target add aarch64-apple-darwin x86_64-apple-darwin
#   scripts/build-xcframework.sh            # writes bindings/swift/Gateway.xcframework
#
# The Rust build goes to cargo's target directory (CARGO_TARGET_DIR honoured).
set -euo pipefail
source "$(dirname "$0")/target-dir.sh"
cd "$(dirname "$0")/.."

[ "$(uname -s)" = Darwin ] || { echo "build-xcframework.sh: needs macOS with Xcode" >&2; exit 1; }

targets=(aarch64-apple-darwin x86_64-apple-darwin)
# The release library runs on macOS 13 and later (the Swift package needs 15 for its own use of
# the standard library's Mutex); not overridable, so every artifact says the same.
# scripts/macos-link.sh checks the same minimum OS in CI.
export MACOSX_DEPLOYMENT_TARGET=13.0
for target in "${targets[@]}"; do
  cargo build --release --lib --target "$target"
done

out=$target_dir/xcframework
rm -rf "$out" bindings/swift/Gateway.xcframework
mkdir -p "$out/lib" "$out/Headers"
lipo -create "$target_dir/aarch64-apple-darwin/release/libgateway.a" \
  "$target_dir/x86_64-apple-darwin/release/libgateway.a" -output "$out/lib/libgateway.a"
lipo -info "$out/lib/libgateway.a"

cp include/gateway.h "$out/Headers/"
# The same module as bindings/swift/Sources/CGateway, with the header beside it; the library is
# the framework's own, so no `link` line.
cat >"$out/Headers/module.modulemap" <<'EOF'
module CGateway {
    header "gateway.h"
    export *
}
EOF

xcodebuild -create-xcframework \
  -library "$out/lib/libgateway.a" -headers "$out/Headers" \
  -output bindings/swift/Gateway.xcframework
echo "wrote bindings/swift/Gateway.xcframework"
