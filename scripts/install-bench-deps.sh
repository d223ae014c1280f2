#!/usr/bin/env bash
# Installs what the benchmarks need beyond scripts/install-deps.sh: the
# peers they run beside weir on the same machine (redis-server and
# redis-benchmark for `cargo bench --bench lookups`) and wrk, the HTTP load
# generator. Idempotent: skipped when the tools are already there.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-deps.sh
missing=()
command -v redis-server >/dev/null 2>&1 || missing+=(redis-server)
command -v redis-benchmark >/dev/null 2>&1 || missing+=(redis-tools)
command -v wrk >/dev/null 2>&1 || missing+=(wrk)
if [ ${#missing[@]} -gt 0 ]; then
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}"
fi
