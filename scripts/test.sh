#!/usr/bin/env bash
# The project's test command (README): installs what the build needs, then
# runs every test of the workspace: unit, differential (against SQLite) and
# end-to-end (the real binary over HTTP, with kill -9 and restart).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-deps.sh
export PATH="$HOME/.cargo/bin:$PATH"
if command -v sccache >/dev/null 2>&1; then
  export RUSTC_WRAPPER=sccache
fi
cargo build --workspace --all-targets
cargo test --workspace --all-targets
