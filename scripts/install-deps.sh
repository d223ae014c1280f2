#!/usr/bin/env bash
# Installs what building and running weir needs on a fresh Debian machine,
# and nothing more: clang/libclang (RocksDB's bindings), cmake + libcurl +
# pkg-config (librdkafka's build). The tests need more:
# scripts/install-test-deps.sh.
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
