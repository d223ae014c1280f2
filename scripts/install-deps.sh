#!/usr/bin/env bash
# Installs what building and testing weir needs on a fresh Debian machine:
# clang/libclang (RocksDB's bindings), cmake + libcurl (librdkafka's build),
# sccache (caches the C++ of RocksDB across clean clones), and for the Kafka
# tests a real Kafka-protocol broker (tansu, from crates.io) and an
# independent client (kafka-python, from PyPI).
# Idempotent: every step is skipped when its tool is already there.
set -euo pipefail

need_apt=()
dpkg -s clang >/dev/null 2>&1 || need_apt+=(clang)
dpkg -s libclang-dev >/dev/null 2>&1 || need_apt+=(libclang-dev)
command -v cmake >/dev/null 2>&1 || need_apt+=(cmake)
[ -e /usr/include/x86_64-linux-gnu/curl/curl.h ] || [ -e /usr/include/curl/curl.h ] || need_apt+=(libcurl4-openssl-dev)
command -v pkg-config >/dev/null 2>&1 || need_apt+=(pkg-config)

if [ ${#need_apt[@]} -gt 0 ]; then
  SUDO=""
  [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need_apt[@]}" >/dev/null
fi

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
