#!/usr/bin/env bash
# Links every macOS artifact on Linux, without an SDK, and checks each Mach-O it makes.
#
# For aarch64-apple-darwin and x86_64-apple-darwin, with MACOSX_DEPLOYMENT_TARGET=13.0 (what
# bindings/swift/Package.swift and the release artifacts say):
#   - cargo zigbuild: the `gateway` binary, libgateway.dylib and libgateway.a (no features, as
#     shipped), and every test binary (`--tests --features failpoints,cluster-etcd`; scripts/macos-test.sh
#     runs them on a Mac with failpoints);
#   - zig cc: scripts/kinfo-proc-layout.c, whose _Static_asserts check the struct kinfo_proc
#     offsets src/lock/liveness.rs reads against the SDK headers zig ships;
#   - zig cc / zig c++: examples/c/host.c and examples/cpp/host.cpp against libgateway.a;
#   - each linked image: the right CPU, only /usr/lib/libSystem.B.dylib loaded, every undefined
#     symbol bound to libSystem (two-level namespace, nothing looked up at run time), an
#     LC_BUILD_VERSION for macOS with minos 13.0, and for the dylib the id
#     @rpath/libgateway.dylib;
#   - libgateway.a: every symbol it leaves undefined is exported by libSystem (zig's
#     libSystem.tbd, the same stub the linker uses); our objects say minos 13.0, the prebuilt
#     Rust standard library's say at most that;
#   - one universal libgateway.a (llvm-lipo) whose two slices are exactly the two archives,
#     less the LLVM bitcode the prebuilt Rust standard library embeds in its objects (rustc's
#     LLVM is newer than any Debian llvm, whose llvm-lipo must parse that bitcode to build a
#     fat archive; Xcode has not used embedded bitcode since Xcode 14). Machine code, symbols
#     and load commands are untouched, and each slice passes the archive checks again.
# Nothing here is run: Linux cannot run Mach-O. scripts/macos-test.sh runs the tests on a Mac.
#
# Tools, fetched when missing (pinned): ziglang from PyPI, cargo-zigbuild from crates.io, the
# two rustup targets, and Debian's llvm (llvm-objdump, llvm-nm; llvm-lipo-N from llvm-N). When
# one cannot be had the script prints SKIPPED and exits 0; any other failure exits 1.
# Artifacts go to cargo's target directory (CARGO_TARGET_DIR honoured), under <target>/macos.
set -euo pipefail
source "$(dirname "$0")/target-dir.sh"
cd "$(dirname "$0")/.."

ziglang_version=0.17.1
cargo_zigbuild_version=0.24.0
targets=(aarch64-apple-darwin x86_64-apple-darwin)
export MACOSX_DEPLOYMENT_TARGET=13.0
out=$target_dir/macos
started=$SECONDS

skip() {
  echo "SKIPPED: $* (the macOS link step needs it; nothing was linked for macOS)"
  exit 0
}
fail() {
  echo "macos-link: $*" >&2
  exit 1
}

# --- tools ---------------------------------------------------------------------------------

zig() { python3 -m ziglang "$@"; }
if [ "$(zig version 2>/dev/null)" != "$ziglang_version" ]; then
  if ! python3 -m pip --version >/dev/null 2>&1 && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    DEBIAN_FRONTEND=noninteractive timeout 600 apt-get install -y -qq --no-install-recommends \
      python3-pip >/dev/null || true
  fi
  python3 -m pip --version >/dev/null 2>&1 || skip "no pip for python3, to install zig from PyPI"
  # A pyenv or venv Python takes it as is; Debian's own Python wants the PEP 668 override.
  timeout 300 python3 -m pip install -q "ziglang==$ziglang_version" 2>/dev/null \
    || timeout 300 python3 -m pip install -q --break-system-packages "ziglang==$ziglang_version" \
    || skip "cannot install ziglang==$ziglang_version from PyPI"
fi
[ "$(zig version)" = "$ziglang_version" ] || fail "python3 -m ziglang is not $ziglang_version"
# cargo-zigbuild takes `python3 -m ziglang` before any zig on PATH: this one.

if [ "$(cargo-zigbuild --version 2>/dev/null)" != "cargo-zigbuild $cargo_zigbuild_version" ]; then
  timeout 900 nice cargo install --locked --quiet "cargo-zigbuild@$cargo_zigbuild_version" \
    || skip "cannot install cargo-zigbuild $cargo_zigbuild_version from crates.io"
fi

for target in "${targets[@]}"; do
  if ! rustup target list --installed | grep -qx "$target"; then
    timeout 300 rustup target add "$target" >/dev/null 2>&1 \
      || skip "cannot install the $target standard library (rustup target add $target)"
  fi
done

# Debian's llvm: llvm-objdump, llvm-nm and llvm-objcopy unversioned (package llvm), llvm-lipo
# only as llvm-lipo-N (package llvm-N, which llvm depends on).
llvm_tool() {
  local name=$1 found
  found=$(command -v "llvm-$name" || true)
  [ -n "$found" ] || found=$(compgen -c "llvm-$name-" | sort -t- -k3 -n | tail -n 1 || true)
  [ -n "$found" ] && command -v "$found"
}
if ! { llvm_tool objdump && llvm_tool nm && llvm_tool objcopy && llvm_tool lipo; } >/dev/null; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    DEBIAN_FRONTEND=noninteractive timeout 600 apt-get install -y -qq --no-install-recommends \
      llvm >/dev/null || skip "cannot install Debian's llvm (apt-get install llvm)"
  fi
fi
objdump=$(llvm_tool objdump) || skip "no llvm-objdump (apt-get install llvm)"
nm=$(llvm_tool nm) || skip "no llvm-nm (apt-get install llvm)"
objcopy=$(llvm_tool objcopy) || skip "no llvm-objcopy (apt-get install llvm)"
lipo=$(llvm_tool lipo) || skip "no llvm-lipo (apt-get install llvm)"

libsystem_tbd=$(python3 -c 'import ziglang, os; print(os.path.dirname(ziglang.__file__))')/lib/libc/darwin/libSystem.tbd
[ -f "$libsystem_tbd" ] || fail "zig $ziglang_version has no $libsystem_tbd"
rm -rf "$out"
mkdir -p "$out"
# Every symbol libSystem and the libraries it re-exports define, from the tbd's symbol lists.
grep -o "'\?_[A-Za-z0-9_\$.]*'\?" "$libsystem_tbd" | tr -d "'" | sort -u >"$out/libSystem.symbols"

# --- checks --------------------------------------------------------------------------------

# check_image FILE ARCH KIND: KIND is exe or dylib.
check_image() {
  local file=$1 arch=$2 kind=$3 header loads id undefined build
  header=$("$objdump" --macho --private-header "$file")
  case "$arch:$kind" in
    arm64:*) grep -qE '^ *MH_MAGIC_64 +ARM64 ' <<<"$header" ;;
    x86_64:*) grep -qE '^ *MH_MAGIC_64 +X86_64 ' <<<"$header" ;;
  esac || fail "$file: not a 64-bit $arch Mach-O:"$'\n'"$header"
  case $kind in
    exe) grep -qw EXECUTE <<<"$header" ;;
    dylib) grep -qw DYLIB <<<"$header" ;;
  esac || fail "$file: not a Mach-O $kind:"$'\n'"$header"

  loads=$("$objdump" --macho --dylibs-used "$file" | tail -n +2 | awk '{print $1}')
  if [ "$kind" = dylib ]; then
    id=$("$objdump" --macho --dylib-id "$file" | tail -n +2)
    [ "$id" = "@rpath/libgateway.dylib" ] || fail "$file: install name is $id, not @rpath/libgateway.dylib"
    loads=$(grep -vxF "$id" <<<"$loads" || true)
  fi
  [ "$loads" = /usr/lib/libSystem.B.dylib ] \
    || fail "$file: loads more than libSystem:"$'\n'"$loads"

  # `-m` names the dylib each import binds to; "dynamically looked up" would be a flat lookup.
  undefined=$("$nm" -m -u "$file" | grep -v '(from libSystem)$' || true)
  [ -z "$undefined" ] || fail "$file: symbols not bound to libSystem:"$'\n'"$undefined"

  build=$("$objdump" --macho --private-headers "$file" | grep -A4 'cmd LC_BUILD_VERSION' || true)
  grep -qE '^ *platform macos$' <<<"$build" && grep -qE '^ *minos 13\.0$' <<<"$build" \
    || fail "$file: no LC_BUILD_VERSION for macOS 13.0:"$'\n'"$build"
}

# check_archive FILE: its undefined symbols are libSystem's, its minimum OS at most 13.0.
check_archive() {
  local file=$1 undefined defined missing minos
  # --no-llvm-bc: read the Mach-O symbol tables, not the bitcode the Rust standard library's
  # objects also carry (newer than Debian's LLVM reads).
  # (An object without symbols is reported on stderr; only other complaints are shown.)
  undefined=$("$nm" --no-llvm-bc -u "$file" 2>"$out/nm.err" | grep -v ':$' | grep -v '^$' | sort -u)
  defined=$("$nm" --no-llvm-bc -g --defined-only "$file" 2>>"$out/nm.err" | awk 'NF >= 3 {print $3}' | sort -u)
  grep -v ': no symbols$' "$out/nm.err" >&2 || true
  missing=$(comm -23 <(comm -23 <(echo "$undefined") <(echo "$defined")) "$out/libSystem.symbols")
  [ -z "$missing" ] || fail "$file: undefined and not in libSystem:"$'\n'"$missing"
  # Our objects are built for 13.0; the prebuilt standard library's for rustc's default
  # (11.0 arm64, 10.12 x86_64), which any 13.0 image may link.
  minos=$("$objdump" --macho --private-headers "$file" | awk '$1 == "minos" {print $2}' | sort -uV)
  [ "$(tail -n 1 <<<"$minos")" = 13.0 ] || fail "$file: minimum OS versions $minos, highest not 13.0"
}

# --- build, link, check --------------------------------------------------------------------

count=0
for target in "${targets[@]}"; do
  arch=${target%%-*}
  [ "$arch" = aarch64 ] && arch=arm64
  step_started=$SECONDS
  # Tests first: they build the library with `failpoints`; the plain build after them leaves
  # the shipped library and binary in <target>/<triple>/debug.
  nice cargo zigbuild --locked --target "$target" --tests --features failpoints,cluster-etcd \
    --message-format=json-render-diagnostics >"$out/$target-tests.json"
  nice cargo zigbuild --locked --target "$target" --lib --bins
  built=$target_dir/$target/debug

  check_image "$built/gateway" "$arch" exe
  check_image "$built/libgateway.dylib" "$arch" dylib
  check_archive "$built/libgateway.a"
  count=$((count + 3))

  tests=$(python3 -c '
import json, sys
for line in open(sys.argv[1]):
    m = json.loads(line)
    if m.get("reason") == "compiler-artifact" and m["profile"]["test"] and m.get("executable"):
        print(m["executable"])' "$out/$target-tests.json" | sort -u)
  [ "$(wc -l <<<"$tests")" -ge 10 ] || fail "$target: only these test binaries were built: $tests"
  for test in $tests; do
    check_image "$test" "$arch" exe
    count=$((count + 1))
  done

  # The kinfo_proc offsets src/lock/liveness.rs reads, against the SDK headers.
  zig cc -target "${target%%-*}-macos.13.0" -std=c11 -Wall -Wextra -Werror -c \
    scripts/kinfo-proc-layout.c -o "$out/kinfo-proc-layout-$arch.o" \
    || fail "$target: struct kinfo_proc is not the layout src/lock/liveness.rs parses"
  zig cc -target "${target%%-*}-macos.13.0" -std=c11 -Wall -Wextra -Wpedantic -Werror -Iinclude \
    examples/c/host.c "$built/libgateway.a" -o "$out/host-c-$arch"
  zig c++ -target "${target%%-*}-macos.13.0" -std=c++17 -Wall -Wextra -Wpedantic -Werror -Iinclude \
    -Ibindings/cpp examples/cpp/host.cpp "$built/libgateway.a" -o "$out/host-cpp-$arch"
  check_image "$out/host-c-$arch" "$arch" exe
  check_image "$out/host-cpp-$arch" "$arch" exe
  count=$((count + 2))
  "$objcopy" --remove-section=__LLVM,__bitcode --remove-section=__LLVM,__cmdline \
    "$built/libgateway.a" "$out/libgateway-$arch.a"
  echo "$target: the binary, the dylib, the archive, $(wc -l <<<"$tests") test binaries and" \
    "the two examples linked and checked ($((SECONDS - step_started)) s)"
done

"$lipo" -create "$out/libgateway-arm64.a" "$out/libgateway-x86_64.a" -output "$out/libgateway.a"
"$lipo" "$out/libgateway.a" -verify_arch arm64 x86_64 || fail "universal archive lacks a slice"
[ "$("$lipo" -archs "$out/libgateway.a" | tr ' ' '\n' | sort | xargs)" = "arm64 x86_64" ] \
  || fail "universal archive has slices $("$lipo" -archs "$out/libgateway.a")"
for arch in arm64 x86_64; do
  "$lipo" "$out/libgateway.a" -thin "$arch" -output "$out/slice-$arch.a"
  cmp -s "$out/slice-$arch.a" "$out/libgateway-$arch.a" || fail "the $arch slice differs from its archive"
  check_archive "$out/slice-$arch.a"
done
echo "universal libgateway.a: slices $("$lipo" -archs "$out/libgateway.a" | xargs), each its target's archive"
echo "macOS link step: $count Mach-O images and 2 archives checked in $((SECONDS - started)) s"
