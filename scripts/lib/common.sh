# Shared helpers for the project's scripts: timed steps, clear failures, and the toolchain
# environment that scripts/setup prepared. Source it; do not run it.

set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
# Where set-up keeps its stamps and tools; outside the work tree so `git clean` keeps them.
STATE_DIR="${SWITCHBOARD_STATE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/switchboard-setup}"
RUST_WEB_PREFIX="${SWITCHBOARD_RUST_WEB_PREFIX:-/opt/rust-web}"
mkdir -p "$STATE_DIR"

say() { printf '\033[1m==>\033[0m %s\n' "$*"; }
fail() {
  printf '\033[31merror:\033[0m %s\n' "$1" >&2
  [ $# -gt 1 ] && printf '       next: %s\n' "$2" >&2
  exit 1
}

# step NAME COMMAND...: runs a step, printing what it does and how long it took.
step() {
  local name=$1
  shift
  local started=$SECONDS
  say "$name"
  if ! "$@"; then
    fail "$name failed after $((SECONDS - started)) s" "read the output above; re-run the same command once the cause is fixed (set-up that is already done takes seconds)"
  fi
  say "$name: done in $((SECONDS - started)) s"
}

# The wasm-bindgen version Cargo.lock pins: the CLI must match it exactly.
wasm_bindgen_version() {
  awk '/^name = "wasm-bindgen"$/ { getline; gsub(/version = |"/, ""); print; exit }' "$ROOT/Cargo.lock"
}

# The Leptos output name, read from Leptos.toml (the one place the Leptos settings are edited).
leptos_output_name() {
  sed -n 's/^output-name = "\(.*\)"$/\1/p' "$ROOT/Leptos.toml" | head -n 1
}

# Exports the environment every build uses: the toolchain that can build wasm32 and the tools
# set-up installed.
use_build_env() {
  if [ -f "$STATE_DIR/toolchain" ]; then
    RUSTUP_TOOLCHAIN="$(cat "$STATE_DIR/toolchain")"
    export RUSTUP_TOOLCHAIN
  fi
  export PATH="$STATE_DIR/bin:$HOME/.cargo/bin:$STATE_DIR/node/node_modules/.bin:$PATH"
  LEPTOS_OUTPUT_NAME="$(leptos_output_name)"
  export LEPTOS_OUTPUT_NAME
  export PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1
  export CHROMIUM_PATH="${CHROMIUM_PATH:-/usr/bin/chromium}"
}
