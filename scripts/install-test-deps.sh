#!/usr/bin/env bash
# Installs what the tests need on top of scripts/install-deps.sh: sccache
# (caches compiled crates and RocksDB's C++ across clean clones, so CI's
# rebuild is minutes, not a quarter hour), a real Kafka-protocol broker
# (tansu, from crates.io), an independent Kafka client (kafka-python, from
# PyPI) for the Kafka tests, and an independent GraphQL client's libraries
# (graphql-core, websockets, from PyPI) for the GraphQL tests.
# Idempotent: every step is skipped when its tool is already there.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-deps.sh

if ! command -v sccache >/dev/null 2>&1 && [ ! -x "$HOME/.cargo/bin/sccache" ]; then
  cargo install sccache --locked --version 0.19.0
fi

# The Kafka-protocol broker the tests start on 127.0.0.1 (Apache Kafka itself
# cannot be installed here): tansu, with SQLite storage.
if ! command -v tansu >/dev/null 2>&1 && [ ! -x "$HOME/.cargo/bin/tansu" ]; then
  if command -v sccache >/dev/null 2>&1 || [ -x "$HOME/.cargo/bin/sccache" ]; then
    export RUSTC_WRAPPER="${RUSTC_WRAPPER:-$(command -v sccache || echo "$HOME/.cargo/bin/sccache")}"
  fi
  cargo install tansu --locked --version 0.6.0 --features dynostore,libsql
fi

# A Kafka client that shares no code with weir or librdkafka.
if ! python3 -c 'import kafka' >/dev/null 2>&1; then
  python3 -m pip install --quiet kafka-python==3.0.12 \
    || python3 -m pip install --quiet --break-system-packages kafka-python==3.0.12
fi

# The GraphQL test's client: graphql-core checks the served schema,
# websockets speaks graphql-transport-ws.
if ! python3 -c 'import graphql, websockets' >/dev/null 2>&1; then
  python3 -m pip install --quiet graphql-core==3.2.8 websockets==15.0.1 \
    || python3 -m pip install --quiet --break-system-packages graphql-core==3.2.8 websockets==15.0.1
fi
