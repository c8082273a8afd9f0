# Sourced by the scripts in scripts/ and by .ci/run: sets `target_dir` to the directory cargo
# builds into, honouring CARGO_TARGET_DIR (and a `build.target-dir` in a cargo config).
#
#   source "$(dirname "$0")/target-dir.sh"    # before the script's own `cd`
#
# A relative CARGO_TARGET_DIR is relative to the directory the script was started from, as it
# is for cargo: it is made absolute here, so the script's `cd` does not move it.
case ${CARGO_TARGET_DIR:-} in
  '' | /*) ;;
  *) export CARGO_TARGET_DIR="$PWD/$CARGO_TARGET_DIR" ;;
esac
target_dir=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." \
  && cargo metadata --format-version 1 --no-deps \
  | sed -n 's/.*"target_directory":"\([^"]*\)".*/\1/p')
[ -n "$target_dir" ] || { echo "cannot tell cargo's target directory (cargo metadata)" >&2; exit 1; }
